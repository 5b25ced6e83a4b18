"""The aortic root unrolled: the lumen wall's distance from the root axis at every height and azimuth, and the
landmarks read from it.

Heights z are along the axis (the annulus normal once found), azimuths φ turn from ``u`` towards
``v = n × u`` (counter-clockwise seen from the aorta). On that map:

* the **sinuses** are the three lobes of the wall: the height where the three-fold harmonic of R(φ) peaks is
  the sinus level, and the lobes' azimuths are the sinus centres;
* a sinus starts bulging at its **hinge line** (where the cusp is attached): at each height the section's base
  shape is an ellipse fitted to the wall with the lobes left out (points more than 0.4 mm outside it are
  dropped and the fit repeated), and a sinus's bulge b(z) is its largest excess over that ellipse. Below the
  hinge b ≈ 0, above it b grows, so b(z) = c + s·max(0, z − z₀) fitted over a window gives the hinge height z₀;
  the lowest point of each sinus's hinge line is its **nadir** (the hinge point of SCCT 2019). The annular plane
  through the three nadirs becomes the new axis and the map is remade until the plane settles;
* the **coronary ostia** are where rays run on past the sinus wall (more than ``OSTIUM_ESCAPE_MM`` beyond the
  wall round them): the lowest such height in a sinus is the ostium's lower edge;
* the **commissures** are the tops of the hinge lines between sinuses: each sinus's hinge line is measured in
  bands of azimuth and fitted by the crown curve z₀ + c·(1 − cos 1.5ψ) (ψ from the nadir), whose value at
  ψ = ±60° is the commissure height (an extrapolation: the hinge fades out towards the commissure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, optimize

from .sections import Volume, plane_basis, ray_radii

AZIMUTH_STEP_DEG = 2.0
HEIGHT_STEP_MM = 0.5
#: A ray that runs this far past the wall round it has entered a branch (a coronary ostium).
OSTIUM_ESCAPE_MM = 2.5
#: Hinge fit window below and above the hinge, mm.
HINGE_WINDOW_MM = (5.0, 4.0)


@dataclass
class RootMap:
    centre: np.ndarray  # axis point at z = 0
    normal: np.ndarray
    u: np.ndarray
    v: np.ndarray
    heights: np.ndarray  # (Z,)
    azimuths: np.ndarray  # (Φ,) radians
    raw: np.ndarray  # (Z, Φ) wall distance, NaN where none
    wall: np.ndarray  # (Z, Φ) with branch escapes removed and filled
    threshold_hu: float

    def direction(self, phi) -> np.ndarray:
        phi = np.asarray(phi, float)
        return np.cos(phi)[..., None] * self.u + np.sin(phi)[..., None] * self.v

    def point(self, z: float, phi: float, radius: float | None = None) -> np.ndarray:
        r = self.radius(z, phi) if radius is None else radius
        return self.centre + z * self.normal + r * self.direction(phi)

    def radius(self, z: float, phi: float) -> float:
        """Wall distance at one height and azimuth (see ``radii``)."""
        return float(self.radii(np.array([z], float), np.array([phi], float))[0])

    def radii(self, z: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """Wall distances by bilinear interpolation of the cleaned map, azimuth wrapping round."""
        zi = (np.asarray(z, float) - self.heights[0]) / HEIGHT_STEP_MM
        pi = np.mod(np.asarray(phi, float), 2 * math.pi) / math.radians(AZIMUTH_STEP_DEG)
        extended = np.concatenate([self.wall, self.wall[:, :1]], axis=1)
        return ndimage.map_coordinates(extended, [zi, pi], order=1, mode="nearest")

    def area(self) -> np.ndarray:
        """Polar section area about the axis at each height (mm²)."""
        return 0.5 * np.sum(self.wall**2, axis=1) * math.radians(AZIMUTH_STEP_DEG)


def build(volume: Volume, centre: np.ndarray, normal: np.ndarray, threshold_hu: float, heights: np.ndarray,
          max_mm: float = 40.0, gap_mm: float = 3.0, reference: np.ndarray | None = None) -> RootMap:
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    u, v = plane_basis(n, reference)
    azimuths = np.radians(np.arange(0.0, 360.0, AZIMUTH_STEP_DEG))
    directions = np.cos(azimuths)[:, None] * u + np.sin(azimuths)[:, None] * v
    raw = np.full((len(heights), len(azimuths)), np.nan)
    for row, z in enumerate(heights):
        raw[row] = ray_radii(volume, np.asarray(centre, float) + z * n, directions, threshold_hu, max_mm, gap_mm)
    return RootMap(np.asarray(centre, float), n, u, v, np.asarray(heights, float), azimuths, raw,
                   _clean(raw), float(threshold_hu))


def _clean(raw: np.ndarray) -> np.ndarray:
    """Branch escapes (jumps above the wall round them) and misses replaced by the wall round them."""
    out = raw.copy()
    for row in range(len(out)):
        values = out[row]
        good = np.isfinite(values)
        if good.sum() < 16:
            continue
        x = np.arange(len(values))
        filled = np.interp(x, x[good], values[good], period=len(values))
        base = ndimage.median_filter(filled, size=25, mode="wrap")
        bad = ~good | (filled - base > OSTIUM_ESCAPE_MM) | (filled - base < -4.0)
        filled[bad] = np.nan
        ok = np.isfinite(filled)
        out[row] = np.interp(x, x[ok], filled[ok], period=len(values)) if ok.sum() >= 16 else base
    return out


# ------------------------------------------------------------------------------------------ base ellipse


def _ellipse_radius(coef: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Distance from the origin along unit 2D directions to the conic A x² + B xy + C y² + D x + E y = 1."""
    a, b, c, d, e = coef
    dx, dy = directions[:, 0], directions[:, 1]
    qa = a * dx**2 + b * dx * dy + c * dy**2
    qb = d * dx + e * dy
    disc = np.maximum(qb**2 + 4.0 * qa, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(qa > 1e-12, (-qb + np.sqrt(disc)) / (2.0 * qa), np.nan)


def base_excess(radii: np.ndarray, azimuths: np.ndarray, iterations: int = 5) -> np.ndarray:
    """Wall radius minus the base ellipse of the section (lobes left out of the fit)."""
    directions = np.column_stack([np.cos(azimuths), np.sin(azimuths)])
    x, y = radii * directions[:, 0], radii * directions[:, 1]
    design = np.column_stack([x**2, x * y, y**2, x, y])
    use = np.isfinite(radii)
    excess = np.zeros_like(radii)
    for _ in range(iterations):
        if use.sum() < 12:
            break
        coef = np.linalg.lstsq(design[use], np.ones(use.sum()), rcond=None)[0]
        excess = radii - _ellipse_radius(coef, directions)
        keep = np.isfinite(excess) & (excess < 0.4) & (excess > -1.5)
        if np.array_equal(keep, use):
            break
        use = keep
    return excess


def excess_map(rootmap: RootMap) -> np.ndarray:
    return np.array([base_excess(row, rootmap.azimuths) for row in rootmap.wall])


# ------------------------------------------------------------------------------------------ sinuses


def sinus_level_and_azimuths(rootmap: RootMap, z_min: float, z_max: float) -> tuple[float, np.ndarray]:
    """Height of the strongest three-lobed section and its three lobe azimuths (radians, increasing)."""
    rows = (rootmap.heights >= z_min) & (rootmap.heights <= z_max)
    spectrum = np.fft.rfft(rootmap.wall[rows], axis=1)
    strength = ndimage.gaussian_filter1d(np.abs(spectrum[:, 3]), 2.0)
    best = int(np.argmax(strength))
    z = float(rootmap.heights[rows][best])
    phase = float(np.angle(spectrum[best, 3]))
    # R(φ) ≈ c + a cos(3φ + phase) is largest at φ = −phase/3 + k·120°
    centres = np.mod(-phase / 3.0 + np.arange(3) * 2.0 * math.pi / 3.0, 2.0 * math.pi)
    row = rootmap.wall[rows][best]
    refined = []
    for c in centres:
        offsets = np.radians(np.arange(-30.0, 30.0 + 1e-9, AZIMUTH_STEP_DEG))
        values = [_periodic_interp(row, rootmap.azimuths, c + o) for o in offsets]
        values = ndimage.gaussian_filter1d(np.asarray(values), 2.0)
        refined.append(np.mod(c + offsets[int(np.argmax(values))], 2.0 * math.pi))
    return z, np.sort(np.asarray(refined))


def _column_mean(values: np.ndarray) -> np.ndarray:
    """Mean of each column over its finite entries, NaN where a column has none."""
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _periodic_interp(values: np.ndarray, azimuths: np.ndarray, phi: float) -> float:
    return float(np.interp(np.mod(phi, 2 * math.pi), azimuths, values, period=2 * math.pi))


def _sector(azimuths: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    delta = np.angle(np.exp(1j * (azimuths - centre)))
    return np.abs(delta) <= half_width


def _sector_max(excess: np.ndarray, inside: np.ndarray) -> np.ndarray:
    values = np.where(inside, excess, -np.inf)
    best = values.max(axis=1)
    return np.where(np.isfinite(best), best, np.nan)


#: A lobe is where a sinus bulges more than this over the base ellipse.
LOBE_MM = 0.5


def lobe_start(heights: np.ndarray, bulge: np.ndarray, level: float) -> float:
    """Lowest height of the run of ``bulge`` > LOBE_MM that holds the sinus level (the lobe, not a bump of the
    LV cavity further down)."""
    k = int(np.argmin(np.abs(heights - level)))
    filled = np.nan_to_num(bulge, nan=0.0)
    if filled[k] <= LOBE_MM:
        above = np.nonzero(filled[k:] > LOBE_MM)[0]
        k = k + int(above[0]) if len(above) else k
    while k > 0 and filled[k - 1] > LOBE_MM:
        k -= 1
    return float(heights[k])


def lobe_end(rootmap: RootMap, excess: np.ndarray, hinges: Hinges) -> float:
    """Height where the sinuses end (the sinotubular junction): the top of the lobes' run above the sinus level,
    fitted like a hinge with height reversed (the lobes fade out into the tubular aorta there). The bulge is the
    median of the three sinuses', so a coronary ostium near the junction does not lift it."""
    heights = rootmap.heights
    bulge = np.nanmedian(np.stack([_sector_max(excess, _sector(rootmap.azimuths, c, math.radians(45.0)))
                                for c in hinges.sinus_azimuths]), axis=0)
    k = int(np.argmin(np.abs(heights - hinges.sinus_level)))
    filled = np.nan_to_num(bulge, nan=0.0)
    while k < len(heights) - 1 and filled[k + 1] > LOBE_MM:
        k += 1
    top = float(heights[k])
    z, _ = hinge_height(-heights[::-1], bulge[::-1], -top - 2.0, -top + 3.0)
    return -z if np.isfinite(z) else top


def hinge_height(heights: np.ndarray, bulge: np.ndarray, z_low: float, z_high: float) -> tuple[float, float]:
    """Height z₀ where ``bulge`` starts growing (the hinge) and the slope above it: least squares of
    c + s·max(0, z − z₀) over a window round each candidate z₀ in [z_low, z_high], 0.1 mm steps."""
    below, above = HINGE_WINDOW_MM
    best = (float("nan"), 0.0, float("inf"))
    for z0 in np.arange(z_low, z_high + 1e-9, 0.1):
        window = (heights >= z0 - below) & (heights <= z0 + above) & np.isfinite(bulge)
        if window.sum() < 6:
            continue
        ramp = np.maximum(0.0, heights[window] - z0)
        design = np.column_stack([np.ones(window.sum()), ramp])
        coef, *_ = np.linalg.lstsq(design, bulge[window], rcond=None)
        if coef[1] <= 0.05:
            continue
        sse = float(np.sum((design @ coef - bulge[window]) ** 2)) / window.sum()
        if sse < best[2]:
            best = (float(z0), float(coef[1]), sse)
    return best[0], best[1]


@dataclass
class Hinges:
    nadir_heights: np.ndarray  # (3,) per sinus, in the order of ``azimuths``
    nadir_azimuths: np.ndarray  # (3,)
    sinus_azimuths: np.ndarray  # (3,) lobe centres at the sinus level
    sinus_level: float
    crowns: list = field(default_factory=list)  # per sinus (z0, c, phi0) of the crown fit, or None


def find_hinges(rootmap: RootMap, excess: np.ndarray, z_search: tuple[float, float]) -> Hinges:
    level, centres = sinus_level_and_azimuths(rootmap, *z_search)
    heights = rootmap.heights
    nadir_z, nadir_phi, crowns = [], [], []
    for c in centres:
        inside = _sector(rootmap.azimuths, c, math.radians(45.0))
        bulge = _sector_max(excess, inside)
        start = lobe_start(heights, bulge, level)
        z0, _ = hinge_height(heights, bulge, max(z_search[0], start - 3.0), start + 2.0)
        if not np.isfinite(z0):
            z0 = start  # no clean ramp (coarse voxels, a closed valve's leaflets): where the lobe starts
        # the nadir's azimuth: where that sinus bulges most just above its hinge
        rows = (heights >= z0 + 1.0) & (heights <= z0 + 3.0)
        profile = _column_mean(np.where(inside, excess, np.nan)[rows])
        profile = np.where(inside, ndimage.gaussian_filter1d(np.nan_to_num(profile, nan=-9.0), 1.5, mode="wrap"),
                           -np.inf)
        phi = float(rootmap.azimuths[int(np.argmax(profile))])
        nadir_z.append(z0)
        nadir_phi.append(phi)
        crowns.append(_crown(rootmap, excess, phi, z0, level))
    return Hinges(np.array(nadir_z), np.array(nadir_phi), centres, level, crowns)


def _crown(rootmap: RootMap, excess: np.ndarray, phi0: float, z0: float, level: float):
    """Hinge heights in bands of azimuth round a nadir, fitted by z0 + c·(1 − cos 1.5ψ)."""
    psis, zs = [0.0], [z0]
    for offset in (-35.0, -25.0, -15.0, 15.0, 25.0, 35.0):
        band = _sector(rootmap.azimuths, phi0 + math.radians(offset), math.radians(4.0))
        bulge = _column_mean(np.where(band, excess, np.nan).T)
        start = lobe_start(rootmap.heights, bulge, level)
        if start < z0 - 1.0:
            continue
        z, slope = hinge_height(rootmap.heights, bulge, start - 3.0, start + 2.0)
        if np.isfinite(z) and slope > 0.1:
            psis.append(math.radians(offset))
            zs.append(z)
    if len(psis) < 4:
        return None
    psis, zs = np.array(psis), np.array(zs)

    def residual(p):
        return p[0] + p[1] * (1.0 - np.cos(1.5 * psis)) - zs

    fit = optimize.least_squares(residual, [z0, 15.0], bounds=([z0 - 3.0, 0.0], [z0 + 3.0, 40.0]))
    return float(fit.x[0]), float(fit.x[1])


def ostia(rootmap: RootMap, hinges: Hinges, z_max: float) -> dict[int, dict]:
    """Coronary ostia per sinus index: lower edge height (mm above z = 0), azimuth, and the wall point."""
    found = {}
    escape = rootmap.raw - rootmap.wall
    escaped = np.where(np.isfinite(rootmap.raw), escape > OSTIUM_ESCAPE_MM, True)
    # a miss (no wall within reach) counts as an escape only between finite walls, inside the sinus heights
    rows = (rootmap.heights > np.min(hinges.nadir_heights)) & (rootmap.heights <= z_max)
    escaped &= rows[:, None]
    labelled, count = ndimage.label(escaped, structure=np.ones((3, 3)))
    # azimuth wraps round: join labels across the seam
    for left, right in zip(labelled[:, 0], labelled[:, -1]):
        if left and right and left != right:
            labelled[labelled == right] = left
    for label in np.unique(labelled[labelled > 0]):
        cells = np.argwhere(labelled == label)
        if len(cells) < 3:
            continue
        phi = float(np.angle(np.mean(np.exp(1j * rootmap.azimuths[cells[:, 1]]))))
        sinus = int(np.argmin(np.abs(np.angle(np.exp(1j * (hinges.sinus_azimuths - phi))))))
        lower = float(rootmap.heights[cells[:, 0].min()]) - 0.5 * HEIGHT_STEP_MM
        upper = float(rootmap.heights[cells[:, 0].max()]) + 0.5 * HEIGHT_STEP_MM
        size = len(cells)
        if sinus in found and found[sinus]["cells"] >= size:
            continue
        found[sinus] = {"azimuth": phi % (2 * math.pi), "lower": lower, "upper": upper, "cells": size}
    return found


def refine_lower_edge(volume: Volume, rootmap: RootMap, phi: float, lower: float, upper: float) -> float:
    """The lowest height (0.1 mm steps) where a ray at azimuth ``phi`` escapes past the wall into the ostium."""
    direction = rootmap.direction(phi)
    for z in np.arange(lower - 1.5, upper + 1e-9, 0.1):
        wall = rootmap.radius(z, phi)
        reach = ray_radii(volume, rootmap.centre + z * rootmap.normal, direction[None], rootmap.threshold_hu,
                          wall + 12.0, 3.0)[0]
        if not np.isfinite(reach) or reach - wall > OSTIUM_ESCAPE_MM:
            return float(z)
    return lower
