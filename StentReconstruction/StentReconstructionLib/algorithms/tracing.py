"""Algorithm B: trace the wires.

The metal is thinned to its skeleton and read as a graph: nodes where the skeleton branches or stops, wires
between them. Spurs of thinning are pruned, split crossings merged, short breaks bridged; each wire is moved
to the intensity centroid across it (sub-voxel), and the node degrees are checked against the design (2 for
zig-zag rings, 4 for diamond cells). Where struts lie closer than the blur (coronary stents at 0.4-0.5 mm
voxels) the skeleton is that of a merged wall and the topology is not the device's; the notes say so.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

from CardiacSuiteLib.geometry import arc_length, smooth_polyline

from .. import sections, surfaces
from ..model import CannotReconstruct, Reconstruction, Region
from . import common

#: Half the strut thickness of each kind of device (mm): the tube radius of the wires in the surface.
WIRE_RADIUS_MM = {"coronary": 0.05, "tavr": 0.2, "pulmonary": 0.2, "graft": 0.15}
#: Finest grid the skeleton is taken on (mm); finer than the image only for small devices, as a fraction of
#: their diameter, so neighbouring struts get a voxel between them where the blur allows.
FINE_SHARE_OF_DIAMETER = 0.07
FINE_FLOOR_MM = 0.2
#: Local level of the mask that is thinned: half-way between the background and the brightest metal within 1 mm.
LOCAL_LEVEL = 0.5


class _Graph:
    """Wire graph: node positions (RAS) and wires as (node a, node b, polyline RAS)."""

    def __init__(self):
        self.nodes: list[np.ndarray] = []
        self.wires: list[list] = []  # [a, b, polyline]

    def add_node(self, position: np.ndarray) -> int:
        self.nodes.append(np.asarray(position, float))
        return len(self.nodes) - 1

    def degrees(self) -> np.ndarray:
        degree = np.zeros(len(self.nodes), int)
        for a, b, _ in self.wires:
            if a is not None:
                degree[a] += 1
            if b is not None:
                degree[b] += 1
        return degree

    def length(self, index: int) -> float:
        line = self.wires[index][2]
        return float(arc_length(line)[-1]) if len(line) > 1 else 0.0


def _fine_grid(region: Region, image: np.ndarray, device: np.ndarray, radius: float
               ) -> tuple[np.ndarray, np.ndarray, float]:
    """The device's bounding box, resampled (trilinear) to a finer grid where the device is small."""
    native = float(np.min(region.spacing_mm))
    fine = min(native, max(FINE_FLOOR_MM, FINE_SHARE_OF_DIAMETER * 2.0 * radius))
    pad = 3
    low = np.maximum(np.argwhere(device).min(axis=0) - pad, 0)
    high = np.minimum(np.argwhere(device).max(axis=0) + pad + 1, device.shape)
    crop = image[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
    factor = fine / region.spacing_mm  # (k, j, i) input voxels per output voxel
    shape = (np.floor((np.array(crop.shape) - 1) / factor) + 1).astype(int)
    grids = [np.arange(n) * f for n, f in zip(shape, factor)]
    coords = np.meshgrid(*grids, indexing="ij")
    values = ndimage.map_coordinates(crop, coords, order=1, mode="nearest").astype(np.float32)
    matrix = region.ijk_to_ras.copy()
    matrix[:3, 3] = matrix[:3, :3] @ low[::-1].astype(float) + matrix[:3, 3]
    matrix[:3, :3] = matrix[:3, :3] * factor[::-1][None, :]
    return values, matrix, fine


def _skeleton(values: np.ndarray, region: Region, fine_mm: float) -> np.ndarray:
    """Skeleton of the metal above its local half maximum (narrower than the threshold where struts bloom)."""
    size = max(int(round(1.0 / fine_mm)) | 1, 3)
    local = ndimage.maximum_filter(values, size=size)
    level = np.maximum(region.threshold_hu, region.background_hu + LOCAL_LEVEL * (local - region.background_hu))
    mask = values >= level
    mask = ndimage.binary_opening(mask, structure=ndimage.generate_binary_structure(3, 1)) | (
        mask & (values >= region.threshold_hu + 0.5 * (local - region.threshold_hu)))
    return skeletonize(mask).astype(bool)


def _trace(skeleton: np.ndarray, matrix: np.ndarray) -> tuple[_Graph, float]:
    """Graph of a skeleton: junction clusters and ends as nodes, chains of 2-neighbour voxels as wires.

    Returns the graph and the share of skeleton voxels that are junctions (high where the metal is a wall)."""
    kernel = np.ones((3, 3, 3), np.uint8)
    neighbours = ndimage.convolve(skeleton.astype(np.uint8), kernel, mode="constant") - 1
    junction = skeleton & (neighbours >= 3)
    junction_labels, junction_count = ndimage.label(junction, structure=kernel)
    graph = _Graph()

    def to_ras(kji: np.ndarray) -> np.ndarray:
        kji = np.atleast_2d(kji).astype(float)
        return kji[:, ::-1] @ matrix[:3, :3].T + matrix[:3, 3]

    if junction_count:
        centres = ndimage.center_of_mass(junction, junction_labels, np.arange(1, junction_count + 1))
        for centre in centres:
            graph.add_node(to_ras(np.array(centre))[0])
    chain = skeleton & ~junction
    chain_labels, chain_count = ndimage.label(chain, structure=kernel)
    offsets = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)])
    shape = np.array(skeleton.shape)

    def adjacent_junctions(voxel: np.ndarray) -> list[int]:
        around = voxel + offsets
        inside = np.all((around >= 0) & (around < shape), axis=1)
        found = junction_labels[tuple(around[inside].T)]
        return sorted({int(v) - 1 for v in found if v > 0})

    voxels = np.argwhere(chain)
    labels = chain_labels[tuple(voxels.T)]
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(1, chain_count + 2))
    for index in range(chain_count):
        members = voxels[order[bounds[index]:bounds[index + 1]]]
        ordered = _order_chain(members)
        first, last = ordered[0], ordered[-1]
        ends_first, ends_last = adjacent_junctions(first), adjacent_junctions(last)
        if len(ordered) == 1 and len(ends_first) >= 2:
            a, b = ends_first[0], ends_first[1]
        else:
            a = ends_first[0] if ends_first else None
            b = ends_last[-1] if ends_last else None
            if len(ordered) == 1 and a is not None and b == a:
                b = None
        line = to_ras(ordered)
        closed_loop = a is None and b is None and len(ordered) > 3 and \
            np.max(np.abs(ordered[0] - ordered[-1])) <= 1
        if a is None and not closed_loop:
            a = graph.add_node(line[0])
        if b is None and not closed_loop:
            b = graph.add_node(line[-1])
        if closed_loop:
            node = graph.add_node(line[0])
            a = b = node
            line = np.vstack([line, line[:1]])
        parts = [graph.nodes[a][None]] if a < junction_count else []
        parts.append(line)
        if b < junction_count:
            parts.append(graph.nodes[b][None])
        graph.wires.append([a, b, np.vstack(parts)])
    share = float(junction.sum()) / max(int(skeleton.sum()), 1)
    return graph, share


