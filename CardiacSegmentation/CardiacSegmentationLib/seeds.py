"""Semi-automatic segmentation: seeds per structure grown with Slicer's grow-from-seeds (GrowCut).

The same filter as the Segment Editor's "Grow from seeds" effect (``vtkImageGrowCutSegment``) grows every
structure's seeds over the CT; adding seeds and running again re-grows. Each seed is a small ball; the
background gets seeds of its own (the user's, plus every voxel as dark as fat or darker, 5 mm or more from
all structure seeds)
so that growth stops at the heart. Afterwards, as the Segment Editor's Islands and Smoothing effects would:
each structure keeps its largest piece, holes are filled and a light median smoothing removes jagged edges.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import vtk
from scipy import ndimage
from vtk.util import numpy_support

import slicer
from CardiacSuiteLib.errors import InputError

from CardiacSuiteLib.geometry import Grid

#: Accepted names per label value (the full segment name, the usual abbreviation, the atlas name).
STRUCTURE_KEYS = {
    1: ("left ventricle myocardium", "myocardium", "lv myocardium", "myo", "lvmyo"),
    2: ("left atrium", "la"),
    3: ("left ventricle", "lv"),
    4: ("right atrium", "ra"),
    5: ("right ventricle", "rv"),
    6: ("aorta", "ao"),
    7: ("pulmonary artery", "pa"),
}
BACKGROUND_KEYS = ("background", "other", "outside")
BACKGROUND = 8  # label of background seeds while growing


def structure_value(name: str) -> int:
    """The label value a seed's structure name stands for (:data:`BACKGROUND` for background seeds)."""
    key = name.strip().lower().replace("_", " ")
    if key in BACKGROUND_KEYS:
        return BACKGROUND
    for value, names in STRUCTURE_KEYS.items():
        if key in names:
            return value
    known = ", ".join(names[0] for names in STRUCTURE_KEYS.values())
    raise InputError(f"unknown structure '{name}' in the seeds; use one of: {known}, background")


def seed_label_value(label: str) -> int:
    """The label value of a seed point's label; Slicer numbers new points ("LV-1", "LV-2"), the number is ignored."""
    return structure_value(label.rstrip("-0123456789 "))


def seeds_from_point_list(node) -> dict[int, list[np.ndarray]]:
    """Seeds from a markups point list whose control point labels name the structures (RAS mm)."""
    seeds: dict[int, list[np.ndarray]] = {}
    for index in range(node.GetNumberOfControlPoints()):
        position = np.array(node.GetNthControlPointPositionWorld(index), float)
        seeds.setdefault(seed_label_value(node.GetNthControlPointLabel(index)), []).append(position)
    return seeds


