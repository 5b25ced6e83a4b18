"""``cardiacsuite ct-segment`` and ``cardiacsuite coronary``: cardiac CT segmentation from the command line.

Both read a CT (DICOM folder or file, NRRD, NIfTI), run the same library code as the Slicer module on a
headless scene, and write into ``--out`` only when everything succeeded: the segmentation (``.seg.nrrd``),
centerlines (Slicer markups ``.mrk.json``), ``results.json`` (volumes in ml, vessel lengths and diameters in
mm) and ``scene.mrb``. Coordinates on the command line are RAS millimetres, as Slicer shows them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from CardiacSuiteLib.cli import Progress, staged_output, write_json
from CardiacSuiteLib.errors import InputError

from .presets import DEFAULT_MODE, MODES, SIDES


def add_commands(commands) -> None:
    segment = commands.add_parser(
        "ct-segment",
        help="heart chambers, myocardium, aorta and pulmonary artery (and presets) from a contrast cardiac CT",
        description="Segment a contrast-enhanced cardiac CT. Modes: auto (weight-free atlas + intensity model),"
        " semi (grow from seeds, --seeds), coronary (chambers, aorta, ostia and coronary trees), valve (chambers and"
        " great vessels with aortic root, LVOT, mitral annulus and pulmonary root measurements).",
    )
    segment.add_argument("input", help="CT: DICOM folder or file, NRRD or NIfTI")
    segment.add_argument("--out", required=True, help="output folder")
    segment.add_argument("--mode", choices=MODES, default=DEFAULT_MODE)
    segment.add_argument("--seeds", help="semi mode: JSON {structure: [[R, A, S], ...]} (mm) or a Slicer .mrk.json")
    segment.add_argument("--atlas", help="whole-heart atlas label map (default: see 'Atlas' in the documentation)")
    _add_ostia_arguments(segment, "coronary mode: ")
    segment.add_argument("--series", help="SeriesInstanceUID when the folder holds several series")
    segment.add_argument("--quiet", action="store_true", help="no progress output")
    segment.set_defaults(handler=ct_segment)

    coronary = commands.add_parser(
        "coronary",
        help="coronary trees from the left and right ostia: centerlines with radius, lumen, named branches",
        description="Trace the coronary arteries of a contrast cardiac CT from the ostia (RAS mm), optionally"
        " through points along a vessel, and complete the tree with side branches of at least 1.5 mm diameter.",
    )
    coronary.add_argument("input", help="CT: DICOM folder or file, NRRD or NIfTI")
    coronary.add_argument("--out", required=True, help="output folder")
    _add_ostia_arguments(coronary)
    coronary.add_argument(
        "--path-points", help='JSON {"left": [[R, A, S], ...], "right": [...]}: points along a vessel, in order'
    )
    coronary.add_argument("--with-chambers", action="store_true", help="segment the chambers first (better exclusion)")
    coronary.add_argument("--atlas", help="whole-heart atlas for --with-chambers")
    coronary.add_argument("--series", help="SeriesInstanceUID when the folder holds several series")
    coronary.add_argument("--quiet", action="store_true", help="no progress output")
    coronary.set_defaults(handler=coronary_command)

    atlas = commands.add_parser(
        "ct-atlas",
        help="install a whole-heart atlas (labels 1-7) for the automatic CT segmentation",
        description="Copy a whole-heart label map (MM-WHS style labels 1-7), resampled and cropped to the heart, to"
        " ~/.cardiacsuite/atlas/wholeheart.nii.gz, where 'ct-segment' and the Slicer module find it.",
    )
    atlas.add_argument("source", help="whole-heart label map (NIfTI or NRRD)")
    atlas.add_argument("--spacing", type=float, default=1.0, help="isotropic spacing of the copy in mm (default 1.0)")
    atlas.add_argument("--to", help="write here instead of the per-user location")
    atlas.set_defaults(handler=install_atlas_command)


def _add_ostia_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    for side in SIDES:
        parser.add_argument(f"--ostium-{side}", type=_ras, help=f"{prefix}{side} coronary ostium R,A,S (mm)")


def _ostia(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The ostia given on the command line, per side."""
    given = {side: getattr(args, f"ostium_{side}") for side in SIDES}
    return {side: point for side, point in given.items() if point is not None}


