"""``cardiacsuite plan tavr|mitral|pulmonary|pci``: intervention planning measurements on a CT or a 4D CT.

Outputs are written into ``--out`` only when everything has succeeded (a failed run leaves it as it was):
``results.json``, ``landmarks.mrk.json`` (every landmark used, to edit in Slicer and give back with
``--landmarks``), one PNG per measured cross-section, and ``scene.mrb``.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from CardiacSuiteLib.cli import Progress, staged_output, write_json
from CardiacSuiteLib.errors import InputError

from .workflow import PROTOCOLS

#: Label values of a CardiacSegmentation label map (MM-WHS order) and their names.
CARDIAC_LABELS = {1: "left ventricle myocardium", 2: "left atrium", 3: "left ventricle", 4: "right atrium",
                  5: "right ventricle", 6: "aorta", 7: "pulmonary artery"}


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "plan",
        help="intervention planning measurements: TAVR, mitral (TEER/TMVR), pulmonary valve (PPVI) or PCI",
        description="Find the protocol's landmarks on the CT (or take them from --landmarks), measure what the "
        "consensus documents ask for, and write results.json, landmarks.mrk.json, the cross-section PNGs and "
        "scene.mrb. For a 4D CT the systolic phase is measured unless --phase is given.",
    )
    parser.add_argument("protocol", choices=PROTOCOLS)
    parser.add_argument("input", nargs="+", help="a CT (DICOM folder or file, NRRD, NIfTI) or a 4D CT (DICOM folder,"
                        " .seq.nrrd, 4D NIfTI, one file per phase)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--segmentation", action="append", help="a segmentation on the CT: a .seg.nrrd, a label "
                        "map (NRRD/NIfTI; CardiacSegmentation numbering, or one binary mask named by its file, e.g. "
                        "aorta.nii.gz), or a 'cardiacsuite ct-segment' output folder; may be repeated")
    parser.add_argument("--landmarks", help="landmarks (.mrk.json): named points that replace the found ones, and "
                        "curves (e.g. a vessel centreline)")
    parser.add_argument("--phase", help="phase of a 4D CT to measure: a position 0..N-1 or a value such as 35%%")
    parser.add_argument("--propagation", help="output folder of 'cardiacsuite propagate' for this 4D CT: its LV "
                        "volume curve picks the systolic phase")
    parser.add_argument("--valve-size", type=float, help="valve size (mm) for the virtual valve: TAVR valve-to-"
                        "coronary distance, TMVR neo-LVOT")
    parser.add_argument("--vessel", help="PCI: the vessel to measure (LAD, LCx, RCA, LM or a centreline name of "
                        "the ct-segment output or of --landmarks)")
    parser.add_argument("--curve", help="PCI: the vessel centreline as a markups curve (.mrk.json) from the ostium")
    parser.add_argument("--lvot-depth", type=float, help="TAVR: LVOT depth below the annulus, mm (default 4)")
    parser.add_argument("--calcium-threshold", type=float, help="calcium threshold in HU (default: relative to the "
                        "contrast, stated in results.json)")
    parser.add_argument("--series", help="SeriesInstanceUID of one series of the acquisition to load")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(handler=plan_command)


# ------------------------------------------------------------------------------------------------ inputs


def _on_grid(array: np.ndarray, ijk_to_ras: np.ndarray, shape, target: np.ndarray, source: str) -> np.ndarray:
    from CardiacSuiteLib.geometry import Grid, resample

    if tuple(array.shape) == tuple(shape) and np.allclose(ijk_to_ras, target, atol=1e-3):
        return array
    resampled = resample(array.astype(np.float32), Grid(tuple(array.shape), ijk_to_ras), Grid(tuple(shape), target),
                         order=0)
    if not resampled.any() and array.any():
        raise InputError(f"{source}: the segmentation does not overlap the CT; was it made on this study?")
    return resampled.astype(array.dtype)


def read_segmentations(paths: list[str], shape, ijk_to_ras: np.ndarray, scene) -> tuple[np.ndarray | None, dict,
                                                                                         dict]:
    """One label map on the CT grid from every --segmentation, its label names, and centrelines found beside."""
    from CardiacSuiteLib import mrml
    from CardiacSuiteLib.imageio import read_image_input

    from . import landmarks as landmark_files

    if not paths:
        return None, {}, {}
    labels = np.zeros(shape, np.uint8)
    names: dict[int, str] = {}
    curves: dict[str, np.ndarray] = {}
    reference = None
    for text in paths:
        path = Path(text)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_dir():
            for curve_file in sorted((path / "centerlines").glob("*.mrk.json")):
                curves.update({curve_file.name[: -len(".mrk.json")]: pts
                               for pts in landmark_files.read(curve_file)[1].values()})
            found = sorted(path.glob("*.seg.nrrd"))
            if not found:
                if curves:
                    continue
                raise InputError(f"{path}: no segmentation (.seg.nrrd) or centrelines in this folder")
            path = found[0]
        if path.name.endswith(".seg.nrrd"):
            if reference is None:
                reference = mrml.add_volume(scene, np.zeros(shape, np.uint8), ijk_to_ras, "planning grid")
            node = mrml.load_segmentation(scene, path)
            part = mrml.labelmap_from_segmentation(node, reference)
            segmentation = node.GetSegmentation()
            part_names = {i + 1: segmentation.GetNthSegment(i).GetName().lower()
                          for i in range(segmentation.GetNumberOfSegments())}
        else:
            series = read_image_input(path)
            part = np.rint(series.frames[0]).astype(np.int32)
            part = _on_grid(part, series.ijk_to_ras, shape, ijk_to_ras, str(path))
            values = [int(v) for v in np.unique(part) if v > 0]
            stem = re.sub(r"(\.nii\.gz|\.nii|\.nrrd|\.nhdr|\.mha)$", "", path.name).replace("_", " ").lower()
            if values == [1]:
                part_names = {1: stem}
            elif values and max(values) <= 7:
                part_names = {v: CARDIAC_LABELS[v] for v in values}
            else:
                part_names = {v: f"{stem} {v}" for v in values}
        offset = max(names, default=0)
        for value, name in part_names.items():
            labels[(part == value) & (labels == 0)] = offset + value
            names[offset + value] = name
    return labels, names, curves


def choose_vessel(args, curves: dict[str, np.ndarray]) -> tuple[np.ndarray | None, str | None]:
    from . import landmarks as landmark_files

    if args.curve:
        given = landmark_files.read(args.curve)[1]
        if not given:
            raise InputError(f"{args.curve}: no curve in it; draw the vessel centreline as a markups curve")
        name, points = next(iter(given.items()))
        return points, args.vessel or name
    if not curves:
        return None, args.vessel
    if args.vessel:
        wanted = args.vessel.lower()
        matches = [k for k in curves if wanted == k.lower()] or [k for k in curves if wanted in k.lower()]
        if not matches:
            raise InputError(f"no centreline named '{args.vessel}'; there are: {', '.join(sorted(curves))}")
        return curves[matches[0]], args.vessel
    if len(curves) == 1:
        name = next(iter(curves))
        return curves[name], name
    raise InputError(f"several centrelines ({', '.join(sorted(curves))}): choose one with --vessel NAME")


#: The scene keeps the CT round what was measured, this much beyond the landmarks and curves (mm).
SCENE_MARGIN_MM = 40.0


def around_results(image: np.ndarray, ijk_to_ras: np.ndarray, result) -> tuple[np.ndarray, np.ndarray]:
    """The CT cropped to the box of the landmarks and curves grown by SCENE_MARGIN_MM (a whole chest CT would
    make the scene bundle hundreds of megabytes for a few centimetres that were measured)."""
    from CardiacSuiteLib.geometry import Box

    points = [np.asarray(p, float).reshape(-1, 3) for p in result.landmarks.values()]
    points += [np.asarray(c, float).reshape(-1, 3) for c in result.curves.values() if c is not None]
    points = np.vstack(points)
    inverse = np.linalg.inv(ijk_to_ras)
    kji = (points @ inverse[:3, :3].T + inverse[:3, 3])[:, ::-1]
    spacing = np.linalg.norm(np.asarray(ijk_to_ras)[:3, :3], axis=0)[::-1]
    pad = np.ceil(SCENE_MARGIN_MM / spacing).astype(int)
    low = np.clip(np.floor(kji.min(axis=0)).astype(int) - pad, 0, np.array(image.shape) - 1)
    high = np.clip(np.ceil(kji.max(axis=0)).astype(int) + pad + 1, low + 1, image.shape)
    box = Box(tuple(int(v) for v in low), tuple(int(v) for v in high))
    return np.ascontiguousarray(image[box.slices]), box.ijk_to_ras(np.asarray(ijk_to_ras, float))


# ------------------------------------------------------------------------------------------------ command


def plan_command(args: argparse.Namespace) -> int:
    from CardiacSuiteLib.app import create_app
    from CardiacSuiteLib.case import CardiacCase, Key
    from CardiacSuiteLib.image4d import format_index, read_ct

    from . import landmarks as landmark_files
    from . import scene as plan_scene
    from . import workflow
    from .model import PlanInputs

    started = time.perf_counter()
    progress = Progress(args.quiet)
    if args.valve_size is not None and not 10.0 <= args.valve_size <= 40.0:
        raise InputError(f"--valve-size {args.valve_size:g} mm is not a valve size (10–40 mm)")
    given, given_curves = landmark_files.read(args.landmarks) if args.landmarks else ({}, {})
    lv_function = workflow.read_lv_function(args.propagation)
    progress(0.05, "reading the CT")
    stack = read_ct(args.input, args.series, "planning measurements need Hounsfield units")
    phase, phase_rule = workflow.choose_phase(args.protocol, args.phase, stack.index_values, stack.index_unit,
                                              stack.index_name, lv_function)
    image = np.asarray(stack.read(phase), dtype=np.float32)
    phase_label = format_index(stack.index_values[phase], stack.index_unit) if stack.count > 1 else ""
    app = create_app()
    try:
        scene = app.scene
        labels, names, seg_curves = read_segmentations(args.segmentation or [], image.shape, stack.ijk_to_ras, scene)
        curves = {**seg_curves, **given_curves}
        inputs = PlanInputs(image, stack.ijk_to_ras, labels=labels, label_names=names, landmarks=given,
                            curves=dict(given_curves), valve_size_mm=args.valve_size, vessel=args.vessel,
                            phase_label=phase_label, options={})
        landmark_files.check_inside(given, inputs.volume, args.landmarks or "")
        if args.protocol == "pci":
            vessel, name = choose_vessel(args, curves)
            if vessel is not None:
                inputs.curves["vessel"] = vessel
                inputs.vessel = name
        else:
            inputs.curves.update({k: v for k, v in seg_curves.items() if k.lower().startswith(("coronary", "lad",
                                                                                             "lcx", "rca", "lm"))})
        if args.protocol == "pulmonary" and stack.count > 1:
            inputs.phases = [(format_index(stack.index_values[k], stack.index_unit), np.asarray(stack.read(k),
                                                                                                np.float32))
                             for k in range(stack.count) if k != phase]
        if args.lvot_depth is not None:
            inputs.options["lvot_depth_mm"] = float(args.lvot_depth)
        if args.calcium_threshold is not None:
            inputs.options["calcium_threshold_hu"] = float(args.calcium_threshold)
        progress(0.2, f"measuring ({workflow.TITLES[args.protocol]})")
        try:
            result = workflow.measure(args.protocol, inputs)
        except ValueError as error:
            raise InputError(str(error)) from None
        progress(0.8, "writing the results")
        document = workflow.results_document(result, inputs, {
            "input": [str(p) for p in args.input],
            "phase_index": phase, "phase_rule": phase_rule, "phase_count": stack.count,
            "segmentation": args.segmentation or [], "landmarks_file": args.landmarks,
        })
        case = CardiacCase.get_or_create(scene, f"{workflow.TITLES[args.protocol]} study",
                                         str(stack.metadata.get(Key.STUDY_INSTANCE_UID, "")),
                                         str(stack.metadata.get(Key.PATIENT_ID, "")))
        with staged_output(Path(args.out)) as staging:
            document["files"] = {"landmarks": "landmarks.mrk.json", "pictures": workflow.write_pictures(result, staging),
                                 "scene": "scene.mrb"}
            landmark_files.write_points(staging / "landmarks.mrk.json", f"{workflow.TITLES[args.protocol]} landmarks",
                                        result.landmarks, result.landmark_sources)
            document["timing_s"] = round(time.perf_counter() - started, 2)
            crop, crop_ijk_to_ras = around_results(image, stack.ijk_to_ras, result)
            document["scene_volume"] = {"voxels_ijk": list(crop.shape[::-1]),
                                        "rule": f"the CT cropped to the landmarks and curves + {SCENE_MARGIN_MM:g} mm"}
            plan_scene.add_results(scene, result, document, case=case, image=crop, ijk_to_ras=crop_ijk_to_ras)
            write_json(staging / "results.json", document)
            scene.SetRootDirectory(str(staging))
            if not scene.WriteToMRB(str(staging / "scene.mrb")):
                raise InputError(f"could not write the scene bundle to {args.out}")
        progress(1.0, f"done in {time.perf_counter() - started:.1f} s")
        if not args.quiet:
            for measurement, value, unit in result.table:
                print(f"  {measurement}: {value} {unit}".rstrip())
            for note in result.notes:
                print(f"  note: {note}")
    finally:
        stack.close()
        app.scene.Clear(True)
    return 0
