"""Cross-sections of a contrast lumen in any plane: the image resampled in the plane, the lumen boundary as a
radius per azimuth (ray cast from a centre, sub-voxel), and the measurements planning documents ask for.

The boundary is where the CT crosses ``threshold`` (half-way between contrast blood and the tissue round it: the
edge of a blurred step, unbiased for any scanner blur), found along rays in the plane. Short dips below the
threshold inside the lumen (valve leaflets, a wire, noise) are stepped over: the wall is the first run below
the threshold longer than ``gap_mm``. Area and perimeter come from the polar curve after a low-pass in
azimuth (harmonics ≤ ``HARMONICS``), so voxel noise does not lengthen the perimeter; min and max diameters are
the shortest and longest chords through the section's centroid; the derived diameters are the SCCT ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Azimuth samples of a polar boundary (1°).
AZIMUTHS = 360
#: Harmonics kept when smoothing a boundary in azimuth (an annulus or vessel has no finer real detail).
HARMONICS = 12
#: Radial step of ray casting, mm.
RAY_STEP_MM = 0.1


def plane_basis(normal: np.ndarray, reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors u, v spanning the plane of ``normal``, u along ``reference`` projected when given."""
    n = np.asarray(normal, dtype=float) / np.linalg.norm(normal)
    if reference is not None:
        u = np.asarray(reference, dtype=float) - (np.asarray(reference, dtype=float) @ n) * n
        if np.linalg.norm(u) > 1e-6:
            u /= np.linalg.norm(u)
            return u, np.cross(n, u)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(n, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(n, u)


class Volume:
    """A CT array ``[k, j, i]`` with its IJK-to-RAS matrix, sampled at RAS points by trilinear interpolation."""

    def __init__(self, image: np.ndarray, ijk_to_ras: np.ndarray):
        self.image = np.asarray(image, dtype=np.float32)
        self.ijk_to_ras = np.asarray(ijk_to_ras, dtype=float)
        self._ras_to_ijk = np.linalg.inv(self.ijk_to_ras)
        self.spacing = float(np.min(np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)))

    def kji(self, ras: np.ndarray) -> np.ndarray:
        """(k, j, i) index coordinates, ``[3, ...]``, of RAS points ``[..., 3]``. An explicit sum, not a BLAS
        product: an (N, 3) × (3, 3) product spends more on threading than on arithmetic (60× on 2 busy cores)."""
        ras = np.asarray(ras, dtype=float)
        m = self._ras_to_ijk
        ijk = np.einsum("...j,ij->i...", ras, m[:3, :3]) + m[:3, 3].reshape((3,) + (1,) * (ras.ndim - 1))
        return ijk[::-1]

    def sample(self, ras: np.ndarray, order: int = 1, fill: float = -1000.0) -> np.ndarray:
        return ndimage.map_coordinates(self.image, self.kji(ras), order=order, mode="constant", cval=fill)

    def inside(self, ras: np.ndarray, margin_voxels: float = 0.0) -> np.ndarray:
        kji = self.kji(np.atleast_2d(ras)).reshape(3, -1).T
        shape = np.array(self.image.shape)
        return np.all((kji >= -margin_voxels) & (kji <= shape - 1 + margin_voxels), axis=1)


