"""Fixtures for the integration tests: real PACS servers (Orthanc, dcmtk dcmqrscp) on 127.0.0.1 free ports."""

from __future__ import annotations

import pytest
from pacs_servers import DcmqrscpServer, OrthancServer, free_port


@pytest.fixture
def orthanc(tmp_path):
    """A running Orthanc that knows our AE ``DRDD`` at ``orthanc.scp_port``; killed by PID afterwards."""
    scp_port = free_port()
    server = OrthancServer(tmp_path / "orthanc", {"DRDD": ("127.0.0.1", scp_port)})
    server.scp_port = scp_port
    try:
        yield server.start()
    finally:
        server.stop(kill=True)  # a throw-away database: no need for Orthanc's ~3 s graceful shutdown


@pytest.fixture
def dcmqrscp(tmp_path):
    """A running dcmqrscp (forking mode) that may C-MOVE to ``DRDD`` at ``dcmqrscp.scp_port``."""
    scp_port = free_port()
    server = DcmqrscpServer(tmp_path / "dcmqrscp", {"DRDD": ("127.0.0.1", scp_port)})
    server.scp_port = scp_port
    try:
        yield server.start()
    finally:
        server.stop()
