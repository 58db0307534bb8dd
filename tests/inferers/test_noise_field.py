"""The volume inferer's noise field: one in-plane field shared by all axial slices, or i.i.d. per voxel."""

import pytest
import torch

from drdd_med import DRDDScheduler, build_drdd_net
from drdd_med.inferers.volume import VolumeDRDDInferer

SHAPE = (1, 1, 8, 8, 5)


def _noise(noise_field: str, mode: str = "2d") -> torch.Tensor:
    inferer = VolumeDRDDInferer(DRDDScheduler(noise_level=0.2), mode=mode, noise_field=noise_field)
    return inferer.initial_noise(SHAPE, torch.Generator().manual_seed(3), torch.device("cpu"), torch.float32)


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