def _order_chain(members: np.ndarray) -> np.ndarray:
    """Voxels of one chain in order along it, walking from an end to the nearest unvisited neighbour."""
    if len(members) <= 2:
        return members
    tree = cKDTree(members)
    pairs = tree.query_pairs(1.75, output_type="ndarray")
    adjacency = [[] for _ in range(len(members))]
    for i, j in pairs:
        adjacency[i].append(j)
        adjacency[j].append(i)
    degree = np.array([len(a) for a in adjacency])
    current = int(np.argmin(degree))
    visited = np.zeros(len(members), bool)
    path = [current]
    visited[current] = True
    while True:
        options = [j for j in adjacency[current] if not visited[j]]
        if not options:
            break
        current = min(options, key=lambda j: float(np.sum((members[j] - members[current]) ** 2)))
        visited[current] = True
        path.append(current)
    return members[path]


def _prune(graph: _Graph, spur_mm: float, merge_mm: float) -> None:
    """Drop thinning spurs and specks, merge the two halves of split crossings, join wires through 2-way nodes."""
    for _ in range(6):
        changed = False
        degree = graph.degrees()
        keep = []
        for index, (a, b, line) in enumerate(graph.wires):
            length = graph.length(index)
            spur = (degree[a] == 1) != (degree[b] == 1) and max(degree[a], degree[b]) >= 3 and length < spur_mm
            speck = degree[a] == 1 and degree[b] == 1 and length < 2.0 * spur_mm
            keep.append(not (spur or speck))
        if not all(keep):
            graph.wires = [w for w, k in zip(graph.wires, keep) if k]
            changed = True
        degree = graph.degrees()
        for index, (a, b, line) in enumerate(graph.wires):
            if a != b and degree[a] >= 3 and degree[b] >= 3 and graph.length(index) < merge_mm:
                graph.nodes[a] = 0.5 * (graph.nodes[a] + graph.nodes[b])
                del graph.wires[index]
                for wire in graph.wires:
                    wire[0] = a if wire[0] == b else wire[0]
                    wire[1] = a if wire[1] == b else wire[1]
                changed = True
                break
        changed |= _join_through(graph)
        if not changed:
            break
    _snap(graph, merge_mm)
    _join_through(graph)


