"""Series selection rules in the MONAI Deploy ``DICOMSeriesSelectorOperator`` JSON style.

Rules file shape::

    {"selections": [{"name": "t1",
                     "conditions": {"Modality": "(?i)MR", "SeriesDescription": "(?i)t1",
                                    "ImageType": ["ORIGINAL", "!LOCALIZER"], "SliceThickness": [0.5, 3.0],
                                    "ImageOrientationPatient": "Axial"}}]}

Condition values:

* a string: regular expression searched in the attribute's value (any value of a multi-valued attribute);
* ``[low, high]`` with numbers: inclusive numeric range; ``[low, ">"]`` / ``["<", high]`` are open-ended;
* a list of strings: every plain item must be among the attribute's values, no ``"!item"`` may be;
* ``"Axial"`` / ``"Sagittal"`` / ``"Coronal"`` for ``ImageOrientationPatient``: the dominant axis of the slice normal.

The same rules are applied twice: to the C-FIND identifiers, where a PACS may not return every attribute
(an absent or empty attribute leaves the condition *undecided*, so the series stays a candidate), and to the full
headers after retrieval, where an absent attribute decides (no match, except for an exclusion-only list).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Condition", "Selection", "parse_rules", "first_match", "condition_keywords"]

_ORIENTATIONS = {"sagittal": 0, "coronal": 1, "axial": 2}  # dominant component of the normal, in LPS
_OPEN = (">", "<")


def _values(ds: Any, keyword: str) -> list[str] | None:
    """The attribute's values as strings; ``None`` when absent or empty."""
    value = ds.get(keyword) if hasattr(ds, "get") else None
    if value is None:
        return None
    if hasattr(value, "value"):  # a DataElement
        value = value.value
    items = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    items = [str(v).strip() for v in items if v is not None and str(v).strip() != ""]
    return items or None


@dataclass(frozen=True)
class Condition:
    """One ``keyword: value`` condition of a selection, already parsed.

    Attributes:
        keyword: DICOM keyword of the attribute tested.
        kind: ``"regex"``, ``"range"``, ``"set"`` or ``"orientation"``.
        pattern: compiled regex (``regex``), or ``None``.
        low, high: inclusive range bounds (``range``; ``None`` when open).
        include, exclude: required and forbidden values (``set``).
        axis: dominant normal axis 0/1/2 (``orientation``).
    """

    keyword: str
    kind: str
    pattern: re.Pattern | None = None
    low: float | None = None
    high: float | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    axis: int | None = None

    def evaluate(self, ds: Any, partial: bool = False) -> bool | None:
        """Test one dataset (or C-FIND identifier).

        Args:
            ds: pydicom Dataset (or any mapping with ``get(keyword)``).
            partial: ``True`` for C-FIND identifiers: an absent/empty attribute returns ``None`` (undecided).

        Returns:
            ``True`` / ``False``, or ``None`` when ``partial`` and the attribute is unknown.
        """
        values = _values(ds, self.keyword)
        if values is None:
            if partial:
                return None
            return self.kind == "set" and not self.include
        if self.kind == "regex":
            return any(self.pattern.search(v) for v in values)
        if self.kind == "set":
            upper = {v.upper() for v in values}
            return all(i.upper() in upper for i in self.include) and not any(e.upper() in upper for e in self.exclude)
        if self.kind == "range":
            try:
                number = float(values[0])
            except ValueError:
                return False
            return (self.low is None or number >= self.low) and (self.high is None or number <= self.high)
        try:  # orientation
            iop = np.asarray([float(v) for v in values], dtype=float)
        except ValueError:
            return False
        if iop.shape != (6,):
            return False
        normal = np.cross(iop[:3], iop[3:])
        return int(np.argmax(np.abs(normal))) == self.axis


@dataclass(frozen=True)
class Selection:
    """A named set of conditions; a series is selected when all conditions hold."""

    name: str
    conditions: tuple[Condition, ...]

    def evaluate(self, ds: Any, partial: bool = False) -> bool | None:
        """``False`` if any condition fails; else ``None`` if any is undecided; else ``True``."""
        results = [c.evaluate(ds, partial) for c in self.conditions]
        if any(r is False for r in results):
            return False
        return None if any(r is None for r in results) else True


