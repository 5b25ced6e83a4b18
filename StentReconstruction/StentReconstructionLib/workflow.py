"""The StentReconstruction job as the module and the command line run it.

``reconstruct`` finds the metal around the extent and runs every chosen algorithm, each scored and measured;
results are ranked by their structure-match score (an algorithm that cannot give a result keeps an entry that
says why). ``propagate`` carries the results through the cycle by moving them with the phase fields, adds the
phase terms to every score, re-ranks, and checks the chosen device against each phase's metal.
``adjusted`` and ``rescore`` recompute a result the user moved, scaled or whose axis they edited. Nothing here
touches a scene: ``scene.add_results`` files a run in one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from CardiacSuiteLib.errors import InputError

from . import measure, propagation, sections
from .algorithms import ALGORITHMS
from .devices import DeviceSpec
from .model import CannotReconstruct, Reconstruction, Region
from .region import find_region
from .score import WEIGHTS, Score, score

ProgressCallback = Callable[[float, str], None]


@dataclass
class AlgorithmResult:
    id: str
    name: str
    reconstruction: Reconstruction | None
    failure: str | None = None
    measurements: dict | None = None
    score: Score | None = None
    rank: int | None = None
    seconds: float = 0.0
    phase_figures: list[dict] = field(default_factory=list)  # per phase: length, mean diameter, metal consistency

    @property
    def ok(self) -> bool:
        return self.reconstruction is not None


@dataclass
class PhaseDevice:
    index: int
    value: float
    label: str
    device: Reconstruction
    measurements: dict
    axis_to_centerline_mm: float
    consistency_mm: float
    flags: list[str] = field(default_factory=list)  # the moved device and this phase's metal disagree
    registration_notes: list[str] = field(default_factory=list)  # the phase field's own quality flags
    correction: propagation.RigidCorrection | None = None
    corrected: str = ""  # what the rigid correction was applied to: the phase field, or a neighbouring phase
    carry: object = None  # function carrying reconstruction-phase points to this phase

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


@dataclass
class StentRun:
    region: Region
    results: list[AlgorithmResult]  # ranked, failures last
    phase: int  # the phase the device was reconstructed on (0 for a 3D CT)
    chosen_id: str
    phases: list[PhaseDevice] | None = None
    fields: propagation.PhaseFields | None = None
    centerline: np.ndarray | None = None  # vessel centreline beside the device at the reconstruction phase
    annulus: dict | None = None  # {"center": (3,), "normal": (3,)} of the annular plane, for valve frames
    landmark: np.ndarray | None = None  # an anatomical landmark (RAS mm) the device's ends are measured to
    corrections: dict = field(default_factory=dict)  # phase -> (propagation.RigidCorrection, what it corrects)
    bends: dict = field(default_factory=dict)  # phase -> propagation.BentCorrection (None: too short to bend)
    motions: dict = field(default_factory=dict)  # phase -> function carrying reconstruction-phase points there
    timing_s: dict = field(default_factory=dict)

    @property
    def chosen(self) -> AlgorithmResult:
        return next(r for r in self.results if r.id == self.chosen_id)


def parse_algorithms(text: str | Sequence[str] | None) -> list[str]:
    if text is None:
        return list(ALGORITHMS)
    ids = [t.strip().upper() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [i for i in ids if i not in ALGORITHMS]
    if unknown or not ids:
        raise InputError(f"unknown algorithm {', '.join(unknown) or '(none)'}; choose from {', '.join(ALGORITHMS)}")
    return list(dict.fromkeys(ids))


def evaluate(region: Region, result: AlgorithmResult, annulus: dict | None = None,
             landmark: np.ndarray | None = None) -> AlgorithmResult:
    """Measure and score one result (the phase terms included when it has them)."""
    result.measurements = measure.measure(result.reconstruction, region.spec, annulus, landmark=landmark)
    result.score = score(region, result.reconstruction, result.measurements, result.phase_figures or None)
    if result.score.wall_gap_mm is not None:  # the score's apposition term found the wall: add its map
        result.measurements.update(measure.apposition_figures(result.score.wall_gap_mm))
    return result


def rank(results: list[AlgorithmResult]) -> list[AlgorithmResult]:
    """Results by score, best first; failures after them in algorithm order."""
    good = sorted((r for r in results if r.ok), key=lambda r: -r.score.value)
    for position, result in enumerate(good, start=1):
        result.rank = position
    failed = [r for r in results if not r.ok]
    for result in failed:
        result.rank = None
    return good + failed


def reconstruct(image: np.ndarray, ijk_to_ras: np.ndarray, extent: np.ndarray, spec: DeviceSpec,
                vessel: np.ndarray | None = None, algorithms: Sequence[str] | None = None,
                threshold_hu: float | None = None, phase: int = 0, progress: ProgressCallback | None = None,
                cancel=None, annulus: dict | None = None, landmark: np.ndarray | None = None) -> StentRun:
    """Every chosen algorithm on one CT phase, scored, measured and ranked.

    ``annulus`` (a valve frame's annular plane) adds the implantation depth; ``landmark`` (e.g. an ostium or a
    side branch) the distance of each device end to it.
    """
    report = _reporter(progress, cancel)
    ids = parse_algorithms(algorithms)
    started = time.perf_counter()
    report(0.0, "finding the metal around the device extent")
    region = find_region(image, ijk_to_ras, extent, spec, vessel, threshold_hu)
    found = time.perf_counter()
    results = []
    for done, algorithm_id in enumerate(ids):
        algorithm = ALGORITHMS[algorithm_id]
        report(0.1 + 0.9 * done / len(ids), f"reconstruction {algorithm.id}: {algorithm.name}")
        begun = time.perf_counter()
        try:
            reconstruction = algorithm.run(region)
        except CannotReconstruct as reason:
            results.append(AlgorithmResult(algorithm.id, algorithm.name, None, str(reason),
                                           seconds=time.perf_counter() - begun))
            continue
        result = AlgorithmResult(algorithm.id, algorithm.name, reconstruction)
        evaluate(region, result, annulus, landmark)
        result.seconds = time.perf_counter() - begun
        results.append(result)
    results = rank(results)
    if not any(r.ok for r in results):
        reasons = "; ".join(f"{r.id}: {r.failure}" for r in results)
        raise InputError(f"no algorithm could reconstruct the device ({reasons})")
    report(1.0, "reconstruction finished")
    timing = {"region": found - started, "algorithms": {r.id: r.seconds for r in results}}
    run = StentRun(region, results, phase, results[0].id, annulus=annulus, landmark=landmark, timing_s=timing)
    run.centerline = propagation.centerline_near(run.chosen.reconstruction, region)
    return run


def device_mask(run: StentRun, shape_kji, margin_mm: float = 1.5) -> np.ndarray:
    """The voxels of the whole image within ``margin_mm`` of any result's envelope (the box to register)."""
    region = run.region
    mask = np.zeros(shape_kji, bool)
    local = np.zeros(region.image.shape, bool)
    for result in run.results:
        if not result.ok:
            continue
        points = result.reconstruction.envelope_points().reshape(-1, 3)
        ijk = np.rint(region.ras_to_ijk(np.concatenate([points, result.reconstruction.axis]))).astype(int)[:, ::-1]
        ijk = ijk[(ijk >= 0).all(axis=1) & (ijk < np.array(local.shape)).all(axis=1)]
        local[tuple(ijk.T)] = True
    from scipy import ndimage

    reach = np.ceil(margin_mm / region.spacing_mm).astype(int)
    local = ndimage.binary_dilation(local, np.ones(tuple(2 * reach + 1), bool))
    mask[region.box.slices] = local
    return mask


