"""The structure-match score: how well a reconstruction matches a device in the image, without ground truth.

S = Σ wᵢ·partᵢ / Σ wᵢ over the parts that can be measured, each part in [0, 1] (cardiac-ct.md §3.4):

* **completeness** (C, 0.3): the share of the device envelope's cells (design sectors × axial bins) with metal
  on the envelope, times the share of the device's metal that lies within the reconstruction's length (a result
  that stops short of the device's end leaves metal unexplained);
* **continuity** (K, 0.2): the share of the envelope's metal in its largest connected piece, lowered by axial
  gaps with no metal (a missing ring) and by wire ends inside the device (a broken wire), counted on the
  skeleton of the metal unrolled onto the envelope (and by the gaps a wire tracing found);
* **apposition** (A, 0.2): 1 − d/d_max, d the mean device-to-wall gap (mm), d_max per device kind. The wall is
  the vessel segmentation's surface when one is given, otherwise the half-way crossing between blood and the
  tissue outside, on rays through the cells between struts; where struts bloom together and no such ray exists
  (coronary stents at 0.4–0.5 mm voxels) apposition is not measurable from the image and left out;
* **image fit** (F, 0.2): on every ray of the envelope that meets metal, the distance d from the envelope to the
  strut centre the image shows (the midpoint of the ray's two half-maximum crossings, each side against its own
  background, so blood inside and fat outside do not pull it, moved out by σ²/2r, the inward shift of a blurred
  wall's peak on a cylinder, σ from its width), as exp(−d²/2τ²) with τ half a voxel, averaged:
  1 where the envelope passes through the strut centres;
* **consistency** (T, 0.1): agreement of diameter and length with the nominal device, stability of length and
  mean diameter over the propagated phases, and how well the moved device sits on each phase's metal; left out
  when there is neither a nominal size nor a second phase.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import sections
from .model import STATION_STEP_MM, Reconstruction, Region

#: Above this share of the envelope covered by metal the struts bloom together (small coronary stents at
#: 0.4–0.5 mm voxels) and wire ends are not counted: their skeleton is of the bloom, not of the wires.
RESOLVED_FILL = 0.65

WEIGHTS = {"completeness": 0.3, "continuity": 0.2, "apposition": 0.2, "image_fit": 0.2, "consistency": 0.1}


@dataclass
class Score:
    value: float
    parts: dict[str, float | None]
    details: dict = field(default_factory=dict)
    wall_gap_mm: np.ndarray | None = None  # (N, S) device-to-wall gap where measured (NaN elsewhere)

    def as_dict(self) -> dict:
        return {"score": self.value, "parts": dict(self.parts), "weights": dict(WEIGHTS), "details": self.details}


def combine(parts: dict[str, float | None]) -> float:
    present = {k: v for k, v in parts.items() if v is not None}
    total = sum(WEIGHTS[k] for k in present)
    return float(sum(WEIGHTS[k] * v for k, v in present.items()) / total) if total else 0.0


def _tolerance_mm(region: Region) -> float:
    """How far from the envelope metal still supports it: the larger of 0.75 mm and 1.5 voxels."""
    return max(0.75, 1.5 * float(region.spacing_mm.max()))


def _metal_coordinates(region: Region, reconstruction: Reconstruction):
    """Metal voxels in cylindrical coordinates about the reconstruction's axis, with their offsets from the envelope."""
    points = region.voxel_ras(region.metal)
    values = region.image[region.metal]
    s, angle, r = sections.project_to_axis(points, reconstruction.axis)
    sectors = reconstruction.radii.shape[1]
    station = np.clip(np.rint(s / STATION_STEP_MM).astype(int), 0, len(reconstruction.axis) - 1)
    sector = np.mod(np.rint(angle / (2 * np.pi / sectors)).astype(int), sectors)
    offset = r - reconstruction.radii[station, sector]
    return points, values, s, angle, offset


