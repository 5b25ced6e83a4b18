"""Left and right ventricular function from a short-axis cine: AI contours, volumes, ejection fraction.

The pipeline: find end-diastole and end-systole from the LV cavity area on the mid-ventricular slices over
every phase, segment every slice of those two phases, and measure both ventricles by disc summation. The pure
part (``analyse_cine``) takes arrays; ``run_function_analysis`` reads its input from the scene and writes its
results back as a segmentation sequence, a table and references on the study's CardiacCase node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

import slicer
from CardiacSuiteLib import mrml
from CardiacSuiteLib.case import CardiacCase, Role
from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.inference import CancelToken, ProgressCallback, report
from CardiacSuiteLib.inference.registry import ModelRegistry
from CardiacSuiteLib.inference.segment2d import SliceSegmenter, keep_largest_components

from . import volumes

TASK = "cmr-sax-cine"
RV, MYOCARDIUM, LV = "Right ventricle", "Left ventricle myocardium", "Left ventricle"
MID_SLICES_FOR_PHASE_DETECTION = 3
BASAL_CONVENTION = (
    "from the largest LV cavity toward the base, the first slice whose cavity area is below 50 % of its apical"
    " neighbour's is outflow tract or atrium and is excluded with every slice beyond it; the end-diastolic limit"
    " also bounds end-systole; the same slices count for the RV and the myocardium; apical slices all count"
)
PAPILLARY_CONVENTION = "papillary muscles and trabeculations counted in the LV cavity (the model's ACDC convention)"


@dataclass
class CineMeasurement:
    """Everything measured on one cine, as plain numbers (the content of ``results.json``)."""

    results: dict
    labels: dict[int, np.ndarray]  # phase index → label map [K, J, I] of that phase
    lv_area_curve_mm2: list[float] = field(default_factory=list)


@dataclass
class FunctionAnalysis:
    """What the analysis added to the scene, and its figures."""

    results: dict
    table: object
    segmentation_sequence: object
    segmentation_browser: object
    case_node: object


def analyse_cine(
    frames: np.ndarray,
    ijk_to_ras: np.ndarray,
    segmenter: SliceSegmenter,
    frame_times_ms: list[float] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> CineMeasurement:
    """Measure LV and RV function on a cine ``frames[T, K, J, I]`` (one phase is allowed: volumes only)."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4:
        raise InputError(f"a cine must be [phases, slices, rows, columns]; got shape {frames.shape}")
    phases, slices = frames.shape[:2]
    if slices < 2:
        raise InputError(
            "the input has a single slice; ventricular volumes need a short-axis stack covering the ventricles"
        )
    lv, rv, myo = (segmenter.entry.label_value(name) for name in (LV, RV, MYOCARDIUM))
    preparation = segmenter.prepare(frames)
    started = time.perf_counter()

    area_curve: list[float] = []
    if phases > 1:
        centre = slices // 2
        mid = list(range(max(0, centre - 1), min(slices, centre - 1 + MID_SLICES_FOR_PHASE_DETECTION)))
        stack = frames[:, mid].reshape(-1, *frames.shape[2:])
        mid_labels = segmenter.segment(
            stack, preparation, progress, cancel, progress_span=(0.0, 0.6)
        ).reshape(phases, len(mid), *frames.shape[2:])
        pixel_area = volumes.in_plane_pixel_area_mm2(ijk_to_ras)
        area_curve = [float((mid_labels[p] == lv).sum() * pixel_area) for p in range(phases)]
        ed, es = volumes.end_diastole_and_systole(np.array(area_curve))
        if ed == es:
            raise InputError("the LV cavity was not found on the mid-ventricular slices of any phase")
        key_phases = [ed, es]
        span = 0.6
    else:
        ed = es = 0
        key_phases = [0]
        span = 0.0

    labels: dict[int, np.ndarray] = {}
    for number, phase in enumerate(key_phases):
        step = (1.0 - span) / len(key_phases)
        phase_labels = segmenter.segment(
            frames[phase], preparation, progress, cancel, progress_span=(span + number * step, span + (number + 1) * step)
        )
        labels[phase] = keep_largest_components(phase_labels, [lv, rv, myo])
    inference_s = time.perf_counter() - started

    started = time.perf_counter()
    inclusion = basal_inclusion(labels, ed, es, ijk_to_ras, lv)
    measured = {
        phase: _phase_volumes(labels[phase], ijk_to_ras, lv, rv, myo, inclusion[phase]) for phase in key_phases
    }
    results = {
        "lv": {"edv_ml": measured[ed]["lv_ml"], "esv_ml": measured[es]["lv_ml"]},
        "rv": {"edv_ml": measured[ed]["rv_ml"], "esv_ml": measured[es]["rv_ml"]},
        "ed_phase": ed,
        "es_phase": es,
        "ed_time_ms": frame_times_ms[ed] if frame_times_ms else None,
        "es_time_ms": frame_times_ms[es] if frame_times_ms else None,
        "phases": phases,
        "slices": slices,
        "slices_included": {"ed": inclusion[ed].tolist(), "es": inclusion[es].tolist()},
    }
    for ventricle in ("lv", "rv"):
        if phases > 1:
            results[ventricle].update(ejection(results[ventricle]["edv_ml"], results[ventricle]["esv_ml"]))
        else:
            results[ventricle].update({"sv_ml": None, "ef_pct": None})
    results["lv"]["myocardium_ed_ml"] = measured[ed]["myo_ml"]
    results["lv"]["mass_ed_g"] = volumes.myocardial_mass_g(measured[ed]["myo_ml"])
    results["method"] = {
        "volumes": "disc summation: segmented area per slice x slice spacing from the image positions",
        "slice_spacing_mm": volumes.slice_spacing_mm(ijk_to_ras),
        "pixel_area_mm2": volumes.in_plane_pixel_area_mm2(ijk_to_ras),
        "phase_detection": (
            f"end-diastole and end-systole = largest and smallest LV cavity area on the {MID_SLICES_FOR_PHASE_DETECTION}"
            f" mid-ventricular slices over all {phases} phases; the same phases are used for the RV"
            if phases > 1
            else "single phase: volumes only"
        ),
        "papillary_muscles": PAPILLARY_CONVENTION,
        "myocardial_density_g_per_ml": volumes.MYOCARDIAL_DENSITY_G_PER_ML,
        "basal_and_apical_slices": BASAL_CONVENTION,
    }
    results["per_slice_area_mm2"] = {
        "lv_ed": volumes.slice_areas_mm2(labels[ed] == lv, ijk_to_ras).round(1).tolist(),
        "lv_es": volumes.slice_areas_mm2(labels[es] == lv, ijk_to_ras).round(1).tolist(),
        "rv_ed": volumes.slice_areas_mm2(labels[ed] == rv, ijk_to_ras).round(1).tolist(),
        "rv_es": volumes.slice_areas_mm2(labels[es] == rv, ijk_to_ras).round(1).tolist(),
    }
    results["lv_mid_area_curve_mm2"] = [round(a, 1) for a in area_curve]
    results["model"] = {"id": segmenter.entry.id, "version": segmenter.entry.version, "device": segmenter.device}
    results["timing_s"] = {"inference": inference_s, "measurement": time.perf_counter() - started}
    report(progress, 1.0, "measured")
    return CineMeasurement(results=results, labels=labels, lv_area_curve_mm2=area_curve)