def propagate(run: StentRun, stack, fields: propagation.PhaseFields | None = None, refine: bool = True,
              progress: ProgressCallback | None = None, cancel=None) -> StentRun:
    """Move every result through the cycle, add the phase terms to the scores, re-rank, check the chosen one.

    ``refine``: after the phase field, settle the device with a rigid correction that matches its
    neighbourhood in the phase with the reconstruction phase's (``propagation.refine_rigid``).
    """
    report = _reporter(progress, cancel)
    started = time.perf_counter()
    if fields is None:
        report(0.0, "registering the phases in a box around the device")
        fields = propagation.register_phases(stack, run.phase, device_mask(run, stack.shape),
                                             progress=lambda f, m: report(0.8 * f, m), cancel=cancel)
    elif len(fields.fields) != stack.count:
        raise InputError(f"the phase transforms hold {len(fields.fields)} phases but the study has {stack.count}")
    registered = time.perf_counter()
    region = run.region
    window = (region.background_hu - 500.0, region.threshold_hu + 0.5 * (region.image.max() - region.threshold_hu))
    box, box_ijk_to_ras = propagation.phase_box(region, stack.shape)
    reference_image = np.asarray(stack.read(run.phase), dtype=np.float32)[box.slices]
    samples = propagation.device_samples(reference_image, box_ijk_to_ras, run.chosen.reconstruction)
    results = [r for r in run.results if r.ok]
    # Each result's axial signature at the reconstruction phase, on as many samples as its own axis has.
    counts = {r.id: len(sections.resample(r.reconstruction.axis, propagation.SIGNATURE_STEP_MM)) for r in results}
    signatures = {r.id: propagation.axial_signature(reference_image, box_ijk_to_ras, r.reconstruction, region,
                                                    count=counts[r.id]) for r in results}
    moved: dict[str, dict[int, tuple[Reconstruction, dict]]] = {r.id: {} for r in results}  # device, measurements
    for result in results:
        result.phase_figures = []
    run.corrections, run.bends, run.motions = {}, {}, {run.phase: (lambda points: np.asarray(points, float))}
    from FourDCTLib.propagation import phase_order

    order = [(run.phase, None)] + phase_order(stack.count, run.phase)
    for done, (index, neighbour) in enumerate(order):
        report(0.8 + 0.2 * done / stack.count, f"moving the devices to phase {stack.index_label(index)}")
        image = reference_image if index == run.phase else np.asarray(stack.read(index), dtype=np.float32)[box.slices]
        if index != run.phase:
            run.motions[index] = _device_motion(run, fields, stack, index, neighbour, image, reference_image,
                                                box_ijk_to_ras, samples, window, refine)
        carry = run.motions[index]
        landmark = None if run.landmark is None else propagation.mapping(fields, run.phase, index)(run.landmark[None])[0]
        seen = replace(region, image=image, ijk_to_ras=box_ijk_to_ras, box=box, metal=image >= region.threshold_hu,
                       vessel=None)
        for result in results:
            device = result.reconstruction if index == run.phase else propagation.move(result.reconstruction, carry)
            figures = measure.measure(device, region.spec, landmark=landmark)
            radial = propagation.metal_consistency_mm(image, box_ijk_to_ras, device, region)
            slide = abs(propagation.axial_slide_mm(signatures[result.id], propagation.axial_signature(
                image, box_ijk_to_ras, device, region, count=counts[result.id])))
            result.phase_figures.append({
                "index": index, "length_mm": figures["length_mm"], "diameter_mean_mm": figures["diameter_mean_mm"],
                "radial_mm": radial, "axial_mm": slide, "metal_mm": max(radial, slide),
                "axis_to_centerline_mm": propagation.axis_to_centerline_mm(
                    device.axis, propagation.centerline_near(device, seen)),
            })
            moved[result.id][index] = (device, figures)
    for result in results:
        result.phase_figures.sort(key=lambda figures: figures["index"])
        evaluate(region, result, run.annulus, run.landmark)
    run.results = rank(run.results)
    run.chosen_id = run.results[0].id
    run.fields = fields
    run.phases = _phase_devices(run, stack, moved[run.chosen_id])
    run.timing_s["registration"] = registered - started if fields.seconds == 0 else fields.seconds
    run.timing_s["propagation"] = time.perf_counter() - started
    report(1.0, "propagation finished")
    return run


