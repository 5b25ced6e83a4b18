"""Carry the chosen reconstruction, made at one phase, to every phase of a 4D CT, by moving it.

The phase transforms are FourDCT's (Docs/FourDCT.md): per phase a displacement field u in Slicer's resampling
convention, taking a point x of that phase to x + u(x) at the reference phase. A reference-phase point p is
carried to the phase by inverting the field, solving x + u(x) = p by fixed-point iteration (the fields are
smooth, so a few steps converge far below a micrometre). The fields come from an existing ``propagate`` output
or are computed here with the same FourDCT registration, restricted to a box around the device, with an
intensity window that keeps the metal visible.

Per phase the device is checked against the metal seen there: across it, the median distance between the moved
envelope and the metal peak on each envelope ray that meets metal; along it, how far the metal slid along the
device since the reconstruction phase (the lag that best matches its axial signature with the reconstruction
phase's). The larger is the phase's consistency figure,
flagged above 0.5 mm. The device is never re-segmented per phase; a rigid correction after the phase field
(``refine_rigid``) settles it on its own neighbourhood of the image.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.geometry import Box

from . import sections
from .model import STATION_STEP_MM, Reconstruction, Region

#: A phase whose moved device and metal disagree by more than this (mm) is flagged.
CONSISTENCY_LIMIT_MM = 0.5


@dataclass
class PhaseField:
    """One phase's displacement field (RAS mm, ``[K, J, I, 3]``) on its grid (phase points to reference)."""

    displacement: np.ndarray
    ijk_to_ras: np.ndarray

    def at(self, points: np.ndarray) -> np.ndarray:
        inverse = np.linalg.inv(self.ijk_to_ras)
        ijk = np.asarray(points, float) @ inverse[:3, :3].T + inverse[:3, 3]
        coordinates = ijk[:, ::-1].T
        return np.stack([ndimage.map_coordinates(self.displacement[..., c], coordinates, order=1, mode="nearest")
                         for c in range(3)], axis=1)

    def to_phase(self, points: np.ndarray, iterations: int = 12) -> np.ndarray:
        """Reference-phase points carried to this phase (the field's inverse)."""
        points = np.asarray(points, float)
        moved = points - self.at(points)
        for _ in range(iterations):
            moved = points - self.at(moved)
        return moved


@dataclass
class PhaseFields:
    reference_phase: int
    fields: list[PhaseField]
    source: str  # where the fields came from, in words
    method: dict = field(default_factory=dict)
    seconds: float = 0.0


def read_propagate_output(folder: str | Path, count: int) -> PhaseFields:
    """The phase transforms of a ``cardiacsuite propagate`` output folder (``transforms.seq.nrrd`` and
    ``results.json``), checked against the study's number of phases."""
    import slicer

    folder = Path(folder)
    path, document_path = folder / "transforms.seq.nrrd", folder / "results.json"
    for required in (path, document_path):
        if not required.exists():
            raise InputError(f"{folder}: no {required.name}; give the output folder of 'cardiacsuite propagate'")
    try:
        document = json.loads(document_path.read_text(encoding="utf-8"))
    except ValueError:
        raise InputError(f"{document_path}: not a results document of 'cardiacsuite propagate'") from None
    scene = slicer.vtkMRMLScene()
    try:
        sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode")
        storage = scene.AddNewNodeByClass("vtkMRMLTransformSequenceStorageNode")
        storage.SetFileName(str(path))
        if not storage.ReadData(sequence):
            raise InputError(f"{path}: not a readable transform sequence")
        fields = fields_from_sequence(sequence, count, str(path))
    finally:
        scene.Clear(True)
    fields.reference_phase = int(document.get("reference_phase", fields.reference_phase))
    fields.source = f"propagate output {folder}"
    fields.method = dict(document.get("method", {}))
    return fields


