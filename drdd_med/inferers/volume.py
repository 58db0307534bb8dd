"""Seam-free DRDD sampling over whole volumes: slice-by-slice (2D / 2.5D) or sliding window (3D).

Every network evaluation of the sampler is applied to the **whole-volume state** (slice batches or overlapping
windows with Gaussian blending), then one scheduler step is taken on the whole volume, and the initial noise z is
one seeded tensor for the whole volume. The full sampler is never run per slice or per window, so there are no
seams between windows and neighbouring slices share one noise field (MONAI_NOTES.md §7).

:class:`VolumeRegressionInferer` evaluates a direct-regression model over a volume with the same slice batches,
sliding windows, precision and memory layout: one network evaluation per volume.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from monai.inferers import SlidingWindowInferer
from monai.utils import convert_to_tensor
from torch import nn

from drdd_med import runtime
from drdd_med.diffusion.sampling import ModelFn
from drdd_med.inferers.inferer import DRDDInferer, check_noise_level
from drdd_med.keys import MODES, UNIT_MAX, UNIT_MIN
from drdd_med.networks.checks import check_finite

__all__ = ["VolumeDRDDInferer", "VolumeRegressionInferer", "slice_stack", "slices_per_call", "uses_channels_last"]

logger = logging.getLogger(__name__)

NOISE_FIELDS = ("shared", "independent", "correlated")
#: CPU slice batches hold about this many pixels per slice batch: the measured optimum for the 2D presets on a
#: 2-core AVX512 CPU was 2 slices of 256² (4 and 16 slices per call were 10 % and 2.6x slower per slice: the
#: activations of a large batch no longer fit the caches). GPUs keep large batches.
CPU_PIXELS_PER_CALL = 2 * 256 * 256
GPU_SLICE_BATCH = 16
#: ``progress(done_calls, total_calls)`` after every network evaluation over the volume.
Progress = Callable[[int, int], None]


def slice_stack(volume: torch.Tensor, num_slices: int) -> torch.Tensor:
    """Axial slices of a volume with ``num_slices`` neighbours as channels (2.5D input; edges replicated).

    Args:
        volume: (1, C, X, Y, Z) volume.
        num_slices: odd k >= 1.

    Returns:
        (Z, k*C, X, Y); channel group j holds slice z + j - k//2, so the middle group is the slice itself
        (the 2.5D anchor of :func:`~drdd_med.diffusion.anchor.source_anchor`).
    """
    if num_slices < 1 or num_slices % 2 == 0:
        raise ValueError(f"num_slices must be an odd number >= 1, got {num_slices}.")
    half = num_slices // 2
    slices = volume[0].permute(3, 0, 1, 2)  # (Z, C, X, Y)
    if half == 0:
        return slices
    padded = torch.cat([slices[:1].expand(half, -1, -1, -1), slices, slices[-1:].expand(half, -1, -1, -1)], dim=0)
    depth = slices.shape[0]
    return torch.cat([padded[j : j + depth] for j in range(num_slices)], dim=1)


def slices_per_call(height: int, width: int, device: torch.device, slice_batch: int | None = None) -> int:
    """Slices per 2D network call: ``slice_batch``, else about :data:`CPU_PIXELS_PER_CALL` pixels on CPU and
    :data:`GPU_SLICE_BATCH` slices on GPU."""
    if slice_batch is not None:
        return int(slice_batch)
    if torch.device(device).type == "cpu":
        return max(1, CPU_PIXELS_PER_CALL // max(1, height * width))
    return GPU_SLICE_BATCH


def uses_channels_last(mode: str, device: torch.device, channels_last: bool | None = None) -> bool:
    """Whether 2D networks run channels-last: ``channels_last``, else on CPU (never for 3D)."""
    if mode == "3d":
        return False
    return torch.device(device).type == "cpu" if channels_last is None else bool(channels_last)


def _pad_to(x: torch.Tensor, divisor: int) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Replicate-pad the spatial dims of (B, C, *spatial) up to multiples of ``divisor``; return the crop back."""
    spatial = x.shape[2:]
    extra = [(-s) % divisor for s in spatial]
    if not any(extra):
        return x, tuple(slice(None) for _ in x.shape)
    pad: list[int] = []
    for e in reversed(extra):
        pad += [e // 2, e - e // 2]
    crop = (slice(None), slice(None)) + tuple(slice(e // 2, e // 2 + s) for e, s in zip(extra, spatial))
    return F.pad(x, pad, mode="replicate"), crop


class VolumeDRDDInferer(DRDDInferer):
    """DRDD sampling of a whole volume ``(1, Cs, X, Y, Z)`` with a 2D, 2.5D or 3D :class:`DRDDNet`.

    Args:
        scheduler: the DRDD coefficients (noise level must match the network's).
        residual_steps: residual steps (default 2).
        noise_steps: noise steps (default 2).
        eta: noise-stage stochasticity.
        mode: ``"2d"`` (axial slices), ``"2.5d"`` (axial slices with ``num_slices`` source neighbours as channels)
            or ``"3d"`` (sliding window).
        num_slices: source slices per 2.5D input (odd).
        slice_batch: slices per network call in 2D / 2.5D (bounds memory); None: about
            :data:`CPU_PIXELS_PER_CALL` pixels per call on CPU, :data:`GPU_SLICE_BATCH` slices on GPU.
        roi_size: 3D window size (each a multiple of the network's divisor).
        sw_batch_size: windows per network call in 3D.
        overlap: 3D window overlap fraction.
        seed: seed of the whole-volume noise field when no generator is passed (same volume -> same sCT).
        num_samples: k > 1 returns ``(mean, std)`` over k samples (uncertainty map).
        progress: optional ``progress(done, total)`` callback after every whole-volume network evaluation.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` autocast of the network calls (:mod:`drdd_med.runtime`);
            the sampler's arithmetic stays float32.
        channels_last: run 2D networks on channels-last tensors (None: on CPU, where oneDNN's convolutions measured
            1.3-1.6x faster so; the network's weights are converted once per :meth:`sample`).
        noise_field: how the axial slices' noise fields z(x, y) relate in 2D / 2.5D. ``"shared"``: one field for
            every slice, so neighbouring slices start the noise stage from the same noise and agree (no stripes), but
            its texture is extruded along z (streaks in coronal and sagittal views); ``"independent"``: z drawn per
            voxel (slices disagree: stripes); ``"correlated"``: a stationary AR(1) field along z, each slice's z
            unit-variance Gaussian with correlation ``noise_correlation`` to its neighbour's (1 = shared,
            0 = independent). 3D always draws z per voxel (the windows see the whole field).
        noise_correlation: adjacent-slice correlation of ``"correlated"`` (in [0, 1]). ``"correlated"`` with 0.5 is
            the default because it measured best at the same MAE (``benchmarks/noise_field.py``, two quick-start
            models, validation and test): correlation 0 / 0.5 / 0.7 / 1 (shared) gave 133.8 / 133.8 / 133.7 /
            134.3 HU, through-plane ratios (sCT / CT change between adjacent slices, 1 = the CT's) of 0.85 / 0.79 /
            0.76 / 0.71 and stripe ratios of 1.12 / 1.05 / 1.01 / 0.95
            (:func:`~drdd_med.metrics.functional.through_plane_consistency`); its coronal and sagittal views show
            neither the shared field's streaks nor the stripes of independent noise.
        kwargs: other :class:`DRDDInferer` options (``clip``, ``subtract_noise``, ...).

    Example:
        >>> inferer = VolumeDRDDInferer(DRDDScheduler(), mode="2d", slice_batch=16)
        >>> sct = inferer(mr_volume, drdd_net)  # (1, 1, X, Y, Z) in [-1, 1]
    """

    def __init__(
        self,
        scheduler: Any,
        residual_steps: int = 2,
        noise_steps: int = 2,
        eta: float = 0.0,
        mode: str = "2d",
        num_slices: int = 1,
        slice_batch: int | None = None,
        roi_size: tuple[int, int, int] | list[int] = (64, 64, 64),
        sw_batch_size: int = 2,
        overlap: float = 0.25,
        seed: int | None = 0,
        num_samples: int = 1,
        progress: Progress | None = None,
        precision: str = "fp32",
        channels_last: bool | None = None,
        noise_field: str = "correlated",
        noise_correlation: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(scheduler, residual_steps=residual_steps, noise_steps=noise_steps, eta=eta, **kwargs)
        if noise_field not in NOISE_FIELDS:
            raise ValueError(f"noise_field must be one of {NOISE_FIELDS}, got {noise_field!r}.")
        if not 0.0 <= float(noise_correlation) <= 1.0:
            raise ValueError(f"noise_correlation must lie in [0, 1], got {noise_correlation}.")
        self.noise_field = noise_field
        self.noise_correlation = float(noise_correlation)
        mode = str(mode).lower()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if mode == "2d" and num_slices != 1:
            raise ValueError("mode '2d' uses one source slice; use mode '2.5d' for num_slices > 1.")
        self.mode = mode
        self.num_slices = int(num_slices)
        if slice_batch is not None and int(slice_batch) < 1:
            raise ValueError(f"slice_batch must be >= 1 (or None for automatic), got {slice_batch}.")
        if precision not in runtime.PRECISIONS:
            raise ValueError(f"precision must be one of {list(runtime.PRECISIONS)}, got {precision!r}.")
        self.slice_batch = None if slice_batch is None else int(slice_batch)
        self.precision = precision
        self.channels_last = channels_last
        self.roi_size = tuple(int(r) for r in roi_size)
        self.sw_batch_size = int(sw_batch_size)
        self.overlap = float(overlap)
        self.seed = seed
        self.num_samples = int(num_samples)
        self.progress = progress
        self._calls = 0
        self._total = 0
        self._domain: torch.Tensor | None = None

    # ------------------------------------------------------------------ checks
    def validate(self, source: torch.Tensor, network: nn.Module) -> None:
        """A (1, Cs, X, Y, Z) finite source; any size (padding to the network's divisor happens per call)."""
        check_finite("source", source)
        if source.ndim != 5 or source.shape[0] != 1:
            raise ValueError(
                f"VolumeDRDDInferer expects one volume (1, C, X, Y, Z), got shape {tuple(source.shape)}; "
                "run volumes one at a time (batch size 1)."
            )
        expected = getattr(network, "source_channels", None)
        have = source.shape[1] * (self.num_slices if self.mode == "2.5d" else 1)
        if expected is not None and int(expected) != have:
            raise ValueError(
                f"the network expects {expected} source channels but {self.mode} with {source.shape[1]} channel(s) "
                f"and num_slices={self.num_slices} gives {have}; set num_slices to match the trained model."
            )
        check_noise_level(self.scheduler, network, self.allow_noise_level_mismatch)

    def target_channels(self, source: torch.Tensor, network: nn.Module) -> int:
        channels = getattr(network, "target_channels", None)
        return int(channels) if channels is not None else 1

    def initial_noise(
        self, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """z for the whole (1, Ct, X, Y, Z) volume: in 2D / 2.5D one in-plane field repeated along Z (``"shared"``)
        or an AR(1) field along Z (``"correlated"``), else i.i.d. per voxel."""
        if self.noise_field == "independent" or self.mode == "3d":
            return super().initial_noise(shape, generator, device, dtype)
        if self.noise_field == "shared":
            plane = super().initial_noise((*shape[:-1], 1), generator, device, dtype)
            return plane.expand(shape).contiguous()
        rho = self.noise_correlation
        z = super().initial_noise(shape, generator, device, dtype)
        keep = math.sqrt(1.0 - rho * rho)  # z_k = rho z_(k-1) + keep e_k: unit variance, correlation rho
        for k in range(1, shape[-1]):
            z[..., k] = rho * z[..., k - 1] + keep * z[..., k]
        return z

    # ------------------------------------------------------------------ network evaluations over the volume
    def _tick(self) -> None:
        self._calls += 1
        if self.progress is not None:
            self.progress(self._calls, self._total)

    def _uses_channels_last(self, device: torch.device) -> bool:
        return uses_channels_last(self.mode, device, self.channels_last)

    def _format_network(self, network: nn.Module, device: torch.device) -> None:
        """Convert a 2D network's weights to channels-last (once per volume) when its inputs run channels-last."""
        if self._uses_channels_last(device) and isinstance(network, nn.Module):
            network.to(memory_format=torch.channels_last)

    def _evaluate(self, network: nn.Module, x: torch.Tensor, source: torch.Tensor, t_input: torch.Tensor,
                  stage: str) -> torch.Tensor:
        """One network call on a padded batch of state ``x`` and ``source``: the DRDD net's ``stage`` output."""
        if stage == "residual" and self._domain is not None:
            domain = self._domain.to(x.device).reshape(-1)[:1].expand(x.shape[0])
            return network(x, source, t_input[:1].expand(x.shape[0]), stage=stage, domain=domain)
        return network(x, source, t_input[:1].expand(x.shape[0]), stage=stage)

    def _volume_fn(self, network: nn.Module, stage: str) -> ModelFn:
        divisor = int(getattr(network, "divisor", 1))

        settings: dict[torch.device, tuple[bool, str]] = {}  # (channels-last, precision), resolved once per device

        def call(x: torch.Tensor, source: torch.Tensor, t_input: torch.Tensor) -> torch.Tensor:
            if x.device not in settings:
                settings[x.device] = (self._uses_channels_last(x.device),
                                      runtime.resolve_precision(self.precision, x.device))
            channels_last, precision = settings[x.device]
            x_in, crop = _pad_to(x, divisor)
            s_in, _ = _pad_to(source, divisor)
            if channels_last:
                x_in = x_in.contiguous(memory_format=torch.channels_last)
                s_in = s_in.contiguous(memory_format=torch.channels_last)
            with runtime.autocast(x.device, precision):
                out = self._evaluate(network, x_in, s_in, t_input, stage)
            return out.float()[crop]

        stacked: dict[int, torch.Tensor] = {}  # the source is fixed during sampling: build its slice stack once

        def over_slices(x: torch.Tensor, source: torch.Tensor, t_input: torch.Tensor) -> torch.Tensor:
            x_slices = x[0].permute(3, 0, 1, 2)  # (Z, Ct, X, Y)
            key = source.data_ptr()
            if key not in stacked:
                stacked.clear()
                stacked[key] = slice_stack(source, self.num_slices)
            s_slices = stacked[key]
            out = torch.empty_like(x_slices)
            batch = slices_per_call(x_slices.shape[2], x_slices.shape[3], x.device, self.slice_batch)
            for start in range(0, x_slices.shape[0], batch):
                sl = slice(start, start + batch)
                out[sl] = call(x_slices[sl], s_slices[sl], t_input)
            self._tick()
            return out.permute(1, 2, 3, 0)[None]

        def over_windows(x: torch.Tensor, source: torch.Tensor, t_input: torch.Tensor) -> torch.Tensor:
            channels = x.shape[1]
            roi = [min(r, s) for r, s in zip(self.roi_size, x.shape[2:])]
            window = SlidingWindowInferer(
                roi_size=roi, sw_batch_size=self.sw_batch_size, overlap=self.overlap, mode="gaussian",
                padding_mode="replicate", progress=False,
            )
            # x and source travel as one tensor so that every window sees the same region of both
            out = window(torch.cat([x, source], dim=1), lambda xs: call(xs[:, :channels], xs[:, channels:], t_input))
            self._tick()
            return out

        return over_windows if self.mode == "3d" else over_slices

    def residual_fn(self, network: nn.Module) -> ModelFn:
        return self._volume_fn(network, "residual")

    def noise_fn(self, network: nn.Module) -> ModelFn:
        return self._volume_fn(network, "noise")

    # ------------------------------------------------------------------ sampling
    def sample(self, source: torch.Tensor, network: nn.Module, *args: Any, domain: torch.Tensor | None = None,
               **kwargs: Any) -> Any:
        """Sample the whole volume; see :meth:`DRDDInferer.sample`. Seeded by ``seed`` unless a generator is given.

        ``domain``: the (1,) source-domain label of a domain-embedding model, given to every residual-net call.
        """
        self._domain = domain
        if kwargs.get("generator") is None and self.seed is not None:
            kwargs["generator"] = torch.Generator(device="cpu").manual_seed(int(self.seed))
        kwargs.setdefault("num_samples", self.num_samples)
        residual_steps = kwargs.get("residual_steps") or self.residual_steps
        noise_steps = self.noise_steps if kwargs.get("noise_steps") is None else kwargs["noise_steps"]
        self._calls, self._total = 0, (int(residual_steps) + int(noise_steps)) * int(kwargs["num_samples"])
        self._format_network(network, source.device)
        return super().sample(source, network, *args, **kwargs)


class VolumeRegressionInferer(VolumeDRDDInferer):
    """Direct regression of a whole volume ``(1, Cs, X, Y, Z)`` with a 2D, 2.5D or 3D
    :class:`~drdd_med.networks.RegressionNet`: one network evaluation per volume, output clamped to [-1, 1].

    The volume goes through :class:`VolumeDRDDInferer`'s machinery unchanged (slice batches or Gaussian-blended
    sliding windows, padding to the network's divisor, precision autocast, channels-last on CPU); only the network
    call differs: ``network(source)``. A zero tensor of the target's shape stands in for the sampler's state, so the
    slice loop and the windows fill an output of that shape.

    The model is deterministic: there are no sampling steps (``residual_steps == noise_steps == 0``), ``num_samples``
    must be 1 and ``seed`` is accepted and has no effect.

    Args:
        mode: ``"2d"``, ``"2.5d"`` or ``"3d"``.
        num_slices: source slices per 2.5D input (odd).
        num_samples: must be 1.
        clip: clamp the output to [-1, 1].
        kwargs: other :class:`VolumeDRDDInferer` options (``slice_batch``, ``roi_size``, ``sw_batch_size``,
            ``overlap``, ``progress``, ``precision``, ``channels_last``, ``seed``).

    Raises:
        ValueError: ``num_samples != 1``, or a sampling option (``residual_steps``, ``noise_steps``, ``eta``, ...).

    Example:
        >>> inferer = ModelConfig(method="regression", preset="tiny").build_inferer()
        >>> sct = inferer(mr_volume, regression_net)  # (1, 1, X, Y, Z) in [-1, 1]
    """

    _SAMPLING_OPTIONS = ("residual_steps", "noise_steps", "eta", "subtract_noise", "allow_noise_level_mismatch",
                         "noise_field", "noise_correlation")

    def __init__(self, mode: str = "2d", num_slices: int = 1, num_samples: int = 1, clip: bool = True,
                 **kwargs: Any) -> None:
        if int(num_samples) != 1:
            raise ValueError(f"num_samples={num_samples}: a regression model is deterministic and has no samples to "
                             "average or spread over (no uncertainty map); use num_samples=1 (--samples 1).")
        sampling = sorted(set(kwargs) & set(self._SAMPLING_OPTIONS))
        if sampling:
            raise ValueError(f"{sampling}: a regression model has no sampling steps (one network evaluation per "
                             "volume); drop these options (--steps, --noise-correlation) for it.")
        super().__init__(None, residual_steps=0, noise_steps=0, mode=mode, num_slices=num_slices, clip=clip,
                         **kwargs)

    def _evaluate(self, network: nn.Module, x: torch.Tensor, source: torch.Tensor, t_input: Any,
                  stage: str) -> torch.Tensor:
        return network(source)

    @torch.no_grad()
    def sample(self, source: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The (1, Ct, X, Y, Z) prediction in [-1, 1] for a (1, Cs, X, Y, Z) source in [-1, 1].

        Raises:
            ValueError: a sampling argument is passed (there is nothing to sample).
        """
        if args or kwargs:
            raise ValueError(f"a regression model takes no sampling arguments, got {list(args) + sorted(kwargs)}.")
        source = convert_to_tensor(source, track_meta=False)
        self.validate(source, network)
        self._calls, self._total = 0, 1
        self._format_network(network, source.device)
        template = source.new_zeros((1, self.target_channels(source, network), *source.shape[2:]))
        was_training = network.training
        network.eval()
        try:
            out = self._volume_fn(network, "regression")(template, source, None)
        finally:
            network.train(was_training)
        return out.clamp(UNIT_MIN, UNIT_MAX) if self.clip else out
