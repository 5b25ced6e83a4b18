"""Left and right atrial volumes over the cycle from 2- and 4-chamber long-axis cines (area-length method).

Formulas (area A in mm², length L in mm, volume in ml):

* single plane: V = 8/(3π) · A² / L (the right atrium, from the 4-chamber view);
* biplane: V = 8/(3π) · A₂ch · A₄ch / L (the left atrium), L being the shorter of the two views' lengths by
  default (``length_rule="shorter"``: the echocardiographic chamber-quantification convention, measure L in both
  views and use the shorter) or their mean (``"mean"``, as UK Biobank's pipeline); the choice changes LA volumes
  by a few per cent and is recorded with the results.

Both are exact for an ellipsoid whose long axis is L and whose other axes lie in the imaged planes; the single-plane
formula further assumes a circular cross-section (b = c). L is measured from the midpoint of the atrioventricular
valve line (taken on the atrial contour) to the farthest point of the contour; where no valve line is known (a
closed valve the contours never crossed, or a model without ventricle labels) it is the atrium's longest chord, and
each phase records which rule it used. Pulmonary-vein stubs narrower than ``2 × vein_radius_mm`` (12 mm by default)
are removed by a morphological opening; wider ostia and the left atrial appendage are not separated automatically
and need manual correction.

Contours come from one of three sources, recorded per phase:

* ``seeded``: a seed point per atrium per view on one phase; region growing with an intensity model estimated
  around the seed, an automatic valve-plane cut where the region runs through the valve into the ventricle, vein
  removal and smoothing; the seed is carried to the next phase as the deepest point of the previous contour;
* ``model``: a registered long-axis model (task ``cmr-lax-cine``), used automatically when one is installed; its
  labels must include "Left atrium" and "Right atrium", and "Left ventricle"/"Right ventricle" where present give
  the valve lines;
* ``corrected``: a label map the user edited (``.seg.nrrd`` per view, one segment per atrium and phase), which
  replaces the automatic contour of each phase where it differs from it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from CardiacSuiteLib.errors import InputError, ModelError
from CardiacSuiteLib.imagedata import ImageSeries
from CardiacSuiteLib.inference import CancelToken, ProgressCallback, report
from CardiacSuiteLib.vocabulary import Key, Role

from .choices import ATRIAL_LENGTH_RULES as LENGTH_RULES
from .choices import ATRIAL_METHODS as METHODS

TASK = "cmr-lax-cine"
AREA_LENGTH_CONSTANT = 8.0 / (3.0 * np.pi)
VIEW_NAMES = {"2ch": "2-chamber", "4ch": "4-chamber"}
ATRIUM_NAMES = {"la": "Left atrium", "ra": "Right atrium"}
VENTRICLE_OF = {"la": "Left ventricle", "ra": "Right ventricle"}
ATRIUM_COLOURS = {"la": (0.95, 0.55, 0.2), "ra": (0.35, 0.6, 0.95)}
#: which atria each view measures
VIEW_ATRIA = {"2ch": ("la",), "4ch": ("la", "ra")}
LENGTH_FROM_VALVE = "valve midpoint to farthest point"
LENGTH_LONGEST_CHORD = "longest chord (no valve line)"
MIN_PHASES_WARNING = 15
PLANE_ANGLE_MIN_DEG = 20.0


# ------------------------------------------------------------------------------------------------ formulas


def single_plane_volume_ml(area_mm2, length_mm):
    """Single-plane area-length volume 8/(3π)·A²/L in ml (A in mm², L in mm)."""
    area_mm2, length_mm = np.asarray(area_mm2, dtype=float), np.asarray(length_mm, dtype=float)
    if np.any(length_mm <= 0):
        raise InputError("an atrial length is zero or negative; the contour is empty or degenerate")
    return AREA_LENGTH_CONSTANT * area_mm2**2 / length_mm / 1000.0


def biplane_volume_ml(area_2ch_mm2, area_4ch_mm2, length_mm):
    """Biplane area-length volume 8/(3π)·A₂ch·A₄ch/L in ml (areas in mm², L in mm)."""
    a2, a4 = np.asarray(area_2ch_mm2, dtype=float), np.asarray(area_4ch_mm2, dtype=float)
    length_mm = np.asarray(length_mm, dtype=float)
    if np.any(length_mm <= 0):
        raise InputError("an atrial length is zero or negative; the contour is empty or degenerate")
    return AREA_LENGTH_CONSTANT * a2 * a4 / length_mm / 1000.0


def biplane_length_mm(length_2ch_mm, length_4ch_mm, rule: str = "shorter"):
    """The L of the biplane formula from the two views' lengths: the shorter one or their mean."""
    l2, l4 = np.asarray(length_2ch_mm, dtype=float), np.asarray(length_4ch_mm, dtype=float)
    if rule == "shorter":
        return np.minimum(l2, l4)
    if rule == "mean":
        return (l2 + l4) / 2.0
    raise InputError(f"length rule must be one of {', '.join(LENGTH_RULES)}, not '{rule}'")


def emptying_fraction_pct(max_ml: float, min_ml: float) -> float:
    """Total emptying fraction (Vmax − Vmin)/Vmax in %."""
    if max_ml <= 0:
        raise InputError("the largest atrial volume is zero: nothing was segmented")
    return 100.0 * (max_ml - min_ml) / max_ml


# ------------------------------------------------------------------------------------------------ geometry


@dataclass(frozen=True)
class PlaneGeometry:
    """A single-slice image's plane: pixel (row, column) ⇄ RAS, in mm, from its exact IJK-to-RAS matrix."""

    ijk_to_ras: np.ndarray
    rows: int
    cols: int

    @property
    def origin(self) -> np.ndarray:
        return self.ijk_to_ras[:3, 3]

    @property
    def column_step(self) -> np.ndarray:  # RAS step of one column (i)
        return self.ijk_to_ras[:3, 0]

    @property
    def row_step(self) -> np.ndarray:  # RAS step of one row (j)
        return self.ijk_to_ras[:3, 1]

    @property
    def normal(self) -> np.ndarray:
        normal = np.cross(self.column_step, self.row_step)
        return normal / np.linalg.norm(normal)

    @property
    def spacing_mm(self) -> tuple[float, float]:
        """(row, column) pixel size in mm: the sampling of the [J, I] array."""
        return float(np.linalg.norm(self.row_step)), float(np.linalg.norm(self.column_step))

    @property
    def pixel_area_mm2(self) -> float:
        return float(np.linalg.norm(np.cross(self.column_step, self.row_step)))

    def to_ras(self, rows, cols) -> np.ndarray:
        """RAS points [..., 3] of (sub-)pixel positions."""
        rows, cols = np.asarray(rows, dtype=float), np.asarray(cols, dtype=float)
        return self.origin + cols[..., None] * self.column_step + rows[..., None] * self.row_step

    def to_pixel(self, ras) -> tuple[float, float, float]:
        """(row, column, distance from the plane in mm) of a RAS point."""
        rel = np.asarray(ras, dtype=float) - self.origin
        off_plane = float(np.dot(rel, self.normal))
        in_plane = rel - off_plane * self.normal
        basis = np.stack([self.column_step, self.row_step], axis=1)
        (col, row), *_ = np.linalg.lstsq(basis, in_plane, rcond=None)
        return float(row), float(col), off_plane

    def disk(self, radius_mm: float) -> np.ndarray:
        """A structuring element: every pixel offset within ``radius_mm`` (anisotropic pixels allowed)."""
        sr, sc = self.spacing_mm
        nr, nc = int(np.floor(radius_mm / sr)), int(np.floor(radius_mm / sc))
        dr, dc = np.mgrid[-nr : nr + 1, -nc : nc + 1]
        return (dr * sr) ** 2 + (dc * sc) ** 2 <= radius_mm**2 + 1e-9