def completeness(region: Region, reconstruction: Reconstruction, coords) -> tuple[float, dict]:
    design = region.spec.design
    points, values, s, angle, offset = coords
    tol = _tolerance_mm(region)
    length = sections.length_mm(reconstruction.axis)
    bins = max(int(round(length / design.axial_bin_mm)), 1)
    near = np.abs(offset) <= tol
    inside = near & (s >= 0) & (s <= length)
    axial = np.clip((s[inside] / length * bins).astype(int), 0, bins - 1)
    sector = np.mod((angle[inside] / (2 * np.pi) * design.sectors).astype(int), design.sectors)
    cells = np.zeros((bins, design.sectors), bool)
    cells[axial, sector] = True
    weight = np.clip(values - region.threshold_hu, 0, None) + 1.0
    band = np.abs(offset) <= max(1.5, 2 * tol)
    beyond = band & ((s < -tol) | (s > length + tol))
    covered = 1.0 - float(weight[beyond].sum() / max(weight[band].sum(), 1e-9))
    empty_bins = int((~cells.any(axis=1)).sum())
    return float(cells.mean()) * covered, {
        "cells_with_metal": float(cells.mean()), "grid": [bins, design.sectors], "axial_bin_mm": design.axial_bin_mm,
        "metal_beyond_ends": 1.0 - covered, "empty_axial_bins": empty_bins,
    }


def unrolled_metal(region: Region, reconstruction: Reconstruction, step_mm: float = 0.25) -> tuple[np.ndarray, float]:
    """The metal on the envelope, unrolled onto the cylinder: a 2D mask (axial position × arc around the axis,
    ``step_mm`` apart) of where the brightest value within the support tolerance of the envelope is metal.
    Returns (mask [s, θ], arc step in mm)."""
    tol = _tolerance_mm(region)
    axis = sections.resample(reconstruction.axis, step_mm)
    stations = np.linspace(0, len(reconstruction.radii) - 1, len(axis))
    mean_radius = float(reconstruction.radii.mean())
    columns = max(int(round(2 * np.pi * mean_radius / step_mm)), 8)
    sector_position = np.arange(columns) * reconstruction.radii.shape[1] / columns
    base = reconstruction.radii
    rows = np.stack([np.interp(stations, np.arange(len(base)), base[:, k]) for k in range(base.shape[1])], axis=1)
    radii = np.stack([np.interp(sector_position, np.arange(base.shape[1] + 1), np.append(row, row[0])) for row in rows])
    directions = sections.ray_directions(axis, columns)
    offsets = np.arange(-tol, tol + 1e-9, 0.1)
    peak = np.full(radii.shape, -np.inf)
    for offset in offsets:
        points = axis[:, None, :] + np.clip(radii + offset, 0, None)[..., None] * directions
        peak = np.maximum(peak, sections.sample(region.image, region.ijk_to_ras, points, fill=region.background_hu))
    return peak >= region.threshold_hu, 2 * np.pi * mean_radius / columns


def _ring_transitions(skeleton: np.ndarray) -> np.ndarray:
    """Per pixel, the number of background-to-skeleton steps going once around its 8 neighbours: 1 at a wire's
    end (also where a staircase gives the tip two touching neighbours), 2 along a wire, 3 or more at a node."""
    padded = np.pad(skeleton, 1).astype(np.int8)
    ring = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    rows, cols = skeleton.shape
    values = [padded[1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols] for dr, dc in ring]
    return sum(((values[i] == 0) & (values[(i + 1) % 8] == 1)).astype(np.int8) for i in range(8))


def wire_ends(mask: np.ndarray, spur_px: int) -> np.ndarray:
    """(row, column) of the wire ends of the unrolled metal's skeleton, columns wrapping around the axis. An end
    counts when its branch runs at least ``spur_px`` pixels before meeting a node: shorter spurs are the bloomed
    edges of struts, not broken wires."""
    from skimage.morphology import skeletonize

    pad = 2 * spur_px + 2
    wrapped = np.concatenate([mask[:, -pad:], mask, mask[:, :pad]], axis=1)
    skeleton = skeletonize(wrapped)
    transitions = _ring_transitions(skeleton)
    neighbours = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]
    found = []
    for row, col in np.argwhere(skeleton & (transitions == 1)):
        if not pad <= col < pad + mask.shape[1]:
            continue
        seen, current, steps = {(row, col)}, (row, col), 0
        while steps < spur_px:
            following = [(current[0] + dr, current[1] + dc) for dr, dc in neighbours
                         if 0 <= current[0] + dr < skeleton.shape[0] and 0 <= current[1] + dc < skeleton.shape[1]
                         and skeleton[current[0] + dr, current[1] + dc] and (current[0] + dr, current[1] + dc) not in seen]
            if not following or transitions[current] >= 3:
                break
            seen.update(following)
            current = following[0]
            steps += 1
        if steps >= spur_px:
            found.append((row, col - pad))
    return np.array(found, int).reshape(-1, 2)


