"""TAVR planning on a contrast CT (SCCT 2019 expert consensus; reference notes §4.1).

1. **Root and axis**: ``root.locate`` (nadirs given, an aorta segmentation, or the lumen alone), then the axis
   through the centroids of lumen sections along it.
2. **Annular plane**: the three cusp hinge points (nadirs) from the unrolled root (``rootmap``), the plane
   through them, repeated round the new plane's axis until the plane moves less than 0.3° and 0.2 mm. Any
   nadir the user gave replaces the found one.
3. **Measurements** in that frame: annulus and LVOT (``depth`` below, default 4 mm) sections; per sinus the
   cusp-to-commissure diameter (deepest point of the sinus to the opposite commissure, the largest over the
   heights of the sinus) and their mean; the sinotubular junction (the narrowest section above the sinuses):
   height and diameter; the ascending aorta 40 mm above the annular plane (section perpendicular to the traced
   aortic centreline there); coronary ostial heights (perpendicular distance from the annular plane to the lower
   edge of each ostium); the virtual valve-to-coronary distance for a valve size; calcium per cusp and in the
   LVOT; angulation; C-arm projections; sizing suggestions.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from . import carm, root, rootmap, sizing
from .model import PlanInputs, PlanResult, SectionImage
from .sections import LumenLevels, Section, Volume, lumen_levels, lumen_section, sample_plane

CUSPS = ("right", "left", "non_coronary")  # counter-clockwise seen from the aorta
NADIRS = tuple(f"nadir_{c}" for c in CUSPS)
COMMISSURES = ("commissure_right_left", "commissure_left_non", "commissure_non_right")
OSTIA = ("ostium_left", "ostium_right")  # the lower edge of each coronary ostium
LVOT_DEPTH_MM = 4.0
ASCENDING_HEIGHT_MM = 40.0
VTC_RISK_MM = 4.0  # virtual valve-to-coronary distance below this: risk of obstruction
CALCIUM_FACTOR = 1.5  # calcium threshold = this × the contrast in the root
CONVERGED_DEG, CONVERGED_MM = 0.3, 0.2


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _r(value, digits=2):
    return None if value is None else round(float(value), digits)


def _plane(points: np.ndarray, towards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centre = points.mean(axis=0)
    normal = _unit(np.cross(points[1] - points[0], points[2] - points[0]))
    return centre, normal if normal @ towards >= 0 else -normal


def recentre_axis(volume: Volume, centre: np.ndarray, direction: np.ndarray, threshold: float) -> tuple:
    """Axis through the centroids of lumen sections from 5 mm below to 25 mm above ``centre``."""
    points = []
    for z in (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0):
        try:
            points.append(lumen_section(volume, centre + z * direction, direction, threshold, max_mm=35.0,
                                        gap_mm=3.0).centroid)
        except ValueError:
            continue
    if len(points) < 3:
        return centre, direction
    points = np.array(points)
    mean = points.mean(axis=0)
    axis = np.linalg.svd(points - mean, full_matrices=False)[2][0]
    axis = axis if axis @ direction >= 0 else -axis
    if math.degrees(math.acos(np.clip(axis @ direction, -1, 1))) > 25.0:
        axis = direction
    return mean + ((centre - mean) @ axis) * axis, _unit(axis)


#: With an aorta segmentation, the lumen searched is the segment grown by this much (mm) ...
CONFINE_MM = 3.0
#: ... and a cylinder of this radius and depth (mm) below its root end (the LV outflow).
OUTFLOW_RADIUS_MM, OUTFLOW_DEPTH_MM = 20.0, 25.0


def confined_to_root(volume: Volume, aorta: np.ndarray, centre: np.ndarray, direction: np.ndarray) -> Volume:
    """The CT with everything outside the aorta segment (grown by CONFINE_MM) and the outflow cylinder below its
    proximal plane (``centre``, ``direction``) set to soft tissue: on a whole-heart CT the chambers next to the root are otherwise one lumen with
    it at the scanner's resolution."""
    spacing = np.linalg.norm(volume.ijk_to_ras[:3, :3], axis=0)[::-1]
    # work in the box round the segment and the outflow only (a whole CT is tens of millions of voxels)
    ends = [centre - OUTFLOW_DEPTH_MM * direction, centre]
    kji_ends = volume.kji(np.array(ends)).T
    index = np.argwhere(aorta)
    pad = np.ceil((OUTFLOW_RADIUS_MM + CONFINE_MM + 2.0) / spacing).astype(int)
    low = np.maximum(np.minimum(index.min(axis=0), np.floor(kji_ends.min(axis=0)).astype(int)) - pad, 0)
    high = np.minimum(np.maximum(index.max(axis=0), np.ceil(kji_ends.max(axis=0)).astype(int)) + pad + 1,
                      aorta.shape)
    box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
    grown = ndimage.distance_transform_edt(~aorta[box], sampling=spacing) <= CONFINE_MM
    k, j, i = np.indices(grown.shape)
    ijk = np.stack([i + low[2], j + low[1], k + low[0]], -1).reshape(-1, 3)
    ras = ijk @ volume.ijk_to_ras[:3, :3].T + volume.ijk_to_ras[:3, 3]
    local = ras - centre
    height = local @ direction
    radial = np.linalg.norm(local - height[:, None] * direction, axis=1)
    outflow = ((height <= -1.0) & (height >= -OUTFLOW_DEPTH_MM) & (radial <= OUTFLOW_RADIUS_MM)).reshape(grown.shape)
    image = np.full(volume.image.shape, np.float32(40.0))
    image[box] = np.where(grown | outflow, volume.image[box], np.float32(40.0))
    return Volume(image, volume.ijk_to_ras)


