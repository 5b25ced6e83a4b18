"""Sunnybrook Cardiac Data (Radau et al. 2009, CC0): the manual reference for LV volumes and EF.

The validation scripts, the model-training evaluation and researchers checking a model on their own copy of the
data read the manual contours through this one reader.

Each manual endocardial contour (``IM-0001-NNNN-icontour-manual.txt``, pixel x y pairs) belongs to image
``NNNN.dcm``; its slice and phase are found from that file's own ImagePositionPatient and TriggerTime, so the
reference never relies on file numbering. Manual volumes are disc summations of the contour polygon areas
(shoelace formula) × the slice spacing of the series, as the automatic method uses.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from skimage.draw import polygon as fill_polygon

from CardiacSuiteLib.imagedata import ImageSeries
from CMRAnalysisLib import volumes


@dataclass
class ManualReference:
    patient: str
    ed_phase: int
    es_phase: int
    edv_ml: float
    esv_ml: float
    contoured_slices: dict[int, list[int]]  # phase → slice indices with a manual contour
    masks: dict[int, np.ndarray] = field(repr=False, default_factory=dict)  # phase → [K, J, I] filled contours

    @property
    def ef_pct(self) -> float:
        return 100.0 * (self.edv_ml - self.esv_ml) / self.edv_ml


def patients(root: Path) -> list[tuple[str, Path, Path]]:
    """(patient id, DICOM folder, i-contour folder) for every patient listed in ``link.csv``."""
    rows = list(csv.DictReader(open(root / "link.csv", newline="")))
    return [
        (row["patient_id"], root / "dicoms" / row["patient_id"], root / "contourfiles" / row["original_id"] / "i-contours")
        for row in rows
    ]


def polygon_area_px(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def manual_reference(patient: str, dicom_folder: Path, contour_folder: Path, series: ImageSeries) -> ManualReference:
    inverse = np.linalg.inv(series.ijk_to_ras)
    phase_of = _phase_numbers(dicom_folder)
    pixel_area = volumes.in_plane_pixel_area_mm2(series.ijk_to_ras)
    spacing = volumes.slice_spacing_mm(series.ijk_to_ras)
    areas: dict[int, dict[int, float]] = {}
    masks: dict[int, np.ndarray] = {}
    for contour_file in sorted(contour_folder.glob("IM-0001-*-icontour-manual.txt")):
        number = int(contour_file.name.split("-")[2])
        header = pydicom.dcmread(dicom_folder / f"{number}.dcm", stop_before_pixels=True)
        lps = np.array([float(v) for v in header.ImagePositionPatient])
        k = int(round((inverse @ np.array([-lps[0], -lps[1], lps[2], 1.0]))[2]))
        phase = phase_of[f"{number}.dcm"]
        points = np.loadtxt(contour_file)
        areas.setdefault(phase, {})[k] = polygon_area_px(points) * pixel_area
        mask = masks.setdefault(phase, np.zeros(series.frames.shape[1:], bool))
        rr, cc = fill_polygon(points[:, 1], points[:, 0], mask.shape[1:])
        mask[k, rr, cc] = True
    if len(areas) != 2:
        raise ValueError(f"{patient}: expected contours at two phases, found {sorted(areas)}")
    volume = {phase: sum(a.values()) * spacing / 1000.0 for phase, a in areas.items()}
    ed, es = sorted(volume, key=volume.get, reverse=True)
    return ManualReference(
        patient, ed, es, volume[ed], volume[es], {p: sorted(a) for p, a in areas.items()}, masks
    )


def _phase_numbers(dicom_folder: Path) -> dict[str, int]:
    """Phase of every file: the rank of its TriggerTime among the images at the same position."""
    by_position: dict[tuple, list[tuple[float, str]]] = {}
    for path in dicom_folder.glob("*.dcm"):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        key = tuple(round(float(v), 2) for v in header.ImagePositionPatient)
        by_position.setdefault(key, []).append((float(header.TriggerTime), path.name))
    return {name: rank for items in by_position.values() for rank, (_, name) in enumerate(sorted(items))}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / total) if total else 1.0
