"""PCI planning on a coronary CT angiogram: one lesion of one vessel (reference notes §4.4).

Input: the vessel centreline ``curves["vessel"]`` (RAS points from the ostium outwards, traced or drawn),
the vessel's name ``vessel`` ("LAD", "LCx", "RCA", "LM", a CardiacSegmentation branch name such as
"LAD branch 1", or an SCCT segment name such as "D1" or "mRCA"), and optional landmarks ``lesion`` (a point
near the lesion of interest), ``lesion_start`` / ``lesion_end`` (the user's extent of the lesion). Options:
``psf_sigma_mm`` (the scanner blur, instead of fitting it), ``calcium_threshold_hu``.

1. **Centreline**: resampled every 0.5 mm, smoothed (σ 1 mm) and moved onto the lumen three times: in each
   cross-section the lumen is the region above the half-way threshold (blood to surrounding tissue) round the
   brightest point near the curve, or where a tight lumen never reaches it the contrast peak above its own half
   level; its centre is the least-squares circle through the region's edge (rays that run off into calcium
   blooming left out), calcium and 0.9 mm (at least 2.2 σ) of blooming round it being no lumen. The first pass
   searches 1.6 mm round the given curve, later ones 0.8 mm round the smoothed result; first-pass centres near
   calcium are interpolated from their neighbours. A curve up to about 1 mm off the lumen comes out centred.
2. **Lumen size, corrected for the scanner blur**: a coronary lumen (3 mm) is a few PSF widths across, so a
   threshold contour shrinks with the lumen (a blurred disc's half-level contour lies about σ²/2R inside its
   edge) and below R ≈ 1.2σ the lumen never reaches the half level at all. Every section's radial profile
   (the trimmed mean over 360 rays from the lumen centre, rays within 15° of calcium left out, averaged ¼ ½ ¼
   with its neighbours) is therefore fitted with a model: a circular lumen of radius R (blood HU) inside a ring
   (wall or plaque HU, out to R + t) in the surrounding tissue, each disc convolved with the scanner's Gaussian
   PSF (the Rice probability of the disc, by quadrature), the outer edge allowed an extra blur for a plaque off
   the lumen's centre: partial-volume modelling of the lumen (Freiman M, et al. Med Phys 2017;44:1040–49).
   The PSF σ, the wall and the blood level are fitted first, jointly on 3 mm blocks of large-lumen sections
   (shared σ and wall, each block its radius, blood and outside level), then held fixed (the wall as a prior)
   while each section gives R. Area = πR² and the mean diameter the equal-area diameter 2R; the minimum and
   maximum diameters through the centroid come from the half-way threshold contour rescaled to that area.
3. **Reference diameter** (QCA's interpolated reference, so that a tapering vessel is followed): a straight
   line d_ref(s) fitted to the mean diameters, iterated so that sections more than 10 % below the line (and
   1 mm round them) or more than 25 % above it (branches) leave the fit. Reference area: π·d_ref²/4.
4. **Lesion**: the run of sections whose mean diameter is more than 20 % below the reference diameter
   (``LESION_FRACTION``), its ends interpolated between sections, runs closer than 1 mm merged; the run nearest
   the ``lesion`` landmark, else the most severe. ``lesion_start`` / ``lesion_end`` replace the extent. MLD: the
   smallest mean diameter in the lesion; % diameter stenosis = (1 − MLD/d_ref(s_MLD))·100, % area stenosis =
   (1 − MLA/A_ref(s_MLD))·100; reference diameters and areas at the lesion's two ends (interpolated
   reference); occlusion (100 %): no lumen wider than 0.3 mm over at least 1 mm. CAD-RADS 2.0 category of the %
   diameter stenosis (Cury RC, et al. J Cardiovasc Comput Tomogr 2022;16:536–57): 0 (0 %), 1 (1–24 %),
   2 (25–49 %), 3 (50–69 %), 4A (70–99 %), 4B (left main ≥ 50 %; three-vessel ≥ 70 % needs every vessel,
   which one vessel cannot say), 5 (100 %).
5. **Calcium**: found where the CT is brighter than any contrast blood (blood + max(150 HU, 5 noise SD)) in the
   wall band of a section (the lumen boundary to 2.5 mm beyond it, 360 rays from the lumen centre); its extent
   is where the CT stays above half-way between the wall and the calcium's peak, next to a detection
   (hysteresis: the partial-volume edge, as for the lumen), across the rays and along the vessel. Per section
   the calcified arc (degrees about the lumen centre) and area; over the lesion the maximal arc, the calcified
   length (sections × 0.5 mm) and the volume (areas × 0.5 mm).
6. **SCCT segment** (18-segment model of the SCCT 2014 guidelines, Leipsic J, et al. J Cardiovasc Comput
   Tomogr 2014;8:342–58, used by CAD-RADS 2.0): by the vessel's name and the MLD's position along the curve,
   as proximal/mid/distal thirds of the curve's arc length from its start (the vessel's origin) for RCA
   (1/2/3) and LAD (6/7/8), LCx: first third 11, beyond 13; LM 5; side branches by name.
7. **C-arm**: the principal axis of the centreline over the MLD ± 5 mm; its perpendicularity curve and the
   easiest foreshortening-free view (``carm.foreshortening_free``).
"""

from __future__ import annotations

import math
import re

import numpy as np
from scipy import ndimage, optimize, special

from CardiacSuiteLib.geometry import arc_length, resample_polyline, smooth_polyline

from . import carm
from .model import PlanInputs, PlanResult, SectionImage
from .sections import Volume, plane_basis, polygon_measures, ray_radii, sample_plane, smooth_periodic

STEP_MM = 0.5  # section spacing along the centreline
SMOOTH_MM = 1.0  # centreline smoothing (Gaussian σ along the arc)
LESION_FRACTION = 0.20  # lesion: mean diameter more than this below the reference diameter
HEALTHY_FRACTION = 0.10  # reference fit: sections within this of the reference line
WIDE_FRACTION = 0.25  # reference fit: sections wider than the line by more than this (branches) left out
END_MARGIN_MM = 1.0  # sections this close to the curve's ends are not measured
MERGE_MM = 1.0  # lesion runs closer than this are one lesion
OCCLUSION_DIAMETER_MM = 0.3
OCCLUSION_LENGTH_MM = 1.0
CALCIUM_MARGIN_HU = 150.0
CALCIUM_NOISE_SDS = 5.0
CALCIUM_BAND_MM = 2.5
CALCIUM_HALO_MM = 0.9  # blooming round calcium that is no lumen when centring (first pass)
HALO_SIGMAS = 2.2  # … and CALCIUM_HALO_MM at least this many of the scan's PSF σ
HALO_SLACK_MM = 0.15  # centre again only when the scan needs a halo wider by more than this
CALCIUM_NEAR_MM = 1.5  # a first centring this close to calcium is doubtful
SEARCH_MM = 1.6  # first centring: the lumen's brightest point within this of the given curve
TRACK_MM = 0.8  # later centrings: within this of the smoothed centreline
CALCIUM_RAY_MARGIN = 15  # rays (degrees) either side of a calcified ray left out of the lumen fit
DIRECTION_HALF_MM = 5.0
RAYS = 360
RADIAL_STEP_MM = 0.1
BLOCK_SECTIONS = 6  # sections per block when fitting the scan's blur (3 mm)
RING_PRIOR_SD_HU = 25.0  # spread of the wall level prior
RING_BLUR_PRIOR_MM = 0.3  # prior SD of the outer edge's extra blur (plaque eccentricity): none unless the data say
DEFAULT_PSF_SIGMA_MM = 0.4  # when the scan has too few large-lumen sections to fit its own
SCCT_SEGMENTS = {
    1: "proximal RCA", 2: "mid RCA", 3: "distal RCA", 4: "R-PDA", 5: "left main", 6: "proximal LAD",
    7: "mid LAD", 8: "distal LAD", 9: "D1", 10: "D2", 11: "proximal LCx", 12: "OM1", 13: "mid/distal LCx",
    14: "OM2", 15: "L-PDA", 16: "R-PLB", 17: "ramus intermedius", 18: "L-PLB",
}
SEGMENT_RULE = ("SCCT 2014 18-segment model: RCA and LAD split into proximal/mid/distal thirds of the curve's arc "
                "length from its start (1/2/3, 6/7/8), LCx first third 11 (proximal) and beyond 13 (mid/distal), "
                "LM 5; side branches by name (D1 9, D2 10, OM1 12, OM2 14, R-PDA 4, L-PDA 15, R-PLB 16, L-PLB 18, "
                "ramus 17); the segment of the MLD")

