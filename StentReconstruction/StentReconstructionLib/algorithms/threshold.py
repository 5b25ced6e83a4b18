"""Algorithm A: threshold the metal, with the blooming undone along radial profiles.

The bloomed metal is wider than the struts by the scanner's blur, symmetrically, so on every ray from the axis
the strut centre is the midpoint of the two half-maximum crossings of the metal peak (the FWHM centre), not
the threshold's outer edge. The surface is the metal's iso-surface at the threshold (half-way between the blood
and the metal's peak), the picture a reader sees; the envelope comes from the FWHM centres.
"""

from __future__ import annotations

import numpy as np

from .. import sections
from ..model import ENVELOPE_SECTORS, CannotReconstruct, Reconstruction, Region
from .. import surfaces
from . import common

RAY_STEP_MM = 0.1
ITERATIONS = 3


def _ray_centres(region: Region, image: np.ndarray, axis: np.ndarray, radius: np.ndarray, band: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FWHM-centre radius per station and ray (NaN where no metal), its width and its peak HU."""
    steps = np.arange(-band, band + 1e-9, RAY_STEP_MM)
    grid = sections.polar_grid(axis, steps, ENVELOPE_SECTORS)
    grid = grid + np.asarray(radius)[:, None, None, None] * sections.ray_directions(axis, ENVELOPE_SECTORS)[:, :, None, :]
    profiles = sections.sample(image, region.ijk_to_ras, grid, fill=region.background_hu)
    centre, width, peak = common.fwhm_centres(profiles, steps, region.threshold_hu)
    radii = np.asarray(radius)[:, None] + centre
    # A wall of bloomed struts on a cylinder peaks sigma^2 / 2r inside it (more of the wall lies within the
    # blur's reach on the concave side); sigma from the measured width of the struts.
    sigma = float(np.nanmedian(width)) / 2.355 if np.isfinite(width).any() else 0.0
    return radii + sigma**2 / (2.0 * np.maximum(radii, 0.5)), width, peak


def _peak_points(axis: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(N, S, 3) points at the per-ray radii (NaN rows where no metal)."""
    return sections.envelope_points(axis, np.nan_to_num(radii, nan=0.0)) + np.where(
        np.isfinite(radii)[..., None], 0.0, np.nan)


def run(region: Region) -> Reconstruction:
    """Axis, envelope and iso-surface from thresholded, blooming-corrected metal."""
    device = common.device_metal(region, region.extent)
    image = common.masked_image(region, device)
    points, weights = common.metal_points(region, device)
    axis, radius, _ = common.refine_axis(region.extent, points, weights, region, iterations=2)
    band = common.radial_band_mm(region, float(np.median(radius)))
    for _ in range(ITERATIONS):
        radii, width, peak = _ray_centres(region, image, axis, radius, band)
        hits = np.isfinite(radii)
        if hits.sum() < 12:
            raise CannotReconstruct("no ray from the axis crosses metal above the threshold")
        located = _peak_points(axis, radii)[hits]
        axis, radius, _ = common.refine_axis(axis, located, peak[hits] - region.background_hu, region, iterations=1,
                                             radius_hint=float(np.nanmedian(radii)))
    radii, width, peak = _ray_centres(region, image, axis, radius, band)
    fwhm = float(np.nanmedian(width)) if np.isfinite(width).any() else common.strut_width(region, axis, radius, image)
    s_start, s_end, end_info = common.find_ends(region, axis, radius, image)
    s_axis = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(axis, axis=0), axis=1))])
    final = common.trim(axis, s_start, s_end)
    final_radius = np.interp(np.linspace(s_start, s_end, len(final)), s_axis, radius)
    radii, width, peak = _ray_centres(region, image, final, final_radius, band)
    hits = np.isfinite(radii)
    if hits.mean() < 0.02:
        raise CannotReconstruct("too few rays between the device ends cross metal above the threshold")
    material = _peak_points(final, radii)[hits]
    envelope = sections.fill_gaps(radii)
    surface = surfaces.isosurface(image, region.ijk_to_ras, region.threshold_hu,
                                  keep=sections.envelope_points(final, envelope).reshape(-1, 3), keep_distance_mm=band)
    method = {
        "threshold_hu": round(float(region.threshold_hu), 1),
        "threshold_rule": region.threshold_rule,
        "rays_per_station": ENVELOPE_SECTORS,
        "ray_step_mm": RAY_STEP_MM,
        "radial_band_mm": round(band, 3),
        "strut_centre": "midpoint of the half-maximum crossings (FWHM centre) of the ray's metal peak",
        "axis_iterations": ITERATIONS,
        "rays_with_metal": round(float(hits.mean()), 3),
        "surface": "flying-edges iso-surface of the device metal at the threshold, pieces near the envelope",
        "strut_fwhm_mm": round(fwhm, 3),
        **end_info,
    }
    notes = [f"{hits.mean():.0%} of the rays between the ends cross metal; the rest are filled from their "
             f"neighbours around and along the axis",
             f"struts bloom to {fwhm:.2f} mm FWHM; the envelope is at their FWHM centres, the surface at the "
             f"{region.threshold_hu:.0f} HU threshold (wider than the struts by the blooming)"]
    return Reconstruction(id="A", name="threshold with blooming correction", axis=final, radii=envelope,
                          surface=surface, struts=[], material=material, method=method, notes=notes)
