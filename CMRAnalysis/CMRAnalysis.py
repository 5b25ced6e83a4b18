import importlib.util
import logging
import os
import re
import threading
import traceback
from pathlib import Path
from typing import Annotated, Optional, Union

import qt
import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import (
    Choice,
    WithinRange,
    parameterNodeWrapper,
)

from slicer import (
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLPlotChartNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLScriptedModuleNode,
    vtkMRMLSegmentationNode,
    vtkMRMLSequenceNode,
    vtkMRMLTableNode,
)

from CardiacSuiteLib.errors import Cancelled, CardiacSuiteError, InputError
from CMRAnalysisLib.bsa import BSA_FORMULAS

#: Registry task of the short-axis cine segmentation models.
CMR_TASK = "cmr-sax-cine"
#: Where inference may run; "auto" picks CUDA when available, else the CPU.
DEVICES = ["auto", "cpu", "cuda"]
#: Which phases the model contours (CMRAnalysisLib.function.FunctionOptions.phases).
PHASES = ["all", "ed-es"]
#: Where papillary muscles and trabeculations are counted (CMRAnalysisLib.papillary.CONVENTIONS).
PAPILLARY_CONVENTIONS = ["blood", "myocardium"]
#: Patient sex as the reference tables know it; "unknown" leaves sex-specific references unflagged.
SEXES = ["unknown", "male", "female"]
UNKNOWN_SEX = "unknown"
#: Body surface area equations (CMRAnalysisLib.bsa), by id.
BSA_FORMULA_IDS = list(BSA_FORMULAS)
#: Values the AHA 17-segment bull's-eye can show (CMRAnalysisLib.polar_map.SCALES).
POLAR_MAP_VALUES = ["thickening_pct", "ed_thickness_mm", "es_thickness_mm"]
#: AHA segment table column of each polar map value (CMRAnalysisLib.function_scene.aha_table).
POLAR_MAP_COLUMNS = {
    "thickening_pct": "Thickening (%)",
    "ed_thickness_mm": "ED thickness (mm)",
    "es_thickness_mm": "ES thickness (mm)",
}
#: Attribute value that marks a study's CardiacCase node (CardiacSuiteLib.case.MODULE_NAME).
CARDIAC_CASE = "CardiacCase"
#: CardiacCase reference to the table of indexed values and reference ranges written by this module.
REFERENCE_TABLE_ROLE = "FunctionReferenceTable"
#: Singleton tag of the plot view that shows the volume curves inside the module panel.
PLOT_VIEW_SINGLETON_TAG = "CMRAnalysisVolumeCurves"
#: How often the GUI thread looks at a running analysis (progress, completion), in milliseconds.
POLL_INTERVAL_MS = 50
#: How long each look lets the worker thread run Python, in seconds. Slicer's main thread holds the Python
#: GIL while it waits for Qt events, so a Python worker thread only advances while the main thread waits on
#: it; this is the share of each poll interval given to the analysis (the rest keeps the GUI responsive).
WORKER_TIME_PER_POLL_S = 0.025
#: How long closing the module waits for a cancelled analysis to stop, in seconds.
STOP_WAIT_S = 10.0
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
    outputTable - the function measurements of the last analysis.
    outputReferenceTable - body surface area, indexed values and reference ranges of the last analysis.
    outputPlotChart - the volume-time curves of the last analysis.
    outputAhaTable - wall thickness and thickening per AHA segment of the last analysis.
    outputInsertionPoints - the anterior and inferior RV insertion points of the last analysis.
    outputSegmentationSequence - the segmentations of the last analysis, one per segmented phase.
    outputSegmentation - the segmentation shown for it (the proxy node of its sequence browser).
    cardiacCase - the study (CardiacCase node) the results are filed under.
    """

    inputCine: Union[vtkMRMLSequenceNode, vtkMRMLScalarVolumeNode]
    modelId: str = ""
    device: Annotated[str, Choice(DEVICES)] = "auto"
    phases: Annotated[str, Choice(PHASES)] = "all"
    papillary: Annotated[str, Choice(PAPILLARY_CONVENTIONS)] = "blood"
    excludedSlices: str = ""
    heightCm: Annotated[float, WithinRange(0.0, 250.0)] = 0.0
    weightKg: Annotated[float, WithinRange(0.0, 400.0)] = 0.0
    sex: Annotated[str, Choice(SEXES)] = UNKNOWN_SEX
    age: Annotated[float, WithinRange(0.0, 120.0)] = 0.0
    bsaFormula: Annotated[str, Choice(BSA_FORMULA_IDS)] = "mosteller"
    polarMapValue: Annotated[str, Choice(POLAR_MAP_VALUES)] = "thickening_pct"
    outputTable: vtkMRMLTableNode
    outputReferenceTable: vtkMRMLTableNode
    outputPlotChart: vtkMRMLPlotChartNode
    outputAhaTable: vtkMRMLTableNode
    outputInsertionPoints: vtkMRMLMarkupsFiducialNode
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
# Small pure helpers (no Qt, no scene)
#


def parseSliceList(text: str, sliceCount: Optional[int] = None) -> list:
    """Sorted 0-based slice numbers from text such as "0, 9-10"; raises InputError for anything else.

    With ``sliceCount``, numbers beyond the last slice are refused too.
    """
    slices = set()
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if match is None:
            raise InputError(
                _("Excluded slices: '{part}' is neither a slice number nor a range such as 0-2.").format(part=part)
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise InputError(_("Excluded slices: the range '{part}' runs backwards.").format(part=part))
        slices.update(range(first, last + 1))
    if sliceCount is not None:
        outside = sorted(number for number in slices if number >= sliceCount)
        if outside:
            raise InputError(
                _("Excluded slices: {numbers} not in the cine, whose slices are numbered 0 to {last}.").format(
                    numbers=", ".join(str(number) for number in outside), last=sliceCount - 1
                )
            )
        if len(slices) >= sliceCount:
            raise InputError(_("Excluded slices: every slice is excluded; nothing would be measured."))
    return sorted(slices)


def _formatNumber(value, digits: int = 1) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"


def referenceTableRows(results: dict) -> tuple:
    """Columns and rows (all text) of the body surface area, indexed values and reference comparison."""
    columns = ["Measurement", "Value", "Unit", "Normal range", "z-score", "Flag", "Source or reason"]
    rows = []
    if results.get("bsa_m2") is not None:
        formula = results.get("bsa_formula") or {}
        rows.append(["Body surface area", _formatNumber(results["bsa_m2"], 2), "m2", "", "", "",
                     f"{formula.get('name', '')}: {formula.get('equation', '')}"])
    for ventricle in ("lv", "rv"):
        cardiacIndex = (results.get(ventricle) or {}).get("ci_l_min_m2")
        if cardiacIndex is not None:
            rows.append([f"{ventricle.upper()} cardiac index", _formatNumber(cardiacIndex, 2), "l/min/m2", "", "", "", ""])
    for item in (results.get("reference") or {}).get("parameters", {}).values():
        reference = item.get("reference")
        normalRange = ""
        source = item.get("reason") or ""
        if reference:
            normalRange = f"{_formatNumber(reference.get('lower'))} - {_formatNumber(reference.get('upper'))}"
            source = (reference.get("source") or {}).get("citation") or ""
        if item.get("note"):
            source = f"{source}; {item['note']}" if source else item["note"]
        zScore = item.get("z_score")
        rows.append([
            item.get("label", item.get("parameter", "")),
            _formatNumber(item.get("value")),
            item.get("unit") or "",
            normalRange,
            "" if zScore is None else f"{zScore:+.1f}",
            item.get("flag") or "",
            source,
        ])
    return columns, rows


def polarMapSegments(rows: list, value: str) -> dict:
    """``{segment number: {value: number or None}}`` from the rows of an AHA segment table."""
    column = POLAR_MAP_COLUMNS[value]
    segments = {}
    for row in rows:
        try:
            number = str(int(float(row.get("Segment"))))
        except (TypeError, ValueError):
            continue
        text = row.get(column)
        try:
            number_value = float(text) if text not in (None, "") else None
        except (TypeError, ValueError):
            number_value = None
        segments[number] = {value: number_value}
    return segments


def resultSummary(results: dict) -> str:
    """One or two sentences for the status line."""
    lv, rv = results["lv"], results["rv"]
    if lv.get("ef_pct") is None:
        text = _("Single phase: LV volume {lv:.1f} ml, RV volume {rv:.1f} ml.").format(lv=lv["edv_ml"], rv=rv["edv_ml"])
    else:
        text = _(
            "LV ejection fraction {lvef:.1f} % (EDV {edv:.0f} ml, ESV {esv:.0f} ml), RV ejection fraction {rvef:.1f} %,"
            " LV mass {mass:.0f} g."
        ).format(lvef=lv["ef_pct"], edv=lv["edv_ml"], esv=lv["esv_ml"], rvef=rv["ef_pct"], mass=lv.get("mass_g") or 0.0)
    if results.get("bsa_m2") is not None:
        text += " " + _("BSA {bsa:.2f} m².").format(bsa=results["bsa_m2"])
    parameters = (results.get("reference") or {}).get("parameters", {}).values()
    outside = [item for item in parameters if item.get("flag") in ("low", "high")]
    if outside:
        text += " " + _("{count} value(s) outside the reference range (Reference tab).").format(count=len(outside))
    edited = results.get("edited")
    if edited:
        changes = []
        if edited.get("phases"):
            changes.append(_("edited contours of phase(s) {phases}").format(
                phases=", ".join(str(phase) for phase in edited["phases"])))
        if edited.get("rv_insertion_points_moved"):
            changes.append(_("moved RV insertion points"))
        if changes:
            text += " " + _("Recomputed with {changes}.").format(changes=_(" and ").join(changes))
        else:
            text += " " + _("Recomputed: no edited contours found.")
    return text


class AnalysisJob:
    """One analysis running in a worker thread.

    The worker runs ``work(progress, cancel)`` and never touches Qt or the scene; it only stores the latest
    progress and, at the end, the result or the exception. The GUI thread polls ``progress()`` and ``done()``
    from a timer, waiting briefly on the worker each time so that it gets the GIL, and adds the result to the
    scene itself.
    """

    def __init__(self, work, cancelToken) -> None:
        self.cancelToken = cancelToken
        self.result = None
        self.error = None
        self.discarded = False  # set when the scene was closed: the result must not be added to the next scene
        self._work = work
        self._lock = threading.Lock()
        self._progress = (0.0, "")
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="CMRAnalysis", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def report(self, fraction: float, message: str) -> None:
        """Progress callback; called from the worker thread."""
        with self._lock:
            self._progress = (fraction, message)

    def progress(self) -> tuple:
        with self._lock:
            return self._progress

    def done(self) -> bool:
        return self._finished.is_set()

    def cancel(self) -> None:
        self.cancelToken.cancel()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for the worker; True when it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self.result = self._work(self.report, self.cancelToken)
        except BaseException as error:  # handed to the GUI thread, which reports it
            self.error = error
        finally:
            self._finished.set()


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
        self.ui = None
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._busy = False  # True while a download or an analysis runs
        self._job = None  # the running AnalysisJob
        self._prepared = None  # what the running job analyses
        self._pollTimer = None
        self._reviewBrowser = None  # the sequence browser the phase controls drive
        self._shownNodeIds = {}  # view name -> ID of the node it shows, to avoid needless refreshes
        self._polarMapKey = "unset"  # what the bull's-eye shows: (AHA table ID, its modification time, value)

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

        # The GUI thread looks at a running analysis with this timer; the worker thread never touches Qt.
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self._pollAnalysis)

        # These connections ensure that we update parameter node when scene is closed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Buttons and the model selector (filled from the registry, so it is not bound to the parameter node)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelSelected)
        self.ui.recomputeButton.connect("clicked(bool)", self.onRecomputeButton)
        self.ui.editContoursButton.connect("clicked(bool)", self.onEditContoursButton)
        self.ui.showPlotInLayoutButton.connect("clicked(bool)", self.onShowPlotInLayoutButton)
        self.ui.sliceSpinBox.connect("valueChanged(int)", self.onSliceChanged)

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._stopRunningAnalysis(discard=True)
        if self._job is not None:
            self._job.wait(STOP_WAIT_S)
        if self._pollTimer is not None:
            self._pollTimer.stop()
        self._setReviewBrowser(None)
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
        self._stopRunningAnalysis(discard=True)
        self._setReviewBrowser(None)
        # Parameter node will be reset, do not use it anymore
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        self._shownNodeIds = {}
        self._polarMapKey = "unset"
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
            self._labelChoiceCombos()
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._checkCanApply()

    def _labelChoiceCombos(self) -> None:
        """Readable item texts for the combo boxes bound to Choice fields.

        The parameter node's connector fills them with the raw choices and reads the selection by index, so
        renaming the items (same order) changes only what the user sees.
        """
        labels = {
            "phasesSelector": [_("every phase"), _("end-diastole and end-systole only")],
            "papillarySelector": [_("in the blood pool (LV volume)"), _("in the myocardium (LV mass)")],
            "sexSelector": [_("unknown"), _("male"), _("female")],
            "bsaFormulaSelector": [formula.name for formula in BSA_FORMULAS.values()],
            "polarMapValueSelector": [
                _("systolic wall thickening (%)"),
                _("end-diastolic wall thickness (mm)"),
                _("end-systolic wall thickness (mm)"),
            ],
        }
        for name, texts in labels.items():
            combo = getattr(self.ui, name)
            for index, text in enumerate(texts[: combo.count]):
                combo.setItemText(index, text)
        for index, formula in enumerate(list(BSA_FORMULAS.values())[: self.ui.bsaFormulaSelector.count]):
            self.ui.bsaFormulaSelector.setItemData(
                index, f"{formula.equation}\n{formula.population}\n{formula.citation}", qt.Qt.ToolTipRole
            )

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Enable Apply when an input and a model are chosen and nothing runs; keep the result views in sync."""
        parameterNode = self._parameterNode
        self._updateModelSelectorFromParameterNode()
        self._updateResultViews()

        slicesProblem = None
        if parameterNode:
            try:
                parseSliceList(parameterNode.excludedSlices, self.logic.sliceCount(parameterNode.inputCine))
            except InputError as error:
                slicesProblem = str(error)
        self.ui.excludedSlicesLineEdit.setStyleSheet("color: #c0392b" if slicesProblem else "")

        if self._busy:
            self.ui.applyButton.toolTip = _("An analysis is running")
            self.ui.applyButton.enabled = False
        elif not parameterNode or not parameterNode.inputCine:
            self.ui.applyButton.toolTip = _("Select a short-axis cine (or a single volume)")
            self.ui.applyButton.enabled = False
        elif self.ui.modelSelector.count == 0:
            self.ui.applyButton.toolTip = _("No model is registered for short-axis cine segmentation")
            self.ui.applyButton.enabled = False
        elif slicesProblem:
            self.ui.applyButton.toolTip = slicesProblem
            self.ui.applyButton.enabled = False
        else:
            self.ui.applyButton.toolTip = _("Segment the cine and measure ventricular function")
            self.ui.applyButton.enabled = True

        hasAnalysis = bool(parameterNode and self.logic.hasAnalysis(parameterNode.cardiacCase))
        self.ui.recomputeButton.enabled = hasAnalysis and not self._busy and not slicesProblem
        self.ui.editContoursButton.enabled = bool(
            parameterNode and parameterNode.outputSegmentation is not None and not self._busy
        )

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
        """Start the analysis in a worker thread when user clicks "Apply" button."""
        if self._busy:
            return
        self._busy = True
        started = False
        try:
            with slicer.util.tryWithErrorDisplay(_("CMR analysis failed."), waitCursor=False):
                started = self._startAnalysis()
        finally:
            if not started:
                self._busy = False
                self._showProgress(False)
            self._checkCanApply()

    def _startAnalysis(self) -> bool:
        """Checks, model and inputs on the GUI thread, then the analysis in a worker thread; True if it started."""
        parameterNode = self._parameterNode
        modelId = parameterNode.modelId or None
        inputNode = parameterNode.inputCine
        try:
            entry = self.logic.model(modelId)
            ensurePythonRequirements(entry.backend)
            if not self.logic.modelAvailable(entry) and not self._downloadModel(entry):
                return False
            options = self.logic.analysisOptions(
                parameterNode.phases, parameterNode.papillary, parameterNode.excludedSlices,
                self.logic.sliceCount(inputNode),
            )
            patient = self._patientInfo()
            self._showProgress(True)
            self._setStatus(_("Reading the cine and loading the model..."))
            slicer.app.processEvents()  # show the message before the (short) blocking step
            with slicer.util.WaitCursor():
                prepared = self.logic.prepare(
                    inputNode, modelId=modelId, device=parameterNode.device, options=options, patient=patient,
                    caseNode=self.logic.studyFor(inputNode, parameterNode.cardiacCase),
                )
        except CardiacSuiteError as error:
            self._showProgress(False)
            self._setStatus(str(error))
            slicer.util.errorDisplay(str(error), windowTitle=_("CMR Analysis"))
            return False

        self._prepared = prepared
        self._job = AnalysisJob(
            lambda progress, cancel: CMRAnalysisLogic.compute(prepared, progress, cancel),
            self.logic.createCancelToken(),
        )
        self._setStatus(_("Segmenting {name} on {device}...").format(name=inputNode.GetName(), device=prepared.device))
        self._job.start()
        self._pollTimer.start()
        return True

    def _pollAnalysis(self) -> None:
        """Timer slot on the GUI thread: show the worker's progress, and finish when it is done."""
        job = self._job
        if job is None:
            self._pollTimer.stop()
            return
        # Let the worker hold the GIL for a moment (joining releases it, and returns early when it finishes)
        job.wait(WORKER_TIME_PER_POLL_S)
        fraction, message = job.progress()
        if not job.discarded:
            self.ui.progressBar.value = int(round(100.0 * min(max(fraction, 0.0), 1.0)))
            self.ui.progressBar.format = "%p%  " + message.replace("%", "%%")
        if not job.done():
            return
        self._pollTimer.stop()
        job.wait()
        prepared = self._prepared
        self._job = None
        self._prepared = None
        self._busy = False
        self._showProgress(False)
        if job.discarded:
            logging.info("CMR Analysis: the scene was closed; the analysis result was discarded")
            return
        if isinstance(job.error, Cancelled):
            self._setStatus(_("Cancelled: nothing was added to the scene."))
            return
        if isinstance(job.error, CardiacSuiteError):
            self._setStatus(str(job.error))
            slicer.util.errorDisplay(str(job.error), windowTitle=_("CMR Analysis"))
            return
        if job.error is not None:
            details = "".join(traceback.format_exception(type(job.error), job.error, job.error.__traceback__))
            logging.error(f"CMR Analysis failed:\n{details}")
            self._setStatus(_("The analysis failed: {error}").format(error=job.error))
            slicer.util.errorDisplay(
                _("CMR analysis failed.") + f"\n\n{job.error}", windowTitle=_("CMR Analysis"), detailedText=details
            )
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("The results could not be added to the scene."), waitCursor=True):
                try:
                    analysis = self.logic.finish(prepared, job.result)
                except CardiacSuiteError as error:
                    self._setStatus(str(error))
                    slicer.util.errorDisplay(str(error), windowTitle=_("CMR Analysis"))
                    return
                self._showResult(analysis)
        finally:
            self._checkCanApply()

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
            self.logic.downloadModel(entry, progress=self._onDownloadProgress)
        finally:
            self._showProgress(False)
        self._updateModelInfo()
        return True

    def _onDownloadProgress(self, fraction: float, message: str) -> None:
        """Progress of the model download, which runs on the GUI thread (it asks the user first)."""
        self.ui.progressBar.value = int(round(100.0 * min(max(fraction, 0.0), 1.0)))
        self.ui.progressBar.format = "%p%  " + message.replace("%", "%%")
        slicer.app.processEvents()

    def onCancelButton(self) -> None:
        self._stopRunningAnalysis()

    def _stopRunningAnalysis(self, discard: bool = False) -> None:
        """Ask the worker to stop after its current slice; with ``discard`` its result is never used."""
        job = self._job
        if job is None:
            return
        job.cancel()
        if discard:
            job.discarded = True
        if self.ui is not None:
            self.ui.cancelButton.enabled = False
            self._setStatus(_("Cancelling..."))

    def _showProgress(self, running: bool, cancellable: bool = True) -> None:
        self.ui.progressBar.value = 0
        self.ui.progressBar.format = "%p%"
        self.ui.progressBar.visible = running
        self.ui.cancelButton.visible = running and cancellable
        self.ui.cancelButton.enabled = running and cancellable
        for section in (self.ui.inputsCollapsibleButton, self.ui.optionsCollapsibleButton, self.ui.patientCollapsibleButton):
            section.enabled = not running
        if running:
            self._setStatus("")
        self._checkCanApply()

    def _setStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        if text:
            logging.info(f"CMR Analysis: {text}")

    def _patientInfo(self):
        parameterNode = self._parameterNode
        return self.logic.patientInfo(
            parameterNode.heightCm, parameterNode.weightKg, parameterNode.sex, parameterNode.age,
            parameterNode.bsaFormula,
        )

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
            background = self.logic.displayedVolume(parameterNode.inputCine)
            if background is not None:
                slicer.util.setSliceViewerLayers(background=background, fit=True, rotateToVolumePlane=True)
            self.ui.resultsCollapsibleButton.collapsed = False
        self._setStatus(resultSummary(analysis.results))
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
        self._setView("plot", get("outputPlotChart"), self._showPlotChart)
        self.ui.showPlotInLayoutButton.enabled = get("outputPlotChart") is not None
        self._setReviewBrowser(self.logic.browserOf(get("outputSegmentationSequence")))
        self._updatePolarMap()
        self._updateSliceControls()

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
        if self.ui is not None:
            self.ui.sequencePlayWidget.setMRMLSequenceBrowserNode(browser)
            self.ui.sequenceSeekWidget.setMRMLSequenceBrowserNode(browser)

    def _onReviewBrowserModified(self, caller=None, event=None) -> None:
        """The reader stepped to another phase: keep the cine on it (ED/ES-only results) and refresh the slice line."""
        parameterNode = self._parameterNode
        if parameterNode is not None:
            self.logic.followSegmentationPhase(parameterNode.cardiacCase)
        self._updateSliceInfo()

    def _updateSliceControls(self) -> None:
        parameterNode = self._parameterNode
        count = self.logic.sliceCount(parameterNode.inputCine) if parameterNode else None
        self.ui.sliceSpinBox.enabled = bool(count)
        if count and self.ui.sliceSpinBox.maximum != count - 1:
            wasBlocked = self.ui.sliceSpinBox.blockSignals(True)
            self.ui.sliceSpinBox.maximum = count - 1
            self.ui.sliceSpinBox.blockSignals(wasBlocked)
        self._updateSliceInfo()

    def onSliceChanged(self, sliceNumber: int) -> None:
        """Centre the slice views on short-axis slice ``sliceNumber`` of the cine."""
        parameterNode = self._parameterNode
        volume = self.logic.displayedVolume(parameterNode.inputCine) if parameterNode else None
        position = self.logic.sliceCentre(volume, sliceNumber)
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
        volume = self.logic.displayedVolume(parameterNode.inputCine)
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.util.getModuleWidget("SegmentEditor").editor
        editor.setSegmentationNode(segmentation)
        if volume is not None:
            editor.setSourceVolumeNode(volume)

    def onRecomputeButton(self) -> None:
        """Recompute every figure from the edited contours and moved insertion points, then refresh the views."""
        parameterNode = self._parameterNode
        if self._busy or parameterNode is None or parameterNode.cardiacCase is None:
            return
        self._busy = True
        try:
            with slicer.util.tryWithErrorDisplay(_("Recomputing failed."), waitCursor=True):
                try:
                    options = self.logic.recomputeOptions(
                        parameterNode.cardiacCase, parameterNode.papillary, parameterNode.excludedSlices
                    )
                    analysis = self.logic.recompute(parameterNode.cardiacCase, options, self._patientInfo())
                except CardiacSuiteError as error:
                    self._setStatus(str(error))
                    slicer.util.errorDisplay(str(error), windowTitle=_("CMR Analysis"))
                    return
                self._busy = False
                self._showResult(analysis, recomputed=True)
        finally:
            self._busy = False
            self._checkCanApply()


