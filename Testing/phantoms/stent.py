"""CT phantoms of implanted stents with exact truth: a coronary stent and a TAVR frame, in 3D and in 4D.

Reconstruction methods are scored against these, so the geometry is analytic and the image is rendered from
it the way a scanner forms it:

* **Struts** are thin wires. Every strut centreline is sampled at ≤ 0.05 mm and each sample is splatted as an
  isotropic 3D Gaussian (sigma = the scanner PSF, ``psf_sigma_mm``: the blooming) weighted by its length, over
  the voxels within 3.5 sigma. That is the exact blurred line, scaled so an isolated straight strut peaks at
  ``metal_peak_hu`` above what surrounds it; crowns, nodes and crossings add up as they do in real CT.
* **Lumen**: contrast blood (``lumen_hu``) inside the vessel, a wall ring (``wall_hu``, ``wall_mm``) and fat or
  tissue outside, each boundary blurred by the same PSF analytically (0.5·erfc(signed distance / (√2 sigma))).
* **Calcium**: spheres (600–1000 HU, radius 0.6–1.5 mm) near but outside the device, blurred exactly (the
  closed form of a ball convolved with a Gaussian) and composited over the tissue.
* **Noise**: Gaussian white noise smoothed by 0.5 voxel and rescaled to ``noise_sd_hu``; ``seed`` makes every
  image reproducible.

``coronary_stent``: rings of zig-zag struts (``crowns`` crowns per ring, ``ring_height_mm`` tall, ``rings``
rings over ``length_mm``), consecutive rings out of phase (peak facing valley) and joined by
``links_per_gap`` short straight links whose angles alternate from gap to gap. The stent lies on a cylinder
of ``diameter_mm`` (through the strut centrelines) around a curved artery: a helix segment of radius of
curvature ``bend_radius_mm`` and torsion ``torsion_per_mm`` (a circular arc at torsion 0), the rings in the
local normal plane of a parallel-transport frame, so every strut point is c(s) + r(cos θ n(s) + sin θ b(s)) and
lies exactly r from the axis. The lumen radius is r + ``lumen_clearance_mm``; the artery runs
``vessel_extension_mm`` beyond both stent ends (out of the image box).

``tavr_frame``: a balloon-expandable (Sapien-like) frame of diamond cells: ``rows`` rows of ``cells`` diamonds
around, made of ``rows`` + 1 zig-zag bands of struts between node rings, four struts meeting at every inner
node. Struts are straight in the unrolled cylinder (helical segments on its surface, as cut from a tube), so
they lie exactly on the cylinder; ``flare_mm`` widens both ends quadratically. The frame sits
``ventricular_mm`` below the annulus of an aortic root: an LV outflow below, three sinuses bulging by
``sinus_depth_mm`` above the annulus up to the sinotubular junction, and the ascending aorta.

Failure variants, for tests of a score: ``missing_rings`` (rings, or TAVR bands, not drawn; the truth extent is
what is drawn, the nominal one stays), ``wire_gap_mm`` (a gap of that length cut out of one strut in the
middle ring or band), ``displacement_mm`` (the device shifted rigidly off the vessel axis, perpendicular to the
axis at its centre, the vessel staying put). ``nominal_diameter_mm`` / ``nominal_length_mm`` are the label.

Grids are axis-aligned with an LPS-like direction: ``ijk_to_ras = diag(-si, -sj, sk)`` plus an origin at the
box corner; arrays are ``[k, j, i]`` float32 HU; points are RAS mm, ``(N, 3)``. The device axis is oblique to
the grid (``orientation_deg``: rotations about x, y, z in that order) so nothing lines up with voxels.

``moving`` renders a 4D study: ``phases`` phases (index 0, 10, … 90 %), the device, the vessel and the calcium
all moved by one smooth, analytic map (``CardiacMotion``: translation along a closed loop peaking at end
systole, a small rotation about the device centre and, for the coronary, a mild bending along the device),
identity at ``reference_phase`` (70 %, diastole), each phase rendered from its moved geometry with its own
noise. ``write`` / ``write_4d`` store ``ct.nrrd`` or ``ct.seq.nrrd`` with ``truth.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage, special
from scipy.spatial import cKDTree

#: Splat reach in PSF sigmas: the tail left out is 0.2 % of the peak, well under the noise.
SPLAT_REACH = 3.5
#: Longest step between strut samples, mm.
STRUT_STEP_MM = 0.05
#: Step of the truth axis and of the vessel centreline, mm.
AXIS_STEP_MM = 0.1

Points = np.ndarray
Map = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------------------- truth


@dataclass
class StentPhantom:
    """One rendered CT volume and the exact geometry it was rendered from."""

    image: np.ndarray  # [k, j, i] float32 HU
    ijk_to_ras: np.ndarray  # 4×4
    kind: str  # "coronary" or "tavr"
    axis: Points  # device axis from its start to its end, ≤ AXIS_STEP_MM steps
    start: np.ndarray
    end: np.ndarray
    diameter_mm: float  # of the cylinder through the strut centrelines (TAVR: at the waist)
    length_mm: float  # along the axis between the device ends
    struts: list[Points]  # every strut and link centreline, ≤ STRUT_STEP_MM steps
    strut_points: Points  # all strut samples, concatenated
    vessel_centerline: Points  # runs beyond both device ends
    vessel_radius_mm: float | np.ndarray  # coronary: a constant; TAVR: equal-area radius per centreline point
    vessel_mask: np.ndarray  # bool [k, j, i], the unblurred lumen
    calcium_centers: Points
    calcium_radii_mm: np.ndarray
    nominal_diameter_mm: float
    nominal_length_mm: float
    psf_sigma_mm: float
    noise_sd_hu: float
    click_start: np.ndarray  # where a user would click the device ends: near the truth, not on it
    click_end: np.ndarray
    metal_peak_hu: float = 0.0
    lumen_hu: float = 0.0
    defects: dict = field(default_factory=dict)
    phase_percent: float | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.image.shape)


@dataclass
class StentPhantom4D:
    """Phases of one moving device on one grid, with the map that moves the reference phase onto each."""

    phases: list[StentPhantom]
    index_values: list[float]  # cardiac phase, %
    reference_phase: int
    motion: CardiacMotion
    kind: str

    @property
    def ijk_to_ras(self) -> np.ndarray:
        return self.phases[0].ijk_to_ras

    @property
    def frames(self) -> np.ndarray:
        """All phase images as ``[T, K, J, I]``."""
        return np.stack([p.image for p in self.phases])

    def displacement(self, points: Points, phase: int) -> Points:
        """The true motion of reference-phase points into ``phase``."""
        return self.motion(points, phase) - np.asarray(points, dtype=float)


# ---------------------------------------------------------------------------------------------- motion


def _rotation(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rodrigues' rotation matrix about a unit axis."""
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    x = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + math.sin(angle_rad) * x + (1.0 - math.cos(angle_rad)) * (x @ x)


