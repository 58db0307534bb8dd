"""Helpers of ``benchmarks/claims.py`` (data, training loops, evaluation, harmonization MMD, report)."""