def plane_of(series: ImageSeries) -> PlaneGeometry:
    return PlaneGeometry(np.asarray(series.ijk_to_ras, dtype=float), *series.frames.shape[-2:])


def planes_intersection(first: PlaneGeometry, second: PlaneGeometry) -> tuple[np.ndarray, np.ndarray] | None:
    """(point, unit direction) of the line where two planes meet, or None for (nearly) parallel planes."""
    direction = np.cross(first.normal, second.normal)
    sine = np.linalg.norm(direction)
    if sine < np.sin(np.radians(PLANE_ANGLE_MIN_DEG)):
        return None
    direction /= sine
    normals = np.stack([first.normal, second.normal, direction])
    offsets = np.array([np.dot(first.normal, first.origin), np.dot(second.normal, second.origin), 0.0])
    return np.linalg.solve(normals, offsets), direction


def line_in_image(plane: PlaneGeometry, point: np.ndarray, direction: np.ndarray, step_px: float = 0.5):
    """Pixel positions (rows, cols) of the samples of a line in the plane that fall inside the image."""
    row0, col0, _ = plane.to_pixel(point)
    row1, col1, _ = plane.to_pixel(point + direction)
    extent = 2.0 * (plane.rows + plane.cols)
    steps = np.arange(-extent, extent, step_px)
    norm = np.hypot(row1 - row0, col1 - col0)
    rows = row0 + steps * (row1 - row0) / norm
    cols = col0 + steps * (col1 - col0) / norm
    inside = (rows >= -0.5) & (rows <= plane.rows - 0.5) & (cols >= -0.5) & (cols <= plane.cols - 0.5)
    return rows[inside], cols[inside], step_px * float(np.mean(plane.spacing_mm))


# ------------------------------------------------------------------------------------------------ contours


@dataclass
class ValveLine:
    """The atrioventricular valve line of one phase: its two ends and midpoint, in RAS mm."""

    ends_ras: np.ndarray  # [2, 3]
    midpoint_ras: np.ndarray  # [3]

    def to_json(self) -> dict:
        return {"ends_ras_mm": np.round(self.ends_ras, 2).tolist(), "midpoint_ras_mm": np.round(self.midpoint_ras, 2).tolist()}


@dataclass
class AtrialContours:
    """One atrium in one view over every phase: masks [T, J, I], valve lines and where each phase came from."""

    masks: np.ndarray
    valves: list[ValveLine | None]
    sources: list[str]
    seeds_px: list[tuple[float, float] | None] = field(default_factory=list)
    thresholds: list[float | None] = field(default_factory=list)


def as_phases(frames: np.ndarray) -> np.ndarray:
    """[T, J, I] from a single-slice cine [T, 1, J, I] (or [T, J, I])."""
    frames = np.asarray(frames)
    if frames.ndim == 4:
        if frames.shape[1] != 1:
            raise InputError(f"a long-axis cine is one slice; this input has {frames.shape[1]} slices")
        frames = frames[:, 0]
    if frames.ndim != 3:
        raise InputError(f"a long-axis cine must be [phases, rows, columns]; got shape {frames.shape}")
    return frames


