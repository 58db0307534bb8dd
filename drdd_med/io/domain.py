"""Recognise the source domain of a DICOM image (T1w MR, T2w MR or CBCT) from its header.

The rules use only attributes that scanners write for every image, and refuse whenever they do not settle the
question, with a :class:`DomainError` that names the file and lists what was seen.

**MR** (Modality ``MR``). Enhanced MR attributes are read from the top level or from the first item of the shared
or per-frame functional groups.

1. ``AcquisitionContrast`` (0008,9209), when the scanner declares it: ``T1`` is t1w, ``T2`` is t2w, any other
   declared contrast (``PROTON_DENSITY``, ``FLUID_ATTENUATED``, ``DIFFUSION``, ``T2_STAR``...) is refused;
   ``UNKNOWN`` / ``MIXED`` fall through to the timing rules.
2. The sequence family from ``ScanningSequence`` (0018,0020: SE, GR, IR, EP), or ``EchoPulseSequence``
   (0018,9008, enhanced MR), or the ``SequenceName`` (0018,0024) prefix (``*tse``/``*se``/``*spc`` spin echo,
   ``*fl``/``*tfl``/``*fi``/``*me`` gradient echo, ``*tir`` inversion recovery, ``*ep`` echo planar). Echo planar
   images (diffusion, functional) are refused.
3. Timing, ``EchoTime`` TE / ``EffectiveEchoTime``, ``RepetitionTime`` TR, ``InversionTime`` TI, ``FlipAngle``:

   * spin echo: **t2w** if TE >= 60 ms and TR >= 1500 ms; **t1w** if TE <= 30 ms and TR <= 1000 ms; otherwise
     (proton-density or intermediate weighting) refused;
   * gradient echo: **t1w** if TE <= 10 ms and the flip angle is at least the Ernst angle of a T1 = 1000 ms tissue
     at that TR (``arccos(exp(-TR / 1000))``: 8 degrees at TR 10 ms), i.e. a spoiled T1-weighted gradient echo;
     otherwise (T2*- or PD-weighted) refused;
   * inversion recovery: TI >= 1500 ms (FLAIR, fluid dark) and TI < 300 ms (STIR, fat dark) are refused; with
     300 <= TI < 1500 ms, a gradient echo with TE <= 10 ms (MPRAGE) or a spin echo with TE <= 30 ms (T1-FLAIR) is
     **t1w**.

**CBCT**. No attribute of the CT Image IOD says "cone beam" (Enhanced CT's ``AcquisitionType`` has no such term),
and tube current or field of view overlap with low-dose fan-beam protocols, so they are not used. An image is
**cbct** when

1. its SOP Class is X-Ray 3D Angiographic or X-Ray 3D Craniofacial Image Storage (flat-panel rotational
   acquisitions), or
2. its Modality is ``CT``, it carries no helical-acquisition attribute (``SpiralPitchFactor``,
   ``TableFeedPerRotation``, ``ScanOptions`` HELICAL/SPIRAL) and ``ManufacturerModelName``,
   ``SeriesDescription``, ``ProtocolName`` or ``ImageType`` names a cone-beam system (CBCT, cone beam, On-Board
   Imager / OBI, XVI, TrueBeam, Halcyon, Ethos), or its ``Manufacturer`` builds only cone-beam CT (Elekta,
   Planmeca, dental CBCT makers).

A CT without these markers (a fan-beam planning CT) is refused: it is the target modality, not a source domain.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drdd_med.data.domains import DOMAINS

__all__ = ["DomainError", "detect_domain", "domain_of_header"]

logger = logging.getLogger(__name__)

T2W_MIN_TE_MS, T2W_MIN_TR_MS = 60.0, 1500.0
T1W_SE_MAX_TE_MS, T1W_SE_MAX_TR_MS = 30.0, 1000.0
T1W_GRE_MAX_TE_MS = 10.0
#: T1 (ms) whose Ernst angle a T1-weighted gradient echo must exceed.
ERNST_T1_MS = 1000.0
FLAIR_MIN_TI_MS, STIR_MAX_TI_MS = 1500.0, 300.0

#: SOP classes of flat-panel (cone-beam) volume reconstructions.
CBCT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.13.1.1": "X-Ray 3D Angiographic Image Storage",
    "1.2.840.10008.5.1.4.1.1.13.1.2": "X-Ray 3D Craniofacial Image Storage",
}
#: Names of cone-beam systems in a model name, series description, protocol name or image type.
_CBCT_NAMES = re.compile(
    r"\b(CBCT|ICBCT|CONE[\s_-]?BEAM|ON[\s_-]?BOARD[\s_-]?IMAGER|OBI|XVI|TRUEBEAM|HALCYON|ETHOS)\b", re.I)
#: Manufacturers whose CT images are all cone-beam (linac imagers, dental and maxillofacial CBCT).
_CBCT_MANUFACTURERS = re.compile(
    r"ELEKTA|PLANMECA|SIRONA|IMAGING SCIENCES|CEFLA|NEWTOM|MORITA|VATECH|CARESTREAM DENTAL|KAVO", re.I)
_CBCT_TEXT_KEYS = ("ManufacturerModelName", "SeriesDescription", "ProtocolName", "ImageType")
_HELICAL_KEYS = ("SpiralPitchFactor", "TableFeedPerRotation")
_SEQUENCE_NAMES = (  # SequenceName prefix (after an optional '*') -> ScanningSequence family
    (re.compile(r"^\*?ep", re.I), {"EP"}),
    (re.compile(r"^\*?(tir|spcir|ir)", re.I), {"IR", "SE"}),
    (re.compile(r"^\*?(tse|se|spc|h2d|haste|blade)", re.I), {"SE"}),
    (re.compile(r"^\*?(tfl|fl|fi|me|gre|vibe|swi)", re.I), {"GR"}),
)
_SEEN_KEYS = ("Modality", "SOPClassUID", "AcquisitionContrast", "ScanningSequence", "EchoPulseSequence", "SequenceName",
              "EchoTime", "EffectiveEchoTime", "RepetitionTime", "InversionTime", "FlipAngle", "Manufacturer",
              "ManufacturerModelName", "SeriesDescription", "ProtocolName", "ImageType", "ScanOptions",
              "SpiralPitchFactor")


class DomainError(ValueError):
    """The domain of an image cannot be told from its header; the message names the file and what was seen."""


def _find(ds: Any, keyword: str) -> Any:
    """A header value: top level, else the first item of the shared / per-frame functional groups (one level down)."""
    if keyword in ds and ds[keyword].value not in (None, ""):
        return ds[keyword].value
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = ds.get(groups) or []
        for macro in (items[0] if len(items) else []):
            if macro.VR == "SQ" and len(macro.value) and keyword in macro.value[0]:
                value = macro.value[0][keyword].value
                if value not in (None, ""):
                    return value
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return str(value)
    return "\\".join(str(v) for v in value)


def _number(ds: Any, *keywords: str) -> float | None:
    for k in keywords:
        value = _find(ds, k)
        if value is not None:
            try:
                return float(value[0] if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else value)
            except (IndexError, TypeError, ValueError):
                return None
    return None


def _family(ds: Any) -> set[str]:
    scanning = {v.strip().upper() for v in _text(_find(ds, "ScanningSequence")).split("\\") if v.strip()}
    if scanning:
        return scanning
    pulse = _text(_find(ds, "EchoPulseSequence")).upper()
    if pulse:
        return {"SPIN": {"SE"}, "GRADIENT": {"GR"}, "BOTH": {"SE", "GR"}}.get(pulse, set())
    name = _text(_find(ds, "SequenceName")).strip()
    return next((set(family) for pattern, family in _SEQUENCE_NAMES if pattern.match(name)), set())


def _classify_mr(ds: Any) -> tuple[str | None, str]:
    contrast = _text(_find(ds, "AcquisitionContrast")).upper()
    if contrast in ("T1", "T2"):
        return ("t1w" if contrast == "T1" else "t2w"), f"AcquisitionContrast {contrast}"
    if contrast and contrast not in ("UNKNOWN", "MIXED"):
        return None, f"AcquisitionContrast {contrast} is neither T1 nor T2"
    family = _family(ds)
    if not family:
        return None, "no ScanningSequence, EchoPulseSequence or known SequenceName: the sequence type is unknown"
    if "EP" in family:
        return None, "echo-planar acquisition (diffusion or functional MR)"
    te, tr = _number(ds, "EchoTime", "EffectiveEchoTime"), _number(ds, "RepetitionTime")
    if te is None or tr is None:
        return None, "EchoTime or RepetitionTime missing"
    ti = _number(ds, "InversionTime", "InversionTimes")
    timing = f"{'/'.join(sorted(family))}, TE {te:g} ms, TR {tr:g} ms" + (f", TI {ti:g} ms" if ti is not None else "")
    if "IR" in family or (ti is not None and ti > 0):
        if ti is None:
            return None, f"inversion recovery without InversionTime ({timing})"
        if ti >= FLAIR_MIN_TI_MS:
            return None, f"fluid-attenuated inversion recovery, TI >= {FLAIR_MIN_TI_MS:g} ms ({timing})"
        if ti < STIR_MAX_TI_MS:
            return None, f"short-TI inversion recovery (STIR, fat suppressed), TI < {STIR_MAX_TI_MS:g} ms ({timing})"
        max_te = T1W_GRE_MAX_TE_MS if "GR" in family else T1W_SE_MAX_TE_MS
        if te <= max_te:
            return "t1w", f"inversion-prepared T1 weighting ({timing})"
        return None, f"inversion recovery with TE > {max_te:g} ms ({timing})"
    if "GR" in family and "SE" not in family:
        flip = _number(ds, "FlipAngle")
        if flip is None:
            return None, f"gradient echo without FlipAngle ({timing})"
        ernst = math.degrees(math.acos(math.exp(-tr / ERNST_T1_MS)))
        if te <= T1W_GRE_MAX_TE_MS and flip >= ernst:
            return "t1w", f"spoiled gradient echo, flip {flip:g} >= Ernst angle {ernst:.1f} degrees ({timing})"
        return None, (f"gradient echo that is not T1-weighted (needs TE <= {T1W_GRE_MAX_TE_MS:g} ms and flip >= "
                      f"{ernst:.1f} degrees; flip {flip:g}) ({timing})")
    if te >= T2W_MIN_TE_MS and tr >= T2W_MIN_TR_MS:
        return "t2w", f"spin echo, TE >= {T2W_MIN_TE_MS:g} ms and TR >= {T2W_MIN_TR_MS:g} ms ({timing})"
    if te <= T1W_SE_MAX_TE_MS and tr <= T1W_SE_MAX_TR_MS:
        return "t1w", f"spin echo, TE <= {T1W_SE_MAX_TE_MS:g} ms and TR <= {T1W_SE_MAX_TR_MS:g} ms ({timing})"
    return None, f"neither T1- nor T2-weighted timing (proton density or intermediate) ({timing})"


def _classify_ct(ds: Any) -> tuple[str | None, str]:
    helical = [f"{k} {_text(_find(ds, k))!r}" for k in _HELICAL_KEYS if _find(ds, k) is not None]
    if re.search(r"HELICAL|SPIRAL", _text(_find(ds, "ScanOptions")), re.I):
        helical.append(f"ScanOptions {_text(_find(ds, 'ScanOptions'))!r}")
    if helical:
        return None, f"a helical fan-beam CT ({', '.join(helical)}), the target modality"
    for key in _CBCT_TEXT_KEYS:
        match = _CBCT_NAMES.search(_text(_find(ds, key)))
        if match:
            return "cbct", f"{key} names a cone-beam system ({match.group(0)!r})"
    manufacturer = _text(_find(ds, "Manufacturer"))
    if _CBCT_MANUFACTURERS.search(manufacturer):
        return "cbct", f"Manufacturer {manufacturer!r} makes cone-beam CT only"
    return None, "a CT without cone-beam markers (a fan-beam CT is the target modality, not a source domain)"


def _seen(ds: Any) -> str:
    parts = []
    for key in _SEEN_KEYS:
        value = _find(ds, key)
        if value is not None:
            parts.append(f"{key}={_text(value)!r}")
    return ", ".join(parts) or "no relevant attribute"


def domain_of_header(ds: Any, where: str | Path | None = None) -> str:
    """The source domain of one DICOM header (rules in the module docstring).

    Args:
        ds: a pydicom Dataset (pixel data not needed).
        where: the file named in messages (default: the dataset's ``filename``).

    Returns:
        One of :data:`~drdd_med.data.domains.DOMAINS`.

    Raises:
        DomainError: the header does not settle the domain; the message says why and lists the attributes seen.
    """
    where = where or getattr(ds, "filename", None) or "DICOM dataset"
    modality = _text(ds.get("Modality", "")).upper()
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class in CBCT_SOP_CLASSES:
        domain, reason = "cbct", f"SOP Class {CBCT_SOP_CLASSES[sop_class]}"
    elif modality == "MR":
        domain, reason = _classify_mr(ds)
    elif modality == "CT":
        domain, reason = _classify_ct(ds)
    else:
        domain, reason = None, f"Modality {modality or 'missing'} is not the modality of a source domain (MR, CT)"
    if domain is None:
        raise DomainError(f"{where}: cannot tell the source domain ({', '.join(DOMAINS)}) from the header: {reason}. "
                          f"Seen: {_seen(ds)}. Name the domain explicitly if you know it.")
    logger.info("%s: domain %s (%s)", where, domain, reason)
    return domain


def detect_domain(source: Any) -> str:
    """The source domain of a DICOM file, a DICOM series folder or a pydicom Dataset.

    A folder is read like :func:`~drdd_med.io.dicom_series.load_series` reads it (the one image series it holds,
    localizers skipped) and its first file's header decides.

    Raises:
        DomainError: the header does not settle the domain.
        DicomSeriesError: the folder holds no single readable series.
    """
    if not isinstance(source, (str, Path)):
        return domain_of_header(source)
    import pydicom

    path = Path(source)
    if path.is_dir():
        from drdd_med.io.dicom_series import find_series, select_series

        series = find_series(path)
        header = series[select_series(series, folder=path)][0]
        return domain_of_header(header, header.filename)
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises InvalidDicomError, OSError, EOFError... for unreadable files
        raise DomainError(f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc}).") from exc
    return domain_of_header(header, path)
