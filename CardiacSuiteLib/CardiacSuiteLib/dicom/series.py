"""Read a DICOM series into an ``ImageSeries``: slices ordered in space, phases ordered in time.

One path serves classic single-frame series (a cine is slices × phases of separate files, a CT is one file per
slice), enhanced multi-frame objects (frames described by their functional groups) and merged per-slice cine
stacks: every image is a ``FrameRecord``, slices come from positions along the normal and phases from trigger
times. Reading is pure: nothing here touches a scene, so a failure leaves nothing half loaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..imagedata import ImageSeries
from . import geometry
from .discovery import (
    DicomScan,
    FrameRecord,
    SeriesSummary,
    frame_records,
    quiet_pydicom,
    read_header,
    scan_folder,
    series_info,
    summarise_records,
)

UNITS = {
    "MagneticFieldStrength": "T",
    "SliceThickness": "mm",
    "SpacingBetweenSlices": "mm",
    "SliceSpacing": "mm",
    "PixelSpacing": "mm",
    "NominalInterval": "ms",
    "HeartRate": "1/min",
    "TriggerTimes": "ms",
}

# The order in which phase keys are tried, with the words a warning uses for each.
PHASE_KEYS = (
    ("trigger_time", "TriggerTime"),
    ("temporal_position", "TemporalPositionIdentifier"),
    ("instance_number", "InstanceNumber (or frame order)"),
)


def select_series(scan: DicomScan, series_uid: str | None = None) -> SeriesSummary:
    """The one series to load from a scanned folder; InputError when there is none or the choice is open."""
    folder = scan.folder
    if series_uid:
        summary = scan.find(series_uid)
        if summary is None:
            listing = "; ".join(s.describe() for s in scan.series) or "none"
            raise InputError(f"{folder}: no series with UID {series_uid}; series found: {listing}")
        return summary
    if not scan.series:
        raise InputError(_nothing_loadable(scan))
    if len(scan.series) > 1:
        listing = "; ".join(f"[{n + 1}] {s.describe()}" for n, s in enumerate(scan.series))
        raise InputError(
            f"{folder} holds {len(scan.series)} DICOM series: {listing}. Choose the one to load by its "
            "series UID"
        )
    return scan.series[0]


def _nothing_loadable(scan: DicomScan) -> str:
    folder = scan.folder
    if scan.num_files == 0:
        return (
            f"{folder}: the folder is empty (no files in it or its subfolders); point at the folder holding the "
            "DICOM files"
        )
    if scan.unreadable:
        path, reason = scan.unreadable[0]
        return (
            f"{path}: DICOM file could not be read ({reason}); {len(scan.unreadable)} such file(s) and no readable "
            "series in the folder — the export may be damaged, copy it again"
        )
    if scan.ignored and not scan.non_dicom_files:
        kinds = sorted({reason for _, reason in scan.ignored})
        return f"{folder}: no DICOM images, only {', '.join(kinds)}; point at the folder holding the image files"
    image_files = [
        p.name for p in sorted(folder.rglob("*"))
        if p.name.lower().endswith((".nrrd", ".nii", ".nii.gz", ".mha", ".mhd"))
    ][:3]
    hint = f"; it holds image files ({', '.join(image_files)}): pass one of them instead" if image_files else (
        "; pass a DICOM folder or an image file (.nrrd, .nii.gz, .mha)"
    )
    return f"{folder}: no DICOM files among its {scan.num_files} files{hint}"


def read_dicom_folder(folder: str | os.PathLike, series_uid: str | None = None) -> ImageSeries:
    """Load the folder's single series (or merged cine stack), or the one named by ``series_uid``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    scan = scan_folder(folder)
    summary = select_series(scan, series_uid)
    series = read_series(summary)
    series.source = str(folder)
    skipped = len(scan.unreadable)
    if skipped:
        path, reason = scan.unreadable[0]
        series.warnings.append(f"{skipped} DICOM file(s) in the folder could not be read, e.g. {path} ({reason})")
    return series


def read_dicom_file(path: str | os.PathLike) -> ImageSeries:
    """Load one DICOM file on its own: a single image, or a multi-frame object (a cine in one file)."""
    path = Path(path)
    try:
        dataset = read_header(path)
    except ValueError as exc:
        raise InputError(f"{path}: DICOM file could not be read ({exc}); the file may be damaged") from None
    if dataset is None:
        raise InputError(f"{path}: not a DICOM file")
    with quiet_pydicom():
        info = series_info(dataset)
        try:
            records = frame_records(dataset, path)
        except Exception as exc:
            raise InputError(f"{path}: malformed multi-frame header ({type(exc).__name__}: {exc})") from None
    summary = summarise_records(str(info.get("SeriesInstanceUID", path.name)), records, info, 1)
    series = read_series(summary)
    series.source = str(path)
    return series


