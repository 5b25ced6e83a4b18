"""Planning results in the MRML scene: landmarks as an editable point list, the annular plane as a markups
plane, contours and centrelines as curves, the measurements as a table, each cross-section as a one-slice
volume where it lies in the patient; all referenced from the study's CardiacCase node.

The correction loop: the landmark positions as measured are kept on the point list (``AS_MEASURED``); after
the user moves points, :func:`edited_landmarks` gives the moved ones, and :func:`recompute` measures again
with them as given landmarks (everything that depends on them follows) and records them as edited.
Every function takes the scene as an argument.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from CardiacSuiteLib import mrml
from CardiacSuiteLib.case import CardiacCase, Key, Role

from . import workflow
from .model import PlanInputs, PlanResult

#: Point-list attribute holding the landmark positions as the protocol placed them (JSON, RAS mm).
AS_MEASURED = "CardiacSuite.PlanLandmarksAsMeasured"
#: Point-list attribute naming the protocol it belongs to.
PROTOCOL = "CardiacSuite.PlanProtocol"
#: Landmarks that are computed from others and are not edited themselves.
DERIVED_SOURCE = "derived"
COLORS = {"found": (0.2, 0.9, 0.3), "given": (1.0, 0.5, 0.1), "derived": (0.6, 0.6, 0.9)}
#: A landmark moved less than this has not been edited (mm).
MOVED_MM = 0.05


@dataclass
class PlanNodes:
    landmarks: object = None
    plane: object = None
    curves: dict = field(default_factory=dict)
    table: object = None
    sections: dict = field(default_factory=dict)
    volume: object = None
    case: CardiacCase | None = None


def _clear_protocol(scene, case: CardiacCase, protocol: str) -> None:
    """Remove this protocol's earlier nodes (a recompute replaces them), keeping the other protocols'."""
    for role in (Role.PLAN_LANDMARKS, Role.PLAN_PLANE, Role.PLAN_CURVE, Role.PLAN_TABLE, Role.PLAN_SECTION_IMAGE):
        keep = []
        for node in case.references(role):
            if node.GetAttribute(PROTOCOL) == protocol:
                scene.RemoveNode(node)
            else:
                keep.append(node)
        case.clear_references(role)
        for node in keep:
            case.add_reference(role, node)


def add_results(scene, result: PlanResult, document: dict, volume_node=None, case: CardiacCase | None = None,
                image: np.ndarray | None = None, ijk_to_ras: np.ndarray | None = None) -> PlanNodes:
    protocol = result.protocol
    title = workflow.TITLES[protocol]
    if case is None:
        case = CardiacCase.get_or_create(scene, "Planning study")
    _clear_protocol(scene, case, protocol)
    nodes = PlanNodes(case=case)
    if volume_node is None and image is not None:
        volume_node = mrml.add_volume(scene, image, ijk_to_ras, f"{title} CT")
    if volume_node is not None:
        nodes.volume = volume_node
        case.set_reference(Role.PLAN_VOLUME, volume_node)

    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{title} landmarks")
    points.CreateDefaultDisplayNodes()
    for name, point in result.landmarks.items():
        index = points.AddControlPoint(*[float(v) for v in point], name)
        source = result.landmark_sources.get(name, "found")
        points.SetNthControlPointDescription(index, source)
        if source == DERIVED_SOURCE:
            points.SetNthControlPointLocked(index, True)
    points.SetAttribute(AS_MEASURED, json.dumps({k: [float(x) for x in v] for k, v in result.landmarks.items()}))
    points.SetAttribute(PROTOCOL, protocol)
    nodes.landmarks = points
    case.add_reference(Role.PLAN_LANDMARKS, points)

    plane = (document.get("annulus") or {}).get("plane") or (document.get("landing_zone") or {}).get("plane")
    if plane:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsPlaneNode", f"{title} annular plane")
        node.CreateDefaultDisplayNodes()
        node.SetCenterWorld(*[float(v) for v in plane["centre_ras_mm"]])
        node.SetNormalWorld(*[float(v) for v in plane["normal"]])
        node.SetSize(40.0, 40.0)
        node.SetLocked(True)
        node.SetAttribute(PROTOCOL, protocol)
        nodes.plane = node
        case.add_reference(Role.PLAN_PLANE, node)

    for name, curve in result.curves.items():
        if curve is None or len(curve) < 2:
            continue
        node = mrml.add_curve(scene, np.asarray(curve, float), f"{title} {name.replace('_', ' ')}", (1.0, 0.85, 0.1))
        node.SetAttribute(PROTOCOL, protocol)
        nodes.curves[name] = node
        case.add_reference(Role.PLAN_CURVE, node)

    table = mrml.add_table(scene, f"{title} measurements", ["Measurement", "Value", "Unit"],
                           [[m, str(v), u] for m, v, u in result.table])
    table.SetAttribute(PROTOCOL, protocol)
    nodes.table = table
    case.add_reference(Role.PLAN_TABLE, table)

    for section in result.sections:
        if section.centre is None or section.u is None or section.v is None:
            continue
        matrix = workflow.section_geometry(section, np.asarray(section.centre), np.asarray(section.u),
                                           np.asarray(section.v))
        node = mrml.add_volume(scene, section.pixels[None].astype(np.float32), matrix,
                               f"{title} section {section.name}")
        node.SetAttribute(PROTOCOL, protocol)
        node.SetAttribute("CardiacSuite.SectionTitle", section.title)
        nodes.sections[section.name] = node
        case.add_reference(Role.PLAN_SECTION_IMAGE, node)

    results = case.value(Key.PLAN_RESULTS, {}) or {}
    results[protocol] = document
    case.set_value(Key.PLAN_RESULTS, results)
    return nodes


def landmark_positions(points_node) -> dict[str, np.ndarray]:
    out = {}
    for index in range(points_node.GetNumberOfControlPoints()):
        position = np.zeros(3)
        points_node.GetNthControlPointPositionWorld(index, position)
        out[points_node.GetNthControlPointLabel(index)] = position
    return out


def edited_landmarks(points_node) -> dict[str, np.ndarray]:
    """Landmarks the user moved since the protocol placed them, plus those given before (they stay given)."""
    measured = json.loads(points_node.GetAttribute(AS_MEASURED) or "{}")
    out = {}
    for index in range(points_node.GetNumberOfControlPoints()):
        label = points_node.GetNthControlPointLabel(index)
        source = points_node.GetNthControlPointDescription(index)
        if source == DERIVED_SOURCE:
            continue
        position = np.zeros(3)
        points_node.GetNthControlPointPositionWorld(index, position)
        before = measured.get(label)
        if source == "given" or before is None or np.linalg.norm(position - np.asarray(before)) > MOVED_MM:
            out[label] = position
    return out


def inputs_from_volume(volume_node, labels: np.ndarray | None = None, label_names: dict | None = None,
                       **options) -> PlanInputs:
    return PlanInputs(mrml.array_from_volume(volume_node).astype(np.float32), mrml.ijk_to_ras(volume_node),
                      labels=labels, label_names=label_names or {}, **options)


def plan_in_scene(scene, protocol: str, volume_node, landmarks: dict | None = None, segmentation_node=None,
                  curves: dict | None = None, valve_size_mm: float | None = None, vessel: str | None = None,
                  case: CardiacCase | None = None, phase_label: str = "") -> tuple[PlanResult, PlanNodes]:
    """Measure one protocol on a volume of the scene and file the results (what the module's Logic runs)."""
    labels, names = None, {}
    if segmentation_node is not None:
        labels = mrml.labelmap_from_segmentation(segmentation_node, volume_node)
        segmentation = segmentation_node.GetSegmentation()
        names = {index + 1: segmentation.GetNthSegment(index).GetName().lower()
                 for index in range(segmentation.GetNumberOfSegments())}
    inputs = inputs_from_volume(volume_node, labels, names, landmarks=landmarks or {}, curves=curves or {},
                                valve_size_mm=valve_size_mm, vessel=vessel, phase_label=phase_label)
    result = workflow.measure(protocol, inputs)
    document = workflow.results_document(result, inputs)
    if case is None:
        case = CardiacCase.first(scene) or CardiacCase.get_or_create(scene, "Planning study")
    nodes = add_results(scene, result, document, volume_node=volume_node, case=case)
    return result, nodes


def recompute(scene, case: CardiacCase, protocol: str, **options) -> tuple[PlanResult, PlanNodes]:
    """Measure a protocol again after the user moved landmarks: the moved ones are given, the rest found again."""
    points = next((n for n in case.references(Role.PLAN_LANDMARKS) if n.GetAttribute(PROTOCOL) == protocol), None)
    if points is None:
        raise ValueError(f"the study has no {workflow.TITLES[protocol]} landmarks to recompute from")
    volume = case.reference(Role.PLAN_VOLUME)
    if volume is None:
        raise ValueError("the study has no planning CT")
    return plan_in_scene(scene, protocol, volume, landmarks=edited_landmarks(points), case=case, **options)
