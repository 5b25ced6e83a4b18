"""A CT phantom of the right ventricular outflow tract and main pulmonary artery for PPVI planning, with
analytic truth in a random orientation.

PPVI planning reports the RVOT/MPA along its centreline (minimal and maximal diameters, area, the
perimeter-derived diameter at the landing zone), the landing-zone to bifurcation distance and the minimal
coronary–RVOT distance across phases (``shared/reference/cardiac-ct.md`` §4.3). The phantom is built so each of
these comes back in closed form, or from a converged minimisation on the analytic surfaces:

* **Local frame.** The centreline is a circular arc of radius ``curvature_radius_mm`` (gently curved) from the
  RVOT start (arc length s = 0) through the annulus (s = ``rvot_length_mm``) to the bifurcation
  (``mpa_length_mm`` further). The arc lies in the x–z plane of the local frame about the centre
  C0 = (−R, 0, 0): c(s) = C0 + R(cos θ, 0, sin θ), θ = s / R, with the tangent T, the normal N (towards C0) and
  the binormal B = (0, 1, 0). Every plane normal to the arc contains the arc's axis, so a point's arc length is
  its angle about that axis times R, and its section coordinates are n = R − ρ (along N) and b = y (along B):
  the section perpendicular to the centreline at s is exactly the ellipse of that s. ``orientation`` (columns
  the local x, y, z in RAS) puts the RVOT anterior-inferior and the bifurcation posterior-superior with the
  branches to the left and right, turned by a random rotation of up to ``tilt_deg`` from ``seed``;
  RAS = ``center_ras`` + orientation @ local.
* **Lumen**: an elliptic tube, semi-axes a_N(p) and a_B(p) at position p = s − s_annulus (mm from the annulus,
  negative in the RVOT): the RVOT ellipse at the RVOT start blends (smoothstep) into the annulus ellipse at
  p = 0; above the annulus a Gaussian waist of sigma ``waist_width_mm`` narrows each axis to
  ``waist_semi_axes_mm`` at ``waist_position_mm`` over a base that stays the annulus ellipse up to the waist
  and then widens (smoothstep over ``mpa_rise_mm``) to the MPA ellipse. The base is flat at the waist and the
  dip symmetric, so the waist is the narrowest section (both axes and the area are smallest there). The tube
  runs ``rvot_extension_mm`` before the RVOT start and ends with a flat cap at the bifurcation, where the left
  and right pulmonary arteries (straight tubes of ``branch_radii_mm``) leave the bifurcation point
  ``branch_angles_deg`` off the tangent, to the patient's left and right along ±B. Sections whose plane meets
  a branch outside the ellipse (the last few mm before the bifurcation) are marked ``pure: False``.
* **Coronaries** (``coronaries``: name -> spec): straight tubes of ``radius_mm`` crossing the RVOT at
  ``position_mm`` (from the annulus) in that section's plane, along N, beyond the ±B vertex on the patient's
  ``side`` ("left" or "right"), their centreline ``distance_mm[k]`` beyond the vertex in phase k (the
  coronary moves with the phase, the RVOT stays). The truth per phase is the minimal distance from the
  coronary centreline to the lumen surface, minimised over the analytic surface (a little under the vertex
  gap: the RVOT narrows towards the annulus, so the nearest surface point lies slightly upstream).
* **Image**: contrast blood, a ``wall_mm`` wall (``wall_hu``) round the union of all lumens, myocardium round
  the RVOT and fat round the MPA (the tissue steps at the annulus plane, blurred over ``tissue_edge_mm``);
  each boundary blurred exactly for a flat boundary, 0.5·erfc(d / (√2 σ)), of a first-order signed distance
  d = (r − R) / √(1 + (R_s·R/ρ)² + (R_φ/r)²) (tubes: the exact distance to their straight centreline), then
  correlated noise (``stent._noise``), each phase its own.

Grids follow ``stent.py``: arrays ``[k, j, i]`` float32 HU, ``ijk_to_ras = diag(-s, -s, s)`` plus the box
corner, points RAS mm ``(N, 3)``. ``labels`` marks the unblurred lumens of the measured phase: 1 right ventricle
(the tube before the annulus), 2 pulmonary artery (the tube from the annulus on, and both branches), then one
label per coronary.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import optimize
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from .aortic_root import _ellipse_measures, _plain
from .stent import _edge, _grid_around, _noise, _smoothstep

#: Step of the truth centreline, mm.
CENTERLINE_STEP_MM = 0.1
#: Truth sections every this many mm from the annulus (as PPVI planning reports them).
SECTION_STEP_MM = 2.0
#: Coronary centreline–lumen distance below which compression risk is flagged (mm).
COMPRESSION_FLAG_MM = 2.0
#: Voxels rendered per chunk (bounds the memory of the signed-distance temporaries).
_CHUNK = 400_000

DEFAULT_CORONARIES = {
    "coronary_LAD": {"position_mm": -8.0, "side": "left", "radius_mm": 1.0, "distance_mm": (3.0, 1.8, 2.4),
                     "half_length_mm": 28.0},
    "coronary_RCA": {"position_mm": -4.0, "side": "right", "radius_mm": 1.2, "distance_mm": (5.0, 4.2, 4.6),
                     "half_length_mm": 24.0},
}
LABEL_NAMES = {1: "right ventricle", 2: "pulmonary artery"}


@dataclass
class RvotPhantom:
    """The measured phase's CT, the other phases, the label map and the exact geometry they were rendered from."""

    image: np.ndarray  # [k, j, i] float32 HU, the measured phase
    ijk_to_ras: np.ndarray  # 4×4
    labels: np.ndarray  # uint8 [k, j, i]
    label_names: dict[int, str]
    phase_label: str  # the measured phase
    phases: list  # the other phases: (label, image)
    centerline: np.ndarray  # RVOT start -> bifurcation, CENTERLINE_STEP_MM steps, RAS
    landmarks: dict[str, np.ndarray]  # rvot_start, pulmonary_annulus, landing_zone, pa_bifurcation (truth)
    clicks: dict[str, np.ndarray]  # the same, off-centre in their section plane as a user would click them
    annulus: dict
    waist: dict
    sections: list[dict]  # every SECTION_STEP_MM from the annulus, RVOT start to bifurcation
    rvot_length_mm: float
    mpa_length_mm: float
    landing_zone_to_bifurcation_mm: float
    coronaries: dict
    branches: dict
    orientation: np.ndarray
    seed: int
    blood_hu: float
    psf_sigma_mm: float
    noise_sd_hu: float
    parameters: dict = field(default_factory=dict)
    _geometry: object = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.image.shape)

    @property
    def phase_labels(self) -> list[str]:
        return [self.phase_label] + [label for label, _ in self.phases]

    def coronary_curves(self, phase: str | None = None) -> dict[str, np.ndarray]:
        """The coronary centrelines (RAS) in ``phase`` (the measured phase by default)."""
        phase = self.phase_label if phase is None else phase
        return {name: c["centerline_by_phase"][phase] for name, c in self.coronaries.items()}

    def section_truth(self, position_mm: float) -> dict:
        """The exact section at ``position_mm`` from the annulus along the centreline."""
        return self._geometry.section(position_mm)


