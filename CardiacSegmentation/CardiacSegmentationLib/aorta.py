"""The thoracic aorta as a tube: centerline, radius and lumen from the root to the diaphragm.

The atlas knows the aortic root and the ascending aorta; beyond them the aorta is followed as a tube. At each
step a cross-section perpendicular to the current direction is sampled; the aorta's section there is the
largest circle inscribed in tissue denser than fat near the expected centre (the aortic wall separates it from
the fat and lung around it even where the lumen is poorly enhanced, dissected or thrombosed). The circle's
centre and radius extend the centerline, whose direction follows the last centimetre. The lumen is then the
tissue within the traced radius of the centerline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from CardiacSuiteLib.geometry import Grid, arc_length, resample_polyline, smooth_polyline

AORTA, LV = 6, 3


@dataclass
class AortaTrace:
    points: np.ndarray  # (N, 3) RAS mm, from the aortic valve outwards
    radii: np.ndarray  # (N,) mm
    stopped: str = ""  # why tracking ended (for the log)

    @property
    def length_mm(self) -> float:
        return float(arc_length(self.points)[-1]) if len(self.points) > 1 else 0.0


def _plane_basis(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(direction, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(direction, u)


class _Sampler:
    """Samples oblique cross-sections of an image and a label map (RAS in, 2D arrays out)."""

    def __init__(self, image: np.ndarray, labels: np.ndarray, grid: Grid, pixel_mm: float):
        self.image = image
        self.labels = labels
        self.grid = grid
        self.pixel = pixel_mm
        self.inverse = np.linalg.inv(grid.ijk_to_ras)

    def distance_to_edge(self, point: np.ndarray) -> float:
        """Distance (mm) from a point to the nearest face of the image box (negative outside)."""
        kji = self.grid.ras_to_kji(point)[0]
        below = (kji + 0.5) * self.grid.spacing_kji
        above = (np.array(self.image.shape) - 0.5 - kji) * self.grid.spacing_kji
        return float(min(below.min(), above.min()))

    def section(self, centre: np.ndarray, direction: np.ndarray, half_size_mm: float):
        u, v = _plane_basis(direction)
        n = int(np.ceil(half_size_mm / self.pixel))
        offsets = np.arange(-n, n + 1) * self.pixel
        a, b = np.meshgrid(offsets, offsets, indexing="ij")
        ras = centre + a[..., None] * u + b[..., None] * v
        ijk = ras.reshape(-1, 3) @ self.inverse[:3, :3].T + self.inverse[:3, 3]
        kji = ijk[:, ::-1].T
        values = ndimage.map_coordinates(self.image, kji, order=1, mode="nearest").reshape(a.shape)
        labels = ndimage.map_coordinates(self.labels, kji, order=0, mode="constant", cval=0).reshape(a.shape)
        inside = np.all((kji > -0.5) & (kji < np.array(self.image.shape)[:, None] - 0.5), axis=0).reshape(a.shape)
        return values, labels, inside, u, v, n

    def inscribed_circle(
        self, point: np.ndarray, heading: np.ndarray, radius: float, wall_threshold_hu: float,
        lumen_threshold_hu: float, min_enhanced: float,
    ) -> tuple[float, np.ndarray]:
        """The aorta's outer section perpendicular to ``heading``: radius (mm) and centre (RAS) of the largest
        circle inscribed in tissue denser than the wall threshold within half a radius of ``point``.

        The radius is 0 when the circle's neighbourhood holds no enhanced blood (soft tissue, not the aorta).
        """
        pixel = self.pixel
        values, section_labels, inside, u, v, n = self.section(point, heading, radius + 15.0)
        others = (section_labels > 0) & (section_labels != AORTA)
        tissue = ndimage.binary_fill_holes((values > wall_threshold_hu) & ~others & inside)
        depth = ndimage.distance_transform_edt(tissue) * pixel
        yy, xx = np.indices(depth.shape)
        near = np.hypot(yy - n, xx - n) * pixel <= 0.5 * radius + pixel
        candidate = np.where(near, depth, 0.0)
        best = np.unravel_index(np.argmax(candidate), candidate.shape)
        centre_ras = point + (best[0] - n) * pixel * u + (best[1] - n) * pixel * v
        found = float(candidate[best])
        if _enhanced_fraction(values, best, found, pixel, lumen_threshold_hu) < min_enhanced:
            found = 0.0
        return found, centre_ras


def _enhanced_fraction(values: np.ndarray, centre, radius_mm: float, pixel_mm, lumen_threshold_hu: float) -> float:
    """Fraction of a disc (in a section) brighter than the lumen threshold: the inscribed circle widened to
    1.5 × its radius + 3 mm.

    Every aortic section carries some contrast-enhanced blood, even a dissected one (the true lumen) or a
    layered one (the dependent contrast); a circle fitted in unenhanced soft tissue carries none. In a
    dissection with a thrombosed false lumen the inscribed circle sits in the false lumen and the enhanced
    true lumen runs beside it, hence the wider disc.
    """
    pixel = np.broadcast_to(np.asarray(pixel_mm, dtype=float), (2,))
    yy, xx = np.indices(values.shape)
    circle = np.hypot((yy - centre[0]) * pixel[0], (xx - centre[1]) * pixel[1]) <= 1.5 * radius_mm + 3.0
    return float((values[circle] > lumen_threshold_hu).mean()) if circle.any() else 0.0



def _typical_radius(radii: list[float], radius: float) -> float:
    """The radius a new section is judged against: the median of the last ten once five are known."""
    return float(np.median(radii[-10:])) if len(radii) >= 5 else radius


def _implausible(found: float, typical: float, min_radius_mm: float) -> bool:
    """Too small (lumen lost, a flap, calcium, noise) or too large (merged with a neighbour) for this aorta."""
    return found < max(min_radius_mm, 0.55 * typical) or found > 1.5 * typical


def _stop_reason(found: float, typical: float) -> str:
    return "merged with another structure" if found > 1.5 * typical else "lumen lost"

def _start(labels: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Aortic annulus centre, a point on the ascending aorta 30–45 mm above it, and the direction there."""
    aorta = labels == AORTA
    if aorta.sum() < 50:
        return None
    lv = labels == LV
    near_lv = aorta & ndimage.binary_dilation(lv, iterations=2)
    points = grid.kji_to_ras(np.argwhere(aorta))
    if near_lv.any():
        annulus = grid.kji_to_ras(np.argwhere(near_lv)).mean(axis=0)
    else:
        annulus = points[np.argmin(points[:, 2])]
    distance = np.linalg.norm(points - annulus, axis=1)
    segment = points[(distance > 30.0) & (distance < 45.0)]
    if len(segment) < 20:
        return None
    centre = segment.mean(axis=0)
    proximal = points[(distance > 10.0) & (distance < 25.0)]
    # Along the vessel: from the centre of its proximal part to the centre of the part further up (a shell's
    # own principal axis would lie across a wide aorta).
    base = proximal.mean(axis=0) if len(proximal) >= 20 else annulus
    direction = (centre - base) / max(np.linalg.norm(centre - base), 1e-6)
    return annulus, centre, direction


