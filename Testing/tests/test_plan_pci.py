"""PCI planning (``InterventionPlanningLib/pci.py``) on the coronary stenosis phantom
(``Testing/phantoms/coronary_stenosis.py``): three stenosis severities against their analytic truth, a
centreline given 0.8 mm off the lumen centre, a healthy artery, the user's own lesion extent, the segment and
CAD-RADS rules, the phantom's files, and the error without a vessel curve.

Tolerances: % diameter stenosis ±5 points, MLD and reference diameters ±0.3 mm, lesion length ±2 mm (both at
the 20 % rule), calcium arc ±30°, the recommended view within 5° of perpendicular to the lesion direction.
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

from phantoms import coronary_stenosis as cst  # noqa: E402

from CardiacSuiteLib.imageio import read_image_input  # noqa: E402
from InterventionPlanningLib import carm, pci  # noqa: E402
from InterventionPlanningLib.model import PlanInputs  # noqa: E402
from StentReconstructionLib.cli import read_curve_file  # noqa: E402

SEVERITIES = (40, 60, 80)


def _measure(phantom, curve=None, **kwargs):
    curve = cst.user_curve(phantom) if curve is None else curve
    inputs = PlanInputs(phantom.image, phantom.ijk_to_ras, curves={"vessel": curve}, vessel=phantom.vessel, **kwargs)
    start = time.perf_counter()
    result = pci.measure(inputs)
    result.results["_seconds"] = time.perf_counter() - start
    return result


@pytest.fixture(scope="module")
def phantoms():
    return {p: cst.coronary_stenosis(stenosis_percent=p, seed=p) for p in SEVERITIES}


@pytest.fixture(scope="module")
def measured(phantoms):
    return {p: _measure(ph) for p, ph in phantoms.items()}


@pytest.fixture(scope="module")
def off_centre(phantoms):
    phantom = phantoms[60]
    curve = cst.user_curve(phantom, offset_mm=0.8, seed=5)
    return phantom, curve, _measure(phantom, curve)


def _angle_to_perpendicular(view: dict, direction: np.ndarray) -> float:
    v = carm.view_direction(view["lao_deg"], view["cra_deg"])
    return math.degrees(math.asin(min(1.0, abs(float(v @ direction)))))


def _check_lesion(result, phantom):
    lesion, truth = result.results["lesion"], phantom.lesion
    assert lesion["diameter_stenosis_percent"] == pytest.approx(truth["diameter_stenosis_percent"], abs=5.0)
    assert lesion["mld_mm"] == pytest.approx(truth["mld_mm"], abs=0.3)
    assert lesion["reference_proximal_diameter_mm"] == pytest.approx(truth["reference_proximal_diameter_mm"], abs=0.3)
    assert lesion["reference_distal_diameter_mm"] == pytest.approx(truth["reference_distal_diameter_mm"], abs=0.3)
    assert lesion["length_mm"] == pytest.approx(truth["length_mm"], abs=2.0)
    assert lesion["cad_rads"] == truth["cad_rads"]
    assert lesion["position_mm"] == pytest.approx(truth["position_mm"], abs=2.5)
    assert "20 %" in lesion["length_rule"]


@pytest.mark.parametrize("severity", SEVERITIES)
def test_lesion_matches_truth(measured, phantoms, severity):
    _check_lesion(measured[severity], phantoms[severity])


@pytest.mark.parametrize("severity", SEVERITIES)
def test_calcium_arc_and_extent(measured, phantoms, severity):
    calcium, truth = measured[severity].results["calcium"], phantoms[severity].calcium
    assert calcium["max_arc_deg"] == pytest.approx(truth["arc_deg"], abs=30.0)
    assert calcium["length_mm"] == pytest.approx(truth["length_mm"], abs=1.5)
    assert 0.5 * truth["volume_mm3"] <= calcium["volume_mm3"] <= 1.6 * truth["volume_mm3"]
    lesion = measured[severity].results["lesion"]
    assert calcium["threshold_hu"] >= phantoms[severity].lumen_hu + 150.0 - 20.0
    assert "HU" in calcium["rule"] and lesion["start_mm"] < lesion["end_mm"]


@pytest.mark.parametrize("severity", SEVERITIES)
def test_recommended_view_is_perpendicular_to_the_lesion(measured, phantoms, severity):
    projections = measured[severity].results["projections"]
    assert _angle_to_perpendicular(projections["recommended"], phantoms[severity].direction) <= 5.0
    assert abs(projections["recommended"]["cra_deg"]) <= 40.0
    assert len(projections["s_curve"]) == 181
    assert projections["recommended"]["label"].split()[0] in ("LAO", "RAO")


def test_segment_is_mid_lad(measured, phantoms):
    for severity, result in measured.items():
        segment = result.results["segment"]
        fraction = phantoms[severity].lesion["position_mm"] / phantoms[severity].arc_mm[-1]
        assert 1 / 3 < fraction < 2 / 3
        assert (segment["number"], segment["name"]) == (7, "mid LAD")
        assert "thirds" in segment["rule"]


def test_results_shape(measured, phantoms):
    result, phantom = measured[60], phantoms[60]
    results = result.results
    assert result.protocol == "pci" and results["vessel"] == "LAD"
    for key in ("start_mm", "end_mm", "length_mm", "mld_mm", "mla_mm2", "position_mm", "reference_proximal_diameter_mm",
                "reference_distal_diameter_mm", "reference_proximal_area_mm2", "reference_distal_area_mm2",
                "diameter_stenosis_percent", "area_stenosis_percent", "cad_rads", "length_rule"):
        assert key in results["lesion"], key
    assert results["lesion"]["area_stenosis_percent"] == pytest.approx(phantom.lesion["area_stenosis_percent"], abs=6.0)
    assert results["lesion"]["mla_mm2"] == pytest.approx(phantom.lesion["mla_mm2"], abs=0.6)
    assert results["lesion"]["reference_proximal_area_mm2"] == pytest.approx(
        phantom.lesion["reference_proximal_area_mm2"], rel=0.2)
    sections = results["sections"]
    assert len(sections) > 80
    steps = np.diff([s["position_mm"] for s in sections])
    assert np.allclose(steps, pci.STEP_MM, atol=0.11)
    for key in ("position_mm", "area_mm2", "diameter_min_mm", "diameter_max_mm", "diameter_mean_mm",
                "reference_diameter_mm"):
        assert key in sections[0]
    measured_sections = [s for s in sections if s["measured"]]
    assert all(s["diameter_min_mm"] <= s["diameter_mean_mm"] + 0.02 <= s["diameter_max_mm"] + 0.04
               for s in measured_sections)
    assert {"centerline", "lesion"} <= set(result.curves)
    assert [s.name for s in result.sections] == ["mld", "reference_proximal", "reference_distal"]
    assert all(s.contour_2d is not None and s.pixels.ndim == 2 for s in result.sections)
    assert "reference" in result.sections[0].extra_2d
    assert any(row[0] == "Diameter stenosis" for row in result.table)
    assert result.notes and json.dumps(results)
    assert result.landmark_sources["mld"] == "found"
    assert results["_seconds"] < 20.0


def test_off_centre_curve_is_recentred(off_centre):
    phantom, curve, result = off_centre
    from scipy.spatial import cKDTree

    given = cKDTree(phantom.centerline).query(curve)[0]
    assert np.median(given) == pytest.approx(0.8, abs=0.05)
    distance = cKDTree(phantom.centerline).query(result.curves["centerline"])[0]
    assert np.median(distance) < 0.1 and np.max(distance) < 0.3
    _check_lesion(result, phantom)
    assert result.results["calcium"]["max_arc_deg"] == pytest.approx(phantom.calcium["arc_deg"], abs=30.0)


def test_user_extent_and_lesion_landmark(phantoms):
    phantom = phantoms[60]
    start, end = phantom.point_at(19.0), phantom.point_at(29.0)
    result = _measure(phantom, landmarks={"lesion_start": start, "lesion_end": end, "lesion": phantom.point_at(24.0)})
    lesion = result.results["lesion"]
    assert lesion["length_mm"] == pytest.approx(10.0, abs=0.6)
    assert "user" in lesion["length_rule"]
    assert lesion["mld_mm"] == pytest.approx(phantom.lesion["mld_mm"], abs=0.3)
    assert result.landmark_sources["lesion_start"] == "given" and result.landmark_sources["lesion"] == "given"
    assert sorted(result.results["edited"]) == ["lesion", "lesion_end", "lesion_start"]


def test_healthy_artery():
    phantom = cst.coronary_stenosis(stenosis_percent=0.0, calcium_arc_deg=0.0, seed=3)
    assert phantom.lesion["cad_rads"] == "0"
    result = _measure(phantom)
    lesion = result.results["lesion"]
    assert lesion["diameter_stenosis_percent"] < 20.0
    assert lesion["cad_rads"] in ("0", "1")
    assert result.results["calcium"]["max_arc_deg"] == 0.0
    assert result.results["calcium"]["volume_mm3"] == 0.0
    reference = [s["reference_diameter_mm"] for s in result.results["sections"] if s["measured"]]
    truth = np.interp([s["position_mm"] for s in result.results["sections"] if s["measured"]], phantom.arc_mm,
                      phantom.reference_diameter_mm)
    assert np.max(np.abs(np.array(reference) - truth)) < 0.2


def test_without_a_curve_says_so(phantoms):
    phantom = phantoms[40]
    with pytest.raises(ValueError, match="vessel") as raised:
        pci.measure(PlanInputs(phantom.image, phantom.ijk_to_ras, vessel="LAD"))
    assert "\n" not in str(raised.value)


def test_cad_rads_categories():
    expected = {0: "0", 10: "1", 24.4: "1", 25: "2", 49: "2", 50: "3", 69.4: "3", 70: "4A", 99: "4A", 100: "5"}
    for percent, category in expected.items():
        assert pci.cad_rads(percent) == category
        assert cst.cad_rads(percent) == category
    assert pci.cad_rads(55, left_main=True) == "4B"
    assert pci.cad_rads(45, left_main=True) == "2"


def test_segment_names():
    assert pci.scct_segment("RCA", 5.0, 90.0)["number"] == 1
    assert pci.scct_segment("RCA", 45.0, 90.0)["number"] == 2
    assert pci.scct_segment("RCA", 80.0, 90.0)["number"] == 3
    assert pci.scct_segment("LAD", 5.0, 90.0)["number"] == 6
    assert pci.scct_segment("LAD", 85.0, 90.0)["number"] == 8
    assert pci.scct_segment("LCx", 10.0, 60.0)["number"] == 11
    assert pci.scct_segment("LCx", 40.0, 60.0)["number"] == 13
    assert pci.scct_segment("LM", 3.0, 10.0)["number"] == 5
    assert pci.scct_segment("LAD branch 1", 3.0, 30.0)["number"] == 9
    assert pci.scct_segment("LCx branch 2", 3.0, 30.0)["number"] == 14
    assert pci.scct_segment("D2", 3.0, 30.0)["number"] == 10
    assert pci.scct_segment("pRCA", 50.0, 60.0)["number"] == 1
    unknown = pci.scct_segment("R branch 3", 3.0, 30.0)
    assert unknown["number"] is None and unknown["name"] == "unknown"


def test_phantom_files_round_trip(phantoms, tmp_path):
    phantom = phantoms[40]
    path = cst.write(phantom, tmp_path / "pci")
    assert path.name == "ct.nrrd"
    series = read_image_input(path)
    assert series.frames.shape == (1, *phantom.shape)
    assert np.allclose(series.ijk_to_ras, phantom.ijk_to_ras, atol=1e-9)
    truth = json.loads((tmp_path / "pci" / "truth.json").read_text())
    assert truth["lesion"]["diameter_stenosis_percent"] == pytest.approx(40.0, abs=0.2)
    assert truth["lesion_fraction"] == pytest.approx(0.2)
    curve = read_curve_file(tmp_path / "pci" / "vessel.mrk.json")
    document = json.loads((tmp_path / "pci" / "vessel.mrk.json").read_text())
    assert document["markups"][0]["coordinateSystem"] == "LPS"
    assert np.allclose(curve, cst.user_curve(phantom), atol=1e-3)
    assert np.allclose(curve[0], phantom.centerline[0], atol=1e-3)


def test_phantom_truth_is_consistent(phantoms):
    for severity, phantom in phantoms.items():
        lesion = phantom.lesion
        assert lesion["diameter_stenosis_percent"] == pytest.approx(severity, abs=0.5)
        assert lesion["mld_mm"] == pytest.approx(np.min(phantom.lumen_diameter_mm))
        k = int(np.argmin(phantom.lumen_diameter_mm))
        assert lesion["mld_mm"] == pytest.approx(phantom.reference_diameter_mm[k] * (1 - severity / 100.0), abs=0.01)
        inside = (phantom.arc_mm > lesion["start_mm"] + 0.1) & (phantom.arc_mm < lesion["end_mm"] - 0.1)
        assert np.all(phantom.lumen_diameter_mm[inside] < 0.8 * phantom.reference_diameter_mm[inside])
        assert np.all(np.diff(phantom.arc_mm) == pytest.approx(cst.STEP_MM))
        steps = np.linalg.norm(np.diff(phantom.axis, axis=0), axis=1)
        assert np.allclose(steps, cst.STEP_MM, atol=1e-3)
        # the lumen is bright and the fat dark where the truth says
        values = phantom.image[tuple(np.rint(np.linalg.inv(phantom.ijk_to_ras)[:3, :3] @ phantom.point_at(8.0)
                                             + np.linalg.inv(phantom.ijk_to_ras)[:3, 3]).astype(int)[::-1])]
        assert values > phantom.lumen_hu - 100.0
        assert abs(float(np.linalg.norm(phantom.direction)) - 1.0) < 1e-9
