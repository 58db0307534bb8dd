"""Input checks: the messages say what is wrong and how to fix it."""

from __future__ import annotations

import pytest
import torch

from drdd_med.networks.checks import check_divisible, check_finite, check_ndim, check_same_spatial


def test_nan_and_inf_are_rejected_with_a_count():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    x[0, 0, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="source contains 2 NaN/inf"):
        check_finite("source", x)
    check_finite("ok", torch.zeros(2))


def test_divisibility_message_names_the_axis_and_the_pad_transform():
    with pytest.raises(ValueError, match=r"axis 1.*DivisiblePad\(k=8\)"):
        check_divisible("source", torch.zeros(1, 1, 16, 20), 8)
    check_divisible("source", torch.zeros(1, 1, 16, 24), 8)


def test_spatial_mismatch_and_ndim():
    with pytest.raises(ValueError, match="same grid"):
        check_same_spatial("source", torch.zeros(1, 1, 8, 8), "target", torch.zeros(1, 1, 8, 6))
    check_same_spatial("source", torch.zeros(1, 3, 8, 8), "target", torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="3D network"):
        check_ndim("source", torch.zeros(1, 1, 8, 8), 3)
