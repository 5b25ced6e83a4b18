from typing import Annotated, Union

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.parameterNodeWrapper import (
    Choice,
    parameterNodeWrapper,
)

from slicer import (
    vtkMRMLMarkupsCurveNode,
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLScriptedModuleNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)

from CardiacSuiteLib.errors import CardiacSuiteError
from CardiacSuiteUI.longwork import LongWork
from CardiacSuiteUI.requirements import ensurePythonRequirements
from CardiacSuiteUI.study import StudyModuleLogic, StudyModuleWidget, studySummary
from StentReconstructionLib.devices import DEVICE_KINDS

ALGORITHM_IDS = ("A", "B", "C")


#
# StentReconstruction
#


class StentReconstruction(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Stent Reconstruction")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = []
        self.parent.contributors = ["CardiacSuite developers"]
        # _() function marks text as translatable to other languages
        self.parent.helpText = _("""
Reconstruction of stents and valve frames from cardiac CT, by several algorithms ranked by how well each matches
the image.<br><br>
<b>Inputs</b>: the CT (a volume, or the phase a 4D CT's browser shows), the device's start and end (two points, or
a curve along it), optionally the vessel segmentation, and the device type with its nominal size when known.<br>
<b>Algorithms</b>: <b>A</b> threshold with blooming correction (strut centres at the midpoint of the half-maximum
crossings); <b>B</b> wire tracing (skeleton of the metal as a wire graph, checked against the design);
<b>C</b> model-based tube fit (a smooth tapered, mildly elliptical tube fitted to the HU-weighted metal).<br>
<b>Score</b> (0-1): completeness of the metal coverage, continuity of the wires, apposition to the vessel wall,
fit to the image and, for a 4D CT, consistency with the metal seen at every phase. The top-ranked result is
chosen; you can choose another, compare them side by side in linked 3D views, move, scale or re-draw the axis of
the chosen one (it is measured and scored again), and step a cross-section along its axis.<br>
<b>Propagation</b>: for a 4D CT the device is carried to every phase with the study's FourDCT phase transforms (or
a registration around the device), as a model sequence synchronised with the 4D CT and a table per phase with the
phases to review.<br>
<b>Command line</b>: <code>cardiacsuite stent CT --start R,A,S --end R,A,S --out folder</code> does the same in
batch (see <code>cardiacsuite stent --help</code>).
<br><br>For research use; not a medical device.
See the <a href="https://github.com/CardiacSuite/SlicerCardiacSuite#stentreconstruction">module documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Part of CardiacSuite, developed by the CardiacSuite developers and distributed under the Apache License 2.0.
Built on 3D Slicer and its Sequences, Segmentations and Markups modules.
""")


#
# StentReconstructionParameterNode
#


@parameterNodeWrapper
class StentReconstructionParameterNode:
    """
    The parameters needed by module.

    inputVolume - the CT: a volume, or the proxy volume of a 4D CT's browser (its shown phase).
    extentNode - the device's start and end (a point list's first two points) or a curve along it.
    vesselSegmentation, segmentName - optional vessel around the device (one segment, or all when empty).
    deviceKind, nominalDiameterMm, nominalLengthMm - the device as labelled (0: unknown).
    algorithmA, algorithmB, algorithmC - the algorithms to run.
    translateRMm, translateAMm, translateSMm, scale, useEditedAxis - the adjustment of the chosen result.
    sectionMm - position of the cross-section along the chosen axis, mm from its start.
    outputTable - the ranked results of the last run.
    cardiacCase - the study (CardiacCase node) the results are filed under.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    extentNode: Union[vtkMRMLMarkupsFiducialNode, vtkMRMLMarkupsCurveNode]
    vesselSegmentation: vtkMRMLSegmentationNode
    segmentName: str = ""
    deviceKind: Annotated[str, Choice(list(DEVICE_KINDS))] = DEVICE_KINDS[0]
    nominalDiameterMm: float = 0.0
    nominalLengthMm: float = 0.0
    algorithmA: bool = True
    algorithmB: bool = True
    algorithmC: bool = True
    translateRMm: float = 0.0
    translateAMm: float = 0.0
    translateSMm: float = 0.0
    scale: float = 1.0
    useEditedAxis: bool = False
    sectionMm: float = 0.0
    outputTable: vtkMRMLTableNode
    cardiacCase: vtkMRMLScriptedModuleNode


#
# StentReconstructionLogic
#


class StentReconstructionLogic(StudyModuleLogic):
    """Passes the scene and the parameter values to StentReconstructionLib (the same code the command line runs).

    ``readInputs`` and ``addResults`` touch the scene (GUI thread); ``compute`` does not, so a widget runs it in
    a worker. ``reconstruct`` runs all three in a row, for scripts and the self-test.
    """

    parameterNodeClass = StentReconstructionParameterNode

    @staticmethod
    def readInputs(volume, extent, segmentation=None, segmentName="", kind=DEVICE_KINDS[0], diameterMm=0.0,
                   lengthMm=0.0):
        """What a reconstruction reads from the scene, and the device spec; (SceneInputs, DeviceSpec)."""
        from StentReconstructionLib import scene

        inputs = scene.read_inputs(slicer.mrmlScene, volume, extent, segmentation, segmentName or None)
        return inputs, scene.device_spec(kind, float(diameterMm), float(lengthMm))

    @staticmethod
    def compute(inputs, spec, algorithms=ALGORITHM_IDS, progress=None, cancel=None):
        """Reconstruct, score, rank (and for a 4D CT propagate); no scene access, stops at ``cancel``."""
        from StentReconstructionLib import scene

        if not algorithms:
            raise CardiacSuiteError(_("Choose at least one algorithm."))
        return scene.run(inputs, spec, list(algorithms), progress=progress, cancel=cancel)

    @staticmethod
    def addResults(inputs, run, volume, caseNode=None):
        """File a run under the study: models, axes, tables (and the moving device for a 4D CT); StentNodes."""
        from CardiacSuiteLib.case import CardiacCase
        from StentReconstructionLib import scene

        case = CardiacCase(caseNode) if caseNode is not None else inputs.case
        return scene.add_results(slicer.mrmlScene, run, "Stent", case, volume_node=volume, stack=inputs.stack,
                                 browser=inputs.browser, volume_sequence=inputs.volume_sequence)

    def reconstruct(self, volume, extent, kind=DEVICE_KINDS[0], diameterMm=0.0, lengthMm=0.0, segmentation=None,
                    segmentName="", algorithms=ALGORITHM_IDS, caseNode=None, progress=None, cancel=None):
        """The whole job in one call; returns (StentRun, StentNodes)."""
        inputs, spec = self.readInputs(volume, extent, segmentation, segmentName, kind, diameterMm, lengthMm)
        run = self.compute(inputs, spec, algorithms, progress, cancel)
        return run, self.addResults(inputs, run, volume, caseNode)

    @staticmethod
    def choose(run, nodes, algorithmId, strutsOf):
        """Make another result the chosen one: it alone is shown, and the tables follow."""
        from StentReconstructionLib import viewing, workflow

        workflow.choose(run, algorithmId)
        viewing.refresh_results(nodes, run, struts_of=strutsOf)
        viewing.show_chosen(nodes, run, strutsOf, viewing.layout_node(slicer.mrmlScene))

    @staticmethod
    def adjust(run, nodes, translateMm=(0.0, 0.0, 0.0), scale=1.0, useEditedAxis=False, strutsOf=None):
        """Replace the chosen result by its moved / scaled / re-axed version, rescored and re-ranked."""
        from CardiacSuiteLib import mrml
        from StentReconstructionLib import viewing, workflow

        chosen = run.chosen
        axis = mrml.curve_points(nodes.axes[chosen.id]) if useEditedAxis else None
        if axis is not None and len(axis) < 2:
            raise CardiacSuiteError(_("The edited axis curve needs at least two points."))
        workflow.rescore(run, chosen.id, workflow.adjusted(chosen.reconstruction, translateMm, scale, axis))
        viewing.refresh_results(nodes, run, struts_of=strutsOf)
        return run

    @staticmethod
    def showSideBySide(run, nodes, strutsOf=None):
        """Every result in its own linked 3D view above the slice views; SideBySide."""
        from StentReconstructionLib import viewing

        return viewing.show_side_by_side(slicer.mrmlScene, nodes, run, strutsOf)

    @staticmethod
    def axisLengthMm(run, nodes) -> float:
        """Length of the chosen result's axis curve (the cross-section slider's range)."""
        from CardiacSuiteLib import mrml
        from StentReconstructionLib import viewing

        return float(viewing.slice_positions(mrml.curve_points(nodes.axes[run.chosen_id]))[-1])

    @staticmethod
    def showSection(run, nodes, positionMm):
        """Red across the chosen axis at ``positionMm``, yellow and green along it; returns the axis point."""
        from CardiacSuiteLib import mrml
        from StentReconstructionLib import viewing

        sliceNodes = viewing.main_slice_nodes(slicer.mrmlScene)
        if not sliceNodes:
            raise CardiacSuiteError(_("There is no slice view to show the cross-section in."))
        return viewing.section_views(sliceNodes, mrml.curve_points(nodes.axes[run.chosen_id]), positionMm)

    @staticmethod
    def sectionText(run, positionMm) -> str:
        """The chosen result's diameters at the station nearest ``positionMm``."""
        import numpy as np

        sections = run.chosen.measurements["sections"]
        i = int(np.argmin(np.abs(np.asarray(sections["s_mm"]) - positionMm)))
        return _("At {s:.1f} mm: mean diameter {mean:.2f} mm (min {low:.2f}, max {high:.2f}), area {area:.1f} mm².").format(
            s=sections["s_mm"][i], mean=sections["diameter_mean_mm"][i], low=sections["diameter_min_mm"][i],
            high=sections["diameter_max_mm"][i], area=sections["area_mm2"][i])

    @staticmethod
    def resultChoices(run) -> list:
        """(id, label) of every result that can be chosen, in rank order."""
        return [(r.id, f"{r.id}: {r.name} (rank {r.rank}, score {r.score.value:.2f})") for r in run.results if r.ok]

    @staticmethod
    def summary(run) -> str:
        """One paragraph for the status line: the chosen result, its size, and the algorithms without a result."""
        chosen, m = run.chosen, run.chosen.measurements
        lines = [_("Chosen: {id} ({name}), score {score:.2f}: length {length:.1f} mm, mean diameter {mean:.2f} mm"
                   " (min {low:.2f}, max {high:.2f}).").format(
            id=chosen.id, name=chosen.name, score=chosen.score.value, length=m["length_mm"],
            mean=m["diameter_mean_mm"], low=m["diameter_min_mm"], high=m["diameter_max_mm"])]
        lines += [_("{id}: no result ({why}).").format(id=r.id, why=r.failure) for r in run.results if not r.ok]
        if run.phases is not None:
            flagged = [p.label for p in run.phases if p.flagged]
            lines.append(_("Review: {phases}.").format(phases=", ".join(flagged)) if flagged else _("No phase flagged."))
        return " ".join(lines)


