"""A 4D cardiac CT phantom with analytic motion, built from a real whole-heart label map.

The anatomy is a real manual label map (``ct_heart.load_whole_heart_labels``). Motion through the cycle is
an analytic map, so the true position of every point at every phase is known exactly:

* contraction toward the LV long axis, incompressible in cross-section (the myocardium thickens as the cavity
  narrows) and fading away from the axis and beyond the base and apex;
* longitudinal shortening: the base descends toward the apex, the atria and great vessels follow it;
* twist about the long axis, apex and base turning in opposite senses, fading away from the axis;
* a translation of the whole heart.

The map is written as a pull-back ``x_reference = phi_t(x)`` for every point ``x`` at phase ``t``, so phase ``t``'s
labels are the reference labels sampled at ``phi_t`` and the true displacement field is ``phi_t(x) - x``. The CT
of each phase is the reference HU map (blood pools, myocardium, fat, lung) warped by the same map, blurred
and given fresh noise, so image content moves exactly as the labels do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import ct_heart
from .ct_heart import LabelVolume

from ..geometry import Box

LV_MYOCARDIUM, LEFT_ATRIUM, LEFT_VENTRICLE, RIGHT_ATRIUM, RIGHT_VENTRICLE, AORTA, PULMONARY_ARTERY = range(1, 8)


@dataclass(frozen=True)
class Motion:
    """End-systolic amplitudes of the analytic motion (the motion at other phases is a fraction of it)."""

    radial_mm: float = 5.0  # inward displacement of the end-diastolic endocardium toward the long axis
    longitudinal_mm: float = 8.0  # descent of the base toward the apex
    twist_deg: float = 10.0  # base-to-apex twist; the base turns by 70 % of it, the apex by -30 %
    translation_mm: tuple[float, float, float] = (2.0, -2.0, 3.0)  # whole-heart shift, RAS
    systole_fraction: float = 0.35  # end systole, as a fraction of the R-R interval

    def scaled(self, factor: float) -> Motion:
        return replace(
            self,
            radial_mm=self.radial_mm * factor,
            longitudinal_mm=self.longitudinal_mm * factor,
            twist_deg=self.twist_deg * factor,
            translation_mm=tuple(v * factor for v in self.translation_mm),
        )


@dataclass(frozen=True)
class LVFrame:
    """The LV's long axis (apex to base, RAS mm), its length and end-diastolic cavity radius."""

    apex: np.ndarray
    axis: np.ndarray
    length_mm: float
    radius_mm: float


def lv_frame(volume: LabelVolume) -> LVFrame:
    """Long axis from the principal axis of the LV cavity and myocardium, pointing from the apex to the LA."""
    lv = np.argwhere((volume.labels == LEFT_VENTRICLE) | (volume.labels == LV_MYOCARDIUM))
    cavity = np.argwhere(volume.labels == LEFT_VENTRICLE)
    atrium = np.argwhere(volume.labels == LEFT_ATRIUM)
    if len(cavity) == 0 or len(atrium) == 0:
        raise ValueError("the label map needs an LV cavity (3) and a left atrium (2) to place the long axis")
    to_ras = volume.ijk_to_ras

    def ras(index: np.ndarray) -> np.ndarray:
        return index[:, ::-1] @ to_ras[:3, :3].T + to_ras[:3, 3]

    points = ras(lv)
    centre = points.mean(axis=0)
    _, _, vectors = np.linalg.svd(points - centre, full_matrices=False)
    axis = vectors[0]
    if np.dot(ras(atrium).mean(axis=0) - centre, axis) < 0:
        axis = -axis
    along = (points - centre) @ axis
    apex = centre + axis * along.min()
    cavity_points = ras(cavity)
    cavity_along = (cavity_points - apex) @ axis
    length = float(cavity_along.max())
    voxel_mm3 = abs(np.linalg.det(to_ras[:3, :3]))
    radius = float(np.sqrt(len(cavity) * voxel_mm3 / (np.pi * 0.66 * length)))  # a paraboloid-like cavity
    return LVFrame(apex=apex, axis=axis, length_mm=length, radius_mm=radius)


