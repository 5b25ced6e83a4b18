"""DICOM import: discovery, stack merging, geometry, phase ordering, error paths and real cine data.

Synthetic series are written here with pydicom in a fully oblique orientation whose direction cosines are exact
decimals, so the expected IJK-to-RAS matrix is known to the last digit.
"""

from __future__ import annotations

import functools
import random
import time
from pathlib import Path

import numpy as np
import pytest

from CardiacSuiteLib import mrml
from CardiacSuiteLib.dicom import read_dicom_file, read_dicom_folder, scan_folder
from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.imagedata import add_to_scene
from CardiacSuiteLib.imageio import read_image_input

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import (  # noqa: E402
    CTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

# A fully oblique plane with exact decimal cosines: row × column = normal, all unit length.
ROW = np.array([0.36, 0.48, 0.8])
COLUMN = np.array([0.8, -0.6, 0.0])
NORMAL = np.array([0.48, 0.64, -0.6])
ORIGIN_LPS = np.array([10.5, -20.25, 30.0])
PIXEL_SPACING = (1.5, 1.25)  # between rows, between columns
SLICE_SPACING = 8.0
THICKNESS = 6.0
ROWS, COLUMNS = 4, 5
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def expected_matrix(origin=ORIGIN_LPS, spacing=SLICE_SPACING) -> np.ndarray:
    lps = np.eye(4)
    lps[:3, 0] = ROW * PIXEL_SPACING[1]
    lps[:3, 1] = COLUMN * PIXEL_SPACING[0]
    lps[:3, 2] = NORMAL * spacing
    lps[:3, 3] = origin
    return LPS_TO_RAS @ lps


def _ds(values) -> list[str]:
    return [f"{float(v):.10g}" for v in values]


def make_image(
    path: Path,
    pixels: np.ndarray,
    *,
    series_uid: str,
    study_uid: str,
    position=None,
    orientation=(*ROW, *COLUMN),
    pixel_spacing=PIXEL_SPACING,
    trigger: float | None = None,
    instance: int = 1,
    description: str = "SA cine",
    modality: str = "MR",
    slope: float | None = None,
    intercept: float | None = None,
    thickness: float = THICKNESS,
    frame_of_reference: str = "1.2.826.0.1.3680043.8.498.1",
    **extra,
) -> Path:
    """One classic single-frame image; ``None`` for a geometry argument leaves the tag out."""
    ds = Dataset()
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID = "PHANTOM01"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_of_reference
    ds.Modality = modality
    ds.Manufacturer = "Philips"
    ds.SeriesDescription = description
    ds.SeriesNumber = 7
    ds.InstanceNumber = instance
    ds.SliceThickness = f"{thickness:g}"
    if modality == "MR":
        ds.MagneticFieldStrength = "1.5"
        ds.NominalInterval = "800"
        ds.HeartRate = "75"
    if position is not None:
        ds.ImagePositionPatient = _ds(position)
    if orientation is not None:
        ds.ImageOrientationPatient = _ds(orientation)
    if pixel_spacing is not None:
        ds.PixelSpacing = _ds(pixel_spacing)
    if trigger is not None:
        ds.TriggerTime = f"{trigger:g}"
    if slope is not None:
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def image_values(phase: int, k: int) -> np.ndarray:
    """A recognisable image per (phase, slice), with a bright voxel at row 2, column 3 of phase 2 slice 1."""
    pixels = np.full((ROWS, COLUMNS), 100 * phase + 10 * k, dtype=np.int16)
    pixels[0, 0] += 1  # marks the first stored pixel, to catch row/column swaps
    if (phase, k) == (2, 1):
        pixels[2, 3] = 5000
    return pixels


def write_cine(folder: Path, slices=(0, 1), phases=3, *, series_uid=None, study_uid=None, seed=0, spacing=SLICE_SPACING,
               trigger=True, **kwargs) -> dict:
    """Slices × phases at slice positions ``ORIGIN + k·spacing·normal``, written in shuffled order."""
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    cells = [(k, p) for k in slices for p in range(phases)]
    rng = random.Random(seed)
    rng.shuffle(cells)
    instances = list(range(1, len(cells) + 1))
    rng.shuffle(instances)  # InstanceNumber carries no order (as on Philips)
    for n, ((k, p), instance) in enumerate(zip(cells, instances)):
        options = dict(kwargs)
        if trigger:
            options.setdefault("trigger", 40.0 * p + 12.0 + k)  # each slice acquired in its own heartbeat
        make_image(
            folder / f"IM_{n:04d}.dcm", image_values(p, k), series_uid=series_uid, study_uid=study_uid,
            position=ORIGIN_LPS + k * spacing * NORMAL, instance=instance, **options,
        )
    return {"series_uid": series_uid, "study_uid": study_uid, "folder": folder}


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message
    return message


# ---------------------------------------------------------------------------------------------- geometry


def test_oblique_cine_geometry_and_order(tmp_path):
    write_cine(tmp_path / "cine", slope=2.0, intercept=-5.0)
    series = read_image_input(tmp_path / "cine")

    assert series.frames.shape == (3, 2, ROWS, COLUMNS)
    assert series.frames.dtype == np.float32
    np.testing.assert_allclose(series.ijk_to_ras, expected_matrix(), atol=1e-12)
    np.testing.assert_allclose(series.spacing_mm, (1.25, 1.5, 8.0), atol=1e-12)

    # every (phase, slice) in its place, rescaled: stored 100·p + 10·k (+1 at the first pixel)
    for p in range(3):
        for k in range(2):
            assert series.frames[p, k, 1, 1] == pytest.approx(2.0 * (100 * p + 10 * k) - 5.0)
            assert series.frames[p, k, 0, 0] == pytest.approx(2.0 * (100 * p + 10 * k + 1) - 5.0)

    # the bright voxel written at a known LPS point lands at that point in RAS
    p, k, j, i = np.unravel_index(np.argmax(series.frames), series.frames.shape)
    assert (p, k, j, i) == (2, 1, 2, 3)
    lps = ORIGIN_LPS + i * PIXEL_SPACING[1] * ROW + j * PIXEL_SPACING[0] * COLUMN + k * SLICE_SPACING * NORMAL
    ras = series.ijk_to_ras @ np.array([i, j, k, 1.0])
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-9)

    assert series.frame_times_ms == pytest.approx([12.5, 52.5, 92.5])  # mean over the two slices
    assert any("differs from SliceThickness 6 mm" in w and "gap of 2 mm" in w for w in series.warnings)
    meta = series.metadata
    assert meta["NumberOfPhases"] == 3 and meta["NumberOfSlices"] == 2
    assert meta["SliceSpacing"] == pytest.approx(8.0) and meta["SliceThickness"] == 6.0
    assert meta["PhaseOrder"] == "TriggerTime"
    assert meta["NominalInterval"] == 800.0 and meta["HeartRate"] == 75.0
    assert meta["MagneticFieldStrength"] == 1.5 and meta["units"]["NominalInterval"] == "ms"
    assert meta["PixelSpacing"] == [1.5, 1.25]


