"""Valve-disease measurements from a chamber segmentation: aortic root, LVOT, mitral annulus, pulmonary root.

These are geometric measurements of the segmented blood pools, not of leaflets: the aortic "annulus" plane
is the plane fitted to the contact between the left ventricle and the aorta segments (the ventriculo-aortic
junction), the mitral annulus the contact between left atrium and left ventricle, the pulmonary annulus the
contact between right ventricle and pulmonary artery. Along the aortic root, cross-sections perpendicular to
the annulus normal give the sinus of Valsalva (largest section within 25 mm), the sinotubular junction (the
narrowest section above the sinus) and the ascending aorta; the LVOT is the left-ventricular section 5 mm below
the annulus. Diameters: area-derived (2·sqrt(A/π)), perimeter-derived (P/π), and the minimum and maximum
diameters of the section (ellipse of equal second moments). Units: mm and mm².
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from CardiacSuiteLib.geometry import Grid

LV_MYO, LA, LV, RA, RV, AORTA, PA = 1, 2, 3, 4, 5, 6, 7


@dataclass
class Plane:
    centre: np.ndarray  # RAS mm
    normal: np.ndarray  # unit, pointing downstream (into the aorta / artery, or into the ventricle for the mitral)

    def as_dict(self) -> dict:
        return {"centre_ras_mm": [round(float(v), 2) for v in self.centre], "normal": [round(float(v), 4) for v in self.normal]}


def contact_points(labels: np.ndarray, grid: Grid, a: int, b: int) -> np.ndarray:
    """RAS points of voxels of structure ``a`` that touch structure ``b`` (6-neighbourhood)."""
    touching = (labels == a) & ndimage.binary_dilation(labels == b)
    return grid.kji_to_ras(np.argwhere(touching))


def fit_plane(points: np.ndarray, towards: np.ndarray) -> Plane:
    centre = points.mean(axis=0)
    normal = np.linalg.svd(points - centre, full_matrices=False)[2][-1]
    if np.dot(normal, towards - centre) < 0:
        normal = -normal
    return Plane(centre, normal / np.linalg.norm(normal))


def _basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(normal, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(normal, u)


def section(mask: np.ndarray, grid: Grid, centre: np.ndarray, normal: np.ndarray, half_mm: float = 30.0, pixel_mm: float = 0.5):
    """The mask's cross-section in the plane (centre, normal): the connected part at (or nearest) the centre."""
    u, v = _basis(normal)
    n = int(np.ceil(half_mm / pixel_mm))
    offsets = np.arange(-n, n + 1) * pixel_mm
    a, b = np.meshgrid(offsets, offsets, indexing="ij")
    ras = centre + a[..., None] * u + b[..., None] * v
    kji = grid.ras_to_kji(ras.reshape(-1, 3)).T
    values = ndimage.map_coordinates(mask.astype(np.uint8), kji, order=0, mode="constant", cval=0).reshape(a.shape) > 0
    parts, count = ndimage.label(values)
    if count == 0:
        return np.zeros_like(values), u, v, n
    label = parts[n, n]
    if label == 0:
        index = np.argwhere(parts > 0)
        nearest = index[np.argmin(((index - n) ** 2).sum(axis=1))]
        if np.hypot(*(nearest - n)) * pixel_mm > 5.0:
            return np.zeros_like(values), u, v, n
        label = parts[tuple(nearest)]
    return parts == label, u, v, n


def section_metrics(region: np.ndarray, pixel_mm: float = 0.5) -> dict:
    """Area (mm²), perimeter (mm) and diameters (mm) of a 2D section."""
    from skimage.measure import find_contours

    area = float(region.sum()) * pixel_mm**2
    if area <= 0:
        return {}
    # Perimeter of the smoothed outline (a pixel staircase would overstate it by up to 4/π).
    padded = np.pad(region.astype(float), 2)
    contours = find_contours(ndimage.gaussian_filter(padded, 1.0), 0.5)
    length = max((float(np.linalg.norm(np.diff(c, axis=0), axis=1).sum()) for c in contours), default=0.0) * pixel_mm
    index = np.argwhere(region).astype(float)
    covariance = np.cov(index.T) if len(index) > 2 else np.eye(2)
    eigen = np.sort(np.linalg.eigvalsh(covariance))
    return {
        "area_mm2": round(area, 1),
        "perimeter_mm": round(length, 1),
        "area_diameter_mm": round(2.0 * np.sqrt(area / np.pi), 1),
        "perimeter_diameter_mm": round(length / np.pi, 1),
        "min_diameter_mm": round(4.0 * np.sqrt(max(eigen[0], 0.0)) * pixel_mm, 1),
        "max_diameter_mm": round(4.0 * np.sqrt(max(eigen[1], 0.0)) * pixel_mm, 1),
    }


def _centroid_ras(region: np.ndarray, centre: np.ndarray, u: np.ndarray, v: np.ndarray, n: int, pixel: float):
    cy, cx = np.argwhere(region).mean(axis=0)
    return centre + (cy - n) * pixel * u + (cx - n) * pixel * v