def _device_motion(run: StentRun, fields: propagation.PhaseFields, stack, index: int, neighbour: int, image,
                   reference_image, ijk_to_ras, samples, window, refine: bool):
    """The function carrying reconstruction-phase points to phase ``index``: the phase field, and with
    ``refine`` the rigid and bend corrections (recorded in ``run.corrections`` and ``run.bends``)."""
    carry = propagation.mapping(fields, run.phase, index)
    if not refine:
        return carry
    # Start from the phase field, and from the device as the neighbouring phase left it; keep the better
    # match (a field can lose a thin vessel that moved more than its width, the chain then still holds).
    starts = [(carry, "phase field"), (run.motions[neighbour], f"phase {stack.index_label(neighbour)}")]
    tried = [(propagation.refine_rigid(reference_image, image, ijk_to_ras, samples, start, window), start, label)
             for start, label in starts]
    (correction, _), start, label = min(tried, key=lambda t: t[0][1])
    run.corrections[index] = (correction, label)
    carry = propagation.then(start, correction)
    bend = propagation.refine_bend(reference_image, image, ijk_to_ras, samples, carry, window,
                                   run.chosen.reconstruction.axis)
    run.bends[index] = bend
    return propagation.bent(carry, bend)


def _phase_devices(run: StentRun, stack, devices: dict[int, tuple[Reconstruction, dict]]) -> list[PhaseDevice]:
    """The chosen result at every phase, from the figures ``propagate`` measured there."""
    fields = run.fields
    phases = []
    for figures in run.chosen.phase_figures:
        index = figures["index"]
        consistency = figures["metal_mm"]
        flags = []
        if consistency > propagation.CONSISTENCY_LIMIT_MM:
            flags.append(f"the moved device lies {consistency:.2f} mm from the metal seen in this phase "
                         f"(limit {propagation.CONSISTENCY_LIMIT_MM} mm)")
        qc = (fields.method.get("qc") or [{}] * stack.count)[index]
        device, measurements = devices[index]
        phases.append(PhaseDevice(index, float(stack.index_values[index]), stack.index_label(index), device,
                                  measurements, figures["axis_to_centerline_mm"], consistency, flags,
                                  list(qc.get("flags", [])), *(run.corrections.get(index) or (None, "")),
                                  run.motions.get(index)))
    return phases


