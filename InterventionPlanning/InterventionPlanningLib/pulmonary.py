"""Percutaneous pulmonary valve implantation (PPVI) planning: the RVOT and main pulmonary artery (MPA) along
their centreline, the landing zone and its distance to the bifurcation, and the coronary compression risk.

What is measured (``shared/reference/cardiac-ct.md`` §4.3):

* **Centreline** from a point in the RVOT below the valve (``rvot_start``) through the annulus
  (``pulmonary_annulus``) and the MPA to the bifurcation (``pa_bifurcation``): the lumen's centre line, tracked
  on the CT by sections perpendicular to the path, each recentred on its lumen centroid, then smoothed. With a
  label map and no landmarks, the pulmonary-artery mask gives the route and the landmarks (below).
* **Sections every 2 mm** perpendicular to the centreline, at positions counted from the annulus (negative in
  the RVOT): lumen area (mm²), perimeter, minimal and maximal diameters through the centroid, the
  perimeter-derived ("circularised", P/π) and area-derived (2√(A/π)) diameters — the RVOT/MPA reporting
  proposed by Ligon et al. 2022, who size the landing zone by its perimeter-derived diameter in end-systole.
  The boundary is the half-way level between contrast blood and the tissue just outside the lumen
  (``sections.lumen_levels``), found sub-voxel along rays (``sections.lumen_section``).
* **Landing zone**: the given ``landing_zone`` landmark (projected onto the centreline), else the narrowest
  section (smallest area) between the annulus and the bifurcation, refined between the 2-mm sections by a
  parabola; its figures and its distance to the bifurcation along the centreline.
* **Coronary compression risk**: the minimal distance from each coronary centreline (curves named
  ``coronary…``, or the skeleton of labels named ``coronary…``) to the RVOT/MPA lumen surface, at the measured
  phase and at every other phase given, flagged below 2 mm. The outer wall of the RVOT is not visible on CT,
  so the distance is to the lumen boundary (the wall lies in between); balloon interrogation remains the
  reference test (Pediatr Cardiol 2021, cited in §4.3).

Landmarks found automatically from labels: the annulus is the centre of the contact between the right
ventricle and the pulmonary artery when both are labelled (the plane fitted to it, as in
``CardiacSegmentationLib.valve``), else the proximal end of the pulmonary-artery mask (where its section along
the trunk falls to half); the mask's three ends are joined by geodesic centre paths, the trunk being the end next
to the right ventricle or, without one, the most anterior-inferior end, and the bifurcation is the point nearest
both branch axes (lines fitted to the branch paths 8–25 mm from their junction): where the branches' centre
lines meet, the level of the branch origins. Without labels and without ``pulmonary_annulus`` the annulus is
the ventriculo-arterial junction: where the tissue round the lumen turns from myocardium to fat along the
centreline.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from CardiacSuiteLib.geometry import arc_length, points_to_polyline_distance, resample_polyline, smooth_polyline

from .model import PlanInputs, PlanResult, SectionImage
from .sections import (
    Section,
    Volume,
    lumen_levels,
    lumen_section,
    reject_spikes,
    plane_basis,
    polygon_measures,
    sample_plane,
    smooth_periodic,
)

PROTOCOL = "pulmonary"
#: Landmarks in display order.
LANDMARKS = ("rvot_start", "pulmonary_annulus", "landing_zone", "pa_bifurcation")
#: Sections along the centreline every this many mm from the annulus.
STEP_MM = 2.0
#: Coronary centreline to lumen distance below which compression risk is flagged, mm.
FLAG_MM = 2.0
#: Longest lumen radius looked for, mm (a dilated RVOT or MPA stays under it).
MAX_RADIUS_MM = 35.0
#: Shortest run below the threshold that ends the lumen along a ray, mm (a coronary a millimetre off the RVOT
#: lumen still ends it).
GAP_MM = 0.5
#: How far below the annulus the RVOT start is looked for when it is not given, mm.
RVOT_DEPTH_MM = 15.0
#: A ray of a measured section this far off the median of its neighbours is dropped, mm.
SPIKE_MM = 1.2
#: Sample step of the centreline, mm.
CENTERLINE_STEP_MM = 0.5
#: A section is used when at least this fraction of its rays met the wall.
MIN_RAYS = 0.85


#: Rays of the light sections that steer the centreline (the measured sections use one per degree).
TRACK_RAYS = 72


# ---------------------------------------------------------------------------------------------- centreline


class _Centreline:
    """A polyline resampled every CENTERLINE_STEP_MM with smooth tangents and an in-plane reference direction
    carried along it (parallel transport), so that section azimuths line up from one section to the next."""

    def __init__(self, points: np.ndarray, sigma_mm: float = 2.0):
        (self.points,) = resample_polyline(np.asarray(points, dtype=float), CENTERLINE_STEP_MM)
        if len(self.points) < 3:
            raise ValueError("the centreline is shorter than a millimetre")
        self.arc = arc_length(self.points)
        tangents = ndimage.gaussian_filter1d(np.gradient(self.points, axis=0), sigma_mm / CENTERLINE_STEP_MM,
                                             axis=0, mode="nearest")
        self.tangents = tangents / np.linalg.norm(tangents, axis=1, keepdims=True)
        refs = np.empty_like(self.tangents)
        u = plane_basis(self.tangents[0])[0]
        for k, t in enumerate(self.tangents):
            u = u - (u @ t) * t
            u /= np.linalg.norm(u)
            refs[k] = u
        self.refs = refs

    @property
    def length(self) -> float:
        return float(self.arc[-1])

    def _interp(self, values: np.ndarray, s: float) -> np.ndarray:
        return np.array([np.interp(s, self.arc, values[:, c]) for c in range(3)])

    def point(self, s: float) -> np.ndarray:
        return self._interp(self.points, s)

    def tangent(self, s: float) -> np.ndarray:
        t = self._interp(self.tangents, s)
        return t / np.linalg.norm(t)

    def reference(self, s: float) -> np.ndarray:
        return self._interp(self.refs, s)

    def project(self, point: np.ndarray) -> tuple[float, float]:
        """Arc length of the point's nearest centreline point, and the distance to it."""
        distance, s = points_to_polyline_distance(np.atleast_2d(point), self.points)
        return float(s[0]), float(distance[0])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _section(volume: Volume, centre: np.ndarray, normal: np.ndarray, threshold: float, u: np.ndarray | None = None,
             recentre: int = 1, max_mm: float = MAX_RADIUS_MM) -> Section | None:
    """The lumen section (one ray per degree), or None where no lumen boundary is found round the point.

    Rays that jump more than SPIKE_MM off the median of their ±7° neighbours are dropped before the boundary is
    smoothed again: a coronary under a millimetre off the lumen, crossed where noise bridges the gap, would
    otherwise bulge the boundary towards it (the section's own spike limit is 3 mm)."""
    try:
        section = lumen_section(volume, centre, normal, threshold, max_mm=max_mm, gap_mm=GAP_MM, u=u,
                                recentre=recentre)
    except ValueError:
        return None
    raw = section.raw_radii
    good = np.isfinite(raw)
    if good.sum() < len(raw) // 2:
        return section
    x = np.arange(len(raw))
    filled = np.interp(x, x[good], raw[good], period=len(raw))
    spikes = good & (np.abs(filled - ndimage.median_filter(filled, size=15, mode="wrap")) > SPIKE_MM)
    if not spikes.any():
        return section
    raw = np.where(spikes, np.nan, raw)
    radii = smooth_periodic(raw)
    phi = section.azimuths
    try:
        measures = polygon_measures(np.column_stack([radii * np.cos(phi), radii * np.sin(phi)]))
    except ValueError:
        return None
    return Section(section.centre, section.normal, section.u, section.v, radii, raw, measures)