@dataclass
class _Tube:
    """The arc centreline, the elliptic lumen and the branches, in the local frame (mm)."""

    radius: float  # curvature radius of the centreline
    s_annulus: float
    s_start: float  # the tube's proximal cap (before the RVOT start)
    s_end: float  # the bifurcation
    rvot: tuple[float, float]
    annulus: tuple[float, float]
    waist: tuple[float, float]
    mpa: tuple[float, float]
    waist_position: float
    waist_width: float
    rise: float
    branches: list  # (start, unit direction, length, radius)

    # -- centreline
    def point(self, s):
        t = np.asarray(s, dtype=float) / self.radius
        return np.stack([self.radius * np.cos(t) - self.radius, np.zeros_like(t), self.radius * np.sin(t)], -1)

    def tangent(self, s):
        t = np.asarray(s, dtype=float) / self.radius
        return np.stack([-np.sin(t), np.zeros_like(t), np.cos(t)], -1)

    def normal(self, s):
        t = np.asarray(s, dtype=float) / self.radius
        return np.stack([-np.cos(t), np.zeros_like(t), -np.sin(t)], -1)

    binormal = np.array([0.0, 1.0, 0.0])

    # -- lumen profile
    def axes(self, p):
        """Semi-axes (along N, along B) at position p from the annulus."""
        p = np.asarray(p, dtype=float)
        length = self.s_annulus
        below = _smoothstep((p + length) / length)
        rise = _smoothstep((p - self.waist_position) / self.rise)
        dip = np.exp(-0.5 * ((p - self.waist_position) / self.waist_width) ** 2)
        out = []
        for k in range(2):
            upstream = self.rvot[k] + (self.annulus[k] - self.rvot[k]) * below
            base = self.annulus[k] + (self.mpa[k] - self.annulus[k]) * rise
            downstream = base - (self.annulus[k] - self.waist[k]) * dip
            out.append(np.where(p < 0, upstream, downstream))
        return out[0], out[1]

    def section_radius(self, p, phi):
        a, b = self.axes(p)
        return a * b / np.sqrt((b * np.cos(phi)) ** 2 + (a * np.sin(phi)) ** 2)

    def coordinates(self, local: np.ndarray):
        """Arc length s, section coordinates (n, b) and the distance ρ to the arc's axis."""
        wx, wz = local[:, 0] + self.radius, local[:, 2]
        s = self.radius * np.arctan2(wz, wx)
        rho = np.hypot(wx, wz)
        return s, self.radius - rho, local[:, 1], rho

    def signed(self, local: np.ndarray) -> np.ndarray:
        """First-order signed distance to the capped elliptic tube (negative inside)."""
        s, n, b, rho = self.coordinates(local)
        p = s - self.s_annulus
        r, phi = np.hypot(n, b), np.arctan2(b, n)
        eps = 1e-3
        radius = self.section_radius(p, phi)
        dp = (self.section_radius(p + eps, phi) - self.section_radius(p - eps, phi)) / (2 * eps)
        dphi = (self.section_radius(p, phi + eps) - self.section_radius(p, phi - eps)) / (2 * eps)
        signed = (r - radius) / np.sqrt(1.0 + (dp * self.radius / rho) ** 2 + (dphi / np.maximum(r, 1.0)) ** 2)
        along = rho / self.radius
        return np.maximum(signed, np.maximum((s - self.s_end) * along, (self.s_start - s) * along))

    def surface(self, p, phi) -> np.ndarray:
        s = self.s_annulus + np.asarray(p, dtype=float)
        radius = self.section_radius(p, phi)
        return (self.point(s) + (radius * np.cos(phi))[..., None] * self.normal(s)
                + (radius * np.sin(phi))[..., None] * self.binormal)

    def section(self, position: float) -> dict:
        s = self.s_annulus + float(position)
        a, b = (float(v) for v in self.axes(np.array(position)))
        measures = _ellipse_measures(max(a, b), min(a, b))
        return {"position_mm": float(position), "arc_mm": s, "semi_axes_mm": (a, b), **measures,
                "pure": self.pure(position)}

    def pure(self, position: float, pixel: float = 0.25) -> bool:
        """Whether the section plane meets no branch outside the ellipse."""
        s = self.s_annulus + float(position)
        a, b = (float(v) for v in self.axes(np.array(position)))
        half = max(a, b) + 25.0
        g = np.arange(-half, half + 1e-9, pixel)
        u, v = np.meshgrid(g, g, indexing="ij")
        pts = self.point(s) + u[..., None] * self.normal(s) + v[..., None] * self.binormal
        pts = pts.reshape(-1, 3)
        outside = ((u / a) ** 2 + (v / b) ** 2 > 1.0).reshape(-1)
        for start, direction, length, radius in self.branches:
            if np.any(outside & (_segment_distance(pts, start, direction, length) < radius)):
                return False
        return True


