"""Grids, boxes and the numpy ⇄ SimpleITK bridge, with RAS (MRML) on one side and LPS (ITK) on the other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
