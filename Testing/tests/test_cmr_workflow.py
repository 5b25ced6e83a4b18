"""One CMR function workflow for the Slicer module and ``cardiacsuite cmr-function``.

The command line and the Slicer Logic both run ``CMRAnalysisLib.workflow``; a scene written by the command and one
made the way the Logic makes it (prepare on the scene's thread, compute in a background job, finish) hold the same
nodes, study references and tables, the reference-values table included. The choices both accept (excluded slices,
phases, papillary convention, patient data) and the pure helpers the module's face shows results with are tested
here too, since CI never runs the in-Slicer self-test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from CardiacSuiteLib import mrml
from CardiacSuiteLib.app import create_app
from CardiacSuiteLib.case import CardiacCase, Role
from CardiacSuiteLib.cli import build_parser, main
from CardiacSuiteLib.errors import Cancelled, InputError
from CardiacSuiteLib.imagedata import ImageSeries, add_to_scene
from CardiacSuiteLib.imageio import read_image_input, write_image, write_seq_nrrd
from CardiacSuiteLib.inference import CancelToken
from CardiacSuiteLib.inference.registry import ModelRegistry
from CardiacSuiteLib.jobs import BackgroundJob, run_job
from CardiacSuiteLib.phantoms.cine import beating_heart_cine
from CMRAnalysisLib import choices, polar_map, workflow
from CMRAnalysisLib.function import TASK, FunctionOptions, labels_digest, measure_function
from CMRAnalysisLib.function_scene import (
    POLAR_MAP_COLUMNS,
    REFERENCE_TABLE_ROLE,
    RESULTS_KEY,
    add_function_results,
    reference_table_rows,
)
from CMRAnalysisLib.patient import PatientInfo, assess_patient

FAST_MODEL = "sax-fast-unet"
# The same choices, as command-line options and as the module's fields.
CLI_OPTIONS = ["--model", FAST_MODEL, "--device", "cpu", "--phases", "ed-es", "--papillary", "myocardium",
               "--exclude-slices", "7", "--height-cm", "172", "--weight-kg", "70", "--sex", "female", "--age", "50",
               "--quiet"]
FIELDS = {"phases": "ed-es", "papillary": "myocardium", "excluded": "7", "height": 172.0, "weight": 70.0,
          "sex": "female", "age": 50.0, "bsa": "mosteller"}


@pytest.fixture(scope="module")
def phantom():
    return beating_heart_cine(phases=8, slices=8, size=128, pixel_mm=2.2)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return ModelRegistry.default(cache_dir=tmp_path_factory.mktemp("models"))


def read_bundle(path, cache):
    app = create_app(cache_dir=cache)
    assert app.scene.ReadFromMRB(str(path))
    return app


def scene_nodes(scene) -> list[tuple[str, str]]:
    nodes = [scene.GetNthNode(index) for index in range(scene.GetNumberOfNodes())]
    return sorted((node.GetClassName(), node.GetName() or "") for node in nodes)


def table_nodes(scene) -> list:
    found = scene.GetNodesByClass("vtkMRMLTableNode")
    return [found.GetItemAsObject(index) for index in range(found.GetNumberOfItems())]


def tables(scene) -> dict[str, list[dict]]:
    nodes = table_nodes(scene)
    assert len({node.GetName() for node in nodes}) == len(nodes)
    return {node.GetName(): mrml.table_rows(node) for node in nodes}


def without_timing(results: dict) -> dict:
    return {key: value for key, value in results.items() if key != "timing_s"}


def logic_path(scene, input_node, registry):
    """What CMRAnalysisLogic does on Apply: options from the fields, prepare, compute in a job, finish."""
    options = workflow.analysis_options(FIELDS["phases"], FIELDS["papillary"], FIELDS["excluded"],
                                        workflow.slice_count(input_node))
    patient = workflow.patient_info(FIELDS["height"], FIELDS["weight"], FIELDS["sex"], FIELDS["age"], FIELDS["bsa"])
    case_node = CardiacCase.first(scene).node if CardiacCase.first(scene) else None
    prepared = workflow.prepare_analysis(input_node, FAST_MODEL, "cpu", options, patient,
                                         workflow.study_for(input_node, case_node), registry)
    computed = run_job(lambda progress, cancel: workflow.compute_analysis(prepared, progress, cancel))
    return workflow.finish_analysis(scene, prepared, computed)


# ------------------------------------------------------------------------------------------------ one workflow


def test_command_line_and_slicer_logic_make_the_same_scene(tmp_path, phantom, registry):
    cine = write_seq_nrrd(phantom.series, tmp_path / "cine.seq.nrrd")
    assert main(["cmr-function", str(cine), "--out", str(tmp_path / "cli"), *CLI_OPTIONS]) == 0

    app = create_app(cache_dir=tmp_path / "cache")
    series = read_image_input(str(cine))
    sequence, _browser = add_to_scene(app.scene, series)
    analysis = logic_path(app.scene, sequence, registry)
    app.scene.SetRootDirectory(str(tmp_path))
    assert app.scene.WriteToMRB(str(tmp_path / "logic.mrb"))

    from_cli = read_bundle(tmp_path / "cli" / "scene.mrb", tmp_path / "cache-cli").scene
    from_logic = read_bundle(tmp_path / "logic.mrb", tmp_path / "cache-logic").scene
    assert scene_nodes(from_cli) == scene_nodes(from_logic)
    cli_case, logic_case = CardiacCase.first(from_cli), CardiacCase.first(from_logic)
    assert cli_case.contents() == logic_case.contents()
    assert tables(from_cli) == tables(from_logic)
    assert without_timing(cli_case.value(RESULTS_KEY)) == without_timing(logic_case.value(RESULTS_KEY))

    # The command line's scene now holds the reference-values table the module shows.
    reference = cli_case.reference(REFERENCE_TABLE_ROLE)
    assert reference is not None
    rows = mrml.table_rows(reference)
    assert rows[0]["Measurement"] == "Body surface area"
    assert rows[0]["Value"] == f"{(172 * 70 / 3600) ** 0.5:.2f}"
    assert any(row["Measurement"] == "LV ejection fraction" for row in rows)
    written = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert written["lv"]["edv_ml"] == pytest.approx(analysis.results["lv"]["edv_ml"])
    assert written["slices_included"][str(written["ed_phase"])][7] is False


def test_excluded_slice_ranges_on_the_command_line(tmp_path, phantom, capsys):
    one_phase = ImageSeries(phantom.series.frames[:1], phantom.series.ijk_to_ras, name="ed", modality="MR")
    path = write_image(one_phase, tmp_path / "ed.nrrd")
    out = tmp_path / "out"
    assert main(["cmr-function", str(path), "--out", str(out), "--model", FAST_MODEL, "--quiet",
                 "--exclude-slices", "0, 6-7"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["slices_included"]["0"][0] is False and results["slices_included"]["0"][6:] == [False, False]

    assert main(["cmr-function", str(path), "--out", str(tmp_path / "bad"), "--model", FAST_MODEL,
                 "--exclude-slices", "3, 12"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cardiacsuite: error:")]
    assert errors == ["cardiacsuite: error: excluded slices: '12' is beyond the 8 slices of this cine (numbered 0 to 7)"]


def test_a_cancelled_analysis_adds_nothing(tmp_path, phantom, registry):
    app = create_app(cache_dir=tmp_path / "cache")
    sequence, _browser = add_to_scene(app.scene, phantom.series, "cine")
    before = app.scene.GetNumberOfNodes()
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        workflow.run_function_analysis(app.scene, sequence, FAST_MODEL, "cpu", cancel=token, registry=registry)
    assert app.scene.GetNumberOfNodes() == before

    # As the module runs it: the work in a background job, nothing reaches the scene.
    prepared = workflow.prepare_analysis(sequence, FAST_MODEL, "cpu", registry=registry)
    token = CancelToken()
    token.cancel()
    job = BackgroundJob(lambda progress, cancel: workflow.compute_analysis(prepared, progress, cancel), token).start()
    assert job.wait(60.0)
    assert isinstance(job.error, Cancelled)
    assert app.scene.GetNumberOfNodes() == before


def test_the_finished_analysis_refuses_a_removed_cine(tmp_path, phantom, registry):
    app = create_app(cache_dir=tmp_path / "cache")
    volume = add_to_scene(app.scene, ImageSeries(phantom.series.frames[:1], phantom.series.ijk_to_ras, name="ed"))
    prepared = workflow.prepare_analysis(volume, FAST_MODEL, "cpu", registry=registry)
    computed = workflow.compute_analysis(prepared)
    app.scene.RemoveNode(volume)
    with pytest.raises(InputError, match="removed from the scene"):
        workflow.finish_analysis(app.scene, prepared, computed)


# ------------------------------------------------------------------------------------------------ choices


def test_slice_lists():
    assert choices.parse_slice_list("3, 9-10") == [3, 9, 10]
    assert choices.parse_slice_list(" 0, 8-9 ;3") == [0, 3, 8, 9]
    assert choices.parse_slice_list("") == [] and choices.parse_slice_list(None) == []
    assert choices.parse_slice_list("4 - 5", slice_count=10) == [4, 5]
    assert choices.slice_inclusion("", 10) is None
    assert choices.slice_inclusion("0, 9", 10) == [False] + [True] * 8 + [False]
    assert choices.slice_list_problem("0, 9", 10) is None


@pytest.mark.parametrize(("text", "count", "message"), [
    ("a", None, "excluded slices: 'a' is neither a slice number nor a range such as 0-2"),
    ("1.5", None, "excluded slices: '1.5' is neither a slice number nor a range such as 0-2"),
    ("-1", None, "excluded slices: '-1' is neither a slice number nor a range such as 0-2"),
    ("3-1", None, "excluded slices: the range '3-1' runs backwards"),
    ("12", 10, "excluded slices: '12' is beyond the 10 slices of this cine (numbered 0 to 9)"),
    ("3, 10-11", 10, "excluded slices: '10', '11' are beyond the 10 slices of this cine (numbered 0 to 9)"),
    ("0-9", 10, "excluded slices: every slice is excluded; nothing would be measured"),
])
def test_bad_slice_lists_speak_of_the_input(text, count, message):
    with pytest.raises(InputError) as error:
        choices.parse_slice_list(text, count)
    assert str(error.value) == message
    assert "--" not in str(error.value)
    assert choices.slice_list_problem(text, count) == message


def test_excluded_slices_need_a_countable_cine():
    with pytest.raises(InputError, match="need a cine whose slices can be counted"):
        choices.slice_inclusion("2", None)


def test_options_and_patient_from_the_module_fields():
    options = workflow.analysis_options("ed-es", "myocardium", "0, 9", slice_count=10)
    assert (options.phases, options.papillary) == ("ed-es", "myocardium")
    assert options.slice_inclusion == [False] + [True] * 8 + [False]
    assert workflow.analysis_options(excluded_slices="", slice_count=10).slice_inclusion is None
    with pytest.raises(InputError, match="phases must be one of all, ed-es"):
        workflow.analysis_options("some")
    assert workflow.patient_info(0.0, 0.0, choices.UNKNOWN_SEX, 0.0) is None
    patient = workflow.patient_info(172.0, 70.0, "female", 0.0, "dubois")
    assert (patient.height_cm, patient.weight_kg, patient.sex, patient.age, patient.bsa_formula) == (
        172.0, 70.0, "female", None, "dubois")
    with pytest.raises(InputError, match="height"):
        workflow.check_patient(PatientInfo(1.7, 70.0))


def test_enumerations_are_the_libs():
    """The command's choices and the module's fields come from the constants the Lib checks against."""
    parser = build_parser()
    command = next(action for action in parser._subparsers._group_actions if action.choices)
    actions = {action.dest: action for action in command.choices["cmr-function"]._actions}
    assert tuple(actions["phases"].choices) == choices.PHASES
    assert tuple(actions["papillary"].choices) == choices.PAPILLARY_CONVENTIONS
    assert set(choices.KNOWN_SEXES) <= set(actions["sex"].choices)
    atria = {action.dest: action for action in command.choices["cmr-atria"]._actions}
    assert tuple(atria["method"].choices) == choices.ATRIAL_METHODS
    assert tuple(atria["length_rule"].choices) == choices.ATRIAL_LENGTH_RULES
    assert set(workflow.POLAR_MAP_VALUES) == set(polar_map.SCALES)
    assert choices.DEFAULT_BSA_FORMULA in choices.BSA_FORMULA_IDS
    for phases in choices.PHASES:
        FunctionOptions(phases=phases).validate()


# ------------------------------------------------------------------------------------------------ recompute


@pytest.fixture
def labelled_analysis(scene):
    """A function analysis measured on the phantom's own labels (no model), in the scene."""
    phantom = beating_heart_cine(phases=8, slices=6, thin_sector_deg=(-60.0, 0.0))
    series = phantom.series
    cine, _browser = add_to_scene(scene, series, "Synthetic cine")
    labels = {phase: phantom.labels[phase] for phase in range(series.frames.shape[0])}
    results = measure_function(series.frames, labels, series.ijk_to_ras, series.frame_times_ms)
    results["ai_label_digests"] = {str(phase): labels_digest(value) for phase, value in labels.items()}
    results["model"] = {"id": "phantom labels", "version": "0", "device": "cpu"}
    index_values = [cine.GetNthIndexValue(item) for item in range(cine.GetNumberOfDataNodes())]
    return add_function_results(scene, cine, results, labels, series.ijk_to_ras, index_values, FunctionOptions())


