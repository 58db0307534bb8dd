"""Command-line interface: ``drdd-med <subcommand>`` (see :mod:`drdd_med.cli.main`)."""

from __future__ import annotations

__all__: list[str] = []
