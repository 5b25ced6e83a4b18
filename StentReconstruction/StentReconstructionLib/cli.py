"""``cardiacsuite stent``: reconstruct a device from a CT phase or a 4D CT, rank the algorithms, and carry the
chosen one through the cycle.

Outputs are written into ``--out`` only when everything has succeeded (a failed run leaves it as it was).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from CardiacSuiteLib.cli import Progress, staged_output, write_json
from CardiacSuiteLib.errors import InputError

from .devices import DEVICE_KINDS

#: The phase a 4D study's device is reconstructed on by default: diastasis, where the heart moves least.
DEFAULT_PHASE_PERCENT = 75.0


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "stent",
        help="reconstruct a stent or valve frame from CT with several algorithms, ranked, and move it through the cycle",
        description="Find the device's metal around the given extent, reconstruct it with every algorithm (A: threshold"
        " with blooming correction, B: wire tracing, C: model fit), rank the results by their structure-match score,"
        " measure them, and for a 4D CT carry the chosen one to every phase with the phase transforms. Writes"
        " results.json, per algorithm <id>/stent.vtp, <id>/axis.mrk.json and <id>/struts.mrk.json, for a 4D CT"
        " phases/phase_NN/, and scene.mrb.",
    )
    parser.add_argument("input", nargs="+", help="a CT (DICOM folder or file, NRRD, NIfTI) or a 4D CT (DICOM folder,"
                        " .seq.nrrd, 4D NIfTI, one file per phase)")
    parser.add_argument("--start", help="device start point R,A,S (mm)")
    parser.add_argument("--end", help="device end point R,A,S (mm)")
    parser.add_argument("--curve", help="markups curve along the device (.mrk.json) instead of --start/--end")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--device", choices=DEVICE_KINDS, default=DEVICE_KINDS[0], help="device type (default coronary)")
    parser.add_argument("--nominal-diameter", type=float, help="labelled device diameter, mm")
    parser.add_argument("--nominal-length", type=float, help="labelled device length, mm")
    parser.add_argument("--segmentation", help="vessel or aortic root segmentation (.seg.nrrd) on the CT")
    parser.add_argument("--segment", help="the segment of --segmentation to use (default: all of them)")
    parser.add_argument("--phase", help="phase to reconstruct on: a position 0..N-1 or a value such as 75%% "
                        "(default: the phase nearest 75 %%, else the first)")
    parser.add_argument("--transforms", help="output folder of 'cardiacsuite propagate' for this study (its phase "
                        "transforms); without it the phases are registered here around the device")
    parser.add_argument("--algorithms", default="A,B,C", help="algorithms to run, comma-separated (default A,B,C)")
    parser.add_argument("--annulus", help="the annular plane, for a valve frame's implantation depth: the results.json"
                        " of 'cardiacsuite ct-segment --preset valve', or R,A,S,nR,nA,nS (centre and normal towards the"
                        " aorta or pulmonary artery, mm)")
    parser.add_argument("--landmark", help="an anatomical landmark R,A,S (mm), e.g. an ostium: the distance of each "
                        "device end to it is measured, at every phase")
    parser.add_argument("--threshold", type=float, help="metal threshold in HU (default: chosen from the image)")
    parser.add_argument("--series", help="SeriesInstanceUID of one series of the acquisition to load")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(handler=stent_command)


def parse_point(text: str, option: str) -> np.ndarray:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise InputError(f"{option} '{text}' is not a point R,A,S in mm (three numbers separated by commas)")
    return np.array(values)


def read_curve_file(path: str | Path) -> np.ndarray:
    """Control points (RAS mm) of the first markups in a Slicer .mrk.json file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        markup = document["markups"][0]
        points = np.array([p["position"] for p in markup["controlPoints"]], float)
    except (ValueError, KeyError, IndexError, TypeError):
        raise InputError(f"{path}: not a Slicer markups file (.mrk.json) with control points") from None
    if markup.get("coordinateSystem", "LPS") == "LPS" and len(points):
        points = points * np.array([-1.0, -1.0, 1.0])
    if len(points) < 2:
        raise InputError(f"{path}: the curve needs at least 2 points along the device")
    return points


def extent_from_args(args) -> np.ndarray:
    if args.curve and (args.start or args.end):
        raise InputError("give either --curve or --start and --end, not both")
    if args.curve:
        return read_curve_file(args.curve)
    if not (args.start and args.end):
        raise InputError("give the device's extent: --start R,A,S and --end R,A,S (mm), or --curve axis.mrk.json")
    return np.stack([parse_point(args.start, "--start"), parse_point(args.end, "--end")])


