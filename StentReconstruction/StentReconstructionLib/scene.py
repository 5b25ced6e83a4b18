"""MRML face of a stent reconstruction: per algorithm a model and an axis curve, the chosen result's struts,
tables of scores, measurements and cross-sections, and for a 4D CT the chosen device at every phase as model
and curve sequences synchronised with the 4D CT's browser; all referenced from the study's CardiacCase node.

Every function takes the scene as an argument; nothing here reads ``slicer.mrmlScene``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import slicer
from CardiacSuiteLib import mrml
from CardiacSuiteLib.case import CardiacCase, Key, Role
from CardiacSuiteLib.errors import InputError

from .devices import DeviceSpec
from .model import Reconstruction
from .workflow import StentRun, results_document

COLORS = {"A": (0.95, 0.85, 0.2), "B": (0.3, 0.8, 0.95), "C": (0.95, 0.45, 0.3)}
OTHER_COLOR = (0.7, 0.7, 0.7)
PART_NAMES = ("completeness", "continuity", "apposition", "image_fit", "consistency")


@dataclass
class StentNodes:
    models: dict = field(default_factory=dict)  # algorithm id -> model node
    axes: dict = field(default_factory=dict)  # algorithm id -> curve node
    struts: list = field(default_factory=list)  # curve nodes of the chosen result's struts
    table: object = None
    sections_table: object = None
    phase_table: object = None
    model_sequence: object = None
    axis_sequence: object = None
    browser: object = None
    volume: object = None
    case: CardiacCase | None = None


def color_of(algorithm_id: str) -> tuple[float, float, float]:
    return COLORS.get(algorithm_id, OTHER_COLOR)


def score_table_rows(run: StentRun) -> tuple[list[str], list[list], dict]:
    columns = ["Rank", "Algorithm", "Name", "Score"] + [p.replace("_", " ").capitalize() for p in PART_NAMES] + [
        "Length", "Mean diameter", "Min diameter", "Max diameter", "Max eccentricity", "Chosen", "Note"]
    rows = []
    for result in run.results:
        if result.ok:
            m = result.measurements
            parts = [("" if result.score.parts[p] is None else round(result.score.parts[p], 3)) for p in PART_NAMES]
            rows.append([result.rank, result.id, result.name, round(result.score.value, 3), *parts,
                         round(m["length_mm"], 2), round(m["diameter_mean_mm"], 2), round(m["diameter_min_mm"], 2),
                         round(m["diameter_max_mm"], 2), round(m["eccentricity_max"], 3),
                         "yes" if result.id == run.chosen_id else "", "; ".join(result.reconstruction.notes)])
        else:
            rows.append(["", result.id, result.name, "", *[""] * len(PART_NAMES), "", "", "", "", "", "",
                         f"no result: {result.failure}"])
    units = {"Length": "mm", "Mean diameter": "mm", "Min diameter": "mm", "Max diameter": "mm"}
    return columns, rows, units


def _sections_table(scene, run: StentRun, name: str):
    sections = run.chosen.measurements["sections"]
    keys = [k for k in sections if k != "s_mm"]
    columns = ["Position"] + keys
    rows = [[sections["s_mm"][i]] + [sections[k][i] for k in keys] for i in range(len(sections["s_mm"]))]
    units = {"Position": "mm", **{k: ("mm²" if k.endswith("mm2") else "mm" if k.endswith("_mm") else "") for k in keys}}
    return mrml.add_table(scene, name, columns, rows, units)


def _phase_table(scene, run: StentRun, name: str, unit: str):
    columns = [f"Phase ({unit})" if unit else "Phase", "Length", "Mean diameter", "Axis to centerline",
               "Consistency with metal", "Flagged"]
    rows = [[p.value, round(p.measurements["length_mm"], 3), round(p.measurements["diameter_mean_mm"], 3),
             round(p.axis_to_centerline_mm, 3), round(p.consistency_mm, 3), "; ".join(p.flags) or "no"]
            for p in run.phases]
    return mrml.add_table(scene, name, columns, rows, {"Length": "mm", "Mean diameter": "mm",
                                                        "Axis to centerline": "mm", "Consistency with metal": "mm"})


def _model_item(reconstruction: Reconstruction, name: str):
    node = slicer.vtkMRMLModelNode()
    node.SetName(name)
    node.SetAndObservePolyData(reconstruction.surface)
    return node


def _curve_item(points: np.ndarray, name: str):
    node = slicer.vtkMRMLMarkupsCurveNode()
    node.SetName(name)
    node.SetCurveTypeToLinear()
    mrml.set_curve_points(node, points)
    return node


def add_results(scene, run: StentRun, name: str = "Stent", case: CardiacCase | None = None, volume_node=None,
                stack=None, browser=None, volume_sequence=None, max_strut_curves: int = 400) -> StentNodes:
    """File a run in the scene.

    ``volume_node``: the CT the device was made on (for the command line, a crop around the device is added
    when None). For a 4D CT, ``stack`` and, when the scene already holds it, ``volume_sequence`` and its
    ``browser``: the moved devices are synchronised with that browser (a cropped volume sequence is added when
    there is none).
    """
    nodes = StentNodes()
    region = run.region
    if case is None:
        case = CardiacCase.get_or_create(scene, f"{name} study")
    nodes.case = case
    for role in (Role.STENT_MODEL, Role.STENT_AXIS, Role.STENT_STRUTS):
        case.clear_references(role)
    for result in run.results:
        if not result.ok:
            continue
        label = f"{name} {result.id} ({result.name}, rank {result.rank}, score {result.score.value:.2f})"
        chosen = result.id == run.chosen_id
        model = mrml.add_model(scene, result.reconstruction.surface, label, color_of(result.id),
                               opacity=1.0 if chosen else 0.6, visible=chosen)
        axis = mrml.add_curve(scene, result.reconstruction.axis, f"{name} {result.id} axis", color_of(result.id),
                              visible=chosen)
        nodes.models[result.id], nodes.axes[result.id] = model, axis
        case.add_reference(Role.STENT_MODEL, model)
        case.add_reference(Role.STENT_AXIS, axis)
    for index, strut in enumerate(run.chosen.reconstruction.struts[:max_strut_curves]):
        curve = mrml.add_curve(scene, strut, f"{name} {run.chosen_id} strut {index + 1}", color_of(run.chosen_id))
        nodes.struts.append(curve)
        case.add_reference(Role.STENT_STRUTS, curve)

    columns, rows, units = score_table_rows(run)
    nodes.table = mrml.add_table(scene, f"{name} results", columns, rows, units)
    nodes.sections_table = _sections_table(scene, run, f"{name} {run.chosen_id} cross-sections")
    case.set_reference(Role.STENT_TABLE, nodes.table)
    case.set_reference(Role.STENT_SECTIONS_TABLE, nodes.sections_table)

    if volume_node is None and stack is None:
        volume_node = mrml.add_volume(scene, region.image, region.ijk_to_ras, f"{name} CT (around the device)")
    if run.phases is not None and stack is not None:
        if volume_sequence is None or browser is None:
            from FourDCTLib.scene import add_phases

            volume_sequence, browser = add_phases(scene, stack, f"{name} 4D CT (around the device)", box=region.box)
        nodes.browser = browser
        nodes.model_sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{name} {run.chosen_id} over the cycle")
        nodes.axis_sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{name} {run.chosen_id} axis over the cycle")
        for sequence in (nodes.model_sequence, nodes.axis_sequence):
            sequence.SetIndexName(volume_sequence.GetIndexName())
            sequence.SetIndexUnit(volume_sequence.GetIndexUnit())
            sequence.SetIndexType(sequence.NumericIndex)
        for phase in run.phases:
            value = volume_sequence.GetNthIndexValue(phase.index)
            nodes.model_sequence.SetDataNodeAtValue(_model_item(phase.device, f"{name} {phase.label}"), value)
            nodes.axis_sequence.SetDataNodeAtValue(_curve_item(phase.device.axis, f"{name} axis {phase.label}"), value)
        browser.AddSynchronizedSequenceNode(nodes.model_sequence)
        browser.AddSynchronizedSequenceNode(nodes.axis_sequence)
        browser.SetSelectedItemNumber(run.phase)
        proxy = browser.GetProxyNode(nodes.model_sequence)
        if proxy is not None:
            proxy.SetName(f"{name} {run.chosen_id} (moving)")
            proxy.CreateDefaultDisplayNodes()
            proxy.GetDisplayNode().SetColor(*color_of(run.chosen_id))
        nodes.phase_table = _phase_table(scene, run, f"{name} phases", stack.index_unit)
        case.set_reference(Role.STENT_MODEL_SEQUENCE, nodes.model_sequence)
        case.set_reference(Role.STENT_AXIS_SEQUENCE, nodes.axis_sequence)
        case.set_reference(Role.STENT_PHASE_TABLE, nodes.phase_table)
        if volume_sequence is not None and case.reference(Role.CT4D_SEQUENCE) is None:
            case.set_reference(Role.CT4D_SEQUENCE, volume_sequence)
            case.set_reference(Role.CT4D_BROWSER, browser)
    nodes.volume = volume_node
    if volume_node is not None:
        case.set_reference(Role.STENT_VOLUME, volume_node)
    case.set_value(Key.STENT_RESULTS, _compact(results_document(run, stack)))
    return nodes


def _compact(document: dict) -> dict:
    """The results without the per-section arrays (they are in the cross-section table), for the case node."""
    compact = dict(document)
    compact["algorithms"] = []
    for entry in document["algorithms"]:
        entry = dict(entry)
        if entry.get("measurements"):
            entry["measurements"] = {k: v for k, v in entry["measurements"].items() if k != "sections"}
        entry.pop("score_details", None)
        compact["algorithms"].append(entry)
    return compact


# ------------------------------------------------------------------------------------------------ inputs


def extent_from_node(node) -> np.ndarray:
    """The device extent from a markups node: a curve's control points, or a point list's first two points."""
    points = mrml.curve_points(node)
    if node.IsA("vtkMRMLMarkupsCurveNode"):
        if len(points) < 2:
            raise InputError(f"curve '{node.GetName()}' needs at least 2 points along the device")
        return points
    if len(points) < 2:
        raise InputError(f"'{node.GetName()}' needs two points: the device's start and end")
    return points[:2]


def vessel_mask(segmentation_node, volume_node, segment_name: str | None = None) -> np.ndarray:
    """A vessel or root segmentation as a mask on the CT's grid (one named segment, or all of them)."""
    values = None
    if segment_name:
        segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
        if not segment_id:
            raise InputError(f"segmentation '{segmentation_node.GetName()}' has no segment '{segment_name}'")
        values = {segment_name: 1}
    labels = mrml.labelmap_from_segmentation(segmentation_node, volume_node, values)
    return labels > 0


