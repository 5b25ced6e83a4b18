"""Cross-sections along a device axis: frames, polar sampling, circle fits and the envelope around an axis.

Frames are carried along the axis by parallel transport (no twist between stations), starting from a normal
fixed in the patient (the one closest to anterior), so sector 0 of every cross-section points the same way in
every algorithm's result and in every phase.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from CardiacSuiteLib.geometry import arc_length, resample_polyline

from .model import ENVELOPE_SECTORS, STATION_STEP_MM


def resample(points: np.ndarray, step_mm: float = STATION_STEP_MM) -> np.ndarray:
    """Points every ``step_mm`` along a polyline (its ends kept)."""
    points = np.asarray(points, float)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-9])
    return resample_polyline(points[keep], step_mm)[0]


def smooth(points: np.ndarray, sigma_mm: float, step_mm: float = STATION_STEP_MM) -> np.ndarray:
    """Gaussian smoothing along an evenly sampled polyline; ends extrapolated, not pinned."""
    if len(points) < 3 or sigma_mm <= 0:
        return np.asarray(points, float).copy()
    return ndimage.gaussian_filter1d(np.asarray(points, float), sigma_mm / step_mm, axis=0, mode="nearest")


def tangents(points: np.ndarray) -> np.ndarray:
    """Unit tangents of a polyline (central differences)."""
    points = np.asarray(points, float)
    if len(points) < 2:
        return np.tile([0.0, 0.0, 1.0], (len(points), 1))
    t = np.gradient(points, axis=0)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)


def frames(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tangent, normal, binormal) per point, each (N, 3), by parallel transport from an anterior-most normal."""
    t = tangents(points)
    n = np.zeros_like(t)
    seed = np.array([0.0, 1.0, 0.0])  # anterior
    if abs(t[0] @ seed) > 0.9:
        seed = np.array([0.0, 0.0, 1.0])
    n0 = seed - (seed @ t[0]) * t[0]
    n[0] = n0 / np.linalg.norm(n0)
    for index in range(1, len(t)):
        v = n[index - 1] - (n[index - 1] @ t[index]) * t[index]
        norm = np.linalg.norm(v)
        n[index] = v / norm if norm > 1e-9 else n[index - 1]
    b = np.cross(t, n)
    return t, n, b


def sector_angles(sectors: int = ENVELOPE_SECTORS) -> np.ndarray:
    return np.arange(sectors) * (2.0 * np.pi / sectors)


def ray_directions(axis: np.ndarray, sectors: int = ENVELOPE_SECTORS) -> np.ndarray:
    """(N, S, 3) unit directions of the sectors' rays, in each station's cross-section."""
    _, n, b = frames(axis)
    angles = sector_angles(sectors)
    return np.cos(angles)[None, :, None] * n[:, None, :] + np.sin(angles)[None, :, None] * b[:, None, :]


def envelope_points(axis: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(N, S, 3) RAS points at ``radii`` (N, S) around the axis."""
    return axis[:, None, :] + radii[..., None] * ray_directions(axis, radii.shape[1])


def polar_grid(axis: np.ndarray, radii_mm: np.ndarray, sectors: int = ENVELOPE_SECTORS) -> np.ndarray:
    """(N, S, R, 3) RAS sample points on rays from every axis station."""
    return axis[:, None, None, :] + radii_mm[None, None, :, None] * ray_directions(axis, sectors)[:, :, None, :]


def ray_points(axis: np.ndarray, radii: np.ndarray, offsets_mm: np.ndarray) -> np.ndarray:
    """(N, S, R, 3) RAS points on each sector's ray at ``offsets_mm`` from the envelope ``radii`` (N, S) (never
    through the axis)."""
    radial = np.clip(radii[..., None] + offsets_mm, 0.0, None)
    return axis[:, None, None, :] + radial[..., None] * ray_directions(axis, radii.shape[1])[:, :, None, :]


def extend(points: np.ndarray, beyond_mm: float, step_mm: float, ends: tuple[np.ndarray, np.ndarray] | None = None
           ) -> tuple[np.ndarray, int]:
    """A polyline lengthened straight by ``beyond_mm`` at both ends in ``step_mm`` steps, along its end tangents
    (or the given ``ends`` directions); also the number of points added at each end."""
    t_start, t_end = ends if ends is not None else tangents(points)[[0, -1]]
    steps = np.arange(1, int(np.ceil(beyond_mm / step_mm - 1e-9)) + 1)[:, None] * step_mm
    return np.concatenate([points[0] - steps[::-1] * t_start, points, points[-1] + steps * t_end]), len(steps)


def sample(image: np.ndarray, ijk_to_ras: np.ndarray, points: np.ndarray, order: int = 1, fill: float = -1000.0) -> np.ndarray:
    """Image values at RAS points (any leading shape), trilinear by default."""
    points = np.asarray(points, float)
    inverse = np.linalg.inv(ijk_to_ras)
    ijk = points.reshape(-1, 3) @ inverse[:3, :3].T + inverse[:3, 3]
    values = ndimage.map_coordinates(image, ijk[:, ::-1].T, order=order, mode="constant", cval=fill)
    return values.reshape(points.shape[:-1])


def fit_circle(points: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Least-squares circle through 2D points (algebraic fit refined by a few Gauss–Newton steps)."""
    points = np.asarray(points, float)
    w = np.ones(len(points)) if weights is None else np.asarray(weights, float)
    a = np.column_stack([points, np.ones(len(points))]) * np.sqrt(w)[:, None]
    rhs = (points**2).sum(axis=1) * np.sqrt(w)
    solution, *_ = np.linalg.lstsq(a, rhs, rcond=None)
    centre = solution[:2] / 2.0
    radius = float(np.sqrt(max(solution[2] + centre @ centre, 1e-12)))
    for _ in range(5):
        delta = points - centre
        distance = np.maximum(np.linalg.norm(delta, axis=1), 1e-9)
        residual = distance - radius
        jacobian = np.column_stack([-delta / distance[:, None], -np.ones(len(points))])
        step, *_ = np.linalg.lstsq(jacobian * np.sqrt(w)[:, None], -residual * np.sqrt(w), rcond=None)
        centre = centre + step[:2]
        radius += float(step[2])
    return centre, abs(radius)