#: Heights along the root's first axis (mm from its first centre) where blood and wall are sampled: the LV
#: outflow below the valve and the tube above the sinuses, clear of closed leaflets and of calcium.
LEVEL_HEIGHTS_MM = (-8.0, -4.0, 24.0, 30.0)


def root_levels(volume: Volume, guess: root.RootGuess) -> LumenLevels:
    """Contrast and wall levels of the root (median over LEVEL_HEIGHTS_MM) and the threshold between them."""
    found = []
    for height in LEVEL_HEIGHTS_MM:
        try:
            found.append(lumen_levels(volume, guess.centre + height * guess.direction))
        except ValueError:
            continue
    if not found:
        try:
            found.append(lumen_levels(volume, guess.centre))
        except ValueError as error:
            raise ValueError(f"aortic root: {error}") from None
    blood = float(np.median([f.blood_hu for f in found]))
    tissue = float(np.median([f.tissue_hu for f in found]))
    return LumenLevels(blood, tissue, 0.5 * (blood + tissue),
                       f"half-way between contrast blood ({blood:.0f} HU) and the wall ({tissue:.0f} HU), medians of "
                       f"{len(found)} places in the LV outflow and the tubular aorta")


def section_near(volume: Volume, centre: np.ndarray, normal: np.ndarray, height: float, threshold: float,
                 what: str, max_mm: float = 35.0) -> Section:
    """The lumen section ``height`` mm along ``normal`` from ``centre``, or, where no closed boundary is found
    there (a ray that finds no wall), the nearest height within 2 mm that has one."""
    for shift in (0.0, 0.5, -0.5, 1.0, -1.0, 1.5, -1.5, 2.0, -2.0):
        try:
            return lumen_section(volume, centre + (height + shift) * normal, normal, threshold, max_mm=max_mm,
                                 gap_mm=3.0)
        except ValueError:
            continue
    raise ValueError(f"no closed lumen boundary at the {what} ({height:.1f} mm from the annulus): check the nadirs "
                     "(--landmarks) or give an aorta segmentation")


def sinus_strength(volume: Volume, guess: root.RootGuess) -> float:
    """How three-lobed the lumen is 3-25 mm beyond a guess (mm of third harmonic; 0 without a lumen)."""
    try:
        levels = lumen_levels(volume, guess.centre)
    except ValueError:
        return 0.0
    coarse = rootmap.build(volume, guess.centre, guess.direction, levels.threshold_hu, np.arange(3.0, 25.0, 2.0))
    return float(np.max(np.abs(np.fft.rfft(coarse.wall, axis=1)[:, 3])) * 2.0 / coarse.wall.shape[1])


def choose_guess(volume: Volume, guesses: list) -> root.RootGuess:
    """The candidate root with sinuses beyond it (the strongest three-lobed lumen)."""
    if len(guesses) == 1:
        return guesses[0]
    return max(guesses, key=lambda g: sinus_strength(volume, g))


def plane_trouble(hinges, history: list, normal: np.ndarray, guess: root.RootGuess) -> str | None:
    """Why a found annular plane is not to be trusted, or None: the plane did not settle, the sinuses are not
    above the nadirs, the nadirs are far apart in height, or the plane turned far from the root's axis."""
    turn, shift = history[-1]
    if turn > 1.0 or shift > 1.0:
        return f"the plane still moved {turn:.1f}° / {shift:.1f} mm after {len(history)} passes"
    if hinges.sinus_level - float(np.max(hinges.nadir_heights)) < 3.0:
        return "the sinus bulges are not above the hinge points"
    if float(np.ptp(hinges.nadir_heights)) > 8.0:
        return "the hinge points differ by more than 8 mm in height"
    if math.degrees(math.acos(np.clip(abs(normal @ guess.direction), -1, 1))) > 35.0:
        return "the plane is more than 35° off the root's axis"
    return None


