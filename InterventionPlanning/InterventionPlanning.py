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
from InterventionPlanningLib.workflow import PROTOCOLS


#
# InterventionPlanning
#


class InterventionPlanning(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Intervention Planning")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = []
        self.parent.contributors = ["CardiacSuite developers"]
        self.parent.helpText = _("""
Planning measurements on cardiac CT for structural-heart and coronary interventions.<br><br>
<b>TAVR</b> (SCCT 2019): the annular plane through the three cusp hinge points (nadirs), found on the CT; annulus
area, perimeter, diameters and eccentricity; LVOT 4 mm below; sinus of Valsalva per sinus (cusp-to-commissure);
sinotubular junction height and diameter; ascending aorta at 40 mm; coronary ostial heights and the virtual
valve-to-coronary distance; calcium per cusp; angulation; the C-arm perpendicularity curve with the coplanar and
cusp-overlap views; valve size suggestions from editable sizing tables.<br>
<b>Mitral</b> (TEER/TMVR): saddle and D-shaped annulus, intercommissural and septal-lateral diameters,
trigone-to-trigone distance, annulus height, annular calcification, the predicted neo-LVOT of a virtual valve,
transseptal puncture height. <b>Pulmonary valve</b> (PPVI): RVOT and main pulmonary artery every 2 mm, the landing
zone, its distance to the bifurcation, and the coronary distance to the RVOT. <b>PCI</b>: along a vessel
centreline, the lesion's minimal lumen, reference diameters, % stenosis, length, CAD-RADS, calcium arc, SCCT
segment and the foreshortening-free C-arm views.<br>
Every landmark is a point you can move; <b>Recompute</b> measures again with the moved points (recorded as
edited).<br>
<b>Command line</b>: <code>cardiacsuite plan tavr CT --out folder</code> does the same in batch (see
<code>cardiacsuite plan --help</code>).
<br><br>For research use; not a medical device.
See the <a href="https://github.com/CardiacSuite/SlicerCardiacSuite#interventionplanning">module documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Part of CardiacSuite, developed by the CardiacSuite developers and distributed under the Apache License 2.0.
Built on 3D Slicer and its Markups, Segmentations and Tables modules.
""")


#
# InterventionPlanningParameterNode
#


@parameterNodeWrapper
class InterventionPlanningParameterNode:
    """
    The parameters needed by module.

    protocol - tavr, mitral, pulmonary or pci.
    inputVolume - the CT: a volume, or the proxy volume of a 4D CT's browser (its shown phase).
    segmentation - optional chambers and vessels the landmarks are found from.
    givenLandmarks - optional point list of named landmarks that replace the found ones.
    vesselCurve, vesselName - PCI: the vessel centreline from the ostium and its name.
    valveSizeMm - virtual valve size (0: suggested).
    outputTable - the measurements of the last run.
    cardiacCase - the study (CardiacCase node) the results are filed under.
    """

    protocol: Annotated[str, Choice(list(PROTOCOLS))] = PROTOCOLS[0]
    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    givenLandmarks: vtkMRMLMarkupsFiducialNode
    vesselCurve: vtkMRMLMarkupsCurveNode
    vesselName: str = ""
    valveSizeMm: float = 0.0
    outputTable: vtkMRMLTableNode
    cardiacCase: vtkMRMLScriptedModuleNode


#
# InterventionPlanningLogic
#


class InterventionPlanningLogic(StudyModuleLogic):
    """Passes the scene and the parameter values to InterventionPlanningLib (the same code the command line runs)."""

    parameterNodeClass = InterventionPlanningParameterNode

    @staticmethod
    def _options(protocol, givenLandmarks=None, vesselCurve=None, vesselName="", valveSizeMm=0.0):
        from CardiacSuiteLib import mrml
        from InterventionPlanningLib import scene

        landmarks = scene.landmark_positions(givenLandmarks) if givenLandmarks is not None else {}
        curves = {"vessel": mrml.curve_points(vesselCurve)} if vesselCurve is not None else {}
        if protocol == "pci" and not curves:
            raise CardiacSuiteError(_("PCI needs the vessel's centreline: select a curve from the ostium."))
        return dict(landmarks=landmarks, curves=curves, valve_size_mm=float(valveSizeMm) or None,
                    vessel=vesselName or None)

    def measure(self, protocol, volume, segmentation=None, givenLandmarks=None, vesselCurve=None, vesselName="",
                valveSizeMm=0.0, caseNode=None):
        """Find the landmarks, measure and file the results under the study; (PlanResult, PlanNodes)."""
        from CardiacSuiteLib.case import CardiacCase
        from InterventionPlanningLib import scene

        options = self._options(protocol, givenLandmarks, vesselCurve, vesselName, valveSizeMm)
        case = CardiacCase(caseNode) if caseNode is not None else None
        try:
            return scene.plan_in_scene(slicer.mrmlScene, protocol, volume, segmentation_node=segmentation,
                                       case=case, **options)
        except ValueError as error:
            raise CardiacSuiteError(str(error)) from None

    @staticmethod
    def recompute(protocol, caseNode, valveSizeMm=0.0, vesselCurve=None, vesselName=""):
        """Measure again with the landmarks the user moved (they are recorded as edited)."""
        from CardiacSuiteLib import mrml
        from CardiacSuiteLib.case import CardiacCase
        from InterventionPlanningLib import scene

        if caseNode is None:
            raise CardiacSuiteError(_("Measure first: there is no study with planning results."))
        curves = {"vessel": mrml.curve_points(vesselCurve)} if vesselCurve is not None else {}
        try:
            return scene.recompute(slicer.mrmlScene, CardiacCase(caseNode), protocol,
                                   valve_size_mm=float(valveSizeMm) or None, curves=curves, vessel=vesselName or None)
        except ValueError as error:
            raise CardiacSuiteError(str(error)) from None

    @staticmethod
    def savePictures(result, folder) -> list:
        """Every measured cross-section as PNG in ``folder``; the file names."""
        from pathlib import Path

        from InterventionPlanningLib import workflow

        if result is None:
            raise CardiacSuiteError(_("Measure first: there are no sections to save."))
        return workflow.write_pictures(result, Path(folder))

    @staticmethod
    def summary(result) -> str:
        notes = " ".join(result.notes)
        rows = "; ".join(f"{m} {v} {u}".strip() for m, v, u in result.table[:4])
        return _("{protocol}: {rows}. {notes}").format(protocol=result.protocol.upper(), rows=rows, notes=notes)


#
# InterventionPlanningWidget
#


class InterventionPlanningWidget(StudyModuleWidget):
    """Inputs, measure, recompute after edits, results table and section pictures; study lifecycle from
    CardiacSuiteUI.study."""

    logicClass = InterventionPlanningLogic
    uiFile = "UI/InterventionPlanning.ui"

    def __init__(self, parent=None) -> None:
        StudyModuleWidget.__init__(self, parent)
        self._result = None

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        StudyModuleWidget.setup(self)
        self.longWork = LongWork(
            _("Intervention Planning"), self.ui.progressBar, self.ui.cancelButton, self.ui.statusLabel,
            lockedWidgets=[self.ui.inputsCollapsibleButton, self.ui.resultsCollapsibleButton],
            onStateChanged=self._checkCanApply,
        )
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.recomputeButton.connect("clicked(bool)", self.onRecomputeButton)
        self.ui.savePicturesButton.connect("clicked(bool)", self.onSavePicturesButton)
        self._checkCanApply()

    def onSceneStartClose(self, caller, event) -> None:
        StudyModuleWidget.onSceneStartClose(self, caller, event)
        self._result = None

    def _checkCanApply(self, caller=None, event=None) -> None:
        p = self._parameterNode
        busy = self.longWork is not None and self.longWork.running
        self.ui.resultsTableView.setMRMLTableNode(p.outputTable if p else None)
        if busy:
            self.ui.applyButton.toolTip, ready = _("A job is running"), False
        elif not p or not p.inputVolume:
            self.ui.applyButton.toolTip, ready = _("Select the contrast CT"), False
        elif p.protocol == "pci" and not p.vesselCurve:
            self.ui.applyButton.toolTip, ready = _("Select the vessel centreline (a curve from the ostium)"), False
        else:
            self.ui.applyButton.toolTip, ready = _("Find the landmarks and measure"), True
        self.ui.applyButton.enabled = ready
        self.ui.recomputeButton.enabled = not busy and self._result is not None
        self.ui.savePicturesButton.enabled = not busy and self._result is not None
        self.ui.studyContentsLabel.text = studySummary(p.cardiacCase if p else None)

    def onApplyButton(self) -> None:
        p = self._parameterNode
        if not self.longWork.runOnGuiThread(_("Checking the Python packages..."),
                                            lambda: ensurePythonRequirements(_("Intervention Planning"))):
            return
        done = self.longWork.runOnGuiThread(_("Measuring..."), lambda: self.logic.measure(
            p.protocol, p.inputVolume, p.segmentation, p.givenLandmarks, p.vesselCurve, p.vesselName, p.valveSizeMm,
            p.cardiacCase))
        if done is not None:
            self._show(*done)

    def onRecomputeButton(self) -> None:
        p = self._parameterNode
        done = self.longWork.runOnGuiThread(_("Measuring again with the moved landmarks..."), lambda: self.logic.recompute(
            p.protocol, p.cardiacCase, p.valveSizeMm, p.vesselCurve, p.vesselName))
        if done is not None:
            self._show(*done)

    def onSavePicturesButton(self) -> None:
        folder = self.ui.picturesDirectoryButton.directory
        with slicer.util.tryWithErrorDisplay(_("The pictures cannot be saved."), waitCursor=True):
            names = self.logic.savePictures(self._result, folder)
            self.longWork.setStatus(_("Saved {names} in {folder}.").format(names=", ".join(names), folder=folder))

    def _show(self, result, nodes) -> None:
        self._result = result
        p = self._parameterNode
        p.outputTable = nodes.table
        p.cardiacCase = nodes.case.node if nodes.case is not None else p.cardiacCase
        self.ui.resultsCollapsibleButton.collapsed = False
        self._checkCanApply()
        self.longWork.setStatus(self.logic.summary(result))


#
# InterventionPlanningTest
#


class InterventionPlanningTest(ScriptedLoadableModuleTest):
    """In-Slicer self-test (Reload and Test, and ctest) on a synthetic aortic root built here: three sinus lobes
    on an elliptic annulus, measured by the TAVR protocol, then a moved nadir recomputed."""

    #: The synthetic root: annulus semi-axes (mm), sinus bulge, sinotubular junction height.
    SEMI_AXES_MM = (13.0, 11.0)
    BULGE_MM = 6.0
    STJ_HEIGHT_MM = 20.0

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TavrOnSyntheticRoot()

    def test_TavrOnSyntheticRoot(self):
        """Annulus area within 5 % of the ellipse's; a moved nadir is recorded as edited and tilts the plane."""
        slicer.mrmlScene.Clear()
        import math

        import numpy as np

        from CardiacSuiteLib.case import Role

        logic = InterventionPlanningLogic()
        volume = self._syntheticRoot()
        result, nodes = logic.measure("tavr", volume)
        a, b = self.SEMI_AXES_MM
        self.assertAlmostEqual(result.results["annulus"]["area_mm2"], math.pi * a * b, delta=0.05 * math.pi * a * b)
        self.assertEqual(nodes.table.GetNumberOfRows(), len(result.table))
        self.assertEqual(len(nodes.case.references(Role.PLAN_LANDMARKS)), 1)
        points = nodes.landmarks
        labels = [points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())]
        k = labels.index("nadir_right")
        position = np.zeros(3)
        points.GetNthControlPointPositionWorld(k, position)
        points.SetNthControlPointPositionWorld(k, *(position + np.array([0.0, 0.0, 3.0])))
        again, _ = logic.recompute("tavr", nodes.case.node)
        self.assertEqual(again.results["edited"], ["nadir_right"])
        self.assertNotEqual(again.results["annulus"]["plane"]["normal"], result.results["annulus"]["plane"]["normal"])
        self.delayDisplay(f"Annulus {result.results['annulus']['area_mm2']:.0f} mm²; recomputed after an edit")

    # Helpers

    def _syntheticRoot(self):
        """LV outflow, elliptic annulus, three sinuses and a tubular aorta along S, blurred, as a CT volume."""
        import math

        import numpy as np
        from scipy import ndimage

        from CardiacSuiteLib import mrml

        spacing = 0.7
        a, b = self.SEMI_AXES_MM
        xy = np.arange(-30.0, 30.0 + 1e-6, spacing)
        z = np.arange(-30.0, 50.0 + 1e-6, spacing)
        s, y, x = np.meshgrid(z, xy, xy, indexing="ij")
        phi = np.arctan2(y, x)
        base = a * b / np.sqrt((b * np.cos(phi)) ** 2 + (a * np.sin(phi)) ** 2)
        top = 14.0
        radius = np.where(s < 0, base, base + (top - base) * np.clip(s / self.STJ_HEIGHT_MM, 0, 1))
        psi = np.angle(np.exp(1j * 3 * (phi - math.pi / 2))) / 3.0
        u = np.clip(s / self.STJ_HEIGHT_MM, 0, 1)
        radius = radius + self.BULGE_MM * np.cos(1.5 * psi) ** 2 * np.sin(math.pi * u) * ((s > 0) & (s < self.STJ_HEIGHT_MM))
        radius = np.where(s < -15, base + 8.0, radius)  # the LV cavity below
        lumen = np.hypot(x, y) <= radius
        image = np.where(lumen, 400.0, 40.0)
        image = ndimage.gaussian_filter(image, 0.45 / spacing) + np.random.default_rng(0).normal(0, 15, image.shape)
        ijkToRas = np.diag([spacing, spacing, spacing, 1.0])
        ijkToRas[:3, 3] = [-30.0, -30.0, -30.0]
        return mrml.add_volume(slicer.mrmlScene, image.astype(np.float32), ijkToRas, "Synthetic aortic root CT")