def _segment_distance(points: np.ndarray, start: np.ndarray, direction: np.ndarray, length: float) -> np.ndarray:
    """Exact distance to a straight segment."""
    rel = points - start
    t = np.clip(rel @ direction, 0.0, length)
    return np.linalg.norm(rel - t[:, None] * direction, axis=1)


def _min_distance(tube: _Tube, start: np.ndarray, direction: np.ndarray, length: float, position: float) -> float:
    """Minimal distance from a segment to the tube surface: a coarse grid near ``position``, then a minimisation."""
    p = np.arange(position - 15.0, position + 15.0 + 1e-9, 0.25)
    phi = np.radians(np.arange(0.0, 360.0, 0.5))
    pp, ff = np.meshgrid(p, phi, indexing="ij")
    surface = tube.surface(pp, ff).reshape(-1, 3)
    line = start + np.linspace(0.0, length, int(length / 0.1) + 1)[:, None] * direction
    d, index = cKDTree(surface).query(line)
    k = int(np.argmin(d))
    t0 = k * 0.1
    p0, f0 = pp.reshape(-1)[index[k]], ff.reshape(-1)[index[k]]

    def cost(x):
        t = np.clip(x[0], 0.0, length)
        return float(np.linalg.norm(start + t * direction - tube.surface(np.array(x[1]), np.array(x[2]))))

    best = optimize.minimize(cost, [t0, p0, f0], method="Nelder-Mead",
                             options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000})
    return float(min(best.fun, d[k]))


