"""``drdd-med pacs-batch``: the hospital batch job (PACS -> sCT -> PACS), from cron (``--once``) or as a service.

Exit codes: 0 every processed series stored (or skipped by the rules); 1 some series failed (see the journal);
2 the PACS could not be queried; 3 another job holds the state directory; 4 invalid config or translator.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drdd_med.pacs.logs import DecoderWarnings

__all__ = ["add_parser", "run", "EXIT_CONFIG"]

logger = logging.getLogger(__name__)

EXIT_CONFIG = 4
_DESCRIPTION = """Query a PACS, translate the selected MR series to synthetic CT and store them back, recording every
step in a SQLite journal under state_dir (see docs/pacs.md). Run it from cron with --once.

exit codes: 0 every processed series stored (or skipped by the rules); 1 some series failed (see the journal);
2 the PACS could not be queried; 3 another job holds the state directory; 4 invalid config or translator."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``pacs-batch`` subcommand."""
    parser = subparsers.add_parser(
        "pacs-batch", help="query a PACS, translate the selected MR series to sCT and store them back",
        description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="pacs.json (see docs/pacs.md)")
    parser.add_argument("--once", action="store_true",
                        help="run one pass and exit (cron); default: repeat every poll_interval_s until SIGTERM")
    parser.add_argument("--dry-run", action="store_true", help="only list the series that would be processed")
    parser.add_argument("--translator", default=None,
                        help="'package.module:factory' building the translator (overrides the config)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.set_defaults(func=run)
    return parser


def _print_plan(summary) -> None:
    print(f"{summary.found} series found; {len(summary.planned)} would be processed:")
    print(f"{'state':<11}{'tries':>5}  {'selection':<14}{'instances':>9}  series / study")
    for p in summary.planned:
        count = "?" if p.expected_instances is None else str(p.expected_instances)
        print(f"{p.state:<11}{p.attempts:>5}  {str(p.selection):<14}{count:>9}  {p.series_uid} / {p.study_uid}")


def run(args: argparse.Namespace) -> int:
    """Run the job; returns the exit code (see the module docstring)."""
    from drdd_med.pacs.logs import setup_job_logging

    # pynetdicom's protocol log and pydicom's warnings quote header values: keep patient data out of the log.
    decoder_warnings = setup_job_logging(args.log_level)
    try:
        return _run(args, decoder_warnings)
    finally:
        decoder_warnings.uninstall()


def _run(args: argparse.Namespace, decoder_warnings: DecoderWarnings) -> int:
    from drdd_med.pacs.config import PacsConfigError, load_config
    from drdd_med.pacs.job import EXIT_LOCKED, JobLockedError, PacsBatchJob, build_translator

    try:
        config = load_config(args.config)
        if args.translator:
            config = replace(config, translator=args.translator)
        job = PacsBatchJob(config, build_translator(config))
    except (PacsConfigError, ValueError, RuntimeError) as exc:
        logger.error("%s", exc)
        return EXIT_CONFIG

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logger.warning("signal %d: finishing the current series, then stopping", signum)
        stopping.set()
        job.stop()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        while True:
            try:
                summary = job.run(dry_run=args.dry_run)
            except JobLockedError as exc:
                logger.error("%s", exc)
                return EXIT_LOCKED
            finally:
                withheld = decoder_warnings.take()
                if withheld:
                    logger.info("withheld %d third-party decoder warning(s) (%s): they quote header values, which "
                                "can be patient data", sum(withheld.values()),
                                ", ".join(f"{k}: {v}" for k, v in sorted(withheld.items())))
            if args.dry_run:
                _print_plan(summary)
                return summary.exit_code
            error = f"; error: {summary.error}" if summary.error else ""
            print(f"pacs-batch: {len(summary.planned)} due, {len(summary.stored)} stored, {len(summary.failed)} "
                  f"failed, {len(summary.skipped)} skipped in {summary.wall_s:.1f} s "
                  f"({summary.series_per_hour:.1f} series/hour){error}")
            if args.once or stopping.wait(config.poll_interval_s):
                return summary.exit_code
    except KeyboardInterrupt:
        logger.warning("interrupted; the journal keeps every finished step")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
