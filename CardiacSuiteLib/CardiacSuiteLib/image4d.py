"""4D images (one 3D volume per cardiac phase or time point) as a stack of phases that are read one at a time.

A 20-phase 512×512×300 CT study is 3 GB as 16-bit integers and 6 GB as floats, more than a workstation should
hold at once beside everything else. Every 4D input (a DICOM folder, a Slicer ``.seq.nrrd``, a 4D NIfTI, a set
of 3D files, a sequence node in a scene, an in-memory ``ImageSeries``) is therefore a ``PhaseStack``: each
phase is read on demand, and inputs that interleave the phases on disk (``.seq.nrrd`` stores the phase axis
fastest) are unpacked once, streaming, into one temporary raw file per phase that is memory-mapped when read.

The file formats themselves are parsed by ``imageio`` (one header reader per format, shared with the in-memory
readers) and ``imageio.write_seq_nrrd`` writes a stack back; DICOM phases are found and ordered by
``dicom.cardiac4d``.
"""

from __future__ import annotations

import abc
import gzip
import os
import re
import shutil
import tempfile
import weakref
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from . import imageio
from .errors import InputError
from .imagedata import ImageSeries

PERCENT = "%"
#: Sequence index of a 4D CT: the nominal cardiac phase in percent of the R-R interval when known.
PHASE_INDEX_NAME = "cardiac phase"

# Geometry of two phases is "the same" within these tolerances (mm, and direction cosines).
POSITION_TOLERANCE_MM = 0.01
DIRECTION_TOLERANCE = 1e-4

ProgressCallback = Callable[[float, str], None]


def format_index(value: float, unit: str) -> str:
    """An index value as the user reads it: '40 %', '350 ms', or '3' when it has no unit."""
    text = f"{value:g}"
    return f"{text} {unit}" if unit else text


class PhaseStack(abc.ABC):
    """Phases of one 4D image on one grid; ``read(n)`` returns phase ``n`` as ``[K, J, I]``."""

    def __init__(
        self,
        count: int,
        ijk_to_ras: np.ndarray,
        shape: tuple[int, int, int],
        dtype,
        index_values: Sequence[float],
        index_name: str = PHASE_INDEX_NAME,
        index_unit: str = PERCENT,
        name: str = "4D CT",
        source: str = "",
    ):
        if len(index_values) != count:
            raise ValueError(f"{len(index_values)} index values for {count} phases")
        self.count = int(count)
        self.ijk_to_ras = np.asarray(ijk_to_ras, dtype=float)
        self.shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self.index_values = [float(v) for v in index_values]
        self.index_name = index_name
        self.index_unit = index_unit
        self.name = name
        self.source = source
        self.metadata: dict = {}
        self.warnings: list[str] = []

    @abc.abstractmethod
    def read(self, index: int) -> np.ndarray:
        """Phase ``index`` as ``[K, J, I]``; each subclass reads it from where its phases live."""

    def __len__(self) -> int:
        return self.count

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return tuple(float(v) for v in np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0))

    @property
    def phase_bytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def index_label(self, index: int) -> str:
        """'40 %', '350 ms' or '3': how a phase is named to the user."""
        return format_index(self.index_values[index], self.index_unit)

    def close(self) -> None:
        """Release temporary files (also done when the stack is garbage-collected)."""


class ArrayPhases(PhaseStack):
    """Phases already in memory (``[T, K, J, I]``), e.g. a small study or a phantom."""

    def __init__(self, frames: np.ndarray, ijk_to_ras: np.ndarray, index_values=None, **kwargs):
        frames = np.asarray(frames)
        if frames.ndim != 4:
            raise ValueError(f"phases need an array [T, K, J, I], got shape {frames.shape}")
        values = list(index_values) if index_values is not None else list(range(frames.shape[0]))
        kwargs.setdefault("index_unit", "" if index_values is None else PERCENT)
        super().__init__(frames.shape[0], ijk_to_ras, frames.shape[1:], frames.dtype, values, **kwargs)
        self.frames = frames

    @classmethod
    def from_series(cls, series: ImageSeries) -> ArrayPhases:
        """An in-memory series (a cine, a 4D file read whole) as a stack indexed by its frame times (ms)."""
        timed = series.frame_times_ms is not None
        stack = cls(series.frames, series.ijk_to_ras, series.frame_times_ms if timed else None,
                    index_name="time" if timed else "frame", index_unit="ms" if timed else "",
                    name=series.name, source=series.source)
        stack.metadata = dict(series.metadata)
        stack.warnings = list(series.warnings)
        return stack

    def read(self, index: int) -> np.ndarray:
        return self.frames[index]


