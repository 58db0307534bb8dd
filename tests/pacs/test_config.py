from __future__ import annotations

import json

import pytest

from drdd_med.pacs.config import PacsConfigError, PeerConfig, load_config, parse_config

EXAMPLE = {
    "ae_title": "DRDD", "bind": "127.0.0.1", "port": 11113,
    "pacs": {"host": "127.0.0.1", "port": 4242, "ae_title": "ORTHANC"},
    "destination": None, "retrieve": "move",
    "query": {"Modality": "MR", "StudyDate": "20260101-"},
    "rules": {"selections": [{"name": "t1", "conditions": {
        "Modality": "(?i)MR", "SeriesDescription": "(?i)t1", "ImageType": ["!LOCALIZER"]}}]},
    "bundle": "bundles/drdd",
    "inference": {"residual_steps": 2, "noise_steps": 2, "samples": 1, "device": "auto"},
    "state_dir": "/var/lib/drdd-pacs", "max_attempts": 3,
}


def test_issue_example_parses_with_paths_relative_to_the_config_file(tmp_path):
    path = tmp_path / "etc" / "pacs.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**EXAMPLE, "state_dir": "state"}))
    cfg = load_config(path)
    assert cfg.pacs == PeerConfig("127.0.0.1", 4242, "ORTHANC") and cfg.store_peer == cfg.pacs
    assert cfg.state_dir == tmp_path / "etc" / "state" and cfg.journal_path == cfg.state_dir / "journal.sqlite"
    assert cfg.bundle == tmp_path / "etc" / "bundles" / "drdd"
    assert [s.name for s in cfg.selections] == ["t1"] and cfg.inference["residual_steps"] == 2
    assert str(cfg.pacs) == "ORTHANC@127.0.0.1:4242"


def test_destination_overrides_the_store_peer():
    cfg = parse_config({**EXAMPLE, "destination": {"host": "10.0.0.5", "port": 104, "ae_title": "ARCHIVE"}})
    assert cfg.store_peer == PeerConfig("10.0.0.5", 104, "ARCHIVE") and cfg.pacs.ae_title == "ORTHANC"


def test_every_problem_is_reported_at_once():
    bad = {**EXAMPLE, "ae_title": "A" * 17, "port": "11113", "retrieve": "ftp", "pacs_host": "x",
           "query": {"Modalty": "MR"}, "max_attempts": 0,
           "rules": {"selections": [{"conditions": {"SeriesDescription": "(unclosed"}}]}}
    del bad["state_dir"]
    with pytest.raises(PacsConfigError) as err:
        parse_config(bad)
    text = "\n".join(err.value.problems)
    for key in ("ae_title", "port", "retrieve", "pacs_host", "Modalty", "max_attempts", "regular expression",
                "state_dir: missing"):
        assert key in text, key
    assert len(err.value.problems) == 8


def test_port_zero_only_allowed_for_c_get():
    assert parse_config({**EXAMPLE, "retrieve": "get", "port": 0}).port == 0
    with pytest.raises(PacsConfigError, match="port"):
        parse_config({**EXAMPLE, "port": 0})


@pytest.mark.parametrize("text, message", [(None, "file not found"), ("{not json", "not valid JSON")])
def test_load_config_names_the_file(tmp_path, text, message):
    path = tmp_path / "pacs.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(PacsConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_bad_peer_and_translator_are_rejected():
    with pytest.raises(PacsConfigError) as err:
        parse_config({**EXAMPLE, "pacs": {"host": "h", "port": 70000, "ae_title": "X"}, "translator": "nocolon"})
    assert any("pacs.port" in p for p in err.value.problems)
    assert any("translator" in p for p in err.value.problems)
