"""Looking at a stent reconstruction: the algorithms' results side by side, slices across and along the axis,
and the result nodes kept in step with the run after the user chooses or adjusts a result.

Built only from MRML nodes (a layout description on the layout node, 3D view nodes, display nodes' view ids,
slice-to-RAS matrices), so it is the same inside Slicer and in a headless scene: inside Slicer the layout
manager shows the arrangement; headless, the nodes are all there to check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import numpy as np

import slicer
from CardiacSuiteLib import mrml

from .scene import StentNodes, color_of, score_table_rows
from .workflow import StentRun

LAYOUT_ID = 6402  # a custom layout id, away from Slicer's built-in ones and FourDCT's 6401
VIEW_TAG = "StentCompare"
SLICE_VIEWS = ("Red", "Yellow", "Green")
VIEW_GROUP = 7  # the comparison views form their own link group, apart from the main 3D view
ANTERIOR = np.array([0.0, 1.0, 0.0])
SUPERIOR = np.array([0.0, 0.0, 1.0])


@dataclass
class SideBySide:
    layout_id: int
    ids: list[str]  # algorithm ids, one per 3D view, in rank order
    view_nodes: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ layout


def comparison_layout_description(labels: list[str]) -> str:
    """One 3D view per label side by side, over one row of the three slice views."""
    def view(n: int, label: str) -> str:
        return (f'<item><view class="vtkMRMLViewNode" singletontag="{VIEW_TAG}{n + 1}">'
                f'<property name="viewlabel" action="default">{escape(label)}</property>'
                f'<property name="viewgroup" action="default">{VIEW_GROUP}</property>'
                "</view></item>")

    def slice_view(name: str) -> str:
        return (f'<item><view class="vtkMRMLSliceNode" singletontag="{name}">'
                f'<property name="viewlabel" action="default">{name[0]}</property></view></item>')

    top = "".join(view(n, label) for n, label in enumerate(labels))
    bottom = "".join(slice_view(name) for name in SLICE_VIEWS)
    return (f'<layout type="vertical" split="true"><item splitSize="600"><layout type="horizontal">{top}</layout></item>'
            f'<item splitSize="400"><layout type="horizontal">{bottom}</layout></item></layout>')


def register_comparison_layout(layout_node, count: int, labels: list[str] | None = None) -> int:
    """Register (or replace) the comparison layout for ``count`` 3D views; returns its layout id."""
    if count < 1:
        raise ValueError("there is no result to compare")
    labels = list(labels) if labels is not None else [str(n + 1) for n in range(count)]
    if len(labels) != count:
        raise ValueError(f"{count} views but {len(labels)} labels")
    description = comparison_layout_description(labels)
    if layout_node.IsLayoutDescription(LAYOUT_ID):
        layout_node.SetLayoutDescription(LAYOUT_ID, description)
    else:
        layout_node.AddLayoutDescription(LAYOUT_ID, description)
    return LAYOUT_ID


def layout_node(scene):
    """The scene's layout node (Slicer has one; a headless scene gets one), found as FourDCT finds it."""
    from FourDCTLib.viewing import layout_node as fourdct_layout_node

    return fourdct_layout_node(scene)


