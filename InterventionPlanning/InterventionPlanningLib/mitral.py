"""Mitral valve planning on cardiac CT (TEER and TMVR): the saddle and D-shaped annulus, mitral annular
calcification, the predicted neo-LVOT of a virtual valve, and the transseptal puncture height.

Definitions (``shared/reference/cardiac-ct.md`` §4.2):

* **Saddle annulus**: the closed 3D hinge line of the leaflets: a given curve, the rim of the left atrium–left
  ventricle contact of a label map, or a periodic cubic spline (chord-length parameter) through six landmarks
  in anatomical order: anterior horn, left trigone, anterolateral commissure, posterior horn, posteromedial
  commissure, right trigone.
* **D-shaped annulus** (Blanke P, Dvir D, Cheung A, et al. A simplified D-shaped model of the mitral annulus to
  facilitate CT-based sizing before transcatheter mitral valve implantation. J Cardiovasc Comput Tomogr
  2014;8:459–67): the posterior arc trigone → posterior horn → trigone closed by the straight trigone-to-trigone
  (TT) line, which leaves out the aorto-mitral continuity; projected onto the least-squares plane of the saddle
  (arc-length weighted). Reported: projected area and perimeter, area-derived diameter 2√(A/π),
  perimeter-derived diameter P/π, the intercommissural (IC) distance, the septal–lateral (SL) distance from the
  midpoint of the TT line perpendicular to it to the posterior annulus, TT, all in the projection plane; the
  saddle's 3D perimeter and projected area; the annulus height (extent of the saddle along the plane normal)
  and eccentricity 1 − SL/IC (Abdelghani et al. 2017; Dmean = (IC + SL)/2 is reported too).
* **Mitral annular calcification (MAC)**: voxels at or above blood + max(200 HU, 3·SD of blood) within
  ``MAC_BAND_MM`` of the saddle: arc (degrees subtended at the annulus centre in its plane, and % of the saddle
  length), the thickest chord through calcium on rays from the annulus outwards, volume, and whether it
  reaches a trigone.
* **Neo-LVOT** (Wang DD, Eng MH, Greenbaum AB, et al. Validating a prediction modeling tool for left
  ventricular outflow tract (LVOT) obstruction after transcatheter mitral valve replacement (TMVR). Catheter
  Cardiovasc Interv 2018;92:379–87): a virtual valve (cylinder, or frustum) coaxial with the annulus normal at
  the D-shape centroid; the contrast lumen less the valve in sections perpendicular to the LVOT centreline,
  every 0.5 mm from the aortic annulus to the LV cavity; the smallest area, flagged at ≤ 189.4 mm² (100 %
  sensitivity, 96.8 % specificity for obstruction) and below 200 mm² (the 1.7–2.0 cm² prohibitive range).
  Run it on the end-systolic phase: the caller picks the phase (``inputs.phase_label`` is reported).
* **Transseptal puncture height**: the perpendicular distance from the puncture point to the annulus plane
  (about 3.5–4.5 cm for TEER).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline
from scipy.spatial import cKDTree

from .model import PlanInputs, PlanResult, SectionImage
from .sections import Volume, lumen_levels, plane_basis, polygon_measures, sample_plane, smooth_periodic

PROTOCOL = "mitral"
#: The annulus landmarks, in anatomical order round the annulus.
LANDMARKS = ("mitral_anterior_horn", "mitral_trigone_left", "mitral_commissure_anterolateral",
             "mitral_posterior_horn", "mitral_commissure_posteromedial", "mitral_trigone_right")
OPTIONAL_LANDMARKS = ("transseptal_puncture", "aortic_annulus_center")
CURVE = "mitral_annulus"
#: Neo-LVOT thresholds, mm²: Wang 2018 (≤ 189.4 predicts obstruction), and the 2.0 cm² prohibitive bound.
NEO_LVOT_WANG_MM2 = 189.4
NEO_LVOT_LIMIT_MM2 = 200.0
SECTION_STEP_MM = 0.5
#: The neo-LVOT sections start this far below the aortic annulus centre (the hinge plane itself is the valve).
SECTION_START_MM = 1.0
SECTION_PIXEL_MM = 0.3
SECTION_HALF_MM = 30.0
#: Half-width of the band round the saddle searched for MAC, mm.
MAC_BAND_MM = 5.0
#: MAC within this arc length of a trigone reaches it, mm.
TRIGONE_REACH_MM = 3.0
#: The aorto-mitral continuity: annulus points with the aorta label within this distance outwards, mm.
CONTINUITY_MM = 8.0
#: Without an aorta label, the trigones are placed this far round from the anterior horn (degrees, an estimate).
TRIGONE_FALLBACK_DEG = 50.0
#: Horns are looked for this far either side of the anterior / posterior direction, degrees.
HORN_WINDOW_DEG = 30.0
#: The aortic valve lies anterior, superior and to the right of the mitral valve (RAS); used only as a last resort.
AORTIC_SIDE_PRIOR_RAS = np.array([0.3, 0.8, 0.5])
CARDIAC_SEGMENTATION_LABELS = {"la": 2, "lv": 3, "aorta": 6}


def measure(inputs: PlanInputs) -> PlanResult:
    """Mitral planning figures (protocol "mitral"); raises ValueError naming what to give when it cannot start."""
    volume = inputs.volume
    notes: list[str] = []
    masks = _chamber_masks(inputs)
    landmarks, sources, saddle, index, found_notes = _annulus_landmarks(inputs, masks)
    notes += found_notes
    annulus = _annulus(saddle, index, landmarks, masks, inputs)
    plane_centre, normal = annulus["centre"], annulus["normal"]
    for name in OPTIONAL_LANDMARKS:
        if name in inputs.landmarks:
            landmarks[name] = np.asarray(inputs.landmarks[name], float).reshape(3)
            sources[name] = "given"

    blood = _blood_stats(volume, annulus["d_centroid"] - 10.0 * normal)
    mac = _mac(volume, annulus, index, blood)
    try:
        levels = lumen_levels(volume, annulus["d_centroid"] - 10.0 * normal)
        threshold = levels.threshold_hu
        threshold_rule = levels.rule
    except ValueError as exc:
        threshold, threshold_rule = None, str(exc)
    tmvr, tmvr_extra = _tmvr(inputs, volume, annulus, masks, landmarks, sources, threshold, threshold_rule)
    if tmvr is None:
        notes.append(tmvr_extra["note"])
    else:
        notes.append("Neo-LVOT: measure the end-systolic phase (the predicted neo-LVOT is smallest then); "
                     f"this is phase {inputs.phase_label or 'as given'}.")

    transseptal = None
    if "transseptal_puncture" in landmarks:
        offset = float((landmarks["transseptal_puncture"] - plane_centre) @ normal)
        transseptal = abs(offset)
        if offset > 0:
            notes.append("The transseptal puncture point lies on the ventricular side of the annulus plane: check it.")

    d_shape = annulus["d_measures"]
    results = {
        "annulus": {
            "saddle_perimeter_mm": _r(annulus["saddle_perimeter"]),
            "saddle_area_mm2": _r(annulus["saddle_area"]),
            "d_shape": {"area_mm2": _r(d_shape["area_mm2"]), "perimeter_mm": _r(d_shape["perimeter_mm"]),
                        "area_derived_diameter_mm": _r(d_shape["area_derived_diameter_mm"]),
                        "perimeter_derived_diameter_mm": _r(d_shape["perimeter_derived_diameter_mm"]),
                        "centroid_ras_mm": _r(annulus["d_centroid"])},
            "intercommissural_mm": _r(annulus["ic"]),
            "septal_lateral_mm": _r(annulus["sl"]),
            "trigone_to_trigone_mm": _r(annulus["tt"]),
            "mean_diameter_mm": _r(0.5 * (annulus["ic"] + annulus["sl"])),
            "height_mm": _r(annulus["height"]),
            "eccentricity": _r(1.0 - annulus["sl"] / annulus["ic"], 4),
            "plane": {"centre_ras_mm": _r(plane_centre), "normal": _r(normal, 5)},
            "source": annulus["source"],
            "definition": "D-shape (Blanke 2014): posterior arc trigone→posterior horn→trigone closed by the TT line, "
                          "projected onto the least-squares plane of the saddle; SL from the TT midpoint ⟂ TT",
        },
        "mac": mac,
        "tmvr": tmvr,
        "transseptal_height_mm": _r(transseptal) if transseptal is not None else None,
        "phase": inputs.phase_label,
    }
    if tmvr is None:
        results["tmvr_note"] = tmvr_extra["note"]

    table = [("D-shaped annulus area", _r(d_shape["area_mm2"], 1), "mm²"),
             ("D-shaped annulus perimeter", _r(d_shape["perimeter_mm"], 1), "mm"),
             ("Area-derived diameter", _r(d_shape["area_derived_diameter_mm"], 1), "mm"),
             ("Perimeter-derived diameter", _r(d_shape["perimeter_derived_diameter_mm"], 1), "mm"),
             ("Saddle annulus perimeter (3D)", _r(annulus["saddle_perimeter"], 1), "mm"),
             ("Saddle annulus projected area", _r(annulus["saddle_area"], 1), "mm²"),
             ("Intercommissural distance", _r(annulus["ic"], 1), "mm"),
             ("Septal-lateral distance", _r(annulus["sl"], 1), "mm"),
             ("Trigone-to-trigone distance", _r(annulus["tt"], 1), "mm"),
             ("Annulus height", _r(annulus["height"], 1), "mm"),
             ("Eccentricity (1 − SL/IC)", _r(1.0 - annulus["sl"] / annulus["ic"], 2), ""),
             ("MAC arc", mac["arc_deg"], "°"),
             ("MAC share of the annulus", mac["arc_percent"], "%"),
             ("MAC maximum thickness", mac["max_thickness_mm"], "mm"),
             ("MAC volume", mac["volume_mm3"], "mm³"),
             ("MAC reaches a trigone", "yes" if mac["reaches_trigone"] else "no", "")]
    if tmvr is not None:
        table += [("Virtual valve diameter", tmvr["valve_diameter_mm"], "mm"),
                  ("Virtual valve height", tmvr["valve_height_mm"], "mm"),
                  ("Predicted neo-LVOT (minimum)", tmvr["neo_lvot_min_area_mm2"], "mm²"),
                  ("Neo-LVOT minimum below the aortic annulus", tmvr["position_mm"], "mm"),
                  ("Neo-LVOT ≤ 189.4 mm² (Wang 2018)", "yes" if tmvr["flagged"] else "no", "")]
    if transseptal is not None:
        table.append(("Transseptal puncture height", _r(transseptal, 1), "mm"))

    curves = {"mitral_saddle_annulus": annulus["saddle"], "mitral_d_shape": annulus["d_ras"],
              "mitral_tt_line": np.array([annulus["tl_ras"], annulus["tr_ras"]])}
    sections = [_annulus_section(volume, annulus)]
    if tmvr is not None:
        curves["neo_lvot_centreline"] = tmvr_extra["centreline"]
        sections.append(tmvr_extra["section"])
    ordered = {name: landmarks[name] for name in LANDMARKS}
    ordered.update({name: landmarks[name] for name in OPTIONAL_LANDMARKS if name in landmarks})
    notes.append(f"MAC threshold {mac['threshold_hu']:.0f} HU: {mac['rule']}.")
    return PlanResult(protocol=PROTOCOL, results=results, landmarks=ordered, landmark_sources=sources,
                      curves=curves, sections=sections, table=table, notes=notes)


# ---------------------------------------------------------------------------------------------- labels


def _chamber_masks(inputs: PlanInputs) -> dict:
    """Left atrium, left ventricle and aorta masks from the label map (names, or CardiacSegmentation numbering)."""
    if inputs.labels is None:
        return {}
    labels = np.asarray(inputs.labels)
    names = {int(v): str(n).lower() for v, n in inputs.label_names.items()}
    excluded = ("myocard", "wall", "muscle", "append", "valve", "calc")

    def chosen(test):
        return [v for v, n in names.items() if test(n) and not any(x in n for x in excluded)]

    if names:
        values = {"la": chosen(lambda n: "left" in n and "atri" in n),
                  "lv": chosen(lambda n: "left" in n and "ventric" in n),
                  "aorta": chosen(lambda n: "aort" in n)}
    else:
        present = set(np.unique(labels).tolist())
        values = {k: [v] for k, v in CARDIAC_SEGMENTATION_LABELS.items() if v in present}
    masks = {}
    for key, vals in values.items():
        if vals:
            mask = np.isin(labels, vals)
            if mask.any():
                masks[key] = mask
    return masks


def _kji_to_ras(kji: np.ndarray, ijk_to_ras: np.ndarray) -> np.ndarray:
    ijk = np.atleast_2d(np.asarray(kji, float))[:, ::-1]
    return ijk @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]


def _sample_mask(mask: np.ndarray, volume: Volume, ras: np.ndarray) -> np.ndarray:
    kji = volume.kji(ras)
    return ndimage.map_coordinates(mask.astype(np.uint8), kji, order=0, mode="constant", cval=0) > 0


# ---------------------------------------------------------------------------------------------- landmarks


def _missing_message(missing: list[str]) -> str:
    return ("the mitral protocol needs the annulus landmarks " + ", ".join(LANDMARKS) + f" (missing: {', '.join(missing)})"
            ", or a label map with the left atrium and the left ventricle to find them")


def _annulus_landmarks(inputs: PlanInputs, masks: dict):
    """The six landmarks (given, or found from the labels), their sources, the saddle curve and its landmark indices."""
    given = {name: np.asarray(inputs.landmarks[name], float).reshape(3) for name in LANDMARKS if name in inputs.landmarks}
    missing = [name for name in LANDMARKS if name not in given]
    curve = inputs.curves.get(CURVE)
    notes: list[str] = []
    found: dict[str, np.ndarray] = {}
    rim = None
    if missing:
        if "la" not in masks or "lv" not in masks:
            raise ValueError(_missing_message(missing))
        rim_curve = None if curve is None else _resample_closed(np.asarray(curve, float), 0.5)
        found, rim, found_notes = _landmarks_from_labels(inputs, masks, rim_curve)
        notes += found_notes
    landmarks = {name: given.get(name, found.get(name)) for name in LANDMARKS}
    sources = {name: ("given" if name in given else "found") for name in LANDMARKS}
    if curve is not None:
        saddle, index = _curve_with_landmarks(_resample_closed(np.asarray(curve, float), 0.25), landmarks)
        notes.append("Saddle annulus: the given curve.")
    elif not given and rim is not None:
        saddle, index = _curve_with_landmarks(rim, landmarks)
        notes.append("Saddle annulus: the rim of the left atrium–left ventricle contact of the label map.")
    else:
        saddle, index = _spline_saddle(landmarks)
    return landmarks, sources, saddle, index, notes


def _spline_saddle(landmarks: dict) -> tuple[np.ndarray, dict]:
    """Periodic cubic spline (chord-length parameter) through the six landmarks in anatomical order."""
    points = np.array([landmarks[name] for name in LANDMARKS], float)
    closed = np.vstack([points, points[:1]])
    chords = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    if np.any(chords < 0.5):
        raise ValueError("two neighbouring mitral landmarks coincide: place the six annulus landmarks apart")
    t = np.concatenate([[0.0], np.cumsum(chords)])
    spline = CubicSpline(t, closed, bc_type="periodic")
    per = 120
    params = np.concatenate([np.linspace(t[i], t[i + 1], per, endpoint=False) for i in range(6)])
    return spline(params), {name: k * per for k, name in enumerate(LANDMARKS)}


def _resample_closed(points: np.ndarray, step: float) -> np.ndarray:
    closed = np.vstack([points, points[:1]])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    count = max(16, int(math.ceil(arc[-1] / step)))
    s = np.linspace(0.0, arc[-1], count, endpoint=False)
    return np.stack([np.interp(s, arc, closed[:, a]) for a in range(3)], axis=1)


def _curve_with_landmarks(curve: np.ndarray, landmarks: dict) -> tuple[np.ndarray, dict]:
    """The closed curve starting at the anterior horn and running towards the left trigone, with the landmark indices
    (each landmark moved onto its nearest curve point)."""
    tree = cKDTree(curve)
    start = int(tree.query(landmarks[LANDMARKS[0]])[1])
    curve = np.roll(curve, -start, axis=0)
    index = {name: int(cKDTree(curve).query(landmarks[name])[1]) for name in LANDMARKS}
    order = [index[name] for name in LANDMARKS[1:]]
    if not all(a < b for a, b in zip(order, order[1:])):
        curve = np.vstack([curve[:1], curve[1:][::-1]])
        index = {name: int(cKDTree(curve).query(landmarks[name])[1]) for name in LANDMARKS}
        order = [index[name] for name in LANDMARKS[1:]]
        if not all(a < b for a, b in zip(order, order[1:])):
            raise ValueError("the mitral landmarks are not in anatomical order round the annulus curve (anterior horn, "
                             "left trigone, anterolateral commissure, posterior horn, posteromedial commissure, right "
                             "trigone)")
    index[LANDMARKS[0]] = 0
    curve = curve.copy()
    for name in LANDMARKS:
        curve[index[name]] = landmarks[name]
    return curve, index


def _landmarks_from_labels(inputs: PlanInputs, masks: dict, curve: np.ndarray | None):
    """The annulus as the rim of the LA–LV contact, and the six landmarks on it."""
    volume = inputs.volume
    la, lv = masks["la"], masks["lv"]
    notes = []
    both = np.argwhere(la | lv)
    lo = np.maximum(both.min(axis=0) - 2, 0)
    hi = both.max(axis=0) + 3
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    touching = lv[box] & ndimage.binary_dilation(la[box])
    points = _kji_to_ras(np.argwhere(touching) + lo, volume.ijk_to_ras)
    if len(points) < 30:
        raise ValueError("the left atrium and left ventricle labels do not touch, so the mitral annulus cannot be "
                         "found: give the annulus landmarks " + ", ".join(LANDMARKS))
    lv_centroid = _kji_to_ras(np.argwhere(lv[box]).mean(axis=0) + lo, volume.ijk_to_ras)[0]
    centre = points.mean(axis=0)
    normal = np.linalg.svd(points - centre, full_matrices=False)[2][-1]
    if normal @ (lv_centroid - centre) < 0:
        normal = -normal
    u, v = plane_basis(normal)
    if curve is None:
        axes = volume.ijk_to_ras[:3, :3] / np.linalg.norm(volume.ijk_to_ras[:3, :3], axis=0)
        curve = _contact_rim(points, centre, normal, u, v, volume.spacing, axes.T @ normal)
        notes.append("Annulus found as the rim of the left atrium–left ventricle contact of the label map.")
    projected = np.column_stack([(curve - centre) @ u, (curve - centre) @ v])
    measures = polygon_measures(projected)
    c2 = np.array(measures["centroid_2d"])
    azimuth = np.arctan2(projected[:, 1] - c2[1], projected[:, 0] - c2[0])
    height = (curve - centre) @ normal
    outward = _outward_2d(projected, c2)

    # aorto-mitral continuity: annulus points with the aorta outwards of them (in the plane, up to 60° atrial)
    continuity = None
    if "aorta" in masks:
        steps = np.arange(0.5, CONTINUITY_MM + 1e-9, 0.5)
        hits = np.zeros(len(curve), bool)
        for elevation in np.radians([0.0, 20.0, 40.0, 60.0]):
            direction = (math.cos(elevation) * (outward[:, :1] * u + outward[:, 1:] * v) - math.sin(elevation) * normal)
            probe = curve[:, None, :] + steps[None, :, None] * direction[:, None, :]
            hits |= _sample_mask(masks["aorta"], volume, probe).any(axis=1)
        continuity = _longest_run(hits)
    if continuity is not None:
        first, last = continuity
        span = (last - first) % len(curve)
        middle = (first + span // 2) % len(curve)
        anterior = projected[middle] - c2
        source = f"the aorto-mitral continuity (annulus points with the aorta label within {CONTINUITY_MM:g} mm outwards)"
    else:
        if "aortic_annulus_center" in inputs.landmarks:
            target = np.asarray(inputs.landmarks["aortic_annulus_center"], float) - centre
            source = "the aortic annulus centre"
        elif "aorta" in masks:
            target = _kji_to_ras(np.argwhere(masks["aorta"]).mean(axis=0), volume.ijk_to_ras)[0] - centre
            source = "the aorta label"
        else:
            target = AORTIC_SIDE_PRIOR_RAS
            source = "the usual anatomy (aortic valve anterior, superior and rightward of the mitral valve)"
            notes.append("No aorta label or aortic annulus centre: the anterior (aortic) side of the annulus is assumed "
                         "from the usual anatomy; check the horns and trigones.")
        anterior = np.array([target @ u, target @ v]) - c2
    anterior /= np.linalg.norm(anterior)
    anterior_angle = math.atan2(anterior[1], anterior[0])

    found = {}
    i_ah = _horn(azimuth, height, anterior_angle)
    i_ph = _horn(azimuth, height, anterior_angle + math.pi)
    long_axis = _principal_axis(projected - c2)
    lateral_3d = np.cross(anterior[0] * u + anterior[1] * v, normal)  # anterior × normal: the anterolateral side
    lateral = np.array([lateral_3d @ u, lateral_3d @ v])
    if long_axis @ lateral < 0:
        long_axis = -long_axis
    angle_al = math.atan2(long_axis[1], long_axis[0])
    i_al = int(np.argmin(np.abs(np.angle(np.exp(1j * (azimuth - angle_al))))))
    i_pm = int(np.argmin(np.abs(np.angle(np.exp(1j * (azimuth - angle_al - math.pi))))))
    if continuity is not None:
        ends = [continuity[0], continuity[1]]
        side = [(projected[e] - c2) @ lateral for e in ends]
        i_tl, i_tr = (ends[0], ends[1]) if side[0] >= side[1] else (ends[1], ends[0])
        notes.append(f"Trigones found at the ends of {source}.")
    else:
        angle_ah = azimuth[i_ah]
        sign = 1.0 if np.cross([math.cos(angle_ah), math.sin(angle_ah)], lateral) < 0 else -1.0
        i_tl = int(np.argmin(np.abs(np.angle(np.exp(1j * (azimuth - angle_ah + sign * math.radians(TRIGONE_FALLBACK_DEG)))))))
        i_tr = int(np.argmin(np.abs(np.angle(np.exp(1j * (azimuth - angle_ah - sign * math.radians(TRIGONE_FALLBACK_DEG)))))))
        if (projected[i_tl] - c2) @ lateral < (projected[i_tr] - c2) @ lateral:
            i_tl, i_tr = i_tr, i_tl
        notes.append(f"No aorta label: the trigones are estimated {TRIGONE_FALLBACK_DEG:g}° either side of the anterior "
                     "horn; give mitral_trigone_left and mitral_trigone_right for a D-shape of your own.")
    for name, i in zip(LANDMARKS, (i_ah, i_tl, i_al, i_ph, i_pm, i_tr)):
        found[name] = curve[i].copy()
    return found, curve, notes


def _horn(azimuth: np.ndarray, height: np.ndarray, direction: float) -> int:
    """The highest (most atrial) point of the saddle within ``HORN_WINDOW_DEG`` of a direction. The saddle is the
    second harmonic of the height round the annulus; its top is flat, so the single highest sample wanders with
    voxel noise: the horn is taken where the height, low-passed to that harmonic, is highest in the window."""
    grid = np.linspace(-math.pi, math.pi, 360, endpoint=False)
    order = np.argsort(azimuth)
    profile = np.interp(grid, azimuth[order], height[order], period=2 * math.pi)
    smooth = smooth_periodic(profile, 2)
    offset = np.angle(np.exp(1j * (grid - direction)))
    window = np.abs(offset) <= math.radians(HORN_WINDOW_DEG)
    best = grid[window][np.argmin(smooth[window])]
    return int(np.argmin(np.abs(np.angle(np.exp(1j * (azimuth - best))))))


def _contact_rim(points, centre, normal, u, v, spacing, normal_in_voxels, bins: int = 180) -> np.ndarray:
    """The outer edge of the contact surface: its largest radius per azimuth about the projected centroid (plus half
    a voxel, voxel centres lying inside the boundary), at the height of the contact near that edge; smoothed."""
    q = np.column_stack([(points - centre) @ u, (points - centre) @ v])
    h = (points - centre) @ normal
    c2 = q.mean(axis=0)
    rel = q - c2
    angle = np.arctan2(rel[:, 1], rel[:, 0])
    radius = np.hypot(rel[:, 0], rel[:, 1])
    slot = np.minimum(((angle + math.pi) / (2 * math.pi) * bins).astype(int), bins - 1)
    r_max = np.full(bins, np.nan)
    order = np.argsort(slot)
    starts = np.searchsorted(slot[order], np.arange(bins + 1))
    heights = np.full(bins, np.nan)
    for b in range(bins):
        members = order[starts[b]:starts[b + 1]]
        if len(members):
            r_max[b] = radius[members].max()
            rim = members[radius[members] >= r_max[b] - 0.8]
            heights[b] = h[rim].mean()
    r_good = np.isfinite(r_max)
    filled = np.interp(np.arange(bins), np.flatnonzero(r_good), r_max[r_good], period=bins)
    median = ndimage.median_filter(filled, size=15, mode="wrap")
    r_max[np.abs(filled - median) > 3.0] = np.nan
    r_smooth = smooth_periodic(r_max, 8) + 0.5 * spacing
    # the contact voxels lie on the ventricular side of the interface: on average half a voxel step along the normal
    h_smooth = smooth_periodic(heights, 8) - 0.5 * spacing * float(np.max(np.abs(normal_in_voxels)))
    centres = -math.pi + (np.arange(bins) + 0.5) * 2 * math.pi / bins
    phi = np.linspace(-math.pi, math.pi, 360, endpoint=False)
    r = np.interp(phi, centres, r_smooth, period=2 * math.pi)
    z = np.interp(phi, centres, h_smooth, period=2 * math.pi)
    xy = c2 + np.column_stack([r * np.cos(phi), r * np.sin(phi)])
    return centre + xy[:, :1] * u + xy[:, 1:] * v + z[:, None] * normal


def _principal_axis(xy: np.ndarray) -> np.ndarray:
    """The major axis of the second moments of the region a closed 2D polygon encloses (about the origin)."""
    x, y = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    sign = 1.0 if cross.sum() >= 0 else -1.0
    xx = sign * (cross * (x * x + x * x1 + x1 * x1)).sum() / 12.0
    yy = sign * (cross * (y * y + y * y1 + y1 * y1)).sum() / 12.0
    xy_ = sign * (cross * (x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y)).sum() / 24.0
    return np.linalg.eigh(np.array([[xx, xy_], [xy_, yy]]))[1][:, 1]


def _outward_2d(xy: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """Unit in-plane normals of a closed 2D curve, pointing away from ``centroid``."""
    tangent = np.roll(xy, -1, axis=0) - np.roll(xy, 1, axis=0)
    normal = np.column_stack([tangent[:, 1], -tangent[:, 0]])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    flip = ((xy - centroid) * normal).sum(axis=1) < 0
    normal[flip] *= -1.0
    return normal


def _longest_run(flags: np.ndarray) -> tuple[int, int] | None:
    """First and last index of the longest circular run of True (None when there is none, or all are True)."""
    n = len(flags)
    if not flags.any() or flags.all():
        return None
    start = int(np.argmin(flags))  # a False: runs do not wrap past it
    rolled = np.roll(flags, -start)
    best, best_len, run_start = None, 0, None
    for i, value in enumerate(np.append(rolled, False)):
        if value and run_start is None:
            run_start = i
        elif not value and run_start is not None:
            if i - run_start > best_len:
                best, best_len = (run_start, i - 1), i - run_start
            run_start = None
    if best is None or best_len < 3:
        return None
    return (best[0] + start) % n, (best[1] + start) % n


# ---------------------------------------------------------------------------------------------- annulus


def _annulus(saddle: np.ndarray, index: dict, landmarks: dict, masks: dict, inputs: PlanInputs) -> dict:
    """Plane, D-shape and distances of the saddle annulus."""
    steps = np.linalg.norm(np.roll(saddle, -1, axis=0) - saddle, axis=1)
    weights = 0.5 * (steps + np.roll(steps, 1))
    centre = (saddle * weights[:, None]).sum(axis=0) / weights.sum()
    covariance = ((saddle - centre) * weights[:, None]).T @ (saddle - centre)
    normal = np.linalg.eigh(covariance)[1][:, 0]
    horns = 0.5 * (landmarks["mitral_anterior_horn"] + landmarks["mitral_posterior_horn"])
    commissures = 0.5 * (landmarks["mitral_commissure_anterolateral"] + landmarks["mitral_commissure_posteromedial"])
    if "lv" in masks:
        towards = _kji_to_ras(np.argwhere(masks["lv"]).mean(axis=0), inputs.ijk_to_ras)[0] - centre
        source = "towards the left ventricle label"
    elif abs((commissures - horns) @ normal) > 0.5:
        towards = commissures - horns  # the horns are the atrial high points of the saddle
        source = "from the horns (atrial) towards the commissures"
    elif "transseptal_puncture" in inputs.landmarks:
        towards = centre - np.asarray(inputs.landmarks["transseptal_puncture"], float)
        source = "away from the transseptal puncture (atrial)"
    else:
        towards = normal
        source = "undetermined (flat annulus, no labels)"
    if normal @ towards < 0:
        normal = -normal
    ic_axis = landmarks["mitral_commissure_anterolateral"] - landmarks["mitral_commissure_posteromedial"]
    u, v = plane_basis(normal, ic_axis)

    def flat(points):
        points = np.atleast_2d(points)
        return np.column_stack([(points - centre) @ u, (points - centre) @ v])

    i_tl, i_tr = index["mitral_trigone_left"], index["mitral_trigone_right"]
    arc = saddle[i_tl:i_tr + 1]
    d_2d = flat(arc)
    d_measures = polygon_measures(d_2d)
    saddle_2d = flat(saddle)
    saddle_area = polygon_measures(saddle_2d)["area_mm2"]
    tl, tr = d_2d[0], d_2d[-1]
    ic = float(np.linalg.norm(flat(landmarks["mitral_commissure_anterolateral"])[0]
                              - flat(landmarks["mitral_commissure_posteromedial"])[0]))
    tt = float(np.linalg.norm(tl - tr))
    middle = 0.5 * (tl + tr)
    across = np.array([-(tr - tl)[1], (tr - tl)[0]]) / max(tt, 1e-9)
    if (flat(landmarks["mitral_posterior_horn"])[0] - middle) @ across < 0:
        across = -across
    sl = _ray_hit(middle, across, d_2d)
    heights = (saddle - centre) @ normal
    cx, cy = d_measures["centroid_2d"]
    d_centroid = centre + cx * u + cy * v
    d_closed = np.vstack([d_2d, d_2d[:1]])
    return {"centre": centre, "normal": normal, "u": u, "v": v, "saddle": saddle, "saddle_2d": saddle_2d,
            "saddle_perimeter": float(steps.sum()), "saddle_area": float(saddle_area), "d_2d": d_2d,
            "d_measures": d_measures, "d_centroid": d_centroid, "ic": ic, "tt": tt, "sl": sl,
            "height": float(heights.max() - heights.min()), "tl_ras": centre + tl[0] * u + tl[1] * v,
            "tr_ras": centre + tr[0] * u + tr[1] * v, "d_ras": centre + d_closed[:, :1] * u + d_closed[:, 1:] * v,
            "tt_middle_2d": middle, "across_2d": across, "source": f"normal {source}"}


def _ray_hit(origin: np.ndarray, direction: np.ndarray, polyline: np.ndarray) -> float:
    """Distance along a 2D ray to its farthest crossing of an open polyline (the posterior arc)."""
    a, b = polyline[:-1], polyline[1:]
    e = b - a
    denominator = direction[0] * e[:, 1] - direction[1] * e[:, 0]
    w = a - origin
    ok = np.abs(denominator) > 1e-12
    t = np.where(ok, (w[:, 0] * e[:, 1] - w[:, 1] * e[:, 0]) / np.where(ok, denominator, 1.0), np.nan)
    s = np.where(ok, (w[:, 0] * direction[1] - w[:, 1] * direction[0]) / np.where(ok, denominator, 1.0), np.nan)
    hit = ok & (s >= 0) & (s <= 1) & (t > 0)
    if not hit.any():
        raise ValueError("the septal-lateral line from the TT midpoint does not meet the posterior annulus: check the "
                         "mitral landmarks")
    return float(t[hit].max())


# ---------------------------------------------------------------------------------------------- MAC


def _blood_stats(volume: Volume, point: np.ndarray, radius_mm: float = 4.0) -> dict:
    """Median and robust SD (1.4826·MAD) of the voxels within ``radius_mm`` of a point in the blood pool."""
    centre = volume.kji(np.asarray(point, float)).reshape(3)
    spacing = np.linalg.norm(volume.ijk_to_ras[:3, :3], axis=0)[::-1]
    reach = np.ceil(radius_mm / spacing).astype(int)
    lo = np.maximum(np.floor(centre).astype(int) - reach, 0)
    hi = np.minimum(np.ceil(centre).astype(int) + reach + 1, volume.image.shape)
    if np.any(hi <= lo):
        raise ValueError("the blood pool above the mitral annulus lies outside the image")
    block = volume.image[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    kji = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
    ras = _kji_to_ras(kji.reshape(-1, 3), volume.ijk_to_ras)
    values = block.reshape(-1)[np.linalg.norm(ras - point, axis=1) <= radius_mm]
    median = float(np.median(values))
    return {"blood_hu": median, "sd_hu": float(1.4826 * np.median(np.abs(values - median)))}


def _mac(volume: Volume, annulus: dict, index: dict, blood: dict) -> dict:
    threshold = blood["blood_hu"] + max(200.0, 3.0 * blood["sd_hu"])
    rule = (f"contrast blood above the annulus ({blood['blood_hu']:.0f} HU, SD {blood['sd_hu']:.0f} HU) + max(200, 3·SD) "
            f"HU, within {MAC_BAND_MM:g} mm of the saddle annulus")
    saddle = annulus["saddle"]
    step = 0.5
    curve = _resample_closed(saddle, step)
    count = len(curve)
    normal, u, v = annulus["normal"], annulus["u"], annulus["v"]
    flat = np.column_stack([(curve - annulus["centre"]) @ u, (curve - annulus["centre"]) @ v])
    centroid = np.array(polygon_measures(annulus["saddle_2d"])["centroid_2d"])
    azimuth = np.arctan2(flat[:, 1] - centroid[1], flat[:, 0] - centroid[0])
    empty = {"threshold_hu": _r(threshold, 0), "rule": rule, "arc_deg": 0.0, "arc_percent": 0.0,
             "max_thickness_mm": 0.0, "volume_mm3": 0.0, "reaches_trigone": False}
    # voxels of a box round the band, above the threshold, within the band
    corners = np.array([curve.min(axis=0) - MAC_BAND_MM - 1.0, curve.max(axis=0) + MAC_BAND_MM + 1.0])
    box = np.array([[a, b, c] for a in corners[:, 0] for b in corners[:, 1] for c in corners[:, 2]])
    kji = volume.kji(box).T
    lo = np.maximum(np.floor(kji.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(kji.max(axis=0)).astype(int) + 1, volume.image.shape)
    if np.any(hi <= lo):
        return empty
    block = volume.image[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    bright = np.argwhere(block >= threshold)
    if len(bright) == 0:
        return empty
    ras = _kji_to_ras(bright + lo, volume.ijk_to_ras)
    distance, nearest = cKDTree(curve).query(ras)
    keep = distance <= MAC_BAND_MM
    mask = np.zeros(block.shape, bool)
    mask[tuple(bright[keep].T)] = True
    parts, n_parts = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if n_parts == 0:
        return empty
    sizes = np.bincount(parts.ravel())
    big = np.flatnonzero(sizes >= 3)
    big = big[big > 0]
    accepted = np.isin(parts[tuple(bright.T)], big) & keep
    if not accepted.any():
        return empty
    voxel_volume = abs(float(np.linalg.det(volume.ijk_to_ras[:3, :3])))
    marked = np.zeros(count, bool)
    marked[nearest[accepted]] = True
    tripled = ndimage.binary_closing(np.tile(marked, 3), structure=np.ones(int(round(2.0 / step)) + 1))
    marked = tripled[count:2 * count] | marked
    forward = np.abs(np.angle(np.exp(1j * (np.roll(azimuth, -1) - azimuth))))
    cell = 0.5 * (forward + np.roll(forward, 1))  # the angle each curve point stands for
    arc_deg = float(np.degrees(cell[marked].sum()))
    # thickness: the longest chord above the threshold on rays from the annulus outwards (±60° off the plane)
    outward = _outward_2d(flat, centroid)
    out3 = outward[:, :1] * u + outward[:, 1:] * v
    where = np.flatnonzero(marked)
    t = np.arange(0.0, MAC_BAND_MM + 2.0 + 1e-9, 0.1)
    thickness = 0.0
    for elevation in np.radians(np.arange(-60.0, 60.1, 10.0)):
        direction = math.cos(elevation) * out3[where] + math.sin(elevation) * normal
        values = volume.sample(curve[where, None, :] + t[None, :, None] * direction[:, None, :])
        thickness = max(thickness, _longest_true_run(values >= threshold) * 0.1)
    tl = _nearest_index(curve, saddle[index["mitral_trigone_left"]])
    tr = _nearest_index(curve, saddle[index["mitral_trigone_right"]])
    reach = int(round(TRIGONE_REACH_MM / step))
    ring = np.arange(count)
    reaches = bool(any(marked[np.abs(((ring - i + count // 2) % count) - count // 2) <= reach].any() for i in (tl, tr)))
    return {"threshold_hu": _r(threshold, 0), "rule": rule, "arc_deg": _r(arc_deg, 1),
            "arc_percent": _r(100.0 * marked.sum() / count, 1), "max_thickness_mm": _r(thickness, 1),
            "volume_mm3": _r(accepted.sum() * voxel_volume, 1), "reaches_trigone": reaches}


def _nearest_index(curve: np.ndarray, point: np.ndarray) -> int:
    return int(np.argmin(np.linalg.norm(curve - point, axis=1)))


def _longest_true_run(flags: np.ndarray) -> int:
    """Length of the longest run of True along the last axis, over all rows."""
    best = 0
    for row in np.atleast_2d(flags):
        padded = np.concatenate([[0], row.astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(padded))
        if len(edges):
            best = max(best, int((edges[1::2] - edges[::2]).max()))
    return best


# ---------------------------------------------------------------------------------------------- TMVR


class _Valve:
    """The virtual valve: a cylinder (or frustum) about the annulus normal through the D-shape centroid."""

    def __init__(self, centre, normal, diameter, height, fraction, top_diameter=None):
        self.centre, self.normal = np.asarray(centre, float), np.asarray(normal, float)
        self.t_top, self.t_bottom = -(1.0 - fraction) * height, fraction * height
        self.r_bottom = 0.5 * diameter
        self.r_top = 0.5 * (top_diameter if top_diameter else diameter)

    def radius(self, t):
        w = (np.asarray(t) - self.t_top) / (self.t_bottom - self.t_top)
        return self.r_top + (self.r_bottom - self.r_top) * w

    def contains(self, points: np.ndarray) -> np.ndarray:
        q = points - self.centre
        t = q @ self.normal
        rho = np.linalg.norm(q - t[..., None] * self.normal, axis=-1)
        return (t >= self.t_top) & (t <= self.t_bottom) & (rho <= self.radius(t))


def _tmvr(inputs, volume, annulus, masks, landmarks, sources, threshold, threshold_rule):
    options = inputs.options
    diameter = float(inputs.valve_size_mm or annulus["d_measures"]["area_derived_diameter_mm"])
    height = float(options.get("valve_height_mm", 20.0))
    fraction = float(options.get("valve_ventricular_fraction", 0.8))
    top = options.get("valve_top_diameter_mm")
    if not (0.0 <= fraction <= 1.0 and height > 0 and diameter > 0):
        raise ValueError("valve_height_mm and the valve size must be positive, valve_ventricular_fraction within 0–1")
    normal = annulus["normal"]
    aortic = landmarks.get("aortic_annulus_center")
    if aortic is None and "aorta" in masks and "lv" in masks:
        touching = masks["lv"] & ndimage.binary_dilation(masks["aorta"])
        if touching.sum() >= 10:
            aortic = _kji_to_ras(np.argwhere(touching).mean(axis=0), inputs.ijk_to_ras)[0]
            landmarks["aortic_annulus_center"] = aortic
            sources["aortic_annulus_center"] = "found"
    if aortic is None:
        return None, {"note": "Neo-LVOT not predicted: give aortic_annulus_center (the centre of the aortic annulus) "
                              "or a label map with the aorta and the left ventricle."}
    if threshold is None:
        return None, {"note": f"Neo-LVOT not predicted: no contrast lumen ({threshold_rule})."}
    valve = _Valve(annulus["d_centroid"], normal, diameter, height, fraction, top)
    cavity, cavity_source = _lv_cavity_centre(volume, annulus, masks, threshold, valve)
    axis = cavity - aortic
    length = float(np.linalg.norm(axis))
    if length < SECTION_START_MM + 5.0:
        return None, {"note": "Neo-LVOT not predicted: the aortic annulus centre is too close to the LV cavity centre."}
    direction = axis / length
    positions = np.arange(SECTION_START_MM, length + 1e-9, SECTION_STEP_MM)
    n = int(round(SECTION_HALF_MM / SECTION_PIXEL_MM))
    offsets = np.arange(-n, n + 1) * SECTION_PIXEL_MM
    b, a = np.meshgrid(offsets, offsets, indexing="ij")
    u, v = plane_basis(direction, normal)
    areas, best = [], None
    for s in positions:
        centre = aortic + s * direction
        pts = centre + a[..., None] * u + b[..., None] * v
        pixels = volume.sample(pts)
        residual = (pixels >= threshold) & ~valve.contains(pts)
        region = _component_at_centre(residual, n)
        area = float(region.sum()) * SECTION_PIXEL_MM**2 if region is not None else math.nan
        areas.append(area)
        if region is not None and (best is None or area < best[0]):
            best = (area, s, pixels, region, valve.contains(pts))
    if best is None:
        return None, {"note": "Neo-LVOT not predicted: no lumen found along the LVOT centreline."}
    area, position, pixels, region, inside = best
    flagged = area <= NEO_LVOT_WANG_MM2
    tmvr = {"valve_diameter_mm": _r(diameter), "valve_top_diameter_mm": _r(float(top)) if top else None,
            "valve_height_mm": _r(height), "valve_ventricular_fraction": _r(fraction, 3),
            "valve_shape": "frustum" if top else "cylinder",
            "neo_lvot_min_area_mm2": _r(area, 1), "position_mm": _r(position, 1), "flagged": bool(flagged),
            "below_200_mm2": bool(area < NEO_LVOT_LIMIT_MM2),
            "rule": f"predicted neo-LVOT ≤ {NEO_LVOT_WANG_MM2} mm² predicts LVOT obstruction (Wang 2018); < 170–200 mm² "
                    "is considered prohibitive; measure on the end-systolic phase",
            "lumen_threshold_hu": _r(threshold, 0), "lumen_rule": threshold_rule,
            "centreline": f"straight, from the aortic annulus centre to {cavity_source}",
            "profile": [{"position_mm": _r(s, 1), "area_mm2": _r(x, 1) if math.isfinite(x) else None}
                        for s, x in zip(positions, areas)]}
    centreline = np.vstack([aortic, aortic + np.outer(positions, direction), cavity])
    section = SectionImage(name="neo_lvot", title=f"Neo-LVOT minimum {area:.0f} mm², {position:.1f} mm below the aortic "
                           f"annulus (valve {diameter:.1f} mm)", pixels=pixels.astype(np.float32),
                           pixel_mm=SECTION_PIXEL_MM, contour_2d=_mask_contour(region, n),
                           extra_2d={k: c for k, c in {"virtual valve": _mask_contour(inside, n)}.items()
                                     if c is not None},
                           centre=aortic + position * direction, u=u, v=v)
    return tmvr, {"centreline": centreline, "section": section}


def _lv_cavity_centre(volume, annulus, masks, threshold, valve):
    """The centroid of the LV cavity deeper than the valve (+ 5 mm) along the annulus normal, within 70 mm."""
    depth_min = valve.t_bottom + 5.0
    centre, normal = annulus["d_centroid"], annulus["normal"]
    reach = 70.0
    corners = centre + reach * np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    kji = volume.kji(corners).T
    lo = np.maximum(np.floor(kji.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(kji.max(axis=0)).astype(int) + 1, volume.image.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    if "lv" in masks:
        blood, source = masks["lv"][box], "the centroid of the left ventricle label deeper than the valve"
    else:
        blood = volume.image[box] >= threshold
        parts, _ = ndimage.label(blood)
        seed = volume.kji(centre + 0.5 * depth_min * normal).reshape(3).round().astype(int) - lo
        if np.all(seed >= 0) and np.all(seed < blood.shape) and parts[tuple(seed)] > 0:
            blood = parts == parts[tuple(seed)]
        source = "the centroid of the contrast lumen of the LV deeper than the valve"
    index = np.argwhere(blood)
    ras = _kji_to_ras(index + lo, volume.ijk_to_ras)
    depth = (ras - centre) @ normal
    keep = (depth >= depth_min) & (np.linalg.norm(ras - centre, axis=1) <= reach)
    if keep.sum() < 50:
        return centre + (depth_min + 15.0) * normal, "a point on the annulus axis below the valve (no LV cavity found)"
    return ras[keep].mean(axis=0), source


def _component_at_centre(mask: np.ndarray, n: int) -> np.ndarray | None:
    """The connected part of a section mask at its centre pixel, or nearest to it within 10 mm."""
    parts, count = ndimage.label(mask)
    if count == 0:
        return None
    label = parts[n, n]
    if label == 0:
        index = np.argwhere(parts > 0)
        nearest = index[np.argmin(((index - n) ** 2).sum(axis=1))]
        if math.hypot(*(nearest - n)) * SECTION_PIXEL_MM > 10.0:
            return None
        label = parts[tuple(nearest)]
    return parts == label


def _mask_contour(mask: np.ndarray, n: int) -> np.ndarray | None:
    from skimage.measure import find_contours

    if not mask.any():
        return None
    contours = find_contours(np.pad(mask.astype(float), 1), 0.5)
    if not contours:
        return None
    longest = max(contours, key=len) - 1.0
    return np.column_stack([(longest[:, 1] - n) * SECTION_PIXEL_MM, (longest[:, 0] - n) * SECTION_PIXEL_MM])


# ---------------------------------------------------------------------------------------------- views


def _annulus_section(volume: Volume, annulus: dict) -> SectionImage:
    pixel = 0.25
    centre = annulus["d_centroid"]
    pixels, u, v = sample_plane(volume, centre, annulus["normal"], 35.0, pixel, annulus["u"])
    c2 = np.array(annulus["d_measures"]["centroid_2d"])
    d_2d = annulus["d_2d"] - c2
    extra = {"saddle (projected)": annulus["saddle_2d"] - c2,
             "TT line": np.array([d_2d[0], d_2d[-1]]),
             "SL line": np.array([annulus["tt_middle_2d"], annulus["tt_middle_2d"] + annulus["sl"] * annulus["across_2d"]])
             - c2}
    m = annulus["d_measures"]
    return SectionImage(name="mitral_annulus", title=f"Mitral annulus, D-shape (area {m['area_mm2']:.0f} mm², perimeter "
                        f"{m['perimeter_mm']:.1f} mm)", pixels=pixels.astype(np.float32), pixel_mm=pixel,
                        contour_2d=d_2d, extra_2d=extra, centre=np.asarray(centre, float), u=u, v=v)


def _r(value, digits: int = 2):
    if isinstance(value, np.ndarray):
        return [round(float(x), digits) for x in value]
    return round(float(value), digits)
