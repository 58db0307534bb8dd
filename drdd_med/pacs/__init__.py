"""Hospital PACS batch job: query, retrieve, translate MR series to synthetic CT and store them back.

Modules: :mod:`~drdd_med.pacs.config` (``pacs.json``), :mod:`~drdd_med.pacs.selection` (series rules),
:mod:`~drdd_med.pacs.journal` (SQLite state), :mod:`~drdd_med.pacs.scu` / :mod:`~drdd_med.pacs.scp`
(pynetdicom), :mod:`~drdd_med.pacs.series_checks` and :mod:`~drdd_med.pacs.job` (the orchestration).
Needs ``pynetdicom`` (the ``pacs`` extra); it is imported only where used.
"""

from __future__ import annotations

__all__: list[str] = []
