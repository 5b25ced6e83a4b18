"""Cardiac CT phantoms with a coronary tree: known chambers, known centerlines and known radii.

Built on ``CardiacSuiteLib.phantoms.ct_heart`` (real whole-heart label maps, HU per structure, fat and lung, blur,
noise, smooth random deformations). The coronary tree is constructed on the (deformed) heart itself, so the
truth is exact: the left main (LM) leaves the left coronary sinus and divides into the left anterior
descending artery (LAD, down the anterior interventricular groove to the apex) and the circumflex (LCx,
along the left atrioventricular groove); the right coronary artery (RCA) leaves the right sinus and runs in
the right atrioventricular groove to the crux, where the posterior descending artery (PDA) starts; diagonal,
obtuse marginal and acute marginal side branches complete the tree. Each vessel is a minimal path through
the epicardial fat (grooves are cheap), smoothed, kept clear of the blood pools by a wall of
``wall_mm``, and drawn as a tapered tube (label 8) with its radius at every centerline point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import ct_heart
from .ct_heart import LabelVolume, whole_heart_label_path

from ..geometry import Grid, arc_length, points_to_polyline_distance, resample_polyline, smooth_polyline

CORONARY_LABEL = 8
LV_MYO, LA, LV, RA, RV, AORTA, PA = 1, 2, 3, 4, 5, 6, 7


@dataclass
class Vessel:
    """A known coronary centerline: points (RAS mm), radius (mm) at each point, and where it starts."""

    name: str
    points: np.ndarray
    radii: np.ndarray
    parent: str | None = None  # the vessel it branches from (None: starts at an ostium)
    side: str = "left"  # "left" or "right" coronary tree

    @property
    def length_mm(self) -> float:
        return float(arc_length(self.points)[-1])


@dataclass
class CTPhantom:
    """A synthetic contrast CT (HU) with its truth: labels 1–7 (whole heart) plus 8 (coronary lumen)."""

    image: np.ndarray  # [K, J, I] float32 HU
    labels: np.ndarray  # [K, J, I] uint8
    ijk_to_ras: np.ndarray
    vessels: list[Vessel] = field(default_factory=list)
    ostia: dict[str, np.ndarray] = field(default_factory=dict)  # "left"/"right" -> RAS mm
    heart: str = ""

    @property
    def grid(self) -> Grid:
        return Grid(self.labels.shape, self.ijk_to_ras)

    def vessel(self, name: str) -> Vessel:
        for vessel in self.vessels:
            if vessel.name == name:
                return vessel
        raise KeyError(name)


# --------------------------------------------------------------------------------------------- the tree


class _Helper:
    """Distance maps of every structure on a 1 mm grid, and minimal paths through the epicardial shell."""

    def __init__(self, labels: np.ndarray, grid: Grid, wall_mm: float):
        self.grid = grid
        self.labels = labels
        self.wall_mm = wall_mm
        spacing = grid.spacing_kji
        self.distance = {}
        for value in range(1, 8):
            mask = labels == value
            self.distance[value] = ndimage.distance_transform_edt(~mask, sampling=spacing) if mask.any() else None
        heart = labels > 0
        self.heart_distance = ndimage.distance_transform_edt(~heart, sampling=spacing)
        blood = (labels > 1) & (labels < 8)
        self.blood_distance = ndimage.distance_transform_edt(~blood, sampling=spacing)
        # Centres of vessels lie in the epicardial fat a few millimetres off the heart surface.
        shell = (self.heart_distance >= 1.5) & (self.heart_distance <= 5.5) & (self.blood_distance >= 1.5)
        components, count = ndimage.label(shell, structure=np.ones((3, 3, 3)))
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        self.shell = components == int(np.argmax(sizes))
        # Clearance a lumen of radius r needs: a wall of ``wall_mm`` from blood pools, 0.4 mm from the myocardium
        # (coronary arteries lie on the epicardium).
        self.clearance = np.minimum(self.blood_distance - wall_mm, self.heart_distance - 0.4)
        self.gradient = np.stack(np.gradient(self.clearance, *spacing))
        self.forbidden = np.zeros_like(self.shell)

    def d(self, value: int) -> np.ndarray:
        found = self.distance[value]
        if found is None:
            raise ValueError(f"the label map has no structure {value}")
        return found

    def centroid(self, value: int) -> np.ndarray:
        return self.grid.kji_to_ras(np.argwhere(self.labels == value).mean(axis=0))[0]

    def path(
        self,
        start_ras: np.ndarray,
        end_ras: np.ndarray,
        groove: np.ndarray | None,
        groove_weight: float = 0.6,
        radius_mm: float = 1.0,
    ):
        """Minimal path (RAS points) in the free shell from ``start`` towards the shell point nearest ``end``.

        Voxels near vessels already drawn are forbidden (except around the start), so vessels never touch; when
        the target cannot be reached, the path ends at the reachable point closest to it.
        """
        from skimage.graph import MCP_Geometric

        start = tuple(self.nearest_index(start_ras, self.shell))
        free = self.shell & ~self.forbidden & (self.clearance >= 0.9)
        around_start = np.zeros_like(free)
        radius = np.ceil(8.0 / self.grid.spacing_kji).astype(int)
        low = np.maximum(np.array(start) - radius, 0)
        high = np.minimum(np.array(start) + radius + 1, free.shape)
        around_start[low[0] : high[0], low[1] : high[1], low[2] : high[2]] = True
        free |= around_start & self.shell
        cost = np.where(free, 1.0 + 0.3 * np.abs(self.heart_distance - 3.0), np.inf)
        if groove is not None:
            cost = cost + groove_weight * np.minimum(groove, 10.0)
        end = tuple(self.nearest_index(end_ras, free))
        mcp = MCP_Geometric(cost, sampling=tuple(self.grid.spacing_kji))
        cumulative, _ = mcp.find_costs([start], [end])
        if not np.isfinite(cumulative[end]):
            cumulative, _ = mcp.find_costs([start])
            reachable = np.argwhere(np.isfinite(cumulative))
            target = self.grid.ras_to_kji(end_ras)[0]
            end = tuple(reachable[np.argmin(((reachable - target) ** 2).sum(axis=1))])
        index = np.array(mcp.traceback(end), dtype=float)
        return self.grid.kji_to_ras(index)

    def forbid(self, points: np.ndarray, radii: np.ndarray, clearance_mm: float = 3.0) -> None:
        """Keep later vessels at least ``clearance_mm`` (lumen to lumen) away from this one."""
        kji = np.round(self.grid.ras_to_kji(points)).astype(int)
        kji = np.clip(kji, 0, np.array(self.forbidden.shape) - 1)
        seeds = np.zeros_like(self.forbidden)
        seeds[tuple(kji.T)] = True
        distance = ndimage.distance_transform_edt(~seeds, sampling=self.grid.spacing_kji)
        self.forbidden |= distance <= radii.max() + 1.1 + clearance_mm

    def nearest_index(self, ras: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        target = self.grid.ras_to_kji(ras)[0]
        index = np.argwhere(allowed)
        return index[np.argmin(((index - target) ** 2).sum(axis=1))]

    def push_out(self, points: np.ndarray, radii: np.ndarray, iterations: int = 6) -> np.ndarray:
        """Move points outwards until the lumen clears the blood pools by ``wall_mm`` and the myocardium."""
        points = points.copy()
        for _ in range(iterations):
            kji = self.grid.ras_to_kji(points).T
            clearance = ndimage.map_coordinates(self.clearance, kji, order=1, mode="nearest")
            deficit = radii + 0.2 - clearance
            if np.all(deficit <= 0):
                break
            grad_kji = np.stack([ndimage.map_coordinates(g, kji, order=1, mode="nearest") for g in self.gradient], 1)
            grad_ras = grad_kji[:, ::-1] @ (self.grid.ijk_to_ras[:3, :3] / self.grid.spacing_kji[::-1] ** 2).T
            norm = np.linalg.norm(grad_ras, axis=1, keepdims=True)
            direction = grad_ras / np.maximum(norm, 1e-6)
            points += np.clip(deficit, 0.0, None)[:, None] * direction
        return points


def _orthogonal(vector: np.ndarray, axis: np.ndarray) -> np.ndarray:
    projected = vector - np.dot(vector, axis) * axis
    return projected / max(np.linalg.norm(projected), 1e-9)


def _finish(points: np.ndarray, r0: float, r1: float, helper: _Helper, step: float = 0.5, sigma: float = 2.0):
    """Resample, smooth, taper the radius from r0 to r1 and keep the lumen out of the blood pools."""
    (points,) = resample_polyline(points, step)
    points = smooth_polyline(points, sigma, step)
    s = arc_length(points)
    radii = r0 + (r1 - r0) * s / max(s[-1], 1e-6)
    for _ in range(3):
        points = helper.push_out(points, radii)
        points = smooth_polyline(points, 1.0, step)
    points = helper.push_out(points, radii, iterations=10)
    points, radii = resample_polyline(points, step, radii)
    # Where a groove is tight the vessel narrows to fit (never below 0.8 mm radius); where even that does not
    # fit, it ends. The truth tube is thus always drawn whole, never partly hidden inside a chamber.
    clearance = ndimage.map_coordinates(helper.clearance, helper.grid.ras_to_kji(points).T, order=1, mode="nearest")
    room = ndimage.minimum_filter1d(clearance - 0.2, 9, mode="nearest")
    room[:6] = np.inf  # the first millimetres leave the aorta or the parent vessel
    radii = np.minimum(radii, room)
    blocked = np.flatnonzero(radii < 0.8)
    if blocked.size:
        points, radii = points[: blocked[0]], radii[: blocked[0]]
    radii = ndimage.uniform_filter1d(radii, 5, mode="nearest") if len(radii) > 5 else radii
    radii = np.minimum(radii, room[: len(radii)])
    return points, radii


def _aortic_landmarks(helper: _Helper):
    """Aortic annulus centre, root axis, and the aortic-surface points where the two coronary ostia sit."""
    grid = helper.grid
    labels = helper.labels
    aorta = labels == AORTA
    near_lv = aorta & (helper.d(LV) <= 2.0)
    if near_lv.sum() < 5:
        near_lv = aorta & (helper.d(LV) <= 6.0)
    annulus = grid.kji_to_ras(np.argwhere(near_lv).mean(axis=0))[0]
    aorta_points = grid.kji_to_ras(np.argwhere(aorta))
    near = aorta_points[np.linalg.norm(aorta_points - annulus, axis=1) < 35.0]
    centred = near - near.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    if np.dot(axis, near.mean(axis=0) - annulus) < 0:
        axis = -axis
    # The left coronary sinus faces the left atrium and pulmonary trunk, the right sinus the right heart.
    left_direction = _orthogonal(0.5 * (helper.centroid(LA) + helper.centroid(PA)) - annulus, axis)
    right_direction = _orthogonal(0.5 * (helper.centroid(RA) + helper.centroid(RV)) - annulus, axis)
    ostia = {}
    for side, direction, height in (("left", left_direction, 12.0), ("right", right_direction, 14.0)):
        centre = annulus + height * axis
        point = centre.copy()
        for step in np.arange(0.0, 40.0, 0.25):
            candidate = centre + step * direction
            kji = np.round(grid.ras_to_kji(candidate)[0]).astype(int)
            if np.any(kji < 0) or np.any(kji >= labels.shape) or labels[tuple(kji)] != AORTA:
                break
            point = candidate
        ostia[side] = point
    return annulus, axis, ostia, left_direction, right_direction


def build_coronary_tree(
    labels: np.ndarray, ijk_to_ras: np.ndarray, wall_mm: float = 1.0, max_side_branch_mm: float = 60.0
) -> tuple[list[Vessel], dict]:
    """Coronary centerlines and radii on a whole-heart label map (labels 1–7); returns (vessels, ostia)."""
    source = Grid(labels.shape, ijk_to_ras)
    work = source.resampled(1.5)
    from ..geometry import resample

    labels1 = resample(labels, source, work, order=0)
    helper = _Helper(labels1, work, wall_mm)
    annulus, axis, ostia, left_dir, right_dir = _aortic_landmarks(helper)

    # Apex: the LV myocardium point farthest from the mitral valve (LA–LV contact).
    mitral_mask = (labels1 == LV) & (helper.d(LA) <= 2.5)
    mitral = work.kji_to_ras(np.argwhere(mitral_mask).mean(axis=0))[0]
    myo = work.kji_to_ras(np.argwhere(labels1 == LV_MYO))
    apex = myo[np.argmax(np.linalg.norm(myo - mitral, axis=1))]
    long_axis = (apex - mitral) / np.linalg.norm(apex - mitral)

    vessels: list[Vessel] = []

    def add(vessel: Vessel) -> None:
        vessels.append(vessel)
        helper.forbid(vessel.points, vessel.radii)

    # Left main: about 10 mm from the ostium, leftwards between the pulmonary trunk and the left atrium.
    lm_end_target = ostia["left"] + 10.0 * left_dir
    lm = helper.path(ostia["left"], lm_end_target, None, radius_mm=2.2)
    lm = np.vstack([ostia["left"], lm])
    lm_points, lm_radii = _finish(lm, 2.2, 2.0, helper, sigma=1.5)
    lm_points[0] = ostia["left"]
    add(Vessel("LM", lm_points, lm_radii, None, "left"))
    bifurcation = lm_points[-1]

    # LAD: anterior interventricular groove (equidistant from LV myocardium and RV) to the apex.
    groove_iv = np.abs(helper.d(LV_MYO) - helper.d(RV))
    lad = helper.path(bifurcation, apex, groove_iv, radius_mm=1.9)
    lad_points, lad_radii = _finish(np.vstack([bifurcation, lad]), 1.9, 0.85, helper)
    add(Vessel("LAD", lad_points, lad_radii, "LM", "left"))

    # LCx: left atrioventricular groove, around the mitral annulus to the posterolateral wall.
    groove_av_left = np.abs(helper.d(LV_MYO) - helper.d(LA))
    start_dir = _orthogonal(bifurcation - mitral, long_axis)
    third = np.cross(long_axis, start_dir)
    if np.dot(third, -np.array([1.0, 0.0, 0.0])) < 0:  # go round by the patient's left (lateral) side
        third = -third
    radius = 25.0
    lcx_target = mitral + radius * (np.cos(np.radians(140)) * start_dir + np.sin(np.radians(140)) * third)
    lcx = helper.path(bifurcation, lcx_target, groove_av_left, radius_mm=1.7)
    lcx_points, lcx_radii = _finish(np.vstack([bifurcation, lcx]), 1.7, 0.9, helper)
    add(Vessel("LCx", lcx_points, lcx_radii, "LM", "left"))

    # RCA: right atrioventricular groove from the right ostium to the crux.
    heart_centroid = work.kji_to_ras(np.argwhere(labels1 > 0).mean(axis=0))[0]
    crux_score = helper.d(RA) + helper.d(RV) + helper.d(LV_MYO)
    shell_index = np.argwhere(helper.shell)
    shell_ras = work.kji_to_ras(shell_index)
    posterior = shell_ras[:, 1] < heart_centroid[1]
    scores = crux_score[tuple(shell_index.T)] + np.where(posterior, 0.0, 1e3)
    crux = shell_ras[np.argmin(scores)]
    groove_av_right = np.abs(helper.d(RA) - helper.d(RV))
    rca_start = helper.path(ostia["right"], ostia["right"] + 8.0 * right_dir, None, radius_mm=2.0)
    rca = helper.path(rca_start[-1], crux, groove_av_right, radius_mm=2.0)
    rca_points, rca_radii = _finish(np.vstack([ostia["right"], rca_start, rca]), 2.0, 1.1, helper)
    rca_points[0] = ostia["right"]
    add(Vessel("RCA", rca_points, rca_radii, None, "right"))

    # PDA: posterior interventricular groove from the crux towards the apex (about 40 mm).
    pda_target = crux + 0.6 * (apex - crux)
    pda = helper.path(rca_points[-1], pda_target, groove_iv, radius_mm=1.1)
    pda_points, pda_radii = _finish(np.vstack([rca_points[-1], pda]), 1.1, 0.8, helper)
    add(Vessel("PDA", pda_points, pda_radii, "RCA", "right"))

    # Side branches of at least 1.5 mm diameter: a diagonal, an obtuse marginal and an acute marginal.
    def side_branch(name: str, parent: Vessel, fraction: float, target: np.ndarray, r0: float, r1: float, side: str):
        s = arc_length(parent.points)
        start = parent.points[np.searchsorted(s, fraction * s[-1])]
        branch = np.vstack([start, helper.path(start, target, None, radius_mm=r0)])
        branch = branch[: max(int(np.searchsorted(arc_length(branch), max_side_branch_mm)), 2)]
        points, radii = _finish(branch, r0, r1, helper, sigma=2.5)
        points[0] = start
        add(Vessel(name, points, radii, parent.name, side))

    lad_vessel, lcx_vessel, rca_vessel = vessels[1], vessels[2], vessels[3]
    lateral = _orthogonal(lcx_points[len(lcx_points) // 2] - lad_points[len(lad_points) // 2], long_axis)
    s_lad = arc_length(lad_points)
    d1_start = lad_points[np.searchsorted(s_lad, 0.3 * s_lad[-1])]
    side_branch("D1", lad_vessel, 0.3, d1_start + 0.55 * (apex - d1_start) + 15.0 * lateral, 1.1, 0.8, "left")
    s_lcx = arc_length(lcx_points)
    om_start = lcx_points[np.searchsorted(s_lcx, 0.45 * s_lcx[-1])]
    side_branch("OM1", lcx_vessel, 0.45, om_start + 0.5 * (apex - om_start), 1.1, 0.8, "left")
    s_rca = arc_length(rca_points)
    am_start = rca_points[np.searchsorted(s_rca, 0.45 * s_rca[-1])]
    side_branch("AM", rca_vessel, 0.45, am_start + 0.5 * (apex - am_start), 1.0, 0.8, "right")
    return vessels, ostia


def render_vessels(labels: np.ndarray, ijk_to_ras: np.ndarray, vessels: list[Vessel], value: int = CORONARY_LABEL):
    """Draw each vessel as a tapered tube (label ``value``) where the label map is background (in place).

    The tube is the union of cone segments between consecutive centerline points, with the radius
    interpolated along the segment; it is drawn piece by piece so each box stays small.
    """
    grid = Grid(labels.shape, ijk_to_ras)
    spacing = grid.spacing_kji
    for vessel in vessels:
        for first in range(0, len(vessel.points) - 1, 12):
            points = vessel.points[first : first + 13]
            radii = vessel.radii[first : first + 13]
            kji = grid.ras_to_kji(points)
            pad = np.ceil((radii.max() + 0.5) / spacing).astype(int) + 1
            low = np.maximum(np.floor(kji.min(axis=0)).astype(int) - pad, 0)
            high = np.minimum(np.ceil(kji.max(axis=0)).astype(int) + pad + 1, labels.shape)
            if np.any(high <= low):
                continue
            index = np.stack(
                np.meshgrid(*(np.arange(a, b) for a, b in zip(low, high)), indexing="ij"), axis=-1
            ).reshape(-1, 3)
            if len(points) == 1:
                continue
            distance, s = points_to_polyline_distance(grid.kji_to_ras(index), points)
            inside = index[distance <= np.interp(s, arc_length(points), radii)]
            keep = labels[tuple(inside.T)] == 0
            labels[tuple(inside[keep].T)] = value


# --------------------------------------------------------------------------------------------- phantoms


def smooth_displacement(
    shape: tuple[int, int, int],
    spacing_kji: np.ndarray,
    rng: np.random.Generator,
    amplitude_mm: float = 4.0,
    correlation_mm: float = 30.0,
    coarse_mm: float = 4.0,
) -> np.ndarray:
    """``ct_heart.smooth_random_displacement``'s model (smoothed white noise scaled to a peak magnitude),
    drawn on a coarse grid and interpolated: the same kind of field in seconds instead of minutes at 0.5 mm."""
    spacing = np.asarray(spacing_kji, dtype=float)
    coarse_shape = tuple(int(max(np.ceil(n * s / coarse_mm), 4)) for n, s in zip(shape, spacing))
    coarse = ct_heart.smooth_random_displacement(coarse_shape, np.full(3, coarse_mm), rng, amplitude_mm, correlation_mm)
    zoom = [n / c for n, c in zip(shape, coarse_shape)]
    return np.stack([ndimage.zoom(component, zoom, order=1, grid_mode=True, mode="nearest") for component in coarse])


def ct_phantom_with_coronaries(
    heart: str = "wh",
    spacing_mm: float | None = 1.0,
    seed: int = 0,
    deformation_mm: float = 0.0,
    noise_hu: float = 25.0,
    blur_mm: float = 0.7,
    hu: dict[int, float] | None = None,
    margin_mm: float = 30.0,
    wall_mm: float = 1.0,
    data_root: str | os.PathLike | None = None,
    label_path: str | os.PathLike | None = None,
) -> CTPhantom:
    """A contrast CT of one real heart (``wh`` or ``mmwhs``) with a coronary tree.

    The label map is resampled to ``spacing_mm`` (None: kept on its own 0.49 × 0.49 × 0.625 mm grid), cropped
    with ``margin_mm`` of surroundings, warped by a smooth random deformation of up to ``deformation_mm``
    (0: none), given a coronary tree, and turned into HU by ``ct_heart.synthesize_ct``. Coronary lumen takes
    the aortic HU (arterial phase). Everything follows from ``seed``.
    """
    rng = np.random.default_rng(seed)
    path = Path(label_path) if label_path else whole_heart_label_path(heart, data_root)
    if not path.is_file():
        raise FileNotFoundError(f"whole-heart label map not found: {path}")
    volume = ct_heart.load_whole_heart_labels(path, spacing_mm=spacing_mm)
    volume = ct_heart.crop_to_labels(volume, margin_mm=margin_mm)
    labels = volume.labels
    if deformation_mm > 0:
        spacing = volume.spacing_mm[::-1]
        if spacing.min() < 1.0:
            field_mm = smooth_displacement(labels.shape, spacing, rng, deformation_mm)
        else:
            field_mm = ct_heart.smooth_random_displacement(labels.shape, spacing, rng, deformation_mm)
        labels = ct_heart.warp(labels, field_mm, spacing, order=0)
        del field_mm
    vessels, ostia = build_coronary_tree(labels, volume.ijk_to_ras, wall_mm=wall_mm)
    labels = labels.copy()
    render_vessels(labels, volume.ijk_to_ras, vessels)
    levels = {**ct_heart.DEFAULT_HU, **(hu or {})}
    levels.setdefault(CORONARY_LABEL, levels[AORTA])
    image = ct_heart.synthesize_ct(LabelVolume(labels, volume.ijk_to_ras), rng, hu=levels, noise_hu=noise_hu, blur_mm=blur_mm)
    return CTPhantom(image, labels, volume.ijk_to_ras, vessels, ostia, heart)


def embed_in_field_of_view(phantom: CTPhantom, shape: tuple[int, int, int], seed: int = 0, noise_hu: float = 25.0):
    """The phantom centred in a larger scan (lung and noise around it), e.g. a 512 × 512 × 300 CT.

    Beyond the phantom's margin ``synthesize_ct`` draws lung already, so the frame continues it seamlessly.
    """
    rng = np.random.default_rng(seed)
    inner = np.array(phantom.image.shape)
    outer = np.maximum(np.array(shape), inner)
    low = (outer - inner) // 2
    image = (ct_heart.LUNG_HU + rng.normal(0.0, noise_hu, tuple(outer))).astype(np.float32)
    labels = np.zeros(tuple(outer), np.uint8)
    box = tuple(slice(a, a + n) for a, n in zip(low, inner))
    image[box] = phantom.image
    labels[box] = phantom.labels
    matrix = phantom.ijk_to_ras.copy()
    matrix[:3, 3] = phantom.ijk_to_ras[:3, 3] - phantom.ijk_to_ras[:3, :3] @ low[::-1]
    return CTPhantom(image, labels, matrix, phantom.vessels, phantom.ostia, phantom.heart)


def write_nifti(image: np.ndarray, ijk_to_ras: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a ``[K, J, I]`` array as NIfTI (RAS affine), e.g. a phantom CT for the command line (int16 HU)."""
    import nibabel

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(image).transpose(2, 1, 0)
    if data.dtype.kind == "f":
        data = np.clip(np.round(data), -32768, 32767).astype(np.int16)
    nibabel.save(nibabel.Nifti1Image(data, np.asarray(ijk_to_ras, float)), str(path))
    return path
