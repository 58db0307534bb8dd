"""source_anchor / residual_target: identity for matching channels, middle slice group for 2.5D stacks."""

from __future__ import annotations

import pytest
import torch

from drdd_med.diffusion.anchor import residual_target, source_anchor


def test_identity_when_channels_match():
    source = torch.randn(2, 3, 4, 4)
    assert source_anchor(source, 3) is source


@pytest.mark.parametrize("k, ct", [(3, 1), (5, 1), (3, 2)])
def test_middle_slice_group_of_a_stack(k, ct):
    # channel c of slice i holds the value 10 * i + c
    values = torch.tensor([10.0 * i + c for i in range(k) for c in range(ct)])
    source = values.view(1, k * ct, 1, 1).expand(2, k * ct, 4, 4)
    anchor = source_anchor(source, ct)
    assert anchor.shape == (2, ct, 4, 4)
    assert torch.equal(anchor[0, :, 0, 0], torch.tensor([10.0 * (k // 2) + c for c in range(ct)]))


@pytest.mark.parametrize("cs, ct", [(2, 1), (3, 2), (4, 1)])
def test_ambiguous_stacks_raise(cs, ct):
    with pytest.raises(ValueError, match="odd"):
        source_anchor(torch.zeros(1, cs, 2, 2), ct)


def test_residual_target_is_anchor_minus_target():
    source = torch.arange(3.0).view(1, 3, 1, 1)
    target = torch.full((1, 1, 1, 1), 0.25)
    assert float(residual_target(source, target)) == pytest.approx(1.0 - 0.25)