#
# CMRAnalysisLogic
#


class PreparedAnalysis:
    """What the worker thread needs, read from the scene on the GUI thread by ``CMRAnalysisLogic.prepare``."""

    def __init__(self, inputNode, frames, ijkToRas, times, indexValues, segmenter, options, patient, caseNode):
        self.inputNode = inputNode
        self.frames = frames
        self.ijkToRas = ijkToRas
        self.times = times
        self.indexValues = indexValues
        self.segmenter = segmenter
        self.options = options
        self.patient = patient
        self.caseNode = caseNode

    @property
    def device(self) -> str:
        return self.segmenter.device


class CMRAnalysisLogic(ScriptedLoadableModuleLogic):
    """This class should implement all the actual computation done by your module.  The interface
    should be such that other python code can import this class and make use of the functionality without
    requiring an instance of the Widget.
    Uses ScriptedLoadableModuleLogic base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py

    The computation itself is in CMRAnalysisLib and CardiacSuiteLib; this class passes them the scene.
    An analysis is three steps so that the slow one can run in a worker thread:

    - ``prepare`` (GUI thread): reads the cine from the scene, checks the options, loads the model;
    - ``compute`` (any thread): segments and measures; touches neither the scene nor Qt;
    - ``finish`` (GUI thread): adds the results to the scene.

    ``process`` runs the three in turn, for scripts and tests; ``recompute`` is the correction loop.
    """

    def __init__(self) -> None:
        """Called when the logic class is instantiated. Can be used for initializing member variables."""
        ScriptedLoadableModuleLogic.__init__(self)
        self._registry = None
        self._resultsCache = (None, None)  # (study node ID and modification time, its results)

    def getParameterNode(self):
        return CMRAnalysisParameterNode(super().getParameterNode())

    # Analysis

    def process(self, inputNode, modelId=None, device="auto", progress=None, cancel=None, options=None, patient=None,
                caseNode=None):
        """Analyse ventricular function on a cine (volume sequence) or one volume; returns a FunctionAnalysis.

        :param inputNode: vtkMRMLSequenceNode of short-axis volumes, or a vtkMRMLScalarVolumeNode (one phase).
        :param modelId: registry id of the model; None for the task's default model.
        :param device: "auto", "cpu" or "cuda".
        :param progress: callback(fraction in 0..1, message), called between slices.
        :param cancel: a CancelToken; the analysis raises Cancelled after token.cancel() and adds nothing.
        :param options: CMRAnalysisLib.function.FunctionOptions; None for every phase, papillary muscles in the
            blood pool and the automatic basal rule.
        :param patient: CMRAnalysisLib.patient.PatientInfo for BSA, indexed values and reference ranges, or None.
        :param caseNode: the study (CardiacCase node) to file the results under; None finds or makes one.
        """
        prepared = self.prepare(inputNode, modelId, device, options, patient, caseNode)
        computed = self.compute(prepared, progress, cancel)
        return self.finish(prepared, computed)

    def prepare(self, inputNode, modelId=None, device="auto", options=None, patient=None, caseNode=None):
        """GUI thread: read the cine, check the options and patient data, load the model; returns a PreparedAnalysis."""
        from CardiacSuiteLib.inference.segment2d import SliceSegmenter
        from CMRAnalysisLib import bsa
        from CMRAnalysisLib.function import FunctionOptions
        from CMRAnalysisLib.function_scene import cine_from_node

        options = options or FunctionOptions()
        options.validate()
        frames, ijkToRas, times, indexValues = cine_from_node(inputNode)
        if options.slice_inclusion is not None and len(options.slice_inclusion) != frames.shape[1]:
            raise InputError(
                _("The slice choice has {given} values but the cine has {count} slices.").format(
                    given=len(options.slice_inclusion), count=frames.shape[1]
                )
            )
        if patient is not None and patient.height_cm is not None and patient.weight_kg is not None:
            bsa.body_surface_area(patient.height_cm, patient.weight_kg, patient.bsa_formula, patient.sex)
        segmenter = SliceSegmenter.from_registry(self.registry(), modelId or None, CMR_TASK, device)
        return PreparedAnalysis(inputNode, frames, ijkToRas, times, indexValues, segmenter, options, patient, caseNode)

    @staticmethod
    def compute(prepared, progress=None, cancel=None):
        """Any thread: segment and measure; returns (results, CineSegmentation). Touches neither the scene nor Qt."""
        from CMRAnalysisLib.function import analyse_cine

        computed = analyse_cine(
            prepared.frames, prepared.ijkToRas, prepared.segmenter, prepared.times, prepared.options, progress, cancel
        )
        if cancel is not None:
            cancel.raise_if_cancelled()
        return computed

    def finish(self, prepared, computed):
        """GUI thread: add the results to the scene; returns a FunctionAnalysis."""
        from CardiacSuiteLib.case import CardiacCase
        from CMRAnalysisLib.function_scene import add_function_results

        if prepared.inputNode.GetScene() is None:
            raise InputError(_("The cine was removed from the scene during the analysis; nothing was added."))
        caseNode = prepared.caseNode
        if caseNode is not None and caseNode.GetScene() is None:
            caseNode = None
        results, segmentation = computed
        analysis = add_function_results(
            slicer.mrmlScene, prepared.inputNode, results, segmentation.labels, prepared.ijkToRas,
            prepared.indexValues, prepared.options, CardiacCase(caseNode) if caseNode is not None else None,
        )
        self._assessPatient(analysis, prepared.patient)
        return analysis

    def recompute(self, caseNode, options=None, patient="stored"):
        """Recompute every figure of the study's analysis from its segmentations as edited and its RV insertion
        points as placed, without running the model; returns a FunctionAnalysis.

        :param options: FunctionOptions; None keeps those of the analysis (see ``recomputeOptions``).
        :param patient: PatientInfo, None for no patient data, or "stored" for those of the previous results.
        """
        from CardiacSuiteLib.case import CardiacCase
        from CMRAnalysisLib.function_scene import RESULTS_KEY, recompute_from_scene
        from CMRAnalysisLib.patient import PatientInfo

        if caseNode is None:
            raise InputError(_("Select the study whose analysis to recompute."))
        case = CardiacCase(caseNode)
        previous = case.value(RESULTS_KEY) or {}
        if isinstance(patient, str) and patient == "stored":
            stored = previous.get("patient")
            patient = PatientInfo(**stored) if stored else None
        options = options or self.recomputeOptions(caseNode)
        self._keepPlacedInsertionPoints(case, previous, options)
        analysis = recompute_from_scene(slicer.mrmlScene, case, options)
        self._assessPatient(analysis, patient)
        return analysis

    @staticmethod
    def _keepPlacedInsertionPoints(case, previous, options) -> None:
        """Once the reader has placed the RV insertion points, later recomputes use them as they are now.

        recompute_from_scene notices moved points by comparing them with the last results; after one recompute
        those are the reader's points, so without this a second recompute would go back to the automatic ones.
        """
        from CMRAnalysisLib.function_scene import INSERTION_ROLE

        placed = ((previous.get("aha") or {}).get("rv_insertion_points_ras") or {}).get("source") == "user-placed"
        markups = case.reference(INSERTION_ROLE)
        if placed and options.rv_insertion_ras is None and markups is not None and markups.GetNumberOfControlPoints() == 2:
            options.rv_insertion_ras = tuple(list(markups.GetNthControlPointPositionWorld(index)) for index in range(2))

    @staticmethod
    def createCancelToken():
        from CardiacSuiteLib.inference import CancelToken

        return CancelToken()

    # Options and patient data

    @staticmethod
    def analysisOptions(phases="all", papillary="blood", excludedSlices="", sliceCount=None):
        """FunctionOptions from the module's choices; ``excludedSlices`` is text such as "0, 9-10"."""
        from CMRAnalysisLib.function import FunctionOptions

        excluded = parseSliceList(excludedSlices, sliceCount)
        inclusion = None
        if excluded:
            if not sliceCount:
                raise InputError(_("Excluded slices need a cine whose slices can be counted."))
            inclusion = [number not in excluded for number in range(sliceCount)]
        options = FunctionOptions(phases=phases, papillary=papillary, slice_inclusion=inclusion)
        options.validate()
        return options

    def recomputeOptions(self, caseNode, papillary=None, excludedSlices=None):
        """The options of the study's analysis, with the papillary convention and excluded slices replaced when
        given (``excludedSlices=""`` returns to the automatic basal rule)."""
        from CardiacSuiteLib.case import CardiacCase
        from CMRAnalysisLib.function import FunctionOptions
        from CMRAnalysisLib.function_scene import OPTIONS_KEY, RESULTS_KEY

        case = CardiacCase(caseNode)
        options = FunctionOptions(**case.value(OPTIONS_KEY, {}))
        if papillary is not None:
            options.papillary = papillary
        if excludedSlices is not None:
            sliceCount = (case.value(RESULTS_KEY) or {}).get("slices")
            options.slice_inclusion = self.analysisOptions(
                options.phases, options.papillary, excludedSlices, sliceCount
            ).slice_inclusion
        options.validate()
        return options

    @staticmethod
    def patientInfo(heightCm=0.0, weightKg=0.0, sex=UNKNOWN_SEX, age=0.0, bsaFormula="mosteller"):
        """PatientInfo from the module's fields (0 and "unknown" mean not known); None when nothing is known."""
        from CMRAnalysisLib.patient import PatientInfo

        known = [value if value else None for value in (heightCm, weightKg, age)]
        knownSex = None if not sex or sex == UNKNOWN_SEX else sex
        if all(value is None for value in known) and knownSex is None:
            return None
        return PatientInfo(known[0], known[1], knownSex, known[2], bsaFormula)

    def _assessPatient(self, analysis, patient) -> None:
        """BSA, indexed values and reference flags into the results, and the reference table (or none)."""
        from CardiacSuiteLib import mrml
        from CardiacSuiteLib.case import CardiacCase
        from CMRAnalysisLib.function_scene import RESULTS_KEY
        from CMRAnalysisLib.patient import assess_patient

        case = CardiacCase(analysis.case_node)
        old = case.reference(REFERENCE_TABLE_ROLE)
        if old is not None:
            slicer.mrmlScene.RemoveNode(old)
        case.set_reference(REFERENCE_TABLE_ROLE, None)
        if patient is None:
            return
        assess_patient(analysis.results, patient)
        case.set_value(RESULTS_KEY, analysis.results)
        name = analysis.table.GetName().removesuffix(" function") if analysis.table is not None else "CMR"
        columns, rows = referenceTableRows(analysis.results)
        table = mrml.add_table(slicer.mrmlScene, f"{name} reference values", columns, rows)
        case.set_reference(REFERENCE_TABLE_ROLE, table)

    # Results in the scene

    @staticmethod
    def referenceTable(caseNode):
        """The table of indexed values and reference ranges of the study's analysis, if patient data were given."""
        return caseNode.GetNodeReference(REFERENCE_TABLE_ROLE) if caseNode is not None else None

    @staticmethod
    def hasAnalysis(caseNode) -> bool:
        """True when the study holds a function analysis that ``recompute`` can work on."""
        from CMRAnalysisLib.function_scene import RESULTS_KEY

        return bool(caseNode is not None and caseNode.GetParameter(RESULTS_KEY))

    def results(self, caseNode):
        """The study's last results (a dict; read once per change of the study node), or None."""
        from CardiacSuiteLib.case import CardiacCase
        from CMRAnalysisLib.function_scene import RESULTS_KEY

        if caseNode is None:
            return None
        key = (caseNode.GetID(), caseNode.GetMTime())
        if self._resultsCache[0] != key:
            self._resultsCache = (key, CardiacCase(caseNode).value(RESULTS_KEY))
        return self._resultsCache[1]

    def savePolarMap(self, ahaTableNode, value, path) -> None:
        """Write the bull's-eye of an AHA segment table, for ``value``, as a PNG file."""
        from CardiacSuiteLib.mrml import table_rows
        from CMRAnalysisLib import polar_map

        polar_map.save_png(polarMapSegments(table_rows(ahaTableNode), value), path, value)

    def plotViewNode(self):
        """The plot view that shows the volume curves in the module panel (one per scene, outside the layout)."""
        scene = slicer.mrmlScene
        viewNode = scene.GetSingletonNode(PLOT_VIEW_SINGLETON_TAG, "vtkMRMLPlotViewNode")
        if viewNode is None:
            viewNode = slicer.vtkMRMLPlotViewNode()
            viewNode.SetSingletonTag(PLOT_VIEW_SINGLETON_TAG)
            viewNode.SetName("CMR Analysis volume curves")
            viewNode.SetLayoutName(PLOT_VIEW_SINGLETON_TAG)
            # Owned by the module's parameter node, so the view layout does not take it over
            viewNode.SetAndObserveParentLayoutNodeID(ScriptedLoadableModuleLogic.getParameterNode(self).GetID())
            scene.AddNode(viewNode)
        return viewNode

    @staticmethod
    def browserOf(sequenceNode):
        """The sequence browser that shows ``sequenceNode``, or None."""
        if sequenceNode is None or sequenceNode.GetScene() is None:
            return None
        return slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(sequenceNode)

    @staticmethod
    def followSegmentationPhase(caseNode) -> None:
        """When only some phases were segmented (their own browser), show the cine at the segmentation's phase."""
        from CardiacSuiteLib.case import CardiacCase, Role

        if caseNode is None:
            return
        case = CardiacCase(caseNode)
        browser = case.reference(Role.FUNCTION_SEGMENTATION_BROWSER)
        sequence = case.reference(Role.FUNCTION_SEGMENTATION)
        cineBrowser = case.reference(Role.CINE_BROWSER)
        if browser is None or sequence is None or cineBrowser is None or browser is cineBrowser:
            return
        item = browser.GetSelectedItemNumber()
        if 0 <= item < sequence.GetNumberOfDataNodes():
            value = sequence.GetNthIndexValue(item)
            cine = case.reference(Role.CINE)
            if cine is not None and cine.GetItemNumberFromIndexValue(value) >= 0:
                cineBrowser.SetSelectedItemByIndexValue(value)

    def sliceDescription(self, caseNode, sliceNumber: int) -> str:
        """Whether slice ``sliceNumber`` counts in the volumes at the phase shown, in words."""
        from CardiacSuiteLib.case import CardiacCase, Role

        results = self.results(caseNode)
        if not results:
            return ""
        browser = CardiacCase(caseNode).reference(Role.FUNCTION_SEGMENTATION_BROWSER)
        phases = results.get("phases_segmented") or []
        item = browser.GetSelectedItemNumber() if browser is not None else -1
        if not 0 <= item < len(phases):
            return ""
        phase = phases[item]
        included = (results.get("slices_included") or {}).get(str(phase))
        if not included or not 0 <= sliceNumber < len(included):
            return ""
        if included[sliceNumber]:
            return _("phase {phase}: counted in the volumes").format(phase=phase)
        return _("phase {phase}: not counted (basal rule or your exclusion)").format(phase=phase)

    @staticmethod
    def sliceCentre(volumeNode, sliceNumber: int):
        """RAS position of the centre of slice ``sliceNumber`` (the volume's k index), or None."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            return None
        dims = volumeNode.GetImageData().GetDimensions()
        if not 0 <= sliceNumber < dims[2]:
            return None
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        position = ijkToRas.MultiplyPoint(((dims[0] - 1) / 2.0, (dims[1] - 1) / 2.0, float(sliceNumber), 1.0))
        return position[:3]

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
    def studyFor(inputNode, caseNode):
        """``caseNode`` when it is the study of ``inputNode`` (or has no cine yet), else None (a study is found
        or made by name), so that analysing another cine never overwrites a different study's results."""
        from CardiacSuiteLib.case import Role

        if caseNode is None or inputNode is None:
            return None
        cine = caseNode.GetNodeReference(Role.CINE) or caseNode.GetNodeReference("CineVolume")
        return caseNode if cine is None or cine is inputNode else None

    @staticmethod
    def sliceCount(inputNode):
        """Number of short-axis slices of a cine or volume, or None."""
        if inputNode is None:
            return None
        volume = inputNode
        if inputNode.IsA("vtkMRMLSequenceNode"):
            volume = inputNode.GetNthDataNode(0) if inputNode.GetNumberOfDataNodes() else None
        if volume is None or not volume.IsA("vtkMRMLScalarVolumeNode") or volume.GetImageData() is None:
            return None
        return volume.GetImageData().GetDimensions()[2]

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
            self.test_OptionsAndPatientFromTheModuleFields,
            self.test_PatientDataGivesIndexedValuesAfterRecompute,
            self.test_PlacedInsertionPointsStayPlaced,
            self.test_CancelledAnalysisAddsNothing,
            self.test_EjectionFractionOfSyntheticCine,
            self.test_RecomputeAfterEditingContours,
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

    def test_OptionsAndPatientFromTheModuleFields(self):
        """Excluded slices, analysis options and patient data as the module's fields give them."""
        slicer.mrmlScene.Clear()
        logic = CMRAnalysisLogic()
        self.assertEqual(parseSliceList(" 0, 8-9 ;3"), [0, 3, 8, 9])
        self.assertEqual(parseSliceList(""), [])
        for bad in ("a", "3-1", "1.5"):
            with self.assertRaises(InputError):
                parseSliceList(bad)
        with self.assertRaises(InputError):
            parseSliceList("10", sliceCount=10)

        options = logic.analysisOptions("ed-es", "myocardium", "0, 9", sliceCount=10)
        self.assertEqual((options.phases, options.papillary), ("ed-es", "myocardium"))
        self.assertEqual(options.slice_inclusion, [False] + [True] * 8 + [False])
        self.assertIsNone(logic.analysisOptions(excludedSlices="", sliceCount=10).slice_inclusion)

        self.assertIsNone(logic.patientInfo(0.0, 0.0, UNKNOWN_SEX, 0.0, "mosteller"))
        patient = logic.patientInfo(172.0, 70.0, "female", 0.0, "dubois")
        self.assertEqual((patient.height_cm, patient.weight_kg, patient.sex, patient.age), (172.0, 70.0, "female", None))
        self.assertEqual(patient.bsa_formula, "dubois")

        parameterNode = logic.getParameterNode()
        self.assertEqual((parameterNode.phases, parameterNode.papillary, parameterNode.sex), ("all", "blood", UNKNOWN_SEX))
        self.assertIn(parameterNode.bsaFormula, BSA_FORMULA_IDS)
        self.delayDisplay("Options and patient data follow the module's fields")

    def test_PatientDataGivesIndexedValuesAfterRecompute(self):
        """Without the model: the phantom's own labels as an analysis; recompute adds BSA, indexed values and the
        reference table, and keeps the patient data on a later recompute."""
        slicer.mrmlScene.Clear()
        from CardiacSuiteLib import mrml

        logic = CMRAnalysisLogic()
        analysis = self._addAnalysisOfPhantomLabels()
        self.assertIsNone(logic.referenceTable(analysis.case_node))
        self.assertTrue(logic.hasAnalysis(analysis.case_node))

        patient = logic.patientInfo(180.0, 80.0, "male", 45.0, "mosteller")
        recomputed = logic.recompute(analysis.case_node, patient=patient)
        bsa = recomputed.results["bsa_m2"]
        self.assertAlmostEqual(bsa, (180.0 * 80.0 / 3600.0) ** 0.5, places=6)
        self.assertAlmostEqual(recomputed.results["lv"]["edvi_ml_m2"], recomputed.results["lv"]["edv_ml"] / bsa, places=6)
        table = logic.referenceTable(recomputed.case_node)
        self.assertIsNotNone(table)
        rows = mrml.table_rows(table)
        self.assertEqual(rows[0]["Measurement"], "Body surface area")
        self.assertTrue(any(row["Measurement"] == "LV ejection fraction" for row in rows))

        again = logic.recompute(analysis.case_node)  # the stored patient data are kept
        self.assertAlmostEqual(again.results["bsa_m2"], bsa, places=6)
        self.assertEqual(again.results["edited"]["phases"], [])
        self.assertEqual(len(slicer.util.getNodes("*reference values*")), 1)  # replaced, not duplicated
        self.delayDisplay("Patient data give indexed values and reference flags")

    def test_PlacedInsertionPointsStayPlaced(self):
        """Without the model: RV insertion points the reader moved are used by every later recompute."""
        slicer.mrmlScene.Clear()
        import math

        logic = CMRAnalysisLogic()
        analysis = self._addAnalysisOfPhantomLabels()
        markups = analysis.insertion_points
        self.assertIsNotNone(markups, "the analysis placed no RV insertion points")
        angle = math.radians(40.0)
        for index in range(2):
            x, y, z = markups.GetNthControlPointPositionWorld(index)
            markups.SetNthControlPointPositionWorld(
                index, x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle), z
            )
        placed = [list(markups.GetNthControlPointPositionWorld(index)) for index in range(2)]
        for _attempt in range(2):
            redone = logic.recompute(analysis.case_node)
            points = redone.results["aha"]["rv_insertion_points_ras"]
            self.assertEqual(points["source"], "user-placed")
            self.assertTrue(redone.results["edited"]["rv_insertion_points_moved"])
            for index, label in enumerate(("anterior", "inferior")):
                for axis in range(3):
                    self.assertAlmostEqual(points[label][axis], placed[index][axis], places=2)
        self.delayDisplay("Placed RV insertion points stay placed")

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

        # The same in a worker thread, as the module runs it: nothing reaches the scene
        prepared = logic.prepare(cine, device="cpu")
        token = logic.createCancelToken()
        token.cancel()
        job = AnalysisJob(lambda progress, cancel: CMRAnalysisLogic.compute(prepared, progress, cancel), token)
        job.start()
        self.assertTrue(job.wait(60.0))
        self.assertIsInstance(job.error, Cancelled)
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

        # In a worker thread, as the module runs it; the scene is touched only before and after
        prepared = logic.prepare(cine, device="cpu")
        job = AnalysisJob(lambda progress, cancel: CMRAnalysisLogic.compute(prepared, progress, cancel),
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

        # The table shows the same figure, and the results are filed under the study
        self.assertAlmostEqual(self._tableValue(result.table, "Ejection fraction", "LV"), measuredEf, delta=0.06)
        self.assertEqual(result.segmentation_sequence.GetNumberOfDataNodes(), 10)  # every phase
        self.assertIsNotNone(result.segmentation_browser.GetProxyNode(result.segmentation_sequence))
        self.assertEqual(result.case_node.GetAttribute("ModuleName"), CARDIAC_CASE)
        self.assertEqual(result.plot_chart.GetNumberOfPlotSeriesNodes(), 2)  # LV and RV volume curves
        self.assertEqual(len(result.results["curves"]["lv_ml"]), 10)

        # Synchronous processing (scripts) reports progress through the callback
        fractions = []
        logic.process(cine, device="cpu", progress=lambda fraction, message: fractions.append(fraction),
                      options=logic.analysisOptions("ed-es", "blood", "", logic.sliceCount(cine)))
        self.assertTrue(fractions, "no progress was reported")
        self.assertTrue(all(0.0 <= fraction <= 1.0 for fraction in fractions))
        self.assertEqual(fractions[-1], 1.0)
        self.delayDisplay("Ejection fraction matches the phantom")

    def test_RecomputeAfterEditingContours(self):
        """The correction loop: erase the LV cavity of one end-diastolic slice through the browser's displayed
        segmentation; recompute lowers that phase's LV volume and lists the phase as edited."""
        slicer.mrmlScene.Clear()
        import numpy as np
        from CardiacSuiteLib import mrml
        from CMRAnalysisLib.function_scene import SEGMENT_SPECS

        logic = CMRAnalysisLogic()
        self._requireModel(logic)
        cine, phantom = self._addSyntheticCine(phases=8, slices=6)
        analysis = logic.process(cine, device="cpu")
        results = analysis.results
        ed = results["lv"]["ed_phase"]
        curvePhases = results["curves"]["phase"]
        edVolume = results["curves"]["lv_ml"][curvePhases.index(ed)]

        # Show end-diastole and read its contours from the displayed (proxy) segmentation
        browser = analysis.segmentation_browser
        browser.SetSelectedItemNumber(ed)
        shown = browser.GetProxyNode(analysis.segmentation_sequence)
        volume = logic.displayedVolume(cine)
        values = {spec.name: spec.value for spec in SEGMENT_SPECS}
        labels = mrml.labelmap_from_segmentation(shown, volume, values)
        counted = np.array(results["per_slice_area_mm2"]["lv_ed"])
        sliceNumber = int(np.argmax(counted))
        self.assertGreater(counted[sliceNumber], 0.0, "the model found no LV cavity at end-diastole")
        labels[sliceNumber][labels[sliceNumber] == values["Left ventricle"]] = 0
        mrml.fill_segmentation_from_labelmap(shown, labels, mrml.ijk_to_ras(volume), SEGMENT_SPECS)

        redone = logic.recompute(analysis.case_node)
        self.assertEqual(redone.results["edited"]["phases"], [ed])
        newVolume = redone.results["curves"]["lv_ml"][redone.results["curves"]["phase"].index(ed)]
        self.delayDisplay(f"End-diastolic LV volume {edVolume:.1f} ml, after erasing slice {sliceNumber}: {newVolume:.1f} ml")
        self.assertLess(newVolume, edVolume - 1.0)
        self.assertAlmostEqual(self._tableValue(redone.table, "End-diastolic volume", "LV"),
                               redone.results["lv"]["edv_ml"], delta=0.051)
        self.delayDisplay("Recompute follows the edited contours")

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

    def _addAnalysisOfPhantomLabels(self):
        """A function analysis measured on the phantom's own labels (no model), added to the scene."""
        from CMRAnalysisLib.function import FunctionOptions, labels_digest, measure_function
        from CMRAnalysisLib.function_scene import add_function_results

        cine, phantom = self._addSyntheticCine(phases=8, slices=6, thinSectorDeg=(-60.0, 0.0))
        series = phantom.series
        labels = {phase: phantom.labels[phase] for phase in range(series.frames.shape[0])}
        results = measure_function(series.frames, labels, series.ijk_to_ras, series.frame_times_ms)
        results["ai_label_digests"] = {str(phase): labels_digest(value) for phase, value in labels.items()}
        results["model"] = {"id": "phantom labels", "version": "0", "device": "cpu"}
        indexValues = [cine.GetNthIndexValue(item) for item in range(cine.GetNumberOfDataNodes())]
        return add_function_results(
            slicer.mrmlScene, cine, results, labels, series.ijk_to_ras, indexValues, FunctionOptions()
        )

    @staticmethod
    def _addSyntheticCine(phases, slices, thinSectorDeg=None):
        """A short-axis cine of a contracting left ventricle with known volumes, as a sequence with a browser."""
        from CardiacSuiteLib.imagedata import add_to_scene
        from CardiacSuiteLib.phantoms.cine import beating_heart_cine

        phantom = beating_heart_cine(phases=phases, slices=slices, thin_sector_deg=thinSectorDeg)
        sequence, _browser = add_to_scene(slicer.mrmlScene, phantom.series, "Synthetic cine")
        return sequence, phantom

    @staticmethod
    def _tableValue(tableNode, measurement, column):
        from CardiacSuiteLib.mrml import table_rows

        for row in table_rows(tableNode):
            if row.get("Measurement") == measurement:
                return float(row[column])
        raise AssertionError(f"table '{tableNode.GetName()}' has no '{measurement}' row")
