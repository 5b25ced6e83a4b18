"""Algorithm C: a smooth tube fitted to the metal, robust to blooming, noise and calcium.

Blooming spreads each strut symmetrically, so the HU-weighted centre of the bloomed metal voxels lies on the
strut centre; a tube fitted to those voxels by weighted least squares goes through the strut centres without
finding any strut. The tube's radius varies smoothly along the axis (taper) and around it up to the second
harmonic (mild ellipticity): r(s, θ) = r0(s) + a1(s) cos θ + b1(s) sin θ + a2(s) cos 2θ + b2(s) sin 2θ, each
coefficient a cubic B-spline in s. The first harmonic is the axis being off-centre, so it moves the axis and is
refitted; Huber weights and a 1.5 mm gate around the current tube keep calcium outside the device from
pulling it.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import BSpline

from CardiacSuiteLib.geometry import arc_length

from .. import sections, surfaces
from ..model import ENVELOPE_SECTORS, STATION_STEP_MM, CannotReconstruct, Reconstruction, Region
from . import common

HARMONICS = 2
GATE_MM = 1.5
HUBER_K = 1.345
OUTER_ITERATIONS = 3
IRLS_ITERATIONS = 6
#: Weight of the second-difference penalty on neighbouring spline coefficients (keeps sparse spans smooth).
SMOOTHNESS = 1e-3


def knot_spacing_mm(radius_mm: float) -> float:
    """B-spline knots about a diameter apart, 3-5 mm: a taper or a bend, not ring-to-ring scatter."""
    return float(np.clip(2.0 * radius_mm, 3.0, 5.0))


def _harmonics(angle: np.ndarray) -> np.ndarray:
    columns = [np.ones_like(angle)]
    for order in range(1, HARMONICS + 1):
        columns += [np.cos(order * angle), np.sin(order * angle)]
    return np.column_stack(columns)


class TubeModel:
    """Fourier-in-angle, B-spline-in-length radius of a tube about an axis."""

    def __init__(self, length_mm: float, knot_mm: float):
        spans = max(int(np.ceil(length_mm / knot_mm)), 1)
        inner = np.linspace(0.0, length_mm, spans + 1)
        self.knots = np.concatenate([[0.0] * 3, inner, [length_mm] * 3])
        self.length = length_mm
        self.basis_count = len(self.knots) - 4
        self.coefficients = np.zeros((self.basis_count, 2 * HARMONICS + 1))

    def design(self, s: np.ndarray, angle: np.ndarray) -> np.ndarray:
        b = BSpline.design_matrix(np.clip(s, 0.0, self.length), self.knots, 3).toarray()
        h = _harmonics(angle)
        return (b[:, :, None] * h[:, None, :]).reshape(len(s), -1)

    def radius(self, s: np.ndarray, angle: np.ndarray) -> np.ndarray:
        return self.design(s, angle) @ self.coefficients.ravel()

    def term(self, s: np.ndarray, index: int) -> np.ndarray:
        b = BSpline.design_matrix(np.clip(s, 0.0, self.length), self.knots, 3).toarray()
        return b @ self.coefficients[:, index]

    def fit(self, s: np.ndarray, angle: np.ndarray, r: np.ndarray, weights: np.ndarray,
            start_radius: float) -> np.ndarray:
        """Iteratively reweighted least squares (Huber), gated at GATE_MM; returns the final weights."""
        a = self.design(s, angle)
        columns = a.shape[1]
        difference = np.diff(np.eye(self.basis_count), 2, axis=0)
        penalty = np.kron(difference.T @ difference, np.eye(2 * HARMONICS + 1)) * SMOOTHNESS * weights.sum()
        self.coefficients[:] = 0.0
        self.coefficients[:, 0] = start_radius
        robust = np.ones(len(r))
        for _ in range(IRLS_ITERATIONS):
            residual = r - a @ self.coefficients.ravel()
            scale = max(1.4826 * float(np.median(np.abs(residual))), 0.05)
            magnitude = np.abs(residual) / (HUBER_K * scale)
            robust = np.where(magnitude <= 1.0, 1.0, 1.0 / np.maximum(magnitude, 1e-9))
            robust[np.abs(residual) > GATE_MM] = 0.0
            w = weights * robust
            normal = (a * w[:, None]).T @ a + penalty + 1e-9 * np.eye(columns)
            solution = np.linalg.solve(normal, (a * w[:, None]).T @ r)
            self.coefficients = solution.reshape(self.basis_count, -1)
        return weights * robust


def _fit_on(axis: np.ndarray, points: np.ndarray, weights: np.ndarray, radius: float, band: float, knot: float
            ) -> tuple[TubeModel, np.ndarray, np.ndarray, np.ndarray]:
    """Fit the tube about ``axis`` to the points near it; returns (model, s, angle, final weights) of the points."""
    s, angle, r = sections.project_to_axis(points, axis)
    length = sections.length_mm(axis)
    near = (np.abs(r - radius) <= band) & (s >= -STATION_STEP_MM) & (s <= length + STATION_STEP_MM)
    if near.sum() < 30:
        raise CannotReconstruct("too few metal voxels near the device's envelope to fit a tube")
    model = TubeModel(length, knot)
    fitted = np.zeros(len(points))
    fitted[near] = model.fit(s[near], angle[near], r[near], weights[near], radius)
    return model, s, angle, fitted


def _cell_centres(points: np.ndarray, weights: np.ndarray, s: np.ndarray, angle: np.ndarray, stations: int
                  ) -> np.ndarray:
    """HU-weighted centre of the metal in each (station, sector) cell: the located strut-centre points."""
    used = weights > 0
    station = np.clip(np.rint(s[used] / STATION_STEP_MM).astype(int), 0, stations - 1)
    sector = np.mod(np.rint(angle[used] / (2 * np.pi / ENVELOPE_SECTORS)).astype(int), ENVELOPE_SECTORS)
    cell = station * ENVELOPE_SECTORS + sector
    w = weights[used]
    totals = np.bincount(cell, w, minlength=stations * ENVELOPE_SECTORS)
    filled = totals > 0
    centres = np.column_stack([np.bincount(cell, w * points[used, c], minlength=stations * ENVELOPE_SECTORS)
                               for c in range(3)])
    return centres[filled] / totals[filled, None]


def run(region: Region) -> Reconstruction:
    """Robust tube fit to the HU-weighted metal voxels; ends from the metal on the fitted envelope."""
    device = common.device_metal(region, region.extent)
    image = common.masked_image(region, device)
    points, weights = common.metal_points(region, device)
    axis, station_radius, _ = common.refine_axis(region.extent, points, weights, region, iterations=2)
    radius = float(np.median(station_radius))
    band = common.radial_band_mm(region, radius)
    knot = knot_spacing_mm(radius)
    for _ in range(OUTER_ITERATIONS):
        model, _, _, fitted = _fit_on(axis, points, weights, radius, band, knot)
        s_axis = arc_length(axis)
        _, n, b = sections.frames(axis)
        moved = axis + model.term(s_axis, 1)[:, None] * n + model.term(s_axis, 2)[:, None] * b
        axis = sections.resample(moved)
        radius = float(np.median(model.term(np.linspace(0, model.length, 50), 0)))
    model, _, _, _ = _fit_on(axis, points, weights, radius, band, knot)
    s_axis = arc_length(axis)
    mean_radius = model.term(s_axis, 0)
    s_start, s_end, end_info = common.find_ends(region, axis, mean_radius, image)
    final = common.trim(axis, s_start, s_end)
    model, s, angle, fitted = _fit_on(final, points, weights, radius, band, knot)
    s_final = arc_length(final)
    # the fitted first harmonic (any centre offset left) is part of the envelope around this axis
    grid_s = np.repeat(s_final, ENVELOPE_SECTORS)
    grid_angle = np.tile(sections.sector_angles(ENVELOPE_SECTORS), len(final))
    radii = model.radius(grid_s, grid_angle).reshape(len(final), ENVELOPE_SECTORS)
    if not np.all(np.isfinite(radii)) or radii.min() <= 0:
        raise CannotReconstruct("the fitted tube collapses: the metal does not outline a tube")
    inside = (s >= 0) & (s <= s_final[-1])
    material = _cell_centres(points[inside], fitted[inside], s[inside], angle[inside], len(final))
    r0 = model.term(s_final, 0)
    ellipticity = np.hypot(model.term(s_final, 3), model.term(s_final, 4))
    used = fitted > 0
    method = {
        "model": "tube r(s, θ) = r0 + a1 cos θ + b1 sin θ + a2 cos 2θ + b2 sin 2θ, cubic B-splines in s",
        "knot_spacing_mm": round(knot, 2),
        "fit": f"IRLS, Huber k={HUBER_K}, gate {GATE_MM} mm, weights HU − threshold",
        "threshold_hu": round(float(region.threshold_hu), 1),
        "metal_voxels": int(len(points)),
        "voxels_used": int(used.sum()),
        "taper_mm": round(float(2 * (r0[-1] - r0[0])), 3),
        "max_ellipticity_mm": round(float(2 * ellipticity.max()), 3),
        **end_info,
    }
    notes = [f"tube fitted to {used.sum()} of {len(points)} metal voxels (the rest lie over {GATE_MM} mm off the "
             "envelope or are down-weighted as outliers)",
             f"diameter {2 * r0.min():.2f}–{2 * r0.max():.2f} mm along the device; out-of-round up to "
             f"{2 * ellipticity.max():.2f} mm (max − min diameter)"]
    return Reconstruction(id="C", name="model-based tube fit", axis=final, radii=radii,
                          surface=surfaces.tube_from_envelope(final, radii), struts=[], material=material,
                          method=method, notes=notes)
