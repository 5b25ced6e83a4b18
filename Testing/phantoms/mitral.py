"""A CT phantom of the mitral valve region for TMVR / TEER planning, with analytic truth in a random orientation.

Mitral planning is scored on quantities defined from landmarks (``shared/reference/cardiac-ct.md`` §4.2: the
D-shaped annulus of Blanke, IC / SL / TT distances, annulus height, MAC, the predicted neo-LVOT), so the
phantom is built from those landmarks and every figure comes back in closed form or from a dense numerical
integration of the analytic curve (never from product code).

* **Local frame.** ``e3`` is the annulus normal from the left atrium into the left ventricle, ``e2`` points
  anterior (towards the aorta), ``e1 = e2 × e3`` towards the anterolateral commissure; the origin is the
  midpoint of the trigone-to-trigone (TT) line. ``orientation = [e1 e2 e3]`` (columns, RAS), random from
  ``seed``; every RAS point is ``center + orientation @ local``.
* **Saddle annulus**: x = a·cos φ, y = −c − b·sin φ, z = (h/2)·cos 2φ. Its projection is an ellipse (semi-axes
  a, b, centre (0, −c)); the trigones are where it crosses the TT line y = 0 (sin φ = −c/b), so
  IC = 2a, TT = 2a·√(1 − c²/b²), SL = b + c (from the TT midpoint perpendicular to TT, to the posterior horn);
  the horns (φ = ∓90°, anterior at y = b − c, posterior at y = −b − c) are the highest points, towards the
  atrium (z = −h/2), the commissures (φ = 0, 180°) the lowest (z = +h/2): annulus height h. The D-shape is
  the posterior arc (trigone → anterolateral commissure → posterior horn → posteromedial commissure →
  trigone) closed by the TT line. The parameters are IC, SL, TT and h; a, b, c follow.
* **Blood pools** (``blood_hu``) in soft tissue (``tissue_hu``): the orifice column (the elliptic cylinder of the
  annulus, from the left atrium down below the commissures) narrowing through a funnel into an inflow
  cylinder of ``inflow_radius_mm`` round the D-shape centroid, the left atrium (an ellipsoid above the
  column), the LV body (a sphere below), and the LV outflow tract: a circular tube of ``lvot_radius_mm``
  parallel to e3, centred ``lvot_offset_mm`` anterior of the TT midpoint, up to the aortic annulus (z = 0),
  widening above into the aortic root, whose radius makes it pass just outside the trigones. Above z = 0 the
  root keeps ``wall_mm`` (the aorto-mitral curtain) from the annulus column, and the atrium keeps ``wall_mm``
  from the root. Every boundary is blurred exactly for a flat boundary, 0.5·erfc(d / (√2 σ)) of a first-order
  signed distance d; noise is ``stent._noise`` (correlated, ``noise_sd_hu``).
* **MAC**: a tube of ``mac_radius_mm`` with flat ends, ``mac_radius_mm + 0.5`` mm outside the annulus (in the
  annulus plane) along the posterior annulus, centred on the posterior horn, subtending ``mac_arc_deg`` at
  the annulus centre (the centroid of the projected saddle), at ``mac_hu``. Truth: that arc, the arc length
  share of the saddle perimeter, the volume π r² L (Pappus, L the length of the tube's centre curve) and the
  thickness 2r. ``mac_threshold_hu`` = blood + max(200, 3·noise SD), the rule the planning code states.
* **Neo-LVOT**: a virtual valve, a cylinder of radius r about the annulus normal through the D-shape centroid
  (on the least-squares plane of the saddle), ``valve_height_mm`` long with ``valve_ventricular_fraction`` of
  it in the ventricle, cuts the LVOT circle. Between the end of the funnel and the valve's ventricular end
  the section perpendicular to the LVOT axis is the LVOT circle ∪ the inflow circle, the inflow lying inside
  the valve, so what is left is the circle minus its lens with the valve disk: π R² − lens(R, r, d), d the
  distance between the LVOT axis and the valve axis (``neo_lvot``). Sections nearer the annulus have the
  same cut plus blood round the valve, deeper ones the whole LV: both larger, so that is the minimum.
* **Labels**: left atrium, left ventricle, aorta (the root above the aortic annulus) and a shell of LV
  myocardium, named as ``LABEL_NAMES`` (the CardiacSegmentation numbering). The LA–LV contact is the saddle
  surface z = (h/2)(X² − Y²) spanning the annulus (X = x/a, Y = (y + c)/b), so its rim is the annulus.

Grids follow ``stent.py``: arrays ``[k, j, i]`` float32 HU, ``ijk_to_ras = diag(-s, -s, s)`` plus the box
corner, points RAS mm ``(N, 3)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from .aortic_root import _plain
from .stent import _edge, _grid_around, _noise, _smoothstep

#: Landmarks in anatomical order round the annulus.
LANDMARKS = ("mitral_anterior_horn", "mitral_trigone_left", "mitral_commissure_anterolateral",
             "mitral_posterior_horn", "mitral_commissure_posteromedial", "mitral_trigone_right")
LV_MYO, LA, LV, AORTA = 1, 2, 3, 6
LABEL_NAMES = {LV_MYO: "left ventricle myocardium", LA: "left atrium", LV: "left ventricle", AORTA: "aorta"}
#: Samples of the analytic curve for the numerical truth (the integration error is far below a micrometre).
TRUTH_SAMPLES = 200_000
#: Local box rendered (mm, along e1, e2, e3); outside it the image is plain tissue.
_BOX_LO = np.array([-30.0, -42.0, -43.0])
_BOX_HI = np.array([30.0, 27.0, 59.0])
#: Voxels per rendering chunk.
_CHUNK = 600_000


@dataclass
class MitralPhantom:
    """One rendered CT volume of the mitral region, its label map and the exact figures it was built from."""

    image: np.ndarray  # [k, j, i] float32 HU
    labels: np.ndarray  # [k, j, i] uint8, LABEL_NAMES
    ijk_to_ras: np.ndarray  # 4×4
    landmarks: dict  # the six annulus landmarks, RAS
    transseptal_puncture: np.ndarray  # RAS
    aortic_annulus_center: np.ndarray  # RAS, on the LVOT axis
    annulus: dict  # saddle and D-shape truth
    mac: dict
    lvot: dict  # LVOT circle and the data neo_lvot needs
    transseptal_height_mm: float
    seed: int
    orientation: np.ndarray  # 3×3, columns e1 (towards the anterolateral commissure), e2 (anterior), e3 (into LV)
    center: np.ndarray  # RAS of the local origin (TT midpoint)
    blood_hu: float
    psf_sigma_mm: float
    noise_sd_hu: float
    label_names: dict = field(default_factory=lambda: dict(LABEL_NAMES))
    parameters: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.image.shape)

    def to_local(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=float) - self.center) @ self.orientation

    def to_ras(self, local: np.ndarray) -> np.ndarray:
        return self.center + np.asarray(local, dtype=float) @ self.orientation.T

    def neo_lvot(self, valve_diameter_mm: float | None = None) -> dict:
        """Closed-form minimal neo-LVOT area for a cylindrical virtual valve of ``valve_diameter_mm`` (default:
        the D-shape area-derived diameter), its height and ventricular fraction as rendered for."""
        d_valve = float(valve_diameter_mm or self.annulus["d_shape"]["area_derived_diameter_mm"])
        r, big = 0.5 * d_valve, self.lvot["radius_mm"]
        distance = self.lvot["axis_to_valve_axis_mm"]
        if r < self.lvot["inflow_radius_mm"] + 1.5:
            raise ValueError("the valve must cover the inflow (radius ≥ inflow_radius_mm + 1.5 mm) for the closed form")
        lens = _lens_area(r, big, distance)
        plane_z = self.annulus["plane_offset_mm"]
        top, bottom = self.lvot["clean_from_mm"], plane_z + self.lvot["valve_ventricular_mm"]
        if bottom <= top:
            raise ValueError("the valve's ventricular end is above the end of the funnel: no clean section")
        area = math.pi * big**2 - lens
        return {"valve_diameter_mm": d_valve, "area_mm2": area, "lens_mm2": lens, "lvot_area_mm2": math.pi * big**2,
                "distance_mm": distance, "minimum_from_mm": top, "minimum_to_mm": bottom,
                "flagged": area <= 189.4}


def _lens_area(r: float, big: float, d: float) -> float:
    """Area of the intersection of two disks of radii r and big whose centres are d apart."""
    if d >= r + big:
        return 0.0
    if d <= abs(big - r):
        return math.pi * min(r, big) ** 2
    return (r * r * math.acos((d * d + r * r - big * big) / (2 * d * r))
            + big * big * math.acos((d * d + big * big - r * r) / (2 * d * big))
            - 0.5 * math.sqrt((-d + r + big) * (d + r - big) * (d - r + big) * (d + r + big)))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation (unit quaternion from a 4D Gaussian)."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _polygon(xy: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Area, perimeter and centroid of a closed polygon."""
    x, y = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = 0.5 * float(cross.sum())
    centroid = np.array([((x + x1) * cross).sum(), ((y + y1) * cross).sum()]) / (6.0 * area)
    return abs(area), float(np.hypot(x1 - x, y1 - y).sum()), centroid