def read_series(summary: SeriesSummary) -> ImageSeries:
    """Read a discovered series into frames ``[phase, slice, row, column]`` with its exact geometry."""
    records = summary.records
    if not records:
        raise InputError(f"{summary.folder}: series {summary.uid} holds no images")
    warnings: list[str] = list(summary.notes)
    _check_pixel_grid(records)

    nominal = all(r.position is None and r.orientation is None for r in records) and all(
        r.frame is not None for r in records
    ) and len({r.path for r in records}) == 1
    if nominal:
        plane, slice_of, layout = _nominal_geometry(summary, warnings)
    else:
        plane, slice_of, layout = _stack_geometry(records)
    warnings.extend(layout.warnings)

    num_slices = len(layout.projections)
    by_slice: list[list[int]] = [[] for _ in range(num_slices)]
    for index, k in enumerate(slice_of):
        by_slice[k].append(index)
    phase_key, ordered = _order_phases(records, by_slice)
    if phase_key is not None and phase_key != "trigger_time":
        name = dict(PHASE_KEYS)[phase_key]
        warnings.append(f"phases ordered by {name}: the images carry no usable TriggerTime")
    num_phases = len(ordered[0])

    frames = np.empty((num_phases, num_slices, records[0].rows, records[0].columns), dtype=np.float32)
    placement = {index: (phase, k) for k, indices in enumerate(ordered) for phase, index in enumerate(indices)}
    _read_pixels(records, placement, frames)

    origin = layout.positions[0]
    matrix = geometry.ijk_to_ras_matrix(origin, plane, layout.spacing)
    frame_times = None
    if phase_key == "trigger_time":
        times = np.array([[records[i].trigger_time for i in slice_indices] for slice_indices in ordered])
        frame_times = [float(t) for t in times.mean(axis=0)]

    metadata = _metadata(summary, records, layout, num_phases, num_slices, phase_key, frame_times)
    return ImageSeries(
        frames=frames,
        ijk_to_ras=matrix,
        frame_times_ms=frame_times,
        name=_series_name(summary),
        modality=summary.modality,
        source=str(summary.folder),
        metadata=metadata,
        warnings=warnings,
    )


# ---------------------------------------------------------------------------------------------- checks


def _check_pixel_grid(records: list[FrameRecord]) -> None:
    first = records[0]
    for record in records:
        if record.rows is None or record.columns is None:
            raise InputError(f"{record.path}: no Rows/Columns in the header; the file is not a complete image")
        if record.samples_per_pixel != 1:
            raise InputError(
                f"{record.path}: colour image ({record.samples_per_pixel} samples per pixel); only greyscale "
                "images can be analysed — export the original greyscale series"
            )
        if (record.rows, record.columns) != (first.rows, first.columns):
            raise InputError(
                f"{record.label}: {record.rows}×{record.columns} pixels, but {first.short_label} has "
                f"{first.rows}×{first.columns}; one series must share one pixel grid — separate the acquisitions"
            )


def _require(record: FrameRecord, attribute: str, keyword: str) -> None:
    if getattr(record, attribute) is None:
        where = f"frame {record.frame + 1}" if record.frame is not None else "the header"
        raise InputError(
            f"{record.path}: no {keyword} in {where}; "
            "without it the image cannot be placed in the patient — export the series with its geometry "
            "(the original scanner or PACS export, not a screen capture or anonymised copy that stripped it)"
        )


def _stack_geometry(records: list[FrameRecord]):
    for record in records:
        _require(record, "position", "ImagePositionPatient")
        _require(record, "orientation", "ImageOrientationPatient")
        _require(record, "pixel_spacing", "PixelSpacing")
    first = records[0]
    try:
        row, column = geometry.orientation_vectors(first.orientation)
    except ValueError as exc:
        raise InputError(f"{first.path}: {exc}") from None
    for record in records:
        if not geometry.same_orientation(record.orientation, first.orientation):
            raise InputError(
                f"{record.label}: ImageOrientationPatient {_fmt(record.orientation)} differs from "
                f"{_fmt(first.orientation)} in {first.short_label}; the series mixes slice orientations (e.g. a "
                "3-plane localizer) that one volume cannot hold — separate the files by orientation"
            )
        if not geometry.same_spacing(record.pixel_spacing, first.pixel_spacing):
            raise InputError(
                f"{record.label}: PixelSpacing {_fmt(record.pixel_spacing)} differs from "
                f"{_fmt(first.pixel_spacing)} in {first.short_label}; one series must share one pixel grid — "
                "separate the acquisitions"
            )
    plane = geometry.PlaneGeometry(row, column, tuple(first.pixel_spacing))
    positions = np.array([r.position for r in records])
    slice_of, projections = geometry.cluster_positions(positions, plane.normal)
    slice_positions = np.array([positions[slice_of == k].mean(axis=0) for k in range(len(projections))])
    thickness = _median([r.slice_thickness for r in records])
    between = _median([r.spacing_between_slices for r in records])
    try:
        layout = geometry.stack_layout(slice_positions, plane.normal, plane.pixel_spacing, thickness, between)
    except ValueError as exc:
        raise InputError(
            f"{first.path.parent}: {exc}; one volume cannot hold these slices — resample them in the scanner "
            "software or load them as separate series"
        ) from None
    return plane, slice_of, layout


