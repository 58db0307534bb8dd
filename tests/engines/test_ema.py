"""ModelEMA / EMAHandler: the EMA formula, the update interval and a weights_only checkpoint round trip."""

from __future__ import annotations

import io

import pytest
import torch
from ignite.engine import Engine

from drdd_med.engines.ema import EMAHandler, ModelEMA
from drdd_med.networks.factory import build_drdd_net


def test_update_formula_and_buffers():
    net = torch.nn.Linear(2, 1)
    ema = ModelEMA(net, decay=0.9)
    before = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    assert torch.allclose(ema.ema_model.weight, 0.9 * before + 0.1 * (before + 1.0))
    assert int(ema.num_updates) == 1 and not ema.ema_model.weight.requires_grad


def test_handler_updates_every_interval_iterations():
    net = torch.nn.Linear(1, 1, bias=False)
    ema = ModelEMA(net, decay=0.5)
    engine = Engine(lambda e, b: None)
    engine.network = net
    EMAHandler(ema, interval=10).attach(engine)
    engine.run(range(25), max_epochs=1)
    assert int(ema.num_updates) == 2


def test_ema_checkpoint_loads_into_a_fresh_drdd_net_with_weights_only():
    net = build_drdd_net(2, 1, 1, preset="tiny", noise_level=0.9)
    ema = ModelEMA(net, decay=0.0)  # decay 0 copies the weights
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    ema.update(net)
    buffer = io.BytesIO()
    torch.save(ema.ema_model.state_dict(), buffer)
    buffer.seek(0)
    fresh = build_drdd_net(2, 1, 1, preset="tiny")
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert float(fresh.noise_level) == pytest.approx(0.9)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), net.parameters()))


def test_invalid_decay_raises():
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(torch.nn.Linear(1, 1), decay=1.0)