def _light(volume: Volume, centre: np.ndarray, normal: np.ndarray, threshold: float, u: np.ndarray | None = None,
           recentre: int = 1) -> Section | None:
    """A section from TRACK_RAYS rays, to steer the centreline: its centroid and a rough boundary."""
    try:
        section = lumen_section(volume, centre, _unit(np.asarray(normal, dtype=float)), threshold, MAX_RADIUS_MM,
                                GAP_MM, u, recentre, harmonics=8, rays=TRACK_RAYS, spike_window=7)
    except ValueError:
        return None
    # rays into a branch do not count as found (``_rays_found``)
    return replace(section, raw_radii=reject_spikes(section.raw_radii, window=7))


def _rays_found(section: Section) -> float:
    return float(np.isfinite(section.raw_radii).mean())


def _march(volume: Volume, start: np.ndarray, goals: list[np.ndarray], threshold: float,
           step: float = STEP_MM) -> np.ndarray:
    """Follow the lumen from ``start`` through each goal in turn: a step along the current direction (turned
    towards the goal as it nears), then the point moved to its section's lumen centroid."""
    start = np.asarray(start, dtype=float)
    direction = _unit(goals[0] - start)
    first = _light(volume, start, direction, threshold)
    points = [first.centroid if first is not None and _rays_found(first) >= MIN_RAYS else start]
    straight = sum(np.linalg.norm(b - a) for a, b in zip([start] + goals[:-1], goals))
    index = 0
    for _ in range(int(3.0 * straight / step) + 20):
        p = points[-1]
        goal = goals[index]
        to_goal = goal - p
        distance = float(np.linalg.norm(to_goal))
        passed = len(points) > 2 and to_goal @ direction < 0 and distance < 20.0
        if distance < 1.5 * step or passed:
            if index == len(goals) - 1:
                break
            index += 1
            continue
        weight = float(np.clip((distance - 6.0) / 24.0, 0.0, 1.0))  # near a goal, aim at it
        heading = _unit(weight * direction + (1.0 - weight) * to_goal / distance)
        q = p + step * heading
        section = _light(volume, q, heading, threshold)
        if section is not None and _rays_found(section) >= MIN_RAYS:
            move = section.centroid - q
            if np.linalg.norm(move) > step:
                move *= step / np.linalg.norm(move)
            q = q + float(np.clip((distance - 4.0) / 8.0, 0.0, 1.0)) * move
        direction = _unit(q - points[-2]) if len(points) > 1 else _unit(q - p)
        points.append(q)
    points.append(np.asarray(goals[-1], dtype=float))
    return np.array(points)


def _smoothing_mm(volume: Volume) -> float:
    """Gaussian sigma of the centreline along its length: 3 mm, or 2.5 voxels of a coarser CT (centroids of
    coarse voxels wander, and a wandering centreline tilts its sections)."""
    return max(3.0, 2.5 * float(np.linalg.norm(volume.ijk_to_ras[:3, :3], axis=0).max()))


def _refine(volume: Volume, points: np.ndarray, threshold: float, passes: int = 2,
            anchor_end: bool = True) -> np.ndarray:
    """Sections every 2 mm perpendicular to the path, each point moved to its lumen centroid (less near an
    anchored end, the bifurcation, where the branches pull the centroid), then smoothed (``_smoothing_mm``)."""
    sigma = _smoothing_mm(volume)
    for _ in range(passes):
        line = _Centreline(points, sigma)
        stations = np.append(np.arange(0.0, line.length, STEP_MM), line.length)
        moves = np.full((len(stations), 3), np.nan)
        for k, s in enumerate(stations):
            c = line.point(s)
            section = _light(volume, c, line.tangent(s), threshold, u=line.reference(s))
            if section is None or _rays_found(section) < MIN_RAYS:
                continue
            move = section.centroid - c
            if np.linalg.norm(move) <= 6.0:
                moves[k] = move
        good = np.isfinite(moves[:, 0])
        if good.sum() < 2:
            return line.points
        weight = np.ones(len(stations))
        if anchor_end:
            weight = np.clip((line.length - stations) / 12.0, 0.0, 1.0)
        move = np.column_stack([np.interp(line.arc, stations[good], (moves[good, c] * weight[good]))
                                for c in range(3)])
        moved = line.points + move
        points = smooth_polyline(moved, sigma, CENTERLINE_STEP_MM)
    return points


# ---------------------------------------------------------------------------------------------- labels


def _label_values(inputs: PlanInputs, test) -> list[int]:
    return [v for v, n in inputs.label_names.items() if test(n.lower())]


def _is_pa(name: str) -> bool:
    return "pulmonary" in name and "vein" not in name


def _is_rv(name: str) -> bool:
    return ("right ventricle" in name or "right_ventricle" in name or name in ("rv", "rvot")
            or "outflow" in name)