def _orientation(tube: _Tube, rng: np.random.Generator, tilt_deg: float) -> np.ndarray:
    """Local frame -> RAS: the RVOT start anterior-inferior, the chord to the bifurcation posterior-superior
    (and a little to the right), the binormal (the branches' side) along the patient's left–right axis, the arc
    bending with its concave side posterior-inferior; then a random rotation of up to ``tilt_deg`` from ``rng``."""
    chord_local = tube.point(tube.s_end) - tube.point(0.0)
    chord_local /= np.linalg.norm(chord_local)
    bend_local = np.cross(chord_local, tube.binormal)  # in the arc plane, ⟂ chord
    if bend_local @ tube.normal(0.5 * tube.s_end) < 0:
        bend_local = -bend_local
    chord = np.array([0.3, -0.8, 0.5])
    chord /= np.linalg.norm(chord)
    right = np.array([1.0, 0.0, 0.0]) - chord[0] * chord
    right /= np.linalg.norm(right)
    bend = np.cross(chord, right)
    if bend @ np.array([0.0, -1.0, -1.0]) < 0:
        bend = -bend
    local = np.column_stack([chord_local, tube.binormal, bend_local])
    base = np.column_stack([chord, right, bend]) @ local.T
    if np.linalg.det(base) < 0:  # keep a rotation: the binormal goes to the patient's left instead
        base = np.column_stack([chord, -right, bend]) @ local.T
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    tilt = Rotation.from_rotvec(axis * math.radians(rng.uniform(0.0, tilt_deg))).as_matrix()
    return tilt @ base


# ---------------------------------------------------------------------------------------------- phantom