def adjusted(reconstruction: Reconstruction, translate_mm=(0.0, 0.0, 0.0), scale: float = 1.0,
             axis: np.ndarray | None = None) -> Reconstruction:
    """A result the user moved (mm, RAS), scaled about its axis, or whose axis they redrew: the envelope keeps its
    radii (times ``scale``) around the new axis; the surface becomes the envelope's tube."""
    from .surfaces import tube_from_envelope

    shift = np.asarray(translate_mm, float)
    new_axis = sections.resample(np.asarray(axis, float)) if axis is not None else reconstruction.axis
    old = reconstruction.radii
    positions = np.linspace(0, len(old) - 1, len(new_axis))
    radii = np.stack([np.interp(positions, np.arange(len(old)), old[:, s]) for s in range(old.shape[1])], axis=1)
    radii = radii * float(scale)
    new_axis = new_axis + shift
    method = dict(reconstruction.method)
    method["adjusted"] = {"translate_mm": shift.tolist(), "scale": float(scale), "axis_redrawn": axis is not None}
    return Reconstruction(
        id=reconstruction.id, name=reconstruction.name, axis=new_axis, radii=radii,
        surface=tube_from_envelope(new_axis, radii), struts=[s + shift for s in reconstruction.struts],
        material=None if reconstruction.material is None else reconstruction.material + shift, method=method,
        notes=reconstruction.notes + ["adjusted by the user"],
    )


def rescore(run: StentRun, algorithm_id: str, reconstruction: Reconstruction) -> StentRun:
    """Replace one result by the user's adjustment, measure and score it again, and re-rank (the user's choice
    of result is kept)."""
    result = next((r for r in run.results if r.id == algorithm_id), None)
    if result is None or not result.ok:
        raise InputError(f"no result '{algorithm_id}' to adjust")
    result.reconstruction = reconstruction
    result.phase_figures = []
    evaluate(run.region, result, run.annulus, run.landmark)
    run.results = rank(run.results)
    return run


