"""numpy ⇄ MRML helpers that take the scene explicitly.

Arrays are indexed ``[k, j, i]`` (slice, row, column) as in ``slicer.util.arrayFromVolume``; geometry is the
4×4 IJK-to-RAS matrix in millimetres. Nothing here reads ``slicer.mrmlScene``, so the same helpers serve the
application, batch scripts and the tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import vtk
from vtk.util import numpy_support

import slicer


@dataclass(frozen=True)
class SegmentSpec:
    """One label value of a label map and how it shows as a segment."""

    value: int
    name: str
    color: tuple[float, float, float]


# ---------------------------------------------------------------------------------------------- geometry


def matrix_to_numpy(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def numpy_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_ras(volume_node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix_to_numpy(matrix)


def spacing_from_matrix(ijk_to_ras_matrix: np.ndarray) -> tuple[float, float, float]:
    """Voxel size (i, j, k) in mm: the column norms of the direction-times-spacing block."""
    return tuple(float(v) for v in np.linalg.norm(ijk_to_ras_matrix[:3, :3], axis=0))


# ---------------------------------------------------------------------------------------------- volumes


def update_volume(volume_node, array: np.ndarray, ijk_to_ras_matrix: np.ndarray | None = None) -> None:
    """Replace a volume node's voxels (a copy of ``array``) and, if given, its geometry."""
    array = np.ascontiguousarray(array)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise ValueError(f"a volume needs a 3D array [k, j, i], got shape {array.shape}")
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    vtk_array = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    vtk_array.SetNumberOfComponents(1)
    image.GetPointData().SetScalars(vtk_array)
    volume_node.SetAndObserveImageData(image)
    if ijk_to_ras_matrix is not None:
        volume_node.SetIJKToRASMatrix(numpy_to_matrix(ijk_to_ras_matrix))


def add_volume(
    scene,
    array: np.ndarray,
    ijk_to_ras_matrix: np.ndarray,
    name: str,
    class_name: str = "vtkMRMLScalarVolumeNode",
):
    """Add a volume node with display (and storage-ready) defaults, as Slicer's loaders do."""
    node = scene.AddNewNodeByClass(class_name, name)
    update_volume(node, array, ijk_to_ras_matrix)
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None and class_name == "vtkMRMLScalarVolumeNode":
        display.AutoWindowLevelOn()
    return node


def array_from_volume(volume_node) -> np.ndarray:
    """A copy of the voxels as ``[k, j, i]``."""
    image = volume_node.GetImageData()
    if image is None:
        raise ValueError(f"volume '{volume_node.GetName()}' holds no image data")
    dims = image.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return scalars.reshape(dims[2], dims[1], dims[0]).copy()


# ---------------------------------------------------------------------------------------------- sequences


def add_volume_sequence(
    scene,
    arrays: Iterable[np.ndarray],
    ijk_to_ras_matrix: np.ndarray,
    index_values: Sequence[float],
    name: str,
    index_name: str = "time",
    index_unit: str = "ms",
    class_name: str = "vtkMRMLScalarVolumeNode",
):
    """A volume sequence with a browser node, the way Slicer loads a cine or a 4D CT.

    Each array becomes one sequence item; the browser's proxy volume shows the selected one. Returns
    ``(sequence_node, browser_node)``.
    """
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName(index_name)
    sequence.SetIndexUnit(index_unit)
    sequence.SetIndexType(sequence.NumericIndex)
    arrays = list(arrays)
    if len(arrays) != len(index_values):
        raise ValueError(f"{len(arrays)} arrays but {len(index_values)} index values")
    for array, index_value in zip(arrays, index_values):
        item = slicer.vtkMRMLScalarVolumeNode() if class_name == "vtkMRMLScalarVolumeNode" else getattr(
            slicer, class_name
        )()
        update_volume(item, array, ijk_to_ras_matrix)
        sequence.SetDataNodeAtValue(item, _index_text(index_value))
    browser = add_browser(scene, sequence, f"{name} browser")
    proxy = browser.GetProxyNode(sequence)
    if proxy is not None:
        proxy.SetName(name)
        proxy.CreateDefaultDisplayNodes()
    return sequence, browser


