"""Run the translate CLI as a child process: stream its output, follow progress, cancel the whole process tree."""

from __future__ import annotations

import collections
import logging
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence

from drdd_med.slicer_support.progress import ProgressEvent, parse_progress

__all__ = ["TranslateProcess", "kill_process_tree"]

logger = logging.getLogger(__name__)


def kill_process_tree(pid: int, timeout_s: float = 5.0) -> None:
    """Kill process ``pid`` and its descendants.

    Killing only the launcher is not enough: the CLI may have started workers. Uses ``psutil`` when available;
    otherwise kills the process group on POSIX (processes started by :class:`TranslateProcess` lead their own
    session) and ``taskkill /T`` on Windows.
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            parent = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        procs = [*parent.children(recursive=True), parent]
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=timeout_s)
    elif os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True, timeout=timeout_s)
    else:
        try:
            if os.getpgid(pid) == pid:  # a group leader: never signal the caller's own group
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class TranslateProcess:
    """A child process whose merged stdout/stderr is read line by line on a background thread.

    Args:
        command: argv list (see :func:`drdd_med.slicer_support.command.build_translate_command`).
        env: environment (see :func:`~drdd_med.slicer_support.command.translate_environment`); default inherited.
        cwd: working directory of the child.
        tail_lines: number of output lines kept for error messages.

    Example:
        >>> proc = TranslateProcess(["python", "-c", "print('PROGRESS 1/1')"]); proc.start()  # doctest: +SKIP
        >>> proc.wait(); proc.read_lines(); proc.progress                                   # doctest: +SKIP
        ProgressEvent(done=1, total=1, message='')
    """

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None = None, cwd: str | None = None,
                 tail_lines: int = 200) -> None:
        if not command:
            raise ValueError("TranslateProcess: command must be a non-empty argv list.")
        self.command = [str(c) for c in command]
        self.env = None if env is None else dict(env)
        self.cwd = cwd
        self.progress: ProgressEvent | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self.cancelled = False
        self._popen: subprocess.Popen | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    def start(self) -> None:
        """Start the child in its own process group / session, so that :meth:`cancel` reaches its descendants."""
        if self._popen is not None:
            raise RuntimeError("TranslateProcess.start: already started; create a new TranslateProcess.")
        kwargs = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt"
                  else {"start_new_session": True})
        self._popen = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       bufsize=1, env=self.env, cwd=self.cwd, **kwargs)
        self._reader = threading.Thread(target=self._pump, daemon=True, name="drdd-translate-output")
        self._reader.start()
        logger.info("started translate process %d", self._popen.pid)

    def _pump(self) -> None:
        assert self._popen is not None and self._popen.stdout is not None
        for line in self._popen.stdout:
            self._lines.put(line.rstrip("\r\n"))
        self._popen.stdout.close()

    def read_lines(self) -> list[str]:
        """Return the output lines received since the last call (non-blocking); updates :attr:`progress`."""
        lines = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            event = parse_progress(line)
            if event is not None:
                self.progress = event
            self.tail.append(line)
            lines.append(line)
        return lines

    def poll(self) -> int | None:
        """Exit code once the child has exited and all its output was read, else ``None``."""
        if self._popen is None:
            return None
        code = self._popen.poll()
        if code is None or (self._reader is not None and self._reader.is_alive()):
            return None
        return code

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for the child and its output; raises ``subprocess.TimeoutExpired`` after ``timeout_s``."""
        if self._popen is None:
            raise RuntimeError("TranslateProcess.wait: not started.")
        code = self._popen.wait(timeout=timeout_s)
        if self._reader is not None:
            self._reader.join(timeout=timeout_s)
        return code

    def cancel(self, timeout_s: float = 5.0) -> None:
        """Kill the child and all its descendants, then reap the child."""
        if self._popen is None or self._popen.poll() is not None:
            return
        self.cancelled = True
        kill_process_tree(self._popen.pid, timeout_s)
        self._popen.wait(timeout=timeout_s)
        if self._reader is not None:
            self._reader.join(timeout=timeout_s)  # the pipe closes once every process holding it is gone
        logger.info("cancelled translate process %d", self._popen.pid)
