"""The drdd-med CLI: phantom generation, montage, spec tools, through main(argv) exactly as the console script."""

from __future__ import annotations

import json

import pytest

from drdd_med.cli.main import SUBCOMMANDS, build_parser, main

TINY = ["--shape", "24", "24", "12", "--spacing", "8.8", "8.8", "14"]


def test_phantom_command_writes_dataset_and_montage(tmp_path, capsys):
    import matplotlib.image as mpimg

    out = tmp_path / "ph"
    assert main(["phantom", "--out", str(out), "--subjects", "3", "--unpaired", "1", "--seed", "4", *TINY, "--montage"]) == 0
    spec = json.loads((out / "phantom.json").read_text())
    assert spec["generator"]["seed"] == 4 and len(spec["unpaired_target"]) == 1
    assert f"phantom spec: {out / 'phantom.json'}" in capsys.readouterr().out
    png = mpimg.imread(out / "montage.png")
    assert png.ndim == 3 and png[..., :3].std() > 0.05
    assert main(["montage", str(out / "phantom.json"), "--out", str(tmp_path / "v.png"), "--split", "validation"]) == 0
    assert (tmp_path / "v.png").stat().st_size > 1000
    assert main(["spec", "check", str(out / "phantom.json")]) == 0
    assert "valid (training: 1, validation: 1, test: 1, unpaired_target: 1)" in capsys.readouterr().out


def test_cli_reports_user_errors_with_status_2(tmp_path, capsys):
    (tmp_path / "spec.json").write_text(json.dumps({"training": [{"source": "a.nii.gz", "target": "b.nii.gz"}]}))
    assert main(["spec", "check", str(tmp_path / "spec.json")]) == 2
    err = capsys.readouterr().err
    assert "drdd-med spec: error:" in err and "training[0].source" in err and "training[0].target" in err
    assert main(["phantom", "--out", str(tmp_path / "p"), "--subjects", "2", *TINY]) == 2
    assert "at least 3 paired subjects" in capsys.readouterr().err
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
