import importlib.util
import logging
from pathlib import Path
from typing import Annotated, Optional, Union

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import (
    Choice,
    parameterNodeWrapper,
)

from slicer import (
    vtkMRMLScalarVolumeNode,
    vtkMRMLScriptedModuleNode,
    vtkMRMLSegmentationNode,
    vtkMRMLSequenceNode,
    vtkMRMLTableNode,
)

from CardiacSuiteLib.errors import Cancelled, CardiacSuiteError

#: Registry task of the short-axis cine segmentation models.
CMR_TASK = "cmr-sax-cine"
#: Where inference may run; "auto" picks CUDA when available, else the CPU.
DEVICES = ["auto", "cpu", "cuda"]
#: Attribute value that marks a study's CardiacCase node (CardiacSuiteLib.case.MODULE_NAME).
CARDIAC_CASE = "CardiacCase"
#: Packages that come with Slicer (numpy, scipy, SimpleITK, VTK) or with the PyTorch extension (torch): the
#: dependency installer must never install or replace them, even when a requirement depends on them.
SLICER_PROVIDED_PACKAGES = ["torch", "numpy", "scipy", "SimpleITK", "vtk"]
#: Python package each inference backend needs.
BACKEND_PACKAGES = {"onnxruntime": "onnxruntime", "torch": "torch"}


#
# CMRAnalysis
#