def read_seeds_file(path: str | Path) -> dict[int, list[np.ndarray]]:
    """Seeds from JSON: ``{"LV": [[R, A, S], ...], "Background": [...]}`` (RAS mm) or a Slicer markups file
    (``.mrk.json``) whose control point labels name the structures."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"seeds file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise InputError(f"seeds file {path} is not valid JSON (line {error.lineno}): {error.msg}") from None
    seeds: dict[int, list[np.ndarray]] = {}
    if isinstance(document, dict) and "markups" in document:
        for markup in document["markups"]:
            lps = markup.get("coordinateSystem", "LPS") == "LPS"
            for point in markup.get("controlPoints", []):
                position = np.array(point["position"], float)
                if lps:
                    position[:2] *= -1.0
                seeds.setdefault(seed_label_value(point.get("label", "")), []).append(position)
    elif isinstance(document, dict):
        for name, points in document.items():
            value = structure_value(name)
            for point in points:
                if len(point) != 3:
                    raise InputError(f"seeds file {path}: every seed of '{name}' needs three RAS coordinates (mm)")
                seeds.setdefault(value, []).append(np.asarray(point, float))
    else:
        raise InputError(f"seeds file {path} must hold an object of structure name -> list of [R, A, S] points")
    if not any(value != BACKGROUND for value in seeds):
        raise InputError(f"seeds file {path} holds no seed of any heart structure")
    return seeds


def _vtk_image(array: np.ndarray, spacing_ijk, vtk_type) -> vtk.vtkImageData:
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.SetSpacing(*[float(s) for s in spacing_ijk])
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True, array_type=vtk_type)
    image.GetPointData().SetScalars(scalars)
    return image


def grow_from_seeds(
    image: np.ndarray,
    ijk_to_ras: np.ndarray,
    seeds: dict[int, list[np.ndarray]],
    seed_radius_mm: float = 1.5,
    margin_mm: float = 25.0,
    smoothing_mm: float = 1.0,
) -> np.ndarray:
    """Label map (values 1–7) grown from seeds on the CT's own grid, within the seeds' box plus ``margin_mm``."""
    grid = Grid(image.shape, ijk_to_ras)
    spacing = grid.spacing_kji
    all_points = np.vstack([np.vstack(points) for points in seeds.values()])
    inside = grid.contains_ras(all_points)
    if not inside.all():
        outside = all_points[~inside][0]
        raise InputError(f"a seed at ({', '.join(f'{v:.1f}' for v in outside)}) RAS mm lies outside the image")
    kji = grid.ras_to_kji(all_points)
    pad = np.ceil(margin_mm / spacing).astype(int)
    low = np.maximum(np.floor(kji.min(axis=0)).astype(int) - pad, 0)
    high = np.minimum(np.ceil(kji.max(axis=0)).astype(int) + pad + 1, image.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    crop = image[box]
    seed_map = np.zeros(crop.shape, np.uint8)
    structure_seeds = np.zeros(crop.shape, bool)
    for value, points in seeds.items():
        marks = np.zeros(crop.shape, bool)
        for point in points:
            k = np.round(grid.ras_to_kji(point)[0]).astype(int) - low
            marks[tuple(np.clip(k, 0, np.array(crop.shape) - 1))] = True
        ball = ndimage.distance_transform_edt(~marks, sampling=spacing) <= seed_radius_mm
        seed_map[ball] = value
        if value != BACKGROUND:
            structure_seeds |= ball
    # Background: whatever is as dark as fat or darker (fat, lung, air) away from every structure seed.
    far = ndimage.distance_transform_edt(~structure_seeds, sampling=spacing) > 5.0
    seed_map[(ndimage.uniform_filter(crop.astype(np.float32), 3) < -30.0) & far & (seed_map == 0)] = BACKGROUND

    grow = slicer.vtkImageGrowCutSegment()
    grow.SetIntensityVolume(_vtk_image(crop.astype(np.int16), spacing[::-1], vtk.VTK_SHORT))
    grow.SetSeedLabelVolume(_vtk_image(seed_map, spacing[::-1], vtk.VTK_UNSIGNED_CHAR))
    grow.SetDistancePenalty(0.0)
    grow.Update()
    output = grow.GetOutput()
    grown = numpy_support.vtk_to_numpy(output.GetPointData().GetScalars()).reshape(crop.shape).astype(np.uint8)
    grown[grown == BACKGROUND] = 0
    grown = clean_islands_and_smooth(grown, spacing, smoothing_mm)
    labels = np.zeros(image.shape, np.uint8)
    labels[box] = grown
    return labels


def clean_islands_and_smooth(labels: np.ndarray, spacing: np.ndarray, smoothing_mm: float = 1.0) -> np.ndarray:
    """Per structure: largest connected piece, holes filled, median smoothing of ``smoothing_mm`` radius."""
    result = np.zeros_like(labels)
    size = tuple(int(max(1, 2 * round(smoothing_mm / s) + 1)) for s in spacing)
    for value in np.unique(labels):
        if value == 0:
            continue
        mask = labels == value
        if smoothing_mm > 0:
            mask = ndimage.median_filter(mask.astype(np.uint8), size=size).astype(bool)
        parts, count = ndimage.label(mask)
        if count > 1:
            sizes = np.bincount(parts.ravel())
            sizes[0] = 0
            mask = parts == int(np.argmax(sizes))
        mask = ndimage.binary_fill_holes(mask)
        result[mask & (result == 0)] = value
    return result
