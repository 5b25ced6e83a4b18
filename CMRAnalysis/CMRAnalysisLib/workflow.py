"""The short-axis function workflow: one for the Slicer module and for ``cardiacsuite cmr-function``.

An analysis is three steps, so that a module can run the slow one in a worker thread:

- :func:`prepare_analysis` reads the cine from the scene, checks the options and patient data, loads the model;
- :func:`compute_analysis` segments and measures, touching neither the scene nor Qt (any thread);
- :func:`finish_analysis` applies a reader's corrected contours, adds the results to the scene, assesses the
  patient data (body surface area, indexed values, the reference-values table) and compares with a prior study
  of the patient when one is given (:func:`open_prior_study`, checked in the first step, before the model loads).

:func:`run_function_analysis` runs the three in turn (the command line, scripts); :func:`recompute_analysis` is
the correction loop. The choices a user makes (phases, papillary convention, excluded slices, patient data) are
turned into options here too, with errors that speak of the input, so that the module's fields and the command's
options accept the same values and refuse them with the same words.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import vtk

from CardiacSuiteLib.case import CardiacCase, Key, Role
from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.inference import CancelToken, ProgressCallback, report
from CardiacSuiteLib.inference.registry import ModelRegistry
from CardiacSuiteLib.inference.segment2d import SliceSegmenter

from . import bsa, papillary
from .choices import (
    BSA_FORMULA_IDS,
    DEFAULT_BSA_FORMULA,
    DEVICES,
    KNOWN_SEXES,
    PAPILLARY_CONVENTIONS,
    PHASES,
    SEXES,
    UNKNOWN_SEX,
    parse_slice_list,
    slice_inclusion,
)
from .function import TASK, FunctionOptions, analyse_cine, labels_digest, measure_function
from .function_scene import (
    INSERTION_ROLE,
    OPTIONS_KEY,
    POLAR_MAP_COLUMNS,
    RESULTS_KEY,
    FunctionAnalysis,
    add_function_results,
    add_patient_assessment,
    add_prior_comparison,
    browser_of,
    case_cine,
    cine_from_node,
    recompute_from_scene,
    stored_prior,
)
from .patient import PatientInfo
from .prior import PriorStudy, open_prior_study, study_identity

#: Values the AHA 17-segment bull's-eye can show.
POLAR_MAP_VALUES = tuple(POLAR_MAP_COLUMNS)
#: ``recompute_analysis(patient=STORED_PATIENT)`` keeps the patient data of the previous results.
STORED_PATIENT = "stored"

__all__ = [
    "BSA_FORMULA_IDS", "DEVICES", "KNOWN_SEXES", "PAPILLARY_CONVENTIONS", "PHASES", "POLAR_MAP_VALUES", "SEXES",
    "UNKNOWN_SEX",
    "PreparedAnalysis", "PriorStudy", "analysis_options", "case_identity", "compute_analysis", "finish_analysis",
    "open_prior_study", "parse_slice_list", "patient_info", "prepare_analysis", "recompute_analysis", "recompute_options",
    "result_summary", "run_function_analysis", "study_identity",
]

# ------------------------------------------------------------------------------------------------ choices


def analysis_options(phases: str = PHASES[0], papillary: str = papillary.BLOOD, excluded_slices: str | None = "",
                     slice_count: int | None = None) -> FunctionOptions:
    """FunctionOptions from a user's choices; ``excluded_slices`` is text such as "0, 9-10"."""
    options = FunctionOptions(phases=phases, papillary=papillary,
                              slice_inclusion=slice_inclusion(excluded_slices, slice_count))
    options.validate()
    return options


def recompute_options(case: CardiacCase, papillary: str | None = None,
                      excluded_slices: str | None = None) -> FunctionOptions:
    """The options of the study's analysis, with the papillary convention and excluded slices replaced when
    given (``excluded_slices=""`` returns to the automatic basal rule)."""
    options = FunctionOptions(**case.value(OPTIONS_KEY, {}))
    if papillary is not None:
        options.papillary = papillary
    if excluded_slices is not None:
        options.slice_inclusion = slice_inclusion(excluded_slices, (case.value(RESULTS_KEY) or {}).get("slices"))
    options.validate()
    return options


def patient_info(height_cm: float = 0.0, weight_kg: float = 0.0, sex: str = UNKNOWN_SEX, age: float = 0.0,
                 bsa_formula: str = DEFAULT_BSA_FORMULA) -> PatientInfo | None:
    """PatientInfo from form fields where 0 and "unknown" mean not known; None when nothing is known."""
    height, weight, years = (value if value else None for value in (height_cm, weight_kg, age))
    known_sex = None if not sex or sex == UNKNOWN_SEX else sex
    if height is None and weight is None and years is None and known_sex is None:
        return None
    return PatientInfo(height, weight, known_sex, years, bsa_formula)


