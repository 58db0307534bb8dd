"""Tests for the 3D Slicer module slicer/DRDDSynthCT/DRDDSynthCT.py, imported against stub Slicer modules.

3D Slicer cannot run in CI, so ``slicer``, ``qt``, ``vtk`` and ``ctk`` are replaced by minimal stand-ins here (the
only mocks in the test suite). The child processes, files and geometry checks are real.
"""

from __future__ import annotations

import importlib.util
import py_compile
import sys
import time
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

MODULE_PATH = Path(__file__).resolve().parents[2] / "slicer" / "DRDDSynthCT" / "DRDDSynthCT.py"
AFFINE = np.array([[-0.8, 0, 0, 20.0], [0, -1.2, 0, -4.0], [0, 0, 2.5, 7.0], [0, 0, 0, 1.0]])


class FakeVolumeNode:
    """Just enough of vtkMRMLScalarVolumeNode: a name, a KJI array and an IJK-to-RAS matrix."""

    def __init__(self, name, kji, ijk_to_ras):
        self.name, self.kji, self.ijk_to_ras = name, kji, ijk_to_ras

    def GetName(self):
        return self.name


class _Base:
    def __init__(self, *args, **kwargs):
        pass


@pytest.fixture
def module(tmp_path, monkeypatch):
    """Import DRDDSynthCT.py with stub slicer/qt/vtk/ctk modules; record loadVolume calls."""
    loaded = []

    def save_node(node, path):  # Slicer writes the node's KJI voxels with its IJK-to-RAS as a NIfTI
        nib.save(nib.Nifti1Image(node.kji.transpose(2, 1, 0), node.ijk_to_ras), path)
        return True

    def load_volume(path, properties=None):
        loaded.append((path, properties))
        return FakeVolumeNode(properties["name"], None, None)

    slicer = types.ModuleType("slicer")
    slicer.app = types.SimpleNamespace(temporaryPath=str(tmp_path))
    slicer.mrmlScene = types.SimpleNamespace(GenerateUniqueName=lambda name: name)
    slicer.vtkMRMLSubjectHierarchyNode = types.SimpleNamespace(GetSubjectHierarchyNode=lambda scene: None)
    slicer.util = types.ModuleType("slicer.util")
    slicer.util.VTKObservationMixin = _Base
    slicer.util.saveNode = save_node
    slicer.util.loadVolume = load_volume
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
                 "ScriptedLoadableModuleTest"):
        setattr(slm, name, type(name, (_Base,), {}))
    slicer.ScriptedLoadableModule = slm
    for name, mod in {"slicer": slicer, "slicer.util": slicer.util, "slicer.ScriptedLoadableModule": slm,
                      "qt": types.ModuleType("qt"), "vtk": types.ModuleType("vtk"),
                      "ctk": types.ModuleType("ctk")}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("DRDDSynthCT", MODULE_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.loaded = loaded
    return mod


def alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (a killed orphan may wait to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def run_until_done(logic, timeout_s=20.0):
    lines, end = [], time.monotonic() + timeout_s
    while time.monotonic() < end:
        state, new = logic.poll()
        lines += new
        if state != "running":
            return state, lines
        time.sleep(0.02)
    raise AssertionError("process did not finish")


def test_module_file_compiles():
    py_compile.compile(str(MODULE_PATH), doraise=True)


def test_prepare_writes_input_and_builds_command(module, tmp_path):
    logic = module.DRDDSynthCTLogic()
    node = FakeVolumeNode("T1 axial", np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32), AFFINE)
    (tmp_path / "bundle").mkdir()
    command = logic.prepare(node, str(tmp_path / "bundle"), device="cpu", steps="2,2", samples=3, python="/py")
    paths = logic.paths
    assert command == ["/py", "-m", "drdd_med.cli.main", "translate", str(paths.input_path), "--bundle",
                       str(tmp_path / "bundle"), "--out", str(paths.out_dir), "--device", "cpu", "--steps", "2,2",
                       "--samples", "3"]
    written = nib.load(str(paths.input_path))
    np.testing.assert_allclose(written.affine, AFFINE, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(written.dataobj).transpose(2, 1, 0), node.kji)
    with pytest.raises(ValueError, match="bundle"):
        logic.prepare(node, str(tmp_path / "missing"))


def test_run_streams_progress_and_loads_checked_result(module, tmp_path):
    logic = module.DRDDSynthCTLogic()
    node = FakeVolumeNode("mr", np.zeros((3, 4, 5), np.float32), AFFINE)
    (tmp_path / "bundle").mkdir()
    logic.prepare(node, str(tmp_path / "bundle"))
    # A stand-in CLI: reports progress and writes <stem>_sct.nii.gz on the input grid, as translate does.
    script = (
        "import sys, nibabel as nib, numpy as np, pathlib\n"
        "src = nib.load(sys.argv[1]); out = pathlib.Path(sys.argv[2]); out.mkdir()\n"
        "for i in range(1, 5): print(f'PROGRESS {i}/4 step', flush=True)\n"
        "print('log line')\n"
        "nib.save(nib.Nifti1Image(np.full(src.shape, -1000.0, np.float32), src.affine), str(out / 'mr_sct.nii.gz'))\n"
    )
    logic.launch([sys.executable, "-c", script, str(logic.paths.input_path), str(logic.paths.out_dir)])
    state, lines = run_until_done(logic)
    assert state == "finished" and "log line" in lines
    assert logic.progress.done == 4 and logic.progress.fraction == 1.0
    result = logic.loadResult()
    assert module.loaded == [(str(logic.paths.out_dir / "mr_sct.nii.gz"), {"name": "mr_sCT"})]
    assert result.GetName() == "mr_sCT"
    work_dir = logic.paths.work_dir
    logic.cleanup()
    assert not work_dir.exists()


def test_failed_run_reports_exit_code_and_wrong_grid_is_rejected(module, tmp_path):
    logic = module.DRDDSynthCTLogic()
    node = FakeVolumeNode("mr", np.zeros((3, 4, 5), np.float32), AFFINE)
    (tmp_path / "bundle").mkdir()
    logic.prepare(node, str(tmp_path / "bundle"))
    logic.launch([sys.executable, "-c", "print('bad bundle'); raise SystemExit(2)"])
    state, _ = run_until_done(logic)
    assert state == "failed" and "exit code 2" in logic.errorMessage() and "bad bundle" in logic.errorMessage()
    logic.paths.out_dir.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((5, 4, 2), np.float32), AFFINE), str(logic.paths.output_path))
    with pytest.raises(ValueError, match="shape"):
        logic.loadResult()
    assert module.loaded == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to check the process tree")
