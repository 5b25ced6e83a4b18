"""``cardiacsuite ct-reformat``: a cardiac CT or 4D CT reformatted to short and long axis, with the LV function.

Runs ``reformat_workflow`` and writes into ``--out`` only when everything succeeded: the short-axis stack and the
2-, 3- and 4-chamber planes (NRRD; Slicer volume sequences ``.seq.nrrd`` for a 4D CT), their labels, the long
axis (JSON and a Slicer markups line), and ``results.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from CardiacSuiteLib.cli import Progress, staged_output, write_json
from CardiacSuiteLib.errors import InputError

from .presets import PHASE_METHODS, PLANES


def add_commands(commands) -> None:
    command = commands.add_parser(
        "ct-reformat",
        help="CT or 4D CT to short axis and 2/3/4-chamber long axis, with the LV ejection fraction",
        description="Find the LV long axis of a cardiac CT (from CardiacSegmentation's LV, or a given"
        " segmentation), reformat the CT to a short-axis stack and the 2-, 3- and 4-chamber planes, and measure the"
        " LV volumes and ejection fraction by short-axis slice summation (the CMR method) and by voxel count. For a"
        " 4D CT every phase is reformatted and the LV volume curve is compared with FourDCT's.",
    )
    command.add_argument("input", nargs="+",
                         help="CT (DICOM folder or file, NRRD, NIfTI) or 4D CT (DICOM folder, .seq.nrrd, 4D NIfTI,"
                              " one 3D file per phase)")
    command.add_argument("--out", required=True, help="output folder")
    command.add_argument("--segmentation",
                         help="heart segmentation of the reference phase (.seg.nrrd, or a label map with MM-WHS"
                              " values 1-7); default: CardiacSegmentation's automatic segmentation")
    command.add_argument("--reference-phase",
                         help="4D: the phase the segmentation is on or is made on, 0..N-1 or e.g. 0%% (default:"
                              " end diastole, nearest 0 %% of R-R)")
    command.add_argument("--long-axis", nargs=6, type=float, metavar=("X1", "Y1", "Z1", "X2", "Y2", "Z2"),
                         help="the LV long axis, RAS mm: mitral valve centre then apex (default: found)")
    command.add_argument("--phases-method", choices=PHASE_METHODS, default=PHASE_METHODS[0],
                         help="4D: carry the reference labels with FourDCT's propagation (default) or segment"
                              " every phase")
    command.add_argument("--slice-spacing", type=float, default=8.0, help="short-axis slice spacing, mm (default 8)")
    command.add_argument("--pixel", type=float, default=1.25, help="reformat pixel size, mm (default 1.25)")
    command.add_argument("--atlas", help="whole-heart atlas for the automatic segmentation")
    command.add_argument("--series", help="SeriesInstanceUID when the folder holds several series")
    command.add_argument("--allow-missing-phases", action="store_true",
                         help="4D: go on (with a warning) when phases are missing from an evenly stepped set")
    command.add_argument("--quiet", action="store_true", help="no progress output")
    command.set_defaults(handler=ct_reformat)


def read_reference_labels(path: Path, stack, phase: int) -> np.ndarray:
    """The given segmentation as MM-WHS labels on the CT's grid (segments matched by name; a label map resampled
    by nearest neighbour)."""
    from CardiacSuiteLib.app import create_app
    from CardiacSuiteLib.geometry import Grid, resample
    from CardiacSuiteLib.imageio import read_image_input

    from .reformat_workflow import labels_from_segmentation

    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.name.lower().endswith(".seg.nrrd"):
        from FourDCTLib.cli import load_segmentation_file
        from FourDCTLib.scene import reference_volume_node

        app = create_app()
        scene = app.scene
        try:
            node = load_segmentation_file(scene, path)
            return labels_from_segmentation(node, reference_volume_node(scene, stack, phase), str(path))
        finally:
            scene.Clear(True)
    series = read_image_input(path)
    labels = np.rint(series.frames[0]).astype(np.int16)
    if labels.min() < 0 or labels.max() > 255:
        raise InputError(f"{path}: not a label map (values {labels.min()} to {labels.max()}); give a .seg.nrrd")
    source = Grid(labels.shape, series.ijk_to_ras)
    return resample(labels.astype(np.uint8), source, Grid(stack.shape, stack.ijk_to_ras), order=0, fill=0)


def _write_volume(path: Path, frames: np.ndarray, grid, result) -> None:
    """One phase: a NRRD volume; several: a Slicer volume sequence with the study's index."""
    from CardiacSuiteLib.image4d import ArrayPhases
    from CardiacSuiteLib.imagedata import ImageSeries
    from CardiacSuiteLib.imageio import write_image, write_seq_nrrd

    if frames.shape[0] == 1:
        write_image(ImageSeries(frames, grid.ijk_to_ras), path.with_name(path.name + ".nrrd"))
    else:
        stack = ArrayPhases(frames, grid.ijk_to_ras, result.index_values, index_name=result.index_name,
                            index_unit=result.index_unit)
        write_seq_nrrd(stack, path.with_name(path.name + ".seq.nrrd"))


