"""The ``cardiacsuite`` command: the main job end to end on a phantom, and every bad-input path.

Bad input must end with exit status 2 and one line on stderr that names the problem, and must leave the
output folder exactly as it was.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from CardiacSuiteLib.app import create_app
from CardiacSuiteLib.case import CardiacCase, Role
from CardiacSuiteLib.cli import main
from CardiacSuiteLib.imagedata import ImageSeries
from CardiacSuiteLib.imageio import write_image, write_seq_nrrd
from CardiacSuiteLib.phantoms.cine import beating_heart_cine
from test_dicom import write_cine

REQUIRED_KEYS = [
    ("lv", "edv_ml"), ("lv", "esv_ml"), ("lv", "sv_ml"), ("lv", "ef_pct"), ("lv", "mass_g"), ("lv", "co_l_min"),
    ("rv", "edv_ml"), ("rv", "esv_ml"), ("rv", "sv_ml"), ("rv", "ef_pct"),
    ("ed_phase",), ("es_phase",), ("model", "id"), ("model", "version"), ("timing_s", "total"),
]


@pytest.fixture(scope="module")
def phantom():
    return beating_heart_cine(phases=8, slices=8, size=128, pixel_mm=2.2)


@pytest.fixture(scope="module")
def model_home(tmp_path_factory):
    """A private per-user folder, so tests never touch the real model cache."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(autouse=True)
def private_home(monkeypatch, model_home):
    monkeypatch.setenv("CARDIACSUITE_HOME", str(model_home))


def run_cli(*args) -> tuple[int, str]:
    return main([str(a) for a in args]), ""


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("cardiacsuite: error:")]
    assert len(errors) == 1, err
    return errors[0]


def existing_output(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"previous": true}')
    return out


