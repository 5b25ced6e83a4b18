"""Coronary arteries from user-marked ostia: centerlines with radius, lumen, named branches, measurements.

Pipeline (weight-free, CPU):

1. *Lumen reference*: the aortic-root blood HU next to each ostium and the epicardial fat HU, so that every
   threshold adapts to this scan's contrast. An ostium that is not on enhanced blood is refused.
2. *Exclusion*: chambers and aorta are the enhanced regions too thick to be a coronary artery (an opening
   with a 3.5 mm ball), grown by 1 mm; a 5 mm ball around each ostium stays open. This stops leaks into the
   blood pools, the usual failure of threshold growing.
3. *Vessel likelihood*: lumen intensity (normalised between fat and the aortic blood) combined with a
   multi-scale Hessian tubularity (σ 0.5–1.6 mm); neither alone is used, because tubularity vanishes where
   an artery touches a bright chamber and at bifurcations.
4. *Minimal paths*: cost 1/(ε + (0.6·lumen + 0.4·tubularity)^4). With path points, the vessel is the chain of
   minimal paths ostium → point → point; without, the tree is grown from the ostium by repeatedly joining the
   farthest reachable vessel voxel to the tree (centred paths, TEASAR-like), keeping branches of at least
   ``min_branch_mm`` length.
5. *Re-centring* at full resolution: each centerline point moves to the centroid of the lumen in its
   cross-section (half-maximum contour), which also gives its radius; then smoothing.
6. *Tree*: branches of diameter ≥ 1.5 mm are kept as proposals the user accepts or rejects; main branches are
   named LM, LAD, LCx (left) and RCA (right) where the geometry allows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from CardiacSuiteLib.errors import InputError

from CardiacSuiteLib.geometry import Grid, arc_length, downsample_blocks, points_to_polyline_distance, resample_polyline, smooth_polyline

MIN_DIAMETER_MM = 1.5


@dataclass
class Branch:
    """One vessel segment of a tree: from where it leaves its parent (or the ostium) to its distal end."""

    name: str
    points: np.ndarray  # (N, 3) RAS mm
    radii: np.ndarray  # (N,) mm
    parent: int | None = None  # index of the parent branch in the tree
    side: str = "left"
    accepted: bool = True
    user_defined: bool = False  # traced through the user's path points

    @property
    def length_mm(self) -> float:
        return float(arc_length(self.points)[-1]) if len(self.points) > 1 else 0.0

    def measurements(self) -> dict:
        diameters = 2.0 * self.radii
        return {
            "length_mm": round(self.length_mm, 1),
            "min_lumen_diameter_mm": round(float(diameters.min()), 2),
            "mean_lumen_diameter_mm": round(float(diameters.mean()), 2),
            "max_lumen_diameter_mm": round(float(diameters.max()), 2),
        }


@dataclass
class CoronaryTree:
    side: str
    ostium: np.ndarray
    branches: list[Branch] = field(default_factory=list)

    def branch(self, name: str) -> Branch:
        for branch in self.branches:
            if branch.name == name:
                return branch
        raise KeyError(name)

    def path_to(self, index: int) -> np.ndarray:
        """Centerline from the ostium to the end of branch ``index`` (parents first)."""
        chain = []
        while index is not None:
            chain.append(self.branches[index].points)
            index = self.branches[index].parent
        return np.vstack(chain[::-1])


@dataclass
class CoronaryResult:
    trees: dict[str, CoronaryTree]
    labels: np.ndarray  # [K, J, I] uint8 on the image grid: 1 left tree, 2 right tree
    grid: Grid
    levels: dict[str, float]
    timings_s: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------- filters


def tubularity(image: np.ndarray, spacing: np.ndarray, sigmas_mm, mask: np.ndarray | None = None) -> np.ndarray:
    """Multi-scale bright-tube measure, σ²-normalised, in HU: σ²·|λ2|·(1 − |λ1|/|λ2|) where the two larger
    Hessian eigenvalues are negative (|λ1| ≤ |λ2| ≤ |λ3|). Sheets (chamber walls) and blobs score ~0.

    Evaluated only where ``mask`` is true (the rest is 0) to keep it fast on large images.
    """
    image = image.astype(np.float32)
    result = np.zeros(image.shape, np.float32)
    where = np.ones(image.shape, bool) if mask is None else mask
    if not where.any():
        return result
    for sigma_mm in sigmas_mm:
        sigma = sigma_mm / spacing
        components = {}
        for a in range(3):
            for b in range(a, 3):
                order = [0, 0, 0]
                order[a] += 1
                order[b] += 1
                components[(a, b)] = ndimage.gaussian_filter(image, sigma, order=order)[where] / (
                    spacing[a] * spacing[b]
                )
        hessian = np.empty((components[(0, 0)].size, 3, 3), np.float32)
        for (a, b), values in components.items():
            hessian[:, a, b] = values
            hessian[:, b, a] = values
        eigen = np.linalg.eigvalsh(hessian)
        order = np.argsort(np.abs(eigen), axis=1)
        eigen = np.take_along_axis(eigen, order, axis=1)
        l1, l2, l3 = eigen[:, 0], eigen[:, 1], eigen[:, 2]
        tube = (l2 < 0) & (l3 < 0)
        value = np.where(tube, sigma_mm**2 * np.abs(l2) * (1.0 - np.abs(l1) / np.maximum(np.abs(l2), 1e-6)), 0.0)
        current = result[where]
        result[where] = np.maximum(current, value.astype(np.float32))
    return result


def thick_bright_regions(bright: np.ndarray, spacing: np.ndarray, radius_mm: float = 3.5) -> np.ndarray:
    """Enhanced regions that contain a ball of ``radius_mm`` (chambers, aorta): the opening of ``bright``.

    The ball centres (the core) are found on a grid twice as coarse, which is ample for a 3.5 mm ball.
    """
    coarse = bright[::2, ::2, ::2]
    depth = ndimage.distance_transform_edt(coarse, sampling=2 * spacing)
    core = np.zeros_like(bright)
    core[::2, ::2, ::2] = depth >= radius_mm
    return ndimage.distance_transform_edt(~core, sampling=spacing) <= radius_mm + float(spacing.max())


# ------------------------------------------------------------------------------------------------- tree


def _mcp(cost: np.ndarray, spacing: np.ndarray):
    from skimage.graph import MCP_Geometric

    return MCP_Geometric(cost, sampling=tuple(float(s) for s in spacing))


def minimal_path(cost: np.ndarray, spacing: np.ndarray, start, end, margin_mm: float = 20.0) -> np.ndarray:
    """Minimal-cost path (voxel indices) from ``start`` to ``end``, searched in their box plus ``margin_mm``.

    Keeping the front inside the box makes one vessel segment a matter of a second or less; a vessel that
    would need a wider detour is forced through an intermediate path point by the user anyway.
    """
    start, end = np.asarray(start), np.asarray(end)
    margin = np.ceil(margin_mm / np.asarray(spacing)).astype(int)
    low = np.maximum(np.minimum(start, end) - margin, 0)
    high = np.minimum(np.maximum(start, end) + margin + 1, cost.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    mcp = _mcp(cost[box], spacing)
    mcp.find_costs([tuple(start - low)], [tuple(end - low)])
    return np.array(mcp.traceback(tuple(end - low))) + low


def extract_tree(
    seed: tuple[int, int, int],
    candidate: np.ndarray,
    cost: np.ndarray,
    spacing: np.ndarray,
    min_branch_mm: float = 10.0,
    max_branches: int = 30,
    forced_paths: list[np.ndarray] | None = None,
) -> list[tuple[np.ndarray, int | None]]:
    """Grow a tree of centred paths in ``candidate`` from ``seed``; returns [(kji path, parent index)].

    Forced paths (through user path points) come first. Then, repeatedly, the candidate voxel farthest (in
    path length through the candidate region) from the current tree is joined to it by a minimal path; voxels
    near the tree are covered and no longer count. Stops when the farthest voxel is less than
    ``min_branch_mm`` from the tree.
    """
    paths: list[tuple[np.ndarray, int | None]] = []
    tree = np.zeros(candidate.shape, bool)
    owner = np.full(candidate.shape, -1, np.int32)
    tree[seed] = True
    owner[seed] = -2  # the ostium
    covered = np.zeros(candidate.shape, bool)
    depth = ndimage.distance_transform_edt(candidate, sampling=spacing)

    def add(path: np.ndarray) -> None:
        start = tuple(path[0])
        parent = int(owner[start]) if owner[start] >= 0 else None
        index = len(paths)
        paths.append((path, parent))
        cells = tuple(path.T)
        tree[cells] = True
        owner[cells] = np.where(owner[cells] == -1, index, owner[cells])
        # Cover the lumen around the new path: a rolling ball of 1.5× the local lumen radius + 1 mm.
        low = np.maximum(path.min(axis=0) - 12, 0)
        high = np.minimum(path.max(axis=0) + 13, candidate.shape)
        box = tuple(slice(a, b) for a, b in zip(low, high))
        marks = np.zeros(tuple(high - low), bool)
        marks[tuple((path - low).T)] = True
        distance, nearest = ndimage.distance_transform_edt(~marks, sampling=spacing, return_indices=True)
        reach = 1.5 * depth[box][tuple(nearest)] + 1.0
        covered[box] |= (distance <= reach) & candidate[box]

    for forced in forced_paths or []:
        if len(forced) > 1:
            add(forced)

    walk = np.where(candidate, 1.0, np.inf)
    for _ in range(max_branches):
        lengths, _ = _mcp(walk, spacing).find_costs(list(zip(*np.nonzero(tree))))
        free = candidate & ~covered & np.isfinite(lengths)
        if not free.any():
            break
        target = np.unravel_index(np.argmax(np.where(free, lengths, -1.0)), lengths.shape)
        if lengths[target] < min_branch_mm:
            break
        mcp = _mcp(cost, spacing)
        mcp.find_costs(list(zip(*np.nonzero(tree))), [target])
        path = np.array(mcp.traceback(target))
        add(path)
    return paths


# ------------------------------------------------------------------------------------------------- re-centring


def _cross_section(image: np.ndarray, grid: Grid, centre: np.ndarray, tangent: np.ndarray, half_mm: float, pixel_mm: float):
    helper = np.array([1.0, 0.0, 0.0]) if abs(tangent[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(tangent, helper)
    u /= np.linalg.norm(u)
    v = np.cross(tangent, u)
    n = int(np.ceil(half_mm / pixel_mm))
    offsets = np.arange(-n, n + 1) * pixel_mm
    a, b = np.meshgrid(offsets, offsets, indexing="ij")
    ras = centre + a[..., None] * u + b[..., None] * v
    kji = grid.ras_to_kji(ras.reshape(-1, 3)).T
    values = ndimage.map_coordinates(image, kji, order=1, mode="nearest").reshape(a.shape)
    return values, u, v, n


def recentre(
    points: np.ndarray,
    image: np.ndarray,
    grid: Grid,
    fat_hu: float,
    lumen_hu: float,
    step_mm: float = 0.5,
    iterations: int = 2,
    fixed_start: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Move each point to the lumen centroid of its cross-section (half-maximum region); radius from its area.

    Where the lumen merges with a larger bright region (a chamber, the aorta) the largest circle inscribed
    near the centre gives the centre and radius instead.
    """
    (points,) = resample_polyline(points, step_mm)
    pixel = min(0.25, float(grid.spacing_kji.min()) / 2.0)
    radii = np.full(len(points), 1.0)
    for _ in range(iterations):
        smoothed = smooth_polyline(points, 1.5, step_mm)
        tangents = np.gradient(smoothed, axis=0)
        tangents /= np.maximum(np.linalg.norm(tangents, axis=1, keepdims=True), 1e-9)
        moved = points.copy()
        for index, (point, tangent) in enumerate(zip(points, tangents)):
            values, u, v, n = _cross_section(image, grid, point, tangent, 4.0, pixel)
            yy, xx = np.indices(values.shape)
            distance = np.hypot(yy - n, xx - n) * pixel
            peak = float(values[distance <= 1.0].max())
            # Background: what surrounds the vessel 2.5–4 mm out (fat, myocardium or both), never below fat.
            background = max(fat_hu, float(np.median(values[(distance >= 2.5) & (distance <= 4.0)])))
            if peak - background < 0.15 * (lumen_hu - fat_hu):
                continue  # no vessel here: keep the point and its radius
            level = 0.5 * (min(peak, lumen_hu) + background)
            region, count = ndimage.label(values >= level)
            label = region[n, n]
            if label == 0:  # the centre fell just outside: take the region closest to it
                index_near = np.argwhere(region > 0)
                if index_near.size == 0:
                    continue
                nearest = index_near[np.argmin(((index_near - n) ** 2).sum(axis=1))]
                if np.hypot(*(nearest - n)) * pixel > 1.5:
                    continue
                label = region[tuple(nearest)]
            lumen = region == label
            radius = float(np.sqrt(lumen.sum() / np.pi)) * pixel
            if radius > 3.0 or lumen[0, :].any() or lumen[-1, :].any() or lumen[:, 0].any() or lumen[:, -1].any():
                # Merged with a chamber or the aorta: the largest inscribed circle near the centre instead.
                depth = ndimage.distance_transform_edt(lumen) * pixel
                near = distance <= 1.5
                best = np.unravel_index(np.argmax(np.where(near, depth, 0.0)), depth.shape)
                radii[index] = float(min(depth[best], 3.0))
                moved[index] = point + (best[0] - n) * pixel * u + (best[1] - n) * pixel * v
                continue
            cy, cx = np.argwhere(lumen).mean(axis=0)
            moved[index] = point + (cy - n) * pixel * u + (cx - n) * pixel * v
            radii[index] = radius
        if fixed_start:
            moved[0] = points[0]
        points = moved
    points = smooth_polyline(points, 1.0, step_mm)
    radii = ndimage.median_filter(radii, 5, mode="nearest")
    return points, radii


