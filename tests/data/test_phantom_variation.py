"""Phantom variation presets: ``high`` spreads heads and MR scanners clearly more than ``default``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drdd_med.data.phantom import VARIATIONS, make_phantom_pair, make_phantom_subject, write_phantom_dataset


def _spread(variation: str, grid: dict) -> dict[str, float]:
    """Spread over 8 subjects of head volume, skull thickness, bone volume and MR brightness."""
    heads, skulls, bone, brightness = [], [], [], []
    for i in range(8):
        mr, ct, mask, meta = make_phantom_pair([3, i], variation=variation, **grid)
        heads.append(mask.sum())
        skulls.append(meta["params"]["anatomy"]["skull_mm"])
        bone.append((ct > 300).sum())
        brightness.append(np.percentile(mr[mask > 0], 99))
    return {"head_cv": np.std(heads) / np.mean(heads), "skull_std_mm": np.std(skulls),
            "bone_cv": np.std(bone) / np.mean(bone), "log_mr_std": np.std(np.log(brightness))}


def test_high_variation_spreads_heads_skulls_and_scanners_clearly_more(small_grid):
    default, high = _spread("default", small_grid), _spread("high", small_grid)
    for name in default:
        assert high[name] > 1.7 * default[name], (name, default[name], high[name])


def test_high_variation_is_deterministic_and_draws_the_extra_features(small_grid):
    images, ct, mask, meta = make_phantom_subject([3, 1], domains=("t1w", "t2w"), variation="high", **small_grid)
    again = make_phantom_subject([3, 1], domains=("t1w", "t2w"), variation="high", **small_grid)
    assert all(images[d].tobytes() == again[0][d].tobytes() for d in images) and ct.tobytes() == again[1].tobytes()
    anatomy = meta["params"]["anatomy"]
    assert {"shape_mm", "skull_var_mm", "atrophy_mm", "mastoid_aeration", "lesions"} <= set(anatomy)
    assert "bone_density" in meta["params"]["ct"]
    for domain in ("mr", "t2w"):
        assert meta["params"][domain]["field_t"] in VARIATIONS["high"].field_t
    default = make_phantom_pair([3, 1], **small_grid)[3]["params"]
    assert "atrophy_mm" not in default["anatomy"] and "field_t" not in default["mr"]  # default records as before
    with pytest.raises(ValueError, match="expected one of default, high"):
        make_phantom_pair(0, variation="extreme", **small_grid)


def test_variation_is_recorded_in_the_spec(tmp_path, tiny_grid):
    spec_path = write_phantom_dataset(tmp_path / "ph", subjects=3, unpaired=1, variation="high", **tiny_grid)
    spec = json.loads(spec_path.read_text())
    assert spec["generator"]["variation"] == "high" and "high" in spec["description"]
    assert "domains" not in spec["generator"]