def _core_path(
    labels: np.ndarray, smooth: np.ndarray, grid: Grid, lumen_threshold_hu: float, annulus: np.ndarray,
    core_radius_mm: float = 5.0,
) -> np.ndarray | None:
    """Centred path (RAS) through the enhanced aortic lumen wider than ``core_radius_mm``, from the root to
    the far end of the enhanced aorta (through the arch when it is enhanced). Branches are too thin to be in
    the core, other structures are excluded, so the path cannot turn into them."""
    from skimage.graph import MCP_Geometric

    spacing = grid.spacing_kji
    aorta = labels == AORTA
    others = (labels > 0) & ~aorta
    bright = (smooth > lumen_threshold_hu) & ~ndimage.binary_dilation(others)
    depth = ndimage.distance_transform_edt(bright, sampling=spacing)
    core = depth >= core_radius_mm
    components, count = ndimage.label(core, structure=np.ones((3, 3, 3)))
    seeds = np.unique(components[core & aorta])
    seeds = seeds[seeds > 0]
    if seeds.size == 0:
        return None
    core = np.isin(components, seeds)
    index = np.argwhere(core)
    ras = grid.kji_to_ras(index)
    root = tuple(index[np.argmin(np.linalg.norm(ras - annulus, axis=1))])
    geodesic = MCP_Geometric(np.where(core, 1.0, np.inf), sampling=tuple(spacing))
    lengths, _ = geodesic.find_costs([root])
    far = tuple(np.unravel_index(np.argmax(np.where(np.isfinite(lengths), lengths, -1.0)), lengths.shape))
    centred = MCP_Geometric(np.where(core, 1.0 / (depth + 0.5) ** 2, np.inf), sampling=tuple(spacing))
    centred.find_costs([root], [far])
    path = np.array(centred.traceback(far), dtype=float)
    if len(path) < 5:
        return None
    return grid.kji_to_ras(path)


