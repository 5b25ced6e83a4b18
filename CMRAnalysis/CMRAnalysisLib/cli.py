"""``cardiacsuite cmr-function`` and ``cardiacsuite demo``: ventricular function from a short-axis cine."""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from pathlib import Path

import numpy as np

from CardiacSuiteLib.cli import Progress, add_model_options, staged_output, with_option_hint, write_json
from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.vocabulary import Key

from .bsa import BSA_FORMULAS
from .choices import DEFAULT_BSA_FORMULA, KNOWN_SEXES, PAPILLARY_CONVENTIONS, PHASES, slice_inclusion
from .patient import PatientInfo
from .prior import PriorStudy

#: The demo's model: the bundled fast one, so that a new user's first run takes seconds, not minutes.
DEMO_MODEL = "sax-fast-unet"
PHASE_TOKEN = re.compile(r"(?:^|[_\-. ])(?:phase[_\-]?(?P<number>\d+)|(?P<role>ED|ES))(?:[_\-. ]|$)", re.IGNORECASE)
# The prior-study errors speak of the input; on the command line, name the option that answers them.
PRIOR_OPTION_HINTS = (("allow a comparison of different patients", "--prior-any-patient"),)


def add_commands(commands) -> None:
    function = commands.add_parser(
        "cmr-function",
        help="LV and RV function from a short-axis cine: volumes, EF, mass, curves, rates, AHA segments",
        description="Segment every phase of a short-axis cine with the AI model and measure both ventricles."
        " INPUT is a DICOM folder or file, a NRRD/NIfTI volume (one phase) or a 4D NIfTI/.seq.nrrd cine.",
    )
    function.add_argument("input", help="DICOM folder or file, or an image file")
    function.add_argument("--out", required=True, help="output folder (results.json, curves, polar map, segmentations, scene.mrb)")
    function.add_argument("--series", help="SeriesInstanceUID to use when the folder holds several series")
    add_analysis_options(function)
    add_model_options(function)
    function.set_defaults(handler=cmr_function)

    demo_parser = commands.add_parser(
        "demo", help="run the function analysis on a phantom (or on a given folder)",
        description=f"The short-axis function analysis on a beating-heart phantom made on the spot (or on INPUT), with"
        f" the fast model {DEMO_MODEL} unless --model names another, so that a first run takes seconds.",
    )
    demo_parser.add_argument("input", nargs="?", help="optional DICOM folder or image file of a real cine")
    demo_parser.add_argument("--out", default="cardiacsuite-demo", help="output folder (default: ./cardiacsuite-demo)")
    add_analysis_options(demo_parser)
    add_model_options(demo_parser)
    demo_parser.set_defaults(handler=demo, model=DEMO_MODEL)


def add_analysis_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--phases", choices=PHASES, default=PHASES[0],
                         help="segment every phase (default) or only end-diastole and end-systole (faster with a slow model)")
    command.add_argument("--papillary", choices=PAPILLARY_CONVENTIONS, default=PAPILLARY_CONVENTIONS[0],
                         help="count papillary muscles and trabeculations in the blood pool (default) or the myocardium")
    command.add_argument("--segmentation", action="append", default=[], metavar="FILE",
                         help="a corrected .seg.nrrd for one phase, named with ED, ES or phaseNN (repeatable)")
    command.add_argument("--exclude-slices", metavar="LIST",
                         help="slices (0-based) not to count, overriding the basal rule: numbers and ranges such as '0, 9-10'")
    command.add_argument("--rv-insertion-anterior", metavar="R,A,S", help="anterior RV insertion point (RAS mm)")
    command.add_argument("--rv-insertion-inferior", metavar="R,A,S", help="inferior RV insertion point (RAS mm)")
    command.add_argument("--territories", metavar="FILE", help="JSON mapping of coronary territory to AHA segment numbers")
    command.add_argument("--height-cm", type=float, help="patient height (cm), for body surface area")
    command.add_argument("--weight-kg", type=float, help="patient weight (kg), for body surface area")
    command.add_argument("--sex", choices=(*KNOWN_SEXES, "M", "F"), help="for reference ranges")
    command.add_argument("--age", type=float, help="age in years, for reference ranges")
    command.add_argument("--bsa-formula", default=DEFAULT_BSA_FORMULA,
                         help=f"{DEFAULT_BSA_FORMULA} (default), {', '.join(f for f in BSA_FORMULAS if f != DEFAULT_BSA_FORMULA)}")
    command.add_argument("--prior", metavar="RESULTS_DIR",
                         help="output folder of an earlier cmr-function run of the same patient: results.json gets a"
                              " 'prior' block (both studies' values, differences, both volume curves)")
    command.add_argument("--prior-any-patient", action="store_true",
                         help="compare with the --prior study even when its PatientID, name or birth date differ")


