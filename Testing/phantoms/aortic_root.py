"""A CT phantom of the aortic root for TAVR planning measurements, with analytic truth in a random orientation.

TAVR sizing is scored on quantities that the SCCT 2019 expert consensus defines from landmarks (see
``shared/reference/cardiac-ct.md`` §4.1 and §2.5), so the phantom is built from those landmarks and every
measurement comes back in closed form:

* **Local frame.** Origin at the annulus centre, ``e3`` the annulus normal (into the aorta), ``e1`` the major
  axis of the annulus; height ``z`` above the annular plane, azimuth ``phi`` from ``e1`` towards ``e2``.
  ``orientation`` = ``[e1 e2 e3]`` (columns, in RAS). Every RAS point is ``center + orientation @ local``.
* **Lumen** (LV outflow, annulus, sinuses, sinotubular junction, start of the ascending aorta): one
  generalised cylinder about ``e3`` of radius ``R(z, phi)``. Its base section is an ellipse whose semi-axes
  blend with smoothsteps: the LVOT ellipse up to ``lvot_transition_mm`` below the annulus, the annulus ellipse
  (``annulus_semi_axes_mm``) exactly at z = 0, the STJ circle at ``stj_height_mm``, the aortic radius
  ``widening_mm`` higher. Three sinus lobes add ``sinus_bulge_mm[k]·cos²(1.5ψ)·sin(πu)``, ψ the azimuth from
  the sinus's nadir (±60° to the commissures) and u = (z − z_h(ψ)) / (z_stj − z_h(ψ)) between the hinge line
  z_h(ψ) = h_c·(1 − cos 1.5ψ) (0 at the nadir, ``commissure_height_mm`` at the commissures) and the STJ. So the
  annular plane section is the ellipse itself, the nadirs (hinge points, 120° apart in phi) are the lowest
  points of their sinuses, and each sinus floor rises along the hinge line to its commissures.
* **Ascending aorta**: a tube of ``aorta_diameter_mm`` continuing the cylinder straight for
  ``aorta_straight_mm`` and then bending by ``aorta_tilt_deg`` (towards the body's superior axis) over
  ``aorta_bend_mm`` of arc. **LV cavity**: an ellipsoid below the LVOT, tilted ``lv_tilt_deg`` off the root
  axis. **Coronaries**: tubes leaving the left and right sinuses horizontally (perpendicular to e3) at their
  centre azimuth, so the ostium's lower edge is exactly ``ostium_height_mm`` (SCCT: the perpendicular distance
  from the annular plane to the lower edge of the ostium), then curving down along the root.
* **Leaflets** (closed valve, ``leaflet_mm`` thick, ``leaflet_hu``): each cusp the surface
  z = z_c + t·(z_h(ψ) − z_c) − sag·t(1 − t)·cos²(1.5ψ), t = ρ / R(z_h(ψ), phi), from its hinge line on the
  wall to the centre of coaptation at ``coaptation_height_mm``; neighbouring cusps meet on the commissure
  lines. **Calcium**: balls on each cusp of ``calcium_volume_mm3`` per cusp (≤ ``calcium_nodule_mm3`` each,
  never overlapping), ``calcium_hu`` range. The truth volume is the exact volume of the unblurred balls, all of
  which lie above ``calcium_threshold_hu``.
* **Image**: contrast blood, a ``wall_mm`` wall, myocardium below the annular plane and fat above, each
  boundary blurred exactly for a flat boundary by 0.5·erfc(d / (√2 σ)) of a first-order signed distance
  d = (ρ − R) / √(1 + R_z² + (R_phi/ρ)²) (tubes: the exact distance to their centreline), leaflets and
  calcium composited over it, then correlated noise (``stent._noise``) from ``seed``.

Grids follow ``stent.py``: arrays ``[k, j, i]`` float32 HU, ``ijk_to_ras = diag(-s, -s, s)`` plus the box
corner, points RAS mm ``(N, 3)``. The box (``box_mm`` along R, A, S) is centred ``box_offset_mm`` above the
annulus along the normal.

**C-arm angles.** The view direction v is the unit vector from the isocentre to the image detector, in RAS:
v = (−sin α·cos β, cos α·cos β, sin β), α = LAO (+) / RAO (−), the rotation about the head–foot axis
towards the patient's left, β = CRA (+) / CAU (−), the tilt towards the head; AP (0, 0) looks from anterior.
The annular plane is seen edge-on when v ⟂ n, i.e. −n_R sin α cos β + n_A cos α cos β + n_S sin β = 0, so
β(α) = atan((n_R sin α − n_A cos α) / n_S): the perpendicularity ("S") curve, the closed form used to predict
TAVI deployment projections from CT (Gurvitch R, Wood DA, Leipsic J, et al. Multislice computed tomography
for prediction of optimal angiographic deployment projections during transcatheter aortic valve implantation.
JACC Cardiovasc Interv 2010;3:1157–65; SCCT 2019 consensus, reference §4.1). The coplanar three-cusp view is
the point of that curve where the nadirs project evenly spaced with the right cusp in the middle:
v ∥ 2·p_R − p_L − p_N (an in-plane vector, so v ⟂ n), the sign chosen with the detector anterior.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .stent import (
    _blurred_ball,
    _edge,
    _grid_around,
    _Grid,
    _noise,
    _polyline_distance,
    _rotation,
    _round,
    _smoothstep,
)

#: Cusps in the order of every per-cusp array; the right cusp is at azimuth phi_R, then +120°, +240°.
CUSPS = ("non_coronary", "left", "right")
#: Commissure k sits between cusp ``_AZIMUTH_ORDER[k]`` and the next one, 60° further round.
COMMISSURES = ("right_left", "left_non", "non_right")
_AZIMUTH_ORDER = ("right", "left", "non_coronary")  # cusps by increasing azimuth from phi_R
#: Step of tube centrelines, mm (the distance to a polyline this dense is exact to well under a micrometre).
CENTERLINE_STEP_MM = 0.2
#: Signed distances beyond this many PSF sigmas (plus the wall) are not needed: the erfc is 0 or 1 there.
_REACH_SIGMAS = 6.0


# ---------------------------------------------------------------------------------------------- C-arm


def view_direction(lao_deg: float | np.ndarray, cra_deg: float | np.ndarray) -> np.ndarray:
    """Unit vector(s) from the isocentre to the detector (RAS) for LAO(+)/RAO(−) and CRA(+)/CAU(−) angles."""
    a, b = np.radians(lao_deg), np.radians(cra_deg)
    return np.stack(np.broadcast_arrays(-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)), axis=-1)


def c_arm_angles(direction: np.ndarray) -> tuple[float, float]:
    """LAO/RAO and CRA/CAU (degrees) of a view direction; a posterior direction is the same line seen from the front."""
    v = np.asarray(direction, dtype=float)
    v = v / np.linalg.norm(v)
    if v[1] < 0:
        v = -v
    return float(np.degrees(math.atan2(-v[0], v[1]))), float(np.degrees(math.asin(np.clip(v[2], -1.0, 1.0))))


def perpendicularity_curve(normal: np.ndarray, lao_degrees: float | np.ndarray) -> np.ndarray:
    """CRA(+)/CAU(−) angle (degrees) at each LAO(+)/RAO(−) angle that keeps the plane of ``normal`` edge-on.

    β(α) = atan((n_R sin α − n_A cos α) / n_S) solves v(α, β)·n = 0 (conventions in the module docstring);
    the normal's sign does not matter, a horizontal plane (n_S = 0) gives ±90°.
    """
    n = np.asarray(normal, dtype=float)
    n = n / np.linalg.norm(n)
    if n[2] < 0:
        n = -n
    a = np.radians(np.asarray(lao_degrees, dtype=float))
    return np.degrees(np.arctan2(n[0] * np.sin(a) - n[1] * np.cos(a), n[2]))


# ---------------------------------------------------------------------------------------------- truth


@dataclass
class AorticRootPhantom:
    """One rendered CT volume of an aortic root and the exact landmarks and measurements it was built from."""

    image: np.ndarray  # [k, j, i] float32 HU
    ijk_to_ras: np.ndarray  # 4×4
    blood_mask: np.ndarray  # bool [k, j, i]: unblurred contrast lumen, less leaflets and calcium
    annulus: dict
    nadirs: np.ndarray  # (3, 3) RAS, in CUSPS order
    commissures: np.ndarray  # (3, 3) RAS, in COMMISSURES order
    lvot: dict
    sov: dict
    stj: dict
    ascending_40mm_diameter_mm: float
    ascending: dict
    coronary_ostia: dict
    calcium_volume_mm3: dict
    calcium_threshold_hu: float
    calcium: dict
    angulation_deg: float
    coplanar_view: dict
    seed: int
    orientation: np.ndarray  # 3×3, columns e1 (annulus major axis), e2, e3 (annulus normal), RAS
    blood_hu: float
    psf_sigma_mm: float
    noise_sd_hu: float
    cusp_names: tuple[str, ...] = CUSPS
    commissure_names: tuple[str, ...] = COMMISSURES
    parameters: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.image.shape)

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """RAS points in the annulus frame (x along the major axis, y, height above the annular plane)."""
        return (np.asarray(points, dtype=float) - self.annulus["center"]) @ self.orientation

    def voxel_points(self) -> np.ndarray:
        """RAS of every voxel centre, ``[k, j, i, 3]``."""
        return _Grid(self.ijk_to_ras, self.shape).points().reshape(*self.shape, 3)


def ramanujan_perimeter(a: float, b: float) -> float:
    """Ellipse perimeter by Ramanujan's second formula (relative error < 1e-9 for annulus eccentricities)."""
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1.0 + 3.0 * h / (10.0 + math.sqrt(4.0 - 3.0 * h)))


