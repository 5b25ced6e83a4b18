"""Digital phantoms with analytic ground truth, generated on the spot (nothing is stored or downloaded).

``beating_heart_cine`` draws a short-axis cine of a contracting left ventricle (a truncated prolate
spheroid cavity in a myocardial shell) and a crescent right ventricle, with MR-like contrast, blur and noise.
Its ground truth is exact: the label maps it drew, and the disc-summation volumes of the continuous shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..imagedata import ImageSeries


@dataclass
class CinePhantom:
    series: ImageSeries
    labels: np.ndarray  # [T, K, J, I]: 1 RV, 2 LV myocardium, 3 LV cavity
    lv_volume_ml: np.ndarray  # analytic disc-summation LV cavity volume per phase
    rv_volume_ml: np.ndarray
    ed_phase: int
    es_phase: int


def beating_heart_cine(
    phases: int = 20,
    slices: int = 10,
    size: int = 192,
    pixel_mm: float = 1.5625,
    slice_spacing_mm: float = 10.0,
    rr_ms: float = 1000.0,
    edv_radius_mm: float = 27.0,
    esv_radius_mm: float = 19.0,
    noise: float = 0.03,
    seed: int = 7,
    thin_sector_deg: tuple[float, float] | None = None,
    thin_factor: float = 0.5,
) -> CinePhantom:
    """A short-axis cine whose LV and RV volumes are known analytically (disc summation of exact circles)."""
    rng = np.random.default_rng(seed)
    centre = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size]
    x_mm, y_mm = (x - centre) * pixel_mm, (y - centre) * pixel_mm
    # Slice k sits at depth z_k from the base; the cavity radius follows a half ellipse that closes at the apex.
    depth = (np.arange(slices) + 0.5) * slice_spacing_mm
    length = slices * slice_spacing_mm + 5.0
    profile = np.sqrt(np.clip(1.0 - (depth / length) ** 2, 0.0, None))
    frames = np.zeros((phases, slices, size, size), np.float32)
    labels = np.zeros((phases, slices, size, size), np.uint8)
    lv_ml, rv_ml = np.zeros(phases), np.zeros(phases)
    body = (x_mm / 140.0) ** 2 + (y_mm / 105.0) ** 2 <= 1.0
    lungs = body & ((np.abs(x_mm) > 55.0) & ((np.abs(x_mm) - 95.0) ** 2 / 40.0**2 + (y_mm + 10.0) ** 2 / 70.0**2 <= 1.0))
    for t in range(phases):
        contraction = 0.5 + 0.5 * np.cos(2.0 * np.pi * t / phases)  # 1 at end-diastole, 0 at end-systole
        radius = esv_radius_mm + (edv_radius_mm - esv_radius_mm) * contraction
        wall = 12.0 - 3.5 * contraction  # the wall thickens in systole
        rv_width = 10.0 + 12.0 * contraction  # crescent thickness at its centre, mm
        for k in range(slices):
            r_endo = radius * profile[k]
            thickness = wall * (0.6 + 0.4 * profile[k])
            if thin_sector_deg is not None:
                # A regional wall thinning between two image angles (degrees, 0 = +x column direction).
                theta = np.degrees(np.arctan2(y_mm, x_mm)) % 360.0
                lo, hi = (a % 360.0 for a in thin_sector_deg)
                sector = (theta >= lo) & (theta < hi) if lo < hi else (theta >= lo) | (theta < hi)
                thickness = np.where(sector, thickness * thin_factor, thickness)
            r_epi = r_endo + thickness
            dist_lv = np.hypot(x_mm, y_mm)
            cavity = dist_lv <= r_endo
            myocardium = (dist_lv <= r_epi) & ~cavity
            # The RV wraps the septum: a crescent within ±80° of the patient's right, thickest at its middle.
            angle = np.abs(np.arctan2(y_mm, -x_mm))
            crescent = rv_width * profile[k] * np.cos(np.clip(angle / np.radians(80.0), 0.0, 1.0) * np.pi / 2.0)
            rv = (dist_lv > r_epi) & (dist_lv <= r_epi + crescent) & (angle < np.radians(80.0))
            slice_labels = np.zeros((size, size), np.uint8)
            slice_labels[rv] = 1
            slice_labels[myocardium] = 2
            slice_labels[cavity] = 3
            labels[t, k] = slice_labels
            image = np.where(body, 0.45, 0.02).astype(np.float32)
            image[lungs] = 0.08
            image[dist_lv <= r_epi + crescent + 4.0] = 0.4
            image[slice_labels == 2] = 0.3
            image[(dist_lv > r_epi) & (dist_lv <= r_epi + crescent + 2.5) & (angle < np.radians(85.0))] = 0.3
            image[slice_labels == 1] = 0.95
            image[slice_labels == 3] = 1.0
            frames[t, k] = ndimage.gaussian_filter(image, 0.9)
            lv_ml[t] += np.pi * r_endo**2 * slice_spacing_mm / 1000.0
            rv_ml[t] += rv.sum() * pixel_mm**2 * slice_spacing_mm / 1000.0
    frames += rng.normal(0.0, noise, frames.shape).astype(np.float32)
    frames = np.clip(frames, 0.0, None) * 1000.0
    ijk_to_ras = np.array(
        [
            # Columns run toward the patient's left and rows toward posterior, as a short-axis view is shown.
            [pixel_mm, 0.0, 0.0, -centre * pixel_mm],
            [0.0, -pixel_mm, 0.0, centre * pixel_mm],
            [0.0, 0.0, slice_spacing_mm, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    series = ImageSeries(
        frames=frames,
        ijk_to_ras=ijk_to_ras,
        frame_times_ms=[t * rr_ms / phases for t in range(phases)],
        name="Phantom short-axis cine",
        modality="MR",
        source="digital phantom",
        metadata={"PatientID": "PHANTOM", "NominalInterval": rr_ms, "SliceThickness": 8.0},
    )
    return CinePhantom(series, labels, lv_ml, rv_ml, int(np.argmax(lv_ml)), int(np.argmin(lv_ml)))