def test_slices_ordered_along_the_normal_not_by_file_or_instance(tmp_path):
    # slices written from the highest projection down, instance numbers rising the other way
    uid, study = generate_uid(), generate_uid()
    for n, k in enumerate((3, 2, 1, 0)):
        make_image(tmp_path / f"{n}.dcm", np.full((ROWS, COLUMNS), k, np.int16), series_uid=uid, study_uid=study,
                   position=ORIGIN_LPS + k * SLICE_SPACING * NORMAL, instance=n + 1, thickness=SLICE_SPACING)
    series = read_image_input(tmp_path)
    assert series.frames.shape == (1, 4, ROWS, COLUMNS)
    assert [series.frames[0, k, 0, 0] for k in range(4)] == [0, 1, 2, 3]
    np.testing.assert_allclose(series.ijk_to_ras, expected_matrix(), atol=1e-12)
    assert series.warnings == []
    assert series.frame_times_ms is None


def test_ct_volume(tmp_path):
    uid, study = generate_uid(), generate_uid()
    for n, z in enumerate((-100.0, -102.5, -105.0, -107.5, -110.0)):
        pixels = np.full((6, 7), 1024 + n * 10, np.int16)
        make_image(tmp_path / "ct" / f"slice{n}.dcm", pixels, series_uid=uid, study_uid=study, modality="CT",
                   position=(-50.0, -60.0, z), orientation=(1, 0, 0, 0, 1, 0), pixel_spacing=(0.7, 0.7),
                   thickness=2.5, slope=1.0, intercept=-1024.0, instance=n + 1, description="Cardiac CTA")
    series = read_image_input(tmp_path)
    assert series.modality == "CT" and series.name == "Cardiac CTA"
    assert series.frames.shape == (1, 5, 6, 7) and series.frame_times_ms is None
    expected = np.array([[-0.7, 0, 0, 50.0], [0, -0.7, 0, 60.0], [0, 0, 2.5, -110.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(series.ijk_to_ras, expected, atol=1e-12)
    # lowest z first: the file written last holds intensity 1024 + 40 - 1024 = 40 HU
    assert [float(series.frames[0, k, 0, 0]) for k in range(5)] == [40.0, 30.0, 20.0, 10.0, 0.0]
    assert series.warnings == [] and series.metadata["PhaseOrder"] == "single phase"


def test_uneven_spacing_is_a_warning(tmp_path):
    uid, study = generate_uid(), generate_uid()
    for n, offset in enumerate((0.0, 8.0, 16.0, 32.0)):  # the slice at 24 mm is missing
        make_image(tmp_path / f"{n}.dcm", np.zeros((ROWS, COLUMNS), np.int16), series_uid=uid, study_uid=study,
                   position=ORIGIN_LPS + offset * NORMAL, thickness=8.0)
    series = read_image_input(tmp_path)
    assert series.spacing_mm[2] == pytest.approx(8.0)
    assert any("uneven slice spacing" in w and "8 mm from their true position" in w for w in series.warnings)


def test_phase_order_fallbacks(tmp_path):
    write_cine(tmp_path / "tpi", trigger=False, phases=3, slices=(0,))
    # TemporalPositionIdentifier written in the reverse of the phase index
    for path in (tmp_path / "tpi").iterdir():
        ds = pydicom.dcmread(path)
        phase = int(ds.pixel_array[1, 1]) // 100
        ds.TemporalPositionIdentifier = 3 - phase
        ds.save_as(path)
    series = read_image_input(tmp_path / "tpi")
    assert [float(series.frames[p, 0, 1, 1]) for p in range(3)] == [200.0, 100.0, 0.0]
    assert series.frame_times_ms is None
    assert any("TemporalPositionIdentifier" in w for w in series.warnings)

    folder = tmp_path / "instance"
    uid, study = generate_uid(), generate_uid()
    for n, phase in enumerate((1, 2, 0)):
        make_image(folder / f"{n}.dcm", image_values(phase, 0), series_uid=uid, study_uid=study,
                   position=ORIGIN_LPS, instance=phase + 1)
    series = read_image_input(folder)
    assert [float(series.frames[p, 0, 1, 1]) for p in range(3)] == [0.0, 100.0, 200.0]
    assert any("InstanceNumber" in w for w in series.warnings)
    assert series.metadata["PhaseOrder"].startswith("InstanceNumber")


# ---------------------------------------------------------------------------------------------- multi-frame


def write_enhanced(path: Path, slices=(0, 1), phases=3, seed=1) -> Path:
    """An Enhanced MR object: orientation and pixel measures shared, position and trigger delay per frame."""
    cells = [(k, p) for k in slices for p in range(phases)]
    random.Random(seed).shuffle(cells)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality, ds.SeriesDescription = "PHANTOM02", "MR", "cine_retro_sa"
    ds.Manufacturer = "Philips"
    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = _ds((*ROW, *COLUMN))
    measures = Dataset()
    measures.PixelSpacing = _ds(PIXEL_SPACING)
    measures.SliceThickness = f"{THICKNESS:g}"
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = "1", "0", "US"
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame, pixels = [], []
    for k, p in cells:
        group = Dataset()
        position = Dataset()
        position.ImagePositionPatient = _ds(ORIGIN_LPS + k * SLICE_SPACING * NORMAL)
        cardiac = Dataset()
        cardiac.NominalCardiacTriggerDelayTime = 40.0 * p + 12.0
        content = Dataset()
        content.TemporalPositionIndex = p + 1
        content.InStackPositionNumber = k + 1
        group.PlanePositionSequence = Sequence([position])
        group.CardiacSynchronizationSequence = Sequence([cardiac])
        group.FrameContentSequence = Sequence([content])
        per_frame.append(group)
        pixels.append(image_values(p, k))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.NumberOfFrames = len(cells)
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 1
    ds.PixelData = np.ascontiguousarray(np.stack(pixels), dtype="<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_enhanced_multiframe_cine(tmp_path):
    path = write_enhanced(tmp_path / "enhanced" / "cine.dcm")
    for series in (read_image_input(path), read_image_input(path.parent)):
        assert series.frames.shape == (3, 2, ROWS, COLUMNS)
        np.testing.assert_allclose(series.ijk_to_ras, expected_matrix(), atol=1e-12)
        assert np.unravel_index(np.argmax(series.frames), series.frames.shape) == (2, 1, 2, 3)
        assert [float(series.frames[p, k, 1, 1]) for p in range(3) for k in range(2)] == [0, 10, 100, 110, 200, 210]
        assert series.frame_times_ms == pytest.approx([12.0, 52.0, 92.0])
        assert series.name == "cine_retro_sa"


def test_enhanced_single_slice_cine(tmp_path):
    series = read_image_input(write_enhanced(tmp_path / "one.dcm", slices=(0,), phases=4))
    assert series.frames.shape == (4, 1, ROWS, COLUMNS)
    assert series.spacing_mm[2] == pytest.approx(THICKNESS)  # one slice: the thickness gives k its size
    np.testing.assert_allclose(series.ijk_to_ras[:3, 3], (LPS_TO_RAS @ [*ORIGIN_LPS, 1])[:3], atol=1e-12)
    assert series.frame_times_ms == pytest.approx([12.0, 52.0, 92.0, 132.0])


# ---------------------------------------------------------------------------------------------- discovery


def test_discovery_groups_counts_and_skips(tmp_path):
    cine = write_cine(tmp_path / "study" / "a" / "deep")
    ct_uid, study = generate_uid(), generate_uid()
    for n in range(3):
        make_image(tmp_path / "study" / "b" / f"{n}", np.zeros((6, 7), np.int16), series_uid=ct_uid, study_uid=study,
                   modality="CT", position=(0, 0, 2.5 * n), orientation=(1, 0, 0, 0, 1, 0), description="CTA")
    (tmp_path / "study" / "README.txt").write_text("not an image")
    (tmp_path / "study" / "empty.dcm").write_bytes(b"")
    (tmp_path / "study" / "DICOMDIR").write_bytes(b"\0" * 200)

    scan = scan_folder(tmp_path / "study")
    assert scan.non_dicom_files == 2 and scan.num_files == 12
    assert [reason for _, reason in scan.ignored] == ["DICOMDIR"]
    by_uid = {s.uid: s for s in scan.series}
    assert set(by_uid) == {cine["series_uid"], ct_uid}
    mr = by_uid[cine["series_uid"]]
    assert (mr.modality, mr.description, mr.num_files, mr.num_positions, mr.num_phases) == ("MR", "SA cine", 6, 2, 3)
    assert mr.folder == tmp_path / "study" / "a" / "deep"
    ct = by_uid[ct_uid]
    assert (ct.modality, ct.num_files, ct.num_positions, ct.num_phases) == ("CT", 3, 3, 1)

    with pytest.raises(InputError) as error:
        read_image_input(tmp_path / "study")
    message = one_line(error)
    assert "2 DICOM series" in message and cine["series_uid"] in message and ct_uid in message
    assert "'SA cine'" in message and "by its series UID" in message and "--" not in message
    assert "2 slice positions × 3 phases" in message and "3 slice positions × 1 phase " in message

    series = read_image_input(tmp_path / "study", series_uid=ct_uid)
    assert series.modality == "CT" and series.frames.shape == (1, 3, 6, 7)
    with pytest.raises(InputError, match="no series with UID 1.2.3.4"):
        read_image_input(tmp_path / "study", series_uid="1.2.3.4")


def write_per_slice_cine(folder: Path, phase_counts=(3, 3, 3)) -> tuple[str, list[str]]:
    """A cine with each slice position in its own series, as GE and Siemens often export it."""
    study = generate_uid()
    uids = []
    for k, phases in enumerate(phase_counts):
        uid = generate_uid()
        uids.append(uid)
        for p in range(phases):
            make_image(folder / f"s{k}" / f"{p}.dcm", image_values(p, k), series_uid=uid, study_uid=study,
                       position=ORIGIN_LPS + k * SLICE_SPACING * NORMAL, trigger=40.0 * p + 12.0,
                       description=f"SA cine sl{k + 1}", SeriesNumber=20 + k)
    return study, uids


def test_per_slice_series_merge_into_one_stack(tmp_path):
    study, uids = write_per_slice_cine(tmp_path / "cine")
    scan = scan_folder(tmp_path / "cine")
    assert len(scan.series) == 1
    stack = scan.series[0]
    assert stack.series_uids == tuple(uids) and stack.uid == uids[0]
    assert (stack.num_positions, stack.num_phases, stack.num_files) == (3, 3, 9)
    assert len(scan_folder(tmp_path / "cine", merge_stacks=False).series) == 3

    series = read_image_input(tmp_path / "cine")
    assert series.frames.shape == (3, 3, ROWS, COLUMNS)
    np.testing.assert_allclose(series.ijk_to_ras, expected_matrix(), atol=1e-12)
    assert [float(series.frames[1, k, 1, 1]) for k in range(3)] == [100.0, 110.0, 120.0]
    assert series.metadata["SeriesInstanceUIDs"] == uids
    assert any("merged from 3 series" in w for w in series.warnings)

    # a localizer beside it: two series now, and any member UID picks the whole stack
    make_image(tmp_path / "cine" / "loc" / "1.dcm", np.zeros((ROWS, COLUMNS), np.int16), series_uid=generate_uid(),
               study_uid=study, position=(0, 0, 0), orientation=(1, 0, 0, 0, 1, 0), description="Survey")
    with pytest.raises(InputError, match="2 DICOM series"):
        read_image_input(tmp_path / "cine")
    assert read_image_input(tmp_path / "cine", series_uid=uids[2]).frames.shape == (3, 3, ROWS, COLUMNS)


def test_per_slice_series_with_unequal_phases_stay_apart(tmp_path):
    write_per_slice_cine(tmp_path / "cine", phase_counts=(3, 3, 2))
    scan = scan_folder(tmp_path / "cine")
    assert sorted((s.num_positions, s.num_phases) for s in scan.series) == [(1, 2), (2, 3)]


# ---------------------------------------------------------------------------------------------- errors


def test_missing_position_is_an_input_error(tmp_path):
    write_cine(tmp_path)
    victim = sorted(tmp_path.iterdir())[3]
    ds = pydicom.dcmread(victim)
    del ds.ImagePositionPatient
    ds.save_as(victim)
    with pytest.raises(InputError) as error:
        read_image_input(tmp_path)
    message = one_line(error)
    assert victim.name in message and "ImagePositionPatient" in message


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda ds: setattr(ds, "ImageOrientationPatient", _ds((*COLUMN, *ROW))), "ImageOrientationPatient"),
        (lambda ds: setattr(ds, "PixelSpacing", ["1.4", "1.25"]), "PixelSpacing"),
        (lambda ds: (setattr(ds, "Rows", 5), setattr(ds, "Columns", 4)), "pixel grid"),
    ],
    ids=["orientation", "pixel-spacing", "matrix"],
)
def test_inconsistent_series_is_an_input_error(tmp_path, change, expected):
    write_cine(tmp_path)
    victim = sorted(tmp_path.iterdir())[2]
    ds = pydicom.dcmread(victim)
    change(ds)
    ds.save_as(victim)
    with pytest.raises(InputError) as error:
        read_image_input(tmp_path)
    message = one_line(error)
    assert expected in message and victim.name in message


def test_unequal_phase_counts_is_an_input_error(tmp_path):
    write_cine(tmp_path, slices=(0,), phases=3, series_uid="1.2.3.9", study_uid="1.2.3")
    write_cine(tmp_path / "more", slices=(1,), phases=2, series_uid="1.2.3.9", study_uid="1.2.3", seed=4)
    with pytest.raises(InputError) as error:
        read_image_input(tmp_path)
    message = one_line(error)
    assert "2 phases but the other slices have 3" in message and "more" in message


def test_duplicate_position_and_trigger_time_is_an_input_error(tmp_path):
    info = write_cine(tmp_path)
    make_image(tmp_path / "extra.dcm", image_values(1, 0), series_uid=info["series_uid"], study_uid=info["study_uid"],
               position=ORIGIN_LPS, trigger=52.0, instance=99)
    with pytest.raises(InputError) as error:
        read_image_input(tmp_path)
    message = one_line(error)
    assert "same TriggerTime (52)" in message and str(tmp_path / "extra.dcm") in message


def test_truncated_file_is_an_input_error(tmp_path):
    write_cine(tmp_path)
    victim = sorted(tmp_path.iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-7])
    with pytest.raises(InputError) as error:
        read_image_input(tmp_path)
    message = one_line(error)
    assert victim.name in message and "truncated" in message


