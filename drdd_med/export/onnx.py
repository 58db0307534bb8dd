"""Export DRDD's two networks to self-describing ONNX files, and check them against torch with ONNX Runtime.

``export_onnx`` writes ``residual.onnx`` and ``noise.onnx``. Each file holds one MONAI ``DiffusionModelUNet``:

- input ``x``: (B, C_in, *spatial) float32, the already-concatenated network input (``cat([x_t, source])`` for the
  residual net and a ``noise_conditioned`` noise net, ``x_t`` alone otherwise);
- input ``t``: (B,) float32 network time input (the float ``timesteps`` of :class:`~drdd_med.networks.DRDDNet`);
- output ``y``: (B, Ct, *spatial) float32.

Batch and spatial sizes are dynamic; spatial sizes must be multiples of the network's ``divisor``. What a runtime
needs to use the files (stage, channels, divisor, noise level, ...) is stored in the ONNX ``metadata_props``
(:func:`read_metadata`), so no side-car config is needed.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. Both exporters of torch 2.13 export the
DiffusionModelUNet (with SDPA attention, 2D and 3D) with dynamic batch and spatial axes and agree with torch to
~1e-5. The TorchScript one is kept because it exports in 1-2 s instead of 10-55 s (``compact``, 2D / 3D, 2 CPU
cores), needs no ``onnxscript``, and names the dynamic axes as asked (the dynamo exporter with ``Dim.AUTO`` names
them ``s13``, ``s53`` and writes output sizes as expressions such as ``4*(((s53 - 1)//4)) + 4``). ONNX Runtime ran
both graphs equally fast. MONAI's flash (SDPA) attention exports as MatMul/Softmax, so it stays on. The
TorchScript exporter is deprecated since torch 2.9; when it is removed, pass ``dynamo=True`` with
``dynamic_shapes`` in :func:`_export_one` (and add ``onnxscript`` to the ``export`` extra).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drdd_med.io.atomic import atomic_file
from drdd_med.networks.drdd_net import NOISE, RESIDUAL, DRDDNet

__all__ = ["DEFAULT_OPSET", "FILE_NAMES", "FORMAT", "STAGES", "TOLERANCE", "export_onnx", "parse_metadata",
           "read_metadata", "require", "verify_onnx"]

logger = logging.getLogger(__name__)

#: Default ONNX opset: supported by ONNX Runtime >= 1.14 and by the TorchScript exporter.
DEFAULT_OPSET = 17
#: Largest accepted max |onnx - torch| of :func:`verify_onnx` (read at call time, so tests can patch it).
TOLERANCE = 1e-3
STAGES = (RESIDUAL, NOISE)
FILE_NAMES = {RESIDUAL: "residual.onnx", NOISE: "noise.onnx"}
#: Value of the ``format`` metadata entry; bumped when the inputs, outputs or metadata change meaning.
FORMAT = "drdd_med-onnx-1"
_INPUTS, _OUTPUT = ("x", "t"), "y"
# metadata entry -> type; every value is stored as a string
_META_TYPES: dict[str, type] = {"format": str, "stage": str, "spatial_dims": int, "in_channels": int,
                                "source_channels": int, "target_channels": int, "divisor": int, "noise_level": float,
                                "noise_conditioned": bool, "drdd_med_version": str}
# entries added after FORMAT 1 was first written, with the value an older file means
_META_DEFAULTS: dict[str, str] = {"residual_prediction": "residual"}


def require(module: str) -> Any:
    """Import ``module`` (``onnx`` or ``onnxruntime``), or explain how to install it.

    Raises:
        ImportError: the module is not installed; the message names ``pip install drdd_med[export]``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is needed to export or run DRDD's ONNX networks and is not installed: "
                          f"pip install drdd_med[export]") from exc


# ----------------------------------------------------------------------------------------------- metadata
def _metadata(network: DRDDNet, stage: str, spatial_dims: int, in_channels: int) -> dict[str, str]:
    from drdd_med import __version__

    values = {"format": FORMAT, "stage": stage, "spatial_dims": spatial_dims, "in_channels": in_channels,
              "source_channels": network.source_channels, "target_channels": network.target_channels,
              "divisor": network.divisor, "noise_level": float(network.noise_level),
              "noise_conditioned": network.noise_conditioned, "drdd_med_version": __version__,
              "residual_prediction": network.residual_prediction}
    # repr(float) round-trips exactly; booleans as "true" / "false"
    return {k: (str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, float) else str(v))
            for k, v in values.items()}