def _largest(mask: np.ndarray) -> np.ndarray:
    parts, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    return parts == int(np.argmax(sizes))


def _kji_to_ras(matrix: np.ndarray, kji: np.ndarray) -> np.ndarray:
    kji = np.atleast_2d(np.asarray(kji, dtype=float))
    return kji[:, ::-1] @ matrix[:3, :3].T + matrix[:3, 3]


def _mask_section(mask: np.ndarray, matrix: np.ndarray, centre: np.ndarray, normal: np.ndarray,
                  half_mm: float = 35.0, pixel: float = 0.5) -> tuple[float, np.ndarray | None]:
    """Area (mm²) and centroid (RAS) of the mask's connected part at (or within 5 mm of) ``centre`` in the plane."""
    u, v = plane_basis(normal)
    n = int(math.ceil(half_mm / pixel))
    g = np.arange(-n, n + 1) * pixel
    a, b = np.meshgrid(g, g, indexing="ij")
    ras = centre + a[..., None] * u + b[..., None] * v
    inverse = np.linalg.inv(matrix)
    ijk = ras.reshape(-1, 3) @ inverse[:3, :3].T + inverse[:3, 3]
    values = ndimage.map_coordinates(mask.astype(np.uint8), ijk[:, ::-1].T, order=0, cval=0).reshape(a.shape) > 0
    parts, count = ndimage.label(values)
    if count == 0:
        return 0.0, None
    label = parts[n, n]
    if label == 0:
        index = np.argwhere(parts > 0)
        nearest = index[np.argmin(((index - n) ** 2).sum(axis=1))]
        if math.hypot(*(nearest - n)) * pixel > 5.0:
            return 0.0, None
        label = parts[tuple(nearest)]
    region = np.argwhere(parts == label)
    cy, cx = region.mean(axis=0)
    return float(len(region) * pixel**2), centre + (cy - n) * pixel * u + (cx - n) * pixel * v


