"""Test helper: write a source volume (a phantom NIfTI) as a DICOM series whose header shows its source domain.

The headers carry what :func:`drdd_med.io.domain.detect_domain` reads: a spoiled gradient echo for T1w (GR/SP,
TE 4 ms, TR 10 ms, flip 15 degrees, the phantom's T1w sequence), a turbo spin echo for T2w (SE, TE 100 ms,
TR 4000 ms) and a Varian On-Board Imager CT for CBCT (no helical attributes); plus the Patient, Study, Series,
Frame of Reference and Image Plane attributes a real series has. The geometry is the volume's affine, through the
package's own :func:`~drdd_med.io.dicom_writer.slice_geometry`.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from drdd_med.io.dicom_writer import slice_geometry

__all__ = ["DOMAIN_HEADERS", "write_source_series"]

#: Domain -> (SOP class, attributes that make the header show that domain).
DOMAIN_HEADERS: dict[str, tuple[str, dict]] = {
    "t1w": (MRImageStorage, {"Modality": "MR", "ScanningSequence": "GR", "SequenceVariant": "SP",
                             "SequenceName": "*fl3d1", "EchoTime": 4.0, "RepetitionTime": 10.0, "FlipAngle": 15.0,
                             "MagneticFieldStrength": 1.5, "SeriesDescription": "t1_fl3d_tra"}),
    "t2w": (MRImageStorage, {"Modality": "MR", "ScanningSequence": "SE", "SequenceVariant": "SK",
                             "SequenceName": "*tse2d1_15", "EchoTime": 100.0, "RepetitionTime": 4000.0,
                             "FlipAngle": 150.0, "MagneticFieldStrength": 1.5, "SeriesDescription": "t2_tse_tra"}),
    "cbct": (CTImageStorage, {"Modality": "CT", "Manufacturer": "Varian Medical Systems",
                              "ManufacturerModelName": "On-Board Imager", "SeriesDescription": "CBCT head",
                              "KVP": 100.0, "ConvolutionKernel": "STANDARD"}),
}


def write_source_series(nifti: str | Path, folder: str | Path, domain: str, study_uid: str | None = None,
                        series_number: int = 3) -> list[Path]:
    """Write ``nifti`` as a single-frame series of ``domain`` into ``folder``; returns the files in slice order.

    MR intensities are scaled to 0..4000 (a constant factor; the percentile normalisation does not see it), CBCT is
    stored in HU with RescaleIntercept -1024.
    """
    image = nib.load(str(nifti))
    volume = np.asarray(image.dataobj, dtype=np.float64)
    sop_class, attributes = DOMAIN_HEADERS[domain]
    if attributes["Modality"] == "CT":
        stored = np.rint(np.clip(volume, -1024, 3071) + 1024)
    else:
        stored = np.rint(np.clip(volume, 0, None) / max(float(volume.max()), 1e-6) * 4000)
    stored = stored.astype(np.uint16)
    geometry = slice_geometry(image.affine, volume.shape[2])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid, frame_uid = study_uid or generate_uid(), generate_uid(), generate_uid()
    files = []
    for k in range(volume.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Head", "PH-3", "19800101", "O"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study_uid, "20260115", "101500", "1"
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyDescription = "ACC3", "", "phantom head"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, series_number, k + 1
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
        ds.PatientPosition, ds.BodyPartExamined, ds.ImageType = "HFS", "HEAD", ["ORIGINAL", "PRIMARY", "AXIAL"]
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in geometry["orientation"]]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in geometry["positions"][k]]
        ds.PixelSpacing = [f"{v:.6f}" for v in geometry["pixel_spacing"]]
        ds.SliceThickness = f"{geometry['slice_spacing']:.6f}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        if attributes["Modality"] == "CT":
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        path = folder / f"IM{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files
