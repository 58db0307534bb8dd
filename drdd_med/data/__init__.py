"""Datasets: data spec loading/validation, source domains, MONAI datalists, and the embedded phantom dataset.

Import the submodules directly (``from drdd_med.data.spec import load_spec``); this package imports nothing heavy.
"""

from __future__ import annotations

__all__: list[str] = []