def _resample(points: np.ndarray, step: float, closed: bool = False) -> np.ndarray:
    pts = np.vstack([points, points[:1]]) if closed else points
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    count = int(math.ceil(arc[-1] / step))
    s = np.linspace(0.0, arc[-1], count, endpoint=not closed) if closed else np.linspace(0.0, arc[-1], count + 1)
    return np.stack([np.interp(s, arc, pts[:, a]) for a in range(3)], axis=1)


class _Geometry:
    """The analytic shapes in the local frame (mm); every ``sd_*`` is a first-order signed distance (< 0 inside)."""

    def __init__(self, a, b, c, h, wall, lvot_offset, lvot_radius, root_radius, inflow_radius, inflow_centre_y,
                 funnel_top, funnel_bottom):
        self.a, self.b, self.c, self.h, self.wall = a, b, c, h, wall
        self.y_l, self.r_l, self.r_a = lvot_offset, lvot_radius, root_radius
        self.r_in, self.y_d = inflow_radius, inflow_centre_y
        self.z_a, self.z_1 = funnel_top, funnel_bottom
        self.r_big = 40.0

    def annulus(self, phi: np.ndarray) -> np.ndarray:
        phi = np.asarray(phi, dtype=float)
        return np.stack([self.a * np.cos(phi), -self.c - self.b * np.sin(phi), 0.5 * self.h * np.cos(2 * phi)], -1)

    def outward(self, phi: np.ndarray) -> np.ndarray:
        """Unit outward normal of the projected annulus, in the plane (z = 0)."""
        phi = np.asarray(phi, dtype=float)
        n = np.stack([np.cos(phi) / self.a, -np.sin(phi) / self.b, np.zeros_like(phi)], -1)
        return n / np.linalg.norm(n, axis=-1, keepdims=True)

    def saddle(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 0.5 * self.h * ((x / self.a) ** 2 - ((y + self.c) / self.b) ** 2)

    def sd_column(self, p: np.ndarray) -> np.ndarray:
        """Signed distance to the elliptic cylinder of the annulus (in the plane)."""
        x, y = p[:, 0], p[:, 1] + self.c
        k0 = np.sqrt((x / self.a) ** 2 + (y / self.b) ** 2)
        k1 = np.sqrt((x / self.a**2) ** 2 + (y / self.b**2) ** 2)
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)

    def funnel_radius(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.clip((z - self.z_a) / (self.z_1 - self.z_a), 0.0, 1.0)
        slope = np.where((z > self.z_a) & (z < self.z_1), (self.r_in - self.r_big) / (self.z_1 - self.z_a), 0.0)
        return self.r_big + (self.r_in - self.r_big) * u, slope

    def sd_inflow(self, p: np.ndarray, sd_col: np.ndarray) -> np.ndarray:
        """The orifice column from the atrium down, narrowing through the funnel to the inflow cylinder."""
        z = p[:, 2]
        rho = np.hypot(p[:, 0], p[:, 1] - self.y_d)
        radius, slope = self.funnel_radius(z)
        funnel = (rho - radius) / np.sqrt(1.0 + slope**2)
        return np.maximum.reduce([sd_col, funnel, -20.0 - z, z - 24.0])

    def tube_radius(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.clip(-z / 3.0, 0.0, 1.0)
        radius = self.r_l + (self.r_a - self.r_l) * _smoothstep(u)
        slope = np.where((z < 0) & (z > -3.0), -(self.r_a - self.r_l) * 6.0 * u * (1 - u) / 3.0, 0.0)
        return radius, slope

    def sd_tube(self, p: np.ndarray, sd_col: np.ndarray) -> np.ndarray:
        """LVOT (z ≥ 0) and aortic root (z < 0, kept ``wall`` outside the annulus column)."""
        z = p[:, 2]
        rho = np.hypot(p[:, 0], p[:, 1] - self.y_l)
        radius, slope = self.tube_radius(z)
        radial = (rho - radius) / np.sqrt(1.0 + slope**2)
        clip = np.minimum(self.wall - sd_col, -z)
        return np.maximum.reduce([radial, clip, z - 40.0, -41.0 - z])

    def sd_atrium(self, p: np.ndarray, sd_tube: np.ndarray) -> np.ndarray:
        centre, semi = np.array([0.0, -self.c - 4.0, -26.0]), np.array([24.0, 22.0, 14.0])
        q = p - centre
        k0 = np.linalg.norm(q / semi, axis=1)
        k1 = np.linalg.norm(q / semi**2, axis=1)
        return np.maximum(k0 * (k0 - 1.0) / np.maximum(k1, 1e-9), self.wall - sd_tube)

    def sd_body(self, p: np.ndarray) -> np.ndarray:
        return np.linalg.norm(p - np.array([0.0, self.y_l, 38.0]), axis=1) - 18.0


def _sweep_signed(points: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance to a tube of ``radius`` round a dense polyline, with flat ends (planes ⟂ its end tangents)."""
    t0 = centre[1] - centre[0]
    t0 /= np.linalg.norm(t0)
    t1 = centre[-1] - centre[-2]
    t1 /= np.linalg.norm(t1)
    extended = np.vstack([centre[0] - np.linspace(5.0, 0.05, 100)[:, None] * t0, centre,
                          centre[-1] + np.linspace(0.05, 5.0, 100)[:, None] * t1])
    distance, index = cKDTree(extended).query(points)
    best = distance.copy()
    for lo, hi in ((np.maximum(index - 1, 0), index), (index, np.minimum(index + 1, len(extended) - 1))):
        a, b = extended[lo], extended[hi]
        ab = b - a
        t = np.clip(((points - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-30), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - a - t[:, None] * ab, axis=1))
    beyond = np.maximum((centre[0] - points) @ t0, (points - centre[-1]) @ t1)
    return np.maximum(best - radius, beyond)


def mitral(
    ic_mm: float = 40.0, sl_mm: float = 28.0, tt_mm: float = 28.0, height_mm: float = 6.0,
    lvot_radius_mm: float = 10.0, lvot_offset_mm: float = 4.5, inflow_radius_mm: float = 12.0,
    wall_mm: float = 2.0, mac_arc_deg: float = 100.0, mac_radius_mm: float = 1.5, mac_hu: float = 1000.0,
    transseptal_height_mm: float = 36.0, valve_height_mm: float = 20.0, valve_ventricular_fraction: float = 0.8,
    blood_hu: float = 400.0, tissue_hu: float = 80.0, psf_sigma_mm: float = 0.45, noise_sd_hu: float = 25.0,
    spacing_mm: float = 0.6, center_ras: tuple[float, float, float] = (5.0, -10.0, 20.0), seed: int = 0,
) -> MitralPhantom:
    """Render the phantom (orientation drawn from ``seed``)."""
    a = 0.5 * ic_mm
    if not 0 < tt_mm < ic_mm:
        raise ValueError("the TT distance must be shorter than the IC distance")
    k = math.sqrt(1.0 - (0.5 * tt_mm / a) ** 2)
    b = sl_mm / (1.0 + k)
    c = sl_mm - b
    if not 0 < height_mm < 12:
        raise ValueError("height_mm must be between 0 and 12 mm")
    rng = np.random.default_rng([seed, 41])
    orientation = _random_rotation(rng)
    center = np.asarray(center_ras, dtype=float)

    phi_t = math.asin(c / b)
    phis = {"mitral_anterior_horn": -math.pi / 2, "mitral_trigone_left": -phi_t, "mitral_commissure_anterolateral": 0.0,
            "mitral_posterior_horn": math.pi / 2, "mitral_commissure_posteromedial": math.pi,
            "mitral_trigone_right": math.pi + phi_t}

    def to_ras(local):
        return center + np.asarray(local, dtype=float) @ orientation.T

    # ---- annulus truth, by dense integration of the analytic curve
    probe = _Geometry(a, b, c, height_mm, wall_mm, lvot_offset_mm, lvot_radius_mm, 0.0, inflow_radius_mm, 0.0, 0, 1)
    phi = np.linspace(0.0, 2 * math.pi, TRUTH_SAMPLES, endpoint=False)
    saddle = probe.annulus(phi)
    steps = np.linalg.norm(np.roll(saddle, -1, axis=0) - saddle, axis=1)
    saddle_perimeter = float(steps.sum())
    weights = 0.5 * (steps + np.roll(steps, 1))  # arc-length weights: the least-squares plane of the curve
    mean = (saddle * weights[:, None]).sum(0) / weights.sum()
    cov = ((saddle - mean) * weights[:, None]).T @ (saddle - mean)
    normal = np.linalg.eigh(cov)[1][:, 0]
    normal = normal if normal[2] > 0 else -normal
    if abs(normal[2]) < 1 - 1e-9:
        raise ValueError("the saddle's least-squares plane should be the annulus plane")
    plane_z = float(mean[2])
    saddle_area, _, _ = _polygon(saddle[:, :2])
    arc_phi = np.linspace(-phi_t, math.pi + phi_t, TRUTH_SAMPLES)
    posterior = probe.annulus(arc_phi)
    d_area, d_perimeter, d_centroid = _polygon(posterior[:, :2])
    tt = 2.0 * a * math.cos(phi_t)
    d_shape = {"area_mm2": d_area, "perimeter_mm": d_perimeter, "area_derived_diameter_mm": 2 * math.sqrt(d_area / math.pi),
               "perimeter_derived_diameter_mm": d_perimeter / math.pi,
               "centroid": to_ras([d_centroid[0], d_centroid[1], plane_z]), "centroid_local": [*d_centroid, plane_z],
               "points": to_ras(np.column_stack([posterior[::500, :2], np.full(len(posterior[::500]), plane_z)]))}
    annulus = {"saddle_perimeter_mm": saddle_perimeter, "saddle_area_mm2": saddle_area,
               "saddle_area_closed_form_mm2": math.pi * a * b, "d_shape": d_shape,
               "intercommissural_mm": 2 * a, "septal_lateral_mm": b + c, "trigone_to_trigone_mm": tt,
               "height_mm": float(height_mm), "eccentricity": 1.0 - (b + c) / (2 * a),
               "plane": {"centre_ras_mm": to_ras([0.0, -c, plane_z]), "normal": orientation[:, 2].copy()},
               "plane_offset_mm": plane_z, "semi_axes_mm": (a, b), "centre_offset_mm": c,
               "points": to_ras(saddle[::1000])}

    # ---- geometry
    tip = probe.annulus(-phi_t) + wall_mm * probe.outward(-phi_t)
    root_radius = float(math.hypot(tip[0], tip[1] - lvot_offset_mm))
    funnel_top, funnel_bottom = 0.5 * height_mm + 1.0, 0.5 * height_mm + 6.0
    geo = _Geometry(a, b, c, height_mm, wall_mm, lvot_offset_mm, lvot_radius_mm, root_radius, inflow_radius_mm,
                    float(d_centroid[1]), funnel_top, funnel_bottom)
    if lvot_offset_mm - lvot_radius_mm > b - c - 1.0:
        raise ValueError("the LVOT must lie under the anterior annulus (lvot_offset_mm − lvot_radius_mm < b − c)")

    # MAC: the posterior stretch subtending mac_arc_deg at the annulus centre (0, −c), centred on the posterior horn
    half = math.radians(0.5 * mac_arc_deg)
    theta = np.array([-math.pi / 2 - half, -math.pi / 2 + half])
    phi_mac = np.arctan2(-np.sin(theta) / b, np.cos(theta) / a)  # x = a cos φ = ρ cos θ, −b sin φ = ρ sin θ
    phi_mac = np.sort(np.mod(phi_mac, 2 * math.pi))
    mac_phi = np.linspace(phi_mac[0], phi_mac[1], 20_000)
    mac_centre = probe.annulus(mac_phi) + (mac_radius_mm + 0.5) * probe.outward(mac_phi)
    mac_length = float(np.linalg.norm(np.diff(mac_centre, axis=0), axis=1).sum())
    mac_stretch = probe.annulus(mac_phi)
    mac_share = float(np.linalg.norm(np.diff(mac_stretch, axis=0), axis=1).sum()) / saddle_perimeter
    mac_curve = _resample(mac_centre, 0.1)
    mac_threshold = blood_hu + max(200.0, 3.0 * noise_sd_hu)
    if mac_hu <= mac_threshold + 150:
        raise ValueError("mac_hu must be well above the calcium threshold")

    # ---- rendering, in chunks of voxels
    corners = np.array([[x, y, z] for x in (_BOX_LO[0], _BOX_HI[0]) for y in (_BOX_LO[1], _BOX_HI[1])
                        for z in (_BOX_LO[2], _BOX_HI[2])])
    grid = _grid_around(to_ras(corners), 0.0, spacing_mm)
    k_n, j_n, i_n = grid.shape
    m = grid.ijk_to_ras
    xs, ys, zs = m[0, 3] + m[0, 0] * np.arange(i_n), m[1, 3] + m[1, 1] * np.arange(j_n), m[2, 3] + m[2, 2] * np.arange(k_n)
    image = np.full(grid.shape, tissue_hu, dtype=np.float32)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    mac_lo = mac_curve.min(axis=0) - mac_radius_mm - 6 * psf_sigma_mm
    mac_hi = mac_curve.max(axis=0) + mac_radius_mm + 6 * psf_sigma_mm
    sigma = psf_sigma_mm
    per_slice = j_n * i_n
    slab = max(1, _CHUNK // per_slice)
    jj, ii = np.meshgrid(ys, xs, indexing="ij")
    plane_xy = np.column_stack([ii.ravel(), jj.ravel()])
    for k0 in range(0, k_n, slab):
        kk = zs[k0:k0 + slab]
        ras = np.empty((len(kk), per_slice, 3))
        ras[..., :2] = plane_xy[None]
        ras[..., 2] = kk[:, None]
        ras = ras.reshape(-1, 3)
        local = (ras - center) @ orientation
        inside = np.all((local >= _BOX_LO) & (local <= _BOX_HI), axis=1)
        if not inside.any():
            continue
        p = local[inside]
        sd_col = geo.sd_column(p)
        sd_in = geo.sd_inflow(p, sd_col)
        sd_tube = geo.sd_tube(p, sd_col)
        sd_la = geo.sd_atrium(p, sd_tube)
        sd_body = geo.sd_body(p)
        sd_blood = np.minimum.reduce([sd_in, sd_tube, sd_la, sd_body])
        values = tissue_hu + (blood_hu - tissue_hu) * _edge(sd_blood, sigma)
        near = np.all((p >= mac_lo) & (p <= mac_hi), axis=1)
        if near.any():
            fraction = _edge(_sweep_signed(p[near], mac_curve, mac_radius_mm), sigma)
            values[near] = values[near] * (1.0 - fraction) + mac_hu * fraction
        blood = sd_blood < 0
        atrial = (sd_la < 0) | ((sd_in < 0) & (p[:, 2] < geo.saddle(p[:, 0], p[:, 1])))
        aorta = (sd_tube < 0) & (p[:, 2] < 0) & ~atrial
        lab = np.zeros(len(p), np.uint8)
        lab[blood] = LV
        lab[blood & atrial] = LA
        lab[blood & aorta] = AORTA
        sd_lv = np.minimum.reduce([np.maximum(sd_in, geo.saddle(p[:, 0], p[:, 1]) - p[:, 2]),
                                   np.maximum(sd_tube, -p[:, 2]), sd_body])
        lab[~blood & (sd_lv < 4.0) & (p[:, 2] > 0.5 * height_mm + 2.0)] = LV_MYO
        flat_image = image.reshape(-1)
        flat_labels = labels.reshape(-1)
        offset = k0 * per_slice
        index = offset + np.flatnonzero(inside)
        flat_image[index] = values
        flat_labels[index] = lab
    image += _noise(grid.shape, noise_sd_hu, np.random.default_rng([seed, 1]))

    # ---- truth of the rest
    landmarks = {name: to_ras(probe.annulus(phis[name])) for name in LANDMARKS}
    septal_local = np.array([-6.0, -c - 4.0, plane_z - transseptal_height_mm])
    aortic_local = np.array([0.0, lvot_offset_mm, 0.0])
    mac_points = probe.annulus(mac_phi[[0, -1]])
    mac = {"arc_deg": float(mac_arc_deg), "arc_percent": 100.0 * mac_share, "volume_mm3": math.pi * mac_radius_mm**2 * mac_length,
           "max_thickness_mm": 2.0 * mac_radius_mm, "threshold_hu": mac_threshold,
           "rule": "blood + max(200, 3·noise SD) HU", "reaches_trigone": False, "hu": float(mac_hu),
           "ends": to_ras(mac_points), "centre_curve": to_ras(mac_curve[::10])}
    lvot = {"radius_mm": float(lvot_radius_mm), "axis_point": to_ras(aortic_local), "direction": orientation[:, 2].copy(),
            "axis_to_valve_axis_mm": float(lvot_offset_mm - d_centroid[1]), "inflow_radius_mm": float(inflow_radius_mm),
            "root_radius_mm": root_radius, "clean_from_mm": funnel_bottom,
            "valve_ventricular_mm": valve_height_mm * valve_ventricular_fraction, "valve_height_mm": valve_height_mm,
            "valve_ventricular_fraction": valve_ventricular_fraction}
    parameters = {"ic_mm": ic_mm, "sl_mm": sl_mm, "tt_mm": tt_mm, "height_mm": height_mm, "a_mm": a, "b_mm": b,
                  "c_mm": c, "lvot_radius_mm": lvot_radius_mm, "lvot_offset_mm": lvot_offset_mm,
                  "inflow_radius_mm": inflow_radius_mm, "wall_mm": wall_mm, "mac_radius_mm": mac_radius_mm,
                  "tissue_hu": tissue_hu, "spacing_mm": spacing_mm}
    return MitralPhantom(
        image=image.astype(np.float32), labels=labels, ijk_to_ras=grid.ijk_to_ras.copy(), landmarks=landmarks,
        transseptal_puncture=to_ras(septal_local), aortic_annulus_center=to_ras(aortic_local), annulus=annulus,
        mac=mac, lvot=lvot, transseptal_height_mm=float(transseptal_height_mm), seed=seed, orientation=orientation,
        center=center, blood_hu=float(blood_hu), psf_sigma_mm=float(psf_sigma_mm), noise_sd_hu=float(noise_sd_hu),
        parameters=parameters)


# ---------------------------------------------------------------------------------------------- files


def truth_dict(phantom: MitralPhantom) -> dict:
    """The truth as plain JSON values (everything but the image and the labels), with the neo-LVOT closed form
    for the default valve (the D-shape area-derived diameter)."""
    keys = ("landmarks", "transseptal_puncture", "aortic_annulus_center", "annulus", "mac", "lvot",
            "transseptal_height_mm", "seed", "orientation", "center", "blood_hu", "psf_sigma_mm", "noise_sd_hu",
            "label_names", "parameters")
    truth = {key: _plain(getattr(phantom, key)) for key in keys}
    truth["neo_lvot"] = _plain(phantom.neo_lvot())
    truth["ijk_to_ras"] = phantom.ijk_to_ras.tolist()
    truth["kind"] = "mitral"
    return truth


def write(phantom: MitralPhantom, folder: str | Path) -> Path:
    """``ct.nrrd``, ``labels.nrrd`` and ``truth.json`` in ``folder``; returns the image path."""
    from CardiacSuiteLib.imagedata import ImageSeries
    from CardiacSuiteLib.imageio import write_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_image(ImageSeries(frames=phantom.image[None], ijk_to_ras=phantom.ijk_to_ras, modality="CT",
                                   name="mitral phantom"), folder / "ct.nrrd")
    write_image(ImageSeries(frames=phantom.labels[None], ijk_to_ras=phantom.ijk_to_ras, name="mitral phantom labels"),
                folder / "labels.nrrd")
    (folder / "truth.json").write_text(json.dumps(truth_dict(phantom)))
    return path
