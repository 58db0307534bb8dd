"""DRDDScheduler: the coefficients and update rules of both DRDD stages (METHOD.md §2-§3, §6).

Variable -> symbol table (the paper's notation; METHOD.md §1):

==================  =========================================================
``abar``            DDPM cumulative product ā_t = prod_{i<=t} (1 - b_i)
``noise_coef``      β̄_t = noise_level * sqrt(1 - ā_t), noise-stage std
``residual_coef``   ᾱ_t = 1 - sqrt(ā_t) (optionally / ᾱ_{T-1}), residual fraction
``sigma_n``         β̄_{T-1}: the fixed noise of the residual stage and the sampler's starting std
``train_noise_coef`` noise_sigma_max * sqrt(1 - ā_t): the noise stage's training stds (= ``noise_coef`` by default)
``noise_prediction`` what the noise net outputs: ε (``"epsilon"``) or the clean image x0 (``"sample"``)
``t``, ``s``        current and next timestep of a sampling step; ``s = -1`` is the clean image
==================  =========================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.schedulers import Scheduler
from monai.utils import unsqueeze_right

from drdd_med.diffusion.anchor import source_anchor

__all__ = ["DRDDScheduler", "NOISE_PREDICTIONS", "NOISE_TIME_INPUTS", "RESIDUAL_SCHEDULES", "TIME_SCALE",
           "TRAIN_TIMESTEPS", "check_eta", "check_timesteps", "sampling_problem", "training_timesteps"]

#: Accepted values of ``residual_schedule``.
RESIDUAL_SCHEDULES = ("normalized", "code")
#: Accepted values of ``noise_time_input``: ``"level"`` 1000·β̄_t/noise_level (reference code), ``"absolute"``
#: 1000·σ (METHOD.md §6.3).
NOISE_TIME_INPUTS = ("level", "absolute")
#: Accepted values of ``noise_prediction`` (MONAI's ``prediction_type`` names): the noise net predicts ε
#: (``"epsilon"``, the paper) or the clean image x0 (``"sample"``).
NOISE_PREDICTIONS = ("epsilon", "sample")
#: How a stage draws its training timesteps: from all of 0 ... T-1, or only from the ones its sampler visits.
TRAIN_TIMESTEPS = ("uniform", "sampler")
#: The networks' time inputs are ``TIME_SCALE * coefficient`` (reference-code convention, METHOD.md §2).
TIME_SCALE = 1000.0


def check_eta(eta: float) -> float:
    """``eta`` as a float; ValueError unless it is in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like variance)."""
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:  # also refuses NaN
        raise ValueError(f"eta={eta} must be in [0, 1]: 0 samples deterministically (DDIM), 1 with the full "
                         "DDPM-like variance (METHOD.md §6.1).")
    return eta


def check_timesteps(timesteps: Sequence[int], num_train_timesteps: int) -> tuple[int, ...]:
    """``timesteps`` as a sorted tuple of distinct ints; ValueError when empty or outside ``[0, T)``."""
    values = tuple(sorted({int(t) for t in timesteps}))
    if not values or values[0] < 0 or values[-1] >= int(num_train_timesteps):
        raise ValueError(f"training timesteps {list(timesteps)} must be a non-empty set of integers in "
                         f"[0, {int(num_train_timesteps)}).")
    return values


def sampling_problem(residual_steps: int, noise_steps: int, num_train_timesteps: int = 1000) -> str | None:
    """Why DRDD cannot sample with these step counts, or None: residual steps in [1, T], noise steps in [0, T].

    0 noise steps returns the hand-over state ``x0 + sigma_n z`` (the no-denoiser ablation subtracts the noise).
    """
    t = int(num_train_timesteps)
    if not 1 <= residual_steps <= t:
        return f"residual_steps={residual_steps}: the residual stage needs at least one step and at most T={t}"
    if not 0 <= noise_steps <= t:
        return f"noise_steps={noise_steps}: the noise stage takes 0 to T={t} steps"
    return None


class DRDDScheduler(Scheduler):
    """Coefficients, forward processes and reverse steps of Decoupled Residual Denoising Diffusion.

    Both stages share one DDPM beta schedule (``linear_beta`` 1e-4..0.02 by default, as the reference code):

    - noise stage (Eq. 3 of the paper, variance exploding): ``x_t = x0 + noise_coef[t] * noise``;
    - residual stage at the fixed end-of-noise level ``sigma_n = noise_coef[T-1]``:
      ``x_t = x0 + sigma_n * noise + residual_coef[t] * (source - x0)``.

    ``residual_schedule="normalized"`` (default) divides ᾱ_t by ᾱ_{T-1} so that ``residual_coef[T-1] == 1``, the
    paper's condition; the sampler's start ``source + sigma_n * z`` is then exactly the residual stage's endpoint.
    ``"code"`` keeps the reference code's raw values (ᾱ_{T-1} = 0.99365), which leaves 0.635 % of the residual in
    the output of a perfect model (about 10 HU in MR->CT; METHOD.md §6.4).

    Args:
        num_train_timesteps: T, the number of training steps of each stage.
        noise_level: scale of the noise schedule; ``sigma_n = noise_level * sqrt(1 - ā_{T-1})`` (≈ noise_level).
            Values above 1 are allowed (METHOD.md §6.3).
        noise_time_input: the noise net's time input. ``"level"`` (reference code): ``1000 * β̄_t / noise_level``,
            which ties a denoiser to the one noise level it was trained at. ``"absolute"`` (METHOD.md §6.3):
            ``1000 * σ`` with σ the state's noise std, so a denoiser trained over σ in (0, ``noise_sigma_max``]
            serves every noise level up to it (one CT prior, trained once with ``train_noise``, reused).
        noise_sigma_max: top of the noise stage's *training* range, ``noise_sigma_max * sqrt(1 - ā_t)``
            (``"absolute"`` only; None: ``noise_level``). Sampling always runs the ``noise_level`` schedule.
        residual_schedule: ``"normalized"`` or ``"code"`` (see above).
        noise_prediction: the noise net's output, ``"epsilon"`` (ε̂, the paper's Eq. 9) or ``"sample"`` (x̂0, the
            clean image). The DDIM noise step takes either (:meth:`noise_epsilon` converts x̂0 to ε̂), so the
            sampler is the same; only the training target (:meth:`noise_target`) and what the loss weighs differ.
            On the phantom (MR-conditioned denoiser at noise level 0.2, L1 loss, 1600 iterations, the same residual
            network) x0-prediction scored 131.5 HU against 127.4 HU for ε (``benchmarks/results/claims.md``), so
            ``"epsilon"`` stays the default.
        schedule: name of a MONAI ``NoiseSchedules`` beta schedule.
        schedule_args: keyword arguments of the beta schedule (e.g. ``beta_start``, ``beta_end``).

    Example:
        >>> sched = DRDDScheduler()
        >>> round(float(sched.noise_coef[499]), 4), float(sched.residual_coef[-1])
        (0.9599, 1.0)
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        noise_level: float = 1.0,
        residual_schedule: str = "normalized",
        schedule: str = "linear_beta",
        noise_time_input: str = "level",
        noise_sigma_max: float | None = None,
        noise_prediction: str = "epsilon",
        **schedule_args,
    ) -> None:
        if int(num_train_timesteps) < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}.")
        if not float(noise_level) > 0:
            raise ValueError(f"noise_level must be > 0, got {noise_level}; 1.0 is the paper's default.")
        if residual_schedule not in RESIDUAL_SCHEDULES:
            raise ValueError(f"residual_schedule must be one of {RESIDUAL_SCHEDULES}, got {residual_schedule!r}.")
        if noise_time_input not in NOISE_TIME_INPUTS:
            raise ValueError(f"noise_time_input must be one of {NOISE_TIME_INPUTS}, got {noise_time_input!r}.")
        if noise_prediction not in NOISE_PREDICTIONS:
            raise ValueError(f"noise_prediction must be one of {NOISE_PREDICTIONS}, got {noise_prediction!r}.")
        sigma_max = float(noise_level if noise_sigma_max is None else noise_sigma_max)
        if noise_time_input == "level" and sigma_max != float(noise_level):
            raise ValueError(f"noise_sigma_max={noise_sigma_max} needs noise_time_input='absolute': a 'level' time "
                             f"input cannot tell noise levels apart, so its denoiser trains at noise_level only.")
        if not sigma_max >= float(noise_level):
            raise ValueError(f"noise_sigma_max={noise_sigma_max} is below noise_level={noise_level}: the denoiser "
                             "would sample at noise it never saw; train it with noise_sigma_max >= noise_level.")
        super().__init__(num_train_timesteps=num_train_timesteps, schedule=schedule, **schedule_args)
        self.noise_level = float(noise_level)
        self.residual_schedule = residual_schedule
        self.noise_time_input = noise_time_input
        self.noise_sigma_max = sigma_max
        self.noise_prediction = noise_prediction
        self.time_scale = TIME_SCALE

        # Coefficients are computed once, in float64, from the (float32) MONAI betas (METHOD.md §2).
        abar = torch.cumprod(1.0 - self.betas.double(), dim=0)
        noise_coef = self.noise_level * torch.sqrt(1.0 - abar)
        residual_coef = 1.0 - torch.sqrt(abar)
        if residual_schedule == "normalized":
            residual_coef = residual_coef / residual_coef[-1]
        self._noise_coef64 = noise_coef
        self._residual_coef64 = residual_coef
        self.register_buffer("abar", abar.float(), persistent=False)
        self.register_buffer("noise_coef", noise_coef.float(), persistent=False)
        train_noise_coef = noise_coef * (sigma_max / self.noise_level)
        self.register_buffer("train_noise_coef", train_noise_coef.float(), persistent=False)
        self.register_buffer("residual_coef", residual_coef.float(), persistent=False)

    # ------------------------------------------------------------------ coefficients and time inputs
    @property
    def sigma_n(self) -> float:
        """The residual stage's fixed noise std β̄_{T-1}, which is also the sampler's starting noise std."""
        return float(self._noise_coef64[-1])

    def noise_coef_at(self, t: int) -> float:
        """β̄_t as a Python float; ``t = -1`` is the clean image (0)."""
        return 0.0 if t < 0 else float(self._noise_coef64[t])

    def residual_coef_at(self, t: int) -> float:
        """ᾱ_t as a Python float; ``t = -1`` is the clean image (0)."""
        return 0.0 if t < 0 else float(self._residual_coef64[t])

    def time_input_residual(self, t: torch.Tensor | int) -> torch.Tensor:
        """Residual-net time input ``1000 * residual_coef[t]`` (float32 tensor shaped like ``t``)."""
        t = torch.as_tensor(t, device=self.residual_coef.device)
        return self.time_scale * self.residual_coef[t]

    def noise_time_input_of(self, sigma: torch.Tensor) -> torch.Tensor:
        """The noise net's time input for noise std ``sigma``: ``1000 * sigma`` (absolute) or ``/ noise_level``."""
        return self.time_scale * (sigma if self.noise_time_input == "absolute" else sigma / self.noise_level)

    def time_input_noise(self, t: torch.Tensor | int) -> torch.Tensor:
        """Noise-net time input of sampling step ``t`` (std ``noise_coef[t]``); "level": 1000·β̄_t / noise_level."""
        t = torch.as_tensor(t, device=self.noise_coef.device)
        return self.noise_time_input_of(self.noise_coef[t])

    def time_input_noise_train(self, t: torch.Tensor | int) -> torch.Tensor:
        """Noise-net time input of training step ``t`` (std ``train_noise_coef[t]``, see :meth:`add_noise`)."""
        t = torch.as_tensor(t, device=self.train_noise_coef.device)
        return self.noise_time_input_of(self.train_noise_coef[t])

    def noise_target(self, original_samples: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The noise net's training target: ``noise`` (ε) or ``original_samples`` (x0), by ``noise_prediction``."""
        return original_samples if self.noise_prediction == "sample" else noise

    def noise_epsilon(self, noise_pred: torch.Tensor, t: int, sample: torch.Tensor) -> torch.Tensor:
        """ε̂ from the noise net's output at step ``t``: itself, or ``(x_t - x̂0) / β̄_t`` for ``"sample"``."""
        if self.noise_prediction == "epsilon":
            return noise_pred
        return (sample - noise_pred) / self.noise_coef_at(t)

    # ------------------------------------------------------------------ forward processes
    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Noise-stage training forward process ``x0 + train_noise_coef[t] * noise`` (variance exploding; METHOD.md
        §3.1); ``train_noise_coef`` is ``noise_coef`` unless ``noise_sigma_max`` widens the range.

        Args:
            original_samples: x0, (B, C, *spatial) float in [-1, 1].
            noise: ε, same shape, standard Gaussian.
            timesteps: (B,) integer timesteps in [0, T).

        Returns:
            x_t, same shape as ``original_samples``.
        """
        coef = self._gather(self.train_noise_coef, timesteps, original_samples)
        return original_samples + coef * noise

    def add_residual(
        self, original_samples: torch.Tensor, source: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """Residual-stage forward process ``x0 + sigma_n * noise + residual_coef[t] * (anchor(source) - x0)``.

        Args:
            original_samples: x0, (B, Ct, *spatial) float in [-1, 1].
            source: (B, Cs, *spatial) source image; reduced to its anchor channels (``source_anchor``).
            noise: ε, same shape as x0, standard Gaussian (fixed level ``sigma_n``; METHOD.md §3.2).
            timesteps: (B,) integer timesteps in [0, T).

        Returns:
            x_t, same shape as ``original_samples``.
        """
        anchor = source_anchor(source, original_samples.shape[1])
        coef = self._gather(self.residual_coef, timesteps, original_samples)
        return original_samples + self.sigma_n * noise + coef * (anchor - original_samples)

    # ------------------------------------------------------------------ sampling
    def timesteps_for(self, num_steps: int) -> list[int]:
        """The DDIM sub-sequence ``int(linspace(-1, T-1, n+1))`` reversed, e.g. n=2 -> [999, 499, -1].

        Args:
            num_steps: number of reverse steps n, 1 <= n <= T.

        Returns:
            n + 1 timesteps from T-1 down to -1 (the clean image).
        """
        if not 1 <= int(num_steps) <= self.num_train_timesteps:
            raise ValueError(f"number of steps must be in [1, {self.num_train_timesteps}], got {num_steps}.")
        grid = torch.linspace(-1, self.num_train_timesteps - 1, int(num_steps) + 1, dtype=torch.float64)
        return [int(v) for v in grid.flip(0)]

    def timestep_pairs(self, num_steps: int) -> list[tuple[int, int]]:
        """Consecutive (t, s) pairs of ``timesteps_for(num_steps)``."""
        ts = self.timesteps_for(num_steps)
        return list(zip(ts[:-1], ts[1:]))

    def step_residual(self, residual_pred: torch.Tensor, t: int, s: int, sample: torch.Tensor) -> torch.Tensor:
        """Deterministic residual step ``x - (ᾱ_t - ᾱ_s) * r̂`` (Alg. 2; the noise is left untouched).

        Args:
            residual_pred: r̂, predicted ``anchor(source) - x0``, shaped like ``sample``.
            t: current timestep.
            s: next timestep (< t; -1 for the last step, which makes it an x0-prediction of the residual).
            sample: current state x_t.
        """
        return sample - (self.residual_coef_at(t) - self.residual_coef_at(s)) * residual_pred

    def noise_step_sigma(self, t: int, s: int, eta: float) -> float:
        """Std of the fresh noise of a noise step: ``sqrt(eta * (β̄_t² - β̄_s²) * β̄_s² / β̄_t²)``.

        The paper puts ``eta`` on the variance (METHOD.md §6.1); it equals standard DDIM for eta in {0, 1}.

        Raises:
            ValueError: ``eta`` outside [0, 1].
        """
        b_t, b_s = self.noise_coef_at(t), self.noise_coef_at(s)
        return (check_eta(eta) * (b_t**2 - b_s**2) * b_s**2 / b_t**2) ** 0.5

    def step_noise(
        self,
        noise_pred: torch.Tensor,
        t: int,
        s: int,
        sample: torch.Tensor,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """DDIM noise step ``x - (β̄_t - sqrt(β̄_s² - σ²)) * ε̂ + σ * ξ`` (Alg. 2; eta = 0 is deterministic).

        Args:
            noise_pred: the noise net's output, shaped like ``sample``: ε̂, or x̂0 when ``noise_prediction`` is
                ``"sample"`` (converted by :meth:`noise_epsilon`; the last step, s = -1, then returns x̂0).
            t: current timestep.
            s: next timestep (< t; -1 for the last step).
            sample: current state x_t.
            eta: stochasticity in [0, 1].
            generator: random generator for ξ (only used when eta > 0).
        """
        sigma = self.noise_step_sigma(t, s, eta)
        noise_pred = self.noise_epsilon(noise_pred, t, sample)
        b_t, b_s = self.noise_coef_at(t), self.noise_coef_at(s)
        out = sample - (b_t - (b_s**2 - sigma**2) ** 0.5) * noise_pred
        if sigma > 0:
            gen_device = generator.device if generator is not None else sample.device
            xi = torch.randn(sample.shape, generator=generator, device=gen_device, dtype=sample.dtype)
            out = out + sigma * xi.to(sample.device)
        return out

    @staticmethod
    def _gather(coef: torch.Tensor, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        timesteps = torch.as_tensor(timesteps, device=coef.device).long()
        if timesteps.ndim != 1 or timesteps.shape[0] not in (1, like.shape[0]):
            raise ValueError(
                f"timesteps must be 1-D with 1 or B={like.shape[0]} entries, got {tuple(timesteps.shape)}."
            )
        values = coef[timesteps].to(device=like.device, dtype=like.dtype)
        return unsqueeze_right(values, like.ndim)


def training_timesteps(scheduler: DRDDScheduler, mode: str, num_steps: int) -> tuple[int, ...] | None:
    """The timesteps a stage trains on: None (all of ``0 ... T-1``, the paper) for ``"uniform"``; the ``t`` of each
    of the sampler's ``num_steps`` steps for ``"sampler"``.

    The paper trains each network over every t, but a 2-step sampler asks the residual net about two of them
    (t = 999 and 499): uniform training spends most iterations on states the sampler never visits. On the phantom
    (1600 iterations per stage, test split, MSE denoiser loss) one residual step trained at t = 999 alone measured
    131.4 HU against 148.4 HU for the paper's uniform training with 2 steps (2 seeds each), and 2 steps trained at
    their two timesteps 138.0 HU (``benchmarks/results/claims.md``), hence the bundle's default. A network trained
    with ``"sampler"`` serves only that step count; ``model_config.json`` records it and
    :meth:`~drdd_med.workflows.model_config.ModelConfig.build_inferer` refuses other counts.
    """
    if mode not in TRAIN_TIMESTEPS:
        raise ValueError(f"training timesteps must be one of {TRAIN_TIMESTEPS}, got {mode!r}.")
    if mode == "uniform":
        return None
    return tuple(sorted(t for t, _ in scheduler.timestep_pairs(int(num_steps))))
