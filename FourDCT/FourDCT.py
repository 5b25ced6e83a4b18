from pathlib import Path
from typing import Annotated

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
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
from CardiacSuiteLib.vocabulary import CASE_MODULE_NAME, MODULE_NAME_ATTRIBUTE, Key
from CardiacSuiteUI.longwork import LongWork
from CardiacSuiteUI.requirements import ensurePythonRequirements
from CardiacSuiteUI.study import StudyModuleLogic, StudyModuleWidget, studySummary
from FourDCTLib.choices import METHODS, ORIENTATIONS, STRATEGIES


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
    method: Annotated[str, Choice(list(METHODS))] = METHODS[0]
    strategy: Annotated[str, Choice(list(STRATEGIES))] = STRATEGIES[0]
    gridMm: float = 2.0
    marginMm: float = 20.0
    viewPhases: str = ""
    orientation: Annotated[str, Choice(list(ORIENTATIONS))] = ORIENTATIONS[0]
    outputSegmentationSequence: vtkMRMLSequenceNode
    outputTransformSequence: vtkMRMLSequenceNode
    outputTable: vtkMRMLTableNode
    cardiacCase: vtkMRMLScriptedModuleNode


#
# FourDCTLogic
#


class FourDCTLogic(StudyModuleLogic):
    """Passes the scene and the parameter values to FourDCTLib.workflow (the same workflow the command line runs).

    Reading inputs and adding results touch the scene (GUI thread); ``readPhases`` and ``compute`` do not, so a
    widget can run them in a worker. ``importDicom`` and ``propagate`` run everything in a row, for scripts and
    the self-test.
    """

    parameterNodeClass = FourDCTParameterNode

    @staticmethod
    def readPhases(folder, allowMissingPhases=False, progress=None, cancel=None):
        """Read a 4D CT DICOM folder (or 4D file) into temporary files; no scene access."""
        from FourDCTLib.workflow import read_phases

        return read_phases(str(folder), allow_missing=allowMissingPhases, progress=progress, cancel=cancel)

    @staticmethod
    def addImported(stack):
        """Add a read 4D CT as a volume sequence with a browser under its study; returns FourDCTLib.workflow.Imported."""
        from FourDCTLib.workflow import add_study

        return add_study(slicer.mrmlScene, stack)

    def importDicom(self, folder, allowMissingPhases=False, progress=None):
        """Read a 4D CT DICOM folder into a volume sequence with a browser; returns (sequence, browser)."""
        imported = self.addImported(self.readPhases(folder, allowMissingPhases, progress))
        return imported.sequence, imported.browser

    @staticmethod
    def readInputs(sequence, segmentation, referencePhase):
        """What a propagation reads from the scene: the phases and the reference label map (GUI thread)."""
        from FourDCTLib import scene as fourDScene
        from FourDCTLib.workflow import read_reference

        if sequence is None or segmentation is None:
            raise CardiacSuiteError(_("Select a 4D CT and the segmentation drawn on its reference phase."))
        stack = fourDScene.phases_from_sequence(sequence)
        return read_reference(slicer.mrmlScene, stack, segmentation, int(referencePhase), sequence.GetName())

    @staticmethod
    def compute(inputs, method=METHODS[0], strategy=STRATEGIES[0], gridMm=2.0, marginMm=20.0, progress=None, cancel=None):
        """Register every phase and carry the segmentation; no scene access, stops at ``cancel`` between phases."""
        from FourDCTLib.workflow import propagation_settings, run_propagation

        settings = propagation_settings(method, strategy, float(gridMm), float(marginMm))
        return run_propagation(inputs, settings, progress, cancel)

    @staticmethod
    def addResults(inputs, propagation, sequence, caseNode=None, orientation=ORIENTATIONS[0]):
        """File a propagation under the study and show end diastole beside end systole; returns the InScene."""
        from CardiacSuiteLib.case import CardiacCase
        from FourDCTLib.workflow import add_results

        case = CardiacCase(caseNode) if caseNode is not None else None
        return add_results(slicer.mrmlScene, inputs, propagation, sequence, case=case, orientation=orientation)

    def propagate(self, sequence, segmentation, referencePhase, method=METHODS[0], strategy=STRATEGIES[0], gridMm=2.0,
                  marginMm=20.0, progress=None, cancel=None, caseNode=None, orientation=ORIENTATIONS[0]):
        """Propagate ``segmentation`` (drawn on phase ``referencePhase``) through ``sequence``; returns the result
        (``nodes``: segmentation and transform sequences, table, plot; ``results``: volumes and QC per phase)."""
        inputs = self.readInputs(sequence, segmentation, referencePhase)
        propagation = self.compute(inputs, method, strategy, gridMm, marginMm, progress, cancel)
        return self.addResults(inputs, propagation, sequence, caseNode, orientation)

    @staticmethod
    def showPhases(sequence, phasesText="", orientation=ORIENTATIONS[0], segmentationSequence=None, caseNode=None):
        """Show the listed phases (positions, or values such as '40%'; default: end diastole and end systole)
        side by side with linked views; returns the FourDCTLib.viewing.MultiPhaseView."""
        from CardiacSuiteLib.case import CardiacCase
        from FourDCTLib.workflow import show_phase_views

        if sequence is None:
            raise CardiacSuiteError(_("Select a 4D CT first."))
        function = None
        if caseNode is not None and caseNode.GetAttribute(MODULE_NAME_ATTRIBUTE) == CASE_MODULE_NAME:
            function = CardiacCase(caseNode).value(Key.CT4D_FUNCTION)
        return show_phase_views(slicer.mrmlScene, sequence, phasesText, orientation, segmentationSequence, function)

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
        from FourDCTLib import scene as fourDScene

        return fourDScene.first_volume_sequence(slicer.mrmlScene)