_XG, _WG = np.polynomial.legendre.leggauss(32)
_REACH_SIGMAS = 6.0  # the Rice density beyond this many σ from the point is nil


def _r(value, digits=2):
    return None if value is None else round(float(value), digits)


# ------------------------------------------------------------------------------------------ the lumen model


def blurred_disc(r: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """A disc of ``radius`` convolved with a 2D Gaussian of ``sigma``, at distance ``r`` from its centre: the
    chance that a Gaussian point about ``r`` falls in the disc, by 32-point Gauss–Legendre quadrature of the
    Rice density over the disc's radii within 6σ of ``r``."""
    r = np.asarray(r, float)
    lo = np.clip(r - _REACH_SIGMAS * sigma, 0.0, radius)[..., None]
    hi = np.clip(r + _REACH_SIGMAS * sigma, 0.0, radius)[..., None]
    rho = lo + (hi - lo) * 0.5 * (_XG + 1.0)
    return np.clip((_rice(r[..., None], rho, sigma) * (hi - lo) * 0.5 * _WG).sum(axis=-1), 0.0, 1.0)


def _rice(r: np.ndarray, rho: np.ndarray, sigma: float) -> np.ndarray:
    """Rice density of the distance ``rho`` from the origin of a 2D Gaussian point of ``sigma`` about ``r``."""
    s2 = sigma * sigma
    return rho / s2 * np.exp(-((r - rho) ** 2) / (2.0 * s2)) * special.i0e(r * rho / s2)


def profile_model(r: np.ndarray, radius: float, ring_mm: float, ring_hu: float, outside_hu: float, sigma: float,
                  blood_hu: float, ring_blur_mm: float = 0.0) -> np.ndarray:
    """Radial profile of a blurred lumen (``blood_hu``, ``radius``) in a ring (``ring_hu`` out to radius +
    ``ring_mm``) in tissue (``outside_hu``); the ring's outer edge is blurred by √(σ² + ``ring_blur_mm``²), the
    azimuthal mean of an outer wall off the lumen's centre (eccentric plaque) to second order."""
    return (outside_hu + (ring_hu - outside_hu) * blurred_disc(r, radius + ring_mm, math.hypot(sigma, ring_blur_mm))
            + (blood_hu - ring_hu) * blurred_disc(r, radius, sigma))


_PARAMETERS = ("radius", "ring_mm", "ring_hu", "outside_hu", "ring_blur_mm", "sigma", "blood_hu")
_LOW = {"radius": 0.02, "ring_mm": 0.05, "ring_hu": -400.0, "outside_hu": -600.0, "ring_blur_mm": 0.0,
        "sigma": 0.12, "blood_hu": 100.0}
_SCALE = {"radius": 0.3, "ring_mm": 0.3, "ring_hu": 50.0, "outside_hu": 50.0, "ring_blur_mm": 0.2, "sigma": 0.1,
          "blood_hu": 50.0}


def fit_profile(r: np.ndarray, profile: np.ndarray, weights: np.ndarray, start: dict, sigma: float | None = None,
                blood_hu: float | None = None, ring_max_hu: float = 1500.0,
                ring_prior: tuple[float, float] | None = None) -> dict | None:
    """Least-squares fit of ``profile_model`` (analytic Jacobian but for the blur widths); ``sigma`` and
    ``blood_hu`` are fitted unless given. The ring is tissue (at most ``ring_max_hu``); ``ring_prior`` (HU, SD)
    pulls a thin ring's level, which the profile barely fixes, towards the scan's typical wall level."""
    # with the blur free (large concentric lumens), the outer edge shares it
    fixed = {"sigma": sigma, "blood_hu": blood_hu, "ring_blur_mm": 0.0 if sigma is None else None}
    names = [n for n in _PARAMETERS if fixed.get(n) is None]
    r_max = float(r[-1])
    high = {"radius": r_max - 0.3, "ring_mm": r_max, "ring_hu": ring_max_hu, "outside_hu": 1500.0,
            "ring_blur_mm": 1.0, "sigma": 1.5, "blood_hu": 3000.0}
    start = {"ring_blur_mm": 0.1, **start}
    x0 = np.array([float(np.clip(start[n], _LOW[n] + 1e-3, high[n] - 1e-3)) for n in names])
    index = {n: i for i, n in enumerate(names)}

    def values(x):
        return {**{n: fixed[n] for n in fixed if fixed[n] is not None}, **dict(zip(names, x))}

    def parts(x):
        v = values(x)
        inner = blurred_disc(r, v["radius"], v["sigma"])
        outer = blurred_disc(r, v["radius"] + v["ring_mm"], math.hypot(v["sigma"], v["ring_blur_mm"]))
        model = v["outside_hu"] + (v["ring_hu"] - v["outside_hu"]) * outer + (v["blood_hu"] - v["ring_hu"]) * inner
        return v, inner, outer, model

    def residual(x):
        out = weights * (parts(x)[3] - profile)
        if "ring_blur_mm" in index:
            out = np.append(out, x[index["ring_blur_mm"]] / RING_BLUR_PRIOR_MM)
        return out if ring_prior is None else np.append(out, (x[index["ring_hu"]] - ring_prior[0]) / ring_prior[1])

    def jacobian(x):
        v, inner, outer, _ = parts(x)
        s, s_outer = v["sigma"], math.hypot(v["sigma"], v["ring_blur_mm"])
        d_inner = _rice(r, v["radius"], s)
        d_outer = _rice(r, v["radius"] + v["ring_mm"], s_outer)
        columns = {"radius": (v["ring_hu"] - v["outside_hu"]) * d_outer + (v["blood_hu"] - v["ring_hu"]) * d_inner,
                   "ring_mm": (v["ring_hu"] - v["outside_hu"]) * d_outer, "ring_hu": outer - inner,
                   "outside_hu": 1.0 - outer, "blood_hu": inner}
        h = 1e-4
        args = (v["radius"], v["ring_mm"], v["ring_hu"], v["outside_hu"])
        blur = v["ring_blur_mm"]
        if "ring_blur_mm" in index:
            columns["ring_blur_mm"] = (profile_model(r, *args, s, v["blood_hu"], blur + h)
                                       - profile_model(r, *args, s, v["blood_hu"], max(blur - h, 0.0))) / (
                blur + h - max(blur - h, 0.0))
        if "sigma" in index:
            columns["sigma"] = (profile_model(r, *args, s + h, v["blood_hu"], blur)
                                - profile_model(r, *args, s - h, v["blood_hu"], blur)) / (2.0 * h)
        jac = np.column_stack([weights * columns[n] for n in names])
        if "ring_blur_mm" in index:
            row = np.zeros((1, len(names)))
            row[0, index["ring_blur_mm"]] = 1.0 / RING_BLUR_PRIOR_MM
            jac = np.vstack([jac, row])
        if ring_prior is not None:
            row = np.zeros((1, len(names)))
            row[0, index["ring_hu"]] = 1.0 / ring_prior[1]
            jac = np.vstack([jac, row])
        return jac

    try:
        fit = optimize.least_squares(residual, x0, jac=jacobian, bounds=([_LOW[n] for n in names],
                                                                          [high[n] for n in names]),
                                     x_scale=[_SCALE[n] for n in names], max_nfev=100)
    except ValueError:
        return None
    v, _, _, model = parts(fit.x)
    rms = float(np.sqrt(np.mean((model - profile) ** 2)))
    return {**{n: float(v[n]) for n in _PARAMETERS}, "rms_hu": rms, "ok": bool(fit.status > 0)}


# ------------------------------------------------------------------------------------------ centreline


def _patch(volume: Volume, centre: np.ndarray, u: np.ndarray, v: np.ndarray, half_mm: float, pixel_mm: float):
    n = int(round(half_mm / pixel_mm))
    offsets = np.arange(-n, n + 1) * pixel_mm
    b, a = np.meshgrid(offsets, offsets, indexing="ij")
    return volume.sample(centre + a[..., None] * u + b[..., None] * v), a, b


def _lumen_centre(volume: Volume, centre: np.ndarray, normal: np.ndarray, threshold: float,
                  calcium_hu: float, search_mm: float, halo_mm: float = 0.9) -> tuple[np.ndarray | None, bool]:
    """The lumen's centre in the plane through ``centre``: the contrast-weighted centroid of the connected region
    above ``threshold`` round the brightest point within ``search_mm``, or, where the lumen never reaches the
    threshold (a tight stenosis), of the contrast peak above its own half level. Calcium (above
    ``calcium_hu``) and its blooming (``halo_mm`` round it) are no lumen. Also says whether the answer
    is doubtful: calcium near it, or no lumen above the threshold."""
    u, v = plane_basis(normal)
    pixel = 0.15
    values, a, b = _patch(volume, centre, u, v, 3.2, pixel)
    smooth = ndimage.gaussian_filter(values, 1.0)
    calcified = values >= calcium_hu
    distance_to_calcium = np.full(values.shape, np.inf)
    if calcified.any():
        distance_to_calcium = ndimage.distance_transform_edt(~calcified) * pixel
        smooth = np.where(distance_to_calcium <= halo_mm, -1000.0, smooth)
    near = np.hypot(a, b) <= search_mm
    peak_index = np.unravel_index(np.argmax(np.where(near, smooth, -np.inf)), smooth.shape)
    peak = smooth[peak_index]
    doubtful = peak < threshold or bool(distance_to_calcium[peak_index] <= CALCIUM_NEAR_MM)
    if peak >= threshold:
        level = threshold
    else:
        ring = np.hypot(a - a[peak_index], b - b[peak_index])
        around = (ring >= 1.0) & (ring <= 2.0) & (smooth > -1000.0)
        if not around.any():
            return None, True
        background = float(np.median(smooth[around]))
        if peak - background < 30.0:
            return None, True
        level = 0.5 * (peak + background)
    labels, _ = ndimage.label(smooth >= level)
    region = labels == labels[peak_index]
    weight = np.where(region, smooth - level, 0.0)
    if weight.sum() <= 0:
        return None, True
    du, dv = float((weight * a).sum() / weight.sum()), float((weight * b).sum() / weight.sum())
    # blooming that joins the region pulls its centroid: the centre of a circle through the region's edge instead,
    # rays that run far out (into blooming) or into excluded calcium left out
    if peak >= threshold:
        du, dv = float(a[peak_index]), float(b[peak_index])  # the rays start inside the lumen, off the blooming
    for _ in range(3):
        fitted = _edge_circle(smooth, pixel, du, dv, level)
        if fitted is None:
            break
        du, dv = fitted
    if math.hypot(du, dv) > 2.5:
        return None, True
    return centre + du * u + dv * v, doubtful


def _edge_circle(image: np.ndarray, pixel: float, du: float, dv: float, level: float) -> tuple[float, float] | None:
    """Centre (u, v mm about the patch centre) of the least-squares circle through the points where rays from
    (du, dv) first fall below ``level``; rays longer than 1.4 × the median, or ending on excluded pixels
    (−1000), are left out."""
    half = (image.shape[0] - 1) / 2.0
    phi = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)
    steps = np.arange(0.0, 3.0, 0.05)
    x = du + steps[None, :] * np.cos(phi)[:, None]
    y = dv + steps[None, :] * np.sin(phi)[:, None]
    values = ndimage.map_coordinates(image, [y / pixel + half, x / pixel + half], order=1, cval=-1000.0)
    below = values < level
    first = np.where(below.any(axis=1), below.argmax(axis=1), -1)
    radius = np.full(len(phi), np.nan)
    for k, j in enumerate(first):
        if j <= 0 or values[k, j] <= -999.0:
            continue
        v0, v1 = values[k, j - 1], values[k, j]
        radius[k] = steps[j - 1] + (v0 - level) / (v0 - v1) * (steps[1] - steps[0])
    good = np.isfinite(radius)
    if good.sum() < 12:
        return None
    good &= radius <= 1.4 * np.median(radius[good])
    if good.sum() < 12:
        return None
    px = du + radius[good] * np.cos(phi[good])
    py = dv + radius[good] * np.sin(phi[good])
    design = np.column_stack([px, py, np.ones_like(px)])
    solution = np.linalg.lstsq(design, px**2 + py**2, rcond=None)[0]
    cu, cv = 0.5 * solution[0], 0.5 * solution[1]
    if not (np.isfinite(cu) and np.isfinite(cv)) or math.hypot(cu - du, cv - dv) > 1.0:
        return None
    return float(cu), float(cv)


