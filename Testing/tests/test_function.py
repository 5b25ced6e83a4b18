"""CMR function measurement: curves, rates, heart rate, papillary convention, AHA segments, correction loop.

Everything here runs on label maps with known truth (the phantom's own labels), so it tests the measurement,
not the model; the model is exercised by test_cli.py and the Sunnybrook validation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from CardiacSuiteLib import mrml
from CardiacSuiteLib.case import CardiacCase
from CardiacSuiteLib.imagedata import add_to_scene
from CardiacSuiteLib.phantoms.cine import beating_heart_cine
from CMRAnalysisLib import aha, curves, papillary
from CMRAnalysisLib.function import FunctionOptions, labels_digest, measure_function
from CMRAnalysisLib.function_scene import SEGMENT_SPECS, add_function_results, recompute_from_scene
from CMRAnalysisLib.patient import PatientInfo, assess_patient


@pytest.fixture(scope="module")
def phantom():
    # Anterolateral wall (image angles -60°..0°: patient left and anterior) thinned to half.
    return beating_heart_cine(phases=12, slices=8, size=128, pixel_mm=2.0, thin_sector_deg=(-60.0, 0.0))


@pytest.fixture(scope="module")
def truth_results(phantom):
    labels = {p: phantom.labels[p] for p in range(phantom.labels.shape[0])}
    return measure_function(phantom.series.frames, labels, phantom.series.ijk_to_ras, phantom.series.frame_times_ms)


def test_volumes_and_phases_match_the_phantom(phantom, truth_results):
    lv = truth_results["lv"]
    assert (lv["ed_phase"], lv["es_phase"]) == (phantom.ed_phase, phantom.es_phase)
    assert lv["edv_ml"] == pytest.approx(phantom.lv_volume_ml[phantom.ed_phase], rel=0.02)
    assert lv["esv_ml"] == pytest.approx(phantom.lv_volume_ml[phantom.es_phase], rel=0.02)
    truth_ef = 100 * (1 - phantom.lv_volume_ml.min() / phantom.lv_volume_ml.max())
    assert lv["ef_pct"] == pytest.approx(truth_ef, abs=1.0)
    assert truth_results["rv"]["edv_ml"] == pytest.approx(phantom.rv_volume_ml.max(), rel=1e-6)
    assert truth_results["curves"]["lv_ml"] == pytest.approx(list(phantom.lv_volume_ml), rel=0.02)
    assert lv["mass_g"] == pytest.approx(1.05 * lv["myocardium_ed_ml"])


def test_heart_rate_and_cardiac_output(truth_results):
    # The phantom's 12 frames span a 1000 ms cycle: 60 bpm.
    assert truth_results["hr_bpm"] == pytest.approx(60.0)
    lv = truth_results["lv"]
    assert lv["co_l_min"] == pytest.approx(lv["sv_ml"] * 60.0 / 1000.0)


def test_heart_rate_prefers_the_nominal_interval():
    timing = curves.cycle_timing([0.0, 40.0, 80.0, 120.0], 4, nominal_rr_ms=857.0)
    assert timing.rr_ms == 857.0 and timing.heart_rate_bpm == pytest.approx(70.0, abs=0.05)
    assert curves.cycle_timing([0.0, 40.0, 80.0, 120.0], 4).rr_ms == pytest.approx(160.0)
    assert curves.cycle_timing(None, 20) is None


def test_rates_of_a_pure_cosine_by_hand():
    # V(t) = 100 + 40 cos(2πt/T), T = 1000 ms: steepest fall 40·2π/T = 251.3 ml/s at T/4, rise at 3T/4.
    times = np.arange(25) * 40.0
    volumes = 100 + 40 * np.cos(2 * np.pi * times / 1000.0)
    timing = curves.CycleTiming(times, 1000.0, "test")
    rates = curves.ejection_and_filling_rates(volumes, timing, ed=0, es=12)
    assert rates["per_ml_s"] == pytest.approx(40 * 2 * np.pi, rel=0.01)
    assert rates["pfr_ml_s"] == pytest.approx(40 * 2 * np.pi, rel=0.01)
    assert rates["time_to_per_ms"] == pytest.approx(250.0, abs=2.0)
    assert rates["time_to_pfr_ms"] == pytest.approx(750.0, abs=2.0)
    assert rates["per_edv_s"] == pytest.approx(40 * 2 * np.pi / 140.0, rel=0.01)


def test_papillary_convention_moves_dark_cavity_pixels(phantom):
    frames = phantom.series.frames.copy()
    labels = phantom.labels[0].copy()
    # Two papillary muscles: dark discs inside the cavity of the mid slices.
    yy, xx = np.mgrid[0:128, 0:128]
    muscle = ((yy - 70) ** 2 + (xx - 70) ** 2 <= 9) | ((yy - 58) ** 2 + (xx - 72) ** 2 <= 9)
    for k in (2, 3, 4):
        frames[0, k][muscle] = np.median(frames[0, k][labels[k] == 2])
    moved = papillary.move_to_myocardium(frames[0], labels, lv=3, myo=2)
    gained = ((moved == 2) & (labels == 3)).sum()
    assert gained >= 3 * muscle.sum() * 0.8
    assert ((moved == 3) & (labels != 3)).sum() == 0
    blood = measure_function(frames, {0: labels, 6: phantom.labels[6]}, phantom.series.ijk_to_ras)
    mass = measure_function(frames, {0: labels, 6: phantom.labels[6]}, phantom.series.ijk_to_ras,
                            options=FunctionOptions(papillary="myocardium"))
    assert mass["lv"]["edv_ml"] < blood["lv"]["edv_ml"]
    assert mass["lv"]["mass_g"] > blood["lv"]["mass_g"]
    assert "myocardium" in mass["method"]["papillary_muscles"]


def test_aha_segments_find_the_thinned_wall(truth_results):
    result = truth_results["aha"]
    assert result["available"]
    segments = result["segments"]
    thick = {int(n): s["ed_thickness_mm"] for n, s in segments.items() if s["ed_thickness_mm"] is not None}
    # The thinned anterolateral wall (segments 6 and 12) is about half the septum (2, 3, 8, 9).
    septum = np.mean([thick[n] for n in (2, 3, 8, 9)])
    assert thick[6] < 0.65 * septum and thick[12] < 0.65 * septum
    for n in (2, 3, 4, 5, 8, 9, 10, 11):
        assert thick[n] > 0.85 * septum
    assert segments["17"]["ed_thickness_mm"] is None
    # Insertion points: one anterior, one inferior (RAS A component), both on the patient's right (R < LV centre).
    points = result["rv_insertion_points_ras"]
    assert points["anterior"][1] > 10 and points["inferior"][1] < -10
    assert points["anterior"][0] < 0 and points["inferior"][0] < 0
    assert all(s["thickening_pct"] > 0 for s in segments.values() if s["thickening_pct"] is not None)
    assert result["territories"]["LAD"]["segments"] == [1, 2, 7, 8, 13, 14, 17]


def test_aha_segment_assignment_by_hand():
    points = aha.InsertionPoints(math.radians(120), math.radians(240), [0, 0, 0], [0, 0, 0], "test")
    # Septal arc 120°..240° (120° long), split at 180°; free wall 240°..480° in four 60° steps.
    assert aha.segment_of(math.radians(150), "basal", points) == 2
    assert aha.segment_of(math.radians(210), "basal", points) == 3
    assert aha.segment_of(math.radians(270), "basal", points) == 4
    assert aha.segment_of(math.radians(330), "mid", points) == 11
    assert aha.segment_of(math.radians(30), "mid", points) == 12
    assert aha.segment_of(math.radians(90), "basal", points) == 1
    assert aha.segment_of(math.radians(180), "apical", points) == 14
    assert aha.segment_of(math.radians(270), "apical", points) == 15
    assert aha.segment_of(math.radians(0), "apical", points) == 16
    assert aha.segment_of(math.radians(90), "apical", points) == 13


def test_levels_split_in_thirds_from_the_base():
    labels = np.zeros((7, 20, 20), np.uint8)
    labels[:, 5:15, 5:15] = 2
    labels[:, 8:12, 8:12] = 3
    # 7 ringed slices: basal ceil(7/3) = 3, mid up to ceil(14/3) = 5, apical the rest.
    assert aha.levels(labels, np.ones(7, bool), base_direction=-1, lv=3, myo=2) == {
        "basal": [0, 1, 2], "mid": [3, 4], "apical": [5, 6]
    }
    assert aha.levels(labels, np.ones(7, bool), base_direction=1, lv=3, myo=2)["basal"] == [6, 5, 4]


def test_user_slice_choice_overrides_the_basal_rule(phantom, truth_results):
    labels = {p: phantom.labels[p] for p in (0, 6)}
    choice = [False] + [True] * 7
    excluded = measure_function(phantom.series.frames, labels, phantom.series.ijk_to_ras,
                                options=FunctionOptions(slice_inclusion=choice))
    assert excluded["lv"]["edv_ml"] < truth_results["lv"]["edv_ml"] - 5
    assert excluded["slices_included"]["0"] == choice
    with pytest.raises(Exception, match="one per slice"):
        measure_function(phantom.series.frames, labels, phantom.series.ijk_to_ras, options=FunctionOptions(slice_inclusion=[True]))


def test_patient_assessment_indexes_and_flags(truth_results):
    results = {k: (dict(v) if isinstance(v, dict) else v) for k, v in truth_results.items()}
    assess_patient(results, PatientInfo(height_cm=180, weight_kg=75, sex="M", age=50, bsa_formula="mosteller"))
    assert results["bsa_m2"] == pytest.approx(math.sqrt(180 * 75 / 3600))
    assert results["lv"]["edvi_ml_m2"] == pytest.approx(results["lv"]["edv_ml"] / results["bsa_m2"])
    assert results["lv"]["ci_l_min_m2"] == pytest.approx(results["lv"]["co_l_min"] / results["bsa_m2"])
    ef = results["reference"]["parameters"]["lv_ef_pct"]
    assert ef["flag"] in ("low", "normal", "high") and ef["z_score"] is not None


def test_correction_loop_in_the_scene(scene, phantom, truth_results):
    series = phantom.series
    sequence, browser = add_to_scene(scene, series)
    labels = {p: phantom.labels[p] for p in range(series.frames.shape[0])}
    results = dict(truth_results)
    results["ai_label_digests"] = {str(p): labels_digest(v) for p, v in labels.items()}
    results["model"] = {"id": "truth", "version": "0", "device": "cpu"}
    index_values = [sequence.GetNthIndexValue(i) for i in range(sequence.GetNumberOfDataNodes())]
    analysis = add_function_results(scene, sequence, results, labels, series.ijk_to_ras, index_values, FunctionOptions())
    assert analysis.segmentation_browser is browser  # contours step through phases with the images
    assert analysis.plot_chart.GetNumberOfPlotSeriesNodes() == 2
    assert analysis.aha_table.GetTable().GetNumberOfRows() == 17
    case = CardiacCase(analysis.case_node)

    unchanged = recompute_from_scene(scene, case)
    assert unchanged.results["edited"]["phases"] == []
    assert unchanged.results["lv"]["edv_ml"] == pytest.approx(truth_results["lv"]["edv_ml"])

    # The reader erases the LV cavity of one end-diastolic slice in the Segment Editor.
    ed = truth_results["lv"]["ed_phase"]
    edited = labels[ed].copy()
    removed_ml = (edited[3] == 3).sum() * 2.0 * 2.0 * 10.0 / 1000.0
    edited[3][edited[3] == 3] = 0
    browser.SetSelectedItemNumber(ed)
    shown = browser.GetProxyNode(analysis.segmentation_sequence)
    mrml.fill_segmentation_from_labelmap(shown, edited, series.ijk_to_ras, SEGMENT_SPECS)
    redone = recompute_from_scene(scene, case)
    assert redone.results["edited"]["phases"] == [ed]
    ed_volume = redone.results["curves"]["lv_ml"][redone.results["curves"]["phase"].index(ed)]
    assert ed_volume == pytest.approx(truth_results["lv"]["edv_ml"] - removed_ml, rel=0.01)
    # That phase is no longer the largest: end-diastole moves to the next largest phase.
    assert redone.results["lv"]["edv_ml"] < truth_results["lv"]["edv_ml"]
    assert case.value("FunctionResults")["edited"]["phases"] == [ed]
    table = mrml.table_rows(redone.table)
    assert table[0]["LV"] == f"{redone.results['lv']['edv_ml']:.1f}"

    # Moving the insertion points changes the segment assignment and is recorded.
    markups = redone.insertion_points
    anterior = list(markups.GetNthControlPointPositionWorld(0))
    inferior = list(markups.GetNthControlPointPositionWorld(1))
    markups.SetNthControlPointPositionWorld(0, *rotate_about_z(anterior, 40.0))
    markups.SetNthControlPointPositionWorld(1, *rotate_about_z(inferior, 40.0))
    moved = recompute_from_scene(scene, case)
    assert moved.results["edited"]["rv_insertion_points_moved"]
    assert moved.results["aha"]["rv_insertion_points_ras"]["source"] == "user-placed"
    before = redone.results["aha"]["segments"]["6"]["ed_thickness_mm"]
    assert moved.results["aha"]["segments"]["6"]["ed_thickness_mm"] != pytest.approx(before, rel=0.02)

    # A later recompute keeps the reader's points, and the plot holds only the current two series.
    again = recompute_from_scene(scene, case)
    assert again.results["aha"]["rv_insertion_points_ras"]["source"] == "user-placed"
    assert again.results["aha"]["segments"]["6"]["ed_thickness_mm"] == pytest.approx(moved.results["aha"]["segments"]["6"]["ed_thickness_mm"])
    assert list(again.insertion_points.GetNthControlPointPositionWorld(0)) == pytest.approx(rotate_about_z(anterior, 40.0))
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotSeriesNode") == 2


def rotate_about_z(point, degrees):
    angle = math.radians(degrees)
    x, y, z = point
    return [x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle), z]