def _write_axis_line(path: Path, axis) -> None:
    """The long axis as a Slicer markups line (``.mrk.json``), base then apex, to edit in Slicer."""
    from CardiacSuiteLib.app import create_app

    from .reformat_workflow import add_long_axis_line
    from .scene import save_curve

    app = create_app()
    try:
        save_curve(add_long_axis_line(app.scene, axis), path)
    finally:
        app.scene.Clear(True)


def write_outputs(staging: Path, result, results: dict) -> None:
    _write_volume(staging / "sax", result.short_axis_images, result.short_axis_grid, result)
    _write_volume(staging / "sax_labels", result.short_axis_labels, result.short_axis_grid, result)
    for plane in PLANES:
        name = plane.lower()
        _write_volume(staging / name, result.long_axis_images[plane], result.long_axis_grids[plane], result)
        _write_volume(staging / f"{name}_labels", result.long_axis_labels[plane], result.long_axis_grids[plane], result)
    write_json(staging / "long_axis.json", {**result.axis.as_dict(), "landmarks": results["landmarks"],
                                             "planes": results["long_axis_planes"]})
    _write_axis_line(staging / "long_axis.mrk.json", result.axis)
    write_json(staging / "results.json", results)


def ct_reformat(args: argparse.Namespace) -> int:
    from .cli import _atlas
    from .reformat import long_axis_from_points
    from .reformat_workflow import ReformatSettings, open_ct, run_ct_reformat

    started = time.perf_counter()
    progress = Progress(args.quiet)
    stack = open_ct(args.input if len(args.input) > 1 else args.input[0], args.series, args.allow_missing_phases,
                    lambda f, m: progress(0.05 * f, m))
    try:
        for warning in stack.warnings:
            print(f"cardiacsuite: warning: {warning}", file=sys.stderr)
        reference = None
        if args.reference_phase is not None:
            from FourDCTLib.workflow import parse_reference_phase

            reference = parse_reference_phase(args.reference_phase, stack)
        axis = None
        if args.long_axis is not None:
            axis = long_axis_from_points(args.long_axis[:3], args.long_axis[3:], "given (--long-axis)")
        settings = ReformatSettings(slice_mm=args.slice_spacing, pixel_mm=args.pixel, phases_method=args.phases_method,
                                    reference_phase=reference, long_axis=axis,
                                    atlas_path=None if args.segmentation else _atlas(args.atlas))
        settings.validate()
        labels = None
        if args.segmentation:
            from .reformat_workflow import default_reference_phase

            phase = default_reference_phase(stack) if reference is None else reference
            labels = read_reference_labels(Path(args.segmentation), stack, phase)
        _, result = run_ct_reformat(stack, settings, labels, lambda f, m: progress(0.05 + 0.9 * f, m))
        results = result.results
        results["input"] = {"source": stack.source, "name": stack.name, "phases": stack.count,
                            "shape_ijk": list(stack.shape[::-1]),
                            "spacing_mm": [round(v, 4) for v in stack.spacing_mm],
                            "segmentation": args.segmentation or "automatic", "warnings": list(stack.warnings)}
        results["timing_s"]["total"] = round(time.perf_counter() - started, 2)
        with staged_output(Path(args.out)) as staging:
            write_outputs(staging, result, results)
        progress(1.0, f"results written to {args.out}")
    finally:
        stack.close()
    print_summary(results)
    return 0


def print_summary(results: dict) -> None:
    from .reformat_workflow import summary_lines

    for line in summary_lines(results):
        print(line)
    print(f"total {results['timing_s']['total']:.1f} s")
