"""Dictionary versions of :mod:`drdd_med.transforms.array` (logic-free wrappers, MONAI ``d`` / ``D`` / ``Dict``)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from drdd_med.keys import DOMAIN, DOMAIN_INDEX, HU_MAX, HU_MIN
from drdd_med.transforms.array import MiddleSlice, PercentileToUnit, SlicesToChannels, UnitToWindow, WindowToUnit

__all__ = [
    "DomainIndexd", "DomainIndexD", "DomainIndexDict", "MiddleSliced", "MiddleSliceD", "MiddleSliceDict",
    "NormalizeByDomaind", "NormalizeByDomainD", "NormalizeByDomainDict", "NormalizeToUnitd", "NormalizeToUnitD",
    "NormalizeToUnitDict", "PercentileToUnitd", "PercentileToUnitD", "PercentileToUnitDict", "SlicesToChannelsd",
    "SlicesToChannelsD", "SlicesToChannelsDict", "UnitToWindowd", "UnitToWindowD", "UnitToWindowDict", "WindowToUnitd",
    "WindowToUnitD", "WindowToUnitDict", "normalizer",
]


class _Wrap(MapTransform):
    """Apply one array transform to every key."""

    def __init__(self, keys: KeysCollection, transform: Any, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = transform

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class WindowToUnitd(_Wrap):
    """Dictionary :class:`~drdd_med.transforms.array.WindowToUnit`."""

    def __init__(self, keys: KeysCollection, a_min: float = HU_MIN, a_max: float = HU_MAX, clip: bool = True,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, WindowToUnit(a_min, a_max, clip), allow_missing_keys)


class PercentileToUnitd(_Wrap):
    """Dictionary :class:`~drdd_med.transforms.array.PercentileToUnit`."""

    def __init__(self, keys: KeysCollection, lower: float = 0.5, upper: float = 99.5, clip: bool = True,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, PercentileToUnit(lower, upper, clip), allow_missing_keys)


class UnitToWindowd(_Wrap):
    """Dictionary :class:`~drdd_med.transforms.array.UnitToWindow`."""

    def __init__(self, keys: KeysCollection, a_min: float | None = HU_MIN, a_max: float | None = HU_MAX,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, UnitToWindow(a_min, a_max), allow_missing_keys)


class SlicesToChannelsd(_Wrap):
    """Dictionary :class:`~drdd_med.transforms.array.SlicesToChannels`."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, SlicesToChannels(), allow_missing_keys)


class MiddleSliced(_Wrap):
    """Dictionary :class:`~drdd_med.transforms.array.MiddleSlice`."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, MiddleSlice(), allow_missing_keys)


def normalizer(norm: Any) -> WindowToUnit | PercentileToUnit:
    """Array transform for a normalisation setting (``NormalizeSpec`` or its dict form).

    Args:
        norm: object or mapping with ``type`` ``"range"`` (``a_min``, ``a_max``) or ``"percentile"`` (``lower``, ``upper``).

    Returns:
        :class:`WindowToUnit` or :class:`PercentileToUnit`.
    """
    get = norm.get if isinstance(norm, Mapping) else lambda k, default=None: getattr(norm, k, default)
    kind = get("type")
    if kind == "range":
        return WindowToUnit(get("a_min", HU_MIN), get("a_max", HU_MAX))
    if kind == "percentile":
        return PercentileToUnit(get("lower", 0.5), get("upper", 99.5))
    raise ValueError(f"normalize type {kind!r}: expected 'range' or 'percentile'.")


class NormalizeToUnitd(_Wrap):
    """Map keys to [-1, 1] with a spec's normalisation setting (see :func:`normalizer`)."""

    def __init__(self, keys: KeysCollection, norm: Any, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, normalizer(norm), allow_missing_keys)


class NormalizeByDomaind(MapTransform):
    """Map keys to [-1, 1] with the normalisation of the item's source domain (``item[domain_key]``).

    One pipeline thus serves a dataset that mixes MR (percentile windows) and CBCT (a HU window); an item without a
    domain is mapped with ``default``.

    Args:
        keys: the keys to map (the source).
        norms: domain -> normalisation setting (see :func:`normalizer`).
        default: the setting for items that name no domain.
        domain_key: item key of the domain name.
    """

    def __init__(self, keys: KeysCollection, norms: Mapping[str, Any], default: Any, domain_key: str = DOMAIN,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transforms = {domain: normalizer(norm) for domain, norm in norms.items()}
        self.default = normalizer(default)
        self.domain_key = domain_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        domain = d.get(self.domain_key)
        if domain is not None and domain not in self.transforms:
            raise ValueError(f"source domain {domain!r} has no normalisation here (known: {sorted(self.transforms)}).")
        transform = self.default if domain is None else self.transforms[domain]
        for key in self.key_iterator(d):
            d[key] = transform(d[key])
        return d


class DomainIndexd(MapTransform):
    """Write the position of the item's domain in ``domains`` as a long tensor under ``index_key`` (the class label
    of a domain-embedding model).

    Args:
        domains: the model's domain list.
        domain_key: item key of the domain name.
        index_key: item key written.
    """

    def __init__(self, domains: Sequence[str], domain_key: str = DOMAIN, index_key: str = DOMAIN_INDEX) -> None:
        super().__init__([domain_key])
        self.domains, self.domain_key, self.index_key = list(domains), domain_key, index_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        domain = d.get(self.domain_key)
        if domain not in self.domains:
            raise ValueError(f"item domain {domain!r}: a domain-embedding model needs one of {self.domains} on every "
                             "item.")
        d[self.index_key] = torch.tensor(self.domains.index(domain), dtype=torch.long)
        return d


WindowToUnitD = WindowToUnitDict = WindowToUnitd
PercentileToUnitD = PercentileToUnitDict = PercentileToUnitd
UnitToWindowD = UnitToWindowDict = UnitToWindowd
SlicesToChannelsD = SlicesToChannelsDict = SlicesToChannelsd
MiddleSliceD = MiddleSliceDict = MiddleSliced
NormalizeToUnitD = NormalizeToUnitDict = NormalizeToUnitd
NormalizeByDomainD = NormalizeByDomainDict = NormalizeByDomaind
DomainIndexD = DomainIndexDict = DomainIndexd