def test_patient_data_give_indexed_values_and_a_reference_table_on_recompute(scene, labelled_analysis):
    case = CardiacCase(labelled_analysis.case_node)
    assert case.reference(REFERENCE_TABLE_ROLE) is None
    patient = workflow.patient_info(180.0, 80.0, "male", 45.0)
    recomputed = workflow.recompute_analysis(scene, case, patient=patient)
    bsa = recomputed.results["bsa_m2"]
    assert bsa == pytest.approx((180.0 * 80.0 / 3600.0) ** 0.5)
    assert recomputed.results["lv"]["edvi_ml_m2"] == pytest.approx(recomputed.results["lv"]["edv_ml"] / bsa)
    rows = mrml.table_rows(case.reference(REFERENCE_TABLE_ROLE))
    assert rows[0]["Measurement"] == "Body surface area"
    assert any(row["Measurement"] == "LV ejection fraction" for row in rows)

    again = workflow.recompute_analysis(scene, case)  # the stored patient data are kept
    assert again.results["bsa_m2"] == pytest.approx(bsa)
    assert again.results["edited"]["phases"] == []
    names = [node.GetName() for node in table_nodes(scene)]
    assert names.count("Synthetic cine reference values") == 1  # replaced, not duplicated

    workflow.recompute_analysis(scene, case, patient=None)  # no patient data now: no reference table
    assert case.reference(REFERENCE_TABLE_ROLE) is None
    assert "Synthetic cine reference values" not in [node.GetName() for node in table_nodes(scene)]