def cycle_amplitude(fraction: float, systole_fraction: float = 0.35) -> float:
    """Share of the end-systolic motion at a point of the R-R interval (0 at end diastole, 1 at end systole).

    Ejection and rapid filling are a raised cosine peaking at ``systole_fraction``; late diastole adds a small
    atrial kick, so no two phases of a 10-phase study are identical.
    """
    fraction = fraction % 1.0
    filled = 2.0 * systole_fraction + 0.05
    if fraction <= filled:
        return float(0.5 * (1.0 - np.cos(np.pi * fraction / systole_fraction))) if fraction <= systole_fraction else float(
            0.5 * (1.0 + np.cos(np.pi * (fraction - systole_fraction) / (filled - systole_fraction)))
        )
    return float(0.1 * np.sin(np.pi * (fraction - filled) / (1.0 - filled)))


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def pullback(points_ras: np.ndarray, frame: LVFrame, motion: Motion, amplitude: float) -> np.ndarray:
    """Where each point at a phase of the given amplitude was in the reference phase (RAS mm, [N, 3])."""
    if amplitude == 0.0:
        return np.array(points_ras, dtype=float, copy=True)
    y = np.asarray(points_ras, dtype=float) - amplitude * np.asarray(motion.translation_mm, dtype=float)
    relative = y - frame.apex
    z = relative @ frame.axis
    rho = relative - z[:, None] * frame.axis
    r = np.linalg.norm(rho, axis=1)
    length = frame.length_mm

    # Twist: undo a rotation about the axis that grows from -30 % at the apex to 70 % at the base.
    basis_u = np.cross(frame.axis, [1.0, 0.0, 0.0])
    if np.linalg.norm(basis_u) < 0.1:
        basis_u = np.cross(frame.axis, [0.0, 1.0, 0.0])
    basis_u /= np.linalg.norm(basis_u)
    basis_v = np.cross(frame.axis, basis_u)
    a, b = rho @ basis_u, rho @ basis_v
    theta = np.deg2rad(motion.twist_deg) * (_smoothstep(z / length) - 0.3) / (1.0 + (r / (1.5 * frame.radius_mm)) ** 2)
    angle = -amplitude * theta
    a, b = a * np.cos(angle) - b * np.sin(angle), a * np.sin(angle) + b * np.cos(angle)

    # Radial contraction: the cross-sectional area between the axis-near core and a point is kept, so the wall
    # thickens; it fades toward the axis (no singularity), and beyond the apex and the base. Around the LV the
    # area also grows by the longitudinal shortening (s = dz_reference/dz), so the myocardium keeps its volume.
    inner = frame.radius_mm - amplitude * motion.radial_mm
    a2 = max(frame.radius_mm**2 - inner**2, 0.0)
    beyond = np.maximum(z - length, 0.0) + np.maximum(-z, 0.0)
    fade = np.exp(-0.5 * (beyond / 20.0) ** 2)
    core = 1.0 - np.exp(-((r / (0.5 * inner)) ** 2)) if inner > 0 else np.ones_like(r)
    u = np.clip(z / length, 0.0, 1.0)
    shortening = 1.0 + amplitude * motion.longitudinal_mm / length * 6.0 * u * (1.0 - u)
    wall = np.maximum(r - (frame.radius_mm + 12.0), 0.0)  # full compensation up to the epicardium, fading beyond
    shortening = 1.0 + (shortening - 1.0) * np.exp(-((wall / 15.0) ** 2))
    r_reference = r + (np.sqrt((r * r + a2) / shortening) - r) * core * fade
    scale = np.divide(r_reference, r, out=np.ones_like(r), where=r > 1e-9)
    a, b = a * scale, b * scale

    # Longitudinal shortening: points toward the base came from further up; above the base all move alike.
    z_reference = z + amplitude * motion.longitudinal_mm * _smoothstep(z / length)
    return frame.apex + z_reference[:, None] * frame.axis + a[:, None] * basis_u + b[:, None] * basis_v


def _grid_points(ijk_to_ras: np.ndarray, ks: np.ndarray, js: np.ndarray, is_: np.ndarray) -> np.ndarray:
    """RAS points of the voxels ``ks × js × is_`` (index arrays), ``[N, 3]`` in C order."""
    k, j, i = np.meshgrid(ks, js, is_, indexing="ij")
    index = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    return index @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]


def _ras_to_index(points_ras: np.ndarray, ijk_to_ras: np.ndarray) -> np.ndarray:
    """Continuous (k, j, i) indices of RAS points, ``[N, 3]``."""
    inverse = np.linalg.inv(ijk_to_ras)
    return (points_ras @ inverse[:3, :3].T + inverse[:3, 3])[:, ::-1]


