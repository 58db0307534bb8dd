"""Deployment export of DRDD's two networks to ONNX, and an ONNX Runtime stand-in for :class:`DRDDNet`.

``onnx`` and ``onnxruntime`` are optional (``pip install drdd_med[export]``): they are imported when a function
needs them, so this package imports without them.
"""

from __future__ import annotations

from drdd_med.export.onnx import TOLERANCE, export_onnx, read_metadata, verify_onnx
from drdd_med.export.onnx_runtime import OnnxDRDDNet

__all__ = ["TOLERANCE", "OnnxDRDDNet", "export_onnx", "read_metadata", "verify_onnx"]