def test_placed_insertion_points_stay_placed(scene, labelled_analysis):
    case = CardiacCase(labelled_analysis.case_node)
    markups = labelled_analysis.insertion_points
    angle = math.radians(40.0)
    for index in range(2):
        x, y, z = markups.GetNthControlPointPositionWorld(index)
        markups.SetNthControlPointPositionWorld(
            index, x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle), z)
    placed = [list(markups.GetNthControlPointPositionWorld(index)) for index in range(2)]
    for _attempt in range(2):
        redone = workflow.recompute_analysis(scene, case)
        points = redone.results["aha"]["rv_insertion_points_ras"]
        assert points["source"] == "user-placed"
        assert redone.results["edited"]["rv_insertion_points_moved"]
        assert [*points["anterior"], *points["inferior"]] == pytest.approx([*placed[0], *placed[1]], abs=0.01)


def test_recompute_options_replace_the_stored_ones(scene, labelled_analysis):
    case = CardiacCase(labelled_analysis.case_node)
    options = workflow.recompute_options(case, "myocardium", "0-1")
    assert options.papillary == "myocardium" and options.slice_inclusion == [False, False] + [True] * 4
    assert workflow.recompute_options(case, excluded_slices="").slice_inclusion is None
    with pytest.raises(InputError, match="beyond the 6 slices"):
        workflow.recompute_options(case, excluded_slices="6")


