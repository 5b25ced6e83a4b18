"""FourDCT in the MRML scene: 4D inputs as volume sequences, propagation results as synchronised sequences.

Results of a propagation enter the scene as a segmentation sequence and a transform sequence that share the
volume sequence's index (the cardiac phase) and are synchronised in its browser, a table of per-phase volumes
and quality figures, and a plot of the LV volume curve. Each transform item is a displacement field stored in
Slicer's resampling convention ("transform from parent"): it takes a point of its phase to the reference
phase, so a reference-phase model, markups or segmentation placed under it appears at that phase, and
Slicer's inverse (transform to parent) moves reference-phase points to the phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import vtk
from vtk.util import numpy_support

import slicer
from CardiacSuiteLib import geometry, mrml
from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.image4d import PERCENT, PHASE_INDEX_NAME, CallablePhases, PhaseStack, check_same_grid

from .propagation import Propagation, Segment


# ------------------------------------------------------------------------------------------------ inputs


def add_phases(scene, stack: PhaseStack, name: str | None = None, box: geometry.Box | None = None, browser=None):
    """A volume sequence (one item per phase, read one at a time) with a browser; ``box`` crops every phase.

    Returns ``(sequence, browser)``. The index is the stack's: the cardiac phase in % when the input states it.
    With ``browser`` the sequence is synchronised in that browser instead of getting one of its own.
    """
    name = name or stack.name
    ijk_to_ras = stack.ijk_to_ras if box is None else box.ijk_to_ras(stack.ijk_to_ras)
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName(stack.index_name or "phase")
    sequence.SetIndexUnit(stack.index_unit)
    sequence.SetIndexType(sequence.NumericIndex)
    for index in range(stack.count):
        volume = stack.read(index)
        if box is not None:
            volume = volume[box.slices]
        item = slicer.vtkMRMLScalarVolumeNode()
        item.SetName(f"{name} {stack.index_label(index)}")
        mrml.update_volume(item, np.ascontiguousarray(volume), ijk_to_ras)
        sequence.SetDataNodeAtValue(item, _index_text(stack.index_values[index]))
    if browser is None:
        browser = mrml.add_browser(scene, sequence, f"{name} browser")
    else:
        browser.AddSynchronizedSequenceNode(sequence)
        browser.SetSelectedItemNumber(browser.GetSelectedItemNumber())
    proxy = browser.GetProxyNode(sequence)
    if proxy is not None:
        proxy.SetName(name)
        proxy.CreateDefaultDisplayNodes()
        display = proxy.GetDisplayNode()
        if display is not None:
            display.AutoWindowLevelOff()
            display.SetWindowLevel(800.0, 200.0)  # cardiac CT angiography window
    return sequence, browser


def _index_text(value: float) -> str:
    return f"{value:g}"


def first_volume_sequence(scene):
    """The first sequence of scalar volumes with at least two items in the scene, or None."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceNode")):
        sequence = scene.GetNthNodeByClass(index, "vtkMRMLSequenceNode")
        item = sequence.GetNthDataNode(0) if sequence.GetNumberOfDataNodes() > 1 else None
        if item is not None and item.IsA("vtkMRMLScalarVolumeNode"):
            return sequence
    return None


def index_values(sequence_node) -> list[float]:
    """The sequence's index values as numbers (a value that is not a number counts as its position)."""
    values = []
    for index in range(sequence_node.GetNumberOfDataNodes()):
        try:
            values.append(float(sequence_node.GetNthIndexValue(index)))
        except ValueError:
            values.append(float(index))
    return values


def phases_from_sequence(sequence_node) -> PhaseStack:
    """The phases of a volume sequence node without a copy of the whole study.

    Every phase's grid is checked and its voxels taken as a view of the volume's own array here, so reading a
    phase later touches no scene node: the stack can be handed to work that runs off the GUI thread.
    """
    count = sequence_node.GetNumberOfDataNodes()
    if count < 2:
        raise InputError(
            f"'{sequence_node.GetName()}' holds {count} volume(s); propagation needs a 4D CT (a sequence of phases)"
        )
    first = sequence_node.GetNthDataNode(0)
    if first is None or not first.IsA("vtkMRMLScalarVolumeNode") or first.GetImageData() is None:
        raise InputError(f"'{sequence_node.GetName()}' is not a sequence of scalar volumes")
    ijk_to_ras = mrml.ijk_to_ras(first)
    shape = tuple(first.GetImageData().GetDimensions()[::-1])
    views = []
    for index in range(count):
        node = sequence_node.GetNthDataNode(index)
        check_same_grid(
            sequence_node.GetNthIndexValue(0), ijk_to_ras, sequence_node.GetNthIndexValue(index), mrml.ijk_to_ras(node),
            shape, tuple(node.GetImageData().GetDimensions()[::-1]),
        )
        views.append(_array_view(node))
    unit = sequence_node.GetIndexUnit() or ""
    stack = CallablePhases(
        views.__getitem__, count, ijk_to_ras, shape, views[0].dtype, index_values(sequence_node),
        index_name=sequence_node.GetIndexName() or PHASE_INDEX_NAME, index_unit=unit, name=sequence_node.GetName(),
        source=sequence_node.GetName(),
    )
    return stack


