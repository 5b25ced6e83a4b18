"""The region around the device's extent, and the metal in it.

The threshold follows the image, not a constant: half-way between the brightest soft tissue (contrast blood,
calcium) and the metal's peak level, the half-maximum that undoes most of the blooming, and never below the
device kind's floor or five noise SDs above the blood. The rule that decided is recorded with the figure.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.geometry import Box

from . import sections
from .devices import DeviceSpec
from .model import STATION_STEP_MM, Region

#: The extent is lengthened by this share of its length (at least the design's axial bin) at each end, since
#: clicked ends are approximate.
END_ALLOWANCE = 0.15


def extent_polyline(points: np.ndarray, spec: DeviceSpec) -> np.ndarray:
    """The clicked extent (two points or a curve's control points) lengthened at both ends, every 0.5 mm."""
    points = np.asarray(points, float)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 2:
        raise InputError("the device extent needs a start and an end point (R,A,S in mm) or a curve of 2 or more points")
    line = sections.resample(points)
    if len(line) < 3 or sections.length_mm(line) < 2.0:
        raise InputError(
            f"the device extent is {sections.length_mm(line):.1f} mm long; place its start and end at the device's two ends"
        )
    extra = max(END_ALLOWANCE * sections.length_mm(line), spec.design.axial_bin_mm, 2.0)
    return sections.extend(line, extra, STATION_STEP_MM)[0]


def check_inside(points: np.ndarray, ijk_to_ras: np.ndarray, shape_kji, what: str = "point") -> None:
    """InputError naming the first point that lies outside the image."""
    inverse = np.linalg.inv(ijk_to_ras)
    for point in np.asarray(points, float):
        ijk = inverse[:3, :3] @ point + inverse[:3, 3]
        if np.any(ijk < -0.5) or np.any(ijk > np.asarray(shape_kji)[::-1] - 0.5):
            text = ", ".join(f"{v:.1f}" for v in point)
            raise InputError(f"the {what} ({text}) RAS mm lies outside the image; give points inside the CT volume")


def crop_box(extent: np.ndarray, reach_mm: float, ijk_to_ras: np.ndarray, shape_kji) -> Box:
    """Voxel box holding every point within ``reach_mm`` of the extent, clipped to the image."""
    inverse = np.linalg.inv(ijk_to_ras)
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    ijk = extent @ inverse[:3, :3].T + inverse[:3, 3]
    pad = reach_mm / spacing + 1
    low = np.floor(ijk.min(axis=0) - pad).astype(int)
    high = np.ceil(ijk.max(axis=0) + pad).astype(int) + 1
    low = np.maximum(low, 0)[::-1]
    high = np.minimum(high, np.asarray(shape_kji)[::-1])[::-1]
    return Box(tuple(int(v) for v in low), tuple(int(v) for v in high))


def noise_sd(image: np.ndarray, mask: np.ndarray) -> float:
    """Noise SD from differences of neighbouring voxels (robust, so edges and metal barely count)."""
    diffs = []
    for axis in range(3):
        d = np.diff(image, axis=axis)
        both = np.logical_and(np.take(mask, range(mask.shape[axis] - 1), axis=axis),
                              np.take(mask, range(1, mask.shape[axis]), axis=axis))
        diffs.append(d[both])
    values = np.concatenate(diffs) if diffs else np.zeros(1)
    if values.size < 10:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))) / np.sqrt(2.0))


def find_region(image: np.ndarray, ijk_to_ras: np.ndarray, extent_points: np.ndarray, spec: DeviceSpec,
                vessel: np.ndarray | None = None, threshold_hu: float | None = None) -> Region:
    """Crop around the extent, choose the metal threshold and mark the metal connected along the extent."""
    ijk_to_ras = np.asarray(ijk_to_ras, float)
    check_inside(extent_points, ijk_to_ras, image.shape, "device end point")
    extent = extent_polyline(extent_points, spec)
    reach = spec.search_radius_mm
    box = crop_box(extent, reach + 2.0, ijk_to_ras, image.shape)
    box_matrix = box.ijk_to_ras(ijk_to_ras)
    values = np.ascontiguousarray(image[box.slices], dtype=np.float32)
    kji = np.indices(values.shape).reshape(3, -1).T.astype(float)
    ras = kji[:, ::-1] @ box_matrix[:3, :3].T + box_matrix[:3, 3]
    dense = sections.resample(extent, 0.1)  # the tube by nearest dense point: 10 µm from the exact distance
    distance = cKDTree(dense).query(ras, distance_upper_bound=reach + 0.5)[0].reshape(values.shape)
    tube = distance <= reach
    if tube.sum() < 27:
        raise InputError("the device extent lies at the edge of the image; too little of the image surrounds it")

    design = spec.design
    inside = values[tube]
    peak = float(np.percentile(inside, 99.5))
    soft = inside[inside < design.min_threshold_hu]
    blood = float(np.percentile(soft, 90)) if soft.size else float(np.median(inside))
    noise = noise_sd(values, tube & (values < design.min_threshold_hu))
    if threshold_hu is None:
        candidates = {
            "the device's floor": design.min_threshold_hu,
            "5 noise SDs above the blood": blood + 5.0 * noise,
            "half-way between the blood and the metal's peak": blood + 0.5 * (peak - blood),
        }
        rule = max(candidates, key=candidates.get)
        threshold = float(candidates[rule])
        rule_text = (f"{rule} (floor {design.min_threshold_hu:.0f} HU for a {design.label}; blood {blood:.0f} HU, "
                     f"metal peak {peak:.0f} HU, noise SD {noise:.1f} HU)")
    else:
        threshold = float(threshold_hu)
        rule_text = "given by the user"
    if peak < threshold or peak < design.min_threshold_hu:
        raise InputError(
            f"no metal along the device extent: the brightest voxels there reach {peak:.0f} HU, below the "
            f"{threshold:.0f} HU a {design.label} needs; check the end points and the device type"
        )
    candidates_mask = (values >= threshold) & tube
    labels, count = ndimage.label(candidates_mask, structure=np.ones((3, 3, 3)))
    if count == 0:
        raise InputError(f"no voxel above {threshold:.0f} HU near the device extent; check the end points")
    sizes = ndimage.sum_labels(np.ones_like(values), labels, index=np.arange(1, count + 1))
    keep = np.zeros(count + 1, bool)
    keep[1:] = sizes >= 3
    metal = keep[labels]
    if metal.sum() == 0:
        raise InputError(f"only isolated voxels above {threshold:.0f} HU near the device extent; no device found")
    vessel_box = None if vessel is None else np.ascontiguousarray(vessel[box.slices]).astype(bool)
    return Region(
        image=values, ijk_to_ras=box_matrix, box=box, spec=spec, extent=extent, threshold_hu=threshold,
        background_hu=blood, noise_hu=noise, metal=metal, vessel=vessel_box, threshold_rule=rule_text,
    )