def project_to_axis(points: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cylindrical coordinates of points about a polyline: (station position s in mm along the axis, angle in the
    station's frame, radial distance). Points beyond the ends are projected onto the end planes' extensions."""
    from scipy.spatial import cKDTree

    points = np.asarray(points, float)
    t, n, b = frames(axis)
    s_axis = arc_length(axis)
    nearest = cKDTree(axis).query(points)[1]
    offset = points - axis[nearest]
    along = (offset * t[nearest]).sum(axis=1)
    s = s_axis[nearest] + along
    foot = axis[nearest] + along[:, None] * t[nearest]
    radial = points - foot
    angle = np.mod(np.arctan2((radial * b[nearest]).sum(axis=1), (radial * n[nearest]).sum(axis=1)), 2 * np.pi)
    return s, angle, np.linalg.norm(radial, axis=1)


def envelope_radii(points: np.ndarray, axis: np.ndarray, sectors: int = ENVELOPE_SECTORS,
                   window_mm: float = 1.5, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Envelope radius per (station, sector) from scattered strut-centre points: the weighted mean radius of
    the points within ``window_mm`` along the axis and the sector's angular width either side; cells with no
    point are filled from their neighbours around and along. Returns (radii (N, S), support (N, S) counts)."""
    s, angle, r = project_to_axis(points, axis)
    w = np.ones(len(r)) if weights is None else np.asarray(weights, float)
    s_axis = arc_length(axis)
    station = np.clip(np.rint(s / STATION_STEP_MM).astype(int), 0, len(axis) - 1)
    inside = (s >= -STATION_STEP_MM) & (s <= s_axis[-1] + STATION_STEP_MM)
    sector = np.mod(np.rint(angle / (2 * np.pi / sectors)).astype(int), sectors)
    half_stations = max(int(round(window_mm / STATION_STEP_MM)), 0)
    sums = np.zeros((len(axis), sectors))
    weight_sums = np.zeros((len(axis), sectors))
    counts = np.zeros((len(axis), sectors))
    np.add.at(sums, (station[inside], sector[inside]), (w * r)[inside])
    np.add.at(weight_sums, (station[inside], sector[inside]), w[inside])
    np.add.at(counts, (station[inside], sector[inside]), 1.0)
    sums = _window_sum(sums, half_stations)
    weight_sums = _window_sum(weight_sums, half_stations)
    support = _window_sum(counts, half_stations)
    radii = np.where(weight_sums > 0, sums / np.maximum(weight_sums, 1e-12), np.nan)
    return fill_gaps(radii), support


def _window_sum(grid: np.ndarray, half_stations: int) -> np.ndarray:
    """Sum over ±half_stations along the axis and ±1 sector around (sectors wrap)."""
    padded = np.concatenate([grid[:, -1:], grid, grid[:, :1]], axis=1)
    around = padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]
    if half_stations == 0:
        return around
    return ndimage.uniform_filter1d(around, 2 * half_stations + 1, axis=0, mode="nearest") * (2 * half_stations + 1)


def fill_gaps(radii: np.ndarray) -> np.ndarray:
    """Fill NaN cells: around each station by periodic interpolation, then along the axis, then the median."""
    radii = np.array(radii, float)
    sectors = radii.shape[1]
    index = np.arange(sectors)
    for row in radii:
        good = np.isfinite(row)
        if good.any() and not good.all():
            row[~good] = np.interp(index[~good], index[good], row[good], period=sectors)
    stations = np.arange(len(radii))
    for column in radii.T:
        good = np.isfinite(column)
        if good.any() and not good.all():
            column[~good] = np.interp(stations[~good], stations[good], column[good])
    if not np.isfinite(radii).all():
        finite = radii[np.isfinite(radii)]
        radii[~np.isfinite(radii)] = float(np.median(finite)) if finite.size else 0.0
    return radii


def length_mm(axis: np.ndarray) -> float:
    return float(arc_length(np.asarray(axis, float))[-1]) if len(axis) > 1 else 0.0


__all__ = ["resample", "smooth", "frames", "ray_directions", "ray_points", "extend", "polar_grid", "sample", "fit_circle", "project_to_axis",
           "envelope_radii", "envelope_points", "fill_gaps", "length_mm", "sector_angles"]
