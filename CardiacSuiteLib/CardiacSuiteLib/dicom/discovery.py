"""Find the DICOM series in a folder tree from their headers alone.

Headers are read without pixel data and every image (or every frame of a multi-frame object) becomes a
``FrameRecord`` holding what ordering and geometry need. Records are grouped by SeriesInstanceUID; a cine
stored as one series per slice position (GE and Siemens do this) is then merged back into one stack.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import geometry

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# Objects that carry no image to load, even where they have Rows (a SEG is a label map, not an input image).
NON_IMAGE_MODALITIES = {"SR", "PR", "KO", "SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "REG", "DOC", "PLAN", "FID"}
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
FRAME_TIME_TAG = 0x00181063
FRAME_TIME_VECTOR_TAG = 0x00181065


@dataclass
class FrameRecord:
    """One 2D image: a single-frame file, or one frame of a multi-frame object."""

    path: Path
    frame: int | None  # index in a multi-frame object; None for a single-frame file
    position: tuple[float, float, float] | None  # ImagePositionPatient, LPS mm
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (6)
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) mm
    rows: int | None
    columns: int | None
    samples_per_pixel: int = 1
    trigger_time: float | None = None  # ms after the R wave
    temporal_position: int | None = None  # TemporalPositionIdentifier / TemporalPositionIndex
    instance_number: int | None = None  # InstanceNumber, or frame number within a multi-frame object
    slope: float = 1.0
    intercept: float = 0.0
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    nominal_interval: float | None = None  # RR interval, ms
    heart_rate: float | None = None  # beats per minute
    series_uid: str = ""
    sop_instance_uid: str = ""
    nominal_percentage: float | None = None  # NominalPercentageOfCardiacPhase: % of the R-R interval (4D CT)
    image_comments: str = ""  # where some CT scanners write the reconstructed phase ('75%')
    temporal_positions: int | None = None  # NumberOfTemporalPositions

    @property
    def label(self) -> str:
        """The file (and frame) for messages, with its full path."""
        return str(self.path) if self.frame is None else f"{self.path} frame {self.frame + 1}"

    @property
    def short_label(self) -> str:
        return self.path.name if self.frame is None else f"{self.path.name} frame {self.frame + 1}"


@dataclass
class SeriesSummary:
    """A loadable series (or a cine stack merged from one series per slice) and what it holds."""

    uid: str
    description: str
    modality: str
    num_files: int
    num_positions: int
    num_phases: int
    folder: Path
    series_uids: tuple[str, ...] = ()  # more than one for a merged stack, in slice order
    study_uid: str = ""
    patient_id: str = ""
    series_number: int | None = None
    records: list[FrameRecord] = field(default_factory=list, repr=False)
    info: dict = field(default_factory=dict, repr=False)  # series-level header values
    notes: list[str] = field(default_factory=list)  # what discovery did that a reader should know

    @property
    def is_merged(self) -> bool:
        return len(self.series_uids) > 1

    def describe(self) -> str:
        """One line for listings: uid, description, modality and counts."""
        description = self.description or "(no description)"
        merged = f", merged from {len(self.series_uids)} series" if self.is_merged else ""
        counts = f"{_plural(self.num_positions, 'slice position')} × {_plural(self.num_phases, 'phase')}"
        return (
            f"{self.uid}  '{description}'  {self.modality or '?'}  {self.num_files} files, "
            f"{counts}{merged}  [{self.folder}]"
        )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass
class DicomScan:
    """What a folder holds: loadable series, and what was skipped."""

    folder: Path
    series: list[SeriesSummary]
    non_dicom_files: int = 0
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # DICOM-looking files that failed to parse
    ignored: list[tuple[Path, str]] = field(default_factory=list)  # DICOMDIR, reports, presentation states…
    num_files: int = 0

    def find(self, uid: str) -> SeriesSummary | None:
        """The series with this UID; a member UID of a merged cine stack selects the whole stack."""
        for summary in self.series:
            if summary.uid == uid or uid in summary.series_uids:
                return summary
        return None


# ---------------------------------------------------------------------------------------------- headers


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's value validation: real files break VR rules (UIDs with leading zeros) and still load."""
    import pydicom.config

    settings = pydicom.config.settings
    previous = settings.reading_validation_mode
    settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        settings.reading_validation_mode = previous