def _component_at(mask: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """The 4-connected component of ``mask`` that holds ``seed`` (empty if the seed is outside the mask)."""
    if not mask[seed]:
        return np.zeros_like(mask)
    labelled, _ = ndimage.label(mask)
    return labelled == labelled[seed]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labelled, count = ndimage.label(mask)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(labelled.ravel())[1:]
    return labelled == (int(np.argmax(sizes)) + 1)


def _disc_values(image: np.ndarray, centre: tuple[int, int], footprint: np.ndarray) -> np.ndarray:
    """Pixels of ``image`` under ``footprint`` centred at ``centre`` (clipped at the image edge)."""
    hr, hc = footprint.shape[0] // 2, footprint.shape[1] // 2
    r, c = centre
    r0, r1 = max(r - hr, 0), min(r + hr + 1, image.shape[0])
    c0, c1 = max(c - hc, 0), min(c + hc + 1, image.shape[1])
    window = footprint[r0 - r + hr : r1 - r + hr, c0 - c + hc : c1 - c + hc]
    return image[r0:r1, c0:c1][window]


def _border_points(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Midpoints (row, col) between 4-adjacent pixel pairs, one in each mask."""
    points = []
    for axis in (0, 1):
        a = np.take(first, range(first.shape[axis] - 1), axis=axis)
        b = np.take(second, range(1, second.shape[axis]), axis=axis)
        c = np.take(second, range(second.shape[axis] - 1), axis=axis)
        d = np.take(first, range(1, first.shape[axis]), axis=axis)
        rows, cols = np.nonzero((a & b) | (c & d))
        offset = np.array([0.5, 0.0]) if axis == 0 else np.array([0.0, 0.5])
        points.append(np.stack([rows, cols], axis=1) + offset)
    return np.concatenate(points).astype(float)


def _valve_from_border(border: np.ndarray, atrium: np.ndarray, plane: PlaneGeometry) -> tuple[ValveLine, np.ndarray]:
    """Fit the valve line to border points; returns it and the unit normal (row, col) pointing into the atrium."""
    spacing = np.array(plane.spacing_mm)
    points_mm = border * spacing
    centre_mm = points_mm.mean(axis=0)
    atrium_centre_mm = np.argwhere(atrium).mean(axis=0) * spacing
    if len(border) >= 2 and np.ptp(points_mm, axis=0).max() > 0:
        _, _, vt = np.linalg.svd(points_mm - centre_mm, full_matrices=False)
        along = vt[0]
    else:  # a single contact point: the line is perpendicular to the way into the atrium
        towards = atrium_centre_mm - centre_mm
        along = np.array([-towards[1], towards[0]]) / max(np.linalg.norm(towards), 1e-9)
    normal = np.array([-along[1], along[0]])
    if np.dot(atrium_centre_mm - centre_mm, normal) < 0:
        normal = -normal
    projections = (points_mm - centre_mm) @ along
    ends_mm = centre_mm + np.outer([projections.min(), projections.max()], along)
    ends_px = ends_mm / spacing
    ends_ras = plane.to_ras(ends_px[:, 0], ends_px[:, 1])
    midpoint_px = centre_mm / spacing
    valve = ValveLine(ends_ras=ends_ras, midpoint_ras=plane.to_ras(midpoint_px[0], midpoint_px[1]))
    return valve, normal


def _cut_at_valve(region: np.ndarray, seed: tuple[int, int], plane: PlaneGeometry, split_depth_mm: float):
    """Split a region that runs through the valve into the ventricle; returns (atrium region, valve line or None).

    The region's distance map has one maximum per chamber with a saddle at the valve's narrowing; a watershed
    from the maxima deeper than ``split_depth_mm`` separates the chambers, the valve line is fitted to the border
    between the seed's basin and the neighbour it shares the longest border with, and everything beyond that line
    is cut away.
    """
    from skimage.morphology import local_maxima, reconstruction
    from skimage.segmentation import watershed

    distance = ndimage.distance_transform_edt(region, sampling=plane.spacing_mm)
    # h-dome flattening: each maximum at least split_depth_mm above its saddle becomes one connected plateau
    flattened = reconstruction(distance - split_depth_mm, distance, method="dilation")
    markers, count = ndimage.label(local_maxima(flattened, allow_borders=True) & region)
    if count < 2:
        return region, None
    basins = watershed(-distance, markers, mask=region)
    own = basins[seed]
    if own == 0:
        return region, None
    atrium = basins == own
    best, best_border = None, None
    for other in range(1, count + 1):
        if other == own:
            continue
        border = _border_points(atrium, basins == other)
        if len(border) and (best_border is None or len(border) > len(best_border)):
            best, best_border = other, border
    if best is None:
        return region, None
    valve, normal = _valve_from_border(best_border, atrium, plane)
    spacing = np.array(plane.spacing_mm)
    rows, cols = np.indices(region.shape)
    midpoint = best_border.mean(axis=0) * spacing
    side = (rows * spacing[0] - midpoint[0]) * normal[0] + (cols * spacing[1] - midpoint[1]) * normal[1]
    kept = _component_at(region & (side >= 0.0), seed)
    if not kept.any():
        return atrium, valve
    return kept, valve


def _refine(mask: np.ndarray, plane: PlaneGeometry, vein_radius_mm: float, seed: tuple[int, int] | None) -> np.ndarray:
    """Fill holes, open away vein stubs narrower than 2 × ``vein_radius_mm``, smooth, keep one component."""
    mask = ndimage.binary_fill_holes(mask)
    if vein_radius_mm > 0:
        opened = ndimage.binary_opening(mask, structure=plane.disk(vein_radius_mm))
        if opened.any():
            mask = opened
    sr, sc = plane.spacing_mm
    smooth = ndimage.gaussian_filter(mask.astype(np.float32), sigma=(1.0, sr / sc)) >= 0.5
    if smooth.any():
        mask = smooth
    mask = ndimage.binary_fill_holes(mask)
    if seed is not None and mask[seed]:
        return _component_at(mask, seed)
    return _largest_component(mask)


def _grow(image: np.ndarray, seed: tuple[int, int], plane: PlaneGeometry, passes: int = 2) -> tuple[np.ndarray, float]:
    """Connected-threshold region from ``seed``: threshold halfway between the blood and the adjacent tissue.

    Blood is the median near the seed; the adjacent tissue is the 10th percentile of a thin ring just outside the
    current region (the atrial wall or whatever the blood borders), so the threshold sits at the half-way point of
    the blurred edge and the boundary is not biased in or out.
    """
    near = plane.disk(3.0)
    blood = float(np.median(_disc_values(image, seed, near)))
    region = _component_at(image >= 0.6 * blood, seed)
    threshold = 0.6 * blood
    ring_outer = plane.disk(3.0)
    for _ in range(passes):
        ring = ndimage.binary_dilation(region, structure=ring_outer) & ~region
        interior = ndimage.binary_erosion(region, structure=plane.disk(2.0))
        local = interior & _within(region.shape, seed, plane, 15.0)
        if local.sum() >= 5:
            blood = float(np.median(image[local]))
        if not ring.any():
            break
        tissue = float(np.percentile(image[ring], 10))
        threshold = 0.5 * (blood + tissue)
        region = ndimage.binary_fill_holes(_component_at(image >= threshold, seed))
        if not region.any():
            break
    return region, threshold


def _within(shape: tuple[int, int], centre: tuple[int, int], plane: PlaneGeometry, radius_mm: float) -> np.ndarray:
    sr, sc = plane.spacing_mm
    rows, cols = np.indices(shape)
    return ((rows - centre[0]) * sr) ** 2 + ((cols - centre[1]) * sc) ** 2 <= radius_mm**2


def seed_pixel(plane: PlaneGeometry, seed_ras, what: str) -> tuple[int, int]:
    """The pixel of a RAS seed point, or an ``InputError`` saying why it cannot be used."""
    seed_ras = np.asarray(seed_ras, dtype=float)
    if seed_ras.shape != (3,) or not np.all(np.isfinite(seed_ras)):
        raise InputError(f"the {what} seed must be three numbers R,A,S in mm; got {seed_ras.tolist()}")
    row, col, off_plane = plane.to_pixel(seed_ras)
    tolerance = max(5.0, 0.5 * float(np.linalg.norm(plane.ijk_to_ras[:3, 2])))
    where = f"({', '.join(f'{v:.1f}' for v in seed_ras)}) mm"
    if abs(off_plane) > tolerance:
        raise InputError(
            f"the {what} seed {where} lies {abs(off_plane):.1f} mm from the image plane (at most {tolerance:.1f} mm);"
            " pick it on that view"
        )
    if not (-0.5 <= row <= plane.rows - 0.5 and -0.5 <= col <= plane.cols - 0.5):
        raise InputError(
            f"the {what} seed {where} lies outside the image (row {row:.0f}, column {col:.0f}; the image has"
            f" {plane.rows} rows and {plane.cols} columns)"
        )
    return int(round(min(max(row, 0), plane.rows - 1))), int(round(min(max(col, 0), plane.cols - 1)))


def _check_not_background(image: np.ndarray, seed: tuple[int, int], plane: PlaneGeometry, what: str) -> None:
    """A seed must sit in bright blood: its neighbourhood at least half as bright as the image's bright blood."""
    local = float(np.median(_disc_values(image, seed, plane.disk(3.0))))
    bright = float(np.percentile(image, 99.0))
    if bright <= 0 or local < 0.5 * bright:
        ratio = local / bright if bright > 0 else 0.0
        raise InputError(
            f"the {what} seed is in dark tissue or background (signal {ratio:.0%} of the bright blood level);"
            " place it inside the atrial blood pool"
        )


def _deepest_point(mask: np.ndarray, plane: PlaneGeometry) -> tuple[int, int]:
    """The mask pixel farthest from its edge: the next phase's seed, robust to motion and concave shapes."""
    distance = ndimage.distance_transform_edt(mask, sampling=plane.spacing_mm)
    index = np.unravel_index(int(np.argmax(distance)), mask.shape)
    return int(index[0]), int(index[1])


def segment_atrium_seeded(
    frames: np.ndarray,
    ijk_to_ras: np.ndarray,
    seed_ras,
    seed_phase: int = 0,
    what: str = "atrium",
    vein_radius_mm: float = 6.0,
    split_depth_mm: float = 3.0,
    max_area_fraction: float = 0.25,
    cancel: CancelToken | None = None,
) -> AtrialContours:
    """Seeded contours of one atrium over every phase of a single-slice cine ``frames`` [T, (1,) J, I].

    The seed (RAS mm) marks the atrium on ``seed_phase``; later phases (cyclically) start from the deepest point
    of the previous phase's contour. Raises ``InputError`` for a seed off the image or in dark tissue, and when the
    grown region leaks into the background (more than ``max_area_fraction`` of the image, or touching its edge).
    """
    images = as_phases(frames).astype(np.float32, copy=False)
    phases = images.shape[0]
    plane = PlaneGeometry(np.asarray(ijk_to_ras, dtype=float), *images.shape[1:])
    if not 0 <= seed_phase < phases:
        raise InputError(f"seed phase {seed_phase} is outside the cine's phases 0 to {phases - 1}")
    seed = seed_pixel(plane, seed_ras, what)
    _check_not_background(images[seed_phase], seed, plane, what)
    masks = np.zeros(images.shape, bool)
    valves: list[ValveLine | None] = [None] * phases
    seeds: list[tuple[float, float] | None] = [None] * phases
    thresholds: list[float | None] = [None] * phases
    for step in range(phases):
        if cancel is not None:
            cancel.raise_if_cancelled()
        phase = (seed_phase + step) % phases
        image = images[phase]
        if step > 0 and image[seed] < (thresholds[(phase - 1) % phases] or 0.0):
            # the carried seed fell on dark tissue: restart from the brightest pixel of the previous contour
            previous = masks[(phase - 1) % phases]
            candidates = np.where(previous, ndimage.uniform_filter(image, 3), -np.inf)
            seed = tuple(int(v) for v in np.unravel_index(int(np.argmax(candidates)), image.shape))
        region, threshold = _grow(image, seed, plane)
        area_fraction = region.mean()
        touches_edge = region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any()
        if area_fraction > max_area_fraction or touches_edge or not region.any():
            extent = "reaches the image edge" if touches_edge else f"covers {area_fraction:.0%} of the image"
            raise InputError(
                f"the {what} contour grown at phase {phase} {extent}: the seed is not inside a closed atrial blood pool"
            )
        region, valve = _cut_at_valve(region, seed, plane, split_depth_mm)
        mask = _refine(region, plane, vein_radius_mm, seed)
        if mask.sum() * plane.pixel_area_mm2 < 100.0:
            raise InputError(f"the {what} contour at phase {phase} is smaller than 1 cm²: is the seed in the atrium?")
        masks[phase], valves[phase], seeds[phase], thresholds[phase] = mask, valve, seed, threshold
        seed = _deepest_point(mask, plane)
    return AtrialContours(masks, valves, ["seeded"] * phases, seeds, thresholds)


def contours_from_labels(
    labels: np.ndarray,
    atrium_value: int,
    ventricle_value: int | None,
    ijk_to_ras: np.ndarray,
    vein_radius_mm: float = 6.0,
    source: str = "model",
) -> AtrialContours:
    """Atrial contours from label maps [T, J, I] (a model's output): one component, veins off, valve from labels.

    Where the labels include the ventricle, the valve line is fitted to the border between atrium and ventricle.
    """
    labels = as_phases(labels)
    plane = PlaneGeometry(np.asarray(ijk_to_ras, dtype=float), *labels.shape[1:])
    masks = np.zeros(labels.shape, bool)
    valves: list[ValveLine | None] = []
    for phase, phase_labels in enumerate(labels):
        atrium = phase_labels == atrium_value
        mask = _refine(atrium, plane, vein_radius_mm, None) if atrium.any() else atrium
        masks[phase] = mask
        valve = None
        if ventricle_value is not None and mask.any():
            border = _border_points(mask, phase_labels == ventricle_value)
            if len(border):
                valve, _ = _valve_from_border(border, mask, plane)
        valves.append(valve)
    return AtrialContours(masks, valves, [source] * len(masks))


# ------------------------------------------------------------------------------------------------ measurement


def contour_points_px(mask: np.ndarray) -> np.ndarray:
    """Sub-pixel boundary points (row, col) of a mask: its iso-line at 0.5, on pixel edges."""
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float32), 1)
    contours = find_contours(padded, 0.5)
    if not contours:
        return np.zeros((0, 2))
    return np.concatenate(contours) - 1.0