def segment_plane(volume: Volume, aorta: np.ndarray, guess: root.RootGuess, threshold: float):
    """Plane of the aorta segment's proximal boundary: its voxels next to contrast lumen outside it, within
    20 mm of the root end; normal towards the aorta."""
    spacing = np.linalg.norm(volume.ijk_to_ras[:3, :3], axis=0)[::-1]
    lumen = (volume.image >= threshold) & ~aorta
    contact = aorta & ndimage.binary_dilation(lumen)
    kji = np.argwhere(contact)
    ras = kji[:, ::-1] @ volume.ijk_to_ras[:3, :3].T + volume.ijk_to_ras[:3, 3]
    near = np.linalg.norm(ras - guess.centre, axis=1) <= 20.0
    if near.sum() < 10:
        return guess.centre, guess.direction
    points = ras[near]
    centre = points.mean(axis=0)
    normal = np.linalg.svd(points - centre, full_matrices=False)[2][-1]
    del spacing
    return centre, _unit(normal if normal @ guess.direction >= 0 else -normal)


def find_plane(volume: Volume, centre: np.ndarray, normal: np.ndarray, threshold: float, iterations: int = 6):
    """Nadirs, the annular plane and the last root map (see module docstring)."""
    heights = np.arange(-15.0, 40.0 + 1e-9, rootmap.HEIGHT_STEP_MM)
    history = []
    for _ in range(iterations):
        rm = rootmap.build(volume, centre, normal, threshold, heights)
        excess = rootmap.excess_map(rm)
        hinges = rootmap.find_hinges(rm, excess, (-15.0, 35.0))
        nadirs = np.array([rm.point(z, phi) for z, phi in zip(hinges.nadir_heights, hinges.nadir_azimuths)])
        new_centre, new_normal = _plane(nadirs, normal)
        section = lumen_section(volume, new_centre, new_normal, threshold, max_mm=35.0, gap_mm=3.0)
        new_centre = section.centroid
        turn = math.degrees(math.acos(np.clip(new_normal @ normal, -1.0, 1.0)))
        shift = float(np.linalg.norm(new_centre - centre - ((new_centre - centre) @ new_normal) * new_normal))
        history.append((turn, shift))
        centre, normal = new_centre, new_normal
        if turn < CONVERGED_DEG and shift < CONVERGED_MM:
            break
    return nadirs, hinges, rm, centre, normal, history


def name_sinuses(rm: rootmap.RootMap, hinges: rootmap.Hinges, found_ostia: dict) -> tuple[dict[str, int], str]:
    """Sinus index per cusp name. Counter-clockwise seen from the aorta they run right, left, non-coronary; the
    two sinuses with coronary ostia are the right and left ones, else the right sinus is the most anterior."""
    order = list(np.argsort(hinges.nadir_azimuths))  # counter-clockwise
    if len(found_ostia) == 2:
        non = ({0, 1, 2} - set(found_ostia)).pop()
        start = (order.index(non) + 1) % 3
        rule = "the two sinuses with coronary ostia are left and right; right, left, non-coronary counter-clockwise"
    else:
        anterior = [rm.direction(phi)[1] for phi in hinges.nadir_azimuths]
        start = order.index(int(np.argmax(anterior)))
        rule = "the right sinus is the most anterior; right, left, non-coronary counter-clockwise"
    return {CUSPS[k]: int(order[(start + k) % 3]) for k in range(3)}, rule


def sov_diameters(rm: rootmap.RootMap, cusp_point_phi: dict, commissure_phi: dict, z_max: float) -> dict:
    """Per sinus, the largest distance over heights from the sinus wall to the opposite commissure's wall."""
    opposite = {"right": "commissure_left_non", "left": "commissure_non_right",
                "non_coronary": "commissure_right_left"}
    wall = ndimage.gaussian_filter1d(rm.wall, 1.0, axis=0)
    smoothed = rootmap.RootMap(rm.centre, rm.normal, rm.u, rm.v, rm.heights, rm.azimuths, rm.raw, wall,
                               rm.threshold_hu)
    out = {}
    for cusp in CUSPS:
        best = (0.0, 0.0)
        for z in rm.heights[(rm.heights >= 0.0) & (rm.heights <= z_max)]:
            a = smoothed.point(z, cusp_point_phi[cusp])
            b = smoothed.point(z, commissure_phi[opposite[cusp]])
            d = float(np.linalg.norm(a - b))
            if d > best[0]:
                best = (d, float(z))
        out[cusp] = {"diameter_mm": _r(best[0]), "height_mm": _r(best[1], 1),
                     "sinus_point": smoothed.point(best[1], cusp_point_phi[cusp]),
                     "commissure_point": smoothed.point(best[1], commissure_phi[opposite[cusp]])}
    return out


