"""``cardiacsuite``: the batch and scripting face of CardiacSuite.

Every command builds a headless Slicer scene, runs the same library code the Slicer modules run, and writes
its outputs into ``--out`` only once everything has succeeded (a failed run leaves the folder as it was).
Bad input ends the command with exit status 2 and one line saying what is wrong and what to do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from .errors import CardiacSuiteError, InputError

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


# ------------------------------------------------------------------------------------------------ output


class Progress:
    """Progress on stderr: a rewritten line on a terminal, a line per 10 % step in a log."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.last_step = -1

    def __call__(self, fraction: float, message: str) -> None:
        if self.quiet:
            return
        if self.interactive:
            self.stream.write(f"\r[{fraction * 100:5.1f} %] {message:<60}")
            if fraction >= 1.0:
                self.stream.write("\n")
        else:
            step = int(fraction * 10)
            if step == self.last_step:
                return
            self.last_step = step
            self.stream.write(f"[{fraction * 100:5.1f} %] {message}\n")
        self.stream.flush()


@contextmanager
def staged_output(out_dir: Path):
    """Write into a staging folder beside ``out_dir``; move the files in only when the block succeeds."""
    out_dir = Path(out_dir)
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    except OSError as error:
        raise InputError(f"cannot write to {parent}: {error.strerror}") from None
    try:
        yield staging
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in staging.iterdir():
            target = out_dir / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(item, target)
    except OSError as error:
        raise InputError(f"could not write the results to {out_dir}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _json_default(value):
    import numpy as np

    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# ------------------------------------------------------------------------------------------------ commands


def cmr_function(args: argparse.Namespace) -> int:
    from .imageio import read_image_input

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
    from CMRAnalysisLib.function import run_function_analysis

    from . import mrml
    from .app import create_app
    from .case import CardiacCase, Role
    from .imagedata import add_to_scene

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
    from .phantoms import beating_heart_cine

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


def models(args: argparse.Namespace) -> int:
    from .inference.registry import ModelRegistry

    registry = ModelRegistry.default()
    if args.action == "list":
        for entry in registry.models():
            state = "installed" if registry.is_installed(entry) else "not installed"
            print(f"{entry.id}\t{entry.version}\t{entry.task}\t{entry.backend}\t{state}\t{entry.licence}")
        return 0
    if not args.model_id:
        raise InputError(f"'cardiacsuite models {args.action}' needs a model id (see 'cardiacsuite models list')")
    entry = registry.get(args.model_id)
    if args.action == "install":
        path = registry.install(entry, allow_download=args.download, progress=Progress(args.quiet))
    elif args.action == "import":
        if not args.file:
            raise InputError("'cardiacsuite models import ID FILE' needs the weights file")
        path = registry.import_file(entry, args.file)
    elif args.action == "verify":
        path = registry.verified_path(entry)
    else:
        raise InputError(f"unknown models action '{args.action}'")
    print(f"{entry.id} {entry.version}: {path} (sha256 verified)")
    return 0


# ------------------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardiacsuite", description="CardiacSuite: cardiac MR analysis and cardiac CT planning, headless."
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
    commands = parser.add_subparsers(dest="command", required=True)

    def add_model_options(command):
        command.add_argument("--model", help="model id from 'cardiacsuite models list' (default: the task's default)")
        command.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
        command.add_argument("--download", action="store_true", help="allow downloading the model weights if absent")
        command.add_argument("--quiet", action="store_true", help="no progress output")

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

    models_parser = commands.add_parser("models", help="list, install, import or verify model weights")
    models_parser.add_argument("action", choices=("list", "install", "import", "verify"))
    models_parser.add_argument("model_id", nargs="?")
    models_parser.add_argument("file", nargs="?", help="weights file for 'import'")
    models_parser.add_argument("--download", action="store_true", help="'install' may download from the model's URL")
    models_parser.add_argument("--quiet", action="store_true")
    models_parser.set_defaults(handler=models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CardiacSuiteError as error:
        print(f"cardiacsuite: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cardiacsuite: interrupted; no results were written", file=sys.stderr)
        return 130
    except MemoryError:
        print("cardiacsuite: error: out of memory; close other programs or process fewer phases", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as error:  # the one place where an unexpected failure becomes a one-line report
        if args.debug:
            traceback.print_exc()
        print(
            f"cardiacsuite: internal error: {type(error).__name__}: {error} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