def atrial_length_mm(mask: np.ndarray, plane: PlaneGeometry, valve: ValveLine | None) -> tuple[float, str]:
    """L of the area-length formula and the rule used: valve midpoint to farthest point, or the longest chord."""
    points = contour_points_px(mask)
    if len(points) == 0:
        return 0.0, LENGTH_LONGEST_CHORD
    ras = plane.to_ras(points[:, 0], points[:, 1])
    if valve is not None:
        # the valve midpoint lies on the atrial contour: take the contour point nearest to the fitted line's middle
        start = ras[int(np.argmin(np.linalg.norm(ras - valve.midpoint_ras, axis=1)))]
        return float(np.linalg.norm(ras - start, axis=1).max()), LENGTH_FROM_VALVE
    if len(ras) > 3:
        from scipy.spatial import ConvexHull, QhullError

        try:
            in_plane_mm = np.stack([points[:, 0] * plane.spacing_mm[0], points[:, 1] * plane.spacing_mm[1]], axis=1)
            ras = ras[ConvexHull(in_plane_mm).vertices]  # the longest chord joins two hull vertices
        except QhullError:
            pass
    differences = ras[:, None, :] - ras[None, :, :]
    return float(np.sqrt((differences**2).sum(axis=-1)).max()), LENGTH_LONGEST_CHORD


@dataclass
class ViewMeasurement:
    """Area (mm²), length (mm) and the length rule of one atrium in one view, per phase."""

    area_mm2: np.ndarray
    length_mm: np.ndarray
    length_rules: list[str]


def measure_contours(contours: AtrialContours, plane: PlaneGeometry, what: str) -> ViewMeasurement:
    """Areas and lengths of every phase; an empty contour is an error, never a volume of zero."""
    areas, lengths, rules = [], [], []
    for phase, mask in enumerate(contours.masks):
        if not mask.any():
            raise InputError(f"the {what} contour of phase {phase} is empty; every phase needs a contour")
        length, rule = atrial_length_mm(mask, plane, contours.valves[phase])
        areas.append(float(mask.sum()) * plane.pixel_area_mm2)
        lengths.append(length)
        rules.append(rule)
    return ViewMeasurement(np.array(areas), np.array(lengths), rules)


def resample_cycle(values: np.ndarray, count: int) -> np.ndarray:
    """Values over one cycle of ``len(values)`` evenly spaced phases, at ``count`` evenly spaced phases (periodic)."""
    values = np.asarray(values, dtype=float)
    if len(values) == count:
        return values.copy()
    source = np.arange(len(values) + 1) / len(values)
    target = np.arange(count) / count
    return np.interp(target, source, np.append(values, values[0]))


