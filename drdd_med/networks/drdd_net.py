"""DRDDNet: the residual network and the noise network of DRDD in one module (one checkpoint)."""

from __future__ import annotations

import torch
from torch import nn

from drdd_med.diffusion.anchor import source_anchor

__all__ = ["DRDDNet", "network_divisor", "unwrap", "RESIDUAL", "NOISE", "RESIDUAL_PREDICTIONS"]

#: ``stage`` values of :meth:`DRDDNet.forward`.
RESIDUAL = "residual"
NOISE = "noise"
#: What the wrapped residual network outputs: the residual itself, or the clean target (``"sample"``), from which
#: :meth:`DRDDNet.predict_residual` forms the residual ``anchor(source) - x̂0``.
RESIDUAL_PREDICTIONS = ("residual", "sample")


def unwrap(network: nn.Module) -> nn.Module:
    """The module inside a ``DataParallel`` / ``DistributedDataParallel`` wrapper, else ``network`` itself."""
    return network.module if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else network


def network_divisor(net: nn.Module) -> int:
    """Required spatial divisibility of a U-Net: ``2 ** (levels - 1)`` for MONAI's DiffusionModelUNet, else its
    ``divisor`` attribute, else 1."""
    if hasattr(net, "divisor"):
        return int(net.divisor)
    levels = getattr(net, "block_out_channels", None)
    return 2 ** (len(levels) - 1) if levels else 1


class DRDDNet(nn.Module):
    """Holds DRDD's residual network R_θ and noise network E_φ (METHOD.md §4).

    - Residual net input: ``cat([x_t, source], dim=1)``; it predicts ``anchor(source) - x0``.
    - Noise net input: ``x_t`` (unconditional, the paper's default, trainable on target images alone) or
      ``cat([x_t, source], dim=1)`` when ``noise_conditioned`` (the reference code's variant); it predicts ε.

    Both wrapped networks are called ``net(x, timesteps=t)`` with ``t`` a (B,) float tensor of time inputs.
    The residual stage's noise level is kept in the persistent buffer ``noise_level`` so that it travels with the
    checkpoint; :class:`~drdd_med.inferers.DRDDInferer` refuses to sample with a scheduler of another level
    (METHOD.md §6.3).

    Args:
        residual_net: network mapping (B, Ct + Cs, *spatial) -> (B, Ct, *spatial).
        noise_net: network mapping (B, Ct [+ Cs], *spatial) -> (B, Ct, *spatial).
        noise_conditioned: whether the noise net also sees the source.
        noise_level: the scheduler noise level the residual net is (to be) trained with.
        divisor: required spatial divisibility; inferred from the networks when None.
        source_channels: Cs; inferred from ``residual_net.in_channels`` when None and available.
        target_channels: Ct; inferred from ``residual_net.out_channels`` when None and available.
        residual_prediction: ``"residual"`` (the network outputs ``anchor(source) - x0``, the paper) or
            ``"sample"`` (it outputs x0 and :meth:`predict_residual` subtracts it from the anchor). Both give the
            sampler the same r̂ and the same L1 training loss; they differ in what the network must learn to
            produce. A residual output must reproduce the source's own texture (MR noise and bias field) to cancel
            it, which a U-Net without an input-to-output skip learns slowly; an x0 output need not.
    """

    def __init__(
        self,
        residual_net: nn.Module,
        noise_net: nn.Module,
        noise_conditioned: bool = False,
        noise_level: float = 1.0,
        divisor: int | None = None,
        source_channels: int | None = None,
        target_channels: int | None = None,
        residual_prediction: str = "residual",
    ) -> None:
        super().__init__()
        if residual_prediction not in RESIDUAL_PREDICTIONS:
            raise ValueError(f"residual_prediction must be one of {list(RESIDUAL_PREDICTIONS)}, "
                             f"got {residual_prediction!r}.")
        self.residual_prediction = residual_prediction
        self.residual_net = residual_net
        self.noise_net = noise_net
        self.noise_conditioned = bool(noise_conditioned)
        self.register_buffer("noise_level", torch.tensor(float(noise_level), dtype=torch.float64))
        if divisor is None:
            divisor = max(network_divisor(residual_net), network_divisor(noise_net))
        self.divisor = int(divisor)
        if target_channels is None:
            target_channels = getattr(residual_net, "out_channels", None)
        if source_channels is None and target_channels is not None and hasattr(residual_net, "in_channels"):
            source_channels = int(residual_net.in_channels) - int(target_channels)
        self.target_channels = None if target_channels is None else int(target_channels)
        self.source_channels = None if source_channels is None else int(source_channels)

    def predict_residual(self, x: torch.Tensor, source: torch.Tensor, t_input: torch.Tensor,
                         domain: torch.Tensor | None = None) -> torch.Tensor:
        """r̂ = R_θ(cat[x_t, source], 1000·ᾱ_t): (B, Ct, *spatial) predicted ``anchor(source) - x0``.

        ``domain``: (B,) source-domain class labels for a residual net built with ``num_class_embeds``.
        """
        inputs = torch.cat([x, source], dim=1)
        if domain is None:
            out = self.residual_net(inputs, timesteps=t_input)
        else:
            out = self.residual_net(inputs, timesteps=t_input, class_labels=domain)
        if self.residual_prediction == "sample":  # in float32 at least: a bf16 difference would round the residual
            dtype = torch.promote_types(out.dtype, torch.float32)
            return source_anchor(source, out.shape[1]).to(dtype) - out.to(dtype)
        return out

    def predict_noise(self, x: torch.Tensor, source: torch.Tensor | None, t_input: torch.Tensor) -> torch.Tensor:
        """ε̂ = E_φ(x_t [, source], 1000·β̄_t/noise_level); ``source`` is ignored unless ``noise_conditioned``."""
        if self.noise_conditioned:
            if source is None:
                raise ValueError("this DRDDNet has a source-conditioned noise net: pass the source image.")
            x = torch.cat([x, source], dim=1)
        return self.noise_net(x, timesteps=t_input)

    def forward(
        self, x: torch.Tensor, source: torch.Tensor | None, timesteps: torch.Tensor, stage: str = NOISE,
        domain: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Call one stage's network (through ``forward`` so that DDP wrappers see the call).

        Args:
            x: (B, Ct, *spatial) diffusion state.
            source: (B, Cs, *spatial) source, or None for an unconditional noise net.
            timesteps: (B,) float network time inputs.
            stage: ``"residual"`` or ``"noise"``.
            domain: (B,) source-domain labels of a domain-embedding residual net (the noise net never sees them).
        """
        if stage == RESIDUAL:
            if source is None:
                raise ValueError("the residual network needs the source image.")
            return self.predict_residual(x, source, timesteps, domain)
        if stage == NOISE:
            return self.predict_noise(x, source, timesteps)
        raise ValueError(f"stage must be {RESIDUAL!r} or {NOISE!r}, got {stage!r}.")

    def extra_repr(self) -> str:
        level = float(self.noise_level)
        return (f"noise_conditioned={self.noise_conditioned}, noise_level={level}, divisor={self.divisor}, "
                f"residual_prediction={self.residual_prediction!r}")
