"""Overlap and surface-distance figures between two binary masks on one grid.

Surfaces are the masks' boundary voxels (6-connected erosion), distances run between voxel centres in
millimetres, so identical masks score 0 and a one-voxel shift scores one voxel size. The definitions follow
the segmentation-challenge convention and are stated where they are reported:

* mean surface distance (MSD, also "average symmetric surface distance"): the mean over the boundary voxels of
  both masks of the distance to the other mask's boundary;
* HD95: the larger of the two directed 95th-percentile distances (A to B and B to A).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SurfaceFigures:
    dice: float
    msd_mm: float
    hd95_mm: float
    hd_mm: float

    def as_dict(self) -> dict[str, float]:
        return {"dice": self.dice, "msd_mm": self.msd_mm, "hd95_mm": self.hd95_mm, "hd_mm": self.hd_mm}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return float(2.0 * np.logical_and(a, b).sum() / total) if total else 1.0


def _boundary(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def surface_figures(a: np.ndarray, b: np.ndarray, spacing_kji) -> SurfaceFigures:
    """Dice, MSD, HD95 and Hausdorff distance between masks ``a`` and ``b`` (``[K, J, I]``, spacing in mm)."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    if not a.any() and not b.any():
        return SurfaceFigures(1.0, 0.0, 0.0, 0.0)
    if not a.any() or not b.any():
        return SurfaceFigures(0.0, float("inf"), float("inf"), float("inf"))
    # Work in the joint bounding box (plus one voxel) only.
    index = np.argwhere(a | b)
    low = np.maximum(index.min(axis=0) - 1, 0)
    high = np.minimum(index.max(axis=0) + 2, a.shape)
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
    a, b = a[box], b[box]
    spacing = np.asarray(spacing_kji, dtype=float)
    surface_a, surface_b = _boundary(a), _boundary(b)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)[surface_a]
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)[surface_b]
    both = np.concatenate([to_b, to_a])
    return SurfaceFigures(
        dice=dice(a, b),
        msd_mm=float(both.mean()),
        hd95_mm=float(max(np.percentile(to_b, 95), np.percentile(to_a, 95))),
        hd_mm=float(both.max()),
    )
