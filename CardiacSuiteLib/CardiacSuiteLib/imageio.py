"""Read any supported image input into an ``ImageSeries``, and write images back to files.

Inputs: a DICOM folder (searched recursively), one DICOM file, a 3D NRRD/NIfTI/MetaImage file (one frame), or a
cine/4D file (4D NIfTI, or Slicer's ``.seq.nrrd`` volume sequence). Geometry is always the exact IJK-to-RAS
matrix; files store LPS (ITK, NRRD) or RAS (NIfTI affine) and are converted on the way in and out. Every
problem reaches the caller as one ``InputError`` line.

The header parsing here (NRRD layout and voxel type, NIfTI time axis) is shared with ``image4d``, which reads
the same files one phase at a time, and ``write_seq_nrrd`` writes either an in-memory ``ImageSeries`` or a
``image4d.PhaseStack`` slab by slab: one reader and one writer for each format.
"""

from __future__ import annotations

import bz2
import gzip
import os
import re
import urllib.parse
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .imagedata import ImageSeries

if TYPE_CHECKING:
    from .image4d import PhaseStack

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
IMAGE_SUFFIXES = (".seq.nrrd", ".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")

NRRD_TYPES = {
    np.dtype("int8"): "int8",
    np.dtype("uint8"): "uint8",
    np.dtype("int16"): "int16",
    np.dtype("uint16"): "uint16",
    np.dtype("int32"): "int32",
    np.dtype("uint32"): "uint32",
    np.dtype("int64"): "int64",
    np.dtype("uint64"): "uint64",
    np.dtype("float32"): "float",
    np.dtype("float64"): "double",
}
_NRRD_TYPE_ALIASES = {
    "i1": ("signed char", "int8", "int8_t"),
    "u1": ("uchar", "unsigned char", "uint8", "uint8_t"),
    "i2": ("short", "short int", "signed short", "signed short int", "int16", "int16_t"),
    "u2": ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
    "i4": ("int", "signed int", "int32", "int32_t"),
    "u4": ("uint", "unsigned int", "uint32", "uint32_t"),
    "i8": ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t"),
    "u8": ("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"),
    "f4": ("float",),
    "f8": ("double",),
}
NRRD_TO_NUMPY = {alias: code for code, aliases in _NRRD_TYPE_ALIASES.items() for alias in aliases}
TIME_UNIT_TO_MS = {"ms": 1.0, "msec": 1.0, "millisecond": 1.0, "milliseconds": 1.0,
                   "s": 1000.0, "sec": 1000.0, "second": 1000.0, "seconds": 1000.0, "us": 1e-3, "usec": 1e-3}


# ---------------------------------------------------------------------------------------------- reading


def read_image_input(path: str | os.PathLike, series_uid: str | None = None) -> ImageSeries:
    """Read a folder of DICOM, a DICOM file or an image file into an ``ImageSeries`` (nothing enters a scene).

    ``series_uid`` chooses among several DICOM series in a folder; it is an error for other inputs, where
    there is nothing to choose.
    """
    from . import dicom

    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return dicom.read_dicom_folder(path, series_uid)
    if is_dicom_file(path):
        series = dicom.read_dicom_file(path)
        uids = series.metadata.get("SeriesInstanceUIDs", [])
        if series_uid and series_uid not in uids:
            raise InputError(f"{path}: belongs to series {uids[0] if uids else '?'}, not {series_uid}")
        return series
    if series_uid:
        raise InputError(f"{path}: a series UID only selects among DICOM series in a folder; this is an image file")
    name = path.name.lower()
    if name.endswith((".nrrd", ".nhdr")):
        header = read_nrrd_header(path)
        if _nrrd_list_axis(header) is not None:
            return read_seq_nrrd(path, header)
        return _read_itk(path)
    if name.endswith((".nii", ".nii.gz")):
        return _read_nifti(path)
    if name.endswith((".mha", ".mhd")):
        return _read_itk(path)
    raise InputError(
        f"{path}: unsupported file type; give a DICOM folder or file, or an image file "
        f"({', '.join(IMAGE_SUFFIXES)})"
    )