#
# StentReconstructionWidget
#


class StentReconstructionWidget(StudyModuleWidget):
    """Inputs, reconstruction, results, adjustment and cross-section; study lifecycle from CardiacSuiteUI.study."""

    logicClass = StentReconstructionLogic
    uiFile = "UI/StentReconstruction.ui"

    def __init__(self, parent=None) -> None:
        StudyModuleWidget.__init__(self, parent)
        self._run = None  # the last StentRun (results, scores, choice), kept with the nodes it made
        self._nodes = None
        self._strutsOf = None  # the result whose struts the strut curves show

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        StudyModuleWidget.setup(self)
        self.longWork = LongWork(
            _("Stent Reconstruction"), self.ui.progressBar, self.ui.cancelButton, self.ui.statusLabel,
            lockedWidgets=[self.ui.inputsCollapsibleButton, self.ui.resultsCollapsibleButton,
                           self.ui.adjustCollapsibleButton, self.ui.sectionCollapsibleButton],
            onStateChanged=self._checkCanApply,
        )
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.chosenResultSelector.connect("activated(int)", self.onChooseResult)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)
        self.ui.applyAdjustmentButton.connect("clicked(bool)", self.onApplyAdjustmentButton)
        self.ui.sectionSlider.connect("valueChanged(double)", self.onSectionChanged)
        self._checkCanApply()

    def onSceneStartClose(self, caller, event) -> None:
        """The run's nodes go with the scene."""
        StudyModuleWidget.onSceneStartClose(self, caller, event)
        self._forgetRun()

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Enable what has its inputs, and keep the results and study sections in sync."""
        parameterNode = self._parameterNode
        busy = self.longWork is not None and self.longWork.running
        haveRun = self._run is not None and not busy
        self.ui.resultsTableView.setMRMLTableNode(parameterNode.outputTable if parameterNode else None)
        for widget in (self.ui.chosenResultSelector, self.ui.compareButton, self.ui.applyAdjustmentButton,
                       self.ui.sectionSlider):
            widget.enabled = haveRun
        algorithms = self._algorithms()
        if busy:
            self.ui.applyButton.toolTip, ready = _("A job is running"), False
        elif not parameterNode or not parameterNode.inputVolume:
            self.ui.applyButton.toolTip, ready = _("Select the CT volume that shows the device"), False
        elif not parameterNode.extentNode:
            self.ui.applyButton.toolTip, ready = _("Select the device's start and end points (or a curve along it)"), False
        elif not algorithms:
            self.ui.applyButton.toolTip, ready = _("Choose at least one algorithm"), False
        else:
            self.ui.applyButton.toolTip = _("Reconstruct the device with {ids}").format(ids=", ".join(algorithms))
            ready = True
        self.ui.applyButton.enabled = ready
        self.ui.studyContentsLabel.text = studySummary(parameterNode.cardiacCase if parameterNode else None)

    def _algorithms(self) -> list:
        parameterNode = self._parameterNode
        if not parameterNode:
            return []
        chosen = (parameterNode.algorithmA, parameterNode.algorithmB, parameterNode.algorithmC)
        return [algorithmId for algorithmId, on in zip(ALGORITHM_IDS, chosen) if on]

    # ------------------------------------------------------------------------------------------ actions

    def onApplyButton(self) -> None:
        """Read the inputs here, reconstruct in a worker (Cancel stops it between steps), file the results here."""
        p = self._parameterNode
        if not self.longWork.runOnGuiThread(_("Checking the Python packages..."),
                                            lambda: ensurePythonRequirements(_("Stent Reconstruction"))):
            return
        read = self.longWork.runOnGuiThread(_("Reading the inputs..."), lambda: self.logic.readInputs(
            p.inputVolume, p.extentNode, p.vesselSegmentation, p.segmentName, p.deviceKind, p.nominalDiameterMm,
            p.nominalLengthMm))
        if read is None:
            return
        inputs, spec = read
        volume, caseNode, algorithms = p.inputVolume, p.cardiacCase, self._algorithms()
        self.longWork.start(
            lambda progress, cancel: self.logic.compute(inputs, spec, algorithms, progress, cancel),
            lambda run: self._showResult(run, self.logic.addResults(inputs, run, volume, caseNode)),
            message=_("Reconstructing..."), failureMessage=_("Stent reconstruction failed."),
        )

    def _showResult(self, run, nodes) -> None:
        """Keep the run with its nodes, list its results, and put the cross-section at the device's middle."""
        self._run, self._nodes, self._strutsOf = run, nodes, run.chosen_id
        parameterNode = self._parameterNode
        parameterNode.outputTable = nodes.table
        parameterNode.cardiacCase = nodes.case.node if nodes.case is not None else parameterNode.cardiacCase
        if nodes.browser is not None:
            slicer.modules.sequences.setToolBarActiveBrowserNode(nodes.browser)
        self._resetAdjustment()
        self._refreshChoices()
        self.ui.resultsCollapsibleButton.collapsed = False
        self.ui.sectionCollapsibleButton.collapsed = False
        self._checkCanApply()
        self._updateSectionRange(middle=True)
        slicer.util.resetThreeDViews()
        self.longWork.setStatus(self.logic.summary(run))

    def onChooseResult(self, index: int) -> None:
        """The user's choice of result instead of the top-ranked one."""
        algorithmId = self.ui.chosenResultSelector.itemData(index)
        if self._run is None or not algorithmId:
            return
        with slicer.util.tryWithErrorDisplay(_("The result cannot be chosen."), waitCursor=True):
            self.logic.choose(self._run, self._nodes, algorithmId, self._strutsOf)
            self._updateSectionRange(middle=True)
            self.longWork.setStatus(self.logic.summary(self._run))

    def onCompareButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The results cannot be shown side by side."), waitCursor=True):
            self.logic.showSideBySide(self._run, self._nodes, self._strutsOf)
            slicer.util.resetThreeDViews()
            self.longWork.setStatus(_("One 3D view per result, cameras linked; choose a result to return."))

    def onApplyAdjustmentButton(self) -> None:
        """Apply the move, scale and edited axis to the chosen result, rescore it, and start the fields afresh."""
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("The adjustment cannot be applied."), waitCursor=True):
            self.logic.adjust(self._run, self._nodes, (p.translateRMm, p.translateAMm, p.translateSMm), p.scale,
                              p.useEditedAxis, self._strutsOf)
            self._resetAdjustment()
            self._refreshChoices()
            self._updateSectionRange()
            note = _(" The moving device over the cycle is still the one reconstructed; run again to carry the"
                     " adjustment through the cycle.") if self._nodes.model_sequence is not None else ""
            self.longWork.setStatus(_("Adjusted and rescored. ") + self.logic.summary(self._run) + note)

    def onSectionChanged(self, positionMm: float) -> None:
        if self._run is None or self.longWork.running:
            return
        with slicer.util.tryWithErrorDisplay(_("The cross-section cannot be shown.")):
            self.logic.showSection(self._run, self._nodes, positionMm)
            self.ui.sectionInfoLabel.text = self.logic.sectionText(self._run, positionMm)

    # ------------------------------------------------------------------------------------------ helpers

    def _refreshChoices(self) -> None:
        selector = self.ui.chosenResultSelector
        selector.clear()
        for algorithmId, text in self.logic.resultChoices(self._run):
            selector.addItem(text, algorithmId)
        selector.setCurrentIndex(max(selector.findData(self._run.chosen_id), 0))

    def _resetAdjustment(self) -> None:
        """An applied adjustment is part of the result now: the fields start from no change again."""
        p = self._parameterNode
        p.translateRMm = p.translateAMm = p.translateSMm = 0.0
        p.scale = 1.0
        p.useEditedAxis = False

    def _updateSectionRange(self, middle: bool = False) -> None:
        length = self.logic.axisLengthMm(self._run, self._nodes)
        self.ui.sectionSlider.maximum = length
        position = 0.5 * length if middle else min(self._parameterNode.sectionMm, length)
        if abs(self._parameterNode.sectionMm - position) < 1e-9:
            self.onSectionChanged(position)
        else:
            self._parameterNode.sectionMm = position

    def _forgetRun(self) -> None:
        self._run = self._nodes = self._strutsOf = None
        self.ui.chosenResultSelector.clear()
        self.ui.sectionInfoLabel.text = ""