def _euler(degrees: tuple[float, float, float]) -> np.ndarray:
    """Rotation about x, then y, then z (degrees): how a local device frame is set obliquely in RAS."""
    rx, ry, rz = (_rotation(np.eye(3)[a], math.radians(d)) for a, d in enumerate(degrees))
    return rz @ ry @ rx


def cardiac_timing(fraction: float, reference: float = 0.7, peak: float = 0.35) -> float:
    """Motion amplitude over the cycle: 0 at the reference phase, 1 at end systole, half-cosine rise and fall.

    Both halves are half cosines, so the curve and its slope are continuous over the whole cycle.
    """
    forward = (fraction - reference) % 1.0
    to_peak = (peak - reference) % 1.0
    if forward <= to_peak:
        return 0.5 * (1.0 - math.cos(math.pi * forward / to_peak))
    return 0.5 * (1.0 + math.cos(math.pi * (forward - to_peak) / (1.0 - to_peak)))


@dataclass
class CardiacMotion:
    """A smooth analytic map of reference-phase positions into each phase.

    x' = pivot + R(g·rotation)·(x + g·bend(x) − pivot) + g·translation + sin(2π(t − t_ref))·loop, with g the
    cardiac timing (0 at the reference, 1 at ``peak_fraction``). ``loop`` opens the back-and-forth path into a
    closed loop; ``bend`` = ``bend_mm``·(1 − exp(−u²))/(1 − e⁻¹)·``bend_direction`` with u the position along
    ``axis_direction`` in device half-lengths, so the device bends by ``bend_mm`` at its ends and not at its
    centre.
    """

    phases: int
    reference_phase: int
    pivot: np.ndarray
    translation_mm: np.ndarray
    loop_mm: np.ndarray
    rotation_axis: np.ndarray
    rotation_deg: float
    axis_direction: np.ndarray
    half_length_mm: float
    bend_direction: np.ndarray
    bend_mm: float = 0.0
    peak_fraction: float = 0.35

    def fraction(self, phase: int) -> float:
        return phase / self.phases

    def amplitude(self, phase: int) -> float:
        return cardiac_timing(self.fraction(phase), self.fraction(self.reference_phase), self.peak_fraction)

    def __call__(self, points: Points, phase: int) -> Points:
        points = np.asarray(points, dtype=float)
        if phase % self.phases == self.reference_phase % self.phases:
            return points.copy()
        g = self.amplitude(phase)
        loop = math.sin(2.0 * math.pi * (self.fraction(phase) - self.fraction(self.reference_phase)))
        flat = points.reshape(-1, 3)
        u = (flat - self.pivot) @ self.axis_direction / self.half_length_mm
        bend = (self.bend_mm * (1.0 - np.exp(-u * u)) / (1.0 - math.exp(-1.0)))[:, None] * self.bend_direction
        rotation = _rotation(self.rotation_axis, math.radians(self.rotation_deg * g))
        moved = (flat + g * bend - self.pivot) @ rotation.T + self.pivot + g * self.translation_mm + loop * self.loop_mm
        return moved.reshape(points.shape)


# ---------------------------------------------------------------------------------------------- geometry


@dataclass
class _Geometry:
    """Everything a phase is rendered from, in RAS; ``moved`` carries it through a motion map."""

    kind: str
    struts: list[Points]
    axis: Points
    centerline: Points
    vessel_radius: float | np.ndarray
    calcium_centers: Points
    calcium_radii: np.ndarray
    calcium_hu: np.ndarray
    clicks: Points  # (2, 3)
    root_origin: np.ndarray | None = None  # TAVR: annulus centre and local frame (columns e1, e2, axis)
    root_frame: np.ndarray | None = None
    root: dict | None = None
    defects: dict = field(default_factory=dict)

    def moved(self, f: Map) -> _Geometry:
        origin, frame = self.root_origin, self.root_frame
        if origin is not None:
            # the root map is rigid, so three mapped unit points give its frame exactly
            mapped = f(np.vstack([origin, origin + frame.T]))
            origin = mapped[0]
            u, _, vt = np.linalg.svd((mapped[1:] - mapped[0]).T)
            frame = u @ vt
        defects = dict(self.defects)
        if defects.get("wire_gap"):
            gap = dict(defects["wire_gap"])
            gap["center"] = f(np.asarray(gap["center"], dtype=float)[None])[0].tolist()
            defects["wire_gap"] = gap
        return replace(self, struts=[f(s) for s in self.struts], axis=f(self.axis), centerline=f(self.centerline),
                       calcium_centers=f(self.calcium_centers), clicks=f(self.clicks), root_origin=origin,
                       root_frame=frame, defects=defects)


@dataclass
class _Style:
    """How a geometry looks in CT."""

    lumen_hu: float
    wall_hu: float
    outside_hu: float
    wall_mm: float
    metal_peak_hu: float
    psf_sigma_mm: float
    noise_sd_hu: float
    diameter_mm: float
    nominal_diameter_mm: float
    nominal_length_mm: float
    below_hu: float | None = None  # TAVR: tissue around the LV outflow (myocardium), blended into outside_hu


def _sample_segment(points_of: Callable[[np.ndarray], Points], length_hint: float) -> Points:
    """Nodes along a parametric strut u ∈ [0, 1], refined until no step exceeds STRUT_STEP_MM."""
    count = max(2, int(math.ceil(length_hint / (0.8 * STRUT_STEP_MM))))
    while True:
        nodes = points_of(np.linspace(0.0, 1.0, count + 1))
        steps = np.linalg.norm(np.diff(nodes, axis=0), axis=1)
        if steps.max() <= STRUT_STEP_MM:
            return nodes
        count = int(math.ceil(count * steps.max() / (0.9 * STRUT_STEP_MM)))


def _straight_strut(surface: Callable[[np.ndarray, np.ndarray], Points], a: tuple[float, float],
                    b: tuple[float, float], length_hint: float) -> Points:
    """A strut straight in the unrolled surface coordinates (axial position, angle) from ``a`` to ``b``."""
    return _sample_segment(lambda u: surface(a[0] + u * (b[0] - a[0]), a[1] + u * (b[1] - a[1])), length_hint)