def _view_node(scene, tag: str, label: str):
    """The 3D view node the layout's ``tag`` view shows (made now, so the layout manager reuses it)."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLViewNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLViewNode")
        if node.GetLayoutName() == tag:
            break
    else:
        node = slicer.vtkMRMLViewNode()
        node.SetName(f"View{tag}")
        node.SetLayoutName(tag)
        node.SetSingletonTag(tag)
        node = scene.AddNode(node)
    node.SetLayoutLabel(label)
    node.SetViewGroup(VIEW_GROUP)
    return node


# ------------------------------------------------------------------------------------------------ side by side


def show_side_by_side(scene, nodes: StentNodes, run: StentRun, struts_of: str | None = None) -> SideBySide:
    """Every result in its own 3D view (rank order), cameras linked so that rotating one turns them all.

    ``struts_of``: the result whose struts ``nodes.struts`` are (the one chosen when the nodes were made)."""
    ids = [r.id for r in run.results if r.ok and r.id in nodes.models]
    if not ids:
        raise ValueError("the run has no result to show")
    labels = [f"{r.id} (rank {r.rank}, {r.score.value:.2f})" for r in run.results if r.id in ids]
    layout = layout_node(scene)
    register_comparison_layout(layout, len(ids), labels)
    views = [_view_node(scene, f"{VIEW_TAG}{n + 1}", label) for n, label in enumerate(labels)]
    for view in views:
        view.SetLinkedControl(True)
    for algorithm_id, view in zip(ids, views):
        for node in (nodes.models[algorithm_id], nodes.axes.get(algorithm_id)):
            display = node.GetDisplayNode() if node is not None else None
            if display is not None:
                display.SetViewNodeIDs([view.GetID()])
                display.SetVisibility(True)
    owner = struts_of or run.chosen_id
    for curve in nodes.struts:  # the struts belong to their result's view only
        display = curve.GetDisplayNode()
        if display is not None and owner in ids:
            display.SetViewNodeIDs([views[ids.index(owner)].GetID()])
            display.SetVisibility(True)
    layout.SetViewArrangement(LAYOUT_ID)
    return SideBySide(LAYOUT_ID, ids, views)


def show_chosen(nodes: StentNodes, run: StentRun, struts_of: str | None = None, layout=None) -> None:
    """Back to one result: the chosen one shown in every view, the others hidden (and no longer view-bound);
    ``layout``: a layout node showing the comparison goes back to the four-up layout."""
    for algorithm_id, model in nodes.models.items():
        chosen = algorithm_id == run.chosen_id
        for node in (model, nodes.axes.get(algorithm_id)):
            display = node.GetDisplayNode() if node is not None else None
            if display is None:
                continue
            display.RemoveAllViewNodeIDs()
            display.SetVisibility(chosen)
            if display.IsA("vtkMRMLModelDisplayNode"):
                display.SetOpacity(1.0 if chosen else 0.6)
    for curve in nodes.struts:
        display = curve.GetDisplayNode()
        if display is not None:
            display.RemoveAllViewNodeIDs()
            display.SetVisibility((struts_of or run.chosen_id) == run.chosen_id)
    if layout is not None and layout.GetViewArrangement() == LAYOUT_ID:
        layout.SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)


# ------------------------------------------------------------------------------------------------ sections


def slice_positions(axis: np.ndarray) -> np.ndarray:
    """Arc length (mm) of every axis point from the axis start: the range of the cross-section slider."""
    points = np.asarray(axis, float)
    if len(points) < 2:
        raise ValueError("the axis needs at least two points")
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def point_and_tangent(axis: np.ndarray, position_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The axis point at arc length ``position_mm`` (clamped to the axis) and the unit tangent of its segment."""
    points = np.asarray(axis, float)
    s = slice_positions(points)
    position = float(np.clip(position_mm, 0.0, s[-1]))
    segment = int(np.clip(np.searchsorted(s, position, side="right") - 1, 0, len(points) - 2))
    while segment > 0 and s[segment + 1] - s[segment] < 1e-9:
        segment -= 1
    step = points[segment + 1] - points[segment]
    length = float(np.linalg.norm(step))
    if length < 1e-9:
        raise ValueError("the axis has no length")
    fraction = (position - s[segment]) / length
    return points[segment] + np.clip(fraction, 0.0, 1.0) * step, step / length


def _transverse(normal: np.ndarray) -> np.ndarray:
    """A unit vector in the plane across ``normal``: patient right's share there (anterior when the axis runs
    left-right), so the slice turns smoothly as the slider moves."""
    for seed in (np.array([1.0, 0.0, 0.0]), ANTERIOR):
        t = seed - (seed @ normal) * normal
        if np.linalg.norm(t) > 0.3:
            return t / np.linalg.norm(t)
    t = SUPERIOR - (SUPERIOR @ normal) * normal
    return t / np.linalg.norm(t)


