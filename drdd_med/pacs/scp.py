"""Storage SCP side of retrieval: event handlers that file incoming instances into per-series folders.

The same C-STORE handler serves C-MOVE (our storage SCP, bound to ``bind:port``) and C-GET (sub-operations arrive
on the association we opened). It only accepts:

* associations from the configured PACS: its calling AE title and one of its host's addresses
  (checked when the association is requested, and again for every C-STORE);
* instances of a series we are currently retrieving (:class:`SeriesSink`), so a misrouted or unsolicited
  store never lands in a work folder.

Instances are written raw (``event.encoded_dataset()``) under their SOPInstanceUID, atomically
(:func:`~drdd_med.io.atomic.write_atomic`), so a folder never holds a half-written file.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from drdd_med.io.atomic import write_atomic

__all__ = [
    "SeriesSink", "PeerFilter", "make_store_handler", "make_association_check", "StorageServer", "resolve_host",
    "STATUS_SUCCESS", "STATUS_NOT_AUTHORIZED", "STATUS_OUT_OF_RESOURCES", "STATUS_CANNOT_UNDERSTAND",
]

logger = logging.getLogger(__name__)

#: C-STORE statuses (PS3.4 Table B.2-1; 0x0124 is the general "Refused: Not Authorized", PS3.7 C.5.x).
STATUS_SUCCESS = 0x0000
STATUS_NOT_AUTHORIZED = 0x0124
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000
#: A-ASSOCIATE-RJ: rejected-permanent, by the service user, "calling AE title not recognised" (PS3.8 9.3.4).
_REJECT_PERMANENT, _REJECT_SOURCE_USER, _REJECT_CALLING_AE = 0x01, 0x01, 0x03
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def resolve_host(host: str) -> frozenset[str]:
    """All IP addresses of ``host`` (plus ``host`` itself), for comparing with a peer's socket address."""
    addresses = {host}
    try:
        addresses |= {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        logger.warning("cannot resolve PACS host %r; only the literal address is accepted", host)
    return frozenset(addresses)


class PeerFilter:
    """Accept only the configured PACS: its AE title and the addresses of its host.

    Args:
        ae_title: calling AE title the PACS uses (its own AE title).
        hosts: host names or IP addresses the PACS may connect from.
    """

    def __init__(self, ae_title: str, hosts: Iterable[str]):
        self.ae_title = ae_title.strip()
        self.addresses = frozenset().union(*(resolve_host(h) for h in hosts))

    def allows(self, ae_title: str, address: str) -> bool:
        return ae_title.strip() == self.ae_title and address in self.addresses


class SeriesSink:
    """Routes incoming instances to the folder of the series being retrieved (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folders: dict[str, Path] = {}
        self._counts: dict[str, int] = {}

    def expect(self, series_uid: str, folder: Path) -> None:
        """Accept instances of ``series_uid`` into ``folder`` (created if missing)."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._folders[series_uid] = Path(folder)
            self._counts[series_uid] = 0

    def release(self, series_uid: str) -> int:
        """Stop accepting ``series_uid``; returns how many instances were filed."""
        with self._lock:
            self._folders.pop(series_uid, None)
            return self._counts.pop(series_uid, 0)

    def folder(self, series_uid: str) -> Path | None:
        with self._lock:
            return self._folders.get(series_uid)

    def count(self, series_uid: str) -> None:
        with self._lock:
            if series_uid in self._counts:
                self._counts[series_uid] += 1


def make_store_handler(sink: SeriesSink, peers: PeerFilter) -> Callable[[Any], int]:
    """Build the ``EVT_C_STORE`` handler.

    Returns:
        ``handler(event) -> status``: SUCCESS after the instance is safely on disk; NOT_AUTHORIZED for an unknown
        peer or an unexpected series; CANNOT_UNDERSTAND for an undecodable dataset or a malformed
        SOPInstanceUID; OUT_OF_RESOURCES when the file cannot be written.
    """

    def handle_store(event: Any) -> int:
        remote = event.assoc.remote
        if not peers.allows(str(remote["ae_title"]), str(remote["address"])):
            logger.warning("refused C-STORE from %s@%s: not the configured PACS", remote["ae_title"], remote["address"])
            return STATUS_NOT_AUTHORIZED
        sop_uid = str(event.request.AffectedSOPInstanceUID or "")
        try:
            series_uid = str(event.dataset.SeriesInstanceUID)
        except Exception as exc:  # pydicom raises various errors on malformed data
            logger.warning("refused instance %s: cannot decode dataset (%s)", sop_uid, type(exc).__name__)
            return STATUS_CANNOT_UNDERSTAND
        if not _UID.match(sop_uid) or len(sop_uid) > 64:
            logger.warning("refused instance of series %s: malformed SOPInstanceUID", series_uid)
            return STATUS_CANNOT_UNDERSTAND
        folder = sink.folder(series_uid)
        if folder is None:
            logger.warning("refused instance of unexpected series %s", series_uid)
            return STATUS_NOT_AUTHORIZED
        try:
            write_atomic(folder / f"{sop_uid}.dcm", event.encoded_dataset(include_meta=True))
        except OSError as exc:
            logger.error("cannot write instance of series %s into %s: %s", series_uid, folder, exc)
            return STATUS_OUT_OF_RESOURCES
        sink.count(series_uid)
        return STATUS_SUCCESS

    return handle_store


def make_association_check(peers: PeerFilter) -> Callable[[Any], None]:
    """Build an ``EVT_REQUESTED`` handler rejecting associations that do not come from the configured PACS."""

    def check_requestor(event: Any) -> None:
        assoc = event.assoc
        ae_title = str(assoc.requestor.primitive.calling_ae_title).strip()
        address = str(assoc.requestor.address)
        if not peers.allows(ae_title, address):
            logger.warning("rejected association from %s@%s: not the configured PACS", ae_title, address)
            # As pynetdicom does for ``require_calling_aet``: send A-ASSOCIATE-RJ, then stop the association.
            assoc.acse.send_reject(_REJECT_PERMANENT, _REJECT_SOURCE_USER, _REJECT_CALLING_AE)
            assoc.kill()

    return check_requestor


class StorageServer:
    """Our storage SCP for C-MOVE, listening on ``bind:port`` while the job runs (a context manager).

    Args:
        ae_title: our AE title (the C-MOVE destination the PACS knows).
        bind, port: listening address.
        sink: where accepted instances go.
        peers: who may connect.
        timeouts: ``acse_timeout``, ``dimse_timeout``, ``network_timeout`` in seconds.
    """

    def __init__(self, ae_title: str, bind: str, port: int, sink: SeriesSink, peers: PeerFilter,
                 acse_timeout: float = 30.0, dimse_timeout: float = 120.0, network_timeout: float = 120.0):
        self.address = (bind, port)
        self.ae_title = ae_title
        self.sink, self.peers = sink, peers
        self.timeouts = (acse_timeout, dimse_timeout, network_timeout)
        self._server = None

    def __enter__(self) -> "StorageServer":
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = self.timeouts
        ae.require_called_aet = True
        ae.maximum_associations = 4
        handlers = [(evt.EVT_REQUESTED, make_association_check(self.peers)),
                    (evt.EVT_C_STORE, make_store_handler(self.sink, self.peers))]
        try:
            self._server = ae.start_server(self.address, block=False, evt_handlers=handlers)
        except OSError as exc:
            raise OSError(f"cannot listen on {self.address[0]}:{self.address[1]} for C-MOVE ({exc}); free the port "
                          "or change 'bind'/'port' in the config (or use \"retrieve\": \"get\")") from exc
        logger.info("storage SCP %s listening on %s:%d", self.ae_title, *self.address)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