# ------------------------------------------------------------------------------------------------- naming


def name_tree(tree: CoronaryTree, apex: np.ndarray | None = None) -> None:
    """Name main branches: LM, LAD, LCx on the left; RCA on the right; side branches after their parent.

    Without chamber labels the LAD is the child of the left main that runs more anteriorly (the anterior
    interventricular groove); with an apex it is the one ending nearer the apex.
    """
    branches = tree.branches
    children: dict[int | None, list[int]] = {}
    for index, branch in enumerate(branches):
        children.setdefault(branch.parent, []).append(index)

    def subtree_length(index: int) -> float:
        return branches[index].length_mm + max((subtree_length(c) for c in children.get(index, [])), default=0.0)

    def main_chain(index: int) -> list[int]:
        chain = [index]
        while children.get(chain[-1]):
            chain.append(max(children[chain[-1]], key=subtree_length))
        return chain

    def end_of(chain: list[int]) -> np.ndarray:
        return branches[chain[-1]].points[-1]

    roots = children.get(None, [])
    if not roots:
        return
    root = max(roots, key=subtree_length)
    named: dict[int, str] = {}
    if tree.side == "right":
        for index in main_chain(root):
            named[index] = "RCA"
    else:
        # The left main ends where the tree first divides into two substantial vessels.
        chain = [root]
        while True:
            kids = [c for c in children.get(chain[-1], []) if subtree_length(c) >= 20.0]
            if len(kids) >= 2 or not children.get(chain[-1]):
                break
            chain.append(max(children[chain[-1]], key=subtree_length))
        for index in chain:
            named[index] = "LM"
        kids = sorted(children.get(chain[-1], []), key=subtree_length, reverse=True)[:2]
        if len(kids) == 2:
            chains = [main_chain(k) for k in kids]
            if apex is not None:
                lad = min(range(2), key=lambda n: float(np.linalg.norm(end_of(chains[n]) - apex)))
            else:
                lad = max(range(2), key=lambda n: float(np.mean(np.vstack([branches[i].points for i in chains[n]])[:, 1])))
            for n, chain_n in enumerate(chains):
                for index in chain_n:
                    named[index] = "LAD" if n == lad else "LCx"
        elif kids:
            for index in main_chain(kids[0]):
                named[index] = "LM"
    counters: dict[str, int] = {}
    for index, branch in enumerate(branches):
        if index in named:
            branch.name = named[index]
            continue
        parent = branch.parent
        while parent is not None and parent not in named:
            parent = branches[parent].parent
        base = named.get(parent, "L" if tree.side == "left" else "R")
        counters[base] = counters.get(base, 0) + 1
        branch.name = f"{base} branch {counters[base]}"
    # Consecutive pieces of one named vessel become one branch.
    merged: list[Branch] = []
    remap: dict[int, int] = {}
    for index, branch in enumerate(branches):
        parent = branch.parent
        if parent is not None and branches[parent].name == branch.name and parent in remap:
            target = merged[remap[parent]]
            target.points = np.vstack([target.points, branch.points[1:]])
            target.radii = np.concatenate([target.radii, branch.radii[1:]])
            remap[index] = remap[parent]
        else:
            remap[index] = len(merged)
            merged.append(branch)
    for branch in merged:
        if branch.parent is not None:
            branch.parent = remap[branch.parent]
    tree.branches = merged


