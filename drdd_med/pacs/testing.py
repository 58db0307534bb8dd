"""Real PACS servers and phantom series for the PACS integration tests and ``benchmarks/pacs_chaos.py``.

Orthanc and dcmtk ``dcmqrscp`` run on 127.0.0.1, each from a private config in its own directory, on free high
ports, and are stopped by their PID (SIGTERM, then SIGKILL after a bounded wait). An Orthanc stopped with
``kill=True`` (a crash) and started again keeps its ports and its database. Nothing here talks to anything but
127.0.0.1. The tests import this module as ``pacs_servers``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

__all__ = ["free_port", "make_series", "phantom_archive", "c_store", "job_config", "OrthancServer", "DcmqrscpServer",
           "ORTHANC_BIN", "DCMQRSCP_BIN", "T1_RULES"]

ORTHANC_BIN = "/usr/sbin/Orthanc"
DCMQRSCP_BIN = shutil.which("dcmqrscp") or "/usr/bin/dcmqrscp"
_LOOPBACK = "127.0.0.1"
# urllib would honour http_proxy for 127.0.0.1 otherwise.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_port_closed(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((_LOOPBACK, port)) != 0:
                return
        time.sleep(0.1)


def _stop_process_group(proc: subprocess.Popen | None, timeout_s: float = 10.0, kill: bool = False) -> None:
    """Stop a server started with ``start_new_session=True``: SIGTERM its group (SIGKILL if ``kill`` or stuck)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass


class _Server:
    """A server process started from a private config in ``workdir`` (its own session), stopped by its PID."""

    name = "server"

    def __init__(self, workdir: Path, aet: str, config_name: str, log_name: str):
        self.workdir = Path(workdir)
        self.aet = aet
        self.proc: subprocess.Popen | None = None
        self.config_path = self.workdir / config_name
        self.log_path = self.workdir / log_name

    def _write_config(self) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _start(self, timeout_s: float, not_ready: str):
        """Write the config, start the command and poll :meth:`_ready` until ``timeout_s``."""
        self._write_config()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self._command(), stdout=log, stderr=log, cwd=self.workdir,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} {not_ready} after {timeout_s} s; see {self.log_path}")

    def stop(self) -> None:
        """Stop the server and any children it forked (one process group, started by us)."""
        _stop_process_group(self.proc)
        self.proc = None


class OrthancServer(_Server):
    """Orthanc started from a test config; REST on ``http_port``, DICOM on ``dicom_port`` (both loopback).

    Args:
        workdir: private directory for the config, the database and the log.
        modalities: AE title -> (host, port) of DICOM peers Orthanc may C-MOVE to.
        aet: Orthanc's own AE title.
    """

    name = "Orthanc"

    def __init__(self, workdir: Path, modalities: dict[str, tuple[str, int]], aet: str = "ORTHANC"):
        super().__init__(workdir, aet, "orthanc.json", "orthanc.log")
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.modalities = dict(modalities)

    def _write_config(self) -> None:
        db = self.workdir / "db"
        db.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "TEST-PACS", "StorageDirectory": str(db), "IndexDirectory": str(db),
            "Plugins": [], "HttpServerEnabled": True, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomServerEnabled": True, "DicomAet": self.aet, "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True, "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True,
            "DicomModalities": {aet.lower(): [aet, host, port] for aet, (host, port) in self.modalities.items()},
            "DicomAssociationCloseDelay": 0, "DicomScuTimeout": 10, "DicomScpTimeout": 30,
            "StableAge": 1, "SaveJobs": False, "ConcurrentJobs": 2, "SyncStorageArea": False,
        }
        self.config_path.write_text(json.dumps(config, indent=1))

    def _command(self) -> list[str]:
        return [ORTHANC_BIN, str(self.config_path)]

    def _ready(self) -> bool:
        try:
            self.rest("GET", "/system", timeout_s=1.0)
        except (urllib.error.URLError, ConnectionError, OSError):
            return False
        return True

    def start(self, timeout_s: float = 30.0) -> "OrthancServer":
        """Start Orthanc (same ports and database on a restart) and wait until ``GET /system`` answers."""
        return self._start(timeout_s, "not ready")

    def stop(self, kill: bool = False) -> None:
        """Stop Orthanc by its PID (SIGTERM takes ~3 s; ``kill`` = SIGKILL, a crash) and wait for its port to close."""
        _stop_process_group(self.proc, kill=kill)
        self.proc = None
        _wait_port_closed(self.dicom_port, 5.0)

    def rest(self, method: str, path: str, body: object | bytes | None = None, timeout_s: float = 10.0):
        """Call Orthanc's REST API on 127.0.0.1 and return the decoded JSON answer."""
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{_LOOPBACK}:{self.http_port}{path}", data=data, method=method)
        with _HTTP.open(req, timeout=timeout_s) as rsp:
            payload = rsp.read()
        return json.loads(payload) if payload else None

    def find_series(self, query: dict[str, str]) -> list[dict]:
        """Series matching ``query`` (DICOM keyword -> value), with their main tags (``Expand``)."""
        return self.rest("POST", "/tools/find", {"Level": "Series", "Query": query, "Expand": True})

    def series_instances(self, orthanc_series_id: str) -> list[dict]:
        """Instances of one series with their simplified tags."""
        return self.rest("GET", f"/series/{orthanc_series_id}/instances?expand")

    def instance_file(self, orthanc_instance_id: str) -> bytes:
        """The stored DICOM file of one instance."""
        req = urllib.request.Request(f"http://{_LOOPBACK}:{self.http_port}/instances/{orthanc_instance_id}/file")
        with _HTTP.open(req, timeout=10.0) as rsp:
            return rsp.read()


