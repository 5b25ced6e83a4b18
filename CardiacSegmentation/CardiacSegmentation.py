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
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLMarkupsLineNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLScriptedModuleNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)

from CardiacSegmentationLib.presets import DEFAULT_MODE, MODES, PRESETS
from CardiacSuiteUI.longwork import LongWork
from CardiacSuiteUI.requirements import ensurePythonRequirements
from CardiacSuiteUI.study import StudyModuleLogic, StudyModuleWidget


#
# CardiacSegmentation
#


class CardiacSegmentation(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Cardiac Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = []
        self.parent.contributors = ["CardiacSuite developers"]
        # _() function marks text as translatable to other languages
        self.parent.helpText = _("""
Heart chambers, myocardium, aorta, pulmonary artery and coronary arteries from a contrast-enhanced cardiac CT.
<br><br>
<b>Modes</b>: <i>auto</i> registers a labelled whole-heart atlas to the CT (the atlas's appearance is synthesised
from this CT's own intensities) and classifies every voxel with an intensity model fitted to the scan, with no
trained weights; <i>semi</i> grows the structures from seed points (Slicer's grow-from-seeds; add seeds and press
Segment again to re-grow, then refine in the Segment Editor); <i>coronary</i> adds the coronary trees from the
ostia you mark; <i>valve</i> adds aortic root, LVOT, mitral annulus and pulmonary root measurements.
<br><br>
<b>Coronary arteries</b>: mark the left and right ostia (point labels 'left' and 'right') and, optionally, points
along a vessel; the module traces centerlines (curves with a Radius measurement), segments the lumen, names LM,
LAD, LCx and RCA where it can, and proposes side branches of at least 1.5 mm diameter to accept or reject.
<br><br>For research use; not a medical device.
See the <a href="https://github.com/CardiacSuite/SlicerCardiacSuite#cardiacsegmentation">module documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Part of CardiacSuite, developed by the CardiacSuite developers and distributed under the Apache License 2.0.
Built on 3D Slicer (Segmentations, Markups, grow-from-seeds), SimpleITK and scikit-image. The whole-heart atlas
label maps are MM-WHS-style manual segmentations.
""")


#
# CardiacSegmentationParameterNode
#


@parameterNodeWrapper
class CardiacSegmentationParameterNode:
    """
    The parameters needed by module.

    inputVolume - the contrast-enhanced cardiac CT.
    mode - a mode or preset of CardiacSegmentationLib.presets (auto, semi, coronary, valve).
    seeds - semi mode: a point list whose point labels name the structures.
    ostia - the coronary ostia, labelled 'left' and 'right'.
    pathPoints - optional points along a coronary vessel, labelled 'left ...' or 'right ...'.
    atlasPath - whole-heart atlas label map; empty for the default search.
    outputSegmentation - the heart segmentation of the last run.
    coronarySegmentation - the coronary trees of the last tracing.
    measurementsTable - the measurements of the last run.
    cardiacCase - the study (CardiacCase node) the results are filed under.
    longAxisLine - the LV long axis (mitral valve centre to apex) of the last reformat, editable; none: found.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    mode: Annotated[str, Choice(list(MODES))] = DEFAULT_MODE
    seeds: vtkMRMLMarkupsFiducialNode
    ostia: vtkMRMLMarkupsFiducialNode
    pathPoints: vtkMRMLMarkupsFiducialNode
    atlasPath: str = ""
    outputSegmentation: vtkMRMLSegmentationNode
    coronarySegmentation: vtkMRMLSegmentationNode
    measurementsTable: vtkMRMLTableNode
    cardiacCase: vtkMRMLScriptedModuleNode
    longAxisLine: vtkMRMLMarkupsLineNode


#
# CardiacSegmentationLogic
#


class CardiacSegmentationLogic(StudyModuleLogic):
    """The Slicer side of CardiacSegmentationLib.pipeline, the workflow the ``cardiacsuite`` command line runs too.

    Reading inputs and adding results touch the scene (GUI thread); ``computeRun`` and ``computeTracing`` do
    not, so a widget runs them in a worker. ``segmentHeart`` and ``traceCoronaries`` do all three in a row, for
    the Python console and the self-test.
    """

    parameterNodeClass = CardiacSegmentationParameterNode

    def __init__(self) -> None:
        StudyModuleLogic.__init__(self)
        self._coronary = None  # (CoronaryOutput, segmentation node, {branch name: curve node}) of the last tracing

    @staticmethod
    def describeMode(mode: str) -> str:
        preset = PRESETS.get(mode)
        return preset.description() if preset else ""

    @staticmethod
    def readInputs(volumeNode, mode: str = DEFAULT_MODE, seedsNode=None, ostiaNode=None, pathPointsNode=None,
                   atlasPath: str = "", heartSegmentation=None):
        """The run's inputs, read from the nodes (GUI thread)."""
        from CardiacSegmentationLib.pipeline import request_from_nodes

        return request_from_nodes(volumeNode, mode, seedsNode, ostiaNode, pathPointsNode, atlasPath, heartSegmentation)

    @staticmethod
    def computeRun(request, progress=None, cancel=None):
        """The chosen mode on the inputs (no scene access: safe in a worker thread)."""
        from CardiacSegmentationLib.pipeline import run_segmentation

        return run_segmentation(request, progress, cancel)

    @staticmethod
    def computeTracing(request, progress=None, cancel=None):
        """The coronary trees from the inputs' ostia (no scene access: safe in a worker thread)."""
        from CardiacSegmentationLib.pipeline import SegmentationRun, run_coronary_tracing

        return SegmentationRun(None, run_coronary_tracing(request, progress, cancel))

    def addRunToScene(self, run, volumeNode, caseNode=None):
        """The run's nodes, filed under the study (the volume's own when none is given), shown in 3D."""
        from CardiacSegmentationLib.pipeline import add_run_to_scene, study_case

        case = study_case(slicer.mrmlScene, volumeNode, caseNode)
        name = volumeNode.GetName()
        outputs = add_run_to_scene(slicer.mrmlScene, run, volumeNode, case, f"{name} heart", f"{name} coronary arteries")
        for segmentation in (outputs.segmentation, outputs.coronary_segmentation):
            if segmentation is not None:
                segmentation.CreateClosedSurfaceRepresentation()
        if run.coronary is not None:
            curves = {curve.GetName(): curve for curve in outputs.coronary_curves}
            self._coronary = (run.coronary, outputs.coronary_segmentation, curves)
        return outputs

    def segmentHeart(self, volumeNode, mode=DEFAULT_MODE, seedsNode=None, ostiaNode=None, pathPointsNode=None,
                     atlasPath="", caseNode=None, progress=None):
        """Run a mode on a CT volume node; returns the nodes it added (``SceneOutputs``) with a one-line summary."""
        request = self.readInputs(volumeNode, mode, seedsNode, ostiaNode, pathPointsNode, atlasPath)
        return self.addRunToScene(self.computeRun(request, progress), volumeNode, caseNode)

    def traceCoronaries(self, volumeNode, ostiaNode, pathPointsNode=None, heartSegmentation=None, caseNode=None,
                        progress=None):
        """Trace the coronary trees from the ostia point list; returns the nodes it added with a summary."""
        request = self.readInputs(volumeNode, DEFAULT_MODE, None, ostiaNode, pathPointsNode,
                                  heartSegmentation=heartSegmentation)
        return self.addRunToScene(self.computeTracing(request, progress), volumeNode, caseNode)

    @staticmethod
    def reformatLV(volumeNode, heartSegmentation, longAxisLine=None, progress=None):
        """Short-axis and 2-, 3-, 4-chamber reformats of a CT and its LV volume, as ``cardiacsuite ct-reformat``
        makes them; a markups line (base, apex) gives the long axis. Returns the nodes added and the results."""
        from CardiacSuiteLib import mrml
        from CardiacSuiteLib.image4d import ArrayPhases
        from CardiacSegmentationLib.reformat import long_axis_from_points
        from CardiacSegmentationLib.reformat_workflow import (ReformatSettings, add_to_scene, labels_from_segmentation,
                                                              run_ct_reformat)

        stack = ArrayPhases(mrml.array_from_volume(volumeNode)[None], mrml.ijk_to_ras(volumeNode), None,
                            index_name="phase", name=volumeNode.GetName())
        labels = labels_from_segmentation(heartSegmentation, volumeNode)
        axis = None
        if longAxisLine is not None and longAxisLine.GetNumberOfControlPoints() == 2:
            axis = long_axis_from_points(longAxisLine.GetNthControlPointPositionWorld(0),
                                         longAxisLine.GetNthControlPointPositionWorld(1), "given (markups line)")
        _, result = run_ct_reformat(stack, ReformatSettings(long_axis=axis), labels, progress)
        return add_to_scene(slicer.mrmlScene, result, volumeNode.GetName()), result.results

    def coronaryBranches(self) -> list:
        """(name, accepted, description) of every traced branch of the last tracing."""
        from CardiacSegmentationLib.pipeline import branch_rows

        return branch_rows(self._coronary[0]) if self._coronary is not None else []

    def setBranchAccepted(self, name: str, accepted: bool) -> None:
        """Accept or reject a traced branch: its lumen and its centerline join or leave the results."""
        from CardiacSegmentationLib.pipeline import set_branch_accepted

        if self._coronary is not None:
            set_branch_accepted(*self._coronary, name, accepted)

    def forgetCoronary(self) -> None:
        self._coronary = None


#
# CardiacSegmentationWidget
#


class CardiacSegmentationWidget(StudyModuleWidget):
    """Uses ScriptedLoadableModuleWidget base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    logicClass = CardiacSegmentationLogic
    uiFile = "UI/CardiacSegmentation.ui"

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        StudyModuleWidget.setup(self)
        self.longWork = LongWork(
            _("Cardiac Segmentation"), self.ui.progressBar, self.ui.cancelButton, self.ui.statusLabel,
            lockedWidgets=[self.ui.inputsCollapsibleButton, self.ui.branchList], onStateChanged=self._checkCanApply,
        )
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.traceButton.connect("clicked(bool)", self.onTraceButton)
        self.ui.segmentEditorButton.connect("clicked(bool)", self.onSegmentEditorButton)
        self.ui.reformatButton.connect("clicked(bool)", self.onReformatButton)
        self.ui.branchList.connect("itemChanged(QListWidgetItem*)", self.onBranchItemChanged)
        self._checkCanApply()

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed: the running job is discarded by the base."""
        StudyModuleWidget.onSceneStartClose(self, caller, event)
        self.logic.forgetCoronary()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed; offer the first CT volume and study."""
        StudyModuleWidget.initializeParameterNode(self)
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Enable the buttons whose inputs are there; describe the chosen mode; keep the results view in sync."""
        from CardiacSegmentationLib.presets import get_preset

        parameterNode = self._parameterNode
        running = self.longWork is not None and self.longWork.running
        self.ui.resultsTableView.setMRMLTableNode(parameterNode.measurementsTable if parameterNode else None)
        self.ui.segmentEditorButton.enabled = bool(parameterNode and parameterNode.outputSegmentation) and not running
        self.ui.reformatButton.enabled = bool(
            parameterNode and parameterNode.inputVolume and parameterNode.outputSegmentation) and not running
        if parameterNode:
            self.ui.presetInfoLabel.text = self.logic.describeMode(parameterNode.mode)
        if running or not parameterNode or not parameterNode.inputVolume:
            self.ui.applyButton.enabled = False
            self.ui.traceButton.enabled = False
            self.ui.applyButton.toolTip = _("Running...") if running else _("Select a CT volume")
            return
        preset = get_preset(parameterNode.mode)
        needsSeeds = preset.needs_seeds and not parameterNode.seeds
        needsOstia = preset.needs_ostia and not parameterNode.ostia
        self.ui.applyButton.enabled = not needsSeeds and not needsOstia
        self.ui.applyButton.toolTip = (
            _("The semi-automatic mode needs a seed point list") if needsSeeds
            else _("The coronary preset needs the ostia point list") if needsOstia
            else _("Run the chosen mode on the CT volume")
        )
        self.ui.traceButton.enabled = bool(parameterNode.ostia)
        self.ui.traceButton.toolTip = (
            _("Trace the coronary trees from the ostia") if parameterNode.ostia else _("Mark the coronary ostia first")
        )

    # ------------------------------------------------------------------------------------------ running

    def onApplyButton(self) -> None:
        """Segment the heart with the chosen mode (semi: re-grows from the current seeds)."""
        p = self._parameterNode
        self._run(
            lambda: self.logic.readInputs(p.inputVolume, p.mode, p.seeds, p.ostia, p.pathPoints, p.atlasPath),
            self.logic.computeRun, _("Segmenting the heart..."), _("Heart segmentation failed."),
        )

    def onTraceButton(self) -> None:
        p = self._parameterNode
        self._run(
            lambda: self.logic.readInputs(p.inputVolume, DEFAULT_MODE, None, p.ostia, p.pathPoints,
                                          heartSegmentation=p.outputSegmentation),
            self.logic.computeTracing, _("Tracing the coronary arteries..."), _("Coronary tracing failed."),
        )

    def _run(self, readInputs, compute, message: str, failureMessage: str) -> None:
        """Read the inputs here, compute in a worker (progress, cancel), add the results here when it ends well."""
        if self.longWork.running:
            return
        volumeNode, caseNode = self._parameterNode.inputVolume, self._parameterNode.cardiacCase

        def packagesThenInputs():
            ensurePythonRequirements(_("Cardiac Segmentation"))  # scikit-image and nibabel are not in Slicer
            return readInputs()

        request = self.longWork.runOnGuiThread(_("Reading the inputs..."), packagesThenInputs)
        if request is None:
            return
        self.longWork.start(
            lambda progress, cancel: compute(request, progress, cancel),
            lambda run: self._showOutputs(self.logic.addRunToScene(run, volumeNode, caseNode)),
            message=message, failureMessage=failureMessage,
        )

    def _showOutputs(self, outputs) -> None:
        parameterNode = self._parameterNode
        if outputs.segmentation is not None:
            parameterNode.outputSegmentation = outputs.segmentation
        if outputs.coronary_segmentation is not None:
            parameterNode.coronarySegmentation = outputs.coronary_segmentation
        table = outputs.table if outputs.table is not None else outputs.coronary_table
        if table is not None:
            parameterNode.measurementsTable = table
        if outputs.case is not None:
            parameterNode.cardiacCase = outputs.case.node
        self._fillBranchList()
        self.longWork.setStatus(outputs.summary)

    def _fillBranchList(self) -> None:
        import qt

        wasBlocked = self.ui.branchList.blockSignals(True)
        self.ui.branchList.clear()
        for name, accepted, description in self.logic.coronaryBranches():
            item = qt.QListWidgetItem(f"{name}: {description}")
            item.setData(qt.Qt.UserRole, name)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Checked if accepted else qt.Qt.Unchecked)
            self.ui.branchList.addItem(item)
        self.ui.branchList.blockSignals(wasBlocked)

    def onBranchItemChanged(self, item) -> None:
        import qt

        self.logic.setBranchAccepted(item.data(qt.Qt.UserRole), item.checkState() == qt.Qt.Checked)

    def onReformatButton(self) -> None:
        """Short axis and 2-, 3-, 4-chamber planes of the CT along the LV long axis, and the LV volumes.

        The long axis is the selected line, or found from the segmentation and offered in the selector, so that
        the reader can move its ends and reformat again.
        """
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("The short- and long-axis reformat failed."), waitCursor=True):
            ensurePythonRequirements(_("Cardiac Segmentation"))  # the measurement's packages, as for Segment
            from CardiacSegmentationLib.reformat_workflow import summary_lines

            line = p.longAxisLine if p.longAxisLine and p.longAxisLine.GetNumberOfControlPoints() == 2 else None
            nodes, results = self.logic.reformatLV(p.inputVolume, p.outputSegmentation, line)
            if line is None:
                p.longAxisLine = nodes["long_axis"]
            else:  # the reformat followed the reader's line: its copy of it is not needed
                slicer.mrmlScene.RemoveNode(nodes["long_axis"])
            slicer.util.setSliceViewerLayers(background=nodes["SAX"], fit=True)
            self.longWork.setStatus("\n".join(summary_lines(results)))

    def onSegmentEditorButton(self) -> None:
        """Open the heart segmentation in the Segment Editor for manual refinement."""
        parameterNode = self._parameterNode
        if not parameterNode or not parameterNode.outputSegmentation:
            return
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(parameterNode.outputSegmentation)
        if parameterNode.inputVolume:
            editor.setSourceVolumeNode(parameterNode.inputVolume)


