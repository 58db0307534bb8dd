from __future__ import annotations

import json
import socket

from drdd_med.cli.main import build_parser, main
from drdd_med.cli.pacs_batch import EXIT_CONFIG
from drdd_med.pacs.job import EXIT_PACS_ERROR


class _Translator:
    model_version = "cli-test-1"

    def translate_series(self, series_dir, out_dir):
        raise AssertionError("not reached: the PACS is unreachable")


def build(config):
    return _Translator()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_pacs_batch_is_registered():
    args = build_parser().parse_args(["pacs-batch", "--config", "x.json", "--once", "--dry-run"])
    assert args.once and args.dry_run and args.func.__module__ == "drdd_med.cli.pacs_batch"


def test_invalid_config_exits_4_naming_the_problem(tmp_path, caplog):
    path = tmp_path / "pacs.json"
    path.write_text(json.dumps({"pacs": {"host": "127.0.0.1"}}))
    assert main(["pacs-batch", "--config", str(path), "--once"]) == EXIT_CONFIG
    assert "pacs: must be an object with exactly 'host', 'port' and 'ae_title'" in caplog.text
    assert "state_dir: missing" in caplog.text


def test_unreachable_pacs_exits_2(tmp_path, capsys):
    path = tmp_path / "pacs.json"
    path.write_text(json.dumps({
        "pacs": {"host": "127.0.0.1", "port": _closed_port(), "ae_title": "PACS"}, "retrieve": "get", "port": 0,
        "rules": {"selections": [{"conditions": {"Modality": "MR"}}]}, "state_dir": "state",
        "translator": "test_pacs_batch:build", "connection_timeout_s": 2, "acse_timeout_s": 2}))
    assert main(["pacs-batch", "--config", str(path), "--once"]) == EXIT_PACS_ERROR
    assert "error: association DRDD -> PACS@127.0.0.1" in capsys.readouterr().out
    assert (tmp_path / "state" / "journal.sqlite").exists()