def parse_annulus(text: str | None, kind: str) -> dict | None:
    """The annular plane from six numbers or from a ``ct-segment`` valve results document."""
    if text is None:
        return None
    path = Path(text)
    if path.suffix.lower() == ".json" or path.exists():
        if not path.exists():
            raise InputError(f"{path}: no such file")
        try:
            valve = json.loads(path.read_text(encoding="utf-8"))["valve"]
            root = valve["pulmonary_root" if kind == "pulmonary" else "aortic_root"]
            plane = root.get("annulus_plane") or root["annulus"]["plane"]
            return {"center": np.array(plane["centre_ras_mm"], float), "normal": np.array(plane["normal"], float),
                    "source": str(path)}
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{path}: no annulus plane in it; give the results.json of 'cardiacsuite ct-segment "
                             "--preset valve'") from None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 6 or not np.linalg.norm(values[3:]) > 0:
        raise InputError(f"--annulus '{text}': give R,A,S,nR,nA,nS (the plane's centre and normal, mm) or a results.json")
    return {"center": np.array(values[:3]), "normal": np.array(values[3:]) / np.linalg.norm(values[3:]),
            "source": "given"}


def read_ct(inputs: list[str], series_uid: str | None = None):
    """A CT phase or a 4D CT as a PhaseStack (one phase for a 3D CT), checked to be CT in HU."""
    from CardiacSuiteLib.image4d import read_ct as read_ct_input

    return read_ct_input(inputs, series_uid, "the device is found by its Hounsfield units")


def choose_phase(text: str | None, stack) -> tuple[int, str]:
    from FourDCTLib.workflow import parse_phase

    if text is not None:
        return parse_phase(text, stack.index_values, stack.index_unit, stack.index_name, "phase"), "given"
    if stack.count > 1 and stack.index_unit == "%":
        values = np.asarray(stack.index_values, float)
        return int(np.argmin(np.abs(values - DEFAULT_PHASE_PERCENT))), f"nearest {DEFAULT_PHASE_PERCENT:g} %"
    return 0, "the first"


def stent_command(args: argparse.Namespace) -> int:
    from CardiacSuiteLib import mrml
    from CardiacSuiteLib.app import create_app

    from . import propagation, workflow
    from . import scene as stent_scene

    started = time.perf_counter()
    progress = Progress(args.quiet)
    extent = extent_from_args(args)
    spec = stent_scene.device_spec(args.device, args.nominal_diameter, args.nominal_length)
    algorithms = workflow.parse_algorithms(args.algorithms)
    annulus = parse_annulus(args.annulus, args.device)
    landmark = parse_point(args.landmark, "--landmark") if args.landmark else None
    stack = read_ct(args.input, args.series)
    app = create_app()
    try:
        scene = app.scene
        phase, phase_rule = choose_phase(args.phase, stack)
        fields = propagation.read_propagate_output(args.transforms, stack.count) if args.transforms else None
        image = np.asarray(stack.read(phase), dtype=np.float32)
        vessel = None
        if args.segmentation:
            from FourDCTLib.cli import load_segmentation_file

            grid = mrml.add_volume(scene, image[:1, :1, :1], stack.ijk_to_ras, "grid")
            mrml.update_volume(grid, np.zeros(image.shape, np.uint8), stack.ijk_to_ras)
            segmentation = load_segmentation_file(scene, Path(args.segmentation))
            vessel = stent_scene.vessel_mask(segmentation, grid, args.segment)
            scene.RemoveNode(grid)
            if not vessel.any():
                raise InputError(f"{args.segmentation}: the segmentation does not overlap the CT")
        loaded = time.perf_counter()
        if landmark is not None:
            from .region import check_inside

            check_inside(landmark[None], stack.ijk_to_ras, stack.shape, "landmark")
        run = workflow.reconstruct(image, stack.ijk_to_ras, extent, spec, vessel, algorithms, args.threshold, phase,
                                   progress=lambda f, m: progress(0.6 * f if stack.count > 1 else 0.9 * f, m),
                                   annulus=annulus, landmark=landmark)
        del image  # the phase is in the region now; a 4D propagation reads the phases one at a time
        if stack.count > 1:
            workflow.propagate(run, stack, fields, progress=lambda f, m: progress(0.6 + 0.3 * f, m))
        progress(0.92, "writing the results")
        out = Path(args.out)
        with staged_output(out) as staging:
            files = write_files(scene, run, staging)
            stent_scene.add_results(scene, run, stack.name or "Stent", stack=stack if stack.count > 1 else None)
            scene.SetRootDirectory(str(staging))
            if not scene.WriteToMRB(str(staging / "scene.mrb")):
                raise InputError(f"could not write the scene bundle to {out}")
            document = workflow.results_document(run, stack if stack.count > 1 else None, files)
            document["input"] = {"source": [str(p) for p in args.input], "phases": stack.count,
                                 "phase": phase, "phase_rule": phase_rule,
                                 "voxels_ijk": list(stack.shape[::-1]),
                                 "spacing_mm": [round(float(v), 4) for v in np.linalg.norm(stack.ijk_to_ras[:3, :3], axis=0)],
                                 "extent_ras_mm": extent.tolist(), "segmentation": args.segmentation,
                                 "transforms": args.transforms,
                                 "annulus": None if annulus is None else {k: (v.tolist() if hasattr(v, "tolist") else v)
                                                                          for k, v in annulus.items()},
                                 "landmark_ras_mm": None if landmark is None else landmark.tolist()}
            document["timing_s"]["load"] = loaded - started
            document["timing_s"]["total"] = time.perf_counter() - started
            write_json(staging / "results.json", document)
        progress(1.0, f"results written to {out}")
    finally:
        stack.close()
        app.scene.Clear(True)
    print_summary(document)
    return 0


