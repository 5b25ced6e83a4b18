"""The CT segmentation jobs end to end: arrays in, results (and, given a scene, MRML nodes) out.

The one workflow behind the Slicer module and the ``cardiacsuite`` command line: a
:class:`SegmentationRequest` holds what a run needs (read from the scene by :func:`request_from_nodes`, or
from files by the command line); :func:`run_segmentation` and :func:`run_coronary_tracing` compute without
touching the scene, report progress and stop at a cancel; :func:`add_run_to_scene` and the ``add_*_to_scene``
functions turn the results into a segmentation with standard terminology, centerline curves with radius,
point lists and tables, filed under the study's CardiacCase node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.geometry import Grid
from CardiacSuiteLib.inference import CancelToken, ProgressCallback
from CardiacSuiteLib.vocabulary import Attribute, Key, Role

from .presets import LEFT

MYOCARDIUM_DENSITY_G_PER_ML = 1.05


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


@dataclass
class SegmentationRequest:
    """Everything one run needs, read beforehand: the compute never reads the scene (it may run in a worker)."""

    image: np.ndarray  # [K, J, I] HU
    ijk_to_ras: np.ndarray
    mode: str = "auto"
    seeds: dict[int, list[np.ndarray]] | None = None  # semi mode: label value -> points (RAS mm)
    ostia: dict[str, np.ndarray] = field(default_factory=dict)  # side -> ostium (RAS mm)
    path_points: dict[str, list[np.ndarray]] = field(default_factory=dict)  # side -> points along a vessel
    atlas_path: str | None = None
    heart_labels: np.ndarray | None = None  # an existing chamber segmentation, excluded when tracing


@dataclass
class SegmentationRun:
    """What one run computed: the heart (``None`` for a tracing alone) and, when traced, the coronary trees."""

    heart: HeartResult | None
    coronary: CoronaryOutput | None = None


@dataclass
class SceneOutputs:
    """The nodes a run added to the scene (``None`` where the run made none of that kind)."""

    segmentation: object = None
    table: object = None
    curves: list = field(default_factory=list)  # the aorta's centerline, when it was traced
    coronary_segmentation: object = None
    coronary_curves: list = field(default_factory=list)
    coronary_ostia: object = None
    coronary_table: object = None
    case: object = None  # the CardiacCase the nodes are filed under
    summary: str = ""  # one line for the user


def cancellable(progress: ProgressCallback | None, cancel: CancelToken | None) -> ProgressCallback | None:
    """A progress callback that also stops the work at a cancel: every step that reports progress checks it."""
    if cancel is None:
        return progress

    def report(fraction: float, message: str) -> None:
        cancel.raise_if_cancelled()
        if progress is not None:
            progress(fraction, message)

    return report


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
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> HeartResult:
    """Chambers, myocardium, aorta and pulmonary artery by the mode's method; volumes and preset measurements.

    ``cancel`` stops the work (``Cancelled``) at its next progress report or between steps.
    """
    from .presets import get_preset

    preset = get_preset(mode)
    started = time.perf_counter()
    progress = cancellable(progress, cancel)
    check_image(image)
    results: dict = {"mode": preset.name, "preset": preset.title, "measurements_prepared": list(preset.measurements)}
    trace = None
    if preset.needs_seeds:
        from .seeds import grow_from_seeds

        if not seeds:
            raise InputError(
                "the semi-automatic mode needs seed points inside the structures, each named after its structure"
                " (LV, LA, RV, RA, Myo, Ao, PA, Background)"
            )
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
    if cancel is not None:
        cancel.raise_if_cancelled()
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
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> CoronaryOutput:
    """Coronary trees from the user-marked ostia (RAS mm), with the chamber segmentation as exclusion if given."""
    from .coronary import trace_coronaries

    progress = cancellable(progress, cancel)
    check_image(image)
    if not ostia:
        raise InputError("the coronary tracing needs at least one ostium: the left and/or right coronary ostium (RAS mm)")
    result = trace_coronaries(
        image, ijk_to_ras, ostia, path_points, heart_labels=heart_labels, working_spacing_mm=working_spacing_mm,
        progress=progress,
    )
    if cancel is not None:
        cancel.raise_if_cancelled()
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


# ---------------------------------------------------------------------------------------------- workflow


def run_segmentation(
    request: SegmentationRequest, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> SegmentationRun:
    """Run the request's mode: the heart, then (coronary preset) the coronary trees with the heart excluded."""
    from .presets import get_preset

    preset = get_preset(request.mode)
    if cancel is not None:
        cancel.raise_if_cancelled()
    if preset.needs_ostia and not request.ostia:
        raise InputError("the coronary preset needs the left and/or right coronary ostium")
    heart = segment_heart(
        request.image, request.ijk_to_ras, request.mode, seeds=request.seeds, atlas_path=request.atlas_path,
        progress=progress, cancel=cancel,
    )
    coronary = None
    if preset.coronary:
        coronary = trace_coronary(
            request.image, request.ijk_to_ras, request.ostia, request.path_points or None, heart_labels=heart.labels,
            working_spacing_mm=preset.coronary_spacing_mm, progress=progress, cancel=cancel,
        )
    return SegmentationRun(heart, coronary)