class CallablePhases(PhaseStack):
    """Phases produced on demand by a function (a DICOM series per phase, one file per phase, a scene node)."""

    def __init__(self, reader: Callable[[int], np.ndarray], count, ijk_to_ras, shape, dtype, index_values, **kwargs):
        super().__init__(count, ijk_to_ras, shape, dtype, index_values, **kwargs)
        self._reader = reader

    def read(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(f"phase {index} of {self.count}")
        array = np.asarray(self._reader(index))
        if array.shape != self.shape:
            raise InputError(
                f"{self.source}: phase {self.index_label(index)} has {array.shape[0]}×{array.shape[1]}×"
                f"{array.shape[2]} voxels, the first phase {self.shape[0]}×{self.shape[1]}×{self.shape[2]}; every "
                "phase must share one grid"
            )
        return array


class MemmapPhases(PhaseStack):
    """One temporary raw file per phase, written once and memory-mapped for reading."""

    def __init__(self, ijk_to_ras, shape, dtype, folder: str | os.PathLike | None = None, **kwargs):
        super().__init__(0, ijk_to_ras, shape, dtype, [], **kwargs)
        self.folder = Path(tempfile.mkdtemp(prefix="cardiacsuite-4d-", dir=folder))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.folder), True)

    def _path(self, index: int) -> Path:
        return self.folder / f"phase{index:04d}.raw"

    def append(self, array: np.ndarray, index_value: float) -> None:
        array = np.ascontiguousarray(array, dtype=self.dtype)
        if array.shape != self.shape:
            raise InputError(f"{self.source}: a phase of shape {array.shape} does not fit the grid {self.shape}")
        array.tofile(self._path(self.count))
        self.count += 1
        self.index_values.append(float(index_value))

    def create(self, count: int, index_values: Sequence[float]) -> list:
        """Open every phase file for sequential writing (for inputs that interleave the phases).

        Plain appends rather than writable memory maps: pages written through a map stay resident (and count
        as the process's memory) until it is unmapped, which for a whole study would be the whole study.
        """
        handles = [open(self._path(index), "wb") for index in range(count)]
        self.count = count
        self.index_values = [float(v) for v in index_values]
        return handles

    def read(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(f"phase {index} of {self.count}")
        return np.memmap(self._path(index), dtype=self.dtype, mode="r", shape=self.shape)

    def close(self) -> None:
        self._finalizer()


# ---------------------------------------------------------------------------------------------- checks


def check_same_grid(reference_name: str, reference: np.ndarray, name: str, other: np.ndarray, shape_a, shape_b) -> None:
    """InputError naming both phases when two phases do not share one voxel grid."""
    if tuple(shape_a) != tuple(shape_b):
        raise InputError(
            f"mixed geometry: phase {name} has {'×'.join(map(str, shape_b))} voxels but phase {reference_name} has "
            f"{'×'.join(map(str, shape_a))}; all phases of a 4D CT must share one grid (reconstruct them with the "
            "same field of view and slice range)"
        )
    difference = np.abs(np.asarray(reference, dtype=float) - np.asarray(other, dtype=float))
    if difference[:3, 3].max() > POSITION_TOLERANCE_MM or (
        difference[:3, :3] / np.maximum(np.linalg.norm(reference[:3, :3], axis=0), 1e-9)
    ).max() > DIRECTION_TOLERANCE:
        origin_a = ", ".join(f"{v:.2f}" for v in reference[:3, 3])
        origin_b = ", ".join(f"{v:.2f}" for v in other[:3, 3])
        spacing_a = "×".join(f"{v:.3g}" for v in np.linalg.norm(reference[:3, :3], axis=0))
        spacing_b = "×".join(f"{v:.3g}" for v in np.linalg.norm(other[:3, :3], axis=0))
        raise InputError(
            f"mixed geometry: phase {name} (origin {origin_b} mm, voxels {spacing_b} mm) is not on the grid of phase "
            f"{reference_name} (origin {origin_a} mm, voxels {spacing_a} mm); all phases of a 4D CT must share one "
            "grid (reconstruct them with the same field of view and slice range)"
        )


def compact_dtype(array: np.ndarray) -> np.dtype:
    """int16 for integral CT values in range (half the memory of float32), float32 otherwise."""
    if array.dtype.kind in "iu" and array.min() >= -32768 and array.max() <= 32767:
        return np.dtype(np.int16)
    if array.dtype.kind == "f" and np.array_equal(array, np.rint(array)) and array.min() >= -32768 and array.max() <= 32767:
        return np.dtype(np.int16)
    return np.dtype(np.float32)


# ---------------------------------------------------------------------------------------------- .seq.nrrd


def read_seq_nrrd_phases(path: str | os.PathLike, temp_folder=None, chunk_bytes: int = 64 << 20) -> PhaseStack:
    """A Slicer volume sequence file, unpacked phase by phase into temporary files without holding it whole."""
    path = Path(path)
    header = imageio.read_nrrd_header(path)
    fields = header["fields"]
    layout = imageio.seq_nrrd_layout(path, header)
    count, shape = layout.count, layout.shape
    file_dtype = imageio.nrrd_dtype(path, header)
    dtype = file_dtype.newbyteorder("=")
    encoding = fields.get("encoding", "raw").lower()
    if encoding not in ("raw", "gzip", "gz"):
        raise InputError(f"{path}: NRRD encoding '{encoding}' is not supported for 4D reading (raw or gzip)")
    if fields.get("data file") or fields.get("datafile"):
        raise InputError(f"{path}: detached NRRD data files are not supported for 4D input; save the sequence as one file")
    index_name, index_unit, index_values = _sequence_index(layout.label, layout.unit, layout.values, count)
    stack = MemmapPhases(layout.ijk_to_ras, shape, dtype, temp_folder, index_name=index_name, index_unit=index_unit,
                         name=imageio.seq_nrrd_name(path), source=str(path))
    files = stack.create(count, index_values)
    voxels = int(np.prod(shape))
    total = voxels * count * dtype.itemsize
    try:
        with open(path, "rb") as handle:
            handle.seek(header["offset"])
            stream = handle if encoding == "raw" else gzip.GzipFile(fileobj=handle, mode="rb")
            if layout.list_axis == 3:  # phases one after another: copy each block
                step = max(chunk_bytes // dtype.itemsize, 1)
                for index in range(count):
                    for start in range(0, voxels, step):
                        n = min(step, voxels - start)
                        data = np.frombuffer(_read_exact(stream, n * dtype.itemsize, path, total), dtype=file_dtype)
                        files[index].write(data.astype(dtype, copy=False).tobytes())
            else:  # phase axis fastest: every voxel's T values together
                per_voxel = count * dtype.itemsize
                step = max(chunk_bytes // per_voxel, 1)
                for start in range(0, voxels, step):
                    n = min(step, voxels - start)
                    block = np.frombuffer(_read_exact(stream, n * per_voxel, path, total), dtype=file_dtype)
                    block = block.reshape(n, count)
                    for index in range(count):
                        files[index].write(np.ascontiguousarray(block[:, index], dtype=dtype).tobytes())
    finally:
        for handle in files:
            handle.close()
    stack.metadata = {"Format": "NRRD volume sequence", "SequenceIndexName": layout.label,
                      "SequenceIndexUnit": layout.unit}
    return stack


def _sequence_index(label: str, unit: str, values: list[str], count: int) -> tuple[str, str, list[float]]:
    """Index name, unit and values of a sequence; numbered phases when the file's values are not numbers."""
    numbers: list[float] | None = None
    if len(values) == count:
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            numbers = None
    if numbers is None:
        return "phase", "", list(range(count))
    return (label or "phase"), unit, numbers


def _read_exact(stream, size: int, path: Path, total: int) -> bytes:
    try:
        data = stream.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: compressed NRRD data is damaged or truncated ({exc})") from None
    if len(data) < size:
        raise InputError(f"{path}: NRRD data ends early (the header needs {total} bytes); the file is truncated")
    return data


# ---------------------------------------------------------------------------------------------- 4D NIfTI and files


def read_nifti_phases(path: str | os.PathLike, temp_folder=None) -> PhaseStack:
    """A 4D NIfTI read phase by phase (its time axis is the slowest, so each phase is one contiguous block)."""
    path = Path(path)
    image = imageio.load_nifti(path)
    if len(image.shape) != 4 or image.shape[3] < 2:
        raise InputError(f"{path}: a {len(image.shape)}D NIfTI; 4D input needs a time axis with at least 2 phases")
    header = image.header
    affine = np.asarray(image.affine, dtype=float)
    count = int(image.shape[3])
    shape = (int(image.shape[2]), int(image.shape[1]), int(image.shape[0]))
    slope, intercept = header.get_slope_inter()
    raw_dtype = header.get_data_dtype()
    scaled = slope not in (None, 1.0) or intercept not in (None, 0.0)
    dtype = np.dtype(np.float32) if scaled else np.dtype(raw_dtype.newbyteorder("="))
    times = imageio.nifti_frame_times(header, count)
    if times is not None:
        index_name, index_unit, values = "time", "ms", times
    else:
        index_name, index_unit, values = "phase", "", list(range(count))
    stack = MemmapPhases(affine, shape, dtype, temp_folder, index_name=index_name, index_unit=index_unit,
                         name=imageio.image_name(path), source=str(path))
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    voxels = int(np.prod(shape))
    with opener(path, "rb") as handle:
        handle.seek(int(getattr(image.dataobj, "offset", header.get_data_offset())))
        for index in range(count):
            data = _read_exact(handle, voxels * raw_dtype.itemsize, path, voxels * raw_dtype.itemsize * count)
            phase = np.frombuffer(data, dtype=raw_dtype).reshape(shape)  # x fastest: [z, y, x] in C order
            if scaled:
                phase = phase.astype(np.float32) * np.float32(slope if slope is not None else 1.0) + np.float32(intercept or 0.0)
            stack.append(phase, values[index])
    return stack


def phase_number(path: Path) -> float | None:
    """The phase a file name states: '…_40%…', '…phase40…' or the last number in the name."""
    name = imageio.image_name(path)
    match = re.search(r"(\d+(?:\.\d+)?)\s*(?:%|pct|percent)", name, re.IGNORECASE)
    if match:
        return float(match.group(1))
    numbers = re.findall(r"\d+(?:\.\d+)?", name)
    return float(numbers[-1]) if numbers else None


def read_file_phases(paths: Iterable[str | os.PathLike], allow_missing: bool = False) -> PhaseStack:
    """One 3D image file per phase, ordered by the phase number in their names, read one at a time."""
    from .dicom.cardiac4d import check_phase_values

    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise InputError("a 4D study from separate files needs at least two phase files")
    numbers = [phase_number(p) for p in paths]
    if any(n is None for n in numbers):
        unnamed = paths[numbers.index(None)]
        raise InputError(
            f"{unnamed}: no phase number in the file name; name each file by its phase (e.g. 'heart_40%.nrrd') so "
            "the phases can be ordered"
        )
    order = sorted(range(len(paths)), key=lambda n: numbers[n])
    paths = [paths[n] for n in order]
    numbers = [numbers[n] for n in order]
    percent = all(0 <= n <= 100 for n in numbers)
    unit = PERCENT if percent else ""
    warnings = check_phase_values(numbers, unit, [p.name for p in paths], allow_missing)
    first = imageio.read_image_input(paths[0])
    if first.is_dynamic:
        raise InputError(f"{paths[0]}: holds {first.frames.shape[0]} frames; give one 3D file per phase")
    grid = first.ijk_to_ras
    shape = first.frames.shape[1:]
    dtype = compact_dtype(first.frames[0])
    cache = {0: first.frames[0]}

    def reader(index: int) -> np.ndarray:
        array = cache.pop(index, None)
        if array is None:
            series = imageio.read_image_input(paths[index])
            if series.is_dynamic:
                raise InputError(f"{paths[index]}: holds {series.frames.shape[0]} frames; give one 3D file per phase")
            check_same_grid(paths[0].name, grid, paths[index].name, series.ijk_to_ras, shape, series.frames.shape[1:])
            array = series.frames[0]
        return array.astype(dtype, copy=False) if np.array_equal(array, np.rint(array)) or dtype.kind == "f" else array

    stack = CallablePhases(reader, len(paths), grid, shape, dtype, numbers,
                           index_name=PHASE_INDEX_NAME if percent else "phase", index_unit=unit,
                           name=os.path.commonprefix([p.name for p in paths]).rstrip("_-. ") or "4D CT",
                           source=str(paths[0].parent))
    stack.warnings.extend(warnings)
    # Check every file's grid now, from the headers only, so a mixed-geometry set fails before any work.
    for path in paths[1:]:
        matrix, size = _header_geometry(path)
        check_same_grid(paths[0].name, grid, path.name, matrix, shape, size)
    return stack


def _header_geometry(path: Path) -> tuple[np.ndarray, tuple[int, int, int]]:
    """IJK-to-RAS and [K, J, I] of a 3D image file from its header alone."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"{path}: not a readable image file") from None
    size = reader.GetSize()
    if len(size) != 3:
        raise InputError(f"{path}: a {len(size)}D image; give one 3D file per phase")
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(reader.GetDirection()).reshape(3, 3) * np.asarray(reader.GetSpacing())
    lps[:3, 3] = reader.GetOrigin()
    return imageio.LPS_TO_RAS @ lps, (size[2], size[1], size[0])


# ---------------------------------------------------------------------------------------------- DICOM


def read_dicom_phases(folder, allow_missing: bool = False, series_uid: str | None = None, temp_folder=None,
                      progress: ProgressCallback | None = None) -> PhaseStack:
    """A 4D CT DICOM folder, read one phase at a time into temporary files (see ``dicom.cardiac4d``)."""
    from .dicom import find_cardiac_phases, read_phase

    found = find_cardiac_phases(folder, series_uid=series_uid, allow_missing=allow_missing)
    stack: MemmapPhases | None = None
    first_name = found.label(0)
    for index, phase in enumerate(found.phases):
        if progress is not None:
            progress(index / len(found.phases), f"reading phase {found.label(index)} ({index + 1} of {len(found.phases)})")
        series = read_phase(phase)
        volume = series.frames[0]
        if stack is None:
            name = series.metadata.get("SeriesDescription") or series.name
            stack = MemmapPhases(series.ijk_to_ras, volume.shape, compact_dtype(volume), temp_folder,
                                 index_name=found.index_name, index_unit=found.index_unit,
                                 name=str(name), source=str(folder))
            stack.metadata = {k: v for k, v in series.metadata.items() if isinstance(v, (str, int, float))}
            stack.metadata["PhaseOrder"] = found.key
            stack.metadata["SeriesPerPhase"] = not found.single_series
            stack.warnings.extend(found.warnings)
        else:
            check_same_grid(first_name, stack.ijk_to_ras, found.label(index), series.ijk_to_ras, stack.shape, volume.shape)
        stack.warnings.extend(w for w in series.warnings if w not in stack.warnings and not w.startswith("phases ordered"))
        if stack.dtype == np.int16 and not (np.array_equal(volume, np.rint(volume)) and volume.min() >= -32768
                                            and volume.max() <= 32767):
            raise InputError(f"{folder}: phase {found.label(index)} holds non-integer values unlike the first phase")
        stack.append(volume, phase.value)
    if progress is not None:
        progress(1.0, f"read {stack.count} phases")
    return stack


# ---------------------------------------------------------------------------------------------- dispatch


def open_4d(inputs: str | os.PathLike | Sequence[str | os.PathLike], allow_missing: bool = False, series_uid=None,
            temp_folder=None, progress: ProgressCallback | None = None) -> PhaseStack:
    """Any supported 4D input as a ``PhaseStack``.

    A DICOM folder (one series per phase, or one series with many temporal positions); a ``.seq.nrrd``; a 4D
    NIfTI; several 3D NRRD/NIfTI/MetaImage files (one per phase); or a folder holding only such files.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [Path(p).expanduser() for p in inputs]
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    if len(paths) > 1:
        return read_file_phases(paths, allow_missing)
    path = paths[0]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith((".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")))
        others = (p for p in path.rglob("*") if p.is_file() and p not in images)
        if images and not any(imageio.is_dicom_file(p, strict=False) for p in others):
            if len(images) == 1:
                return open_4d(images[0], allow_missing, series_uid, temp_folder, progress)
            return read_file_phases(images, allow_missing)
        return read_dicom_phases(path, allow_missing=allow_missing, series_uid=series_uid,
                                 temp_folder=temp_folder, progress=progress)
    name = path.name.lower()
    if name.endswith((".nrrd", ".nhdr")):
        if imageio.is_seq_nrrd(path):
            return read_seq_nrrd_phases(path, temp_folder)
        raise InputError(f"{path}: a 3D volume; 4D input needs a .seq.nrrd, a 4D NIfTI, a DICOM folder or one file per phase")
    if name.endswith((".nii", ".nii.gz")):
        return read_nifti_phases(path, temp_folder)
    raise InputError(
        f"{path}: unsupported 4D input; give a DICOM folder, a .seq.nrrd, a 4D NIfTI, or one 3D file per phase"
    )


def read_ct(inputs: Sequence[str | os.PathLike], series_uid: str | None = None,
            purpose: str = "the measurement needs Hounsfield units") -> PhaseStack:
    """A CT phase or a 4D CT as a PhaseStack (one phase for a 3D CT), checked to be CT in HU.

    ``purpose`` ends the message for an image that is not CT (why this command needs one).
    """
    paths = [Path(p) for p in inputs]
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    nrrd = paths[0].is_file() and paths[0].name.lower().endswith((".nrrd", ".nhdr"))
    if len(paths) > 1 or (nrrd and imageio.is_seq_nrrd(paths[0])):
        stack = open_4d([str(p) for p in paths], series_uid=series_uid)
        modality = str(stack.metadata.get("Modality", ""))
    else:
        stack = None
        if paths[0].is_dir():
            try:
                stack = open_4d(paths[0], series_uid=series_uid)
            except InputError:
                stack = None  # one 3D series: read it as such below
        if stack is None or stack.count < 2:
            series = imageio.read_image_input(paths[0], series_uid)
            modality = series.modality
            stack = ArrayPhases.from_series(series) if series.frames.shape[0] > 1 else ArrayPhases(
                series.frames, series.ijk_to_ras, name=series.name, source=series.source)
            stack.metadata = dict(series.metadata)
        else:
            modality = str(stack.metadata.get("Modality", ""))
    if modality and modality.upper() != "CT":
        raise InputError(f"{inputs[0]}: a {modality} image, not CT; {purpose}")
    first = np.asarray(stack.read(0))
    if float(first.min()) >= 0.0:
        raise InputError(f"{inputs[0]}: no value below 0, so not a CT in Hounsfield units (an MR image, or a CT "
                         "stored without its rescale); give the CT as the scanner wrote it")
    return stack