def rvot_phantom(
    rvot_semi_axes_mm: tuple[float, float] = (14.0, 11.5), annulus_semi_axes_mm: tuple[float, float] = (12.0, 10.0),
    waist_semi_axes_mm: tuple[float, float] = (9.5, 8.5), mpa_semi_axes_mm: tuple[float, float] = (13.5, 12.0),
    rvot_length_mm: float = 18.0, waist_position_mm: float = 14.0, waist_width_mm: float = 5.0,
    mpa_rise_mm: float = 20.0, mpa_length_mm: float = 48.0, rvot_extension_mm: float = 12.0,
    curvature_radius_mm: float = 110.0, branch_radii_mm: tuple[float, float] = (8.5, 9.0),
    branch_angles_deg: tuple[float, float] = (65.0, 70.0), branch_length_mm: float = 28.0,
    coronaries: dict | None = None, phase_labels: tuple[str, ...] = ("35 %", "75 %", "95 %"),
    blood_hu: float = 350.0, wall_hu: float = 60.0, wall_mm: float = 1.5, myocardium_hu: float = 80.0,
    fat_hu: float = -80.0, tissue_edge_mm: float = 1.0, psf_sigma_mm: float = 0.45, noise_sd_hu: float = 25.0,
    spacing_mm: float = 0.6, margin_mm: float = 6.0, center_ras: tuple[float, float, float] = (20.0, -10.0, 40.0),
    click_offset_mm: float = 2.0, tilt_deg: float = 20.0, seed: int = 0,
) -> RvotPhantom:
    """Render the phantom: the first of ``phase_labels`` is the measured phase (``image``), the others go to
    ``phases``; each coronary's ``distance_mm`` has one value per phase. Semi-axes are (along N, along B)."""
    if not 0.0 < waist_position_mm < mpa_length_mm:
        raise ValueError("the waist must lie between the annulus and the bifurcation")
    coronaries = DEFAULT_CORONARIES if coronaries is None else coronaries
    for name, spec in coronaries.items():
        if len(spec["distance_mm"]) != len(phase_labels):
            raise ValueError(f"{name}: one distance per phase ({len(phase_labels)})")
        if min(spec["distance_mm"]) <= spec["radius_mm"] + 0.3:
            raise ValueError(f"{name}: the coronary lumen must stay clear of the RVOT lumen")
    rng = np.random.default_rng([seed, 31])
    center = np.asarray(center_ras, dtype=float)
    s_ann, s_end = float(rvot_length_mm), float(rvot_length_mm + mpa_length_mm)

    tube = _Tube(float(curvature_radius_mm), s_ann, -float(rvot_extension_mm), s_end, tuple(rvot_semi_axes_mm),
                 tuple(annulus_semi_axes_mm), tuple(waist_semi_axes_mm), tuple(mpa_semi_axes_mm),
                 float(waist_position_mm), float(waist_width_mm), float(mpa_rise_mm), [])
    orientation = _orientation(tube, rng, tilt_deg)
    bif, t_bif = tube.point(s_end), tube.tangent(s_end)
    branches = {}
    right_sign = 1.0 if (orientation @ tube.binormal)[0] > 0 else -1.0  # the sign of B towards the patient's right
    for side, name, radius, angle in zip((-right_sign, right_sign), ("left", "right"), branch_radii_mm,
                                         branch_angles_deg):
        a = math.radians(angle)
        direction = math.cos(a) * t_bif + side * math.sin(a) * tube.binormal
        tube.branches.append((bif, direction, float(branch_length_mm), float(radius)))
        branches[name] = {"radius_mm": float(radius), "angle_deg": float(angle), "length_mm": float(branch_length_mm)}

    def to_ras(local):
        return center + np.asarray(local, dtype=float) @ orientation.T

    # coronary segments per phase, local frame
    segments = {}
    for name, spec in coronaries.items():
        p_c = float(spec["position_mm"])
        s_c = s_ann + p_c
        a_b = float(tube.axes(np.array(p_c))[1])
        half = float(spec.get("half_length_mm", 25.0))
        segments[name] = []
        for gap in spec["distance_mm"]:
            side = right_sign if spec["side"] == "right" else -right_sign
            mid = tube.point(s_c) + side * (a_b + gap) * tube.binormal
            segments[name].append((mid - half * tube.normal(s_c), tube.normal(s_c), 2.0 * half,
                                   float(spec["radius_mm"])))

    # ---- the box round everything
    s_all = np.linspace(tube.s_start, s_end, 200)
    phis = np.linspace(0.0, 2.0 * math.pi, 24, endpoint=False)
    ss, ff = np.meshgrid(s_all - s_ann, phis, indexing="ij")
    extent = [tube.surface(ss, ff).reshape(-1, 3)]
    for start, direction, length, radius in tube.branches:
        extent += [start + radius * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]),
                   start + length * direction + radius * np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0],
                                                                   [0, 0, 1], [0, 0, -1]])]
    for per_phase in segments.values():
        for start, direction, length, radius in per_phase:
            extent += [np.array([start, start + length * direction])]
    extent = to_ras(np.concatenate(extent))
    grid = _grid_around(extent, wall_mm + margin_mm, spacing_mm)
    points = grid.points()
    count = len(points)

    # ---- static signed distance (tube and branches), the tissue outside, the arc position
    static = np.empty(count)
    position = np.empty(count)
    main = np.empty(count)
    reach = wall_mm + 6.0 * psf_sigma_mm
    for lo in range(0, count, _CHUNK):
        local = (points[lo:lo + _CHUNK] - center) @ orientation
        m = tube.signed(local)
        main[lo:lo + _CHUNK] = m
        signed = m.copy()
        for start, direction, length, radius in tube.branches:
            signed = np.minimum(signed, _segment_distance(local, start, direction, length) - radius)
        static[lo:lo + _CHUNK] = signed
        position[lo:lo + _CHUNK] = tube.coordinates(local)[0] - s_ann
    outside = fat_hu + (myocardium_hu - fat_hu) * _edge(position, tissue_edge_mm)

    def coronary_signed(phase: int) -> np.ndarray:
        signed = np.full(count, np.inf)
        for per_phase in segments.values():
            start, direction, length, radius = per_phase[phase]
            lo_b = to_ras(np.array([start, start + length * direction]))
            box_lo, box_hi = lo_b.min(0) - radius - reach - 1.0, lo_b.max(0) + radius + reach + 1.0
            near = np.all((points >= box_lo) & (points <= box_hi), axis=1)
            local = (points[near] - center) @ orientation
            signed[near] = np.minimum(signed[near], _segment_distance(local, start, direction, length) - radius)
        return signed

    images = []
    for k in range(len(phase_labels)):
        cor = coronary_signed(k)
        signed = np.minimum(static, cor)
        image = (outside + (wall_hu - outside) * _edge(signed - wall_mm, psf_sigma_mm)
                 + (blood_hu - wall_hu) * _edge(signed, psf_sigma_mm))
        image = image.reshape(grid.shape).astype(np.float32)
        image += _noise(grid.shape, noise_sd_hu, np.random.default_rng([seed, 1, k]))
        images.append(image)
        if k == 0:
            labels = np.zeros(count, np.uint8)
            labels[(static < 0) & (position >= 0)] = 2
            labels[(main < 0) & (position < 0)] = 1
            label_names = dict(LABEL_NAMES)
            for index, (name, per_phase) in enumerate(segments.items()):
                start, direction, length, radius = per_phase[0]
                value = 3 + index
                near = np.isfinite(cor)
                inside = np.zeros(count, bool)
                local = (points[near] - center) @ orientation
                inside[near] = _segment_distance(local, start, direction, length) < radius
                labels[inside & (static >= 0)] = value
                label_names[value] = name.lower()
            labels = labels.reshape(grid.shape)

    # ---- truth
    s_line = np.linspace(0.0, s_end, int(round(s_end / CENTERLINE_STEP_MM)) + 1)
    centerline = to_ras(tube.point(s_line))

    def landmark(s):
        return to_ras(tube.point(np.array(s)))

    landmarks = {"rvot_start": landmark(0.0), "pulmonary_annulus": landmark(s_ann),
                 "landing_zone": landmark(s_ann + waist_position_mm), "pa_bifurcation": landmark(s_end)}
    click_rng = np.random.default_rng([seed, 7])
    clicks = {}
    for name, s in (("rvot_start", 0.0), ("pulmonary_annulus", s_ann), ("landing_zone", s_ann + waist_position_mm),
                    ("pa_bifurcation", s_end)):
        angle = click_rng.uniform(0.0, 2.0 * math.pi)
        offset = click_offset_mm * click_rng.uniform(0.5, 1.0)
        local = tube.point(np.array(s)) + offset * (math.cos(angle) * tube.normal(np.array(s))
                                                      + math.sin(angle) * tube.binormal)
        clicks[name] = to_ras(local)
    a_ann = annulus_semi_axes_mm
    phi = np.linspace(0.0, 2.0 * math.pi, 720, endpoint=False)
    annulus = {"center": landmarks["pulmonary_annulus"], "normal": orientation @ tube.tangent(np.array(s_ann)),
               "semi_axes_mm": tuple(a_ann), **_ellipse_measures(max(a_ann), min(a_ann)),
               "points": to_ras(tube.surface(np.zeros_like(phi), phi))}
    waist = {"center": landmarks["landing_zone"], **tube.section(waist_position_mm)}
    positions = np.arange(math.ceil(-s_ann / SECTION_STEP_MM), math.floor(mpa_length_mm / SECTION_STEP_MM) + 1)
    sections = []
    for p in positions * SECTION_STEP_MM:
        sec = tube.section(float(p))
        sec["center"] = landmark(s_ann + p)
        sec["normal"] = orientation @ tube.tangent(np.array(s_ann + p))
        sections.append(sec)
    truth_coronaries = {}
    for name, spec in coronaries.items():
        by_phase, distance = {}, {}
        for k, label in enumerate(phase_labels):
            start, direction, length, radius = segments[name][k]
            by_phase[label] = to_ras(start + np.linspace(0.0, length, int(round(length / 0.5)) + 1)[:, None]
                                     * direction)
            distance[label] = _min_distance(tube, start, direction, length, float(spec["position_mm"]))
        worst = min(distance, key=distance.get)
        truth_coronaries[name] = {"radius_mm": float(spec["radius_mm"]), "position_mm": float(spec["position_mm"]),
                                  "centerline_by_phase": by_phase, "distance_by_phase_mm": distance,
                                  "min_mm": distance[worst], "min_phase": worst,
                                  "flagged": distance[worst] < COMPRESSION_FLAG_MM,
                                  "measured_phase_mm": distance[phase_labels[0]]}
    parameters = {"rvot_semi_axes_mm": list(rvot_semi_axes_mm), "annulus_semi_axes_mm": list(annulus_semi_axes_mm),
                  "waist_semi_axes_mm": list(waist_semi_axes_mm), "mpa_semi_axes_mm": list(mpa_semi_axes_mm),
                  "waist_position_mm": waist_position_mm, "waist_width_mm": waist_width_mm,
                  "mpa_rise_mm": mpa_rise_mm, "rvot_extension_mm": rvot_extension_mm,
                  "curvature_radius_mm": curvature_radius_mm, "spacing_mm": spacing_mm, "wall_hu": wall_hu,
                  "wall_mm": wall_mm, "myocardium_hu": myocardium_hu, "fat_hu": fat_hu,
                  "tissue_edge_mm": tissue_edge_mm, "center_ras": list(center_ras),
                  "phase_labels": list(phase_labels)}
    return RvotPhantom(
        image=images[0], ijk_to_ras=grid.ijk_to_ras.copy(), labels=labels, label_names=label_names,
        phase_label=phase_labels[0], phases=list(zip(phase_labels[1:], images[1:])), centerline=centerline,
        landmarks=landmarks, clicks=clicks, annulus=annulus, waist=waist, sections=sections,
        rvot_length_mm=s_ann, mpa_length_mm=float(mpa_length_mm),
        landing_zone_to_bifurcation_mm=float(mpa_length_mm - waist_position_mm), coronaries=truth_coronaries,
        branches=branches, orientation=orientation, seed=seed, blood_hu=float(blood_hu),
        psf_sigma_mm=float(psf_sigma_mm), noise_sd_hu=float(noise_sd_hu), parameters=parameters, _geometry=tube)