class CMRAnalysis(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CMR Analysis")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = []
        self.parent.contributors = ["CardiacSuite developers"]
        # _() function marks text as translatable to other languages
        self.parent.helpText = _("""
Left and right ventricular function from a short-axis cine MR.<br><br>
An AI model from CardiacSuite's model registry contours the right ventricle, the left ventricular myocardium
and the left ventricular cavity on every slice. End-diastole and end-systole are the phases with the largest
and smallest LV cavity area on the mid-ventricular slices; end-diastolic and end-systolic volumes, stroke volume,
ejection fraction and myocardial mass are measured by disc summation. The results are a table, the ED and ES
segmentations (a segmentation sequence) and references on the study's CardiacCase node.<br><br>
Input: a cine (a sequence of short-axis volumes) or a single volume (one phase: volumes only).
The model runs on a CUDA GPU when there is one and on the CPU otherwise; Cancel stops it after the current slice.
<br><br><b>Coming:</b> flow, perfusion, tissue characterisation, T1/T2 mapping and strain.
<br><br>For research use; not a medical device.
See the <a href="https://github.com/CardiacSuite/SlicerCardiacSuite#cmranalysis">module documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Part of CardiacSuite, developed by the CardiacSuite developers and distributed under the Apache License 2.0.
Built on 3D Slicer, MONAI and ONNX Runtime. Each model's authors, training data and licence are listed in the
model registry and shown next to the model selector.
""")


#
# CMRAnalysisParameterNode
#


@parameterNodeWrapper
class CMRAnalysisParameterNode:
    """
    The parameters needed by module.

    inputCine - the short-axis cine (volume sequence), or one volume for a single phase.
    modelId - registry id of the segmentation model; empty means the registry's default for the task.
    device - where the model runs: auto, cpu or cuda.
    outputTable - the measurements of the last analysis.
    outputSegmentationSequence - the ED and ES segmentations of the last analysis.
    outputSegmentation - the segmentation shown for it (the proxy node of its sequence browser).
    cardiacCase - the study (CardiacCase node) the results are filed under.
    """

    inputCine: Union[vtkMRMLSequenceNode, vtkMRMLScalarVolumeNode]
    modelId: str = ""
    device: Annotated[str, Choice(DEVICES)] = "auto"
    outputTable: vtkMRMLTableNode
    outputSegmentationSequence: vtkMRMLSequenceNode
    outputSegmentation: vtkMRMLSegmentationNode
    cardiacCase: vtkMRMLScriptedModuleNode


#
# Python dependencies (installed on first Apply, never at import time)
#


def ensurePythonRequirements(backend: str) -> None:
    """Make sure the Python packages the analysis needs are installed, asking the user before installing.

    torch is needed only by models with the "torch" backend and comes from the PyTorch extension, which picks
    the build that matches this computer's GPU. Everything else is listed with lower bounds in
    CardiacSuiteLib/Resources/requirements.txt and installed with ``slicer.packaging.pip_ensure``, which does
    nothing when the packages are already there and skips installation in testing mode. Raises
    CardiacSuiteError when a package is missing and cannot be installed or the user declines.
    """
    if backend == "torch":
        _ensureTorch()

    import slicer.packaging
    import CardiacSuiteLib

    requirementsPath = Path(CardiacSuiteLib.__file__).parent / "Resources" / "requirements.txt"
    requirements = slicer.packaging.load_requirements(requirementsPath)
    try:
        slicer.packaging.pip_ensure(
            requirements,
            skip_packages=SLICER_PROVIDED_PACKAGES,
            requester="CardiacSuite",
        )
    except RuntimeError as error:  # the user declined the installation
        names = ", ".join(requirement.name for requirement in requirements)
        raise CardiacSuiteError(
            _("CMR Analysis needs these Python packages: {names}. They were not installed ({reason}).").format(
                names=names, reason=error
            )
        ) from None


def _ensureTorch() -> None:
    try:
        import PyTorchUtils
    except ModuleNotFoundError:
        raise CardiacSuiteError(
            _("This model needs the PyTorch extension. Install 'PyTorch' from the Extensions Manager and restart Slicer.")
        ) from None
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    if not torchLogic.torchInstalled():
        if torchLogic.installTorch(askConfirmation=True) is None:
            raise CardiacSuiteError(_("This model needs PyTorch, which was not installed."))


#
# CMRAnalysisWidget
#


class CMRAnalysisWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._busy = False  # True while a download or an analysis runs (Qt events are processed meanwhile)
        self._cancelToken = None  # set while an analysis runs

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)

        # Load widget from .ui file (created by Qt Designer).
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CMRAnalysis.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)

        # Only CardiacCase nodes are studies; other scripted module nodes (parameter nodes) are not offered.
        self.ui.cardiacCaseSelector.addAttribute("vtkMRMLScriptedModuleNode", "ModuleName", CARDIAC_CASE)

        # Set scene in MRML widgets. The .ui connects the top-level widget's "mrmlSceneChanged(vtkMRMLScene*)"
        # signal to each MRML widget's "setMRMLScene(vtkMRMLScene*)" slot.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        # Create logic class. Logic implements all computations that should be possible to run
        # in batch mode, without a graphical user interface.
        self.logic = CMRAnalysisLogic()

        self._populateModelSelector()
        self._showProgress(False)

        # These connections ensure that we update parameter node when scene is closed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Buttons and the model selector (filled from the registry, so it is not bound to the parameter node)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelSelected)

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._cancelRunningAnalysis()
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        # Make sure parameter node exists and observed
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        # Do not react to parameter node changes (GUI will be updated when the user enters into the module)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        # An analysis must not add its results to the next scene
        self._cancelRunningAnalysis()
        # Parameter node will be reset, do not use it anymore
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        # If this module is shown while the scene is closed then recreate a new parameter node immediately
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed."""
        # Parameter node stores all user choices in parameter values, node selections, etc.
        # so that when the scene is saved and reloaded, these settings are restored.

        self.setParameterNode(self.logic.getParameterNode())

        # Select default input nodes if nothing is selected yet to save a few clicks for the user
        if not self._parameterNode.inputCine:
            firstCine = self.logic.firstCine()
            if firstCine:
                self._parameterNode.inputCine = firstCine
        if not self._parameterNode.cardiacCase:
            self._parameterNode.cardiacCase = self.logic.defaultCase()

    def setParameterNode(self, inputParameterNode: Optional[CMRAnalysisParameterNode]) -> None:
        """
        Set and observe parameter node.
        Observation is needed because when the parameter node is changed then the GUI must be updated immediately.
        """

        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Note: in the .ui file, a Qt dynamic property called "SlicerParameterName" is set on each
            # ui element that needs connection.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Enable Apply when an input and a model are chosen and nothing runs; keep the results view in sync."""
        parameterNode = self._parameterNode
        self._updateModelSelectorFromParameterNode()
        self.ui.resultsTableView.setMRMLTableNode(parameterNode.outputTable if parameterNode else None)

        if self._busy:
            self.ui.applyButton.toolTip = _("An analysis is running")
            self.ui.applyButton.enabled = False
        elif not parameterNode or not parameterNode.inputCine:
            self.ui.applyButton.toolTip = _("Select a short-axis cine (or a single volume)")
            self.ui.applyButton.enabled = False
        elif self.ui.modelSelector.count == 0:
            self.ui.applyButton.toolTip = _("No model is registered for short-axis cine segmentation")
            self.ui.applyButton.enabled = False
        else:
            self.ui.applyButton.toolTip = _("Segment the cine and measure ventricular function")
            self.ui.applyButton.enabled = True

    # ------------------------------------------------------------------------------------------- models

    def _populateModelSelector(self) -> None:
        """Fill the model selector from the registry, the task's default model first."""
        wasBlocked = self.ui.modelSelector.blockSignals(True)
        self.ui.modelSelector.clear()
        try:
            entries = self.logic.availableModels()
        except CardiacSuiteError as error:
            entries = []
            self.ui.modelInfoLabel.text = _("The model registry cannot be read: {error}").format(error=error)
        for entry in entries:
            self.ui.modelSelector.addItem(f"{entry.title} (v{entry.version})", entry.id)
        self.ui.modelSelector.blockSignals(wasBlocked)
        self._updateModelInfo()

    def _updateModelSelectorFromParameterNode(self) -> None:
        if not self._parameterNode or self.ui.modelSelector.count == 0:
            return
        index = self.ui.modelSelector.findData(self._parameterNode.modelId) if self._parameterNode.modelId else 0
        if index < 0:  # a model id saved with the scene that this installation does not know
            index = 0
        if index != self.ui.modelSelector.currentIndex:
            wasBlocked = self.ui.modelSelector.blockSignals(True)
            self.ui.modelSelector.currentIndex = index
            self.ui.modelSelector.blockSignals(wasBlocked)
            self._updateModelInfo()

    def onModelSelected(self, index: int) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.modelId = self.ui.modelSelector.itemData(index) or ""
        self._updateModelInfo()

    def _updateModelInfo(self) -> None:
        modelId = self.ui.modelSelector.currentData
        if not modelId:
            return
        entry = self.logic.model(modelId)
        installed = _("installed") if self.logic.modelInstalled(entry) else _("not installed yet")
        self.ui.modelInfoLabel.text = _("{id} {version} ({backend}); licence: {licence}; {installed}").format(
            id=entry.id, version=entry.version, backend=entry.backend, licence=entry.licence, installed=installed
        )
        self.ui.modelSelector.toolTip = entry.title

    # ------------------------------------------------------------------------------------------ running

    def onApplyButton(self) -> None:
        """Run processing when user clicks "Apply" button."""
        if self._busy:
            return
        self._busy = True
        try:
            with slicer.util.tryWithErrorDisplay(_("CMR analysis failed."), waitCursor=False):
                self._runAnalysis()
        finally:
            self._busy = False
            self._checkCanApply()

    def _runAnalysis(self) -> None:
        parameterNode = self._parameterNode
        modelId = parameterNode.modelId or None
        try:
            entry = self.logic.model(modelId)
            ensurePythonRequirements(entry.backend)
            if not self.logic.modelAvailable(entry) and not self._downloadModel(entry):
                return
        except CardiacSuiteError as error:
            self._setStatus(str(error))
            slicer.util.errorDisplay(str(error), windowTitle=_("CMR Analysis"))
            return

        self._cancelToken = self.logic.createCancelToken()
        self._showProgress(True)
        try:
            result = self.logic.process(
                parameterNode.inputCine,
                modelId=modelId,
                device=parameterNode.device,
                progress=self.onProgress,
                cancel=self._cancelToken,
            )
        except Cancelled:
            self._setStatus(_("Cancelled: nothing was added to the scene."))
            return
        except CardiacSuiteError as error:
            self._setStatus(str(error))
            slicer.util.errorDisplay(str(error), windowTitle=_("CMR Analysis"))
            return
        finally:
            self._cancelToken = None
            self._showProgress(False)

        self._showResult(result)

    def _downloadModel(self, entry) -> bool:
        """Ask before downloading the model's weights; True when they are installed afterwards."""
        size = f"{entry.file_size / 1e6:.0f} MB" if entry.file_size else _("unknown size")
        question = _(
            "The model '{title}' ({id} {version}, {size}) is not installed.\n\n"
            "Download it now from its registered source? Its checksum is verified before use.\n\nLicence: {licence}"
        ).format(title=entry.title, id=entry.id, version=entry.version, size=size, licence=entry.licence)
        if not slicer.util.confirmOkCancelDisplay(question, windowTitle=_("CMR Analysis")):
            self._setStatus(_("The model is not installed; nothing was run."))
            return False
        self._showProgress(True, cancellable=False)
        try:
            self.logic.downloadModel(entry, progress=self.onProgress)
        finally:
            self._showProgress(False)
        self._updateModelInfo()
        return True

    def onProgress(self, fraction: float, message: str) -> None:
        """Progress callback of the analysis, called on the GUI thread between slices."""
        self.ui.progressBar.value = int(round(100.0 * min(max(fraction, 0.0), 1.0)))
        self.ui.progressBar.format = "%p%  " + message.replace("%", "%%")
        # Let Qt repaint and deliver clicks, so that Cancel works while the analysis runs
        slicer.app.processEvents()

    def onCancelButton(self) -> None:
        self._cancelRunningAnalysis()

    def _cancelRunningAnalysis(self) -> None:
        if self._cancelToken is not None:
            self._cancelToken.cancel()
            self.ui.cancelButton.enabled = False
            self._setStatus(_("Cancelling..."))

    def _showProgress(self, running: bool, cancellable: bool = True) -> None:
        self.ui.progressBar.value = 0
        self.ui.progressBar.format = "%p%"
        self.ui.progressBar.visible = running
        self.ui.cancelButton.visible = running and cancellable
        self.ui.cancelButton.enabled = running and cancellable
        self.ui.inputsCollapsibleButton.enabled = not running
        if running:
            self._setStatus("")
        self._checkCanApply()

    def _setStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        if text:
            logging.info(f"CMR Analysis: {text}")

    def _showResult(self, result) -> None:
        """Keep the result nodes in the parameter node, select the segmentation and show it over the cine."""
        proxySegmentation = result.segmentation_browser.GetProxyNode(result.segmentation_sequence)
        parameterNode = self._parameterNode
        parameterNode.outputTable = result.table
        parameterNode.outputSegmentationSequence = result.segmentation_sequence
        parameterNode.outputSegmentation = proxySegmentation
        parameterNode.cardiacCase = result.case_node

        slicer.modules.sequences.setToolBarActiveBrowserNode(result.segmentation_browser)
        if proxySegmentation is not None:
            proxySegmentation.CreateDefaultDisplayNodes()
            proxySegmentation.GetDisplayNode().SetVisibility(True)
        background = self.logic.displayedVolume(parameterNode.inputCine)
        if background is not None:
            slicer.util.setSliceViewerLayers(background=background, fit=True)
        self.ui.resultsCollapsibleButton.collapsed = False

        lv, rv = result.results["lv"], result.results["rv"]
        if lv.get("ef_pct") is None:
            self._setStatus(
                _("Single phase: LV volume {lv:.1f} ml, RV volume {rv:.1f} ml.").format(lv=lv["edv_ml"], rv=rv["edv_ml"])
            )
        else:
            self._setStatus(
                _("LV ejection fraction {lvef:.1f} %, RV ejection fraction {rvef:.1f} %.").format(
                    lvef=lv["ef_pct"], rvef=rv["ef_pct"]
                )
            )