def _snap(graph: _Graph, merge_mm: float) -> None:
    """Junctions closer than ``merge_mm`` become one node (a crossing the blur split), and a loose end that
    stops within ``merge_mm`` of another junction is joined to it (a strut the thinning cut off at a node)."""
    degree = graph.degrees()
    junctions = np.where(degree >= 3)[0]
    if junctions.size == 0:
        return
    positions = np.array([graph.nodes[n] for n in junctions])
    group_of = {int(n): int(n) for n in junctions}
    groups: dict[int, list[int]] = {int(n): [int(n)] for n in junctions}
    pairs = cKDTree(positions).query_pairs(merge_mm, output_type="ndarray")
    distances = np.linalg.norm(positions[pairs[:, 0]] - positions[pairs[:, 1]], axis=1) if len(pairs) else []
    for k in np.argsort(distances):
        gi, gj = group_of[int(junctions[pairs[k, 0]])], group_of[int(junctions[pairs[k, 1]])]
        if gi == gj:
            continue
        members = groups[gi] + groups[gj]
        spread = np.array([graph.nodes[m] for m in members])
        if np.max(np.linalg.norm(spread[:, None] - spread[None], axis=2)) > merge_mm:
            continue  # no chaining: a group stays within one crossing's reach
        groups[gi] = members
        del groups[gj]
        group_of.update({m: gi for m in members})
    rename = {}
    for root, members in groups.items():
        graph.nodes[root] = np.mean([graph.nodes[m] for m in members], axis=0)
        rename.update({m: root for m in members})
    wires = []
    for a, b, line in graph.wires:
        a, b = rename.get(a, a), rename.get(b, b)
        if a == b and a in groups and float(arc_length(line)[-1]) < 2.0 * merge_mm:
            continue  # the short piece between the two halves of a split crossing
        wires.append([a, b, line])
    graph.wires = wires
    degree = graph.degrees()
    roots = np.array(sorted(groups))
    tree = cKDTree(np.array([graph.nodes[n] for n in roots]))
    for wire in graph.wires:
        for end in (0, 1):
            node, other = wire[end], wire[1 - end]
            if degree[node] != 1:
                continue
            distance, nearest = tree.query(graph.nodes[node])
            target = int(roots[nearest])
            if distance <= merge_mm and target != other:
                wire[end] = target
                tip = graph.nodes[target][None]
                wire[2] = np.vstack([tip, wire[2]]) if end == 0 else np.vstack([wire[2], tip])


def _join_through(graph: _Graph) -> bool:
    """Wires meeting at a node of degree 2 become one wire."""
    changed = False
    while True:
        degree = graph.degrees()
        incident: dict[int, list[int]] = {}
        for index, (a, b, _) in enumerate(graph.wires):
            if a != b:
                incident.setdefault(a, []).append(index)
                incident.setdefault(b, []).append(index)
        node = next((n for n, wires in incident.items() if degree[n] == 2 and len(wires) == 2), None)
        if node is None:
            return changed
        i, j = incident[node]
        first, second = graph.wires[i], graph.wires[j]
        line1 = first[2] if first[1] == node else first[2][::-1]
        line2 = second[2] if second[0] == node else second[2][::-1]
        a = first[0] if first[1] == node else first[1]
        b = second[1] if second[0] == node else second[0]
        graph.wires = [w for k, w in enumerate(graph.wires) if k not in (i, j)]
        graph.wires.append([a, b, np.vstack([line1, line2[1:]])])
        changed = True


