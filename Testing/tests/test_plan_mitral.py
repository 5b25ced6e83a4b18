"""The mitral planning protocol (``InterventionPlanningLib.mitral``) against the mitral phantom's analytic truth.

Two phantoms (``Testing/phantoms/mitral.py``) in random orientations, of different annulus sizes, are rendered
once per module: the D-shape, the IC / SL / TT distances, the annulus height, the MAC arc, the neo-LVOT of a
virtual valve (closed form: the LVOT circle less its lens with the valve disk) and the transseptal height are
measured from the six landmarks; the landmarks are then found from the phantom's label map alone. The error
paths (missing landmarks, no aortic annulus centre) and a moved landmark are checked against what the
definitions predict.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TESTING = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTING))

from phantoms import mitral as mp  # noqa: E402

from InterventionPlanningLib import mitral  # noqa: E402
from InterventionPlanningLib.model import PlanInputs  # noqa: E402

CASES = {"default": dict(spacing_mm=0.7, seed=3),
         "large": dict(ic_mm=44.0, sl_mm=31.0, tt_mm=30.0, height_mm=8.0, mac_arc_deg=140.0, spacing_mm=0.8, seed=11)}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    phantom = mp.mitral(**CASES[request.param])
    landmarks = dict(phantom.landmarks)
    landmarks["transseptal_puncture"] = phantom.transseptal_puncture
    landmarks["aortic_annulus_center"] = phantom.aortic_annulus_center
    start = time.perf_counter()
    result = mitral.measure(PlanInputs(image=phantom.image, ijk_to_ras=phantom.ijk_to_ras, landmarks=landmarks,
                                       phase_label="35 %"))
    seconds = time.perf_counter() - start
    return phantom, landmarks, result, seconds


@pytest.fixture(scope="module")
def default_phantom():
    return mp.mitral(**CASES["default"])


@pytest.fixture(scope="module")
def from_labels(default_phantom):
    p = default_phantom
    return mitral.measure(PlanInputs(image=p.image, ijk_to_ras=p.ijk_to_ras, labels=p.labels, label_names=p.label_names))


def _inputs(phantom, landmarks, **kwargs) -> PlanInputs:
    return PlanInputs(image=phantom.image, ijk_to_ras=phantom.ijk_to_ras, landmarks=landmarks, **kwargs)


# ---------------------------------------------------------------------------------------------- phantom truth


def test_phantom_truth_is_self_consistent(default_phantom):
    p = default_phantom
    truth = p.annulus
    a, b = truth["semi_axes_mm"]
    assert truth["saddle_area_mm2"] == pytest.approx(math.pi * a * b, rel=1e-6)  # numerical vs closed form
    points = np.array([p.to_local(p.landmarks[name]) for name in mp.LANDMARKS])
    assert np.linalg.norm(points[2, :2] - points[4, :2]) == pytest.approx(truth["intercommissural_mm"], abs=1e-6)
    assert np.linalg.norm(points[1, :2] - points[5, :2]) == pytest.approx(truth["trigone_to_trigone_mm"], abs=1e-6)
    assert -points[3, 1] == pytest.approx(truth["septal_lateral_mm"], abs=1e-6)  # TT midpoint is the origin
    assert points[:, 2].max() - points[:, 2].min() == pytest.approx(truth["height_mm"], abs=1e-6)
    # the LA–LV contact of the label map is the orifice, the aorta lies above the aortic annulus
    assert {mp.LA, mp.LV, mp.AORTA} <= set(np.unique(p.labels).tolist())
    blood = p.image[p.labels == mp.LV]
    assert abs(float(np.median(blood)) - p.blood_hu) < 10.0
    neo = p.neo_lvot(32.0)
    assert 0 < neo["lens_mm2"] < neo["lvot_area_mm2"] and neo["minimum_to_mm"] > neo["minimum_from_mm"]


def test_write_round_trip(default_phantom, tmp_path):
    from CardiacSuiteLib.imageio import read_image_input

    path = mp.write(default_phantom, tmp_path)
    series = read_image_input(path)
    assert series.frames.shape[1:] == default_phantom.shape
    assert np.allclose(series.ijk_to_ras, default_phantom.ijk_to_ras, atol=1e-4)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["kind"] == "mitral" and set(mp.LANDMARKS) <= set(truth["landmarks"])
    assert truth["neo_lvot"]["area_mm2"] == pytest.approx(default_phantom.neo_lvot()["area_mm2"])


# ---------------------------------------------------------------------------------------------- from landmarks


def test_d_shape_and_distances(case):
    phantom, _, result, _ = case
    truth, measured = phantom.annulus, result.results["annulus"]
    d_true, d = truth["d_shape"], measured["d_shape"]
    assert d["area_mm2"] == pytest.approx(d_true["area_mm2"], rel=0.05)
    assert abs(d["perimeter_mm"] - d_true["perimeter_mm"]) <= 2.0
    assert d["area_derived_diameter_mm"] == pytest.approx(2 * math.sqrt(d["area_mm2"] / math.pi), abs=0.01)
    assert d["perimeter_derived_diameter_mm"] == pytest.approx(d["perimeter_mm"] / math.pi, abs=0.01)
    for key in ("intercommissural_mm", "septal_lateral_mm", "trigone_to_trigone_mm", "height_mm"):
        assert abs(measured[key] - truth[key]) <= 1.0, key
    assert abs(measured["saddle_perimeter_mm"] - truth["saddle_perimeter_mm"]) <= 2.0
    assert measured["saddle_area_mm2"] == pytest.approx(truth["saddle_area_mm2"], rel=0.05)
    assert measured["saddle_area_mm2"] > d["area_mm2"]  # the D-shape leaves out the aorto-mitral continuity
    assert measured["eccentricity"] == pytest.approx(truth["eccentricity"], abs=0.03)
    normal = np.array(measured["plane"]["normal"])
    assert float(normal @ truth["plane"]["normal"]) > math.cos(math.radians(2.0))  # into the left ventricle


def test_mac(case):
    phantom, _, result, _ = case
    mac, truth = result.results["mac"], phantom.mac
    assert abs(mac["arc_deg"] - truth["arc_deg"]) <= 15.0
    assert abs(mac["arc_percent"] - truth["arc_percent"]) <= 5.0
    assert mac["threshold_hu"] == pytest.approx(truth["threshold_hu"], abs=20.0)
    assert "max(200, 3·SD)" in mac["rule"]
    assert mac["volume_mm3"] == pytest.approx(truth["volume_mm3"], rel=0.25)
    assert abs(mac["max_thickness_mm"] - truth["max_thickness_mm"]) <= 0.6
    assert mac["reaches_trigone"] is False


def test_neo_lvot_matches_the_closed_form(case):
    phantom, landmarks, result, _ = case
    tmvr = result.results["tmvr"]
    truth = phantom.neo_lvot(tmvr["valve_diameter_mm"])  # default valve: the measured D-shape area diameter
    assert tmvr["valve_diameter_mm"] == pytest.approx(result.results["annulus"]["d_shape"]["area_derived_diameter_mm"])
    assert tmvr["neo_lvot_min_area_mm2"] == pytest.approx(truth["area_mm2"], rel=0.10)
    assert truth["minimum_from_mm"] - 1.0 <= tmvr["position_mm"] <= truth["minimum_to_mm"] + 1.0
    assert tmvr["flagged"] == (tmvr["neo_lvot_min_area_mm2"] <= 189.4)
    assert "189.4" in tmvr["rule"] and "end-systolic" in tmvr["rule"]
    # a given, smaller valve leaves a larger neo-LVOT, again as the closed form says
    smaller = mitral.measure(_inputs(phantom, landmarks, valve_size_mm=30.0)).results["tmvr"]
    assert smaller["neo_lvot_min_area_mm2"] == pytest.approx(phantom.neo_lvot(30.0)["area_mm2"], rel=0.10)
    assert smaller["neo_lvot_min_area_mm2"] > tmvr["neo_lvot_min_area_mm2"]
    assert any(s.name == "neo_lvot" and s.contour_2d is not None for s in result.sections)
    assert "neo_lvot_centreline" in result.curves


def test_transseptal_height(case):
    phantom, _, result, _ = case
    assert abs(result.results["transseptal_height_mm"] - phantom.transseptal_height_mm) <= 0.5


def test_result_shape_and_speed(case):
    _, _, result, seconds = case
    assert result.protocol == "mitral"
    json.dumps(result.results)  # plain JSON
    assert all(result.landmark_sources[name] == "given" for name in mp.LANDMARKS)
    assert {"mitral_saddle_annulus", "mitral_d_shape", "mitral_tt_line"} <= set(result.curves)
    annulus_section = next(s for s in result.sections if s.name == "mitral_annulus")
    assert annulus_section.contour_2d.shape[1] == 2 and annulus_section.pixels.ndim == 2
    assert all(len(row) == 3 for row in result.table)
    assert any("end-systolic" in note for note in result.notes)
    assert seconds < 15.0


# ---------------------------------------------------------------------------------------------- found, errors, edits


def test_landmarks_found_from_the_label_map(default_phantom, from_labels):
    p, result = default_phantom, from_labels
    for name in mp.LANDMARKS:
        assert result.landmark_sources[name] == "found"
        error = float(np.linalg.norm(result.landmarks[name] - p.landmarks[name]))
        assert error <= 3.0, f"{name} {error:.2f} mm from the truth"
    measured = result.results["annulus"]
    assert measured["d_shape"]["area_mm2"] == pytest.approx(p.annulus["d_shape"]["area_mm2"], rel=0.05)
    assert abs(measured["septal_lateral_mm"] - p.annulus["septal_lateral_mm"]) <= 1.0
    tmvr = result.results["tmvr"]  # the aortic annulus centre found from the aorta–LV contact
    assert result.landmark_sources["aortic_annulus_center"] == "found"
    assert tmvr["neo_lvot_min_area_mm2"] == pytest.approx(p.neo_lvot(tmvr["valve_diameter_mm"])["area_mm2"], rel=0.10)


def test_cardiac_segmentation_numbering_is_accepted(default_phantom, from_labels):
    p = default_phantom
    result = mitral.measure(PlanInputs(image=p.image, ijk_to_ras=p.ijk_to_ras, labels=p.labels))
    for name in mp.LANDMARKS:
        assert np.allclose(result.landmarks[name], from_labels.landmarks[name])


def test_missing_landmarks_name_what_to_give(default_phantom):
    p = default_phantom
    partial = {name: p.landmarks[name] for name in mp.LANDMARKS[:4]}
    with pytest.raises(ValueError) as error:
        mitral.measure(_inputs(p, partial))
    message = str(error.value)
    assert "\n" not in message
    assert "mitral_commissure_posteromedial" in message and "mitral_trigone_right" in message
    assert "label map" in message


def test_given_landmarks_override_found_ones(default_phantom):
    p = default_phantom
    moved = p.landmarks["mitral_trigone_left"] + 1.5 * p.orientation[:, 0]
    result = mitral.measure(PlanInputs(image=p.image, ijk_to_ras=p.ijk_to_ras, labels=p.labels,
                                       label_names=p.label_names, landmarks={"mitral_trigone_left": moved}))
    assert result.landmark_sources["mitral_trigone_left"] == "given"
    assert result.landmark_sources["mitral_posterior_horn"] == "found"
    assert np.allclose(result.landmarks["mitral_trigone_left"], moved)


def test_moving_a_landmark_changes_the_d_shape_as_expected(default_phantom):
    p = default_phantom
    base = mitral.measure(_inputs(p, dict(p.landmarks))).results["annulus"]
    shift = 3.0
    posterior = dict(p.landmarks)
    posterior["mitral_posterior_horn"] = p.landmarks["mitral_posterior_horn"] - shift * p.orientation[:, 1]
    moved = mitral.measure(_inputs(p, posterior)).results["annulus"]
    assert moved["septal_lateral_mm"] - base["septal_lateral_mm"] == pytest.approx(shift, abs=0.05)
    assert moved["intercommissural_mm"] == pytest.approx(base["intercommissural_mm"], abs=0.05)
    assert moved["trigone_to_trigone_mm"] == pytest.approx(base["trigone_to_trigone_mm"], abs=0.05)
    # the arc bulges by 3 mm at the horn, tapering to the commissures: a band of a fraction of IC × shift
    gain = moved["d_shape"]["area_mm2"] - base["d_shape"]["area_mm2"]
    assert 0.4 * base["intercommissural_mm"] * shift < gain < 0.9 * base["intercommissural_mm"] * shift
    # a trigone moved outwards along the TT line lengthens TT by as much, and the D-shape grows
    wider = dict(p.landmarks)
    wider["mitral_trigone_left"] = p.landmarks["mitral_trigone_left"] + 2.0 * p.orientation[:, 0]
    widened = mitral.measure(_inputs(p, wider)).results["annulus"]
    assert widened["trigone_to_trigone_mm"] - base["trigone_to_trigone_mm"] == pytest.approx(2.0, abs=0.05)
    assert widened["d_shape"]["area_mm2"] > base["d_shape"]["area_mm2"]


def test_no_aortic_annulus_centre_skips_the_neo_lvot(default_phantom):
    p = default_phantom
    result = mitral.measure(_inputs(p, dict(p.landmarks)))
    assert result.results["tmvr"] is None
    assert "aortic_annulus_center" in result.results["tmvr_note"]
    assert any("aortic_annulus_center" in note for note in result.notes)
    assert result.results["transseptal_height_mm"] is None


def test_frustum_valve_narrows_the_neo_lvot(default_phantom):
    p = default_phantom
    landmarks = dict(p.landmarks, aortic_annulus_center=p.aortic_annulus_center)
    cylinder = mitral.measure(_inputs(p, landmarks, valve_size_mm=32.0)).results["tmvr"]
    frustum = mitral.measure(_inputs(p, landmarks, valve_size_mm=32.0,
                                     options={"valve_top_diameter_mm": 40.0})).results["tmvr"]
    assert frustum["valve_shape"] == "frustum"
    assert frustum["neo_lvot_min_area_mm2"] < cylinder["neo_lvot_min_area_mm2"]
