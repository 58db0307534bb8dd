"""JointTrainer: both losses per step, two optimisers, standard iteration events, EMA attachable."""

from __future__ import annotations

import logging

import torch
from ignite.engine import Events
from monai.engines.utils import IterationEvents

from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.engines.ema import ModelEMA
from drdd_med.engines.joint import LOSS_NOISE, LOSS_RESIDUAL, JointTrainer
from drdd_med.networks.factory import build_drdd_net

logger = logging.getLogger(__name__)


def test_joint_training_decreases_both_losses_and_fires_events(single_thread, fixed_batch):
    torch.manual_seed(0)
    net = build_drdd_net(2, 1, 1, preset="tiny", noise_conditioned=True)
    steps = 100
    trainer = JointTrainer(
        device="cpu", max_epochs=1, train_data_loader=[fixed_batch()] * steps, network=net,
        optimizer=torch.optim.Adam(net.residual_net.parameters(), lr=3e-3), loss_function=torch.nn.MSELoss(),
        scheduler=DRDDScheduler(), noise_optimizer=torch.optim.Adam(net.noise_net.parameters(), lr=3e-3),
        grad_clip_norm=1.0, generator=torch.Generator().manual_seed(0),
    )
    events = [IterationEvents.FORWARD_COMPLETED, IterationEvents.LOSS_COMPLETED, IterationEvents.BACKWARD_COMPLETED,
              IterationEvents.MODEL_COMPLETED]
    fired = {e: 0 for e in events}
    for event in events:
        trainer.add_event_handler(event, lambda e, ev=event: fired.__setitem__(ev, fired[ev] + 1))
    ema = ModelEMA(net, decay=0.9, interval=10)
    ema.attach(trainer)
    losses = []
    def record(engine):
        out = engine.state.output[0]
        losses.append((float(out[LOSS_RESIDUAL]), float(out[LOSS_NOISE]), float(out["loss"])))

    trainer.add_event_handler(Events.ITERATION_COMPLETED, record)
    trainer.run()
    assert all(count == steps for count in fired.values())
    assert int(ema.ema_model.n_averaged) == steps // 10
    first = [sum(v[i] for v in losses[:10]) / 10 for i in range(3)]
    last = [sum(v[i] for v in losses[-20:]) / 20 for i in range(3)]
    logger.info("joint, %d steps: residual %.4g -> %.4g, noise %.4g -> %.4g", steps, first[0], last[0], first[1],
                last[1])
    assert first[0] / last[0] >= 10 and first[1] / last[1] >= 3, (first, last)
    assert abs(losses[-1][2] - losses[-1][0] - losses[-1][1]) < 1e-5


def test_a_wrapped_conditioned_network_still_feeds_the_source_to_the_noise_net():
    net = build_drdd_net(2, 1, 1, preset="tiny", noise_conditioned=True)
    trainer = JointTrainer(device="cpu", max_epochs=1, train_data_loader=[], network=torch.nn.DataParallel(net),
                           optimizer=torch.optim.Adam(net.parameters()), loss_function=torch.nn.MSELoss(),
                           scheduler=DRDDScheduler())
    assert trainer.noise_prepare_batch.conditioned


def test_the_residual_loss_draws_t_from_the_given_timesteps():
    net = build_drdd_net(2, 1, 1, preset="tiny")
    make = lambda **kw: JointTrainer(device="cpu", max_epochs=1, train_data_loader=[], network=net,  # noqa: E731
                                     optimizer=torch.optim.Adam(net.parameters()), loss_function=torch.nn.MSELoss(),
                                     scheduler=DRDDScheduler(), **kw)
    assert make(residual_timesteps=[999]).prepare_batch.timesteps == (999,)
    assert make().prepare_batch.timesteps is None
    assert make(residual_timesteps=[999]).noise_prepare_batch.timesteps is None  # the noise loss keeps every t