def _polyline_length(points: Points) -> float:
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def _cut_gap(polyline: Points, gap_mm: float) -> list[Points]:
    """The polyline with ``gap_mm`` of its length removed around its middle: two pieces."""
    steps = np.linalg.norm(np.diff(polyline, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    total = arc[-1]
    if not 0.0 < gap_mm < total:
        raise ValueError(f"wire gap {gap_mm} mm does not fit a {total:.2f} mm strut")
    lo, hi = 0.5 * (total - gap_mm), 0.5 * (total + gap_mm)

    def at(value: float) -> np.ndarray:
        return np.array([np.interp(value, arc, polyline[:, a]) for a in range(3)])

    first = np.vstack([polyline[arc < lo], at(lo)])
    second = np.vstack([at(hi), polyline[arc > hi]])
    return [first, second]


def _clicks(axis: Points, rng: np.random.Generator) -> Points:
    """User clicks at the device ends: 0.5–1.5 mm outward along the axis and 0.3–0.8 mm sideways."""
    clicks = []
    for end, inner in ((axis[0], axis[1]), (axis[-1], axis[-2])):
        outward = end - inner
        outward /= np.linalg.norm(outward)
        side = rng.standard_normal(3)
        side -= side @ outward * outward
        side /= np.linalg.norm(side)
        clicks.append(end + rng.uniform(0.5, 1.5) * outward + rng.uniform(0.3, 0.8) * side)
    return np.array(clicks)


def _perpendicular(direction: np.ndarray, angle_deg: float) -> np.ndarray:
    """A unit vector perpendicular to ``direction``, turned by ``angle_deg`` about it from a fixed reference."""
    direction = direction / np.linalg.norm(direction)
    seed = np.eye(3)[int(np.argmin(np.abs(direction)))]
    first = np.cross(direction, seed)
    first /= np.linalg.norm(first)
    second = np.cross(direction, first)
    angle = math.radians(angle_deg)
    return math.cos(angle) * first + math.sin(angle) * second


class _Helix:
    """A helix by arc length with its parallel-transport frame, all analytic.

    Curvature ``1/bend_radius``, torsion ``torsion``: c(t) = (a cos t, a sin t, b t) with
    a = κ/(κ²+τ²), b = τ/(κ²+τ²), s = t·√(a²+b²). The Frenet normal and binormal turned by −τ·s do not twist
    about the tangent (parallel transport), so rings placed with them stay in phase along the artery.
    """

    def __init__(self, bend_radius_mm: float, torsion_per_mm: float):
        kappa, tau = 1.0 / bend_radius_mm, torsion_per_mm
        self.a = kappa / (kappa**2 + tau**2)
        self.b = tau / (kappa**2 + tau**2)
        self.c = math.hypot(self.a, self.b)
        self.tau = tau

    def frame(self, s: np.ndarray) -> tuple[Points, Points, Points, Points]:
        s = np.asarray(s, dtype=float)
        t = s / self.c
        cos_t, sin_t = np.cos(t), np.sin(t)
        point = np.stack([self.a * cos_t, self.a * sin_t, self.b * t], axis=-1)
        tangent = np.stack([-self.a * sin_t, self.a * cos_t, np.full_like(t, self.b)], axis=-1) / self.c
        normal = np.stack([-cos_t, -sin_t, np.zeros_like(t)], axis=-1)
        binormal = np.stack([self.b * sin_t, -self.b * cos_t, np.full_like(t, self.a)], axis=-1) / self.c
        phi = (-self.tau * s)[..., None]
        n = np.cos(phi) * normal + np.sin(phi) * binormal
        b = -np.sin(phi) * normal + np.cos(phi) * binormal
        return point, tangent, n, b


def _coronary_geometry(
    diameter_mm: float, length_mm: float, rings: int, crowns: int, ring_height_mm: float, links_per_gap: int,
    lumen_clearance_mm: float, bend_radius_mm: float, torsion_per_mm: float, vessel_extension_mm: float,
    center_ras: tuple[float, float, float], orientation_deg: tuple[float, float, float],
    missing_rings: tuple[int, ...], wire_gap_mm: float, displacement_mm: float, displacement_angle_deg: float,
    calcium: tuple[tuple[str, float, float, float, float, float], ...], seed: int,
) -> _Geometry:
    """The stent, its artery and the calcium in RAS, before rendering."""
    r = 0.5 * diameter_mm
    gap = (length_mm - rings * ring_height_mm) / (rings - 1)
    if rings < 2 or gap <= 0.05:
        raise ValueError(f"{rings} rings of {ring_height_mm} mm do not fit {length_mm} mm with gaps between them")
    helix = _Helix(bend_radius_mm, torsion_per_mm)
    c_mid = helix.frame(np.array([0.5 * length_mm]))
    rotation = _euler(orientation_deg)
    center = np.asarray(center_ras, dtype=float)

    def to_ras(local: Points) -> Points:
        return (local - c_mid[0][0]) @ rotation.T + center

    # the rigid shift off the vessel axis, perpendicular to it at the device centre
    shift_local = displacement_mm * (math.cos(math.radians(displacement_angle_deg)) * c_mid[2][0]
                                     + math.sin(math.radians(displacement_angle_deg)) * c_mid[3][0])

    def surface(s: np.ndarray, theta: np.ndarray) -> Points:
        point, _, n, b = helix.frame(s)
        return to_ras(point + r * (np.cos(theta)[:, None] * n + np.sin(theta)[:, None] * b) + shift_local)

    centers = 0.5 * ring_height_mm + np.arange(rings) * (ring_height_mm + gap)
    drawn = [i for i in range(rings) if i not in set(missing_rings)]
    if not drawn:
        raise ValueError("every ring is missing")
    struts: list[Points] = []
    ring_of: list[int] = []
    pitch = math.pi / crowns  # angle from a valley to the next peak
    for i in drawn:
        for k in range(2 * crowns):
            # vertex k is a peak (toward the next ring) when k + i is odd: rings alternate, peak facing valley
            s0 = centers[i] + 0.5 * ring_height_mm * (1 if (k + i) % 2 else -1)
            s1 = centers[i] + 0.5 * ring_height_mm * (1 if (k + i + 1) % 2 else -1)
            t0, t1 = k * pitch, (k + 1) * pitch
            hint = math.hypot(s1 - s0, r * pitch) * (1.0 + r / bend_radius_mm)
            struts.append(_straight_strut(surface, (s0, t0), (s1, t1), hint))
            ring_of.append(i)
    for i in range(rings - 1):
        if i not in drawn or i + 1 not in drawn:
            continue
        peaks = [k for k in range(2 * crowns) if (k + i) % 2]
        chosen = [peaks[(j * crowns // links_per_gap + (i % 2) * (crowns // (2 * links_per_gap))) % crowns]
                  for j in range(links_per_gap)]
        for k in chosen:
            s0, s1, theta = centers[i] + 0.5 * ring_height_mm, centers[i + 1] - 0.5 * ring_height_mm, k * pitch
            hint = gap * (1.0 + r / bend_radius_mm)
            struts.append(_straight_strut(surface, (s0, theta), (s1, theta), hint))
            ring_of.append(-1)

    defects = _defects(struts, ring_of, drawn, missing_rings, wire_gap_mm, displacement_mm)
    if displacement_mm:
        defects["displacement_direction"] = (rotation @ shift_local / displacement_mm).tolist()

    s_start, s_end = centers[drawn[0]] - 0.5 * ring_height_mm, centers[drawn[-1]] + 0.5 * ring_height_mm
    count = int(math.ceil((s_end - s_start) / AXIS_STEP_MM))
    axis = to_ras(helix.frame(np.linspace(s_start, s_end, count + 1))[0] + shift_local)
    count = int(math.ceil((length_mm + 2 * vessel_extension_mm) / AXIS_STEP_MM))
    centerline = to_ras(helix.frame(np.linspace(-vessel_extension_mm, length_mm + vessel_extension_mm, count + 1))[0])

    lumen_r = r + lumen_clearance_mm
    calcium_s = {"start": s_start, "end": s_end, "middle": 0.5 * (s_start + s_end)}
    cal_centers, cal_radii, cal_hu = [], [], []
    for where, offset, theta, radial, radius, hu in calcium:
        point, _, n, b = helix.frame(np.array([calcium_s[where] + offset]))
        rho = lumen_r + radial
        cal_centers.append(to_ras(point + rho * (math.cos(theta) * n + math.sin(theta) * b))[0])
        cal_radii.append(radius)
        cal_hu.append(hu)
    rng = np.random.default_rng([seed, 17])
    return _Geometry("coronary", struts, axis, centerline, float(lumen_r), np.array(cal_centers).reshape(-1, 3),
                     np.array(cal_radii, dtype=float), np.array(cal_hu, dtype=float), _clicks(axis, rng),
                     defects=defects)


def _defects(struts: list[Points], group_of: list[int], drawn: list[int], missing_rings, wire_gap_mm: float,
             displacement_mm: float) -> dict:
    """The failure variants' record; cuts the wire gap (in place) out of the first strut of the middle ring or band."""
    defects: dict = {"missing_rings": sorted(set(missing_rings)), "wire_gap": None,
                     "displacement_mm": float(displacement_mm)}
    if wire_gap_mm > 0:
        middle = drawn[len(drawn) // 2]
        index = group_of.index(middle)
        strut = struts[index]
        struts[index: index + 1] = _cut_gap(strut, wire_gap_mm)
        defects["wire_gap"] = {"length_mm": float(wire_gap_mm), "ring": middle, "center": _midpoint(strut).tolist()}
    return defects


def _midpoint(polyline: Points) -> np.ndarray:
    steps = np.linalg.norm(np.diff(polyline, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    return np.array([np.interp(0.5 * arc[-1], arc, polyline[:, a]) for a in range(3)])


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _root_radius(z: np.ndarray, phi: np.ndarray, root: dict) -> np.ndarray:
    """Aortic root lumen radius at height z above the annulus and azimuth phi.

    The LV outflow widens below, three sinus lobes (zero at the commissures) bulge between the annulus and the
    sinotubular junction, and the root widens to the ascending aorta across the sinuses.
    """
    z_stj = root["z_stj"]
    u = z / z_stj
    lobe = 0.5 + 0.5 * np.cos(3.0 * (phi - root["phi0"]))
    sinus = root["sinus_depth"] * np.where((u > 0) & (u < 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0) * lobe
    return (root["r_annulus"] + root["lvot_widening"] * _smoothstep((-z - 4.0) / 8.0) + sinus
            + root["stj_extra"] * _smoothstep(u))


def _tavr_geometry(
    diameter_mm: float, height_mm: float, rows: int, cells: int, flare_mm: float, ventricular_mm: float,
    annulus_clearance_mm: float, sinus_depth_mm: float, center_ras: tuple[float, float, float],
    orientation_deg: tuple[float, float, float], missing_rings: tuple[int, ...], wire_gap_mm: float,
    displacement_mm: float, displacement_angle_deg: float, seed: int,
) -> _Geometry:
    """The frame, its aortic root and the calcium in RAS, before rendering."""
    r = 0.5 * diameter_mm
    bands = rows + 1
    band_h = height_mm / bands
    z_bottom = -ventricular_mm
    frame = _euler(orientation_deg)  # columns: e1, e2 and the root axis, in RAS
    e1, e2, e3 = frame[:, 0], frame[:, 1], frame[:, 2]
    annulus = np.asarray(center_ras, dtype=float) - (z_bottom + 0.5 * height_mm) * e3  # centre_ras: frame centre
    shift = displacement_mm * _perpendicular(e3, displacement_angle_deg)

    def radius(z: np.ndarray) -> np.ndarray:
        return r + flare_mm * (2.0 * (z - z_bottom) / height_mm - 1.0) ** 2

    def surface(z: np.ndarray, theta: np.ndarray) -> Points:
        rho = radius(z)[:, None]
        return (annulus + shift + z[:, None] * e3 + rho * (np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2))

    drawn = [m for m in range(bands) if m not in set(missing_rings)]
    if not drawn:
        raise ValueError("every band is missing")
    struts: list[Points] = []
    band_of: list[int] = []
    half = math.pi / cells
    for m in drawn:
        z0, z1 = z_bottom + m * band_h, z_bottom + (m + 1) * band_h
        for c in range(cells):
            t0 = 2.0 * math.pi * (c + 0.5 * (m % 2)) / cells
            for t1 in (t0 - half, t0 + half):
                hint = math.hypot(band_h, (r + flare_mm) * half) * 1.05
                struts.append(_straight_strut(surface, (z0, t0), (z1, t1), hint))
                band_of.append(m)

    defects = _defects(struts, band_of, drawn, missing_rings, wire_gap_mm, displacement_mm)
    if displacement_mm:
        defects["displacement_direction"] = (shift / displacement_mm).tolist()

    z_start, z_end = z_bottom + drawn[0] * band_h, z_bottom + (drawn[-1] + 1) * band_h
    count = int(math.ceil((z_end - z_start) / AXIS_STEP_MM))
    axis = annulus + shift + np.linspace(z_start, z_end, count + 1)[:, None] * e3

    r_annulus = r + annulus_clearance_mm
    root = {"r_annulus": r_annulus, "z_stj": z_bottom + height_mm + 3.0, "sinus_depth": sinus_depth_mm,
            "stj_extra": 1.5, "lvot_widening": 1.5, "phi0": 0.0}
    span = np.arange(z_bottom - 16.0, z_bottom + height_mm + 16.0 + 1e-9, 0.25)
    centerline = annulus + span[:, None] * e3
    phis = np.linspace(0.0, 2.0 * math.pi, 360, endpoint=False)
    radii = _root_radius(span[:, None], phis[None, :], root)
    equal_area = np.sqrt(np.mean(radii**2, axis=1))

    # (z, phi, rho, radius, HU): an LV-outflow nodule under the frame edge reaching inside its radius, one
    # crushed-leaflet nodule per sinus just outside the frame, one on the root wall at the sinotubular junction
    z_mid_sinus = 0.3 * root["z_stj"]
    calcium = [(z_bottom - 1.8, 1.1, r_annulus - 0.5, 1.0, 850.0)]
    for k, (dz, dphi, radius_mm, hu) in enumerate(((0.0, 0.15, 1.3, 900.0), (1.5, -0.2, 1.1, 750.0),
                                                   (-1.0, 0.1, 1.4, 950.0))):
        calcium.append((z_mid_sinus + dz, 2.0 * math.pi * k / 3.0 + dphi, r + 0.5 + radius_mm, radius_mm, hu))
    z_wall = root["z_stj"]
    calcium.append((z_wall, math.pi / 3.0, float(_root_radius(np.array(z_wall), np.array(math.pi / 3.0), root)) + 0.4,
                    0.9, 700.0))
    cal_centers = np.array([annulus + z * e3 + rho * (math.cos(p) * e1 + math.sin(p) * e2)
                            for z, p, rho, _, _ in calcium])
    rng = np.random.default_rng([seed, 17])
    return _Geometry("tavr", struts, axis, centerline, equal_area, cal_centers,
                     np.array([c[3] for c in calcium]), np.array([c[4] for c in calcium]), _clicks(axis, rng),
                     root_origin=annulus, root_frame=frame.copy(), root=root, defects=defects)


# ---------------------------------------------------------------------------------------------- rendering


@dataclass
class _Grid:
    ijk_to_ras: np.ndarray
    shape: tuple[int, int, int]  # (K, J, I)

    @property
    def spacing(self) -> np.ndarray:
        return np.abs(np.diag(self.ijk_to_ras)[:3])

    def points(self) -> Points:
        """RAS of every voxel centre, in ``[k, j, i]`` order, flattened."""
        k, j, i = self.shape
        m = self.ijk_to_ras
        x = m[0, 3] + m[0, 0] * np.arange(i)
        y = m[1, 3] + m[1, 1] * np.arange(j)
        z = m[2, 3] + m[2, 2] * np.arange(k)
        out = np.empty((k, j, i, 3))
        out[..., 0] = x[None, None, :]
        out[..., 1] = y[None, :, None]
        out[..., 2] = z[:, None, None]
        return out.reshape(-1, 3)


def _grid_around(points: Points, margin_mm: float, spacing_mm: float | tuple[float, float, float]) -> _Grid:
    """An LPS-like grid (i to the left, j posterior, k superior) covering the points plus a margin."""
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,)).copy()
    lo, hi = points.min(axis=0) - margin_mm, points.max(axis=0) + margin_mm
    size = np.ceil((hi - lo) / spacing).astype(int) + 1
    m = np.eye(4)
    m[:3, :3] = np.diag([-spacing[0], -spacing[1], spacing[2]])
    m[:3, 3] = [hi[0], hi[1], lo[2]]
    return _Grid(m, (int(size[2]), int(size[1]), int(size[0])))


def _splat_struts(grid: _Grid, struts: list[Points], sigma: float, peak_hu: float) -> np.ndarray:
    """Blurred wires: each strut segment's midpoint as a Gaussian weighted by its length (the line integral)."""
    mids = np.concatenate([0.5 * (s[1:] + s[:-1]) for s in struts])
    weights = np.concatenate([np.linalg.norm(np.diff(s, axis=0), axis=1) for s in struts])
    spacing = grid.spacing
    k_n, j_n, i_n = grid.shape
    inverse = np.linalg.inv(grid.ijk_to_ras)
    ijk = mids @ inverse[:3, :3].T + inverse[:3, 3]
    reach = SPLAT_REACH * sigma
    span = np.ceil(reach / spacing + 0.5).astype(int)
    mesh = np.meshgrid(*[np.arange(-s, s + 1) for s in span], indexing="ij")
    offsets = np.stack([g.ravel() for g in mesh], axis=1)
    nearest = np.sqrt(((np.clip(np.abs(offsets) - 0.5, 0, None) * spacing) ** 2).sum(axis=1))
    offsets = offsets[nearest <= reach]
    offsets_mm = offsets * spacing
    total = np.zeros(k_n * j_n * i_n)
    chunk = max(1, 3_000_000 // len(offsets))
    for lo in range(0, len(mids), chunk):
        part = ijk[lo: lo + chunk]
        base = np.rint(part).astype(np.int64)
        frac_mm = (part - base) * spacing
        d2 = ((offsets_mm[None, :, :] - frac_mm[:, None, :]) ** 2).sum(axis=-1)
        voxel = base[:, None, :] + offsets[None, :, :]
        keep = ((d2 <= reach * reach) & (voxel[..., 0] >= 0) & (voxel[..., 0] < i_n) & (voxel[..., 1] >= 0)
                & (voxel[..., 1] < j_n) & (voxel[..., 2] >= 0) & (voxel[..., 2] < k_n))
        values = weights[lo: lo + chunk, None] * np.exp(-d2 / (2.0 * sigma * sigma))
        flat = (voxel[..., 2] * j_n + voxel[..., 1]) * i_n + voxel[..., 0]
        total += np.bincount(flat[keep], values[keep], minlength=total.size)
    # a unit-density line blurred by a normalised 3D Gaussian peaks at 1/(2π σ²)
    return (total * peak_hu / (math.sqrt(2.0 * math.pi) * sigma)).reshape(grid.shape)


def _polyline_distance(points: Points, polyline: Points, upper: float) -> np.ndarray:
    """Exact distance to a dense polyline (nearest vertex, then its two segments); inf beyond ``upper``."""
    distance, index = cKDTree(polyline).query(points, distance_upper_bound=upper)
    near = np.isfinite(distance)
    x, idx = points[near], index[near]
    best = np.full(len(x), np.inf)
    for a_idx, b_idx in ((np.maximum(idx - 1, 0), idx), (idx, np.minimum(idx + 1, len(polyline) - 1))):
        a, b = polyline[a_idx], polyline[b_idx]
        ab = b - a
        t = np.clip(((x - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-30), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(x - a - t[:, None] * ab, axis=1))
    out = np.full(len(points), np.inf)
    out[near] = best
    return out


def _blurred_ball(distance: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """A ball of ``radius`` convolved with a 3D Gaussian, at ``distance`` from its centre (closed form)."""
    rho = np.maximum(distance, 1e-6)
    q = math.sqrt(2.0) * sigma
    value = 0.5 * (special.erf((radius - rho) / q) + special.erf((radius + rho) / q))
    value += sigma / (rho * math.sqrt(2.0 * math.pi)) * (np.exp(-((radius + rho) ** 2) / (2 * sigma**2))
                                                          - np.exp(-((radius - rho) ** 2) / (2 * sigma**2)))
    return np.clip(value, 0.0, 1.0)


def _edge(signed: np.ndarray, sigma: float) -> np.ndarray:
    """Fraction inside a blurred boundary at signed distance (negative inside)."""
    return 0.5 * special.erfc(signed / (math.sqrt(2.0) * sigma))


def _tissue(geometry: _Geometry, style: _Style, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """Blood, wall and outside tissue, blurred: the image without metal, calcium or noise, and the lumen mask."""
    points = grid.points()
    sigma = style.psf_sigma_mm
    if geometry.kind == "coronary":
        reach = geometry.vessel_radius + style.wall_mm + 6.0 * sigma + AXIS_STEP_MM
        signed = _polyline_distance(points, geometry.centerline, reach) - geometry.vessel_radius
        outside = np.full(len(points), style.outside_hu)
    else:
        local = (points - geometry.root_origin) @ geometry.root_frame
        z, rho = local[:, 2], np.hypot(local[:, 0], local[:, 1])
        phi = np.arctan2(local[:, 1], local[:, 0])
        root, eps = geometry.root, 1e-3
        radius = _root_radius(z, phi, root)
        dr_dz = (_root_radius(z + eps, phi, root) - _root_radius(z - eps, phi, root)) / (2 * eps)
        dr_dphi = (_root_radius(z, phi + eps, root) - _root_radius(z, phi - eps, root)) / (2 * eps)
        signed = (rho - radius) / np.sqrt(1.0 + dr_dz**2 + (dr_dphi / np.maximum(rho, 1.0)) ** 2)
        below = _edge(z + 1.0, 2.0)  # myocardium around the LV outflow, fat around the sinuses and aorta
        outside = style.outside_hu + (style.below_hu - style.outside_hu) * below
    image = (outside + (style.wall_hu - outside) * _edge(signed - style.wall_mm, sigma)
             + (style.lumen_hu - style.wall_hu) * _edge(signed, sigma))
    return image.reshape(grid.shape), (signed < 0).reshape(grid.shape)


def _add_calcium(image: np.ndarray, geometry: _Geometry, grid: _Grid, sigma: float) -> None:
    """Composite each blurred calcium ball over the tissue (it displaces the tissue, it does not add to it)."""
    spacing = grid.spacing
    inverse = np.linalg.inv(grid.ijk_to_ras)
    flat_points = None
    for center, radius, hu in zip(geometry.calcium_centers, geometry.calcium_radii, geometry.calcium_hu):
        reach = radius + 4.0 * sigma
        ijk = inverse[:3, :3] @ center + inverse[:3, 3]
        lo = np.maximum(np.floor(ijk - reach / spacing).astype(int), 0)
        hi = np.minimum(np.ceil(ijk + reach / spacing).astype(int) + 1, np.array(grid.shape[::-1]))
        if np.any(hi <= lo):
            continue
        if flat_points is None:
            flat_points = grid.points().reshape(*grid.shape, 3)
        box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        fraction = _blurred_ball(np.linalg.norm(flat_points[box] - center, axis=-1), radius, sigma)
        image[box] = image[box] * (1.0 - fraction) + hu * fraction


def _noise(shape: tuple[int, int, int], sd: float, rng: np.random.Generator) -> np.ndarray:
    """Slightly correlated Gaussian noise: white noise smoothed by half a voxel, rescaled to ``sd``."""
    if sd <= 0:
        return np.zeros(shape, np.float32)
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 0.5, mode="wrap")
    return field_ * np.float32(sd / field_.std())


def _render(geometry: _Geometry, style: _Style, grid: _Grid, rng: np.random.Generator,
            phase_percent: float | None = None) -> StentPhantom:
    image, mask = _tissue(geometry, style, grid)
    _add_calcium(image, geometry, grid, style.psf_sigma_mm)
    image += _splat_struts(grid, geometry.struts, style.psf_sigma_mm, style.metal_peak_hu)
    image = image.astype(np.float32) + _noise(grid.shape, style.noise_sd_hu, rng)
    axis = geometry.axis
    return StentPhantom(
        image=image, ijk_to_ras=grid.ijk_to_ras.copy(), kind=geometry.kind, axis=axis, start=axis[0].copy(),
        end=axis[-1].copy(), diameter_mm=style.diameter_mm, length_mm=_polyline_length(axis),
        struts=geometry.struts, strut_points=np.concatenate(geometry.struts), vessel_centerline=geometry.centerline,
        vessel_radius_mm=geometry.vessel_radius, vessel_mask=mask, calcium_centers=geometry.calcium_centers,
        calcium_radii_mm=geometry.calcium_radii, nominal_diameter_mm=style.nominal_diameter_mm,
        nominal_length_mm=style.nominal_length_mm, psf_sigma_mm=style.psf_sigma_mm, noise_sd_hu=style.noise_sd_hu,
        click_start=geometry.clicks[0].copy(), click_end=geometry.clicks[1].copy(), metal_peak_hu=style.metal_peak_hu,
        lumen_hu=style.lumen_hu, defects=geometry.defects, phase_percent=phase_percent,
    )


# ---------------------------------------------------------------------------------------------- phantoms


_CORONARY_CALCIUM = (
    # (measured from: the stent "start", "end" or "middle"; offset along the axis (mm); angle (rad); centre
    # beyond the lumen surface (mm); radius (mm); HU): in the wall past each end, and in the wall beside it
    ("end", 2.0, 0.6, 0.35, 0.8, 750.0),
    ("start", -1.5, 3.6, 0.45, 0.7, 900.0),
    ("middle", 2.2, 2.2, 0.95, 0.7, 650.0),
)


def _coronary_parts(
    diameter_mm: float = 3.0, length_mm: float = 16.0, rings: int = 10, crowns: int = 8,
    ring_height_mm: float = 1.1, links_per_gap: int = 2, lumen_clearance_mm: float = 0.1,
    bend_radius_mm: float = 30.0, torsion_per_mm: float = 0.015, vessel_extension_mm: float = 12.0,
    spacing_mm: float | tuple[float, float, float] = 0.45, margin_mm: float = 5.0, psf_sigma_mm: float = 0.35,
    metal_peak_hu: float = 1500.0, lumen_hu: float = 400.0, wall_hu: float = 40.0, fat_hu: float = -80.0,
    wall_mm: float = 0.5, noise_sd_hu: float = 25.0, center_ras: tuple[float, float, float] = (24.0, -8.5, 61.0),
    orientation_deg: tuple[float, float, float] = (20.0, 50.0, 35.0), missing_rings: tuple[int, ...] = (),
    wire_gap_mm: float = 0.0, displacement_mm: float = 0.0, displacement_angle_deg: float = 0.0,
    calcium: tuple[tuple[str, float, float, float, float, float], ...] = _CORONARY_CALCIUM,
    nominal_diameter_mm: float | None = None, nominal_length_mm: float | None = None, seed: int = 0,
) -> tuple[_Geometry, _Style, float, float | tuple[float, float, float]]:
    """The keywords of ``coronary_stent`` and ``moving("coronary")``: geometry, look and grid of the phantom.

    Device: ``diameter_mm`` through the strut centrelines, ``length_mm`` crown tip to crown tip, ``rings`` of
    ``crowns`` crowns ``ring_height_mm`` tall, ``links_per_gap`` links. Artery: ``bend_radius_mm``,
    ``torsion_per_mm``, lumen = stent radius + ``lumen_clearance_mm``, ``wall_mm`` wall. Placement:
    ``center_ras`` (device centre), ``orientation_deg``. CT: ``spacing_mm`` (i, j, k; one value = isotropic),
    ``margin_mm`` around the device, ``psf_sigma_mm``, ``metal_peak_hu``, ``lumen_hu``, ``wall_hu``, ``fat_hu``,
    ``noise_sd_hu``, ``calcium``, ``seed``. Failure variants and labels as in the module docstring.
    """
    geometry = _coronary_geometry(
        diameter_mm, length_mm, rings, crowns, ring_height_mm, links_per_gap, lumen_clearance_mm, bend_radius_mm,
        torsion_per_mm, vessel_extension_mm, center_ras, orientation_deg, tuple(missing_rings), wire_gap_mm,
        displacement_mm, displacement_angle_deg, calcium, seed)
    style = _Style(lumen_hu, wall_hu, fat_hu, wall_mm, metal_peak_hu, psf_sigma_mm, noise_sd_hu, diameter_mm,
                   diameter_mm if nominal_diameter_mm is None else nominal_diameter_mm,
                   length_mm if nominal_length_mm is None else nominal_length_mm)
    return geometry, style, margin_mm, spacing_mm


def _tavr_parts(
    diameter_mm: float = 26.0, height_mm: float = 20.0, rows: int = 3, cells: int = 14, flare_mm: float = 0.0,
    ventricular_mm: float = 4.0, annulus_clearance_mm: float = 0.5, sinus_depth_mm: float = 4.0,
    spacing_mm: float | tuple[float, float, float] = 0.5, margin_mm: float = 8.0, psf_sigma_mm: float = 0.45,
    metal_peak_hu: float = 3000.0, lumen_hu: float = 400.0, wall_hu: float = 40.0, fat_hu: float = -70.0,
    myocardium_hu: float = 45.0, wall_mm: float = 1.5, noise_sd_hu: float = 30.0,
    center_ras: tuple[float, float, float] = (8.0, -12.0, 40.0),
    orientation_deg: tuple[float, float, float] = (-35.0, 25.0, 15.0), missing_rings: tuple[int, ...] = (),
    wire_gap_mm: float = 0.0, displacement_mm: float = 0.0, displacement_angle_deg: float = 0.0,
    nominal_diameter_mm: float | None = None, nominal_length_mm: float | None = None, seed: int = 0,
) -> tuple[_Geometry, _Style, float, float | tuple[float, float, float]]:
    """The keywords of ``tavr_frame`` and ``moving("tavr")``: geometry, look and grid of the phantom.

    Frame: ``diameter_mm`` (waist, through the strut centrelines), ``height_mm``, ``rows`` rows of ``cells``
    diamonds, ``flare_mm`` at both ends, ``ventricular_mm`` below the annulus. Root: annulus radius = frame
    radius + ``annulus_clearance_mm``, ``sinus_depth_mm``, ``wall_mm`` wall, ``myocardium_hu`` around the
    outflow and ``fat_hu`` above. Placement: ``center_ras`` (frame centre), ``orientation_deg``. CT:
    ``spacing_mm``, ``margin_mm``, ``psf_sigma_mm``, ``metal_peak_hu``, ``lumen_hu``, ``wall_hu``,
    ``noise_sd_hu``, ``seed``. Failure variants (``missing_rings`` counts the ``rows`` + 1 strut bands from the
    inflow end) and labels as in the module docstring.
    """
    geometry = _tavr_geometry(diameter_mm, height_mm, rows, cells, flare_mm, ventricular_mm, annulus_clearance_mm,
                              sinus_depth_mm, center_ras, orientation_deg, tuple(missing_rings), wire_gap_mm,
                              displacement_mm, displacement_angle_deg, seed)
    style = _Style(lumen_hu, wall_hu, fat_hu, wall_mm, metal_peak_hu, psf_sigma_mm, noise_sd_hu, diameter_mm,
                   diameter_mm if nominal_diameter_mm is None else nominal_diameter_mm,
                   height_mm if nominal_length_mm is None else nominal_length_mm, below_hu=myocardium_hu)
    return geometry, style, margin_mm, spacing_mm


def coronary_stent(**kwargs) -> StentPhantom:
    """A coronary stent in a curved, contrast-filled artery; keywords as documented on ``_coronary_parts``."""
    geometry, style, margin, spacing = _coronary_parts(**kwargs)
    grid = _grid_around(np.concatenate(geometry.struts), margin, spacing)
    return _render(geometry, style, grid, np.random.default_rng([kwargs.get("seed", 0), 1]))


def tavr_frame(**kwargs) -> StentPhantom:
    """A TAVR frame of diamond cells in an aortic root; keywords as documented on ``_tavr_parts``."""
    geometry, style, margin, spacing = _tavr_parts(**kwargs)
    grid = _grid_around(np.concatenate(geometry.struts), margin, spacing)
    return _render(geometry, style, grid, np.random.default_rng([kwargs.get("seed", 0), 1]))


def default_motion(kind: str, geometry: _Geometry, phases: int = 10, reference_phase: int = 7,
                   peak_mm: float | None = None, rotation_deg: float | None = None,
                   bend_mm: float | None = None) -> CardiacMotion:
    """The cardiac motion of a device: coronary 6 mm loop, 5° and a 0.4 mm bend; TAVR 5 mm along the root, 3° rocking.

    Coronary arteries ride on the epicardium, so they swing mostly across their course; the valve plane moves
    along the root axis (toward the apex in systole) and rocks a little.
    """
    axis = geometry.axis
    direction = axis[-1] - axis[0]
    direction /= np.linalg.norm(direction)
    pivot = axis[len(axis) // 2]
    half = 0.5 * _polyline_length(axis)
    side = _perpendicular(direction, 30.0)
    other = np.cross(direction, side)
    if kind == "coronary":
        peak = 6.0 if peak_mm is None else peak_mm
        path = 0.85 * side + 0.45 * other + 0.27 * direction  # mostly across the artery, a little along it
        path = peak * path / np.linalg.norm(path)
        loop = 0.25 * peak * np.cross(path / peak, direction)
        return CardiacMotion(phases, reference_phase, pivot, path, loop, other + 0.5 * direction,
                             5.0 if rotation_deg is None else rotation_deg, direction, half, side,
                             0.4 if bend_mm is None else bend_mm)
    peak = 5.0 if peak_mm is None else peak_mm
    root_axis = geometry.root_frame[:, 2]
    return CardiacMotion(phases, reference_phase, geometry.root_origin.copy(), -peak * root_axis, 0.8 * side,
                         other, 3.0 if rotation_deg is None else rotation_deg, root_axis, half, side,
                         0.0 if bend_mm is None else bend_mm)


def moving(kind: str = "coronary", phases: int = 10, reference_phase: int = 7, peak_mm: float | None = None,
           rotation_deg: float | None = None, bend_mm: float | None = None, **phantom_kwargs) -> StentPhantom4D:
    """A 4D study of ``coronary_stent(**phantom_kwargs)`` or ``tavr_frame(**…)`` moving over one cardiac cycle.

    The reference phase is the static phantom; every other phase is the reference geometry mapped by
    ``motion`` (device, vessel, calcium and clicks alike) and rendered afresh, with its own noise, on one grid
    that holds the device in every phase.
    """
    parts = {"coronary": _coronary_parts, "tavr": _tavr_parts}[kind]
    geometry, style, margin, spacing = parts(**phantom_kwargs)
    motion = default_motion(kind, geometry, phases, reference_phase, peak_mm, rotation_deg, bend_mm)
    moved = [geometry.moved(lambda p, n=n: motion(p, n)) for n in range(phases)]
    grid = _grid_around(np.concatenate([np.concatenate(g.struts) for g in moved]), margin, spacing)
    seed = phantom_kwargs.get("seed", 0)
    values = [100.0 * n / phases for n in range(phases)]
    rendered = [_render(g, style, grid, np.random.default_rng([seed, 1, n]), values[n]) for n, g in enumerate(moved)]
    return StentPhantom4D(rendered, values, reference_phase, motion, kind)


# ---------------------------------------------------------------------------------------------- files


def _round(points: np.ndarray) -> list:
    return np.round(np.asarray(points, dtype=float), 4).tolist()


def truth_dict(phantom: StentPhantom) -> dict:
    """The truth of one phantom (or phase) as plain JSON values."""
    radius = phantom.vessel_radius_mm
    return {
        "kind": phantom.kind,
        "phase_percent": phantom.phase_percent,
        "axis": _round(phantom.axis),
        "start": _round(phantom.start),
        "end": _round(phantom.end),
        "click_start": _round(phantom.click_start),
        "click_end": _round(phantom.click_end),
        "diameter_mm": phantom.diameter_mm,
        "length_mm": phantom.length_mm,
        "nominal_diameter_mm": phantom.nominal_diameter_mm,
        "nominal_length_mm": phantom.nominal_length_mm,
        "struts": [_round(s) for s in phantom.struts],
        "vessel_centerline": _round(phantom.vessel_centerline),
        "vessel_radius_mm": float(radius) if np.ndim(radius) == 0 else _round(radius),
        "calcium_centers": _round(phantom.calcium_centers),
        "calcium_radii_mm": _round(phantom.calcium_radii_mm),
        "psf_sigma_mm": phantom.psf_sigma_mm,
        "noise_sd_hu": phantom.noise_sd_hu,
        "metal_peak_hu": phantom.metal_peak_hu,
        "defects": phantom.defects,
        "ijk_to_ras": phantom.ijk_to_ras.tolist(),
    }


def write(phantom: StentPhantom, folder: str | Path) -> Path:
    """``ct.nrrd`` and ``truth.json`` in ``folder``; returns the image path."""
    from CardiacSuiteLib.imagedata import ImageSeries
    from CardiacSuiteLib.imageio import write_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_image(ImageSeries(frames=phantom.image[None], ijk_to_ras=phantom.ijk_to_ras, modality="CT",
                                   name=f"{phantom.kind} stent phantom"), folder / "ct.nrrd")
    (folder / "truth.json").write_text(json.dumps(truth_dict(phantom)))
    return path


def write_4d(phantom: StentPhantom4D, folder: str | Path) -> Path:
    """``ct.seq.nrrd`` (phases indexed 0, 10, … %) and ``truth.json`` with every phase's truth."""
    from CardiacSuiteLib.image4d import ArrayPhases
    from CardiacSuiteLib.imageio import write_seq_nrrd

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stack = ArrayPhases(phantom.frames, phantom.ijk_to_ras, index_values=phantom.index_values,
                        name=f"{phantom.kind} stent 4D phantom")
    path = write_seq_nrrd(stack, folder / "ct.seq.nrrd")
    motion = phantom.motion
    truth = {
        "kind": phantom.kind,
        "index_values": phantom.index_values,
        "reference_phase": phantom.reference_phase,
        "motion": {"pivot": motion.pivot.tolist(), "translation_mm": motion.translation_mm.tolist(),
                   "loop_mm": motion.loop_mm.tolist(), "rotation_axis": motion.rotation_axis.tolist(),
                   "rotation_deg": motion.rotation_deg, "bend_mm": motion.bend_mm,
                   "amplitude": [motion.amplitude(n) for n in range(motion.phases)]},
        "phases": [truth_dict(p) for p in phantom.phases],
    }
    (folder / "truth.json").write_text(json.dumps(truth))
    return path
