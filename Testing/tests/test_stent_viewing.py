"""StentReconstructionLib.viewing on a real MRML scene: the comparison layout, one result per 3D view with linked
cameras, slices across and along the axis, and the result nodes refreshed after a choice or an adjustment.

The run comes from a small synthetic ring stent (Gaussian rings of 1500 HU on a straight line inside a 400 HU
tube on -80 HU), reconstructed with algorithms A and C, so the nodes are the ones ``add_results`` really makes.
"""

from __future__ import annotations

import numpy as np
import pytest

from CardiacSuiteLib import mrml
from StentReconstructionLib import scene as stent_scene
from StentReconstructionLib import viewing
from StentReconstructionLib.workflow import adjusted, choose, rescore

DIAMETER_MM = 3.0
LENGTH_MM = 12.0


def ring_stent_ct(diameter_mm: float = DIAMETER_MM, length_mm: float = LENGTH_MM, rings: int = 7,
                  spacing_mm: float = 0.35, sigma_mm: float = 0.3, seed: int = 0):
    """Image [k, j, i] HU, ijk_to_ras, and the stent's two ends (RAS); the stent runs along +S from the origin."""
    half = diameter_mm / 2 + 4.0
    columns = int(2 * half / spacing_mm) + 1
    slices = int((length_mm + 8.0) / spacing_mm) + 1
    xy = np.arange(columns) * spacing_mm - half
    z = np.arange(slices) * spacing_mm - 4.0
    s, a, r = np.meshgrid(z, xy, xy, indexing="ij")
    rho = np.hypot(r, a)
    image = -80.0 + 480.0 * 0.5 * (1.0 - np.tanh((rho - (diameter_mm / 2 + 0.3)) / 0.3))
    for centre in np.linspace(0.0, length_mm, rings):
        image += 1500.0 * np.exp(-((rho - diameter_mm / 2) ** 2 + (s - centre) ** 2) / (2 * sigma_mm ** 2))
    image += np.random.default_rng(seed).normal(0.0, 15.0, image.shape)
    ijk_to_ras = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    ijk_to_ras[:3, 3] = [-half, -half, -4.0]
    return image.astype(np.float32), ijk_to_ras, np.zeros(3), np.array([0.0, 0.0, length_mm])


@pytest.fixture
def reconstructed(scene):
    """(run, nodes) of the ring stent reconstructed with A and C and filed in the scene."""
    image, ijk_to_ras, start, end = ring_stent_ct()
    volume = mrml.add_volume(scene, image, ijk_to_ras, "Ring stent CT")
    extent = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Stent ends")
    extent.AddControlPoint(*(start + [0.3, 0.2, -0.5]))
    extent.AddControlPoint(*(end + [-0.2, 0.3, 0.6]))
    inputs = stent_scene.read_inputs(scene, volume, extent)
    run = stent_scene.run(inputs, stent_scene.device_spec("coronary", 0, 0), algorithms=["A", "C"])
    nodes = stent_scene.add_results(scene, run, "Stent", inputs.case, volume_node=volume)
    return run, nodes


def test_ring_stent_is_measured(reconstructed):
    run, _ = reconstructed
    measurements = run.chosen.measurements
    assert measurements["diameter_mean_mm"] == pytest.approx(DIAMETER_MM, abs=0.3)
    assert measurements["length_mm"] == pytest.approx(LENGTH_MM, abs=1.5)


def test_comparison_layout_is_registered(scene):
    layout = viewing.layout_node(scene)
    layout_id = viewing.register_comparison_layout(layout, 3, ["A", "B", "C"])
    assert layout_id == viewing.LAYOUT_ID
    assert layout.IsLayoutDescription(layout_id)
    description = layout.GetLayoutDescription(layout_id)
    assert description.count('class="vtkMRMLViewNode"') == 3
    assert description.count('class="vtkMRMLSliceNode"') == 3
    for n in (1, 2, 3):
        assert f'singletontag="{viewing.VIEW_TAG}{n}"' in description
    viewing.register_comparison_layout(layout, 2)  # registering again replaces the description
    assert layout.GetLayoutDescription(layout_id).count('class="vtkMRMLViewNode"') == 2
    with pytest.raises(ValueError):
        viewing.register_comparison_layout(layout, 0)


def test_side_by_side_puts_each_result_in_its_own_linked_view(scene, reconstructed):
    run, nodes = reconstructed
    shown = viewing.show_side_by_side(scene, nodes, run)
    assert shown.ids == [r.id for r in run.results if r.ok]
    assert viewing.layout_node(scene).GetViewArrangement() == viewing.LAYOUT_ID
    view_ids = [view.GetID() for view in shown.view_nodes]
    assert len(set(view_ids)) == len(shown.ids) == 2
    for algorithm_id, view_id in zip(shown.ids, view_ids):
        model_display = nodes.models[algorithm_id].GetDisplayNode()
        axis_display = nodes.axes[algorithm_id].GetDisplayNode()
        assert model_display.GetViewNodeIDs() == (view_id,)
        assert axis_display.GetViewNodeIDs() == (view_id,)
        assert model_display.GetVisibility() and axis_display.GetVisibility()
    for view in shown.view_nodes:
        assert view.GetLinkedControl()
        assert view.GetViewGroup() == viewing.VIEW_GROUP
    chosen_view = view_ids[shown.ids.index(run.chosen_id)]
    assert all(curve.GetDisplayNode().GetViewNodeIDs() == (chosen_view,) for curve in nodes.struts)

    # Showing it again reuses the same view nodes.
    assert [v.GetID() for v in viewing.show_side_by_side(scene, nodes, run).view_nodes] == view_ids

    first = run.chosen_id
    other = next(i for i in shown.ids if i != first)
    choose(run, other)
    layout = viewing.layout_node(scene)
    viewing.show_chosen(nodes, run, struts_of=first, layout=layout)
    assert layout.GetViewArrangement() == layout.SlicerLayoutFourUpView
    assert nodes.models[other].GetDisplayNode().GetViewNodeIDs() == ()
    assert nodes.models[other].GetDisplayNode().GetVisibility()
    assert not nodes.models[first].GetDisplayNode().GetVisibility()
    assert not nodes.axes[first].GetDisplayNode().GetVisibility()
    assert not any(curve.GetDisplayNode().GetVisibility() for curve in nodes.struts)  # they are the first's


