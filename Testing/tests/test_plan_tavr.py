"""TAVR planning (``InterventionPlanningLib.tavr``) on the digital aortic-root phantom
(``Testing/phantoms/aortic_root.py``): the issue's accuracy targets from the CT alone, the command line's
outputs and error paths, the correction loop (a moved nadir moves the plane and everything after it), the
scene round trip through ``.mrb``, and the sizing tables.

More phantoms (eight orientations and six variants) are ``Testing/validation/run_tavr_phantom.py``.
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

from phantoms import aortic_root as phantoms  # noqa: E402

from CardiacSuiteLib.app import create_app  # noqa: E402
from CardiacSuiteLib.case import CardiacCase, Key, Role  # noqa: E402
from CardiacSuiteLib.cli import main  # noqa: E402
from InterventionPlanningLib import carm, landmarks, sizing, tavr  # noqa: E402
from InterventionPlanningLib import scene as plan_scene  # noqa: E402
from InterventionPlanningLib.model import PlanInputs  # noqa: E402

ISSUE_KEYS = ("annulus.area_mm2", "annulus.perimeter_mm", "annulus.diameter_min_mm", "annulus.diameter_max_mm",
              "annulus.area_derived_diameter_mm", "annulus.perimeter_derived_diameter_mm", "annulus.plane",
              "lvot.area_mm2", "sov.diameter_mean_mm", "stj.diameter_mm", "stj.height_mm",
              "coronary_height_mm.left", "coronary_height_mm.right", "angulation_deg", "projections.coplanar",
              "projections.cusp_overlap", "projections.s_curve")


@pytest.fixture(scope="module")
def phantom():
    return phantoms.aortic_root(seed=3)


@pytest.fixture(scope="module")
def measured(phantom):
    return tavr.measure(PlanInputs(phantom.image, phantom.ijk_to_ras))


@pytest.fixture(scope="module")
def study(phantom, tmp_path_factory):
    folder = tmp_path_factory.mktemp("root")
    return phantoms.write(phantom, folder)


def view_angle(a: dict, lao: float, cra: float) -> float:
    u, v = carm.view_direction(a["lao_deg"], a["cra_deg"]), carm.view_direction(lao, cra)
    return math.degrees(math.acos(min(1.0, abs(float(u @ v)))))


def test_targets_of_the_issue_from_the_ct_alone(phantom, measured):
    r = measured.results
    assert r["annulus"]["area_mm2"] == pytest.approx(phantom.annulus["area_mm2"], rel=0.05)
    assert r["annulus"]["perimeter_mm"] == pytest.approx(phantom.annulus["perimeter_mm"], abs=2.0)
    for side in ("left", "right"):
        assert r["coronary_height_mm"][side] == pytest.approx(phantom.coronary_ostia[side]["height_mm"], abs=1.5)
    assert r["stj"]["diameter_mm"] == pytest.approx(phantom.stj["diameter_mm"], abs=1.0)
    for cusp in tavr.CUSPS:
        assert r["sov"][cusp]["diameter_mm"] == pytest.approx(phantom.sov[cusp]["diameter_mm"], abs=1.0)
    assert view_angle(r["projections"]["coplanar"], phantom.coplanar_view["lao_deg"],
                      phantom.coplanar_view["cra_deg"]) <= 5.0


def test_landmarks_lie_where_the_phantom_put_them(phantom, measured):
    for k, cusp in enumerate(phantoms.CUSPS):
        assert np.linalg.norm(measured.landmarks[f"nadir_{cusp}"] - phantom.nadirs[k]) <= 1.5
    assert measured.results["sinus_naming"].startswith("the two sinuses with coronary ostia")
    assert np.degrees(np.arccos(np.array(measured.results["annulus"]["plane"]["normal"]) @ phantom.annulus["normal"])) < 2
    assert measured.results["angulation_deg"] == pytest.approx(phantom.angulation_deg, abs=1.5)
    assert measured.results["lvot"]["area_mm2"] == pytest.approx(phantom.lvot["area_mm2"], rel=0.05)
    assert measured.results["ascending_aorta"]["diameter_mm"] == pytest.approx(32.0, abs=1.0)
    assert measured.results["stj"]["height_mm"] == pytest.approx(phantom.stj["height_mm"], abs=1.5)


def test_calcium_per_cusp_orders_like_the_truth(phantom, measured):
    calcium = measured.results["calcium"]
    truth = phantom.calcium_volume_mm3
    assert sorted(truth, key=truth.get) == sorted(calcium["valve_mm3"], key=calcium["valve_mm3"].get)
    for cusp in tavr.CUSPS:
        assert calcium["valve_mm3"][cusp] == pytest.approx(truth[cusp], rel=0.25)
    assert calcium["lvot_mm3"] == 0.0
    assert calcium["threshold_hu"] == pytest.approx(1.5 * phantom.blood_hu, rel=0.05)


def test_s_curve_is_perpendicular_to_the_annulus(measured):
    normal = np.array(measured.results["annulus"]["plane"]["normal"])
    curve = measured.results["projections"]["s_curve"]
    assert len(curve) == 181
    for point in curve[::30]:
        assert abs(float(carm.view_direction(point["lao_deg"], point["cra_deg"]) @ normal)) < 1e-3
    for view in ("coplanar", "cusp_overlap"):
        v = measured.results["projections"][view]
        assert abs(float(carm.view_direction(v["lao_deg"], v["cra_deg"]) @ normal)) < 0.01


def test_sizing_suggestion_and_virtual_valve(measured):
    r = measured.results
    sapien = next(s for s in r["sizing"] if s["family"].startswith("Edwards"))
    assert sapien["sizes_mm"] == [26]  # 459 mm²: the 26 mm row (430-546 mm²)
    assert r["valve_to_coronary_mm"]["valve_size_mm"] == 26.0
    for side in ("left", "right"):
        assert 0.0 < r["valve_to_coronary_mm"][side] < 10.0


def test_site_sizing_table_replaces_a_shipped_one(tmp_path):
    (tmp_path / "site.json").write_text(json.dumps({
        "family": "Edwards SAPIEN 3 / SAPIEN 3 Ultra", "sized_by": "area_mm2", "unit": "mm²",
        "sizes": [{"size_mm": 99, "min": 0, "max": 1000}], "source": "site"}))
    tables = sizing.load_tables(tmp_path)
    sapien = [t for t in tables if t["family"].startswith("Edwards")]
    assert len(sapien) == 1 and sapien[0]["source"] == "site"
    assert sizing.suggest({"area_mm2": 450.0}, sapien)[0]["sizes_mm"] == [99]
    assert "outside every size" in sizing.suggest({"area_mm2": 2000.0}, sapien)[0]["outside_range"]


def test_moving_a_nadir_moves_the_plane_and_is_recorded(phantom, measured):
    given = {"nadir_right": measured.landmarks["nadir_right"] + 3.0 * np.asarray(phantom.annulus["normal"])}
    edited = tavr.measure(PlanInputs(phantom.image, phantom.ijk_to_ras, landmarks=given))
    assert edited.landmark_sources["nadir_right"] == "given"
    assert edited.results["edited"] == ["nadir_right"]
    assert np.allclose(edited.landmarks["nadir_right"], given["nadir_right"])
    before = np.array(measured.results["annulus"]["plane"]["normal"])
    after = np.array(edited.results["annulus"]["plane"]["normal"])
    assert 3.0 < np.degrees(np.arccos(before @ after)) < 15.0
    assert edited.results["annulus"]["area_mm2"] != measured.results["annulus"]["area_mm2"]


def test_the_command_line_writes_every_output(study, phantom, tmp_path, capsys):
    out = tmp_path / "plan"
    assert main(["plan", "tavr", str(study), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    for key in ISSUE_KEYS:
        value = results
        for part in key.split("."):
            value = value[part]
        assert value is not None, key
    assert set(results["annulus"]["plane"]) == {"centre_ras_mm", "normal"}
    assert {"lao_deg", "cra_deg"} <= set(results["projections"]["coplanar"])
    for name in ("annulus", "lvot", "sov", "stj"):
        assert (out / f"{name}.png").stat().st_size > 1000
    points, _ = landmarks.read(out / "landmarks.mrk.json")
    assert set(tavr.NADIRS + tavr.COMMISSURES + tavr.OSTIA) <= set(points)
    assert np.linalg.norm(points["nadir_left"] - phantom.nadirs[phantoms.CUSPS.index("left")]) < 1.5

    reader = create_app()
    try:
        assert reader.scene.ReadFromMRB(str(out / "scene.mrb"))
        case = CardiacCase.first(reader.scene)
        assert case.value(Key.PLAN_RESULTS)["tavr"]["annulus"]["area_mm2"] == results["annulus"]["area_mm2"]
        assert case.references(Role.PLAN_LANDMARKS)[0].GetNumberOfControlPoints() == len(points)
        assert case.references(Role.PLAN_TABLE)[0].GetNumberOfRows() > 20
        assert len(case.references(Role.PLAN_SECTION_IMAGE)) == 4
        assert case.references(Role.PLAN_PLANE) and case.reference(Role.PLAN_VOLUME) is not None
    finally:
        reader.scene.Clear(True)

    # the landmarks file goes back in as the user's edit: the same plane, recorded as given
    again = tmp_path / "again"
    assert main(["plan", "tavr", str(study), "--out", str(again), "--landmarks", str(out / "landmarks.mrk.json"),
                 "--quiet"]) == 0
    redone = json.loads((again / "results.json").read_text())
    assert "nadir_right" in redone["edited"]
    assert redone["annulus"]["area_mm2"] == pytest.approx(results["annulus"]["area_mm2"], rel=0.01)


def test_recompute_in_the_scene_after_moving_a_landmark(phantom, app):
    from CardiacSuiteLib import mrml

    volume = mrml.add_volume(app.scene, phantom.image, phantom.ijk_to_ras, "CT")
    result, nodes = plan_scene.plan_in_scene(app.scene, "tavr", volume)
    points = nodes.landmarks
    labels = [points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())]
    k = labels.index("ostium_left")
    position = np.zeros(3)
    points.GetNthControlPointPositionWorld(k, position)
    moved = position + 2.0 * np.array(result.results["annulus"]["plane"]["normal"])
    points.SetNthControlPointPositionWorld(k, *moved)
    assert list(plan_scene.edited_landmarks(points)) == ["ostium_left"]
    again, _ = plan_scene.recompute(app.scene, nodes.case, "tavr")
    assert again.results["edited"] == ["ostium_left"]
    assert again.results["coronary_height_mm"]["left"] == pytest.approx(
        result.results["coronary_height_mm"]["left"] + 2.0, abs=0.05)
    assert len(nodes.case.references(Role.PLAN_LANDMARKS)) == 1  # replaced, not added


def _bad(tmp_path, image: np.ndarray, ijk_to_ras: np.ndarray, name: str) -> Path:
    from CardiacSuiteLib.imagedata import ImageSeries
    from CardiacSuiteLib.imageio import write_image

    return write_image(ImageSeries(frames=image[None].astype(np.float32), ijk_to_ras=ijk_to_ras, modality="CT",
                                   name=name), tmp_path / f"{name}.nrrd")


def test_bad_inputs_give_one_line_and_exit_2(phantom, study, tmp_path, capsys):
    not_ct = _bad(tmp_path, phantom.image - phantom.image.min() + 1.0, phantom.ijk_to_ras, "positive")
    no_contrast = _bad(tmp_path, np.minimum(phantom.image, 60.0), phantom.ijk_to_ras, "plain")
    outside = tmp_path / "outside.mrk.json"
    landmarks.write_points(outside, "x", {"nadir_right": np.array([900.0, 0.0, 0.0])}, {})
    cases = [
        ([str(not_ct)], "not a CT in Hounsfield units"),
        ([str(no_contrast)], "contrast"),
        ([str(study), "--landmarks", str(outside)], "outside the CT"),
        ([str(tmp_path / "missing.nrrd")], "no such file"),
    ]
    for arguments, message in cases:
        out = tmp_path / "out"
        assert main(["plan", "tavr", *arguments, "--out", str(out), "--quiet"]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1, error
        assert not out.exists()


def test_phase_choice_of_a_4d_ct():
    from InterventionPlanningLib.workflow import choose_phase

    values = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    assert choose_phase("tavr", None, values, "%", "cardiac phase") == (3, "nearest 35 % of the R-R interval")
    assert choose_phase("pci", None, values, "%", "cardiac phase")[0] == 7
    index, rule = choose_phase("tavr", None, values, "%", "cardiac phase", {"es_phase": 4, "ed_phase": 0})
    assert index == 4 and "end-systole" in rule
    assert choose_phase("tavr", "6", values, "%", "cardiac phase") == (6, "given")
    assert choose_phase("tavr", None, [0.0], "%", "cardiac phase") == (0, "the only phase")


def test_a_4d_ct_is_measured_at_its_systolic_phase(phantom, tmp_path):
    from CardiacSuiteLib.image4d import ArrayPhases
    from CardiacSuiteLib.imageio import write_seq_nrrd

    quiet = np.full_like(phantom.image, -80.0)
    frames = np.stack([quiet, phantom.image, quiet])  # only the 40 % phase holds the root
    path = write_seq_nrrd(ArrayPhases(frames, phantom.ijk_to_ras, index_values=[0.0, 40.0, 80.0], name="4D"),
                          tmp_path / "ct.seq.nrrd")
    out = tmp_path / "out"
    assert main(["plan", "tavr", str(path), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["phase_index"] == 1 and results["phase_rule"] == "nearest 35 % of the R-R interval"
    assert results["phase"] == "40 %"
    assert results["annulus"]["area_mm2"] == pytest.approx(phantom.annulus["area_mm2"], rel=0.05)


def test_a_root_turned_upside_down_is_found_the_same(phantom, measured):
    """Nothing assumes the aorta runs up: the same phantom rotated 180° about the R axis measures the same."""
    turn = np.diag([1.0, -1.0, -1.0, 1.0])
    upside_down = tavr.measure(PlanInputs(phantom.image, turn @ phantom.ijk_to_ras)).results
    assert upside_down["annulus"]["area_mm2"] == pytest.approx(measured.results["annulus"]["area_mm2"], rel=0.01)
    for side in ("left", "right"):
        assert upside_down["coronary_height_mm"][side] == pytest.approx(
            measured.results["coronary_height_mm"][side], abs=0.3)