def trace_aorta(
    labels: np.ndarray,
    image: np.ndarray,
    grid: Grid,
    wall_threshold_hu: float,
    lumen_threshold_hu: float,
    step_mm: float = 2.0,
    min_radius_mm: float = 5.0,
    max_length_mm: float = 350.0,
    max_misses: int = 4,
    min_enhanced: float = 0.01,
) -> AortaTrace | None:
    """The aorta from the valve outwards: along its enhanced lumen first, then followed section by section.

    Along the enhanced part the path is known; each perpendicular section gives the outer radius (the largest
    circle inscribed in tissue denser than fat near the path, which takes in a false lumen or thrombus). Beyond
    it (a poorly enhanced descending aorta) the aorta is followed section by section.
    """
    start = _start(labels, grid)
    if start is None:
        return None
    annulus, centre, direction = start
    pixel = max(float(grid.spacing_kji.min()), 0.75)
    smooth = ndimage.gaussian_filter(image.astype(np.float32), np.maximum(0.7 / grid.spacing_kji, 0.4))
    sampler = _Sampler(smooth, labels, grid, pixel)

    def circle(point: np.ndarray, heading: np.ndarray, radius: float) -> tuple[float, np.ndarray]:
        return sampler.inscribed_circle(point, heading, radius, wall_threshold_hu, lumen_threshold_hu, min_enhanced)

    def follow(point: np.ndarray, heading: np.ndarray, radius: float):
        """Section by section along ``heading``, which turns with the last centimetre of the centerline."""
        points, radii, reason = [], [], "length limit"
        history = [point]
        length = 0.0
        misses = 0  # consecutive sections without a convincing circle (a flap, calcium, noise): bridged
        while length < max_length_mm:
            if sampler.distance_to_edge(point) < 0.5 * radius:
                reason = "field of view"
                break
            found, centre_ras = circle(point, heading, radius)
            typical = _typical_radius(radii, radius)
            if _implausible(found, typical, min_radius_mm):
                misses += 1
                if misses > max_misses:
                    reason = _stop_reason(found, typical)
                    break
                point = point + step_mm * heading  # bridge: keep going straight
                length += step_mm
                continue
            if misses:  # drop nothing, but restart the direction estimate after a bridged gap
                history = history[-1:]
            misses = 0
            new_radius = min(found, 1.25 * radius)
            points.append(centre_ras)
            radii.append(new_radius)
            history.append(centre_ras)
            back = history[max(0, len(history) - 6)]
            if np.linalg.norm(centre_ras - back) > 1e-6:
                heading = 0.5 * heading + 0.5 * (centre_ras - back) / np.linalg.norm(centre_ras - back)
                heading /= np.linalg.norm(heading)
            radius = 0.7 * radius + 0.3 * new_radius
            point = centre_ras + step_mm * heading
            length += step_mm
            if len(points) > 20 and np.linalg.norm(centre_ras - points[0]) < 10.0:
                reason = "closed loop"
                break
        return points, radii, reason

    def follow_slices(point: np.ndarray, radius: float, axis_k: np.ndarray):
        """Axial slices downwards from ``point``: the inscribed circle near the previous centre in each."""
        spacing = grid.spacing_kji
        step = -1 if axis_k[2] > 0 else 1
        kji = grid.ras_to_kji(point)[0]
        k = int(round(kji[0])) + step
        centre = kji[1:].copy()
        yy, xx = np.indices(labels.shape[1:])
        found_points, found_radii, misses, reason = [], [], 0, "field of view"
        while 0 <= k < labels.shape[0]:
            others = (labels[k] > 0) & (labels[k] != AORTA)
            tissue = ndimage.binary_fill_holes((smooth[k] > wall_threshold_hu) & ~others)
            depth = ndimage.distance_transform_edt(tissue, sampling=spacing[1:])
            offset = np.hypot((yy - centre[0]) * spacing[1], (xx - centre[1]) * spacing[2])
            candidate = np.where(offset <= 0.5 * radius + spacing[1], depth, 0.0)
            best = np.unravel_index(np.argmax(candidate), candidate.shape)
            found = float(candidate[best])
            if _enhanced_fraction(smooth[k], best, found, spacing[1:], lumen_threshold_hu) < min_enhanced:
                found = 0.0
            typical = _typical_radius(found_radii, radius)
            if _implausible(found, typical, min_radius_mm):
                misses += 1
                if misses > max_misses:
                    reason = _stop_reason(found, typical)
                    break
            else:
                misses = 0
                centre = np.array(best, dtype=float)
                found_points.append(grid.kji_to_ras([k, centre[0], centre[1]])[0])
                found_radii.append(min(found, 1.25 * radius))
                radius = 0.7 * radius + 0.3 * found_radii[-1]
            k += step
        return found_points, found_radii, reason

    core = _core_path(labels, smooth, grid, lumen_threshold_hu, annulus)
    points: list[np.ndarray] = []
    radii: list[float] = []
    reason = "no enhanced aortic lumen"
    if core is not None:
        (core,) = resample_polyline(core, step_mm)
        core = smooth_polyline(core, 4.0, step_mm)
        tangents = np.gradient(core, axis=0)
        tangents /= np.maximum(np.linalg.norm(tangents, axis=1, keepdims=True), 1e-9)
        lumen = ndimage.distance_transform_edt(smooth > lumen_threshold_hu, sampling=grid.spacing_kji)
        lumen_r = ndimage.map_coordinates(lumen, grid.ras_to_kji(core).T, order=1, mode="nearest")
        for point, tangent, r in zip(core, tangents, lumen_r):
            found, centre_ras = circle(point, tangent, max(float(r), min_radius_mm))
            if found >= max(min_radius_mm, 0.8 * r):
                points.append(centre_ras)
                radii.append(min(found, 2.0 * max(float(r), min_radius_mm)))
        if len(points) >= 5:
            tail = np.array(points[-6:])
            heading = tail[-1] - tail[0]
            heading /= max(np.linalg.norm(heading), 1e-9)
            radius = float(np.median(radii[-5:]))
            axis_k = grid.ijk_to_ras[:3, 2] / np.linalg.norm(grid.ijk_to_ras[:3, 2])
            descending = heading[2] < -0.7 and abs(axis_k[2]) > 0.9
            if descending:  # the descending aorta runs along the body axis: follow it slice by slice
                more, more_r, reason = follow_slices(points[-1], radius, axis_k)
            else:
                more, more_r, reason = follow(points[-1] + step_mm * heading, heading, radius)
            points += more
            radii += more_r
    if reason == "merged with another structure":
        points, radii = points[: -(max_misses + 2)], radii[: -(max_misses + 2)]
    if len(points) < 5:
        return None
    points_array = np.array(points)
    radii_array = ndimage.median_filter(np.array(radii), 5, mode="nearest")
    # A section that locked onto a neighbour (oesophagus, vein) leaves a jump: points far from the running
    # median of their neighbours are dropped.
    median = ndimage.median_filter(points_array, size=(9, 1), mode="nearest")
    keep = np.linalg.norm(points_array - median, axis=1) <= 0.4 * radii_array + 1.0
    points_array, radii_array = points_array[keep], radii_array[keep]
    if len(points_array) < 5:
        return None
    points_array = smooth_polyline(points_array, 3.0, step_mm)
    return AortaTrace(points_array, radii_array, reason)