def parse_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """Typed DRDD metadata from an ONNX file's ``metadata_props`` (other entries are kept as strings).

    Args:
        props: key -> string value, e.g. ``onnxruntime.InferenceSession.get_modelmeta().custom_metadata_map``.

    Raises:
        ValueError: not a drdd_med ONNX file (no or another ``format``), or an entry cannot be parsed.
    """
    if props.get("format") != FORMAT:
        raise ValueError(f"not a drdd_med ONNX network (metadata format {props.get('format')!r}, expected "
                         f"{FORMAT!r}); export it with 'drdd-med export'.")
    out: dict[str, Any] = {**_META_DEFAULTS, **props}
    for key, kind in _META_TYPES.items():
        if key not in props:
            raise ValueError(f"ONNX metadata lacks {key!r}; re-export the network with 'drdd-med export'.")
        text = props[key]
        if kind is bool:
            if text not in ("true", "false"):
                raise ValueError(f"ONNX metadata {key}={text!r} must be 'true' or 'false'.")
            out[key] = text == "true"
        else:
            out[key] = kind(text)
    return out


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The DRDD metadata of an exported ``.onnx`` file (see :func:`parse_metadata`).

    Raises:
        ImportError: ``onnx`` is not installed.
        ValueError: not a drdd_med ONNX file.
    """
    onnx = require("onnx")
    model = onnx.load(os.fspath(path), load_external_data=False)
    try:
        return parse_metadata({p.key: p.value for p in model.metadata_props})
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


# ----------------------------------------------------------------------------------------------- export
class _StageNet(nn.Module):
    """``(x, t) -> y``: one of DRDD's U-Nets with the ONNX call convention (positional float time input)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, timesteps=t)


def _cpu_eval_copy(network: DRDDNet) -> DRDDNet:
    """A float32 CPU copy in eval mode: export and verification leave the caller's network (device, mode) alone."""
    return copy.deepcopy(network).float().cpu().eval()


def _in_channels(network: DRDDNet, stage: str) -> int:
    if network.source_channels is None or network.target_channels is None:
        raise ValueError("the DRDDNet does not know its source_channels / target_channels; build it with "
                         "build_drdd_net or pass both to DRDDNet.")
    conditioned = stage == RESIDUAL or network.noise_conditioned
    return network.target_channels + (network.source_channels if conditioned else 0)


def _unit(divisor: int) -> int:
    """The smallest multiple of ``divisor`` that is >= 8 (example and verification sizes are multiples of it)."""
    return divisor * math.ceil(8 / divisor)


def _export_one(net: nn.Module, path: Path, example: tuple[torch.Tensor, torch.Tensor], opset: int,
                metadata: Mapping[str, str]) -> None:
    """Export ``net`` to ``path`` (an existing temporary file) with dynamic axes and ``metadata`` attached."""
    onnx = require("onnx")
    spatial = {i + 2: f"spatial_{i}" for i in range(example[0].ndim - 2)}
    axes = {"x": {0: "batch", **spatial}, "t": {0: "batch"}, _OUTPUT: {0: "batch", **spatial}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # the exporter's deprecation notice, and MONAI's channel-count check (a constant: channels are not dynamic)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(_StageNet(net).eval(), example, buffer, input_names=list(_INPUTS),
                          output_names=[_OUTPUT], dynamic_axes=axes, opset_version=int(opset),
                          do_constant_folding=True, dynamo=False)
    model = onnx.load_model_from_string(buffer.getvalue())
    model.doc_string = ("drdd_med DRDD network; inputs x (B, C_in, *spatial) float32 (the concatenated network "
                        "input) and t (B,) float32 time input; output y (B, Ct, *spatial). Spatial sizes: multiples "
                        "of metadata 'divisor'.")
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=str(key), value=str(value))
    onnx.checker.check_model(model)
    onnx.save_model(model, os.fspath(path))


