"""4D cardiac CT DICOM: phases found and ordered across vendor layouts, and refused with a clear message when
duplicated, missing or on different grids.

Synthetic CT series are written with pydicom: an oblique plane with exact decimal cosines, a few slices per
phase, and pixel values that encode (phase, slice) so the order can be checked voxel by voxel.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from CardiacSuiteLib.dicom import find_cardiac_phases, read_phase
from CardiacSuiteLib.dicom.cardiac4d import PERCENT_KEY, TEMPORAL_KEY, TEXT_PERCENT_KEY, TRIGGER_KEY, text_percentage
from CardiacSuiteLib.errors import InputError

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

ROW = np.array([0.36, 0.48, 0.8])
COLUMN = np.array([0.8, -0.6, 0.0])
NORMAL = np.array([0.48, 0.64, -0.6])
ORIGIN = np.array([-20.5, 14.25, 101.0])
PIXEL_SPACING = (0.75, 0.5)
SLICE_SPACING = 1.25
ROWS, COLUMNS, SLICES = 4, 6, 3
FRAME_OF_REFERENCE = "1.2.826.0.1.3680043.8.498.77"


def _ds(values) -> list[str]:
    return [f"{float(v):.10g}" for v in values]


def pixels(phase: int, k: int) -> np.ndarray:
    """HU values that say which phase and slice they are: 100·phase + 10·slice, plus a mark at [0, 0]."""
    image = np.full((ROWS, COLUMNS), 100 * phase + 10 * k - 500, dtype=np.int16)
    image[0, 0] += 1
    return image


def ct_image(path: Path, image: np.ndarray, *, series_uid, study_uid, position, description="Cardiac 0.6 Bv40",
             series_number=1, instance=1, pixel_spacing=PIXEL_SPACING, **extra) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID = "CT4D01"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = FRAME_OF_REFERENCE
    ds.Modality = "CT"
    ds.SeriesDescription = description
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = _ds(position)
    ds.ImageOrientationPatient = _ds((*ROW, *COLUMN))
    ds.PixelSpacing = _ds(pixel_spacing)
    ds.SliceThickness = "1.25"
    ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.PixelData = np.ascontiguousarray(image + 1024, dtype="<i2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series_per_phase(folder: Path, percents, *, tags=None, slices=SLICES, seed=0, study_uid=None,
                           spacing=None) -> str:
    """One series per phase, written in shuffled order with series numbers unrelated to the phase.

    ``tags(phase, percent, k)`` returns the extra header values that carry the phase (vendor variants).
    """
    study_uid = study_uid or generate_uid()
    rng = random.Random(seed)
    numbers = list(range(10, 10 + len(percents)))
    rng.shuffle(numbers)
    for phase, percent in enumerate(percents):
        series_uid = generate_uid()
        for k in range(slices if not callable(slices) else slices(phase)):
            extra = tags(phase, percent, k) if tags else {"NominalPercentageOfCardiacPhase": float(percent)}
            ct_image(folder / f"S{numbers[phase]}" / f"IM{k:03d}.dcm", pixels(phase, k), series_uid=series_uid,
                     study_uid=study_uid, position=ORIGIN + k * SLICE_SPACING * NORMAL,
                     series_number=numbers[phase], instance=k + 1,
                     pixel_spacing=spacing(phase) if spacing else PIXEL_SPACING, **extra)
    return study_uid


def expected_matrix() -> np.ndarray:
    lps = np.eye(4)
    lps[:3, 0] = ROW * PIXEL_SPACING[1]
    lps[:3, 1] = COLUMN * PIXEL_SPACING[0]
    lps[:3, 2] = NORMAL * SLICE_SPACING
    lps[:3, 3] = ORIGIN
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def check_volumes(found, phase_numbers):
    """Every phase's volume holds the pixels written for it, slices in order, on the exact grid."""
    for index, phase in enumerate(phase_numbers):
        series = read_phase(found.phases[index])
        assert series.frames.shape == (1, SLICES, ROWS, COLUMNS)
        np.testing.assert_allclose(series.ijk_to_ras, expected_matrix(), atol=1e-9)
        for k in range(SLICES):
            np.testing.assert_array_equal(series.frames[0, k], pixels(phase, k))


# ---------------------------------------------------------------------------------------------- vendor variants


