"""ModelEMA: the EMA formula, the update interval, the DDP/DataParallel unwrap and a weights_only round trip."""

from __future__ import annotations

import io

import pytest
import torch
from ignite.engine import Engine

from drdd_med.engines.ema import ModelEMA
from drdd_med.networks.factory import build_drdd_net


def test_first_update_copies_then_each_update_moves_by_one_minus_decay():
    net = torch.nn.Linear(2, 1)
    ema = ModelEMA(net, decay=0.9)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema()
    first = net.weight.detach().clone()
    assert torch.equal(ema.ema_model.module.weight, first)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema()
    assert torch.allclose(ema.ema_model.module.weight, 0.9 * first + 0.1 * (first + 1.0))
    assert int(ema.ema_model.n_averaged) == 2 and not ema.ema_model.module.weight.requires_grad


def test_handler_updates_every_interval_iterations():
    ema = ModelEMA(torch.nn.Linear(1, 1, bias=False), decay=0.5, interval=10)
    engine = Engine(lambda e, b: None)
    ema.attach(engine)
    engine.run(range(25), max_epochs=1)
    assert int(ema.ema_model.n_averaged) == 2


def test_a_data_parallel_wrapper_is_unwrapped():
    net = torch.nn.Linear(2, 1)
    ema = ModelEMA(torch.nn.DataParallel(net), decay=0.5)
    assert ema.network is net and type(ema.ema_model.module) is torch.nn.Linear
    assert set(ema.ema_model.state_dict()) == {"module.weight", "module.bias", "n_averaged"}


def test_ema_state_round_trips_with_weights_only_and_its_module_loads_into_a_fresh_drdd_net():
    net = build_drdd_net(2, 1, 1, preset="tiny", noise_level=0.9)
    ema = ModelEMA(net, decay=0.5)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01)
    ema()
    buffer = io.BytesIO()
    torch.save(ema.ema_model.state_dict(), buffer)
    buffer.seek(0)
    restored = ModelEMA(build_drdd_net(2, 1, 1, preset="tiny"), decay=0.5)
    restored.ema_model.load_state_dict(torch.load(buffer, weights_only=True))
    assert int(restored.ema_model.n_averaged) == 1
    fresh = build_drdd_net(2, 1, 1, preset="tiny")
    fresh.load_state_dict(restored.ema_model.module.state_dict())
    assert float(fresh.noise_level) == pytest.approx(0.9)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), net.parameters()))


@pytest.mark.parametrize("kwargs, match", [({"decay": 1.5}, "decay"), ({"interval": 0}, "interval")])
def test_invalid_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelEMA(torch.nn.Linear(1, 1), **kwargs)
