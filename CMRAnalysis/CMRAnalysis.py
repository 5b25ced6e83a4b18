import importlib.util
import os
import shutil
from pathlib import Path
from typing import Annotated, Optional, Union

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer import (vtkMRMLMarkupsFiducialNode, vtkMRMLPlotChartNode, vtkMRMLScalarVolumeNode,
                    vtkMRMLScriptedModuleNode, vtkMRMLSegmentationNode, vtkMRMLSequenceNode, vtkMRMLTableNode)

from CardiacSuiteLib.case import CardiacCase, Role
from CardiacSuiteLib.errors import CardiacSuiteError, InputError
from CardiacSuiteLib.inference import CancelToken
from CardiacSuiteLib.inference.registry import ModelRegistry
from CardiacSuiteLib.inference.worker import use_worker_process
from CardiacSuiteLib.jobs import BackgroundJob
from CardiacSuiteLib.mrml import table_rows
from CardiacSuiteLib.vocabulary import CASE_MODULE_NAME, MODULE_NAME_ATTRIBUTE
from CardiacSuiteUI.longwork import LongWork
from CardiacSuiteUI.models import ModelChooser
from CardiacSuiteUI.requirements import ensurePythonRequirements
from CardiacSuiteUI.study import StudyModuleLogic, StudyModuleWidget
from CMRAnalysisLib import papillary, workflow
from CMRAnalysisLib.bsa import BSA_FORMULAS
from CMRAnalysisLib.choices import (ALL_PHASES, BSA_FORMULA_IDS, DEFAULT_BSA_FORMULA, DEVICES, ED_ES_PHASES,
                                    PAPILLARY_CONVENTIONS, PHASES, SEXES, UNKNOWN_SEX, slice_list_problem)
from CMRAnalysisLib.function import TASK as CMR_TASK
from CMRAnalysisLib.function_scene import REFERENCE_TABLE_ROLE, RESULTS_KEY, browser_of
from CMRAnalysisLib.prior import HEADER_TAGS, describe_prior
from CMRAnalysisLib.workflow import POLAR_MAP_VALUES

