"""Quality-control pictures (PNG montages rendered with matplotlib's Agg backend)."""

from __future__ import annotations

__all__: list[str] = []
