"""The pulmonary (PPVI) planning protocol against the RVOT phantom's analytic truth (``Testing/phantoms/rvot.py``).

Every 2 mm along the centreline the minimal, maximal and perimeter-derived diameters come back within 1 mm;
the landing zone (the phantom's waist) within 2 mm of its position and 1 mm of its perimeter-derived
diameter; its distance to the bifurcation within 3 mm; each coronary's minimal distance to the lumen within
0.5 mm at every phase, with the compression flag (< 2 mm) right. Landmarks are found from a label map (right
ventricle and pulmonary artery, or the pulmonary artery alone) and, without labels or an annulus, from the CT.
The phantom is rendered at 0.7 mm to keep the module fast.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

TESTING = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTING))

from phantoms import rvot  # noqa: E402

from InterventionPlanningLib import pulmonary  # noqa: E402
from InterventionPlanningLib.model import PlanInputs, SectionImage  # noqa: E402

SPACING = 0.7
DIAMETERS = ("diameter_min_mm", "diameter_max_mm", "perimeter_derived_diameter_mm")


@pytest.fixture(scope="module")
def phantom() -> rvot.RvotPhantom:
    return rvot.rvot_phantom(spacing_mm=SPACING, seed=3)


def _inputs(phantom: rvot.RvotPhantom, names=("rvot_start", "pulmonary_annulus", "pa_bifurcation"), **kwargs):
    fields = {"image": phantom.image, "ijk_to_ras": phantom.ijk_to_ras,
              "landmarks": {n: phantom.clicks[n] for n in names}, "phase_label": phantom.phase_label}
    fields.update(kwargs)
    return PlanInputs(**fields)


@pytest.fixture(scope="module")
def result(phantom):
    """Clicked landmarks (off-centre, as a user places them), the coronaries of every phase, all phases."""
    by_phase = {label: phantom.coronary_curves(label) for label in phantom.phase_labels}
    return pulmonary.measure(_inputs(phantom, curves=phantom.coronary_curves(), phases=phantom.phases,
                                     options={"coronary_curves_by_phase": by_phase}))


@pytest.fixture(scope="module")
def from_labels(phantom):
    return pulmonary.measure(PlanInputs(image=phantom.image, ijk_to_ras=phantom.ijk_to_ras, labels=phantom.labels,
                                        label_names=phantom.label_names, phase_label=phantom.phase_label))


def _compare_sections(phantom, result) -> np.ndarray:
    truth = {s["position_mm"]: s for s in phantom.sections}
    measured = {e["position_mm"]: e for e in result.results["sections"]}
    pure = [p for p, s in truth.items() if s["pure"]]
    compared = [p for p in pure if p in measured and measured[p]["valid"]]
    assert len(compared) >= 0.9 * len(pure), f"sections measured at {sorted(measured)}, truth pure at {pure}"
    errors = np.array([[measured[p][k] - truth[p][k] for k in DIAMETERS] for p in compared])
    worst = np.abs(errors).max(axis=0)
    assert np.all(worst <= 1.0), dict(zip(DIAMETERS, worst))
    return errors


def test_sections_every_2mm(phantom, result):
    positions = [e["position_mm"] for e in result.results["sections"]]
    assert np.allclose(np.diff(positions), pulmonary.STEP_MM)
    assert 0.0 in positions and min(positions) < 0.0 and max(positions) > 40.0
    assert all(e["segment"] == ("RVOT" if e["position_mm"] < 0 else "MPA") for e in result.results["sections"])
    errors = _compare_sections(phantom, result)
    assert np.all(np.abs(errors.mean(axis=0)) < 0.3)  # no bias either way


def test_annulus(phantom, result):
    a = result.results["annulus"]
    for key in DIAMETERS + ("area_derived_diameter_mm",):
        assert a[key] == pytest.approx(phantom.annulus[key], abs=1.0), key
    assert a["area_mm2"] == pytest.approx(phantom.annulus["area_mm2"], rel=0.05)
    normal = np.asarray(a["plane"]["normal"])
    assert abs(normal @ phantom.annulus["normal"]) > math.cos(math.radians(5.0))
    assert result.results["rvot_length_mm"] == pytest.approx(phantom.rvot_length_mm, abs=3.0)


def test_landing_zone_is_the_waist(phantom, result):
    z = result.results["landing_zone"]
    assert z["source"] == "narrowest section"
    assert z["position_mm"] == pytest.approx(phantom.waist["position_mm"], abs=2.0)
    assert z["perimeter_derived_diameter_mm"] == pytest.approx(phantom.waist["perimeter_derived_diameter_mm"], abs=1.0)
    for key in ("diameter_min_mm", "diameter_max_mm"):
        assert z[key] == pytest.approx(phantom.waist[key], abs=1.0), key
    assert z["length_to_bifurcation_mm"] == pytest.approx(phantom.landing_zone_to_bifurcation_mm, abs=3.0)
    assert result.results["mpa_length_mm"] == pytest.approx(phantom.mpa_length_mm, abs=3.0)
    assert np.linalg.norm(result.landmarks["landing_zone"] - phantom.landmarks["landing_zone"]) < 2.5


def test_given_landing_zone(phantom):
    r = pulmonary.measure(_inputs(phantom, ("rvot_start", "pulmonary_annulus", "landing_zone", "pa_bifurcation")))
    z = r.results["landing_zone"]
    assert z["source"] == "given" and r.landmark_sources["landing_zone"] == "given"
    assert z["position_mm"] == pytest.approx(phantom.waist["position_mm"], abs=1.0)
    assert z["perimeter_derived_diameter_mm"] == pytest.approx(phantom.waist["perimeter_derived_diameter_mm"], abs=1.0)
    assert z["length_to_bifurcation_mm"] == pytest.approx(phantom.landing_zone_to_bifurcation_mm, abs=3.0)


def test_coronary_distance_every_phase(phantom, result):
    found = result.results["coronary_distance_mm"]
    assert set(found) == set(phantom.coronaries)
    for name, truth in phantom.coronaries.items():
        c = found[name]
        assert set(c["per_phase"]) == set(phantom.phase_labels)
        for label, distance in truth["distance_by_phase_mm"].items():
            assert c["per_phase"][label] == pytest.approx(distance, abs=0.5), (name, label)
        assert c["min_mm"] == pytest.approx(truth["min_mm"], abs=0.5)
        assert c["phase"] == truth["min_phase"]
        assert c["flagged"] == truth["flagged"]
    assert found["coronary_LAD"]["flagged"] and not found["coronary_RCA"]["flagged"]  # the phantom's design
    assert "lumen" in result.results["coronary_note"]


def test_coronary_measured_phase_only(phantom):
    """Without the other phases the LAD (3 mm off at end-systole) is not flagged: the risk shows across phases."""
    r = pulmonary.measure(_inputs(phantom, curves=phantom.coronary_curves()))
    c = r.results["coronary_distance_mm"]["coronary_LAD"]
    assert list(c["per_phase"]) == [phantom.phase_label]
    assert c["min_mm"] == pytest.approx(phantom.coronaries["coronary_LAD"]["measured_phase_mm"], abs=0.5)
    assert not c["flagged"]


def test_outputs(phantom, result):
    assert result.protocol == "pulmonary"
    json.dumps(result.results)
    assert result.results["phase"] == phantom.phase_label
    assert list(result.landmarks) == ["rvot_start", "pulmonary_annulus", "landing_zone", "pa_bifurcation"]
    assert result.landmark_sources == {"rvot_start": "given", "pulmonary_annulus": "given",
                                       "landing_zone": "found", "pa_bifurcation": "given"}
    line = result.curves["rvot_mpa_centerline"]
    assert line.shape[1] == 3 and len(line) > 100
    assert np.linalg.norm(line[-1] - phantom.landmarks["pa_bifurcation"]) < 2.5
    distance = np.min(np.linalg.norm(phantom.centerline[:, None] - line[None, ::10], axis=2), axis=0)
    assert np.max(distance) < 1.0  # the tracked centreline lies on the true one
    assert [s.name for s in result.sections] == ["annulus", "landing_zone"]
    for image in result.sections:
        assert isinstance(image, SectionImage) and image.pixels.ndim == 2 and image.contour_2d.shape[1] == 2
        assert set(image.extra_2d) == {"diameter_min", "diameter_max"}
    names = [row[0] for row in result.table]
    assert "Landing zone perimeter-derived diameter" in names and "Landing zone to bifurcation" in names
    assert sum(name.startswith("Section ") for name in names) >= 25
    assert all(len(row) == 3 for row in result.table)


def test_landmarks_from_labels(phantom, from_labels):
    r = from_labels
    assert all(r.landmark_sources[n] == "found" for n in r.landmarks)
    assert np.linalg.norm(r.landmarks["pulmonary_annulus"] - phantom.landmarks["pulmonary_annulus"]) < 2.0
    assert np.linalg.norm(r.landmarks["pa_bifurcation"] - phantom.landmarks["pa_bifurcation"]) < 4.0
    z = r.results["landing_zone"]
    assert z["position_mm"] == pytest.approx(phantom.waist["position_mm"], abs=2.0)
    assert z["perimeter_derived_diameter_mm"] == pytest.approx(phantom.waist["perimeter_derived_diameter_mm"], abs=1.0)
    assert z["length_to_bifurcation_mm"] == pytest.approx(phantom.landing_zone_to_bifurcation_mm, abs=3.0)
    assert any("right ventricle" in note for note in r.notes)
    _compare_sections(phantom, r)
    # the coronary labels' skeletons stand in for their centrelines
    found = r.results["coronary_distance_mm"]
    for name, truth in phantom.coronaries.items():
        assert found[name.lower()]["min_mm"] == pytest.approx(truth["measured_phase_mm"], abs=0.5)


def test_landmarks_from_pulmonary_artery_alone(phantom):
    labels = np.where(phantom.labels == 2, 2, 0).astype(np.uint8)
    r = pulmonary.measure(PlanInputs(image=phantom.image, ijk_to_ras=phantom.ijk_to_ras, labels=labels,
                                     label_names={2: "pulmonary artery"}, phase_label=phantom.phase_label))
    assert np.linalg.norm(r.landmarks["pulmonary_annulus"] - phantom.landmarks["pulmonary_annulus"]) < 2.0
    assert r.results["mpa_length_mm"] == pytest.approx(phantom.mpa_length_mm, abs=3.0)
    assert r.results["landing_zone"]["position_mm"] == pytest.approx(phantom.waist["position_mm"], abs=2.0)
    assert r.results["rvot_length_mm"] > 4.0  # the RVOT below the mask was followed on the CT
    assert r.results["coronary_distance_mm"] == {} and "not assessed" in r.results["coronary_note"]


def test_annulus_from_the_ct(phantom):
    """Without labels or an annulus landmark: the junction where myocardium round the lumen gives way to fat."""
    r = pulmonary.measure(_inputs(phantom, ("rvot_start", "pa_bifurcation")))
    assert r.landmark_sources["pulmonary_annulus"] == "found"
    assert np.linalg.norm(r.landmarks["pulmonary_annulus"] - phantom.landmarks["pulmonary_annulus"]) < 2.0
    assert r.results["landing_zone"]["position_mm"] == pytest.approx(phantom.waist["position_mm"], abs=2.0)


def test_other_geometry():
    """Another seed and shape: a later, tighter waist and a longer MPA, one phase, no coronaries."""
    ph = rvot.rvot_phantom(spacing_mm=SPACING, seed=11, waist_position_mm=22.0, waist_semi_axes_mm=(8.5, 7.5),
                           mpa_length_mm=52.0, phase_labels=("40 %",), coronaries={})
    r = pulmonary.measure(_inputs(ph))
    _compare_sections(ph, r)
    z = r.results["landing_zone"]
    assert z["position_mm"] == pytest.approx(22.0, abs=2.0)
    assert z["perimeter_derived_diameter_mm"] == pytest.approx(ph.waist["perimeter_derived_diameter_mm"], abs=1.0)
    assert z["length_to_bifurcation_mm"] == pytest.approx(ph.landing_zone_to_bifurcation_mm, abs=3.0)


def test_clear_errors(phantom):
    with pytest.raises(ValueError, match="rvot_start and pa_bifurcation") as error:
        pulmonary.measure(PlanInputs(image=phantom.image, ijk_to_ras=phantom.ijk_to_ras))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="pa_bifurcation"):
        pulmonary.measure(_inputs(phantom, ("rvot_start",)))
    aorta_only = np.where(phantom.labels == 2, 6, 0).astype(np.uint8)
    with pytest.raises(ValueError, match="pulmonary artery"):
        pulmonary.measure(PlanInputs(image=phantom.image, ijk_to_ras=phantom.ijk_to_ras, labels=aorta_only,
                                     label_names={6: "aorta"}))


def test_write(phantom, tmp_path):
    from CardiacSuiteLib.imageio import read_image_input

    path = rvot.write(phantom, tmp_path)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert set(truth["landmarks"]) == {"rvot_start", "pulmonary_annulus", "landing_zone", "pa_bifurcation"}
    assert truth["kind"] == "rvot" and len(truth["phase_files"]) == len(phantom.phases)
    series = read_image_input(path)
    assert np.allclose(series.ijk_to_ras, phantom.ijk_to_ras, atol=1e-4)
    assert np.allclose(series.frames[0], phantom.image, atol=0.01)
    labels = read_image_input(tmp_path / "labels.nrrd").frames[0]
    assert np.array_equal(labels.astype(np.uint8), phantom.labels)


@pytest.mark.realdata
def test_real_pulmonary_crop(shared_data):
    """TotalSegmentator's pulmonary-artery mask on a real CT crop: the annulus against the report's proximal
    MPA (the report is model output, not a manual measurement: the check is loose)."""
    from CardiacSuiteLib.imageio import read_image_input

    folder = shared_data / "ct" / "totalseg_pulmonary"
    if not (folder / "ct_cropped.nii.gz").is_file():
        pytest.skip(f"{folder} not found")
    ct = read_image_input(folder / "ct_cropped.nii.gz")
    mask = read_image_input(folder / "pulmonary_artery.nii.gz").frames[0] > 0
    r = pulmonary.measure(PlanInputs(image=ct.frames[0], ijk_to_ras=ct.ijk_to_ras, labels=mask.astype(np.uint8),
                                     label_names={1: "pulmonary artery"}))
    report = json.loads((folder / "pulmonary_report.json").read_text())["landmarks"]
    proximal = next(v for v in report.values() if v["name"] == "proximal MPA")
    a, z = r.results["annulus"], r.results["landing_zone"]
    print(f"annulus: max {a['diameter_max_mm']:.1f} mm (report {10 * proximal['diameter']:.1f}), min "
          f"{a['diameter_min_mm']:.1f} mm (report perpendicular {10 * proximal['diameter_pd']:.1f}), area "
          f"{a['area_mm2']:.0f} mm² (report {100 * proximal['area']:.0f}); landing zone {z['position_mm']:+.1f} mm, "
          f"{z['length_to_bifurcation_mm']:.1f} mm to the bifurcation; measure {r.results['runtime_s']:.1f} s")
    assert a["diameter_max_mm"] == pytest.approx(10.0 * proximal["diameter"], abs=6.0)
    assert a["diameter_min_mm"] == pytest.approx(10.0 * proximal["diameter_pd"], abs=6.0)
    assert 15.0 < r.results["mpa_length_mm"] < 80.0