class _Motion:
    """The pull-back of one phase as voxel index offsets, on knots every ``stride`` voxels (exact at the knots).

    On grids finer than about 1 mm the analytic map is evaluated on knots about 1 mm apart and interpolated
    trilinearly in between (the map is smooth over tens of millimetres, so the two differ by far less than a
    micrometre); the phantom's images, labels and reported truth field all use this same interpolated map.
    """

    def __init__(self, shape, ijk_to_ras, frame: LVFrame, motion: Motion, amplitude: float):
        spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
        self.stride = max(1, int(1.0 / float(spacing.min())))
        self.shape = shape
        self.ijk_to_ras = ijk_to_ras
        knots = [np.arange(0, n - 1 + self.stride, self.stride) for n in shape]
        points = _grid_points(ijk_to_ras, *knots)
        source = _ras_to_index(pullback(points, frame, motion, amplitude), ijk_to_ras)
        target = _ras_to_index(points, ijk_to_ras)
        self.offsets = (source - target).reshape(*[len(k) for k in knots], 3).astype(np.float32)

    def source_indices(self, box: tuple[slice, slice, slice]) -> np.ndarray:
        """Continuous source (k, j, i) of every voxel of the box, ``[3, *box shape]``."""
        ranges = [np.arange(s.start, s.stop) for s in box]
        grid = np.stack(np.meshgrid(*ranges, indexing="ij")).astype(np.float32)
        if self.stride == 1:
            offsets = self.offsets[box[0], box[1], box[2]]
            return grid + np.moveaxis(offsets, -1, 0)
        knots = grid / self.stride
        return grid + np.stack(
            [ndimage.map_coordinates(self.offsets[..., c], knots, order=1, mode="nearest") for c in range(3)]
        )

    def displacement_ras(self, box) -> np.ndarray:
        """The pull-back displacement ``phi_t(x) - x`` in RAS mm, ``[*box shape, 3]``."""
        ranges = [np.arange(s.start, s.stop) for s in box]
        grid = np.stack(np.meshgrid(*ranges, indexing="ij"))
        offsets_kji = self.source_indices(box) - grid
        return np.moveaxis(offsets_kji[::-1], 0, -1) @ self.ijk_to_ras[:3, :3].T


def _boxes(shape: tuple[int, int, int], chunk: int):
    for k0 in range(0, shape[0], chunk):
        yield (slice(k0, min(k0 + chunk, shape[0])), slice(0, shape[1]), slice(0, shape[2]))


@dataclass
class _LabelDistance:
    """Signed distance (mm, negative inside) of one label in its bounding box + margin, for sub-voxel warping."""

    value: int
    low: np.ndarray  # (k, j, i) of the box's first voxel
    distance: np.ndarray


def _label_distances(labels: np.ndarray, spacing_kji: np.ndarray, margin_mm: float) -> list[_LabelDistance]:
    out = []
    for value in [int(v) for v in np.unique(labels) if v]:
        index = np.argwhere(labels == value)
        pad = np.ceil(margin_mm / spacing_kji).astype(int) + 1
        low = np.maximum(index.min(axis=0) - pad, 0)
        high = np.minimum(index.max(axis=0) + pad + 1, labels.shape)
        mask = labels[low[0] : high[0], low[1] : high[1], low[2] : high[2]] == value
        outside = ndimage.distance_transform_edt(~mask, sampling=spacing_kji)
        inside = ndimage.distance_transform_edt(mask, sampling=spacing_kji)
        distance = np.where(mask, 0.5 * spacing_kji.min() - inside, outside - 0.5 * spacing_kji.min())
        out.append(_LabelDistance(value, low, np.minimum(distance, margin_mm).astype(np.float32)))
    return out


def reference_hu(volume: LabelVolume, rng: np.random.Generator, hu: dict[int, float] | None = None) -> np.ndarray:
    """The noiseless, unblurred HU map of the reference phase (as ``ct_heart.synthesize_ct`` draws it)."""
    hu = {**ct_heart.DEFAULT_HU, **(hu or {})}
    labels = volume.labels
    spacing = volume.spacing_mm[::-1]
    distance = ndimage.distance_transform_edt(labels == 0, sampling=spacing)
    image = np.full(labels.shape, ct_heart.LUNG_HU, np.float32)
    image[distance <= 25.0] = ct_heart.SOFT_TISSUE_HU
    image[distance <= 4.0] = ct_heart.FAT_HU
    for value, units in hu.items():
        image[labels == value] = units
    shading = ndimage.gaussian_filter(rng.normal(0.0, 1.0, labels.shape).astype(np.float32), 20.0 / spacing)
    shading *= 15.0 / max(float(np.abs(shading).max()), 1e-6)
    image += np.where(labels > 1, shading, 0.0).astype(np.float32)
    return image