def run_coronary_tracing(
    request: SegmentationRequest, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> CoronaryOutput:
    """Trace the coronary trees of a request (its ostia, path points and existing chamber segmentation)."""
    if cancel is not None:
        cancel.raise_if_cancelled()
    return trace_coronary(
        request.image, request.ijk_to_ras, request.ostia, request.path_points or None,
        heart_labels=request.heart_labels, progress=progress, cancel=cancel,
    )


def request_from_nodes(
    volume_node, mode: str = "auto", seeds_node=None, ostia_node=None, path_points_node=None, atlas_path: str = "",
    heart_segmentation=None,
) -> SegmentationRequest:
    """Read a run's inputs from MRML nodes (on the thread that owns the scene): the CT's voxels, the seeds the
    mode needs, the first ostium per side, path points, and an existing chamber segmentation's labels."""
    from CardiacSuiteLib import mrml

    from .presets import get_preset
    from .scene import HEART_STRUCTURES, points_by_side
    from .seeds import seeds_from_point_list

    preset = get_preset(mode)
    heart_labels = None
    if heart_segmentation is not None:
        heart_labels = mrml.labelmap_from_segmentation(
            heart_segmentation, volume_node, {s.name: s.value for s in HEART_STRUCTURES}
        )
    return SegmentationRequest(
        image=mrml.array_from_volume(volume_node),
        ijk_to_ras=mrml.ijk_to_ras(volume_node),
        mode=mode,
        seeds=seeds_from_point_list(seeds_node) if (preset.needs_seeds and seeds_node is not None) else None,
        ostia={side: points[0] for side, points in points_by_side(ostia_node).items()},
        path_points=points_by_side(path_points_node),
        atlas_path=atlas_path or None,
        heart_labels=heart_labels,
    )


def study_case(scene, volume_node, case_node=None):
    """The study the results are filed under: the given CardiacCase node, or the volume's own study."""
    from CardiacSuiteLib.case import CardiacCase

    if case_node is not None:
        return CardiacCase(case_node)
    return CardiacCase.get_or_create(scene, f"{volume_node.GetName()} study")


def heart_summary(heart: HeartResult) -> str:
    """One line for the user: ventricular volumes, myocardial mass and how long it took."""
    volumes = heart.results["structures"]
    return (
        f"LV {volumes['Left ventricle']['volume_ml']:.0f} ml, RV {volumes['Right ventricle']['volume_ml']:.0f} ml,"
        f" LV myocardium {heart.results['lv_myocardial_mass_g']:.0f} g ({heart.results['timing_s']:.0f} s)."
    )


def coronary_summary(output: CoronaryOutput) -> str:
    """One line for the user: how many vessels were traced and which were named."""
    vessels = output.results["vessels"]
    named = [name for name, values in vessels.items() if not values["proposed_side_branch"]]
    return (
        f"Traced {len(vessels)} vessels ({', '.join(named) or '-'}) in {output.result.timings_s['total']:.0f} s."
    )


def run_summary(run: SegmentationRun) -> str:
    parts = [heart_summary(run.heart)] if run.heart is not None else []
    if run.coronary is not None:
        parts.append(coronary_summary(run.coronary))
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------- scene


def add_run_to_scene(
    scene, run: SegmentationRun, volume_node=None, case=None, name: str = "Heart", coronary_name: str = "Coronary arteries"
) -> SceneOutputs:
    """Every node a run makes, in the same order for the Slicer module and the command line: the heart
    segmentation and its table, the aorta's centerline, then the coronary trees."""
    from .scene import add_centerline_curve

    outputs = SceneOutputs(case=case, summary=run_summary(run))
    if run.heart is not None:
        outputs.segmentation, outputs.table = add_heart_to_scene(scene, run.heart, volume_node, case, name)
        if run.heart.aorta is not None:
            trace = run.heart.aorta
            outputs.curves.append(add_centerline_curve(scene, "Aorta", trace.points, trace.radii, step_mm=2.0))
    if run.coronary is not None:
        (outputs.coronary_segmentation, outputs.coronary_curves, outputs.coronary_ostia,
         outputs.coronary_table) = add_coronary_to_scene(scene, run.coronary, volume_node, case, coronary_name)
    return outputs




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
        if volume_node is not None:
            case.set_reference(Role.CT_VOLUME, volume_node)
        case.set_reference(Role.CT_SEGMENTATION, segmentation)
        case.set_reference(Role.CT_MEASUREMENTS, table)
        case.set_value(Key.CT_SEGMENTATION_MODE, heart.mode)
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
        color = (0.95, 0.8, 0.2) if side == LEFT else (0.95, 0.6, 0.1)
        for branch in tree.branches:
            if branch.accepted:
                curve = add_centerline_curve(scene, branch.name, branch.points, branch.radii, color=color)
                curve.SetAttribute(Attribute.SIDE, side)
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
        case.set_reference(Role.CT_CORONARY_SEGMENTATION, segmentation)
        case.set_reference(Role.CT_CORONARY_OSTIA, ostia)
        case.node.RemoveNodeReferenceIDs(Role.CT_CORONARY_CENTERLINE)
        for curve in curves:
            case.node.AddNodeReferenceID(Role.CT_CORONARY_CENTERLINE, curve.GetID())
    return segmentation, curves, ostia, table


def branch_rows(output: CoronaryOutput) -> list[tuple[str, bool, str]]:
    """(name, accepted, length and mean diameter) of every traced branch, for a user to accept or reject."""
    rows = []
    for tree in output.result.trees.values():
        for branch in tree.branches:
            m = branch.measurements()
            rows.append((branch.name, branch.accepted, f"{m['length_mm']:.0f} mm, mean {m['mean_lumen_diameter_mm']:.1f} mm"))
    return rows


def set_branch_accepted(output: CoronaryOutput, segmentation, curves: dict, name: str, accepted: bool) -> None:
    """Accept or reject a traced branch: its lumen joins or leaves the segmentation, its centerline is shown or
    hidden, and the results record the choice."""
    from CardiacSuiteLib import mrml

    from .coronary import render_trees
    from .scene import CORONARY_STRUCTURES

    for tree in output.result.trees.values():
        for branch in tree.branches:
            if branch.name == name:
                branch.accepted = accepted
    labels = render_trees(output.result.trees, output.result.grid)
    mrml.fill_segmentation_from_labelmap(
        segmentation, labels, output.result.grid.ijk_to_ras,
        [mrml.SegmentSpec(s.value, s.name, s.color) for s in CORONARY_STRUCTURES],
    )
    if name in curves and curves[name].GetDisplayNode() is not None:
        curves[name].GetDisplayNode().SetVisibility(accepted)
    output.results["vessels"][name]["accepted"] = accepted