class DcmqrscpServer(_Server):
    """dcmtk ``dcmqrscp`` in its default forking mode (``--single-process`` crashes on Debian 12's build).

    Args:
        workdir: private directory for ``qr.cfg``, the storage area (``index.dat``) and the log.
        peers: AE title -> (host, port) of peers it may C-MOVE to (port 0 for C-GET-only peers).
        aet: the archive's AE title.
    """

    name = "dcmqrscp"

    def __init__(self, workdir: Path, peers: dict[str, tuple[str, int]], aet: str = "QRSCP"):
        super().__init__(workdir, aet, "qr.cfg", "dcmqrscp.log")
        self.port = free_port()
        self.peers = dict(peers)
        self.store_dir = self.workdir / "store"

    def _write_config(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        names = [f"peer{i}" for i in range(len(self.peers))]
        hosts = [f"{name} = ({aet}, {host}, {port})"
                 for name, (aet, (host, port)) in zip(names, self.peers.items())]
        lines = [f"NetworkTCPPort  = {self.port}", "MaxPDUSize      = 16384", "MaxAssociations = 16",
                 "HostTable BEGIN", *hosts, f"anyclient = {', '.join(names)}", "HostTable END",
                 "VendorTable BEGIN", "VendorTable END",
                 "AETable BEGIN", f"{self.aet}   {self.store_dir}   RW   (200, 1024mb)   ANY", "AETable END"]
        self.config_path.write_text("\n".join(lines) + "\n")

    def _command(self) -> list[str]:
        return [DCMQRSCP_BIN, "-c", str(self.config_path)]

    def _ready(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            return sock.connect_ex((_LOOPBACK, self.port)) == 0

    def start(self, timeout_s: float = 15.0) -> "DcmqrscpServer":
        """Start ``dcmqrscp -c qr.cfg`` (forked association children share its process group) and wait until its
        port accepts connections."""
        return self._start(timeout_s, "not listening")


def make_series(*, patient: str, study_uid: str, modality: str = "MR", description: str = "T1 axial",
                image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND"), num_slices: int = 8,
                size: int = 32, spacing_mm: tuple[float, float, float] = (1.0, 1.0, 2.0), seed: int = 0,
                series_number: int = 1, patient_name: str | None = None, birth_date: str = ""):
    """Small phantom-like single-frame series (axial, ``size`` x ``size`` x ``num_slices``) built with pydicom.

    Args:
        patient: PatientID (and, unless ``patient_name`` is given, PatientName ``Phantom^<patient>``).
        birth_date: PatientBirthDate (empty by default).

    Returns:
        list of pydicom Datasets with file meta, in shuffled InstanceNumber order (position is the truth).
    """
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    rng = np.random.default_rng(seed)
    series_uid, frame_uid = generate_uid(), generate_uid()
    yy, xx = np.mgrid[:size, :size]
    radius = size * (0.3 + 0.1 * rng.random())
    order = rng.permutation(num_slices)
    datasets = []
    for k in range(num_slices):
        head = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) < radius ** 2
        pixels = (head * (400 + 40 * k) + rng.integers(0, 20, (size, size))).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage if modality == "MR" else CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.PatientName = patient_name if patient_name is not None else f"Phantom^{patient}"
        ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient, birth_date, "O"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study_uid, "20260115", "101500", "1"
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyDescription = "", "", "phantom study"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, series_number, description
        ds.Modality, ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = modality, frame_uid, ""
        ds.ImageType = list(image_type)
        ds.InstanceNumber = int(order[k]) + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-size / 2 * spacing_mm[0], -size / 2 * spacing_mm[1], k * spacing_mm[2]]
        ds.PixelSpacing = [spacing_mm[1], spacing_mm[0]]
        ds.SliceThickness = spacing_mm[2]
        ds.PatientPosition, ds.BodyPartExamined = "HFS", "HEAD"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        if modality == "CT":
            ds.RescaleIntercept, ds.RescaleSlope, ds.KVP = -1024, 1, 120
        ds.PixelData = pixels.tobytes()
        datasets.append(ds)
    return datasets


