"""``cardiacsuite import-4d`` and ``cardiacsuite propagate``: 4D CT on the command line.

Both read the study one phase at a time (see ``CardiacSuiteLib.image4d``), so a long high-resolution study
never sits in memory whole; outputs are written into ``--out`` only when everything has succeeded. ``propagate``
runs the module's own workflow (``workflow``), so its scene is the one the Slicer module makes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from CardiacSuiteLib.cli import Progress, staged_output, write_json
from CardiacSuiteLib.errors import InputError

from .choices import METHODS, SCENE_VOLUMES, STRATEGIES


def add_commands(commands) -> None:
    importer = commands.add_parser(
        "import-4d",
        help="read a multi-phase cardiac CT into one Slicer volume sequence (.seq.nrrd)",
        description="Read a 4D cardiac CT (a DICOM folder holding one series per phase or one series with many"
        " temporal positions; a .seq.nrrd; a 4D NIfTI; or one 3D NRRD/NIfTI file per phase) and write it as a"
        " Slicer volume sequence whose index is the cardiac phase (%% of the R-R interval) when the images state it.",
    )
    importer.add_argument("input", nargs="+", help="DICOM folder, .seq.nrrd, 4D NIfTI, or one 3D file per phase")
    importer.add_argument("--out", required=True, help="output volume sequence file (.seq.nrrd)")
    importer.add_argument("--series", help="SeriesInstanceUID of one series of the acquisition to load")
    importer.add_argument("--allow-missing-phases", action="store_true",
                          help="go on (with a warning) when phases are missing from an evenly stepped set")
    importer.add_argument("--quiet", action="store_true", help="no progress output")
    importer.set_defaults(handler=import_4d)

    propagate = commands.add_parser(
        "propagate",
        help="propagate a reference-phase segmentation to every phase of a 4D CT",
        description="Register every phase of a 4D CT to the reference phase inside a box around the reference"
        " segmentation and carry the segmentation to each phase. Writes the segmentation sequence, the phase"
        " transforms (a grid transform sequence), results.json (per phase and structure: volume and quality"
        " figures) and scene.mrb.",
    )
    propagate.add_argument("input", nargs="+", help="DICOM folder, .seq.nrrd, 4D NIfTI, or one 3D file per phase")
    propagate.add_argument("--segmentation", required=True, help="reference-phase segmentation (.seg.nrrd)")
    propagate.add_argument("--reference-phase", required=True,
                           help="the phase the segmentation was made on: a position 0..N-1, or a value such as 75%%")
    propagate.add_argument("--out", required=True, help="output folder")
    propagate.add_argument("--method", choices=METHODS, default=METHODS[0],
                           help="deformable registration (default: demons, symmetric forces)")
    propagate.add_argument("--strategy", choices=STRATEGIES, default=STRATEGIES[0],
                           help="register each phase to the reference (default) or to its neighbour, composing")
    propagate.add_argument("--grid", type=float, default=2.0, help="registration voxel size in mm (default 2)")
    propagate.add_argument("--margin", type=float, default=20.0,
                           help="box around the reference segmentation that is registered, mm (default 20)")
    propagate.add_argument("--scene-volumes", choices=SCENE_VOLUMES, default=SCENE_VOLUMES[0],
                           help="volumes in scene.mrb: cropped to the registered box (default), the full images, or none")
    propagate.add_argument("--series", help="SeriesInstanceUID of one series of the acquisition to load")
    propagate.add_argument("--allow-missing-phases", action="store_true",
                           help="go on (with a warning) when phases are missing from an evenly stepped set")
    propagate.add_argument("--quiet", action="store_true", help="no progress output")
    propagate.set_defaults(handler=propagate_command)


def _inputs(args) -> list[str] | str:
    return args.input[0] if len(args.input) == 1 else args.input


def _warn(stack) -> None:
    for warning in stack.warnings:
        print(f"cardiacsuite: warning: {warning}", file=sys.stderr)


def import_4d(args: argparse.Namespace) -> int:
    from CardiacSuiteLib.imageio import write_seq_nrrd

    from .workflow import read_phases

    out = Path(args.out)
    if not out.name.lower().endswith(".seq.nrrd"):
        raise InputError(f"{out}: the output must be a .seq.nrrd file (a Slicer volume sequence)")
    started = time.perf_counter()
    progress = Progress(args.quiet)
    stack = read_phases(_inputs(args), args.allow_missing_phases, args.series, lambda f, m: progress(0.8 * f, m))
    try:
        _warn(stack)
        with staged_output(out.parent) as staging:
            write_seq_nrrd(stack, staging / out.name, progress=lambda f, m: progress(0.8 + 0.2 * f, m))
        progress(1.0, f"wrote {out}")
        k, j, i = stack.shape
        spacing = " × ".join(f"{v:.3g}" for v in stack.spacing_mm)
        print(
            f"{stack.count} phases ({', '.join(stack.index_label(n) for n in range(stack.count))}), "
            f"{i} × {j} × {k} voxels of {spacing} mm, ordered by {stack.metadata.get('PhaseOrder', stack.index_name)}; "
            f"{time.perf_counter() - started:.1f} s → {out}"
        )
    finally:
        stack.close()
    return 0


def load_segmentation_file(scene, path: Path):
    """The reference segmentation file as a node in ``scene``."""
    from CardiacSuiteLib import mrml

    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        return mrml.load_segmentation(scene, path)
    except ValueError as error:
        raise InputError(f"{path}: not a readable segmentation (.seg.nrrd): {error}") from None


def propagate_command(args: argparse.Namespace) -> int:
    """Read the files, run the module's workflow on them, and write its scene and results."""
    from CardiacSuiteLib import mrml
    from CardiacSuiteLib.app import create_app

    from . import workflow

    started = time.perf_counter()
    progress = Progress(args.quiet)
    settings = workflow.propagation_settings(args.method, args.strategy, args.grid, args.margin)
    stack = workflow.read_phases(_inputs(args), args.allow_missing_phases, args.series, lambda f, m: progress(0.1 * f, m))
    app = create_app()
    try:
        _warn(stack)
        scene = app.scene
        reference = workflow.parse_reference_phase(args.reference_phase, stack)
        segmentation = load_segmentation_file(scene, Path(args.segmentation))
        inputs = workflow.read_reference(scene, stack, segmentation, reference)
        loaded = time.perf_counter()
        result = workflow.run_propagation(inputs, settings, progress=lambda f, m: progress(0.1 + 0.75 * f, m))
        propagated = time.perf_counter()

        progress(0.87, "building the scene")
        out_dir = Path(args.out)
        with staged_output(out_dir) as staging:
            for index, phase in enumerate(result.phases):
                label = stack.index_label(index).replace(" ", "").replace("%", "pct")
                _save_labels(scene, phase.labels, result, staging / "segmentations" / f"phase_{index:02d}_{label}.seg.nrrd")
            outcome = workflow.add_results(scene, inputs, result, scene_volumes=args.scene_volumes, release=True)
            document = outcome.results

            progress(0.9, "writing the results")
            mrml.save_node(outcome.nodes.segmentation_sequence, staging / "segmentation.seq.mrb")
            mrml.save_node(outcome.nodes.transform_sequence, staging / "transforms.seq.nrrd")
            scene.SetRootDirectory(str(staging))
            if not scene.WriteToMRB(str(staging / "scene.mrb")):
                raise InputError(f"could not write the scene bundle to {out_dir}")
            document["input"] = {
                "source": stack.source,
                "name": stack.name,
                "phases": stack.count,
                "voxels_ijk": list(stack.shape[::-1]),
                "spacing_mm": [round(v, 4) for v in stack.spacing_mm],
                "warnings": list(stack.warnings),
                "segmentation": str(args.segmentation),
                **{k: v for k, v in stack.metadata.items() if isinstance(v, (str, int, float, bool))},
            }
            document["timing_s"] = {
                "load": loaded - started,
                "propagation": propagated - loaded,
                "save": time.perf_counter() - propagated,
                "total": time.perf_counter() - started,
            }
            write_json(staging / "results.json", document)
        progress(1.0, f"results written to {out_dir}")
    finally:
        stack.close()
        app.scene.Clear(True)
    for line in workflow.structure_table(document):
        print(line)
    function = document.get("lv_function")
    if function is not None and function.get("ef_pct") is not None:
        print(
            f"LV ({function['structure']}): EDV {function['edv_ml']:.1f} ml at {function['ed_label']}, ESV "
            f"{function['esv_ml']:.1f} ml at {function['es_label']}, SV {function['sv_ml']:.1f} ml, CT ejection "
            f"fraction {function['ef_pct']:.1f} %"
        )
    flagged = document["flagged_phases"]
    print(f"phases flagged for review: {', '.join(flagged) if flagged else 'none'}; "
          f"{document['timing_s']['total']:.1f} s in all, results in {args.out}")
    return 0


def _save_labels(scene, labels, result, path: Path) -> None:
    """One phase's segmentation as its own .seg.nrrd (on the registered box of the image grid)."""
    from CardiacSuiteLib import mrml

    specs = [mrml.SegmentSpec(s.value, s.name, s.color) for s in result.segments]
    node = mrml.add_segmentation_from_labelmap(scene, labels, result.box_ijk_to_ras, specs, path.stem)
    try:
        mrml.save_node(node, path)
    finally:
        for helper in (node.GetStorageNode(), node.GetDisplayNode()):
            if helper is not None:
                scene.RemoveNode(helper)
        scene.RemoveNode(node)
