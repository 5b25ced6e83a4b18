"""Measurements of a reconstructed device: length, and diameters, areas, expansion and eccentricity every
0.5 mm along its axis; frame height and implantation depth for valve frames; apposition per sector.

Diameters are those of the envelope through the strut centres. Per cross-section, the diameter at angle θ is
r(θ) + r(θ + π); its minimum and maximum over θ are Dmin and Dmax, the mean diameter is twice the mean radius,
the area is the envelope polygon's, and eccentricity is 1 − Dmin/Dmax.
"""

from __future__ import annotations

import numpy as np

from . import sections
from .devices import DeviceSpec
from .model import STATION_STEP_MM, Reconstruction


def cross_sections(radii: np.ndarray) -> dict[str, np.ndarray]:
    """Per station: mean, minimum and maximum diameter (mm), area (mm²) and eccentricity."""
    radii = np.asarray(radii, float)
    half = radii.shape[1] // 2
    chords = radii[:, :half] + radii[:, half : 2 * half]
    step = 2.0 * np.pi / radii.shape[1]
    area = 0.5 * np.sin(step) * (radii * np.roll(radii, -1, axis=1)).sum(axis=1)
    d_min, d_max = chords.min(axis=1), chords.max(axis=1)
    return {
        "diameter_mean_mm": 2.0 * radii.mean(axis=1),
        "diameter_min_mm": d_min,
        "diameter_max_mm": d_max,
        "area_mm2": area,
        "eccentricity": 1.0 - d_min / np.maximum(d_max, 1e-9),
    }


def measure(reconstruction: Reconstruction, spec: DeviceSpec, annulus: dict | None = None,
            wall_gap_mm: np.ndarray | None = None, landmark: np.ndarray | None = None) -> dict:
    """The measurements of one reconstruction, as they go into results.json and the scene's table.

    ``annulus``: ``{"center": (3,), "normal": (3,)}`` of the annular plane, when known (normal pointing from the
    ventricle to the aorta), for a valve frame's implantation depth. ``wall_gap_mm``: (N, S) device-to-wall
    distance per station and sector from the score's apposition term, for the apposition map. ``landmark``: an
    anatomical point (RAS mm); the distance of each device end to it is added.
    """
    axis = reconstruction.axis
    per_station = cross_sections(reconstruction.radii)
    length = sections.length_mm(axis)
    result: dict = {
        "length_mm": length,
        "diameter_mean_mm": float(per_station["diameter_mean_mm"].mean()),
        "diameter_min_mm": float(per_station["diameter_min_mm"].min()),
        "diameter_max_mm": float(per_station["diameter_max_mm"].max()),
        "area_mean_mm2": float(per_station["area_mm2"].mean()),
        "area_min_mm2": float(per_station["area_mm2"].min()),
        "area_max_mm2": float(per_station["area_mm2"].max()),
        "eccentricity_max": float(per_station["eccentricity"].max()),
        "eccentricity_mean": float(per_station["eccentricity"].mean()),
        "station_step_mm": STATION_STEP_MM,
        "conventions": "diameters of the envelope through the strut centres; Dmin/Dmax over the cross-section's"
                       " chords through the axis; eccentricity 1 - Dmin/Dmax",
    }
    if spec.nominal_diameter_mm:
        nominal_area = np.pi * (0.5 * spec.nominal_diameter_mm) ** 2
        expansion = per_station["area_mm2"] / nominal_area
        result["expansion_min"] = float(expansion.min())
        result["expansion_mean"] = float(expansion.mean())
        result["nominal_diameter_mm"] = spec.nominal_diameter_mm
        per_station["expansion"] = expansion
    if spec.nominal_length_mm:
        result["nominal_length_mm"] = spec.nominal_length_mm
    if spec.kind in ("tavr", "pulmonary"):
        result["frame_height_mm"] = length
        if annulus is not None:
            result.update(implantation_depth(axis, annulus))
    if landmark is not None:
        point = np.asarray(landmark, float)
        result["landmark_to_start_mm"] = float(np.linalg.norm(axis[0] - point))
        result["landmark_to_end_mm"] = float(np.linalg.norm(axis[-1] - point))
    if wall_gap_mm is not None:
        result.update(apposition_figures(wall_gap_mm))
    result["sections"] = {
        "s_mm": [round(i * STATION_STEP_MM, 3) for i in range(len(axis))],
        **{key: [round(float(v), 4) for v in values] for key, values in per_station.items()},
    }
    return result


def apposition_figures(wall_gap_mm: np.ndarray) -> dict:
    """The apposition map: the device-to-wall gap (mm) at its largest, on average, and per eighth around the axis."""
    gap = np.asarray(wall_gap_mm, float)
    return {
        "apposition_gap_max_mm": float(np.nanmax(gap)),
        "apposition_gap_mean_mm": float(np.nanmean(gap)),
        "apposition_by_sector_mm": [round(float(v), 3) for v in sector_means(gap, 8)],
    }


def sector_means(values: np.ndarray, groups: int) -> np.ndarray:
    """Mean of (N, S) values over the axis and over ``groups`` equal arcs of the sectors (sector 0 anterior-most)."""
    sectors = values.shape[1]
    index = (np.arange(sectors) * groups) // sectors
    means = []
    for group in range(groups):
        cells = values[:, index == group]
        cells = cells[np.isfinite(cells)]
        means.append(float(cells.mean()) if cells.size else float("nan"))
    return np.array(means)


def implantation_depth(axis: np.ndarray, annulus: dict) -> dict:
    """Depth of the frame's ventricular end below the annular plane, and the share of the frame below it."""
    center = np.asarray(annulus["center"], float)
    normal = np.asarray(annulus["normal"], float)
    normal = normal / np.linalg.norm(normal)
    heights = (np.asarray(axis, float) - center) @ normal
    lowest = float(heights.min())
    below = float((heights < 0).mean())
    return {"implantation_depth_mm": -lowest, "share_below_annulus": below}