def fields_from_sequence(sequence, count: int, what: str = "the transform sequence") -> PhaseFields:
    """Phase fields from a FourDCT transform sequence node (a scene's, or one read from a file). The reference
    phase is the one whose field is zero."""
    from vtk.util import numpy_support

    if sequence.GetNumberOfDataNodes() != count:
        raise InputError(f"{what} holds {sequence.GetNumberOfDataNodes()} phase transforms but the study has {count} "
                         "phases; give the phase transforms of this study")
    fields = []
    for index in range(count):
        grid = _grid_of(sequence.GetNthDataNode(index).GetTransformFromParent())
        if grid is None:
            raise InputError(f"{what}: phase {index} is not a displacement-field transform")
        image, direction = grid
        dims = image.GetDimensions()
        values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0], 3)
        matrix = np.eye(4)
        matrix[:3, :3] = direction @ np.diag(image.GetSpacing())
        matrix[:3, 3] = image.GetOrigin()
        fields.append(PhaseField(np.array(values, np.float32), matrix))
    sizes = [float(np.abs(f.displacement).max()) for f in fields]
    return PhaseFields(int(np.argmin(sizes)), fields, what)


def _grid_of(transform):
    """(displacement image, 3×3 direction) of a grid transform, possibly inside a general transform."""
    import slicer

    candidates = [transform]
    if hasattr(transform, "GetNumberOfConcatenatedTransforms"):
        candidates += [transform.GetConcatenatedTransform(i) for i in range(transform.GetNumberOfConcatenatedTransforms())]
    for candidate in candidates:
        if isinstance(candidate, slicer.vtkOrientedGridTransform):
            matrix = candidate.GetGridDirectionMatrix()
            direction = np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])
            return candidate.GetDisplacementGrid(), direction
    return None


#: The phases are matched in the device's region grown by this much (mm), so a device that moves further than
#: the region's own margin over the cycle stays inside the images compared.
MOTION_MARGIN_MM = 15.0


def phase_box(region: Region, image_shape) -> tuple[Box, np.ndarray]:
    """The region's box grown by MOTION_MARGIN_MM, clipped to the image, and its IJK-to-RAS."""
    pad = np.ceil(MOTION_MARGIN_MM / region.spacing_mm).astype(int)
    low = np.maximum(np.array(region.box.low) - pad, 0)
    high = np.minimum(np.array(region.box.high) + pad, np.asarray(image_shape))
    box = Box(tuple(int(v) for v in low), tuple(int(v) for v in high))
    parent = region.ijk_to_ras.copy()
    parent[:3, 3] = region.ijk_to_ras[:3, 3] - region.ijk_to_ras[:3, :3] @ np.array(region.box.low[::-1], float)
    return box, box.ijk_to_ras(parent)


def register_phases(stack, reference_phase: int, device_mask: np.ndarray, margin_mm: float = 10.0,
                    grid_mm: float = 1.0, window_hu: tuple[float, float] = (-300.0, 1500.0),
                    progress: Callable[[float, str], None] | None = None, cancel=None) -> PhaseFields:
    """Phase fields from FourDCT's registration, in a box of ``margin_mm`` around the device mask."""
    from FourDCTLib.propagation import PropagationSettings, Segment, propagate
    from FourDCTLib.registration import RegistrationSettings

    settings = PropagationSettings(
        registration=RegistrationSettings(grid_mm=grid_mm, window_hu=window_hu), margin_mm=margin_mm)
    started = time.perf_counter()
    result = propagate(stack, reference_phase, device_mask.astype(np.uint8), [Segment(1, "Device")], settings,
                       progress=progress, cancel=cancel)
    fields = [PhaseField(result.displacement_ras(n), result.grid_ijk_to_ras) for n in range(stack.count)]
    return PhaseFields(reference_phase, fields, "registered here (FourDCT demons, box around the device)", {
        "registration": settings.registration.method, "strategy": settings.strategy, "grid_mm": grid_mm,
        "margin_mm": margin_mm, "window_hu": list(window_hu),
        "qc": [phase.qc() for phase in result.phases],
    }, time.perf_counter() - started)