def export_onnx(
    network: DRDDNet,
    out_dir: str | os.PathLike,
    spatial_dims: int,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    tolerance: float | None = None,
    metadata: Mapping[str, str] | None = None,
    measured: dict[str, float] | None = None,
    num_threads: int | None = None,
) -> dict[str, Path]:
    """Write ``<out_dir>/residual.onnx`` and ``<out_dir>/noise.onnx``, checked against torch before they are kept.

    Each file is exported to a temporary file in ``out_dir``, verified (:func:`verify_onnx`) and only then renamed
    to its final name (mode 0o644), so a failed export never replaces a good file.

    Args:
        network: the DRDDNet to export (left unchanged: a CPU float32 copy is exported).
        out_dir: output folder (created).
        spatial_dims: 2 or 3.
        opset: ONNX opset version.
        verify: run ONNX Runtime against torch before keeping the files.
        tolerance: largest accepted max |onnx - torch| (default :data:`TOLERANCE`).
        metadata: extra ``metadata_props`` entries (e.g. the bundle's model config as JSON); the DRDD entries
            (:data:`FORMAT`, stage, channels, divisor, noise level, ...) cannot be overridden.
        measured: if given, filled with the measured max |onnx - torch| per stage.
        num_threads: ONNX Runtime intra-op threads of the verification (default: ONNX Runtime's).

    Returns:
        ``{"residual": path, "noise": path}``.

    Raises:
        ValueError: ``spatial_dims`` is not 2 or 3, the network lacks channel counts, or a network's ONNX output
            differs from torch by more than ``tolerance`` (the message names the file).
        TypeError: ``network`` is not a DRDDNet with torch weights (e.g. an ``OnnxDRDDNet``).
        ImportError: ``onnx`` / ``onnxruntime`` are not installed.
    """
    if not isinstance(network, DRDDNet):
        raise TypeError(f"export_onnx exports a DRDDNet (residual and noise network), got {type(network).__name__}.")
    if next(network.parameters(), None) is None:
        raise TypeError(f"export_onnx exports torch networks; this {type(network).__name__} has no torch weights.")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
    require("onnx")
    if verify:
        require("onnxruntime")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = _cpu_eval_copy(network)
    extra = {str(k): str(v) for k, v in (metadata or {}).items() if k not in _META_TYPES}
    generator = torch.Generator().manual_seed(0)
    side = [2 * _unit(net.divisor)] * spatial_dims
    finals = {stage: out_dir / FILE_NAMES[stage] for stage in STAGES}
    with contextlib.ExitStack() as stack:  # both files are renamed into place only once both are verified
        temps = {stage: stack.enter_context(atomic_file(finals[stage])) for stage in STAGES}
        for stage in STAGES:
            channels = _in_channels(net, stage)
            example = (torch.randn(2, channels, *side, generator=generator), 1000 * torch.rand(2, generator=generator))
            stage_net = net.residual_net if stage == RESIDUAL else net.noise_net
            meta = {**extra, **_metadata(net, stage, spatial_dims, channels)}
            _export_one(stage_net, temps[stage], example, opset, meta)
            logger.info("exported the %s network (%d input channels) to %s", stage, channels, finals[stage])
        if verify:
            sessions = {stage: _session(path, num_threads) for stage, path in temps.items()}
            diffs = _max_abs_differences(net, sessions, finals, spatial_dims)
            del sessions
            if measured is not None:
                measured.update(diffs)
            _check(diffs, finals, tolerance, " (not written)")
    return finals


# ----------------------------------------------------------------------------------------------- verification
def _session(path: Path, num_threads: int | None = None) -> Any:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = int(num_threads)
    return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])


def _default_cases(divisor: int, spatial_dims: int) -> list[tuple[int, tuple[int, ...]]]:
    """Two (batch, spatial) cases unlike the export example (batch 2, cubic 2*unit): batch 1 and 3, anisotropic."""
    unit = _unit(divisor)
    return [(1, (3 * unit, 2 * unit, 2 * unit)[:spatial_dims]), (3, (unit + divisor, unit, unit)[:spatial_dims])]