def cycle_summary(volumes_ml: np.ndarray, frame_times_ms: list[float] | None) -> dict:
    """Max, min (ml), their phases and times, and the emptying fraction (%) of a volume curve."""
    volumes_ml = np.asarray(volumes_ml, dtype=float)
    largest, smallest = int(np.argmax(volumes_ml)), int(np.argmin(volumes_ml))
    summary = {
        "max_ml": float(volumes_ml[largest]),
        "min_ml": float(volumes_ml[smallest]),
        "emptying_fraction_pct": emptying_fraction_pct(float(volumes_ml[largest]), float(volumes_ml[smallest])),
        "max_phase": largest,
        "min_phase": smallest,
        "max_time_ms": float(frame_times_ms[largest]) if frame_times_ms else None,
        "min_time_ms": float(frame_times_ms[smallest]) if frame_times_ms else None,
        "volume_curve_ml": np.round(volumes_ml, 3).tolist(),
    }
    return summary


# ------------------------------------------------------------------------------------------------ input checks


def check_views(two_chamber: ImageSeries, four_chamber: ImageSeries) -> list[str]:
    """Refuse inputs that cannot be two long-axis cines of one heart; return softer warnings."""
    warnings = []
    for view, series in (("2ch", two_chamber), ("4ch", four_chamber)):
        name = VIEW_NAMES[view]
        shape = np.asarray(series.frames).shape
        if len(shape) != 4:
            raise InputError(f"the {name} input must be a cine [phases, slices, rows, columns]; got shape {shape}")
        if shape[0] < 2:
            raise InputError(
                f"the {name} input ({series.source or series.name}) has a single frame: atrial volumes over the cycle"
                " need a cine"
            )
        if shape[1] != 1:
            raise InputError(
                f"the {name} input ({series.source or series.name}) has {shape[1]} slices; a long-axis cine is one slice"
            )
        if series.modality and series.modality != "MR":
            raise InputError(f"the {name} input has modality {series.modality}; a long-axis cine MR is needed")
        if shape[0] < MIN_PHASES_WARNING:
            warnings.append(f"the {name} cine has only {shape[0]} phases: the largest and smallest volumes may be missed")
    for key in (Key.PATIENT_ID, Key.STUDY_INSTANCE_UID):
        first, second = two_chamber.metadata.get(key), four_chamber.metadata.get(key)
        if first and second and first != second:
            raise InputError(
                f"the 2-chamber and 4-chamber views come from different studies ({key} {first} and {second});"
                " give both views of one examination"
            )
    crossing = planes_intersection(plane_of(two_chamber), plane_of(four_chamber))
    if crossing is None:
        raise InputError(
            f"the 2-chamber and 4-chamber planes are parallel or less than {PLANE_ANGLE_MIN_DEG:.0f}° apart: they are"
            " not two long-axis views of one heart (check the inputs' order and geometry)"
        )
    for view, series in (("2ch", two_chamber), ("4ch", four_chamber)):
        rows, _, _ = line_in_image(plane_of(series), *crossing)
        if len(rows) == 0:
            raise InputError(
                f"the line where the two planes meet does not cross the {VIEW_NAMES[view]} image: the views are not"
                " two long-axis views of one heart (different studies or frames of reference?)"
            )
    return warnings


def crossing_chords_mm(two_chamber: ImageSeries, four_chamber: ImageSeries, mask_2ch: np.ndarray,
                       mask_4ch: np.ndarray) -> tuple[float, float]:
    """Length (mm) of the planes' common line inside the LA in each view: the same 3D chord, seen twice."""
    crossing = planes_intersection(plane_of(two_chamber), plane_of(four_chamber))
    chords = []
    for series, mask in ((two_chamber, mask_2ch), (four_chamber, mask_4ch)):
        rows, cols, step_mm = line_in_image(plane_of(series), *crossing)
        rows = np.clip(np.round(rows).astype(int), 0, mask.shape[0] - 1)
        cols = np.clip(np.round(cols).astype(int), 0, mask.shape[1] - 1)
        chords.append(float(mask[rows, cols].sum() * step_mm))
    return chords[0], chords[1]


# ------------------------------------------------------------------------------------------------ analysis


@dataclass
class AtrialAnalysis:
    """Every figure (``results``, the content of results.json) and the contours per view and atrium."""

    results: dict
    contours: dict[str, dict[str, AtrialContours]]


def installed_model(registry, model_id: str | None = None):
    """The long-axis model to use: the one asked for, else the task's default when it is installed, else None."""
    if model_id is not None:
        return registry.get(model_id, task=TASK)
    installed = [entry for entry in registry.models(TASK) if registry.is_installed(entry)]
    if not installed:
        return None
    defaults = [entry for entry in installed if entry.default]
    return (defaults or installed)[0]


def _model_contours(segmenter, views: dict[str, ImageSeries], vein_radius_mm: float, progress, cancel):
    """Contours of every atrium in every view from the model's label maps."""
    entry = segmenter.entry
    values = {}
    for atrium in ("la", "ra"):
        try:
            values[atrium] = entry.label_value(ATRIUM_NAMES[atrium])
        except KeyError:
            raise ModelError(f"model '{entry.id}' has no '{ATRIUM_NAMES[atrium]}' label; it cannot measure the atria") from None
    ventricles = {}
    for atrium, name in VENTRICLE_OF.items():
        try:
            ventricles[atrium] = entry.label_value(name)
        except KeyError:
            ventricles[atrium] = None
    contours: dict[str, dict[str, AtrialContours]] = {}
    for index, (view, series) in enumerate(views.items()):
        images = as_phases(series.frames).astype(np.float32)
        labels = segmenter.segment(images, segmenter.prepare(images), progress, cancel,
                                   progress_span=(0.1 + 0.35 * index, 0.45 + 0.35 * index))
        contours[view] = {
            atrium: contours_from_labels(labels, values[atrium], ventricles[atrium], series.ijk_to_ras, vein_radius_mm)
            for atrium in VIEW_ATRIA[view]
        }
    return contours


def check_corrections(corrections: dict[str, dict[str, dict[int, np.ndarray]]],
                      views: dict[str, ImageSeries]) -> dict[str, dict[str, dict[int, np.ndarray]]]:
    """Corrections as boolean masks, refused before any work when they cannot belong to the views."""
    checked: dict[str, dict[str, dict[int, np.ndarray]]] = {}
    for view, by_atrium in corrections.items():
        if view not in views:
            raise InputError(f"a correction names the view '{view}'; the views are 2ch and 4ch")
        phases, rows, cols = as_phases(views[view].frames).shape
        for atrium, by_phase in by_atrium.items():
            if atrium not in VIEW_ATRIA[view]:
                raise InputError(
                    f"the {VIEW_NAMES[view]} correction holds a {ATRIUM_NAMES.get(atrium, atrium)} contour, which that"
                    " view does not measure"
                )
            for phase, mask in by_phase.items():
                if not 0 <= phase < phases:
                    raise InputError(
                        f"the {VIEW_NAMES[view]} correction has a contour for phase {phase}; the cine has phases 0 to"
                        f" {phases - 1}"
                    )
                mask = np.asarray(mask).astype(bool)
                if mask.shape != (rows, cols):
                    raise InputError(
                        f"the {VIEW_NAMES[view]} correction of phase {phase} is {mask.shape[0]}×{mask.shape[1]} pixels;"
                        f" the image is {rows}×{cols}"
                    )
                if not mask.any():
                    raise InputError(
                        f"the corrected {ATRIUM_NAMES[atrium].lower()} ({VIEW_NAMES[view]}) contour of phase {phase} is"
                        " empty; every phase needs a contour"
                    )
                checked.setdefault(view, {}).setdefault(atrium, {})[phase] = mask
    return checked


