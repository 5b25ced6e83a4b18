"""Grids, boxes, index ⇄ RAS conversions, resampling, polylines and the numpy ⇄ SimpleITK bridge.

Arrays are ``[k, j, i]``; matrices are 4×4 IJK-to-RAS in millimetres (as in ``mrml``), RAS (MRML) on one side
and LPS (ITK) on the other. Points are RAS millimetres, rows of an ``(N, 3)`` array. Every module's algorithms
share these, so a grid made by one is read the same way by another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Box:
    """A box of voxels ``[low, high)`` in (k, j, i) of a parent grid."""

    low: tuple[int, int, int]
    high: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(lo, hi) for lo, hi in zip(self.low, self.high))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(hi - lo for lo, hi in zip(self.low, self.high))

    def ijk_to_ras(self, parent_ijk_to_ras: np.ndarray) -> np.ndarray:
        """Geometry of the box: the parent's, with the origin moved to the box's first voxel."""
        matrix = np.array(parent_ijk_to_ras, dtype=float, copy=True)
        matrix[:3, 3] = parent_ijk_to_ras[:3, :3] @ np.array(self.low[::-1], dtype=float) + parent_ijk_to_ras[:3, 3]
        return matrix

    @classmethod
    def around(cls, mask: np.ndarray, margin_mm: float, spacing_kji) -> Box:
        """The bounding box of ``mask`` grown by ``margin_mm`` on every side, clipped to the grid."""
        index = np.argwhere(mask)
        if len(index) == 0:
            raise ValueError("the mask is empty")
        pad = np.ceil(margin_mm / np.asarray(spacing_kji, dtype=float)).astype(int)
        low = np.maximum(index.min(axis=0) - pad, 0)
        high = np.minimum(index.max(axis=0) + pad + 1, mask.shape)
        return cls(tuple(int(v) for v in low), tuple(int(v) for v in high))


def spacing_kji(ijk_to_ras: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(ijk_to_ras)[:3, :3], axis=0)[::-1]


def voxel_ml(ijk_to_ras: np.ndarray) -> float:
    return float(abs(np.linalg.det(np.asarray(ijk_to_ras)[:3, :3]))) / 1000.0


def to_sitk(array: np.ndarray, ijk_to_ras: np.ndarray, vector: bool = False):
    """A SimpleITK image of ``array`` ``[K, J, I]`` (or ``[K, J, I, 3]`` with ``vector``) placed in LPS."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=vector)
    set_geometry(image, ijk_to_ras)
    return image


def set_geometry(image, ijk_to_ras: np.ndarray) -> None:
    lps = LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing([float(v) for v in spacing])
    image.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    image.SetOrigin([float(v) for v in lps[:3, 3]])


def ijk_to_ras_of(image) -> np.ndarray:
    """The IJK-to-RAS matrix of a SimpleITK image."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=float)
    matrix[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ matrix


def resampled_grid(ijk_to_ras: np.ndarray, shape_kji, spacing_mm: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A grid covering the same box with voxels of at least ``spacing_mm`` (never finer than the original).

    The outer corner of the box stays where it is, as when a volume is resampled in Slicer.
    """
    old = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)  # i, j, k
    new = np.maximum(old, spacing_mm)
    extent = old * np.asarray(shape_kji, dtype=float)[::-1]
    size = np.maximum(np.ceil(extent / new - 1e-6).astype(int), 1)
    directions = ijk_to_ras[:3, :3] / old
    matrix = np.eye(4)
    matrix[:3, :3] = directions * new
    matrix[:3, 3] = ijk_to_ras[:3, 3] + directions @ (0.5 * (new - old))
    return matrix, tuple(int(v) for v in size[::-1])


def reference_image(ijk_to_ras: np.ndarray, shape_kji, pixel_id=None):
    """An empty SimpleITK image that only carries a grid (for resampling onto it)."""
    import SimpleITK as sitk

    image = sitk.Image([int(v) for v in shape_kji[::-1]], pixel_id if pixel_id is not None else sitk.sitkUInt8)
    set_geometry(image, ijk_to_ras)
    return image


