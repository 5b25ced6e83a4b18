import logging
from pathlib import Path
from typing import Annotated, Optional

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
    vtkMRMLScriptedModuleNode,
    vtkMRMLSegmentationNode,
    vtkMRMLSequenceNode,
    vtkMRMLTableNode,
)

from CardiacSuiteLib.errors import Cancelled, CardiacSuiteError

#: Attribute value that marks a study's CardiacCase node (CardiacSuiteLib.case.MODULE_NAME).
CARDIAC_CASE = "CardiacCase"
#: Deformable registration methods (FourDCTLib.registration.METHODS).
METHODS = ["demons", "diffeomorphic-demons", "bspline"]
#: Temporal strategies (FourDCTLib.propagation.STRATEGIES).
STRATEGIES = ["reference", "sequential"]
#: Slice orientations of the side-by-side phase views.
ORIENTATIONS = ["Axial", "Sagittal", "Coronal"]


#
# FourDCT
#


class FourDCT(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("4D CT")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = []
        self.parent.contributors = ["CardiacSuite developers"]
        # _() function marks text as translatable to other languages
        self.parent.helpText = _("""
Multi-phase (4D) ECG-gated cardiac CT.<br><br>
<b>Import</b>: a DICOM folder holding one series per phase or one series with many temporal positions becomes
one volume sequence ordered by the nominal cardiac phase (% of the R-R interval; trigger time or temporal position
when the images carry no percentage). Duplicate phases, missing phases and phases on different grids are refused
with a message that names them.<br>
<b>Phase views</b>: end diastole, end systole and any phases you list, side by side with linked slice position,
zoom and pan.<br>
<b>Propagation</b>: a segmentation drawn on one phase (any segments; LV, LA and aorta by name give the volumes
and the CT ejection fraction) is carried to every phase by deformable registration inside a box around it, coarse
to fine. Results: a segmentation sequence and a transform sequence synchronised with the volumes, and a table of
volumes and quality figures per phase (image similarity, folding) with doubtful phases marked for review.
<br><br>For research use; not a medical device.
See the <a href="https://github.com/CardiacSuite/SlicerCardiacSuite#fourdct">module documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Part of CardiacSuite, developed by the CardiacSuite developers and distributed under the Apache License 2.0.
Built on 3D Slicer and its Sequences, Segmentations and Transforms modules, and on SimpleITK for registration.
""")


#
# FourDCTParameterNode
#


@parameterNodeWrapper
class FourDCTParameterNode:
    """
    The parameters needed by module.

    dicomFolder - folder of a multi-phase cardiac CT to import.
    allowMissingPhases - import even when phases are missing from an evenly stepped set (with a warning).
    inputSequence - the 4D CT: a sequence of volumes, one per phase.
    referenceSegmentation - the segmentation drawn on the reference phase.
    referencePhase - the position (0-based) of the reference phase in the sequence.
    method - deformable registration method.
    strategy - every phase to the reference ("reference"), or phase to phase composed ("sequential").
    gridMm - registration voxel size, mm.
    marginMm - margin of the registered box around the reference segmentation, mm.
    viewPhases - phases to show side by side (positions or values such as 40%); empty: end diastole and systole.
    orientation - slice orientation of the phase views.
    outputSegmentationSequence, outputTransformSequence, outputTable - results of the last propagation.
    cardiacCase - the study (CardiacCase node) the results are filed under.
    """

    dicomFolder: Path
    allowMissingPhases: bool = False
    inputSequence: vtkMRMLSequenceNode
    referenceSegmentation: vtkMRMLSegmentationNode
    referencePhase: int = 0
    method: Annotated[str, Choice(METHODS)] = "demons"
    strategy: Annotated[str, Choice(STRATEGIES)] = "reference"
    gridMm: float = 2.0
    marginMm: float = 20.0
    viewPhases: str = ""
    orientation: Annotated[str, Choice(ORIENTATIONS)] = "Axial"
    outputSegmentationSequence: vtkMRMLSequenceNode
    outputTransformSequence: vtkMRMLSequenceNode
    outputTable: vtkMRMLTableNode
    cardiacCase: vtkMRMLScriptedModuleNode


#
# FourDCTWidget
#


class FourDCTWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
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
        self._busy = False
        self._cancelToken = None

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.setup(self)

        # Load widget from .ui file (created by Qt Designer).
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/FourDCT.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)

        # Only CardiacCase nodes are studies; other scripted module nodes (parameter nodes) are not offered.
        self.ui.cardiacCaseSelector.addAttribute("vtkMRMLScriptedModuleNode", "ModuleName", CARDIAC_CASE)

        # Set scene in MRML widgets. The .ui connects the top-level widget's "mrmlSceneChanged(vtkMRMLScene*)"
        # signal to each MRML widget's "setMRMLScene(vtkMRMLScene*)" slot.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = FourDCTLogic()
        self._showProgress(False)

        # These connections ensure that we update parameter node when scene is closed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.importButton.connect("clicked(bool)", self.onImportButton)
        self.ui.currentPhaseButton.connect("clicked(bool)", self.onCurrentPhaseButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.showPhasesButton.connect("clicked(bool)", self.onShowPhasesButton)

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._cancelRunning()
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
        self._cancelRunning()
        # Parameter node will be reset, do not use it anymore
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        # If this module is shown while the scene is closed then recreate a new parameter node immediately
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed."""
        self.setParameterNode(self.logic.getParameterNode())

        # Select default inputs if nothing is selected yet
        if not self._parameterNode.inputSequence:
            self._parameterNode.inputSequence = self.logic.firstVolumeSequence()
        if not self._parameterNode.cardiacCase:
            self._parameterNode.cardiacCase = self.logic.defaultCase()

    def setParameterNode(self, inputParameterNode: Optional[FourDCTParameterNode]) -> None:
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
        """Enable the buttons whose inputs are chosen, and keep the results and study sections in sync."""
        parameterNode = self._parameterNode
        sequence = parameterNode.inputSequence if parameterNode else None
        self.ui.resultsTableView.setMRMLTableNode(parameterNode.outputTable if parameterNode else None)
        self.ui.importButton.enabled = bool(parameterNode and str(parameterNode.dicomFolder) not in ("", ".")) and not self._busy
        self.ui.showPhasesButton.enabled = sequence is not None and not self._busy
        self.ui.currentPhaseButton.enabled = sequence is not None
        if sequence is not None:
            self.ui.referencePhaseSpinBox.maximum = max(sequence.GetNumberOfDataNodes() - 1, 0)
        if self._busy:
            self.ui.applyButton.toolTip = _("A propagation is running")
            self.ui.applyButton.enabled = False
        elif sequence is None:
            self.ui.applyButton.toolTip = _("Select a 4D CT (a sequence of volumes)")
            self.ui.applyButton.enabled = False
        elif not parameterNode.referenceSegmentation:
            self.ui.applyButton.toolTip = _("Select the segmentation drawn on the reference phase")
            self.ui.applyButton.enabled = False
        else:
            self.ui.applyButton.toolTip = _("Propagate the segmentation to every phase")
            self.ui.applyButton.enabled = True
        self._updateStudy()

    def _updateStudy(self) -> None:
        caseNode = self._parameterNode.cardiacCase if self._parameterNode else None
        if caseNode is None:
            self.ui.studyContentsLabel.text = _("No study in the scene yet. Import or propagation creates one.")
            return
        try:
            contents = self.logic.describeCase(caseNode)
        except ValueError as error:
            self.ui.studyContentsLabel.text = str(error)
            return
        self.ui.studyContentsLabel.text = "\n".join(f"{role}: {name}" for role, name in contents) or _(
            "The study holds no data yet."
        )

    # ------------------------------------------------------------------------------------------ actions

    def onImportButton(self) -> None:
        parameterNode = self._parameterNode
        self._busy = True
        self._showProgress(True, cancellable=False)
        try:
            with slicer.util.tryWithErrorDisplay(_("4D CT import failed."), waitCursor=True):
                sequence, browser = self.logic.importDicom(
                    parameterNode.dicomFolder, parameterNode.allowMissingPhases, progress=self.onProgress
                )
                parameterNode.inputSequence = sequence
                slicer.modules.sequences.setToolBarActiveBrowserNode(browser)
                proxy = browser.GetProxyNode(sequence)
                slicer.util.setSliceViewerLayers(background=proxy, fit=True)
                self._setStatus(
                    _("Imported {count} phases.").format(count=sequence.GetNumberOfDataNodes())
                    + ("\n" + "\n".join(self.logic.lastWarnings) if self.logic.lastWarnings else "")
                )
        finally:
            self._busy = False
            self._showProgress(False)

    def onCurrentPhaseButton(self) -> None:
        """Take the reference phase from the phase the sequence browser shows now."""
        sequence = self._parameterNode.inputSequence
        browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(sequence) if sequence else None
        if browser is not None:
            self._parameterNode.referencePhase = browser.GetSelectedItemNumber()

    def onApplyButton(self) -> None:
        if self._busy:
            return
        parameterNode = self._parameterNode
        self._busy = True
        self._cancelToken = self.logic.createCancelToken()
        self._showProgress(True)
        try:
            result = self.logic.propagate(
                parameterNode.inputSequence,
                parameterNode.referenceSegmentation,
                parameterNode.referencePhase,
                method=parameterNode.method,
                strategy=parameterNode.strategy,
                gridMm=parameterNode.gridMm,
                marginMm=parameterNode.marginMm,
                progress=self.onProgress,
                cancel=self._cancelToken,
            )
        except Cancelled:
            self._setStatus(_("Cancelled: nothing was added to the scene."))
            return
        except CardiacSuiteError as error:
            self._setStatus(str(error))
            slicer.util.errorDisplay(str(error), windowTitle=_("4D CT"))
            return
        finally:
            self._cancelToken = None
            self._busy = False
            self._showProgress(False)
        self._showResult(result)

    def onShowPhasesButton(self) -> None:
        parameterNode = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("The phases cannot be shown."), waitCursor=True):
            self.logic.showPhases(
                parameterNode.inputSequence,
                parameterNode.viewPhases,
                parameterNode.orientation,
                parameterNode.outputSegmentationSequence,
                parameterNode.cardiacCase,
            )
            slicer.util.resetSliceViews()

    def onProgress(self, fraction: float, message: str) -> None:
        """Progress callback, called on the GUI thread between phases."""
        self.ui.progressBar.value = int(round(100.0 * min(max(fraction, 0.0), 1.0)))
        self.ui.progressBar.format = "%p%  " + message.replace("%", "%%")
        # Let Qt repaint and deliver clicks, so that Cancel works while the propagation runs
        slicer.app.processEvents()

    def onCancelButton(self) -> None:
        self._cancelRunning()

    def _cancelRunning(self) -> None:
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
            logging.info(f"4D CT: {text}")

    def _showResult(self, result) -> None:
        """Keep the result nodes in the parameter node and show end diastole and end systole side by side."""
        parameterNode = self._parameterNode
        parameterNode.outputSegmentationSequence = result.nodes.segmentation_sequence
        parameterNode.outputTransformSequence = result.nodes.transform_sequence
        parameterNode.outputTable = result.nodes.table
        parameterNode.cardiacCase = result.case_node
        if result.nodes.browser is not None:
            slicer.modules.sequences.setToolBarActiveBrowserNode(result.nodes.browser)
        self.logic.showPhases(parameterNode.inputSequence, "", parameterNode.orientation,
                              result.nodes.segmentation_sequence, result.case_node)
        slicer.util.resetSliceViews()
        self.ui.resultsCollapsibleButton.collapsed = False
        self._setStatus(self.logic.summary(result.results))


#
# FourDCTLogic
#


class FourDCTLogic(ScriptedLoadableModuleLogic):
    """This class should implement all the actual computation done by your module.  The interface
    should be such that other python code can import this class and make use of the functionality without
    requiring an instance of the Widget.
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py

    The computation itself is in FourDCTLib; this class passes it the scene.
    """

    def __init__(self) -> None:
        """Called when the logic class is instantiated. Can be used for initializing member variables."""
        ScriptedLoadableModuleLogic.__init__(self)
        self.lastWarnings = []

    def getParameterNode(self):
        return FourDCTParameterNode(super().getParameterNode())

    def importDicom(self, folder, allowMissingPhases=False, progress=None):
        """Read a 4D CT DICOM folder into a volume sequence with a browser; returns (sequence, browser)."""
        from CardiacSuiteLib.case import CardiacCase
        from FourDCTLib import scene as fourDScene
        from FourDCTLib.phases import open_4d

        stack = open_4d(str(folder), allow_missing=allowMissingPhases, progress=progress)
        try:
            self.lastWarnings = list(stack.warnings)
            sequence, browser = fourDScene.add_phases(slicer.mrmlScene, stack)
        finally:
            stack.close()
        case = CardiacCase.get_or_create(
            slicer.mrmlScene, f"{sequence.GetName()} study", str(stack.metadata.get("StudyInstanceUID", "")),
            str(stack.metadata.get("PatientID", "")),
        )
        case.set_reference(fourDScene.Role.VOLUME_SEQUENCE, sequence)
        case.set_reference(fourDScene.Role.BROWSER, browser)
        return sequence, browser

    def propagate(self, sequence, segmentation, referencePhase, method="demons", strategy="reference", gridMm=2.0,
                  marginMm=20.0, progress=None, cancel=None):
        """Propagate ``segmentation`` (drawn on phase ``referencePhase``) through ``sequence``; returns the result
        (``nodes``: segmentation and transform sequences, table, plot; ``results``: volumes and QC per phase)."""
        from FourDCTLib.propagation import PropagationSettings
        from FourDCTLib.registration import RegistrationSettings
        from FourDCTLib.workflow import propagate_in_scene

        settings = PropagationSettings(
            registration=RegistrationSettings(method=method, grid_mm=float(gridMm)),
            strategy=strategy,
            margin_mm=float(marginMm),
        )
        return propagate_in_scene(
            slicer.mrmlScene, sequence, segmentation, int(referencePhase), settings, progress=progress, cancel=cancel
        )

    def showPhases(self, sequence, phasesText="", orientation="Axial", segmentationSequence=None, caseNode=None):
        """Show the listed phases (positions, or values such as '40%'; default: end diastole and end systole)
        side by side with linked views; returns the FourDCTLib.viewing.MultiPhaseView."""
        from FourDCTLib import scene as fourDScene
        from FourDCTLib import viewing
        from FourDCTLib.phases import PERCENT

        if sequence is None:
            raise CardiacSuiteError(_("Select a 4D CT first."))
        values = [float(sequence.GetNthIndexValue(n)) for n in range(sequence.GetNumberOfDataNodes())]
        unit = sequence.GetIndexUnit()
        if phasesText.strip():
            phases = [self._phasePosition(item.strip(), values, unit) for item in phasesText.split(",") if item.strip()]
            labels = [f"{values[p]:g} {unit}".strip() for p in phases]
        else:
            function = self._caseFunction(caseNode)
            if function is not None:
                ed, es = function["ed_phase"], function["es_phase"]
            else:
                ed, es = fourDScene.suggest_ed_es(values, unit if unit == PERCENT else "")
            phases = [ed, es] if ed != es else [ed]
            labels = [f"ED {values[ed]:g} {unit}".strip(), f"ES {values[es]:g} {unit}".strip()][: len(phases)]
        return viewing.show_phases(slicer.mrmlScene, sequence, phases, labels, segmentationSequence, orientation)

    @staticmethod
    def _phasePosition(text, values, unit):
        if text.endswith("%") or text.endswith("ms"):
            number = float(text.rstrip("%ms").strip())
            matches = [n for n, v in enumerate(values) if abs(v - number) < 1e-6]
            if not matches:
                raise CardiacSuiteError(_("No phase at {text}.").format(text=text))
            return matches[0]
        try:
            position = int(text)
        except ValueError:
            raise CardiacSuiteError(_("'{text}' is not a phase position or a value like 40%.").format(text=text)) from None
        if not 0 <= position < len(values):
            raise CardiacSuiteError(_("Phase {n} does not exist (0 to {last}).").format(n=position, last=len(values) - 1))
        return position

    @staticmethod
    def _caseFunction(caseNode):
        if caseNode is None:
            return None
        from CardiacSuiteLib.case import CardiacCase

        try:
            return CardiacCase(caseNode).value("CT4DFunction")
        except ValueError:
            return None

    @staticmethod
    def summary(results) -> str:
        """One paragraph for the status line: CT ejection fraction and the phases to review."""
        lines = []
        function = results.get("lv_function")
        if function is not None and function.get("ef_pct") is not None:
            lines.append(
                _("LV: EDV {edv:.1f} ml ({ed}), ESV {esv:.1f} ml ({es}), CT ejection fraction {ef:.1f} %.").format(
                    edv=function["edv_ml"], ed=function["ed_label"], esv=function["esv_ml"], es=function["es_label"],
                    ef=function["ef_pct"],
                )
            )
        flagged = results.get("flagged_phases") or []
        lines.append(_("Review: {phases}.").format(phases=", ".join(flagged)) if flagged else _("No phase flagged."))
        return " ".join(lines)

    @staticmethod
    def createCancelToken():
        from CardiacSuiteLib.inference import CancelToken

        return CancelToken()

    @staticmethod
    def firstVolumeSequence():
        """The first sequence of scalar volumes with at least two items in the scene, or None."""
        for sequence in slicer.util.getNodesByClass("vtkMRMLSequenceNode"):
            item = sequence.GetNthDataNode(0) if sequence.GetNumberOfDataNodes() > 1 else None
            if item is not None and item.IsA("vtkMRMLScalarVolumeNode"):
                return sequence
        return None

    @staticmethod
    def defaultCase():
        """The first study (CardiacCase node) in the scene, or None."""
        from CardiacSuiteLib.case import CardiacCase

        cases = CardiacCase.all(slicer.mrmlScene)
        return cases[0].node if cases else None

    @staticmethod
    def describeCase(caseNode) -> list[tuple[str, str]]:
        """(role, node name) of every node the study references; raises ValueError for a node that is not a study."""
        from CardiacSuiteLib.case import CardiacCase

        case = CardiacCase(caseNode)
        contents = []
        for index in range(caseNode.GetNumberOfNodeReferenceRoles()):
            role = caseNode.GetNthNodeReferenceRole(index)
            node = case.reference(role)
            if node is not None:
                contents.append((role, node.GetName()))
        return contents


#
# FourDCTTest
#


class FourDCTTest(ScriptedLoadableModuleTest):
    """
    This is the test case for your scripted module.
    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py

    The tests use an analytic 4D phantom (CardiacSuiteLib.phantoms.ct4d.make_synthetic_phantom: a contracting, twisting,
    translating LV with LA and aorta) with a known truth at every phase, on a coarse grid so they run in seconds.
    """

    #: Largest accepted mean surface distance (mm) of a propagated LV, LA or aorta on the 2.5 mm test phantom.
    MSD_LIMIT_MM = 1.25

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_PropagationMatchesPhantom()
        self.setUp()
        self.test_PhaseViewsAreLinked()
        self.setUp()
        self.test_CancelledPropagationAddsNothing()

    def test_PropagationMatchesPhantom(self):
        """Propagated LV, LA and aorta lie within MSD_LIMIT_MM of the phantom's truth; results are filed."""
        slicer.mrmlScene.Clear()
        from CardiacSuiteLib import geometry
        from FourDCTLib.metrics import surface_figures

        logic = FourDCTLogic()
        phantom, sequence, segmentation, truth = self._addPhantom()
        result = logic.propagate(sequence, segmentation, 0, gridMm=2.5)

        spacing = geometry.spacing_kji(phantom.ijk_to_ras)
        for phase in range(1, sequence.GetNumberOfDataNodes()):
            labels = result.propagation.full_labels(phase, phantom.shape)
            for value, name in ((3, "Left ventricle"), (2, "Left atrium"), (6, "Aorta")):
                figures = surface_figures(labels == value, truth[phase] == value, spacing)
                self.assertLess(figures.msd_mm, self.MSD_LIMIT_MM, f"{name} at phase {phase}: MSD {figures.msd_mm:.2f} mm")
        self.assertEqual(result.nodes.segmentation_sequence.GetNumberOfDataNodes(), sequence.GetNumberOfDataNodes())
        self.assertEqual(result.nodes.transform_sequence.GetNumberOfDataNodes(), sequence.GetNumberOfDataNodes())
        function = result.results["lv_function"]
        trueVolumes = [float((labels == 3).sum()) for labels in truth]
        trueEf = 100.0 * (max(trueVolumes) - min(trueVolumes)) / max(trueVolumes)
        self.assertAlmostEqual(function["ef_pct"], trueEf, delta=8.0)
        self.assertEqual(result.case_node.GetAttribute("ModuleName"), CARDIAC_CASE)
        self.delayDisplay(f"Propagation matches the phantom; CT EF {function['ef_pct']:.1f} % (truth {trueEf:.1f} %)")

    def test_PhaseViewsAreLinked(self):
        """End diastole and end systole side by side: each view shows its phase, and zoom follows across views."""
        slicer.mrmlScene.Clear()
        logic = FourDCTLogic()
        phantom, sequence, segmentation, truth = self._addPhantom(phases=4, render=False)
        view = logic.showPhases(sequence, "0, 50%")
        self.assertEqual(view.phases, [0, 2])
        self.assertEqual(slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLLayoutNode").GetViewArrangement(), view.layout_id)
        for browser, phase in zip(view.browsers, view.phases):
            self.assertEqual(browser.GetSelectedItemNumber(), phase)
        composite = view.composite_nodes[1]
        self.assertEqual(composite.GetBackgroundVolumeID(), view.browsers[1].GetProxyNode(sequence).GetID())
        self.assertTrue(all(c.GetLinkedControl() for c in view.composite_nodes))
        first, second = view.slice_nodes[0], view.slice_nodes[1]
        first.SetInteractionFlags(first.FieldOfViewFlag)
        first.SetInteracting(True)
        first.SetFieldOfView(123.0, 123.0, first.GetFieldOfView()[2])
        first.SetInteracting(False)
        self.assertAlmostEqual(second.GetFieldOfView()[0], 123.0, places=3)
        self.delayDisplay("Phase views linked")

    def test_CancelledPropagationAddsNothing(self):
        """A cancelled propagation raises Cancelled and leaves the scene as it was."""
        slicer.mrmlScene.Clear()
        logic = FourDCTLogic()
        phantom, sequence, segmentation, truth = self._addPhantom(phases=3)
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        token = logic.createCancelToken()
        token.cancel()
        with self.assertRaises(Cancelled):
            logic.propagate(sequence, segmentation, 0, gridMm=2.5, cancel=token)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.delayDisplay("Cancelled propagation added nothing")

    # Helpers

    @staticmethod
    def _addPhantom(phases=4, render=True):
        """The analytic 4D phantom as a volume sequence, its phase-0 segmentation and the truth of every phase."""
        import numpy as np

        from CardiacSuiteLib import mrml
        from FourDCTLib import scene as fourDScene
        from CardiacSuiteLib.phantoms.ct4d import make_synthetic_phantom
        from FourDCTLib.phases import ArrayPhases

        phantom = make_synthetic_phantom(spacing_mm=2.5, phases=phases)
        rendered = [phantom.phase(n) for n in range(phases)] if render else None
        frames = np.stack([r.image for r in rendered]) if render else np.zeros((phases, *phantom.shape), np.int16)
        truth = [r.labels for r in rendered] if render else [phantom.truth_labels(0)]
        stack = ArrayPhases(frames, phantom.ijk_to_ras, phantom.percents, name="Synthetic 4D CT")
        sequence, _browser = fourDScene.add_phases(slicer.mrmlScene, stack)
        specs = [
            mrml.SegmentSpec(3, "Left ventricle", (0.9, 0.3, 0.3)),
            mrml.SegmentSpec(2, "Left atrium", (0.9, 0.8, 0.3)),
            mrml.SegmentSpec(6, "Aorta", (0.9, 0.2, 0.6)),
            mrml.SegmentSpec(1, "LV myocardium", (0.8, 0.5, 0.4)),
        ]
        segmentation = mrml.add_segmentation_from_labelmap(
            slicer.mrmlScene, truth[0], phantom.ijk_to_ras, specs, "Reference segmentation"
        )
        return phantom, sequence, segmentation, truth