def track_aorta(volume: Volume, start: np.ndarray, direction: np.ndarray, threshold: float, plane_centre: np.ndarray,
                normal: np.ndarray, height: float, step: float = 2.0) -> tuple[Section | None, np.ndarray]:
    """Follow the aortic lumen from ``start`` until ``height`` above the annular plane; the section there."""
    points = [np.asarray(start, float)]
    heading = _unit(direction)
    for _ in range(60):
        probe = points[-1] + step * heading
        try:
            section = lumen_section(volume, probe, heading, threshold, max_mm=35.0, gap_mm=3.0)
        except ValueError:
            return None, np.array(points)
        if not volume.inside(section.centroid)[0]:
            return None, np.array(points)
        points.append(section.centroid)
        tail = np.array(points[-4:])
        heading = _unit(tail[-1] - tail[0]) if len(tail) > 1 else heading
        above = (points[-1] - plane_centre) @ normal
        if above >= height:
            before = (points[-2] - plane_centre) @ normal
            t = (height - before) / max(above - before, 1e-6)
            at = points[-2] + t * (points[-1] - points[-2])
            try:
                return lumen_section(volume, at, heading, threshold, max_mm=35.0, gap_mm=3.0), np.array(points)
            except ValueError:
                return None, np.array(points)
    return None, np.array(points)