def cross_section_at(slice_node, axis_points: np.ndarray, position_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Put ``slice_node`` across the axis at arc length ``position_mm``, centred on the axis; returns
    (centre, normal)."""
    point, tangent = point_and_tangent(axis_points, position_mm)
    t = _transverse(tangent)
    slice_node.SetSliceToRASByNTP(*tangent, *t, *point, 0)
    return point, tangent


def along_axis_at(slice_node, axis_points: np.ndarray, position_mm: float, turn: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Put ``slice_node`` along the axis through its point at ``position_mm``: ``turn`` 0 and 1 give two
    perpendicular longitudinal planes. Returns (centre, normal)."""
    point, tangent = point_and_tangent(axis_points, position_mm)
    t = _transverse(tangent)
    normal = t if turn == 0 else np.cross(tangent, t)
    slice_node.SetSliceToRASByNTP(*normal, *tangent, *point, 0)
    return point, normal


def main_slice_nodes(scene) -> list:
    """The Red, Yellow and Green slice nodes present in the scene, in that order."""
    found = {}
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceNode")
        if node.GetLayoutName() in SLICE_VIEWS:
            found.setdefault(node.GetLayoutName(), node)
    return [found[name] for name in SLICE_VIEWS if name in found]


def section_views(slice_nodes: list, axis_points: np.ndarray, position_mm: float) -> np.ndarray:
    """The first slice node across the axis, the next two along it (both through the same axis point); returns
    the point."""
    point, _ = cross_section_at(slice_nodes[0], axis_points, position_mm)
    for turn, node in enumerate(slice_nodes[1:3]):
        along_axis_at(node, axis_points, position_mm, turn)
    return point


# ------------------------------------------------------------------------------------------------ refresh


def _fill_table(table_node, columns: list[str], rows: list[list], units: dict) -> None:
    """Rewrite a table node in place (the study keeps referencing the same node)."""
    import vtk

    table = table_node.GetTable()
    table_node.RemoveAllColumns()
    for index, name in enumerate(columns):
        values = [row[index] for row in rows]
        numeric = bool(values) and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                                       for v in values)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(name)
        for value in values:
            array.InsertNextValue(float(value) if numeric else ("" if value is None else str(value)))
        table.AddColumn(array)
        if name in units:
            table_node.SetColumnUnitLabel(name, units[name])
    table_node.Modified()


def refresh_results(nodes: StentNodes, run: StentRun, name: str = "Stent", struts_of: str | None = None) -> None:
    """After a choice or an adjustment: models, axes, struts and names follow the run; the results table is
    rewritten and the cross-section table shows the chosen result."""
    for result in run.results:
        if not result.ok or result.id not in nodes.models:
            continue
        model = nodes.models[result.id]
        model.SetAndObservePolyData(result.reconstruction.surface)
        model.SetName(f"{name} {result.id} ({result.name}, rank {result.rank}, score {result.score.value:.2f})")
        axis = nodes.axes.get(result.id)
        if axis is not None:
            mrml.set_curve_points(axis, result.reconstruction.axis)
        display = model.GetDisplayNode()
        if display is not None:
            display.SetColor(*color_of(result.id))
    owner = next((r for r in run.results if r.id == (struts_of or run.chosen_id) and r.ok), None)
    if owner is not None:
        for curve, strut in zip(nodes.struts, owner.reconstruction.struts):
            mrml.set_curve_points(curve, strut)
    if nodes.table is not None:
        _fill_table(nodes.table, *score_table_rows(run))
    if nodes.sections_table is not None:
        sections = run.chosen.measurements["sections"]
        keys = [k for k in sections if k != "s_mm"]
        rows = [[sections["s_mm"][i]] + [sections[k][i] for k in keys] for i in range(len(sections["s_mm"]))]
        units = {"Position": "mm", **{k: ("mm²" if k.endswith("mm2") else "mm" if k.endswith("_mm") else "")
                                      for k in keys}}
        _fill_table(nodes.sections_table, ["Position"] + keys, rows, units)
        nodes.sections_table.SetName(f"{name} {run.chosen_id} cross-sections")