#
# StentReconstructionTest
#


class StentReconstructionTest(ScriptedLoadableModuleTest):
    """In-Slicer self-test (Reload and Test, and ctest) on a small synthetic ring stent built here."""

    #: The synthetic stent: Gaussian rings (1500 HU) on a straight line in a 400 HU tube on -80 HU.
    DIAMETER_MM = 3.0
    LENGTH_MM = 12.0
    #: Accepted error of the chosen result's mean diameter and length on the 0.35 mm test grid.
    DIAMETER_TOLERANCE_MM = 0.3
    LENGTH_TOLERANCE_MM = 1.5

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_RingStentIsMeasured()
        self.setUp()
        self.test_ChooseAdjustAndSection()

    def test_RingStentIsMeasured(self):
        """The chosen result's mean diameter and length match the synthetic stent; results are filed."""
        slicer.mrmlScene.Clear()
        run, nodes = self._reconstruct()
        measurements = run.chosen.measurements
        self.assertAlmostEqual(measurements["diameter_mean_mm"], self.DIAMETER_MM, delta=self.DIAMETER_TOLERANCE_MM)
        self.assertAlmostEqual(measurements["length_mm"], self.LENGTH_MM, delta=self.LENGTH_TOLERANCE_MM)
        self.assertEqual(nodes.table.GetNumberOfRows(), len(run.results))
        self.assertIn(run.chosen_id, nodes.models)
        self.delayDisplay(f"Chosen {run.chosen_id}: mean diameter {measurements['diameter_mean_mm']:.2f} mm, "
                          f"length {measurements['length_mm']:.1f} mm")

    def test_ChooseAdjustAndSection(self):
        """Choosing, comparing, adjusting and the cross-section act on the scene as the widget's buttons do."""
        slicer.mrmlScene.Clear()
        import numpy as np

        from CardiacSuiteLib import mrml

        logic = StentReconstructionLogic()
        run, nodes = self._reconstruct()
        strutsOf = run.chosen_id
        shown = logic.showSideBySide(run, nodes, strutsOf)
        self.assertEqual(len(shown.view_nodes), len(nodes.models))
        self.assertTrue(all(view.GetLinkedControl() for view in shown.view_nodes))
        other = next(algorithmId for algorithmId in nodes.models if algorithmId != run.chosen_id)
        logic.choose(run, nodes, other, strutsOf)
        self.assertEqual(run.chosen_id, other)
        self.assertTrue(nodes.models[other].GetDisplayNode().GetVisibility())

        before = run.chosen.measurements["diameter_mean_mm"]
        logic.adjust(run, nodes, (0.5, 0.0, 0.0), 1.1, False, strutsOf)
        self.assertAlmostEqual(run.chosen.measurements["diameter_mean_mm"], 1.1 * before, delta=0.05 * before)
        row = next(r for r in mrml.table_rows(nodes.table) if r["Algorithm"] == other)
        self.assertAlmostEqual(float(row["Mean diameter"]), run.chosen.measurements["diameter_mean_mm"], delta=0.01)

        length = logic.axisLengthMm(run, nodes)
        point = logic.showSection(run, nodes, 0.5 * length)
        matrix = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode().GetSliceToRAS()
        normal = np.array([matrix.GetElement(r, 2) for r in range(3)])
        self.assertGreater(abs(normal[2]), 0.99)  # the ring stent runs along S: the section is axial
        self.assertAlmostEqual(point[2], 0.5 * self.LENGTH_MM, delta=self.LENGTH_TOLERANCE_MM)
        self.delayDisplay("Choice, adjustment and cross-section follow the run")

    # Helpers

    def _reconstruct(self):
        """The synthetic ring stent as a CT volume with its two end points, reconstructed; (run, nodes)."""
        import numpy as np

        from CardiacSuiteLib import mrml

        diameter, length, spacing, sigma = self.DIAMETER_MM, self.LENGTH_MM, 0.35, 0.3
        half = diameter / 2 + 4.0
        xy = np.arange(int(2 * half / spacing) + 1) * spacing - half
        z = np.arange(int((length + 8.0) / spacing) + 1) * spacing - 4.0
        s, a, r = np.meshgrid(z, xy, xy, indexing="ij")
        rho = np.hypot(r, a)
        image = -80.0 + 480.0 * 0.5 * (1.0 - np.tanh((rho - (diameter / 2 + 0.3)) / 0.3))
        for centre in np.linspace(0.0, length, 7):
            image += 1500.0 * np.exp(-((rho - diameter / 2) ** 2 + (s - centre) ** 2) / (2 * sigma ** 2))
        image += np.random.default_rng(0).normal(0.0, 15.0, image.shape)
        ijkToRas = np.diag([spacing, spacing, spacing, 1.0])
        ijkToRas[:3, 3] = [-half, -half, -4.0]
        volume = mrml.add_volume(slicer.mrmlScene, image.astype(np.float32), ijkToRas, "Synthetic ring stent CT")
        extent = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Stent ends")
        extent.AddControlPoint(0.3, 0.2, -0.5)
        extent.AddControlPoint(-0.2, 0.3, length + 0.6)
        return StentReconstructionLogic().reconstruct(volume, extent, "coronary")
