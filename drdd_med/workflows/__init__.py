"""Glue for the MONAI bundle: paths, first-use data, staged training with resume, reports.

The bundle configs in ``bundles/drdd`` reach this code through dotted ``_target_`` / ``$`` expressions only.
"""
