"""Hospital PACS batch job: query, retrieve, translate MR series to synthetic CT and store them back.

Modules: :mod:`~drdd_med.pacs.config` (``pacs.json``; its series rules are those of :mod:`drdd_med.io.dicom_rules`),
:mod:`~drdd_med.pacs.journal` (SQLite state), :mod:`~drdd_med.pacs.scu` / :mod:`~drdd_med.pacs.scp`
(pynetdicom), :mod:`~drdd_med.pacs.series_checks`, :mod:`~drdd_med.pacs.job` (the orchestration) and
:mod:`~drdd_med.pacs.logs` (what the job's log may show). :mod:`~drdd_med.pacs.testing` starts real PACS servers
on 127.0.0.1 for the integration tests and the chaos benchmark.
Needs ``pynetdicom`` (the ``pacs`` extra); it is imported only where used.
"""

from __future__ import annotations

__all__: list[str] = []
