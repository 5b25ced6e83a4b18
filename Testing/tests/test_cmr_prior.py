"""A prior study side by side: ``cmr-function --prior RESULTS_DIR`` and the same comparison through the workflow.

Two DICOM cines of one patient, half a year apart, the second contracting more (a higher ejection fraction), go
through the real command; the second names the first's output folder as its prior. The ``prior`` block must pair
every figure both results hold with its exact difference (current minus prior) and its unit, carry both studies'
identifiers, the interval in days and both volume curves; the scene must hold the comparison table and the prior
curves in the study's plot. Another patient's study and folders that are not function results are refused, with
messages that say what is wrong, before any model runs.
"""

from __future__ import annotations

import contextlib
import io
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from CardiacSuiteLib import mrml
from CardiacSuiteLib.app import create_app
from CardiacSuiteLib.case import CardiacCase, Key, Role
from CardiacSuiteLib.cli import main
from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.imagedata import add_to_scene
from CardiacSuiteLib.imageio import read_image_input
from CardiacSuiteLib.inference.registry import ModelRegistry
from CardiacSuiteLib.jobs import run_job
from CardiacSuiteLib.phantoms.cine import beating_heart_cine
from CMRAnalysisLib import prior, workflow
from CMRAnalysisLib.function_scene import RESULTS_KEY
from test_dicom import make_image

pytest.importorskip("pydicom")
from pydicom.uid import generate_uid  # noqa: E402

FAST = ["--model", "sax-fast-unet", "--device", "cpu", "--quiet", "--height-cm", "172", "--weight-kg", "70"]
PATIENT = "PHANTOM01"
PRIOR_DATE, CURRENT_DATE = "20240105", "20240704"
PIXEL_MM, SLICE_MM, RR_MS = 2.2, 10.0, 1000.0


def phantom(esv_radius_mm: float):
    return beating_heart_cine(phases=8, slices=8, size=128, pixel_mm=PIXEL_MM, slice_spacing_mm=SLICE_MM,
                              rr_ms=RR_MS, esv_radius_mm=esv_radius_mm)


def write_dicom_cine(folder: Path, cine, patient_id: str = PATIENT, study_date: str = CURRENT_DATE) -> str:
    """The phantom as a classic single-frame MR series (its geometry in LPS); returns the StudyInstanceUID."""
    series_uid, study_uid, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    frames = cine.series.frames
    phases, slices, size = frames.shape[0], frames.shape[1], frames.shape[2]
    centre = (size - 1) / 2.0 * PIXEL_MM
    for phase in range(phases):
        for k in range(slices):
            make_image(
                folder / f"IM_{phase:02d}_{k:02d}.dcm", np.rint(frames[phase, k]).astype(np.int16),
                series_uid=series_uid, study_uid=study_uid, position=(centre, -centre, k * SLICE_MM),
                orientation=(-1.0, 0.0, 0.0, 0.0, 1.0, 0.0), pixel_spacing=(PIXEL_MM, PIXEL_MM),
                trigger=phase * RR_MS / phases, instance=phase * slices + k + 1, thickness=SLICE_MM,
                frame_of_reference=frame_of_reference, PatientID=patient_id, StudyDate=study_date,
                NominalInterval=f"{RR_MS:g}",
            )
    return study_uid


