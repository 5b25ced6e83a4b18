"""Agreement measures used to validate the segmentation and the coronary tracing against known truth.

- Dice and mean (symmetric) surface distance between two masks on one grid, in mm.
- Rotterdam coronary centerline metrics (Schaap et al., Med Image Anal 2009): a reference point is *detected*
  when the traced centerline passes within the reference radius of it, a traced point is *correct* when it
  lies within the radius of the reference point closest to it; overlap OV = (detected reference points +
  correct traced points) / (all reference points + all traced points); AI = mean distance of the correct
  traced points to the reference centerline (mm).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from CardiacSuiteLib.geometry import points_to_polyline_distance, resample_polyline


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    total = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / total) if total else 1.0


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))


def surface_distances(a: np.ndarray, b: np.ndarray, spacing_kji) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``a`` to the surface of ``b``, and the other way round."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    if not a.any() or not b.any():
        return np.array([np.inf]), np.array([np.inf])
    # Work in the common bounding box (plus a margin) to keep the distance transforms small.
    index = np.argwhere(a | b)
    low = np.maximum(index.min(axis=0) - 2, 0)
    high = np.minimum(index.max(axis=0) + 3, a.shape)
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
    sa, sb = _surface(a[box]), _surface(b[box])
    to_b = ndimage.distance_transform_edt(~sb, sampling=spacing_kji)
    to_a = ndimage.distance_transform_edt(~sa, sampling=spacing_kji)
    return to_b[sa], to_a[sb]


def mean_surface_distance(a: np.ndarray, b: np.ndarray, spacing_kji) -> float:
    """Symmetric mean surface distance (average over both surfaces' voxels), mm."""
    ab, ba = surface_distances(a, b, spacing_kji)
    return float(np.concatenate([ab, ba]).mean())


def hausdorff95(a: np.ndarray, b: np.ndarray, spacing_kji) -> float:
    ab, ba = surface_distances(a, b, spacing_kji)
    return float(np.percentile(np.concatenate([ab, ba]), 95))


def centerline_overlap(
    reference: np.ndarray, reference_radii: np.ndarray, traced: np.ndarray, step_mm: float = 0.25
) -> dict[str, float]:
    """Rotterdam OV, OF and AI of a traced centerline against a reference centerline with radii (mm).

    Both are resampled every ``step_mm`` first so that point counts measure length. OF is the overlap until the
    first error (the fraction of the reference, from its start, detected before the first undetected point).
    """
    ref, ref_r = resample_polyline(np.asarray(reference, float), step_mm, np.asarray(reference_radii, float))
    (trc,) = resample_polyline(np.asarray(traced, float), step_mm)
    d_ref_to_trc, _ = points_to_polyline_distance(ref, trc)
    detected = d_ref_to_trc <= ref_r
    d_trc_to_ref, s_on_ref = points_to_polyline_distance(trc, ref)
    ref_s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ref, axis=0), axis=1))])
    radius_at = np.interp(s_on_ref, ref_s, ref_r)
    correct = d_trc_to_ref <= radius_at
    ov = (detected.sum() + correct.sum()) / (len(ref) + len(trc))
    first_miss = np.flatnonzero(~detected)
    of = (first_miss[0] if first_miss.size else len(ref)) / len(ref)
    ai = float(d_trc_to_ref[correct].mean()) if correct.any() else float("inf")
    return {
        "OV": float(ov),
        "OF": float(of),
        "AI_mm": ai,
        "reference_detected": float(detected.mean()),
        "traced_correct": float(correct.mean()),
    }


def tree_overlap(reference: dict[str, tuple[np.ndarray, np.ndarray]], traced: list[np.ndarray], step_mm: float = 0.25):
    """Per reference vessel and overall Rotterdam OV and AI for a traced tree.

    ``reference``: name -> (points, radii). ``traced``: centerlines (any split into branches). Reference points
    count as detected when any traced centerline passes within their radius. Each traced point is assigned to
    the reference vessel nearest to it (a false branch thus counts against the vessel it leaves), and is correct
    when within that vessel's local radius.
    """
    ref = {name: resample_polyline(np.asarray(p, float), step_mm, np.asarray(r, float)) for name, (p, r) in reference.items()}
    traced_points = np.vstack([resample_polyline(np.asarray(t, float), step_mm)[0] for t in traced if len(t) > 1])
    traced_lines = [resample_polyline(np.asarray(t, float), step_mm)[0] for t in traced if len(t) > 1]
    names = list(ref)
    to_vessel = np.full((len(traced_points), len(names)), np.inf)
    radius_at = np.zeros((len(traced_points), len(names)))
    for column, name in enumerate(names):
        points, radii = ref[name]
        distance, s = points_to_polyline_distance(traced_points, points)
        s_ref = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
        to_vessel[:, column] = distance
        radius_at[:, column] = np.interp(s, s_ref, radii)
    owner = np.argmin(to_vessel, axis=1)
    rows = np.arange(len(traced_points))
    own_distance = to_vessel[rows, owner]
    correct = own_distance <= radius_at[rows, owner]
    results = {}
    totals = [0, 0, 0, 0]
    for column, name in enumerate(names):
        points, radii = ref[name]
        detected = np.zeros(len(points), bool)
        for line in traced_lines:
            distance, _ = points_to_polyline_distance(points, line)
            detected |= distance <= radii
        mine = owner == column
        ok = correct & mine
        ov = (detected.sum() + ok.sum()) / max(len(points) + mine.sum(), 1)
        results[name] = {
            "OV": float(ov),
            "detected": float(detected.mean()),
            "AI_mm": float(own_distance[ok].mean()) if ok.any() else float("inf"),
            "length_mm": float(step_mm * (len(points) - 1)),
        }
        totals[0] += detected.sum()
        totals[1] += ok.sum()
        totals[2] += len(points)
        totals[3] += mine.sum()
    results["tree"] = {
        "OV": float((totals[0] + totals[1]) / max(totals[2] + totals[3], 1)),
        "AI_mm": float(own_distance[correct].mean()) if correct.any() else float("inf"),
    }
    return results
