"""Machine-readable progress lines between the translate CLI and its callers (3D Slicer, batch jobs).

Format, one line on stdout, flushed immediately::

    PROGRESS <done>/<total>[ <message>]

``done`` and ``total`` are non-negative integers with ``0 <= done <= total`` and ``total > 0`` (for example sampling
steps times volumes); the optional message is free text for a status bar. Any other line is ordinary log output.
Emit lines with :func:`format_progress` and read them with :func:`parse_progress`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PROGRESS_PREFIX", "ProgressEvent", "format_progress", "parse_progress"]

#: First word of a progress line.
PROGRESS_PREFIX = "PROGRESS"
_PATTERN = re.compile(rf"^{PROGRESS_PREFIX} (\d+)/(\d+)(?: (.*))?$")


@dataclass(frozen=True)
class ProgressEvent:
    """One parsed progress line: ``done`` of ``total`` work units, with an optional message."""

    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        """Completed share in [0, 1]."""
        return self.done / self.total


def format_progress(done: int, total: int, message: str = "") -> str:
    """Return the progress line (without newline) for ``done`` of ``total`` units.

    Raises:
        ValueError: unless ``0 <= done <= total`` and ``total > 0``, or if ``message`` spans lines.

    Example:
        >>> format_progress(3, 8, "noise step")
        'PROGRESS 3/8 noise step'
    """
    done, total = int(done), int(total)
    if total <= 0 or not 0 <= done <= total:
        raise ValueError(f"format_progress: need 0 <= done <= total and total > 0, got {done}/{total}.")
    if "\n" in message or "\r" in message:
        raise ValueError("format_progress: message must be a single line.")
    message = message.strip()
    return f"{PROGRESS_PREFIX} {done}/{total}" + (f" {message}" if message else "")


def parse_progress(line: str) -> ProgressEvent | None:
    """Parse one output line; ``None`` if it is not a (valid) progress line.

    Example:
        >>> parse_progress("PROGRESS 3/8 noise step")
        ProgressEvent(done=3, total=8, message='noise step')
    """
    match = _PATTERN.match(line.strip())
    if match is None:
        return None
    done, total = int(match.group(1)), int(match.group(2))
    if total <= 0 or done > total:
        return None
    return ProgressEvent(done, total, match.group(3) or "")
