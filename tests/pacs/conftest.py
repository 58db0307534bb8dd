"""Fixtures for the PACS unit tests: tiny MR series built with pydicom, free loopback ports."""

from __future__ import annotations

import socket

import numpy as np
import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port():
    """A callable returning a currently free TCP port on 127.0.0.1."""
    return _free_port


@pytest.fixture
def mr_series():
    """Factory: ``mr_series(num_slices=4, size=8, **attrs)`` -> list of MR Datasets (axial, 2 mm apart)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    def make(num_slices: int = 4, size: int = 8, **attrs):
        series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
        datasets = []
        for k in range(num_slices):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
            ds.PatientName, ds.PatientID = "Unit^Test", "UNIT"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
            ds.Modality, ds.SeriesDescription, ds.ImageType = "MR", "T1 axial", ["ORIGINAL", "PRIMARY"]
            ds.InstanceNumber, ds.SeriesNumber = k + 1, 1
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [0, 0, 2.0 * k]
            ds.PixelSpacing, ds.SliceThickness = [1, 1], 2.0
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.Rows = ds.Columns = size
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = (np.arange(size * size, dtype=np.uint16) + 100 * k).tobytes()
            for key, value in attrs.items():
                setattr(ds, key, value)
            datasets.append(ds)
        return datasets

    return make