def device_spec(kind: str, nominal_diameter_mm: float | None, nominal_length_mm: float | None) -> DeviceSpec:
    try:
        return DeviceSpec(kind, nominal_diameter_mm or None, nominal_length_mm or None)
    except ValueError as error:
        raise InputError(str(error)) from None


@dataclass
class SceneInputs:
    """What a reconstruction takes from the scene, read on the GUI thread."""

    image: np.ndarray
    ijk_to_ras: np.ndarray
    extent: np.ndarray
    vessel: np.ndarray | None
    phase: int
    stack: object = None  # PhaseStack of the 4D CT, when the volume is a sequence's proxy
    volume_sequence: object = None
    browser: object = None
    fields: object = None  # PhaseFields from the study's FourDCT transform sequence, when it has one
    case: CardiacCase | None = None


def read_inputs(scene, volume_node, extent_node, segmentation_node=None, segment_name: str | None = None,
                use_study_transforms: bool = True) -> SceneInputs:
    """The CT (a volume, or the shown phase of a 4D CT's sequence), the extent, the vessel and the study."""
    from FourDCTLib.scene import phases_from_sequence

    from .propagation import fields_from_sequence

    if volume_node is None or volume_node.GetImageData() is None:
        raise InputError("choose the CT volume that shows the device")
    extent = extent_from_node(extent_node) if extent_node is not None else None
    if extent is None:
        raise InputError("place the device's start and end points (or a curve along it)")
    image = mrml.array_from_volume(volume_node).astype(np.float32)
    ijk_to_ras = mrml.ijk_to_ras(volume_node)
    vessel = vessel_mask(segmentation_node, volume_node, segment_name) if segmentation_node is not None else None
    case = _case_of(scene, volume_node)
    inputs = SceneInputs(image, ijk_to_ras, extent, vessel, 0, case=case)
    browser = _browser_with_proxy(scene, volume_node)
    if browser is not None:
        sequence = browser.GetSequenceNode(volume_node)
        if sequence is not None and sequence.GetNumberOfDataNodes() > 1:
            inputs.stack = phases_from_sequence(sequence)
            inputs.volume_sequence, inputs.browser = sequence, browser
            inputs.phase = browser.GetSelectedItemNumber()
            transforms = case.reference(Role.CT4D_TRANSFORM_SEQUENCE) if case is not None else None
            if use_study_transforms and transforms is not None:
                inputs.fields = fields_from_sequence(transforms, sequence.GetNumberOfDataNodes(), transforms.GetName())
                inputs.fields.source = f"the study's phase transforms ({transforms.GetName()})"
    return inputs


