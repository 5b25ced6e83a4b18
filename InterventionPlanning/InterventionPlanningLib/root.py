"""Where the aortic root is, before its landmarks are found: a first centre and axis of the root.

In order of preference: the nadirs the user gave; a segmentation with the aorta (and the left ventricle: the
plane of their contact); and, with the CT alone, the lumen itself. The last works on any field of view that
holds the LV outflow and the ascending aorta: on a 1.5 mm copy, contrast lumen (closed leaflets included, at
a low threshold), its two farthest wide ends (the LV cavity and the aorta leaving the field of view), a path
through the middle of the lumen between them, and the first waist along it with the LV wider before and the
sinuses wider after (the outflow and annulus), in both directions along the path when both have one (the
caller keeps the one with sinuses beyond it). Everything after this only needs the guess to be within ~8 mm
and ~20°.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from CardiacSuiteLib.geometry import Grid, downsample_blocks, resample_polyline

from .model import PlanInputs

#: Working spacing of the lumen search, mm.
SEARCH_SPACING_MM = 1.5


@dataclass
class RootGuess:
    centre: np.ndarray  # RAS mm, near the annulus
    direction: np.ndarray  # unit, towards the ascending aorta
    source: str
    path: np.ndarray | None = None  # RAS path through the lumen, LV to aorta, when found from the lumen


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, float) / np.linalg.norm(v)


def from_nadirs(nadirs: np.ndarray, towards: np.ndarray | None = None) -> RootGuess:
    centre = nadirs.mean(axis=0)
    normal = _unit(np.cross(nadirs[1] - nadirs[0], nadirs[2] - nadirs[0]))
    if towards is not None and normal @ (towards - centre) < 0:
        normal = -normal
    elif towards is None and normal[2] < 0:
        normal = -normal
    return RootGuess(centre, normal, "the given nadirs")


def _centred_path(mask: np.ndarray, grid: Grid, start: tuple, end: tuple) -> np.ndarray:
    """RAS points of the path from ``start`` to ``end`` (k, j, i) that keeps to the middle of ``mask``."""
    from skimage.graph import route_through_array

    depth = ndimage.distance_transform_edt(mask, sampling=grid.spacing_kji)
    cost = np.where(mask, 1.0 / (depth + 0.5) ** 2, 1e6)
    index, _ = route_through_array(cost, start, end, fully_connected=True, geometric=True)
    return grid.kji_to_ras(np.asarray(index))


def from_aorta_mask(aorta: np.ndarray, grid: Grid, lv: np.ndarray | None = None) -> RootGuess:
    """The root end of an aorta segmentation and the direction of the vessel there."""
    if lv is not None and lv.any():
        touching = aorta & ndimage.binary_dilation(lv, iterations=2)
        if touching.sum() >= 10:
            points = grid.kji_to_ras(np.argwhere(touching))
            centre = points.mean(axis=0)
            normal = np.linalg.svd(points - centre, full_matrices=False)[2][-1]
            inside = grid.kji_to_ras(np.argwhere(aorta)).mean(axis=0)
            if normal @ (inside - centre) < 0:
                normal = -normal
            return RootGuess(centre, _unit(normal), "the contact of the left ventricle and aorta segments")
    labelled, count = ndimage.label(aorta)
    if count == 0:
        raise ValueError("the aorta segment is empty")
    sizes = ndimage.sum(aorta, labelled, range(1, count + 1))
    aorta = labelled == 1 + int(np.argmax(sizes))
    # the two ends of the vessel: the voxel geodesically farthest from any voxel, then the one farthest from it
    from skimage.graph import MCP_Geometric

    walk = MCP_Geometric(np.where(aorta, 1.0, np.inf))

    def farthest(start) -> tuple:
        distance, _ = walk.find_costs([tuple(int(v) for v in start)])
        distance = np.where(np.isfinite(distance), distance, -1.0)
        return np.unravel_index(int(np.argmax(distance)), distance.shape)

    first = farthest(np.argwhere(aorta)[0])
    second = farthest(first)
    path = _centred_path(aorta, grid, first, second)
    # the root end: the one away from the image border (the other is cut by the field of view), else the
    # anterior one (a supine CT)
    shape = np.array(aorta.shape) - 1
    margin = [float(np.min(np.minimum(np.asarray(end), shape - np.asarray(end)) * grid.spacing_kji))
              for end in (first, second)]
    if min(margin) < 5.0 <= max(margin):
        if margin[0] < margin[1]:
            path = path[::-1]
    elif path[0][1] < path[-1][1]:
        path = path[::-1]
    path = resample_polyline(path, 1.0)[0]
    if len(path) < 40:
        raise ValueError("the aorta segment is shorter than 40 mm: not enough of the root to find it")
    # centre and direction from the vessel itself, not from its end voxel (on the wall of a sinus): the
    # centroids of the segment within 15 mm of the root end and 25-40 mm from it, along the vessel
    root_end = grid.ras_to_kji(path[:1])[0]
    distance, _ = walk.find_costs([tuple(int(round(v)) for v in root_end)])
    distance = distance * float(np.mean(grid.spacing_kji))
    near = np.argwhere(aorta & (distance <= 15.0))
    far = np.argwhere(aorta & (distance >= 25.0) & (distance <= 40.0))
    if len(near) < 10 or len(far) < 10:
        return RootGuess(path[3], _unit(path[30] - path[3]), "the root end of the aorta segment", path)
    centre, ahead = grid.kji_to_ras(near).mean(axis=0), grid.kji_to_ras(far).mean(axis=0)
    return RootGuess(centre, _unit(ahead - centre), "the root end of the aorta segment", path)


def from_lumen(image: np.ndarray, ijk_to_ras: np.ndarray) -> list[RootGuess]:
    """The root from the contrast lumen alone (module docstring): one guess per direction along the path that
    has an outflow waist, the usual one (aorta above the LV) first; the caller keeps the one with sinuses
    beyond its waist."""
    from skimage.graph import MCP_Geometric

    source = Grid(tuple(image.shape), np.asarray(ijk_to_ras, float))
    small, grid = downsample_blocks(np.asarray(image, np.float32), source, SEARCH_SPACING_MM)
    bright = small[small > 150.0]
    if bright.size < 1000:
        raise ValueError("no contrast-filled lumen in the image (less than a few ml above 150 HU): a contrast CT "
                         "of the aortic root is needed")
    blood = float(np.median(bright))
    lumen = ndimage.binary_opening(small > 0.5 * (blood + 100.0), iterations=1)
    labelled, count = ndimage.label(lumen)
    sizes = ndimage.sum(lumen, labelled, range(1, count + 1))
    lumen = labelled == 1 + int(np.argmax(sizes))
    depth = ndimage.distance_transform_edt(lumen, sampling=np.full(3, SEARCH_SPACING_MM))
    wide = depth >= WIDE_MM
    walk = MCP_Geometric(np.where(lumen, 1.0, np.inf))

    def farthest_wide(start: tuple) -> tuple[tuple, float]:
        distance, _ = walk.find_costs([start])
        distance = np.where(wide & np.isfinite(distance), distance, -1.0)
        far = np.unravel_index(int(np.argmax(distance)), distance.shape)
        return tuple(int(v) for v in far), float(distance[far]) * SEARCH_SPACING_MM

    # the two ends of the wide lumen (its longest geodesic): the LV cavity and the aorta
    first, _ = farthest_wide(np.unravel_index(int(np.argmax(depth)), depth.shape))
    second, length = farthest_wide(first)
    if length < 40.0:
        raise ValueError("could not follow the lumen from the left ventricle into the aorta: give --segmentation "
                         "(an aorta segment) or the three nadirs in --landmarks")
    path = resample_polyline(_centred_path(lumen, grid, first, second), 1.0)[0]
    if path[0][2] > path[-1][2]:  # the aortic root usually lies above the LV cavity: try that way first
        path = path[::-1]
    radius = ndimage.gaussian_filter1d(ndimage.map_coordinates(depth, grid.ras_to_kji(path).T, order=1), 2.0)
    guesses = []
    for way, (points, radii) in enumerate(((path, radius), (path[::-1], radius[::-1]))):
        waist = _outflow_waist(radii)
        if waist is not None:
            ahead = min(waist + 25, len(points) - 1)
            guesses.append(RootGuess(points[waist], _unit(points[ahead] - points[waist]),
                                     "the contrast lumen (LV to aorta path)" if way == 0 else
                                     "the contrast lumen (LV to aorta path, the aorta running below the LV)", points))
    if not guesses:
        raise ValueError("no LV outflow waist along the lumen path: give --segmentation or the nadirs")
    return guesses


#: Lumen deeper than this (mm from the wall) is a chamber or a great vessel, not a branch.
WIDE_MM = 6.0


def _outflow_waist(radius: np.ndarray) -> int | None:
    """The local minimum of the lumen radius nearest the LV end with the LV cavity wider before it (2 mm within
    40 mm) and the sinuses wider after it (1.5 mm within 25 mm)."""
    for k in range(2, len(radius) - 2):
        if not (radius[k] <= radius[k - 1] and radius[k] <= radius[k + 1]):
            continue
        before = radius[max(0, k - 40):k].max(initial=0.0)
        after = radius[k + 1:k + 26].max(initial=0.0)
        if before >= radius[k] + 2.0 and after >= radius[k] + 1.5:
            return k
    return None


def locate(inputs: PlanInputs) -> list[RootGuess]:
    """Candidate roots, the likeliest first (one, except from the lumen alone, where both directions along the
    LV–aorta path can have a waist)."""
    nadir_names = ("nadir_right", "nadir_left", "nadir_non_coronary")
    if all(name in inputs.landmarks for name in nadir_names):
        return [from_nadirs(np.array([inputs.landmarks[n] for n in nadir_names]))]
    aorta = inputs.mask("aorta")
    if aorta is not None and aorta.any():
        grid = Grid(tuple(inputs.image.shape), np.asarray(inputs.ijk_to_ras, float))
        return [from_aorta_mask(aorta, grid, inputs.mask("left ventricle", "lv"))]
    return from_lumen(inputs.image, inputs.ijk_to_ras)
