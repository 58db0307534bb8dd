"""The batch job's logging: third-party decoder warnings are withheld and counted, everything else passes."""

from __future__ import annotations

import logging
import warnings

import pydicom.config
import pydicom.valuerep

from drdd_med.pacs.logs import DecoderWarnings, setup_job_logging


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


def test_pydicom_warnings_are_withheld_and_counted_other_lines_pass(capsys):
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    sink = DecoderWarnings().install([handler])
    shown: list[str] = []
    previous = sink._previous_showwarning
    sink._previous_showwarning = lambda message, *args: shown.append(str(message))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = sink.showwarning
            # an invalid DA value, as read from a header: pydicom warns, quoting it, on both channels
            pydicom.valuerep.validate_value("DA", "DOBSECRET1", pydicom.config.WARN)
            warnings.warn("the job's own warning", UserWarning)
        logging.getLogger("pydicom").warning("Invalid value for VR PN: 'SECRET^NAME'")
        logging.getLogger("pydicom.charset").warning("SECRET in a child logger")
        logging.getLogger("drdd_med.pacs.job").warning("series 1.2.3 failed")
    finally:
        sink._previous_showwarning = previous
        sink.uninstall()
        root.removeHandler(handler)
    assert handler.lines == ["drdd_med.pacs.job: series 1.2.3 failed"]
    assert shown == ["the job's own warning"]
    assert sink.take() == {"pydicom": 4} and sink.take() == {}
    assert "SECRET" not in capsys.readouterr().err


def test_setup_and_uninstall_leave_no_trace():
    root = logging.getLogger()
    before_filters = [list(h.filters) for h in root.handlers]
    before_show = warnings.showwarning
    sink = setup_job_logging("DEBUG")
    assert logging.getLogger("pynetdicom").level == logging.WARNING  # its INFO/DEBUG quote whole identifiers
    assert logging.getLogger("drdd_med").level == logging.DEBUG
    sink.uninstall()
    assert warnings.showwarning is before_show
    assert [list(h.filters) for h in root.handlers[: len(before_filters)]] == before_filters
    assert sink not in logging.getLogger("pydicom").filters