def test_empty_and_non_dicom_folders(tmp_path, scene):
    nodes_before = scene.GetNumberOfNodes()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty") as error:
        read_image_input(tmp_path / "empty")
    one_line(error)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("hello")
    (tmp_path / "text" / "image.nii.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(InputError) as error:
        read_image_input(tmp_path / "text")
    message = one_line(error)
    assert "no DICOM files among its 2 files" in message and "image.nii.gz" in message
    with pytest.raises(InputError, match="no such file or folder"):
        read_image_input(tmp_path / "missing")
    assert scene.GetNumberOfNodes() == nodes_before  # reading never touches the scene


def test_cine_into_the_scene(tmp_path, scene):
    write_cine(tmp_path)
    series = read_image_input(tmp_path)
    sequence, browser = add_to_scene(scene, series)
    assert sequence.GetNumberOfDataNodes() == 3
    assert mrml.sequence_index_values(sequence) == pytest.approx([12.5, 52.5, 92.5])
    proxy = browser.GetProxyNode(sequence)
    np.testing.assert_allclose(mrml.ijk_to_ras(proxy), expected_matrix(), atol=1e-9)
    browser.SetSelectedItemNumber(2)
    np.testing.assert_array_equal(mrml.array_from_volume(browser.GetProxyNode(sequence)), series.frames[2])


# ---------------------------------------------------------------------------------------------- real data


@functools.lru_cache(maxsize=None)
def _sunnybrook(folder: str):
    start = time.perf_counter()
    series = read_dicom_folder(folder)
    return series, time.perf_counter() - start


@pytest.mark.realdata
@pytest.mark.parametrize("patient, slices, spacing, pixel", [
    ("SCD0000101", 12, 10.0, 1.367188), ("SCD0000201", 13, 10.0, 1.367188), ("SCD0000301", 10, 8.0, 1.2891),
])
def test_sunnybrook_cine(shared_data, patient, slices, spacing, pixel):
    folder = shared_data / "sunnybrook" / "dicoms" / patient
    scan = scan_folder(folder)
    assert len(scan.series) == 1 and scan.non_dicom_files == 0
    series, seconds = _sunnybrook(str(folder))
    print(f"\n{patient}: read {series.frames.shape} in {seconds:.2f} s")
    assert series.frames.shape == (20, slices, 256, 256)
    assert series.spacing_mm == pytest.approx((pixel, pixel, spacing), abs=1e-3)
    times = np.array(series.frame_times_ms)
    assert len(times) == 20 and np.all(np.diff(times) > 0) and 5 < times[0] < 25
    assert series.metadata["Manufacturer"] == "GE MEDICAL SYSTEMS" and series.metadata["MagneticFieldStrength"] == 1.5
    assert series.metadata["PhaseOrder"] == "TriggerTime" and series.warnings == []
    assert series.metadata["SliceThickness"] == spacing


@pytest.mark.realdata
def test_sunnybrook_slices_agree_with_itk(shared_data):
    """Each phase-0 file, as ITK reads it alone, is one slice of our volume at our k and our geometry."""
    import SimpleITK as sitk

    folder = shared_data / "sunnybrook" / "dicoms" / "SCD0000101"
    series, _ = _sunnybrook(str(folder))
    matrix = series.ijk_to_ras
    found = set()
    for number in range(1, 241, 20):  # README: image N is phase (N-1) % 20
        image = sitk.ReadImage(str(folder / f"{number}.dcm"))
        origin_ras = np.array(image.GetOrigin()) * [-1, -1, 1]
        k = np.linalg.solve(matrix[:3, :3], origin_ras - matrix[:3, 3])
        np.testing.assert_allclose(k[:2], 0, atol=1e-3)
        slice_index = int(round(k[2]))
        assert abs(k[2] - slice_index) < 1e-3
        found.add(slice_index)
        direction_ras = np.diag([-1, -1, 1]) @ np.array(image.GetDirection()).reshape(3, 3)
        np.testing.assert_allclose(matrix[:3, :2] / series.spacing_mm[:2], direction_ras[:, :2], atol=1e-5)
        np.testing.assert_array_equal(series.frames[0, slice_index], sitk.GetArrayFromImage(image)[0])
    assert found == set(range(12))


@pytest.mark.realdata
def test_sunnybrook_into_the_scene(shared_data, scene):
    series, _ = _sunnybrook(str(shared_data / "sunnybrook" / "dicoms" / "SCD0000101"))
    sequence, browser = add_to_scene(scene, series)
    assert sequence.GetNumberOfDataNodes() == 20 and sequence.GetIndexUnit() == "ms"
    assert browser.GetMasterSequenceNode() is sequence
    proxy = browser.GetProxyNode(sequence)
    np.testing.assert_allclose(mrml.ijk_to_ras(proxy), series.ijk_to_ras, atol=1e-6)
    assert proxy.GetImageData().GetDimensions() == (256, 256, 12)


@pytest.mark.realdata
def test_old_multiframe_cine(shared_data):
    path = shared_data / "cine_multiframe" / "mr-dicom.dcm"
    series = read_dicom_file(path)
    assert series.frames.shape == (16, 1, 256, 256)
    assert series.frame_times_ms[:3] == pytest.approx([0.0, 69.47, 138.94])
    assert series.spacing_mm[:2] == pytest.approx((350 / 256, 350 / 256))
    assert any("no ImagePositionPatient" in w for w in series.warnings)
    assert read_image_input(path.parent).frames.shape == (16, 1, 256, 256)


def test_undecodable_pixel_data_is_an_input_error(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    path = make_image(tmp_path / "jpeg.dcm", np.zeros((ROWS, COLUMNS), np.int16), series_uid=generate_uid(),
                      study_uid=generate_uid(), position=ORIGIN_LPS)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = encapsulate([b"\xff\xd8 not really a jpeg \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path)
    with pytest.raises(InputError) as error:
        read_image_input(path)
    assert str(path) in one_line(error)
