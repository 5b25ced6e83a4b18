"""``cardiacsuite plan`` for the mitral, pulmonary valve and PCI protocols end to end on their phantoms (the
inputs a user gives on the command line, every output file, the scene), and how the command reads
segmentations and chooses a vessel centreline. TAVR's command line is tested in ``test_plan_tavr.py``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

TESTING = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTING))

from phantoms import coronary_stenosis, mitral, rvot  # noqa: E402

from CardiacSuiteLib.app import create_app  # noqa: E402
from CardiacSuiteLib.case import CardiacCase, Key, Role  # noqa: E402
from CardiacSuiteLib.cli import main  # noqa: E402
from CardiacSuiteLib.errors import InputError  # noqa: E402
from InterventionPlanningLib import cli as plan_cli  # noqa: E402
from InterventionPlanningLib import landmarks  # noqa: E402


def _outputs(out: Path, protocol: str, pictures: set[str]) -> dict:
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"] == protocol
    assert pictures <= {p.name[:-4] for p in out.glob("*.png")}
    assert landmarks.read(out / "landmarks.mrk.json")[0]
    reader = create_app()
    try:
        assert reader.scene.ReadFromMRB(str(out / "scene.mrb"))
        case = CardiacCase.first(reader.scene)
        assert protocol in case.value(Key.PLAN_RESULTS)
        assert case.references(Role.PLAN_TABLE) and case.references(Role.PLAN_LANDMARKS)
        assert len(case.references(Role.PLAN_SECTION_IMAGE)) == len(pictures)
    finally:
        reader.scene.Clear(True)
    return results


def test_mitral_from_the_label_map(tmp_path):
    phantom = mitral.mitral(seed=3)
    mitral.write(phantom, tmp_path)
    out = tmp_path / "out"
    assert main(["plan", "mitral", str(tmp_path / "ct.nrrd"), "--segmentation", str(tmp_path / "labels.nrrd"),
                 "--out", str(out), "--quiet"]) == 0
    results = _outputs(out, "mitral", {"mitral_annulus", "neo_lvot"})
    truth = phantom.annulus
    assert results["annulus"]["intercommissural_mm"] == pytest.approx(truth["intercommissural_mm"], abs=1.5)
    assert results["annulus"]["d_shape"]["area_mm2"] == pytest.approx(truth["d_shape"]["area_mm2"], rel=0.06)
    assert results["tmvr"]["neo_lvot_min_area_mm2"] > 0


def test_pulmonary_from_two_clicks(tmp_path):
    phantom = rvot.rvot_phantom(seed=1)
    rvot.write(phantom, tmp_path)
    clicks = tmp_path / "clicks.mrk.json"
    landmarks.write_points(clicks, "clicks", {k: phantom.clicks[k] for k in ("rvot_start", "pa_bifurcation")}, {})
    out = tmp_path / "out"
    assert main(["plan", "pulmonary", str(tmp_path / "ct.nrrd"), "--landmarks", str(clicks), "--out", str(out),
                 "--quiet"]) == 0
    results = _outputs(out, "pulmonary", {"annulus", "landing_zone"})
    assert results["landing_zone"]["perimeter_derived_diameter_mm"] == pytest.approx(
        phantom.waist["perimeter_derived_diameter_mm"], abs=1.0)
    assert results["edited"] == ["pa_bifurcation", "rvot_start"]


def test_pci_from_a_drawn_curve(tmp_path):
    phantom = coronary_stenosis.coronary_stenosis(stenosis_percent=60, seed=60)
    coronary_stenosis.write(phantom, tmp_path)
    out = tmp_path / "out"
    assert main(["plan", "pci", str(tmp_path / "ct.nrrd"), "--curve", str(tmp_path / "vessel.mrk.json"),
                 "--vessel", "LAD", "--out", str(out), "--quiet"]) == 0
    results = _outputs(out, "pci", {"mld", "reference_proximal", "reference_distal"})
    assert results["lesion"]["diameter_stenosis_percent"] == pytest.approx(60.0, abs=5.0)
    assert results["segment"]["name"].endswith("LAD")
    # PCI without a centreline: one line, exit 2, nothing written
    assert main(["plan", "pci", str(tmp_path / "ct.nrrd"), "--out", str(tmp_path / "none"), "--quiet"]) == 2
    assert not (tmp_path / "none").exists()


def test_vessel_choice_by_name():
    class Args:
        curve = None
        vessel = None

    curves = {"LAD_branch_1": np.zeros((3, 3)), "RCA": np.ones((3, 3))}
    args = Args()
    with pytest.raises(InputError, match="choose one with --vessel"):
        plan_cli.choose_vessel(args, curves)
    args.vessel = "rca"
    assert plan_cli.choose_vessel(args, curves)[0] is curves["RCA"]
    args.vessel = "lad"
    assert plan_cli.choose_vessel(args, curves)[0] is curves["LAD_branch_1"]
    args.vessel = "LCx"
    with pytest.raises(InputError, match="there are: LAD_branch_1, RCA"):
        plan_cli.choose_vessel(args, curves)


def test_segmentations_are_named_by_file_or_numbering(tmp_path, app):
    from CardiacSuiteLib.imagedata import ImageSeries
    from CardiacSuiteLib.imageio import write_image

    matrix = np.diag([1.0, 1.0, 1.0, 1.0])
    binary = np.zeros((8, 8, 8), np.float32)
    binary[2:5, 2:5, 2:5] = 1
    numbered = np.zeros((8, 8, 8), np.float32)
    numbered[5:7, 5:7, 5:7] = 3
    write_image(ImageSeries(frames=binary[None], ijk_to_ras=matrix), tmp_path / "aorta.nii.gz")
    write_image(ImageSeries(frames=numbered[None], ijk_to_ras=matrix), tmp_path / "heart.nrrd")
    labels, names, _ = plan_cli.read_segmentations([str(tmp_path / "aorta.nii.gz"), str(tmp_path / "heart.nrrd")],
                                                   (8, 8, 8), matrix, app.scene)
    assert names == {1: "aorta", 4: "left ventricle"}
    assert (labels == 1).sum() == 27 and (labels == 4).sum() == 8
    far = np.diag([1.0, 1.0, 1.0, 1.0])
    far[:3, 3] = 500.0
    with pytest.raises(InputError, match="does not overlap the CT"):
        plan_cli.read_segmentations([str(tmp_path / "aorta.nii.gz")], (8, 8, 8), far, app.scene)