def _tangents(points: np.ndarray) -> np.ndarray:
    t = np.gradient(points, axis=0)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)


def recentre(volume: Volume, curve: np.ndarray, threshold: float, calcium_hu: float, iterations: int = 3,
             halo_mm: float = 0.9, first_search_mm: float | None = None) -> np.ndarray:
    """The curve resampled every ``STEP_MM``, moved onto the lumen centre and smoothed (see module docstring).

    The first pass searches ``SEARCH_MM`` round each point (a drawn curve may be off the lumen); where its answer
    is doubtful (calcium near, or a lumen too small for the threshold) the point is interpolated from its
    neighbours instead. Later passes search ``TRACK_MM`` round the smoothed curve, so a bright calcium blooming
    next to a tight lumen does not pull the centre onto itself.
    """
    points = resample_polyline(np.asarray(curve, float), STEP_MM)[0]
    points = smooth_polyline(points, SMOOTH_MM, STEP_MM)
    index = np.arange(len(points))
    for iteration in range(iterations):
        tangents = _tangents(points)
        moved = np.full_like(points, np.nan)
        doubtful = np.zeros(len(points), bool)
        search = (first_search_mm or SEARCH_MM) if iteration == 0 else TRACK_MM
        for k, (p, t) in enumerate(zip(points, tangents)):
            c, doubtful[k] = _lumen_centre(volume, p, t, threshold, calcium_hu, search, halo_mm)
            if c is not None:
                moved[k] = c
        good = np.all(np.isfinite(moved), axis=1)
        if iteration == 0 and (good & ~doubtful).sum() >= max(2, len(points) // 4):
            good &= ~doubtful
        if good.sum() < 2:
            break
        moved = np.stack([np.interp(index, index[good], moved[good, a]) for a in range(3)], axis=1)
        points = resample_polyline(moved, STEP_MM)[0]
        points = resample_polyline(smooth_polyline(points, SMOOTH_MM, STEP_MM), STEP_MM)[0]
        index = np.arange(len(points))
    return points


# ------------------------------------------------------------------------------------------ sections


def _frames(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangents and an in-plane basis carried along the curve (parallel transport), so sections do not spin."""
    tangents = _tangents(points)
    us, vs = [], []
    u_prev = None
    for t in tangents:
        u, v = plane_basis(t, u_prev)
        us.append(u)
        vs.append(v)
        u_prev = u
    return tangents, np.array(us), np.array(vs)


def _ray_samples(volume: Volume, centres: np.ndarray, us: np.ndarray, vs: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """CT values ``[section, ray, radius]`` on ``RAYS`` rays from each centre in its plane (trilinear), the rays
    mapped into voxel indices once rather than point by point."""
    ras_to_ijk = np.linalg.inv(volume.ijk_to_ras)
    phi = np.linspace(0.0, 2.0 * math.pi, RAYS, endpoint=False)
    directions = np.cos(phi)[None, :, None] * us[:, None, :] + np.sin(phi)[None, :, None] * vs[:, None, :]
    centre_ijk = centres @ ras_to_ijk[:3, :3].T + ras_to_ijk[:3, 3]
    direction_ijk = directions @ ras_to_ijk[:3, :3].T
    out = np.empty((len(centres), RAYS, len(radii)), np.float32)
    kji = np.empty((3, RAYS, len(radii)))  # map_coordinates wants [k, j, i]
    for n in range(len(centres)):
        for a in range(3):
            kji[2 - a] = centre_ijk[n, a] + direction_ijk[n, :, a, None] * radii[None, :]
        out[n] = ndimage.map_coordinates(volume.image, kji, order=1, mode="constant", cval=-1000.0)
    return out


def _profile_weights(r: np.ndarray, spacing: float) -> np.ndarray:
    """Weights of the radial profile's bins: about the square root of the independent voxels each averages."""
    return np.sqrt(np.maximum(1.0, 2.0 * math.pi * r / spacing))


def _trimmed_profile(samples: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Mean over the kept rays of each radius, the top and bottom 10 % left out."""
    values = samples[keep] if keep.sum() >= RAYS // 4 else samples
    values = np.sort(values, axis=0)
    cut = len(values) // 10
    return values[cut: len(values) - cut].mean(axis=0)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of every run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1))


def reference_fit(s: np.ndarray, d: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """QCA-style interpolated reference: a taper line through the healthy diameters (module docstring, 3)."""
    healthy = valid & (d >= 0.8 * np.median(d[valid]))
    coef = np.array([0.0, float(np.median(d[valid]))])
    for _ in range(25):
        if healthy.sum() >= max(6, int(0.2 * valid.sum())) and np.ptp(s[healthy]) >= 3.0:
            coef = np.polyfit(s[healthy], d[healthy], 1)
        elif healthy.any():
            coef = np.array([0.0, float(np.median(d[healthy]))])
        line = np.polyval(coef, s)
        narrow = valid & (d < (1.0 - HEALTHY_FRACTION) * line)
        wide = valid & (d > (1.0 + WIDE_FRACTION) * line)
        grown = ndimage.binary_dilation(narrow, iterations=int(round(1.0 / STEP_MM))) if narrow.any() else narrow
        new = valid & ~grown & ~wide
        if np.array_equal(new, healthy):
            break
        healthy = new
    rule = (f"interpolated reference: straight (taper) line fitted to the mean diameters of the sections within "
            f"{100 * HEALTHY_FRACTION:g} % below / {100 * WIDE_FRACTION:g} % above the line (and 1 mm from any "
            f"narrower section), iterated; {int(healthy.sum())} sections, taper {-coef[0] * 10:.2f} mm per 10 mm")
    return np.polyval(coef, s), healthy, rule


# ------------------------------------------------------------------------------------------ naming


def scct_segment(vessel: str | None, position_mm: float, length_mm: float) -> dict:
    """SCCT 2014 segment (name, number) of a lesion at ``position_mm`` along a vessel curve of ``length_mm``."""
    name = (vessel or "").strip()
    key = re.sub(r"[\s_\-]+", " ", name.lower()).strip()
    fraction = position_mm / length_mm if length_mm > 0 else 0.0
    third = 0 if fraction < 1.0 / 3.0 else (1 if fraction < 2.0 / 3.0 else 2)
    number = None
    explicit = {
        r"^(p|prox|proximal) ?rca$": 1, r"^(m|mid) ?rca$": 2, r"^(d|dist|distal) ?rca$": 3,
        r"^(r ?)?pda$|^posterior descending": 4, r"^(p|prox|proximal) ?lad$": 6, r"^(m|mid) ?lad$": 7,
        r"^(d|dist|distal) ?lad$": 8, r"^d ?1$|^(first )?diagonal( 1)?$": 9, r"^d ?2$|^second diagonal|^diagonal 2$": 10,
        r"^(p|prox|proximal) ?(lcx|cx|circumflex)$": 11, r"^om ?1$|^(first )?obtuse marginal( 1)?$": 12,
        r"^(m|mid|d|dist|distal) ?(lcx|cx)$": 13, r"^om ?2$|^second obtuse marginal|^obtuse marginal 2$": 14,
        r"^l ?pda$": 15, r"^(r ?)?plb$|^posterolateral": 16, r"^(ramus|ri|ramus intermedius)$": 17, r"^l ?plb$": 18,
    }
    for pattern, value in explicit.items():
        if re.search(pattern, key):
            number = value
            rule = "the segment the vessel's name gives"
            break
    if number is None:
        branch = re.match(r"^(lm|lad|lcx|rca) branch (\d+)$", key)
        if branch:
            parent, n = branch.group(1), int(branch.group(2))
            number = {("lad", 1): 9, ("lad", 2): 10, ("lcx", 1): 12, ("lcx", 2): 14}.get((parent, n))
            if parent == "lm":
                number = 17
            rule = ("a traced side branch, named by its parent and number (LAD branch 1/2: D1/D2, LCx branch 1/2: "
                    "OM1/OM2, LM branch: ramus intermedius); check the branch order")
        elif key in ("lm", "lmca", "left main", "left main coronary artery"):
            number, rule = 5, "the left main is segment 5"
        elif key in ("lad", "left anterior descending", "left anterior descending artery"):
            number, rule = (6, 7, 8)[third], "LAD thirds by arc length from the curve's start"
        elif key in ("lcx", "cx", "circumflex", "left circumflex", "left circumflex artery"):
            number, rule = (11, 13, 13)[third], "LCx: first third proximal (11), beyond mid/distal (13)"
        elif key in ("rca", "right coronary", "right coronary artery"):
            number, rule = (1, 2, 3)[third], "RCA thirds by arc length from the curve's start"
        else:
            rule = "no SCCT segment for this vessel name: name the vessel (LAD, LCx, RCA, LM, D1, OM1, …)"
    return {"name": SCCT_SEGMENTS.get(number, "unknown") if number else "unknown", "number": number,
            "vessel": name or None, "position_fraction": _r(fraction, 3), "rule": f"{rule}; {SEGMENT_RULE}"}


def cad_rads(diameter_stenosis_percent: float, left_main: bool = False) -> str:
    """CAD-RADS 2.0 stenosis category of a % diameter stenosis (module docstring, 4)."""
    p = round(float(diameter_stenosis_percent))
    if p >= 100:
        return "5"
    if left_main and p >= 50:
        return "4B"
    if p >= 70:
        return "4A"
    if p >= 50:
        return "3"
    if p >= 25:
        return "2"
    if p >= 1:
        return "1"
    return "0"


# ------------------------------------------------------------------------------------------ the protocol


def _initial_levels(volume: Volume, points: np.ndarray) -> tuple[float, float]:
    """Blood (90th percentile within 1.2 mm of the curve) and tissue (median 3.5–4.5 mm out), medians over
    the curve's sections."""
    tangents = _tangents(points)
    blood, tissue = [], []
    for p, t in zip(points[::2], tangents[::2]):
        u, v = plane_basis(t)
        values, a, b = _patch(volume, p, u, v, 4.5, 0.3)
        rho = np.hypot(a, b)
        blood.append(np.percentile(values[rho <= 1.2], 90))
        tissue.append(np.median(values[(rho >= 3.5) & (rho <= 4.5)]))
    return float(np.median(blood)), float(np.median(tissue))


def _project(points: np.ndarray, s: np.ndarray, point: np.ndarray) -> float:
    """Arc length (mm) of the centreline point nearest ``point``."""
    return float(s[int(np.argmin(np.linalg.norm(points - np.asarray(point, float), axis=1)))])


def _at(s: np.ndarray, values: np.ndarray, where: float) -> np.ndarray:
    values = np.asarray(values, float)
    if values.ndim == 1:
        return np.interp(where, s, values)
    return np.array([np.interp(where, s, values[:, a]) for a in range(values.shape[1])])


def _lumen_sections(volume: Volume, centreline: np.ndarray, threshold0: float, blood0: float, opts: dict,
                    notes: list[str]) -> dict:
    """Sections every ``STEP_MM`` along the centreline: ray samples, calcium rays, the scan's blur and the fitted
    lumen radius of each section (module docstring, 2)."""
    s = arc_length(centreline)
    tangents, us, vs = _frames(centreline)
    count = len(centreline)
    # the profile reaches past the wall into the tissue beyond (2.5 mm outside the typical lumen)
    r_max = float(np.clip(blood_radius_guess(volume, centreline, tangents, threshold0) + 2.5, 4.0, 8.0))
    radii = np.arange(0.0, r_max + 1e-9, RADIAL_STEP_MM)
    samples = _ray_samples(volume, centreline, us, vs, radii)  # [section, ray, radius]
    weights = _profile_weights(radii, volume.spacing)
    noise_sd = _noise_sd(volume, centreline)
    calcium_threshold = float(opts.get("calcium_threshold_hu")
                              or blood0 + max(CALCIUM_MARGIN_HU, CALCIUM_NOISE_SDS * noise_sd))
    ray_has_calcium = (samples[:, :, radii >= 0.3] >= calcium_threshold).any(axis=2)
    margin = CALCIUM_RAY_MARGIN
    ray_near_calcium = ndimage.binary_dilation(np.pad(ray_has_calcium, ((0, 0), (margin, margin)), mode="wrap"),
                                               np.ones((1, 2 * margin + 1), bool))[:, margin:-margin]
    profiles = np.array([_trimmed_profile(samples[k], ~ray_near_calcium[k]) for k in range(count)])
    valid = (s >= s[0] + END_MARGIN_MM) & (s <= s[-1] - END_MARGIN_MM)

    def start_of(prof: np.ndarray) -> dict:
        below = np.nonzero(prof < threshold0)[0]
        radius = float(radii[below[0]]) if len(below) else 1.5
        tail = float(np.median(prof[radii >= r_max - 0.8]))
        ring_at = min(len(radii) - 1, int(round((radius + 0.4) / RADIAL_STEP_MM)))
        return {"radius": max(radius, 0.2), "ring_mm": 0.5, "ring_hu": float(prof[ring_at]), "outside_hu": tail,
                "sigma": DEFAULT_PSF_SIGMA_MM, "blood_hu": blood0}

    ring_max = threshold0
    sigma, blood_line, ring_prior = _scan_blur(radii, profiles, weights, valid, s, start_of, blood0, ring_max, notes,
                                               opts)
    # each section's profile averaged with its neighbours' (¼, ½, ¼: 1 mm along the vessel) against the noise
    smoothed = ndimage.convolve1d(profiles, [0.25, 0.5, 0.25], axis=0, mode="nearest")
    fits = [fit_profile(radii, smoothed[k], weights, start_of(smoothed[k]), sigma, float(np.polyval(blood_line, s[k])),
                        ring_max, ring_prior) for k in range(count)]
    ok = np.array([f is not None and f["ok"] for f in fits])
    valid &= ok
    radius = np.array([f["radius"] if f else np.nan for f in fits])
    ring_hu = np.array([f["ring_hu"] if f else np.nan for f in fits])
    blood = np.polyval(blood_line, s)

    return {"s": s, "tangents": tangents, "us": us, "vs": vs, "count": count, "r_max": r_max, "radii": radii,
            "samples": samples, "noise_sd": noise_sd, "calcium_threshold": calcium_threshold,
            "ray_near_calcium": ray_near_calcium, "valid": valid, "sigma": sigma, "blood_line": blood_line,
            "radius": radius, "ring_hu": ring_hu, "blood": blood, "calcified": bool(ray_has_calcium.any())}


def measure(inputs: PlanInputs) -> PlanResult:
    curve = inputs.curves.get("vessel")
    if curve is None or len(np.atleast_2d(curve)) < 2:
        raise ValueError("PCI planning needs the vessel's centreline: give the curve 'vessel' (RAS points from the "
                         "ostium outwards, traced or drawn)")
    curve = np.asarray(curve, float).reshape(-1, 3)
    if arc_length(curve)[-1] < 10.0:
        raise ValueError("the vessel curve is shorter than 10 mm: draw it from the ostium past the lesion")
    volume = inputs.volume
    opts = inputs.options
    notes: list[str] = []

    # --- 1. centreline on the lumen
    start_points = smooth_polyline(resample_polyline(curve, STEP_MM)[0], SMOOTH_MM, STEP_MM)
    blood0, tissue0 = _initial_levels(volume, start_points)
    if blood0 < 150.0:
        raise ValueError(f"the vessel curve runs through {blood0:.0f} HU: no contrast lumen along it (a CT "
                         "angiogram has blood above 150 HU)")
    threshold0 = 0.5 * (blood0 + tissue0)
    calcium_hu0 = blood0 + CALCIUM_MARGIN_HU
    halo = CALCIUM_HALO_MM
    centreline = recentre(volume, curve, threshold0, calcium_hu0, halo_mm=halo)
    lumen = _lumen_sections(volume, centreline, threshold0, blood0, opts, notes)
    if HALO_SIGMAS * lumen["sigma"] > halo + HALO_SLACK_MM and lumen["calcified"]:
        # a blurrier scan blooms calcium further: centre again keeping its blooming out, then measure again
        halo = HALO_SIGMAS * lumen["sigma"]
        centreline = recentre(volume, centreline, threshold0, calcium_hu0, iterations=2, halo_mm=halo,
                              first_search_mm=TRACK_MM)
        lumen = _lumen_sections(volume, centreline, threshold0, blood0, opts, [])
    (s, tangents, us, vs, count, r_max, radii, samples, noise_sd, calcium_threshold, ray_near_calcium, valid, sigma,
     blood_line, radius, ring_hu, blood) = (lumen[k] for k in (
        "s", "tangents", "us", "vs", "count", "r_max", "radii", "samples", "noise_sd", "calcium_threshold",
        "ray_near_calcium", "valid", "sigma", "blood_line", "radius", "ring_hu", "blood"))

    # per-section shape: the threshold contour half-way between blood and the ring, rescaled to the model's area
    phi = np.linspace(0.0, 2.0 * math.pi, RAYS, endpoint=False)
    contour_radii = np.zeros((count, RAYS))
    diam_min, diam_max = np.zeros(count), np.zeros(count)
    for k in range(count):
        contour_radii[k], diam_min[k], diam_max[k] = _shape(volume, centreline[k], us[k], vs[k], phi, radius[k],
                                                            0.5 * (blood[k] + ring_hu[k]), r_max,
                                                            ray_near_calcium[k])
    diameter = 2.0 * radius
    area = math.pi * radius**2

    # --- 3. reference
    reference, healthy, reference_rule = reference_fit(s, np.where(valid, diameter, 0.0), valid)
    ratio = np.where(valid, diameter / np.maximum(reference, 1e-6), 1.0)

    # --- 4. lesion
    landmarks: dict[str, np.ndarray] = {"ostium": centreline[0].copy()}
    sources: dict[str, str] = {"ostium": "found"}
    given = inputs.landmarks
    if "lesion_start" in given and "lesion_end" in given:
        a = _project(centreline, s, given["lesion_start"])
        b = _project(centreline, s, given["lesion_end"])
        start_mm, end_mm = min(a, b), max(a, b)
        length_rule = "the user's extent (lesion_start to lesion_end, projected onto the centreline)"
        for name in ("lesion_start", "lesion_end"):
            landmarks[name], sources[name] = np.asarray(given[name], float), "given"
    else:
        start_mm, end_mm = _lesion_extent(s, ratio, valid, given.get("lesion"), centreline, notes)
        length_rule = (f"where the mean lumen diameter is more than {100 * LESION_FRACTION:g} % below the "
                       "interpolated reference diameter")
        landmarks["lesion_start"], sources["lesion_start"] = _at(s, centreline, start_mm), "found"
        landmarks["lesion_end"], sources["lesion_end"] = _at(s, centreline, end_mm), "found"
    inside = valid & (s >= start_mm - 1e-6) & (s <= end_mm + 1e-6)
    if not inside.any():
        inside = valid & (np.abs(s - 0.5 * (start_mm + end_mm)) <= STEP_MM)
    candidates = np.nonzero(inside)[0]
    k_mld = int(candidates[np.argmin(diameter[candidates])])
    mld, mla, s_mld = float(diameter[k_mld]), float(area[k_mld]), float(s[k_mld])
    ref_mld = float(reference[k_mld])
    left_main = scct_segment(inputs.vessel, s_mld, float(s[-1]))["number"] == 5
    occluded_run = _longest_run(inside & (diameter < OCCLUSION_DIAMETER_MM)) * STEP_MM
    occluded = occluded_run >= OCCLUSION_LENGTH_MM
    if occluded:
        ds, as_ = 100.0, 100.0
        notes.append(f"no lumen wider than {OCCLUSION_DIAMETER_MM:g} mm over {occluded_run:.1f} mm: occlusion "
                     "(100 %)")
    else:
        ds = float(np.clip(100.0 * (1.0 - mld / ref_mld), 0.0, 100.0))
        as_ = float(np.clip(100.0 * (1.0 - mla / (math.pi * ref_mld**2 / 4.0)), 0.0, 100.0))
    ref_prox, ref_dist = float(_at(s, reference, start_mm)), float(_at(s, reference, end_mm))
    if "lesion" in given:
        landmarks["lesion"], sources["lesion"] = np.asarray(given["lesion"], float), "given"
    landmarks["mld"], sources["mld"] = centreline[k_mld].copy(), "found"
    k_prox = _reference_site(s, ratio, valid, start_mm, -1)
    k_dist = _reference_site(s, ratio, valid, end_mm, +1)
    landmarks["reference_proximal"], sources["reference_proximal"] = centreline[k_prox].copy(), "found"
    landmarks["reference_distal"], sources["reference_distal"] = centreline[k_dist].copy(), "found"
    category = cad_rads(ds, left_main)
    vessel_ds = float(np.clip(100.0 * (1.0 - ratio[valid].min()), 0.0, 100.0)) if valid.any() else ds
    vessel_ds = max(vessel_ds, ds)

    # --- 5. calcium
    arcs, calcium_area, calcium_points = _calcium(samples, radii, contour_radii, calcium_threshold, phi, ring_hu,
                                                  blood)
    in_lesion = inside
    max_arc = float(arcs[in_lesion].max()) if in_lesion.any() else 0.0
    calcified_length = float((arcs[in_lesion] > 0).sum() * STEP_MM)
    calcium_volume = float(calcium_area[in_lesion].sum() * STEP_MM)
    found_by = (f"{calcium_threshold:.0f} HU (given)" if "calcium_threshold_hu" in opts else
                f"{calcium_threshold:.0f} HU (brighter than any contrast blood: the blood level {blood0:.0f} HU + "
                f"max({CALCIUM_MARGIN_HU:g} HU, {CALCIUM_NOISE_SDS:g} × the noise SD {noise_sd:.0f} HU))")
    calcium_rule = (f"calcium found above {found_by} within {CALCIUM_BAND_MM:g} mm outside the lumen boundary, its "
                    "extent where the CT stays above half-way between the wall and the calcium's peak (the "
                    f"partial-volume edge); arc in degrees about the lumen centre on {RAYS} rays; length = calcified "
                    f"sections × {STEP_MM:g} mm and volume = calcified section areas × {STEP_MM:g} mm, over the lesion")

    # --- 6. segment, 7. C-arm
    segment = scct_segment(inputs.vessel, s_mld, float(s[-1]))
    near = np.abs(s - s_mld) <= DIRECTION_HALF_MM
    chunk = centreline[near] if near.sum() >= 3 else centreline
    direction = np.linalg.svd(chunk - chunk.mean(axis=0), full_matrices=False)[2][0]
    direction = direction if direction @ (chunk[-1] - chunk[0]) >= 0 else -direction
    views = carm.foreshortening_free(direction)

    # --- results
    sections_out = [{
        "position_mm": _r(s[k], 1), "area_mm2": _r(area[k]), "diameter_min_mm": _r(diam_min[k]),
        "diameter_max_mm": _r(diam_max[k]), "diameter_mean_mm": _r(diameter[k]),
        "reference_diameter_mm": _r(reference[k]), "stenosis_percent": _r(100.0 * (1.0 - ratio[k]), 1),
        "calcium_arc_deg": _r(arcs[k], 0), "measured": bool(valid[k])} for k in range(count)]
    lesion = {
        "start_mm": _r(start_mm, 1), "end_mm": _r(end_mm, 1), "length_mm": _r(end_mm - start_mm, 1),
        "mld_mm": 0.0 if occluded else _r(mld), "mla_mm2": 0.0 if occluded else _r(mla),
        "position_mm": _r(s_mld, 1), "diameter_min_at_mld_mm": _r(diam_min[k_mld]),
        "reference_diameter_at_mld_mm": _r(ref_mld),
        "reference_proximal_diameter_mm": _r(ref_prox), "reference_distal_diameter_mm": _r(ref_dist),
        "reference_proximal_area_mm2": _r(math.pi * ref_prox**2 / 4.0),
        "reference_distal_area_mm2": _r(math.pi * ref_dist**2 / 4.0),
        "diameter_stenosis_percent": _r(ds, 1), "area_stenosis_percent": _r(as_, 1), "cad_rads": category,
        "occluded": bool(occluded), "length_rule": length_rule,
        "diameter_rule": "mean diameter = the equal-area diameter 2√(A/π) of the blur-corrected lumen section",
        "reference_rule": reference_rule,
    }
    results = {
        "protocol": "pci",
        "phase": inputs.phase_label,
        "vessel": inputs.vessel,
        "segment": {k: segment[k] for k in ("name", "number", "rule", "position_fraction")},
        "lesion": lesion,
        "cad_rads": {"category": cad_rads(vessel_ds, left_main), "lesion_category": category,
                     "max_diameter_stenosis_percent": _r(vessel_ds, 1),
                     "rule": "CAD-RADS 2.0 (Cury 2022) stenosis category of the maximal % diameter stenosis: 0 "
                             "(0 %), 1 (1–24 %), 2 (25–49 %), 3 (50–69 %), 4A (70–99 %), 5 (100 %); 4B for the "
                             "left main ≥ 50 % here, three-vessel ≥ 70 % needs all vessels; plaque burden (P) and "
                             "modifiers are not graded"},
        "calcium": {"threshold_hu": _r(calcium_threshold, 0), "rule": calcium_rule, "max_arc_deg": _r(max_arc, 0),
                    "length_mm": _r(calcified_length, 1), "volume_mm3": _r(calcium_volume, 1)},
        "projections": {"recommended": views["recommended"], "s_curve": views["s_curve"], "rule": views["rule"],
                        "lesion_direction": [_r(c, 4) for c in direction],
                        "direction_rule": f"principal axis of the centreline over the MLD ± {DIRECTION_HALF_MM:g} mm",
                        "convention": carm.CONVENTION},
        "lumen_model": {"psf_sigma_mm": _r(sigma, 3), "blood_hu": _r(float(np.median(blood)), 0),
                        "noise_sd_hu": _r(noise_sd, 1), "contour_threshold_hu": _r(threshold0, 0),
                        "rule": "radial profiles fitted with a blurred lumen in a ring (module docstring, 2)"},
        "centerline": {"length_mm": _r(s[-1], 1), "step_mm": STEP_MM, "recentred_shift_mm": _r(
            float(np.median(_distance_to(curve, centreline))), 2)},
        "sections": sections_out,
        "landmarks": {name: [_r(v, 2) for v in point] for name, point in landmarks.items()},
        "edited": sorted(n for n, src in sources.items() if src == "given"),
    }

    lesion_curve = centreline[(s >= start_mm) & (s <= end_mm)]
    if len(lesion_curve) < 2:
        lesion_curve = np.stack([_at(s, centreline, start_mm), _at(s, centreline, end_mm)])
    curves = {"centerline": centreline, "lesion": lesion_curve}
    images = [
        _section_image(volume, "mld", f"MLD {mld:.2f} mm, MLA {mla:.2f} mm² at {s_mld:.1f} mm ({ds:.0f} % diameter "
                       "stenosis)", centreline[k_mld], tangents[k_mld], us[k_mld], vs[k_mld], contour_radii[k_mld],
                       phi, r_max, reference[k_mld], calcium_points.get(k_mld)),
        _section_image(volume, "reference_proximal", f"Proximal reference at {s[k_prox]:.1f} mm: {diameter[k_prox]:.2f}"
                       f" mm, {area[k_prox]:.2f} mm²", centreline[k_prox], tangents[k_prox], us[k_prox], vs[k_prox],
                       contour_radii[k_prox], phi, r_max, None, calcium_points.get(k_prox)),
        _section_image(volume, "reference_distal", f"Distal reference at {s[k_dist]:.1f} mm: {diameter[k_dist]:.2f} mm,"
                       f" {area[k_dist]:.2f} mm²", centreline[k_dist], tangents[k_dist], us[k_dist], vs[k_dist],
                       contour_radii[k_dist], phi, r_max, None, calcium_points.get(k_dist)),
    ]
    segment_label = f"{segment['name']} ({segment['number']})" if segment["number"] else "unknown"
    rec = views["recommended"]
    table = [
        ("Vessel", inputs.vessel or "", ""), ("SCCT segment", segment_label, ""),
        ("Lesion start", lesion["start_mm"], "mm"), ("Lesion end", lesion["end_mm"], "mm"),
        ("Lesion length", lesion["length_mm"], "mm"), ("Minimal lumen diameter", lesion["mld_mm"], "mm"),
        ("Minimal lumen area", lesion["mla_mm2"], "mm²"), ("MLD position", lesion["position_mm"], "mm"),
        ("Proximal reference diameter", lesion["reference_proximal_diameter_mm"], "mm"),
        ("Distal reference diameter", lesion["reference_distal_diameter_mm"], "mm"),
        ("Proximal reference area", lesion["reference_proximal_area_mm2"], "mm²"),
        ("Distal reference area", lesion["reference_distal_area_mm2"], "mm²"),
        ("Diameter stenosis", lesion["diameter_stenosis_percent"], "%"),
        ("Area stenosis", lesion["area_stenosis_percent"], "%"), ("CAD-RADS", category, ""),
        ("Calcium arc (max)", results["calcium"]["max_arc_deg"], "°"),
        ("Calcified length", results["calcium"]["length_mm"], "mm"),
        ("Calcium volume", results["calcium"]["volume_mm3"], "mm³"),
        ("Foreshortening-free view", rec["label"], ""),
    ]
    notes.append(f"lesion length rule: {length_rule}")
    notes.append("reference: " + reference_rule)
    notes.append(f"lumen sizes corrected for the scanner blur (PSF σ {sigma:.2f} mm, "
                 + ("given" if opts.get("psf_sigma_mm") is not None else "fitted on this scan") + "; see lumen_model)")
    if segment["number"] is None:
        notes.append(segment["rule"].split(";")[0])
    if left_main and ds >= 50:
        notes.append("left main stenosis ≥ 50 %: CAD-RADS 4B")
    return PlanResult("pci", results, landmarks, sources, curves, images, table, notes)


# ------------------------------------------------------------------------------------------ helpers


def blood_radius_guess(volume: Volume, points: np.ndarray, tangents: np.ndarray, threshold: float) -> float:
    """Median equal-area radius of the threshold lumen over the curve (sets the profile length)."""
    phi = np.linspace(0.0, 2.0 * math.pi, 36, endpoint=False)
    found = []
    for p, t in zip(points[::4], tangents[::4]):
        u, v = plane_basis(t)
        directions = np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v
        radii = ray_radii(volume, p, directions, threshold, 10.0, gap_mm=0.5)
        if np.isfinite(radii).sum() >= 27:
            found.append(float(np.sqrt(np.nanmean(radii**2))))
    return float(np.median(found)) if found else 1.5


def _noise_sd(volume: Volume, centres: np.ndarray) -> float:
    """Noise SD: the robust spread of differences between voxels (not interpolated) that should hold the same
    blood, over √2: the voxels at lumen centres 2 mm apart, and the two voxels 2 voxels either side of each
    centre along each grid axis. Pairs off the blood level (a narrowing, calcium: more than 4 SD) are left out."""
    ijk = np.rint(volume.kji(centres)).astype(int).T  # (N, 3) as k, j, i
    shape = np.array(volume.image.shape)

    def value(index: np.ndarray) -> np.ndarray:
        inside = np.all((index >= 0) & (index < shape), axis=1)
        out = np.full(len(index), np.nan)
        out[inside] = volume.image[tuple(index[inside].T)]
        return out

    centre = value(ijk)
    gap = int(round(2.0 / STEP_MM))
    pairs = [np.column_stack([centre[gap:], centre[:-gap]])]
    for axis in range(3):
        step = np.zeros(3, int)
        step[axis] = 2
        pairs.append(np.column_stack([value(ijk - step), value(ijk + step)]))
    pairs = np.vstack(pairs)
    pairs = pairs[np.all(np.isfinite(pairs), axis=1)]
    if len(pairs) < 8:
        return 20.0
    level = float(np.median(pairs))
    sd = None
    for _ in range(3):
        keep = np.ones(len(pairs), bool) if sd is None else np.all(np.abs(pairs - level) <= 4.0 * sd, axis=1)
        if keep.sum() < 8:
            break
        diff = pairs[keep, 0] - pairs[keep, 1]
        sd = max(5.0, 1.4826 * float(np.median(np.abs(diff - np.median(diff)))) / math.sqrt(2.0))
    return 20.0 if sd is None else sd


def _scan_blur(radii, profiles, weights, valid, s, start_of, blood0, ring_max, notes, opts):
    """The scan's PSF σ, the blood level along the vessel (a straight line) and the typical wall level (HU, SD),
    from free fits of the mean profiles of blocks of ``BLOCK_SECTIONS`` neighbouring sections of even size (a
    block's threshold radii within 0.2 mm) with a large lumen (R ≥ 2.5σ): the median σ, a line through the
    blood levels, the median ring level. The PSF σ is the scan's blur as these samples see it (trilinear
    interpolation adds about a sixth of a voxel² to σ²)."""
    given_sigma = opts.get("psf_sigma_mm")
    index = np.nonzero(valid)[0]
    rows = []
    for first in range(0, len(index) - BLOCK_SECTIONS + 1, BLOCK_SECTIONS):
        ks = index[first: first + BLOCK_SECTIONS]
        if ks[-1] - ks[0] != BLOCK_SECTIONS - 1:
            continue
        sizes = [start_of(profiles[k])["radius"] for k in ks]
        if max(sizes) - min(sizes) > 0.2:
            continue
        mean = profiles[ks].mean(axis=0)
        fit = fit_profile(radii, mean, weights, start_of(mean), given_sigma, None, ring_max)
        if fit is not None and fit["ok"] and fit["radius"] >= 2.5 * fit["sigma"]:
            rows.append((float(s[ks].mean()), fit["sigma"], fit["blood_hu"], fit["ring_hu"], mean, fit))
    if len(rows) >= 3:
        # blocks whose own blur agrees (within 3 MAD of the median) share σ and the wall in one joint fit
        sig = np.array([r[1] for r in rows])
        agree = np.abs(sig - np.median(sig)) <= 3.0 * 1.4826 * np.median(np.abs(sig - np.median(sig))) + 0.02
        joint = _joint_fit(radii, [r for r, a in zip(rows, agree) if a], weights, given_sigma, ring_max)
        if joint is not None:
            rows = [(r[0], joint["sigma"], b, joint["ring_hu"]) for r, b in zip([r for r, a in zip(rows, agree) if a],
                                                                               joint["blood_hu"])]
    if given_sigma is not None:
        sigma = float(given_sigma)
    elif len(rows) >= 3:
        sigma = float(np.median([r[1] for r in rows]))
    else:
        sigma = DEFAULT_PSF_SIGMA_MM
        notes.append(f"too few large-lumen sections to fit the scanner blur: PSF σ {sigma:g} mm assumed")
    if len(rows) >= 3:
        pos, level = np.array([r[0] for r in rows]), np.array([r[2] for r in rows])
        spread = 1.4826 * float(np.median(np.abs(level - np.median(level))))
        keep = np.abs(level - np.median(level)) <= 3.0 * spread + 1.0
        line = np.polyfit(pos[keep], level[keep], 1) if np.ptp(pos[keep]) > 10.0 else np.array([0.0, np.median(level)])
        rings = np.array([r[3] for r in rows])
        ring = (float(np.median(rings)), max(RING_PRIOR_SD_HU, 1.4826 * float(np.median(np.abs(rings - np.median(rings))))))
    else:
        line = np.array([0.0, blood0])
        ring = (float(np.median([start_of(profiles[k])["ring_hu"] for k in index])) if len(index) else 40.0,
                2 * RING_PRIOR_SD_HU)
    return sigma, line, ring


def _joint_fit(radii, rows, weights, given_sigma, ring_max) -> dict | None:
    """One fit of several blocks' mean profiles sharing the PSF σ and the wall (ring level and thickness), each
    with its own lumen radius, blood and outside level: a thin wall's level and the lumen radius trade off in
    one profile, much less across many."""
    n = len(rows)
    fits = [r[5] for r in rows]
    shared = ["sigma", "ring_hu", "ring_mm"] if given_sigma is None else ["ring_hu", "ring_mm"]
    own = ["radius", "blood_hu", "outside_hu"]
    x0 = [float(np.median([f[k] for f in fits])) for k in shared] + [f[k] for f in fits for k in own]
    low = [_LOW[k] for k in shared] + [_LOW[k] for _ in fits for k in own]
    r_max = float(radii[-1])
    high_of = {"sigma": 1.5, "ring_hu": ring_max, "ring_mm": r_max, "radius": r_max - 0.3, "blood_hu": 3000.0,
               "outside_hu": 1500.0}
    high = [high_of[k] for k in shared] + [high_of[k] for _ in fits for k in own]
    x0 = np.clip(x0, np.array(low) + 1e-3, np.array(high) - 1e-3)
    profiles = np.array([r[4] for r in rows])
    m = len(shared)

    def residual(x):
        values = dict(zip(shared, x[:m]))
        sigma = values.get("sigma", given_sigma)
        own_x = x[m:].reshape(n, len(own))
        out = [weights * (profile_model(radii, own_x[i, 0], values["ring_mm"], values["ring_hu"], own_x[i, 2], sigma,
                                        own_x[i, 1]) - profiles[i]) for i in range(n)]
        return np.concatenate(out)

    sparsity = np.zeros((n * len(radii), len(x0)), int)
    sparsity[:, :m] = 1
    for i in range(n):
        sparsity[i * len(radii):(i + 1) * len(radii), m + i * len(own): m + (i + 1) * len(own)] = 1
    try:
        fit = optimize.least_squares(residual, x0, bounds=(low, high), jac_sparsity=sparsity, max_nfev=60,
                                     x_scale=[_SCALE[k] for k in shared] + [_SCALE[k] for _ in fits for k in own])
    except ValueError:
        return None
    if fit.status <= 0:
        return None
    values = dict(zip(shared, fit.x[:m]))
    own_x = fit.x[m:].reshape(n, len(own))
    return {"sigma": float(values.get("sigma", given_sigma)), "ring_hu": float(values["ring_hu"]),
            "ring_mm": float(values["ring_mm"]), "blood_hu": own_x[:, 1].tolist(), "radius": own_x[:, 0].tolist()}


def _shape(volume, centre, u, v, phi, radius, threshold, r_max, calcified):
    """Contour radii per azimuth (the threshold contour rescaled to the model's area; rays through calcium
    bridged) and min/max diameters."""
    if not np.isfinite(radius):
        return np.full(len(phi), np.nan), np.nan, np.nan
    directions = np.cos(phi)[:, None] * u + np.sin(phi)[:, None] * v
    raw = ray_radii(volume, centre, directions, threshold, r_max, gap_mm=0.5)
    raw[calcified] = np.nan
    circle = np.full(len(phi), radius)
    if np.isfinite(raw).sum() < 0.5 * len(phi) or np.isfinite(raw).sum() < 0.75 * (~calcified).sum():
        return circle, 2.0 * radius, 2.0 * radius
    smooth = smooth_periodic(raw, 6)
    xy = np.column_stack([smooth * np.cos(phi), smooth * np.sin(phi)])
    try:
        m = polygon_measures(xy)
    except ValueError:
        return circle, 2.0 * radius, 2.0 * radius
    scale = radius / math.sqrt(m["area_mm2"] / math.pi)
    if not 0.6 <= scale <= 1.6:
        return circle, 2.0 * radius, 2.0 * radius
    return smooth * scale, m["diameter_min_mm"] * scale, m["diameter_max_mm"] * scale


def _longest_run(mask: np.ndarray) -> int:
    runs = _runs(mask)
    return max((b - a + 1 for a, b in runs), default=0)


def _crossing(s: np.ndarray, ratio: np.ndarray, outside: int, inside: int, level: float) -> float:
    if outside < 0 or outside >= len(s):
        return float(s[inside])
    a, b = ratio[outside] - level, ratio[inside] - level
    t = a / (a - b) if a != b else 0.5
    return float(s[outside] + np.clip(t, 0.0, 1.0) * (s[inside] - s[outside]))


def _lesion_extent(s, ratio, valid, lesion_point, centreline, notes) -> tuple[float, float]:
    """The lesion's extent (module docstring, 4): the run below the 20 % line nearest the landmark or the most
    severe; with none, the narrowest section alone."""
    level = 1.0 - LESION_FRACTION
    below = valid & (ratio < level)
    gap = int(round(MERGE_MM / STEP_MM))
    if below.any():
        below = ndimage.binary_closing(np.pad(below, gap), iterations=gap)[gap:-gap] & valid | below
    runs = _runs(below)
    target = None if lesion_point is None else _project(centreline, s, lesion_point)
    if not runs:
        pool = np.nonzero(valid)[0]
        if target is not None:
            pool = pool[np.abs(s[pool] - target) <= 5.0] if (np.abs(s[pool] - target) <= 5.0).any() else pool
        k = int(pool[np.argmin(ratio[pool])])
        notes.append(f"no section narrower than {100 * LESION_FRACTION:g} % below the reference: the lesion is the "
                     "narrowest section alone (give lesion_start and lesion_end for an extent)")
        return float(s[k]), float(s[k])
    if target is not None:
        def distance(run):
            return 0.0 if s[run[0]] <= target <= s[run[1]] else min(abs(s[run[0]] - target), abs(s[run[1]] - target))
        run = min(runs, key=distance)
        if distance(run) > 10.0:
            notes.append("no lesion within 10 mm of the lesion landmark: the nearest narrowing is measured")
    else:
        run = min(runs, key=lambda r: float(ratio[r[0]: r[1] + 1].min()))
    if len(runs) > 1:
        notes.append(f"{len(runs)} narrowings more than {100 * LESION_FRACTION:g} % below the reference along the "
                     "vessel; " + ("the one at the lesion landmark" if target is not None else "the most severe")
                     + " is measured")
    a, b = run
    return _crossing(s, ratio, a - 1, a, level), _crossing(s, ratio, b + 1, b, level)


def _reference_site(s, ratio, valid, from_mm, step) -> int:
    """The first healthy section (within 10 % of the reference) beyond ``from_mm`` in the direction ``step``."""
    order = np.nonzero(s < from_mm)[0][::-1] if step < 0 else np.nonzero(s > from_mm)[0]
    for k in order:
        if valid[k] and ratio[k] >= 1.0 - HEALTHY_FRACTION:
            return int(k)
    pool = np.nonzero(valid)[0]
    return int(pool[0] if step < 0 else pool[-1]) if len(pool) else 0


def _calcium(samples, radii, contour_radii, threshold, phi, ring_hu, blood):
    """Per section: calcified arc (degrees), calcified area (mm²) in the wall band, calcium points (u, v) mm.

    Calcium is found where the CT exceeds ``threshold`` in the wall band; its extent is where the CT stays above
    the half-way level between the wall and the calcium's peak (hysteresis: the partial-volume edge, as for the
    lumen), so the blur neither shortens nor narrows it. Along the vessel the same: sections next to calcified
    ones count while their band reaches the half level of the neighbouring peak."""
    count = len(samples)
    arcs, areas = np.zeros(count), np.zeros(count)
    points: dict[int, np.ndarray] = {}
    dphi = 2.0 * math.pi / RAYS
    bands = np.zeros((count,) + samples.shape[1:], bool)
    for k in range(count):
        edge = contour_radii[k]
        if np.all(np.isfinite(edge)):
            bands[k] = (radii[None, :] >= edge[:, None]) & (radii[None, :] <= edge[:, None] + CALCIUM_BAND_MM)
    band_max = np.where(bands, samples, -np.inf).max(axis=2)  # [section, ray]
    core = band_max >= threshold
    peaks = np.where(core, band_max, -np.inf).max(axis=1)
    has_core = core.any(axis=1)
    if not has_core.any():
        return arcs, areas, points
    wall = np.where(np.isfinite(ring_hu), ring_hu, np.nanmedian(ring_hu))
    floor = 0.5 * (blood + wall)  # never below the lumen's own edge level
    # the peak a section's extent is measured against: its own, or the nearest calcified section's along the run
    index = np.arange(count)
    cores = index[has_core]
    nearest = cores[np.abs(index[:, None] - cores[None, :]).argmin(axis=1)]
    peak = np.where(has_core, peaks, peaks[nearest])
    level = np.maximum(0.5 * (peak + wall), floor)
    reaching = (band_max >= level[:, None]).any(axis=1)
    calcified = np.zeros(count, bool)
    for a, b in _runs(reaching):
        if has_core[a: b + 1].any():
            calcified[a: b + 1] = True
    for k in np.nonzero(calcified)[0]:
        ray_hot = band_max[k] >= level[k]
        tiled = np.concatenate([ray_hot, ray_hot, ray_hot])
        labels, n = ndimage.label(tiled)
        middle = labels[RAYS: 2 * RAYS]
        seeds = core[k] if has_core[k] else ray_hot
        keep = np.isin(middle, np.unique(middle[seeds & (middle > 0)]))
        keep &= ray_hot
        keep = ndimage.binary_opening(np.concatenate([keep[-2:], keep, keep[:2]]), np.ones(3))[2:-2]
        if not keep.any():
            continue
        arcs[k] = keep.sum() * 360.0 / RAYS
        hot = bands[k] & (samples[k] >= level[k]) & keep[:, None]
        areas[k] = float((hot * radii[None, :]).sum() * RADIAL_STEP_MM * dphi)
        rr, aa = np.nonzero(hot)
        if len(rr):
            points[k] = np.column_stack([radii[aa] * np.cos(phi[rr]), radii[aa] * np.sin(phi[rr])])
    return arcs, areas, points


def _distance_to(points: np.ndarray, curve: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    return cKDTree(curve).query(points)[0]


def _section_image(volume, name, title, centre, normal, u, v, contour_radii, phi, r_max, reference_diameter,
                   calcium_2d) -> SectionImage:
    pixel = 0.1
    half = max(4.0, r_max)
    pixels, plane_u, plane_v = sample_plane(volume, centre, normal, half, pixel, u)
    contour = None
    if np.all(np.isfinite(contour_radii)):
        contour = np.column_stack([contour_radii * np.cos(phi), contour_radii * np.sin(phi)])
    extra = {}
    if reference_diameter is not None and np.isfinite(reference_diameter):
        t = np.linspace(0.0, 2.0 * math.pi, 73)
        extra["reference"] = 0.5 * reference_diameter * np.column_stack([np.cos(t), np.sin(t)])
    if calcium_2d is not None and len(calcium_2d):
        extra["calcium"] = calcium_2d[:: max(1, len(calcium_2d) // 400)]
    return SectionImage(name, title, pixels, pixel, contour, extra, centre=np.asarray(centre, float), u=plane_u,
                        v=plane_v)