def add_browser(scene, master_sequence, name: str):
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", name)
    browser.SetAndObserveMasterSequenceNodeID(master_sequence.GetID())
    browser.SetSelectedItemNumber(0)  # the Sequences logic observes the browser and creates the proxy nodes
    return browser


def sequence_index_values(sequence_node) -> list[float]:
    return [float(sequence_node.GetNthIndexValue(i)) for i in range(sequence_node.GetNumberOfDataNodes())]


def _index_text(value: float) -> str:
    return f"{value:g}"


# ---------------------------------------------------------------------------------------------- segmentations


def add_segmentation_from_labelmap(
    scene,
    labels: np.ndarray,
    ijk_to_ras_matrix: np.ndarray,
    segments: Sequence[SegmentSpec],
    name: str,
    reference_volume=None,
):
    """A segmentation node with one segment per ``SegmentSpec`` (empty ones too), in the label map's geometry."""
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation_node.CreateDefaultDisplayNodes()
    if reference_volume is not None:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    fill_segmentation_from_labelmap(segmentation_node, labels, ijk_to_ras_matrix, segments)
    return segmentation_node


def fill_segmentation_from_labelmap(segmentation_node, labels, ijk_to_ras_matrix, segments: Sequence[SegmentSpec]):
    """Replace a segmentation's segments by the label values of ``labels``.

    Every segment is written even when it is empty, so results always carry the same segment list.
    """
    segmentation = segmentation_node.GetSegmentation()
    segmentation.RemoveAllSegments()
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[np.newaxis]
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    for spec in segments:
        segment_id = segmentation.AddEmptySegment(spec.name.replace(" ", "_"), spec.name, list(spec.color))
        segment = segmentation.GetSegment(segment_id)
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)
        mask = (labels == spec.value).astype(np.uint8)
        if not mask.any():
            continue
        logic.SetBinaryLabelmapToSegment(
            _oriented_image(mask, ijk_to_ras_matrix), segmentation_node, segment_id, logic.MODE_REPLACE
        )
    segmentation_node.Modified()


def _node_ids(scene, class_name: str) -> set[str]:
    nodes = scene.GetNodesByClass(class_name)
    return {nodes.GetItemAsObject(index).GetID() for index in range(nodes.GetNumberOfItems())}


def labelmap_from_segmentation(segmentation_node, reference_volume, segment_values: dict[str, int] | None = None, scene=None):
    """Label map ``[k, j, i]`` of a segmentation on the reference volume's grid.

    ``segment_values`` maps segment names to label values; by default segments are numbered 1, 2, … in their
    order. Where segments overlap, the later segment wins, as in Slicer's export. ``scene`` is needed for a
    segmentation that is not in a scene itself (a sequence item).
    """
    segmentation = segmentation_node.GetSegmentation()
    ids, values = vtk.vtkStringArray(), []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        name = segmentation.GetSegment(segment_id).GetName()
        value = segment_values.get(name) if segment_values is not None else index + 1
        if value is not None:
            ids.InsertNextValue(segment_id)
            values.append(value)
    labelmap_node = slicer.vtkMRMLLabelMapVolumeNode()
    scene = scene or segmentation_node.GetScene() or reference_volume.GetScene()
    colors_before = _node_ids(scene, "vtkMRMLColorTableNode")
    scene.AddNode(labelmap_node)
    try:
        if ids.GetNumberOfValues() and not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap_node, reference_volume
        ):
            raise ValueError(f"could not export segmentation '{segmentation_node.GetName()}' to a label map")
        shape = reference_volume.GetImageData().GetDimensions()[::-1]
        if labelmap_node.GetImageData() is None:
            return np.zeros(shape, dtype=np.uint8)
        exported = array_from_volume(labelmap_node)
    finally:
        scene.RemoveNode(labelmap_node)
        # The export makes a colour table for the temporary label map; it must not stay behind in the scene.
        for node_id in _node_ids(scene, "vtkMRMLColorTableNode") - colors_before:
            scene.RemoveNode(scene.GetNodeByID(node_id))
    lookup = np.zeros(len(values) + 1, dtype=np.uint8)
    lookup[1:] = values
    return lookup[exported]


