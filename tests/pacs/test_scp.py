from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage

from drdd_med.pacs.scp import (STATUS_NOT_AUTHORIZED, STATUS_SUCCESS, PeerFilter, SeriesSink, StorageServer,
                               resolve_host)


@pytest.fixture
def server(tmp_path, free_port):
    """Our storage SCP (AE DRDD) accepting only ORTHANC from 127.0.0.1."""
    sink = SeriesSink()
    port = free_port()
    with StorageServer("DRDD", "127.0.0.1", port, sink, PeerFilter("ORTHANC", ["127.0.0.1"]),
                       acse_timeout=5, dimse_timeout=5, network_timeout=5) as scp:
        scp.port = port
        yield scp


def _associate(port, calling="ORTHANC", called="DRDD", bind=None):
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    ae.add_requested_context(MRImageStorage)
    return ae.associate("127.0.0.1", port, ae_title=called, bind_address=bind)


def test_expected_series_is_filed_under_sop_uids_byte_for_byte(server, tmp_path, mr_series):
    series = mr_series(num_slices=3)
    folder = tmp_path / "incoming"
    server.sink.expect(str(series[0].SeriesInstanceUID), folder)
    assoc = _associate(server.port)
    assert assoc.is_established
    try:
        statuses = [int(assoc.send_c_store(ds).Status) for ds in series]
    finally:
        assoc.release()
    assert statuses == [STATUS_SUCCESS] * 3
    assert server.sink.release(str(series[0].SeriesInstanceUID)) == 3
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{ds.SOPInstanceUID}.dcm" for ds in series)
    for ds in series:
        back = pydicom.dcmread(folder / f"{ds.SOPInstanceUID}.dcm")
        assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        np.testing.assert_array_equal(back.pixel_array, ds.pixel_array)


def test_unexpected_series_is_refused_and_not_written(server, tmp_path, mr_series):
    expected, other = mr_series(num_slices=1), mr_series(num_slices=1)
    folder = tmp_path / "incoming"
    server.sink.expect(str(expected[0].SeriesInstanceUID), folder)
    assoc = _associate(server.port)
    try:
        status = int(assoc.send_c_store(other[0]).Status)
    finally:
        assoc.release()
    assert status == STATUS_NOT_AUTHORIZED and list(folder.iterdir()) == []


@pytest.mark.parametrize("calling, called, bind", [
    ("INTRUDER", "DRDD", None),  # not the configured PACS AE title
    ("ORTHANC", "OTHER", None),  # not our AE title
    ("ORTHANC", "DRDD", ("127.0.0.2", 0)),  # right AE title, wrong host
])
def test_associations_from_other_peers_are_rejected(server, calling, called, bind):
    assoc = _associate(server.port, calling, called, bind)
    assert assoc.is_rejected and not assoc.is_established


def test_peer_filter_resolves_host_names():
    assert "127.0.0.1" in resolve_host("localhost")
    peers = PeerFilter("PACS ", ["localhost"])
    assert peers.allows("PACS", "127.0.0.1") and not peers.allows("PACS", "10.1.2.3")
    assert not peers.allows("OTHER", "127.0.0.1")