def mapping(fields: PhaseFields, source: int, phase: int,
            correction: RigidCorrection | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Points at phase ``source`` to where they are at ``phase``: forward through ``source``'s field to the
    reference phase, then through the inverse of ``phase``'s, then the device's rigid correction if any."""
    def carry(points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, float)
        if source != fields.reference_phase:
            points = points + fields.fields[source].at(points)
        if phase != fields.reference_phase:
            points = fields.fields[phase].to_phase(points)
        return points if correction is None else correction.apply(points)
    return carry


@dataclass(frozen=True)
class RigidCorrection:
    """A small rotation (about ``center``) and translation applied after the phase field, mm and radians."""

    center: np.ndarray
    rotation: np.ndarray  # 3×3
    translation: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, float) - self.center) @ self.rotation.T + self.center + self.translation

    @property
    def size_mm(self) -> float:
        return float(np.linalg.norm(self.translation))

    @property
    def angle_deg(self) -> float:
        return float(np.degrees(np.arccos(np.clip((np.trace(self.rotation) - 1) / 2, -1, 1))))


def _rotation(vector: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(vector).as_matrix()


def device_samples(reference_image: np.ndarray, ijk_to_ras: np.ndarray, device: Reconstruction,
                   reach_mm: float = 2.0, step_mm: float = 0.25) -> np.ndarray:
    """Points around the device's envelope (within ``reach_mm`` of it, beyond its ends too) inside the image:
    where a phase is matched with the reconstruction phase."""
    extended, _ = sections.extend(device.axis, reach_mm, STATION_STEP_MM)
    radius = float(device.radii.mean())
    rings = np.arange(max(radius - reach_mm, 0.0), radius + reach_mm + 1e-9, step_mm)
    sectors = max(int(2 * np.pi * (radius + reach_mm) / (2 * step_mm)), 24)
    points = sections.polar_grid(sections.resample(extended, step_mm * 2), rings, sectors).reshape(-1, 3)
    values = sections.sample(reference_image, ijk_to_ras, points, fill=np.nan)
    keep = np.flatnonzero(np.isfinite(values))
    if len(keep) > MAX_SAMPLES:  # a large frame: an even random share keeps the match well posed and quick
        keep = np.sort(np.random.default_rng(0).choice(keep, MAX_SAMPLES, replace=False))
    return points[keep]


#: Most template points a rigid correction is matched on.
MAX_SAMPLES = 8000


def refine_rigid(reference_image: np.ndarray, phase_image: np.ndarray, ijk_to_ras: np.ndarray, points: np.ndarray,
                 carry: Callable[[np.ndarray], np.ndarray], window_hu: tuple[float, float]) -> tuple[RigidCorrection, float]:
    """The rigid correction, after the phase field, that best matches the device's neighbourhood (``points``,
    at the reconstruction phase) in the phase image with the reconstruction phase's image (least squares on
    intensities clipped to ``window_hu``), coarse to fine. The field moves the anatomy; this settles the device
    along its own axis, where a tube-like vessel gives a deformable registration little to hold on to, and
    catches a device the field left a few millimetres off. Returns the correction and the match's final cost."""
    from scipy.optimize import minimize

    moved = carry(points)
    center = moved.mean(axis=0)
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)[::-1]
    scale = float(window_hu[1] - window_hu[0])
    reference = np.clip(reference_image, *window_hu).astype(np.float32)
    phase = np.clip(phase_image, *window_hu).astype(np.float32)
    x = np.zeros(6)
    x[3:] = _translation_search(reference, phase, ijk_to_ras, points, moved, spacing, scale, window_hu)
    start_cost = final_cost = 0.0
    for level, sigma_mm in enumerate(RIGID_SCALES_MM):
        sigma = np.maximum(sigma_mm / spacing, 0.6)
        target = sections.sample(ndimage.gaussian_filter(reference, sigma), ijk_to_ras, points, fill=window_hu[0])
        smooth = ndimage.gaussian_filter(phase, sigma)

        def cost(parameters: np.ndarray) -> float:
            correction = RigidCorrection(center, _rotation(parameters[:3] * 0.01), parameters[3:])
            sampled = sections.sample(smooth, ijk_to_ras, correction.apply(moved), fill=window_hu[0])
            return float(np.mean(((sampled - target) / scale) ** 2))

        if level == len(RIGID_SCALES_MM) - 1:
            start_cost = cost(np.zeros(6))
        best = minimize(cost, x, method="L-BFGS-B", options={"eps": 1e-3, "maxiter": 100, "ftol": 1e-7})
        x, final_cost = best.x, float(best.fun)
    if final_cost > start_cost:
        return RigidCorrection(center, np.eye(3), np.zeros(3)), start_cost
    return RigidCorrection(center, _rotation(x[:3] * 0.01), x[3:]), final_cost


