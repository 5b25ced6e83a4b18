"""AHA 17-segment model on the short-axis stack (Cerqueira et al., Circulation 2002;105:539).

- RV insertion points: where the RV cavity meets the LV epicardium; the two ends of that contact arc,
  the more anterior (patient frame) being the anterior insertion point. Found automatically, or given by
  the user as two RAS points (editable markups in Slicer).
- Segments (patient-specific): at basal and mid levels the septal arc between the insertion points is split
  in two (anteroseptal, inferoseptal) and the free wall in four (inferior, inferolateral, anterolateral,
  anterior); apical level: four 90° sectors, the septal one centred on the septum. Segment 17 (apical cap)
  is not seen on short-axis slices and is not assigned.
- Levels: the counted slices that show a myocardial ring, ordered base → apex, split in thirds by count.
- Wall thickness: along 120 rays from the cavity centroid, the length of the myocardium crossed after
  leaving the cavity (mm), averaged per segment; systolic thickening = (ES − ED) / ED.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SEGMENT_NAMES = {
    1: "basal anterior", 2: "basal anteroseptal", 3: "basal inferoseptal", 4: "basal inferior",
    5: "basal inferolateral", 6: "basal anterolateral", 7: "mid anterior", 8: "mid anteroseptal",
    9: "mid inferoseptal", 10: "mid inferior", 11: "mid inferolateral", 12: "mid anterolateral",
    13: "apical anterior", 14: "apical septal", 15: "apical inferior", 16: "apical lateral", 17: "apex",
}
DEFAULT_TERRITORIES = {
    "LAD": [1, 2, 7, 8, 13, 14, 17],
    "RCA": [3, 4, 9, 10, 15],
    "LCx": [5, 6, 11, 12, 16],
}
TERRITORY_SOURCE = "Cerqueira et al., Circulation 2002;105:539 (default; coronary dominance varies: edit as needed)"
RAYS = 120
MIN_RING_PIXELS = 10


@dataclass
class InsertionPoints:
    """Anterior and inferior RV insertion angles (radians, in the slice's mm frame) and their RAS points."""

    anterior_angle: float
    inferior_angle: float
    anterior_ras: list[float]
    inferior_ras: list[float]
    source: str


def _pixel_to_mm(ijk_to_ras: np.ndarray) -> tuple[float, float]:
    return float(np.linalg.norm(ijk_to_ras[:3, 0])), float(np.linalg.norm(ijk_to_ras[:3, 1]))


def _centroid_mm(mask: np.ndarray, spacing: tuple[float, float]) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    return float(cols.mean() * spacing[0]), float(rows.mean() * spacing[1])


def _to_ras(ijk_to_ras: np.ndarray, k: int, x_mm: float, y_mm: float) -> list[float]:
    spacing = _pixel_to_mm(ijk_to_ras)
    point = ijk_to_ras @ np.array([x_mm / spacing[0], y_mm / spacing[1], k, 1.0])
    return [float(v) for v in point[:3]]


def detect_insertion_points(labels: np.ndarray, ijk_to_ras: np.ndarray, slices: list[int], lv: int, myo: int, rv: int) -> InsertionPoints | None:
    """Median insertion angles over the given slices (mid-ventricular ones are the most reliable)."""
    spacing = _pixel_to_mm(ijk_to_ras)
    anterior_axis = ijk_to_ras[:3, :2] / np.array(spacing)  # RAS direction of +x and +y (mm)
    found = []
    for k in slices:
        cavity, muscle, right = labels[k] == lv, labels[k] == myo, labels[k] == rv
        if cavity.sum() < MIN_RING_PIXELS or muscle.sum() < MIN_RING_PIXELS or right.sum() < MIN_RING_PIXELS:
            continue
        wall = cavity | muscle
        epicardium = wall & ~ndimage.binary_erosion(wall)
        contact = epicardium & ndimage.binary_dilation(right, iterations=3)
        if contact.sum() < 3:
            continue
        cx, cy = _centroid_mm(cavity, spacing)
        rows, cols = np.nonzero(contact)
        angles = np.sort(np.arctan2(rows * spacing[1] - cy, cols * spacing[0] - cx))
        gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))
        widest = int(np.argmax(gaps))
        # The contact arc runs from the end of the widest gap round to its start.
        first, last = angles[(widest + 1) % len(angles)], angles[widest]
        ends = []
        for angle in (first, last):
            direction = np.array([math.cos(angle), math.sin(angle)])
            ends.append((angle, float((anterior_axis @ direction)[1])))  # the RAS "A" component
        (a_angle, _), (i_angle, _) = sorted(ends, key=lambda end: -end[1])
        found.append((k, a_angle, i_angle, cx, cy))
    if not found:
        return None
    anterior = _circular_median([f[1] for f in found])
    inferior = _circular_median([f[2] for f in found])
    k, _, _, cx, cy = found[len(found) // 2]
    radius = 30.0
    return InsertionPoints(
        anterior,
        inferior,
        _to_ras(ijk_to_ras, k, cx + radius * math.cos(anterior), cy + radius * math.sin(anterior)),
        _to_ras(ijk_to_ras, k, cx + radius * math.cos(inferior), cy + radius * math.sin(inferior)),
        f"automatic: ends of the RV-LV contact arc, median over {len(found)} slices",
    )


def insertion_points_from_ras(anterior_ras, inferior_ras, labels: np.ndarray, ijk_to_ras: np.ndarray, lv: int) -> InsertionPoints:
    """User-placed insertion points (RAS mm): their angles about the LV centre of the nearest slice."""
    spacing = _pixel_to_mm(ijk_to_ras)
    inverse = np.linalg.inv(ijk_to_ras)
    angles = []
    for point in (anterior_ras, inferior_ras):
        i, j, k = (inverse @ np.array([*point, 1.0]))[:3]
        k = int(np.clip(round(k), 0, labels.shape[0] - 1))
        cavity = labels[k] == lv
        if not cavity.any():
            cavity = (labels == lv).any(axis=0)
        cx, cy = _centroid_mm(cavity, spacing)
        angles.append(math.atan2(j * spacing[1] - cy, i * spacing[0] - cx))
    return InsertionPoints(angles[0], angles[1], list(anterior_ras), list(inferior_ras), "user-placed")


def _circular_median(angles: list[float]) -> float:
    mean = math.atan2(np.mean(np.sin(angles)), np.mean(np.cos(angles)))
    offsets = [(a - mean + math.pi) % (2 * math.pi) - math.pi for a in angles]
    return mean + float(np.median(offsets))


def segment_of(angle: float, level: str, points: InsertionPoints) -> int:
    """AHA segment number of a direction ``angle`` (radians) at a level ('basal', 'mid', 'apical')."""
    septal = _septal_arc(points)
    sense = septal[1]
    u = (sense * (angle - points.anterior_angle)) % (2 * math.pi)
    arc = septal[0]
    if level == "apical":
        v = (u - arc / 2 + math.pi / 4) % (2 * math.pi)
        return (14, 15, 16, 13)[min(int(v // (math.pi / 2)), 3)]
    offset = 0 if level == "basal" else 6
    if u < arc:
        return offset + (2 if u < arc / 2 else 3)
    fraction = (u - arc) / (2 * math.pi - arc)
    return offset + (4, 5, 6, 1)[min(int(fraction * 4), 3)]


def _septal_arc(points: InsertionPoints) -> tuple[float, int]:
    """Length of the septal arc and the sense (±1) that runs anterior → septum → inferior.

    The septum is the shorter way between the insertion points: the RV wraps about a third of the LV.
    """
    forward = (points.inferior_angle - points.anterior_angle) % (2 * math.pi)
    return (forward, 1) if forward <= math.pi else (2 * math.pi - forward, -1)


def levels(labels: np.ndarray, included: np.ndarray, base_direction: int, lv: int, myo: int) -> dict[str, list[int]]:
    """Slices with a myocardial ring, base → apex, split in thirds by count (ceil(n/3), ceil(2n/3))."""
    ring = [
        k
        for k in range(labels.shape[0])
        if included[k] and (labels[k] == myo).sum() >= MIN_RING_PIXELS and (labels[k] == lv).sum() >= MIN_RING_PIXELS
    ]
    ring.sort(reverse=base_direction > 0)
    n = len(ring)
    first, second = math.ceil(n / 3), math.ceil(2 * n / 3)
    return {"basal": ring[:first], "mid": ring[first:second], "apical": ring[second:]}


def wall_thickness(labels: np.ndarray, ijk_to_ras: np.ndarray, k: int, lv: int, myo: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray angles (radians) and myocardial thickness (mm) along each ray from the cavity centroid."""
    spacing = _pixel_to_mm(ijk_to_ras)
    cavity = labels[k] == lv
    cx, cy = _centroid_mm(cavity, spacing)
    step = 0.25 * min(spacing)
    distances = np.arange(0.0, 120.0, step)
    angles = np.linspace(-math.pi, math.pi, RAYS, endpoint=False)
    xs = (cx + np.outer(np.cos(angles), distances)) / spacing[0]
    ys = (cy + np.outer(np.sin(angles), distances)) / spacing[1]
    inside = (xs >= 0) & (ys >= 0) & (xs <= labels.shape[2] - 1) & (ys <= labels.shape[1] - 1)
    sampled = np.where(inside, labels[k][np.clip(np.round(ys).astype(int), 0, labels.shape[1] - 1), np.clip(np.round(xs).astype(int), 0, labels.shape[2] - 1)], 0)
    thickness = np.full(RAYS, np.nan)
    for r in range(RAYS):
        ray = sampled[r]
        leaving = np.flatnonzero(ray != lv)
        if not len(leaving) or ray[leaving[0]] != myo:
            continue
        start = leaving[0]
        beyond = np.flatnonzero(ray[start:] != myo)
        if len(beyond):
            thickness[r] = beyond[0] * step
    return angles, thickness


def segmental_thickness(labels: np.ndarray, ijk_to_ras: np.ndarray, slice_levels: dict[str, list[int]], points: InsertionPoints, lv: int, myo: int) -> dict[int, float]:
    """Mean wall thickness (mm) per AHA segment over all rays of all slices of its level."""
    samples: dict[int, list[float]] = {}
    for level, slices in slice_levels.items():
        for k in slices:
            if (labels[k] == lv).sum() < MIN_RING_PIXELS:
                continue
            angles, thickness = wall_thickness(labels, ijk_to_ras, k, lv, myo)
            for angle, value in zip(angles, thickness):
                if np.isfinite(value):
                    samples.setdefault(segment_of(angle, level, points), []).append(float(value))
    return {segment: float(np.mean(values)) for segment, values in samples.items()}


def aha_analysis(
    ed_labels: np.ndarray,
    es_labels: np.ndarray,
    ijk_to_ras: np.ndarray,
    included: np.ndarray,
    base_direction: int,
    lv: int,
    myo: int,
    rv: int,
    insertion_ras: tuple[list[float], list[float]] | None = None,
    territories: dict[str, list[int]] | None = None,
) -> dict:
    """Per-segment ED and ES thickness, thickening, territory, and the insertion points used."""
    slice_levels = levels(ed_labels, included, base_direction, lv, myo)
    if insertion_ras is not None:
        points = insertion_points_from_ras(*insertion_ras, ed_labels, ijk_to_ras, lv)
    else:
        reliable = slice_levels["mid"] + slice_levels["basal"]
        points = detect_insertion_points(ed_labels, ijk_to_ras, reliable, lv, myo, rv)
    if points is None:
        return {"available": False, "reason": "no slice shows both the RV and the LV myocardium: insertion points not found"}
    territories = territories or DEFAULT_TERRITORIES
    territory_of = {segment: name for name, segments in territories.items() for segment in segments}
    ed = segmental_thickness(ed_labels, ijk_to_ras, slice_levels, points, lv, myo)
    es = segmental_thickness(es_labels, ijk_to_ras, slice_levels, points, lv, myo)
    segments = {}
    for number in range(1, 18):
        ed_mm, es_mm = ed.get(number), es.get(number)
        segments[str(number)] = {
            "name": SEGMENT_NAMES[number],
            "territory": territory_of.get(number),
            "ed_thickness_mm": ed_mm,
            "es_thickness_mm": es_mm,
            "thickening_pct": 100.0 * (es_mm - ed_mm) / ed_mm if ed_mm and es_mm is not None else None,
        }
    by_territory = {}
    for name, numbers in territories.items():
        values = [segments[str(n)]["thickening_pct"] for n in numbers if segments[str(n)]["thickening_pct"] is not None]
        by_territory[name] = {"segments": numbers, "mean_thickening_pct": float(np.mean(values)) if values else None}
    return {
        "available": True,
        "segments": segments,
        "territories": by_territory,
        "territory_mapping_source": TERRITORY_SOURCE if territories is DEFAULT_TERRITORIES else "user mapping",
        "levels": slice_levels,
        "rv_insertion_points_ras": {"anterior": points.anterior_ras, "inferior": points.inferior_ras, "source": points.source},
        "method": (
            "patient-specific sectors: septal arc between the RV insertion points split in 2, free wall in 4;"
            " apical 4 × 90° centred on the septum; levels = thirds of the ringed slices by count; thickness along"
            f" {RAYS} rays from the cavity centroid; segment 17 not assigned from short axis"
        ),
    }