def _ellipse_measures(a: float, b: float) -> dict:
    """SCCT annulus/LVOT measures of an ellipse of semi-axes a ≥ b."""
    area, perimeter = math.pi * a * b, ramanujan_perimeter(a, b)
    return {"area_mm2": area, "perimeter_mm": perimeter, "diameter_min_mm": 2.0 * min(a, b),
            "diameter_max_mm": 2.0 * max(a, b), "area_derived_diameter_mm": 2.0 * math.sqrt(area / math.pi),
            "perimeter_derived_diameter_mm": perimeter / math.pi,
            "eccentricity_index": 1.0 - min(a, b) / max(a, b)}


# ---------------------------------------------------------------------------------------------- geometry


@dataclass
class _Root:
    """The generalised cylinder's parameters, in the local frame (mm, radians)."""

    lvot: tuple[float, float]
    annulus: tuple[float, float]
    r_stj: float
    r_aorta: float
    z_stj: float
    h_commissure: float
    lvot_transition: float
    widening: float
    z_bottom: float
    z_top: float
    phi_right: float
    bulge: np.ndarray  # per azimuth slot: right, left, non-coronary
    coaptation: float
    sag: float

    def semi_axes(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        below = _smoothstep((z + self.lvot_transition) / self.lvot_transition)
        above = _smoothstep(z / self.z_stj)
        widen = (self.r_aorta - self.r_stj) * _smoothstep((z - self.z_stj) / self.widening)
        axes = []
        for lvot, ann in zip(self.lvot, self.annulus):
            axes.append(np.where(z < 0, lvot + (ann - lvot) * below, ann + (self.r_stj - ann) * above) + widen)
        return axes[0], axes[1]

    def base(self, z: np.ndarray, phi: np.ndarray) -> np.ndarray:
        a, b = self.semi_axes(z)
        return a * b / np.sqrt((b * np.cos(phi)) ** 2 + (a * np.sin(phi)) ** 2)

    def sector(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Azimuth slot (0 right, 1 left, 2 non-coronary) and ψ ∈ [−60°, 60°) from that cusp's nadir."""
        rel = np.mod(phi - self.phi_right + math.pi / 3.0, 2.0 * math.pi)
        slot = np.minimum((rel // (2.0 * math.pi / 3.0)).astype(int), 2)
        return slot, rel - slot * (2.0 * math.pi / 3.0) - math.pi / 3.0

    def hinge(self, psi: np.ndarray) -> np.ndarray:
        return self.h_commissure * (1.0 - np.cos(1.5 * psi))

    def radius(self, z: np.ndarray, phi: np.ndarray) -> np.ndarray:
        slot, psi = self.sector(phi)
        z_h = self.hinge(psi)
        u = (z - z_h) / (self.z_stj - z_h)
        lobe = np.cos(1.5 * psi) ** 2 * np.where((u > 0) & (u < 1), np.sin(math.pi * np.clip(u, 0.0, 1.0)), 0.0)
        return self.base(z, phi) + self.bulge[slot] * lobe

    def leaflet_height(self, rho: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Height of the closed cusps above (rho, phi) and t = rho / hinge radius (the cusp is where t ≤ 1)."""
        _, psi = self.sector(phi)
        z_h = self.hinge(psi)
        t = rho / self.base(z_h, phi)
        height = self.coaptation + t * (z_h - self.coaptation) - self.sag * t * (1.0 - t) * np.cos(1.5 * psi) ** 2
        return height, t

    def signed(self, local: np.ndarray) -> np.ndarray:
        """First-order signed distance to the capped cylinder (negative inside)."""
        x, y, z = local[:, 0], local[:, 1], local[:, 2]
        rho, phi = np.hypot(x, y), np.arctan2(y, x)
        eps = 1e-3
        radius = self.radius(z, phi)
        dz = (self.radius(z + eps, phi) - self.radius(z - eps, phi)) / (2 * eps)
        dphi = (self.radius(z, phi + eps) - self.radius(z, phi - eps)) / (2 * eps)
        signed = (rho - radius) / np.sqrt(1.0 + dz**2 + (dphi / np.maximum(rho, 1.0)) ** 2)
        return np.maximum(signed, np.maximum(z - self.z_top, self.z_bottom - z))

    def leaflet_signed(self, local: np.ndarray, thickness: float) -> np.ndarray:
        """First-order signed distance to the cusps of ``thickness`` (inf off the cusps)."""
        x, y, z = local[:, 0], local[:, 1], local[:, 2]
        rho, phi = np.hypot(x, y), np.arctan2(y, x)
        eps = 1e-3
        height, t = self.leaflet_height(rho, phi)
        d_rho = (self.leaflet_height(rho + eps, phi)[0] - self.leaflet_height(np.maximum(rho - eps, 0.0), phi)[0]) / (
            rho + eps - np.maximum(rho - eps, 0.0))
        d_phi = (self.leaflet_height(rho, phi + eps)[0] - self.leaflet_height(rho, phi - eps)[0]) / (2 * eps)
        slope = np.sqrt(1.0 + d_rho**2 + (d_phi / np.maximum(rho, 1.0)) ** 2)
        return np.where(t <= 1.0, np.abs(z - height) / slope - 0.5 * thickness, np.inf)


def _tube(points: np.ndarray, centerline: np.ndarray, radius: float, reach: float) -> np.ndarray:
    """Signed distance to a tube of constant radius around a dense polyline (inf beyond ``reach``)."""
    lo, hi = centerline.min(axis=0) - radius - reach, centerline.max(axis=0) + radius + reach
    near = np.all((points >= lo) & (points <= hi), axis=1)
    out = np.full(len(points), np.inf)
    out[near] = _polyline_distance(points[near], centerline, radius + reach) - radius
    return out


def _resample(points: np.ndarray, step: float = CENTERLINE_STEP_MM) -> np.ndarray:
    """A polyline resampled at ≤ ``step`` along its arc length."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    s = np.linspace(0.0, arc[-1], int(math.ceil(arc[-1] / step)) + 1)
    return np.stack([np.interp(s, arc, points[:, a]) for a in range(3)], axis=1)


def _bent_path(start: np.ndarray, direction: np.ndarray, straight: float, towards: np.ndarray, angle_deg: float,
               bend: float, tail: float) -> np.ndarray:
    """Straight, then a circular arc turning ``direction`` by ``angle_deg`` towards ``towards``, then straight."""
    d = direction / np.linalg.norm(direction)
    side = towards - towards @ d * d
    side /= np.linalg.norm(side)
    axis = np.cross(d, side)
    pieces = [start + np.linspace(0.0, straight, max(2, int(straight / 0.05)))[:, None] * d]
    corner = pieces[0][-1]
    angle = math.radians(angle_deg)
    if angle > 0:
        radius = bend / angle
        centre = corner + radius * side
        steps = np.linspace(0.0, angle, max(2, int(bend / 0.05)))
        pieces.append(np.array([centre + _rotation(axis, s) @ (corner - centre) for s in steps]))
    end = pieces[-1][-1]
    out_dir = _rotation(axis, angle) @ d
    pieces.append(end + np.linspace(0.0, tail, max(2, int(tail / 0.05)))[:, None] * out_dir)
    return _resample(np.concatenate(pieces))


def _ellipsoid_signed(local: np.ndarray, center: np.ndarray, frame: np.ndarray, semi: np.ndarray) -> np.ndarray:
    """First-order signed distance to an ellipsoid: f/|∇f| with f = |q/s|·(|q/s| − 1), exact on its surface."""
    q = (local - center) @ frame
    k0 = np.linalg.norm(q / semi, axis=1)
    k1 = np.linalg.norm(q / semi**2, axis=1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def _frame(angulation_deg: float, azimuth_deg: float, right_cusp_deg: float,
           major_axis_deg: float) -> tuple[np.ndarray, float]:
    """The annulus frame [e1 e2 e3] in RAS and the right cusp's local azimuth.

    e3 leans ``angulation_deg`` from superior towards the horizontal direction ``azimuth_deg`` (0 = right,
    90 = anterior); the right cusp faces the anterior direction in the plane turned by ``right_cusp_deg``
    about e3 (positive = towards the patient's left), the major axis turned ``major_axis_deg`` from it.
    """
    t, p = math.radians(angulation_deg), math.radians(azimuth_deg)
    n = np.array([math.sin(t) * math.cos(p), math.sin(t) * math.sin(p), math.cos(t)])
    anterior = np.array([0.0, 1.0, 0.0]) - n[1] * n
    anterior /= np.linalg.norm(anterior)
    right = _rotation(n, math.radians(right_cusp_deg)) @ anterior
    e1 = _rotation(n, math.radians(major_axis_deg)) @ right
    e2 = np.cross(n, e1)
    return np.column_stack([e1, e2, n]), -math.radians(major_axis_deg)


# ---------------------------------------------------------------------------------------------- phantom


def aortic_root(
    annulus_semi_axes_mm: tuple[float, float] = (13.5, 11.0), lvot_semi_axes_mm: tuple[float, float] = (12.0, 10.0),
    lvot_transition_mm: float = 3.0, stj_diameter_mm: float = 28.0, stj_height_mm: float = 20.0,
    commissure_height_mm: float = 17.0, sinus_bulge_mm: tuple[float, float, float] = (6.0, 5.5, 6.5),
    aorta_diameter_mm: float = 32.0, widening_mm: float = 16.0, aorta_straight_mm: float = 4.0,
    aorta_tilt_deg: float = 15.0, aorta_bend_mm: float = 30.0,
    lv_semi_axes_mm: tuple[float, float, float] = (20.0, 18.0, 28.0),
    lv_tilt_deg: float = 25.0, lv_gap_mm: float = 6.0, ostium_height_mm: tuple[float, float] = (13.0, 16.0),
    coronary_diameter_mm: tuple[float, float] = (4.0, 3.6), ostium_offset_deg: tuple[float, float] = (0.0, 0.0),
    leaflets: bool = True, leaflet_mm: float = 1.0, leaflet_hu: float = 200.0, coaptation_height_mm: float = 10.0,
    leaflet_sag_mm: float = 3.0, calcium_volume_mm3: tuple[float, float, float] = (40.0, 120.0, 80.0),
    calcium_nodule_mm3: float = 40.0, calcium_hu: tuple[float, float] = (900.0, 1300.0),
    calcium_threshold_hu: float = 600.0, blood_hu: float = 400.0, wall_hu: float = 60.0, wall_mm: float = 2.0,
    myocardium_hu: float = 80.0, fat_hu: float = -80.0, psf_sigma_mm: float = 0.45, noise_sd_hu: float = 25.0,
    spacing_mm: float = 0.6, box_mm: tuple[float, float, float] = (80.0, 80.0, 100.0), box_offset_mm: float = 10.0,
    center_ras: tuple[float, float, float] = (10.0, -20.0, 30.0), angulation_deg: float | None = None,
    azimuth_deg: float | None = None, right_cusp_deg: float | None = None, major_axis_deg: float | None = None,
    seed: int = 0,
) -> AorticRootPhantom:
    """Render the phantom. Per-cusp tuples are in ``CUSPS`` order (non-coronary, left, right); coronary pairs are
    (left, right). Orientation angles left as ``None`` are drawn from ``seed``: angulation 40–60°, the normal
    leaning right and a little anterior (azimuth 5–35°), the right cusp ±20° off anterior, any major-axis
    direction.
    """
    rng = np.random.default_rng([seed, 23])
    drawn = (rng.uniform(40.0, 60.0), rng.uniform(5.0, 35.0), rng.uniform(-20.0, 20.0), rng.uniform(0.0, 180.0))
    angles = tuple(d if v is None else float(v) for v, d in
                   zip((angulation_deg, azimuth_deg, right_cusp_deg, major_axis_deg), drawn))
    orientation, phi_right = _frame(*angles)
    e3 = orientation[:, 2]
    center = np.asarray(center_ras, dtype=float)
    a_ann, b_ann = annulus_semi_axes_mm
    if b_ann > a_ann:
        raise ValueError("annulus_semi_axes_mm is (major, minor)")
    r_stj, r_aorta = 0.5 * stj_diameter_mm, 0.5 * aorta_diameter_mm
    if lvot_transition_mm > 4.0:
        raise ValueError("the LVOT must be its own ellipse 4 mm below the annulus (lvot_transition_mm ≤ 4)")
    if widening_mm**2 < 6.0 * r_aorta * abs(r_aorta - r_stj):
        # the aortic tube's round start must stay inside the widening root: W² ≥ 6·r_aorta·(r_aorta − r_stj)
        raise ValueError("widening_mm is too short for the step from the STJ to the aorta")
    slot_of = {name: k for k, name in enumerate(_AZIMUTH_ORDER)}
    cusp_phi = {name: phi_right + slot_of[name] * 2.0 * math.pi / 3.0 for name in CUSPS}
    z_top = stj_height_mm + widening_mm + aorta_straight_mm
    root = _Root(tuple(lvot_semi_axes_mm), (a_ann, b_ann), r_stj, r_aorta, stj_height_mm, commissure_height_mm,
                 lvot_transition_mm, widening_mm, -(lv_gap_mm + 14.0), z_top, phi_right,
                 np.array([sinus_bulge_mm[CUSPS.index(name)] for name in _AZIMUTH_ORDER], dtype=float),
                 coaptation_height_mm, leaflet_sag_mm)

    def to_ras(local: np.ndarray) -> np.ndarray:
        return center + np.asarray(local, dtype=float) @ orientation.T

    def wall_point(z: float, phi: float) -> np.ndarray:
        rho = float(root.radius(np.array(z), np.array(phi)))
        return np.array([rho * math.cos(phi), rho * math.sin(phi), z])

    # ascending aorta: straight on from the top of the widening, then bent towards the body's superior axis
    superior_local = orientation.T @ np.array([0.0, 0.0, 1.0])
    towards = superior_local if np.linalg.norm(superior_local[:2]) > 1e-6 else np.array([1.0, 0.0, 0.0])
    towards = np.array([towards[0], towards[1], 0.0])
    start_z = stj_height_mm + widening_mm
    aorta_local = _bent_path(np.array([0.0, 0.0, start_z]), np.array([0.0, 0.0, 1.0]), aorta_straight_mm,
                             towards, aorta_tilt_deg, aorta_bend_mm, 80.0)

    # LV cavity: its top ``lv_gap_mm`` below the annulus, leaning off the root axis
    lv_frame = _rotation(np.array([1.0, 0.0, 0.0]), math.radians(lv_tilt_deg))
    semi = np.asarray(lv_semi_axes_mm, dtype=float)
    top = float(np.linalg.norm(lv_frame[2] * semi))  # height of the ellipsoid's highest point over its centre
    lv_center = np.array([0.0, 0.0, -lv_gap_mm - top])

    # coronaries: horizontal out of the sinus at their centre azimuth, then curving down round the root
    coronaries, ostia = {}, {}
    for side, height, diameter, offset in zip(("left", "right"), ostium_height_mm, coronary_diameter_mm,
                                              ostium_offset_deg):
        r_cor, phi = 0.5 * diameter, cusp_phi[side] + math.radians(offset)
        z_c = height + r_cor
        wall = wall_point(z_c, phi)
        radial = np.array([math.cos(phi), math.sin(phi), 0.0])
        start = wall - 4.0 * radial
        tangent = np.array([-math.sin(phi), math.cos(phi), 0.0]) * (1.0 if side == "left" else -1.0)
        path = _bent_path(start, radial, 10.0, tangent - 0.6 * np.array([0.0, 0.0, 1.0]), 75.0, 18.0, 20.0)
        coronaries[side] = (path, r_cor)
        lowest = wall_point(height, phi)  # the tube's bottom line crosses the wall at this point
        ostia[side] = {"point": to_ras(wall), "lower_edge": to_ras(np.array([lowest[0], lowest[1], height])),
                       "height_mm": float(height), "diameter_mm": float(diameter),
                       "centerline": to_ras(path)}

    # calcium balls on the cusps
    leaflet_layout = {1: ((0.7, 0.0),), 2: ((0.7, -0.35), (0.7, 0.35)), 3: ((0.7, -0.55), (0.55, 0.0), (0.7, 0.55))}
    cal_local, cal_radius, cal_hu, cal_cusp = [], [], [], []
    for name, volume in zip(CUSPS, calcium_volume_mm3):
        if volume <= 0:
            continue
        count = int(math.ceil(volume / calcium_nodule_mm3 - 1e-9))
        if count not in leaflet_layout:
            raise ValueError(f"{volume} mm³ on one cusp needs {count} nodules; at most 3 fit "
                             "(raise calcium_nodule_mm3)")
        radius = (3.0 * volume / (4.0 * math.pi * count)) ** (1.0 / 3.0)
        for t, psi in leaflet_layout[count]:
            phi = cusp_phi[name] + psi
            rho = t * float(root.base(np.array(root.hinge(np.array(psi))), np.array(phi)))
            height = float(root.leaflet_height(np.array(rho), np.array(phi))[0])
            cal_local.append([rho * math.cos(phi), rho * math.sin(phi), height])
            cal_radius.append(radius)
            cal_hu.append(rng.uniform(*calcium_hu))
            cal_cusp.append(name)
    cal_local = np.array(cal_local).reshape(-1, 3)
    cal_radius = np.array(cal_radius)
    for i in range(len(cal_local)):
        for j in range(i):
            if np.linalg.norm(cal_local[i] - cal_local[j]) <= cal_radius[i] + cal_radius[j] + 0.2:
                raise ValueError("calcium nodules overlap: their volumes would not add up; use smaller nodules")
    if cal_hu and min(cal_hu) <= calcium_threshold_hu:
        raise ValueError("calcium must be brighter than calcium_threshold_hu")

    # ---- rendering
    box_center = center + box_offset_mm * e3
    half = 0.5 * np.asarray(box_mm, dtype=float)
    grid = _grid_around(np.array([box_center - half, box_center + half]), 0.0, spacing_mm)
    points = grid.points()
    local = (points - center) @ orientation
    sigma = psf_sigma_mm
    reach = wall_mm + _REACH_SIGMAS * sigma
    signed = root.signed(local)
    signed = np.minimum(signed, _tube(local, aorta_local, r_aorta, reach))
    signed = np.minimum(signed, _ellipsoid_signed(local, lv_center, lv_frame, semi))
    for path, r_cor in coronaries.values():
        signed = np.minimum(signed, _tube(local, path, r_cor, reach))
    below = _edge(local[:, 2] + 1.0, 2.0)  # myocardium round the LVOT and LV, fat round the root and aorta
    outside = fat_hu + (myocardium_hu - fat_hu) * below
    image = (outside + (wall_hu - outside) * _edge(signed - wall_mm, sigma)
             + (blood_hu - wall_hu) * _edge(signed, sigma))
    blood = signed < 0
    if leaflets:
        near = np.abs(local[:, 2] - 0.5 * commissure_height_mm) < commissure_height_mm
        cusp = np.full(len(points), np.inf)
        cusp[near] = root.leaflet_signed(local[near], leaflet_mm)
        fraction = _edge(cusp, sigma) * _edge(signed, sigma)
        image = image * (1.0 - fraction) + leaflet_hu * fraction
        blood &= cusp >= 0
    image = image.reshape(grid.shape)
    blood = blood.reshape(grid.shape)
    cal_ras = to_ras(cal_local)
    inverse = np.linalg.inv(grid.ijk_to_ras)
    voxels = points.reshape(*grid.shape, 3)
    for c, r, hu in zip(cal_ras, cal_radius, cal_hu):
        ijk = inverse[:3, :3] @ c + inverse[:3, 3]
        span = (r + 5.0 * sigma) / grid.spacing
        lo = np.maximum(np.floor(ijk - span).astype(int), 0)
        hi = np.minimum(np.ceil(ijk + span).astype(int) + 1, np.array(grid.shape[::-1]))
        box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        distance = np.linalg.norm(voxels[box] - c, axis=-1)
        fraction = _blurred_ball(distance, r, sigma)
        image[box] = image[box] * (1.0 - fraction) + hu * fraction
        blood[box] &= distance >= r
    image = image.astype(np.float32) + _noise(grid.shape, noise_sd_hu, np.random.default_rng([seed, 1]))

    # ---- truth
    phis = np.linspace(0.0, 2.0 * math.pi, 720, endpoint=False)
    ellipse = np.column_stack([a_ann * np.cos(phis), b_ann * np.sin(phis), np.zeros_like(phis)])
    annulus = {"center": center.copy(), "normal": e3.copy(), "semi_axes_mm": (a_ann, b_ann),
               "major_axis": orientation[:, 0].copy(), **_ellipse_measures(a_ann, b_ann), "points": to_ras(ellipse)}
    nadir_local = np.array([wall_point(0.0, cusp_phi[name]) for name in CUSPS])
    commissure_phi = [phi_right + math.pi / 3.0 + k * 2.0 * math.pi / 3.0 for k in range(3)]
    commissure_local = np.array([wall_point(commissure_height_mm, p) for p in commissure_phi])
    a_l, b_l = lvot_semi_axes_mm
    lvot = {"center": to_ras(np.array([0.0, 0.0, -4.0])), "height_mm": -4.0,
            **_ellipse_measures(max(a_l, b_l), min(a_l, b_l))}
    zs = np.linspace(0.0, stj_height_mm, 4001)
    sov = {}
    for name in CUSPS:
        phi = cusp_phi[name]
        across = root.radius(zs, np.full_like(zs, phi)) + root.radius(zs, np.full_like(zs, phi + math.pi))
        best = int(np.argmax(across))
        z_best = float(zs[best])
        sov[name] = {"diameter_mm": float(across[best]), "height_mm": z_best,
                     "sinus_point": to_ras(wall_point(z_best, phi)),
                     "commissure_point": to_ras(wall_point(z_best, phi + math.pi))}
    sov["mean_diameter_mm"] = float(np.mean([sov[name]["diameter_mm"] for name in CUSPS]))
    stj = {"diameter_mm": float(stj_diameter_mm), "height_mm": float(stj_height_mm),
           "center": to_ras(np.array([0.0, 0.0, stj_height_mm]))}
    # the aortic centreline (root axis, then the tube) and its point 40 mm above the annular plane
    axis_local = np.concatenate([np.column_stack([np.zeros(2), np.zeros(2), [stj_height_mm, start_z]]), aorta_local])
    axis_local = _resample(axis_local)
    if np.any(np.diff(axis_local[:, 2]) <= 0):
        raise ValueError("the aorta must keep rising (aorta_tilt_deg < 90)")
    at40 = np.array([np.interp(40.0, axis_local[:, 2], axis_local[:, a]) for a in range(3)])
    d40 = 2.0 * (r_aorta if 40.0 >= start_z else float(root.radius(np.array(40.0), np.array(0.0))))
    ascending = {"centerline": to_ras(axis_local), "point_40mm": to_ras(at40), "tilt_deg": float(aorta_tilt_deg),
                 "diameter_mm": float(aorta_diameter_mm),
                 "direction": orientation @ (aorta_local[-1] - aorta_local[-2]) / np.linalg.norm(
                     aorta_local[-1] - aorta_local[-2])}
    volumes = {name: float(sum(4.0 / 3.0 * math.pi * r**3 for r, c in zip(cal_radius, cal_cusp) if c == name))
               for name in CUSPS}
    nadirs = to_ras(nadir_local)
    p = {name: nadirs[k] for k, name in enumerate(CUSPS)}
    v = 2.0 * p["right"] - p["left"] - p["non_coronary"]
    v -= v @ e3 * e3
    lao, cra = c_arm_angles(v)
    coplanar = {"lao_deg": lao, "cra_deg": cra, "view_direction": view_direction(lao, cra),
                "convention": "view direction isocentre→detector (RAS) = "
                              "(−sin LAO·cos CRA, cos LAO·cos CRA, sin CRA);"
                              " LAO+ towards the patient's left, CRA+ towards the head; right cusp in the middle"}
    parameters = {"angulation_deg": angles[0], "azimuth_deg": angles[1], "right_cusp_deg": angles[2],
                  "major_axis_deg": angles[3], "spacing_mm": spacing_mm, "box_mm": list(box_mm),
                  "sinus_bulge_mm": list(sinus_bulge_mm), "commissure_height_mm": commissure_height_mm,
                  "leaflets": leaflets, "leaflet_mm": leaflet_mm, "leaflet_hu": leaflet_hu, "wall_hu": wall_hu,
                  "wall_mm": wall_mm, "myocardium_hu": myocardium_hu, "fat_hu": fat_hu,
                  "coaptation_height_mm": coaptation_height_mm}
    return AorticRootPhantom(
        image=image, ijk_to_ras=grid.ijk_to_ras.copy(), blood_mask=blood, annulus=annulus, nadirs=nadirs,
        commissures=to_ras(commissure_local), lvot=lvot, sov=sov, stj=stj, ascending_40mm_diameter_mm=d40,
        ascending=ascending, coronary_ostia=ostia, calcium_volume_mm3=volumes,
        calcium_threshold_hu=float(calcium_threshold_hu),
        calcium={"centers": cal_ras, "radii_mm": cal_radius, "hu": np.array(cal_hu), "cusp": cal_cusp},
        angulation_deg=float(np.degrees(math.acos(np.clip(e3[2], -1.0, 1.0)))), coplanar_view=coplanar, seed=seed,
        orientation=orientation, blood_hu=float(blood_hu), psf_sigma_mm=float(psf_sigma_mm),
        noise_sd_hu=float(noise_sd_hu), parameters=parameters)


# ---------------------------------------------------------------------------------------------- files


def _plain(value):
    """Arrays and numpy scalars as JSON values (points rounded to 0.1 µm)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _round(value) if value.dtype.kind == "f" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def truth_dict(phantom: AorticRootPhantom) -> dict:
    """The truth as plain JSON values (everything but the image and the mask)."""
    keys = ("annulus", "nadirs", "commissures", "lvot", "sov", "stj", "ascending_40mm_diameter_mm", "ascending",
            "coronary_ostia", "calcium_volume_mm3", "calcium_threshold_hu", "calcium", "angulation_deg",
            "coplanar_view", "seed", "orientation", "blood_hu", "psf_sigma_mm", "noise_sd_hu", "cusp_names",
            "commissure_names", "parameters")
    truth = {key: _plain(getattr(phantom, key)) for key in keys}
    truth["ijk_to_ras"] = phantom.ijk_to_ras.tolist()
    truth["kind"] = "aortic_root"
    return truth


def write(phantom: AorticRootPhantom, folder: str | Path) -> Path:
    """``ct.nrrd`` and ``truth.json`` in ``folder``; returns the image path."""
    from CardiacSuiteLib.imagedata import ImageSeries
    from CardiacSuiteLib.imageio import write_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_image(ImageSeries(frames=phantom.image[None], ijk_to_ras=phantom.ijk_to_ras, modality="CT",
                                   name="aortic root phantom"), folder / "ct.nrrd")
    (folder / "truth.json").write_text(json.dumps(truth_dict(phantom)))
    return path