def calcium(volume: Volume, rm: rootmap.RootMap, threshold_hu: float, sector_of, z_top: float) -> dict:
    """Valve (per cusp) and LVOT calcium: voxels at or above ``threshold_hu`` inside the root's wall (1.5 mm
    margin) between the annular plane and ``z_top`` (valve) or up to 10 mm below the plane (LVOT).

    Volume by partial-volume integration: each calcium component's excess over the blood and leaflets round
    it, divided by its own peak excess, summed over the component grown by 2 voxels (a blurred nodule's full
    signal); the plain above-threshold volume is given too.
    """
    grid_points, index, image = _voxels_near(volume, rm, -10.0, z_top)
    if grid_points is None:
        return {"threshold_hu": _r(threshold_hu, 0), "valve_mm3": {c: 0.0 for c in CUSPS}, "lvot_mm3": 0.0}
    local = grid_points - rm.centre
    z = local @ rm.normal
    x, y = local @ rm.u, local @ rm.v
    rho, phi = np.hypot(x, y), np.mod(np.arctan2(y, x), 2 * math.pi)
    wall = rm.radii(z, phi)
    region = rho <= wall + 1.5
    bright = np.zeros(volume.image.shape, bool)
    hot = (image >= threshold_hu) & region
    bright[tuple(index[hot].T)] = True
    labelled, count = ndimage.label(bright, structure=np.ones((3, 3, 3)))
    voxel_mm3 = float(abs(np.linalg.det(volume.ijk_to_ras[:3, :3])))
    valve = {c: 0.0 for c in CUSPS}
    valve_threshold = {c: 0.0 for c in CUSPS}
    lvot, lvot_threshold = 0.0, 0.0
    objects = ndimage.find_objects(labelled)
    for label, box in enumerate(objects, start=1):
        if box is None:
            continue
        grown = tuple(slice(max(s.start - 4, 0), min(s.stop + 4, n)) for s, n in zip(box, labelled.shape))
        mask = labelled[grown] == label
        values = volume.image[grown]
        core = ndimage.binary_dilation(mask, iterations=2)
        shell = ndimage.binary_dilation(mask, iterations=4) & ~core & (values < threshold_hu)
        background = float(np.median(values[shell])) if shell.sum() > 10 else float(np.median(values[~core]))
        inside = np.sort(values[mask])
        peak = float(np.mean(inside[-max(1, len(inside) // 10):]))
        if peak - background < 50.0:
            continue
        integrated = float(np.sum(values[core & (values < 3000)] - background) / (peak - background)) * voxel_mm3
        integrated = max(integrated, 0.0)
        plain = float(mask.sum()) * voxel_mm3
        kji = np.argwhere(mask).mean(axis=0) + [s.start for s in grown]
        ras = volume.ijk_to_ras[:3, :3] @ kji[::-1] + volume.ijk_to_ras[:3, 3]
        height = (ras - rm.centre) @ rm.normal
        if height < 0.0:
            lvot += integrated
            lvot_threshold += plain
        else:
            cusp = sector_of(ras)
            valve[cusp] += integrated
            valve_threshold[cusp] += plain
    return {"threshold_hu": _r(threshold_hu, 0),
            "rule": f"{CALCIUM_FACTOR:g} × the contrast in the aortic root; volume by partial-volume integration "
                    "(threshold-only volume alongside)",
            "valve_mm3": {c: _r(v, 1) for c, v in valve.items()}, "valve_total_mm3": _r(sum(valve.values()), 1),
            "valve_threshold_mm3": {c: _r(v, 1) for c, v in valve_threshold.items()},
            "lvot_mm3": _r(lvot, 1), "lvot_threshold_mm3": _r(lvot_threshold, 1)}


def _voxels_near(volume: Volume, rm: rootmap.RootMap, z_low: float, z_high: float):
    """RAS, (k, j, i) and values of the voxels in the box round the root between two heights."""
    corners = []
    reach = float(np.nanmax(rm.wall)) + 3.0
    for z in (z_low, z_high):
        for phi in np.radians(np.arange(0, 360, 45)):
            corners.append(rm.centre + z * rm.normal + reach * rm.direction(phi))
    corners = np.array(corners)
    kji = volume.kji(corners).T
    low = np.maximum(np.floor(kji.min(axis=0)).astype(int), 0)
    high = np.minimum(np.ceil(kji.max(axis=0)).astype(int) + 1, volume.image.shape)
    if np.any(high <= low):
        return None, None, None
    k, j, i = np.meshgrid(*[np.arange(lo, hi) for lo, hi in zip(low, high)], indexing="ij")
    index = np.column_stack([k.ravel(), j.ravel(), i.ravel()])
    ras = index[:, ::-1] @ volume.ijk_to_ras[:3, :3].T + volume.ijk_to_ras[:3, 3]
    local_z = (ras - rm.centre) @ rm.normal
    keep = (local_z >= z_low) & (local_z <= z_high)
    return ras[keep], index[keep], volume.image[tuple(index[keep].T)]


def _section_image(volume: Volume, name: str, title: str, section: Section, half_mm: float = 25.0,
                   lines: dict | None = None) -> SectionImage:
    """The CT in the section's plane with its contour, its min and max diameters, and ``lines`` (RAS point
    pairs) projected into the plane."""
    pixel = 0.25
    pixels, u, v = sample_plane(volume, section.centre, section.normal, half_mm, pixel, section.u)
    m = section.measures
    centroid = np.asarray(m["centroid_2d"])
    extra = {}
    for key in ("min", "max"):
        direction = np.asarray(m[f"diameter_{key}_direction_2d"])
        extra[f"diameter {key}"] = np.array([centroid - 0.5 * m[f"diameter_{key}_mm"] * direction,
                                             centroid + 0.5 * m[f"diameter_{key}_mm"] * direction])
    for label, (a, b) in (lines or {}).items():
        extra[label] = np.array([[(p - section.centre) @ u, (p - section.centre) @ v] for p in (a, b)])
    return SectionImage(name, title, pixels, pixel, section.boundary_2d(), extra, centre=section.centre, u=u, v=v)


def _section_figures(section: Section) -> dict:
    keys = ("area_mm2", "perimeter_mm", "diameter_min_mm", "diameter_max_mm", "area_derived_diameter_mm",
            "perimeter_derived_diameter_mm")
    out = {k: _r(section.measures[k]) for k in keys}
    out["eccentricity_index"] = _r(section.measures["eccentricity_index"], 3)
    return out


def measure(inputs: PlanInputs) -> PlanResult:
    volume = inputs.volume
    given = {k: np.asarray(v, float) for k, v in inputs.landmarks.items()}
    notes: list[str] = []
    guess = choose_guess(volume, root.locate(inputs))
    aorta = inputs.mask("aorta")
    if aorta is not None and aorta.any() and not all(n in given for n in NADIRS):
        raw_levels = lumen_levels(volume, guess.centre)
        segment_centre, segment_normal = segment_plane(volume, aorta, guess, raw_levels.threshold_hu)
        volume = confined_to_root(volume, aorta, segment_centre, segment_normal)
        notes.append("the root's lumen was confined to the aorta segment (grown by "
                     f"{CONFINE_MM:g} mm) and the outflow below it, so rays do not cross into the chambers round it")
    levels = root_levels(volume, guess)
    threshold = levels.threshold_hu
    centre, normal = recentre_axis(volume, guess.centre, guess.direction, threshold)

    nadirs_given = [n for n in NADIRS if n in given]
    plane_rule = None
    if len(nadirs_given) == 3:
        points = np.array([given[n] for n in NADIRS])
        centre, normal = _plane(points, guess.direction)
        history = []
    else:
        try:
            _, hinges0, _, found_centre, found_normal, history = find_plane(volume, centre, normal, threshold)
            trouble = plane_trouble(hinges0, history, found_normal, guess)
        except ValueError as error:
            trouble = str(error)
        if trouble is None:
            centre, normal = found_centre, found_normal
        elif aorta is not None and aorta.any():
            centre, normal = segment_centre, segment_normal
            plane_rule = ("the proximal end of the aorta segment (its contact with the LV outflow lumen): the cusp "
                          f"hinge points were not found reliably ({trouble}); check and move the nadirs")
            notes.append(f"annular plane from {plane_rule}")
            history = []
        else:
            raise ValueError(f"the cusp hinge points were not found reliably ({trouble}): give the three nadirs in "
                             "--landmarks (nadir_right, nadir_left, nadir_non_coronary) or an aorta segmentation")
    heights = np.arange(-15.0, 45.0 + 1e-9, rootmap.HEIGHT_STEP_MM)
    rm = rootmap.build(volume, centre, normal, threshold, heights)
    excess = rootmap.excess_map(rm)
    hinges = rootmap.find_hinges(rm, excess, (-10.0, 35.0))
    found_ostia = rootmap.ostia(rm, hinges, 35.0)
    index_of, naming_rule = name_sinuses(rm, hinges, found_ostia)

    landmarks: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for cusp, name in zip(CUSPS, NADIRS):
        k = index_of[cusp]
        found = rm.point(hinges.nadir_heights[k], hinges.nadir_azimuths[k])
        landmarks[name], sources[name] = (given[name], "given") if name in given else (found, "found")
    if nadirs_given and len(nadirs_given) < 3:
        # an edited nadir moves the plane: remake the frame round the plane through the three
        centre, normal = _plane(np.array([landmarks[n] for n in NADIRS]), normal)
        centre = lumen_section(volume, centre, normal, threshold, max_mm=35.0, gap_mm=3.0).centroid
        rm = rootmap.build(volume, centre, normal, threshold, heights)
        excess = rootmap.excess_map(rm)
        hinges = rootmap.find_hinges(rm, excess, (-10.0, 35.0))
        found_ostia = rootmap.ostia(rm, hinges, 35.0)
    if plane_rule is not None:
        for name in NADIRS:  # the plane is the segment's: show the sinus hinge points found on it
            if sources[name] == "found":
                landmarks[name] = landmarks[name] - ((landmarks[name] - centre) @ normal) * normal
                sources[name] = "found (projected on the annular plane of the segment)"
    else:  # the plane is the reported nadirs' own, found or given
        centre, normal = _plane(np.array([landmarks[n] for n in NADIRS]), normal)

    def azimuth_of(point: np.ndarray) -> float:
        local = point - rm.centre
        return float(np.mod(math.atan2(local @ rm.v, local @ rm.u), 2 * math.pi))

    def height_of(point: np.ndarray) -> float:
        return float((np.asarray(point) - centre) @ normal)

    cusp_phi = {c: azimuth_of(landmarks[n]) for c, n in zip(CUSPS, NADIRS)}
    offset = float((rm.centre - centre) @ normal)  # map heights are relative to rm.centre
    lobe_top = rootmap.lobe_end(rm, excess, hinges)  # where the sinuses end, in map heights
    # commissures: between consecutive cusps, at the crown-fit height (tops of the hinge lines)
    pairs = (("right", "left"), ("left", "non_coronary"), ("non_coronary", "right"))
    for name, (a, b) in zip(COMMISSURES, pairs):
        phi = float(np.angle(np.exp(1j * cusp_phi[a]) + np.exp(1j * cusp_phi[b])))
        if abs(np.angle(np.exp(1j * (phi - cusp_phi[a])))) < math.radians(30):
            phi += math.pi  # the short way round between two cusps 120° apart
        tops = [crown[0] + crown[1] for crown in (hinges.crowns[index_of[a]], hinges.crowns[index_of[b]]) if crown]
        if tops:
            z, source = float(np.mean(tops)), "found"
        else:
            z, source = lobe_top, "found (hinge line not measurable: placed at the sinotubular junction)"
        point = rm.point(z, phi)
        landmarks[name], sources[name] = (given[name], "given") if name in given else (point, source)
    commissure_phi = {n: azimuth_of(landmarks[n]) for n in COMMISSURES}

    # --- annulus and LVOT
    annulus = lumen_section(volume, centre, normal, threshold, max_mm=35.0, gap_mm=3.0)
    annulus_centre = annulus.centroid
    depth = float(inputs.options.get("lvot_depth_mm", LVOT_DEPTH_MM))
    lvot = section_near(volume, annulus_centre, normal, -depth, threshold, "LVOT")

    # --- sinuses, STJ
    level = hinges.sinus_level + offset
    stj_height = float(np.clip(lobe_top + offset, level + 2.0, level + 25.0))
    stj = section_near(volume, annulus_centre, normal, stj_height, threshold, "sinotubular junction")
    sov = sov_diameters(rm, cusp_phi, commissure_phi, stj_height - offset)
    for cusp in CUSPS:
        sov[cusp]["height_mm"] = _r(sov[cusp]["height_mm"] + offset, 1)
    sov_section = section_near(volume, annulus_centre, normal, level, threshold, "sinus", max_mm=40.0)

    # --- ascending aorta at 40 mm above the annular plane
    ascending, aortic_path = track_aorta(volume, stj.centroid, normal, threshold, centre, normal,
                                         ASCENDING_HEIGHT_MM)
    if ascending is None:
        notes.append(f"the ascending aorta does not reach {ASCENDING_HEIGHT_MM:g} mm above the annulus in the image:"
                     " not measured")

    # --- coronary ostia (lower edges)
    cusp_of_index = {v: k for k, v in index_of.items()}
    for name, cusp in zip(OSTIA, ("left", "right")):
        if name in given:
            landmarks[name], sources[name] = given[name], "given"
            continue
        k = index_of[cusp]
        if k not in found_ostia:
            notes.append(f"no {cusp} coronary ostium found in the {cusp} sinus: place '{name}' by hand")
            continue
        hit = found_ostia[k]
        z = rootmap.refine_lower_edge(volume, rm, hit["azimuth"], hit["lower"], hit["upper"])
        landmarks[name], sources[name] = rm.point(z, hit["azimuth"]), "found"
    extra_ostia = [cusp_of_index[k] for k in found_ostia if cusp_of_index[k] == "non_coronary"]
    if extra_ostia:
        notes.append("a branch leaves the non-coronary sinus (check the sinus naming)")

    # --- valve size, VTC, sizing
    ann = _section_figures(annulus)
    tables = sizing.load_tables()
    suggestions = sizing.suggest(ann, tables)
    if inputs.valve_size_mm:
        valve_size, valve_rule = float(inputs.valve_size_mm), "given"
    else:
        first = next((s for s in suggestions if s["sizes_mm"]), None)
        if first:
            valve_size, valve_rule = float(max(first["sizes_mm"])), f"suggested {first['family']} size"
        else:
            valve_size, valve_rule = float(ann["area_derived_diameter_mm"]), "the area-derived annulus diameter"
    heights_out, vtc = {}, {}
    for name, side in zip(OSTIA, ("left", "right")):
        if name not in landmarks:
            heights_out[side], vtc[side] = None, None
            continue
        p = landmarks[name]
        heights_out[side] = _r(height_of(p))
        radial = p - annulus_centre - ((p - annulus_centre) @ normal) * normal
        vtc[side] = _r(float(np.linalg.norm(radial)) - 0.5 * valve_size)

    # --- calcium
    calcium_threshold = float(inputs.options.get("calcium_threshold_hu") or CALCIUM_FACTOR * levels.blood_hu)

    def sector_of(point: np.ndarray) -> str:
        phi = azimuth_of(point)
        return min(CUSPS, key=lambda c: abs(np.angle(np.exp(1j * (phi - cusp_phi[c])))))

    top = max(height_of(landmarks[n]) for n in COMMISSURES)
    calc = calcium(volume, rm, calcium_threshold, sector_of, top - offset)

    # --- angles
    angulation = math.degrees(math.acos(min(1.0, abs(float(normal[2])))))
    p = {c: landmarks[n] for c, n in zip(CUSPS, NADIRS)}
    coplanar = carm.in_plane_view(2.0 * p["right"] - p["left"] - p["non_coronary"], normal)
    overlap = carm.in_plane_view(p["left"] - p["right"], normal)
    coplanar["rule"] = "nadirs evenly spaced, right cusp in the middle (three-cusp coplanar view)"
    overlap["rule"] = "right and left cusps superimposed, non-coronary cusp apart (cusp-overlap view)"

    results = {
        "protocol": "tavr",
        "phase": inputs.phase_label,
        "threshold_hu": _r(threshold, 0), "threshold_rule": levels.rule,
        "root_found_from": guess.source, "sinus_naming": naming_rule,
        "annulus": {**ann, "plane": {"centre_ras_mm": [_r(v, 2) for v in annulus_centre],
                                     "normal": [_r(v, 4) for v in normal]},
                    "definition": plane_rule or "virtual basal ring: the plane through the three cusp nadirs (SCCT 2019)"},
        "lvot": {**_section_figures(lvot), "depth_mm": depth},
        "sov": {**{c: {"diameter_mm": sov[c]["diameter_mm"], "height_mm": sov[c]["height_mm"]} for c in CUSPS},
                "diameter_mean_mm": _r(np.mean([sov[c]["diameter_mm"] for c in CUSPS])),
                "definition": "cusp-to-commissure: deepest point of each sinus to the opposite commissure, largest"
                              " over the sinus heights"},
        "stj": {"height_mm": _r(stj_height, 1), "diameter_mm": _r(stj.measures["area_derived_diameter_mm"]),
                **{k: v for k, v in _section_figures(stj).items() if k != "eccentricity_index"},
                "definition": "narrowest section above the sinuses, perpendicular to the annulus normal; diameter "
                              "area-derived"},
        "ascending_aorta": None if ascending is None else {
            "height_mm": ASCENDING_HEIGHT_MM, "diameter_mm": _r(ascending.measures["area_derived_diameter_mm"]),
            **{k: v for k, v in _section_figures(ascending).items() if k != "eccentricity_index"}},
        "coronary_height_mm": heights_out,
        "valve_to_coronary_mm": {**vtc, "valve_size_mm": valve_size, "valve_size_rule": valve_rule,
                                 "risk_below_mm": VTC_RISK_MM,
                                 "at_risk": [s for s, d in vtc.items() if d is not None and d < VTC_RISK_MM]},
        "calcium": calc,
        "angulation_deg": _r(angulation, 1),
        "projections": {"coplanar": coplanar, "cusp_overlap": overlap, "s_curve": carm.s_curve(normal),
                        "convention": carm.CONVENTION},
        "sizing": suggestions,
        "landmarks": {name: [_r(v, 2) for v in point] for name, point in landmarks.items()},
        "edited": sorted(n for n, s in sources.items() if s == "given"),
        "plane_iterations": [{"turn_deg": _r(t, 3), "shift_mm": _r(s, 3)} for t, s in history],
    }
    derived = {"annulus_center": annulus_centre, "lvot_center": lvot.centroid, "stj_center": stj.centroid}
    if ascending is not None:
        derived["ascending_40mm"] = ascending.centroid
    curves = {"annulus": annulus.boundary_ras(), "lvot": lvot.boundary_ras(), "stj": stj.boundary_ras()}
    if len(aortic_path) > 1:
        curves["aortic_centerline"] = np.vstack([annulus_centre[None], aortic_path])
    sections = [
        _section_image(volume, "annulus", f"Annulus: area {ann['area_mm2']:.0f} mm², perimeter "
                       f"{ann['perimeter_mm']:.1f} mm", annulus),
        _section_image(volume, "lvot", f"LVOT {depth:g} mm below: area {lvot.measures['area_mm2']:.0f} mm²", lvot),
        _section_image(volume, "sov", f"Sinus of Valsalva: mean {results['sov']['diameter_mean_mm']:.1f} mm",
                       sov_section, 30.0, lines={f"SOV {c}": (sov[c]["sinus_point"], sov[c]["commissure_point"])
                                                 for c in CUSPS}),
        _section_image(volume, "stj", f"STJ {stj_height:.1f} mm above: {results['stj']['diameter_mm']:.1f} mm", stj),
    ]
    table = [("Annulus area", ann["area_mm2"], "mm²"), ("Annulus perimeter", ann["perimeter_mm"], "mm"),
             ("Annulus min diameter", ann["diameter_min_mm"], "mm"),
             ("Annulus max diameter", ann["diameter_max_mm"], "mm"),
             ("Area-derived diameter", ann["area_derived_diameter_mm"], "mm"),
             ("Perimeter-derived diameter", ann["perimeter_derived_diameter_mm"], "mm"),
             ("Eccentricity index", ann["eccentricity_index"], ""),
             (f"LVOT area ({depth:g} mm)", results["lvot"]["area_mm2"], "mm²"),
             ("LVOT perimeter", results["lvot"]["perimeter_mm"], "mm"),
             *[(f"SOV {c.replace('_', '-')} (cusp-to-commissure)", sov[c]["diameter_mm"], "mm") for c in CUSPS],
             ("SOV mean", results["sov"]["diameter_mean_mm"], "mm"),
             ("STJ height", results["stj"]["height_mm"], "mm"), ("STJ diameter", results["stj"]["diameter_mm"], "mm"),
             ("Ascending aorta (40 mm)", "" if ascending is None else results["ascending_aorta"]["diameter_mm"], "mm"),
             ("Left coronary height", "" if heights_out["left"] is None else heights_out["left"], "mm"),
             ("Right coronary height", "" if heights_out["right"] is None else heights_out["right"], "mm"),
             (f"VTC left ({valve_size:g} mm valve)", "" if vtc["left"] is None else vtc["left"], "mm"),
             (f"VTC right ({valve_size:g} mm valve)", "" if vtc["right"] is None else vtc["right"], "mm"),
             *[(f"Calcium {c.replace('_', '-')} cusp", calc["valve_mm3"][c], "mm³") for c in CUSPS],
             ("Calcium LVOT", calc["lvot_mm3"], "mm³"),
             ("Annular plane angulation", results["angulation_deg"], "°"),
             ("Coplanar view", coplanar["label"], ""), ("Cusp-overlap view", overlap["label"], "")]
    return PlanResult("tavr", results, {**landmarks, **derived},
                      {**sources, **{k: "derived" for k in derived}}, curves, sections, table, notes)