def apply_corrections(contours: dict[str, dict[str, AtrialContours]],
                      corrections: dict[str, dict[str, dict[int, np.ndarray]]]) -> int:
    """Replace the automatic contour of every (view, atrium, phase) the user changed; returns how many changed.

    ``corrections`` must have passed ``check_corrections``.
    """
    count = 0
    for view, by_atrium in corrections.items():
        for atrium, by_phase in by_atrium.items():
            target = contours[view][atrium]
            for phase, mask in by_phase.items():
                if np.array_equal(mask, target.masks[phase]):
                    continue  # handed back unchanged: still the automatic contour
                target.masks[phase] = mask
                target.sources[phase] = "corrected"
                count += 1
    return count


def atrial_volumes(
    two_chamber: ImageSeries,
    four_chamber: ImageSeries,
    la_seed_2ch=None,
    la_seed_4ch=None,
    ra_seed_4ch=None,
    seed_phase: int = 0,
    length_rule: str = "shorter",
    method: str = "auto",
    model_id: str | None = None,
    device: str = "auto",
    registry=None,
    allow_download: bool = False,
    corrections: dict[str, dict[str, dict[int, np.ndarray]]] | None = None,
    vein_radius_mm: float = 6.0,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> AtrialAnalysis:
    """LA (biplane) and RA (4-chamber single-plane) volume curves, their max, min and emptying fraction.

    ``method`` ``auto`` uses an installed ``cmr-lax-cine`` model when the registry has one and seeded contours
    otherwise; ``seeded`` and ``model`` force one. ``corrections`` ({view: {atrium: {phase: mask}}}) replace the
    automatic contour of the phases they hold; lengths keep the automatic valve line of that phase.
    """
    started = time.perf_counter()
    if length_rule not in LENGTH_RULES:
        raise InputError(f"length rule must be one of {', '.join(LENGTH_RULES)}, not '{length_rule}'")
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, not '{method}'")
    warnings = check_views(two_chamber, four_chamber)
    views = {"2ch": two_chamber, "4ch": four_chamber}
    corrections = check_corrections(corrections, views) if corrections else None
    seeds = {("2ch", "la"): la_seed_2ch, ("4ch", "la"): la_seed_4ch, ("4ch", "ra"): ra_seed_4ch}
    for (view, atrium), seed in seeds.items():
        if seed is not None:  # a seed given with a model must still be a point of the view
            seed_pixel(plane_of(views[view]), seed, f"{ATRIUM_NAMES[atrium].lower()} ({VIEW_NAMES[view]})")

    entry = None
    if method in ("auto", "model"):
        from CardiacSuiteLib.inference.registry import ModelRegistry

        registry = registry or ModelRegistry.default()
        entry = installed_model(registry, model_id)
        if entry is None and method == "model":
            raise ModelError(f"no model for the task '{TASK}' is installed; use the seeded method or install one")
    report(progress, 0.0, "segmenting the atria")
    if entry is not None:
        from CardiacSuiteLib.inference.backends import create_backend
        from CardiacSuiteLib.inference.segment2d import SliceSegmenter

        path = registry.resolve(entry, allow_download=allow_download)
        segmenter = SliceSegmenter(entry, create_backend(entry, path, device))
        contours = _model_contours(segmenter, views, vein_radius_mm, progress, cancel)
        segmentation = {"source": "model", "model": {"id": entry.id, "version": entry.version, "device": segmenter.device}}
    else:
        contours = {view: {} for view in views}
        for number, ((view, atrium), seed) in enumerate(seeds.items()):
            what = f"{ATRIUM_NAMES[atrium].lower()} ({VIEW_NAMES[view]})"
            if seed is None:
                raise InputError(f"seeded contours need a seed point in the {what}: a point R,A,S (mm) inside it")
            series = views[view]
            contours[view][atrium] = segment_atrium_seeded(
                series.frames, series.ijk_to_ras, seed, seed_phase, what, vein_radius_mm, cancel=cancel
            )
            report(progress, 0.3 * (number + 1), f"segmented the {what}")
        segmentation = {
            "source": "seeded",
            "description": (
                "connected-threshold region growing from the seed, threshold halfway between the blood near the seed"
                " (median) and the darkest adjacent tissue (10th percentile of a 3 mm ring outside the region);"
                " automatic valve-plane cut where the region runs into the ventricle (distance-map watershed, line"
                " fitted to the border); seed carried to the next phase as the deepest point of the contour"
            ),
        }
    inference_s = time.perf_counter() - started
    corrected = apply_corrections(contours, corrections) if corrections else 0

    measured_at = time.perf_counter()
    planes = {view: plane_of(series) for view, series in views.items()}
    measured = {
        (view, atrium): measure_contours(contours[view][atrium], planes[view],
                                         f"{ATRIUM_NAMES[atrium].lower()} ({VIEW_NAMES[view]})")
        for view in views for atrium in VIEW_ATRIA[view]
    }
    phases_4ch = four_chamber.frames.shape[0]
    phases_2ch = two_chamber.frames.shape[0]
    la2, la4 = measured[("2ch", "la")], measured[("4ch", "la")]
    area_2ch = resample_cycle(la2.area_mm2, phases_4ch)
    length_2ch = resample_cycle(la2.length_mm, phases_4ch)
    la_length = biplane_length_mm(length_2ch, la4.length_mm, length_rule)
    la_curve = biplane_volume_ml(area_2ch, la4.area_mm2, la_length)
    ra4 = measured[("4ch", "ra")]
    ra_curve = single_plane_volume_ml(ra4.area_mm2, ra4.length_mm)
    times = four_chamber.frame_times_ms

    la = cycle_summary(la_curve, times)
    la["method"] = "biplane area-length, 2- and 4-chamber"
    la["length_curve_mm"] = np.round(la_length, 2).tolist()
    ra = cycle_summary(ra_curve, times)
    ra["method"] = "single-plane area-length, 4-chamber; assumes a circular cross-section"

    chord_phase = la["max_phase"]
    chord_phase_2ch = int(round(chord_phase * phases_2ch / phases_4ch)) % phases_2ch
    chord_2ch, chord_4ch = crossing_chords_mm(
        two_chamber, four_chamber, contours["2ch"]["la"].masks[chord_phase_2ch], contours["4ch"]["la"].masks[chord_phase]
    )
    for view, chord in (("2ch", chord_2ch), ("4ch", chord_4ch)):
        if chord == 0.0:
            warnings.append(
                f"the line where the two planes meet misses the left atrium in the {VIEW_NAMES[view]} view: check that"
                " both views are planned through the mitral valve centre and come from this study"
            )
    if chord_2ch > 0 and chord_4ch > 0 and abs(chord_2ch - chord_4ch) > 0.25 * max(chord_2ch, chord_4ch):
        warnings.append(
            f"the left atrium's chord along the planes' common line is {chord_2ch:.1f} mm in the 2-chamber view and"
            f" {chord_4ch:.1f} mm in the 4-chamber view (more than 25 % apart): check the contours and the views"
        )

    per_view = {}
    for view in views:
        per_view[view] = {"phases": int(views[view].frames.shape[0]), "frame_times_ms": views[view].frame_times_ms}
        for atrium in VIEW_ATRIA[view]:
            m, c = measured[(view, atrium)], contours[view][atrium]
            per_view[view][atrium] = {
                "area_mm2": np.round(m.area_mm2, 1).tolist(),
                "length_mm": np.round(m.length_mm, 2).tolist(),
                "length_rule": m.length_rules,
                "source": c.sources,
                "valve": [v.to_json() if v is not None else None for v in c.valves],
            }
    results = {
        "la": la,
        "ra": ra,
        "views": per_view,
        "method": {
            "area_length_constant": AREA_LENGTH_CONSTANT,
            "la_formula": "V = 8/(3π) · A2ch · A4ch / L",
            "ra_formula": "V = 8/(3π) · A4ch² / L",
            "biplane_length_rule": length_rule,
            "biplane_length": "shorter of the 2- and 4-chamber lengths" if length_rule == "shorter"
            else "mean of the 2- and 4-chamber lengths",
            "length_definition": f"{LENGTH_FROM_VALVE}; {LENGTH_LONGEST_CHORD} where no valve line is known",
            "phase_pairing": "by phase index" if phases_2ch == phases_4ch else
            f"2-chamber area and length resampled (periodic linear) from {phases_2ch} to the 4-chamber's"
            f" {phases_4ch} phases by fraction of the cycle",
            "exclusions": f"pulmonary-vein stubs narrower than {2 * vein_radius_mm:g} mm removed (opening); wider"
            " ostia and the left atrial appendage are not separated automatically",
            "segmentation": segmentation,
            "corrected_contours": corrected,
            "seed_phase": seed_phase,
        },
        "cross_check": {"la_chord_2ch_mm": round(chord_2ch, 2), "la_chord_4ch_mm": round(chord_4ch, 2),
                        "phase": chord_phase},
        "warnings": warnings,
        "timing_s": {"segmentation": inference_s, "measurement": time.perf_counter() - measured_at},
    }
    report(progress, 1.0, "measured")
    return AtrialAnalysis(results, contours)


# ------------------------------------------------------------------------------------------------ scene and files

ROLE_CINE = {"2ch": Role.ATRIAL_2CH_CINE, "4ch": Role.ATRIAL_4CH_CINE}
ROLE_SEGMENTATION = {"2ch": Role.ATRIAL_2CH_SEGMENTATION, "4ch": Role.ATRIAL_4CH_SEGMENTATION}
ROLE_TABLE = Role.ATRIAL_TABLE
RESULTS_KEY = Key.ATRIAL_RESULTS
TAG_ATRIUM, TAG_PHASE = "CardiacSuite.Atrium", "CardiacSuite.Phase"
_SEGMENT_ID = re.compile(r"^(LA|RA)_phase(\d+)$")
_SEGMENT_NAME = re.compile(r"^(Left|Right) atrium phase (\d+)\b")


def oriented_mask(mask: np.ndarray, ijk_to_ras: np.ndarray):
    """A vtkOrientedImageData of one 2D mask [J, I] placed on its plane."""
    import vtk
    from vtk.util import numpy_support

    import slicer
    from CardiacSuiteLib import mrml

    image = slicer.vtkOrientedImageData()
    image.SetDimensions(mask.shape[1], mask.shape[0], 1)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(mask, dtype=np.uint8).ravel(), deep=True,
                                         array_type=vtk.VTK_UNSIGNED_CHAR)
    image.GetPointData().SetScalars(scalars)
    image.SetImageToWorldMatrix(mrml.numpy_to_matrix(ijk_to_ras))
    return image


