"""The PACS servers and phantom series of the integration tests; they live in :mod:`drdd_med.pacs.testing`, which
``benchmarks/pacs_chaos.py`` uses too."""

from __future__ import annotations

from drdd_med.pacs.testing import *  # noqa: F401,F403
from drdd_med.pacs.testing import __all__  # noqa: F401