def test_scene_helpers(scene, labelled_analysis):
    cine = CardiacCase(labelled_analysis.case_node).reference(Role.CINE)
    assert workflow.first_cine(scene) is cine
    assert workflow.slice_count(cine) == 6
    assert workflow.study_for(cine, labelled_analysis.case_node) is labelled_analysis.case_node
    other = add_to_scene(scene, ImageSeries(np.zeros((1, 2, 4, 4), np.float32), np.eye(4), name="other"))
    assert workflow.study_for(other, labelled_analysis.case_node) is None
    volume = workflow.displayed_volume(scene, cine)
    assert volume is not None and volume.IsA("vtkMRMLScalarVolumeNode")
    centre = workflow.slice_centre(volume, 2)
    ijk_to_ras = mrml.ijk_to_ras(volume)
    dims = volume.GetImageData().GetDimensions()
    assert list(centre) == pytest.approx((ijk_to_ras @ [(dims[0] - 1) / 2, (dims[1] - 1) / 2, 2, 1])[:3])
    assert workflow.slice_centre(volume, 6) is None


# ------------------------------------------------------------------------------------------------ presenting


def test_slice_counted_follows_the_results(labelled_analysis):
    results = labelled_analysis.results
    phase = results["phases_segmented"][0]
    included = results["slices_included"][str(phase)]
    assert workflow.slice_counted(results, 0, 0) == (phase, included[0])
    assert workflow.slice_counted(results, 0, len(included)) is None
    assert workflow.slice_counted(results, len(results["phases_segmented"]), 0) is None
    assert workflow.slice_counted(None, 0, 0) is None