def case_identity(case: CardiacCase | None) -> dict[str, str]:
    """The patient and study fields a study node carries (PatientID, StudyInstanceUID), for the prior-study check."""
    if case is None:
        return {}
    return study_identity({Key.PATIENT_ID: case.patient_id, Key.STUDY_INSTANCE_UID: case.study_uid})


def check_patient(patient: PatientInfo | None) -> None:
    """Refuse implausible patient data before the model runs (an unknown formula, a height in metres)."""
    if patient is None:
        return
    bsa.formula_for(patient.bsa_formula)
    if patient.height_cm is not None and patient.weight_kg is not None:
        bsa.body_surface_area(patient.height_cm, patient.weight_kg, patient.bsa_formula, patient.sex)


# ------------------------------------------------------------------------------------------------ the workflow


@dataclass
class PreparedAnalysis:
    """What :func:`compute_analysis` needs, read from the scene by :func:`prepare_analysis`."""

    input_node: object
    frames: np.ndarray
    ijk_to_ras: np.ndarray
    times: list[float] | None
    index_values: list[str] | None
    segmenter: SliceSegmenter
    options: FunctionOptions
    patient: PatientInfo | None = None
    case: CardiacCase | None = None
    model_load_s: float = 0.0
    prior: PriorStudy | None = None

    @property
    def device(self) -> str:
        return self.segmenter.device


def prepare_analysis(input_node, model_id: str | None = None, device: str = "auto",
                     options: FunctionOptions | None = None, patient: PatientInfo | None = None,
                     case: CardiacCase | None = None, registry: ModelRegistry | None = None,
                     allow_download: bool = False, progress: ProgressCallback | None = None,
                     prior: PriorStudy | None = None) -> PreparedAnalysis:
    """Read the cine, check the options and patient data, load the model (on the thread that owns the scene).

    ``prior`` (from :func:`open_prior_study`) is the prior study the results will be compared with.
    """
    options = options or FunctionOptions()
    options.validate()
    frames, geometry, times, index_values = cine_from_node(input_node)
    if options.slice_inclusion is not None and len(options.slice_inclusion) != frames.shape[1]:
        raise InputError(
            f"the slice choice has {len(options.slice_inclusion)} values but the cine has {frames.shape[1]} slices"
        )
    check_patient(patient)
    registry = registry or ModelRegistry.default()
    report(progress, 0.0, "loading the model")
    started = time.perf_counter()
    segmenter = SliceSegmenter.from_registry(registry, model_id or None, TASK, device, allow_download)
    model_load_s = time.perf_counter() - started
    return PreparedAnalysis(input_node, frames, geometry, times, index_values, segmenter, options, patient, case,
                            model_load_s, prior)


def compute_analysis(prepared: PreparedAnalysis, progress: ProgressCallback | None = None,
                     cancel: CancelToken | None = None) -> tuple:
    """Segment and measure; returns (results, CineSegmentation). Touches neither the scene nor Qt."""
    results, segmentation = analyse_cine(
        prepared.frames, prepared.ijk_to_ras, prepared.segmenter, prepared.times, prepared.options, progress, cancel
    )
    results["timing_s"]["model_load"] = prepared.model_load_s
    if cancel is not None:
        cancel.raise_if_cancelled()
    return results, segmentation


Edits = dict[int, np.ndarray] | Callable[[dict], dict[int, np.ndarray]]


def finish_analysis(scene, prepared: PreparedAnalysis, computed: tuple, edits: Edits | None = None) -> FunctionAnalysis:
    """Add the results to ``scene``, assess the patient data and compare with the prior study; returns the
    FunctionAnalysis.

    ``edits`` replaces the AI labels of some phases by a reader's corrected ones (phase → label map on the
    cine grid) before measuring; the results then list those phases as edited. It may be a function of the
    AI results, for corrections named by the AI's end-diastolic or end-systolic phase.
    """
    if prepared.input_node.GetScene() is None:
        raise InputError("the cine was removed from the scene during the analysis; nothing was added")
    case = prepared.case
    if case is not None and case.node.GetScene() is None:
        case = None
    results, segmentation = computed
    labels = segmentation.labels
    if callable(edits):
        edits = edits(results)
    if edits:
        results, labels = _apply_edits(prepared, results, labels, edits)
    analysis = add_function_results(
        scene, prepared.input_node, results, labels, prepared.ijk_to_ras, prepared.index_values, prepared.options, case
    )
    add_patient_assessment(scene, analysis, prepared.patient)
    add_prior_comparison(scene, analysis, prepared.prior)
    return analysis


