"""drdd_med.runtime: precision detection and switch, autocast, thread count; both precision paths end to end."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from drdd_med import runtime
from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.engines import NoiseStageInferer, ResidualStageInferer
from drdd_med.inferers.volume import VolumeDRDDInferer
from drdd_med.networks.factory import build_drdd_net

NO_BF16 = frozenset({"fpu", "sse2", "avx2", "avx512f"})
WITH_BF16 = NO_BF16 | {"avx512_bf16"}


@pytest.fixture
def cpu_flags(monkeypatch):
    """``cpu_flags(flags)`` makes the runtime see a CPU with exactly these flags."""

    def set_flags(flags: frozenset[str]) -> None:
        monkeypatch.setattr(runtime, "_cpu_flags", lambda: flags)

    return set_flags


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert runtime._cpu_flags.__wrapped__(str(info)) == {"fpu", "avx512f", "amx_bf16", "amx_tile"}
    assert runtime._cpu_flags.__wrapped__(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize("flags, expected", [(WITH_BF16, "bf16"), (NO_BF16 | {"amx_bf16"}, "bf16"), (NO_BF16, "fp32")])
def test_auto_precision_follows_the_cpu(cpu_flags, flags, expected):
    cpu_flags(flags)
    assert runtime.resolve_precision("auto", "cpu") == expected


def test_forced_precisions(cpu_flags, caplog):
    cpu_flags(NO_BF16)
    assert runtime.resolve_precision("fp32", "cpu") == "fp32"
    with caplog.at_level(logging.WARNING, logger="drdd_med.runtime"):
        assert runtime.resolve_precision("BF16", "cpu") == "bf16"
    assert "emulated" in caplog.text
    cpu_flags(WITH_BF16)
    assert runtime.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        runtime.resolve_precision("fp16", "cpu")


def test_autocast_switches_the_matmul_dtype():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with runtime.autocast("cpu", "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with runtime.autocast("cpu", "fp32"):
        assert (a @ b).dtype == torch.float32


@pytest.mark.parametrize("load, expected", [(0.0, 4), (0.9, 4), (1.2, 3), (3.5, 1), (9.0, 1)])
def test_automatic_threads_leave_busy_cpus_alone(monkeypatch, load, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0))
    assert runtime.available_cpus() == 4
    assert runtime.idle_cpus() == expected


def test_threads(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    before = torch.get_num_threads()
    try:
        assert runtime.configure_threads(None) == len(os.sched_getaffinity(0)) == torch.get_num_threads()
        assert runtime.configure_threads(1) == 1 == torch.get_num_threads()
        with pytest.raises(ValueError, match="threads must be >= 0"):
            runtime.configure_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_setup_logs_the_choice(cpu_flags, caplog):
    cpu_flags(NO_BF16)
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="drdd_med.runtime"):
            assert runtime.setup("cpu", "auto", 1) == "fp32"
    finally:
        torch.set_num_threads(before)
    assert "precision fp32" in caplog.text and "1 thread(s)" in caplog.text and "not native" in caplog.text


# ----------------------------------------------------------------------------------------------- both paths run
def _net(seed: int = 0):
    """A tiny DRDDNet with random weights everywhere (MONAI zero-initialises the output convolution)."""
    torch.manual_seed(seed)
    net = build_drdd_net(2, 1, 1, preset="tiny", noise_level=0.5).eval()
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return net


def test_volume_sampling_in_both_precisions():
    net, volume = _net(), torch.rand(1, 1, 16, 16, 6) * 2 - 1
    outs = {}
    for precision in ("fp32", "bf16"):
        inferer = VolumeDRDDInferer(DRDDScheduler(noise_level=0.5), mode="2d", precision=precision, seed=0)
        outs[precision] = inferer(volume, net)
        assert outs[precision].dtype == torch.float32 and outs[precision].shape == volume.shape
    difference = (outs["bf16"] - outs["fp32"]).abs()
    assert 0 < difference.max() < 0.1  # bf16 really ran (not identical) and stays close
    with pytest.raises(ValueError, match="precision must be one of"):
        VolumeDRDDInferer(DRDDScheduler(noise_level=0.5), precision="half")


@pytest.mark.parametrize("inferer_cls", [NoiseStageInferer, ResidualStageInferer])
def test_stage_inferers_train_in_both_precisions(inferer_cls):
    scheduler = DRDDScheduler(noise_level=0.5)
    x0, source = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    noise, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 700])
    preds = {}
    for precision in ("fp32", "bf16"):
        net = _net()
        pred = inferer_cls(scheduler, precision)(x0, net, noise=noise, timesteps=t, source=source)
        assert pred.dtype == torch.float32
        pred.square().mean().backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
        preds[precision] = pred.detach()
    assert 0 < (preds["bf16"] - preds["fp32"]).abs().max() < 0.1


def test_predictor_resolves_auto_for_the_cpu(cpu_flags, make_tiny_bundle):
    from drdd_med.workflows.predictor import SCTPredictor

    bundle = make_tiny_bundle()
    before = torch.get_num_threads()
    try:
        cpu_flags(NO_BF16)
        predictor = SCTPredictor.from_bundle(bundle, device="cpu", threads=1)
        assert predictor.precision == "fp32" and predictor.inferer.precision == "fp32"
        assert torch.get_num_threads() == 1
        cpu_flags(WITH_BF16)
        assert SCTPredictor.from_bundle(bundle, device="cpu", threads=1).inferer.precision == "bf16"
    finally:
        torch.set_num_threads(before)