#: Reach (mm) and step of the translation search that starts the rigid match, on the most blurred images.
SEARCH_MM, SEARCH_STEP_MM = 6.0, 1.0
#: Points the translation search samples (a random share of the template).
SEARCH_POINTS = 3000


def _translation_search(reference, phase, ijk_to_ras, points, moved, spacing, scale, window_hu) -> np.ndarray:
    """The best whole-millimetre shift within ±SEARCH_MM of the start, on images blurred by the coarsest scale:
    the gradient-based match then starts inside its capture range even after a large systolic jump."""
    sigma = np.maximum(RIGID_SCALES_MM[0] / spacing, 0.6)
    pick = np.random.default_rng(1).choice(len(points), min(SEARCH_POINTS, len(points)), replace=False)
    target = sections.sample(ndimage.gaussian_filter(reference, sigma), ijk_to_ras, points[pick], fill=window_hu[0])
    smooth = ndimage.gaussian_filter(phase, sigma)

    def best_of(centre: np.ndarray, reach: float, step: float) -> np.ndarray:
        steps = np.arange(-reach, reach + 1e-9, step)
        shifts = centre + np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
        costs = [float(np.mean(((sections.sample(smooth, ijk_to_ras, moved[pick] + shift, fill=window_hu[0]) - target)
                                / scale) ** 2)) for shift in shifts]
        return shifts[int(np.argmin(costs))]

    coarse = best_of(np.zeros(3), SEARCH_MM, 2 * SEARCH_STEP_MM)  # on a 2 mm lattice, then 1 mm around the best
    return best_of(coarse, SEARCH_STEP_MM, SEARCH_STEP_MM)


@dataclass
class BentCorrection:
    """Sideways shifts of overlapping pieces along the device, blended linearly between the pieces' centres:
    what a rigid correction leaves of a device that bends over the cycle."""

    axis: np.ndarray  # the device's axis at the reconstruction phase (positions are measured along it)
    centres_mm: np.ndarray  # arc length of each piece's centre
    shifts: np.ndarray  # (pieces, 3) RAS mm, perpendicular to the axis at each piece

    def apply(self, reference_points: np.ndarray, moved: np.ndarray) -> np.ndarray:
        s = sections.project_to_axis(np.asarray(reference_points, float), self.axis)[0]
        blended = np.stack([np.interp(s, self.centres_mm, self.shifts[:, c]) for c in range(3)], axis=1)
        return moved + blended

    @property
    def size_mm(self) -> float:
        return float(np.linalg.norm(self.shifts, axis=1).max()) if len(self.shifts) else 0.0


#: Pieces of a bending device: this long (mm), centres half as far apart; only for devices at least twice as long.
PIECE_MM = 6.0


def refine_bend(reference_image: np.ndarray, phase_image: np.ndarray, ijk_to_ras: np.ndarray, points: np.ndarray,
                carry: Callable[[np.ndarray], np.ndarray], window_hu: tuple[float, float],
                axis: np.ndarray) -> BentCorrection | None:
    """Sideways shifts per piece of the device (after the rigid correction), each matched like the rigid one but
    with two degrees of freedom across the axis, where a tube's position is well defined even when its struts
    bloom together; None for a device too short to bend measurably."""
    from scipy.optimize import minimize

    length = sections.length_mm(axis)
    if length < 2 * PIECE_MM:
        return None
    centres = np.linspace(0.0, length, max(int(round(length / (0.5 * PIECE_MM))), 2) + 1)
    s = sections.project_to_axis(points, axis)[0]
    moved = carry(points)
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)[::-1]
    scale = float(window_hu[1] - window_hu[0])
    sigma = np.maximum(RIGID_SCALES_MM[-1] / spacing, 0.6)
    target_image = ndimage.gaussian_filter(np.clip(reference_image, *window_hu).astype(np.float32), sigma)
    smooth = ndimage.gaussian_filter(np.clip(phase_image, *window_hu).astype(np.float32), sigma)
    target = sections.sample(target_image, ijk_to_ras, points, fill=window_hu[0])
    tangent_at = sections.tangents(carry(axis))
    s_axis = np.linspace(0.0, length, len(axis))
    shifts = np.zeros((len(centres), 3))
    for index, centre in enumerate(centres):
        near = np.abs(s - centre) <= 0.5 * PIECE_MM
        if near.sum() < 50:
            continue
        t = tangent_at[int(np.argmin(np.abs(s_axis - centre)))]
        u = np.cross(t, [1.0, 0.0, 0.0] if abs(t[0]) < 0.9 else [0.0, 1.0, 0.0])
        u /= np.linalg.norm(u)
        v = np.cross(t, u)

        def cost(x: np.ndarray) -> float:
            shifted = moved[near] + x[0] * u + x[1] * v
            sampled = sections.sample(smooth, ijk_to_ras, shifted, fill=window_hu[0])
            return float(np.mean(((sampled - target[near]) / scale) ** 2))

        best = minimize(cost, np.zeros(2), method="L-BFGS-B", bounds=[(-1.5, 1.5)] * 2, options={"eps": 1e-3})
        if best.fun < cost(np.zeros(2)):
            shifts[index] = best.x[0] * u + best.x[1] * v
    return BentCorrection(np.asarray(axis, float), centres, shifts)


