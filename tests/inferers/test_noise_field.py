"""The volume inferer's noise field: one in-plane field shared by all axial slices, an AR(1) field along the
slices, or i.i.d. per voxel."""

import pytest
import torch

from drdd_med import DRDDScheduler, build_drdd_net
from drdd_med.inferers.volume import VolumeDRDDInferer

SHAPE = (1, 1, 8, 8, 5)


def _noise(noise_field: str, mode: str = "2d", shape: tuple[int, ...] = SHAPE, **options) -> torch.Tensor:
    inferer = VolumeDRDDInferer(DRDDScheduler(noise_level=0.2), mode=mode, noise_field=noise_field, **options)
    return inferer.initial_noise(shape, torch.Generator().manual_seed(3), torch.device("cpu"), torch.float32)


def test_shared_field_is_one_plane_repeated_along_z():
    z = _noise("shared")
    assert z.shape == SHAPE
    for k in range(1, SHAPE[-1]):
        assert torch.equal(z[..., k], z[..., 0])
    assert z[..., 0].std() > 0.5  # still standard noise within the plane


@pytest.mark.parametrize("noise_field, mode", [("independent", "2d"), ("shared", "3d")])
def test_independent_and_3d_fields_differ_between_slices(noise_field, mode):
    z = _noise(noise_field, mode)
    assert not torch.allclose(z[..., 1], z[..., 0])


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_correlated_field_has_unit_variance_and_the_asked_neighbour_correlation(rho):
    z = _noise("correlated", shape=(1, 1, 128, 128, 6), noise_correlation=rho)[0, 0]
    for k in range(6):
        assert abs(float(z[..., k].std()) - 1.0) < 0.03  # every slice's z is standard noise
    for k in range(1, 6):
        c = torch.corrcoef(torch.stack([z[..., k - 1].flatten(), z[..., k].flatten()]))[0, 1]
        assert abs(float(c) - rho) < 0.03
    two_apart = torch.corrcoef(torch.stack([z[..., 0].flatten(), z[..., 2].flatten()]))[0, 1]
    assert abs(float(two_apart) - rho * rho) < 0.03  # AR(1): the correlation decays as rho ** distance


def test_correlated_field_at_one_is_the_shared_field():
    assert torch.equal(_noise("correlated", noise_correlation=1.0)[..., 1:],
                       _noise("correlated", noise_correlation=1.0)[..., :1].expand(*SHAPE[:-1], SHAPE[-1] - 1))


def test_noise_correlation_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match="noise_correlation"):
        VolumeDRDDInferer(DRDDScheduler(noise_level=0.2), noise_field="correlated", noise_correlation=1.5)


def test_unknown_noise_field_is_refused():
    with pytest.raises(ValueError, match="noise_field"):
        VolumeDRDDInferer(DRDDScheduler(noise_level=0.2), noise_field="striped")


def test_shared_field_gives_identical_slices_for_a_source_constant_along_z():
    """Neighbouring slices with the same source get the same sCT: the stripes of independent noise are gone."""
    torch.manual_seed(0)
    net = build_drdd_net(2, 1, 1, preset="tiny", noise_level=0.2).eval()
    source = torch.rand(1, 1, 16, 16, 1).expand(1, 1, 16, 16, 4).contiguous() * 2 - 1
    outputs = {}
    for field in ("shared", "independent"):
        inferer = VolumeDRDDInferer(DRDDScheduler(noise_level=0.2), mode="2d", noise_field=field, seed=1)
        outputs[field] = inferer(source, net)
    shared, independent = outputs["shared"], outputs["independent"]
    assert torch.allclose(shared[..., 1:], shared[..., :1].expand_as(shared[..., 1:]), atol=1e-5)
    assert (independent[..., 1:] - independent[..., :1]).abs().max() > 1e-3