def continuity(region: Region, reconstruction: Reconstruction, coords) -> tuple[float, dict]:
    design = region.spec.design
    points, values, s, angle, offset = coords
    tol = _tolerance_mm(region)
    length = sections.length_mm(reconstruction.axis)
    near = (np.abs(offset) <= tol) & (s >= -tol) & (s <= length + tol)
    band = np.zeros_like(region.metal)
    band[tuple(np.argwhere(region.metal)[near].T)] = True
    if not band.any():
        return 0.0, {"reason": "no metal on the envelope"}
    labels, count = ndimage.label(ndimage.binary_dilation(band, np.ones((3, 3, 3))))
    sizes = ndimage.sum_labels(band, labels, index=np.arange(1, count + 1))
    largest = float(sizes.max() / max(sizes.sum(), 1))

    # Axial gaps: runs of stations where metal covers less than a quarter of the sectors.
    stations = len(reconstruction.axis)
    sectors = reconstruction.radii.shape[1]
    station = np.clip(np.rint(s[near] / STATION_STEP_MM).astype(int), 0, stations - 1)
    sector = np.mod(np.rint(angle[near] / (2 * np.pi / sectors)).astype(int), sectors)
    covered = np.zeros((stations, sectors), bool)
    covered[station, sector] = True
    grown = covered.copy()
    for shift in (-2, -1, 1, 2):  # a strut covers the sectors either side of the one its centre falls in
        grown |= np.roll(covered, shift, axis=1)
    thin = grown.mean(axis=1) < 0.25
    runs, run_count = ndimage.label(thin)
    gaps = []
    for label in range(1, run_count + 1):
        where = np.flatnonzero(runs == label)
        if where[0] == 0 or where[-1] == stations - 1:
            continue  # a result that overshoots the device's end: completeness counts that, it is no gap
        if len(where) * STATION_STEP_MM >= 0.5 * design.gap_mm:
            gaps.append(float(len(where) * STATION_STEP_MM))
    axial_term = max(0.0, 1.0 - sum(gaps) / (2.0 * design.gap_mm))

    step = 0.25
    unrolled, _ = unrolled_metal(region, reconstruction, step)
    filled = float(unrolled.mean())
    inner = None
    if filled <= RESOLVED_FILL:  # struts apart: their skeleton is the wire pattern, and a loose end is a break
        spur = max(int(round(1.0 / step)), 2)  # bloomed strut edges give spurs shorter than 1 mm
        ends = wire_ends(unrolled, spur)
        margin = max(design.axial_bin_mm, 1.5) / step
        inner = int(((ends[:, 0] > margin) & (ends[:, 0] < unrolled.shape[0] - 1 - margin)).sum()) if len(ends) else 0
    own_gaps = [float(g) for g in reconstruction.method.get("gaps", [])]
    breaks = (inner or 0) + 2 * len([g for g in own_gaps if g >= design.gap_mm])
    end_term = max(0.4, 1.0 - 0.15 * breaks)
    return largest * axial_term * end_term, {
        "largest_piece": largest, "axial_gaps_mm": gaps, "metal_on_envelope": filled,
        "wire_ends_inside": inner if inner is not None else "not counted: the struts bloom together",
        "traced_gaps_mm": own_gaps,
    }