def _apply_edits(prepared: PreparedAnalysis, results: dict, labels: dict, edits: dict) -> tuple[dict, dict]:
    unknown = sorted(set(edits) - set(labels))
    if unknown:
        raise InputError(f"corrected segmentation for phase(s) {unknown}, which the analysis did not segment")
    labels = {**labels, **edits}
    started = time.perf_counter()
    edited = measure_function(prepared.frames, labels, prepared.ijk_to_ras, prepared.times, prepared.options)
    for key in ("model", "timing_s", "ai_label_digests"):
        edited[key] = results[key]
    edited["timing_s"]["measurement"] = time.perf_counter() - started
    changed = [p for p in sorted(edits) if labels_digest(edits[p]) != results["ai_label_digests"][str(p)]]
    edited["edited"] = {"phases": changed, "rv_insertion_points_moved": False,
                        "note": "figures computed from the reader's contours"}
    return edited, labels


def run_function_analysis(
    scene,
    input_node,
    model_id: str | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    registry: ModelRegistry | None = None,
    case: CardiacCase | None = None,
    allow_download: bool = False,
    options: FunctionOptions | None = None,
    edits: Edits | None = None,
    patient: PatientInfo | None = None,
    prior: PriorStudy | None = None,
) -> FunctionAnalysis:
    """Analyse the cine in ``input_node`` and add the results to ``scene``.

    Nothing is added to the scene until every figure is computed, so a cancelled or failed run leaves the
    scene as it was. See :func:`finish_analysis` for ``edits``; ``prior`` comes from :func:`open_prior_study`.
    """
    prepared = prepare_analysis(input_node, model_id, device, options, patient, case, registry, allow_download, progress,
                                prior)
    return finish_analysis(scene, prepared, compute_analysis(prepared, progress, cancel), edits)


def recompute_analysis(scene, case: CardiacCase, options: FunctionOptions | None = None,
                       patient: PatientInfo | None | str = STORED_PATIENT) -> FunctionAnalysis:
    """Recompute every figure of the study's analysis from its segmentations as edited and its RV insertion
    points as placed, without running the model; a prior study it was compared with is compared again.

    ``options`` None keeps those of the analysis; ``patient`` :data:`STORED_PATIENT` keeps the patient data of
    the previous results, None drops them.
    """
    previous = case.value(RESULTS_KEY) or {}
    if isinstance(patient, str) and patient == STORED_PATIENT:
        stored = previous.get("patient")
        patient = PatientInfo(**stored) if stored else None
    check_patient(patient)
    options = options or recompute_options(case)
    keep_placed_insertion_points(case, previous, options)
    analysis = recompute_from_scene(scene, case, options)
    add_patient_assessment(scene, analysis, patient)
    add_prior_comparison(scene, analysis, stored_prior(case))
    return analysis


def keep_placed_insertion_points(case: CardiacCase, previous: dict, options: FunctionOptions) -> None:
    """Once the reader has placed the RV insertion points, later recomputes use them as they are now.

    ``recompute_from_scene`` notices moved points by comparing them with the last results; after one recompute
    those are the reader's points, so without this a second recompute would go back to the automatic ones.
    """
    placed = ((previous.get("aha") or {}).get("rv_insertion_points_ras") or {}).get("source") == "user-placed"
    markups = case.reference(INSERTION_ROLE)
    if placed and options.rv_insertion_ras is None and markups is not None and markups.GetNumberOfControlPoints() == 2:
        options.rv_insertion_ras = tuple(list(markups.GetNthControlPointPositionWorld(index)) for index in range(2))


# ------------------------------------------------------------------------------------------------ the scene


def study_for(input_node, case_node):
    """``case_node`` when it is the study of ``input_node`` (or has no cine yet), else None (a study is found
    or made by name), so that analysing another cine never overwrites a different study's results."""
    if case_node is None or input_node is None:
        return None
    cine = case_cine(CardiacCase(case_node))
    return case_node if cine is None or cine is input_node else None


def first_cine(scene):
    """The first sequence of scalar volumes in ``scene``, else its first scalar volume, else None."""
    sequences = scene.GetNodesByClass("vtkMRMLSequenceNode")
    for index in range(sequences.GetNumberOfItems()):
        sequence = sequences.GetItemAsObject(index)
        if sequence.GetNumberOfDataNodes() and sequence.GetNthDataNode(0).IsA("vtkMRMLScalarVolumeNode"):
            return sequence
    return scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")


