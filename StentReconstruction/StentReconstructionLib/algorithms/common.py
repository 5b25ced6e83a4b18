"""Steps every reconstruction shares: which metal is the device, the axis from circle fits to metal evidence,
the strut's blurred width, where the device really ends, and cutting the axis there.

Kept in one place so the algorithms differ only in how they locate strut centres (ray peaks, traced wires, a
fitted tube), not in how an axis or an end is read from those centres.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from CardiacSuiteLib.geometry import arc_length

from .. import sections
from ..model import STATION_STEP_MM, CannotReconstruct, Region

#: Angular sectors used to judge whether metal surrounds the axis (a ring) or sits to one side (calcium).
COVERAGE_SECTORS = 12


def voxel_mm(region: Region) -> float:
    return float(np.mean(region.spacing_mm))


def axis_sigma_mm(diameter_mm: float) -> float:
    """Smoothing of the axis: about half a diameter, so ring-to-ring scatter goes but a vessel's bend stays."""
    return float(np.clip(0.5 * diameter_mm, 1.0, 4.0))


def station_window_mm(region: Region) -> float:
    """Half-length of the slab of metal one station's circle is fitted to: one completeness bin, at least 2 voxels."""
    return float(max(region.spec.design.axial_bin_mm, 2.0 * voxel_mm(region)))


def radial_band_mm(region: Region, radius_mm: float) -> float:
    """How far from the current envelope metal still counts as the device (blooming plus some shape freedom)."""
    return float(max(1.0, 2.5 * voxel_mm(region), 0.12 * radius_mm))


def device_metal(region: Region, axis: np.ndarray) -> np.ndarray:
    """The region's metal components that are the device: the largest one, and every other that surrounds the
    axis (a separate ring where one is missing or the links vanish), not calcium lying to one side."""
    labels, count = ndimage.label(region.metal, structure=np.ones((3, 3, 3)))
    if count == 0:
        raise CannotReconstruct("no metal above the threshold near the device extent")
    sizes = ndimage.sum_labels(np.ones(labels.shape), labels, index=np.arange(1, count + 1))
    keep = np.zeros(count + 1, bool)
    keep[1 + int(np.argmax(sizes))] = True
    if count > 1:
        kji = np.argwhere(labels > 0)
        which = labels[tuple(kji.T)]
        points = kji[:, ::-1] @ region.ijk_to_ras[:3, :3].T + region.ijk_to_ras[:3, 3]
        _, angle, _ = sections.project_to_axis(points, axis)
        sector = np.minimum((angle / (2 * np.pi) * COVERAGE_SECTORS).astype(int), COVERAGE_SECTORS - 1)
        seen = np.zeros((count + 1, COVERAGE_SECTORS), bool)
        seen[which, sector] = True
        keep |= seen.sum(axis=1) >= COVERAGE_SECTORS // 2
        keep[0] = False
    return keep[labels]


