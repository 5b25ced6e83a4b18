"""Left and right ventricular function from a short-axis cine: AI contours, volumes, curves, rates, segments.

Two steps, kept apart so that an edited contour recomputes every figure without running the model again:

1. ``segment_cine``: the AI model contours RV, LV myocardium and LV cavity on every slice of every phase
   (or, with ``phases="ed-es"``, of the two phases with the largest and smallest mid-ventricular cavity).
2. ``measure_function``: from label maps alone, volumes by disc summation, volume–time curves, end-diastole
   and end-systole per ventricle, SV, EF, cardiac output, LV mass, peak ejection and filling rates, and the
   AHA 17-segment wall thickness and thickening.

``workflow.run_function_analysis`` reads the cine from the scene and writes the results back (segmentation sequence,
tables, plot, insertion-point markups, references on the study's CardiacCase node); ``recompute_from_scene``
is the correction loop after the reader edits the segmentation in Slicer.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.inference import CancelToken, ProgressCallback, report
from CardiacSuiteLib.inference.orientation import check_view
from CardiacSuiteLib.inference.segment2d import SliceSegmenter, keep_largest_components

from . import aha, curves, papillary, volumes

# Module logger: Slicer's log shows it; a plain command prints the bare message on stderr.
LOGGER = logging.getLogger(__name__)
from .choices import ALL_PHASES, PHASES

TASK = "cmr-sax-cine"
RV, MYOCARDIUM, LV = "Right ventricle", "Left ventricle myocardium", "Left ventricle"
LABELS = {RV: 1, MYOCARDIUM: 2, LV: 3}
MID_SLICES_FOR_PHASE_DETECTION = 3
MIN_PHASES_FOR_RATES = 8
BASAL_CONVENTION = (
    "from the largest LV cavity toward the base, the first slice whose cavity area is below 50 % of its apical"
    " neighbour's (or, at end-diastole, below 40 % of the largest cavity) is outflow tract or atrium and is"
    " excluded with every slice beyond it, at every phase; no phase counts a slice more basal than end-diastole"
    " does (the base descends in systole); the same slices count for the RV and the myocardium; apical slices all"
    " count; a reader's per-slice choice overrides this"
)


@dataclass
class FunctionOptions:
    """Method choices that change the figures; every one is recorded in the results."""

    phases: str = ALL_PHASES  # one of PHASES
    papillary: str = papillary.BLOOD  # "blood" | "myocardium"
    slice_inclusion: list[bool] | None = None  # reader's per-slice choice, applied to every phase
    rv_insertion_ras: tuple[list[float], list[float]] | None = None  # (anterior, inferior) RAS mm
    territories: dict[str, list[int]] | None = None
    nominal_rr_ms: float | None = None

    def validate(self) -> None:
        if self.phases not in PHASES:
            raise InputError(f"phases must be one of {', '.join(PHASES)}, not '{self.phases}'")
        if self.papillary not in papillary.CONVENTIONS:
            raise InputError(f"papillary must be one of {', '.join(papillary.CONVENTIONS)}, not '{self.papillary}'")


@dataclass
class CineSegmentation:
    """AI label maps per phase (``[K, J, I]`` each) and what produced them."""

    labels: dict[int, np.ndarray]
    model: dict  # id, version, device, input orientation and the orientation check's finding ("situs")
    inference_s: float
    lv_mid_area_curve_mm2: list[float] = field(default_factory=list)
    orientation_check_s: float = 0.0  # part of inference_s: the passes that chose the view from the image


# ------------------------------------------------------------------------------------------------ inference


def segment_cine(
    frames: np.ndarray,
    segmenter: SliceSegmenter,
    phases: str = ALL_PHASES,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    ijk_to_ras: np.ndarray | None = None,
) -> CineSegmentation:
    """Contour the cine ``frames[T, K, J, I]`` with the model, phase by phase.

    The slices are shown to the model in the orientation it was trained on, chosen from the geometry and, for a
    mirror-image heart or slices without short-axis geometry, from the image (``orientation.check_view``); the
    labels are turned back to the stored grid. A heart found on the right is logged as a warning.
    """
    frames = _check_cine(frames)
    lv, rv, myo = (segmenter.entry.label_value(name) for name in (LV, RV, MYOCARDIUM))
    started = time.perf_counter()  # inference: every pass of the model, the view check and heart crop included
    check = check_view(frames, ijk_to_ras, segmenter, rv, myo, lv)
    warning = check.warning()
    if warning:
        LOGGER.warning(f"CardiacSuite: {warning}")
    view, preparation = check.view, check.preparation
    frames = view.apply(frames)
    count, slices = frames.shape[:2]
    area_curve: list[float] = []
    if phases == ALL_PHASES or count == 1:
        wanted = list(range(count))
        stack = frames.reshape(-1, *frames.shape[2:])
        all_labels = segmenter.segment(stack, preparation, progress, cancel).reshape(frames.shape)
        labels = {p: keep_largest_components(all_labels[p], [lv, rv, myo]) for p in wanted}
    else:
        centre = slices // 2
        mid = list(range(max(0, centre - 1), min(slices, centre - 1 + MID_SLICES_FOR_PHASE_DETECTION)))
        stack = frames[:, mid].reshape(-1, *frames.shape[2:])
        mid_labels = segmenter.segment(stack, preparation, progress, cancel, (0.0, 0.6)).reshape(count, len(mid), *frames.shape[2:])
        area_curve = [float((mid_labels[p] == lv).sum()) for p in range(count)]
        ed, es = volumes.end_diastole_and_systole(np.array(area_curve))
        if ed == es:
            raise InputError("the LV cavity was not found on the mid-ventricular slices of any phase")
        labels = {}
        for number, phase in enumerate((ed, es)):
            span = (0.6 + 0.2 * number, 0.8 + 0.2 * number)
            labels[phase] = keep_largest_components(segmenter.segment(frames[phase], preparation, progress, cancel, span), [lv, rv, myo])
    labels = {phase: view.undo(value) for phase, value in labels.items()}
    model = {"id": segmenter.entry.id, "version": segmenter.entry.version, "device": segmenter.device,
             "input_orientation": view.describe(), "situs": check.finding()}
    return CineSegmentation(labels, model, time.perf_counter() - started, area_curve, check.seconds)


def _check_cine(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4:
        raise InputError(f"a cine must be [phases, slices, rows, columns]; got shape {frames.shape}")
    if frames.shape[1] < 2:
        raise InputError("the input has a single slice; ventricular volumes need a short-axis stack covering the ventricles")
    return frames


# ------------------------------------------------------------------------------------------------ measurement


def measure_function(
    frames: np.ndarray,
    labels: dict[int, np.ndarray],
    ijk_to_ras: np.ndarray,
    frame_times_ms: list[float] | None = None,
    options: FunctionOptions | None = None,
) -> dict:
    """Every function figure from label maps (1 RV, 2 myocardium, 3 LV cavity) of some or all phases."""
    options = options or FunctionOptions()
    options.validate()
    frames = np.asarray(frames, dtype=np.float32)
    phases = sorted(labels)
    shape = frames.shape[1:]
    for phase in phases:
        if labels[phase].shape != shape:
            raise InputError(f"the label map of phase {phase} is {labels[phase].shape}, the images are {shape}")
    lv, myo, rv = LABELS[LV], LABELS[MYOCARDIUM], LABELS[RV]
    counted = {
        p: papillary.move_to_myocardium(frames[p], labels[p], lv, myo) if options.papillary == papillary.MYOCARDIUM else labels[p]
        for p in phases
    }
    inclusion, direction = _slice_inclusion(counted, ijk_to_ras, lv, options.slice_inclusion)
    per_phase = {p: _phase_volumes(counted[p], ijk_to_ras, inclusion[p]) for p in phases}
    lv_curve = np.array([per_phase[p]["lv_ml"] for p in phases])
    rv_curve = np.array([per_phase[p]["rv_ml"] for p in phases])
    myo_curve = np.array([per_phase[p]["myo_ml"] for p in phases])
    lv_ed, lv_es = (phases[i] for i in volumes.end_diastole_and_systole(lv_curve))
    rv_ed, rv_es = (phases[i] for i in volumes.end_diastole_and_systole(rv_curve))
    all_phases = len(phases) == frames.shape[0]
    if not all_phases:  # with two phases, the RV takes the LV's (its own curve has no more information)
        rv_ed, rv_es = lv_ed, lv_es
    timing = curves.cycle_timing(frame_times_ms, frames.shape[0], options.nominal_rr_ms)
    results: dict = {"phases": frames.shape[0], "slices": frames.shape[1], "phases_segmented": phases}
    for key, ed, es, curve in (("lv", lv_ed, lv_es, lv_curve), ("rv", rv_ed, rv_es, rv_curve)):
        edv, esv = per_phase[ed][f"{key}_ml"], per_phase[es][f"{key}_ml"]
        entry = {"edv_ml": edv, "esv_ml": esv, "ed_phase": ed, "es_phase": es}
        entry.update(volumes.ejection(edv, esv) if len(phases) > 1 else {"sv_ml": None, "ef_pct": None})
        if timing is not None and len(phases) > 1:
            entry["co_l_min"] = entry["sv_ml"] * timing.heart_rate_bpm / 1000.0
        if timing is not None and all_phases and len(phases) >= MIN_PHASES_FOR_RATES:
            rates = curves.ejection_and_filling_rates(curve, timing, phases.index(ed), phases.index(es))
            entry.update({k: v for k, v in rates.items() if k != "fit"})
            results.setdefault("method", {})["rates"] = rates["fit"]
        results[key] = entry
    results["lv"]["myocardium_ed_ml"] = per_phase[lv_ed]["myo_ml"]
    results["lv"]["mass_g"] = volumes.myocardial_mass_g(per_phase[lv_ed]["myo_ml"])
    results["ed_phase"], results["es_phase"] = lv_ed, lv_es
    times = frame_times_ms or []
    results["ed_time_ms"] = times[lv_ed] if times else None
    results["es_time_ms"] = times[lv_es] if times else None
    results["hr_bpm"] = timing.heart_rate_bpm if timing else None
    results["rr_ms"] = timing.rr_ms if timing else None
    results["curves"] = {
        "phase": phases,
        "time_ms": [times[p] for p in phases] if times else None,
        "lv_ml": lv_curve.round(2).tolist(),
        "rv_ml": rv_curve.round(2).tolist(),
        "myocardium_ml": myo_curve.round(2).tolist(),
    }
    results["slices_included"] = {str(p): inclusion[p].tolist() for p in phases}
    results["per_slice_area_mm2"] = {
        "lv_ed": volumes.slice_areas_mm2((counted[lv_ed] == lv) & inclusion[lv_ed][:, None, None], ijk_to_ras).round(1).tolist(),
        "lv_es": volumes.slice_areas_mm2((counted[lv_es] == lv) & inclusion[lv_es][:, None, None], ijk_to_ras).round(1).tolist(),
    }
    if lv_ed != lv_es:
        results["aha"] = aha.aha_analysis(
            counted[lv_ed], counted[lv_es], ijk_to_ras, inclusion[lv_ed], direction, lv, myo, rv,
            options.rv_insertion_ras, options.territories,
        )
    method = results.setdefault("method", {})
    method.update(
        {
            "volumes": "disc summation: segmented area per slice x slice spacing from the image positions",
            "slice_spacing_mm": volumes.slice_spacing_mm(ijk_to_ras),
            "pixel_area_mm2": volumes.in_plane_pixel_area_mm2(ijk_to_ras),
            "phases": "every phase segmented" if all_phases else "end-diastole and end-systole only",
            "end_diastole_systole": "largest and smallest volume on each ventricle's own volume curve"
            if all_phases
            else "largest and smallest LV cavity on the mid-ventricular slices; the RV uses the same phases",
            "papillary_muscles": papillary.describe(options.papillary),
            "myocardial_density_g_per_ml": volumes.MYOCARDIAL_DENSITY_G_PER_ML,
            "basal_and_apical_slices": "reader's per-slice choice" if options.slice_inclusion else BASAL_CONVENTION,
            "heart_rate": timing.source if timing else "unknown (no trigger times)",
        }
    )
    return results


def _phase_volumes(labels: np.ndarray, ijk_to_ras: np.ndarray, include: np.ndarray) -> dict[str, float]:
    counted = labels * include[:, np.newaxis, np.newaxis]
    return {
        "lv_ml": volumes.disc_volume_ml(counted == LABELS[LV], ijk_to_ras),
        "rv_ml": volumes.disc_volume_ml(counted == LABELS[RV], ijk_to_ras),
        "myo_ml": volumes.disc_volume_ml(counted == LABELS[MYOCARDIUM], ijk_to_ras),
    }


def _slice_inclusion(labels: dict[int, np.ndarray], ijk_to_ras, lv: int, override: list[bool] | None):
    """Per-phase slices counted under ``BASAL_CONVENTION`` (or the reader's choice) and the base direction."""
    phases = sorted(labels)
    areas = {p: volumes.slice_areas_mm2(labels[p] == lv, ijk_to_ras) for p in phases}
    largest = max(phases, key=lambda p: areas[p].sum())
    direction = volumes.base_direction(areas[largest])
    if override is not None:
        include = np.asarray(override, dtype=bool)
        if include.shape != (len(areas[largest]),):
            raise InputError(f"slice inclusion needs {len(areas[largest])} values (one per slice), got {include.size}")
        return {p: include.copy() for p in phases}, direction
    ed_limit = volumes.basal_limit(areas[largest], direction, volumes.BASAL_FRACTION_OF_LARGEST)
    inclusion = {}
    for p in phases:
        limit = volumes.basal_limit(areas[p], direction)
        limits = [value for value in (ed_limit, limit) if value is not None]
        if limits:
            limit = min(limits) if direction > 0 else max(limits)
        inclusion[p] = volumes.included_slices(len(areas[p]), limit, direction)
    return inclusion, direction


def labels_digest(labels: np.ndarray) -> str:
    """Fingerprint of one phase's label map, to tell later which phases a reader edited."""
    return hashlib.sha1(np.ascontiguousarray(labels, dtype=np.uint8).tobytes()).hexdigest()[:16]


def analyse_cine(
    frames: np.ndarray,
    ijk_to_ras: np.ndarray,
    segmenter: SliceSegmenter,
    frame_times_ms: list[float] | None = None,
    options: FunctionOptions | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[dict, CineSegmentation]:
    """Segment then measure; returns the results dict and the segmentation it was measured on."""
    options = options or FunctionOptions()
    options.validate()
    segmentation = segment_cine(frames, segmenter, options.phases, progress, cancel, ijk_to_ras)
    started = time.perf_counter()
    results = measure_function(frames, segmentation.labels, ijk_to_ras, frame_times_ms, options)
    results["model"] = segmentation.model
    results["timing_s"] = {"inference": segmentation.inference_s, "orientation_check": segmentation.orientation_check_s,
                           "measurement": time.perf_counter() - started}
    results["ai_label_digests"] = {str(p): labels_digest(v) for p, v in segmentation.labels.items()}
    report(progress, 1.0, "measured")
    return results, segmentation