def aortic_root(labels: np.ndarray, grid: Grid, pixel_mm: float = 0.5) -> dict:
    """Annulus plane, annulus, LVOT, sinus of Valsalva, sinotubular junction and ascending aorta sizes."""
    points = contact_points(labels, grid, AORTA, LV)
    if len(points) < 10:
        return {"error": "the aorta and the left ventricle do not touch in this segmentation: no annulus plane"}
    aorta_centroid = grid.kji_to_ras(np.argwhere(labels == AORTA).mean(axis=0))[0]
    plane = fit_plane(points, aorta_centroid)
    aorta = labels == AORTA
    result: dict = {"annulus_plane": plane.as_dict()}
    annulus = annulus_from_contact(labels, grid, LV, AORTA, pixel_mm)
    result["annulus"] = {k: v for k, v in annulus.items() if k != "plane"}
    lvot, *_ = section(labels == LV, grid, plane.centre - 5.0 * plane.normal, plane.normal, 25.0, pixel_mm)
    result["lvot_5mm_below_annulus"] = section_metrics(lvot, pixel_mm)
    # Sweep up the root, re-centring each section on the previous one's centroid.
    centre = plane.centre.copy()
    profile = []
    for height in np.arange(1.0, 46.0, 1.0):
        probe = centre + 1.0 * plane.normal
        region, u, v, n = section(aorta, grid, probe, plane.normal, 30.0, pixel_mm)
        if not region.any():
            break
        centre = _centroid_ras(region, probe, u, v, n, pixel_mm)
        profile.append((height, region, centre))
    if not profile:
        return result
    areas = np.array([r.sum() * pixel_mm**2 for _, r, _ in profile])
    heights = np.array([h for h, _, _ in profile])
    within = heights <= 25.0
    sinus = int(np.argmax(np.where(within, areas, -1.0)))
    result["sinus_of_valsalva"] = {"height_above_annulus_mm": float(heights[sinus]), **section_metrics(profile[sinus][1], pixel_mm)}
    above = np.flatnonzero((heights > heights[sinus]) & (heights <= heights[sinus] + 20.0))
    if above.size:
        stj = int(above[np.argmin(areas[above])])
        result["sinotubular_junction"] = {"height_above_annulus_mm": float(heights[stj]), **section_metrics(profile[stj][1], pixel_mm)}
    top = int(np.argmin(np.abs(heights - 40.0)))
    if abs(heights[top] - 40.0) <= 1.0:
        result["ascending_aorta_40mm"] = {"height_above_annulus_mm": float(heights[top]), **section_metrics(profile[top][1], pixel_mm)}
    return result


def annulus_from_contact(labels: np.ndarray, grid: Grid, upstream: int, downstream: int, pixel_mm: float = 0.5) -> dict:
    """Plane and size of the opening between two touching blood pools (mitral: LA→LV; pulmonary: RV→PA).

    The size is that of the contact region itself, projected onto its plane and closed (the opening).
    """
    points = contact_points(labels, grid, downstream, upstream)
    if len(points) < 10:
        return {"error": f"structures {upstream} and {downstream} do not touch in this segmentation"}
    centroid = grid.kji_to_ras(np.argwhere(labels == downstream).mean(axis=0))[0]
    plane = fit_plane(points, centroid)
    u, v = _basis(plane.normal)
    coords = np.stack([(points - plane.centre) @ u, (points - plane.centre) @ v], axis=1)
    n = int(np.ceil(max(np.abs(coords).max(), 5.0) / pixel_mm)) + 2
    image = np.zeros((2 * n + 1, 2 * n + 1), bool)
    index = np.round(coords / pixel_mm).astype(int) + n
    image[index[:, 0], index[:, 1]] = True
    radius = int(np.ceil(1.5 / pixel_mm))
    opening = ndimage.binary_fill_holes(ndimage.binary_closing(image, iterations=radius, border_value=0))
    parts, count = ndimage.label(opening)
    if count > 1:
        sizes = np.bincount(parts.ravel())
        sizes[0] = 0
        opening = parts == int(np.argmax(sizes))
    return {"plane": plane.as_dict(), **section_metrics(opening, pixel_mm)}


def pulmonary_root(labels: np.ndarray, grid: Grid, pixel_mm: float = 0.5) -> dict:
    result = {"annulus": annulus_from_contact(labels, grid, RV, PA, pixel_mm)}
    if "plane" in result["annulus"]:
        plane = result["annulus"]["plane"]
        centre, normal = np.array(plane["centre_ras_mm"]), np.array(plane["normal"])
        region, *_ = section(labels == PA, grid, centre + 15.0 * normal, normal, 30.0, pixel_mm)
        result["main_pulmonary_artery_15mm"] = section_metrics(region, pixel_mm)
    return result


def valve_measurements(labels: np.ndarray, ijk_to_ras: np.ndarray) -> dict:
    """Everything the valve-disease preset prepares for the report."""
    grid = Grid(labels.shape, ijk_to_ras)
    return {
        "aortic_root": aortic_root(labels, grid),
        "mitral_annulus": annulus_from_contact(labels, grid, LA, LV),
        "pulmonary_root": pulmonary_root(labels, grid),
        "method": "geometric, from the segmented blood pools: planes fitted to the contact between ventricle and"
        " great artery (aortic, pulmonary) or atrium and ventricle (mitral); not leaflet hinge points",
    }
