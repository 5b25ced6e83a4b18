"""``cardiacsuite cmr-function`` and ``cardiacsuite demo``: ventricular function from a short-axis cine."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from CardiacSuiteLib.cli import Progress, add_model_options, staged_output, write_json
from CardiacSuiteLib.errors import InputError


def add_commands(commands) -> None:
    function = commands.add_parser(
        "cmr-function",
        help="LV and RV volumes and ejection fraction from a short-axis cine",
        description="Segment the end-diastolic and end-systolic phases of a short-axis cine and measure both"
        " ventricles. INPUT is a DICOM folder or file, a NRRD/NIfTI volume (one phase) or a 4D NIfTI/.seq.nrrd cine.",
    )
    function.add_argument("input", help="DICOM folder or file, or an image file")
    function.add_argument("--out", required=True, help="output folder (results.json, segmentations, scene.mrb)")
    function.add_argument("--series", help="SeriesInstanceUID to use when the folder holds several series")
    add_model_options(function)
    function.set_defaults(handler=cmr_function)

    demo_parser = commands.add_parser("demo", help="run the function analysis on a phantom (or on a given folder)")
    demo_parser.add_argument("input", nargs="?", help="optional DICOM folder or image file of a real cine")
    demo_parser.add_argument("--out", default="cardiacsuite-demo", help="output folder (default: ./cardiacsuite-demo)")
    add_model_options(demo_parser)
    demo_parser.set_defaults(handler=demo)


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


def analyse_series_to_folder(series, out_dir: Path, args, progress, started: float, loaded: float) -> dict:
    """Run the function analysis on an ``ImageSeries`` and write results.json, segmentations and scene.mrb."""
    from CardiacSuiteLib import mrml
    from CardiacSuiteLib.app import create_app
    from CardiacSuiteLib.case import CardiacCase, Role
    from CardiacSuiteLib.imagedata import add_to_scene

    from .function import run_function_analysis

    if series.modality and series.modality not in ("MR", ""):
        raise InputError(f"{series.source}: modality is {series.modality}, not MR; cmr-function needs a short-axis cine MR")
    for warning in series.warnings:
        print(f"cardiacsuite: warning: {warning}", file=sys.stderr)
    app = create_app()
    scene = app.scene
    added = add_to_scene(scene, series)
    input_node = added[0] if isinstance(added, tuple) else added
    case = CardiacCase.get_or_create(
        scene, f"{series.name} study", series.metadata.get("StudyInstanceUID", ""), series.metadata.get("PatientID", "")
    )
    if isinstance(added, tuple):
        case.set_reference(Role.CINE_BROWSER, added[1])
    analysis = run_function_analysis(
        scene,
        input_node,
        model_id=args.model,
        device=args.device,
        progress=progress,
        case=case,
        allow_download=getattr(args, "download", False),
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
        browser = analysis.segmentation_browser
        proxy = browser.GetProxyNode(analysis.segmentation_sequence)
        for index in range(analysis.segmentation_sequence.GetNumberOfDataNodes()):
            browser.SetSelectedItemNumber(index)
            role = analysis.segmentation_sequence.GetNthDataNode(index).GetName().rsplit(" ", 1)[-1]
            mrml.save_node(proxy, staging / f"segmentation_{role}.seg.nrrd")
        browser.SetSelectedItemNumber(0)
        scene.SetRootDirectory(str(staging))
        if not scene.WriteToMRB(str(staging / "scene.mrb")):
            raise InputError(f"could not write the scene bundle to {out_dir}")
        results["timing_s"] = {
            "load": loaded - started,
            "inference": results["timing_s"]["inference"],
            "measurement": results["timing_s"]["measurement"],
            "save": time.perf_counter() - measured,
            "total": time.perf_counter() - started,
        }
        write_json(staging / "results.json", results)
    progress(1.0, f"results written to {out_dir}")
    return results


def print_function_summary(results: dict) -> None:
    def fmt(value, unit):
        return "n/a" if value is None else f"{value:.1f} {unit}"

    for ventricle in ("lv", "rv"):
        r = results[ventricle]
        print(
            f"{ventricle.upper()}: EDV {fmt(r['edv_ml'], 'ml')}, ESV {fmt(r['esv_ml'], 'ml')},"
            f" SV {fmt(r['sv_ml'], 'ml')}, EF {fmt(r['ef_pct'], '%')}"
        )
    print(f"LV mass (ED, 1.05 g/ml, papillary muscles in the cavity): {results['lv']['mass_ed_g']:.1f} g")
    print(
        f"ED phase {results['ed_phase']}, ES phase {results['es_phase']}; model {results['model']['id']}"
        f" {results['model']['version']} on {results['model']['device']}; total {results['timing_s']['total']:.1f} s"
    )


def demo(args: argparse.Namespace) -> int:
    """The main job on a phantom made on the spot (or on a real folder when given)."""
    if args.input:
        args.series = None
        return cmr_function(args)
    from CardiacSuiteLib.phantoms import beating_heart_cine

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