def _segment_name(atrium: str, phase: int, times: list[float] | None) -> str:
    when = f" ({times[phase]:g} ms)" if times else ""
    return f"{ATRIUM_NAMES[atrium]} phase {phase}{when}"


def _add_segment(segmentation_node, segment_id: str, name: str, atrium: str, phase: int, mask: np.ndarray,
                 ijk_to_ras: np.ndarray) -> None:
    import slicer

    logic = slicer.vtkSlicerSegmentationsModuleLogic
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.AddEmptySegment(segment_id, name, list(ATRIUM_COLOURS[atrium]))
    segment = segmentation.GetSegment(segment_id)
    segment.SetNameAutoGenerated(False)
    segment.SetColorAutoGenerated(False)
    segment.SetTag(TAG_ATRIUM, atrium)
    segment.SetTag(TAG_PHASE, str(phase))
    if mask.any():
        logic.SetBinaryLabelmapToSegment(oriented_mask(mask, ijk_to_ras), segmentation_node, segment_id,
                                         logic.MODE_REPLACE)


def fill_view_segmentation(segmentation_node, view: str, series: ImageSeries,
                           contours: dict[str, AtrialContours]) -> None:
    """One segment per atrium and phase (overlapping, so stored in layers), tagged with its atrium and phase.

    This is the file a reader corrects: edit the segment of a phase, save, and give it back with
    ``--segmentation-2ch``/``--segmentation-4ch``; phases left out keep their automatic contours.
    """
    segmentation_node.GetSegmentation().RemoveAllSegments()
    for atrium in VIEW_ATRIA[view]:
        for phase, mask in enumerate(contours[atrium].masks):
            _add_segment(segmentation_node, f"{atrium.upper()}_phase{phase:02d}",
                         _segment_name(atrium, phase, series.frame_times_ms), atrium, phase, mask, series.ijk_to_ras)
    segmentation_node.Modified()


def write_view_segmentation(scene, path, view: str, series: ImageSeries, contours: dict[str, AtrialContours]):
    """Save a view's contours as a ``.seg.nrrd`` (see ``fill_view_segmentation``); returns the node."""
    from CardiacSuiteLib import mrml

    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{series.name} atrial contours")
    node.CreateDefaultDisplayNodes()
    fill_view_segmentation(node, view, series, contours)
    mrml.save_node(node, path)
    return node


