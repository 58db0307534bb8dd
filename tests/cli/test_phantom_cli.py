"""The drdd-med CLI: phantom generation, montage, spec tools, through main(argv) exactly as the console script."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from montage_cells import montage_cells, sample_centres

from drdd_med.cli.main import SUBCOMMANDS, build_parser, main

TINY = ["--shape", "24", "24", "12", "--spacing", "8.8", "8.8", "14"]


def _assert_montage_shows_item(png, root, item):
    """The montage's cells hold the item's source | CT | mask at voxel (0.4 X, Y / 2, Z / 2), rendered here from the
    NIfTI files: source on its 0.5-99.5 percentile range, CT on the -1000..1500 HU window, mask on 0..1."""
    volumes = [np.asarray(nib.as_closest_canonical(nib.load(root / item[key])).dataobj, dtype=np.float32)
               for key in ("source", "target", "mask")]
    windows = [tuple(np.percentile(volumes[0], [0.5, 99.5])), (-1000.0, 1500.0), (0.0, 1.0)]
    shape = volumes[0].shape
    i, j, k = int(shape[0] * 0.4), shape[1] // 2, shape[2] // 2
    cells = montage_cells(png, rows=3, cols=3)
    for c, (vol, (lo, hi)) in enumerate(zip(volumes, windows)):
        planes = [vol[:, :, k], vol[:, j, :], vol[i, :, :]]  # axial, coronal, sagittal rows
        for r, plane in enumerate(planes):
            expected = np.clip((plane.T[::-1, ::-1] - lo) / (hi - lo), 0, 1)
            np.testing.assert_allclose(sample_centres(cells[r][c], expected.shape), expected, atol=0.02,
                                       err_msg=f"row {r}, column {c}")


def test_phantom_command_writes_dataset_and_montage(tmp_path, capsys):
    out = tmp_path / "ph"
    assert main(["phantom", "--out", str(out), "--subjects", "3", "--unpaired", "1", "--seed", "4", *TINY, "--montage"]) == 0
    spec = json.loads((out / "phantom.json").read_text())
    assert spec["generator"]["seed"] == 4 and len(spec["unpaired_target"]) == 1
    assert f"phantom spec: {out / 'phantom.json'}" in capsys.readouterr().out
    _assert_montage_shows_item(out / "montage.png", out, spec["training"][0])
    assert main(["montage", str(out / "phantom.json"), "--out", str(tmp_path / "v.png"), "--split", "validation"]) == 0
    assert (tmp_path / "v.png").stat().st_size > 1000
    assert main(["spec", "check", str(out / "phantom.json")]) == 0
    assert "valid (training: 1, validation: 1, test: 1, unpaired_target: 1)" in capsys.readouterr().out


def test_phantom_command_with_domains_and_variation_shows_every_domain(tmp_path, capsys):
    import matplotlib.image as mpimg

    out = tmp_path / "ph"
    assert main(["phantom", "--out", str(out), "--subjects", "3", "--unpaired", "0", *TINY,
                 "--domains", "cbct,t1w,t2w", "--variation", "high", "--montage"]) == 0
    spec = json.loads((out / "phantom.json").read_text())
    assert spec["generator"]["domains"] == ["t1w", "t2w", "cbct"] and spec["generator"]["variation"] == "high"
    assert [it["domain"] for it in spec["training"]] == ["t1w", "t2w", "cbct"]
    assert (out / "s000/t2w.nii.gz").is_file() and (out / "s000/cbct.nii.gz").is_file()
    assert main(["spec", "check", str(out / "phantom.json")]) == 0
    assert "valid (training: 3, validation: 3, test: 3, unpaired_target: 0)" in capsys.readouterr().out
    # one column per domain, then CT and mask (2.6 inches at 100 dpi each)
    assert mpimg.imread(out / "montage.png").shape[1] == int(2.6 * 5 * 100)
    assert main(["montage", str(out / "phantom.json"), "--out", str(tmp_path / "m.png"), "--index", "2"]) == 0
    assert mpimg.imread(tmp_path / "m.png").shape[1] == int(2.6 * 5 * 100)
    plain = tmp_path / "plain"
    assert main(["phantom", "--out", str(plain), "--subjects", "3", "--unpaired", "0", *TINY, "--montage"]) == 0
    assert mpimg.imread(plain / "montage.png").shape[1] == int(2.6 * 3 * 100)


def test_cli_reports_user_errors_with_status_2(tmp_path, capsys):
    (tmp_path / "spec.json").write_text(json.dumps({"training": [{"source": "a.nii.gz", "target": "b.nii.gz"}]}))
    assert main(["spec", "check", str(tmp_path / "spec.json")]) == 2
    err = capsys.readouterr().err
    assert "drdd-med spec: error:" in err and "training[0].source" in err and "training[0].target" in err
    assert main(["phantom", "--out", str(tmp_path / "p"), "--subjects", "2", *TINY]) == 2
    assert "at least 3 paired subjects" in capsys.readouterr().err
    assert main(["phantom", "--out", str(tmp_path / "p"), "--domains", "t1w,flair", *TINY]) == 2
    assert "unknown domain 'flair'; known domains: t1w, t2w, cbct" in capsys.readouterr().err
    assert main([]) == 2


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert {"phantom", "montage", "spec"} <= set(SUBCOMMANDS)
    assert all(name.replace("_", "-") in text or name in text for name in SUBCOMMANDS)
    with pytest.raises(SystemExit):
        main(["phantom", "--help"])
    assert "--unpaired" in capsys.readouterr().out