def tube_distance(trace: AortaTrace, grid: Grid, margin_mm: float) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
    """Within the trace's box (+ ``margin_mm``): each voxel's distance (mm) to the centerline and the traced
    radius there. The centerline is sampled every 0.5 mm and one distance transform does the rest."""
    points, radii = resample_polyline(trace.points, 0.5, trace.radii)
    kji = grid.ras_to_kji(points)
    pad = np.ceil((radii.max() + margin_mm) / grid.spacing_kji).astype(int)
    low = np.maximum(np.floor(kji.min(axis=0)).astype(int) - pad, 0)
    high = np.minimum(np.ceil(kji.max(axis=0)).astype(int) + pad + 1, grid.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    marks = np.zeros(tuple(high - low), bool)
    radius_map = np.zeros(tuple(high - low), np.float32)
    index = np.clip(np.round(kji).astype(int) - low, 0, high - low - 1)
    marks[tuple(index.T)] = True
    radius_map[tuple(index.T)] = radii
    distance, nearest = ndimage.distance_transform_edt(~marks, sampling=grid.spacing_kji, return_indices=True)
    return box, distance, radius_map[tuple(nearest)]


def render_aorta(
    labels: np.ndarray,
    image: np.ndarray,
    grid: Grid,
    trace: AortaTrace,
    wall_threshold_hu: float,
    rim_mm: float = 0.0,
    prune: bool = True,
) -> np.ndarray:
    """Label as aorta the tissue (denser than the threshold, not another structure) within the traced radius
    (+ ``rim_mm``); with ``prune``, aorta voxels farther than 5 mm outside the traced tube are removed."""
    margin = max(rim_mm, 5.0) + 1.0
    box, distance, radius = tube_distance(trace, grid, margin)
    smooth = ndimage.gaussian_filter(image[box].astype(np.float32), np.maximum(0.8 / grid.spacing_kji, 0.4))
    result = labels.copy()
    sub = result[box]
    take = (distance <= radius + rim_mm) & (sub == 0) & (smooth > wall_threshold_hu)
    sub[take] = AORTA
    if prune and trace.length_mm >= 60.0:
        # Aorta that the atlas prior gave to a neighbouring vessel lies outside the traced tube: it goes.
        sub[(sub == AORTA) & (distance > radius + 5.0)] = 0
        outside = np.ones(result.shape, bool)
        outside[box] = False
        result[outside & (result == AORTA)] = 0
    # Noise leaves pinholes in a poorly enhanced lumen: the aorta's enclosed holes are aorta.
    aorta = sub == AORTA
    sub[ndimage.binary_fill_holes(aorta) & (sub == 0)] = AORTA
    return result
