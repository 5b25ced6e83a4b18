"""The LV long axis of a cardiac CT and the planes of a CMR-style study reformatted from it.

The long axis runs from the centre of the mitral valve plane (base) to the LV apex, as the short-axis stack of a
CMR study is planned: short-axis slices are perpendicular to it, and the 2-, 3- and 4-chamber planes contain it.
It is found from CardiacSegmentation's labels (MM-WHS values, ``structures.HEART_STRUCTURES``):

* the direction is the principal axis of the LV cavity and myocardium (the shape's long axis, which one voxel
  more or less does not tilt), oriented from the apex toward the base;
* the axis passes through the base centre: the centroid of the LV cavity's contact with the left atrium (the
  mitral valve plane); where the atrium is not segmented, the centroid of the most basal 10 mm of the cavity;
* the apex is the point of the axis at the level of the LV's most apical point (the epicardial apex).

The 4-chamber plane contains the axis and the RV centre, the 2-chamber plane is perpendicular to it through the
axis, and the 3-chamber plane contains the axis and the aortic valve centre (the LV cavity's contact with the
aorta). Every plane is a ``Grid`` (``CardiacSuiteLib.geometry``) sampled with ``geometry.resample``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.geometry import Grid, resample, voxel_ml

from .presets import PLANES
from .structures import heart_label

LV_MYOCARDIUM, LEFT_ATRIUM, LEFT_VENTRICLE, RIGHT_ATRIUM, RIGHT_VENTRICLE, AORTA = (
    heart_label(name) for name in ("Left ventricle myocardium", "Left atrium", "Left ventricle", "Right atrium",
                                   "Right ventricle", "Aorta")
)
ANTERIOR_RAS = np.array([0.0, 1.0, 0.0])
MIN_LV_ML = 5.0  # below this the LV cavity is not a ventricle (nothing, or a stray piece)
BASAL_SLAB_MM = 10.0


@dataclass(frozen=True)
class LongAxis:
    """The LV long axis in RAS mm: ``base`` (mitral valve plane centre) and ``apex``; how it was found."""

    base: np.ndarray
    apex: np.ndarray
    source: str

    @property
    def direction(self) -> np.ndarray:
        """Unit vector from the base to the apex."""
        vector = self.apex - self.base
        return vector / np.linalg.norm(vector)

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(self.apex - self.base))

    def as_dict(self) -> dict:
        return {
            "base_ras_mm": [round(float(v), 2) for v in self.base],
            "apex_ras_mm": [round(float(v), 2) for v in self.apex],
            "direction_base_to_apex": [round(float(v), 4) for v in self.direction],
            "length_mm": round(self.length_mm, 1),
            "source": self.source,
        }


def long_axis_from_points(base_ras, apex_ras, source: str = "given") -> LongAxis:
    """An edited axis: base centre then apex (RAS mm), at least 20 mm apart."""
    base, apex = np.asarray(base_ras, float).reshape(3), np.asarray(apex_ras, float).reshape(3)
    if np.linalg.norm(apex - base) < 20.0:
        raise InputError(
            f"the LV long axis from {base.round(1).tolist()} to {apex.round(1).tolist()} mm is shorter than 20 mm;"
            " give the mitral valve centre then the apex"
        )
    return LongAxis(base, apex, source)


def _points(mask: np.ndarray, grid: Grid) -> np.ndarray:
    return grid.kji_to_ras(np.argwhere(mask))


def contact_centroid(labels: np.ndarray, grid: Grid, inside: int, neighbour: int) -> np.ndarray | None:
    """Centroid (RAS mm) of the ``inside`` voxels that touch ``neighbour`` (a valve plane); None without contact."""
    near = ndimage.binary_dilation(labels == neighbour)
    contact = near & (labels == inside)
    if contact.sum() < 3:
        return None
    return _points(contact, grid).mean(axis=0)


def check_lv(labels: np.ndarray, ijk_to_ras: np.ndarray, what: str = "the segmentation") -> None:
    """Refuse a label map without a usable LV cavity."""
    if labels.ndim != 3 or min(labels.shape) < 2:
        raise InputError(f"{what} is not a 3D label map (shape {labels.shape}); the LV needs a 3D CT")
    volume = float((labels == LEFT_VENTRICLE).sum()) * voxel_ml(ijk_to_ras)
    if volume < MIN_LV_ML:
        raise InputError(
            f"{what} has no left ventricle (LV cavity {volume:.1f} ml, label {LEFT_VENTRICLE}"
            f" 'Left ventricle'); the long axis and the LV function need the LV blood pool"
        )


def find_long_axis(labels: np.ndarray, ijk_to_ras: np.ndarray) -> LongAxis:
    """The LV long axis from a heart label map (see the module docstring for the rule)."""
    check_lv(labels, ijk_to_ras)
    grid = Grid(labels.shape, ijk_to_ras)
    lv = _points((labels == LEFT_VENTRICLE) | (labels == LV_MYOCARDIUM), grid)
    centre = lv.mean(axis=0)
    _, _, vectors = np.linalg.svd(lv - centre, full_matrices=False)
    principal = vectors[0]
    base = contact_centroid(labels, grid, LEFT_VENTRICLE, LEFT_ATRIUM)
    source = "automatic: principal axis of the LV through the mitral valve plane centre (LV-LA contact)"
    if base is not None:
        toward_base = base - centre
    else:
        aortic = contact_centroid(labels, grid, LEFT_VENTRICLE, AORTA)
        # without atrium or aorta, the open end: the cavity lies toward the base of the myocardium's apical cap
        toward_base = aortic - centre if aortic is not None else _points(labels == LEFT_VENTRICLE, grid).mean(0) - centre
    principal = principal if np.dot(toward_base, principal) >= 0 else -principal
    if base is None:
        cavity = _points(labels == LEFT_VENTRICLE, grid)
        along = (cavity - centre) @ principal
        base = cavity[along >= along.max() - BASAL_SLAB_MM].mean(axis=0)
        source = "automatic: principal axis of the LV through the basal 10 mm of the cavity (no left atrium segmented)"
    depth = float(((base - lv) @ principal).max())
    apex = base - depth * principal
    return long_axis_from_points(base, apex, source)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two directions (degrees, 0–180)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    cosine = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def _perpendicular(vector: np.ndarray, axis: np.ndarray) -> np.ndarray | None:
    """``vector`` without its component along ``axis``, normalised; None when (nearly) parallel."""
    part = vector - np.dot(vector, axis) * axis
    norm = np.linalg.norm(part)
    return part / norm if norm > 1e-3 * max(np.linalg.norm(vector), 1e-9) else None


@dataclass(frozen=True)
class PlaneSet:
    """The reformat geometry: the long axis, the in-plane directions and the landmarks they came from."""

    axis: LongAxis
    septal: np.ndarray  # unit, perpendicular to the axis, from the LV axis toward the RV centre (4-chamber plane)
    outflow: np.ndarray  # unit, perpendicular to the axis, toward the aortic valve centre (3-chamber plane)
    landmarks: dict  # name -> RAS mm (or None), for the record

    def in_plane(self, plane: str) -> np.ndarray:
        """The in-plane direction perpendicular to the axis that spans a long-axis plane with it."""
        if plane == "4CH":
            return self.septal
        if plane == "2CH":
            return np.cross(self.axis.direction, self.septal)
        if plane == "3CH":
            return self.outflow
        raise ValueError(f"unknown plane '{plane}'; the planes are {', '.join(PLANES)}")


def plane_set(labels: np.ndarray, ijk_to_ras: np.ndarray, axis: LongAxis) -> PlaneSet:
    """In-plane directions from the RV centre and the aortic valve centre (fallbacks recorded in ``landmarks``)."""
    grid = Grid(labels.shape, ijk_to_ras)
    direction = axis.direction
    rv = labels == RIGHT_VENTRICLE
    rv_centre = _points(rv, grid).mean(axis=0) if rv.sum() >= 10 else None
    septal = _perpendicular(rv_centre - axis.base, direction) if rv_centre is not None else None
    if septal is None:  # no RV: patient right (RAS -x) stands in for the septal direction
        septal = _perpendicular(np.array([-1.0, 0.0, 0.0]), direction)
        if septal is None:
            septal = _perpendicular(np.array([0.0, 1.0, 0.0]), direction)
    aortic = contact_centroid(labels, grid, LEFT_VENTRICLE, AORTA)
    outflow = _perpendicular(aortic - axis.base, direction) if aortic is not None else None
    if outflow is None:  # the outflow tract lies between the septal and the 2-chamber directions
        outflow = _perpendicular(septal + np.cross(direction, septal), direction)
    landmarks = {
        "rv_centre_ras_mm": None if rv_centre is None else [round(float(v), 2) for v in rv_centre],
        "aortic_valve_centre_ras_mm": None if aortic is None else [round(float(v), 2) for v in aortic],
    }
    return PlaneSet(axis, septal, outflow, landmarks)


# ------------------------------------------------------------------------------------------------ grids


def _matrix(columns: tuple[np.ndarray, np.ndarray, np.ndarray], spacings: tuple[float, float, float],
            origin: np.ndarray) -> np.ndarray:
    matrix = np.eye(4)
    for index, (column, spacing) in enumerate(zip(columns, spacings)):
        matrix[:3, index] = column * spacing
    matrix[:3, 3] = origin
    return matrix


def short_axis_grid(planes: PlaneSet, labels: np.ndarray, ijk_to_ras: np.ndarray, slice_mm: float = 8.0,
                    pixel_mm: float = 1.25, margin_mm: float = 10.0, extent_labels: np.ndarray | None = None) -> Grid:
    """Short-axis slices ``slice_mm`` apart from base to apex, ``pixel_mm`` pixels covering LV and RV + margin.

    The slabs tile the LV (cavity and myocardium of ``extent_labels``, by default ``labels``) along the axis from
    its most basal to its most apical point; slice k is centred in slab k, so summing area x spacing is the
    midpoint rule over the whole LV. Slices run from base to apex and each is laid out as a CMR short-axis image
    is shown: the RV on the image's left (columns run from the RV toward the lateral wall) and the anterior wall at
    its top (rows run from anterior to inferior).
    """
    if slice_mm <= 0 or pixel_mm <= 0:
        raise InputError(f"slice spacing and pixel size must be positive (got {slice_mm:g} mm, {pixel_mm:g} mm)")
    grid = Grid(labels.shape, ijk_to_ras)
    extent = labels if extent_labels is None else extent_labels
    lv = _points((extent == LEFT_VENTRICLE) | (extent == LV_MYOCARDIUM), grid)
    covered = _points((extent == LEFT_VENTRICLE) | (extent == LV_MYOCARDIUM) | (extent == RIGHT_VENTRICLE), grid)
    normal = planes.axis.direction
    column = -planes.septal
    row = np.cross(normal, column)
    if row @ ANTERIOR_RAS > 0:
        row = -row
    along = (lv - planes.axis.base) @ normal
    half_voxel = 0.5 * float(np.linalg.norm(ijk_to_ras[:3, :3], axis=0).max())
    start, stop = float(along.min()) - half_voxel, float(along.max()) + half_voxel
    slices = max(int(np.ceil((stop - start) / slice_mm - 1e-6)), 1)
    start -= 0.5 * (slices * slice_mm - (stop - start))  # centre the stack on the LV
    u, v = (covered - planes.axis.base) @ column, (covered - planes.axis.base) @ row
    u0, v0 = u.min() - margin_mm, v.min() - margin_mm
    columns = int(np.ceil((u.max() + margin_mm - u0) / pixel_mm)) + 1
    rows = int(np.ceil((v.max() + margin_mm - v0) / pixel_mm)) + 1
    origin = planes.axis.base + u0 * column + v0 * row + (start + 0.5 * slice_mm) * normal
    return Grid((slices, rows, columns), _matrix((column, row, normal), (pixel_mm, pixel_mm, slice_mm), origin))


def long_axis_grid(planes: PlaneSet, plane: str, pixel_mm: float = 1.25, above_base_mm: float = 50.0,
                   beyond_apex_mm: float = 20.0, half_width_mm: float = 70.0) -> Grid:
    """One slice through the long axis (2CH, 3CH or 4CH): rows from above the base (atria) down to the apex."""
    axis = planes.axis
    across = planes.in_plane(plane)
    down = axis.direction
    normal = np.cross(across, down)
    columns = int(np.ceil(2.0 * half_width_mm / pixel_mm)) + 1
    rows = int(np.ceil((above_base_mm + axis.length_mm + beyond_apex_mm) / pixel_mm)) + 1
    origin = axis.base - half_width_mm * across - above_base_mm * down
    return Grid((1, rows, columns), _matrix((across, down, normal), (pixel_mm, pixel_mm, pixel_mm), origin))


def slab_planes(target: Grid, thickness_mm: float, step_mm: float = 1.0) -> list[Grid]:
    """``target`` moved along its slice normal to planes about ``step_mm`` apart, centred across each slice's
    ``thickness_mm`` (one plane, ``target``'s own, when the thickness rounds to one step or less)."""
    planes = max(int(round(thickness_mm / step_mm)), 1)
    normal = target.ijk_to_ras[:3, 2] / np.linalg.norm(target.ijk_to_ras[:3, 2])
    grids = []
    for offset in (np.arange(planes) - 0.5 * (planes - 1)) * (thickness_mm / planes):
        shifted = target.ijk_to_ras.copy()
        shifted[:3, 3] += offset * normal
        grids.append(Grid(target.shape, shifted))
    return grids


def reformat_image(image: np.ndarray, ijk_to_ras: np.ndarray, target: Grid, slab_mm: float = 0.0,
                   fill: float = -1024.0) -> np.ndarray:
    """The CT on ``target`` (trilinear); with ``slab_mm`` the mean over that thickness across each slice (1 mm
    steps), as a thick-slab reformat shows a CMR-like slice."""
    source = Grid(image.shape, ijk_to_ras)
    values = np.asarray(image, dtype=np.float32)
    planes = slab_planes(target, slab_mm)
    total = np.zeros(target.shape, np.float32)
    for plane in planes:
        total += resample(values, source, plane, order=1, fill=fill)
    return total / len(planes)


def reformat_labels(labels: np.ndarray, ijk_to_ras: np.ndarray, target: Grid) -> np.ndarray:
    """Labels on ``target`` at each slice's centre plane (nearest neighbour: areas are kept on average)."""
    return resample(np.asarray(labels, dtype=np.uint8), Grid(labels.shape, ijk_to_ras), target, order=0, fill=0)