#
# CardiacSegmentationTest
#


class CardiacSegmentationTest(ScriptedLoadableModuleTest):
    """
    This is the test case for your scripted module.
    Uses ScriptedLoadableModuleTest base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py

    The tests build a CT phantom from the whole-heart label maps of the test data (CARDIACSUITE_DATA); they skip
    with the reason when those are not found.
    """

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        import unittest

        for test in (self.test_ModesAndTerminology, self.test_AutomaticChambersOnPhantom, self.test_SeedsGrowStructures):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as reason:
                self.delayDisplay(f"{test.__name__} skipped: {reason}")

    def test_ModesAndTerminology(self):
        """Every mode is described; segments carry SNOMED CT codes."""
        slicer.mrmlScene.Clear()
        import numpy as np
        from CardiacSegmentationLib.scene import HEART_STRUCTURES, add_labelmap_segmentation, segment_code

        logic = CardiacSegmentationLogic()
        for mode in MODES:
            self.assertTrue(logic.describeMode(mode), f"mode {mode} has no description")
        labels = np.zeros((8, 8, 8), np.uint8)
        labels[2:5, 2:5, 2:5] = 3
        node = add_labelmap_segmentation(slicer.mrmlScene, labels, np.eye(4), HEART_STRUCTURES, "Test heart")
        self.assertEqual(segment_code(node, "Left ventricle"), "87878005")
        self.assertEqual(node.GetSegmentation().GetNumberOfSegments(), 7)

    def test_AutomaticChambersOnPhantom(self):
        """The automatic mode on a 1.5 mm phantom of one heart with the other heart as atlas: Dice >= 0.85."""
        slicer.mrmlScene.Clear()
        from CardiacSuiteLib.phantoms.ct_heart import WHOLE_HEART_NAMES

        phantom, atlas = self._phantom(*WHOLE_HEART_NAMES)
        volume = self._addVolume(phantom)
        logic = CardiacSegmentationLogic()
        outputs = logic.segmentHeart(volume, DEFAULT_MODE, atlasPath=atlas)
        labels = self._labels(outputs.segmentation, volume)
        for value in range(1, 8):
            score = self._dice(labels == value, phantom.labels == value)
            self.assertGreaterEqual(score, 0.85, f"structure {value}: Dice {score:.3f}")
        self.assertIsNotNone(outputs.table)
        self.delayDisplay("Automatic chambers agree with the phantom")

    def test_SeedsGrowStructures(self):
        """Seeds inside each structure grow (grow-from-seeds) to a segmentation that overlaps the truth."""
        slicer.mrmlScene.Clear()
        import numpy as np
        import vtk
        from scipy import ndimage

        from CardiacSuiteLib.phantoms.ct_heart import WHOLE_HEART_NAMES

        phantom, _atlas = self._phantom(*reversed(WHOLE_HEART_NAMES))
        volume = self._addVolume(phantom)
        seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Seeds")
        names = {1: "Myo", 2: "LA", 3: "LV", 4: "RA", 5: "RV", 6: "Ao", 7: "PA"}
        rng = np.random.default_rng(0)
        for value, name in names.items():
            inner = np.argwhere(ndimage.binary_erosion(phantom.labels == value, iterations=1))
            for index in inner[rng.choice(len(inner), 4, replace=False)]:
                position = phantom.grid.kji_to_ras(index)[0]
                seeds.SetNthControlPointLabel(seeds.AddControlPointWorld(vtk.vtkVector3d(*position)), name)
        semi = next(mode for mode in MODES if PRESETS[mode].needs_seeds)
        outputs = CardiacSegmentationLogic().segmentHeart(volume, semi, seedsNode=seeds)
        labels = self._labels(outputs.segmentation, volume)
        for value in (1, 6, 7):
            self.assertGreaterEqual(self._dice(labels == value, phantom.labels == value), 0.8)
        self.delayDisplay("Grow from seeds segmented the phantom")

    # Helpers

    def _phantom(self, heart, atlasName):
        from CardiacSuiteLib.errors import InputError
        from CardiacSuiteLib.phantoms.coronary import ct_phantom_with_coronaries, whole_heart_label_path

        try:
            atlas = whole_heart_label_path(atlasName)
        except InputError as error:  # no test data folder given
            self.skipTest(str(error))
        if not atlas.is_file():
            self.skipTest(f"whole-heart label maps not found at {atlas.parent} (set CARDIACSUITE_DATA)")
        phantom = ct_phantom_with_coronaries(heart, spacing_mm=1.5, seed=3, deformation_mm=4.0)
        phantom.labels[phantom.labels == 8] = 0  # the coronary tree is not a chamber
        return phantom, str(atlas)

    @staticmethod
    def _addVolume(phantom):
        from CardiacSuiteLib import mrml

        return mrml.add_volume(slicer.mrmlScene, phantom.image, phantom.ijk_to_ras, "Phantom CT")

    @staticmethod
    def _labels(segmentation, volume):
        from CardiacSuiteLib import mrml
        from CardiacSegmentationLib.scene import HEART_STRUCTURES

        return mrml.labelmap_from_segmentation(segmentation, volume, {s.name: s.value for s in HEART_STRUCTURES})

    @staticmethod
    def _dice(a, b):
        from CardiacSegmentationLib.metrics import dice

        return dice(a, b)