def ejection(edv_ml: float, esv_ml: float) -> dict[str, float]:
    return volumes.ejection(edv_ml, esv_ml)


def basal_inclusion(labels: dict[int, np.ndarray], ed: int, es: int, ijk_to_ras, lv: int) -> dict[int, np.ndarray]:
    """Slices counted at each key phase under ``BASAL_CONVENTION``."""
    ed_areas = volumes.slice_areas_mm2(labels[ed] == lv, ijk_to_ras)
    direction = volumes.base_direction(ed_areas)
    ed_limit = volumes.basal_limit(ed_areas, direction)
    inclusion = {ed: volumes.included_slices(len(ed_areas), ed_limit, direction)}
    if es != ed:
        es_areas = volumes.slice_areas_mm2(labels[es] == lv, ijk_to_ras)
        es_limit = volumes.basal_limit(es_areas, direction)
        limits = [limit for limit in (ed_limit, es_limit) if limit is not None]
        # The base moves toward the apex in systole, so the end-diastolic limit also bounds end-systole.
        es_limit = (min(limits) if direction > 0 else max(limits)) if limits else None
        inclusion[es] = volumes.included_slices(len(es_areas), es_limit, direction)
    return inclusion


def _phase_volumes(labels: np.ndarray, ijk_to_ras: np.ndarray, lv: int, rv: int, myo: int, include: np.ndarray) -> dict[str, float]:
    counted = labels * include[:, np.newaxis, np.newaxis]
    return {
        "lv_ml": volumes.disc_volume_ml(counted == lv, ijk_to_ras),
        "rv_ml": volumes.disc_volume_ml(counted == rv, ijk_to_ras),
        "myo_ml": volumes.disc_volume_ml(counted == myo, ijk_to_ras),
    }


# ------------------------------------------------------------------------------------------------ scene