#
# CMRAnalysisLogic
#


class CMRAnalysisLogic(ScriptedLoadableModuleLogic):
    """This class should implement all the actual computation done by your module.  The interface
    should be such that other python code can import this class and make use of the functionality without
    requiring an instance of the Widget.
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py

    The computation itself is in CMRAnalysisLib and CardiacSuiteLib; this class passes them the scene.
    """

    def __init__(self) -> None:
        """Called when the logic class is instantiated. Can be used for initializing member variables."""
        ScriptedLoadableModuleLogic.__init__(self)
        self._registry = None

    def getParameterNode(self):
        return CMRAnalysisParameterNode(super().getParameterNode())

    def process(self, inputNode, modelId=None, device="auto", progress=None, cancel=None):
        """Analyse ventricular function on a cine (volume sequence) or one volume; returns a FunctionAnalysis.

        :param inputNode: vtkMRMLSequenceNode of short-axis volumes, or a vtkMRMLScalarVolumeNode (one phase).
        :param modelId: registry id of the model; None for the task's default model.
        :param device: "auto", "cpu" or "cuda".
        :param progress: callback(fraction in 0..1, message), called between slices.
        :param cancel: a CancelToken; the analysis raises Cancelled after token.cancel() and adds nothing.
        """
        from CMRAnalysisLib.function_scene import run_function_analysis

        return run_function_analysis(
            slicer.mrmlScene,
            inputNode,
            model_id=modelId or None,
            device=device,
            progress=progress,
            cancel=cancel,
        )

    @staticmethod
    def createCancelToken():
        from CardiacSuiteLib.inference import CancelToken

        return CancelToken()

    # Model registry

    def registry(self):
        if self._registry is None:
            from CardiacSuiteLib.inference.registry import ModelRegistry

            self._registry = ModelRegistry.default()
        return self._registry

    def availableModels(self) -> list:
        """Registry entries for short-axis cine segmentation, the task's default model first."""
        entries = self.registry().models(task=CMR_TASK)
        return sorted(entries, key=lambda entry: not entry.default)

    def model(self, modelId=None):
        """The registry entry of ``modelId``, or the task's default model when it is None or empty."""
        return self.registry().get(modelId or None, task=CMR_TASK)

    def modelInstalled(self, entry) -> bool:
        return self.registry().is_installed(entry)

    def modelAvailable(self, entry) -> bool:
        """True when the weights are in the cache, or could be put there from a local source (no download)."""
        if self.registry().is_installed(entry):
            return True
        try:
            self.registry().install(entry, allow_download=False)
        except CardiacSuiteError:
            return False
        return True

    def downloadModel(self, entry, progress=None) -> None:
        """Download the weights into the per-user cache (checksum-verified); only call this after the user agreed."""
        self.registry().install(entry, allow_download=True, progress=progress)

    # Scene helpers

    @staticmethod
    def firstCine():
        """The first sequence of scalar volumes in the scene, else the first scalar volume, else None."""
        for sequence in slicer.util.getNodesByClass("vtkMRMLSequenceNode"):
            if sequence.GetNumberOfDataNodes() and sequence.GetNthDataNode(0).IsA("vtkMRMLScalarVolumeNode"):
                return sequence
        return slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    @staticmethod
    def defaultCase():
        """The first study (CardiacCase node) in the scene, or None."""
        from CardiacSuiteLib.case import CardiacCase

        cases = CardiacCase.all(slicer.mrmlScene)
        return cases[0].node if cases else None

    @staticmethod
    def displayedVolume(inputNode):
        """The volume that shows ``inputNode`` in the views: the proxy of a cine's browser, or the volume itself."""
        if inputNode is None or not inputNode.IsA("vtkMRMLSequenceNode"):
            return inputNode
        browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(inputNode)
        return browser.GetProxyNode(inputNode) if browser else None


