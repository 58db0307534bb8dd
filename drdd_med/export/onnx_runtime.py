"""OnnxDRDDNet: DRDD's two exported ONNX networks behind :class:`~drdd_med.networks.DRDDNet`'s call convention.

It lets the torch samplers and inferers (:class:`~drdd_med.inferers.volume.VolumeDRDDInferer`, ...) run the
networks with ONNX Runtime unchanged: ``forward(x, source, timesteps, stage)``, the attributes ``divisor``,
``noise_level`` (float64 0-dim buffer), ``noise_conditioned``, ``source_channels`` and ``target_channels``, and
``eval()`` / ``train()`` / ``to()`` that change nothing the sessions use. Inputs are torch tensors on any device
and dtype; they are run as float32 on the CPU and the outputs are returned on the input's device and dtype.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from drdd_med.export.onnx import FILE_NAMES, parse_metadata, require
from drdd_med.networks.drdd_net import NOISE, RESIDUAL, DRDDNet

__all__ = ["OnnxDRDDNet"]

# metadata entries both files must agree on
_SHARED = ("spatial_dims", "source_channels", "target_channels", "divisor", "noise_level", "noise_conditioned",
           "residual_prediction")


class _OnnxStage(nn.Module):
    """One exported network as a module called ``net(x, timesteps=t)``, like the torch networks of a DRDDNet."""

    def __init__(self, session: Any, path: Path, meta: dict[str, Any]) -> None:
        super().__init__()
        self.session, self.path, self.stage = session, path, meta["stage"]
        self.spatial_dims, self.in_channels = int(meta["spatial_dims"]), int(meta["in_channels"])
        self.divisor = int(meta["divisor"])

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """(B, C_in, *spatial) input and (B,) float time inputs (one value is broadcast) -> (B, Ct, *spatial).

        The result is on ``x``'s device and dtype; spatial sizes must be multiples of ``divisor``.
        """
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"the ONNX {self.stage} network expects (B, {self.in_channels}, "
                             f"{', '.join(['*'] * self.spatial_dims)}) inputs, got shape {tuple(x.shape)}.")
        if any(s % self.divisor for s in x.shape[2:]):
            raise ValueError(f"spatial sizes {tuple(x.shape[2:])} must be multiples of the network's divisor "
                             f"{self.divisor}; pad the input.")
        t = torch.as_tensor(timesteps).reshape(-1)
        if t.numel() == 1:
            t = t.expand(x.shape[0])
        if t.numel() != x.shape[0]:
            raise ValueError(f"timesteps must hold one value per batch item ({x.shape[0]}), got {t.numel()}.")
        (y,) = self.session.run(["y"], {"x": _numpy(x), "t": _numpy(t)})
        return torch.from_numpy(y).to(device=x.device, dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"path={self.path}"


class OnnxDRDDNet(DRDDNet):
    """DRDD's residual and noise networks as two ONNX Runtime sessions (files written by ``export_onnx``).

    It is a :class:`DRDDNet` whose ``residual_net`` and ``noise_net`` run the sessions, so ``forward`` (which
    network gets the source) is DRDDNet's own. ``metadata`` holds each file's parsed metadata.

    Args:
        residual_path: ``residual.onnx``.
        noise_path: ``noise.onnx``.
        intra_op_num_threads: ONNX Runtime threads per network call (None: ONNX Runtime's default, one per
            physical core).
        providers: ONNX Runtime execution providers (default ``["CPUExecutionProvider"]``).

    Raises:
        ImportError: ``onnxruntime`` is not installed.
        ValueError: a file is not a drdd_med ONNX network, holds the other stage, or the two files disagree.

    Example:
        >>> net = OnnxDRDDNet.from_dir("onnx", intra_op_num_threads=2)
        >>> sct = model_config.build_inferer()(mr_volume, net)
    """

    def __init__(
        self,
        residual_path: str | os.PathLike,
        noise_path: str | os.PathLike,
        intra_op_num_threads: int | None = None,
        providers: list[str] | None = None,
    ) -> None:
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if intra_op_num_threads:
            options.intra_op_num_threads = int(intra_op_num_threads)
        paths = {RESIDUAL: Path(residual_path), NOISE: Path(noise_path)}
        nets: dict[str, _OnnxStage] = {}
        meta: dict[str, dict[str, Any]] = {}
        for stage, path in paths.items():
            if not path.is_file():
                raise ValueError(f"{path}: no such ONNX file; export the bundle with 'drdd-med export'.")
            session = ort.InferenceSession(os.fspath(path), options,
                                           providers=list(providers or ["CPUExecutionProvider"]))
            try:
                meta[stage] = parse_metadata(session.get_modelmeta().custom_metadata_map)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from exc
            if meta[stage]["stage"] != stage:
                raise ValueError(f"{path}: holds the {meta[stage]['stage']} network, not the {stage} network.")
            nets[stage] = _OnnxStage(session, path, meta[stage])
        differ = [k for k in _SHARED if meta[RESIDUAL][k] != meta[NOISE][k]]
        if differ:
            raise ValueError(f"{paths[RESIDUAL]} and {paths[NOISE]} come from different models "
                             f"(they differ in {differ}); export both networks of one model together.")
        shared = meta[RESIDUAL]
        super().__init__(nets[RESIDUAL], nets[NOISE], noise_conditioned=bool(shared["noise_conditioned"]),
                         noise_level=float(shared["noise_level"]), divisor=int(shared["divisor"]),
                         source_channels=int(shared["source_channels"]),
                         target_channels=int(shared["target_channels"]),
                         residual_prediction=str(shared["residual_prediction"]))
        self.metadata = meta
        self.spatial_dims = int(shared["spatial_dims"])

    @classmethod
    def from_dir(cls, folder: str | os.PathLike, **kwargs: Any) -> OnnxDRDDNet:
        """Load ``<folder>/residual.onnx`` and ``<folder>/noise.onnx`` (``kwargs``: as for the constructor)."""
        folder = Path(folder)
        return cls(folder / FILE_NAMES[RESIDUAL], folder / FILE_NAMES[NOISE], **kwargs)

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> OnnxDRDDNet:
        """``to()``, ``cuda()``, ``float()``, ... change nothing: the sessions own their weights and device."""
        return self


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A C-contiguous float32 CPU array (plain tensor: MONAI MetaTensors and channels-last inputs welcome)."""
    plain = tensor.detach().as_subclass(torch.Tensor).to(device="cpu", dtype=torch.float32)
    return np.ascontiguousarray(plain.numpy())