def _segment_key(segment, segment_id: str, path) -> tuple[str, int]:
    """(atrium, phase) of a segment: from its tags, else its ID or name as CardiacSuite writes them."""
    import vtk

    atrium, phase = vtk.reference(""), vtk.reference("")
    if segment.GetTag(TAG_ATRIUM, atrium) and segment.GetTag(TAG_PHASE, phase):
        text_atrium, text_phase = str(atrium), str(phase)
        if text_atrium in ATRIUM_NAMES and text_phase.isdigit():
            return text_atrium, int(text_phase)
    match = _SEGMENT_ID.match(segment_id) or _SEGMENT_NAME.match(segment.GetName())
    if match is None:
        raise InputError(
            f"{path}: segment '{segment.GetName()}' does not say which atrium and phase it is (name it like"
            f" 'Left atrium phase 3')"
        )
    first = match.group(1)
    return ("la" if first in ("LA", "Left") else "ra"), int(match.group(2))


def read_view_corrections(scene, path, view: str, series: ImageSeries) -> dict[str, dict[int, np.ndarray]]:
    """Corrected contours {atrium: {phase: mask [J, I]}} from a ``.seg.nrrd`` of one view, on that view's grid."""
    import vtk

    import slicer
    from CardiacSuiteLib import mrml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such segmentation file")
    existing = {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}
    try:
        node = mrml.load_segmentation(scene, path)
    except ValueError as error:
        raise InputError(str(error)) from None
    plane = plane_of(series)
    reference = mrml.add_volume(scene, np.zeros((1, plane.rows, plane.cols), np.uint8), series.ijk_to_ras,
                                f"{series.name} grid")
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "correction export")
    binary_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    corrections: dict[str, dict[int, np.ndarray]] = {}
    try:
        segmentation = node.GetSegmentation()
        for index in range(segmentation.GetNumberOfSegments()):
            segment_id = segmentation.GetNthSegmentID(index)
            segment = segmentation.GetSegment(segment_id)
            atrium, phase = _segment_key(segment, segment_id, path)
            image = segment.GetRepresentation(binary_name)
            if image is not None and _image_has_voxels(image):
                matrix = vtk.vtkMatrix4x4()
                image.GetImageToWorldMatrix(matrix)
                _check_same_plane(mrml.matrix_to_numpy(matrix), plane, path, view)
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(segment_id)
            mask = np.zeros((plane.rows, plane.cols), bool)
            if image is not None and _image_has_voxels(image):
                if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(node, ids, labelmap, reference):
                    raise InputError(f"{path}: segment '{segment.GetName()}' could not be placed on the {VIEW_NAMES[view]} image")
                if labelmap.GetImageData() is not None:
                    mask = mrml.array_from_volume(labelmap)[0] > 0
            corrections.setdefault(atrium, {})[phase] = mask
    finally:  # leave the scene as it was: every node loading and exporting made (storage, display, colours) goes
        added = [scene.GetNthNode(index) for index in range(scene.GetNumberOfNodes())]
        for extra in added:
            if extra.GetID() not in existing:
                scene.RemoveNode(extra)
    if not corrections:
        raise InputError(f"{path}: the segmentation holds no segments")
    return corrections


def _image_has_voxels(image) -> bool:
    extent = image.GetExtent()
    return extent[1] >= extent[0] and extent[3] >= extent[2] and extent[5] >= extent[4]


def _check_same_plane(matrix: np.ndarray, plane: PlaneGeometry, path, view: str) -> None:
    """A correction must lie in its view's plane: parallel (within 1°) and within 1 mm of it."""
    normal = np.cross(matrix[:3, 0], matrix[:3, 1])
    normal /= np.linalg.norm(normal)
    offset = abs(float(np.dot(matrix[:3, 3] - plane.origin, plane.normal)))
    if abs(float(np.dot(normal, plane.normal))) < np.cos(np.radians(1.0)) or offset > 1.0:
        raise InputError(
            f"{path}: the segmentation does not lie in the {VIEW_NAMES[view]} image's plane; give the file made for"
            " that view"
        )


def results_table_rows(results: dict) -> tuple[list[str], list[list[object]]]:
    """Rows (measurement, LA, RA, unit) for the scene's table."""
    la, ra = results["la"], results["ra"]
    rows = [
        ["Maximal volume", round(la["max_ml"], 1), round(ra["max_ml"], 1), "ml"],
        ["Minimal volume", round(la["min_ml"], 1), round(ra["min_ml"], 1), "ml"],
        ["Emptying fraction", round(la["emptying_fraction_pct"], 1), round(ra["emptying_fraction_pct"], 1), "%"],
        ["Phase of maximal volume", la["max_phase"], ra["max_phase"], "index"],
        ["Phase of minimal volume", la["min_phase"], ra["min_phase"], "index"],
        ["Method", "biplane area-length (2ch, 4ch)", "single-plane area-length (4ch)", ""],
    ]
    return ["Measurement", "Left atrium", "Right atrium", "Unit"], [[str(cell) for cell in row] for row in rows]


def add_atrial_results(scene, two_chamber: ImageSeries, four_chamber: ImageSeries, analysis: AtrialAnalysis) -> dict:
    """Both cines, their contours as segmentation sequences browsed with the cines, a table and the case node."""
    import slicer
    from CardiacSuiteLib import mrml
    from CardiacSuiteLib.case import CardiacCase
    from CardiacSuiteLib.imagedata import add_to_scene

    nodes: dict = {}
    case = CardiacCase.get_or_create(
        scene, f"{four_chamber.name} study", four_chamber.metadata.get(Key.STUDY_INSTANCE_UID, ""),
        four_chamber.metadata.get(Key.PATIENT_ID, ""))
    for view, series in (("2ch", two_chamber), ("4ch", four_chamber)):
        cine, browser = add_to_scene(scene, series)
        sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{series.name} atrial contours")
        sequence.SetIndexName(cine.GetIndexName())
        sequence.SetIndexUnit(cine.GetIndexUnit())
        sequence.SetIndexType(cine.GetIndexType())
        for phase in range(series.frames.shape[0]):
            item = slicer.vtkMRMLSegmentationNode()
            for atrium in VIEW_ATRIA[view]:  # the same segment IDs in every phase, as the browser expects
                _add_segment(item, atrium.upper(), ATRIUM_NAMES[atrium], atrium, phase,
                             analysis.contours[view][atrium].masks[phase], series.ijk_to_ras)
            item.SetName(f"{series.name} atria phase {phase}")
            sequence.SetDataNodeAtValue(item, cine.GetNthIndexValue(phase))
        browser.AddSynchronizedSequenceNode(sequence)
        browser.SetSaveChanges(sequence, True)
        proxy = browser.GetProxyNode(sequence)
        if proxy is not None:
            proxy.SetName(f"{series.name} atrial contours")
            proxy.CreateDefaultDisplayNodes()
        case.set_reference(ROLE_CINE[view], cine)
        case.set_reference(ROLE_SEGMENTATION[view], sequence)
        nodes[view] = {"cine": cine, "browser": browser, "segmentation": sequence}
    table = mrml.add_table(scene, f"{four_chamber.name} atrial volumes", *results_table_rows(analysis.results))
    case.set_reference(ROLE_TABLE, table)
    case.set_value(RESULTS_KEY, analysis.results)
    nodes["table"], nodes["case"] = table, case
    return nodes