def slice_count(input_node) -> int | None:
    """Number of short-axis slices of a cine or volume, or None."""
    if input_node is None:
        return None
    volume = input_node
    if input_node.IsA("vtkMRMLSequenceNode"):
        volume = input_node.GetNthDataNode(0) if input_node.GetNumberOfDataNodes() else None
    if volume is None or not volume.IsA("vtkMRMLScalarVolumeNode") or volume.GetImageData() is None:
        return None
    return volume.GetImageData().GetDimensions()[2]


def slice_centre(volume_node, slice_number: int) -> tuple[float, float, float] | None:
    """RAS position of the centre of slice ``slice_number`` (the volume's k index), or None."""
    if volume_node is None or volume_node.GetImageData() is None:
        return None
    dims = volume_node.GetImageData().GetDimensions()
    if not 0 <= slice_number < dims[2]:
        return None
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    return tuple(ijk_to_ras.MultiplyPoint(((dims[0] - 1) / 2.0, (dims[1] - 1) / 2.0, float(slice_number), 1.0))[:3])


def displayed_volume(scene, input_node):
    """The volume that shows ``input_node`` in the views: the proxy of a cine's browser, or the volume itself."""
    if input_node is None or not input_node.IsA("vtkMRMLSequenceNode"):
        return input_node
    browser = browser_of(scene, input_node)
    return browser.GetProxyNode(input_node) if browser else None


def follow_segmentation_phase(case: CardiacCase) -> None:
    """When only some phases were segmented (their own browser), show the cine at the segmentation's phase."""
    browser = case.reference(Role.FUNCTION_SEGMENTATION_BROWSER)
    sequence = case.reference(Role.FUNCTION_SEGMENTATION)
    cine_browser = case.reference(Role.CINE_BROWSER)
    if browser is None or sequence is None or cine_browser is None or browser is cine_browser:
        return
    item = browser.GetSelectedItemNumber()
    if 0 <= item < sequence.GetNumberOfDataNodes():
        value = sequence.GetNthIndexValue(item)
        cine = case.reference(Role.CINE)
        if cine is not None and cine.GetItemNumberFromIndexValue(value) >= 0:
            cine_browser.SetSelectedItemByIndexValue(value)


# ------------------------------------------------------------------------------------------------ presenting results


def slice_counted(results: dict | None, item: int, slice_number: int) -> tuple[int, bool] | None:
    """(phase, counted) of slice ``slice_number`` at item ``item`` of the segmentation sequence, or None."""
    if not results:
        return None
    phases = results.get("phases_segmented") or []
    if not 0 <= item < len(phases):
        return None
    phase = phases[item]
    included = (results.get("slices_included") or {}).get(str(phase))
    if not included or not 0 <= slice_number < len(included):
        return None
    return phase, bool(included[slice_number])


def polar_map_segments(rows: list[dict], value: str) -> dict[str, dict[str, float | None]]:
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
            segments[number] = {value: float(text) if text not in (None, "") else None}
        except (TypeError, ValueError):
            segments[number] = {value: None}
    return segments


def result_summary(results: dict) -> str:
    """One or two sentences for a status line: the key figures, flags, and what a recompute changed."""
    lv, rv = results["lv"], results["rv"]
    if lv.get("ef_pct") is None:
        text = f"Single phase: LV volume {lv['edv_ml']:.1f} ml, RV volume {rv['edv_ml']:.1f} ml."
    else:
        text = (
            f"LV ejection fraction {lv['ef_pct']:.1f} % (EDV {lv['edv_ml']:.0f} ml, ESV {lv['esv_ml']:.0f} ml),"
            f" RV ejection fraction {rv['ef_pct']:.1f} %, LV mass {lv.get('mass_g') or 0.0:.0f} g."
        )
    if results.get("bsa_m2") is not None:
        text += f" BSA {results['bsa_m2']:.2f} m²."
    parameters = (results.get("reference") or {}).get("parameters", {}).values()
    outside = [item for item in parameters if item.get("flag") in ("low", "high")]
    if outside:
        text += f" {len(outside)} value(s) outside the reference range (Reference tab)."
    compared = (results.get("prior") or {}).get("quantities", {}).get("lv.ef_pct")
    if compared is not None:
        days = results["prior"].get("interval_days")
        since = f" ({days} days earlier)" if days is not None else ""
        text += (f" Since the prior study{since}: LV ejection fraction {compared['difference']:+.1f} percentage points"
                 " (Prior study tab).")
    edited = results.get("edited")
    if edited:
        changes = []
        if edited.get("phases"):
            changes.append(f"edited contours of phase(s) {', '.join(str(phase) for phase in edited['phases'])}")
        if edited.get("rv_insertion_points_moved"):
            changes.append("moved RV insertion points")
        text += f" Recomputed with {' and '.join(changes)}." if changes else " Recomputed: no edited contours found."
    return text