def image_fit(region: Region, reconstruction: Reconstruction) -> tuple[float, dict]:
    reach = max(1.5, 2 * _tolerance_mm(region))
    offsets = np.arange(-reach, reach + 1e-9, 0.1)
    radii = reconstruction.radii
    points = sections.ray_points(reconstruction.axis, radii, offsets)
    profile = sections.sample(region.image, region.ijk_to_ras, points, fill=region.background_hu)
    offset_mm, width_mm, valid = half_maximum_centres(profile, offsets)
    # A blurred wall on a cylinder peaks inside it by sigma²/2r (the ring's 1/sqrt(r) spread), sigma from the width.
    radius = np.maximum(radii + offset_mm, 0.1)
    offset_mm = offset_mm + (width_mm / 2.3548) ** 2 / (2.0 * radius)
    metal_rays = valid & (profile.max(axis=2) >= region.threshold_hu)
    if not metal_rays.any():
        return 0.0, {"rays_with_metal": 0.0}
    tau = 0.5 * float(region.spacing_mm.mean())  # the scale at which a voxel grid can place a strut
    d = offset_mm[metal_rays]
    return float(np.exp(-(d**2) / (2 * tau**2)).mean()), {
        "rays_with_metal": float(metal_rays.mean()), "median_offset_mm": float(np.median(np.abs(d))),
        "scale_mm": tau, "rule": "envelope to the midpoint of the half-maximum crossings on each ray, each side "
                                  "against its own background, plus sigma²/2r for the wall's curvature",
    }