def assert_untouched(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert json.loads((out / "results.json").read_text()) == {"previous": True}
    assert not list(out.parent.glob(".out.partial-*"))


@pytest.mark.slow
def test_cmr_function_on_a_phantom_cine(tmp_path, phantom, capsys):
    cine = write_seq_nrrd(phantom.series, tmp_path / "cine.seq.nrrd")
    out = tmp_path / "result"
    assert main(["cmr-function", str(cine), "--out", str(out), "--device", "cpu", "--phases", "ed-es",
                 "--height-cm", "172", "--weight-kg", "70", "--sex", "F", "--age", "50"]) == 0
    stdout = capsys.readouterr().out
    assert "LV: EDV" in stdout and "ml" in stdout and "%" in stdout

    results = json.loads((out / "results.json").read_text())
    for path in REQUIRED_KEYS:
        value = results
        for key in path:
            value = value[key]
        assert value is not None, path
    assert (results["ed_phase"], results["es_phase"]) == (phantom.ed_phase, phantom.es_phase)
    truth_edv, truth_esv = phantom.lv_volume_ml[phantom.ed_phase], phantom.lv_volume_ml[phantom.es_phase]
    truth_ef = 100 * (truth_edv - truth_esv) / truth_edv
    assert results["lv"]["edv_ml"] == pytest.approx(truth_edv, rel=0.15)
    assert abs(results["lv"]["ef_pct"] - truth_ef) < 6.0
    assert results["lv"]["sv_ml"] == pytest.approx(results["lv"]["edv_ml"] - results["lv"]["esv_ml"])
    assert sorted(p.name for p in out.iterdir()) == [
        "polar_map.png", "results.json", "scene.mrb", "segmentation_ED.seg.nrrd", "segmentation_ES.seg.nrrd",
        "volume_curves.csv",
    ]
    assert results["bsa_m2"] == pytest.approx((172 * 70 / 3600) ** 0.5)
    assert results["lv"]["edvi_ml_m2"] == pytest.approx(results["lv"]["edv_ml"] / results["bsa_m2"])
    assert results["aha"]["available"] and len(results["aha"]["segments"]) == 17
    assert (out / "volume_curves.csv").read_text().startswith("phase,time_ms,lv_volume_ml")

    # The bundle opens as a Slicer scene with the case node pointing at every result.
    app = create_app(cache_dir=tmp_path / "cache")
    assert app.scene.ReadFromMRB(str(out / "scene.mrb"))
    case = CardiacCase.all(app.scene)[0]
    segmentations = case.reference(Role.FUNCTION_SEGMENTATION)
    assert segmentations.GetNumberOfDataNodes() == 2
    assert case.reference(Role.FUNCTION_TABLE).GetTable().GetNumberOfRows() >= 6
    assert case.reference(Role.CINE).GetNumberOfDataNodes() == 8
    assert case.value("FunctionResults")["lv"]["edv_ml"] == pytest.approx(results["lv"]["edv_ml"])
    assert case.value("FunctionResults")["bsa_m2"] == pytest.approx(results["bsa_m2"])

    # The correction loop: the reader erases the LV cavity on one end-diastolic slice and runs again.
    from CardiacSuiteLib import mrml

    corrected = mrml.load_segmentation(app.scene, out / "segmentation_ED.seg.nrrd")
    grid = mrml.add_volume(app.scene, np.zeros(phantom.series.frames.shape[1:], np.float32), phantom.series.ijk_to_ras, "grid")
    values = {"Right ventricle": 1, "Left ventricle myocardium": 2, "Left ventricle": 3}
    labels = mrml.labelmap_from_segmentation(corrected, grid, values)
    slice_with_cavity = int(np.argmax((labels == 3).sum(axis=(1, 2))))
    labels[slice_with_cavity][labels[slice_with_cavity] == 3] = 0
    from CMRAnalysisLib.function_scene import SEGMENT_SPECS

    edited = mrml.add_segmentation_from_labelmap(app.scene, labels, phantom.series.ijk_to_ras, SEGMENT_SPECS, "edited")
    mrml.save_node(edited, tmp_path / "reader_ED.seg.nrrd")
    again = tmp_path / "again"
    assert main(["cmr-function", str(cine), "--out", str(again), "--phases", "ed-es", "--quiet",
                 "--segmentation", str(tmp_path / "reader_ED.seg.nrrd")]) == 0
    recomputed = json.loads((again / "results.json").read_text())
    assert recomputed["edited"]["phases"] == [results["ed_phase"]]
    ed_volume = recomputed["curves"]["lv_ml"][recomputed["curves"]["phase"].index(results["ed_phase"])]
    assert ed_volume < results["lv"]["edv_ml"] - 5


@pytest.mark.slow
def test_single_phase_volume_gives_volumes_only(tmp_path, phantom, capsys):
    one_phase = ImageSeries(phantom.series.frames[:1], phantom.series.ijk_to_ras, name="ed", modality="MR")
    path = write_image(one_phase, tmp_path / "ed.nrrd")
    out = tmp_path / "result"
    assert main(["cmr-function", str(path), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["lv"]["ef_pct"] is None and results["lv"]["edv_ml"] > 50
    assert (out / "segmentation.seg.nrrd").is_file()


def test_missing_input(tmp_path, capsys):
    out = existing_output(tmp_path)
    assert main(["cmr-function", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "nowhere" in error_line(capsys)
    assert_untouched(out)


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = existing_output(tmp_path)
    assert main(["cmr-function", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "empty" in error_line(capsys)
    assert_untouched(out)


def test_folder_of_non_dicom_files(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not an image")
    (folder / "data.bin").write_bytes(b"\x00\x01" * 300)
    out = existing_output(tmp_path)
    assert main(["cmr-function", str(folder), "--out", str(out)]) == 2
    assert "DICOM" in error_line(capsys)
    assert_untouched(out)


def test_truncated_dicom(tmp_path, capsys):
    folder = tmp_path / "cine"
    folder.mkdir()
    write_cine(folder)
    victim = sorted(folder.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-9])
    out = existing_output(tmp_path)
    assert main(["cmr-function", str(folder), "--out", str(out)]) == 2
    assert victim.name in error_line(capsys)
    assert_untouched(out)


def test_mixed_series_asks_for_one(tmp_path, capsys):
    folder = tmp_path / "study"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    first = write_cine(folder / "a")
    write_cine(folder / "b", slices=(0, 1, 2), phases=2, description="LGE")
    out = existing_output(tmp_path)
    assert main(["cmr-function", str(folder), "--out", str(out)]) == 2
    line = error_line(capsys)
    assert first["series_uid"] in line and "--series" in line
    assert_untouched(out)


def test_wrong_modality(tmp_path, capsys):
    ct = ImageSeries(np.ones((1, 4, 8, 8), np.float32), np.eye(4), name="ct", modality="CT", source="ct")
    from CMRAnalysisLib import cli

    out = existing_output(tmp_path)
    with pytest.raises(Exception) as error:
        cli.analyse_series_to_folder(ct, out, None, lambda *a: None, 0.0, 0.0)
    assert "not MR" in str(error.value)
    assert_untouched(out)


def test_unknown_model(tmp_path, phantom, capsys):
    path = write_image(ImageSeries(phantom.series.frames[:1], phantom.series.ijk_to_ras, modality="MR"), tmp_path / "x.nrrd")
    out = existing_output(tmp_path)
    assert main(["cmr-function", str(path), "--out", str(out), "--model", "no-such-model"]) == 2
    assert "no-such-model" in error_line(capsys)
    assert_untouched(out)


def test_corrupt_model_file_is_refused(tmp_path, phantom, model_home, capsys):
    assert main(["models", "install", "myopari-acdc-tiramisu"]) == 0
    cached = next((model_home / "models" / "myopari-acdc-tiramisu").rglob("*.onnx"))
    backup = cached.read_bytes()
    cached.write_bytes(backup[:-100] + bytes(100))
    try:
        path = write_image(ImageSeries(phantom.series.frames[:1], phantom.series.ijk_to_ras, modality="MR"), tmp_path / "x.nrrd")
        out = existing_output(tmp_path)
        assert main(["cmr-function", str(path), "--out", str(out)]) == 2
        assert "corrupt" in error_line(capsys)
        assert_untouched(out)
    finally:
        cached.write_bytes(backup)


def test_unwritable_output(tmp_path, phantom, capsys):
    path = write_image(ImageSeries(phantom.series.frames[:1], phantom.series.ijk_to_ras, modality="MR"), tmp_path / "x.nrrd")
    blocker = tmp_path / "file"
    blocker.write_text("I am a file")
    assert main(["cmr-function", str(path), "--out", str(blocker / "out"), "--quiet"]) == 2
    assert "cannot write" in error_line(capsys) or "could not write" in error_line(capsys)


def test_bad_analysis_options(tmp_path, phantom, capsys):
    path = write_image(ImageSeries(phantom.series.frames[:1], phantom.series.ijk_to_ras, modality="MR"), tmp_path / "x.nrrd")
    out = existing_output(tmp_path)
    cases = [
        (["--exclude-slices", "0,99"], "excluded slices: '99' is beyond the 8 slices"),
        (["--rv-insertion-anterior", "1,2,3"], "both"),
        (["--rv-insertion-anterior", "1,2", "--rv-insertion-inferior", "1,2,3"], "R,A,S"),
        (["--height-cm", "170"], "both --height-cm and --weight-kg"),
        (["--height-cm", "1.7", "--weight-kg", "70"], "height"),
        (["--segmentation", str(tmp_path / "missing_ED.seg.nrrd")], "no such file"),
    ]
    for extra, expected in cases:
        assert main(["cmr-function", str(path), "--out", str(out), *extra]) == 2, extra
        assert expected in error_line(capsys), extra
        assert_untouched(out)


def test_installed_command_lists_models():
    command = shutil.which("cardiacsuite", path=str(Path(sys.executable).parent))
    assert command, "the cardiacsuite command is not installed in this environment"
    listing = subprocess.run([command, "models", "list"], capture_output=True, text=True, check=True).stdout
    assert "myopari-acdc-tiramisu" in listing and "cmr-sax-cine" in listing
    bad = subprocess.run([command, "cmr-function", "/no/such/folder", "--out", "/tmp/x"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_errors_name_the_option_that_answers_them_on_the_command_line():
    from CardiacSuiteLib.cli import with_option_hint

    assert with_option_hint("the folder holds 2 DICOM series: ... Choose the one to load by its series UID") \
        .endswith("by its series UID (option --series UID)")
    assert with_option_hint("2 phases are missing; export every phase, or allow missing phases to go on without them") \
        .endswith("(option --allow-missing-phases)")
    assert with_option_hint("the file is empty") == "the file is empty"
