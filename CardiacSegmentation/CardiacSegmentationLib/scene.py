"""MRML face of the CT segmentation: segmentations with standard terminology, centerline curves, tables.

Every function takes the scene (or nodes) as an argument; nothing here reads ``slicer.mrmlScene``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import vtk

import slicer
from CardiacSuiteLib import mrml

from .structures import CORONARY_STRUCTURES, HEART_STRUCTURES, Structure  # noqa: F401 (re-exported)

ANATOMY = ("SCT", "123037004", "Anatomical Structure")


def terminology_entry(code: tuple[str, str, str]) -> str:
    """Slicer's terminology entry string (category~type~modifier~anatomic context~region~modifier)."""
    category = "^".join(ANATOMY)
    kind = "^".join(code)
    return (
        f"Segmentation category and type - 3D Slicer General Anatomy list~{category}~{kind}~^^"
        "~Anatomic codes - DICOM master list~^^~^^"
    )


def add_labelmap_segmentation(scene, labels: np.ndarray, ijk_to_ras: np.ndarray, structures, name: str, reference=None):
    """A segmentation node, one segment per structure (empty ones too), each with its SNOMED CT terminology."""
    specs = [mrml.SegmentSpec(s.value, s.name, s.color) for s in structures]
    node = mrml.add_segmentation_from_labelmap(scene, labels, ijk_to_ras, specs, name, reference_volume=reference)
    segmentation = node.GetSegmentation()
    for structure in structures:
        segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(structure.name))
        if segment is not None:
            segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology_entry(structure.code))
    return node


def segment_code(segmentation_node, name: str) -> str:
    """The SNOMED CT code value stored in a segment's terminology tag ('' when none)."""
    segmentation = segmentation_node.GetSegmentation()
    segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))
    if segment is None:
        return ""
    value = vtk.reference("")
    if not segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), value):
        return ""
    parts = str(value).split("~")
    return parts[2].split("^")[1] if len(parts) > 2 and "^" in parts[2] else ""


# ------------------------------------------------------------------------------------------------ curves


def add_centerline_curve(scene, name: str, points: np.ndarray, radii: np.ndarray, step_mm: float = 1.0, color=None):
    """A markups curve along a centerline with a per-point "Radius" measurement (mm), as Slicer's centerline
    extraction writes it; control points every ``step_mm`` so the curve follows the vessel closely."""
    from CardiacSuiteLib.geometry import resample_polyline

    points, radii = resample_polyline(np.asarray(points, float), step_mm, np.asarray(radii, float))
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsCurveNode", name)
    node.SetCurveTypeToLinear()
    node.GetDisplayNode() or node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None:
        display.SetPointLabelsVisibility(False)
        display.SetGlyphScale(1.0)
        if color is not None:
            display.SetSelectedColor(*color)
            display.SetColor(*color)
    positions = vtk.vtkPoints()
    for point in points:
        positions.InsertNextPoint(*point)
    node.SetControlPointPositionsWorld(positions)
    values = vtk.vtkDoubleArray()
    values.SetName("Radius")
    for radius in radii:
        values.InsertNextValue(float(radius))
    measurement = slicer.vtkMRMLStaticMeasurement()
    measurement.SetName("Radius")
    measurement.SetUnits("mm")
    measurement.SetPrintFormat("")
    measurement.SetControlPointValues(values)
    node.AddMeasurement(measurement)
    return node


def curve_points_and_radii(curve_node) -> tuple[np.ndarray, np.ndarray]:
    """Control points (RAS mm) and the "Radius" values of a centerline curve."""
    count = curve_node.GetNumberOfControlPoints()
    points = np.array([curve_node.GetNthControlPointPositionWorld(i) for i in range(count)], float)
    measurement = curve_node.GetMeasurement("Radius")
    if measurement is None or measurement.GetControlPointValues() is None:
        return points, np.full(count, np.nan)
    values = measurement.GetControlPointValues()
    return points, np.array([values.GetValue(i) for i in range(values.GetNumberOfTuples())], float)


def save_curve(curve_node, path: str | Path) -> Path:
    """Write a curve as Slicer markups JSON (``.mrk.json``) through its storage node."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = curve_node.GetStorageNode()
    if storage is None or not storage.IsA("vtkMRMLMarkupsJsonStorageNode"):
        storage = curve_node.GetScene().AddNewNodeByClass("vtkMRMLMarkupsJsonStorageNode")
        curve_node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.WriteData(curve_node):
        raise OSError(f"could not write curve '{curve_node.GetName()}' to {path}")
    return path


def load_curve(scene, path: str | Path):
    """Read a ``.mrk.json`` curve written by ``save_curve`` (or by Slicer) into a new curve node."""
    path = Path(path)
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsCurveNode", path.name.split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLMarkupsJsonStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise ValueError(f"{path}: not a readable markups curve")
    return node


def add_point_list(scene, name: str, points: dict[str, np.ndarray]):
    """A markups point list (fiducials) with one labelled point per entry, e.g. the coronary ostia."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    node.CreateDefaultDisplayNodes()
    for label, point in points.items():
        index = node.AddControlPointWorld(vtk.vtkVector3d(*[float(v) for v in point]))
        node.SetNthControlPointLabel(index, label)
    return node



def points_by_side(node) -> dict[str, list[np.ndarray]]:
    """Points of a point list per coronary tree, from labels that start with left/L or right/R (RAS mm).

    How a user marks the ostia and the points along a vessel in Slicer; ``None`` gives no points.
    """
    from CardiacSuiteLib.errors import InputError

    from .presets import LEFT, RIGHT

    sides: dict[str, list[np.ndarray]] = {}
    if node is None:
        return sides
    for index in range(node.GetNumberOfControlPoints()):
        label = node.GetNthControlPointLabel(index).strip().lower()
        side = LEFT if label.startswith((LEFT, "l")) else RIGHT if label.startswith((RIGHT, "r")) else None
        if side is None:
            raise InputError(f"point '{label}' of '{node.GetName()}' is neither '{LEFT}' nor '{RIGHT}'")
        sides.setdefault(side, []).append(np.array(node.GetNthControlPointPositionWorld(index), float))
    return sides