# ------------------------------------------------------------------------------------------ grids and polylines


@dataclass
class Grid:
    """A voxel grid: shape ``(K, J, I)`` and its IJK-to-RAS matrix."""

    shape: tuple[int, int, int]
    ijk_to_ras: np.ndarray

    @property
    def spacing_kji(self) -> np.ndarray:
        """Voxel size along k, j, i in mm (the order of the array axes)."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)[::-1]

    def kji_to_ras(self, kji: np.ndarray) -> np.ndarray:
        kji = np.atleast_2d(np.asarray(kji, dtype=float))
        return kji[:, ::-1] @ self.ijk_to_ras[:3, :3].T + self.ijk_to_ras[:3, 3]

    def ras_to_kji(self, ras: np.ndarray) -> np.ndarray:
        ras = np.atleast_2d(np.asarray(ras, dtype=float))
        inverse = np.linalg.inv(self.ijk_to_ras)
        ijk = ras @ inverse[:3, :3].T + inverse[:3, 3]
        return ijk[:, ::-1]

    def contains_ras(self, ras: np.ndarray, margin_voxels: float = 0.0) -> np.ndarray:
        kji = self.ras_to_kji(ras)
        return np.all((kji >= -0.5 + margin_voxels) & (kji <= np.array(self.shape) - 0.5 - margin_voxels), axis=1)

    def crop(self, low: np.ndarray, high: np.ndarray) -> Grid:
        """The sub-grid ``[low, high)`` (k, j, i indices)."""
        low = np.asarray(low, dtype=int)
        matrix = self.ijk_to_ras.copy()
        matrix[:3, 3] = self.ijk_to_ras[:3, :3] @ low[::-1] + self.ijk_to_ras[:3, 3]
        return Grid(tuple(int(v) for v in np.asarray(high) - low), matrix)

    def resampled(self, spacing_mm: float) -> Grid:
        """An isotropic grid with the same directions covering the same extent (outer corners kept)."""
        old = self.spacing_kji
        size = np.array(self.shape) * old
        shape = np.maximum(np.round(size / spacing_mm).astype(int), 1)
        directions = self.ijk_to_ras[:3, :3] / np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)
        matrix = np.eye(4)
        matrix[:3, :3] = directions * spacing_mm
        corner = self.ijk_to_ras[:3, 3] - directions @ (0.5 * old[::-1])
        matrix[:3, 3] = corner + directions @ np.full(3, 0.5 * spacing_mm)
        return Grid(tuple(int(v) for v in shape), matrix)


def resample(array: np.ndarray, source: Grid, target: Grid, order: int, fill: float = 0.0) -> np.ndarray:
    """``array`` on ``source`` sampled at the voxel centres of ``target`` (order 0 for labels, 1 for images)."""
    # target kji -> RAS -> source kji is one affine map: index_source = A @ index_target + b
    t = np.linalg.inv(source.ijk_to_ras) @ target.ijk_to_ras  # ijk_target -> ijk_source
    perm = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)  # ijk <-> kji
    matrix = perm @ t[:3, :3] @ perm
    offset = perm @ t[:3, 3]
    if np.allclose(matrix, np.diag(np.diag(matrix))):
        zoom_like = np.diag(matrix)
        return ndimage.affine_transform(
            array, zoom_like, offset=offset, output_shape=target.shape, order=order, mode="constant", cval=fill
        ).astype(array.dtype)
    return ndimage.affine_transform(
        array, matrix, offset=offset, output_shape=target.shape, order=order, mode="constant", cval=fill
    ).astype(array.dtype)


def downsample_blocks(array: np.ndarray, source: Grid, spacing_mm: float) -> tuple[np.ndarray, Grid]:
    """Mean over whole blocks of voxels (integer factors, at most ``spacing_mm``), then linear resampling to an
    isotropic ``spacing_mm`` grid: fast anti-aliased downsampling of a large CT."""
    factors = np.maximum(np.floor(spacing_mm / source.spacing_kji + 1e-6).astype(int), 1)
    if np.any(factors > 1):
        trimmed = array[tuple(slice(0, (n // f) * f) for n, f in zip(array.shape, factors))].astype(np.float32)
        shape = []
        for n, f in zip(trimmed.shape, factors):
            shape += [n // f, f]
        blocks = trimmed.reshape(shape).mean(axis=(1, 3, 5), dtype=np.float32)
        matrix = source.ijk_to_ras.copy()
        matrix[:3, :3] = source.ijk_to_ras[:3, :3] * factors[::-1]
        matrix[:3, 3] = source.ijk_to_ras[:3, :3] @ ((factors[::-1] - 1) / 2.0) + source.ijk_to_ras[:3, 3]
        array, source = blocks, Grid(blocks.shape, matrix)
    target = source.resampled(spacing_mm)
    return resample(array.astype(np.float32), source, target, order=1, fill=float(np.min(array))), target


def bounding_box(mask: np.ndarray, margin: np.ndarray | int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` indices of the mask's box grown by ``margin`` voxels and clipped to the array."""
    index = np.argwhere(mask)
    if index.size == 0:
        raise ValueError("empty mask")
    low = np.maximum(index.min(axis=0) - margin, 0)
    high = np.minimum(index.max(axis=0) + 1 + margin, mask.shape)
    return low, high