def options_from_args(args, series) -> object:
    import json

    from .function import FunctionOptions

    options = FunctionOptions(phases=args.phases, papillary=args.papillary)
    options.nominal_rr_ms = _number(series.metadata.get("NominalInterval"))
    options.slice_inclusion = slice_inclusion(args.exclude_slices, series.frames.shape[1])
    if bool(args.rv_insertion_anterior) != bool(args.rv_insertion_inferior):
        raise InputError("give both --rv-insertion-anterior and --rv-insertion-inferior, or neither")
    if args.rv_insertion_anterior:
        options.rv_insertion_ras = (_point(args.rv_insertion_anterior), _point(args.rv_insertion_inferior))
    if args.territories:
        try:
            mapping = json.loads(Path(args.territories).read_text(encoding="utf-8"))
            options.territories = {str(k): [int(n) for n in v] for k, v in mapping.items()}
        except (OSError, ValueError, TypeError, AttributeError) as error:
            raise InputError(f"--territories {args.territories}: not a JSON object of territory → segment numbers ({error})") from None
        listed = [n for numbers in options.territories.values() for n in numbers]
        if any(n < 1 or n > 17 for n in listed) or len(listed) != len(set(listed)):
            raise InputError("--territories: each AHA segment (1-17) may belong to one territory at most")
    return options


def prior_from_args(args, series) -> PriorStudy | None:
    """The --prior study, read and checked against the cine's header before the model loads (None without one)."""
    if not getattr(args, "prior", None):
        return None
    from .prior import open_prior_study, study_identity

    try:
        return open_prior_study(args.prior, study_identity(series.metadata), getattr(args, "prior_any_patient", False))
    except InputError as error:
        raise InputError(with_option_hint(str(error), PRIOR_OPTION_HINTS)) from None


def patient_from_args(args, series) -> PatientInfo | None:
    """Patient data from the options, falling back on the DICOM header (PatientSex, PatientAge, size, weight)."""
    meta = series.metadata
    height = args.height_cm if getattr(args, "height_cm", None) is not None else _metres_to_cm(meta.get("PatientSize"))
    weight = args.weight_kg if getattr(args, "weight_kg", None) is not None else _number(meta.get("PatientWeight"))
    sex = getattr(args, "sex", None) or (meta.get("PatientSex") if meta.get("PatientSex") in ("M", "F") else None)
    age = getattr(args, "age", None) if getattr(args, "age", None) is not None else _dicom_age(meta.get("PatientAge"))
    if (height is None) != (weight is None):
        raise InputError("body surface area needs both --height-cm and --weight-kg")
    if height is None and sex is None and age is None:
        return None
    return PatientInfo(height, weight, sex, age, getattr(args, "bsa_formula", DEFAULT_BSA_FORMULA))


def _metres_to_cm(value):
    number = _number(value)
    return number * 100.0 if number else None


def _dicom_age(value) -> float | None:
    """DICOM AS values such as '045Y' or '006M'."""
    if not isinstance(value, str) or len(value) != 4 or not value[:3].isdigit():
        return None
    return int(value[:3]) / {"Y": 1, "M": 12, "W": 52, "D": 365}.get(value[3], 1)