def _is_range(value: Any) -> bool:
    """``[low, high]`` with numbers, either bound possibly open (``">"`` / ``"<"``), not both open."""
    if not isinstance(value, list) or len(value) != 2:
        return False
    numbers = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in value]
    return any(numbers) and all(n or v in _OPEN for n, v in zip(numbers, value))


def _parse_condition(keyword: str, value: Any) -> Condition:
    from pydicom.datadict import tag_for_keyword

    if tag_for_keyword(keyword) is None:
        raise ValueError(f"condition key {keyword!r} is not a DICOM keyword (e.g. 'SeriesDescription')")
    if isinstance(value, str):
        if keyword == "ImageOrientationPatient" and value.lower() in _ORIENTATIONS:
            return Condition(keyword, "orientation", axis=_ORIENTATIONS[value.lower()])
        try:
            return Condition(keyword, "regex", pattern=re.compile(value))
        except re.error as err:
            raise ValueError(f"{keyword}: {value!r} is not a valid regular expression ({err})") from None
    if _is_range(value):
        low, high = (None if v in _OPEN else float(v) for v in value)
        if low is not None and high is not None and low > high:
            raise ValueError(f"{keyword}: range {value} has low > high; write [low, high]")
        return Condition(keyword, "range", low=low, high=high)
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip("!") for v in value):
        return Condition(keyword, "set", include=tuple(v for v in value if not v.startswith("!")),
                         exclude=tuple(v[1:] for v in value if v.startswith("!")))
    raise ValueError(f"{keyword}: unsupported condition {value!r}; use a regex string, [low, high], "
                     "a list of strings ('!x' excludes x) or Axial/Sagittal/Coronal for ImageOrientationPatient")


def parse_rules(rules: Any) -> list[Selection]:
    """Parse ``{"selections": [{"name": ..., "conditions": {...}}, ...]}``.

    Raises:
        ValueError: naming every malformed selection or condition.
    """
    if not isinstance(rules, dict) or not isinstance(rules.get("selections"), list) or not rules["selections"]:
        raise ValueError('expected {"selections": [{"name": ..., "conditions": {...}}, ...]} with at least one')
    problems, selections = [], []
    for i, item in enumerate(rules["selections"]):
        if not isinstance(item, dict) or not isinstance(item.get("conditions"), dict):
            problems.append(f"selections[{i}] needs a 'conditions' object")
            continue
        name = str(item.get("name", f"selection{i}"))
        conditions = []
        for keyword, value in item["conditions"].items():
            try:
                conditions.append(_parse_condition(keyword, value))
            except ValueError as err:
                problems.append(f"selections[{i}] ({name}): {err}")
        selections.append(Selection(name, tuple(conditions)))
    if problems:
        raise ValueError("; ".join(problems))
    return selections


def first_match(selections: Sequence[Selection], datasets: Iterable[Any] | Any,
                partial: bool = False) -> tuple[str | None, bool | None]:
    """Find the first selection matching a series.

    Args:
        selections: parsed rules, in priority order.
        datasets: one C-FIND identifier (``partial=True``) or the series' instance headers (all must match).
        partial: treat absent attributes as undecided (C-FIND identifiers).

    Returns:
        ``(name, True)`` for a definite match, ``(name, None)`` when the best selection is still undecided
        (re-check after retrieval), ``(None, False)`` when no selection can match.
    """
    items = list(datasets) if isinstance(datasets, (list, tuple)) else [datasets]
    undecided = None
    for selection in selections:
        results = [selection.evaluate(ds, partial) for ds in items]
        if items and all(r is True for r in results):
            return selection.name, True
        if items and undecided is None and not any(r is False for r in results):
            undecided = selection.name
    return (undecided, None) if undecided is not None else (None, False)


def condition_keywords(selections: Iterable[Selection]) -> list[str]:
    """DICOM keywords the rules test, in first-seen order (used as C-FIND return keys)."""
    seen: dict[str, None] = {}
    for selection in selections:
        for condition in selection.conditions:
            seen.setdefault(condition.keyword, None)
    return list(seen)