def _atlas(atlas: str | None) -> str:
    """The atlas to use; when none is given and none is installed, the error names the flag to give one with."""
    from .atlas import find_atlas

    if atlas:
        return atlas
    try:
        return str(find_atlas())
    except InputError as error:
        raise InputError(f"{error}; or give --atlas FILE") from None


def _ras(text: str) -> np.ndarray:
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"'{text}' is not R,A,S (three numbers in mm)")
    return np.array(values, float)


def _read_ct(path: str, series_uid: str | None, progress):
    from CardiacSuiteLib.imageio import read_image_input

    from .pipeline import check_image

    started = time.perf_counter()
    series = read_image_input(path, series_uid=series_uid)
    if series.frames.shape[0] > 1:
        raise InputError(
            f"{path}: a {series.frames.shape[0]}-phase series; give one phase (FourDCT handles 4D CT)"
        )
    image = series.frames[0]
    check_image(image, series.modality)
    for warning in series.warnings:
        print(f"cardiacsuite: warning: {warning}", file=sys.stderr)
    progress(0.02, f"read {series.name}: {' x '.join(str(n) for n in image.shape[::-1])} voxels in {time.perf_counter() - started:.1f} s")
    return series, image


def _read_path_points(path: str | None) -> dict[str, list[np.ndarray]]:
    if not path:
        return {}
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"path points file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise InputError(f"path points file {path} is not valid JSON (line {error.lineno}): {error.msg}") from None
    if not isinstance(document, dict) or not set(document) <= set(SIDES):
        raise InputError(f'path points file {path} must be {{"left": [[R, A, S], ...], "right": [...]}}')
    points = {}
    for side, values in document.items():
        if not all(isinstance(v, list) and len(v) == 3 for v in values):
            raise InputError(f"path points file {path}: every {side} point needs three RAS coordinates (mm)")
        points[side] = [np.asarray(v, float) for v in values]
    return points


def _input_summary(series, image) -> dict:
    from CardiacSuiteLib.geometry import Grid

    return {
        "source": str(series.source),
        "name": series.name,
        "modality": series.modality or "unknown",
        "shape_ijk": list(image.shape[::-1]),
        "spacing_mm": [round(float(v), 4) for v in Grid(image.shape, series.ijk_to_ras).spacing_kji[::-1]],
        **{k: v for k, v in series.metadata.items() if isinstance(v, (str, int, float))},
    }


def _scene_for(series):
    """A headless Slicer host whose scene holds the CT and its study: where the results are assembled as Slicer
    would. The host is returned too: its module logics observe the scene only while it is alive."""
    from CardiacSuiteLib.app import create_app
    from CardiacSuiteLib.case import CardiacCase, Key
    from CardiacSuiteLib.imagedata import add_to_scene

    app = create_app()
    volume = add_to_scene(app.scene, series, series.name)
    case = CardiacCase.get_or_create(
        app.scene, f"{series.name} study", series.metadata.get(Key.STUDY_INSTANCE_UID, ""),
        series.metadata.get(Key.PATIENT_ID, ""),
    )
    return app, volume, case


def _write_outputs(staging: Path, scene, nodes: dict, curves: list, results: dict) -> None:
    from CardiacSuiteLib import mrml

    from .scene import save_curve

    for file_name, node in nodes.items():
        mrml.save_node(node, staging / file_name)
    used = set()
    for curve in curves:
        stem = re.sub(r"[^A-Za-z0-9]+", "_", curve.GetName()).strip("_") or "vessel"
        while stem in used:
            stem += "_"
        used.add(stem)
        save_curve(curve, staging / "centerlines" / f"{stem}.mrk.json")
    scene.SetRootDirectory(str(staging))
    if not scene.WriteToMRB(str(staging / "scene.mrb")):
        raise InputError("could not write the scene bundle")
    write_json(staging / "results.json", results)