def metal_points(region: Region, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RAS voxel centres of a metal mask and their weights (HU above the threshold)."""
    points = region.voxel_ras(mask)
    weights = np.maximum(region.image[mask].astype(float) - region.threshold_hu, 0.0) + 1.0
    return points, weights


def station_circles(points: np.ndarray, weights: np.ndarray, axis: np.ndarray, window_mm: float,
                    band_mm: float | None = None, radius_hint: np.ndarray | None = None,
                    min_coverage: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per axis station, a robust weighted circle fit to the points within ``window_mm`` along the axis.

    Returns (centre offsets (N, 2) in the station's normal/binormal, radii (N,), valid (N,)); a station is valid
    when its points cover ``min_coverage`` of 12 sectors around the axis and lie on both sides of it along the
    axis, so a half-seen ring or the last crowns past a station never pull the centre sideways.
    """
    count = len(axis)
    offsets = np.zeros((count, 2))
    radii = np.full(count, np.nan)
    valid = np.zeros(count, bool)
    if len(points) < 6:
        return offsets, radii, valid
    s, angle, r = sections.project_to_axis(points, axis)
    xy = np.column_stack([r * np.cos(angle), r * np.sin(angle)])
    station_s = arc_length(axis)
    order = np.argsort(s)
    s_sorted = s[order]
    for index, centre_s in enumerate(station_s):
        lo, hi = np.searchsorted(s_sorted, [centre_s - window_mm, centre_s + window_mm])
        chosen = order[lo:hi]
        if band_mm is not None and radius_hint is not None and np.isfinite(radius_hint[index]):
            chosen = chosen[np.abs(r[chosen] - radius_hint[index]) <= band_mm]
        if chosen.size < 6:
            continue
        sector = np.minimum((angle[chosen] / (2 * np.pi) * COVERAGE_SECTORS).astype(int), COVERAGE_SECTORS - 1)
        if np.unique(sector).size < min_coverage:
            continue
        if abs(float(np.mean(s[chosen])) - centre_s) > 0.35 * window_mm:
            continue  # metal on one side only: a station past the device's end
        p, w = xy[chosen], weights[chosen]
        centre, radius = sections.fit_circle(p, w)
        for _ in range(3):
            residual = np.linalg.norm(p - centre, axis=1) - radius
            scale = max(3.0 * 1.4826 * float(np.median(np.abs(residual))), 0.15)
            inlier = np.abs(residual) <= scale
            if inlier.sum() < 6:
                break
            centre, radius = sections.fit_circle(p[inlier], w[inlier])
        offsets[index], radii[index], valid[index] = centre, radius, True
    return offsets, radii, valid


def _fill(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Invalid entries interpolated from valid ones along the axis (held constant past the last valid)."""
    values = np.array(values, float)
    if not valid.any():
        return values
    index = np.arange(len(values))
    if values.ndim == 1:
        return np.interp(index, index[valid], values[valid])
    return np.column_stack([np.interp(index, index[valid], values[valid, c]) for c in range(values.shape[1])])


def refine_axis(axis: np.ndarray, points: np.ndarray, weights: np.ndarray, region: Region, iterations: int = 3,
                radius_hint: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move the axis to the centres of circles fitted to the metal evidence, smoothed, resampled; repeated.

    Returns (axis every STATION_STEP_MM, radius per station, valid per station).
    """
    axis = sections.resample(axis)
    window = station_window_mm(region)
    radius_per_station = None if radius_hint is None else np.full(len(axis), float(radius_hint))
    radii = np.full(len(axis), np.nan)
    valid = np.zeros(len(axis), bool)
    for _ in range(iterations):
        band = None
        if radius_per_station is not None:
            band = radial_band_mm(region, float(np.nanmedian(radius_per_station)))
        offsets, radii, valid = station_circles(points, weights, axis, window, band, radius_per_station)
        if valid.sum() < 3:
            break
        offsets = _fill(offsets, valid)
        radii = _fill(radii, valid)
        sigma = axis_sigma_mm(2.0 * float(np.median(radii[valid])))
        offsets = sections.smooth(offsets, sigma)
        _, n, b = sections.frames(axis)
        # only the offsets are smoothed: smoothing the points themselves would shorten the axis at its ends
        moved = axis + offsets[:, :1] * n + offsets[:, 1:] * b
        new_axis = sections.resample(moved)
        radius_per_station = np.interp(arc_length(new_axis), arc_length(moved), radii)
        axis = new_axis
    if valid.sum() < 3:
        raise CannotReconstruct("the metal does not surround an axis anywhere along the extent: no ring of struts found")
    _, radii, valid = station_circles(points, weights, axis, window,
                                      None if radius_per_station is None else
                                      radial_band_mm(region, float(np.nanmedian(radius_per_station))),
                                      radius_per_station)
    if valid.sum() < 3:
        raise CannotReconstruct("the metal does not surround the refined axis: no ring of struts found")
    return axis, _fill(radii, valid), valid


def position_at(axis: np.ndarray, s: np.ndarray | float) -> np.ndarray:
    """Points at arc lengths ``s`` along the axis, extrapolated along the end tangents beyond its ends."""
    s = np.atleast_1d(np.asarray(s, float))
    s_axis = arc_length(axis)
    t = sections.tangents(axis)
    points = np.column_stack([np.interp(s, s_axis, axis[:, c]) for c in range(3)])
    before, after = s < 0, s > s_axis[-1]
    points[before] = axis[0] + s[before, None] * t[0]
    points[after] = axis[-1] + (s[after] - s_axis[-1])[:, None] * t[-1]
    return points


def trim(axis: np.ndarray, s_start: float, s_end: float) -> np.ndarray:
    """The axis from ``s_start`` to ``s_end`` (mm along it), every STATION_STEP_MM, both ends exact."""
    if s_end - s_start < 2 * STATION_STEP_MM:
        raise CannotReconstruct(f"the device found is only {max(s_end - s_start, 0):.1f} mm long")
    count = max(int(round((s_end - s_start) / STATION_STEP_MM)), 1)
    s_axis = arc_length(axis)
    inside = (s_axis > s_start) & (s_axis < s_end)
    dense = np.concatenate([[s_start], s_axis[inside], [s_end]])
    line = position_at(axis, dense)
    return _resample_count(line, count)


def _resample_count(line: np.ndarray, count: int) -> np.ndarray:
    s = arc_length(line)
    new_s = np.linspace(0.0, s[-1], count + 1)
    return np.column_stack([np.interp(new_s, s, line[:, c]) for c in range(3)])


def radial_profiles(image: np.ndarray, ijk_to_ras: np.ndarray, axis: np.ndarray, r: np.ndarray,
                    sectors: int, fill: float) -> np.ndarray:
    """(N, S, R) HU on rays from every station at radii ``r`` (trilinear)."""
    grid = sections.polar_grid(axis, r, sectors)
    return sections.sample(image, ijk_to_ras, grid, order=1, fill=fill)


def fwhm_centres(profiles: np.ndarray, r: np.ndarray, threshold: float, edge_samples: int = 3
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per profile, the strut centre as the midpoint of the two half-maximum crossings around its highest sample,
    each crossing at half-way between the peak and the background on its own side (the profile's ends), and the
    full width there.

    Blooming spreads a strut symmetrically, so the midpoint of the half-max crossings is the strut centre while
    the outer crossing alone is the inflated edge. A stent lies on the vessel wall, blood inside and tissue
    outside; taking each side's own background keeps that step from pulling the midpoint inwards. Profiles
    whose peak stays below ``threshold`` are NaN. Returns (centre, width, peak), each profiles.shape[:-1].
    """
    flat = profiles.reshape(-1, profiles.shape[-1]).astype(float)
    samples = flat.shape[1]
    rows = np.arange(len(flat))
    top = flat.argmax(axis=1)
    peak = flat[rows, top]
    half_left = 0.5 * (peak + flat[:, :edge_samples].mean(axis=1))
    half_right = 0.5 * (peak + flat[:, -edge_samples:].mean(axis=1))
    index = np.arange(samples)[None, :]
    left = np.where((flat < half_left[:, None]) & (index < top[:, None]), index, -1).max(axis=1)
    right = np.where((flat < half_right[:, None]) & (index > top[:, None]), index, samples).min(axis=1)
    ok = (peak >= threshold) & (left >= 0) & (right < samples)
    step = r[1] - r[0]
    li, ri = np.clip(left, 0, samples - 2), np.clip(right, 1, samples - 1)
    v0, v1 = flat[rows, li], flat[rows, li + 1]
    left_r = r[li] + step * np.clip((half_left - v0) / np.where(v1 != v0, v1 - v0, 1.0), 0.0, 1.0)
    w0, w1 = flat[rows, ri - 1], flat[rows, ri]
    right_r = r[ri - 1] + step * np.clip((w0 - half_right) / np.where(w0 != w1, w0 - w1, 1.0), 0.0, 1.0)
    centre = np.where(ok, 0.5 * (left_r + right_r), np.nan)
    width = np.where(ok, right_r - left_r, np.nan)
    shape = profiles.shape[:-1]
    return centre.reshape(shape), width.reshape(shape), peak.reshape(shape)


def strut_width(region: Region, axis: np.ndarray, radius: np.ndarray, image: np.ndarray | None = None) -> float:
    """Median full width at half maximum (mm) of the struts across the wall: the blooming, measured."""
    band = radial_band_mm(region, float(np.median(radius)))
    steps = np.arange(-band, band + 1e-9, 0.05)
    image = region.image if image is None else image
    sectors = 72
    grid = sections.polar_grid(axis, steps, sectors) + (np.asarray(radius)[:, None, None, None] *
                                                        sections.ray_directions(axis, sectors)[:, :, None, :])
    profiles = sections.sample(image, region.ijk_to_ras, grid, fill=region.background_hu)
    _, width, _ = fwhm_centres(profiles, steps, region.threshold_hu)
    width = width[np.isfinite(width)]
    if width.size < 10:
        return float(2.0 * voxel_mm(region))
    return float(np.median(width))


def masked_image(region: Region, mask: np.ndarray) -> np.ndarray:
    """The region image with everything farther than 2 voxels from the device metal set to the background, so
    calcium and other bright things apart from the device do not read as struts."""
    near = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3)), iterations=2)
    return np.where(near, region.image, np.float32(region.background_hu)).astype(np.float32)


#: Share of a crown's peak (above the background) at which the blurred crown reaches its apex. Two struts
#: meeting at 20-40 degrees to the axis, blurred by a Gaussian, have their apex at 0.62-0.78 of the crown's peak
#: whatever the blur's width (a flat crown: 1, a line's tip: 0.5), so this level places the end within
#: 0.2 blur SDs of the apex without knowing the blur.
APEX_LEVEL = 0.7


def find_ends(region: Region, axis: np.ndarray, radius: np.ndarray, image: np.ndarray | None = None,
              step_mm: float = 0.05) -> tuple[float, float, dict]:
    """Arc lengths along ``axis`` of the device's two ends, read from the metal on the envelope.

    The envelope band is unrolled (the brightest HU across the band, per position along the axis and sector).
    In each sector the outermost crossing of the apex level (APEX_LEVEL between the background beyond the end
    and the outermost strut peak) is found at sub-sample precision; the end is where the end crowns stop: the
    90th percentile of those crossings over the sectors that reach out.
    """
    image = region.image if image is None else image
    s_axis = arc_length(axis)
    fine_s = np.arange(0.0, s_axis[-1] + 1e-9, step_mm)
    fine_axis = position_at(axis, fine_s)
    fine_radius = np.interp(fine_s, s_axis, radius)
    mean_radius = float(np.median(radius))
    sectors = int(np.clip(np.ceil(2 * np.pi * mean_radius / 0.4), 72, 360))
    band = radial_band_mm(region, mean_radius)
    offsets = np.arange(-band, band + 1e-9, 0.1)
    directions = sections.ray_directions(fine_axis, sectors)
    unrolled = np.full((len(fine_s), sectors), -np.inf)
    for offset in offsets:
        points = fine_axis[:, None, :] + (fine_radius[:, None, None] + offset) * directions
        unrolled = np.maximum(unrolled, sections.sample(image, region.ijk_to_ras, points, fill=region.background_hu))
    unrolled = np.maximum(unrolled, np.maximum(np.roll(unrolled, 1, axis=1), np.roll(unrolled, -1, axis=1)))
    reach = max(int(round(2.0 / step_mm)), 1)

    def crossings(profile_set: np.ndarray) -> np.ndarray:
        """Per sector, the sub-sample position (in samples) of the outermost apex-level crossing."""
        found = []
        for column in profile_set.T:
            above = np.where(column >= region.threshold_hu)[0]
            if above.size == 0 or above[-1] >= len(column) - 2:
                continue
            last = above[-1]
            beyond = column[last + 1:]
            background = float(np.median(beyond[beyond < region.threshold_hu])) if beyond.size else region.background_hu
            window = column[max(last - reach, 0):last + 1]
            top = max(last - reach, 0) + int(np.argmax(window))
            level = background + APEX_LEVEL * (column[top] - background)
            after = np.where(column[top:] < level)[0]
            if after.size == 0:
                continue
            j = top + after[0]
            v0, v1 = column[j - 1], column[j]
            found.append(j - 1 + (v0 - level) / max(v0 - v1, 1e-6))
        return np.array(found)

    ends = crossings(unrolled)
    starts = crossings(unrolled[::-1])
    if ends.size < 3 or starts.size < 3:
        raise CannotReconstruct("the device's ends cannot be told from the metal on its envelope")
    s_end = float(np.percentile(ends, 90)) * step_mm
    s_start = fine_s[-1] - float(np.percentile(starts, 90)) * step_mm
    info = {"end_rule": f"outermost crossing of {APEX_LEVEL:.0%} of the end crowns' peak on the unrolled envelope "
                        "band, 90th percentile over sectors", "end_sectors": sectors}
    return s_start, s_end, info


__all__ = ["device_metal", "metal_points", "station_circles", "refine_axis", "position_at", "trim",
           "radial_profiles", "fwhm_centres", "strut_width", "masked_image", "find_ends", "voxel_mm",
           "axis_sigma_mm", "station_window_mm", "radial_band_mm"]