def _point(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise InputError(f"'{text}' is not a point R,A,S in millimetres")
    return values


def _number(value):
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def cmr_function(args: argparse.Namespace) -> int:
    from CardiacSuiteLib.imageio import read_image_input

    started = time.perf_counter()
    progress = Progress(args.quiet)
    series = read_image_input(args.input, series_uid=args.series)
    loaded = time.perf_counter()
    frames, slices = series.frames.shape[:2]
    progress(0.0, f"read {series.name}: {frames} phases x {slices} slices in {loaded - started:.1f} s")
    results = analyse_series_to_folder(series, Path(args.out), args, progress, started, loaded)
    print_function_summary(results)
    return 0


def read_corrections(scene, paths: list[str], geometry, shape, results_phases: dict) -> dict[int, np.ndarray]:
    """Label maps of the reader's corrected segmentations, keyed by the phase each file names."""
    from CardiacSuiteLib import mrml

    from .function_scene import SEGMENT_SPECS

    values = {spec.name: spec.value for spec in SEGMENT_SPECS}
    edits = {}
    reference = mrml.add_volume(scene, np.zeros(shape, np.uint8), geometry, "correction reference grid")
    try:
        for path in paths:
            match = PHASE_TOKEN.search(Path(path).name.replace(".seg.nrrd", ""))
            if match is None:
                raise InputError(f"{path}: name the phase in the file name (…_ED, …_ES or …_phase07.seg.nrrd)")
            phase = int(match["number"]) if match["number"] else results_phases[match["role"].upper()]
            node = mrml.load_segmentation(scene, path)
            names = {node.GetSegmentation().GetNthSegment(i).GetName() for i in range(node.GetSegmentation().GetNumberOfSegments())}
            if not names & set(values):
                raise InputError(f"{path} has none of the segments {', '.join(values)}")
            edits[phase] = mrml.labelmap_from_segmentation(node, reference, values)
            scene.RemoveNode(node)
    finally:
        scene.RemoveNode(reference)
    return edits


def analyse_series_to_folder(series, out_dir: Path, args, progress, started: float, loaded: float) -> dict:
    """Run the function analysis on an ``ImageSeries`` and write every output into ``out_dir``."""
    from CardiacSuiteLib.app import create_app
    from CardiacSuiteLib.case import CardiacCase, Role
    from CardiacSuiteLib.imagedata import add_to_scene

    from . import polar_map
    from .function_scene import SEGMENT_SPECS
    from .workflow import run_function_analysis

    if series.modality and series.modality not in ("MR", ""):
        raise InputError(f"{series.source}: modality is {series.modality}, not MR; cmr-function needs a short-axis cine MR")
    options = options_from_args(args, series)
    patient = patient_from_args(args, series)
    prior = prior_from_args(args, series)
    for warning in series.warnings:
        print(f"cardiacsuite: warning: {warning}", file=sys.stderr)
    app = create_app()
    scene = app.scene
    added = add_to_scene(scene, series)
    input_node = added[0] if isinstance(added, tuple) else added
    case = CardiacCase.get_or_create(
        scene, f"{series.name} study", series.metadata.get(Key.STUDY_INSTANCE_UID, ""),
        series.metadata.get(Key.PATIENT_ID, ""),
    )
    if isinstance(added, tuple):
        case.set_reference(Role.CINE_BROWSER, added[1])
    corrections = list(getattr(args, "segmentation", []) or [])
    for path in corrections:
        if not Path(path).is_file():
            raise InputError(f"--segmentation {path}: no such file")

    def edits(ai_results: dict) -> dict[int, np.ndarray]:
        phases = {"ED": ai_results["lv"]["ed_phase"], "ES": ai_results["lv"]["es_phase"]}
        return read_corrections(scene, corrections, series.ijk_to_ras, series.frames.shape[1:], phases)

    analysis = run_function_analysis(
        scene, input_node, model_id=args.model, device=args.device, progress=progress, case=case,
        allow_download=getattr(args, "download", False), options=options, edits=edits if corrections else None,
        patient=patient, prior=prior,
    )
    results = dict(analysis.results)
    results["input"] = {
        "source": str(series.source),
        "name": series.name,
        "frames": int(series.frames.shape[0]),
        "slices": int(series.frames.shape[1]),
        "spacing_mm": [round(v, 4) for v in series.spacing_mm],
        "frame_times_ms": series.frame_times_ms,
        "warnings": list(series.warnings),
        **{k: v for k, v in series.metadata.items() if isinstance(v, (str, int, float))},
    }
    measured = time.perf_counter()
    with staged_output(out_dir) as staging:
        # The bundle first: reading the labels back and exporting them add display nodes to the scene.
        scene.SetRootDirectory(str(staging))
        if not scene.WriteToMRB(str(staging / "scene.mrb")):
            raise InputError(f"could not write the scene bundle to {out_dir}")
        labels = analysis_labels(scene, analysis, series)
        ed, es = results["lv"]["ed_phase"], results["lv"]["es_phase"]
        key_phases = (("ED", ed), ("ES", es)) if ed != es else (("", ed),)
        for role, phase in key_phases:
            name = f"segmentation_{role}.seg.nrrd" if role else "segmentation.seg.nrrd"
            _save_labels(scene, labels[phase], series.ijk_to_ras, SEGMENT_SPECS, staging / name)
        if len(labels) > 2:
            (staging / "segmentations").mkdir()
            for phase, phase_labels in labels.items():
                _save_labels(scene, phase_labels, series.ijk_to_ras, SEGMENT_SPECS, staging / "segmentations" / f"segmentation_phase{phase:02d}.seg.nrrd")
        write_curves_csv(staging / "volume_curves.csv", results)
        if results.get("aha", {}).get("available"):
            polar_map.save_png(results["aha"]["segments"], staging / "polar_map.png")
        analysed = results["timing_s"]
        stages = {
            "load": loaded - started,
            "model_load": analysed.get("model_load", 0.0),
            "inference": analysed.get("inference", 0.0),
            "measurement": analysed["measurement"],
        }
        # The rest of the analysis: the headless application, the cine and the results as scene nodes.
        stages["scene"] = max(0.0, measured - started - sum(stages.values()))
        stages["save"] = time.perf_counter() - measured
        stages["total"] = time.perf_counter() - started
        results["timing_s"] = stages
        write_json(staging / "results.json", results)
    progress(1.0, f"results written to {out_dir}")
    return results


def analysis_labels(scene, analysis, series) -> dict[int, np.ndarray]:
    """The label maps of every segmented phase, read back from the scene."""
    from CardiacSuiteLib.case import CardiacCase

    from .function_scene import case_cine, cine_from_node, read_segmentation_sequence

    _, geometry, _, index_values = cine_from_node(case_cine(CardiacCase(analysis.case_node)))
    return read_segmentation_sequence(
        scene, analysis.segmentation_sequence, analysis.segmentation_browser, geometry, series.frames.shape[1:], index_values
    )


def _save_labels(scene, labels, geometry, specs, path: Path) -> None:
    from CardiacSuiteLib import mrml

    node = mrml.add_segmentation_from_labelmap(scene, labels, geometry, specs, path.name)
    try:
        mrml.save_node(node, path)
    finally:
        scene.RemoveNode(node)


def write_curves_csv(path: Path, results: dict) -> None:
    curves = results["curves"]
    times = curves["time_ms"] or [None] * len(curves["phase"])
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["phase", "time_ms", "lv_volume_ml", "rv_volume_ml", "lv_myocardium_ml"])
        for row in zip(curves["phase"], times, curves["lv_ml"], curves["rv_ml"], curves["myocardium_ml"]):
            writer.writerow(["" if v is None else v for v in row])


