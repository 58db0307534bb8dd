"""``drdd-med translate``: MR / CBCT volumes (NIfTI files, DICOM series folders) -> synthetic CT (NIfTI, or DICOM).

Each input becomes ``<out>/<stem>_sct.nii.gz`` (int16 HU on the input's grid), plus ``<stem>_sct_std.nii.gz`` with
``--samples N > 1`` and ``<stem>_sct_dicom/`` with ``--dicom``. A case that fails is reported on stderr (file and
problem) and skipped, its previous outputs untouched; the others still finish, and the exit status is 1 (input
checks: :mod:`drdd_med.io.input_checks`, ``docs/inputs.md``). Machine-readable ``PROGRESS done/total``
lines (:mod:`drdd_med.slicer_support.progress`) go to stdout, counting network evaluations over all cases.

A model trained on several source domains (T1w, T2w, CBCT) translates each input as ``--domain`` says, or, without
it, as the header of its DICOM series shows; a NIfTI input to such a model needs ``--domain``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drdd_med.cli.options import add_bundle_options, add_sampling_options, quiet_optional_decoders, user_error
from drdd_med.data.domains import DOMAINS

__all__ = ["Case", "add_parser", "find_cases", "run"]

logger = logging.getLogger(__name__)

_EPILOG = """\
examples:
  # one NIfTI MR volume -> out/patient1_sct.nii.gz
  drdd-med translate patient1.nii.gz --bundle bundles/drdd --out out

  # a DICOM series folder, also written as a DICOM CT series (out/t1_head_sct_dicom/)
  drdd-med translate dicom/t1_head --out out --dicom

  # every series found under an export folder, 4 samples averaged (+ an uncertainty map), on the GPU
  drdd-med translate export/ --out out --samples 4 --device cuda

  # more noise steps (residual,noise) and another random seed
  drdd-med translate a.nii.gz b.nii.gz --out out --steps 1,4 --seed 7

  # a model of several source domains: name the domain of NIfTI inputs; DICOM series are recognised from headers
  drdd-med translate t2w.nii.gz --domain t2w --out out
  drdd-med translate dicom/cbct_fraction1 dicom/t1_head --out out