def _array_view(volume_node) -> np.ndarray:
    image = volume_node.GetImageData()
    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])


def labels_from_segmentation(segmentation_node, reference_volume) -> tuple[np.ndarray, list[Segment]]:
    """A reference segmentation as a label map on the reference volume's grid, segments numbered 1, 2, … in order."""
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:
        raise InputError(f"segmentation '{segmentation_node.GetName()}' has no segments; nothing to propagate")
    segments = []
    values = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetSegment(segmentation.GetNthSegmentID(index))
        values[segment.GetName()] = index + 1
        segments.append(Segment(index + 1, segment.GetName(), tuple(float(c) for c in segment.GetColor())))
    labels = mrml.labelmap_from_segmentation(segmentation_node, reference_volume, values)
    return labels, segments


def reference_volume_node(scene, stack: PhaseStack, phase: int):
    """A temporary volume node carrying one phase's grid (for exporting a segmentation onto it)."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "FourDCT reference grid")
    image = vtk.vtkImageData()
    image.SetDimensions(stack.shape[2], stack.shape[1], stack.shape[0])
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(mrml.numpy_to_matrix(stack.ijk_to_ras))
    node.SetHideFromEditors(True)
    return node


# ------------------------------------------------------------------------------------------------ results


@dataclass
class PropagationNodes:
    segmentation_sequence: object
    transform_sequence: object
    table: object
    plot_chart: object
    browser: object


def add_propagation(
    scene,
    propagation: Propagation,
    stack: PhaseStack,
    name: str,
    browser=None,
    volume_measures: dict | None = None,
) -> PropagationNodes:
    """Add a propagation's segmentation sequence, transform sequence, table and LV volume plot.

    With ``browser`` (the volume sequence's), both sequences are synchronised in it; otherwise they get a
    browser of their own.
    """
    index_name, unit = stack.index_name or PHASE_INDEX_NAME, stack.index_unit
    box_matrix = propagation.box_ijk_to_ras
    specs = [mrml.SegmentSpec(s.value, s.name, s.color) for s in propagation.segments]

    segmentation_sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{name} segmentation")
    transform_sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{name} phase transforms")
    for sequence in (segmentation_sequence, transform_sequence):
        sequence.SetIndexName(index_name)
        sequence.SetIndexUnit(unit)
        sequence.SetIndexType(sequence.NumericIndex)
    for phase, result in enumerate(propagation.phases):
        value = _index_text(stack.index_values[phase])
        segmentation = slicer.vtkMRMLSegmentationNode()
        segmentation.SetName(f"{name} segmentation {stack.index_label(phase)}")
        mrml.fill_segmentation_from_labelmap(segmentation, result.labels, box_matrix, specs)
        segmentation_sequence.SetDataNodeAtValue(segmentation, value)
        transform = slicer.vtkMRMLTransformNode()
        transform.SetName(f"{name} transform {stack.index_label(phase)}")
        transform.SetAndObserveTransformFromParent(grid_transform(propagation.displacement_ras(phase), propagation.grid_ijk_to_ras))
        transform_sequence.SetDataNodeAtValue(transform, value)
    storage = scene.AddNewNodeByClass("vtkMRMLTransformSequenceStorageNode")
    transform_sequence.SetAndObserveStorageNodeID(storage.GetID())

    if browser is None:
        browser = mrml.add_browser(scene, segmentation_sequence, f"{name} browser")
    else:
        browser.AddSynchronizedSequenceNode(segmentation_sequence)
    browser.AddSynchronizedSequenceNode(transform_sequence)
    browser.SetSelectedItemNumber(browser.GetSelectedItemNumber())
    proxy = browser.GetProxyNode(segmentation_sequence)
    if proxy is not None:
        proxy.SetName(f"{name} segmentation")
        proxy.CreateDefaultDisplayNodes()
    transform_proxy = browser.GetProxyNode(transform_sequence)
    if transform_proxy is not None:
        transform_proxy.SetName(f"{name} phase transform")

    columns, rows, units = results_table(propagation, stack, volume_measures)
    table = mrml.add_table(scene, f"{name} phases", columns, rows, units)
    chart = add_volume_plot(scene, table, name, [c for c in columns if c.endswith("volume")], stack)
    return PropagationNodes(segmentation_sequence, transform_sequence, table, chart, browser)


def grid_transform(displacement_ras: np.ndarray, grid_ijk_to_ras: np.ndarray):
    """A ``vtkOrientedGridTransform`` of a displacement field ``[K, J, I, 3]`` (RAS mm) on a grid."""
    spacing = np.linalg.norm(grid_ijk_to_ras[:3, :3], axis=0)
    direction = np.eye(4)
    direction[:3, :3] = grid_ijk_to_ras[:3, :3] / spacing
    image = vtk.vtkImageData()
    k, j, i = displacement_ras.shape[:3]
    image.SetDimensions(i, j, k)
    image.SetSpacing(*[float(s) for s in spacing])
    image.SetOrigin(*[float(v) for v in grid_ijk_to_ras[:3, 3]])
    array = numpy_support.numpy_to_vtk(np.ascontiguousarray(displacement_ras, dtype=np.float32).reshape(-1, 3), deep=True)
    array.SetNumberOfComponents(3)
    image.GetPointData().SetScalars(array)
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(image)
    transform.SetGridDirectionMatrix(mrml.numpy_to_matrix(direction))
    transform.SetInterpolationModeToLinear()
    return transform


def results_table(propagation: Propagation, stack: PhaseStack, volume_measures: dict | None = None):
    """Rows per phase: the index, every segment's volume (ml), the quality figures and the review flag."""
    volumes = propagation.volumes_ml()
    index_column = f"Phase ({stack.index_unit})" if stack.index_unit else "Phase"
    columns = [index_column] + [f"{s.name} volume" for s in propagation.segments] + [
        "Similarity before", "Similarity after", "Folding", "Review"
    ]
    units = {f"{s.name} volume": "ml" for s in propagation.segments} | {"Folding": "%"}
    if stack.index_unit:
        units[index_column] = stack.index_unit
    rows = []
    for phase, result in enumerate(propagation.phases):
        rows.append(
            [stack.index_values[phase]]
            + [round(volumes[s.name][phase], 2) for s in propagation.segments]
            + [round(result.ncc_before, 4), round(result.ncc_after, 4), round(result.folding_pct, 4),
               "; ".join(result.flags) if result.flags else ("reference" if phase == propagation.reference_phase else "")]
        )
    return columns, rows, units


def add_volume_plot(scene, table, name: str, volume_columns: Sequence[str], stack: PhaseStack):
    """A chart of every segment's volume over the cycle (the LV curve gives the CT ejection fraction)."""
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} volume curves")
    index_column = table.GetTable().GetColumn(0).GetName()
    chart.SetXAxisTitle(f"{stack.index_name} ({stack.index_unit})" if stack.index_unit else stack.index_name)
    chart.SetYAxisTitle("volume (ml)")
    chart.SetTitle(f"{name}: volumes over the cardiac cycle")
    for column in volume_columns:
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} {column}")
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetXColumnName(index_column)
        series.SetYColumnName(column)
        series.SetPlotType(series.PlotTypeScatter)
        series.SetMarkerStyle(series.MarkerStyleCircle)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart


