"""Short-axis slices reach the cine models in the trained orientation, whatever way the scanner stored them.

The same Sunnybrook study stored mirrored or turned (pixels and geometry changed together, so the anatomy in
the patient is the same) must give the same contours and volumes as the study as acquired.
"""

from __future__ import annotations

import numpy as np
import pytest

from CardiacSuiteLib.inference.orientation import SliceView, short_axis_view

# SCD0000201's geometry (GE short-axis cine, I = columns, J = rows, K = slices toward the base).
SUNNYBROOK_201 = np.array(
    [
        [-1.053, 0.207, 6.193, 23.97],
        [-0.846, -0.566, -6.680, 291.70],
        [0.212, -1.227, 4.126, 92.54],
        [0, 0, 0, 1],
    ]
)


def restored(frames: np.ndarray, ijk_to_ras: np.ndarray, mirror: bool, quarter_turns: int):
    """The same acquisition stored another way: pixels mirrored/turned and the geometry to match."""
    columns = frames.shape[-1]
    matrix = np.asarray(ijk_to_ras, dtype=float)
    if mirror:
        frames = frames[..., ::-1]
        matrix = matrix @ np.array([[-1, 0, 0, columns - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    for _ in range(quarter_turns % 4):
        columns = frames.shape[-1]
        frames = np.rot90(frames, 1, axes=(-2, -1))  # new (i, j) came from old (C - 1 - j, i)
        matrix = matrix @ np.array([[0, -1, 0, columns - 1], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    return np.ascontiguousarray(frames), matrix


def test_views_undo_exactly():
    images = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    for mirror in (False, True):
        for turns in range(4):
            view = SliceView(mirror, turns)
            assert np.array_equal(view.undo(view.apply(images)), images)
    assert SliceView().apply(images) is images
    assert SliceView(True, 1).describe() == "mirrored left-right and turned 90° counter-clockwise"


def test_restored_geometry_keeps_every_pixel_in_place():
    frames = np.random.default_rng(3).random((1, 2, 6, 9))
    moved, matrix = restored(frames, SUNNYBROOK_201, True, 3)
    # One pixel of the original, found again by its RAS position in the re-stored grid.
    k, j, i = 1, 4, 7
    ras = SUNNYBROOK_201 @ [i, j, k, 1]
    new_i, new_j, new_k, _ = np.rint(np.linalg.solve(matrix, ras)).astype(int)
    assert moved[0, new_k, new_j, new_i] == frames[0, k, j, i]


@pytest.mark.parametrize("mirror,turns", [(False, 0), (True, 0), (False, 1), (True, 2), (False, 3)])
def test_any_stored_orientation_reaches_the_same_view(mirror, turns):
    frames = np.random.default_rng(4).random((1, 2, 6, 9))
    reference_view = short_axis_view(SUNNYBROOK_201)
    assert reference_view == SliceView()  # Sunnybrook is stored as the models were trained
    moved, matrix = restored(frames, SUNNYBROOK_201, mirror, turns)
    assert np.array_equal(short_axis_view(matrix).apply(moved), frames)


def test_geometry_that_is_not_short_axis_is_left_alone():
    assert short_axis_view(None).is_identity
    assert short_axis_view(np.eye(4)).is_identity  # axial, or no geometry at all
    assert short_axis_view(np.diag([1.5, 1.5, 8.0, 1.0])).is_identity


def test_a_mirrored_and_turned_study_gives_the_same_function(shared_data):
    from CardiacSuiteLib.imageio import read_image_input
    from CardiacSuiteLib.inference.registry import ModelRegistry
    from CardiacSuiteLib.inference.segment2d import SliceSegmenter
    from CMRAnalysisLib.function import TASK, FunctionOptions, analyse_cine

    series = read_image_input(shared_data / "sunnybrook" / "dicoms" / "SCD0000201")
    segmenter = SliceSegmenter.from_registry(ModelRegistry.default(), "sax-fast-unet", TASK, device="cpu")
    options = FunctionOptions(phases="ed-es")
    as_acquired, segmentation = analyse_cine(series.frames, series.ijk_to_ras, segmenter, series.frame_times_ms, options)
    frames, matrix = restored(series.frames, series.ijk_to_ras, True, 1)
    moved, moved_segmentation = analyse_cine(frames, matrix, segmenter, series.frame_times_ms, options)
    assert as_acquired["model"]["input_orientation"] == "as stored"
    assert moved["model"]["input_orientation"] == "mirrored left-right and turned 90° counter-clockwise"
    for phase, labels in segmentation.labels.items():
        # restored() stored the study as SliceView(True, 1) would show it: undo brings the labels home.
        assert np.array_equal(SliceView(True, 1).undo(moved_segmentation.labels[phase]), labels)
    assert moved["lv"]["edv_ml"] == pytest.approx(as_acquired["lv"]["edv_ml"], rel=1e-9)
    assert moved["lv"]["ef_pct"] == pytest.approx(as_acquired["lv"]["ef_pct"], abs=1e-9)