def test_slice_positions_are_arc_lengths():
    axis = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [3.0, 4.0, 10.0]])
    np.testing.assert_allclose(viewing.slice_positions(axis), [0.0, 5.0, 15.0])
    with pytest.raises(ValueError):
        viewing.slice_positions(axis[:1])


def _normal(slice_node) -> np.ndarray:
    matrix = slice_node.GetSliceToRAS()
    return np.array([matrix.GetElement(row, 2) for row in range(3)])


def _origin(slice_node) -> np.ndarray:
    matrix = slice_node.GetSliceToRAS()
    return np.array([matrix.GetElement(row, 3) for row in range(3)])


@pytest.mark.parametrize("position, point, tangent", [
    (2.5, [1.5, 2.0, 0.0], [0.6, 0.8, 0.0]),
    (9.0, [3.0, 4.0, 4.0], [0.0, 0.0, 1.0]),
    (-4.0, [0.0, 0.0, 0.0], [0.6, 0.8, 0.0]),  # clamped to the start
    (99.0, [3.0, 4.0, 10.0], [0.0, 0.0, 1.0]),  # clamped to the end
])
def test_cross_section_is_perpendicular_to_the_axis(scene, position, point, tangent):
    axis = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [3.0, 4.0, 10.0]])
    slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode", "Red")
    centre, normal = viewing.cross_section_at(slice_node, axis, position)
    np.testing.assert_allclose(centre, point, atol=1e-9)
    np.testing.assert_allclose(normal, tangent, atol=1e-9)
    np.testing.assert_allclose(_normal(slice_node), tangent, atol=1e-9)
    np.testing.assert_allclose(_origin(slice_node), point, atol=1e-9)
    matrix = np.array([[slice_node.GetSliceToRAS().GetElement(r, c) for c in range(3)] for r in range(3)])
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(3), atol=1e-9)  # a rotation, not a shear


def test_section_views_cross_and_follow_the_reconstructed_axis(scene, reconstructed):
    run, nodes = reconstructed
    axis = mrml.curve_points(nodes.axes[run.chosen_id])
    s = viewing.slice_positions(axis)
    slices = [scene.AddNewNodeByClass("vtkMRMLSliceNode", name) for name in viewing.SLICE_VIEWS]
    middle = 0.5 * s[-1]
    point = viewing.section_views(slices, axis, middle)
    index = int(np.searchsorted(s, middle, side="right") - 1)
    tangent = (axis[index + 1] - axis[index]) / np.linalg.norm(axis[index + 1] - axis[index])
    np.testing.assert_allclose(_normal(slices[0]), tangent, atol=1e-9)
    assert abs(_normal(slices[1]) @ tangent) < 1e-9 and abs(_normal(slices[2]) @ tangent) < 1e-9
    assert abs(_normal(slices[1]) @ _normal(slices[2])) < 1e-9
    for node in slices:
        np.testing.assert_allclose(_origin(node), point, atol=1e-9)
    # The straight ring stent runs along S: its cross-section at mid-length lies near the S axis.
    assert np.hypot(point[0], point[1]) < 0.5 and abs(point[2] - 0.5 * LENGTH_MM) < 1.5


def test_adjustment_refreshes_model_axis_and_tables(reconstructed):
    run, nodes = reconstructed
    chosen = run.chosen_id
    before_axis = mrml.curve_points(nodes.axes[chosen])
    before_mean = run.chosen.measurements["diameter_mean_mm"]
    moved = adjusted(run.chosen.reconstruction, translate_mm=(1.0, -0.5, 0.0), scale=1.2)
    rescore(run, chosen, moved)
    viewing.refresh_results(nodes, run, struts_of=chosen)

    assert run.chosen_id == chosen  # the choice survives the re-ranking
    np.testing.assert_allclose(mrml.curve_points(nodes.axes[chosen]), moved.axis)
    np.testing.assert_allclose(mrml.curve_points(nodes.axes[chosen]).mean(axis=0),
                               before_axis.mean(axis=0) + [1.0, -0.5, 0.0], atol=0.05)
    assert nodes.models[chosen].GetPolyData() is moved.surface
    if nodes.struts:
        np.testing.assert_allclose(mrml.curve_points(nodes.struts[0]), moved.struts[0])
    assert run.chosen.measurements["diameter_mean_mm"] == pytest.approx(1.2 * before_mean, rel=0.05)
    rows = {row["Algorithm"]: row for row in mrml.table_rows(nodes.table)}
    assert set(rows) == {r.id for r in run.results}
    assert float(rows[chosen]["Mean diameter"]) == pytest.approx(round(run.chosen.measurements["diameter_mean_mm"], 2))
    assert float(rows[chosen]["Score"]) == pytest.approx(round(run.chosen.score.value, 3))
    assert rows[chosen]["Chosen"] == "yes"
    assert nodes.table.GetColumnUnitLabel("Mean diameter") == "mm"
    assert f"rank {run.chosen.rank}" in nodes.models[chosen].GetName()
    sections = mrml.table_rows(nodes.sections_table)
    assert len(sections) == len(run.chosen.measurements["sections"]["s_mm"])