# ------------------------------------------------------------------------------------------------- pipeline


def _lumen_level(image: np.ndarray, grid: Grid, ostium: np.ndarray, radius_mm: float = 8.0) -> float:
    """HU of the enhanced blood around an ostium (aortic root side)."""
    kji = grid.ras_to_kji(ostium)[0]
    r = np.ceil(radius_mm / grid.spacing_kji).astype(int)
    low = np.maximum(np.round(kji).astype(int) - r, 0)
    high = np.minimum(np.round(kji).astype(int) + r + 1, image.shape)
    box = image[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    if box.size == 0:
        return float("nan")
    return float(np.percentile(box, 90))


def check_ostium(image: np.ndarray, grid: Grid, side: str, ostium: np.ndarray, min_contrast_hu: float = 150.0) -> float:
    """The blood HU at an ostium; ``InputError`` when the point is outside the image or not on enhanced blood."""
    text = ", ".join(f"{v:.1f}" for v in ostium)
    if not grid.contains_ras(ostium[None])[0]:
        raise InputError(f"the {side} ostium ({text} RAS mm) lies outside the image")
    kji = np.round(grid.ras_to_kji(ostium)[0]).astype(int)
    r = np.maximum(np.ceil(3.0 / grid.spacing_kji).astype(int), 1)
    low = np.maximum(kji - r, 0)
    high = np.minimum(kji + r + 1, image.shape)
    local = float(image[low[0] : high[0], low[1] : high[1], low[2] : high[2]].max())
    if local < min_contrast_hu:
        raise InputError(
            f"the {side} ostium ({text} RAS mm) is not on an enhanced vessel: the brightest voxel within 3 mm measures"
            f" {local:.0f} HU (contrast-enhanced blood is above {min_contrast_hu:.0f} HU); place it where the"
            " coronary artery leaves the aortic root"
        )
    return _lumen_level(image, grid, ostium)


class CoronaryTracer:
    """What every vessel of one CT shares: the working box, exclusion mask, vessel likelihood and cost.

    Built once per case (seconds); then ``trace_vessel`` follows one vessel through the user's points (well
    under a second of minimal path plus the re-centring) and ``trace_tree`` grows a whole tree from an ostium.
    """

    def __init__(
        self,
        image: np.ndarray,
        ijk_to_ras: np.ndarray,
        ostia: dict[str, np.ndarray],
        heart_labels: np.ndarray | None = None,
        extra_points: list[np.ndarray] | None = None,
        working_spacing_mm: float = 0.6,
        roi_mm: float = 80.0,
        candidate_level: float = 0.32,
    ):
        started = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.image = image
        self.grid = grid = Grid(image.shape, ijk_to_ras)
        self.ostia = {side: np.asarray(point, float) for side, point in ostia.items() if point is not None}
        if not self.ostia:
            raise InputError("give at least one coronary ostium (left or right)")
        self.levels = {side: check_ostium(image, grid, side, point) for side, point in self.ostia.items()}
        extra = [np.asarray(p, float) for p in (extra_points or [])]
        for point in extra:
            if not grid.contains_ras(point[None])[0]:
                raise InputError(f"a path point ({', '.join(f'{v:.1f}' for v in point)} RAS mm) lies outside the image")

        # Working box: around the ostia (and path points), where coronary arteries can run.
        everything = np.vstack([*self.ostia.values(), *extra])
        centre = everything.mean(axis=0)
        kji_box = grid.ras_to_kji(np.vstack([everything - roi_mm, everything + roi_mm, centre - roi_mm, centre + roi_mm]))
        low = np.maximum(np.floor(kji_box.min(axis=0)).astype(int), 0)
        high = np.minimum(np.ceil(kji_box.max(axis=0)).astype(int) + 1, image.shape)
        box = tuple(slice(a, b) for a, b in zip(low, high))
        roi_grid = grid.crop(low, high)
        roi = image[box].astype(np.float32)
        if np.all(roi_grid.spacing_kji >= 0.9 * working_spacing_mm):
            work, work_grid = roi, roi_grid
        else:
            work, work_grid = downsample_blocks(roi, roi_grid, working_spacing_mm)
        self.work_grid = work_grid
        self.shape = work.shape
        self.spacing = spacing = work_grid.spacing_kji
        smooth = ndimage.gaussian_filter(work, np.maximum(0.4 / spacing, 0.3))
        self.lumen_hu = float(np.nanmedian(list(self.levels.values())))
        fat_values = smooth[(smooth > -250.0) & (smooth < 0.0)]
        self.fat_hu = float(np.median(fat_values)) if fat_values.size > 100 else -90.0
        contrast = self.lumen_hu - self.fat_hu
        self.timings["prepare"] = time.perf_counter() - started

        # Exclusion: chambers and aorta (thick enhanced regions, and the chamber labels when given), except near ostia.
        t = time.perf_counter()
        bright = smooth > self.fat_hu + 0.55 * contrast
        excluded = thick_bright_regions(bright, spacing, 3.5)
        if heart_labels is not None:
            from CardiacSuiteLib.geometry import resample

            heart_work = resample(heart_labels[box], roi_grid, work_grid, order=0)
            excluded |= np.isin(heart_work, (2, 3, 4, 5, 6, 7))
        excluded = ndimage.binary_dilation(excluded, iterations=max(1, int(round(1.0 / spacing.min()))))
        self.ostium_index = {}
        for side, point in self.ostia.items():
            self.ostium_index[side] = self._index(point)
            excluded &= ~self._ball(self.ostium_index[side], 5.0)
        self.timings["exclusion"] = time.perf_counter() - t

        # Vessel likelihood and cost.
        t = time.perf_counter()
        lumen = np.clip((smooth - self.fat_hu) / contrast, 0.0, 1.0)
        tube = tubularity(work, spacing, (0.5, 0.8, 1.2, 1.6), mask=(lumen > 0.3) & ~excluded)
        tube_n = np.clip(tube / (0.25 * contrast), 0.0, 1.0)
        self.likelihood = np.where(excluded, 0.0, 0.6 * lumen + 0.4 * tube_n)
        self.cost = 1.0 / (1e-3 + self.likelihood**4)
        self.candidate = (self.likelihood > candidate_level) & ~excluded
        self.apex = _apex(heart_labels, grid) if heart_labels is not None else None
        self.timings["likelihood"] = time.perf_counter() - t

    def _index(self, point: np.ndarray) -> tuple[int, int, int]:
        kji = np.round(self.work_grid.ras_to_kji(np.asarray(point, float))[0]).astype(int)
        return tuple(int(v) for v in np.clip(kji, 0, np.array(self.shape) - 1))

    def _ball(self, centre: tuple[int, int, int], radius_mm: float) -> np.ndarray:
        """A ball of ``radius_mm`` around a voxel, as a full-size mask (computed in its own small box)."""
        ball = np.zeros(self.shape, bool)
        reach = np.ceil(radius_mm / self.spacing).astype(int)
        low = np.maximum(np.array(centre) - reach, 0)
        high = np.minimum(np.array(centre) + reach + 1, self.shape)
        k, j, i = np.ogrid[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
        distance = np.sqrt(
            ((k - centre[0]) * self.spacing[0]) ** 2 + ((j - centre[1]) * self.spacing[1]) ** 2
            + ((i - centre[2]) * self.spacing[2]) ** 2
        )
        ball[low[0] : high[0], low[1] : high[1], low[2] : high[2]] = distance <= radius_mm
        return ball

    def _forced_path(self, side: str, points: list[np.ndarray]) -> np.ndarray:
        chain = [self.ostium_index[side]] + [self._index(p) for p in points]
        path = [np.array([chain[0]])]
        for a, b in zip(chain[:-1], chain[1:]):
            path.append(minimal_path(self.cost, self.spacing, a, b)[1:])
        return np.vstack(path)

    def trace_vessel(self, side: str, points: list[np.ndarray], name: str = "") -> Branch:
        """One vessel from the ``side`` ostium through ``points`` (RAS mm, in order): centerline and radii."""
        ras = self.work_grid.kji_to_ras(self._forced_path(side, points))
        ras[0] = self.ostia[side]
        centerline, radii = recentre(ras, self.image, self.grid, self.fat_hu, self.levels[side])
        return Branch(name or f"{side} vessel", centerline, radii, None, side, user_defined=True)

    def trace_tree(self, side: str, path_points: list[np.ndarray] | None = None, min_branch_mm: float = 10.0) -> CoronaryTree:
        """The tree of ``side`` grown from its ostium (through ``path_points`` first when given), named."""
        t = time.perf_counter()
        seed = self.ostium_index[side]
        likelihood, spacing = self.likelihood, self.spacing
        region = self.candidate.copy()
        region[seed] = True
        # The ostium lies on the aortic wall: open a passage from it into the vessel.
        region |= self._ball(seed, 3.0) & (likelihood > 0.3)
        components, _ = ndimage.label(region, structure=np.ones((3, 3, 3)))
        region = components == components[seed]
        forced = []
        if path_points:
            forced.append(self._forced_path(side, path_points))
            region |= _tube_mask(forced[0], self.shape, spacing, 1.0)
        # Extraction runs in the region's own box (minimal-path fronts never leave the region anyway).
        rlow, rhigh = np.argwhere(region).min(axis=0), np.argwhere(region).max(axis=0) + 1
        rbox = tuple(slice(a, b) for a, b in zip(rlow, rhigh))
        sub_region = region[rbox]
        paths = extract_tree(
            tuple(np.array(seed) - rlow),
            sub_region,
            np.where(sub_region, self.cost[rbox], np.inf),
            spacing,
            min_branch_mm,
            forced_paths=[f - rlow for f in forced],
        )
        tree = CoronaryTree(side, self.ostia[side])
        for n, (path, parent) in enumerate(paths):
            ras = self.work_grid.kji_to_ras(path + rlow)
            if parent is None:
                ras[0] = self.ostia[side]
            tree.branches.append(Branch(f"{side} {n}", ras, np.ones(len(ras)), parent, side, user_defined=n < len(forced)))
        self.timings[f"extract_{side}"] = time.perf_counter() - t

        t = time.perf_counter()
        for branch in tree.branches:
            branch.points, branch.radii = recentre(branch.points, self.image, self.grid, self.fat_hu, self.levels[side])
        for branch in tree.branches:  # a side branch starts on its parent's (re-centred) centerline
            if branch.parent is not None:
                parent = tree.branches[branch.parent].points
                branch.points[0] = parent[np.argmin(np.linalg.norm(parent - branch.points[0], axis=1))]
        # Branches thinner than 1.5 mm (median over their length), shorter than the minimum or wider than the
        # vessel they leave are dropped.
        keep = [
            i for i, b in enumerate(tree.branches)
            if b.user_defined or (
                2.0 * float(np.median(b.radii)) >= MIN_DIAMETER_MM
                and b.length_mm >= min_branch_mm
                and not _wider_than_parent(tree.branches, i)
            )
        ]
        tree.branches = split_at_junctions(_reindex(tree.branches, keep))
        name_tree(tree, self.apex)
        self.timings[f"refine_{side}"] = time.perf_counter() - t
        return tree


def trace_coronaries(
    image: np.ndarray,
    ijk_to_ras: np.ndarray,
    ostia: dict[str, np.ndarray],
    path_points: dict[str, list[np.ndarray]] | None = None,
    heart_labels: np.ndarray | None = None,
    working_spacing_mm: float = 0.6,
    min_branch_mm: float = 10.0,
    roi_mm: float = 80.0,
    candidate_level: float = 0.32,
    progress=None,
) -> CoronaryResult:
    """Trace the left and/or right coronary tree from their ostia (RAS mm) in a contrast CT (HU).

    ``path_points``: per side, points (RAS mm) along one vessel, in order from the ostium, that the traced
    vessel must pass through. ``heart_labels`` (labels 1–7 on the image grid, optional) adds the chamber
    segmentation to the exclusion mask and locates the apex for naming.
    """
    started = time.perf_counter()
    path_points = path_points or {}
    extra = [p for points in path_points.values() for p in points]
    tracer = CoronaryTracer(
        image, ijk_to_ras, ostia, heart_labels, extra, working_spacing_mm, roi_mm, candidate_level
    )
    trees: dict[str, CoronaryTree] = {}
    for side in tracer.ostia:
        trees[side] = tracer.trace_tree(side, path_points.get(side), min_branch_mm)
        if progress is not None:
            count = len(trees[side].branches)
            progress(0.5 + 0.5 * len(trees) / len(tracer.ostia), f"{side} coronary tree traced ({count} branches)")
    t = time.perf_counter()
    labels = render_trees(trees, tracer.grid)
    timings = dict(tracer.timings)
    timings["render"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    levels = {"lumen_hu": tracer.lumen_hu, "fat_hu": tracer.fat_hu, **{f"{s}_ostium_hu": v for s, v in tracer.levels.items()}}
    return CoronaryResult(trees, labels, tracer.grid, levels, timings)


def _wider_than_parent(branches: list[Branch], index: int) -> bool:
    """A side branch is narrower than the vessel it leaves; one that is wider is a leak into something else."""
    branch = branches[index]
    if branch.parent is None:
        return False
    parent = branches[branch.parent]
    j = int(np.argmin(np.linalg.norm(parent.points - branch.points[0], axis=1)))
    local = float(np.median(parent.radii[max(0, j - 10) : j + 11]))
    return float(np.median(branch.radii)) > 1.2 * local


def _apex(labels: np.ndarray, grid: Grid) -> np.ndarray | None:
    myo = labels == 1
    lv_la = (labels == 3) & ndimage.binary_dilation(labels == 2, iterations=2)
    if not myo.any() or not lv_la.any():
        return None
    mitral = grid.kji_to_ras(np.argwhere(lv_la).mean(axis=0))[0]
    points = grid.kji_to_ras(np.argwhere(myo)[::7])
    return points[np.argmax(np.linalg.norm(points - mitral, axis=1))]


def _tube_mask(path: np.ndarray, shape, spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    marks = np.zeros(shape, bool)
    marks[tuple(path.T)] = True
    return ndimage.distance_transform_edt(~marks, sampling=spacing) <= radius_mm


def split_at_junctions(branches: list[Branch]) -> list[Branch]:
    """Cut every branch where children leave it, so that each branch runs junction to junction (or end).

    The extraction produces long paths (ostium to a distal end) with side paths attached somewhere along
    them; naming (the left main ends at the first division) needs the pieces.
    """
    cuts: dict[int, set[int]] = {i: set() for i in range(len(branches))}
    attach: dict[int, int] = {}
    for index, branch in enumerate(branches):
        if branch.parent is not None:
            parent = branches[branch.parent].points
            j = int(np.argmin(np.linalg.norm(parent - branch.points[0], axis=1)))
            j = min(max(j, 1), len(parent) - 1)
            attach[index] = j
            if j < len(parent) - 1:
                cuts[branch.parent].add(j)
    pieces: list[Branch] = []
    piece_of: dict[tuple[int, int], int] = {}  # (branch, point index) -> piece ending at or containing it
    first_piece: dict[int, int] = {}
    for index, branch in enumerate(branches):
        bounds = [0] + sorted(cuts[index]) + [len(branch.points) - 1]
        previous = None
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b <= a:
                continue
            piece = Branch(branch.name, branch.points[a : b + 1], branch.radii[a : b + 1], None, branch.side,
                           branch.accepted, branch.user_defined)
            piece.parent = previous  # resolved below for the first piece
            pieces.append(piece)
            number = len(pieces) - 1
            if previous is None:
                first_piece[index] = number
            for k in range(a, b + 1):
                piece_of.setdefault((index, k), number)
            previous = number
    for index, branch in enumerate(branches):
        if branch.parent is not None:
            j = attach[index]
            # The piece of the parent that ends at the junction point.
            candidates = [n for (b, k), n in piece_of.items() if b == branch.parent and k == j]
            ending = [n for n in candidates if np.allclose(pieces[n].points[-1], branches[branch.parent].points[j])]
            pieces[first_piece[index]].parent = (ending or candidates)[0]
    return pieces


def _reindex(branches: list[Branch], keep: list[int]) -> list[Branch]:
    """Drop branches (and their descendants); parents re-indexed."""
    kept = set(keep)
    changed = True
    while changed:  # a kept branch whose parent went goes too
        changed = False
        for index in list(kept):
            parent = branches[index].parent
            if parent is not None and parent not in kept:
                kept.discard(index)
                changed = True
    order = sorted(kept)
    new_index = {old: new for new, old in enumerate(order)}
    result = []
    for old in order:
        branch = branches[old]
        branch.parent = new_index[branch.parent] if branch.parent is not None else None
        result.append(branch)
    return result


def render_trees(trees: dict[str, CoronaryTree], grid: Grid, accepted_only: bool = True) -> np.ndarray:
    """Label map of the lumen of each tree (1 left, 2 right): tubes of the traced radius along the centerlines."""
    labels = np.zeros(grid.shape, np.uint8)
    spacing = grid.spacing_kji
    for value, side in ((1, "left"), (2, "right")):
        tree = trees.get(side)
        if tree is None:
            continue
        for branch in tree.branches:
            if accepted_only and not branch.accepted:
                continue
            for first in range(0, len(branch.points) - 1, 12):
                points = branch.points[first : first + 13]
                radii = branch.radii[first : first + 13]
                if len(points) < 2:
                    continue
                kji = grid.ras_to_kji(points)
                pad = np.ceil((radii.max() + 0.5) / spacing).astype(int) + 1
                low = np.maximum(np.floor(kji.min(axis=0)).astype(int) - pad, 0)
                high = np.minimum(np.ceil(kji.max(axis=0)).astype(int) + pad + 1, grid.shape)
                if np.any(high <= low):
                    continue
                index = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(low, high)), indexing="ij"), -1).reshape(-1, 3)
                distance, s = points_to_polyline_distance(grid.kji_to_ras(index), points)
                inside = index[distance <= np.interp(s, arc_length(points), radii)]
                labels[tuple(inside.T)] = value
    return labels