@dataclass
class PhantomPhase:
    index: int
    percent: float  # position in the R-R interval, %
    amplitude: float  # share of the end-systolic motion
    image: np.ndarray  # [K, J, I] int16 HU
    labels: np.ndarray  # [K, J, I] uint8, the truth at this phase


@dataclass
class Phantom4D:
    """Everything needed to make the phases one at a time (so a full-size study never sits in memory whole)."""

    reference: LabelVolume  # labels and grid of the 0 % phase (end diastole)
    frame: LVFrame
    motion: Motion
    percents: list[float]
    noise_hu: float
    blur_mm: float
    seed: int
    source: str = ""
    _hu: np.ndarray | None = field(default=None, repr=False)
    _distances: list[_LabelDistance] | None = field(default=None, repr=False)

    @property
    def ijk_to_ras(self) -> np.ndarray:
        return self.reference.ijk_to_ras

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.reference.labels.shape)

    def amplitude(self, phase: int) -> float:
        """Share of the end-systolic motion at a phase; the label map's own anatomy is phase 0 % (0)."""
        return cycle_amplitude(self.percents[phase] / 100.0, self.motion.systole_fraction)

    def _motion(self, phase: int) -> _Motion:
        return _Motion(self.shape, self.ijk_to_ras, self.frame, self.motion, self.amplitude(phase))

    def truth_displacement(self, phase: int) -> np.ndarray:
        """Pull-back displacement (RAS mm, ``[K, J, I, 3]``) from this phase to the label map's anatomy."""
        motion = self._motion(phase)
        out = np.empty((*self.shape, 3), np.float32)
        for box in _boxes(self.shape, 16):
            out[box] = motion.displacement_ras(box)
        return out

    def truth_labels(self, phase: int) -> np.ndarray:
        """The label map at a phase: each label's signed distance carried by the motion, so sub-voxel motion
        shows (nearest-neighbour label warping would drop every shift under half a voxel)."""
        return self._render(phase, image=False)[1]

    def phase(self, phase: int) -> PhantomPhase:
        image, labels = self._render(phase, image=True)
        return PhantomPhase(phase, self.percents[phase], self.amplitude(phase), image, labels)

    def _render_box(self) -> Box:
        return Box.around(self.reference.labels > 0, 45.0, self.reference.spacing_mm[::-1])

    def _render(self, phase: int, image: bool) -> tuple[np.ndarray | None, np.ndarray]:
        spacing = self.reference.spacing_mm[::-1]
        if self._distances is None:
            self._distances = _label_distances(self.reference.labels, spacing, 20.0)
        if image and self._hu is None:
            self._hu = reference_hu(self.reference, np.random.default_rng([self.seed, 10_000]))
        motion = self._motion(phase)
        labels = np.zeros(self.shape, np.uint8)
        hu = np.full(self.shape, ct_heart.LUNG_HU, np.float32) if image else None
        # Beyond 25 mm from the heart the phantom is uniform lung, which no motion changes: only the heart, its
        # surroundings and the largest motion need rendering.
        render = self._render_box()
        for k0 in range(render.low[0], render.high[0], 24):
            box = (slice(k0, min(k0 + 24, render.high[0])), render.slices[1], render.slices[2])
            source = motion.source_indices(box)
            best = np.full(source.shape[1:], np.inf, np.float32)
            chunk_labels = labels[box]
            for item in self._distances:
                local = source - item.low[:, None, None, None].astype(np.float32)
                inside_box = np.ones(best.shape, bool)
                for axis in range(3):
                    inside_box &= (local[axis] >= 0) & (local[axis] <= item.distance.shape[axis] - 1)
                if not inside_box.any():
                    continue
                values = ndimage.map_coordinates(item.distance, local[:, inside_box], order=1, mode="nearest")
                current = best[inside_box]
                take = (values < 0) & (values < current)
                current[take] = values[take]
                best[inside_box] = current
                selected = chunk_labels[inside_box]
                selected[take] = item.value
                chunk_labels[inside_box] = selected
            if hu is not None:
                hu[box] = ndimage.map_coordinates(self._hu, source, order=1, mode="constant", cval=ct_heart.LUNG_HU)
        if hu is None:
            return None, labels
        rng = np.random.default_rng([self.seed, phase])
        hu[render.slices] = ndimage.gaussian_filter(hu[render.slices], self.blur_mm / spacing)
        hu += rng.normal(0.0, self.noise_hu, hu.shape).astype(np.float32)
        return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), labels

    def phases(self) -> Iterator[PhantomPhase]:
        for index in range(len(self.percents)):
            yield self.phase(index)