# ---------------------------------------------------------------------------------------------- polylines


def arc_length(points: np.ndarray) -> np.ndarray:
    """Cumulative length (mm) at each point of a polyline."""
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def resample_polyline(points: np.ndarray, step_mm: float, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Points every ``step_mm`` along the polyline (first and last kept) and per-point values interpolated."""
    s = arc_length(points)
    total = s[-1]
    if total <= 0:
        return (points[:1].copy(), *(v[:1].copy() for v in values))
    count = max(int(round(total / step_mm)), 1)
    new_s = np.linspace(0.0, total, count + 1)
    resampled = np.stack([np.interp(new_s, s, points[:, c]) for c in range(3)], axis=1)
    return (resampled, *(np.interp(new_s, s, v) for v in values))


def smooth_polyline(points: np.ndarray, sigma_mm: float, step_mm: float, keep_ends: bool = True) -> np.ndarray:
    """Gaussian smoothing along arc length (points must be evenly spaced by ``step_mm``); ends stay fixed."""
    if len(points) < 3 or sigma_mm <= 0:
        return points.copy()
    sigma = sigma_mm / step_mm
    smoothed = ndimage.gaussian_filter1d(points, sigma, axis=0, mode="nearest")
    if keep_ends:
        # Blend back to the original ends over about one sigma so the end points do not move.
        n = len(points)
        weight = np.ones(n)
        ramp = np.minimum(np.arange(n), np.arange(n)[::-1]) / max(2.0 * sigma, 1.0)
        weight = np.clip(ramp, 0.0, 1.0)[:, None]
        smoothed = weight * smoothed + (1 - weight) * points
    return smoothed


def points_to_polyline_distance(points: np.ndarray, polyline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point, the distance (mm) to the polyline and the arc length (mm) of the closest point on it."""
    a = polyline[:-1]
    b = polyline[1:]
    ab = b - a
    length2 = np.maximum((ab**2).sum(axis=1), 1e-12)
    s0 = arc_length(polyline)[:-1]
    seg_len = np.sqrt(length2)
    best_d = np.full(len(points), np.inf)
    best_s = np.zeros(len(points))
    chunk = max(1, 2_000_000 // max(len(a), 1))
    for start in range(0, len(points), chunk):
        p = points[start : start + chunk, None, :]
        t = np.clip(((p - a[None]) * ab[None]).sum(axis=2) / length2[None], 0.0, 1.0)
        closest = a[None] + t[..., None] * ab[None]
        d = np.linalg.norm(p - closest, axis=2)
        index = d.argmin(axis=1)
        rows = np.arange(len(index))
        best_d[start : start + chunk] = d[rows, index]
        best_s[start : start + chunk] = s0[index] + t[rows, index] * seg_len[index]
    return best_d, best_s
