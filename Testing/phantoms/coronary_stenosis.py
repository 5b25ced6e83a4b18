"""A CT phantom of a coronary artery with one stenosis and a calcified plaque, with analytic truth, for PCI planning.

The artery is built from the quantities PCI planning reports (``shared/reference/cardiac-ct.md`` §4.4), so
each one comes back in closed form:

* **Vessel axis**: a helix segment by arc length ``s`` from the ostium (s = 0) outwards (``stent._Helix``:
  radius of curvature ``bend_radius_mm``, torsion ``torsion_per_mm``) with its parallel-transport frame
  (t, n, b), set in a random orientation drawn from ``seed``. The tube continues ``extension_mm`` beyond both
  ends of the measured ``length_mm`` so that no section sees a capped end.
* **Reference (healthy) lumen**: diameter d_ref(s) = ``ostium_diameter_mm`` − ``taper_mm_per_mm``·s (a slight
  linear taper), inside a wall of ``wall_mm`` (``wall_hu``) in epicardial fat (``fat_hu``); contrast blood
  ``lumen_hu``.
* **Stenosis**: a smooth cosine narrowing of the lumen diameter, d(s) = d_ref(s)·(1 − p·cos²(π(s − s_c)/L))
  for |s − s_c| < L/2 (p = ``stenosis_percent``/100 at the lesion centre s_c = ``lesion_center_mm``,
  L = ``lesion_extent_mm``), the lumen otherwise circular. **Eccentric**: the lumen centre moves off the vessel
  axis by e(s) = ``eccentricity``·(d_ref − d)/2 towards azimuth ``eccentric_deg`` (about n, towards b), so the
  plaque is thicker on the opposite side; the outer wall stays round about the axis. The lumen centre path
  c(s) + e(s)(cos ψ n + sin ψ b) is the exact centreline (``centerline``), the axis is ``axis``.
* **Calcium**: an annular sector about the lumen centre, ``calcium_arc_deg`` wide, centred on the thick side of
  the plaque (azimuth ψ + 180°), from ``calcium_gap_mm`` to ``calcium_gap_mm`` + ``calcium_thickness_mm``
  beyond the lumen boundary, over ``calcium_length_mm`` centred on the lesion, ``calcium_hu``.
* **Image**: blurred by the scanner PSF (Gaussian, ``psf_sigma_mm``) in closed form. The lumen and the outer
  wall are discs in each cross-section (normal plane of the axis), so each is the disc convolved with the 2D
  Gaussian: the chance that a Gaussian point about the voxel falls in the disc, the non-central χ² CDF
  F((r/σ)²; 2, (ρ/σ)²) at the voxel's distance ρ from the disc's centre (lumen: about the lumen centre, radius
  r(s); wall: about the axis). That is exact for a straight tube of constant radius; here the radius changes
  slowly along the vessel (at most 0.35 mm per mm) and the axial blur is left out. A coronary lumen is only a
  few σ across, where a flat-edge 0.5·erfc(d / (√2 σ)) would overstate a narrow lumen's brightness (0.95
  instead of 0.74 of the contrast at the centre of a 0.65 mm-radius lumen with σ = 0.4 mm). The calcium sector
  is the product of its blurred radial, azimuthal (arc length at the sector's mid radius) and axial flat edges
  (erfc), composited over the tissue; then correlated noise (``stent._noise``, ``noise_sd_hu``).

Truth (``truth_dict``): the exact centreline (RAS, 0.1 mm steps from the ostium) with d_ref(s) and d(s) per
point; the minimal lumen diameter (MLD) and area, their position, % diameter stenosis
(1 − MLD/d_ref(s_MLD))·100 and % area stenosis; the lesion extent where the lumen diameter is more than
``LESION_FRACTION`` (20 %) below the reference diameter (the rule the PCI protocol states) with the reference
diameters and areas at its two ends; the CAD-RADS 2.0 stenosis category; the calcium arc (degrees about the
lumen centre), length and volume (of the unblurred sector); the lesion direction (principal axis of the
centreline over the MLD ± 5 mm).

``user_curve`` gives the centreline as a user or a tracer would: a point every millimetre from the ostium,
optionally a fixed distance off the lumen centre in a slowly turning direction.

Grids follow ``stent.py``: arrays ``[k, j, i]`` float32 HU, ``ijk_to_ras = diag(-s, -s, s)`` plus the box
corner, points RAS mm ``(N, 3)``. ``write`` stores ``ct.nrrd``, ``truth.json`` and the centreline as a Slicer
markups curve (``vessel.mrk.json``, LPS as Slicer writes it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats
from scipy.spatial import cKDTree

from .stent import _edge, _grid_around, _Helix, _noise, _round

#: The lesion is where the lumen diameter is more than this fraction below the reference diameter.
LESION_FRACTION = 0.20
#: Step of the truth centreline and the axis, mm.
STEP_MM = 0.1
#: Half-length of the centreline around the MLD whose principal axis is the lesion direction, mm.
DIRECTION_HALF_MM = 5.0
#: Slicer's markups file schema.
MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                  "Schema/markups-schema-v1.0.3.json#")


@dataclass
class CoronaryStenosisPhantom:
    """One rendered CT volume of a stenosed coronary artery and the exact geometry it was rendered from."""

    image: np.ndarray  # [k, j, i] float32 HU
    ijk_to_ras: np.ndarray  # 4×4
    vessel: str  # the vessel's name, e.g. "LAD"
    arc_mm: np.ndarray  # s of every centreline point, from the ostium (0) to length_mm
    centerline: np.ndarray  # (N, 3) RAS: the lumen centre path (exact)
    axis: np.ndarray  # (N, 3) RAS: the vessel axis (the outer wall's centre)
    reference_diameter_mm: np.ndarray  # (N,) d_ref(s)
    lumen_diameter_mm: np.ndarray  # (N,) d(s)
    lesion: dict  # MLD, areas, % stenosis, extent, reference diameters (see ``_lesion_truth``)
    calcium: dict  # arc_deg, length_mm, volume_mm3, hu, start/end positions, azimuth direction
    direction: np.ndarray  # unit lesion direction (principal axis over the MLD ± 5 mm), RAS
    orientation: np.ndarray  # 3×3 rotation of the local helix frame into RAS
    psf_sigma_mm: float
    noise_sd_hu: float
    lumen_hu: float
    wall_hu: float
    fat_hu: float
    spacing_mm: float
    seed: int
    parameters: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.image.shape)

    def point_at(self, s_mm: float) -> np.ndarray:
        """The centreline point (RAS) at arc length ``s_mm`` from the ostium."""
        return np.array([np.interp(s_mm, self.arc_mm, self.centerline[:, a]) for a in range(3)])


def cad_rads(diameter_stenosis_percent: float) -> str:
    """CAD-RADS 2.0 stenosis category of a maximal % diameter stenosis (4B needs the left main or three vessels)."""
    p = round(float(diameter_stenosis_percent))
    if p >= 100:
        return "5"
    if p >= 70:
        return "4A"
    if p >= 50:
        return "3"
    if p >= 25:
        return "2"
    if p >= 1:
        return "1"
    return "0"


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


class _Artery:
    """The analytic artery in its local helix frame: radii, lumen offset and calcium as functions of s."""

    def __init__(self, p: dict):
        self.p = p
        self.helix = _Helix(p["bend_radius_mm"], p["torsion_per_mm"])
        self.psi = math.radians(p["eccentric_deg"])

    def reference_diameter(self, s: np.ndarray) -> np.ndarray:
        return self.p["ostium_diameter_mm"] - self.p["taper_mm_per_mm"] * np.asarray(s, float)

    def bump(self, s: np.ndarray) -> np.ndarray:
        u = (np.asarray(s, float) - self.p["lesion_center_mm"]) / self.p["lesion_extent_mm"]
        return np.where(np.abs(u) < 0.5, np.cos(math.pi * u) ** 2, 0.0)

    def lumen_diameter(self, s: np.ndarray) -> np.ndarray:
        return self.reference_diameter(s) * (1.0 - 0.01 * self.p["stenosis_percent"] * self.bump(s))

    def offset(self, s: np.ndarray) -> np.ndarray:
        """Lumen centre offset from the axis along (n, b): e(s)·(cos ψ, sin ψ)."""
        e = self.p["eccentricity"] * 0.5 * (self.reference_diameter(s) - self.lumen_diameter(s))
        return e[..., None] * np.array([math.cos(self.psi), math.sin(self.psi)])

    def local_centerline(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        point, _, n, b = self.helix.frame(s)
        off = self.offset(s)
        return point + off[:, :1] * n + off[:, 1:] * b, point


def _lesion_truth(arc: np.ndarray, d_ref: np.ndarray, d: np.ndarray) -> dict:
    """MLD, MLA, % stenosis, the 20 % extent and the reference diameters/areas at its ends, from dense profiles."""
    k = int(np.argmin(d))
    mld, ref = float(d[k]), float(d_ref[k])
    below = d < (1.0 - LESION_FRACTION) * d_ref
    run = np.nonzero(below)[0]
    if len(run):
        lo, hi = int(run[0]), int(run[-1])
        ratio = d / d_ref - (1.0 - LESION_FRACTION)

        def crossing(a: int, b: int) -> float:  # linear between the samples a (outside) and b (inside)
            if a < 0 or a >= len(arc):
                return float(arc[b])
            t = ratio[a] / (ratio[a] - ratio[b])
            return float(arc[a] + t * (arc[b] - arc[a]))

        start, end = crossing(lo - 1, lo), crossing(hi + 1, hi)
    else:
        start = end = float(arc[k])
    ref_start, ref_end = float(np.interp(start, arc, d_ref)), float(np.interp(end, arc, d_ref))
    diameter_stenosis = 100.0 * (1.0 - mld / ref)
    area_stenosis = 100.0 * (1.0 - (mld / ref) ** 2)
    return {
        "mld_mm": mld, "mla_mm2": math.pi * mld**2 / 4.0, "position_mm": float(arc[k]),
        "reference_diameter_at_mld_mm": ref, "reference_area_at_mld_mm2": math.pi * ref**2 / 4.0,
        "diameter_stenosis_percent": diameter_stenosis, "area_stenosis_percent": area_stenosis,
        "start_mm": start, "end_mm": end, "length_mm": end - start,
        "reference_proximal_diameter_mm": ref_start, "reference_distal_diameter_mm": ref_end,
        "reference_proximal_area_mm2": math.pi * ref_start**2 / 4.0,
        "reference_distal_area_mm2": math.pi * ref_end**2 / 4.0,
        "cad_rads": cad_rads(diameter_stenosis),
        "length_rule": f"lumen diameter more than {100 * LESION_FRACTION:g} % below the reference diameter",
    }


def _principal_axis(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    if direction @ (points[-1] - points[0]) < 0:
        direction = -direction
    return direction


def coronary_stenosis(
    stenosis_percent: float = 60.0, vessel: str = "LAD", length_mm: float = 50.0, ostium_diameter_mm: float = 3.5,
    taper_mm_per_mm: float = 0.01, lesion_center_mm: float = 24.0, lesion_extent_mm: float = 12.0,
    eccentricity: float = 0.5, eccentric_deg: float | None = None, calcium_arc_deg: float = 100.0,
    calcium_length_mm: float = 5.0, calcium_gap_mm: float = 0.9, calcium_thickness_mm: float = 0.8,
    calcium_hu: float = 1000.0, bend_radius_mm: float = 35.0, torsion_per_mm: float = 0.01,
    extension_mm: float = 6.0, wall_mm: float = 0.5, lumen_hu: float = 400.0, wall_hu: float = 40.0,
    fat_hu: float = -90.0, psf_sigma_mm: float = 0.4, noise_sd_hu: float = 20.0, spacing_mm: float = 0.35,
    margin_mm: float = 4.0, center_ras: tuple[float, float, float] = (-25.0, 15.0, 40.0),
    orientation: np.ndarray | None = None, seed: int = 0,
) -> CoronaryStenosisPhantom:
    """Render the phantom (keywords as in the module docstring). The orientation (and the eccentric direction,
    when ``eccentric_deg`` is None) are drawn from ``seed``; ``calcium_arc_deg`` 0 leaves the calcium out."""
    rng = np.random.default_rng([seed, 41])
    rotation = _random_rotation(rng) if orientation is None else np.asarray(orientation, float)
    drawn_psi = float(rng.uniform(0.0, 360.0))
    params = {
        "stenosis_percent": float(stenosis_percent), "length_mm": float(length_mm),
        "ostium_diameter_mm": float(ostium_diameter_mm), "taper_mm_per_mm": float(taper_mm_per_mm),
        "lesion_center_mm": float(lesion_center_mm), "lesion_extent_mm": float(lesion_extent_mm),
        "eccentricity": float(eccentricity), "eccentric_deg": drawn_psi if eccentric_deg is None else float(eccentric_deg),
        "calcium_arc_deg": float(calcium_arc_deg), "calcium_length_mm": float(calcium_length_mm),
        "calcium_gap_mm": float(calcium_gap_mm), "calcium_thickness_mm": float(calcium_thickness_mm),
        "calcium_hu": float(calcium_hu), "bend_radius_mm": float(bend_radius_mm),
        "torsion_per_mm": float(torsion_per_mm), "extension_mm": float(extension_mm), "wall_mm": float(wall_mm),
    }
    artery = _Artery(params)
    centre = np.asarray(center_ras, float)
    mid_local = artery.helix.frame(np.array([0.5 * length_mm]))[0][0]

    def to_ras(local: np.ndarray) -> np.ndarray:
        return (np.asarray(local, float) - mid_local) @ rotation.T + centre

    # truth profiles over the measured length
    arc = np.linspace(0.0, length_mm, int(round(length_mm / STEP_MM)) + 1)
    lumen_local, axis_local = artery.local_centerline(arc)
    centerline, axis = to_ras(lumen_local), to_ras(axis_local)
    d_ref, d = artery.reference_diameter(arc), artery.lumen_diameter(arc)
    lesion = _lesion_truth(arc, d_ref, d)
    near = np.abs(arc - lesion["position_mm"]) <= DIRECTION_HALF_MM
    direction = _principal_axis(centerline[near])

    # the rendered tube runs beyond both ends; the box holds the measured length and a margin
    full = np.arange(-extension_mm, length_mm + extension_mm + 0.5 * STEP_MM, STEP_MM)
    full_axis_local = artery.helix.frame(full)[0]
    grid = _grid_around(to_ras(artery.helix.frame(np.linspace(-2.0, length_mm + 2.0, 200))[0]), margin_mm,
                        spacing_mm)
    points = grid.points()
    local_points = (points - centre) @ rotation + mid_local
    sigma = psf_sigma_mm
    reach = (0.5 * float(np.max(artery.reference_diameter(full))) + wall_mm + 6.0 * sigma + calcium_gap_mm
             + calcium_thickness_mm)
    distance, index = cKDTree(full_axis_local).query(local_points, distance_upper_bound=reach + STEP_MM)
    inside = np.isfinite(distance)
    image = np.full(len(points), fat_hu, dtype=float)
    x = local_points[inside]
    # nearest point on the axis: the nearest vertex, then one Newton step along the tangent
    s = full[index[inside]]
    _, tangent, _, _ = artery.helix.frame(s)
    s = np.clip(s + ((x - artery.helix.frame(s)[0]) * tangent).sum(axis=1), full[0], full[-1])
    point, tangent, n, b = artery.helix.frame(s)
    q = x - point
    qn, qb = (q * n).sum(axis=1), (q * b).sum(axis=1)
    rho_axis = np.hypot(qn, qb)
    off = artery.offset(s)
    ln, lb = qn - off[:, 0], qb - off[:, 1]
    rho_lumen = np.hypot(ln, lb)
    r_lumen = 0.5 * artery.lumen_diameter(s)
    outer_radius = 0.5 * artery.reference_diameter(s) + wall_mm
    tissue = (fat_hu + (wall_hu - fat_hu) * _blurred_disc(rho_axis, outer_radius, sigma)
              + (lumen_hu - wall_hu) * _blurred_disc(rho_lumen, r_lumen, sigma))
    calcium = _calcium_truth(artery, arc)
    if calcium_arc_deg > 0:
        fraction = _calcium_fraction(artery, s, ln, lb, rho_lumen, r_lumen, sigma)
        tissue = tissue * (1.0 - fraction) + calcium_hu * fraction
    image[inside] = tissue
    image = image.reshape(grid.shape).astype(np.float32)
    image += _noise(grid.shape, noise_sd_hu, np.random.default_rng([seed, 1]))
    azimuth = math.radians(params["eccentric_deg"]) + math.pi
    _, _, n_c, b_c = artery.helix.frame(np.array([lesion_center_mm]))
    calcium["direction"] = ((math.cos(azimuth) * n_c[0] + math.sin(azimuth) * b_c[0]) @ rotation.T).tolist()
    return CoronaryStenosisPhantom(
        image=image, ijk_to_ras=grid.ijk_to_ras.copy(), vessel=vessel, arc_mm=arc, centerline=centerline, axis=axis,
        reference_diameter_mm=d_ref, lumen_diameter_mm=d, lesion=lesion, calcium=calcium, direction=direction,
        orientation=rotation, psf_sigma_mm=float(psf_sigma_mm), noise_sd_hu=float(noise_sd_hu),
        lumen_hu=float(lumen_hu), wall_hu=float(wall_hu), fat_hu=float(fat_hu), spacing_mm=float(spacing_mm),
        seed=int(seed), parameters=params)


def _blurred_disc(rho: np.ndarray, radius: np.ndarray, sigma: float) -> np.ndarray:
    """A disc of ``radius`` convolved with a 2D Gaussian of ``sigma``, at ``rho`` from its centre: the chance that
    a Gaussian point about ``rho`` falls in the disc, the non-central χ² (2 degrees of freedom) CDF."""
    return stats.ncx2.cdf((np.asarray(radius, float) / sigma) ** 2, 2, (np.asarray(rho, float) / sigma) ** 2)


def _calcium_fraction(artery: _Artery, s: np.ndarray, ln: np.ndarray, lb: np.ndarray, rho: np.ndarray,
                      r_lumen: np.ndarray, sigma: float) -> np.ndarray:
    """Blurred indicator of the calcium sector: the product of its radial, azimuthal and axial blurred edges."""
    p = artery.p
    inner = r_lumen + p["calcium_gap_mm"]
    outer = inner + p["calcium_thickness_mm"]
    radial = _edge(inner - rho, sigma) - _edge(outer - rho, sigma)
    centre_angle = artery.psi + math.pi
    dphi = np.angle(np.exp(1j * (np.arctan2(lb, ln) - centre_angle)))
    half = 0.5 * math.radians(p["calcium_arc_deg"])
    mid = 0.5 * (inner + outer)
    angular = _edge((np.abs(dphi) - half) * mid, sigma)
    axial = _edge(np.abs(s - p["lesion_center_mm"]) - 0.5 * p["calcium_length_mm"], sigma)
    return np.clip(radial, 0.0, 1.0) * angular * axial


def _calcium_truth(artery: _Artery, arc: np.ndarray) -> dict:
    p = artery.p
    if p["calcium_arc_deg"] <= 0:
        return {"arc_deg": 0.0, "length_mm": 0.0, "volume_mm3": 0.0, "start_mm": None, "end_mm": None,
                "hu": p["calcium_hu"]}
    start = p["lesion_center_mm"] - 0.5 * p["calcium_length_mm"]
    end = p["lesion_center_mm"] + 0.5 * p["calcium_length_mm"]
    s = np.linspace(start, end, 2001)
    inner = 0.5 * artery.lumen_diameter(s) + p["calcium_gap_mm"]
    outer = inner + p["calcium_thickness_mm"]
    area = 0.5 * math.radians(p["calcium_arc_deg"]) * (outer**2 - inner**2)
    volume = float(np.sum(0.5 * (area[1:] + area[:-1]) * np.diff(s)))
    return {"arc_deg": p["calcium_arc_deg"], "length_mm": end - start, "volume_mm3": volume, "start_mm": start,
            "end_mm": end, "hu": p["calcium_hu"], "gap_mm": p["calcium_gap_mm"],
            "thickness_mm": p["calcium_thickness_mm"]}


def user_curve(phantom: CoronaryStenosisPhantom, offset_mm: float = 0.0, step_mm: float = 1.0,
               seed: int = 0) -> np.ndarray:
    """A centreline as a user or a tracer would give it: points every ``step_mm`` from the ostium, each
    ``offset_mm`` off the true centreline in a direction perpendicular to it that turns slowly along it."""
    count = int(round(phantom.arc_mm[-1] / step_mm)) + 1
    s = np.linspace(0.0, phantom.arc_mm[-1], count)
    points = np.stack([np.interp(s, phantom.arc_mm, phantom.centerline[:, a]) for a in range(3)], axis=1)
    if offset_mm <= 0:
        return points
    tangent = np.gradient(points, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    rng = np.random.default_rng([seed, 7])
    reference = rng.standard_normal(3)
    first = reference - (tangent @ reference)[:, None] * tangent
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second = np.cross(tangent, first)
    turn = rng.uniform(0.0, 2.0 * math.pi) + 2.0 * math.pi * s / (3.0 * phantom.arc_mm[-1])
    return points + offset_mm * (np.cos(turn)[:, None] * first + np.sin(turn)[:, None] * second)


# ---------------------------------------------------------------------------------------------- files


def truth_dict(phantom: CoronaryStenosisPhantom) -> dict:
    """The truth as plain JSON values."""
    return {
        "vessel": phantom.vessel,
        "arc_mm": _round(phantom.arc_mm),
        "centerline": _round(phantom.centerline),
        "axis": _round(phantom.axis),
        "reference_diameter_mm": _round(phantom.reference_diameter_mm),
        "lumen_diameter_mm": _round(phantom.lumen_diameter_mm),
        "lesion": phantom.lesion,
        "lesion_fraction": LESION_FRACTION,
        "calcium": phantom.calcium,
        "direction": _round(phantom.direction),
        "direction_rule": f"principal axis of the centreline over the MLD ± {DIRECTION_HALF_MM:g} mm",
        "orientation": _round(phantom.orientation),
        "psf_sigma_mm": phantom.psf_sigma_mm,
        "noise_sd_hu": phantom.noise_sd_hu,
        "lumen_hu": phantom.lumen_hu,
        "wall_hu": phantom.wall_hu,
        "fat_hu": phantom.fat_hu,
        "spacing_mm": phantom.spacing_mm,
        "seed": phantom.seed,
        "parameters": phantom.parameters,
        "ijk_to_ras": phantom.ijk_to_ras.tolist(),
    }


def markups_curve(points: np.ndarray, name: str = "vessel") -> dict:
    """A Slicer markups curve document (``.mrk.json``) of RAS points, stored in LPS as Slicer writes it."""
    lps = np.asarray(points, float) * np.array([-1.0, -1.0, 1.0])
    control_points = [
        {"id": str(k + 1), "label": f"{name}-{k + 1}", "description": "", "associatedNodeID": "",
         "position": [round(float(c), 4) for c in p], "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
         "selected": True, "locked": False, "visibility": True, "positionStatus": "defined"}
        for k, p in enumerate(lps)
    ]
    return {"@schema": MARKUPS_SCHEMA,
            "markups": [{"type": "Curve", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": False,
                         "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d",
                         "lastUsedControlPointNumber": len(control_points), "controlPoints": control_points,
                         "measurements": []}]}


def write(phantom: CoronaryStenosisPhantom, folder: str | Path, curve_step_mm: float = 1.0) -> Path:
    """``ct.nrrd``, ``truth.json`` and ``vessel.mrk.json`` (the exact centreline, a point every
    ``curve_step_mm``) in ``folder``; returns the image path."""
    from CardiacSuiteLib.imagedata import ImageSeries
    from CardiacSuiteLib.imageio import write_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_image(ImageSeries(frames=phantom.image[None], ijk_to_ras=phantom.ijk_to_ras, modality="CT",
                                   name="coronary stenosis phantom"), folder / "ct.nrrd")
    (folder / "truth.json").write_text(json.dumps(truth_dict(phantom)))
    curve = user_curve(phantom, 0.0, curve_step_mm)
    (folder / "vessel.mrk.json").write_text(json.dumps(markups_curve(curve, phantom.vessel), indent=1))
    return path