def bent(carry: Callable[[np.ndarray], np.ndarray], bend: BentCorrection | None) -> Callable[[np.ndarray], np.ndarray]:
    """``carry`` followed by a device's bend correction."""
    if bend is None:
        return carry
    return lambda points: bend.apply(points, carry(points))


def then(carry: Callable[[np.ndarray], np.ndarray], correction: RigidCorrection) -> Callable[[np.ndarray], np.ndarray]:
    """``carry`` followed by a rigid correction."""
    return lambda points: correction.apply(carry(points))


#: Blur (mm) of the coarse-to-fine rigid match; the last is about the image's own scale.
RIGID_SCALES_MM = (2.0, 1.0, 0.3)


def move(reconstruction: Reconstruction, carry: Callable[[np.ndarray], np.ndarray]) -> Reconstruction:
    """The reconstruction with every point carried: axis, envelope, struts and surface."""
    import vtk
    from vtk.util import numpy_support

    # The axis follows the moved envelope (each station's ring centre), not the field at the axis itself: inside
    # the device the field lies in uniform blood, where the registration has nothing to go on.
    rings = carry(reconstruction.envelope_points().reshape(-1, 3)).reshape(reconstruction.radii.shape + (3,))
    axis = sections.resample(rings.mean(axis=1))
    envelope = rings.reshape(-1, 3)
    radii, _ = sections.envelope_radii(envelope, axis, reconstruction.radii.shape[1], window_mm=0.5)
    surface = vtk.vtkPolyData()
    surface.DeepCopy(reconstruction.surface)
    if surface.GetNumberOfPoints():
        points = numpy_support.vtk_to_numpy(surface.GetPoints().GetData()).astype(float)
        moved_points = vtk.vtkPoints()
        moved_points.SetData(numpy_support.numpy_to_vtk(carry(points), deep=True))
        surface.SetPoints(moved_points)
    return Reconstruction(
        id=reconstruction.id, name=reconstruction.name, axis=axis, radii=radii, surface=surface,
        struts=[carry(s) for s in reconstruction.struts],
        material=None if reconstruction.material is None else carry(reconstruction.material),
        method=dict(reconstruction.method), notes=list(reconstruction.notes),
    )


def metal_consistency_mm(image: np.ndarray, ijk_to_ras: np.ndarray, device: Reconstruction, region: Region) -> float:
    """Median distance (mm) between the device's envelope and the metal peak on each envelope ray that meets metal
    in this phase's image."""
    reach = 1.5
    offsets = np.arange(-reach, reach + 1e-9, 0.05)
    points = sections.ray_points(device.axis, device.radii, offsets)
    profile = sections.sample(image, ijk_to_ras, points, fill=region.background_hu)
    peak = profile.max(axis=2)
    metal = peak >= region.threshold_hu
    if not metal.any():
        return float("inf")
    where = offsets[profile.argmax(axis=2)]
    return float(np.median(np.abs(where[metal])))


#: Spacing (mm) of an axial signature's samples along the device.
SIGNATURE_STEP_MM = 0.1