def cine_from_node(input_node) -> tuple[np.ndarray, np.ndarray, list[float] | None]:
    """Frames ``[T, K, J, I]``, IJK-to-RAS and frame times (ms) of a volume sequence or a single volume."""
    if input_node is None:
        raise InputError("no input selected: choose a short-axis cine (volume sequence) or a volume")
    if input_node.IsA("vtkMRMLSequenceNode"):
        count = input_node.GetNumberOfDataNodes()
        if count == 0:
            raise InputError(f"sequence '{input_node.GetName()}' is empty")
        first = input_node.GetNthDataNode(0)
        if not first.IsA("vtkMRMLScalarVolumeNode"):
            raise InputError(f"sequence '{input_node.GetName()}' does not hold volumes")
        geometry = mrml.ijk_to_ras(first)
        frames = []
        for index in range(count):
            item = input_node.GetNthDataNode(index)
            if not np.allclose(mrml.ijk_to_ras(item), geometry, atol=1e-3):
                raise InputError(f"phase {index} of '{input_node.GetName()}' has a different geometry from phase 0")
            frames.append(mrml.array_from_volume(item))
        if len({frame.shape for frame in frames}) != 1:
            raise InputError(f"the phases of '{input_node.GetName()}' differ in size")
        times = None
        if input_node.GetIndexUnit() == "ms":
            try:
                times = [float(input_node.GetNthIndexValue(i)) for i in range(count)]
            except ValueError:
                times = None
        return np.stack(frames), geometry, times
    if input_node.IsA("vtkMRMLScalarVolumeNode"):
        return mrml.array_from_volume(input_node)[np.newaxis], mrml.ijk_to_ras(input_node), None
    raise InputError(f"'{input_node.GetName()}' is a {input_node.GetClassName()}, not a cine or a volume")


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
) -> FunctionAnalysis:
    """Analyse the cine in ``input_node`` and add the results to ``scene``.

    Nothing is added to the scene until every figure is computed, so a cancelled or failed run leaves the
    scene as it was.
    """
    frames, geometry, times = cine_from_node(input_node)
    registry = registry or ModelRegistry.default()
    report(progress, 0.0, "loading the model")
    segmenter = SliceSegmenter.from_registry(registry, model_id, TASK, device, allow_download)
    measurement = analyse_cine(frames, geometry, segmenter, times, progress, cancel)
    if cancel is not None:
        cancel.raise_if_cancelled()
    return add_function_results(scene, input_node, measurement, geometry, times, segmenter.entry, case)


def add_function_results(scene, input_node, measurement: CineMeasurement, geometry, times, entry, case=None):
    name = input_node.GetName()
    specs = [mrml.SegmentSpec(label.value, label.name, label.color) for label in entry.labels]
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{name} function segmentation")
    sequence.SetIndexName("time" if times else "phase")
    sequence.SetIndexUnit("ms" if times else "")
    sequence.SetIndexType(sequence.NumericIndex)
    for phase, labels in sorted(measurement.labels.items()):
        item = slicer.vtkMRMLSegmentationNode()
        mrml.fill_segmentation_from_labelmap(item, labels, geometry, specs)
        role = "ED" if phase == measurement.results["ed_phase"] else "ES"
        if measurement.results["ed_phase"] == measurement.results["es_phase"]:
            role = "phase"
        item.SetName(f"{name} {role}")
        sequence.SetDataNodeAtValue(item, f"{times[phase]:g}" if times else str(phase))
    browser = mrml.add_browser(scene, sequence, f"{name} function segmentation browser")
    proxy = browser.GetProxyNode(sequence)
    if proxy is not None:
        proxy.SetName(f"{name} function segmentation")
        proxy.CreateDefaultDisplayNodes()

    table = mrml.add_table(scene, f"{name} function", *results_table(measurement.results))
    if case is None:
        case = CardiacCase.get_or_create(scene, f"{name} study")
    if input_node.IsA("vtkMRMLSequenceNode"):
        case.set_reference(Role.CINE, input_node)
    case.set_reference(Role.FUNCTION_SEGMENTATION, sequence)
    case.set_reference(Role.FUNCTION_SEGMENTATION_BROWSER, browser)
    case.set_reference(Role.FUNCTION_TABLE, table)
    case.set_value("FunctionResults", measurement.results)
    return FunctionAnalysis(measurement.results, table, sequence, browser, case.node)


def results_table(results: dict) -> tuple[list[str], list[list[object]]]:
    """Rows of (measurement, LV, RV, unit) with the method noted where it changes the figure."""
    def value(ventricle: str, key: str):
        number = results[ventricle].get(key)
        return "" if number is None else round(float(number), 1)

    rows = [
        ["End-diastolic volume", value("lv", "edv_ml"), value("rv", "edv_ml"), "ml"],
        ["End-systolic volume", value("lv", "esv_ml"), value("rv", "esv_ml"), "ml"],
        ["Stroke volume", value("lv", "sv_ml"), value("rv", "sv_ml"), "ml"],
        ["Ejection fraction", value("lv", "ef_pct"), value("rv", "ef_pct"), "%"],
        ["Myocardial volume (ED)", value("lv", "myocardium_ed_ml"), "", "ml"],
        ["Myocardial mass (ED, 1.05 g/ml)", value("lv", "mass_ed_g"), "", "g"],
        ["End-diastolic phase", results["ed_phase"], results["ed_phase"], "index"],
        ["End-systolic phase", results["es_phase"], results["es_phase"], "index"],
    ]
    return ["Measurement", "LV", "RV", "Unit"], [[str(cell) for cell in row] for row in rows]