#
# FourDCTWidget
#


class FourDCTWidget(StudyModuleWidget):
    """Import, propagation and phase views; the study lifecycle is CardiacSuiteUI.study's, long work LongWork's."""

    logicClass = FourDCTLogic
    uiFile = "UI/FourDCT.ui"

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        StudyModuleWidget.setup(self)
        self.longWork = LongWork(
            _("4D CT"), self.ui.progressBar, self.ui.cancelButton, self.ui.statusLabel,
            lockedWidgets=[self.ui.importCollapsibleButton, self.ui.inputsCollapsibleButton],
            onStateChanged=self._checkCanApply,
        )
        self.ui.importButton.connect("clicked(bool)", self.onImportButton)
        self.ui.currentPhaseButton.connect("clicked(bool)", self.onCurrentPhaseButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.showPhasesButton.connect("clicked(bool)", self.onShowPhasesButton)
        self._checkCanApply()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed, with the scene's first 4D CT and study selected."""
        StudyModuleWidget.initializeParameterNode(self)
        if not self._parameterNode.inputSequence:
            self._parameterNode.inputSequence = self.logic.firstVolumeSequence()

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Enable the buttons whose inputs are chosen, and keep the results and study sections in sync."""
        parameterNode = self._parameterNode
        busy = self.longWork is not None and self.longWork.running
        sequence = parameterNode.inputSequence if parameterNode else None
        self.ui.resultsTableView.setMRMLTableNode(parameterNode.outputTable if parameterNode else None)
        self.ui.importButton.enabled = bool(parameterNode and str(parameterNode.dicomFolder) not in ("", ".")) and not busy
        self.ui.showPhasesButton.enabled = sequence is not None and not busy
        self.ui.currentPhaseButton.enabled = sequence is not None
        if sequence is not None:
            self.ui.referencePhaseSpinBox.maximum = max(sequence.GetNumberOfDataNodes() - 1, 0)
        if busy:
            self.ui.applyButton.toolTip = _("A job is running")
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
        self.ui.studyContentsLabel.text = studySummary(parameterNode.cardiacCase if parameterNode else None)

    # ------------------------------------------------------------------------------------------ actions

    def onImportButton(self) -> None:
        """Read the folder in a worker; the volume sequence enters the scene when it is read."""
        folder, allowMissing = str(self._parameterNode.dicomFolder), self._parameterNode.allowMissingPhases
        if not self._packagesInstalled():
            return
        self.longWork.start(
            lambda progress, cancel: self.logic.readPhases(folder, allowMissing, progress, cancel),
            self._onImported, message=_("Reading the 4D CT..."), failureMessage=_("4D CT import failed."),
        )

    def _onImported(self, stack) -> None:
        imported = self.logic.addImported(stack)
        parameterNode = self._parameterNode
        parameterNode.inputSequence = imported.sequence
        parameterNode.cardiacCase = imported.case_node
        slicer.modules.sequences.setToolBarActiveBrowserNode(imported.browser)
        slicer.util.setSliceViewerLayers(background=imported.browser.GetProxyNode(imported.sequence), fit=True)
        self.longWork.setStatus(
            _("Imported {count} phases.").format(count=imported.sequence.GetNumberOfDataNodes())
            + ("\n" + "\n".join(imported.warnings) if imported.warnings else "")
        )

    def _packagesInstalled(self) -> bool:
        """pydicom, nibabel and scikit-image are not in Slicer: install them on first use, after asking."""
        return bool(self.longWork.runOnGuiThread(
            _("Checking the Python packages..."), lambda: ensurePythonRequirements(_("4D CT"))))

    def onCurrentPhaseButton(self) -> None:
        """Take the reference phase from the phase the sequence browser shows now."""
        sequence = self._parameterNode.inputSequence
        browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(sequence) if sequence else None
        if browser is not None:
            self._parameterNode.referencePhase = browser.GetSelectedItemNumber()

    def onApplyButton(self) -> None:
        """Read the inputs here, register in a worker (Cancel stops it between phases), file the results here."""
        parameterNode = self._parameterNode
        sequence = parameterNode.inputSequence
        if not self._packagesInstalled():
            return
        inputs = self.longWork.runOnGuiThread(
            _("Reading the inputs..."),
            lambda: self.logic.readInputs(sequence, parameterNode.referenceSegmentation, parameterNode.referencePhase),
        )
        if inputs is None:
            return
        options = (parameterNode.method, parameterNode.strategy, parameterNode.gridMm, parameterNode.marginMm)
        self.longWork.start(
            lambda progress, cancel: self.logic.compute(inputs, *options, progress=progress, cancel=cancel),
            lambda propagation: self._showResult(self.logic.addResults(
                inputs, propagation, sequence, parameterNode.cardiacCase, parameterNode.orientation)),
            message=_("Propagating..."), failureMessage=_("Propagation failed."),
        )

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

    def _showResult(self, result) -> None:
        """Keep the result nodes in the parameter node; end diastole and end systole are side by side already."""
        parameterNode = self._parameterNode
        parameterNode.outputSegmentationSequence = result.nodes.segmentation_sequence
        parameterNode.outputTransformSequence = result.nodes.transform_sequence
        parameterNode.outputTable = result.nodes.table
        parameterNode.cardiacCase = result.case_node
        if result.nodes.browser is not None:
            slicer.modules.sequences.setToolBarActiveBrowserNode(result.nodes.browser)
        slicer.util.resetSliceViews()
        self.ui.resultsCollapsibleButton.collapsed = False
        self.longWork.setStatus(self.logic.summary(result.results))


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
        self.assertEqual(result.case_node.GetAttribute(MODULE_NAME_ATTRIBUTE), CASE_MODULE_NAME)
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
        from CardiacSuiteLib.image4d import ArrayPhases
        from CardiacSuiteLib.phantoms.ct4d import make_synthetic_phantom
        from FourDCTLib import scene as fourDScene

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