def ejection_figures(lv_volumes_ml: Sequence[float], index_values: Sequence[float]) -> dict:
    """End diastole (largest LV volume), end systole (smallest), stroke volume and ejection fraction."""
    volumes = np.asarray(lv_volumes_ml, dtype=float)
    ed, es = int(np.argmax(volumes)), int(np.argmin(volumes))
    edv, esv = float(volumes[ed]), float(volumes[es])
    return {
        "ed_phase": ed,
        "es_phase": es,
        "ed_index": float(index_values[ed]),
        "es_index": float(index_values[es]),
        "edv_ml": edv,
        "esv_ml": esv,
        "sv_ml": edv - esv,
        "ef_pct": 100.0 * (edv - esv) / edv if edv > 0 else None,
    }


def suggest_ed_es(index_values: Sequence[float], unit: str, lv_volumes_ml: Sequence[float] | None = None) -> tuple[int, int]:
    """End-diastolic and end-systolic phases: from LV volumes when known, else the usual reconstruction points
    (end diastole nearest 0 %/100 % of R-R, end systole nearest 35 %), else the first and the middle phase."""
    if lv_volumes_ml is not None and len(lv_volumes_ml) == len(index_values):
        figures = ejection_figures(lv_volumes_ml, index_values)
        return figures["ed_phase"], figures["es_phase"]
    values = np.asarray(index_values, dtype=float)
    if unit == PERCENT:
        cyclic = np.minimum(values % 100.0, 100.0 - values % 100.0)
        return int(np.argmin(cyclic)), int(np.argmin(np.abs(values - 35.0)))
    return 0, len(values) // 2