def test_series_per_phase_by_nominal_percentage(tmp_path):
    """GE-style: NominalPercentageOfCardiacPhase on every image; the percentage is the index."""
    percents = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    write_series_per_phase(tmp_path, percents)
    found = find_cardiac_phases(tmp_path)
    assert found.key == PERCENT_KEY and found.index_unit == "%" and not found.single_series
    assert found.values == percents
    check_volumes(found, range(len(percents)))


def test_series_per_phase_by_description_with_trigger_times_per_slice(tmp_path):
    """Siemens-style: '… 40%' in the series description (one a range '0-90%' too) and a TriggerTime that differs
    from slice to slice (each slice comes from its own beat); the description's percentage decides."""
    percents = [40, 0, 75, 20]

    def tags(phase, percent, k):
        prefix = "Cardiac 0-90% " if phase == 1 else "Cardiac 0.6 Bv40 "
        return {"SeriesDescription": f"{prefix}{percent}%", "TriggerTime": f"{8.5 * percent + 3 * k:g}"}

    write_series_per_phase(tmp_path, percents, tags=tags)
    found = find_cardiac_phases(tmp_path)
    assert found.key == TEXT_PERCENT_KEY
    assert found.values == sorted(percents)
    check_volumes(found, [percents.index(p) for p in sorted(percents)])


def test_series_per_phase_by_image_comments(tmp_path):
    """Canon-style: the phase in ImageComments ('75 %')."""
    percents = [75, 35, 5]
    write_series_per_phase(tmp_path, percents, tags=lambda phase, percent, k: {"ImageComments": f"{percent} %"})
    found = find_cardiac_phases(tmp_path)
    assert found.key == TEXT_PERCENT_KEY and found.values == [5, 35, 75]


def test_series_per_phase_by_trigger_time(tmp_path):
    """No percentage anywhere: the median TriggerTime of each series orders them, in ms."""
    times = [420.0, 80.0, 250.0]
    write_series_per_phase(tmp_path, times, tags=lambda phase, t, k: {"TriggerTime": f"{t + k:g}"})
    found = find_cardiac_phases(tmp_path)
    assert found.key == TRIGGER_KEY and found.index_unit == "ms"
    assert found.values == [81.0, 251.0, 421.0]
    assert any("TriggerTime" in w for w in found.warnings)
    check_volumes(found, [1, 2, 0])


def test_single_series_with_temporal_positions(tmp_path):
    """One series repeating every position once per phase (TemporalPositionIdentifier), files shuffled."""
    series_uid, study_uid = generate_uid(), generate_uid()
    cells = [(p, k) for p in range(4) for k in range(SLICES)]
    random.Random(3).shuffle(cells)
    for n, (p, k) in enumerate(cells):
        ct_image(tmp_path / f"IM{n:03d}.dcm", pixels(p, k), series_uid=series_uid, study_uid=study_uid,
                 position=ORIGIN + k * SLICE_SPACING * NORMAL, instance=n + 1, TemporalPositionIdentifier=p + 1,
                 NumberOfTemporalPositions=4)
    found = find_cardiac_phases(tmp_path)
    assert found.single_series and found.key == TEMPORAL_KEY and found.values == [1, 2, 3, 4]
    check_volumes(found, range(4))


def test_enhanced_ct_with_per_frame_percentage(tmp_path):
    """Enhanced CT: one multi-frame object, the percentage in each frame's cardiac synchronisation macro."""
    percents = [60, 0, 30]
    cells = [(p, k) for p in range(len(percents)) for k in range(SLICES)]
    random.Random(5).shuffle(cells)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality, ds.SeriesDescription = "CT4D02", "CT", "Cardiac multiphase"
    ds.FrameOfReferenceUID = FRAME_OF_REFERENCE
    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = _ds((*ROW, *COLUMN))
    measures = Dataset()
    measures.PixelSpacing = _ds(PIXEL_SPACING)
    measures.SliceThickness = "1.25"
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = "1", "-1024", "HU"
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, data = [], []
    for p, k in cells:
        group = Dataset()
        position = Dataset()
        position.ImagePositionPatient = _ds(ORIGIN + k * SLICE_SPACING * NORMAL)
        cardiac = Dataset()
        cardiac.NominalPercentageOfCardiacPhase = percents[p]
        group.PlanePositionSequence = Sequence([position])
        group.CardiacSynchronizationSequence = Sequence([cardiac])
        frames.append(group)
        data.append(pixels(p, k) + 1024)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.NumberOfFrames = len(cells)
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 1
    ds.PixelData = np.ascontiguousarray(np.stack(data), dtype="<i2").tobytes()
    ds.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)

    found = find_cardiac_phases(tmp_path)
    assert found.single_series and found.key == PERCENT_KEY and found.values == [0, 30, 60]
    check_volumes(found, [1, 2, 0])