def test_cancel_kills_real_subprocess_tree(module):
    logic = module.DRDDSynthCTLogic()
    script = ("import subprocess, sys, time\n"
              "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print('GRANDCHILD', g.pid, flush=True); print('PROGRESS 1/10', flush=True); time.sleep(60)\n")
    proc = logic.launch([sys.executable, "-c", script])
    lines, end = [], time.monotonic() + 10
    while len(lines) < 2 and time.monotonic() < end:
        lines += logic.poll()[1]
        time.sleep(0.02)
    grandchild = int(lines[0].split()[1])
    assert logic.progress.done == 1
    logic.cancel()
    state, _ = logic.poll()
    assert state == "cancelled" and proc.poll() is not None
    end = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < end:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_the_module_translates_the_chosen_domain_with_a_model_of_several(module, tmp_path, make_tiny_bundle):
    bundle = make_tiny_bundle(seed=0, model_version="drdd-slicer-domains", domains=["t1w", "cbct"])
    logic = module.DRDDSynthCTLogic()
    node = FakeVolumeNode("cbct", np.random.default_rng(0).uniform(-1000, 1500, (3, 8, 8)).astype(np.float32),
                          AFFINE)
    command = logic.prepare(node, str(bundle), device="cpu", domain="cbct", python=sys.executable)
    assert command[-2:] == ["--domain", "cbct"]
    logic.launch(command, env=module.translate_environment("cpu"))
    state, lines = run_until_done(logic, timeout_s=120)
    assert state == "finished", lines
    assert logic.loadResult().GetName() == "cbct_sCT"
    logic.cleanup()
    logic.prepare(node, str(bundle), device="cpu")  # no domain: the NIfTI the module writes does not say it
    logic.launch(logic.buildCommand(logic.paths.input_path, str(bundle), logic.paths.out_dir, "cpu",
                                    python=sys.executable), env=module.translate_environment("cpu"))
    state, _ = run_until_done(logic, timeout_s=120)
    assert state == "failed" and "pass it: drdd-med translate --domain t1w|cbct" in logic.errorMessage()
