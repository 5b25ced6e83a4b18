"""A mirror-image heart is recognised from the image, shown to the model unmirrored, and reported.

A mirrored-anatomy study is a real one whose pixels are mirrored left-right in every slice while its geometry is
kept: the heart in the patient becomes the mirror image of the one the geometry predicts, as in dextrocardia. The
analysis must flag it, show the model the heart the right way round (RV and LV not swapped) and measure what the
unmirrored study measures; the unmirrored study must not be flagged. Slices without short-axis geometry get their
mirror and quarter turn from the image alone (the digital phantom, stored mirrored or turned).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from CardiacSuiteLib.inference.orientation import (
    DEXTROCARDIA,
    LEVOCARDIA,
    SAGITTAL_MIRROR,
    SliceView,
    geometry_situs,
    rv_angle_deg,
    short_axis_view,
)
from CardiacSuiteLib.phantoms.cine import beating_heart_cine

from test_orientation import SUNNYBROOK_201

FAST_MODEL = "sax-fast-unet"


@pytest.fixture(scope="module")
def segmenter():
    from CardiacSuiteLib.inference.registry import ModelRegistry
    from CardiacSuiteLib.inference.segment2d import SliceSegmenter
    from CMRAnalysisLib.function import TASK

    return SliceSegmenter.from_registry(ModelRegistry.default(), FAST_MODEL, TASK, device="cpu")


def analyse(frames, ijk_to_ras, segmenter, times=None):
    from CMRAnalysisLib.function import FunctionOptions, analyse_cine

    results, _ = analyse_cine(frames, ijk_to_ras, segmenter, times, FunctionOptions(phases="ed-es"))
    return results


def test_a_view_then_another_is_one_view():
    images = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    views = [SliceView(mirror, turns) for mirror in (False, True) for turns in range(4)]
    for first in views:
        assert np.array_equal(first.mirrored().apply(images), first.apply(images)[..., ::-1])
        for second in views:
            assert np.array_equal(first.then(second).apply(images), second.apply(first.apply(images)))


def test_the_geometry_tells_which_way_the_long_axis_points():
    assert geometry_situs(SUNNYBROOK_201) == LEVOCARDIA
    assert geometry_situs(SAGITTAL_MIRROR @ SUNNYBROOK_201) == DEXTROCARDIA
    assert geometry_situs(np.eye(4)) is None and geometry_situs(None) is None
    # A mirror-image heart imaged in the mirrored planes gives the pixels of the normal heart: the same view.
    assert short_axis_view(SAGITTAL_MIRROR @ SUNNYBROOK_201, DEXTROCARDIA) == short_axis_view(SUNNYBROOK_201)
    # Under the levocardic assumption those slices are not short axis at all.
    assert short_axis_view(SAGITTAL_MIRROR @ SUNNYBROOK_201).is_identity


def test_rv_direction_from_labels():
    labels = np.zeros((2, 20, 20), np.uint8)
    labels[:, 8:12, 8:12] = 3
    labels[0, 8:12, 2:5] = 1  # RV to the left: 180°
    labels[1, 14:17, 8:12] = 1  # RV below (rows grow downwards): 90°
    assert rv_angle_deg(labels == 1, labels == 3) == pytest.approx(135.0)
    assert rv_angle_deg(labels[:, :, 8:] == 1, labels[:, :, 8:] == 3) == pytest.approx(90.0)  # one RV left
    assert rv_angle_deg(labels == 1, np.zeros(labels.shape, bool)) is None


def test_a_mirrored_anatomy_study_is_detected_and_measured_the_same(shared_data, segmenter, caplog):
    from CardiacSuiteLib.imageio import read_image_input

    series = read_image_input(shared_data / "sunnybrook" / "dicoms" / "SCD0000201")
    as_acquired = analyse(series.frames, series.ijk_to_ras, segmenter, series.frame_times_ms)
    with caplog.at_level(logging.WARNING):
        mirrored_pixels = np.ascontiguousarray(series.frames[..., ::-1])
        mirrored = analyse(mirrored_pixels, series.ijk_to_ras, segmenter, series.frame_times_ms)
    normal, flagged = as_acquired["model"]["situs"], mirrored["model"]["situs"]
    assert normal["dextrocardia"] is False and normal["warning"] is None
    assert flagged["dextrocardia"] is True and flagged["mirrored_by_image"] is True
    assert flagged["input_orientation"] == "mirrored left-right"
    assert "heart on the right" in caplog.text and "check the RV and LV labels" in caplog.text
    kept, rejected = flagged["scores"]["kept"], flagged["scores"]["rejected"]
    assert kept["rv_model_pixels_per_slice"] > rejected["rv_model_pixels_per_slice"]
    assert kept["rv_misfit_deg"] <= 45.0
    lv, lv_mirrored = as_acquired["lv"], mirrored["lv"]
    assert lv_mirrored["edv_ml"] == pytest.approx(lv["edv_ml"], rel=0.03)
    assert lv_mirrored["esv_ml"] == pytest.approx(lv["esv_ml"], rel=0.03)
    assert lv_mirrored["ef_pct"] == pytest.approx(lv["ef_pct"], abs=2.0)
    # RV and LV not swapped: each ventricle keeps its own volume.
    assert mirrored["rv"]["edv_ml"] == pytest.approx(as_acquired["rv"]["edv_ml"], rel=0.05)


def test_without_geometry_the_image_chooses_mirror_and_quarter_turn(segmenter):
    phantom = beating_heart_cine(phases=6, slices=8)
    frames, geometry = phantom.series.frames, phantom.series.ijk_to_ras
    assert geometry_situs(geometry) is None  # an axial-like grid: nothing to turn by
    reference = analyse(frames, geometry, segmenter)
    assert reference["model"]["input_orientation"] == "as stored"
    assert reference["model"]["situs"]["dextrocardia"] is None and reference["model"]["situs"]["warning"] is None
    # The phantom is symmetric about its LV-RV axis: a view that flips it upside down shows the model the same heart.
    same_heart = (SliceView(), SliceView(mirror=True, quarter_turns=2))
    views = [SliceView(mirror, turns) for mirror in (False, True) for turns in range(4)]
    for stored in (SliceView(quarter_turns=1), SliceView(mirror=True, quarter_turns=3)):
        moved = analyse(stored.apply(frames), geometry, segmenter)
        finding = moved["model"]["situs"]
        assert "no short-axis geometry" in finding["warning"]
        assert finding["input_orientation"] in {view.describe() for view in views if stored.then(view) in same_heart}
        for key in ("lv", "rv"):
            assert moved[key]["edv_ml"] == pytest.approx(reference[key]["edv_ml"], rel=0.03), (stored, key)


@pytest.mark.realdata
@pytest.mark.parametrize("patient", ["SCD0000201", "SCD0000301"])
def test_the_published_model_sees_a_mirrored_heart_too(shared_data, patient):
    """The published model follows the image: shown a mirrored heart it finds the real RV, on the LV's other side.

    The RV-blood test alone missed both studies with it (the RV it found in the geometry's view was the real one);
    the side test catches them. Only the check runs here (12 slices per view at about 0.45 s each).
    """
    from CardiacSuiteLib.imageio import read_image_input
    from CardiacSuiteLib.inference.orientation import WRONG_SIDE_MISFIT_DEG, check_view
    from CardiacSuiteLib.inference.registry import ModelRegistry
    from CardiacSuiteLib.inference.segment2d import SliceSegmenter
    from CMRAnalysisLib.function import LV, MYOCARDIUM, RV, TASK

    published = SliceSegmenter.from_registry(ModelRegistry.default(), "myopari-acdc-tiramisu", TASK, device="cpu")
    labels = [published.entry.label_value(name) for name in (RV, MYOCARDIUM, LV)]
    series = read_image_input(shared_data / "sunnybrook" / "dicoms" / patient)
    frames = series.frames.astype(np.float32)
    normal = check_view(frames, series.ijk_to_ras, published, *labels)
    mirrored = check_view(np.ascontiguousarray(frames[..., ::-1]), series.ijk_to_ras, published, *labels)
    assert normal.dextrocardia is False and normal.view == short_axis_view(series.ijk_to_ras)
    assert mirrored.dextrocardia is True and mirrored.mirrored_by_image is True
    assert mirrored.view == short_axis_view(series.ijk_to_ras).then(SliceView(mirror=True))
    assert mirrored.rejected.rv_misfit_deg > WRONG_SIDE_MISFIT_DEG > mirrored.kept.rv_misfit_deg