def ct_segment(args: argparse.Namespace) -> int:
    from .pipeline import SegmentationRequest, add_run_to_scene, run_segmentation
    from .presets import get_preset
    from .seeds import read_seeds_file

    started = time.perf_counter()
    progress = Progress(args.quiet)
    preset = get_preset(args.mode)
    seeds = read_seeds_file(args.seeds) if args.seeds else None
    if preset.needs_seeds and not seeds:
        raise InputError(f"--mode {args.mode} needs --seeds FILE (structure name -> [[R, A, S], ...] in mm)")
    ostia = _ostia(args)
    if preset.needs_ostia and not ostia:
        raise InputError(
            f"--mode {args.mode} needs the ostia: --ostium-left R,A,S and/or --ostium-right R,A,S (mm)"
        )
    series, image = _read_ct(args.input, args.series, progress)
    request = SegmentationRequest(
        image, series.ijk_to_ras, args.mode, seeds=seeds, ostia=ostia,
        atlas_path=_atlas(args.atlas) if preset.needs_atlas else None,
    )
    run = run_segmentation(request, progress=progress)
    results = {"input": _input_summary(series, image), **run.heart.results}

    app, volume, case = _scene_for(series)
    scene = app.scene
    outputs = add_run_to_scene(scene, run, volume, case)
    nodes = {"segmentation.seg.nrrd": outputs.segmentation}
    if run.coronary is not None:
        nodes["coronary.seg.nrrd"] = outputs.coronary_segmentation
        results["coronary"] = run.coronary.results
    results["timing_s"] = round(time.perf_counter() - started, 2)
    with staged_output(Path(args.out)) as staging:
        _write_outputs(staging, scene, nodes, outputs.curves + outputs.coronary_curves, results)
    progress(1.0, f"results written to {args.out}")
    _print_summary(results)
    return 0


def coronary_command(args: argparse.Namespace) -> int:
    from .pipeline import SegmentationRequest, add_coronary_to_scene, add_heart_to_scene, run_coronary_tracing, segment_heart

    started = time.perf_counter()
    progress = Progress(args.quiet)
    ostia = _ostia(args)
    if not ostia:
        raise InputError("give at least one ostium: --ostium-left R,A,S and/or --ostium-right R,A,S (mm)")
    path_points = _read_path_points(args.path_points)
    for side in path_points:
        if side not in ostia:
            raise InputError(f"path points are given for the {side} tree but no --ostium-{side}")
    series, image = _read_ct(args.input, args.series, progress)
    heart = None
    if args.with_chambers:
        heart = segment_heart(image, series.ijk_to_ras, DEFAULT_MODE, atlas_path=_atlas(args.atlas), progress=progress)
    request = SegmentationRequest(
        image, series.ijk_to_ras, ostia=ostia, path_points=path_points, heart_labels=heart.labels if heart else None
    )
    coronary = run_coronary_tracing(request, progress=progress)
    results = {"input": _input_summary(series, image), "coronary": coronary.results}
    app, volume, case = _scene_for(series)
    scene = app.scene
    segmentation, curves, _, _ = add_coronary_to_scene(scene, coronary, volume, case)
    nodes = {"coronary.seg.nrrd": segmentation}
    if heart is not None:
        heart_segmentation, _ = add_heart_to_scene(scene, heart, volume, case)
        nodes["segmentation.seg.nrrd"] = heart_segmentation
        results.update({k: v for k, v in heart.results.items() if k in ("structures", "lv_myocardial_mass_g")})
    results["timing_s"] = round(time.perf_counter() - started, 2)
    with staged_output(Path(args.out)) as staging:
        _write_outputs(staging, scene, nodes, curves, results)
    progress(1.0, f"results written to {args.out}")
    _print_summary(results)
    return 0


def install_atlas_command(args: argparse.Namespace) -> int:
    from .atlas import install_atlas

    if args.spacing <= 0.2 or args.spacing > 3.0:
        raise InputError("--spacing must be between 0.2 and 3 mm")
    target = install_atlas(args.source, args.spacing, args.to)
    print(f"atlas written to {target} ({target.stat().st_size / 1024:.0f} kB, {args.spacing:g} mm)")
    return 0


def _print_summary(results: dict) -> None:
    from .pipeline import MYOCARDIUM_DENSITY_G_PER_ML

    for name, values in results.get("structures", {}).items():
        print(f"{name}: {values['volume_ml']:.1f} ml")
    if "lv_myocardial_mass_g" in results:
        print(f"LV myocardial mass: {results['lv_myocardial_mass_g']:.1f} g ({MYOCARDIUM_DENSITY_G_PER_ML} g/ml)")
    for name, values in results.get("coronary", {}).get("vessels", {}).items():
        print(
            f"{name}: length {values['length_mm']:.1f} mm, minimal lumen diameter {values['min_lumen_diameter_mm']:.2f} mm,"
            f" mean {values['mean_lumen_diameter_mm']:.2f} mm"
        )
    print(f"total {results['timing_s']:.1f} s")
