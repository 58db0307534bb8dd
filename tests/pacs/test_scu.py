from __future__ import annotations

import time

import pytest

from drdd_med.pacs.config import PeerConfig, parse_config
from drdd_med.pacs.scp import PeerFilter, SeriesSink, StorageServer
from drdd_med.pacs.scu import AssociationError, StoreError, store_files


def _config(port: int, tmp_path):
    return parse_config({
        "ae_title": "ORTHANC", "pacs": {"host": "127.0.0.1", "port": port, "ae_title": "DRDD"},
        "rules": {"selections": [{"conditions": {"Modality": "MR"}}]}, "state_dir": str(tmp_path),
        "acse_timeout_s": 3, "dimse_timeout_s": 3, "network_timeout_s": 3, "connection_timeout_s": 3})


def _write(datasets, folder):
    folder.mkdir(parents=True)
    paths = []
    for ds in datasets:
        paths.append(folder / f"{ds.SOPInstanceUID}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def test_store_files_checks_every_status(tmp_path, free_port, mr_series):
    good, bad = mr_series(num_slices=3), mr_series(num_slices=2)
    port = free_port()
    cfg = _config(port, tmp_path)
    sink = SeriesSink()
    sink.expect(str(good[0].SeriesInstanceUID), tmp_path / "in")
    with StorageServer("DRDD", "127.0.0.1", port, sink, PeerFilter("ORTHANC", ["127.0.0.1"]), 3, 3, 3):
        assert store_files(cfg, cfg.pacs, _write(good, tmp_path / "good")) == 3
        with pytest.raises(StoreError, match=r"2 of 2 instances not stored \(first problem: 0x0124"):
            store_files(cfg, cfg.pacs, _write(bad, tmp_path / "bad"))
    assert len(list((tmp_path / "in").glob("*.dcm"))) == 3


def test_unreachable_peer_fails_fast_with_the_peer_named(tmp_path, free_port, mr_series):
    port = free_port()  # nobody listens there
    cfg = _config(port, tmp_path)
    start = time.monotonic()
    with pytest.raises(AssociationError, match=f"DRDD@127.0.0.1:{port}.*refused"):
        store_files(cfg, cfg.pacs, _write(mr_series(num_slices=1), tmp_path / "f"))
    assert time.monotonic() - start < 5


def test_rejected_association_says_rejected(tmp_path, free_port, mr_series):
    port = free_port()
    cfg = _config(port, tmp_path)
    with StorageServer("DRDD", "127.0.0.1", port, SeriesSink(), PeerFilter("SOMEONE", ["127.0.0.1"]), 3, 3, 3):
        with pytest.raises(AssociationError, match="rejected"):
            store_files(cfg, PeerConfig("127.0.0.1", port, "DRDD"), _write(mr_series(num_slices=1), tmp_path / "f"))