def synthetic_labels(spacing_mm: float = 2.5) -> LabelVolume:
    """A simple analytic heart (no data needed): an ellipsoidal LV cavity in a 9 mm myocardial shell cut at the
    base, a spherical LA above it and an aortic tube beside it, with an oblique long axis.

    For the in-Slicer self-test and quick checks; the validation uses the real label maps.
    """
    axis = np.array([0.55, -0.6, 0.58])
    axis /= np.linalg.norm(axis)
    side = np.cross(axis, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    apex = np.zeros(3)
    base_height = 70.0
    la_centre = apex + axis * (base_height + 20.0) - side * 8.0
    aorta_start = apex + axis * (base_height - 5.0) + side * 24.0
    aorta_axis = axis * 0.8 + side * 0.2 + np.cross(axis, side) * 0.3
    aorta_axis /= np.linalg.norm(aorta_axis)
    corners = [apex - 45.0, la_centre + 45.0, aorta_start + aorta_axis * 50.0 + 30.0, aorta_start - 30.0]
    low, high = np.min(corners, axis=0), np.max(corners, axis=0)
    size = np.ceil((high - low) / spacing_mm).astype(int) + 1
    matrix = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    matrix[:3, 3] = low
    k, j, i = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    points = np.stack([i, j, k], axis=-1) * spacing_mm + low
    relative = points - apex
    z = relative @ axis
    radial = np.linalg.norm(relative - z[..., None] * axis, axis=-1)
    below_base = z <= base_height
    # cavity: an ellipsoid centred 40 mm up the axis, semi-axes 20, 20 and 40 mm
    cavity = ((radial / 20.0) ** 2 + ((z - 40.0) / 40.0) ** 2 <= 1.0) & below_base
    wall = ((radial / 29.0) ** 2 + ((z - 40.0) / 49.0) ** 2 <= 1.0) & below_base & ~cavity
    atrium = np.linalg.norm(points - la_centre, axis=-1) <= 22.0
    along = (points - aorta_start) @ aorta_axis
    tube = np.linalg.norm(points - aorta_start - along[..., None] * aorta_axis, axis=-1)
    aorta = (tube <= 13.0) & (along >= 0.0) & (along <= 50.0)
    labels = np.zeros(z.shape, np.uint8)
    labels[atrium] = LEFT_ATRIUM
    labels[aorta & ~atrium] = AORTA
    labels[wall] = LV_MYOCARDIUM
    labels[cavity] = LEFT_VENTRICLE
    return LabelVolume(labels, matrix)


def make_synthetic_phantom(spacing_mm: float = 2.5, phases: int = 4, motion: Motion | None = None, seed: int = 0,
                           noise_hu: float = 20.0, blur_mm: float = 1.0) -> Phantom4D:
    """The analytic heart of ``synthetic_labels`` with the same analytic motion as the real-anatomy phantom."""
    return _beating(synthetic_labels(spacing_mm), phases, motion, seed, noise_hu, blur_mm, "synthetic")


def make_phantom(
    labels_path: str | Path,
    spacing_mm: float | None = 2.0,
    phases: int = 10,
    motion: Motion | None = None,
    seed: int = 0,
    noise_hu: float = 25.0,
    blur_mm: float = 0.7,
    margin_mm: float | None = 30.0,
) -> Phantom4D:
    """A 4D phantom on the label map's grid (or an isotropic ``spacing_mm`` one), cropped to the heart + margin.

    Phases are evenly spaced over the R-R interval (0 %, 10 %, … for 10 phases); ``margin_mm=None`` keeps the
    whole 512×512 grid (the full-size benchmark). ``spacing_mm=None`` keeps the native 0.49×0.49×0.625 mm.
    """
    volume = ct_heart.load_whole_heart_labels(labels_path, spacing_mm)
    if margin_mm is not None:
        volume = ct_heart.crop_to_labels(volume, margin_mm)
    return _beating(volume, phases, motion, seed, noise_hu, blur_mm, str(labels_path))


def _beating(volume: LabelVolume, phases: int, motion: Motion | None, seed: int, noise_hu: float, blur_mm: float,
             source: str) -> Phantom4D:
    """``volume`` as the reference phase of a cycle of ``phases`` evenly spaced over the R-R interval."""
    return Phantom4D(reference=volume, frame=lv_frame(volume), motion=motion or Motion(),
                     percents=[100.0 * n / phases for n in range(phases)], noise_hu=noise_hu, blur_mm=blur_mm,
                     seed=seed, source=source)