def _nominal_geometry(summary: SeriesSummary, warnings: list[str]):
    """Geometry for an old multi-frame object without patient coordinates (one slice, frames in time)."""
    first = summary.records[0]
    rows, columns = first.rows, first.columns
    spacing = first.pixel_spacing
    source = "PixelSpacing"
    if spacing is None and len(summary.info.get("ImagerPixelSpacing", [])) == 2:
        spacing, source = tuple(summary.info["ImagerPixelSpacing"]), "ImagerPixelSpacing"
    if spacing is None and summary.info.get("FieldOfViewDimensions"):
        fov = summary.info["FieldOfViewDimensions"]
        fov_rows, fov_columns = (fov[0], fov[-1])
        spacing, source = (fov_rows / rows, fov_columns / columns), "FieldOfViewDimensions / matrix size"
    if spacing is None:
        spacing, source = (1.0, 1.0), "nothing (1 mm assumed)"
    warnings.append(
        f"{first.path.name} has no ImagePositionPatient/ImageOrientationPatient: frames are taken as one slice "
        f"over time, placed at the origin in an axial orientation, with pixel spacing "
        f"{spacing[0]:.4g}×{spacing[1]:.4g} mm from {source}; distances are approximate and the image is not "
        "registered to the patient"
    )
    plane = geometry.PlaneGeometry(np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), tuple(spacing))
    layout = geometry.stack_layout(np.zeros((1, 3)), plane.normal, plane.pixel_spacing, first.slice_thickness)
    return plane, np.zeros(len(summary.records), dtype=int), layout


def _order_phases(records: list[FrameRecord], by_slice: list[list[int]]) -> tuple[str | None, list[list[int]]]:
    """Images of each slice in time order, and the key used (None when every slice holds one image)."""
    if all(len(indices) == 1 for indices in by_slice):
        key = "trigger_time" if all(records[i[0]].trigger_time is not None for i in by_slice) else None
        return key, by_slice
    for key, name in PHASE_KEYS:
        values = [getattr(r, key) for r in records]
        if any(v is None for v in values) or len(set(values)) == 1:
            continue  # absent, or the same everywhere (e.g. TriggerTime 0 in a non-gated series): no order in it
        ordered = []
        for k, indices in enumerate(by_slice):
            indices = sorted(indices, key=lambda i: (getattr(records[i], key), str(records[i].path), records[i].frame or 0))
            for a, b in zip(indices, indices[1:]):
                if getattr(records[a], key) == getattr(records[b], key):
                    raise InputError(
                        f"{records[b].label}: same slice position {_fmt(records[b].position or ())} and same "
                        f"{name} ({getattr(records[b], key):g}) as {records[a].short_label}; a series must hold one "
                        "image per position and phase (repeated acquisition, or magnitude and phase images mixed?) — "
                        "separate them and load one"
                    )
            ordered.append(indices)
        counts = [len(indices) for indices in ordered]
        if len(set(counts)) > 1:
            expected = max(set(counts), key=lambda c: (counts.count(c), c))
            k = next(k for k, c in enumerate(counts) if c != expected)
            raise InputError(
                f"{records[ordered[k][0]].label}: its slice position {_fmt(records[ordered[k][0]].position or ())} has "
                f"{counts[k]} phases but the other slices have {expected} (phases per slice: "
                f"{', '.join(map(str, counts))}); every slice needs the same "
                "number of phases — the export may be incomplete, copy the series again"
            )
        return key, ordered
    k = next(k for k, indices in enumerate(by_slice) if len(indices) > 1)
    a, b = by_slice[k][:2]
    raise InputError(
        f"{records[b].label}: shares its slice position {_fmt(records[b].position or ())} with "
        f"{records[a].short_label} and nothing orders them in time (no distinct TriggerTime, "
        "TemporalPositionIdentifier or InstanceNumber); a series must hold one image per position and phase — "
        "separate the images"
    )


# ---------------------------------------------------------------------------------------------- pixels


