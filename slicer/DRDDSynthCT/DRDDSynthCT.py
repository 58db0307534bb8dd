"""3D Slicer scripted module: synthetic CT from an MR or CBCT volume with drdd_med.

The module is a thin shell: inference runs in a subprocess (``drdd-med translate``), never in the GUI thread, and all
testable logic lives in :mod:`drdd_med.slicer_support`. drdd_med must be importable from Slicer's Python
(``slicer.util.pip_install``); the subprocess may use another interpreter (an external environment with CUDA torch).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time

import ctk
import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from drdd_med.data.domains import DOMAINS
from drdd_med.slicer_support import (
    TranslateProcess,
    build_translate_command,
    check_result_geometry,
    create_work_paths,
    describe_exit,
    find_result,
    format_progress,
    kji_to_metatensor,
    matrix_from_vtk,
    metatensor_to_kji,
    parse_progress,
    translate_environment,
)

_SETTINGS_PREFIX = "DRDDSynthCT/"


class DRDDSynthCT(ScriptedLoadableModule):
    """Module description shown in Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "DRDD Synthetic CT"
        self.parent.categories = ["Filtering"]
        self.parent.dependencies = []
        self.parent.contributors = ["drdd_med developers"]
        self.parent.helpText = (
            "Computes a synthetic CT from an MR or CBCT volume with a drdd_med model bundle (decoupled residual "
            "denoising diffusion). For a model trained on several source domains, choose the input's domain. The "
            "result is synthetic and NOT FOR DIAGNOSTIC USE."
        )
        self.parent.acknowledgementText = "Built on MONAI and 3D Slicer."


class DRDDSynthCTWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """GUI built in code: input, bundle, source domain, device, steps, samples, interpreter; Apply / Cancel;
    progress."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.timer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = DRDDSynthCTLogic()
        box = ctk.ctkCollapsibleButton()
        box.text = "Synthetic CT"
        self.layout.addWidget(box)
        form = qt.QFormLayout(box)
        self.inputSelector = slicer.qMRMLNodeComboBox()
        self.inputSelector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
        self.inputSelector.noneEnabled = False
        self.inputSelector.setMRMLScene(slicer.mrmlScene)
        form.addRow("Input volume:", self.inputSelector)
        self.domainCombo = qt.QComboBox()
        self.domainCombo.addItems(["model's only domain", *DOMAINS])
        self.domainCombo.toolTip = ("Source domain of the input (T1w MR, T2w MR, CBCT), needed for a model trained on "
                                    "several.")
        form.addRow("Source domain:", self.domainCombo)
        self.bundleEdit = ctk.ctkPathLineEdit()
        self.bundleEdit.filters = ctk.ctkPathLineEdit.Dirs
        form.addRow("Model bundle:", self.bundleEdit)
        self.pythonEdit = ctk.ctkPathLineEdit()
        self.pythonEdit.toolTip = "Optional Python interpreter with drdd_med installed (default: Slicer's)."
        form.addRow("Python (optional):", self.pythonEdit)
        self.deviceCombo = qt.QComboBox()
        self.deviceCombo.addItems(["auto", "cpu", "cuda"])
        form.addRow("Device:", self.deviceCombo)
        self.stepsEdit = qt.QLineEdit("")  # empty: the model's own steps (a model may accept no other residual count)
        self.stepsEdit.placeholderText = "model default"
        self.stepsEdit.toolTip = "Residual and noise sampling steps, 'R,N'; empty: the model's (1,2 for the bundle's)."
        form.addRow("Steps:", self.stepsEdit)
        self.samplesSpin = qt.QSpinBox()
        self.samplesSpin.minimum, self.samplesSpin.maximum, self.samplesSpin.value = 1, 64, 1
        form.addRow("Samples:", self.samplesSpin)
        self.applyButton = qt.QPushButton("Apply")
        self.cancelButton = qt.QPushButton("Cancel")
        self.cancelButton.enabled = False
        form.addRow(self.applyButton, self.cancelButton)
        self.progressBar = qt.QProgressBar()
        form.addRow(self.progressBar)
        self.logView = qt.QPlainTextEdit()
        self.logView.readOnly = True
        form.addRow(self.logView)
        self.layout.addStretch(1)
        self.applyButton.connect("clicked(bool)", self.onApply)
        self.cancelButton.connect("clicked(bool)", self.onCancel)
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self.onPoll)
        settings = qt.QSettings()
        self.bundleEdit.currentPath = settings.value(_SETTINGS_PREFIX + "bundle", "")
        self.pythonEdit.currentPath = settings.value(_SETTINGS_PREFIX + "python", "")

    def cleanup(self):
        self.removeObservers()
        if self.logic is not None:
            self.logic.cancel()

    def onApply(self):
        settings = qt.QSettings()
        settings.setValue(_SETTINGS_PREFIX + "bundle", self.bundleEdit.currentPath)
        settings.setValue(_SETTINGS_PREFIX + "python", self.pythonEdit.currentPath)
        with slicer.util.tryWithErrorDisplay("Failed to start synthetic CT computation.", waitCursor=True):
            self.logView.clear()
            self.logic.start(self.inputSelector.currentNode(), self.bundleEdit.currentPath,
                             device=self.deviceCombo.currentText, steps=self.stepsEdit.text or None,
                             samples=self.samplesSpin.value, python=self.pythonEdit.currentPath or None,
                             domain=self.domainCombo.currentText if self.domainCombo.currentIndex > 0 else None)
            self.applyButton.enabled, self.cancelButton.enabled = False, True
            self.timer.start()

    def onCancel(self):
        self.logic.cancel()

    def onPoll(self):
        state, lines = self.logic.poll()
        for line in lines:
            if parse_progress(line) is None:
                self.logView.appendPlainText(line)
        if self.logic.progress is not None:
            self.progressBar.value = int(100 * self.logic.progress.fraction)
        if state == "running":
            return
        self.timer.stop()
        self.applyButton.enabled, self.cancelButton.enabled = True, False
        with slicer.util.tryWithErrorDisplay("Synthetic CT computation failed."):
            if state == "finished":
                node = self.logic.loadResult()
                slicer.util.setSliceViewerLayers(background=node)
            elif state == "failed":
                raise RuntimeError(self.logic.errorMessage())
        self.logic.cleanup()


class DRDDSynthCTLogic(ScriptedLoadableModuleLogic):
    """Writes the input to a temporary NIfTI, runs ``drdd-med translate`` in a subprocess, loads the result."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.process = None
        self.paths = None
        self.inputNode = None

    @property
    def progress(self):
        return None if self.process is None else self.process.progress

    @staticmethod
    def pythonExecutable(python=None):
        """Interpreter for the CLI: the given one, else Slicer's ``PythonSlicer``, else ``sys.executable``."""
        return python or shutil.which("PythonSlicer") or sys.executable

    def buildCommand(self, inputPath, bundleDir, outDir, device="auto", steps=None, samples=None, python=None,
                     domain=None):
        return build_translate_command(inputPath, bundleDir, outDir, device=device, steps=steps, samples=samples,
                                       python=self.pythonExecutable(python), domain=domain)

    def prepare(self, inputNode, bundleDir, device="auto", steps=None, samples=None, python=None, domain=None):
        """Write ``inputNode`` to a new work folder; return the command that translates it."""
        if inputNode is None:
            raise ValueError("Select an input volume.")
        if not bundleDir or not os.path.isdir(bundleDir):
            raise ValueError(f"Model bundle folder {bundleDir!r} does not exist; select the bundle folder.")
        self.inputNode = inputNode
        self.paths = create_work_paths(slicer.app.temporaryPath, inputNode.GetName())
        if not slicer.util.saveNode(inputNode, str(self.paths.input_path)):
            raise RuntimeError(f"Could not write the input volume to {self.paths.input_path}.")
        return self.buildCommand(self.paths.input_path, bundleDir, self.paths.out_dir, device, steps, samples,
                                 python, domain)

    def launch(self, command, env=None):
        """Start ``command`` as the running translate process."""
        self.cancel()
        self.process = TranslateProcess(command, env=env)
        self.process.start()
        return self.process

    def start(self, inputNode, bundleDir, device="auto", steps=None, samples=None, python=None, domain=None):
        command = self.prepare(inputNode, bundleDir, device, steps, samples, python, domain)
        logging.info("Running: %s", " ".join(command))
        return self.launch(command, env=translate_environment(device))

    def poll(self):
        """Return (state, new output lines); state is 'idle', 'running', 'finished', 'failed' or 'cancelled'."""
        if self.process is None:
            return "idle", []
        lines = self.process.read_lines()
        code = self.process.poll()
        if code is None:
            return "running", lines
        lines += self.process.read_lines()
        if self.process.cancelled:
            return "cancelled", lines
        return ("finished" if code == 0 else "failed"), lines

    def errorMessage(self):
        if self.process is None or self.process.poll() is None:
            return None
        return describe_exit(self.process.poll(), list(self.process.tail))

    def cancel(self):
        if self.process is not None:
            self.process.cancel()

    def loadResult(self):
        """Check the output against the input grid and load it as a new volume next to the input."""
        output = find_result(self.paths.out_dir, self.paths.input_path)
        check_result_geometry(self.paths.input_path, output)
        name = slicer.mrmlScene.GenerateUniqueName(f"{self.inputNode.GetName()}_sCT")
        node = slicer.util.loadVolume(str(output), properties={"name": name})
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        if shNode is not None:  # put the sCT in the input's study
            parent = shNode.GetItemParent(shNode.GetItemByDataNode(self.inputNode))
            shNode.SetItemParent(shNode.GetItemByDataNode(node), parent)
        return node

    def cleanup(self):
        if self.paths is not None:
            shutil.rmtree(self.paths.work_dir, ignore_errors=True)
            self.paths = None

    def process_volume(self, inputNode, bundleDir, device="auto", steps=None, samples=None, python=None,
                       timeout_s=None, domain=None):
        """Synchronous run for scripting: start, stream the log, load and return the synthetic CT node."""
        self.start(inputNode, bundleDir, device, steps, samples, python, domain)
        begin = time.monotonic()
        while True:
            state, lines = self.poll()
            for line in lines:
                logging.info(line)
            if state != "running":
                break
            if timeout_s is not None and time.monotonic() - begin > timeout_s:
                self.cancel()
                raise TimeoutError(f"synthetic CT computation exceeded {timeout_s} s and was cancelled.")
            time.sleep(0.1)
        try:
            if state != "finished":
                raise RuntimeError(self.errorMessage() or f"translate ended in state {state}.")
            return self.loadResult()
        finally:
            self.cleanup()


class DRDDSynthCTTest(ScriptedLoadableModuleTest):
    """Self-test inside Slicer (no model needed): command, progress parsing and array geometry round trip."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_command_and_progress()
        self.test_array_round_trip()

    def test_command_and_progress(self):
        logic = DRDDSynthCTLogic()
        command = logic.buildCommand("in.nii.gz", "bundle", "out", device="cpu", steps="2,2", samples=1)
        self.assertEqual(command[command.index("translate") + 1], "in.nii.gz")
        self.assertEqual(parse_progress(format_progress(2, 4)).fraction, 0.5)

    def test_array_round_trip(self):
        import numpy as np

        kji = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        ijk_to_ras = np.diag([-0.5, -0.7, 2.0, 1.0])
        node = slicer.util.addVolumeFromArray(kji, ijkToRAS=ijk_to_ras, name="drdd_test")
        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        image = kji_to_metatensor(slicer.util.arrayFromVolume(node), matrix_from_vtk(matrix))
        back, matrix = metatensor_to_kji(image)
        self.assertTrue(np.array_equal(back, kji))
        self.assertTrue(np.allclose(matrix, ijk_to_ras))
        self.delayDisplay("DRDDSynthCT self-test passed")