inputs:
  NIfTI files (.nii, .nii.gz); folders holding one DICOM series; or folders holding many series (every
  non-localizer series of the model's source modality is translated) or many NIfTI files. A 2D NIfTI is
  translated as a one-slice volume. Inputs that cannot give a usable sCT (NaN voxels, a blank image, no voxel
  geometry, 4D files, a DICOM series with a gap or of another modality, an input of a source domain the model
  was not trained on, ...) are refused with one line naming the file and the problem; nothing is written for them
  (docs/inputs.md lists every case).

outputs (written atomically, re-runs overwrite them; DICOM UIDs are the same on every re-run):
  <stem>_sct.nii.gz        synthetic CT, int16 Hounsfield units, same grid and orientation as the input
  <stem>_sct_std.nii.gz    per-voxel standard deviation over samples, HU (only with --samples > 1)
  <stem>_sct_dicom/        CT series in the input's study (only with --dicom), marked NOT FOR DIAGNOSTIC USE

exit status: 0 all cases written; 1 some case failed (listed on stderr); 2 bad options, an output folder that
cannot be written, or no usable model.
"""


@dataclass(frozen=True)
class Case:
    """One volume to translate: a NIfTI file, or a DICOM folder (with a series UID when it holds several)."""

    path: Path
    stem: str
    series_uid: str | None = None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``translate``."""
    p = subparsers.add_parser(
        "translate", help="translate MR / CBCT volumes to synthetic CT with a trained bundle",
        description="Translate MR or CBCT volumes (NIfTI files or DICOM series folders) to synthetic CT in Hounsfield "
                    "units with a trained DRDD bundle. The result is on the same voxel grid as the input.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="NIfTI file, DICOM series folder, or a folder of many")
    add_bundle_options(p)
    p.add_argument("--domain", choices=DOMAINS, default=None,
                   help="source domain of every input, for a model trained on several (its model_config.json "
                        "'domains'); default: read from each DICOM series' header, or the model's only domain. "
                        "NIfTI inputs to a model of several domains need it")
    p.add_argument("--dicom", action="store_true", help="also write each sCT as a DICOM CT series")
    p.add_argument("--body-part", default=None, metavar="PART",
                   help="DICOM BodyPartExamined for NIfTI inputs written with --dicom, e.g. HEAD or PELVIS "
                        "(DICOM inputs keep the MR's value)")
    add_sampling_options(p, "average N samples and write a standard-deviation map")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="network arithmetic: auto = bf16 where the CPU/GPU computes it natively, else fp32 "
                        "(default: auto)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU compute threads (default: 0 = the CPUs this process may use, less those the load "
                        "average shows busy)")
    p.add_argument("--progress-lines", action=argparse.BooleanOptionalAction, default=True,
                   help="print 'PROGRESS done/total' lines on stdout for calling programs (default: on)")
    p.set_defaults(func=run)
    return p


# ----------------------------------------------------------------------------------------------- inputs
def _folder_cases(folder: Path, source_modality: str | list[str]) -> list[Case]:
    from drdd_med.io.dicom_series import find_series, is_multiframe
    from drdd_med.io.input_checks import dicom_modality
    from drdd_med.io.nifti import is_nifti
    from drdd_med.workflows.predictor import input_stem

    niftis = sorted(p for p in folder.iterdir() if p.is_file() and is_nifti(p))
    series = find_series(folder)
    if niftis and not series:
        return [Case(p, input_stem(p)) for p in niftis]
    usable = {uid: h for uid, h in series.items()  # a multi-frame file is kept: translating it says why it is refused
              if (len(h) > 1 or is_multiframe(h[0]))
              and "LOCALIZER" not in [str(v).upper() for v in h[0].get("ImageType", []) or []]}
    if not usable:
        raise ValueError(f"{folder}: no NIfTI file and no DICOM image series (of more than one slice) found.")
    if len(usable) == 1:
        return [Case(folder, folder.name)]
    names = [source_modality] if isinstance(source_modality, str) else list(source_modality)
    codes = [dicom_modality(name) for name in names]  # e.g. a CBCT model's series carry Modality CT
    expected = None if None in codes else set(codes)
    matching = {uid: h for uid, h in usable.items()
                if expected is None or str(h[0].get("Modality", "")).upper() in expected}
    skipped = len(usable) - len(matching)
    translates = " or ".join(dict.fromkeys(names))
    if skipped:
        logger.info("%s: skipping %d series whose modality is not %s", folder, skipped, translates)
    if not matching:
        raise ValueError(f"{folder}: {len(usable)} series found, none with Modality {' or '.join(sorted(expected))} "
                         f"(the model translates {translates}).")
    cases = []
    for uid, headers in sorted(matching.items(), key=lambda kv: (int(kv[1][0].get("SeriesNumber") or 0), kv[0])):
        parents = {Path(h.filename).parent for h in headers}
        parent = parents.pop() if len(parents) == 1 else folder
        number = headers[0].get("SeriesNumber")
        stem = parent.name if parent != folder else f"{folder.name}_s{number if number is not None else uid[-8:]}"
        cases.append(Case(folder, stem, uid))
    return cases


def find_cases(inputs: list[Path],
               source_modality: str | list[str] = "MR") -> tuple[list[Case], list[tuple[str, str]]]:
    """Expand the inputs into cases with unique output stems; in a folder of many series, those of the model's
    ``source_modality`` (one, or one per domain it translates).

    Returns:
        ``(cases, failures)``: failures are ``(input, problem)`` for inputs that cannot be used at all.
    """
    from drdd_med.io.nifti import is_nifti
    from drdd_med.workflows.predictor import input_stem

    cases: list[Case] = []
    failures: list[tuple[str, str]] = []
    for path in inputs:
        try:
            if not path.exists():
                raise ValueError("no such file or folder")
            if path.is_file():
                if not is_nifti(path):
                    raise ValueError("not a NIfTI file (.nii / .nii.gz); for DICOM pass the folder of the series")
                cases.append(Case(path, input_stem(path)))
            else:
                cases.extend(_folder_cases(path, source_modality))
        except Exception as exc:  # one bad input must not stop the others
            failures.append((str(path), _without_path(_problem(exc), path)))
    seen: dict[str, int] = {}
    unique = []
    for case in cases:
        count = seen.get(case.stem, 0) + 1
        seen[case.stem] = count
        unique.append(case if count == 1 else Case(case.path, f"{case.stem}_{count}", case.series_uid))
    return unique, failures


def _problem(exc: BaseException) -> str:
    """The innermost message of a (MONAI-wrapped) exception, one line."""
    while exc.__cause__ is not None and isinstance(exc, RuntimeError):
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return first if isinstance(exc, ValueError) else f"{type(exc).__name__}: {first}"


def _without_path(problem: str, path: Path) -> str:
    """``"<path>: x"`` -> ``"x"``, ``"<path> series U: x"`` -> ``"series U: x"``: the report names the path already."""
    for prefix in (f"{path}: ", f"{path} "):
        if problem.startswith(prefix):
            return problem[len(prefix):]
    return problem


# ----------------------------------------------------------------------------------------------- run
class _ProgressLines:
    """Prints ``PROGRESS done/total`` over all cases from the per-case network-evaluation callback."""

    def __init__(self, enabled: bool, per_case: int, num_cases: int) -> None:
        self.enabled, self.per_case, self.total = enabled, per_case, per_case * num_cases
        self.base = 0

    def emit(self, done: int, message: str = "") -> None:
        if self.enabled:
            from drdd_med.slicer_support.progress import format_progress

            print(format_progress(min(done, self.total), self.total, message), flush=True)

    def case_callback(self, index: int, num_cases: int) -> Any:
        self.base = index * self.per_case
        return lambda done, _total: self.emit(self.base + done, f"case {index + 1}/{num_cases}")


def _writer_options(args: argparse.Namespace, result: Any) -> dict[str, Any]:
    """DICOM writer options from the command line: BodyPartExamined for NIfTI inputs (no MR header to copy)."""
    if args.body_part and result.source_datasets is None:
        return {"body_part_examined": str(args.body_part).upper()}
    return {}


def _load_predictor(args: argparse.Namespace) -> Any:
    from drdd_med.runtime import describe
    from drdd_med.workflows.paths import default_bundle_dir
    from drdd_med.workflows.predictor import SCTPredictor

    bundle = args.bundle or default_bundle_dir()
    residual, noise = args.steps or (None, None)
    predictor = SCTPredictor.from_bundle(bundle, device=args.device, residual_steps=residual, noise_steps=noise,
                                         num_samples=args.samples, seed=args.seed, precision=args.precision,
                                         threads=args.threads, domain=args.domain,
                                         noise_correlation=args.noise_correlation)
    print(f"drdd-med translate: {describe(predictor.device, predictor.precision)}", file=sys.stderr)
    return predictor


def _check_output_folder(out: Path) -> None:
    """Create ``--out`` and prove it writable before any case runs: a folder no case could be written to is an
    option error (exit 2), not a failure to report once per case after minutes of sampling."""
    import os
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".drdd-write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{out}: the output folder cannot be written ({exc.strerror or type(exc).__name__}); "
                         "pass a writable --out.") from exc