def _looks_like_dicom(path: Path) -> tuple[bool, bool]:
    """(has the DICM preamble, starts like a preamble-less dataset)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False, False
    return head[128:132] == b"DICM", head[:2] in (b"\x08\x00", b"\x02\x00")


def read_header(path: Path) -> Dataset | None:
    """The dataset without pixel data; None when the file is not DICOM. Raises ValueError for a broken DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    has_preamble, bare = _looks_like_dicom(path)
    if not has_preamble and not bare:
        return None
    try:
        with quiet_pydicom():
            dataset = pydicom.dcmread(path, stop_before_pixels=True, force=not has_preamble)
    except InvalidDicomError:
        return None
    except Exception as exc:  # pydicom raises many types for damaged files
        if not has_preamble:
            return None
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    if not has_preamble and "SOPClassUID" not in dataset and "SeriesInstanceUID" not in dataset:
        return None
    return dataset


def _float(value) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if np.isfinite(result) else None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _floats(value, count: int) -> tuple[float, ...] | None:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return values if len(values) == count and all(np.isfinite(values)) else None


def _float_list(value) -> list[float]:
    """A DICOM value of one or more numbers as a list; [] when absent or not numeric."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return []


def _item(sequence_holder, keyword: str):
    """First item of a functional-group macro sequence, or None."""
    if sequence_holder is None:
        return None
    sequence = sequence_holder.get(keyword)
    if sequence is None or len(sequence) == 0:
        return None
    return sequence[0]


def _group_value(groups: list, macro: str, keyword: str):
    """A value from the first functional group (per-frame, then shared) that has it."""
    for group in groups:
        item = _item(group, macro)
        if item is not None and keyword in item:
            value = item.get(keyword)
            if value is not None and value != "":
                return value
    return None


def is_multiframe(dataset) -> bool:
    """Enhanced or legacy multi-frame (a classic file may carry an empty per-frame sequence, as GE's do)."""
    frames = _int(dataset.get("NumberOfFrames"))
    return (frames is not None and frames > 1) or "SharedFunctionalGroupsSequence" in dataset


def frame_records(dataset, path: Path) -> list[FrameRecord]:
    """The images a dataset holds, with what ordering and geometry need; missing values stay None."""
    common = dict(
        path=path,
        rows=_int(dataset.get("Rows")),
        columns=_int(dataset.get("Columns")),
        samples_per_pixel=_int(dataset.get("SamplesPerPixel")) or 1,
        nominal_interval=_float(dataset.get("NominalInterval")),
        heart_rate=_float(dataset.get("HeartRate")),
        series_uid=str(dataset.get("SeriesInstanceUID", "")),
        sop_instance_uid=str(dataset.get("SOPInstanceUID", "")),
        image_comments=str(dataset.get("ImageComments", "") or ""),
        temporal_positions=_int(dataset.get("NumberOfTemporalPositions")),
    )
    top = dict(
        position=_floats(dataset.get("ImagePositionPatient"), 3),
        orientation=_floats(dataset.get("ImageOrientationPatient"), 6),
        pixel_spacing=_floats(dataset.get("PixelSpacing"), 2),
        trigger_time=_float(dataset.get("TriggerTime")),
        temporal_position=_int(dataset.get("TemporalPositionIdentifier")),
        slope=_float(dataset.get("RescaleSlope")) or 1.0,
        intercept=_float(dataset.get("RescaleIntercept")) or 0.0,
        slice_thickness=_float(dataset.get("SliceThickness")),
        spacing_between_slices=_float(dataset.get("SpacingBetweenSlices")),
        nominal_percentage=_float(dataset.get("NominalPercentageOfCardiacPhase")),
    )
    if not is_multiframe(dataset):
        return [FrameRecord(frame=None, instance_number=_int(dataset.get("InstanceNumber")), **common, **top)]

    count = _int(dataset.get("NumberOfFrames")) or 1
    shared = _item(dataset, "SharedFunctionalGroupsSequence")
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence") or []
    frame_times = _legacy_frame_times(dataset, count)
    records = []
    for index in range(count):
        groups = [per_frame[index] if index < len(per_frame) else None, shared]
        values = dict(top)
        position = _floats(_group_value(groups, "PlanePositionSequence", "ImagePositionPatient"), 3)
        orientation = _floats(_group_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        spacing = _floats(_group_value(groups, "PixelMeasuresSequence", "PixelSpacing"), 2)
        thickness = _float(_group_value(groups, "PixelMeasuresSequence", "SliceThickness"))
        between = _float(_group_value(groups, "PixelMeasuresSequence", "SpacingBetweenSlices"))
        trigger = _float(_group_value(groups, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"))
        temporal = _int(_group_value(groups, "FrameContentSequence", "TemporalPositionIndex"))
        slope = _float(_group_value(groups, "PixelValueTransformationSequence", "RescaleSlope"))
        intercept = _float(_group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept"))
        percentage = _float(_group_value(groups, "CardiacSynchronizationSequence", "NominalPercentageOfCardiacPhase"))
        for key, value in (
            ("position", position),
            ("orientation", orientation),
            ("pixel_spacing", spacing),
            ("slice_thickness", thickness),
            ("spacing_between_slices", between),
            ("temporal_position", temporal),
            ("slope", slope),
            ("intercept", intercept),
            ("nominal_percentage", percentage),
        ):
            if value is not None:
                values[key] = value
        if trigger is not None:
            values["trigger_time"] = trigger
        elif frame_times is not None:
            values["trigger_time"] = (top["trigger_time"] or 0.0) + frame_times[index]
        records.append(FrameRecord(frame=index, instance_number=index + 1, **common, **values))
    return records


def _legacy_frame_times(dataset, count: int) -> list[float] | None:
    """Frame times (ms from the first frame) of an old multi-frame cine that steps by FrameTime."""
    pointers = dataset.get("FrameIncrementPointer")
    if pointers is None:
        return None
    pointers = [int(p) for p in ([pointers] if isinstance(pointers, int) else pointers)]
    if FRAME_TIME_VECTOR_TAG in pointers:
        increments = _floats(dataset.get("FrameTimeVector"), count)
        if increments is not None:
            return list(np.cumsum(increments) - increments[0])
    if FRAME_TIME_TAG in pointers:
        frame_time = _float(dataset.get("FrameTime"))
        if frame_time:
            return [index * frame_time for index in range(count)]
    return None


def series_info(dataset) -> dict:
    """Series-level header values kept for metadata and naming."""
    keys = (
        "PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyDescription", "SeriesInstanceUID",
        "SeriesDescription", "SeriesNumber", "Modality", "Manufacturer", "ManufacturerModelName",
        "MagneticFieldStrength", "FrameOfReferenceUID", "SOPClassUID", "BodyPartExamined", "ProtocolName",
        "PhotometricInterpretation", "TransferSyntaxUID",
    )
    file_meta = getattr(dataset, "file_meta", None)
    info = {}
    for key in keys:
        holder = file_meta if key == "TransferSyntaxUID" else dataset
        value = holder.get(key) if holder is not None else None
        if value is not None and value != "":
            info[key] = str(value)
    for key in ("FieldOfViewDimensions", "ImagerPixelSpacing"):
        values = _float_list(dataset.get(key))
        if values:
            info[key] = values
    return info


# ---------------------------------------------------------------------------------------------- scanning


def _walk(folder: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


def scan_folder(folder: str | os.PathLike, merge_stacks: bool = True) -> DicomScan:
    """Every DICOM series under ``folder`` (recursively), from headers only.

    Files that are not DICOM are counted and skipped; DICOMDIR and non-image objects are ignored; copies of
    the same image (same SOPInstanceUID) are kept once. With ``merge_stacks`` a cine stored as one series per
    slice position comes back as one stack.
    """
    folder = Path(folder)
    scan = DicomScan(folder=folder, series=[])
    by_series: dict[str, list[FrameRecord]] = {}
    infos: dict[str, dict] = {}
    files: dict[str, set[Path]] = {}
    seen_instances: dict[str, set[str]] = {}
    duplicates: dict[str, int] = {}
    with quiet_pydicom():  # values are validated when first accessed, not only when parsed
        for path in _walk(folder):
            scan.num_files += 1
            if path.name.upper() == "DICOMDIR":
                scan.ignored.append((path, "DICOMDIR"))
                continue
            try:
                dataset = read_header(path)
            except ValueError as exc:
                scan.unreadable.append((path, str(exc)))
                continue
            if dataset is None:
                scan.non_dicom_files += 1
                continue
            file_meta = getattr(dataset, "file_meta", None)
            meta_class = str(file_meta.get("MediaStorageSOPClassUID", "")) if file_meta is not None else ""
            if meta_class == MEDIA_STORAGE_DIRECTORY or str(dataset.get("SOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
                scan.ignored.append((path, "DICOMDIR"))
                continue
            modality = str(dataset.get("Modality", ""))
            if "Rows" not in dataset or modality in NON_IMAGE_MODALITIES:
                scan.ignored.append((path, f"{modality or 'DICOM'} object without an image to load"))
                continue
            uid = str(dataset.get("SeriesInstanceUID", "")) or f"(no SeriesInstanceUID: {path.parent})"
            sop = str(dataset.get("SOPInstanceUID", ""))
            instances = seen_instances.setdefault(uid, set())
            if sop and sop in instances:
                duplicates[uid] = duplicates.get(uid, 0) + 1
                continue
            instances.add(sop)
            try:
                records = frame_records(dataset, path)
            except Exception as exc:  # a malformed functional group sequence
                scan.unreadable.append((path, f"{type(exc).__name__}: {exc}"))
                continue
            by_series.setdefault(uid, []).extend(records)
            files.setdefault(uid, set()).add(path)
            infos.setdefault(uid, series_info(dataset))

    summaries = []
    for uid, records in by_series.items():
        summary = summarise_records(uid, records, infos[uid], len(files[uid]))
        if duplicates.get(uid):
            summary.notes.append(f"{duplicates[uid]} duplicate copies of images (same SOPInstanceUID) were skipped")
        summaries.append(summary)
    if merge_stacks:
        summaries = merge_cine_stacks(summaries)
    summaries.sort(key=lambda s: (s.study_uid, s.series_number if s.series_number is not None else 1 << 30, s.uid))
    scan.series = summaries
    return scan


def summarise_records(uid: str, records: list[FrameRecord], info: dict, num_files: int) -> SeriesSummary:
    """A summary of one series' records, counting slice positions and phases from the headers."""
    positions, phases = count_positions_and_phases(records)
    paths = sorted({str(r.path.parent) for r in records})
    return SeriesSummary(
        uid=uid,
        description=str(info.get("SeriesDescription", "")),
        modality=str(info.get("Modality", "")),
        num_files=num_files,
        num_positions=positions,
        num_phases=phases,
        folder=Path(os.path.commonpath(paths)),
        series_uids=(uid,),
        study_uid=str(info.get("StudyInstanceUID", "")),
        patient_id=str(info.get("PatientID", "")),
        series_number=_int(info.get("SeriesNumber")),
        records=records,
        info=info,
    )


def count_positions_and_phases(records: list[FrameRecord]) -> tuple[int, int]:
    """Distinct slice positions and the largest number of images at one position (header-level estimate)."""
    with_geometry = [r for r in records if r.position is not None and r.orientation is not None]
    if not with_geometry or len(with_geometry) < len(records):
        return 1, len(records)
    try:
        row, column = geometry.orientation_vectors(with_geometry[0].orientation)
    except ValueError:
        return 1, len(records)
    labels, _ = geometry.cluster_positions(np.array([r.position for r in records]), geometry.slice_normal(row, column))
    counts = np.bincount(labels)
    return len(counts), int(counts.max())


# ---------------------------------------------------------------------------------------------- merging


def description_stem(description: str) -> str:
    """A series description without its numbers: 'SA cine sl 3' and 'SA cine sl 4' share a stem."""
    return re.sub(r"\s+", " ", re.sub(r"\d+", "", description)).strip(" _-.:#").lower()


def _merge_key(summary: SeriesSummary) -> tuple | None:
    records = summary.records
    first = records[0]
    if any(r.position is None or r.orientation is None or r.pixel_spacing is None for r in records):
        return None
    if summary.num_phases < 2:
        return None
    if any(
        not geometry.same_orientation(r.orientation, first.orientation)
        or (r.rows, r.columns) != (first.rows, first.columns)
        or not geometry.same_spacing(r.pixel_spacing, first.pixel_spacing)
        for r in records
    ):
        return None
    return (
        summary.study_uid,
        str(summary.info.get("FrameOfReferenceUID", "")),
        summary.modality,
        description_stem(summary.description),
        first.rows,
        first.columns,
        summary.num_phases,
    )


def merge_cine_stacks(summaries: list[SeriesSummary]) -> list[SeriesSummary]:
    """Merge series that are slices of one cine stack.

    Members must share study, frame of reference, modality, description stem, orientation, pixel grid and phase
    count, and sit at distinct positions along one slice normal. A group that fails any check stays unmerged.
    """
    groups: list[list[SeriesSummary]] = []
    keys: list[tuple] = []
    result: list[SeriesSummary] = []
    for summary in summaries:
        key = _merge_key(summary)
        if key is None:
            result.append(summary)
            continue
        first = summary.records[0]
        for index, (group_key, group) in enumerate(zip(keys, groups)):
            other = group[0].records[0]
            if (
                group_key == key
                and geometry.same_orientation(first.orientation, other.orientation, 1e-3)
                and geometry.same_spacing(first.pixel_spacing, other.pixel_spacing)
            ):
                group.append(summary)
                break
        else:
            keys.append(key)
            groups.append([summary])

    for group in groups:
        merged = _merge_group(group) if len(group) > 1 else None
        result.extend([merged] if merged is not None else group)
    return result


def _merge_group(group: list[SeriesSummary]) -> SeriesSummary | None:
    first = group[0].records[0]
    row, column = geometry.orientation_vectors(first.orientation)
    normal = geometry.slice_normal(row, column)
    records = [r for s in group for r in s.records]
    positions = np.array([r.position for r in records])
    labels, projections = geometry.cluster_positions(positions, normal)
    if len(projections) != sum(s.num_positions for s in group):
        return None  # two series share a slice position: repeated acquisitions, not one stack
    if geometry.in_plane_offsets(positions, normal).max() > max(0.1 * min(first.pixel_spacing), 0.05):
        return None
    ordered = sorted(group, key=lambda s: float(np.mean([np.dot(r.position, normal) for r in s.records])))
    lead = ordered[0]
    folders = [str(s.folder) for s in ordered]
    return SeriesSummary(
        uid=lead.uid,
        description=lead.description,
        modality=lead.modality,
        num_files=sum(s.num_files for s in ordered),
        num_positions=len(projections),
        num_phases=lead.num_phases,
        folder=Path(os.path.commonpath(folders)),
        series_uids=tuple(s.uid for s in ordered),
        study_uid=lead.study_uid,
        patient_id=lead.patient_id,
        series_number=lead.series_number,
        records=records,
        info=dict(lead.info),
        notes=[n for s in ordered for n in s.notes]
        + [f"cine stack merged from {len(ordered)} series, one per slice position"],
    )