def half_maximum_centres(profile: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per ray (last axis of ``profile``, sampled at ``offsets`` mm), the midpoint of the two crossings of half the
    peak above each side's own background: the strut centre a symmetric blur leaves in place, even with blood on
    one side and fat on the other. Returns (midpoint offsets, full widths at half maximum, which rays have both
    crossings)."""
    count = profile.shape[-1]
    index = np.arange(count)
    step = float(offsets[1] - offsets[0])
    top = profile.argmax(axis=-1)[..., None]
    peak = np.take_along_axis(profile, top, axis=-1)
    inner = np.where(index <= top, profile, np.inf).min(axis=-1, keepdims=True)
    outer = np.where(index >= top, profile, np.inf).min(axis=-1, keepdims=True)
    level_in = inner + 0.5 * (peak - inner)
    level_out = outer + 0.5 * (peak - outer)
    i = np.where((profile < level_in) & (index < top), index, -1).max(axis=-1)
    j = np.where((profile < level_out) & (index > top), index, count).min(axis=-1)
    valid = (i >= 0) & (j < count)
    i_safe, j_safe = np.clip(i, 0, count - 2), np.clip(j, 1, count - 1)
    take = lambda k: np.take_along_axis(profile, k[..., None], axis=-1)[..., 0]  # noqa: E731
    a, b = take(i_safe), take(i_safe + 1)
    x_in = offsets[i_safe] + (level_in[..., 0] - a) / np.where(b - a == 0, 1e-6, b - a) * step
    c, e = take(j_safe - 1), take(j_safe)
    x_out = offsets[j_safe - 1] + (c - level_out[..., 0]) / np.where(c - e == 0, 1e-6, c - e) * step
    return 0.5 * (x_in + x_out), x_out - x_in, valid


def apposition(region: Region, reconstruction: Reconstruction) -> tuple[float | None, dict, np.ndarray | None]:
    design = region.spec.design
    envelope = reconstruction.envelope_points()
    if region.vessel is not None and region.vessel.any():
        inside = ndimage.distance_transform_edt(region.vessel, sampling=region.spacing_mm)
        outside = ndimage.distance_transform_edt(~region.vessel, sampling=region.spacing_mm)
        signed = (inside - outside).astype(np.float32)
        gap = sections.sample(signed, region.ijk_to_ras, envelope, fill=0.0)
        source = "vessel segmentation"
    else:
        gap = _image_wall_gap(region, reconstruction)
        source = "image (rays between struts)"
        if gap is None:
            return None, {"wall": "not measurable: the struts bloom together, give a vessel segmentation"}, None
    measured = np.where(np.isfinite(gap), np.clip(gap, 0.0, None), np.nan)
    per_station = np.nanmean(measured, axis=1)
    per_station = per_station[np.isfinite(per_station)]
    if per_station.size == 0:
        return None, {"wall": "no wall found beside the device"}, None
    if region.spec.kind in ("tavr", "pulmonary"):
        # A valve frame seals at the annulus and flares into the sinuses: judge its best-apposed quarter.
        d = float(np.percentile(per_station, 25))
        rule = "25th percentile over cross-sections (the sealing zone)"
    else:
        d = float(per_station.mean())
        rule = "mean over the device"
    return max(0.0, 1.0 - d / design.apposition_limit_mm), {
        "wall": source, "gap_mm": d, "gap_rule": rule, "limit_mm": design.apposition_limit_mm,
    }, gap


def _image_wall_gap(region: Region, reconstruction: Reconstruction) -> np.ndarray | None:
    """Device-to-wall gap (mm) on rays that pass between struts; NaN on the others. None when too few do."""
    axis, radii = reconstruction.axis, reconstruction.radii
    envelope_values = sections.sample(region.image, region.ijk_to_ras, reconstruction.envelope_points(),
                                      fill=region.background_hu)
    level = region.background_hu + 0.25 * (region.threshold_hu - region.background_hu)
    between = envelope_values < level
    if between.mean() < 0.2:
        return None
    outside_tissue = float(np.percentile(region.image, 10))
    half = 0.5 * (region.background_hu + outside_tissue)
    offsets = np.arange(-1.0, 8.0, 0.1)
    points = sections.ray_points(axis, radii, offsets)
    profile = sections.sample(region.image, region.ijk_to_ras, points, fill=outside_tissue)
    below = profile < half
    first = np.where(below.any(axis=2), below.argmax(axis=2), -1)
    gap = np.where(first >= 0, offsets[np.maximum(first, 0)], np.nan)
    return np.where(between, gap, np.nan)


def consistency(region: Region, measurements: dict, phase_figures: list[dict] | None = None) -> tuple[float | None, dict]:
    spec = region.spec
    terms = {}
    if spec.nominal_diameter_mm:
        terms["diameter_vs_nominal"] = max(0.0, 1.0 - abs(measurements["diameter_mean_mm"] - spec.nominal_diameter_mm)
                                           / (0.2 * spec.nominal_diameter_mm))
    if spec.nominal_length_mm:
        terms["length_vs_nominal"] = max(0.0, 1.0 - abs(measurements["length_mm"] - spec.nominal_length_mm)
                                         / (0.2 * spec.nominal_length_mm))
    if phase_figures and len(phase_figures) > 1:
        for key in ("length_mm", "diameter_mean_mm"):
            values = np.array([p[key] for p in phase_figures], float)
            variation = float(values.std() / max(values.mean(), 1e-9))
            terms[f"{key.split('_mm')[0]}_over_phases"] = max(0.0, 1.0 - variation / 0.05)
        fits = [p["metal_mm"] for p in phase_figures if "metal_mm" in p and np.isfinite(p["metal_mm"])]
        if fits:
            terms["metal_over_phases"] = max(0.0, 1.0 - float(np.median(fits)) / 0.5)
    if not terms:
        return None, {"reason": "no nominal size and a single phase"}
    return float(np.mean(list(terms.values()))), terms


def score(region: Region, reconstruction: Reconstruction, measurements: dict,
          phase_figures: list[dict] | None = None) -> Score:
    """Every part of the score of one reconstruction, and their weighted mean."""
    coords = _metal_coordinates(region, reconstruction)
    c, c_details = completeness(region, reconstruction, coords)
    k, k_details = continuity(region, reconstruction, coords)
    a, a_details, gap = apposition(region, reconstruction)
    f, f_details = image_fit(region, reconstruction)
    t, t_details = consistency(region, measurements, phase_figures)
    parts = {"completeness": c, "continuity": k, "apposition": a, "image_fit": f, "consistency": t}
    details = {"completeness": c_details, "continuity": k_details, "apposition": a_details, "image_fit": f_details,
               "consistency": t_details}
    return Score(combine(parts), parts, details, gap)