def write_files(scene, run, folder: Path) -> dict:
    """Per algorithm its surface, axis and struts; per phase the chosen device moved there."""
    files: dict = {}
    for result in run.results:
        if not result.ok:
            continue
        device = result.reconstruction
        files[result.id] = _write_device(scene, device, folder / result.id, f"{result.id}", with_struts=True)
    if run.phases is not None:
        files["phases"] = {}
        for phase in run.phases:
            target = folder / "phases" / f"phase_{phase.index:02d}"
            files["phases"][phase.index] = _write_device(scene, phase.device, target, f"phase {phase.label}", False,
                                                         relative_to=folder)
    return files


def _write_device(scene, device, target: Path, name: str, with_struts: bool, relative_to: Path | None = None) -> dict:
    from CardiacSuiteLib import mrml

    target.mkdir(parents=True, exist_ok=True)
    base = relative_to or target.parent
    written = {}
    temporary = []
    try:
        model = mrml.add_model(scene, device.surface, f"{name} stent")
        temporary.append(model)
        written["surface"] = str(mrml.save_node(model, target / "stent.vtp").relative_to(base))
        axis = mrml.add_curve(scene, device.axis, f"{name} axis")
        temporary.append(axis)
        written["axis"] = str(mrml.save_node(axis, target / "axis.mrk.json").relative_to(base))
        if with_struts and device.struts:
            written["struts"] = str(write_curves(scene, device.struts, target / "struts.mrk.json", name).relative_to(base))
    finally:
        for node in temporary:
            for helper in (node.GetStorageNode(), node.GetDisplayNode()):
                if helper is not None:
                    scene.RemoveNode(helper)
            scene.RemoveNode(node)
    return written


def write_curves(scene, polylines, path: Path, name: str) -> Path:
    """Several open curves in one Slicer markups file (one entry of its "markups" list per curve)."""
    from CardiacSuiteLib import mrml

    entries = []
    scratch = path.with_suffix(".part.mrk.json")
    for index, points in enumerate(polylines):
        curve = mrml.add_curve(scene, points, f"{name} strut {index + 1}")
        try:
            mrml.save_node(curve, scratch)
            entries.extend(json.loads(scratch.read_text(encoding="utf-8"))["markups"])
        finally:
            for helper in (curve.GetStorageNode(), curve.GetDisplayNode()):
                if helper is not None:
                    scene.RemoveNode(helper)
            scene.RemoveNode(curve)
    document = json.loads(scratch.read_text(encoding="utf-8"))
    scratch.unlink()
    document["markups"] = entries
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return path


def print_summary(document: dict) -> None:
    print(f"metal threshold {document['metal_threshold_hu']:.0f} HU ({document['metal_threshold_rule']})")
    for entry in document["algorithms"]:
        if entry["score"] is None:
            print(f"  {entry['id']} {entry['name']}: no result ({entry['failure']})")
            continue
        m = entry["measurements"]
        parts = ", ".join(f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in entry["parts"].items())
        print(f"  #{entry['rank']} {entry['id']} {entry['name']}: score {entry['score']:.3f} ({parts}); length "
              f"{m['length_mm']:.1f} mm, diameter mean {m['diameter_mean_mm']:.2f} mm (min {m['diameter_min_mm']:.2f},"
              f" max {m['diameter_max_mm']:.2f}), max eccentricity {m['eccentricity_max']:.2f}")
    print(f"chosen: {document['chosen']}")
    for phase in document.get("phases", []):
        flag = f" FLAGGED: {'; '.join(phase['flags'])}" if phase["flagged"] else ""
        print(f"  phase {phase['label']}: axis to centreline {phase['axis_to_centerline_mm']:.2f} mm, consistency with "
              f"metal {phase['consistency_mm']:.2f} mm{flag}")
    print(f"{document['timing_s']['total']:.1f} s in all")