# ---------------------------------------------------------------------------------------------- files


def truth_dict(phantom: RvotPhantom) -> dict:
    """The truth as plain JSON values (everything but the images and the label map)."""
    keys = ("phase_label", "phase_labels", "centerline", "landmarks", "clicks", "annulus", "waist", "sections",
            "rvot_length_mm", "mpa_length_mm", "landing_zone_to_bifurcation_mm", "coronaries", "branches",
            "orientation", "seed", "blood_hu", "psf_sigma_mm", "noise_sd_hu", "label_names", "parameters")
    truth = {key: _plain(getattr(phantom, key)) for key in keys}
    truth["ijk_to_ras"] = phantom.ijk_to_ras.tolist()
    truth["kind"] = "rvot"
    return truth


def write(phantom: RvotPhantom, folder: str | Path) -> Path:
    """``ct.nrrd`` (the measured phase), ``labels.nrrd``, ``ct_phase_<k>.nrrd`` for the other phases and
    ``truth.json`` in ``folder``; returns the image path."""
    from CardiacSuiteLib.imagedata import ImageSeries
    from CardiacSuiteLib.imageio import write_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_image(ImageSeries(frames=phantom.image[None], ijk_to_ras=phantom.ijk_to_ras, modality="CT",
                                   name="RVOT phantom"), folder / "ct.nrrd")
    write_image(ImageSeries(frames=phantom.labels[None], ijk_to_ras=phantom.ijk_to_ras, name="RVOT phantom labels"),
                folder / "labels.nrrd")
    files = {}
    for k, (label, image) in enumerate(phantom.phases, start=1):
        name = f"ct_phase_{k}.nrrd"
        write_image(ImageSeries(frames=image[None], ijk_to_ras=phantom.ijk_to_ras, modality="CT",
                                name=f"RVOT phantom {label}"), folder / name)
        files[label] = name
    truth = truth_dict(phantom)
    truth["phase_files"] = files
    (folder / "truth.json").write_text(json.dumps(truth))
    return path