def test_text_percentage():
    assert text_percentage("CorCTA 0.75 Bv40 3 BestDiast 72 %") == 72
    assert text_percentage("Cardiac 0-90% 40%") == 40
    assert text_percentage("Cardiac 0.6 Bv40") is None
    assert text_percentage("75%", "75 %") == 75
    assert text_percentage("40%", "70%") is None  # two different percentages: not a phase


# ---------------------------------------------------------------------------------------------- refusals


def test_duplicate_phase_names_both_series(tmp_path):
    write_series_per_phase(tmp_path, [0, 20, 40, 40, 60])
    with pytest.raises(InputError) as error:
        find_cardiac_phases(tmp_path)
    message = str(error.value)
    assert "\n" not in message and message.startswith("duplicate phases") and "40 %" in message
    assert message.count("series ") >= 2


def test_missing_phase_is_named_and_can_be_allowed(tmp_path):
    write_series_per_phase(tmp_path, [0, 10, 20, 40, 50])
    with pytest.raises(InputError, match=r"missing phases: 30 % \(found 0, 10, 20, 40, 50 %, every 10 %\)"):
        find_cardiac_phases(tmp_path)
    found = find_cardiac_phases(tmp_path, allow_missing=True)
    assert found.values == [0, 10, 20, 40, 50]
    assert any("30 %" in w for w in found.warnings)


def test_missing_temporal_position_against_the_announced_count(tmp_path):
    series_uid, study_uid = generate_uid(), generate_uid()
    for n, (p, k) in enumerate((p, k) for p in (1, 2, 4) for k in range(SLICES)):
        ct_image(tmp_path / f"IM{n:03d}.dcm", pixels(p, k), series_uid=series_uid, study_uid=study_uid,
                 position=ORIGIN + k * SLICE_SPACING * NORMAL, TemporalPositionIdentifier=p, NumberOfTemporalPositions=4)
    with pytest.raises(InputError, match="announce 4 temporal positions, 3 were found"):
        find_cardiac_phases(tmp_path)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"slices": lambda phase: SLICES - 1 if phase == 2 else SLICES}, "2 slices against 3"),
        ({"spacing": lambda phase: (0.8, 0.5) if phase == 1 else PIXEL_SPACING}, "pixel spacing 0.8×0.5 mm"),
    ],
)
def test_mixed_geometry_names_the_phase(tmp_path, change, expected):
    write_series_per_phase(tmp_path, [0, 25, 50, 75], **change)
    with pytest.raises(InputError) as error:
        find_cardiac_phases(tmp_path)
    message = str(error.value)
    assert message.startswith("mixed geometry: phase") and expected in message and "\n" not in message


def test_series_without_phase_information(tmp_path):
    write_series_per_phase(tmp_path, [0, 1, 2], tags=lambda phase, percent, k: {})
    with pytest.raises(InputError, match="nothing in their headers says which cardiac phase"):
        find_cardiac_phases(tmp_path)


def test_one_volume_is_not_a_4d_study(tmp_path):
    write_series_per_phase(tmp_path, [40])
    with pytest.raises(InputError, match="a 4D CT needs the volumes of several cardiac phases"):
        find_cardiac_phases(tmp_path)


def test_two_acquisitions_need_a_choice(tmp_path):
    write_series_per_phase(tmp_path / "a", [0, 50])
    write_series_per_phase(tmp_path / "b", [0, 50], seed=2)
    with pytest.raises(InputError, match="2 separate multi-phase acquisitions"):
        find_cardiac_phases(tmp_path)
    any_series = pydicom.dcmread(next((tmp_path / "b").rglob("*.dcm"))).SeriesInstanceUID
    found = find_cardiac_phases(tmp_path, series_uid=any_series)
    assert found.values == [0, 50]
