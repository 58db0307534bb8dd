"""``DRDDInferer`` refuses an η outside [0, 1] when it is built, not only when it samples."""

from __future__ import annotations

import pytest

from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.inferers.inferer import DRDDInferer
from drdd_med.inferers.volume import VolumeDRDDInferer


@pytest.mark.parametrize("inferer", [DRDDInferer, VolumeDRDDInferer])
@pytest.mark.parametrize("eta", [-0.1, 1.5, 12.6, float("nan")])
def test_eta_outside_unit_interval_is_refused_at_construction(inferer, eta):
    with pytest.raises(ValueError, match=r"eta=.* must be in \[0, 1\]"):
        inferer(DRDDScheduler(), eta=eta)


@pytest.mark.parametrize("eta", [0, 0.5, 1])
def test_eta_in_unit_interval_is_kept_as_float(eta):
    inferer = DRDDInferer(DRDDScheduler(), eta=eta)
    assert isinstance(inferer.eta, float) and inferer.eta == eta
