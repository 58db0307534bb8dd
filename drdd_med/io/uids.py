"""Deterministic DICOM UIDs for derived (synthetic CT) series.

A re-run of the same model on the same source series must produce the same UIDs, so that a retried job re-sends
identical instances (a PACS overwrites or ignores them) instead of creating a duplicate series; a new model version
must give a new series. :func:`pydicom.uid.generate_uid` hashes ``"".join(entropy_srcs)`` with SHA-512, so the parts
are joined here with an explicit separator (``["ab", "c"]`` and ``["a", "bc"]`` would otherwise collide) and a real
prefix is always passed (``prefix=None`` ignores the entropy and returns a random UID).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.uid import PYDICOM_ROOT_UID, UID, generate_uid

__all__ = [
    "DEFAULT_UID_PREFIX",
    "UID_SEPARATOR",
    "derive_uid",
    "sct_series_uid",
    "sct_instance_uid",
    "placeholder_study_uid",
    "placeholder_frame_of_reference_uid",
]

#: pydicom's root, fine for tests and research use; production sites should pass their organisation root.
DEFAULT_UID_PREFIX = PYDICOM_ROOT_UID
#: Separator placed between entropy parts; parts may not contain it.
UID_SEPARATOR = "|"


def derive_uid(parts: Sequence[str], prefix: str = DEFAULT_UID_PREFIX) -> UID:
    """Return a UID that depends only on ``parts`` and ``prefix``.

    Args:
        parts: non-empty strings, hashed in order with :data:`UID_SEPARATOR` between them.
        prefix: UID root ending in ``"."`` (at most 54 characters, see :func:`pydicom.uid.generate_uid`).

    Returns:
        A valid UID of at most 64 characters.

    Raises:
        ValueError: if ``prefix`` is empty/None, or a part is empty or contains the separator.

    Example:
        >>> derive_uid(["1.2.3", "v1", "sct-series"]) == derive_uid(["1.2.3", "v1", "sct-series"])
        True
    """
    if not prefix:
        raise ValueError("derive_uid: prefix must be a UID root such as '1.2.826.0.1.3680043.8.498.'; "
                         "prefix=None makes pydicom ignore the entropy and return a random UID.")
    entropy: list[str] = []
    for i, part in enumerate(parts):
        part = str(part)
        if not part or UID_SEPARATOR in part:
            raise ValueError(f"derive_uid: part {i} ({part!r}) must be non-empty and must not contain "
                             f"{UID_SEPARATOR!r}; remove the separator from the model version / seed.")
        if entropy:
            entropy.append(UID_SEPARATOR)
        entropy.append(part)
    if not entropy:
        raise ValueError("derive_uid: parts must not be empty.")
    return generate_uid(prefix=prefix, entropy_srcs=entropy)


def sct_series_uid(source_key: str, model_version: str, prefix: str = DEFAULT_UID_PREFIX) -> UID:
    """SeriesInstanceUID of the synthetic CT derived from ``source_key`` by ``model_version``.

    Args:
        source_key: the source SeriesInstanceUID (DICOM input) or a seed string (NIfTI input).
        model_version: model / bundle version; a new version gives a new series.
        prefix: UID root.
    """
    return derive_uid([source_key, model_version, "sct-series"], prefix)


def sct_instance_uid(source_key: str, model_version: str, index: int, prefix: str = DEFAULT_UID_PREFIX) -> UID:
    """SOPInstanceUID of slice ``index`` (0-based, along the volume's k axis) of the synthetic CT series."""
    return derive_uid([source_key, model_version, "sct", str(int(index))], prefix)


def placeholder_study_uid(seed: str, prefix: str = DEFAULT_UID_PREFIX) -> UID:
    """StudyInstanceUID of the anonymous placeholder study used when the source is not DICOM."""
    return derive_uid([seed, "placeholder-study"], prefix)


def placeholder_frame_of_reference_uid(seed: str, prefix: str = DEFAULT_UID_PREFIX) -> UID:
    """FrameOfReferenceUID used when the source is not DICOM (no frame of reference to copy)."""
    return derive_uid([seed, "placeholder-frame-of-reference"], prefix)