def _write_case(predictor: Any, result: Any, args: argparse.Namespace, stem: str) -> list[Path]:
    """Write one case's outputs all or nothing, so that a failure leaves the previous run's outputs as they were.

    The NIfTI files are written into a hidden staging folder in ``--out``, the DICOM series next (it replaces its
    folder atomically), and the NIfTI files are renamed into place last.
    """
    from drdd_med.io.atomic import staged_files

    with staged_files(args.out) as staging:
        staged = predictor.save_nifti(result, staging, stem)
        series = []
        if args.dicom:
            series.append(predictor.save_dicom(result, args.out / f"{stem}_sct_dicom",
                                               **_writer_options(args, result))[0].parent)
    return [args.out / path.name for path in staged] + series


def run(args: argparse.Namespace) -> int:
    """Translate every case; return 0, or 1 when some case failed, or 2 when no model could be loaded."""
    from tqdm import tqdm

    quiet_optional_decoders()
    try:
        predictor = _load_predictor(args)
        _check_output_folder(args.out)  # after the model: a run that cannot start creates no folder
    except (FileNotFoundError, ValueError) as exc:
        return user_error("translate", exc)
    config = predictor.config
    domains = [args.domain] if args.domain else config.domains
    modalities = [config.modality_for(d) for d in domains] or config.source_modality
    cases, failures = find_cases(list(args.inputs), modalities)
    unusable = len(failures)
    for where, problem in failures:
        print(f"FAILED {where}: {problem}", file=sys.stderr, flush=True)
    r, n = predictor.steps
    progress = _ProgressLines(args.progress_lines, max((r + n) * predictor.num_samples, 1), max(len(cases), 1))
    progress.emit(0, "starting")
    start = time.perf_counter()
    written = 0
    for index, case in enumerate(tqdm(cases, desc="sCT", unit="case", file=sys.stderr, disable=None)):
        predictor.set_progress(progress.case_callback(index, len(cases)))
        try:
            result = predictor.predict(case.path, series_uid=case.series_uid)
            paths = _write_case(predictor, result, args, case.stem)
        except Exception as exc:  # report, skip, continue with the next case
            logger.debug("case %s failed", case.path, exc_info=True)
            where = str(case.path) + (f" (series {case.series_uid})" if case.series_uid else "")
            problem = _without_path(_problem(exc), case.path)  # library messages start with the path too
            failures.append((where, problem))
            print(f"FAILED {where}: {problem}", file=sys.stderr, flush=True)
        else:
            written += 1
            print("wrote " + ", ".join(str(p) for p in paths), flush=True)
        progress.emit((index + 1) * progress.per_case, f"case {index + 1}/{len(cases)} done")
    elapsed = time.perf_counter() - start
    print(f"{written} of {len(cases) + unusable} case(s) translated in {elapsed:.1f} s; outputs in {args.out}",
          file=sys.stderr)
    if failures:
        print(f"{len(failures)} input(s) failed:", file=sys.stderr)
        for where, problem in failures:
            print(f"  {where}: {problem}", file=sys.stderr)
        return 1
    return 0
