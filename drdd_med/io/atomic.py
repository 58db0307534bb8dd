"""Atomic outputs: a file or folder appears complete under its final name, or not at all.

Every output of drdd_med (weights, configs, NIfTI and DICOM series, montages, reports, received instances) is
written to a hidden temporary name beside its destination and renamed into place (``os.replace``, atomic on one
file system), so a reader never sees a half-written file and an interrupted write leaves the previous output intact.

Modes are explicit: files are created ``0o644`` and folders ``0o755`` (``mode=`` to change), and the process umask
applies as it does to ``open(2)`` and ``mkdir(2)``: with umask 022 a colleague or a service account can read the
outputs, a site that sets umask 077 keeps them private. (:func:`tempfile.mkstemp` and :func:`tempfile.mkdtemp`
ignore the umask and create 0o600 / 0o700 entries, which is why they are not used here.)

Example:
    >>> with atomic_file("models/model.pt") as tmp:     # doctest: +SKIP
    ...     torch.save(state, tmp)
    >>> write_atomic("metrics.json", json.dumps(metrics))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["FILE_MODE", "DIR_MODE", "atomic_file", "atomic_dir", "write_atomic", "staged_files"]

#: Default mode of output files and folders (before the umask).
FILE_MODE, DIR_MODE = 0o644, 0o755


def _temp_path(path: Path) -> Path:
    """A hidden, unused name beside ``path`` that keeps its suffixes (nibabel and matplotlib read the format there)."""
    return path.with_name(f".tmp-{secrets.token_hex(6)}-{path.name}")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: int = FILE_MODE) -> Iterator[Path]:
    """Yield a temporary file beside ``path``; rename it to ``path`` when the block succeeds, delete it otherwise.

    The temporary file exists (empty, with ``mode``) when the block starts; write to it by name. Its mode is
    restored before the rename, in case the writing library replaced the file.

    Args:
        path: destination; its folder is created.
        mode: permission bits (the umask applies).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        created = os.fstat(fd).st_mode & 0o7777
    finally:
        os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, created)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: str | bytes, mode: int = FILE_MODE) -> Path:
    """Write ``data`` (text as UTF-8, newlines untranslated) to ``path`` atomically; returns ``path``."""
    with atomic_file(path, mode) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8", newline="")
        else:
            tmp.write_bytes(data)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, mode: int = DIR_MODE) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; when the block succeeds it replaces ``path`` as a whole.

    A previous ``path`` is moved aside, the new folder renamed into place, and the old one deleted; if the block
    fails, the temporary folder is deleted and ``path`` is left as it was. Files written into the folder get the
    modes their writer gives them (``open(2)``: 0o666 less the umask).

    Args:
        path: destination folder; its parent is created.
        mode: permission bits of the folder (the umask applies).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    os.mkdir(tmp, mode)
    try:
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
            return
        old = path.with_name(f".old-{secrets.token_hex(6)}-{path.name}")
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def staged_files(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden staging folder inside ``out_dir``; when the block succeeds, move each file in it to ``out_dir``.

    For outputs that must appear together or not at all (one case's sCT and std map, written with their DICOM
    series): nothing reaches ``out_dir`` if the block fails. Each move is an atomic rename that replaces a
    previous file of the same name; the staging folder is always removed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = _temp_path(out_dir / "staging")
    os.mkdir(staging, DIR_MODE)
    try:
        yield staging
        for item in sorted(staging.iterdir()):
            os.replace(item, out_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
