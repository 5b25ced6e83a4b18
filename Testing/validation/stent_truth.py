"""Figures that judge a stent reconstruction against a phantom's truth (``Testing/phantoms/stent.py``).

The device envelope is the surface through the strut centres. Its error is the mean symmetric distance between
the reconstructed envelope and the true one, both sampled every 0.1 mm: axis offset, radius error and length
error all show in it, so it is the "true error" by which the algorithms are compared with their ranking.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from CardiacSuiteLib.geometry import points_to_polyline_distance
from StentReconstructionLib import sections

STEP_MM = 0.1


def dense_envelope(axis: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Envelope points every ~0.1 mm along and around, from an axis every 0.5 mm and radii (N, S)."""
    fine = sections.resample(axis, STEP_MM)
    positions = np.linspace(0, len(radii) - 1, len(fine))
    rows = np.stack([np.interp(positions, np.arange(len(radii)), radii[:, k]) for k in range(radii.shape[1])], axis=1)
    columns = max(int(np.ceil(2 * np.pi * float(radii.mean()) / STEP_MM)), 16)
    around = np.arange(columns) * radii.shape[1] / columns
    ring = np.stack([np.interp(around, np.arange(radii.shape[1] + 1), np.append(r, r[0])) for r in rows])
    return sections.envelope_points(fine, ring).reshape(-1, 3)


def true_envelope(axis: np.ndarray, diameter_mm: float) -> np.ndarray:
    axis = sections.resample(axis, 0.5)
    return dense_envelope(axis, np.full((len(axis), 72), 0.5 * diameter_mm))


def envelope_msd(points: np.ndarray, truth: np.ndarray) -> float:
    a = cKDTree(truth).query(points)[0]
    b = cKDTree(points).query(truth)[0]
    return float(0.5 * (a.mean() + b.mean()))


def axis_error_mm(axis: np.ndarray, true_axis: np.ndarray) -> float:
    """Mean distance of the reconstructed axis to the true one (both directions, so a short axis counts)."""
    fine = sections.resample(axis, STEP_MM)
    there = points_to_polyline_distance(fine, true_axis)[0].mean()
    back = points_to_polyline_distance(sections.resample(true_axis, STEP_MM), fine)[0].mean()
    return float(0.5 * (there + back))


def strut_coverage(true_struts: np.ndarray, struts: list[np.ndarray], surface, limit_mm: float = 0.5) -> float:
    """Share of the true strut samples within ``limit_mm`` of the reconstructed struts, or of the surface (or
    inside it, the surface being closed)."""
    import vtk

    near = np.zeros(len(true_struts), bool)
    if struts:
        near |= cKDTree(np.concatenate([sections.resample(s, 0.05) if len(s) > 1 else s for s in struts])).query(
            true_struts)[0] <= limit_mm
    if surface is not None and surface.GetNumberOfPoints():
        locator = vtk.vtkImplicitPolyDataDistance()
        locator.SetInput(surface)
        remaining = np.flatnonzero(~near)
        distances = np.array([locator.EvaluateFunction(*true_struts[i]) for i in remaining])
        near[remaining] = distances <= limit_mm  # negative inside the closed surface
    return float(near.mean())
