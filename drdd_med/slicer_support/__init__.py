"""Helpers for the 3D Slicer module, free of Slicer, Qt and VTK imports so they are testable with pytest.

- :mod:`~drdd_med.slicer_support.command`: the translate command line and the run's file names;
- :mod:`~drdd_med.slicer_support.progress`: the ``PROGRESS <done>/<total>`` line format;
- :mod:`~drdd_med.slicer_support.process`: the child process (output streaming, cancel);
- :mod:`~drdd_med.slicer_support.results`: finding and checking the result;
- :mod:`~drdd_med.slicer_support.arrays`: KJI arrays <-> MetaTensors with an explicit IJK-to-RAS matrix.
"""

from __future__ import annotations

from drdd_med.slicer_support.arrays import (
    kji_to_metatensor,
    kji_to_xyz,
    matrix_from_vtk,
    metatensor_to_kji,
    xyz_to_kji,
)
from drdd_med.slicer_support.command import (
    SCT_SUFFIX,
    WorkPaths,
    build_translate_command,
    create_work_paths,
    expected_output_path,
    input_stem,
    translate_environment,
)
from drdd_med.slicer_support.process import TranslateProcess, kill_process_tree
from drdd_med.slicer_support.progress import PROGRESS_PREFIX, ProgressEvent, format_progress, parse_progress
from drdd_med.slicer_support.results import check_result_geometry, describe_exit, find_result

__all__ = [
    "kji_to_metatensor", "kji_to_xyz", "matrix_from_vtk", "metatensor_to_kji", "xyz_to_kji",
    "SCT_SUFFIX", "WorkPaths", "build_translate_command", "create_work_paths", "expected_output_path",
    "input_stem", "translate_environment",
    "TranslateProcess", "kill_process_tree",
    "PROGRESS_PREFIX", "ProgressEvent", "format_progress", "parse_progress",
    "check_result_geometry", "describe_exit", "find_result",
]