def is_dicom_file(path: Path, strict: bool = True) -> bool:
    """DICOM by its extension or by the 'DICM' marker after the 128-byte preamble.

    A file that cannot be opened is an ``InputError`` when ``strict`` (it was given as the input), and simply
    not DICOM otherwise (one file among many in a folder).
    """
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError as exc:
        if not strict:
            return False
        raise InputError(f"{path}: cannot be opened ({exc.strerror})") from None


def image_name(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read_itk(path: Path) -> ImageSeries:
    """A 2D/3D/4D file through SimpleITK (the same ITK readers Slicer uses)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path}: not a readable image file ({_itk_reason(exc)})") from None
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise InputError(
            f"{path}: {components} values per voxel (colour or vector image); only scalar images can be analysed"
        )
    dimension = image.GetDimension()
    if dimension not in (2, 3, 4):
        raise InputError(f"{path}: a {dimension}D image; expected 3D (a volume) or 4D (a cine or 4D series)")
    array = sitk.GetArrayFromImage(image)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dimension, dimension)
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    origin = np.asarray(image.GetOrigin(), dtype=float)
    ijk_to_lps = np.eye(4)
    n = min(dimension, 3)
    ijk_to_lps[:n, :n] = direction[:n, :n] * spacing[:n]
    ijk_to_lps[:n, 3] = origin[:n]
    if dimension == 2:
        array = array[np.newaxis]
    frames = array[np.newaxis] if dimension < 4 else array
    return ImageSeries(
        frames=frames.astype(np.float32, copy=False),
        ijk_to_ras=LPS_TO_RAS @ ijk_to_lps,
        name=image_name(path),
        source=str(path),
        metadata={"Format": _format_name(path)},
    )


def _itk_reason(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if "Description:" in line or "Could not create IO object" in line]
    text = (useful or lines or [type(exc).__name__])[-1]
    return text.split("Description:")[-1].strip()[:200]


def _format_name(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "NIfTI"
    if name.endswith((".nrrd", ".nhdr")):
        return "NRRD"
    return "MetaImage"


def _read_nifti(path: Path) -> ImageSeries:
    """NIfTI through ITK for geometry and voxels; the time axis of a 4D file from its header (ms)."""
    series = _read_itk(path)
    if not series.is_dynamic:
        return series
    header = load_nifti(path).header
    series.frame_times_ms = nifti_frame_times(header, series.frames.shape[0])
    if series.frame_times_ms is None:
        series.warnings.append(
            f"the 4th axis has no time step in a known unit (pixdim {float(header['pixdim'][4]):g}, unit "
            f"'{header.get_xyzt_units()[1]}'): frames are numbered, not timed"
        )
    return series


def load_nifti(path: Path):
    """The nibabel image (header and lazy data) of a NIfTI file."""
    import nibabel

    try:
        return nibabel.load(str(path))
    except Exception as exc:  # nibabel raises several types for damaged headers
        raise InputError(f"{path}: NIfTI header could not be read ({exc})") from None


def nifti_frame_times(header, count: int) -> list[float] | None:
    """Times (ms) of the frames of a 4D NIfTI from its time step, unit and offset; None when it states none."""
    step = float(header["pixdim"][4])
    offset = float(header["toffset"]) if "toffset" in header else 0.0
    unit = header.get_xyzt_units()[1]
    if unit not in ("sec", "msec", "usec") or step <= 0:
        return None
    scale = {"sec": 1000.0, "msec": 1.0, "usec": 1e-3}[unit]
    return [(offset + index * step) * scale for index in range(count)]


# ---------------------------------------------------------------------------------------------- NRRD


def read_nrrd_header(path: str | os.PathLike) -> dict:
    """Fields (lower-case keys), key-value pairs and where the data starts, from a NRRD header."""
    path = Path(path)
    fields: dict[str, str] = {}
    pairs: dict[str, str] = {}
    try:
        with open(path, "rb") as handle:
            magic = handle.readline()
            if not magic.startswith(b"NRRD000"):
                raise InputError(f"{path}: not a NRRD file (no NRRD magic line)")
            while True:
                raw = handle.readline()
                if not raw:
                    if path.suffix.lower() == ".nhdr":
                        break
                    raise InputError(
                        f"{path}: NRRD header ends without the blank line before the data; the file is truncated"
                    )
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line == "":
                    break
                if line.startswith("#"):
                    continue
                if ":=" in line:
                    key, value = line.split(":=", 1)
                    pairs[key] = value
                elif ": " in line:
                    key, value = line.split(": ", 1)
                    fields[key.strip().lower()] = value.strip()
            offset = handle.tell()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from None
    return {"path": path, "fields": fields, "pairs": pairs, "offset": offset}


def _nrrd_vectors(text: str) -> list[np.ndarray | None]:
    """'none (1,0,0) (0,1,0)' → [None, array, array]."""
    items = []
    for match in re.finditer(r"none|\(([^)]*)\)", text):
        if match.group(0) == "none":
            items.append(None)
        else:
            items.append(np.array([float(v) for v in match.group(1).split(",")]))
    return items


def _nrrd_strings(text: str) -> list[str]:
    return re.findall(r'"([^"]*)"', text)


def is_seq_nrrd(path: str | os.PathLike) -> bool:
    """A NRRD file with one non-spatial axis: a volume sequence rather than one volume."""
    return _nrrd_list_axis(read_nrrd_header(path)) is not None


def _nrrd_list_axis(header: dict) -> int | None:
    """Index of the non-spatial (sequence) axis of a 4D NRRD, or None for an ordinary volume."""
    fields = header["fields"]
    if int(fields.get("dimension", "0") or 0) != 4:
        return None
    directions = _nrrd_vectors(fields.get("space directions", ""))
    if len(directions) == 4 and sum(d is None for d in directions) == 1:
        return next(i for i, d in enumerate(directions) if d is None)
    kinds = fields.get("kinds", "").split()
    non_spatial = [i for i, kind in enumerate(kinds) if kind.lower() not in ("domain", "space")]
    return non_spatial[0] if len(non_spatial) == 1 else None


def _space_signs(space: str, path: Path) -> np.ndarray:
    """Signs that take a NRRD space's coordinates to RAS."""
    names = {"lps": "left-posterior-superior", "ras": "right-anterior-superior", "las": "left-anterior-superior",
             "rai": "right-anterior-inferior"}
    space = names.get(space.lower(), space.lower())
    parts = space.split("-")
    toward = {"right": 1.0, "left": -1.0, "anterior": 1.0, "posterior": -1.0, "superior": 1.0, "inferior": -1.0}
    if len(parts) != 3 or any(p not in toward for p in parts):
        raise InputError(f"{path}: NRRD space '{space}' is not an anatomical space (LPS/RAS); cannot place the image")
    return np.array([toward[p] for p in parts])


@dataclass
class SeqNrrdLayout:
    """Where the phases of a ``.seq.nrrd`` lie and how they are placed and indexed, from its header."""

    list_axis: int  # 0: the phase axis is the fastest in the file (as Slicer writes it); 3: the slowest
    sizes: list[int]  # NRRD order, fastest axis first
    ijk_to_ras: np.ndarray
    label: str  # index name, e.g. 'time' or 'cardiac phase'
    unit: str  # index unit, e.g. 'ms' or '%'
    values: list[str]  # index values as written (may be empty)
    index_type: str

    @property
    def count(self) -> int:
        return self.sizes[self.list_axis]

    @property
    def shape(self) -> tuple[int, int, int]:
        """One volume as ``[K, J, I]``."""
        spatial = [s for axis, s in enumerate(self.sizes) if axis != self.list_axis]
        return spatial[2], spatial[1], spatial[0]


def seq_nrrd_layout(path: str | os.PathLike, header: dict | None = None) -> SeqNrrdLayout:
    """Geometry and sequence index of a Slicer volume sequence file, from its header alone."""
    path = Path(path)
    header = header or read_nrrd_header(path)
    fields, pairs = header["fields"], header["pairs"]
    list_axis = _nrrd_list_axis(header)
    if list_axis not in (0, 3):
        raise InputError(f"{path}: not a volume sequence NRRD (expected 4 axes, one of them a list axis first or last)")
    try:
        sizes = [int(v) for v in fields["sizes"].split()]
        directions = _nrrd_vectors(fields["space directions"])
        origin = _nrrd_vectors(fields.get("space origin", "(0,0,0)"))[0]
        space = fields["space"]
    except (KeyError, ValueError, IndexError) as exc:
        raise InputError(
            f"{path}: NRRD header lacks or garbles a required field ({exc}); cannot place the image"
        ) from None
    spatial = [d for i, d in enumerate(directions) if i != list_axis]
    if len(sizes) != 4 or len(spatial) != 3 or any(d is None or d.shape != (3,) for d in spatial) or origin is None:
        raise InputError(f"{path}: NRRD sizes/space directions do not describe a 3D volume sequence")
    signs = _space_signs(space, path)
    matrix = np.eye(4)
    for column, direction in enumerate(spatial):
        matrix[:3, column] = direction * signs
    matrix[:3, 3] = origin * signs
    return SeqNrrdLayout(
        list_axis=list_axis,
        sizes=sizes,
        ijk_to_ras=matrix,
        label=(_nrrd_strings(fields.get("labels", "")) + [""] * 4)[list_axis],
        unit=(_nrrd_strings(fields.get("units", "")) + [""] * 4)[list_axis],
        values=[urllib.parse.unquote(v) for v in pairs.get(f"axis {list_axis} index values", "").split()],
        index_type=pairs.get(f"axis {list_axis} index type", "numeric").strip(),
    )


def seq_nrrd_name(path: Path) -> str:
    """The image's name: the file name without ``.seq.nrrd`` (or its image suffix)."""
    return path.name[: -len(".seq.nrrd")] if path.name.lower().endswith(".seq.nrrd") else image_name(path)


def read_seq_nrrd(path: str | os.PathLike, header: dict | None = None) -> ImageSeries:
    """A Slicer volume sequence (``.seq.nrrd``): the list axis first or last, index values as frame times."""
    path = Path(path)
    header = header or read_nrrd_header(path)
    layout = seq_nrrd_layout(path, header)
    label, unit, sizes = layout.label, layout.unit, layout.sizes

    array = _read_nrrd_data(path, header, sizes)
    # NRRD lists the fastest axis first; numpy's C order is the reverse.
    array = array.reshape(sizes[::-1])
    frames = array.transpose(3, 0, 1, 2) if layout.list_axis == 0 else array
    count = frames.shape[0]

    warnings: list[str] = []
    index_type = layout.index_type
    metadata: dict = {"Format": "NRRD volume sequence", "SequenceIndexName": label, "SequenceIndexUnit": unit}
    frame_times = None
    if layout.values:
        values = layout.values
        if len(values) != count:
            raise InputError(f"{path}: {len(values)} index values for {count} frames; the header is inconsistent")
        metadata["SequenceIndexValues"] = values
        if index_type == "numeric":
            try:
                numbers = [float(v) for v in values]
            except ValueError:
                raise InputError(f"{path}: numeric sequence index values that are not numbers") from None
            scale = TIME_UNIT_TO_MS.get(unit.lower())
            if scale is not None:
                frame_times = [v * scale for v in numbers]
            elif label.lower() in ("time", "trigger time", "triggertime") and not unit:
                frame_times = numbers
                warnings.append("sequence time values carry no unit: taken as milliseconds")
    if frame_times is None:
        warnings.append(
            f"sequence index '{label or 'frame'}' is not a time in a known unit: frames are numbered, not timed"
        )
    return ImageSeries(
        frames=np.ascontiguousarray(frames).astype(np.float32, copy=False),
        ijk_to_ras=layout.ijk_to_ras,
        frame_times_ms=frame_times,
        name=seq_nrrd_name(path),
        source=str(path),
        metadata=metadata,
        warnings=warnings,
    )


def nrrd_dtype(path: Path, header: dict) -> np.dtype:
    """The voxel type of a NRRD file, in the file's byte order."""
    fields = header["fields"]
    type_name = fields.get("type", "").lower()
    if type_name not in NRRD_TO_NUMPY:
        raise InputError(f"{path}: NRRD type '{type_name}' is not supported")
    dtype = np.dtype(NRRD_TO_NUMPY[type_name])
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder("<" if fields.get("endian", "little").lower() == "little" else ">")
    return dtype


def _read_nrrd_data(path: Path, header: dict, sizes: list[int]) -> np.ndarray:
    fields = header["fields"]
    dtype = nrrd_dtype(path, header)
    encoding = fields.get("encoding", "raw").lower()
    data_file = fields.get("data file") or fields.get("datafile")
    try:
        if data_file:
            data_path = (path.parent / data_file) if not os.path.isabs(data_file) else Path(data_file)
            blob = data_path.read_bytes()
        else:
            with open(path, "rb") as handle:
                handle.seek(header["offset"])
                blob = handle.read()
    except OSError as exc:
        raise InputError(f"{path}: NRRD data cannot be read ({exc.strerror})") from None
    try:
        if encoding in ("gzip", "gz"):
            blob = gzip.decompress(blob)
        elif encoding in ("bzip2", "bz2"):
            blob = bz2.decompress(blob)
        elif encoding != "raw":
            raise InputError(f"{path}: NRRD encoding '{encoding}' is not supported (raw, gzip or bzip2)")
    except (OSError, EOFError, ValueError) as exc:
        raise InputError(f"{path}: compressed NRRD data is damaged or truncated ({exc})") from None
    expected = int(np.prod(sizes)) * dtype.itemsize
    skip = int(fields.get("byte skip", "0") or 0)
    if skip == -1:
        blob = blob[len(blob) - expected:]
    elif skip > 0:
        blob = blob[skip:]
    if len(blob) < expected:
        raise InputError(
            f"{path}: NRRD data holds {len(blob)} bytes, the header needs {expected}; the file is truncated"
        )
    return np.frombuffer(blob[:expected], dtype=dtype).astype(dtype.newbyteorder("="), copy=False)


# ---------------------------------------------------------------------------------------------- writing


def seq_nrrd_header(
    type_name: str, shape: tuple[int, int, int, int], ijk_to_ras: np.ndarray, label: str, unit: str,
    index_values: list[str], compress: bool,
) -> bytes:
    """The header of Slicer's volume sequence file for frames ``[T, K, J, I]``: list axis first (fastest in the
    data), LPS geometry from ``ijk_to_ras``, the index name, unit and values Slicer shows in its browser."""
    count, k, j, i = shape
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(ijk_to_ras, dtype=float)

    def vector(v) -> str:
        return "(" + ",".join(f"{float(x):.17g}" for x in v) + ")"

    lines = [
        "NRRD0004",
        "# Complete NRRD file format specification at:",
        "# http://teem.sourceforge.net/nrrd/format.html",
        f"type: {type_name}",
        "dimension: 4",
        "space: left-posterior-superior",
        f"sizes: {count} {i} {j} {k}",
        "space directions: none " + " ".join(vector(lps[:3, c]) for c in range(3)),
        "kinds: list domain domain domain",
        f'labels: "{label}" "" "" ""',
        f'units: "{unit}" "" "" ""',
        "endian: little",
        f"encoding: {'gzip' if compress else 'raw'}",
        f"space origin: {vector(lps[:3, 3])}",
        "measurement frame: (1,0,0) (0,1,0) (0,0,1)",
        "DataNodeClassName:=vtkMRMLScalarVolumeNode",
        "axis 0 index type:=numeric",
        "axis 0 index values:=" + " ".join(index_values),
    ]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def write_seq_nrrd(
    image: ImageSeries | PhaseStack,
    path: str | os.PathLike,
    compress: bool = True,
    chunk_slices: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> Path:
    """Write a series or a phase stack as Slicer's volume sequence file, list axis first as Slicer writes it.

    A few slices of every frame are written at a time, so a stack whose phases live on disk is never in memory
    whole. An ``ImageSeries`` is indexed by its frame times ('time', 'ms') or numbered ('frame'); a stack by its
    own index (the cardiac phase in % when known). Slicer reads the result into a volume sequence and
    ``read_image_input`` / ``image4d.open_4d`` read it back with the same geometry and index.
    """
    path = Path(path)
    if isinstance(image, ImageSeries):
        from .image4d import ArrayPhases

        frames = np.asarray(image.frames)
        if frames.ndim != 4:
            raise InputError(f"{path}: a volume sequence needs frames [T, K, J, I], got shape {frames.shape}")
        if image.frame_times_ms is not None and len(image.frame_times_ms) != frames.shape[0]:
            raise InputError(f"{path}: {len(image.frame_times_ms)} frame times for {frames.shape[0]} frames")
        image = ArrayPhases.from_series(image)
    count, (k, j, i) = image.count, image.shape
    dtype = image.dtype if image.dtype in NRRD_TYPES else np.dtype(np.float32)
    values = [f"{v:.10g}" for v in image.index_values]
    header = seq_nrrd_header(NRRD_TYPES[dtype], (count, k, j, i), image.ijk_to_ras, image.index_name or "phase",
                             image.index_unit, values, compress)
    slab = chunk_slices or max(1, (32 << 20) // max(count * j * i * dtype.itemsize, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(header)
        sink = gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=1) if compress else handle
        try:
            for k0 in range(0, k, slab):
                k1 = min(k0 + slab, k)
                # the list axis is the fastest in the file: [K, J, I, T] in C order
                block = np.empty((k1 - k0, j, i, count), dtype=dtype.newbyteorder("<"))
                for index in range(count):
                    block[..., index] = image.read(index)[k0:k1]
                sink.write(block.tobytes())
                if progress is not None:
                    progress(k1 / k, f"writing {path.name}")
        finally:
            if compress:
                sink.close()
    return path


def write_image(series: ImageSeries, path: str | os.PathLike) -> Path:
    """Write a series to a file chosen by extension: ``.seq.nrrd`` (any), ``.nii``/``.nii.gz`` (3D or 4D),
    ``.nrrd``/``.mha`` (3D; a 4D series to ``.nrrd`` is written as a volume sequence)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".seq.nrrd") or (name.endswith(".nrrd") and series.is_dynamic):
        return write_seq_nrrd(series, path)
    if name.endswith((".nii", ".nii.gz")):
        return _write_nifti(series, path)
    if series.is_dynamic:
        raise InputError(
            f"{path}: a {series.frames.shape[0]}-frame series can be written as .seq.nrrd or .nii.gz, not {path.suffix}"
        )
    if not name.endswith((".nrrd", ".mha", ".mhd")):
        raise InputError(f"{path}: unsupported output type; use .nrrd, .nii.gz, .mha or .seq.nrrd")
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(series.frames[0]))
    _set_itk_geometry(image, series.ijk_to_ras)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)
    return path


def _set_itk_geometry(image, ijk_to_ras: np.ndarray) -> None:
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(ijk_to_ras, dtype=float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
    image.SetOrigin([float(v) for v in lps[:3, 3]])


def _write_nifti(series: ImageSeries, path: Path) -> Path:
    """NIfTI with the RAS affine as both qform and sform.

    A 4D file holds one time step (ms) and an offset, so uneven frame times are written as the first time plus
    n × the median step; use ``.seq.nrrd`` to keep them exactly.
    """
    import nibabel

    frames = np.asarray(series.frames)
    affine = np.asarray(series.ijk_to_ras, dtype=float)
    data = frames[0].transpose(2, 1, 0) if not series.is_dynamic else frames.transpose(3, 2, 1, 0)
    image = nibabel.Nifti1Image(np.ascontiguousarray(data), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    zooms = list(np.linalg.norm(affine[:3, :3], axis=0))
    if series.is_dynamic:
        times = series.frame_times_ms
        step, offset = 1.0, 0.0
        if times and len(times) > 1:
            step, offset = float(np.median(np.diff(times))), float(times[0])
        image.header.set_xyzt_units("mm", "msec")
        image.header.set_zooms(zooms + [step])
        image.header["toffset"] = offset
    else:
        image.header.set_xyzt_units("mm")
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(image, str(path))
    return path
