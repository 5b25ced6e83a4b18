"""StentReconstruction on the digital phantoms (``Testing/phantoms/stent.py``): every algorithm against the
truth, the ranking, the score's parts on phantoms built to fail them, propagation through a 4D study, the
command line's outputs and error paths, and the scene round trip through ``.mrb``.

The full figures (more sizes, voxel sizes, 10-phase studies) are ``Testing/validation/run_stent_phantom.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

TESTING = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTING))
sys.path.insert(0, str(TESTING / "validation"))

from phantoms import stent as phantoms  # noqa: E402
from stent_truth import axis_error_mm, dense_envelope, envelope_msd, strut_coverage, true_envelope  # noqa: E402

from CardiacSuiteLib.case import CardiacCase, Key, Role  # noqa: E402
from CardiacSuiteLib.cli import main  # noqa: E402
from CardiacSuiteLib.errors import InputError  # noqa: E402
from StentReconstructionLib import measure, propagation, workflow  # noqa: E402
from StentReconstructionLib.algorithms import ALGORITHMS, run_algorithm  # noqa: E402
from StentReconstructionLib.devices import DeviceSpec  # noqa: E402
from StentReconstructionLib.region import find_region  # noqa: E402

CORONARY = DeviceSpec("coronary", 3.0, 16.0)
TAVR = DeviceSpec("tavr", 26.0, 20.0)


@pytest.fixture(scope="module")
def coronary():
    return phantoms.coronary_stent()


@pytest.fixture(scope="module")
def tavr():
    return phantoms.tavr_frame()


def clicks(phantom) -> np.ndarray:
    return np.array([phantom.click_start, phantom.click_end])


def point_text(point) -> str:
    return ",".join(f"{v:.3f}" for v in point)


@pytest.mark.parametrize("algorithm_id", list(ALGORITHMS))
def test_each_algorithm_finds_the_coronary_stent(coronary, algorithm_id):
    region = find_region(coronary.image, coronary.ijk_to_ras, clicks(coronary), CORONARY)
    reconstruction = run_algorithm(algorithm_id, region)
    figures = measure.measure(reconstruction, CORONARY)
    assert axis_error_mm(reconstruction.axis, coronary.axis) <= 0.25
    assert figures["diameter_mean_mm"] == pytest.approx(coronary.diameter_mm, abs=0.3)
    assert figures["length_mm"] == pytest.approx(coronary.length_mm, abs=1.0)
    assert reconstruction.surface.GetNumberOfPoints() > 0
    assert reconstruction.radii.shape == (len(reconstruction.axis), 72)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm_id", list(ALGORITHMS))
def test_each_algorithm_finds_the_tavr_frame_and_its_struts(tavr, algorithm_id):
    region = find_region(tavr.image, tavr.ijk_to_ras, clicks(tavr), TAVR)
    reconstruction = run_algorithm(algorithm_id, region)
    figures = measure.measure(reconstruction, TAVR)
    assert axis_error_mm(reconstruction.axis, tavr.axis) <= 0.25
    assert figures["diameter_mean_mm"] == pytest.approx(tavr.diameter_mm, abs=0.3)
    assert figures["length_mm"] == pytest.approx(tavr.length_mm, abs=1.0)
    assert strut_coverage(tavr.strut_points, reconstruction.struts, reconstruction.surface) >= 0.9
    if algorithm_id == "B":
        assert reconstruction.struts and {"node_degree_match", "gaps", "dangling_ends"} <= set(reconstruction.method)


@pytest.mark.parametrize("kind", ["coronary", "tavr"])
def test_top_ranked_result_is_the_most_accurate(kind, coronary, tavr):
    phantom, spec = (coronary, CORONARY) if kind == "coronary" else (tavr, TAVR)
    run = workflow.reconstruct(phantom.image, phantom.ijk_to_ras, clicks(phantom), spec)
    truth = true_envelope(phantom.axis, phantom.diameter_mm)
    errors = {r.id: envelope_msd(dense_envelope(r.reconstruction.axis, r.reconstruction.radii), truth)
              for r in run.results if r.ok}
    assert [r.rank for r in run.results if r.ok] == list(range(1, len(errors) + 1))
    assert errors[run.chosen_id] <= min(errors.values()) + 0.05
    for result in run.results:
        assert 0.0 <= result.score.value <= 1.0
        assert set(result.score.parts) == {"completeness", "continuity", "apposition", "image_fit", "consistency"}


def top_parts(phantom, spec, vessel=None) -> dict:
    run = workflow.reconstruct(phantom.image, phantom.ijk_to_ras, clicks(phantom), spec, vessel, algorithms="A,C")
    return run.chosen.score.parts


def test_a_missing_ring_lowers_completeness_and_continuity(coronary):
    intact = top_parts(coronary, CORONARY)
    broken = top_parts(phantoms.coronary_stent(missing_rings=(5,)), CORONARY)
    assert broken["completeness"] < intact["completeness"] - 0.05
    assert broken["continuity"] < intact["continuity"] - 0.3


def test_a_gap_in_a_wire_lowers_continuity(tavr):
    intact = top_parts(tavr, TAVR)
    broken = top_parts(phantoms.tavr_frame(wire_gap_mm=2.0), TAVR)
    assert intact["continuity"] > 0.95
    assert broken["continuity"] < intact["continuity"] - 0.1


def test_a_device_off_the_wall_lowers_apposition(coronary):
    intact = top_parts(coronary, CORONARY, coronary.vessel_mask)
    displaced = phantoms.coronary_stent(displacement_mm=0.8)
    off = top_parts(displaced, CORONARY, displaced.vessel_mask)
    assert off["apposition"] < intact["apposition"] - 0.15
    assert top_parts(coronary, CORONARY)["apposition"] is None  # struts bloom together: not read from the image


def test_adjusting_a_result_changes_its_measurements_and_score(coronary):
    run = workflow.reconstruct(coronary.image, coronary.ijk_to_ras, clicks(coronary), CORONARY, algorithms="A,C")
    chosen = run.chosen
    before = chosen.score.parts["image_fit"]
    diameter = chosen.measurements["diameter_mean_mm"]
    moved = workflow.adjusted(chosen.reconstruction, translate_mm=(0.6, 0.0, 0.0), scale=1.1)
    workflow.rescore(run, chosen.id, moved)
    after = next(r for r in run.results if r.id == chosen.id)
    assert after.measurements["diameter_mean_mm"] == pytest.approx(1.1 * diameter, rel=0.01)
    assert after.score.parts["image_fit"] < before - 0.1
    assert after.reconstruction.method["adjusted"]["scale"] == 1.1


def test_region_errors(coronary):
    outside = coronary.ijk_to_ras[:3, 3] - 50.0
    with pytest.raises(InputError, match="outside the image"):
        find_region(coronary.image, coronary.ijk_to_ras, np.array([outside, coronary.click_end]), CORONARY)
    empty = np.where(coronary.image > 600, 400.0, coronary.image).astype(np.float32)
    with pytest.raises(InputError, match="no metal"):
        find_region(empty, coronary.ijk_to_ras, clicks(coronary), CORONARY)
    with pytest.raises(InputError, match="start and an end"):
        find_region(coronary.image, coronary.ijk_to_ras, clicks(coronary)[:1], CORONARY)


# ------------------------------------------------------------------------------------------- propagation


@pytest.fixture(scope="module")
def moving_coronary():
    return phantoms.moving("coronary", phases=4, reference_phase=3)


def test_propagated_device_follows_the_true_motion(moving_coronary):
    from CardiacSuiteLib.image4d import ArrayPhases

    p4 = moving_coronary
    ref = p4.phases[p4.reference_phase]
    stack = ArrayPhases(np.stack([p.image for p in p4.phases]), p4.ijk_to_ras, p4.index_values)
    run = workflow.reconstruct(ref.image, p4.ijk_to_ras, clicks(ref), CORONARY, algorithms="A,C", phase=3)
    workflow.propagate(run, stack)
    made = run.chosen.reconstruction.envelope_points().reshape(-1, 3)
    for phase in run.phases:
        carry = phase.carry
        point_error = np.linalg.norm(carry(made) - p4.motion(made, phase.index), axis=1).mean()
        assert point_error <= 0.5, phase.label
        assert envelope_msd(dense_envelope(phase.device.axis, phase.device.radii),
                            p4.motion(true_envelope(ref.axis, ref.diameter_mm), phase.index)) <= 0.5
        assert phase.axis_to_centerline_mm <= 0.5 and not phase.flagged
    assert set(run.chosen.score.parts) >= {"consistency"} and run.chosen.score.details["consistency"]["metal_over_phases"] > 0.5


def test_a_device_moved_off_its_metal_is_flagged(moving_coronary):
    from CardiacSuiteLib.image4d import ArrayPhases

    p4 = moving_coronary
    ref = p4.phases[p4.reference_phase]
    stack = ArrayPhases(np.stack([p.image for p in p4.phases]), p4.ijk_to_ras, p4.index_values)
    run = workflow.reconstruct(ref.image, p4.ijk_to_ras, clicks(ref), CORONARY, algorithms="A", phase=3)
    # Phase fields that do not move anything: the device stays where it was while the heart moves on.
    still = propagation.PhaseFields(3, [propagation.PhaseField(np.zeros((2, 2, 2, 3), np.float32), np.eye(4))] * 4, "none")
    workflow.propagate(run, stack, still, refine=False)
    moved_most = int(np.argmax([np.abs(p4.motion(ref.axis, n) - ref.axis).max() for n in range(4)]))
    assert run.phases[moved_most].flagged and run.phases[moved_most].consistency_mm > 0.5
    assert not run.phases[3].flagged


# ------------------------------------------------------------------------------------------ command line


def test_command_line_writes_every_output_and_a_scene_that_reads_back(tmp_path, coronary, capsys):
    from CardiacSuiteLib.app import create_app

    phantoms.write(coronary, tmp_path / "study")
    out = tmp_path / "out"
    status = main(["stent", str(tmp_path / "study" / "ct.nrrd"), "--start", point_text(coronary.click_start),
                   "--end", point_text(coronary.click_end), "--out", str(out), "--nominal-diameter", "3",
                   "--nominal-length", "16", "--quiet"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    results = json.loads((out / "results.json").read_text())
    assert results["metal_threshold_hu"] > 600 and results["chosen"] == results["algorithms"][0]["id"]
    for entry in results["algorithms"]:
        assert {"id", "name", "rank", "score", "parts", "measurements", "files"} <= set(entry)
        assert {"length_mm", "diameter_mean_mm", "diameter_min_mm", "diameter_max_mm", "eccentricity_max"} <= set(entry["measurements"])
        assert (out / entry["id"] / "stent.vtp").exists() and (out / entry["id"] / "axis.mrk.json").exists()
        assert 'Name="SPACE"' in (out / entry["id"] / "stent.vtp").read_text(errors="ignore")  # Slicer's field
    traced = json.loads((out / "B" / "struts.mrk.json").read_text())
    assert len(traced["markups"]) > 1 and all(m["type"] == "Curve" for m in traced["markups"])
    top = results["algorithms"][0]["measurements"]
    assert top["diameter_mean_mm"] == pytest.approx(3.0, abs=0.3) and top["length_mm"] == pytest.approx(16.0, abs=1.0)
    assert "chosen:" in printed and "HU" in printed

    reader = create_app()
    try:
        assert reader.scene.ReadFromMRB(str(out / "scene.mrb"))
        case = CardiacCase.first(reader.scene)
        assert len(case.references(Role.STENT_MODEL)) == len(results["algorithms"])
        assert len(case.references(Role.STENT_AXIS)) == len(results["algorithms"])
        assert case.reference(Role.STENT_TABLE).GetNumberOfRows() == len(results["algorithms"])
        assert case.reference(Role.STENT_SECTIONS_TABLE).GetNumberOfRows() > 20
        assert case.value(Key.STENT_RESULTS)["chosen"] == results["chosen"]
        model = case.references(Role.STENT_MODEL)[0]
        assert model.GetPolyData() is not None and model.GetPolyData().GetNumberOfPoints() > 0
    finally:
        reader.scene.Clear(True)


@pytest.mark.slow
def test_command_line_on_a_4d_study_with_and_without_propagate_transforms(tmp_path, moving_coronary, capsys):
    from CardiacSuiteLib import mrml
    from CardiacSuiteLib.app import create_app

    p4 = moving_coronary
    ref = p4.phases[p4.reference_phase]
    phantoms.write_4d(p4, tmp_path / "study")
    ct = tmp_path / "study" / "ct.seq.nrrd"
    host = create_app()
    node = mrml.add_segmentation_from_labelmap(host.scene, ref.vessel_mask.astype(np.uint8), p4.ijk_to_ras,
                                               [mrml.SegmentSpec(1, "Artery", (0.9, 0.2, 0.2))], "artery")
    mrml.save_node(node, tmp_path / "artery.seg.nrrd")
    host.scene.Clear(True)
    assert main(["propagate", str(ct), "--segmentation", str(tmp_path / "artery.seg.nrrd"), "--reference-phase", "3",
                 "--out", str(tmp_path / "propagated"), "--grid", "1", "--margin", "8", "--quiet"]) == 0
    common = ["stent", str(ct), "--start", point_text(ref.click_start), "--end", point_text(ref.click_end),
              "--phase", "3", "--algorithms", "A,C", "--quiet"]
    assert main(common + ["--out", str(tmp_path / "given"), "--transforms", str(tmp_path / "propagated"),
                          "--segmentation", str(tmp_path / "artery.seg.nrrd")]) == 0
    assert main(common + ["--out", str(tmp_path / "here")]) == 0
    capsys.readouterr()
    for name in ("given", "here"):
        results = json.loads((tmp_path / name / "results.json").read_text())
        assert [p["index"] for p in results["phases"]] == [0, 1, 2, 3]
        for phase in results["phases"]:
            assert {"index", "value", "files", "axis_to_centerline_mm", "consistency_mm", "flagged"} <= set(phase)
            assert (tmp_path / name / "phases" / f"phase_{phase['index']:02d}" / "stent.vtp").exists()
            assert (tmp_path / name / "phases" / f"phase_{phase['index']:02d}" / "axis.mrk.json").exists()
            axis = np.array([p["position"] for p in json.loads(
                (tmp_path / name / "phases" / f"phase_{phase['index']:02d}" / "axis.mrk.json").read_text())["markups"][0]["controlPoints"]])
            axis = axis * np.array([-1.0, -1.0, 1.0])  # the file is LPS
            assert axis_error_mm(axis, p4.phases[phase["index"]].axis) <= 0.5
        assert results["propagation"]["source"].startswith("propagate output" if name == "given" else "registered here")
    reader = create_app()
    try:
        assert reader.scene.ReadFromMRB(str(tmp_path / "here" / "scene.mrb"))
        case = CardiacCase.first(reader.scene)
        assert case.reference(Role.STENT_MODEL_SEQUENCE).GetNumberOfDataNodes() == 4
        assert case.reference(Role.STENT_AXIS_SEQUENCE).GetNumberOfDataNodes() == 4
        assert case.reference(Role.STENT_PHASE_TABLE).GetNumberOfRows() == 4
    finally:
        reader.scene.Clear(True)


def test_command_line_errors_write_nothing(tmp_path, coronary, capsys):
    phantoms.write(coronary, tmp_path / "study")
    ct = str(tmp_path / "study" / "ct.nrrd")
    ends = ["--start", point_text(coronary.click_start), "--end", point_text(coronary.click_end)]
    far = point_text(coronary.ijk_to_ras[:3, 3] + np.array([300.0, 0.0, 0.0]))
    inside_corner = coronary.ijk_to_ras[:3, :3] @ np.array([3.0, 3.0, 3.0]) + coronary.ijk_to_ras[:3, 3]
    cases = {
        "outside the image": ["stent", ct, "--start", far, "--end", point_text(coronary.click_end)],
        "no metal": ["stent", ct, "--start", point_text(inside_corner), "--end",
                     point_text(inside_corner + coronary.ijk_to_ras[:3, :3] @ np.array([0.0, 0.0, 8.0]))],
        "either --curve": ["stent", ct, *ends, "--curve", str(tmp_path / "axis.mrk.json")],
        "give the device's extent": ["stent", ct, "--start", point_text(coronary.click_start)],
        "not a point": ["stent", ct, "--start", "1,2", "--end", "3,4,5"],
    }
    from CardiacSuiteLib.imagedata import ImageSeries
    from CardiacSuiteLib.imageio import write_image

    mr = ImageSeries(frames=(np.abs(coronary.image) + 10.0)[None], ijk_to_ras=coronary.ijk_to_ras)
    write_image(mr, tmp_path / "mr.nrrd")
    cases["not a CT"] = ["stent", str(tmp_path / "mr.nrrd"), *ends]
    for expected, argv in cases.items():
        out = tmp_path / f"out_{abs(hash(expected))}"
        assert main(argv + ["--out", str(out), "--quiet"]) == 2, expected
        error = capsys.readouterr().err
        assert expected in error and error.count("\n") == 1, error
        assert not out.exists(), expected


def test_valve_frame_depth_below_the_annulus_and_distance_to_a_landmark(tavr):
    from StentReconstructionLib.cli import parse_annulus

    direction = (tavr.axis[-1] - tavr.axis[0]) / np.linalg.norm(tavr.axis[-1] - tavr.axis[0])
    centre = tavr.axis[0] + 4.0 * direction  # the phantom's frame reaches 4 mm into the outflow
    annulus = parse_annulus(",".join(f"{v:.4f}" for v in (*centre, *direction)), "tavr")
    landmark = centre + 12.0 * np.cross(direction, [1.0, 0.0, 0.0]) / np.linalg.norm(np.cross(direction, [1.0, 0.0, 0.0]))
    run = workflow.reconstruct(tavr.image, tavr.ijk_to_ras, clicks(tavr), TAVR, algorithms="C", annulus=annulus,
                               landmark=landmark)
    figures = run.chosen.measurements
    assert figures["implantation_depth_mm"] == pytest.approx(4.0, abs=0.3)
    assert figures["frame_height_mm"] == pytest.approx(tavr.length_mm, abs=1.0)
    assert figures["landmark_to_start_mm"] == pytest.approx(np.hypot(12.0, 4.0), abs=0.5)
    with pytest.raises(InputError, match="R,A,S,nR,nA,nS"):
        parse_annulus("1,2,3", "tavr")