def print_function_summary(results: dict) -> None:
    def fmt(value, unit, digits=1):
        return "n/a" if value is None else f"{value:.{digits}f} {unit}"

    for ventricle in ("lv", "rv"):
        r = results[ventricle]
        print(
            f"{ventricle.upper()}: EDV {fmt(r['edv_ml'], 'ml')}, ESV {fmt(r['esv_ml'], 'ml')}, SV {fmt(r.get('sv_ml'), 'ml')},"
            f" EF {fmt(r.get('ef_pct'), '%')}, CO {fmt(r.get('co_l_min'), 'l/min', 2)}, PER {fmt(r.get('per_ml_s'), 'ml/s', 0)},"
            f" PFR {fmt(r.get('pfr_ml_s'), 'ml/s', 0)} (ED phase {r['ed_phase']}, ES phase {r['es_phase']})"
        )
    print(f"LV mass (ED, 1.05 g/ml; {results['method']['papillary_muscles']}): {results['lv']['mass_g']:.1f} g")
    if results.get("bsa_m2"):
        lv = results["lv"]
        print(
            f"BSA {results['bsa_m2']:.2f} m² ({results['bsa_formula']['name']}): LV EDVi {fmt(lv.get('edvi_ml_m2'), 'ml/m²')},"
            f" ESVi {fmt(lv.get('esvi_ml_m2'), 'ml/m²')}, mass index {fmt(lv.get('mass_index_g_m2'), 'g/m²')}, CI {fmt(lv.get('ci_l_min_m2'), 'l/min/m²', 2)}"
        )
    flagged = [p for p in results.get("reference", {}).get("parameters", {}).values() if p.get("flag") in ("low", "high")]
    for item in flagged:
        z = f", z = {item['z_score']:+.1f}" if item.get("z_score") is not None else ""
        print(f"  {item['label']}: {item['value']:.1f} {item['unit']} is {item['flag'].upper()}{z} ({item['reference']['source'].get('citation')})")
    print(
        f"Heart rate {fmt(results.get('hr_bpm'), 'bpm', 0)}; model {results['model']['id']} {results['model']['version']}"
        f" on {results['model']['device']}; total {results['timing_s']['total']:.1f} s"
    )
    if results.get("edited", {}).get("phases"):
        print(f"Recomputed from corrected contours of phase(s) {results['edited']['phases']}")
    if results.get("prior"):
        print_prior_comparison(results["prior"])


