"""Logging of the batch job: the job's own lines, and no patient data.

Two kinds of third-party output are kept out of the job's log:

* **Decoder warnings.** pydicom (and GDCM, when pydicom decodes with it) warns about header values that do not fit
  their VR, both through the ``warnings`` module and through its ``pydicom`` logger. Such a message quotes the value
  (``Invalid value for VR DA: '<birth date>'``), which may be patient data, and one odd header gives one line per
  instance, which drowns the job's own lines. These warnings are withheld and counted by source, and the job logs
  the counts once per pass. The same holds for pynetdicom's dataset codec (``pynetdicom.dsutils``) and for
  ``warnings`` raised from code in these packages, and for MONAI's notice that its nvImageCodec pydicom decoder
  plugin is not installed (two lines per pass with the bundle translator, on every machine without nvImageCodec).
* **pynetdicom's protocol log.** At INFO and DEBUG it prints whole C-FIND identifiers and datasets, so its loggers
  are capped at WARNING (their connection errors stay).

Nothing else is filtered: the job's own lines, and every other library's, pass unchanged.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
import warnings
from collections import Counter
from typing import Any, TextIO

__all__ = ["DecoderWarnings", "setup_job_logging", "DECODER_LOGGERS", "DECODER_PACKAGES"]

#: Loggers whose records are decoder warnings (the logger or its children).
DECODER_LOGGERS = ("pydicom", "gdcm", "pynetdicom.dsutils", "monai.data.nvimgcodec_pydicom_plugin")
#: Packages whose ``warnings.warn`` calls are decoder warnings.
DECODER_PACKAGES = ("pydicom", "pynetdicom", "gdcm")
#: (package, message pattern): the only warnings of these packages that are withheld.
_DECODER_NOTICES = (("monai", re.compile(r"nvImageCodec")),)
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _package_dirs(names: tuple[str, ...]) -> tuple[str, ...]:
    dirs = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        for location in (spec.submodule_search_locations or []) if spec is not None else []:
            dirs.append(os.path.realpath(location) + os.sep)
    return tuple(dirs)


class DecoderWarnings(logging.Filter):
    """Withholds third-party decoder warnings and counts them by source (see the module docstring).

    Use it as a ``logging`` filter on the handlers and as ``warnings.showwarning`` (:meth:`install` does both).
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._dirs = _package_dirs(DECODER_PACKAGES)
        self._notices = [(d, name, pattern) for name, pattern in _DECODER_NOTICES for d in _package_dirs((name,))]
        self._previous_showwarning: Any = warnings.showwarning
        self._handlers: list[logging.Handler] = []

    def _count(self, source: str) -> None:
        with self._lock:
            self._counts[source] += 1

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop (and count) records of the decoder loggers; keep every other record."""
        for name in DECODER_LOGGERS:
            if record.name == name or record.name.startswith(name + "."):
                self._count(name.split(".")[0])
                return False
        return True

    def showwarning(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    file: TextIO | None = None, line: str | None = None) -> None:
        """``warnings.showwarning`` replacement: withhold warnings raised in decoder packages, show the others."""
        path = os.path.realpath(filename) if filename else ""
        for directory in self._dirs:
            if path.startswith(directory):
                self._count(os.path.basename(directory.rstrip(os.sep)))
                return
        for directory, name, pattern in self._notices:
            if path.startswith(directory) and pattern.search(str(message)):
                self._count(name)
                return
        self._previous_showwarning(message, category, filename, lineno, file, line)

    def install(self, handlers: list[logging.Handler]) -> "DecoderWarnings":
        """Filter ``handlers`` and the decoder loggers, and route ``warnings`` through :meth:`showwarning`."""
        self._handlers = list(handlers)
        for handler in self._handlers:
            handler.addFilter(self)
        for name in DECODER_LOGGERS:
            logging.getLogger(name).addFilter(self)  # also covers handlers attached to the decoder loggers
        self._previous_showwarning = warnings.showwarning
        warnings.showwarning = self.showwarning
        return self

    def uninstall(self) -> None:
        """Undo :meth:`install` (the job ends; an embedding program keeps its own logging)."""
        for handler in self._handlers:
            handler.removeFilter(self)
        for name in DECODER_LOGGERS:
            logging.getLogger(name).removeFilter(self)
        if warnings.showwarning == self.showwarning:
            warnings.showwarning = self._previous_showwarning
        self._handlers = []

    def take(self) -> dict[str, int]:
        """The counts since the last call, by source package; resets them."""
        with self._lock:
            counts, self._counts = dict(self._counts), Counter()
        return counts


def setup_job_logging(level: str | int = "INFO") -> DecoderWarnings:
    """Configure logging for ``drdd-med pacs-batch``.

    The root logger gets a stderr handler if it has none. ``drdd_med`` logs at ``level``, pynetdicom at WARNING at
    most, and decoder warnings are withheld.

    Returns:
        The filter; the job logs ``take()`` once per pass and calls ``uninstall()`` when it ends.
    """
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=_FORMAT)
    logging.getLogger("drdd_med").setLevel(level)
    pynetdicom = logging.getLogger("pynetdicom")
    if pynetdicom.level < logging.WARNING:  # unset or verbose; a stricter level set by the site stays
        pynetdicom.setLevel(logging.WARNING)
    return DecoderWarnings().install(list(root.handlers))