def _oriented_image(mask: np.ndarray, ijk_to_ras_matrix: np.ndarray):
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(mask).ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(scalars)
    image.SetImageToWorldMatrix(numpy_to_matrix(ijk_to_ras_matrix))
    return image


# ---------------------------------------------------------------------------------------------- models, curves


def add_model(scene, polydata, name: str, color=(0.9, 0.9, 0.3), opacity: float = 1.0, visible: bool = True):
    """A model node showing ``polydata`` (RAS), with a display node, as Slicer's model loader makes it."""
    node = scene.AddNewNodeByClass("vtkMRMLModelNode", name)
    node.SetAndObservePolyData(polydata)
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetColor(*color)
    display.SetOpacity(opacity)
    display.SetVisibility(visible)
    display.SetVisibility2D(True)
    return node


def set_curve_points(curve_node, points: np.ndarray) -> None:
    positions = vtk.vtkPoints()
    for point in np.asarray(points, float):
        positions.InsertNextPoint(*point)
    curve_node.SetControlPointPositionsWorld(positions)


def add_curve(scene, points: np.ndarray, name: str, color=None, visible: bool = True):
    """An open markups curve through ``points`` (RAS mm, linear between them), labels hidden."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsCurveNode", name)
    node.SetCurveTypeToLinear()
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None:
        display.SetPointLabelsVisibility(False)
        display.SetVisibility(visible)
        if color is not None:
            display.SetSelectedColor(*color)
            display.SetColor(*color)
    set_curve_points(node, points)
    return node


def curve_points(curve_node) -> np.ndarray:
    """Control points of a markups curve (RAS mm, world)."""
    count = curve_node.GetNumberOfControlPoints()
    points = np.zeros((count, 3))
    for index in range(count):
        curve_node.GetNthControlPointPositionWorld(index, points[index])
    return points


# ---------------------------------------------------------------------------------------------- tables


def add_table(scene, name: str, columns: Sequence[str], rows: Sequence[Sequence[object]], units: dict | None = None):
    """A table node whose numeric columns are doubles and the rest strings; units go in column properties."""
    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = table_node.GetTable()
    for col_index, column_name in enumerate(columns):
        values = [row[col_index] for row in rows]
        numeric = all(isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) for v in values)
        array = vtk.vtkDoubleArray() if numeric and values else vtk.vtkStringArray()
        array.SetName(column_name)
        for value in values:
            if numeric:
                array.InsertNextValue(float(value))
            else:
                array.InsertNextValue("" if value is None else str(value))
        table.AddColumn(array)
        if units and column_name in units:
            table_node.SetColumnUnitLabel(column_name, units[column_name])
    table_node.Modified()
    return table_node


def table_rows(table_node) -> list[dict[str, object]]:
    table = table_node.GetTable()
    rows = []
    for r in range(table.GetNumberOfRows()):
        row = {}
        for c in range(table.GetNumberOfColumns()):
            column = table.GetColumn(c)
            row[column.GetName()] = table.GetValue(r, c).ToString() if isinstance(
                column, vtk.vtkStringArray
            ) else column.GetValue(r)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- files


def save_node(node, path: str | Path) -> Path:
    """Write a node with its own (default) storage node, as File > Save does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = node.GetStorageNode()
    if storage is None:
        node.AddDefaultStorageNode()
        storage = node.GetStorageNode()
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise OSError(f"could not write {node.GetClassName()} '{node.GetName()}' to {path}")
    return path


def load_volume(scene, path: str | Path, name: str | None = None):
    """Read a 3D image file (NRRD, NIfTI, MHA…) into a scalar volume node through its storage node."""
    path = Path(path)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name or _stem(path))
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    storage.SetSingleFile(True)
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise ValueError(f"{path}: not a readable image file")
    node.CreateDefaultDisplayNodes()
    return node


def load_segmentation(scene, path: str | Path, name: str | None = None):
    path = Path(path)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or _stem(path))
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        scene.RemoveNode(storage)
        raise ValueError(f"{path}: not a readable segmentation file")
    node.CreateDefaultDisplayNodes()
    return node


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".seg.nrrd", ".seq.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