def _read_pixels(records: list[FrameRecord], placement: dict[int, tuple[int, int]], frames: np.ndarray) -> None:
    import pydicom

    by_file: dict[Path, list[int]] = {}
    for index, record in enumerate(records):
        by_file.setdefault(record.path, []).append(index)
    rows, columns = frames.shape[2:]
    for path, indices in by_file.items():
        try:
            with quiet_pydicom():
                dataset = pydicom.dcmread(path)
                pixels = dataset.pixel_array
        except Exception as exc:  # pydicom raises many types for damaged or undecodable pixel data
            raise InputError(_pixel_error(path, exc)) from None
        multiframe = records[indices[0]].frame is not None
        expected = (rows, columns) if not multiframe else None
        if multiframe:
            count = int(dataset.get("NumberOfFrames", 1) or 1)
            if pixels.ndim == 2:
                pixels = pixels[np.newaxis]
            if pixels.shape != (count, rows, columns):
                raise InputError(
                    f"{path}: pixel data holds an array of shape {pixels.shape}, expected {(count, rows, columns)}; "
                    "the file is damaged — copy it again"
                )
        elif pixels.shape != expected:
            raise InputError(
                f"{path}: pixel data has shape {pixels.shape}, expected {expected}; the file is damaged — copy it "
                "again"
            )
        for index in indices:
            record = records[index]
            image = pixels[record.frame] if multiframe else pixels
            phase, k = placement[index]
            frames[phase, k] = image.astype(np.float32) * np.float32(record.slope) + np.float32(record.intercept)


def _pixel_error(path: Path, exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, EOFError) or any(word in lowered for word in ("length", "truncat", "shorter", "expected")):
        return f"{path}: pixel data is shorter than the header says ({text}); the file is truncated — copy it again"
    if "no pixel data" in lowered or isinstance(exc, AttributeError):
        return f"{path}: the file holds no pixel data; it is not an image — remove it from the folder"
    if "handler" in lowered or "decod" in lowered or "plugin" in lowered:
        return (
            f"{path}: compressed pixel data that cannot be decoded here ({text}); export the series uncompressed "
            "(e.g. with dcmdjpeg or gdcmconv --raw) and load that"
        )
    return f"{path}: pixel data could not be read ({type(exc).__name__}: {text})"


# ---------------------------------------------------------------------------------------------- metadata


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _series_name(summary: SeriesSummary) -> str:
    if summary.description:
        return summary.description
    parts = [summary.patient_id, summary.modality]
    if summary.series_number is not None:
        parts.append(f"series {summary.series_number}")
    return " ".join(p for p in parts if p) or "DICOM series"


def _metadata(
    summary: SeriesSummary,
    records: list[FrameRecord],
    layout: geometry.StackLayout,
    num_phases: int,
    num_slices: int,
    phase_key: str | None,
    frame_times: list[float] | None,
) -> dict:
    info = summary.info
    metadata: dict = {}
    for key in ("PatientID", "StudyInstanceUID", "StudyDate", "SeriesDescription", "SeriesNumber", "Manufacturer",
                "ManufacturerModelName", "FrameOfReferenceUID", "ProtocolName"):
        if key in info:
            metadata[key] = info[key]
    metadata["SeriesInstanceUID"] = summary.uid
    metadata["SeriesInstanceUIDs"] = list(summary.series_uids)
    if "MagneticFieldStrength" in info:
        try:
            metadata["MagneticFieldStrength"] = float(info["MagneticFieldStrength"])
        except ValueError:
            pass
    thickness = _median([r.slice_thickness for r in records])
    if thickness is not None:
        metadata["SliceThickness"] = thickness
    between = _median([r.spacing_between_slices for r in records])
    if between is not None:
        metadata["SpacingBetweenSlices"] = between
    metadata["SliceSpacing"] = layout.spacing
    metadata["PixelSpacing"] = [float(v) for v in records[0].pixel_spacing] if records[0].pixel_spacing else None
    for key, attribute in (("NominalInterval", "nominal_interval"), ("HeartRate", "heart_rate")):
        values = [getattr(r, attribute) for r in records if getattr(r, attribute) is not None]
        if values:
            metadata[key] = float(np.mean(values))
            if min(values) != max(values):
                metadata[f"{key}Range"] = [float(min(values)), float(max(values))]
    metadata["NumberOfPhases"] = num_phases
    metadata["NumberOfSlices"] = num_slices
    metadata["PhaseOrder"] = dict(PHASE_KEYS)[phase_key] if phase_key and num_phases > 1 else "single phase"
    if frame_times is not None:
        metadata["TriggerTimes"] = frame_times
    metadata["NumberOfFiles"] = summary.num_files
    metadata["units"] = {key: unit for key, unit in UNITS.items() if key in metadata} | {
        f"{key}Range": UNITS[key] for key in ("NominalInterval", "HeartRate") if f"{key}Range" in metadata
    }
    return metadata
