"""Patient geometry of DICOM images: IJK-to-RAS from position, orientation and pixel spacing.

DICOM places every image on its own (ImagePositionPatient, ImageOrientationPatient, PixelSpacing) in LPS
millimetres. A volume needs one matrix for the whole stack, so the slices are ordered along their normal and the
slice spacing is taken from the positions themselves: SliceThickness is not the distance between slices (MR
stacks often have gaps), and InstanceNumber is not an order (Philips numbers images by acquisition).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Orientation cosines are written with ~6 decimals; scanners differ in the last digit between images.
ORIENTATION_TOLERANCE = 1e-4
# Two images closer than this along the normal are at the same slice position.
POSITION_TOLERANCE_MM = 0.01
# Slice spacing irregularity (relative) above which a warning is recorded.
UNEVEN_SPACING_TOLERANCE = 0.10


@dataclass(frozen=True)
class PlaneGeometry:
    """Orientation and pixel grid shared by all images of a stack."""

    row_direction: np.ndarray  # LPS unit vector along a row (increasing column index i)
    column_direction: np.ndarray  # LPS unit vector down a column (increasing row index j)
    pixel_spacing: tuple[float, float]  # DICOM order: (between rows, between columns) in mm

    @property
    def normal(self) -> np.ndarray:
        return slice_normal(self.row_direction, self.column_direction)


@dataclass
class StackLayout:
    """Where the slice positions sit along the normal, in order of increasing projection."""

    positions: np.ndarray  # [K, 3] LPS, one per slice, ordered
    projections: np.ndarray  # [K] distance along the normal, increasing
    spacing: float  # mm between slices used for the volume
    warnings: list[str] = field(default_factory=list)


def orientation_vectors(iop: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column direction cosines of ImageOrientationPatient; ValueError if they are not a frame."""
    values = np.asarray([float(v) for v in iop], dtype=float)
    if values.shape != (6,) or not np.all(np.isfinite(values)):
        raise ValueError(f"ImageOrientationPatient must hold 6 numbers, got {list(iop)}")
    row, column = values[:3], values[3:]
    row_norm, column_norm = np.linalg.norm(row), np.linalg.norm(column)
    if abs(row_norm - 1.0) > 1e-2 or abs(column_norm - 1.0) > 1e-2:
        raise ValueError(f"ImageOrientationPatient vectors are not unit length ({row_norm:.4f}, {column_norm:.4f})")
    if abs(float(np.dot(row, column))) > 1e-2:
        raise ValueError("ImageOrientationPatient row and column directions are not perpendicular")
    return row / row_norm, column / column_norm


def slice_normal(row_direction: np.ndarray, column_direction: np.ndarray) -> np.ndarray:
    normal = np.cross(row_direction, column_direction)
    return normal / np.linalg.norm(normal)


def same_orientation(a: Sequence[float], b: Sequence[float], tolerance: float = ORIENTATION_TOLERANCE) -> bool:
    return bool(np.max(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))) <= tolerance)


def same_spacing(a: Sequence[float], b: Sequence[float], relative_tolerance: float = 1e-4) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= relative_tolerance * np.maximum(np.abs(a), 1.0)))


def cluster_positions(
    positions: np.ndarray, normal: np.ndarray, tolerance: float = POSITION_TOLERANCE_MM
) -> tuple[np.ndarray, np.ndarray]:
    """Slice index of every position (0 = lowest projection on the normal) and the projection of each slice.

    Positions are grouped by their distance along the normal, not by exact equality of the written numbers,
    which differ in the last digit between phases on some scanners.
    """
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    projections = positions @ normal
    order = np.argsort(projections, kind="stable")
    labels = np.empty(len(positions), dtype=int)
    current = -1
    previous = None
    for index in order:
        value = projections[index]
        if previous is None or value - previous > tolerance:
            current += 1
        previous = value
        labels[index] = current
    means = np.array([projections[labels == k].mean() for k in range(current + 1)])
    return labels, means


def in_plane_offsets(positions: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Distance of each position from the line through the first one along the normal (mm)."""
    positions = np.asarray(positions, dtype=float).reshape(-1, 3)
    delta = positions - positions[0]
    along = delta @ normal
    return np.linalg.norm(delta - np.outer(along, normal), axis=1)


def stack_layout(
    slice_positions: np.ndarray,
    normal: np.ndarray,
    pixel_spacing: tuple[float, float],
    slice_thickness: float | None = None,
    fallback_spacing: float | None = None,
) -> StackLayout:
    """Order slice positions along the normal and choose the slice spacing.

    ``slice_positions`` has one row per distinct slice. The spacing is the median distance between consecutive
    slices; irregular spacing and a spacing that differs from the thickness are recorded as warnings, not
    errors (a gap between slices is normal in cardiac MR). Raises ValueError when the slices do not stack
    along their normal (an in-plane shift, as with a tilted CT gantry), since one matrix cannot place them.
    """
    positions = np.asarray(slice_positions, dtype=float).reshape(-1, 3)
    projections = positions @ normal
    order = np.argsort(projections, kind="stable")
    positions, projections = positions[order], projections[order]
    warnings: list[str] = []

    if len(positions) == 1:
        spacing = fallback_spacing or slice_thickness or 1.0
        if not (fallback_spacing or slice_thickness):
            warnings.append("single slice without SliceThickness: slice spacing set to 1 mm")
        return StackLayout(positions, projections, float(spacing), warnings)

    shift = in_plane_offsets(positions, normal).max()
    if shift > max(0.1 * min(pixel_spacing), 0.05):
        raise ValueError(
            f"slices are shifted {shift:.2f} mm within their plane, not stacked along the slice normal "
            "(tilted gantry or a non-parallel acquisition)"
        )

    gaps = np.diff(projections)
    spacing = float(np.median(gaps))
    if spacing <= 0:
        raise ValueError("slice positions do not advance along the slice normal")
    deviation = np.abs(gaps - spacing) / spacing
    if deviation.max() > UNEVEN_SPACING_TOLERANCE:
        off_grid = np.abs(projections - (projections[0] + spacing * np.arange(len(projections)))).max()
        warnings.append(
            f"uneven slice spacing ({gaps.min():.3g}–{gaps.max():.3g} mm, median {spacing:.4g} mm; a slice may be "
            f"missing): slices are placed at the median spacing, up to {off_grid:.3g} mm from their true position"
        )
    if slice_thickness and abs(spacing - slice_thickness) > max(0.01, 0.01 * slice_thickness):
        kind = "a gap" if spacing > slice_thickness else "an overlap"
        warnings.append(
            f"slice spacing {spacing:.4g} mm differs from SliceThickness {slice_thickness:.4g} mm "
            f"({kind} of {abs(spacing - slice_thickness):.3g} mm between slices)"
        )
    return StackLayout(positions, projections, spacing, warnings)


def ijk_to_ras_matrix(
    origin_lps: Sequence[float], plane: PlaneGeometry, slice_spacing: float
) -> np.ndarray:
    """The 4×4 IJK-to-RAS matrix of a stack whose first slice sits at ``origin_lps``.

    i runs along a row (PixelSpacing[1]), j down a column (PixelSpacing[0]), k along the slice normal.
    """
    row_spacing, column_spacing = plane.pixel_spacing
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, 0] = plane.row_direction * column_spacing
    ijk_to_lps[:3, 1] = plane.column_direction * row_spacing
    ijk_to_lps[:3, 2] = plane.normal * slice_spacing
    ijk_to_lps[:3, 3] = np.asarray(origin_lps, dtype=float)
    return LPS_TO_RAS @ ijk_to_lps