def run(*args) -> tuple[int, str]:
    """The command as a user runs it; returns its exit status and what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main([str(arg) for arg in args])
    return status, printed.getvalue()


def read_results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))


def figure(results: dict, key: str) -> float:
    value = results
    for part in key.split("."):
        value = value[part]
    return value


def error_line(capsys) -> str:
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cardiacsuite: error:")]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """The prior study (EF about 50 %) and the current one (about 69 %), both through ``cmr-function``."""
    root = tmp_path_factory.mktemp("prior")
    prior_uid = write_dicom_cine(root / "dicom-prior", phantom(19.0), study_date=PRIOR_DATE)
    current_uid = write_dicom_cine(root / "dicom-current", phantom(15.0), study_date=CURRENT_DATE)
    status, _printed = run("cmr-function", root / "dicom-prior", "--out", root / "prior", *FAST)
    assert status == 0
    status, printed = run("cmr-function", root / "dicom-current", "--out", root / "current", "--prior",
                          root / "prior", *FAST)
    assert status == 0
    return {"root": root, "prior_uid": prior_uid, "current_uid": current_uid, "printed": printed,
            "prior": read_results(root / "prior"), "current": read_results(root / "current")}


# ------------------------------------------------------------------------------------------------ the command


def test_every_shared_figure_has_its_exact_difference_and_unit(studies):
    before, now = studies["prior"], studies["current"]
    block = now["prior"]
    quantities = block["quantities"]
    assert "prior" not in before  # the prior's own results compare with nothing

    for key, item in quantities.items():
        assert item["prior"] == figure(before, key) and item["current"] == figure(now, key)
        assert item["difference"] == item["current"] - item["prior"]
        if item["prior"]:
            assert item["relative_difference_pct"] == pytest.approx(100.0 * item["difference"] / item["prior"])
        assert item["unit"] and item["difference_unit"] and item["label"]

    units = {key: (quantities[key]["unit"], quantities[key]["difference_unit"]) for key in quantities}
    assert units["lv.edv_ml"] == units["rv.esv_ml"] == units["lv.sv_ml"] == ("ml", "ml")
    assert units["lv.ef_pct"] == units["rv.ef_pct"] == ("%", prior.PERCENTAGE_POINTS)
    assert units["lv.mass_g"] == ("g", "g")
    assert units["lv.edvi_ml_m2"] == ("ml/m²", "ml/m²") and units["lv.mass_index_g_m2"] == ("g/m²", "g/m²")
    assert units["lv.co_l_min"] == ("l/min", "l/min") and units["bsa_m2"] == ("m²", "m²")
    assert units["aha.segments.1.thickening_pct"] == ("%", prior.PERCENTAGE_POINTS)
    # Run times, phase numbers and an earlier comparison are not figures of the heart.
    assert not [key for key in quantities if key.startswith(("timing_s.", "input.", "reference."))]
    assert "lv.ed_phase" not in quantities and "phases" not in quantities

    # The second phantom contracts more: a larger ejection fraction, a smaller end-systolic volume.
    assert quantities["lv.ef_pct"]["difference"] > 5.0
    assert quantities["lv.esv_ml"]["difference"] < 0.0


def test_the_block_names_both_studies_the_interval_and_both_curves(studies):
    before, now = studies["prior"], studies["current"]
    block = now["prior"]
    assert block["folder"] == str((studies["root"] / "prior").resolve())
    assert block["prior_study"][Key.STUDY_INSTANCE_UID] == studies["prior_uid"]
    assert block["current_study"][Key.STUDY_INSTANCE_UID] == studies["current_uid"]
    assert block["prior_study"][Key.PATIENT_ID] == block["current_study"][Key.PATIENT_ID] == PATIENT
    assert block["same_patient_checked"] == [Key.PATIENT_ID]
    assert block["interval_days"] == (date(2024, 7, 4) - date(2024, 1, 5)).days
    assert block["warnings"] == []

    curves = block["curves"]
    assert curves["units"] == {"time_ms": "ms", "lv_ml": "ml", "rv_ml": "ml", "myocardium_ml": "ml"}
    for side, results in (("prior", before), ("current", now)):
        assert curves[side]["time_ms"] == results["curves"]["time_ms"] == pytest.approx([125.0 * p for p in range(8)])
        assert curves[side]["lv_ml"] == results["curves"]["lv_ml"] and len(curves[side]["lv_ml"]) == 8
        assert curves[side]["rv_ml"] == results["curves"]["rv_ml"]


def test_the_command_prints_the_side_by_side_table_with_units(studies):
    lines = studies["printed"].splitlines()
    quantities = studies["current"]["prior"]["quantities"]
    header = next(index for index, line in enumerate(lines) if line.startswith("Prior study of 2024-01-05, 181 days"))
    assert lines[header + 1].split() == ["Measurement", "Prior", "Current", "Difference"]
    ef = quantities["lv.ef_pct"]
    ef_line = next(line for line in lines if line.strip().startswith("LV EF "))
    assert f"{ef['prior']:.1f} %" in ef_line and f"{ef['current']:.1f} %" in ef_line
    assert f"{ef['difference']:+.1f} percentage points" in ef_line
    edv_line = next(line for line in lines if line.strip().startswith("LV EDV "))
    assert edv_line.count(" ml") == 3
    assert any(line.strip().startswith("LV mass index ") and "g/m²" in line for line in lines)


def test_the_scene_holds_the_comparison_table_and_both_curves_in_one_plot(studies, tmp_path):
    app = create_app(cache_dir=tmp_path / "cache")
    assert app.scene.ReadFromMRB(str(studies["root"] / "current" / "scene.mrb"))
    case = CardiacCase.first(app.scene)
    block = case.value(RESULTS_KEY)["prior"]
    assert block["quantities"] == studies["current"]["prior"]["quantities"]

    rows = {row["Measurement"]: row for row in mrml.table_rows(case.reference(Role.FUNCTION_PRIOR_TABLE))}
    ef = block["quantities"]["lv.ef_pct"]
    assert rows["LV EF"]["Prior"] == f"{ef['prior']:.1f}" and rows["LV EF"]["Current"] == f"{ef['current']:.1f}"
    assert rows["LV EF"]["Difference"] == f"{ef['difference']:+.1f}"
    assert (rows["LV EF"]["Unit"], rows["LV EF"]["Difference unit"]) == ("%", prior.PERCENTAGE_POINTS)
    assert rows["LV EDV"]["Unit"] == "ml" and rows["LV mass"]["Unit"] == "g"

    prior_curves = mrml.table_rows(case.reference(Role.FUNCTION_PRIOR_CURVES_TABLE))
    assert [row["LV volume (ml)"] for row in prior_curves] == pytest.approx(studies["prior"]["curves"]["lv_ml"])
    chart = case.reference(Role.FUNCTION_CURVES_PLOT)
    series = [chart.GetNthPlotSeriesNode(index) for index in range(chart.GetNumberOfPlotSeriesNodes())]
    tables = {item.GetTableNodeID() for item in series}
    assert len(series) == 4 and tables == {case.reference(Role.FUNCTION_CURVES_TABLE).GetID(),
                                           case.reference(Role.FUNCTION_PRIOR_CURVES_TABLE).GetID()}
    assert {item.GetName() for item in series} >= {"LV volume (ml), prior 2024-01-05",
                                                   "RV volume (ml), prior 2024-01-05"}
    assert case.value(Key.FUNCTION_PRIOR_STUDY)["folder"] == block["folder"]


def test_a_recompute_compares_with_the_prior_again(studies, tmp_path):
    app = create_app(cache_dir=tmp_path / "cache")
    assert app.scene.ReadFromMRB(str(studies["root"] / "current" / "scene.mrb"))
    case = CardiacCase.first(app.scene)
    recomputed = workflow.recompute_analysis(app.scene, case)
    block = recomputed.results["prior"]
    edv = block["quantities"]["lv.edv_ml"]
    assert edv["current"] == pytest.approx(studies["current"]["lv"]["edv_ml"])  # summed again from the contours
    assert edv["difference"] == edv["current"] - edv["prior"] and edv["prior"] == studies["prior"]["lv"]["edv_ml"]
    assert recomputed.prior_table is case.reference(Role.FUNCTION_PRIOR_TABLE)
    assert recomputed.plot_chart.GetNumberOfPlotSeriesNodes() == 4
    found = app.scene.GetNodesByClass("vtkMRMLTableNode")
    names = [found.GetItemAsObject(index).GetName() for index in range(found.GetNumberOfItems())]
    assert len(names) == len(set(names))  # replaced, not duplicated
    assert "Since the prior study (181 days earlier): LV ejection fraction" in workflow.result_summary(recomputed.results)


def test_the_slicer_logic_path_makes_the_same_comparison(studies, tmp_path):
    """Open the prior with the study node's identity, prepare, compute in a job, finish: as the module's Apply."""
    app = create_app(cache_dir=tmp_path / "cache")
    series = read_image_input(str(studies["root"] / "dicom-current"))
    sequence, _browser = add_to_scene(app.scene, series)
    case = CardiacCase.get_or_create(app.scene, "study", series.metadata[Key.STUDY_INSTANCE_UID],
                                     series.metadata[Key.PATIENT_ID])
    patient = workflow.patient_info(172.0, 70.0)
    opened = workflow.open_prior_study(studies["root"] / "prior", workflow.case_identity(case))
    registry = ModelRegistry.default(cache_dir=tmp_path / "models")
    prepared = workflow.prepare_analysis(sequence, "sax-fast-unet", "cpu", patient=patient, case=case,
                                         registry=registry, prior=opened)
    computed = run_job(lambda progress, cancel: workflow.compute_analysis(prepared, progress, cancel))
    analysis = workflow.finish_analysis(app.scene, prepared, computed)
    block, from_command = analysis.results["prior"], studies["current"]["prior"]
    assert block["quantities"] == from_command["quantities"]
    assert block["curves"] == from_command["curves"]
    assert block["same_patient_checked"] == [Key.PATIENT_ID]
    assert block["interval_days"] is None  # the study node keeps no StudyDate
    assert analysis.prior_table is not None and analysis.plot_chart.GetNumberOfPlotSeriesNodes() == 4


# ------------------------------------------------------------------------------------------------ refusals


def test_another_patients_study_is_refused_unless_allowed(studies, tmp_path, capsys):
    other = tmp_path / "dicom-other"
    write_dicom_cine(other, phantom(15.0), patient_id="SOMEONE-ELSE")
    out = tmp_path / "out"
    assert main(["cmr-function", str(other), "--out", str(out), "--prior", str(studies["root"] / "prior"), *FAST]) == 2
    message = error_line(capsys)
    assert "is of another patient (PatientID 'PHANTOM01' there, 'SOMEONE-ELSE' here)" in message
    assert message.endswith("allow a comparison of different patients (option --prior-any-patient)")
    assert not out.exists()

    status, _printed = run("cmr-function", other, "--out", out, "--prior", studies["root"] / "prior",
                           "--prior-any-patient", *FAST)
    assert status == 0
    warnings = read_results(out)["prior"]["warnings"]
    assert any(warning.startswith("the studies are of different patients (PatientID 'PHANTOM01' there")
               for warning in warnings)


def _not_a_folder(root: Path) -> Path:
    (root / "results.json").write_text("{}")
    return root / "results.json"


def _no_results(root: Path) -> Path:
    (root / "empty").mkdir()
    return root / "empty"


def _broken_json(root: Path) -> Path:
    (root / "broken").mkdir()
    (root / "broken" / "results.json").write_text('{"lv": {"edv_ml": 120.0,')
    return root / "broken"


def _atrial_results(root: Path) -> Path:
    (root / "atria").mkdir()
    (root / "atria" / "results.json").write_text(json.dumps({"la": {"max_volume_ml": 60.0}}))
    return root / "atria"


def _no_curves(root: Path) -> Path:
    (root / "no-curves").mkdir()
    (root / "no-curves" / "results.json").write_text(json.dumps({"lv": {"edv_ml": 120.0}, "rv": {"edv_ml": 130.0}}))
    return root / "no-curves"


@pytest.mark.parametrize(("make", "expected"), [
    (lambda root: root / "missing", "missing does not exist; choose the output folder of an earlier short-axis"
                                    " function analysis (cardiacsuite cmr-function)"),
    (_not_a_folder, "results.json is a file, not a folder; choose the output folder"),
    (_no_results, "empty holds no results.json; choose the output folder"),
    (_broken_json, "results.json is not valid JSON (Expecting property name enclosed in double quotes: line 1"),
    (_atrial_results, "results.json is not the result of a short-axis function analysis (no LV end-diastolic"
                      " volume); choose the output folder"),
    (_no_curves, "results.json is not the result of a short-axis function analysis (no volume curves)"),
], ids=["missing", "file", "no-results", "broken-json", "not-function", "no-curves"])
def test_a_broken_prior_folder_is_refused_before_the_model_runs(studies, tmp_path, capsys, make, expected):
    folder = make(tmp_path)
    out = tmp_path / "out"
    cine = studies["root"] / "dicom-current"
    assert main(["cmr-function", str(cine), "--out", str(out), "--prior", str(folder), *FAST]) == 2
    message = error_line(capsys)
    assert message.startswith("cardiacsuite: error: prior study: ") and expected in message
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ the Lib rules


def _study(header: dict, current: dict, allow: bool = False) -> prior.PriorStudy:
    return prior.PriorStudy("/studies/prior", {"input": header}, current, allow)


def test_the_patient_check_compares_what_both_studies_carry():
    same = {Key.PATIENT_ID: "P1", "PatientName": "DOE^JANE", "PatientBirthDate": "19700101"}
    assert prior.patient_warnings(_study(same, {**same, "PatientName": "Doe^Jane^"})) == []
    with pytest.raises(InputError, match=r"PatientBirthDate '19700101' there, '19700102' here"):
        prior.patient_warnings(_study(same, {**same, "PatientBirthDate": "19700102"}))
    allowed = prior.patient_warnings(_study(same, {Key.PATIENT_ID: "P2"}, allow=True))
    assert allowed == ["the studies are of different patients (PatientID 'P1' there, 'P2' here); compared as asked"]
    assert prior.patient_warnings(_study(same, {})) == [
        "same patient not checked: this study carries no patient ID, name or birth date"]
    assert prior.patient_warnings(_study({}, {})) == [
        "same patient not checked: the prior study and this study carry no patient ID, name or birth date"]
    assert prior.patient_warnings(_study({Key.PATIENT_ID: "P1"}, {"PatientName": "DOE^JANE"})) == [
        "same patient not checked: the two studies carry no patient field in common"]


def test_figures_are_found_by_their_unit_and_compared_exactly():
    results = {"lv": {"edv_ml": 150.0, "ef_pct": 55.0, "ed_phase": 0, "curve": [1.0, 2.0]},
               "timing_s": {"total_ms": 3.0}, "hr_bpm": 60, "flag": True, "aha": {"segments": {"1": {"ed_thickness_mm": 0.0}}}}
    found = {item.key: (item.unit, item.label) for item in prior.measured_figures(results)}
    assert found == {"lv.edv_ml": ("ml", "LV EDV"), "lv.ef_pct": ("%", "LV EF"), "hr_bpm": ("bpm", "Heart rate"),
                     "aha.segments.1.ed_thickness_mm": ("mm", "AHA segment 1 ED thickness")}
    later = {"lv": {"edv_ml": 140.1, "ef_pct": 61.3}, "hr_bpm": 72, "aha": {"segments": {"1": {"ed_thickness_mm": 1.5}}}}
    block = prior.compare(later, prior.PriorStudy("/studies/prior", results, {}))
    ef = block["quantities"]["lv.ef_pct"]
    assert ef["difference"] == 61.3 - 55.0 and ef["difference_unit"] == prior.PERCENTAGE_POINTS
    assert ef["relative_difference_pct"] == pytest.approx(100.0 * (61.3 - 55.0) / 55.0)
    assert block["quantities"]["aha.segments.1.ed_thickness_mm"]["relative_difference_pct"] is None  # from zero
    assert block["interval_days"] is None
    assert "interval between the studies unknown: a StudyDate is missing" in block["warnings"]
