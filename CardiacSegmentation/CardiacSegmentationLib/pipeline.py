"""The CT segmentation jobs end to end: arrays in, results (and, given a scene, MRML nodes) out.

Shared by the Slicer module (which passes ``slicer.mrmlScene``), the ``cardiacsuite`` command line and the
tests. ``segment_heart`` runs a mode or preset on a CT array; ``trace_coronary`` traces the coronary trees;
``add_*_to_scene`` turn the results into a segmentation with standard terminology, centerline curves with
radius, point lists and tables, filed under the study's CardiacCase node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from CardiacSuiteLib.errors import InputError

from CardiacSuiteLib.geometry import Grid

MYOCARDIUM_DENSITY_G_PER_ML = 1.05
ROLE_CORONARY_SEGMENTATION = "CTCoronarySegmentation"
ROLE_CORONARY_CENTERLINE = "CTCoronaryCenterline"
ROLE_CORONARY_OSTIA = "CTCoronaryOstia"
ROLE_MEASUREMENTS = "CTMeasurementTable"


@dataclass
class HeartResult:
    labels: np.ndarray  # [K, J, I] uint8, values 0–7 on the CT grid
    ijk_to_ras: np.ndarray
    mode: str
    results: dict = field(default_factory=dict)  # JSON-ready figures
    aorta: object = None  # AortaTrace when the aorta was followed


@dataclass
class CoronaryOutput:
    result: object  # coronary.CoronaryResult
    ostia: dict[str, np.ndarray]
    results: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- measures


def structure_volumes(labels: np.ndarray, ijk_to_ras: np.ndarray) -> dict[str, float]:
    from .scene import HEART_STRUCTURES

    voxel_ml = float(abs(np.linalg.det(ijk_to_ras[:3, :3]))) / 1000.0
    counts = np.bincount(labels.ravel(), minlength=8)
    return {s.name: round(float(counts[s.value]) * voxel_ml, 2) for s in HEART_STRUCTURES}


def check_image(image: np.ndarray, modality: str = "") -> None:
    """Refuse what is not a single CT volume in HU."""
    from .chambers import check_ct

    if modality and modality.upper() not in ("CT", ""):
        raise InputError(f"this series is {modality}, not CT: the CT segmentation needs a contrast-enhanced cardiac CT")
    if image.ndim != 3:
        raise InputError(f"a single 3D CT volume is needed; this image has shape {image.shape}")
    check_ct(image)


# ---------------------------------------------------------------------------------------------- chambers


def segment_heart(
    image: np.ndarray,
    ijk_to_ras: np.ndarray,
    mode: str = "auto",
    seeds: dict[int, list[np.ndarray]] | None = None,
    atlas_path: str | None = None,
    progress=None,
) -> HeartResult:
    """Chambers, myocardium, aorta and pulmonary artery by the mode's method; volumes and preset measurements."""
    from .presets import get_preset

    preset = get_preset(mode)
    started = time.perf_counter()
    check_image(image)
    results: dict = {"mode": preset.name, "preset": preset.title, "measurements_prepared": list(preset.measurements)}
    trace = None
    if preset.chambers == "seeds":
        from .seeds import grow_from_seeds

        if not seeds:
            raise InputError("the semi-automatic mode needs seeds (--seeds FILE: structure name -> [[R, A, S], ...])")
        if progress:
            progress(0.1, "growing the structures from their seeds")
        labels = grow_from_seeds(image, ijk_to_ras, seeds)
        results["method"] = "grow from seeds (Slicer vtkImageGrowCutSegment), largest piece per structure, holes filled, median smoothing 1 mm"
        results["seeds"] = {str(k): len(v) for k, v in seeds.items()}
    else:
        from .atlas import load_atlas
        from .chambers import segment_chambers

        atlas = load_atlas(atlas_path)
        chamber = segment_chambers(
            image,
            ijk_to_ras,
            atlas,
            working_spacing_mm=preset.working_spacing_mm,
            whole_aorta=preset.whole_aorta,
            progress=progress,
        )
        labels = chamber.labels
        trace = chamber.aorta
        results["method"] = (
            "weight-free: whole-heart atlas registered to the CT (affine + demons on an atlas image synthesised from"
            " this CT's intensities), then per-voxel classification with the fitted intensity model and the atlas"
            " as spatial prior"
        )
        results["atlas"] = atlas.source
        results["intensity_model"] = chamber.model.as_dict()
        results["registration"] = chamber.registration
        results["timing_s_steps"] = {k: round(v, 2) for k, v in chamber.timings_s.items()}
    volumes = structure_volumes(labels, ijk_to_ras)
    results["structures"] = {name: {"volume_ml": value} for name, value in volumes.items()}
    results["lv_myocardial_mass_g"] = round(volumes["Left ventricle myocardium"] * MYOCARDIUM_DENSITY_G_PER_ML, 1)
    results["lv_myocardial_mass_method"] = f"myocardium volume x {MYOCARDIUM_DENSITY_G_PER_ML} g/ml"
    missing = [name for name, value in volumes.items() if value <= 0.0]
    if missing:
        results["warnings"] = [f"empty structure(s): {', '.join(missing)}"]
    if preset.valve:
        from .valve import valve_measurements

        if progress:
            progress(0.97, "measuring the aortic root, mitral annulus and pulmonary root")
        results["valve"] = valve_measurements(labels, ijk_to_ras)
    if trace is not None:
        results["aorta_centerline"] = {"length_mm": round(trace.length_mm, 1), "tracking_stopped": trace.stopped}
    results["timing_s"] = round(time.perf_counter() - started, 2)
    return HeartResult(labels, ijk_to_ras, preset.name, results, trace)


# ---------------------------------------------------------------------------------------------- coronary