def _components(graph: _Graph) -> np.ndarray:
    """Connected component label per wire (wires sharing a node are connected)."""
    parent = list(range(len(graph.nodes)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in graph.wires:
        parent[find(a)] = find(b)
    return np.array([find(a) for a, _, _ in graph.wires], int)


def _refine(line: np.ndarray, region: Region, image: np.ndarray, step_mm: float) -> np.ndarray:
    """The wire resampled, smoothed and moved to the HU-weighted centroid in the plane normal to it."""
    line = sections.resample(line, step_mm)
    if len(line) < 2:
        return line
    voxel = common.voxel_mm(region)
    line = smooth_polyline(line, voxel, arc_length(line)[-1] / max(len(line) - 1, 1))
    half = 1.2 * voxel
    offsets = np.linspace(-half, half, 9)
    u, v = np.meshgrid(offsets, offsets, indexing="ij")
    u, v = u.ravel(), v.ravel()
    for _ in range(2):
        t = sections.tangents(line)
        seed = np.where(np.abs(t[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
        e1 = np.cross(t, seed)
        e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
        e2 = np.cross(t, e1)
        grid = line[:, None, :] + u[None, :, None] * e1[:, None, :] + v[None, :, None] * e2[:, None, :]
        values = sections.sample(image, region.ijk_to_ras, grid, fill=region.background_hu)
        w = np.maximum(values - region.threshold_hu, 0.0)
        total = w.sum(axis=1)
        shift = (w[:, :, None] * (grid - line[:, None, :])).sum(axis=1) / np.maximum(total, 1e-9)[:, None]
        length = np.linalg.norm(shift, axis=1, keepdims=True)
        shift = np.where(length > voxel, shift * voxel / np.maximum(length, 1e-9), shift)
        line = line + np.where(total[:, None] > 0, shift, 0.0)
    return line


def _extend_end(line: np.ndarray, region: Region, image: np.ndarray) -> np.ndarray:
    """Carry a loose wire end out to where its blurred tip falls to half its HU: the tip of a blurred line."""
    if len(line) < 3:
        return line
    tip = line[-1]
    direction = line[-1] - line[max(len(line) - 4, 0)]
    norm = np.linalg.norm(direction)
    if norm < 1e-6:
        return line
    direction /= norm
    inner = sections.sample(image, region.ijk_to_ras, line[-min(len(line), 5):], fill=region.background_hu)
    level = 0.5 * (float(np.median(inner)) + region.background_hu)
    steps = np.arange(0.0, 1.0 + 1e-9, 0.05)
    values = sections.sample(image, region.ijk_to_ras, tip + steps[:, None] * direction, fill=region.background_hu)
    below = np.where(values < level)[0]
    if below.size == 0 or below[0] == 0:
        return line
    j = below[0]
    reach = steps[j - 1] + 0.05 * (values[j - 1] - level) / max(values[j - 1] - values[j], 1e-6)
    return np.vstack([line, tip + reach * direction]) if reach > 0.05 else line


def _bridge_gaps(wires: list[list], degree: np.ndarray, gap_mm: float
                 ) -> tuple[list[list], list[float], int]:
    """Pair loose ends that face each other: breaks up to ``gap_mm`` are bridged (joined), longer ones are
    reported as gaps. Returns (wires, gap lengths > gap_mm, bridged count)."""
    ends = []  # (wire index, at start?, position, outward direction)
    for index, (a, b, line) in enumerate(wires):
        if len(line) < 3:
            continue
        for at_start, node in ((True, a), (False, b)):
            if degree[node] != 1:
                continue
            tip, before = (line[0], line[min(3, len(line) - 1)]) if at_start else (line[-1], line[max(len(line) - 4, 0)])
            direction = tip - before
            direction /= max(np.linalg.norm(direction), 1e-9)
            ends.append((index, at_start, tip, direction))
    reach = 3.0 * gap_mm
    candidates = []
    for i in range(len(ends)):
        for j in range(i + 1, len(ends)):
            if ends[i][0] == ends[j][0]:
                continue
            between = ends[j][2] - ends[i][2]
            distance = float(np.linalg.norm(between))
            if distance > reach or distance < 1e-6:
                continue
            unit = between / distance
            if ends[i][3] @ unit > 0.5 and ends[j][3] @ -unit > 0.5:
                candidates.append((distance, i, j))
    used = set()
    joined_wires = set()
    gaps, bridged = [], 0
    for distance, i, j in sorted(candidates):
        if i in used or j in used:
            continue
        used |= {i, j}
        if distance > gap_mm:
            gaps.append(round(distance, 2))
            continue
        (wi, start_i, _, _), (wj, start_j, _, _) = ends[i], ends[j]
        if wi in joined_wires or wj in joined_wires:
            continue
        joined_wires |= {wi, wj}
        line1 = wires[wi][2][::-1] if start_i else wires[wi][2]
        line2 = wires[wj][2] if start_j else wires[wj][2][::-1]
        far_i = wires[wi][1] if start_i else wires[wi][0]
        far_j = wires[wj][1] if start_j else wires[wj][0]
        wires[wi] = [far_i, far_j, np.vstack([line1, line2])]
        wires[wj] = [None, None, np.zeros((0, 3))]
        bridged += 1
    return [w for w in wires if len(w[2]) >= 2], sorted(gaps), bridged


def _crowns(line: np.ndarray, axis: np.ndarray, prominence_mm: float) -> np.ndarray:
    """Arc-length positions (along the device axis) of the turning points of a wire: its crowns."""
    s, _, _ = sections.project_to_axis(line, axis)
    if len(s) < 5:
        return np.zeros(0)
    s = ndimage.gaussian_filter1d(s, 1.0, mode="nearest")
    found = []
    direction = 0
    anchor = s[0]
    extreme = s[0]
    for value in s[1:]:
        if direction >= 0 and value > extreme:
            extreme = value
        elif direction <= 0 and value < extreme:
            extreme = value
        if direction >= 0 and extreme - value > prominence_mm and extreme - anchor > prominence_mm:
            found.append(extreme)
            anchor, extreme, direction = extreme, value, -1
        elif direction <= 0 and value - extreme > prominence_mm and anchor - extreme > prominence_mm:
            found.append(extreme)
            anchor, extreme, direction = extreme, value, 1
        elif direction == 0 and abs(value - anchor) > prominence_mm:
            direction = 1 if value > anchor else -1
            extreme = value
    return np.array(found)


def run(region: Region) -> Reconstruction:
    """Wire graph from the skeleton of the metal; axis, ends and envelope from the refined wires."""
    design = region.spec.design
    device = common.device_metal(region, region.extent)
    image = common.masked_image(region, device)
    points, weights = common.metal_points(region, device)
    axis, station_radius, _ = common.refine_axis(region.extent, points, weights, region, iterations=2)
    radius = float(np.median(station_radius))
    values, matrix, fine = _fine_grid(region, image, device, radius)
    skeleton = _skeleton(values, region, fine)
    if skeleton.sum() < 5:
        raise CannotReconstruct("the metal thins to almost nothing: no wire to trace")
    graph, junction_share = _trace(skeleton, matrix)
    voxel = common.voxel_mm(region)
    spur = max(1.0, 2.0 * voxel)
    # struts meeting at a node stay merged by the blur for about a FWHM from it, so a crossing thins to two
    # 3-way nodes up to about two FWHM apart: those are one node
    fwhm = common.strut_width(region, axis, station_radius, image)
    merge = max(2.5 * fine, min(2.0 * fwhm, 0.5 * radius))
    _prune(graph, spur, merge)
    # keep the wire components lying on the envelope, drop calcium and specks
    band = common.radial_band_mm(region, radius)
    labels = _components(graph)
    keep = np.zeros(len(graph.wires), bool)
    s_axis = arc_length(axis)
    for label in np.unique(labels):
        members = np.where(labels == label)[0]
        line = np.vstack([graph.wires[i][2] for i in members])
        length = sum(graph.length(i) for i in members)
        s, _, r = sections.project_to_axis(line, axis)
        expected = np.interp(s, s_axis, station_radius)
        keep[members] = length >= spur and float(np.median(np.abs(r - expected))) <= band
    graph.wires = [w for w, k in zip(graph.wires, keep) if k]
    if not graph.wires:
        raise CannotReconstruct("no traced wire lies on the device's envelope")
    step = max(0.5 * voxel, 0.2)
    degree = graph.degrees()
    wires = []
    for a, b, line in graph.wires:
        refined = _refine(line, region, image, step)
        if degree[b] == 1 and a != b:
            refined = _extend_end(refined, region, image)
        if degree[a] == 1 and a != b:
            refined = _extend_end(refined[::-1], region, image)[::-1]
        wires.append([a, b, refined])
    wires, gaps, bridged = _bridge_gaps(wires, degree, design.gap_mm)
    wire_points = np.vstack([w[2] for w in wires])
    axis, _, _ = common.refine_axis(region.extent, wire_points, np.ones(len(wire_points)), region, iterations=3,
                                    radius_hint=radius)
    window = max(1.5, design.axial_bin_mm)
    radii, _ = sections.envelope_radii(wire_points, axis, window_mm=window)
    s_start, s_end, end_info = common.find_ends(region, axis, radii.mean(axis=1), image)
    final = common.trim(axis, s_start, s_end)
    radii, support = sections.envelope_radii(wire_points, final, window_mm=window)

    # node degrees in the interior, against the design (crowns are the degree-2 vertices of zig-zag rings)
    graph.wires = [[a, b, line] for a, b, line in wires]
    degree = graph.degrees()
    s_final = arc_length(final)
    end_zone = design.axial_bin_mm

    def interior(s: np.ndarray) -> np.ndarray:
        return (s >= end_zone) & (s <= s_final[-1] - end_zone)

    node_ids = sorted({n for a, b, _ in wires for n in (a, b)})
    node_s, _, _ = sections.project_to_axis(np.array([graph.nodes[n] for n in node_ids]), final)
    node_degree = degree[node_ids]
    inner_nodes = node_degree[interior(node_s)]
    crown_s = np.concatenate([_crowns(line, final, max(0.3, voxel)) for _, _, line in wires] or [np.zeros(0)])
    inner_crowns = int(interior(crown_s).sum())
    vertices = inner_nodes.size + inner_crowns
    matching = int((inner_nodes == design.node_degree).sum()) + (inner_crowns if design.node_degree == 2 else 0)
    match = matching / vertices if vertices else 0.0
    dangling = int((node_degree == 1).sum())
    dangling_inner = int((inner_nodes == 1).sum())
    merged = match < 0.5
    method = {
        "skeleton": f"skimage skeletonize (3D) of the metal above its local half maximum, on a {fine:.2f} mm grid",
        "threshold_hu": round(float(region.threshold_hu), 1),
        "spur_prune_mm": round(spur, 2),
        "node_merge_mm": round(merge, 2),
        "wires": len(wires),
        "wire_length_mm": round(float(sum(arc_length(w[2])[-1] for w in wires)), 1),
        "junction_voxel_share": round(junction_share, 3),
        "expected_node_degree": design.node_degree,
        "interior_vertices": int(vertices),
        "node_degree_match": round(float(match), 3),
        "node_degree_histogram": {int(k): int(v) for k, v in zip(*np.unique(inner_nodes, return_counts=True))},
        "gaps": gaps,
        "gaps_bridged": bridged,
        "dangling_ends": dangling,
        "dangling_ends_interior": dangling_inner,
        "wire_radius_mm": WIRE_RADIUS_MM[region.spec.kind],
        **end_info,
        "envelope_support_cells": round(float((support > 0).mean()), 3),
    }
    notes = [f"{len(wires)} wires traced, {method['wire_length_mm']} mm in all; {match:.0%} of {vertices} interior "
             f"vertices have the design's degree {design.node_degree}"]
    if gaps:
        notes.append(f"wire gaps over {design.gap_mm:g} mm: {', '.join(f'{g:.1f}' for g in gaps)} mm")
    if dangling:
        notes.append(f"{dangling} loose wire ends ({dangling_inner} away from the device ends)")
    if merged:
        notes.append("struts not resolved: neighbouring struts lie closer than the blur, so the metal thins to the "
                     "skeleton of a merged wall; the wires follow that wall, not the true strut paths, and the "
                     "topology (nodes, gaps, loose ends) is not the device's")
    surface = surfaces.tubes_along([w[2] for w in wires], WIRE_RADIUS_MM[region.spec.kind])
    return Reconstruction(id="B", name="wire tracing", axis=final, radii=radii, surface=surface,
                          struts=[w[2] for w in wires], material=wire_points, method=method, notes=notes)