#
# CMRAnalysisTest
#


class CMRAnalysisTest(ScriptedLoadableModuleTest):
    """
    This is the test case for your scripted module.
    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py

    The inference tests need the default model's weights (and its backend package); they skip with the reason
    when these are not installed, and otherwise check the measured ejection fraction against the phantom's.
    """

    #: Largest accepted difference between measured and true ejection fraction, in EF percentage points.
    EF_TOLERANCE_PCT = 8.0

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        import unittest

        for test in (
            self.test_RegistryOffersCineModels,
            self.test_CancelledAnalysisAddsNothing,
            self.test_EjectionFractionOfSyntheticCine,
        ):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as reason:
                self.delayDisplay(f"{test.__name__} skipped: {reason}")

    def test_RegistryOffersCineModels(self):
        """The model selector's choices: at least one cine model, the task default first, each with a licence."""
        slicer.mrmlScene.Clear()
        logic = CMRAnalysisLogic()
        models = logic.availableModels()
        self.assertGreater(len(models), 0, "the model registry lists no short-axis cine model")
        self.assertEqual(models[0].id, logic.model(None).id)
        for entry in models:
            self.assertEqual(entry.task, CMR_TASK)
            self.assertTrue(entry.licence, f"model {entry.id} has no licence")
        self.assertEqual(logic.getParameterNode().device, "auto")
        self.delayDisplay("Registry lists the cine models")

    def test_CancelledAnalysisAddsNothing(self):
        """A cancelled analysis raises Cancelled and leaves the scene as it was."""
        slicer.mrmlScene.Clear()
        logic = CMRAnalysisLogic()
        self._requireModel(logic)
        cine, _phantom = self._addSyntheticCine(phases=4, slices=4)
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()

        token = logic.createCancelToken()
        token.cancel()
        with self.assertRaises(Cancelled):
            logic.process(cine, device="cpu", cancel=token)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.delayDisplay("Cancelled analysis added nothing")

    def test_EjectionFractionOfSyntheticCine(self):
        """Function analysis of a beating-heart phantom: LV ejection fraction, ED/ES phases and the result nodes."""
        slicer.mrmlScene.Clear()
        logic = CMRAnalysisLogic()
        self._requireModel(logic)
        cine, phantom = self._addSyntheticCine(phases=10, slices=8)
        lvVolumes = phantom.lv_volume_ml
        trueEf = 100.0 * (lvVolumes.max() - lvVolumes.min()) / lvVolumes.max()

        fractions = []
        result = logic.process(cine, device="cpu", progress=lambda fraction, message: fractions.append(fraction))

        measuredEf = result.results["lv"]["ef_pct"]
        self.delayDisplay(f"LV EF measured {measuredEf:.1f} %, phantom {trueEf:.1f} %")
        self.assertAlmostEqual(measuredEf, trueEf, delta=self.EF_TOLERANCE_PCT)
        self.assertEqual(result.results["ed_phase"], phantom.ed_phase)
        self.assertLessEqual(abs(result.results["es_phase"] - phantom.es_phase), 1)

        # The table shows the same figure, and the results are filed under the study
        self.assertAlmostEqual(self._tableValue(result.table, "Ejection fraction", "LV"), measuredEf, delta=0.06)
        self.assertEqual(result.segmentation_sequence.GetNumberOfDataNodes(), 2)  # ED and ES
        self.assertIsNotNone(result.segmentation_browser.GetProxyNode(result.segmentation_sequence))
        self.assertEqual(result.case_node.GetAttribute("ModuleName"), CARDIAC_CASE)

        self.assertTrue(fractions, "no progress was reported")
        self.assertTrue(all(0.0 <= fraction <= 1.0 for fraction in fractions))
        self.assertEqual(fractions[-1], 1.0)
        self.delayDisplay("Ejection fraction matches the phantom")

    # Helpers

    def _requireModel(self, logic) -> None:
        """Skip (with the reason) when the default model's weights or its backend package are not installed."""
        entry = logic.model(None)
        package = BACKEND_PACKAGES.get(entry.backend, entry.backend)
        if importlib.util.find_spec(package) is None:
            self.skipTest(f"the Python package '{package}' for model '{entry.id}' is not installed")
        if not logic.modelAvailable(entry):
            self.skipTest(
                f"the weights of model '{entry.id}' {entry.version} are not installed (run the module once, or"
                f" 'cardiacsuite models install {entry.id}')"
            )

    @staticmethod
    def _addSyntheticCine(phases, slices):
        """A short-axis cine of a contracting left ventricle with known volumes, as a sequence with a browser."""
        from CardiacSuiteLib.imagedata import add_to_scene
        from CardiacSuiteLib.phantoms import beating_heart_cine

        phantom = beating_heart_cine(phases=phases, slices=slices)
        sequence, _browser = add_to_scene(slicer.mrmlScene, phantom.series, "Synthetic cine")
        return sequence, phantom

    @staticmethod
    def _tableValue(tableNode, measurement, column):
        from CardiacSuiteLib.mrml import table_rows

        for row in table_rows(tableNode):
            if row.get("Measurement") == measurement:
                return float(row[column])
        raise AssertionError(f"table '{tableNode.GetName()}' has no '{measurement}' row")