def sample_plane(volume: Volume, centre: np.ndarray, normal: np.ndarray, half_mm: float = 30.0,
                 pixel_mm: float = 0.25, u: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CT in the plane, ``[row, column]`` with rows along v and columns along u, centred on ``centre``."""
    u, v = plane_basis(normal, u)
    n = int(math.ceil(half_mm / pixel_mm))
    offsets = np.arange(-n, n + 1) * pixel_mm
    b, a = np.meshgrid(offsets, offsets, indexing="ij")
    ras = np.asarray(centre, float) + a[..., None] * u + b[..., None] * v
    return volume.sample(ras), u, v


def ray_radii(volume: Volume, centre: np.ndarray, directions: np.ndarray, threshold: float, max_mm: float,
              gap_mm: float = 2.5, start_mm: float = 0.0) -> np.ndarray:
    """Distance (mm) from ``centre`` along each unit direction to the lumen wall; NaN where none is found.

    The wall is the last crossing above→below ``threshold`` before the first run below it longer than
    ``gap_mm`` (after the ray has met the lumen), interpolated linearly between samples.
    """
    steps = np.arange(start_mm, max_mm + RAY_STEP_MM / 2, RAY_STEP_MM)
    directions = np.atleast_2d(np.asarray(directions, float))
    points = np.asarray(centre, float)[..., None, None, :] + steps[:, None] * directions[..., None, :]
    values = volume.sample(points)  # [..., rays, steps]
    inside = values >= threshold
    gap = max(1, int(round(gap_mm / RAY_STEP_MM)))
    run = ndimage.uniform_filter1d(inside.astype(np.float32), size=gap, axis=-1, origin=-(gap // 2),
                                   mode="nearest")
    blocked = (run <= 1e-6) & (np.cumsum(inside, axis=-1) > 0)  # a whole gap below threshold, after lumen
    count = inside.shape[-1]
    first_block = np.where(blocked.any(axis=-1), blocked.argmax(axis=-1), count)
    before = inside & (np.arange(count) < first_block[..., None])
    found = before.any(axis=-1)
    last = count - 1 - np.argmax(before[..., ::-1], axis=-1)  # last lumen sample before the wall
    found &= last + 1 < count  # still lumen at the end of the ray: no wall within max_mm
    nxt = np.minimum(last + 1, count - 1)
    v0 = np.take_along_axis(values, last[..., None], axis=-1)[..., 0]
    v1 = np.take_along_axis(values, nxt[..., None], axis=-1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(v0 != v1, (v0 - threshold) / (v0 - v1), 0.5)
    radius = steps[last] + np.clip(frac, 0.0, 1.0) * RAY_STEP_MM
    return np.where(found, radius, np.nan)


def smooth_periodic(values: np.ndarray, harmonics: int = HARMONICS) -> np.ndarray:
    """Low-pass a periodic sequence (NaNs filled by periodic interpolation first)."""
    values = np.asarray(values, float)
    good = np.isfinite(values)
    if good.sum() < 8:
        return values
    n = len(values)
    x = np.arange(n)
    filled = np.interp(x, x[good], values[good], period=n)
    spectrum = np.fft.rfft(filled)
    spectrum[harmonics + 1:] = 0.0
    return np.fft.irfft(spectrum, n)


@dataclass
class Section:
    """A lumen cross-section: its plane, boundary (RAS and in-plane), and measurements."""

    centre: np.ndarray  # the ray-casting centre, RAS
    normal: np.ndarray
    u: np.ndarray
    v: np.ndarray
    radii: np.ndarray  # smoothed, per azimuth from u towards v
    raw_radii: np.ndarray
    measures: dict

    @property
    def azimuths(self) -> np.ndarray:
        return np.linspace(0.0, 2.0 * math.pi, len(self.radii), endpoint=False)

    def boundary_2d(self) -> np.ndarray:
        phi = self.azimuths
        return np.column_stack([self.radii * np.cos(phi), self.radii * np.sin(phi)])

    def boundary_ras(self) -> np.ndarray:
        xy = self.boundary_2d()
        return self.centre + xy[:, :1] * self.u + xy[:, 1:] * self.v

    @property
    def centroid(self) -> np.ndarray:
        c = self.measures["centroid_2d"]
        return self.centre + c[0] * self.u + c[1] * self.v


def polygon_measures(xy: np.ndarray) -> dict:
    """Area (mm²), perimeter (mm), min/max diameter through the centroid (mm), derived diameters, eccentricity."""
    x, y = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = 0.5 * float(cross.sum())
    if abs(area) < 1e-9:
        raise ValueError("degenerate section")
    cx = float(((x + x1) * cross).sum() / (6.0 * area))
    cy = float(((y + y1) * cross).sum() / (6.0 * area))
    area = abs(area)
    perimeter = float(np.hypot(x1 - x, y1 - y).sum())
    # chords through the centroid: boundary radius about the centroid per direction, both ways
    rel = xy - [cx, cy]
    angle = np.arctan2(rel[:, 1], rel[:, 0])
    radius = np.hypot(rel[:, 0], rel[:, 1])
    order = np.argsort(angle)
    grid = np.linspace(-math.pi, math.pi, 720, endpoint=False)
    r = np.interp(grid, angle[order], radius[order], period=2 * math.pi)
    chords = r[:360] + r[360:]
    k_min, k_max = int(np.argmin(chords)), int(np.argmax(chords))
    d_min, d_max = float(chords[k_min]), float(chords[k_max])
    return {"area_mm2": area, "perimeter_mm": perimeter, "diameter_min_mm": d_min, "diameter_max_mm": d_max,
            "area_derived_diameter_mm": 2.0 * math.sqrt(area / math.pi),
            "perimeter_derived_diameter_mm": perimeter / math.pi,
            "eccentricity_index": 1.0 - d_min / d_max, "centroid_2d": [cx, cy],
            "diameter_min_direction_2d": [math.cos(grid[k_min]), math.sin(grid[k_min])],
            "diameter_max_direction_2d": [math.cos(grid[k_max]), math.sin(grid[k_max])]}


def lumen_section(volume: Volume, centre: np.ndarray, normal: np.ndarray, threshold: float, max_mm: float = 30.0,
                  gap_mm: float = 2.5, u: np.ndarray | None = None, recentre: int = 2,
                  harmonics: int = HARMONICS, rays: int = AZIMUTHS, spike_window: int = 31) -> Section:
    """The lumen section in the plane through ``centre`` (any point inside the lumen) of ``normal``.

    The ray centre moves to the section's centroid ``recentre`` times, so an off-centre start does not bias the
    boundary where rays graze it. ``rays`` rays round the centre; a ray more than 3 mm off the median of the
    ``spike_window`` rays round it has run into a side branch and is left out.
    """
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    u, v = plane_basis(n, u)
    phi = np.linspace(0.0, 2.0 * math.pi, rays, endpoint=False)
    directions = np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v
    point = np.asarray(centre, float)
    for attempt in range(recentre + 1):
        raw = ray_radii(volume, point, directions, threshold, max_mm, gap_mm)
        if np.isfinite(raw).sum() < rays // 2:
            raise ValueError("no lumen boundary round this point (the point is outside the lumen, or the lumen "
                             f"is wider than {max_mm:g} mm)")
        radii = smooth_periodic(reject_spikes(raw, window=spike_window), harmonics)
        xy = np.column_stack([radii * np.cos(phi), radii * np.sin(phi)])
        measures = polygon_measures(xy)
        c = measures["centroid_2d"]
        if attempt < recentre and math.hypot(*c) > 0.05:
            point = point + c[0] * u + c[1] * v
        else:
            break
    return Section(point, n, u, v, radii, raw, measures)


def reject_spikes(radii: np.ndarray, limit_mm: float = 3.0, window: int = 31) -> np.ndarray:
    """Radii that jump out of their neighbourhood (a ray escaping into a side branch) set to NaN."""
    out = np.asarray(radii, float).copy()
    good = np.isfinite(out)
    if good.sum() < min(16, len(out) // 2):
        return out
    x = np.arange(len(out))
    filled = np.interp(x, x[good], out[good], period=len(out))
    median = ndimage.median_filter(filled, size=window, mode="wrap")
    out[np.abs(filled - median) > limit_mm] = np.nan
    return out


def fibonacci_directions(count: int = 200) -> np.ndarray:
    """Nearly uniform unit directions on the sphere."""
    k = np.arange(count) + 0.5
    z = 1.0 - 2.0 * k / count
    phi = math.pi * (1.0 + math.sqrt(5.0)) * k
    r = np.sqrt(1.0 - z**2)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


@dataclass
class LumenLevels:
    """Contrast blood and the tissue just outside the lumen wall (HU), and the boundary threshold between them."""

    blood_hu: float
    tissue_hu: float
    threshold_hu: float
    rule: str


def lumen_levels(volume: Volume, point: np.ndarray, directions: np.ndarray | None = None, radius_mm: float = 3.0,
                 max_mm: float = 40.0, beyond_mm: float = 1.5) -> LumenLevels:
    """Blood HU (median of a ball of ``radius_mm`` at ``point``, inside the lumen) and the tissue level
    ``beyond_mm`` outside the boundary along rays from the point (the wall or myocardium itself, not the fat
    behind it), and the half-way threshold: the edge of a blurred step between them."""
    point = np.asarray(point, float)
    offsets = np.stack(np.meshgrid(*[np.arange(-radius_mm, radius_mm + 0.01, 0.5)] * 3, indexing="ij"), -1)
    offsets = offsets.reshape(-1, 3)
    blood = float(np.median(volume.sample(point + offsets[np.linalg.norm(offsets, axis=1) <= radius_mm])))
    if blood < 150.0:
        raise ValueError(f"the lumen at this point is {blood:.0f} HU: no contrast (a contrast CT has blood above "
                         "150 HU)")
    directions = fibonacci_directions() if directions is None else np.atleast_2d(directions)
    first = 0.5 * (blood + 100.0)
    radii = ray_radii(volume, point, directions, first, max_mm)
    good = np.isfinite(radii)
    if good.sum() < 8:
        raise ValueError("no lumen wall found round this point")
    outside = volume.sample(point + (radii[good] + beyond_mm)[:, None] * directions[good])
    tissue = float(np.median(outside))
    tissue = min(tissue, blood - 100.0)
    threshold = 0.5 * (blood + tissue)
    return LumenLevels(blood, tissue, threshold,
                       f"half-way between contrast blood ({blood:.0f} HU) and the tissue {beyond_mm:g} mm outside "
                       f"the lumen ({tissue:.0f} HU)")
