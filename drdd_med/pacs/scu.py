"""SCU side of the batch job on pynetdicom: C-FIND, C-MOVE / C-GET and C-STORE, each with bounded time.

Every association uses the configured ACSE / DIMSE / network timeouts and is released (or aborted) in a
``finally``. Failures raise :class:`PacsError` subclasses whose message names the peer, the operation and the DIMSE
status, never patient data.

The query is hierarchical (PS3.4 C.4.1.2.1): a STUDY-level C-FIND with the study keys of ``query``, then one
SERIES-level C-FIND per study with the series keys. A relational series-level query is not supported by every PACS
(dcmtk's ``dcmqrscp`` refuses it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drdd_med.pacs.config import PacsConfig, PeerConfig

__all__ = [
    "PacsError", "AssociationError", "QueryError", "RetrieveError", "StoreError", "RetrieveResult",
    "associate", "find_series", "retrieve_series", "store_files", "STUDY_LEVEL_KEYWORDS", "SERIES_RETURN_KEYWORDS",
]

logger = logging.getLogger(__name__)

#: DIMSE statuses (PS3.4 C.4.1.1.4 / C.4.2.1.5 / C.4.3.1.4, B.2.3).
STATUS_SUCCESS = 0x0000
STATUS_PENDING = (0xFF00, 0xFF01)
STATUS_CANCEL = 0xFE00
STATUS_SUBOPS_WARNING = 0xB000
_STORE_WARNINGS = (0xB000, 0xB006, 0xB007)  # coercion / elements discarded / dataset mismatch: stored anyway
_MAX_FIND_RESULTS = 10000

#: Attributes matched at STUDY level in the Study Root model (PS3.4 C.6.2.1.2); the rest go to SERIES level.
STUDY_LEVEL_KEYWORDS = frozenset({
    "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyInstanceUID", "StudyDescription",
    "ReferringPhysicianName", "ModalitiesInStudy", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "IssuerOfPatientID", "InstitutionName",
})
#: SERIES-level return keys always requested (besides the rule keywords).
SERIES_RETURN_KEYWORDS = ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                          "NumberOfSeriesRelatedInstances")


class PacsError(RuntimeError):
    """A DICOM network operation failed; the message names the peer, the operation and why."""


class AssociationError(PacsError):
    """The association could not be established (unreachable, rejected, aborted or timed out)."""


class QueryError(PacsError):
    """C-FIND failed."""


class RetrieveError(PacsError):
    """C-MOVE / C-GET failed or did not deliver the whole series."""


class StoreError(PacsError):
    """C-STORE of the sCT series was not accepted for every instance."""


@dataclass(frozen=True)
class RetrieveResult:
    """Sub-operation counts of a C-MOVE / C-GET (PS3.4 C.4.2.1.5)."""

    completed: int
    failed: int
    warning: int
    elapsed_s: float


def _status_text(code: int, service: str) -> str:
    from pynetdicom import status as st

    table = {"find": st.QR_FIND_SERVICE_CLASS_STATUS, "move": st.QR_MOVE_SERVICE_CLASS_STATUS,
             "get": st.QR_GET_SERVICE_CLASS_STATUS, "store": st.STORAGE_SERVICE_CLASS_STATUS}[service]
    category, text = table.get(code, st.GENERAL_STATUS.get(code, ("Failure", "unknown status")))
    return f"0x{code:04X} ({category}: {text})"


def _make_ae(config: PacsConfig):
    from pynetdicom import AE

    ae = AE(ae_title=config.ae_title)
    ae.acse_timeout, ae.dimse_timeout = config.acse_timeout_s, config.dimse_timeout_s
    ae.network_timeout, ae.connection_timeout = config.network_timeout_s, config.connection_timeout_s
    return ae


@contextmanager
def associate(config: PacsConfig, peer: PeerConfig, contexts: Sequence[Any], *, ext_neg: list | None = None,
              evt_handlers: list | None = None) -> Iterator[Any]:
    """Open an association with ``peer`` proposing ``contexts`` (abstract syntaxes or PresentationContexts).

    Raises:
        AssociationError: with the reason (refused / rejected / aborted / no answer within the timeouts).
    """
    ae = _make_ae(config)
    for cx in contexts:
        if hasattr(cx, "abstract_syntax"):
            ae.add_requested_context(cx.abstract_syntax, cx.transfer_syntax)
        else:
            ae.add_requested_context(cx)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, ext_neg=ext_neg, evt_handlers=evt_handlers)
    if not assoc.is_established:
        if assoc.is_rejected:
            rsp = assoc.acceptor.primitive
            why = f"rejected ({getattr(rsp, 'result_str', '?')}, {getattr(rsp, 'reason_str', '?')})"
        elif assoc.is_aborted:
            why = "aborted or refused (is the PACS running and the port right?)"
        else:
            why = f"no answer within {config.connection_timeout_s:g}/{config.acse_timeout_s:g} s"
        raise AssociationError(f"association {config.ae_title} -> {peer} {why}")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        if not assoc.is_released:
            assoc.abort()


def _find(assoc: Any, query: Any, peer: PeerConfig) -> list[Any]:
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    results = []
    for status, identifier in assoc.send_c_find(query, FIND):
        if not status:  # empty status: DIMSE timeout or aborted association
            raise QueryError(f"C-FIND on {peer}: no response (timed out or association aborted)")
        code = int(status.Status)
        if code in STATUS_PENDING:
            if len(results) >= _MAX_FIND_RESULTS:
                raise QueryError(f"C-FIND on {peer}: more than {_MAX_FIND_RESULTS} matches; narrow 'query'")
            results.append(identifier)
        elif code != STATUS_SUCCESS:
            raise QueryError(f"C-FIND {query.QueryRetrieveLevel} on {peer} failed: {_status_text(code, 'find')}")
    return results


def _dataset(level: str, keys: dict[str, str], return_keys: Sequence[str]) -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in return_keys:
        setattr(ds, keyword, "")
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def find_series(config: PacsConfig, return_keywords: Sequence[str] = ()) -> list[Any]:
    """Series matching ``config.query``: STUDY-level C-FIND, then SERIES-level C-FIND per study.

    Args:
        config: job config (``pacs`` peer, ``query`` match keys).
        return_keywords: extra SERIES-level return keys (the selection rules' keywords).

    Returns:
        One identifier Dataset per distinct SeriesInstanceUID, each with StudyInstanceUID set.
    """
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    study_keys = {k: v for k, v in config.query.items() if k in STUDY_LEVEL_KEYWORDS}
    series_keys = {k: v for k, v in config.query.items() if k not in STUDY_LEVEL_KEYWORDS}
    wanted = [k for k in dict.fromkeys((*SERIES_RETURN_KEYWORDS, *return_keywords)) if k not in series_keys]
    found: dict[str, Any] = {}
    with associate(config, config.pacs, [FIND]) as assoc:
        studies = _find(assoc, _dataset("STUDY", study_keys, ["StudyInstanceUID"]), config.pacs)
        study_uids = list(dict.fromkeys(str(s.StudyInstanceUID) for s in studies if s.get("StudyInstanceUID")))
        for study_uid in study_uids:
            query = _dataset("SERIES", {**series_keys, "StudyInstanceUID": study_uid}, wanted)
            for ident in _find(assoc, query, config.pacs):
                uid = str(ident.get("SeriesInstanceUID", "") or "")
                if uid and uid not in found:  # some SCPs answer once per instance
                    ident.StudyInstanceUID = study_uid
                    found[uid] = ident
    logger.info("C-FIND on %s: %d studies, %d series", config.pacs, len(study_uids), len(found))
    return list(found.values())


def _drain_retrieve(responses: Iterator, assoc: Any, deadline: float, what: str, service: str) -> RetrieveResult:
    start = time.monotonic()
    last = None
    for status, _ in responses:
        if not status:
            raise RetrieveError(f"{what}: no response (timed out or association aborted)")
        last = status
        if time.monotonic() > deadline:
            assoc.abort()
            raise RetrieveError(f"{what}: not finished within retrieve_timeout_s")
        if int(status.Status) not in STATUS_PENDING:
            break
    if last is None:
        raise RetrieveError(f"{what}: no response")
    code = int(last.Status)
    result = RetrieveResult(int(last.get("NumberOfCompletedSuboperations", 0) or 0),
                            int(last.get("NumberOfFailedSuboperations", 0) or 0),
                            int(last.get("NumberOfWarningSuboperations", 0) or 0), time.monotonic() - start)
    if code == STATUS_SUBOPS_WARNING or (code == STATUS_SUCCESS and result.failed):
        raise RetrieveError(f"{what}: partial failure, {result.failed} of "
                            f"{result.failed + result.completed + result.warning} instances not delivered")
    if code != STATUS_SUCCESS:
        raise RetrieveError(f"{what} failed: {_status_text(code, service)}")
    return result


def retrieve_series(config: PacsConfig, study_uid: str, series_uid: str,
                    store_handler: Callable[[Any], int] | None = None) -> RetrieveResult:
    """Retrieve one series with C-MOVE (to our storage SCP, which must be listening) or C-GET.

    Args:
        config: job config (``retrieve`` = ``"move"`` or ``"get"``).
        study_uid, series_uid: the series to fetch.
        store_handler: ``EVT_C_STORE`` handler for C-GET sub-operations (required for ``"get"``).

    Raises:
        RetrieveError: failure status, partial failure, no response or ``retrieve_timeout_s`` exceeded.
        AssociationError: the PACS cannot be reached.
    """
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

    query = _dataset("SERIES", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}, [])
    deadline = time.monotonic() + config.retrieve_timeout_s
    what = f"C-{config.retrieve.upper()} of series {series_uid} from {config.pacs}"
    if config.retrieve == "move":
        with associate(config, config.pacs, [FIND, MOVE]) as assoc:
            return _drain_retrieve(assoc.send_c_move(query, config.ae_title, MOVE), assoc, deadline, what, "move")
    if store_handler is None:
        raise ValueError("retrieve_series(): C-GET needs a store_handler for its C-STORE sub-operations")
    storage = _retrieve_storage_classes()
    roles = [build_role(uid, scp_role=True) for uid in storage]
    with associate(config, config.pacs, [GET, *storage], ext_neg=roles,
                   evt_handlers=[(evt.EVT_C_STORE, store_handler)]) as assoc:
        return _drain_retrieve(assoc.send_c_get(query, GET), assoc, deadline, what, "get")


def _retrieve_storage_classes() -> list[str]:
    """Storage SOP classes proposed (SCP role) on a C-GET association: MR and CT families (<= 127 contexts)."""
    from pynetdicom.sop_class import (CTImageStorage, EnhancedCTImageStorage, EnhancedMRImageStorage,
                                      LegacyConvertedEnhancedMRImageStorage, MRImageStorage,
                                      SecondaryCaptureImageStorage)

    return [MRImageStorage, EnhancedMRImageStorage, LegacyConvertedEnhancedMRImageStorage, CTImageStorage,
            EnhancedCTImageStorage, SecondaryCaptureImageStorage]


def store_files(config: PacsConfig, peer: PeerConfig, files: Sequence[Path]) -> int:
    """C-STORE every file to ``peer`` over one association, checking every status.

    Returns:
        Number of instances accepted (success or a storage warning such as coercion).

    Raises:
        StoreError: an instance was refused or got no response (the message counts them, first status given).
        AssociationError: the destination cannot be reached.
    """
    from pydicom import dcmread

    datasets = [dcmread(f) for f in files]
    sop_classes = list(dict.fromkeys(str(ds.SOPClassUID) for ds in datasets))
    accepted, refused, first_problem = 0, 0, ""
    with associate(config, peer, sop_classes) as assoc:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(status.Status) if status else None
            if code == STATUS_SUCCESS or code in _STORE_WARNINGS:
                accepted += 1
                continue
            refused += 1
            first_problem = first_problem or ("no response" if code is None else _status_text(code, "store"))
            if code is None or not assoc.is_established:
                break
    if accepted != len(datasets):
        raise StoreError(f"C-STORE to {peer}: {len(datasets) - accepted} of {len(datasets)} instances not stored "
                         f"(first problem: {first_problem or 'association lost'})")
    return accepted
