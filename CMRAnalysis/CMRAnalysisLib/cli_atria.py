"""``cardiacsuite cmr-atria``: left and right atrial volumes from 2- and 4-chamber long-axis cines."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from CardiacSuiteLib.cli import Progress, add_model_options, staged_output, write_json
from CardiacSuiteLib.errors import InputError

from .choices import ATRIAL_LENGTH_RULES as LENGTH_RULES
from .choices import ATRIAL_METHODS as METHODS


def add_commands(commands) -> None:
    atria = commands.add_parser(
        "cmr-atria",
        help="LA and RA maximal and minimal volumes and emptying fraction from 2- and 4-chamber cines",
        description="Contour both atria on every phase of a 2-chamber and a 4-chamber long-axis cine and measure"
        " them by the area-length method: LA biplane (2ch and 4ch), RA single-plane (4ch). A registered long-axis"
        " model is used when one is installed; otherwise the contours grow from the seed points (RAS, mm, picked"
        " on the first phase). Write a seed whose first value is negative as --la-seed-2ch=-12.5,30,4.",
    )
    atria.add_argument("--two-chamber", required=True, help="2-chamber cine: DICOM folder or file, or an image file")
    atria.add_argument("--four-chamber", required=True, help="4-chamber cine: DICOM folder or file, or an image file")
    atria.add_argument("--la-seed-2ch", help="a point R,A,S (mm) inside the left atrium on the 2-chamber view")
    atria.add_argument("--la-seed-4ch", help="a point R,A,S (mm) inside the left atrium on the 4-chamber view")
    atria.add_argument("--ra-seed-4ch", help="a point R,A,S (mm) inside the right atrium on the 4-chamber view")
    atria.add_argument("--seed-phase", type=int, default=0, help="phase index the seeds were picked on (default 0)")
    atria.add_argument("--out", required=True, help="output folder (results.json, segmentations, scene.mrb)")
    atria.add_argument("--segmentation-2ch", help="corrected 2-chamber contours (.seg.nrrd written by a previous run)")
    atria.add_argument("--segmentation-4ch", help="corrected 4-chamber contours (.seg.nrrd written by a previous run)")
    atria.add_argument("--length-rule", choices=LENGTH_RULES, default=LENGTH_RULES[0],
                       help="LA biplane length: the shorter of the two views' lengths (default) or their mean")
    atria.add_argument("--method", choices=METHODS, default=METHODS[0],
                       help="contours from an installed long-axis model when there is one (auto, the default),"
                       " from the seeds, or from the model only")
    add_model_options(atria)
    atria.set_defaults(handler=cmr_atria)


def parse_point(text: str | None, option: str) -> np.ndarray | None:
    """'R,A,S' in mm → a 3-vector; an ``InputError`` naming the option otherwise."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    try:
        values = np.array([float(part) for part in parts])
    except ValueError:
        values = None
    if values is None or values.shape != (3,) or not np.all(np.isfinite(values)):
        raise InputError(f"{option} must be three numbers R,A,S in mm separated by commas (e.g. 12.5,-30,4); got '{text}'")
    return values


def cmr_atria(args: argparse.Namespace) -> int:
    from CardiacSuiteLib.app import create_app
    from CardiacSuiteLib.imageio import read_image_input

    from .atria import VIEW_NAMES, add_atrial_results, atrial_volumes, read_view_corrections, write_view_segmentation

    started = time.perf_counter()
    progress = Progress(args.quiet)
    seeds = {
        "la_seed_2ch": parse_point(args.la_seed_2ch, "--la-seed-2ch"),
        "la_seed_4ch": parse_point(args.la_seed_4ch, "--la-seed-4ch"),
        "ra_seed_4ch": parse_point(args.ra_seed_4ch, "--ra-seed-4ch"),
    }
    views = {"2ch": read_image_input(args.two_chamber), "4ch": read_image_input(args.four_chamber)}
    loaded = time.perf_counter()
    for view, series in views.items():
        shape = series.frames.shape
        progress(0.0, f"read the {VIEW_NAMES[view]} input {series.name}: {shape[0]} phases of {shape[2]}x{shape[3]} pixels")
    app = create_app()
    scene = app.scene
    corrections = {}
    for view, path in (("2ch", args.segmentation_2ch), ("4ch", args.segmentation_4ch)):
        if path:
            corrections[view] = read_view_corrections(scene, path, view, views[view])
    analysis = atrial_volumes(
        views["2ch"], views["4ch"], **seeds, seed_phase=args.seed_phase, length_rule=args.length_rule,
        method=args.method, model_id=args.model, device=args.device, allow_download=args.download,
        corrections=corrections or None, progress=progress,
    )
    results = analysis.results
    results["input"] = {
        view: {
            "source": str(series.source),
            "name": series.name,
            "frames": int(series.frames.shape[0]),
            "spacing_mm": [round(v, 4) for v in series.spacing_mm],
            "frame_times_ms": series.frame_times_ms,
            "warnings": list(series.warnings),
            **{k: v for k, v in series.metadata.items() if isinstance(v, (str, int, float))},
        }
        for view, series in views.items()
    }
    results["seeds_ras_mm"] = {name: (None if point is None else point.tolist()) for name, point in seeds.items()}
    add_atrial_results(scene, views["2ch"], views["4ch"], analysis)
    saving = time.perf_counter()
    out_dir = Path(args.out)
    with staged_output(out_dir) as staging:
        for view, series in views.items():
            write_view_segmentation(scene, staging / f"segmentation_{view}.seg.nrrd", view, series, analysis.contours[view])
        scene.SetRootDirectory(str(staging))
        if not scene.WriteToMRB(str(staging / "scene.mrb")):
            raise InputError(f"could not write the scene bundle to {out_dir}")
        results["timing_s"].update({"load": loaded - started, "save": time.perf_counter() - saving,
                                    "total": time.perf_counter() - started})
        write_json(staging / "results.json", results)
    progress(1.0, f"results written to {out_dir}")
    print_atria_summary(results)
    return 0


def print_atria_summary(results: dict) -> None:
    """The figures a reader looks for, every one with its unit."""
    def when(summary: dict, key: str) -> str:
        time_ms = summary[f"{key}_time_ms"]
        return f"phase {summary[f'{key}_phase']}" + (f", {time_ms:.0f} ms" if time_ms is not None else "")

    for atrium, label in (("la", "LA"), ("ra", "RA")):
        r = results[atrium]
        print(
            f"{label} ({r['method']}): max {r['max_ml']:.1f} ml ({when(r, 'max')}), min {r['min_ml']:.1f} ml"
            f" ({when(r, 'min')}), emptying fraction {r['emptying_fraction_pct']:.1f} %"
        )
    method = results["method"]
    source = method["segmentation"]["source"]
    if source == "model":
        model = method["segmentation"]["model"]
        source = f"model {model['id']} {model['version']} on {model['device']}"
    print(f"Contours: {source}, {method['corrected_contours']} corrected; L = {method['biplane_length']}")
    for warning in results["warnings"]:
        print(f"Warning: {warning}")