def choose(run: StentRun, algorithm_id: str) -> StentRun:
    """The user's choice of result instead of the top-ranked one."""
    result = next((r for r in run.results if r.id == algorithm_id), None)
    if result is None or not result.ok:
        raise InputError(f"'{algorithm_id}' has no result to choose")
    run.chosen_id = algorithm_id
    return run


def results_document(run: StentRun, stack=None, files: dict | None = None) -> dict:
    """results.json: the threshold, every algorithm's entry (rank, score and parts, measurements, files), the
    chosen one, and per phase the moved device's figures."""
    region = run.region
    files = files or {}
    entries = []
    for result in run.results:
        entry = {"id": result.id, "name": result.name, "rank": result.rank, "seconds": result.seconds,
                 "files": files.get(result.id, {})}
        if result.ok:
            entry.update({
                "score": result.score.value, "parts": result.score.parts, "score_details": result.score.details,
                "measurements": result.measurements, "method": result.reconstruction.method,
                "notes": result.reconstruction.notes, "phase_figures": result.phase_figures,
            })
        else:
            entry.update({"score": None, "parts": None, "measurements": None, "failure": result.failure})
        entries.append(entry)
    document = {
        "device": {"type": region.spec.kind, "label": region.spec.design.label,
                   "nominal_diameter_mm": region.spec.nominal_diameter_mm,
                   "nominal_length_mm": region.spec.nominal_length_mm},
        "metal_threshold_hu": region.threshold_hu,
        "metal_threshold_rule": region.threshold_rule,
        "blood_hu": region.background_hu,
        "noise_sd_hu": region.noise_hu,
        "reconstruction_phase": run.phase,
        "algorithms": entries,
        "chosen": run.chosen_id,
        "score_weights": dict(WEIGHTS),
        "coordinates": "RAS, millimetres",
        "units": {"length_mm": "mm", "diameter_mm": "mm", "area_mm2": "mm²", "metal_threshold_hu": "HU",
                  "consistency_mm": "mm", "axis_to_centerline_mm": "mm", "seconds": "s"},
        "timing_s": dict(run.timing_s),
    }
    if run.phases is not None and stack is not None:
        document["phases"] = [{
            "index": p.index, "value": p.value, "label": p.label, "files": files.get("phases", {}).get(p.index, {}),
            "axis_to_centerline_mm": p.axis_to_centerline_mm, "consistency_mm": p.consistency_mm,
            "flagged": p.flagged, "flags": p.flags, "registration_notes": p.registration_notes,
            "rigid_correction_mm": None if p.correction is None else p.correction.size_mm,
            "rigid_correction_deg": None if p.correction is None else p.correction.angle_deg,
            "rigid_correction_of": p.corrected or None,
            "bend_correction_mm": (lambda b: None if b is None else b.size_mm)(run.bends.get(p.index)),
            "length_mm": p.measurements["length_mm"],
            **{k: p.measurements[k] for k in ("landmark_to_start_mm", "landmark_to_end_mm") if k in p.measurements},
            "diameter_mean_mm": p.measurements["diameter_mean_mm"],
        } for p in run.phases]
        document["index"] = {"name": stack.index_name, "unit": stack.index_unit}
        document["propagation"] = {"source": run.fields.source,
                                   **{k: v for k, v in run.fields.method.items() if k != "qc"},
                                   "consistency_limit_mm": propagation.CONSISTENCY_LIMIT_MM,
                                   "device_motion": "the phase field, then a rigid match of the device's "
                                                    "neighbourhood and a sideways bend per 6 mm piece",
                                   "centerline": "lumen centroid per cross-section beside the device, metal "
                                                 "excluded, seen in each phase's image"}
    if run.centerline is not None and run.chosen.ok:
        document["axis_to_centerline_mm"] = propagation.axis_to_centerline_mm(run.chosen.reconstruction.axis,
                                                                              run.centerline)
        document["centerline_source"] = ("the vessel segmentation" if run.region.vessel is not None
                                         else "the lumen in the image, metal excluded")
    return document


def _reporter(progress, cancel):
    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(max(fraction, 0.0), 1.0), message)
        if cancel is not None:
            cancel.raise_if_cancelled()
    return report