#: The selection rules of the tests: T1 MR, no localizer.
T1_RULES = {"selections": [{"name": "t1", "conditions": {
    "Modality": "(?i)MR", "SeriesDescription": "(?i)t1", "ImageType": ["!LOCALIZER"]}}]}


def phantom_archive(num_patients: int = 3, extras: bool = True, localizers: bool = False,
                    identity: Callable[[int], dict[str, str]] | None = None) -> tuple[dict[str, list], list]:
    """Series of several phantom patients (one study each): one T1 MR each, plus for the first patient
    (``extras``) a T2 MR, a CT and a T1 localizer.

    Args:
        localizers: also give every patient a 3-slice T1 localizer (which the rules must not select).
        identity: patient index -> ``make_series`` identity arguments (``patient``, ``patient_name``,
            ``birth_date``); default ``PH000``, ``PH001``, ...

    Returns:
        ``(selected, others)``: selected T1 series as {SeriesInstanceUID: datasets}; the other datasets.
    """
    from pydicom.uid import generate_uid

    selected, others = {}, []
    for i in range(num_patients):
        study = generate_uid()
        who = identity(i) if identity is not None else {"patient": f"PH{i:03d}"}
        t1 = make_series(**who, study_uid=study, seed=i, num_slices=8 + i % 2)
        selected[str(t1[0].SeriesInstanceUID)] = t1
        if localizers:
            others += make_series(**who, study_uid=study, description="T1 localizer",
                                  image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), num_slices=3, seed=80 + i,
                                  series_number=5)
        if extras and i == 0:
            others += make_series(**who, study_uid=study, description="T1 scout",
                                  image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), num_slices=3, seed=90,
                                  series_number=2)
            others += make_series(**who, study_uid=study, modality="CT", description="head CT", seed=91,
                                  series_number=3)
            others += make_series(**who, study_uid=study, description="T2 axial", seed=92, series_number=4)
    return selected, others


def c_store(port: int, called_ae: str, datasets, calling_ae: str = "UPLOADER") -> None:
    """Upload datasets to a PACS on 127.0.0.1 with pynetdicom C-STORE (every status checked)."""
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for sop_class in {str(ds.SOPClassUID) for ds in datasets}:
        ae.add_requested_context(sop_class)
    assoc = ae.associate(_LOOPBACK, port, ae_title=called_ae)
    assert assoc.is_established, f"cannot associate with {called_ae}@{port}"
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            assert status and status.Status == 0, f"C-STORE refused: {status}"
    finally:
        assoc.release()


def job_config(state_dir: Path, pacs_port: int, pacs_ae: str, scp_port: int, retrieve: str = "move",
               **overrides) -> dict:
    """A ``pacs.json`` object for the tests (short timeouts, no retry backoff, the test translator)."""
    config = {
        "ae_title": "DRDD", "bind": _LOOPBACK, "port": scp_port,
        "pacs": {"host": _LOOPBACK, "port": pacs_port, "ae_title": pacs_ae},
        "destination": None, "retrieve": retrieve,
        "query": {"Modality": "MR", "StudyDate": "20260101-"}, "rules": T1_RULES,
        "bundle": None, "translator": "pacs_translator:build", "inference": {},
        "state_dir": str(state_dir), "max_attempts": 3, "retry_backoff_s": 0,
        "acse_timeout_s": 5, "dimse_timeout_s": 15, "network_timeout_s": 15, "connection_timeout_s": 5,
        "retrieve_timeout_s": 60,
    }
    config.update(overrides)
    return config