def axial_signature(image: np.ndarray, ijk_to_ras: np.ndarray, device: Reconstruction, region: Region,
                    beyond_mm: float = 3.0, step_mm: float = SIGNATURE_STEP_MM, count: int | None = None) -> np.ndarray:
    """The metal along the device: per position from ``beyond_mm`` before its start to after its end, the mean
    over the sectors of the brightest value within 1 mm of the envelope. Its ends and ring pattern move with the
    device, so comparing it between phases shows a slide along the axis."""
    axis = device.axis
    fine = sections.resample(axis, step_mm)
    if count is not None and count != len(fine):  # the same samples as another phase's signature
        from CardiacSuiteLib.geometry import arc_length

        s_axis = arc_length(axis)
        positions = np.linspace(0.0, s_axis[-1], count)
        fine = np.stack([np.interp(positions, s_axis, axis[:, c]) for c in range(3)], axis=1)
    extended, _ = sections.extend(fine, beyond_mm, step_mm, ends=tuple(sections.tangents(axis)[[0, -1]]))
    radius = float(device.radii.mean())
    sectors = int(np.clip(2 * np.pi * radius / 0.5, 24, 180))
    peak = np.full((len(extended), sectors), -np.inf)
    for offset in np.arange(-1.0, 1.0 + 1e-9, 0.2):
        grid = sections.polar_grid(extended, np.array([max(radius + offset, 0.0)]), sectors)[:, :, 0, :]
        peak = np.maximum(peak, sections.sample(image, ijk_to_ras, grid, fill=region.background_hu))
    return np.clip(peak, region.background_hu, None).mean(axis=1)


def axial_slide_mm(reference: np.ndarray, signature: np.ndarray, step_mm: float = SIGNATURE_STEP_MM,
                   reach_mm: float = 2.0) -> float:
    """The shift (mm) of ``signature`` against ``reference`` that best matches them, within ±``reach_mm``."""
    lags = np.arange(-int(reach_mm / step_mm), int(reach_mm / step_mm) + 1)
    a = reference - reference.mean()
    b = signature - signature.mean()
    scores = []
    for lag in lags:
        if lag >= 0:
            x, y = a[: len(a) - lag], b[lag:]
        else:
            x, y = a[-lag:], b[: len(b) + lag]
        scores.append(float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-9)))
    scores = np.array(scores)
    best = int(np.argmax(scores))
    shift = float(lags[best])
    if 0 < best < len(lags) - 1:
        y0, y1, y2 = scores[best - 1 : best + 2]
        shift += 0.5 * (y0 - y2) / min(y0 - 2 * y1 + y2, -1e-12)
    return shift * step_mm


def centerline_near(reconstruction: Reconstruction, region: Region, beyond_mm: float = 3.0) -> np.ndarray:
    """The vessel centreline beside the device at the reference phase: per station, the centroid of the lumen
    in the cross-section (the vessel segmentation when given, else blood-level voxels that are not metal),
    from ``beyond_mm`` before the device to ``beyond_mm`` after it."""
    extended, _ = sections.extend(reconstruction.axis, beyond_mm, STATION_STEP_MM)
    if region.vessel is not None and region.vessel.any():
        lumen = region.vessel.astype(np.float32)
    else:
        tissue = float(np.percentile(region.image, 10))
        level = 0.5 * (region.background_hu + tissue)
        lumen = ((region.image >= level) & ~ndimage.binary_dilation(region.metal, iterations=1)).astype(np.float32)
    reach = float(reconstruction.radii.max()) + 2.0
    rings = np.arange(0.0, reach + 1e-9, 0.25)
    grid = sections.polar_grid(extended, rings, 72)
    inside = sections.sample(lumen, region.ijk_to_ras, grid, order=1, fill=0.0)
    weights = inside * rings[None, None, :]  # area weight of each ring sample
    total = weights.sum(axis=(1, 2))
    centres = (weights[..., None] * grid).sum(axis=(1, 2)) / np.maximum(total, 1e-9)[:, None]
    centres = np.where(total[:, None] > 0, centres, extended)
    return sections.smooth(centres, 1.0)


def axis_to_centerline_mm(axis: np.ndarray, centerline: np.ndarray) -> float:
    from CardiacSuiteLib.geometry import points_to_polyline_distance

    return float(points_to_polyline_distance(np.asarray(axis, float), np.asarray(centerline, float))[0].mean())
