"""DICOM series selection rules (MONAI Deploy ``DICOMSeriesSelectorOperator`` JSON style): the one rule engine.

``drdd-med translate`` / ``SCTPredictor(dicom_rules=...)`` (through :func:`drdd_med.io.dicom_series.select_series`)
and the PACS batch job (``pacs.json`` ``rules``) both parse and evaluate rules here, so one rules file selects the
same series everywhere. The operators are documented once, in ``docs/pacs.md`` ("Selection rules")::

    {"selections": [{"name": "t1",
                     "conditions": {"Modality": "(?i)MR", "SeriesDescription": "(?i)t1",
                                    "ImageType": ["ORIGINAL", "!LOCALIZER"], "SliceThickness": ["<", 3.0],
                                    "ImageOrientationPatient": "Axial"}}]}

A bare ``{keyword: condition}`` mapping is one unnamed selection. A series matches a selection when every
condition holds for every one of its headers; selections are tried in order and the first match wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Condition", "Selection", "parse_rules", "first_match", "matches_rules", "condition_keywords"]

_ORIENTATIONS = {"sagittal": 0, "coronal": 1, "axial": 2}  # dominant component of the slice normal
_OPEN = (">", "<")


def _values(ds: Any, keyword: str) -> list[str] | None:
    """The attribute's values as strings; ``None`` when absent or empty."""
    from pydicom.multival import MultiValue

    value = ds.get(keyword) if hasattr(ds, "get") else None
    if hasattr(value, "value"):  # a DataElement
        value = value.value
    if value is None:
        return None
    items = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    items = [str(v).strip() for v in items if v is not None and str(v).strip() != ""]
    return items or None


@dataclass(frozen=True)
class Condition:
    """One parsed ``keyword: value`` condition.

    Attributes:
        keyword: DICOM keyword of the attribute tested.
        kind: ``"regex"``, ``"range"``, ``"set"`` or ``"orientation"``.
        pattern: compiled regex (``regex``).
        low, high: inclusive range bounds (``range``; ``None`` when open).
        include, exclude: required and forbidden values (``set``).
        axis: dominant slice-normal axis 0/1/2 (``orientation``).
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
        """Test one header (or C-FIND identifier).

        Args:
            ds: pydicom Dataset, or any mapping with ``get(keyword)``.
            partial: C-FIND identifiers: an absent or empty attribute gives ``None`` (undecided) instead of deciding
                (no match, except for an exclusion-only list, which an absent attribute satisfies).
        """
        values = _values(ds, self.keyword)
        if values is None:
            return None if partial else (self.kind == "set" and not self.include)
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
        return int(np.argmax(np.abs(np.cross(iop[:3], iop[3:])))) == self.axis


@dataclass(frozen=True)
class Selection:
    """A named set of conditions; a header matches when all conditions hold."""

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
    if not isinstance(value, (list, tuple)) or len(value) != 2:
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
            raise ValueError(f"{keyword}: range {list(value)} has low > high; write [low, high]")
        return Condition(keyword, "range", low=low, high=high)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v.strip("!") for v in value):
        return Condition(keyword, "set", include=tuple(v for v in value if not v.startswith("!")),
                         exclude=tuple(v[1:] for v in value if v.startswith("!")))
    raise ValueError(f"{keyword}: unsupported condition {value!r}; use a regex string, [low, high] (['<', high], "
                     "[low, '>']; [v, v] for one number), a list of strings ('!x' excludes x) or "
                     "Axial/Sagittal/Coronal for ImageOrientationPatient")


def parse_rules(rules: Any) -> list[Selection]:
    """Parse ``{"selections": [{"name": ..., "conditions": {...}}, ...]}`` or a bare ``{keyword: condition}``.

    Already parsed rules (a sequence of :class:`Selection`) are returned as a list.

    Raises:
        ValueError: naming every malformed selection or condition.
    """
    if isinstance(rules, (list, tuple)) and rules and all(isinstance(s, Selection) for s in rules):
        return list(rules)
    if not isinstance(rules, Mapping):
        raise ValueError('expected {"selections": [{"name": ..., "conditions": {...}}, ...]} or '
                         f"{{keyword: condition}}, got {type(rules).__name__}")
    if "selections" not in rules:
        rules = {"selections": [{"name": "rules", "conditions": dict(rules)}]}
    items = rules.get("selections")
    if not isinstance(items, list) or not items:
        raise ValueError('expected {"selections": [{"name": ..., "conditions": {...}}, ...]} with at least one')
    problems, selections = [], []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("conditions"), Mapping):
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
        datasets: one header or C-FIND identifier, or a series' instance headers (all must match).
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


def matches_rules(datasets: Iterable[Any] | Any, rules: Any) -> bool:
    """Whether a header (or every header of a series) matches a selection of ``rules`` (see :func:`parse_rules`)."""
    return first_match(parse_rules(rules), datasets)[1] is True


def condition_keywords(selections: Iterable[Selection]) -> list[str]:
    """DICOM keywords the rules test, in first-seen order (the C-FIND return keys)."""
    seen: dict[str, None] = {}
    for selection in selections:
        for condition in selection.conditions:
            seen.setdefault(condition.keyword, None)
    return list(seen)