def print_prior_comparison(block: dict) -> None:
    """The prior study beside this one, one figure a line with units; AHA segments, timings and rates per EDV
    are compared in results.json only, to keep the table short."""
    from .prior import comparison_rows, describe_prior

    print(describe_prior(block) + ":")
    _columns, rows = comparison_rows(block)
    shown = [row for (key, item), row in zip(block["quantities"].items(), rows)
             if not key.startswith("aha.") and item["unit"] not in ("ms", "EDV/s")]
    width = max([len(row[0]) for row in shown] + [len("Measurement")])
    print(f"  {'Measurement':<{width}}  {'Prior':>16}  {'Current':>16}  Difference")
    for label, before, now, difference, unit, difference_unit, relative in shown:
        change = f"{difference} {difference_unit}" + (f" ({relative} %)" if relative else "")
        print(f"  {label:<{width}}  {before + ' ' + unit:>16}  {now + ' ' + unit:>16}  {change}")
    hidden = len(rows) - len(shown)
    if hidden:
        print(f"  {hidden} more figures in results.json under prior.quantities: AHA segments, timings, rates per EDV")
    for warning in block.get("warnings", []):
        print(f"  note: {warning}")


def demo(args: argparse.Namespace) -> int:
    """The main job on a phantom made on the spot (or on a real folder when given)."""
    if args.input:
        args.series = None
        return cmr_function(args)
    from CardiacSuiteLib.phantoms.cine import beating_heart_cine

    started = time.perf_counter()
    progress = Progress(args.quiet)
    progress(0.0, "generating a beating-heart phantom (20 phases x 10 slices)")
    phantom = beating_heart_cine()
    loaded = time.perf_counter()
    results = analyse_series_to_folder(phantom.series, Path(args.out), args, progress, started, loaded)
    print_function_summary(results)
    truth_lv = phantom.lv_volume_ml
    truth_ef = 100.0 * (truth_lv.max() - truth_lv.min()) / truth_lv.max()
    print(
        f"Phantom truth: LV EDV {truth_lv.max():.1f} ml, ESV {truth_lv.min():.1f} ml, EF {truth_ef:.1f} %"
        f" (disc summation of the drawn circles); results in {args.out}"
    )
    return 0
