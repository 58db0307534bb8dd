"""Image input/output: DICOM series reading and selection rules, NIfTI helpers, synthetic-CT DICOM writing, and the
atomic writer every output goes through (:mod:`drdd_med.io.atomic`).

Submodules are imported explicitly (``from drdd_med.io.dicom_series import load_series``) so that importing
this package stays cheap and pulls in neither pydicom nor nibabel.
"""

from __future__ import annotations

__all__: list[str] = []