def trace_coronary(
    image: np.ndarray,
    ijk_to_ras: np.ndarray,
    ostia: dict[str, np.ndarray],
    path_points: dict[str, list[np.ndarray]] | None = None,
    heart_labels: np.ndarray | None = None,
    working_spacing_mm: float = 0.6,
    progress=None,
) -> CoronaryOutput:
    """Coronary trees from the user-marked ostia (RAS mm), with the chamber segmentation as exclusion if given."""
    from .coronary import trace_coronaries

    check_image(image)
    if not ostia:
        raise InputError("give the coronary ostia (--ostium-left and/or --ostium-right R,A,S in mm)")
    result = trace_coronaries(
        image, ijk_to_ras, ostia, path_points, heart_labels=heart_labels, working_spacing_mm=working_spacing_mm,
        progress=progress,
    )
    vessels = {}
    for side, tree in result.trees.items():
        for index, branch in enumerate(tree.branches):
            vessels[branch.name] = {
                "side": side,
                "parent": tree.branches[branch.parent].name if branch.parent is not None else None,
                "proposed_side_branch": "branch" in branch.name,
                "accepted": branch.accepted,
                **branch.measurements(),
            }
    results = {
        "ostia_ras_mm": {side: [round(float(v), 2) for v in point] for side, point in ostia.items()},
        "vessels": vessels,
        "levels_hu": {k: round(float(v), 1) for k, v in result.levels.items()},
        "method": "minimal paths on lumen intensity + multi-scale tubularity from the ostia, centred at full"
        " resolution on the half-maximum lumen; side branches of at least 1.5 mm diameter proposed",
        "timing_s_steps": {k: round(v, 2) for k, v in result.timings_s.items() if isinstance(v, float)},
    }
    if heart_labels is not None:
        from .valve import AORTA, LV, contact_points, fit_plane

        grid = Grid(image.shape, ijk_to_ras)
        contact = contact_points(heart_labels, grid, AORTA, LV)
        if len(contact) >= 10:
            plane = fit_plane(contact, grid.kji_to_ras(np.argwhere(heart_labels == AORTA).mean(axis=0))[0])
            results["ostium_height_above_annulus_plane_mm"] = {
                side: round(float(np.dot(point - plane.centre, plane.normal)), 1) for side, point in ostia.items()
            }
    return CoronaryOutput(result, ostia, results)


# ---------------------------------------------------------------------------------------------- scene


def add_heart_to_scene(scene, heart: HeartResult, volume_node=None, case=None, name: str = "Heart"):
    """The segmentation (standard terminology) and a volumes table; filed under the study when given."""
    from CardiacSuiteLib import mrml

    from .scene import HEART_STRUCTURES, add_labelmap_segmentation

    segmentation = add_labelmap_segmentation(scene, heart.labels, heart.ijk_to_ras, HEART_STRUCTURES, name, volume_node)
    rows = [(s["volume_ml"] if isinstance(s, dict) else s) for s in heart.results["structures"].values()]
    table = mrml.add_table(
        scene,
        f"{name} measurements",
        ["Structure", "Volume"],
        [[structure, value] for structure, value in zip(heart.results["structures"], rows)]
        + [["Left ventricle myocardial mass (g)", heart.results["lv_myocardial_mass_g"]]],
        units={"Volume": "ml"},
    )
    if case is not None:
        from CardiacSuiteLib.case import Role

        if volume_node is not None:
            case.set_reference(Role.CT_VOLUME, volume_node)
        case.set_reference(Role.CT_SEGMENTATION, segmentation)
        case.set_reference(ROLE_MEASUREMENTS, table)
        case.set_value("CTSegmentationMode", heart.mode)
    return segmentation, table


def add_coronary_to_scene(scene, output: CoronaryOutput, volume_node=None, case=None, name: str = "Coronary arteries"):
    """Left/right tree segmentation, one centerline curve (with radius) per branch, the ostia, a table."""
    from CardiacSuiteLib import mrml

    from .scene import CORONARY_STRUCTURES, add_centerline_curve, add_labelmap_segmentation, add_point_list

    result = output.result
    segmentation = add_labelmap_segmentation(
        scene, result.labels, result.grid.ijk_to_ras, CORONARY_STRUCTURES, name, volume_node
    )
    curves = []
    for side, tree in result.trees.items():
        color = (0.95, 0.8, 0.2) if side == "left" else (0.95, 0.6, 0.1)
        for branch in tree.branches:
            if branch.accepted:
                curve = add_centerline_curve(scene, branch.name, branch.points, branch.radii, color=color)
                curve.SetAttribute("CardiacSuite.Side", side)
                curves.append(curve)
    ostia = add_point_list(scene, "Coronary ostia", {f"{side} ostium": point for side, point in output.ostia.items()})
    rows = [
        [vessel, values["side"], values["length_mm"], values["min_lumen_diameter_mm"], values["mean_lumen_diameter_mm"]]
        for vessel, values in output.results["vessels"].items()
        if values["accepted"]
    ]
    table = mrml.add_table(
        scene,
        f"{name} measurements",
        ["Vessel", "Side", "Length", "Minimal lumen diameter", "Mean lumen diameter"],
        rows,
        units={"Length": "mm", "Minimal lumen diameter": "mm", "Mean lumen diameter": "mm"},
    )
    if case is not None:
        case.set_reference(ROLE_CORONARY_SEGMENTATION, segmentation)
        case.set_reference(ROLE_CORONARY_OSTIA, ostia)
        case.node.RemoveNodeReferenceIDs(ROLE_CORONARY_CENTERLINE)
        for curve in curves:
            case.node.AddNodeReferenceID(ROLE_CORONARY_CENTERLINE, curve.GetID())
    return segmentation, curves, ostia, table
