"""CT phantoms built from real whole-heart label maps, with exactly known ground truth.

The label maps (MM-WHS style, ``ct/wholeheart_labels`` of the test data, see ``whole_heart_label_path``) carry
no image. A contrast CT is drawn from them: Hounsfield units per structure (arterial-phase contrast: left heart
and aorta brighter than right heart), epicardial fat and lung around the heart, a point-spread blur that creates
partial volume, and noise. Smooth random deformations (and, for 4D, analytic motion) warp the labels first, so the
truth is the warped label map and the deformation field itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError

#: Environment variable naming the test-data folder (the one holding ``ct/wholeheart_labels``).
DATA_ENV = "CARDIACSUITE_DATA"
#: The two real whole-heart label maps: each phantom is drawn from one, and the other serves as its atlas.
WHOLE_HEART_NAMES = ("mmwhs", "wh")

# MM-WHS label values after remapping to 1–7 (205, 420, 500, 550, 600, 820, 850 in the original).
WHOLE_HEART_LABELS: dict[int, str] = {
    1: "Left ventricle myocardium",
    2: "Left atrium",
    3: "Left ventricle",
    4: "Right atrium",
    5: "Right ventricle",
    6: "Aorta",
    7: "Pulmonary artery",
}

# Arterial-phase contrast CT: the left heart and aorta enhance more than the right heart.
DEFAULT_HU: dict[int, float] = {1: 110.0, 2: 380.0, 3: 400.0, 4: 280.0, 5: 300.0, 6: 420.0, 7: 300.0}
FAT_HU, LUNG_HU, SOFT_TISSUE_HU = -90.0, -820.0, 45.0


@dataclass
class LabelVolume:
    labels: np.ndarray  # [K, J, I] uint8
    ijk_to_ras: np.ndarray  # 4×4

    @property
    def spacing_mm(self) -> np.ndarray:
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)


def whole_heart_label_path(name: str, data_root: str | os.PathLike | None = None) -> Path:
    """``mmwhs`` or ``wh``: one of the two real whole-heart label maps, under ``data_root`` or ``CARDIACSUITE_DATA``.

    The label maps belong to the test data, not to the extension; without either a clear error says where to
    point.
    """
    root = data_root or os.environ.get(DATA_ENV)
    if not root:
        raise InputError(
            f"The CT phantoms are drawn from the whole-heart label maps (ct/wholeheart_labels/{name}.nii.gz of the "
            f"test data), and no data folder was given: set {DATA_ENV} to the folder that holds ct/."
        )
    return Path(root) / "ct" / "wholeheart_labels" / f"{name}.nii.gz"


def load_whole_heart_labels(path: str | Path, spacing_mm: float | None = None) -> LabelVolume:
    """Read a whole-heart label map (NIfTI) as ``[K, J, I]``; optionally resample it to isotropic spacing.

    NIfTI affines are RAS already; nibabel's array is ``[i, j, k]``, transposed here to ``[k, j, i]``.
    """
    import nibabel

    image = nibabel.load(str(path))
    labels = np.asarray(image.dataobj).astype(np.uint8).transpose(2, 1, 0)
    volume = LabelVolume(np.ascontiguousarray(labels), np.asarray(image.affine, dtype=float))
    return resample_labels(volume, spacing_mm) if spacing_mm else volume


def resample_labels(volume: LabelVolume, spacing_mm: float) -> LabelVolume:
    """Nearest-neighbour resampling onto an isotropic grid covering the same extent."""
    old = volume.spacing_mm[::-1]  # k, j, i
    zoom = old / spacing_mm
    labels = ndimage.zoom(volume.labels, zoom, order=0, grid_mode=True, mode="nearest")
    matrix = volume.ijk_to_ras.copy()
    directions = matrix[:3, :3] / np.linalg.norm(matrix[:3, :3], axis=0)
    matrix[:3, :3] = directions * spacing_mm
    # Keep the grid's outer corner fixed: the first voxel centre moves by half the change in voxel size.
    shift = 0.5 * (spacing_mm - volume.spacing_mm)
    matrix[:3, 3] = volume.ijk_to_ras[:3, 3] + directions @ shift
    return LabelVolume(labels.astype(np.uint8), matrix)


def crop_to_labels(volume: LabelVolume, margin_mm: float = 20.0) -> LabelVolume:
    """Smallest box holding every labelled voxel plus a margin, with the geometry moved to match."""
    index = np.argwhere(volume.labels > 0)
    margin = np.ceil(margin_mm / volume.spacing_mm[::-1]).astype(int)
    low = np.maximum(index.min(axis=0) - margin, 0)
    high = np.minimum(index.max(axis=0) + margin + 1, volume.labels.shape)
    labels = volume.labels[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    matrix = volume.ijk_to_ras.copy()
    matrix[:3, 3] = volume.ijk_to_ras[:3, :3] @ low[::-1] + volume.ijk_to_ras[:3, 3]
    return LabelVolume(np.ascontiguousarray(labels), matrix)


def synthesize_ct(
    volume: LabelVolume,
    rng: np.random.Generator,
    hu: dict[int, float] | None = None,
    noise_hu: float = 25.0,
    blur_mm: float = 0.7,
) -> np.ndarray:
    """A contrast CT image (HU, float32) of the labelled heart: fat and lung around it, blur, then noise."""
    hu = {**DEFAULT_HU, **(hu or {})}
    labels = volume.labels
    spacing = volume.spacing_mm[::-1]
    heart = labels > 0
    distance = ndimage.distance_transform_edt(~heart, sampling=spacing)
    image = np.full(labels.shape, LUNG_HU, np.float32)
    image[distance <= 25.0] = SOFT_TISSUE_HU
    image[distance <= 4.0] = FAT_HU
    for value, units in hu.items():
        image[labels == value] = units
    # Slow intensity variation across the blood pools, as contrast mixing and beam hardening give.
    shading = ndimage.gaussian_filter(rng.normal(0.0, 1.0, labels.shape).astype(np.float32), 20.0 / spacing)
    shading *= 15.0 / max(float(np.abs(shading).max()), 1e-6)
    image += np.where(labels > 1, shading, 0.0).astype(np.float32)
    image = ndimage.gaussian_filter(image, blur_mm / spacing)
    image += rng.normal(0.0, noise_hu, labels.shape).astype(np.float32)
    return image.astype(np.float32)


def smooth_random_displacement(
    shape: tuple[int, int, int],
    spacing_mm: np.ndarray,
    rng: np.random.Generator,
    amplitude_mm: float = 4.0,
    correlation_mm: float = 30.0,
) -> np.ndarray:
    """A smooth random displacement field ``[3, K, J, I]`` in mm (components along k, j, i).

    White noise smoothed with a Gaussian of ``correlation_mm`` and scaled so its largest magnitude is
    ``amplitude_mm``: large, anatomically plausible deformations without folding for sensible settings.
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    field = np.stack(
        [ndimage.gaussian_filter(rng.normal(size=shape), correlation_mm / spacing, mode="reflect") for _ in range(3)]
    )
    magnitude = np.sqrt((field**2).sum(axis=0)).max()
    return (field * (amplitude_mm / max(magnitude, 1e-12))).astype(np.float32)


def warp(array: np.ndarray, displacement_mm: np.ndarray, spacing_mm: np.ndarray, order: int) -> np.ndarray:
    """Pull-back warp: ``out[x] = array[x + u(x)]`` with ``u`` in mm along (k, j, i); order 0 for labels."""
    spacing = np.asarray(spacing_mm, dtype=float)
    grid = np.indices(array.shape, dtype=np.float32)
    coordinates = grid + displacement_mm / spacing[:, None, None, None]
    return ndimage.map_coordinates(array, coordinates, order=order, mode="nearest").astype(array.dtype)