def test_polar_map_segments_from_table_rows():
    rows = [{"Segment": "1", POLAR_MAP_COLUMNS["thickening_pct"]: "42.5"},
            {"Segment": "2", POLAR_MAP_COLUMNS["thickening_pct"]: ""},
            {"Segment": "17", POLAR_MAP_COLUMNS["thickening_pct"]: "n/a"},
            {"Segment": "", POLAR_MAP_COLUMNS["thickening_pct"]: "3"}]
    assert workflow.polar_map_segments(rows, "thickening_pct") == {
        "1": {"thickening_pct": 42.5}, "2": {"thickening_pct": None}, "17": {"thickening_pct": None}}


def test_reference_rows_and_summary(labelled_analysis):
    results = json.loads(json.dumps(labelled_analysis.results))
    summary = workflow.result_summary(results)
    assert summary.startswith(f"LV ejection fraction {results['lv']['ef_pct']:.1f} %")
    assert "BSA" not in summary and "Recomputed" not in summary
    assert reference_table_rows(results)[1] == []

    assess_patient(results, PatientInfo(180.0, 80.0, "male", 45.0))
    columns, rows = reference_table_rows(results)
    assert columns == ["Measurement", "Value", "Unit", "Normal range", "z-score", "Flag", "Source or reason"]
    assert rows[0][:3] == ["Body surface area", f"{results['bsa_m2']:.2f}", "m2"]
    assert f"BSA {results['bsa_m2']:.2f} m²." in workflow.result_summary(results)
    # The reference ranges read the analysis's own LV mass (they once looked for a key it never wrote).
    mass = results["reference"]["parameters"]["lv_mass_g"]
    assert mass["value"] == pytest.approx(results["lv"]["mass_g"])

    results["edited"] = {"phases": [0, 4], "rv_insertion_points_moved": True}
    assert workflow.result_summary(results).endswith(
        "Recomputed with edited contours of phase(s) 0, 4 and moved RV insertion points.")
    results["edited"] = {"phases": [], "rv_insertion_points_moved": False}
    assert workflow.result_summary(results).endswith("Recomputed: no edited contours found.")
    single = {"lv": {"edv_ml": 120.04, "ef_pct": None}, "rv": {"edv_ml": 130.0}}
    assert workflow.result_summary(single) == "Single phase: LV volume 120.0 ml, RV volume 130.0 ml."


def test_the_model_choices_put_the_task_default_first(registry):
    models = registry.choices(TASK)
    assert models and models[0].default
    assert all(entry.task == TASK and entry.licence for entry in models)
    assert registry.available(registry.get(FAST_MODEL, task=TASK))