def _mask_route(pa: np.ndarray, matrix: np.ndarray, rv: np.ndarray | None) -> dict:
    """The pulmonary-artery mask's trunk path (proximal end -> bifurcation), the bifurcation and the annulus."""
    from skimage.graph import MCP_Geometric

    pa = _largest(pa)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)[::-1]  # k, j, i
    factor = np.maximum(np.round(1.2 / spacing).astype(int), 1)
    low = np.maximum(np.argwhere(pa).min(axis=0) - 2 * factor, 0)
    high = np.minimum(np.argwhere(pa).max(axis=0) + 2 * factor + 1, pa.shape)
    crop = pa[tuple(slice(lo, hi) for lo, hi in zip(low, high))]
    shape = (np.array(crop.shape) // factor) * factor
    crop = crop[: shape[0], : shape[1], : shape[2]].astype(np.float32)
    coarse = crop.reshape(shape[0] // factor[0], factor[0], shape[1] // factor[1], factor[1],
                          shape[2] // factor[2], factor[2]).mean(axis=(1, 3, 5)) >= 0.5
    coarse = _largest(coarse)
    step = spacing * factor

    def ras(kji):
        full = low + np.atleast_2d(kji) * factor + (factor - 1) / 2.0
        return _kji_to_ras(matrix, full)

    edt = ndimage.distance_transform_edt(coarse, sampling=step)
    uniform = MCP_Geometric(np.where(coarse, 1.0, np.inf), sampling=tuple(step))
    centred = MCP_Geometric(np.where(coarse, 1.0 / (edt + 0.5 * step.min()) ** 2, np.inf), sampling=tuple(step))

    def farthest(starts):
        cost, _ = uniform.find_costs([tuple(int(v) for v in s) for s in starts])
        cost = np.where(np.isfinite(cost) & coarse, cost, -1.0)
        return np.unravel_index(int(np.argmax(cost)), cost.shape)

    def path(starts, end):
        centred.find_costs([tuple(int(v) for v in s) for s in starts], [tuple(end)])
        return np.array(centred.traceback(tuple(end)))

    seed = np.unravel_index(int(np.argmax(edt)), edt.shape)
    e1 = farthest([seed])
    e2 = farthest([e1])
    path12 = path([e1], e2)  # e1 -> e2
    e3 = farthest(path12)
    path3 = path(path12, e3)  # a point of path12 -> e3
    junction = path3[0]
    j = int(np.argmin(np.abs(path12 - junction).sum(axis=1)))
    arms = [path12[j::-1], path12[j:], path3]  # junction -> each end
    ends = [ras(arm[-1])[0] for arm in arms]
    junction_ras = ras(junction)[0]
    contact = None
    if rv is not None and rv.any():
        touching = pa & ndimage.binary_dilation(rv)
        if touching.sum() >= 10:
            contact = _kji_to_ras(matrix, np.argwhere(touching))
    if contact is not None:
        trunk = int(np.argmin([np.linalg.norm(e - contact.mean(axis=0)) for e in ends]))
        rule = "trunk: the end of the pulmonary-artery mask next to the right ventricle"
    else:
        trunk = int(np.argmax([e[1] - 0.5 * e[2] for e in ends]))
        rule = "trunk: the most anterior-inferior end of the pulmonary-artery mask"
    branch_axes = [_axis(ras(arms[k])) for k in range(3) if k != trunk]
    bifurcation = _closest_point(branch_axes, junction_ras)
    trunk_path = ras(arms[trunk][::-1])  # proximal end -> junction
    trunk_path = np.vstack([trunk_path, bifurcation])
    (trunk_path,) = resample_polyline(trunk_path, 1.0)
    trunk_path = smooth_polyline(trunk_path, 3.0, 1.0)
    out = {"path": trunk_path, "bifurcation": bifurcation, "rule": rule}
    if contact is not None:
        centre = contact.mean(axis=0)
        normal = np.linalg.svd(contact - centre, full_matrices=False)[2][-1]
        if normal @ (bifurcation - centre) < 0:
            normal = -normal
        out.update(annulus=centre, annulus_normal=normal,
                   annulus_rule="centre of the contact between the right ventricle and the pulmonary artery")
        rv_start = None
        for depth in (RVOT_DEPTH_MM, 10.0, 5.0):
            area, centroid = _mask_section(rv, matrix, centre - depth * normal, normal)
            if centroid is not None and area > 20.0:
                rv_start = centroid
                break
        out["rvot_start"] = rv_start
    else:
        out.update(_mask_end(pa, matrix, trunk_path))
    return out


def _axis(arm: np.ndarray, near: float = 8.0, far: float = 25.0) -> tuple[np.ndarray, np.ndarray] | None:
    """A branch's axis: the line fitted to its centre path between ``near`` and ``far`` mm from the junction
    (clear of the junction itself, where the path bends into the trunk)."""
    arc = arc_length(arm)
    far = min(far, arc[-1] - 3.0)
    part = arm[(arc >= near) & (arc <= far)]
    if len(part) < 3:
        return None
    centre = part.mean(axis=0)
    direction = np.linalg.svd(part - centre, full_matrices=False)[2][0]
    return centre, direction


def _closest_point(axes: list, fallback: np.ndarray, limit_mm: float = 15.0) -> np.ndarray:
    """The point nearest (least squares) to the branch axes: where the branches' centre lines meet, the
    bifurcation; ``fallback`` (the junction of the centre paths) when an axis is missing, the axes are near
    parallel or the point lies more than ``limit_mm`` from it."""
    axes = [a for a in axes if a is not None]
    if len(axes) < 2:
        return fallback
    system, rhs = np.zeros((3, 3)), np.zeros(3)
    for centre, direction in axes:
        projector = np.eye(3) - np.outer(direction, direction)
        system += projector
        rhs += projector @ centre
    if np.linalg.cond(system) > 1e6:
        return fallback
    point = np.linalg.solve(system, rhs)
    if np.linalg.norm(point - fallback) > limit_mm:
        return fallback
    return point


def _mask_end(pa: np.ndarray, matrix: np.ndarray, trunk_path: np.ndarray) -> dict:
    """The proximal end of the mask along the trunk: sections walked back from 30 mm along the trunk's centre
    path (nearer the end the path bends to a corner of the face), each recentred on its centroid and turned
    half-way to the line of the last 8 mm of centroids (the trunk curves), until the area falls below half of
    that of the 5 mm before; the annulus is that level."""
    arc = arc_length(trunk_path)
    start = min(30.0, 0.6 * arc[-1])
    point = np.array([np.interp(start, arc, trunk_path[:, c]) for c in range(3)])
    back = np.array([np.interp(max(start - 10.0, 0.0), arc, trunk_path[:, c]) for c in range(3)])
    direction = _unit(back - point)  # towards the proximal end
    areas, centres = [], []
    step, trail, window = 0.5, 16, 10
    for _ in range(int(80.0 / step)):
        area, centroid = _mask_section(pa, matrix, point, direction)
        if centroid is None:
            area = 0.0
        if len(areas) >= window:
            reference = float(np.median(areas[-window:]))
            if area < 0.5 * reference:
                a0 = areas[-1]
                frac = (a0 - 0.5 * reference) / (a0 - area) if a0 != area else 0.5
                # the centre: the last whole section's centroid (one the face cuts leans aside), carried along
                # the axis to the half-area level
                whole = max(k for k in range(len(areas)) if areas[k] >= 0.9 * reference or k == 0)
                level = (len(areas) - 1 - whole + float(np.clip(frac, 0.0, 1.0))) * step
                annulus = centres[whole] + level * direction
                return {"annulus": annulus, "annulus_normal": -direction, "rvot_start": None,
                        "annulus_rule": "proximal end of the pulmonary-artery mask (its section along the trunk "
                                        "falls to half)"}
        areas.append(area)
        centres.append(point.copy() if centroid is None else centroid)
        if centroid is not None:
            point = centroid
            if len(centres) > trail and min(areas[-trail - 1:]) >= 0.7 * max(areas[-trail - 1:]):
                direction = _unit(direction + _unit(centres[-1] - centres[-1 - trail]))
        point = point + step * direction
    return {"annulus": trunk_path[0], "annulus_normal": _unit(trunk_path[1] - trunk_path[0]), "rvot_start": None,
            "annulus_rule": "proximal end of the pulmonary-artery trunk path"}


def _rvot_from_ct(volume: Volume, annulus: np.ndarray, normal: np.ndarray, threshold: float,
                  reference_area: float | None) -> np.ndarray | None:
    """Up to RVOT_DEPTH_MM below the annulus on the CT, while the sections stay a closed lumen."""
    point, direction, found = np.asarray(annulus, dtype=float), -_unit(normal), None
    for _ in range(int(RVOT_DEPTH_MM / STEP_MM)):
        q = point + STEP_MM * direction
        section = _light(volume, q, direction, threshold)
        if section is None or _rays_found(section) < MIN_RAYS:
            break
        if reference_area is not None and section.measures["area_mm2"] > 2.5 * reference_area:
            break
        direction = _unit(section.centroid - point)
        point = found = section.centroid
    return found


# ---------------------------------------------------------------------------------------------- measurement


def _threshold(volume: Volume, points: list[np.ndarray]):
    """Lumen levels at the given lumen points; the median threshold (and the levels of the median one)."""
    levels = []
    for p in points:
        try:
            levels.append(lumen_levels(volume, p))
        except ValueError:
            continue
    if not levels:
        raise ValueError("no contrast lumen at the RVOT/MPA landmarks: check the landmarks or the labels")
    levels.sort(key=lambda lv: lv.threshold_hu)
    return levels[len(levels) // 2]


def _measures(section: Section) -> dict:
    m = section.measures
    keys = ("area_mm2", "perimeter_mm", "diameter_min_mm", "diameter_max_mm", "perimeter_derived_diameter_mm",
            "area_derived_diameter_mm", "eccentricity_index")
    return {k: round(float(m[k]), 2 if k != "eccentricity_index" else 3) for k in keys}


def _sections_along(volume: Volume, line: _Centreline, s_annulus: float, threshold: float,
                    only: set | None = None) -> list[dict]:
    """Sections every STEP_MM from the annulus, over the whole centreline (or at the positions in ``only``)."""
    first = math.ceil((0.0 - s_annulus) / STEP_MM - 1e-9)
    last = math.floor((line.length - s_annulus) / STEP_MM + 1e-9)
    out = []
    reach = MAX_RADIUS_MM
    for k in range(first, last + 1):
        position = k * STEP_MM
        if only is not None and round(position, 2) not in only:
            continue
        s = s_annulus + position
        section = _section(volume, line.point(s), line.tangent(s), threshold, u=line.reference(s), max_mm=reach)
        if (section is None or _rays_found(section) < MIN_RAYS) and reach < MAX_RADIUS_MM:
            section = _section(volume, line.point(s), line.tangent(s), threshold, u=line.reference(s))
        reach = MAX_RADIUS_MM
        if section is not None and _rays_found(section) >= MIN_RAYS:
            reach = float(np.clip(1.5 * np.nanmax(section.radii) + 5.0, 15.0, MAX_RADIUS_MM))
        entry = {"position_mm": round(position, 2), "arc_mm": round(s, 2), "segment": "RVOT" if position < 0
                 else "MPA", "section": section}
        if section is None:
            entry["valid"] = False
        else:
            rays = _rays_found(section)
            entry.update(_measures(section), rays_found=round(rays, 3), valid=bool(rays >= MIN_RAYS),
                         centre_ras=[round(float(v), 2) for v in section.centroid])
        # a section within its own radius of the bifurcation meets the branches
        radius = 0.5 * entry.get("diameter_max_mm", 0.0)
        entry["near_bifurcation"] = bool(line.length - s < max(radius, 4.0))
        out.append(entry)
    return out


def _landing_zone(volume: Volume, line: _Centreline, s_annulus: float, sections: list[dict], threshold: float,
                  given: np.ndarray | None) -> tuple[float, Section | None, str]:
    if given is not None:
        s, _ = line.project(given)
        return s, _section(volume, line.point(s), line.tangent(s), threshold, u=line.reference(s)), "given"
    candidates = [e for e in sections if e["valid"] and not e["near_bifurcation"] and e["position_mm"] >= 0.0]
    if not candidates:
        return s_annulus, None, "none"
    areas = np.array([e["area_mm2"] for e in candidates])
    k = int(np.argmin(areas))
    s = s_annulus + candidates[k]["position_mm"]
    if 0 < k < len(candidates) - 1:
        prev, nxt = candidates[k - 1], candidates[k + 1]
        if (abs(prev["position_mm"] - candidates[k]["position_mm"] + STEP_MM) < 1e-6
                and abs(nxt["position_mm"] - candidates[k]["position_mm"] - STEP_MM) < 1e-6):
            a0, a1, a2 = areas[k - 1], areas[k], areas[k + 1]
            curvature = a0 - 2.0 * a1 + a2
            if curvature > 0:
                s += float(np.clip(0.5 * (a0 - a2) / curvature, -1.0, 1.0)) * STEP_MM
    section = _section(volume, line.point(s), line.tangent(s), threshold, u=line.reference(s))
    return s, section, "narrowest section"


def _annulus_from_tissue(volume: Volume, line: _Centreline, threshold: float) -> float | None:
    """Arc length where the tissue round the lumen turns from myocardium to fat (the ventriculo-arterial
    junction): the median HU 2.5–4.5 mm outside the lumen boundary per 1-mm section, its steepest fall in the
    proximal two thirds of the centreline, refined to the half-way crossing."""
    stations = np.arange(0.0, line.length, 1.0)
    profile = np.full(len(stations), np.nan)
    for k, s in enumerate(stations):
        section = _light(volume, line.point(s), line.tangent(s), threshold, u=line.reference(s))
        if section is None or _rays_found(section) < MIN_RAYS:
            continue
        phi = section.azimuths
        directions = np.cos(phi)[:, None] * section.u + np.sin(phi)[:, None] * section.v
        ring = [section.centre + (section.radii + d)[:, None] * directions for d in (2.5, 3.5, 4.5)]
        profile[k] = float(np.median(volume.sample(np.concatenate(ring))))
    good = np.isfinite(profile)
    if good.sum() < 10:
        return None
    profile = np.interp(stations, stations[good], profile[good])
    smooth = ndimage.gaussian_filter1d(profile, 1.0, mode="nearest")
    slope = np.gradient(smooth)
    usable = stations <= (2.0 / 3.0) * line.length
    usable[:3] = False
    if not usable.any():
        return None
    k = int(np.argmin(np.where(usable, slope, np.inf)))
    before = float(np.median(profile[max(0, k - 8): max(1, k - 3)]))
    after = float(np.median(profile[k + 3: k + 8])) if k + 3 < len(profile) else float(profile[-1])
    if before - after < 60.0:
        return None
    mid = 0.5 * (before + after)
    for i in range(max(0, k - 4), min(len(smooth) - 1, k + 4)):
        if smooth[i] >= mid > smooth[i + 1]:
            return float(stations[i] + (smooth[i] - mid) / (smooth[i] - smooth[i + 1]))
    return float(stations[k])


def _coronary_curves(inputs: PlanInputs) -> tuple[dict[str, np.ndarray], list[str]]:
    """Coronary centrelines: curves named ``coronary…``, else the skeletons of labels named ``coronary…``."""
    curves = {name: np.asarray(points, dtype=float).reshape(-1, 3) for name, points in inputs.curves.items()
              if name.lower().startswith("coronary")}
    notes = []
    if inputs.labels is not None:
        for value in _label_values(inputs, lambda n: "coronary" in n):
            name = "coronary_" + inputs.label_names[value].lower().replace("coronary", "").strip(" _-").replace(
                " ", "_")
            name = name.rstrip("_")
            if any(k.lower() == name.lower() for k in curves):
                continue
            mask = inputs.labels == value
            if not mask.any():
                continue
            from skimage.morphology import skeletonize

            skeleton = skeletonize(mask)
            voxels = _kji_to_ras(inputs.ijk_to_ras, np.argwhere(mask))
            points = _kji_to_ras(inputs.ijk_to_ras, np.argwhere(skeleton)) if skeleton.any() else voxels
            # each skeleton voxel moved to the mean of the label's voxels round it: the vessel axis, sub-voxel
            radius = max(1.5, 2.5 * float(np.linalg.norm(inputs.ijk_to_ras[:3, :3], axis=0).max()))
            tree = cKDTree(voxels)
            points = np.array([voxels[hits].mean(axis=0) for hits in tree.query_ball_point(points, radius)])
            curves[name] = points
            notes.append(f"{name}: centreline from the skeleton of label {value} ('{inputs.label_names[value]}'), "
                         f"each point the mean of the label within {radius:.1f} mm")
    return curves, notes


def _surface(sections: list[dict], subdivisions: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Lumen boundary points of consecutive valid sections and between them (linear in the section position),
    with the position (mm from the annulus) of each."""
    usable = [e for e in sections if e.get("valid") and not e["near_bifurcation"]]
    points, positions = [], []
    for a, b in zip(usable, usable[1:] + [None]):
        ring_a = a["section"].boundary_ras()
        points.append(ring_a)
        positions.append(np.full(len(ring_a), a["position_mm"]))
        if b is None or b["position_mm"] - a["position_mm"] > STEP_MM + 1e-6:
            continue
        ring_b = b["section"].boundary_ras()
        for t in np.arange(1, subdivisions) / subdivisions:
            points.append((1.0 - t) * ring_a + t * ring_b)
            positions.append(np.full(len(ring_a), (1.0 - t) * a["position_mm"] + t * b["position_mm"]))
    if not points:
        return np.zeros((0, 3)), np.zeros(0)
    return np.concatenate(points), np.concatenate(positions)


def _coronary_distances(curves: dict[str, np.ndarray], sections: list[dict]) -> dict:
    points, positions = _surface(sections)
    if len(points) == 0:
        return {}
    tree = cKDTree(points)
    out = {}
    for name, curve in curves.items():
        if len(curve) > 1:
            gaps = np.linalg.norm(np.diff(curve, axis=0), axis=1)
            if np.all(gaps < 5.0):  # an ordered curve: sample it densely; a point set is used as it is
                (curve,) = resample_polyline(curve, 0.2)
        d, index = tree.query(curve)
        k = int(np.argmin(d))
        out[name] = {"distance_mm": float(d[k]), "position_mm": float(positions[index[k]]),
                     "coronary_point_ras": curve[k], "lumen_point_ras": points[index[k]]}
    return out


def _chord(xy: np.ndarray, centroid: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The chord of a closed boundary through ``centroid`` along ``direction``: its two end points (2D)."""
    rel = xy - centroid
    angle = np.arctan2(rel[:, 1], rel[:, 0])
    radius = np.hypot(rel[:, 0], rel[:, 1])
    order = np.argsort(angle)
    a = math.atan2(direction[1], direction[0])
    ends = []
    for theta in (a, a + math.pi):
        theta = (theta + math.pi) % (2.0 * math.pi) - math.pi
        r = float(np.interp(theta, angle[order], radius[order], period=2.0 * math.pi))
        ends.append(centroid + r * np.array([math.cos(theta), math.sin(theta)]))
    return np.array(ends)


def _section_image(volume: Volume, section: Section, name: str, title: str) -> SectionImage:
    half = float(np.nanmax(section.radii)) + 10.0
    pixels, u, v = sample_plane(volume, section.centre, section.normal, half_mm=half, pixel_mm=0.25, u=section.u)
    xy = section.boundary_2d()
    centroid = np.asarray(section.measures["centroid_2d"], dtype=float)
    extra = {"diameter_min": _chord(xy, centroid, np.asarray(section.measures["diameter_min_direction_2d"])),
             "diameter_max": _chord(xy, centroid, np.asarray(section.measures["diameter_max_direction_2d"]))}
    return SectionImage(name=name, title=title, pixels=pixels.astype(np.float32), pixel_mm=0.25, contour_2d=xy,
                        extra_2d=extra, centre=section.centre, u=u, v=v)


def _round_point(p) -> list[float]:
    return [round(float(v), 2) for v in p]


# ---------------------------------------------------------------------------------------------- protocol


def measure(inputs: PlanInputs) -> PlanResult:
    """PPVI planning figures; see the module docstring for the definitions."""
    started = time.perf_counter()
    volume = Volume(inputs.image, inputs.ijk_to_ras)
    given = {k: np.asarray(v, dtype=float).reshape(3) for k, v in inputs.landmarks.items() if k in LANDMARKS}
    found: dict[str, np.ndarray] = {}
    notes: list[str] = []
    pa = rv = None
    if inputs.labels is not None:
        values = _label_values(inputs, _is_pa)
        if values:
            pa = np.isin(inputs.labels, values)
            pa = pa if pa.any() else None
        values = _label_values(inputs, _is_rv)
        if values:
            rv = np.isin(inputs.labels, values)
            rv = rv if rv.any() else None
    curve = inputs.curves.get("rvot_centerline")
    if curve is not None:
        curve = np.asarray(curve, dtype=float).reshape(-1, 3)
        if "pa_bifurcation" in given and (np.linalg.norm(curve[0] - given["pa_bifurcation"])
                                          < np.linalg.norm(curve[-1] - given["pa_bifurcation"])):
            curve = curve[::-1]
    have_ends = "rvot_start" in given and "pa_bifurcation" in given
    if curve is None and not have_ends and pa is None:
        missing = [k for k in ("rvot_start", "pa_bifurcation") if k not in given]
        raise ValueError(f"pulmonary: give the landmarks {' and '.join(missing)} (a point in the RVOT below the "
                         "valve and the main PA bifurcation), a 'rvot_centerline' curve, or a label map with the "
                         "pulmonary artery")

    annulus_normal = None
    route = None
    if curve is not None:
        start_point = given.get("rvot_start", curve[0])
        end_point = given.get("pa_bifurcation", curve[-1])
        if "rvot_start" not in given:
            found["rvot_start"] = curve[0]
        if "pa_bifurcation" not in given:
            found["pa_bifurcation"] = curve[-1]
        notes.append("centreline: the given rvot_centerline curve")
    elif have_ends:
        start_point, end_point = given["rvot_start"], given["pa_bifurcation"]
    else:
        route = _mask_route(pa, inputs.ijk_to_ras, rv)
        notes.append(f"route from the label map ({route['rule']}); bifurcation: the point nearest both branch "
                     "axes of the mask")
        end_point = given.get("pa_bifurcation", route["bifurcation"])
        if "pa_bifurcation" not in given:
            found["pa_bifurcation"] = route["bifurcation"]
        annulus_normal = route["annulus_normal"]
        if "pulmonary_annulus" not in given:
            found["pulmonary_annulus"] = route["annulus"]
            notes.append(f"annulus: {route['annulus_rule']}")
        start_point = given.get("rvot_start", route.get("rvot_start"))

    # the lumen threshold from the landmarks known so far
    probes = [p for p in (given.get("pulmonary_annulus"), found.get("pulmonary_annulus"), start_point,
                          given.get("landing_zone")) if p is not None]
    if route is not None:
        probes.append(route["path"][len(route["path"]) // 2])
    levels = _threshold(volume, probes)
    threshold = levels.threshold_hu

    if curve is not None:
        points = curve
    elif route is not None:
        annulus = given.get("pulmonary_annulus", found["pulmonary_annulus"])
        if start_point is None:
            reference = None
            section = _section(volume, annulus, annulus_normal, threshold)
            if section is not None:
                reference = section.measures["area_mm2"]
            start_point = _rvot_from_ct(volume, annulus, annulus_normal, threshold, reference)
            if start_point is None:
                notes.append("no RVOT below the annulus could be followed: the centreline starts at the annulus")
                start_point = annulus
            else:
                notes.append("RVOT start: followed on the CT below the annulus")
        if "rvot_start" not in given:
            found["rvot_start"] = start_point
        path = route["path"]
        s_ann_path, _ = _Centreline(path).project(annulus)
        beyond = path[arc_length(path) > s_ann_path + 3.0]
        points = np.vstack([start_point, annulus, beyond, end_point])
        points = _smoothed_route(points)
    else:
        goals = [g for g in (given.get("pulmonary_annulus"),) if g is not None] + [end_point]
        points = _march(volume, start_point, goals, threshold)
    points = _refine(volume, points, threshold, passes=2, anchor_end=True)
    line = _Centreline(points, _smoothing_mm(volume))

    # annulus on the centreline
    if "pulmonary_annulus" in given:
        s_annulus, _ = line.project(given["pulmonary_annulus"])
    elif "pulmonary_annulus" in found:
        s_annulus, _ = line.project(found["pulmonary_annulus"])
    else:
        if pa is not None:
            from_mask = _mask_route(pa, inputs.ijk_to_ras, rv)
            s_annulus, _ = line.project(from_mask["annulus"])
            notes.append(f"annulus: {from_mask['annulus_rule']}")
        else:
            s_tissue = _annulus_from_tissue(volume, line, threshold)
            if s_tissue is None:
                raise ValueError("pulmonary: no RVOT–PA junction (myocardium to fat round the lumen) found along "
                                 "the centreline: give the pulmonary_annulus landmark")
            s_annulus = s_tissue
            notes.append("annulus: the ventriculo-arterial junction, where the tissue round the lumen turns from "
                         "myocardium to fat along the centreline")
        found["pulmonary_annulus"] = line.point(s_annulus)

    # the threshold again, now from points on the centreline (annulus, RVOT, mid-MPA)
    probes = [line.point(s_annulus), line.point(0.5 * (s_annulus + line.length)),
              line.point(0.5 * s_annulus) if s_annulus > 4.0 else line.point(s_annulus)]
    levels = _threshold(volume, probes)
    threshold = levels.threshold_hu

    sections = _sections_along(volume, line, s_annulus, threshold)
    annulus_section = _section(volume, line.point(s_annulus), line.tangent(s_annulus), threshold,
                               u=line.reference(s_annulus))
    if annulus_section is None:
        raise ValueError("pulmonary: no lumen boundary round the annulus: check the landmarks")
    s_lz, lz_section, lz_source = _landing_zone(volume, line, s_annulus, sections, threshold,
                                                given.get("landing_zone"))
    if "landing_zone" not in given:
        found["landing_zone"] = line.point(s_lz)
    if "pulmonary_annulus" not in given:
        found["pulmonary_annulus"] = line.point(s_annulus)  # the lumen centre at the level found

    mpa_length = line.length - s_annulus
    annulus_plane = {"centre_ras_mm": _round_point(annulus_section.centroid),
                     "normal": [round(float(v), 4) for v in line.tangent(s_annulus)]}
    if annulus_normal is not None:
        annulus_plane["mask_plane_normal"] = [round(float(v), 4) for v in annulus_normal]
    results: dict = {
        "annulus": {**_measures(annulus_section), "position_mm": 0.0, "plane": annulus_plane},
        "landing_zone": {"position_mm": round(s_lz - s_annulus, 2), "source": lz_source,
                         "length_to_bifurcation_mm": round(line.length - s_lz, 2)},
        "mpa_length_mm": round(mpa_length, 2),
        "rvot_length_mm": round(s_annulus, 2),
        "centerline_length_mm": round(line.length, 2),
        "phase": inputs.phase_label,
        "threshold_hu": round(threshold, 1),
        "lumen_levels": {"blood_hu": round(levels.blood_hu, 1), "tissue_hu": round(levels.tissue_hu, 1),
                         "rule": levels.rule},
    }
    if lz_section is not None:
        results["landing_zone"].update(_measures(lz_section))
    else:
        notes.append("landing zone: no lumen section between the annulus and the bifurcation")
    results["sections"] = [{k: v for k, v in e.items() if k != "section"} for e in sections]

    # coronary compression risk, every phase
    coronary, coronary_notes = _coronary_curves(inputs)
    notes += coronary_notes
    results["coronary_distance_mm"] = {}
    if coronary:
        results["coronary_distance_mm"] = _coronary_risk(inputs, line, s_annulus, sections, coronary, notes)
        results["coronary_note"] = ("minimal distance from each coronary centreline to the RVOT/MPA lumen boundary "
                                    "(the outer wall is not visible on CT: the wall lies within this distance); "
                                    f"flagged below {FLAG_MM:g} mm; balloon interrogation remains the reference")
    else:
        results["coronary_note"] = ("no coronary centreline given (curves named 'coronary…' or labels named "
                                    "'coronary…'): compression risk not assessed")
        notes.append(results["coronary_note"])
    if not inputs.phase_label:
        notes.append("phase not stated: the landing zone is sized in end-systole (Ligon 2022)")
    results["runtime_s"] = round(time.perf_counter() - started, 2)

    landmarks, sources = {}, {}
    for name in LANDMARKS:
        if name in given:
            landmarks[name], sources[name] = given[name], "given"
        elif name in found:
            landmarks[name], sources[name] = np.asarray(found[name], dtype=float), "found"
    curves = {"rvot_mpa_centerline": line.points, "annulus_contour": annulus_section.boundary_ras()}
    if lz_section is not None:
        curves["landing_zone_contour"] = lz_section.boundary_ras()
    a = results["annulus"]
    title = f"Pulmonary annulus (area {a['area_mm2']:.0f} mm², perimeter {a['perimeter_mm']:.1f} mm)"
    images = [_section_image(volume, annulus_section, "annulus", title)]
    if lz_section is not None:
        z = results["landing_zone"]
        images.append(_section_image(volume, lz_section, "landing_zone",
                                     f"Landing zone {z['position_mm']:+.1f} mm (perimeter-derived "
                                     f"{z['perimeter_derived_diameter_mm']:.1f} mm, area {z['area_mm2']:.0f} mm²)"))
    return PlanResult(protocol=PROTOCOL, results=results, landmarks=landmarks, landmark_sources=sources,
                      curves=curves, sections=images, table=_table(results), notes=notes)


def _smoothed_route(points: np.ndarray) -> np.ndarray:
    """A route through the given points, resampled every millimetre and smoothed (sigma 3 mm)."""
    (line,) = resample_polyline(np.asarray(points, dtype=float), 1.0)
    return smooth_polyline(line, 3.0, 1.0)


def _coronary_risk(inputs: PlanInputs, line: _Centreline, s_annulus: float, sections: list[dict],
                   coronary: dict[str, np.ndarray], notes: list[str]) -> dict:
    by_phase = inputs.options.get("coronary_curves_by_phase") or {}
    measured = inputs.phase_label or "measured"
    phases = [(measured, None)]
    for label, image in inputs.phases or []:
        if str(label) != measured:
            phases.append((str(label), image))
    curves_of = {}
    for label, _ in phases:
        curves = dict(coronary)
        for name, points in (by_phase.get(label) or {}).items():
            curves[name] = np.asarray(points, dtype=float).reshape(-1, 3)
        curves_of[label] = curves
    # other phases: sections only where the lumen comes within 10 mm (beyond the nearest approach) of a coronary
    surface, positions = _surface(sections)
    near: set = set()
    if len(surface) and len(phases) > 1:
        tree = cKDTree(surface)
        every = np.concatenate([c for curves in curves_of.values() for c in curves.values()])
        reach = float(tree.query(every)[0].min()) + 10.0
        for hits in tree.query_ball_point(every, reach):
            near.update(positions[hits].tolist())
        near = {round(STEP_MM * k, 2) for p in near for k in
                range(math.floor(p / STEP_MM) - 1, math.ceil(p / STEP_MM) + 2)}
    per_phase: dict[str, dict] = {}
    for label, image in phases:
        if image is None:
            phase_sections = sections
        else:
            volume = Volume(image, inputs.ijk_to_ras)
            try:
                threshold = _threshold(volume, [line.point(s_annulus)]).threshold_hu
            except ValueError as error:
                notes.append(f"phase {label}: {error}")
                continue
            phase_sections = _sections_along(volume, line, s_annulus, threshold, only=near)
        per_phase[label] = _coronary_distances(curves_of[label], phase_sections)
    out = {}
    for name in coronary:
        values = {label: d[name] for label, d in per_phase.items() if name in d}
        if not values:
            continue
        worst = min(values, key=lambda k: values[k]["distance_mm"])
        best = values[worst]
        out[name] = {"min_mm": round(best["distance_mm"], 2), "phase": worst,
                     "per_phase": {label: round(v["distance_mm"], 2) for label, v in values.items()},
                     "flagged": bool(best["distance_mm"] < FLAG_MM),
                     "position_mm": round(best["position_mm"], 1),
                     "coronary_point_ras": _round_point(best["coronary_point_ras"]),
                     "lumen_point_ras": _round_point(best["lumen_point_ras"])}
    return out


def _table(results: dict) -> list[tuple[str, float | str, str]]:
    rows: list[tuple[str, float | str, str]] = []
    a, z = results["annulus"], results["landing_zone"]
    rows += [("Annulus area", a["area_mm2"], "mm²"), ("Annulus perimeter", a["perimeter_mm"], "mm"),
             ("Annulus minimal diameter", a["diameter_min_mm"], "mm"),
             ("Annulus maximal diameter", a["diameter_max_mm"], "mm"),
             ("Annulus perimeter-derived diameter", a["perimeter_derived_diameter_mm"], "mm"),
             ("Annulus area-derived diameter", a["area_derived_diameter_mm"], "mm")]
    rows.append(("Landing zone position from the annulus", z["position_mm"], "mm"))
    if "area_mm2" in z:
        rows += [("Landing zone area", z["area_mm2"], "mm²"),
                 ("Landing zone minimal diameter", z["diameter_min_mm"], "mm"),
                 ("Landing zone maximal diameter", z["diameter_max_mm"], "mm"),
                 ("Landing zone perimeter-derived diameter", z["perimeter_derived_diameter_mm"], "mm"),
                 ("Landing zone area-derived diameter", z["area_derived_diameter_mm"], "mm")]
    rows += [("Landing zone to bifurcation", z["length_to_bifurcation_mm"], "mm"),
             ("MPA length (annulus to bifurcation)", results["mpa_length_mm"], "mm"),
             ("RVOT length (RVOT start to annulus)", results["rvot_length_mm"], "mm")]
    for name, c in results["coronary_distance_mm"].items():
        rows.append((f"{name} to RVOT/MPA lumen, minimum over phases ({c['phase']})", c["min_mm"], "mm"))
        rows.append((f"{name} compression risk (< {FLAG_MM:g} mm)", "yes" if c["flagged"] else "no", ""))
    for e in results["sections"]:
        if e.get("valid"):
            rows.append((f"Section {e['position_mm']:+.0f} mm ({e['segment']}): min / max / perimeter-derived / "
                         "area-derived diameter, area",
                         f"{e['diameter_min_mm']:.1f} / {e['diameter_max_mm']:.1f} / "
                         f"{e['perimeter_derived_diameter_mm']:.1f} / {e['area_derived_diameter_mm']:.1f}, "
                         f"{e['area_mm2']:.0f}", "mm, mm²"))
    return rows