def _browser_with_proxy(scene, volume_node):
    browsers = scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
    for index in range(browsers.GetNumberOfItems()):
        browser = browsers.GetItemAsObject(index)
        if browser.IsProxyNodeID(volume_node.GetID()):
            return browser
    return None


def _case_of(scene, volume_node) -> CardiacCase | None:
    """The study that references this volume (or its 4D sequence), else the scene's first study."""
    for case in CardiacCase.all(scene):
        for role in (Role.CT_VOLUME, Role.STENT_VOLUME, Role.CT4D_SEQUENCE):
            node = case.reference(role)
            if node is not None and node.GetID() == volume_node.GetID():
                return case
    browser = _browser_with_proxy(scene, volume_node)
    if browser is not None:
        sequence = browser.GetSequenceNode(volume_node)
        for case in CardiacCase.all(scene):
            node = case.reference(Role.CT4D_SEQUENCE)
            if node is not None and sequence is not None and node.GetID() == sequence.GetID():
                return case
    return CardiacCase.first(scene)


def run(inputs: SceneInputs, spec: DeviceSpec, algorithms=None, threshold_hu: float | None = None,
        progress=None, cancel=None) -> StentRun:
    """The reconstruction (and, for a 4D CT, the propagation) of scene inputs; touches no scene node."""
    from . import workflow

    four_d = inputs.stack is not None
    result = workflow.reconstruct(inputs.image, inputs.ijk_to_ras, inputs.extent, spec, inputs.vessel, algorithms,
                                  threshold_hu, inputs.phase,
                                  progress=None if progress is None else (lambda f, m: progress((0.5 if four_d else 1.0) * f, m)),
                                  cancel=cancel)
    if four_d:
        workflow.propagate(result, inputs.stack, inputs.fields,
                           progress=None if progress is None else (lambda f, m: progress(0.5 + 0.5 * f, m)), cancel=cancel)
    return result


def reconstruct_in_scene(scene, volume_node, extent_node, spec: DeviceSpec, segmentation_node=None,
                         segment_name: str | None = None, algorithms=None, name: str = "Stent") -> tuple[StentRun, StentNodes]:
    """Read the inputs, run, and file the results: the whole job in one call, for scripts and tests."""
    inputs = read_inputs(scene, volume_node, extent_node, segmentation_node, segment_name)
    result = run(inputs, spec, algorithms)
    nodes = add_results(scene, result, name, inputs.case, volume_node=volume_node, stack=inputs.stack,
                        browser=inputs.browser, volume_sequence=inputs.volume_sequence)
    return result, nodes