def _max_abs_differences(net: DRDDNet, sessions: Mapping[str, Any], names: Mapping[str, Path], spatial_dims: int,
                         cases: Sequence[tuple[int, Sequence[int]]] | None = None,
                         seed: int = 0) -> dict[str, float]:
    """max |onnx - torch| per stage over ``cases`` of random inputs, against the stage's torch network (the file
    holds that network's raw output; :class:`~drdd_med.export.OnnxDRDDNet`, a ``DRDDNet``, adds what
    ``residual_prediction`` asks for)."""
    cases = list(cases) if cases is not None else _default_cases(net.divisor, spatial_dims)
    generator = torch.Generator().manual_seed(seed)
    diffs: dict[str, float] = {}
    for stage, session in sessions.items():
        worst = 0.0
        for batch, spatial in cases:
            x = torch.randn(batch, _in_channels(net, stage), *spatial, generator=generator)
            t = 1000 * torch.rand(batch, generator=generator)
            with torch.no_grad():
                expected = (net.residual_net if stage == RESIDUAL else net.noise_net)(x, timesteps=t)
            (got,) = session.run([_OUTPUT], {"x": x.numpy(), "t": t.numpy()})
            worst = max(worst, float((torch.from_numpy(got) - expected).abs().max()))
        diffs[stage] = worst
        logger.info("%s: max |onnx - torch| = %.3g over %d input shapes", names[stage], worst, len(cases))
    return diffs


def _check(diffs: Mapping[str, float], paths: Mapping[str, Path], tolerance: float | None, note: str = "") -> None:
    tolerance = TOLERANCE if tolerance is None else float(tolerance)
    for stage, diff in diffs.items():
        if not diff <= tolerance:  # also catches NaN
            raise ValueError(f"{paths[stage]}: the ONNX {stage} network differs from torch by max |onnx - torch| = "
                             f"{diff:.3g} > {tolerance:g}{note}; try another --opset or report the network options.")


def verify_onnx(
    network: DRDDNet,
    paths: Mapping[str, str | os.PathLike],
    spatial_dims: int | None = None,
    cases: Sequence[tuple[int, Sequence[int]]] | None = None,
    tolerance: float | None = None,
    seed: int = 0,
    num_threads: int | None = None,
) -> dict[str, float]:
    """Compare exported ONNX networks with ``network`` on random inputs of several batch and spatial sizes.

    Args:
        network: the torch DRDDNet the files were exported from (left unchanged).
        paths: stage (``"residual"`` / ``"noise"``) -> ``.onnx`` file, as returned by :func:`export_onnx`.
        spatial_dims: 2 or 3; default: read from the files' metadata.
        cases: (batch, spatial sizes) pairs; default: batch 1 and 3 at two anisotropic sizes that differ from the
            export example.
        tolerance: largest accepted difference (default :data:`TOLERANCE`); ``math.inf`` only measures.
        seed: seed of the random inputs.
        num_threads: ONNX Runtime intra-op threads (default: ONNX Runtime's).

    Returns:
        stage -> max |onnx - torch| over all cases.

    Raises:
        ValueError: a difference exceeds ``tolerance`` (the message names the file), or a file is not a drdd_med
            ONNX network of that stage.
        ImportError: ``onnx`` / ``onnxruntime`` are not installed.
    """
    if tolerance is not None and not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}.")
    paths = {stage: Path(p) for stage, p in paths.items()}
    sessions = {}
    for stage, path in paths.items():
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r} for {path}; use {list(STAGES)}.")
        if not path.is_file():
            raise ValueError(f"{path}: no such ONNX file.")
        sessions[stage] = _session(path, num_threads)
        try:
            meta = parse_metadata(sessions[stage].get_modelmeta().custom_metadata_map)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        if meta["stage"] != stage:
            raise ValueError(f"{path}: holds the {meta['stage']} network, not the {stage} network.")
        spatial_dims = meta["spatial_dims"] if spatial_dims is None else spatial_dims
    diffs = _max_abs_differences(_cpu_eval_copy(network), sessions, paths, int(spatial_dims or 2), cases, seed)
    _check(diffs, paths, tolerance)
    return diffs
