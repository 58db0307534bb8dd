"""DRDDNet: input routing (unconditional noise net never sees the source), noise level in the checkpoint."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from drdd_med.networks.drdd_net import DRDDNet
from drdd_med.networks.factory import build_drdd_net


class _Recorder(nn.Module):
    def __init__(self, out_channels: int = 1) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, timesteps):
        self.inputs.append((x, timesteps))
        return x[:, : self.out_channels]


@pytest.mark.parametrize("conditioned", [False, True])
def test_routing_of_inputs(conditioned):
    res, noi = _Recorder(), _Recorder()
    net = DRDDNet(res, noi, noise_conditioned=conditioned, target_channels=1)
    x, source, t = torch.zeros(1, 1, 4, 4), torch.ones(1, 3, 4, 4), torch.tensor([5.0])
    net(x, source, t, stage="residual")
    net(x, source, t, stage="noise")
    assert torch.equal(res.inputs[0][0], torch.cat([x, source], 1))
    noise_input = noi.inputs[0][0]
    assert noise_input.shape[1] == (4 if conditioned else 1)
    if not conditioned:  # METHOD.md §10.1 item 6: the source never reaches the unconditional noise net
        assert torch.equal(noise_input, x)
        assert torch.equal(net.predict_noise(x, None, t), x)
    assert torch.equal(res.inputs[0][1], t)


def test_missing_source_and_bad_stage_raise():
    net = DRDDNet(_Recorder(), _Recorder(), noise_conditioned=True)
    with pytest.raises(ValueError, match="source"):
        net(torch.zeros(1, 1, 2, 2), None, torch.zeros(1), stage="noise")
    with pytest.raises(ValueError, match="source"):
        net(torch.zeros(1, 1, 2, 2), None, torch.zeros(1), stage="residual")
    with pytest.raises(ValueError, match="stage"):
        net(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1), stage="both")


def test_noise_level_travels_with_the_checkpoint():
    trained = build_drdd_net(2, 1, 1, preset="tiny", noise_level=0.8)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert float(state["noise_level"]) == pytest.approx(0.8)
    fresh = build_drdd_net(2, 1, 1, preset="tiny")  # default level 1.0
    fresh.load_state_dict(state)
    assert float(fresh.noise_level) == pytest.approx(0.8)
    x = torch.randn(1, 1, 8, 8)
    t = torch.tensor([10.0])
    assert torch.equal(fresh.predict_noise(x, None, t), trained.predict_noise(x, None, t))


def test_stage_parameters_are_disjoint():
    net = build_drdd_net(2, 1, 1, preset="tiny")
    res_ids = {id(p) for p in net.residual_net.parameters()}
    noise_ids = {id(p) for p in net.noise_net.parameters()}
    assert not res_ids & noise_ids
    assert res_ids | noise_ids == {id(p) for p in net.parameters()}


def test_an_x0_residual_net_gives_the_residual_from_the_anchor():
    """``residual_prediction="sample"``: r̂ = anchor(source) - net output; the anchor of a 2.5D stack is its middle
    slice. The default passes the output through."""
    x, t = torch.full((1, 1, 4, 4), 0.25), torch.tensor([999.0])
    source = torch.stack([torch.full((4, 4), v) for v in (-1.0, 0.5, 1.0)])[None]  # 3 slices, middle 0.5
    sample = DRDDNet(_Recorder(), _Recorder(), residual_prediction="sample", target_channels=1)
    torch.testing.assert_close(sample.predict_residual(x, source, t), torch.full_like(x, 0.5 - 0.25))
    plain = DRDDNet(_Recorder(), _Recorder(), target_channels=1)
    torch.testing.assert_close(plain.predict_residual(x, source, t), x)
    with pytest.raises(ValueError, match="residual_prediction"):
        DRDDNet(_Recorder(), _Recorder(), residual_prediction="x0")