#: Singleton tag of the plot view that shows the volume curves inside the module panel.
PLOT_VIEW_SINGLETON_TAG = "CMRAnalysisVolumeCurves"
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
        self.parent.dependencies = ["Sequences", "Markups", "Plots", "Tables", "Segmentations"]
        self.parent.contributors = ["CardiacSuite developers"]
        # _() function marks text as translatable to other languages
        self.parent.helpText = _("""
Left and right ventricular function from a short-axis cine MR.<br><br>
An AI model from CardiacSuite's model registry contours the right ventricle, the left ventricular myocardium
and the left ventricular cavity on every slice of every phase (or, faster, of end-diastole and end-systole
only). From these contours:
<ul>
<li>volume-time curves of both ventricles (a table and a plot) and each ventricle's own end-diastolic and
end-systolic phase;</li>
<li>end-diastolic and end-systolic volumes, stroke volume, ejection fraction and, with the heart rate from the
trigger times, cardiac output; peak ejection and filling rates from a Fourier fit of the volume curve;</li>
<li>LV myocardial mass at end-diastole (1.05 g/ml), with papillary muscles counted in the blood pool or in the
myocardium, as chosen;</li>
<li>wall thickness and systolic thickening in the AHA 17 segments, split at the RV insertion points, with a
bull's-eye map;</li>
<li>with height and weight, the body surface area (selectable equation) and indexed values; with sex and age,
each value against published reference ranges (z-score and flag).</li>
</ul>
Volumes are disc summations; basal slices in the outflow tract or atrium are dropped by a documented rule, or
you list the slices to leave out.<br><br>
<b>Review and correct:</b> step through phases with the sequence controls and through slices in the slice
views; correct contours in the Segment Editor and drag the RV insertion points, then <i>Recompute from edited
contours</i>: every figure is recomputed without running the model again, and the results record which phases
were edited.<br><br>
Input: a cine (a sequence of short-axis volumes) or a single volume (one phase: volumes only).
The model runs in the background on a CUDA GPU when there is one and on the CPU otherwise; Cancel stops it
after the current slice and adds nothing to the scene. The results are tables, a plot, a segmentation
sequence, markups and references on the study's CardiacCase node.
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
    phases - "all" (every phase: curves, rates) or "ed-es" (end-diastole and end-systole only).
    papillary - where papillary muscles are counted: "blood" (LV volume) or "myocardium" (LV mass).
    excludedSlices - 0-based slices left out of every volume ("0, 9-10"); empty for the automatic basal rule.
    heightCm, weightKg, age - patient data; 0 means unknown.
    sex - "unknown", "male" or "female".
    bsaFormula - id of the body surface area equation.
    polarMapValue - the value the bull's-eye shows.
    priorStudyFolder - output folder of an earlier function analysis of the patient to compare with; empty for none.
    priorAnyPatient - compare with the prior study even when it is of another patient.
    outputTable, outputReferenceTable, outputPlotChart, outputAhaTable, outputInsertionPoints - what the last
        analysis measured: function, indexed values against reference ranges, volume-time curves, AHA segments,
        RV insertion points.
    outputPriorTable - the prior study's figures beside this study's, with the differences (when compared).
    outputSegmentationSequence, outputSegmentation - its segmentations (one per segmented phase) and the one shown.
    cardiacCase - the study (CardiacCase node) the results are filed under.
    """

    inputCine: Union[vtkMRMLSequenceNode, vtkMRMLScalarVolumeNode]
    modelId: str = ""
    device: Annotated[str, Choice(list(DEVICES))] = DEVICES[0]
    phases: Annotated[str, Choice(list(PHASES))] = ALL_PHASES
    papillary: Annotated[str, Choice(list(PAPILLARY_CONVENTIONS))] = papillary.BLOOD
    excludedSlices: str = ""
    heightCm: Annotated[float, WithinRange(0.0, 250.0)] = 0.0
    weightKg: Annotated[float, WithinRange(0.0, 400.0)] = 0.0
    sex: Annotated[str, Choice(list(SEXES))] = UNKNOWN_SEX
    age: Annotated[float, WithinRange(0.0, 120.0)] = 0.0
    bsaFormula: Annotated[str, Choice(list(BSA_FORMULA_IDS))] = DEFAULT_BSA_FORMULA
    polarMapValue: Annotated[str, Choice(list(POLAR_MAP_VALUES))] = POLAR_MAP_VALUES[0]
    priorStudyFolder: Path
    priorAnyPatient: bool = False
    outputTable: vtkMRMLTableNode
    outputReferenceTable: vtkMRMLTableNode
    outputPlotChart: vtkMRMLPlotChartNode
    outputAhaTable: vtkMRMLTableNode
    outputInsertionPoints: vtkMRMLMarkupsFiducialNode
    outputPriorTable: vtkMRMLTableNode
    outputSegmentationSequence: vtkMRMLSequenceNode
    outputSegmentation: vtkMRMLSegmentationNode
    cardiacCase: vtkMRMLScriptedModuleNode


#
# CMRAnalysisWidget
#


class CMRAnalysisWidget(StudyModuleWidget):
    """Inputs, options, patient data, the analysis (progress, cancel), results and review; the template's
    lifecycle (parameter node, scene close, enter and exit) is the shared one of CardiacSuiteUI.study."""

    uiFile = "UI/CMRAnalysis.ui"

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        StudyModuleWidget.__init__(self, parent)
        self.logicClass = CMRAnalysisLogic  # defined below the widget, in the template's order
        self.ui = None
        self._reviewBrowser = None  # the sequence browser the phase controls drive
        self._shownNodeIds = {}  # view name -> ID of the node it shows, to avoid needless refreshes
        self._polarMapKey = "unset"  # what the bull's-eye shows: (AHA table ID, its modification time, value)

    def setup(self) -> None:
        """Load the form, connect the scene and the parameter node (the shared base), then this module's parts."""
        StudyModuleWidget.setup(self)
        # Progress, cancel and errors of the download and the analysis; the inputs are locked while they run.
        self.longWork = LongWork(
            _("CMR Analysis"), self.ui.progressBar, self.ui.cancelButton, self.ui.statusLabel,
            lockedWidgets=[self.ui.inputsCollapsibleButton, self.ui.optionsCollapsibleButton,
                           self.ui.patientCollapsibleButton],
            onStateChanged=self._checkCanApply,
        )
        # The model selector is filled from the registry, so it is not bound to the parameter node.
        self._models = ModelChooser(_("CMR Analysis"), CMR_TASK, self.ui.modelSelector, self.ui.modelInfoLabel,
                                    onChosen=self._onModelChosen)
        self._models.populate()
        # The networks run in a PythonSlicer child process, so the GUI thread never waits for them.
        use_worker_process(shutil.which("PythonSlicer"))
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.recomputeButton.connect("clicked(bool)", self.onRecomputeButton)
        self.ui.editContoursButton.connect("clicked(bool)", self.onEditContoursButton)
        self.ui.showPlotInLayoutButton.connect("clicked(bool)", self.onShowPlotInLayoutButton)
        self.ui.sliceSpinBox.connect("valueChanged(int)", self.onSliceChanged)
        self._checkCanApply()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._setReviewBrowser(None)
        StudyModuleWidget.cleanup(self)

    def onSceneStartClose(self, caller, event) -> None:
        """The base discards a running analysis: its results must not reach the next scene."""
        self._setReviewBrowser(None)
        StudyModuleWidget.onSceneStartClose(self, caller, event)

    def onSceneEndClose(self, caller, event) -> None:
        self._shownNodeIds = {}
        self._polarMapKey = "unset"
        StudyModuleWidget.onSceneEndClose(self, caller, event)

    def initializeParameterNode(self) -> None:
        """The shared defaults (the scene's first study), and the scene's first cine as the input."""
        StudyModuleWidget.initializeParameterNode(self)
        if not self._parameterNode.inputCine:
            firstCine = workflow.first_cine(slicer.mrmlScene)
            if firstCine:
                self._parameterNode.inputCine = firstCine

    def setParameterNode(self, inputParameterNode: Optional[CMRAnalysisParameterNode]) -> None:
        StudyModuleWidget.setParameterNode(self, inputParameterNode)
        if self._parameterNode:
            self._labelChoiceCombos()
        self._checkCanApply()

    def _labelChoiceCombos(self) -> None:
        """Readable texts for the Choice combo boxes (the connector fills them with the raw values, same order)."""
        labels = {
            "phasesSelector": (PHASES, {
                ALL_PHASES: _("every phase"), ED_ES_PHASES: _("end-diastole and end-systole only")}),
            "papillarySelector": (PAPILLARY_CONVENTIONS, {papillary.BLOOD: _("in the blood pool (LV volume)"),
                                                          papillary.MYOCARDIUM: _("in the myocardium (LV mass)")}),
            "sexSelector": (SEXES, {UNKNOWN_SEX: _("unknown"), "male": _("male"), "female": _("female")}),
            "bsaFormulaSelector": (BSA_FORMULA_IDS, {key: formula.name for key, formula in BSA_FORMULAS.items()}),
            "polarMapValueSelector": (POLAR_MAP_VALUES, {
                "thickening_pct": _("systolic wall thickening (%)"),
                "ed_thickness_mm": _("end-diastolic wall thickness (mm)"),
                "es_thickness_mm": _("end-systolic wall thickness (mm)")}),
        }
        for name, (values, texts) in labels.items():
            combo = getattr(self.ui, name)
            for index, value in enumerate(values[: combo.count]):
                combo.setItemText(index, texts.get(value, value))
        for index, formula in enumerate(list(BSA_FORMULAS.values())[: self.ui.bsaFormulaSelector.count]):
            self.ui.bsaFormulaSelector.setItemData(
                index, f"{formula.equation}\n{formula.population}\n{formula.citation}", qt.Qt.ToolTipRole
            )

    def _busy(self) -> bool:
        """True while the model download or an analysis runs."""
        return self.longWork is not None and self.longWork.running

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Enable Apply when an input and a model are chosen and nothing runs; keep the result views in sync."""
        parameterNode = self._parameterNode
        if parameterNode:
            self._models.show(parameterNode.modelId)
        self._updateResultViews()

        count = workflow.slice_count(parameterNode.inputCine) if parameterNode else None
        slicesProblem = slice_list_problem(parameterNode.excludedSlices, count) if parameterNode else None
        self.ui.excludedSlicesLineEdit.setStyleSheet("color: #c0392b" if slicesProblem else "")

        busy = self._busy()
        if busy:
            problem = _("An analysis is running")
        elif not parameterNode or not parameterNode.inputCine:
            problem = _("Select a short-axis cine (or a single volume)")
        elif self.ui.modelSelector.count == 0:
            problem = _("No model is registered for short-axis cine segmentation")
        else:
            problem = slicesProblem
        self.ui.applyButton.enabled = problem is None
        self.ui.applyButton.toolTip = problem or _("Segment the cine and measure ventricular function")

        hasAnalysis = bool(parameterNode and self.logic.hasAnalysis(parameterNode.cardiacCase))
        self.ui.recomputeButton.enabled = hasAnalysis and not busy and not slicesProblem
        segmentation = parameterNode.outputSegmentation if parameterNode else None
        self.ui.editContoursButton.enabled = segmentation is not None and not busy

    # ------------------------------------------------------------------------------------------- models

    def _onModelChosen(self, modelId: str) -> None:
        if self._parameterNode:
            self._parameterNode.modelId = modelId

    # ------------------------------------------------------------------------------------------ running

    def onApplyButton(self) -> None:
        """Check the packages and the model (downloading it if the user agrees), then analyse in the background."""
        parameterNode = self._parameterNode
        if self._busy() or parameterNode is None:
            return
        with slicer.util.tryWithErrorDisplay(_("CMR analysis failed."), waitCursor=False):
            try:
                entry = self._models.entry(parameterNode.modelId)
                ensurePythonRequirements(_("CMR Analysis"), entry.backend)
            except CardiacSuiteError as error:
                self.longWork.setStatus(str(error))
                slicer.util.errorDisplay(str(error), windowTitle=_("CMR Analysis"))
                return
            self._models.ensureAvailable(entry, self.longWork, self._startAnalysis)
        self._checkCanApply()

    def _startAnalysis(self) -> None:
        """Read the cine and load the model on the GUI thread (briefly), then segment and measure in a worker."""
        parameterNode = self._parameterNode
        inputNode = parameterNode.inputCine

        def prepare():
            options = self.logic.analysisOptions(
                parameterNode.phases, parameterNode.papillary, parameterNode.excludedSlices,
                workflow.slice_count(inputNode),
            )
            caseNode = workflow.study_for(inputNode, parameterNode.cardiacCase)
            priorStudy = self.logic.priorStudy(str(parameterNode.priorStudyFolder), inputNode, caseNode,
                                               parameterNode.priorAnyPatient)
            return self.logic.prepare(
                inputNode, modelId=parameterNode.modelId or None, device=parameterNode.device, options=options,
                patient=self._patientInfo(), caseNode=caseNode, prior=priorStudy,
            )

        prepared = self.longWork.runOnGuiThread(_("Reading the cine and loading the model..."), prepare)
        if prepared is None:
            return
        self.longWork.start(
            lambda progress, cancel: CMRAnalysisLogic.compute(prepared, progress, cancel),
            onSuccess=lambda computed: self._showResult(self.logic.finish(prepared, computed)),
            message=_("Segmenting {name} on {device}...").format(name=inputNode.GetName(), device=prepared.device),
            failureMessage=_("CMR analysis failed."),
        )

    def _patientInfo(self):
        node = self._parameterNode
        return self.logic.patientInfo(node.heightCm, node.weightKg, node.sex, node.age, node.bsaFormula)

    # ------------------------------------------------------------------------------------------ results

    def _showResult(self, analysis, recomputed: bool = False) -> None:
        """Keep the result nodes in the parameter node and show them; after a new analysis, show the cine too."""
        proxySegmentation = analysis.segmentation_browser.GetProxyNode(analysis.segmentation_sequence)
        parameterNode = self._parameterNode
        with slicer.util.NodeModify(parameterNode):
            parameterNode.outputTable = analysis.table
            parameterNode.outputReferenceTable = self.logic.referenceTable(analysis.case_node)
            parameterNode.outputPlotChart = analysis.plot_chart
            parameterNode.outputAhaTable = analysis.aha_table
            parameterNode.outputInsertionPoints = analysis.insertion_points
            parameterNode.outputPriorTable = analysis.prior_table
            parameterNode.outputSegmentationSequence = analysis.segmentation_sequence
            parameterNode.outputSegmentation = proxySegmentation
            parameterNode.cardiacCase = analysis.case_node

        if not recomputed:
            slicer.modules.sequences.setToolBarActiveBrowserNode(analysis.segmentation_browser)
            if proxySegmentation is not None:
                proxySegmentation.CreateDefaultDisplayNodes()
                proxySegmentation.GetDisplayNode().SetVisibility(True)
            if analysis.insertion_points is not None:
                analysis.insertion_points.CreateDefaultDisplayNodes()
                analysis.insertion_points.GetDisplayNode().SetVisibility(True)
                analysis.insertion_points.SetLocked(False)
            background = workflow.displayed_volume(slicer.mrmlScene, parameterNode.inputCine)
            if background is not None:
                slicer.util.setSliceViewerLayers(background=background, fit=True, rotateToVolumePlane=True)
            self.ui.resultsCollapsibleButton.collapsed = False
        self.longWork.setStatus(workflow.result_summary(analysis.results))
        self._checkCanApply()

    def _setView(self, key: str, node, setter) -> None:
        """Call ``setter(node)`` when ``node`` differs from the one the view ``key`` shows."""
        nodeId = node.GetID() if node is not None else None
        if self._shownNodeIds.get(key, "unset") != nodeId:
            self._shownNodeIds[key] = nodeId
            setter(node)

    def _updateResultViews(self) -> None:
        """Point every result view at the parameter node's result nodes."""
        parameterNode = self._parameterNode
        get = (lambda name: getattr(parameterNode, name)) if parameterNode else (lambda name: None)
        self._setView("results", get("outputTable"), self.ui.resultsTableView.setMRMLTableNode)
        self._setView("reference", get("outputReferenceTable"), self.ui.referenceTableView.setMRMLTableNode)
        self._setView("aha", get("outputAhaTable"), self.ui.ahaTableView.setMRMLTableNode)
        self._setView("insertion", get("outputInsertionPoints"), self.ui.insertionPointsWidget.setCurrentNode)
        self._setView("prior", get("outputPriorTable"), self.ui.priorTableView.setMRMLTableNode)
        self._updatePriorInfo()
        self._setView("plot", get("outputPlotChart"), self._showPlotChart)
        self.ui.showPlotInLayoutButton.enabled = get("outputPlotChart") is not None
        self._setReviewBrowser(browser_of(slicer.mrmlScene, get("outputSegmentationSequence")))
        self._updatePolarMap()
        self._updateSliceControls()

    def _updatePriorInfo(self) -> None:
        """Name the prior study the results were compared with, and what to check about the comparison."""
        parameterNode = self._parameterNode
        results = self.logic.results(parameterNode.cardiacCase) if parameterNode else None
        block = (results or {}).get("prior") if parameterNode and parameterNode.outputPriorTable else None
        if block:
            notes = "".join(f"\n{_('Note:')} {warning}" for warning in block.get("warnings", []))
            self.ui.priorStudyInfoLabel.text = describe_prior(block) + "." + notes
        else:
            self.ui.priorStudyInfoLabel.text = _("Choose a prior study under Inputs to compare with it. Its volume"
                                                 " curves are drawn dashed in the Volume curves tab.")

    def _showPlotChart(self, chart) -> None:
        if chart is None:
            return  # keep the view node; it shows nothing once the chart is removed
        viewNode = self.logic.plotViewNode()
        viewNode.SetPlotChartNodeID(chart.GetID())
        if self.ui.plotWidget.mrmlPlotViewNode() is not viewNode:
            self.ui.plotWidget.setMRMLPlotViewNode(viewNode)

    def onShowPlotInLayoutButton(self) -> None:
        chart = self._parameterNode.outputPlotChart if self._parameterNode else None
        if chart is not None:
            slicer.modules.plots.logic().ShowChartInLayout(chart)

    def _updatePolarMap(self) -> None:
        """Render the bull's-eye of the AHA table for the chosen value (only when either changed)."""
        parameterNode = self._parameterNode
        table = parameterNode.outputAhaTable if parameterNode else None
        value = parameterNode.polarMapValue if parameterNode else POLAR_MAP_VALUES[0]
        key = (table.GetID(), table.GetMTime(), value) if table is not None else None
        if key == self._polarMapKey:
            return
        self._polarMapKey = key
        self.ui.polarMapLabel.clear()
        if table is None:
            self.ui.polarMapLabel.text = _("The bull's-eye appears here after an analysis with end-diastole and end-systole.")
            return
        path = os.path.join(slicer.app.temporaryPath, "CMRAnalysis-polar-map.png")
        try:
            self.logic.savePolarMap(table, value, path)
        except ImportError as error:
            self.ui.polarMapLabel.text = _("The bull's-eye needs the Python package Pillow ({error}).").format(error=error)
            return
        pixmap = qt.QPixmap(path)
        width = max(200, min(360, self.ui.polarMapLabel.width - 8))
        self.ui.polarMapLabel.setPixmap(pixmap.scaledToWidth(width, qt.Qt.SmoothTransformation))

    # ------------------------------------------------------------------------------------------ review

    def _setReviewBrowser(self, browser) -> None:
        """Drive ``browser`` from the phase controls and follow it (slice information, the cine's phase)."""
        if browser is self._reviewBrowser:
            return
        if self._reviewBrowser is not None:
            self.removeObserver(self._reviewBrowser, vtk.vtkCommand.ModifiedEvent, self._onReviewBrowserModified)
        self._reviewBrowser = browser
        if browser is not None:
            self.addObserver(browser, vtk.vtkCommand.ModifiedEvent, self._onReviewBrowserModified)
        self.ui.sequencePlayWidget.setMRMLSequenceBrowserNode(browser)
        self.ui.sequenceSeekWidget.setMRMLSequenceBrowserNode(browser)

    def _onReviewBrowserModified(self, caller=None, event=None) -> None:
        """The reader stepped to another phase: keep the cine on it (ED/ES-only results) and refresh the slice line."""
        parameterNode = self._parameterNode
        if parameterNode is not None and parameterNode.cardiacCase is not None:
            workflow.follow_segmentation_phase(CardiacCase(parameterNode.cardiacCase))
        self._updateSliceInfo()

    def _updateSliceControls(self) -> None:
        parameterNode = self._parameterNode
        count = workflow.slice_count(parameterNode.inputCine) if parameterNode else None
        self.ui.sliceSpinBox.enabled = bool(count)
        if count and self.ui.sliceSpinBox.maximum != count - 1:
            wasBlocked = self.ui.sliceSpinBox.blockSignals(True)
            self.ui.sliceSpinBox.maximum = count - 1
            self.ui.sliceSpinBox.blockSignals(wasBlocked)
        self._updateSliceInfo()

    def onSliceChanged(self, sliceNumber: int) -> None:
        """Centre the slice views on short-axis slice ``sliceNumber`` of the cine."""
        parameterNode = self._parameterNode
        volume = workflow.displayed_volume(slicer.mrmlScene, parameterNode.inputCine) if parameterNode else None
        position = workflow.slice_centre(volume, sliceNumber)
        if position is not None:
            slicer.modules.markups.logic().JumpSlicesToLocation(*position, True)
        self._updateSliceInfo()

    def _updateSliceInfo(self) -> None:
        parameterNode = self._parameterNode
        text = ""
        if parameterNode is not None and parameterNode.cardiacCase is not None:
            text = self.logic.sliceDescription(parameterNode.cardiacCase, self.ui.sliceSpinBox.value)
        self.ui.sliceInfoLabel.text = text

    def onEditContoursButton(self) -> None:
        """Open the Segment Editor on the displayed segmentation, over the cine's displayed phase."""
        parameterNode = self._parameterNode
        segmentation = parameterNode.outputSegmentation if parameterNode else None
        if segmentation is None:
            return
        volume = workflow.displayed_volume(slicer.mrmlScene, parameterNode.inputCine)
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.util.getModuleWidget("SegmentEditor").editor
        editor.setSegmentationNode(segmentation)
        if volume is not None:
            editor.setSourceVolumeNode(volume)

    def onRecomputeButton(self) -> None:
        """Recompute every figure from the edited contours and moved insertion points, then refresh the views."""
        parameterNode = self._parameterNode
        if self._busy() or parameterNode is None or parameterNode.cardiacCase is None:
            return
        caseNode = parameterNode.cardiacCase

        def recompute():
            options = self.logic.recomputeOptions(caseNode, parameterNode.papillary, parameterNode.excludedSlices)
            return self.logic.recompute(caseNode, options, self._patientInfo())

        with slicer.util.tryWithErrorDisplay(_("Recomputing failed."), waitCursor=True):
            analysis = self.longWork.runOnGuiThread(_("Recomputing from the edited contours..."), recompute)
            if analysis is not None:
                self._showResult(analysis, recomputed=True)
        self._checkCanApply()


#
# CMRAnalysisLogic
#


class CMRAnalysisLogic(StudyModuleLogic):
    """The module's entry points for scripts, tests and the widget: CMRAnalysisLib.workflow on ``slicer.mrmlScene``,
    the workflow ``cardiacsuite cmr-function`` runs too. ``prepare`` and ``finish`` touch the scene (GUI thread),
    ``compute`` does not (any thread); ``process`` runs the three in turn, ``recompute`` is the correction loop.
    """

    parameterNodeClass = CMRAnalysisParameterNode

    def __init__(self) -> None:
        StudyModuleLogic.__init__(self)
        self._resultsCache = (None, None)  # (study node ID and modification time, its results)

    # Analysis

    def process(self, inputNode, modelId=None, device="auto", progress=None, cancel=None, options=None, patient=None,
                caseNode=None, prior=None):
        """Analyse a cine (volume sequence) or one volume; returns a FunctionAnalysis. After ``cancel.cancel()``
        it raises Cancelled and adds nothing; ``caseNode`` None files the results under a study found or made;
        ``prior`` (from ``priorStudy``) is a prior study of the patient to compare with."""
        prepared = self.prepare(inputNode, modelId, device, options, patient, caseNode, prior)
        return self.finish(prepared, self.compute(prepared, progress, cancel))

    def prepare(self, inputNode, modelId=None, device="auto", options=None, patient=None, caseNode=None, prior=None):
        """GUI thread: read the cine, check the options and patient data, load the model."""
        case = CardiacCase(caseNode) if caseNode is not None else None
        return workflow.prepare_analysis(inputNode, modelId, device, options, patient, case, self.registry(),
                                         prior=prior)

    @staticmethod
    def compute(prepared, progress=None, cancel=None):
        """Any thread: segment and measure; returns (results, CineSegmentation)."""
        return workflow.compute_analysis(prepared, progress, cancel)

    @staticmethod
    def finish(prepared, computed):
        """GUI thread: add the results to the scene; returns a FunctionAnalysis."""
        return workflow.finish_analysis(slicer.mrmlScene, prepared, computed)

    def recompute(self, caseNode, options=None, patient=workflow.STORED_PATIENT):
        """Recompute every figure from the study's contours as edited, without the model (see the workflow)."""
        if caseNode is None:
            raise InputError(_("Select the study whose analysis to recompute."))
        return workflow.recompute_analysis(slicer.mrmlScene, CardiacCase(caseNode), options, patient)

    @staticmethod
    def createCancelToken():
        return CancelToken()

    # Options and patient data from the module's fields

    @staticmethod
    def analysisOptions(phases=ALL_PHASES, papillary=papillary.BLOOD, excludedSlices="", sliceCount=None):
        return workflow.analysis_options(phases, papillary, excludedSlices, sliceCount)

    @staticmethod
    def recomputeOptions(caseNode, papillary=None, excludedSlices=None):
        return workflow.recompute_options(CardiacCase(caseNode), papillary, excludedSlices)

    @staticmethod
    def patientInfo(heightCm=0.0, weightKg=0.0, sex=UNKNOWN_SEX, age=0.0, bsaFormula=DEFAULT_BSA_FORMULA):
        return workflow.patient_info(heightCm, weightKg, sex, age, bsaFormula)

    def priorStudy(self, folder, inputNode, caseNode=None, allowOtherPatient=False):
        """The prior study in ``folder`` (a cmr-function output folder), checked to be of the cine's patient; None
        for an empty folder field. Raises InputError for a folder that is not a function result or another patient."""
        if not folder or folder == ".":
            return None
        return workflow.open_prior_study(folder, self.studyIdentity(inputNode, caseNode), allowOtherPatient)

    @staticmethod
    def studyIdentity(inputNode, caseNode=None) -> dict:
        """The cine's patient and study fields: those of its study node, completed from the DICOM database when
        Slicer loaded the cine from it (its volumes then carry their instance UIDs)."""
        identity = workflow.case_identity(CardiacCase(caseNode) if caseNode is not None else None)
        volume = inputNode
        if inputNode is not None and inputNode.IsA("vtkMRMLSequenceNode"):
            volume = inputNode.GetNthDataNode(0) if inputNode.GetNumberOfDataNodes() else None
        uids = ((volume.GetAttribute("DICOM.instanceUIDs") if volume is not None else None) or "").split()
        database = slicer.dicomDatabase
        if uids and database is not None and database.isOpen:
            header = {name: database.instanceValue(uids[0], tag) for name, tag in HEADER_TAGS.items()}
            identity = {**workflow.study_identity(header), **identity}
        return identity

    # Results in the scene

    @staticmethod
    def referenceTable(caseNode):
        """The table of indexed values and reference ranges, if the analysis had patient data."""
        return caseNode.GetNodeReference(REFERENCE_TABLE_ROLE) if caseNode is not None else None

    @staticmethod
    def hasAnalysis(caseNode) -> bool:
        return bool(caseNode is not None and caseNode.GetParameter(RESULTS_KEY))

    def results(self, caseNode):
        """The study's last results (read once per change of the study node), or None."""
        if caseNode is None:
            return None
        key = (caseNode.GetID(), caseNode.GetMTime())
        if self._resultsCache[0] != key:
            self._resultsCache = (key, CardiacCase(caseNode).value(RESULTS_KEY))
        return self._resultsCache[1]

    @staticmethod
    def savePolarMap(ahaTableNode, value, path) -> None:
        """Write the bull's-eye of an AHA segment table, for ``value``, as a PNG file (needs Pillow)."""
        from CMRAnalysisLib import polar_map

        polar_map.save_png(workflow.polar_map_segments(table_rows(ahaTableNode), value), path, value)

    def plotViewNode(self):
        """The plot view that shows the volume curves in the module panel (one per scene, outside the layout)."""
        viewNode = slicer.mrmlScene.GetSingletonNode(PLOT_VIEW_SINGLETON_TAG, "vtkMRMLPlotViewNode")
        if viewNode is None:
            viewNode = slicer.vtkMRMLPlotViewNode()
            viewNode.SetSingletonTag(PLOT_VIEW_SINGLETON_TAG)
            viewNode.SetName("CMR Analysis volume curves")
            viewNode.SetLayoutName(PLOT_VIEW_SINGLETON_TAG)
            # Owned by the module's parameter node, so the view layout does not take it over
            viewNode.SetAndObserveParentLayoutNodeID(ScriptedLoadableModuleLogic.getParameterNode(self).GetID())
            slicer.mrmlScene.AddNode(viewNode)
        return viewNode

    def sliceDescription(self, caseNode, sliceNumber: int) -> str:
        """Whether slice ``sliceNumber`` counts in the volumes at the phase shown, in words."""
        browser = caseNode.GetNodeReference(Role.FUNCTION_SEGMENTATION_BROWSER) if caseNode is not None else None
        item = browser.GetSelectedItemNumber() if browser is not None else -1
        counted = workflow.slice_counted(self.results(caseNode), item, sliceNumber)
        if counted is None:
            return ""
        text = (_("phase {phase}: counted in the volumes") if counted[1]
                else _("phase {phase}: not counted (basal rule or your exclusion)"))
        return text.format(phase=counted[0])


#
# CMRAnalysisTest
#


class CMRAnalysisTest(ScriptedLoadableModuleTest):
    """What only Slicer can run: the parameter node, and the analysis through the Logic in a background job.

    The workflow itself is tested headless (Testing/tests/test_cmr_workflow.py). The inference test needs the
    default model's weights and backend package, and skips with the reason when they are not installed.
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
            self.test_ParameterNodeOffersTheLibChoices,
            self.test_EjectionFractionOfSyntheticCine,
        ):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as reason:
                self.delayDisplay(f"{test.__name__} skipped: {reason}")

    def test_ParameterNodeOffersTheLibChoices(self):
        """The module's fields offer the choices CMRAnalysisLib declares and reach the workflow unchanged.

        The parsing, options and patient data themselves are tested headless (Testing/tests/test_cmr_workflow.py).
        """
        slicer.mrmlScene.Clear()
        logic = CMRAnalysisLogic()
        parameterNode = logic.getParameterNode()
        self.assertEqual((parameterNode.phases, parameterNode.papillary, parameterNode.sex), (ALL_PHASES, papillary.BLOOD, UNKNOWN_SEX))
        self.assertEqual((parameterNode.device, parameterNode.bsaFormula), (DEVICES[0], DEFAULT_BSA_FORMULA))
        self.assertIn(parameterNode.polarMapValue, POLAR_MAP_VALUES)
        options = logic.analysisOptions(ED_ES_PHASES, papillary.MYOCARDIUM, "0, 8-9", sliceCount=10)
        self.assertEqual(options.slice_inclusion, [False] + [True] * 7 + [False, False])
        self.assertIsNone(logic.patientInfo(0.0, 0.0, UNKNOWN_SEX, 0.0, DEFAULT_BSA_FORMULA))
        self.assertIsNone(logic.priorStudy(str(parameterNode.priorStudyFolder), None))  # no folder, no comparison
        self.delayDisplay("The module's fields offer the Lib's choices")

    def test_EjectionFractionOfSyntheticCine(self):
        """Function analysis of a beating-heart phantom: LV ejection fraction, ED/ES phases and the result nodes."""
        slicer.mrmlScene.Clear()
        logic = CMRAnalysisLogic()
        self._requireModel()
        cine, phantom = self._addSyntheticCine(phases=10, slices=8)
        lvVolumes = phantom.lv_volume_ml
        trueEf = 100.0 * (lvVolumes.max() - lvVolumes.min()) / lvVolumes.max()

        # In a worker thread, as the module runs it; the scene is touched only before and after
        prepared = logic.prepare(cine, device="cpu")
        job = BackgroundJob(lambda progress, cancel: CMRAnalysisLogic.compute(prepared, progress, cancel),
                            logic.createCancelToken())
        job.start()
        self.assertTrue(job.wait(600.0), "the analysis did not finish in 10 minutes")
        self.assertIsNone(job.error, f"the analysis failed: {job.error!r}")
        self.assertEqual(job.progress()[0], 1.0)
        result = logic.finish(prepared, job.result)

        measuredEf = result.results["lv"]["ef_pct"]
        self.delayDisplay(f"LV EF measured {measuredEf:.1f} %, phantom {trueEf:.1f} %")
        self.assertAlmostEqual(measuredEf, trueEf, delta=self.EF_TOLERANCE_PCT)
        self.assertEqual(result.results["ed_phase"], phantom.ed_phase)
        self.assertLessEqual(abs(result.results["es_phase"] - phantom.es_phase), 1)

        # The results are filed under the study, every phase browsed with the cine (tables: test_cmr_workflow.py)
        self.assertEqual(result.segmentation_sequence.GetNumberOfDataNodes(), 10)
        self.assertIsNotNone(result.segmentation_browser.GetProxyNode(result.segmentation_sequence))
        self.assertEqual(result.case_node.GetAttribute(MODULE_NAME_ATTRIBUTE), CASE_MODULE_NAME)
        self.assertEqual(result.plot_chart.GetNumberOfPlotSeriesNodes(), 2)  # LV and RV volume curves
        self.delayDisplay("Ejection fraction matches the phantom")

    # Helpers

    def _requireModel(self) -> None:
        """Skip (with the reason) when the default model's weights or its backend package are not installed."""
        registry = ModelRegistry.default()
        entry = registry.get(task=CMR_TASK)
        package = BACKEND_PACKAGES.get(entry.backend, entry.backend)
        if importlib.util.find_spec(package) is None:
            self.skipTest(f"the Python package '{package}' for model '{entry.id}' is not installed")
        if not registry.available(entry):
            self.skipTest(
                f"the weights of model '{entry.id}' {entry.version} are not installed (run the module once, or"
                f" 'cardiacsuite models install {entry.id}')"
            )

    @staticmethod
    def _addSyntheticCine(phases, slices):
        """A short-axis cine of a contracting left ventricle with known volumes, as a sequence with a browser."""
        from CardiacSuiteLib.imagedata import add_to_scene
        from CardiacSuiteLib.phantoms.cine import beating_heart_cine

        phantom = beating_heart_cine(phases=phases, slices=slices)
        sequence, _browser = add_to_scene(slicer.mrmlScene, phantom.series, "Synthetic cine")
        return sequence, phantom
