"""LV volumes and ejection fraction of a cardiac CT, two ways: the CMR method on the reformatted short-axis stack
and the direct voxel count in the CT.

The cavity is first re-decided by intensity inside the segmented LV (cavity and myocardium): a voxel is blood
when it is brighter than half-way between the cavity's and the myocardium's median HU, the usual threshold of
CT blood-pool volumetry, which cuts a blurred blood/muscle edge where the image crosses half its contrast. The
segmentation keeps deciding where the LV ends at the mitral and aortic valve planes (blood on both sides, where
intensity cannot tell). The short-axis figures come from ``CMRAnalysisLib.function.measure_function`` (area per
slice x slice spacing), so the CT is measured exactly as a CMR cine is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from CardiacSuiteLib.geometry import Grid, voxel_ml

from .reformat import LEFT_VENTRICLE, LV_MYOCARDIUM, RIGHT_VENTRICLE

MIN_CONTRAST_HU = 100.0  # blood brighter than myocardium by less than this: intensity cannot place the edge
CAVITY_METHOD = (
    "LV cavity re-decided inside the segmented LV (cavity + myocardium): blood where HU > half-way between the"
    " cavity's and the myocardium's median HU, largest connected piece; the valve planes as segmented"
)
SAX_METHOD = (
    "slice summation on the reformatted short axis (the CMR method): LV cavity area of each slice x slice spacing,"
    " the area measured through the slice's thickness (mean of planes 1 mm apart across it), as a thick CMR slice"
    " holds it"
)
CENTRE_PLANE_METHOD = (
    "the CMR function analysis (CMRAnalysisLib) on the short-axis labels at each slice's centre plane: area x"
    " slice spacing; with 8 mm slices its volumes move with where the slices fall on the base and apex"
)
VOXEL_METHOD = "voxel count in the CT: LV cavity voxels x voxel volume"
ALL_SLICES = (
    "every short-axis slice that shows LV cavity counts: the CT segmentation bounds the LV at the mitral and"
    " aortic valve planes, so the CMR basal-slice rule (for cines, where the atrium shows) is not applied"
)


def refine_cavity(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """Labels with the LV cavity/myocardium edge placed by intensity, and the levels used (HU).

    Where the contrast between blood and myocardium is too low to use, the labels are returned unchanged and
    the record says so.
    """
    from CardiacSuiteLib.inference.segment2d import keep_largest_components

    cavity, myocardium = labels == LEFT_VENTRICLE, labels == LV_MYOCARDIUM
    record: dict = {"method": CAVITY_METHOD}
    if cavity.sum() < 10 or myocardium.sum() < 10:
        record["applied"] = False
        record["reason"] = "no LV myocardium segmented: the cavity is counted as segmented"
        return labels, record
    blood_hu = float(np.median(image[cavity]))
    muscle_hu = float(np.median(image[myocardium]))
    record.update({"blood_hu": round(blood_hu, 1), "myocardium_hu": round(muscle_hu, 1)})
    if blood_hu - muscle_hu < MIN_CONTRAST_HU:
        record["applied"] = False
        record["reason"] = (f"blood only {blood_hu - muscle_hu:.0f} HU brighter than myocardium (< {MIN_CONTRAST_HU:.0f}"
                            " HU): the cavity is counted as segmented")
        return labels, record
    threshold = 0.5 * (blood_hu + muscle_hu)
    region = cavity | myocardium
    blood = keep_largest_components((region & (image > threshold)).astype(np.uint8), [1]) == 1
    refined = labels.copy()
    refined[region] = LV_MYOCARDIUM
    refined[blood] = LEFT_VENTRICLE
    record.update({"applied": True, "threshold_hu": round(threshold, 1)})
    return refined, record


def slab_areas_mm2(labels: np.ndarray, ijk_to_ras: np.ndarray, short_axis: Grid, step_mm: float = 1.0,
                   value: int = LEFT_VENTRICLE) -> np.ndarray:
    """Area (mm²) of one label in each short-axis slice, averaged over planes ``step_mm`` apart across the
    slice's thickness (its spacing): the slab's own content, so that area x spacing sums to the LV volume."""
    from CMRAnalysisLib.volumes import slice_areas_mm2, slice_spacing_mm

    from .reformat import reformat_labels, slab_planes

    planes = slab_planes(short_axis, slice_spacing_mm(short_axis.ijk_to_ras), step_mm)
    areas = np.zeros(short_axis.shape[0])
    for plane in planes:
        areas += slice_areas_mm2(reformat_labels(labels, ijk_to_ras, plane) == value, plane.ijk_to_ras)
    return areas / len(planes)


def summed_volume_ml(areas_mm2: np.ndarray, short_axis: Grid) -> float:
    """Σ slice area x slice spacing (ml), as ``CMRAnalysisLib.volumes.disc_volume_ml`` sums it."""
    from CMRAnalysisLib.volumes import slice_spacing_mm

    return float(np.sum(areas_mm2) * slice_spacing_mm(short_axis.ijk_to_ras) / 1000.0)


def voxel_volume_ml(labels: np.ndarray, ijk_to_ras: np.ndarray, value: int = LEFT_VENTRICLE) -> float:
    """Volume of one label by voxel count (ml)."""
    return float((labels == value).sum()) * voxel_ml(ijk_to_ras)


def ejection(volumes_ml: Sequence[float]) -> dict:
    """End diastole (largest), end systole (smallest), EDV, ESV, SV (ml) and EF (%) of a volume curve."""
    from CMRAnalysisLib.volumes import ejection as ejection_figures
    from CMRAnalysisLib.volumes import end_diastole_and_systole

    curve = np.asarray(volumes_ml, dtype=float)
    ed, es = end_diastole_and_systole(curve)
    entry = {"ed_phase": ed, "es_phase": es, "edv_ml": float(curve[ed]), "esv_ml": float(curve[es])}
    if len(curve) > 1:
        entry.update(ejection_figures(entry["edv_ml"], entry["esv_ml"]))
    else:
        entry.update({"sv_ml": None, "ef_pct": None})
    return entry


def cmr_labels(ct_labels: np.ndarray) -> np.ndarray:
    """CT label values (MM-WHS) as the CMR analysis numbers them: 1 RV, 2 LV myocardium, 3 LV cavity."""
    from CMRAnalysisLib.function import LABELS, LV, MYOCARDIUM, RV

    out = np.zeros(ct_labels.shape, np.uint8)
    out[ct_labels == RIGHT_VENTRICLE] = LABELS[RV]
    out[ct_labels == LV_MYOCARDIUM] = LABELS[MYOCARDIUM]
    out[ct_labels == LEFT_VENTRICLE] = LABELS[LV]
    return out


def short_axis_function(frames: np.ndarray, labels: dict[int, np.ndarray], ijk_to_ras: np.ndarray,
                        frame_times_ms: list[float] | None = None) -> dict:
    """The CMR function analysis (``measure_function``) on a reformatted short-axis stack.

    ``frames`` is ``[T, K, J, I]`` HU, ``labels`` per phase in CT values on the same grid. Every slice counts
    (see ``ALL_SLICES``); papillary muscles are counted as blood, as the CMR analysis does by default.
    """
    from CMRAnalysisLib.function import FunctionOptions, measure_function

    slices = frames.shape[1]
    options = FunctionOptions(slice_inclusion=[True] * slices)
    results = measure_function(frames, {p: cmr_labels(v) for p, v in labels.items()}, ijk_to_ras, frame_times_ms,
                               options)
    results["method"]["basal_and_apical_slices"] = ALL_SLICES
    return results


def compare_curves(reformat_ml: Sequence[float], fourdct_ml: Sequence[float], labels: Sequence[str]) -> dict:
    """Per phase, the short-axis LV volume beside FourDCT's propagated LV volume (ml), and each curve's EF (%)."""
    reformat, fourdct = np.asarray(reformat_ml, float), np.asarray(fourdct_ml, float)
    return {
        "phases": [
            {"label": label, "short_axis_ml": round(float(a), 2), "fourdct_ml": round(float(b), 2),
             "difference_ml": round(float(a - b), 2)}
            for label, a, b in zip(labels, reformat, fourdct)
        ],
        "short_axis": ejection(reformat),
        "fourdct": ejection(fourdct),
        "mean_absolute_difference_ml": round(float(np.mean(np.abs(reformat - fourdct))), 2),
    }
