"""Image-file inputs: NRRD/NIfTI/MetaImage volumes, 4D NIfTI and Slicer's .seq.nrrd, geometry kept exactly.

Where Slicer's own readers and writers exist in slicer-core (volume archetype and volume sequence storage
nodes), the files are checked against them too, so that "round trip" means Slicer agrees, not only ourselves.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import slicer
from CardiacSuiteLib import mrml
from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.imagedata import ImageSeries, add_to_scene
from CardiacSuiteLib.imageio import read_image_input, read_nrrd_header, write_image, write_seq_nrrd

# An oblique, anisotropic geometry (RAS): exact decimal direction cosines, spacing 1.25 × 1.5 × 8 mm.
OBLIQUE = np.array(
    [
        [-0.45, -1.2, -3.84, -10.5],
        [-0.6, 0.9, -5.12, 20.25],
        [1.0, 0.0, -4.8, 30.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def make_series(frames: int = 1, times=None, seed: int = 0) -> ImageSeries:
    rng = np.random.default_rng(seed)
    data = rng.normal(100.0, 30.0, size=(frames, 3, 5, 6)).astype(np.float32)
    return ImageSeries(frames=data, ijk_to_ras=OBLIQUE.copy(), frame_times_ms=times, name="phantom")


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message
    return message


@pytest.mark.parametrize("suffix, tolerance", [(".nrrd", 1e-12), (".nii.gz", 1e-4), (".mha", 1e-12)])
def test_volume_round_trip_agrees_with_slicer(tmp_path, scene, suffix, tolerance):
    series = make_series()
    path = write_image(series, tmp_path / f"volume{suffix}")
    loaded = read_image_input(path)
    assert loaded.frames.shape == (1, 3, 5, 6) and not loaded.is_dynamic
    np.testing.assert_allclose(loaded.ijk_to_ras, OBLIQUE, atol=tolerance)
    np.testing.assert_array_equal(loaded.frames, series.frames)
    assert loaded.name == "volume"

    node = mrml.load_volume(scene, path)  # Slicer's reader places the same voxels at the same points
    np.testing.assert_allclose(mrml.ijk_to_ras(node), loaded.ijk_to_ras, atol=1e-5)
    np.testing.assert_array_equal(mrml.array_from_volume(node), loaded.frames[0])


def test_4d_nifti_round_trip(tmp_path):
    series = make_series(frames=4, times=[10.0, 50.0, 90.0, 130.0])
    path = write_image(series, tmp_path / "cine.nii.gz")
    loaded = read_image_input(path)
    assert loaded.frames.shape == (4, 3, 5, 6)
    np.testing.assert_allclose(loaded.ijk_to_ras, OBLIQUE, atol=1e-4)
    np.testing.assert_array_equal(loaded.frames, series.frames)
    assert loaded.frame_times_ms == pytest.approx([10.0, 50.0, 90.0, 130.0])


def test_seq_nrrd_round_trip_is_exact(tmp_path):
    times = [0.0, 37.5, 80.25, 119.875, 161.0]  # uneven, as trigger times are
    series = make_series(frames=5, times=times)
    path = write_seq_nrrd(series, tmp_path / "cine.seq.nrrd")
    header = read_nrrd_header(path)
    assert header["fields"]["kinds"] == "list domain domain domain"
    assert header["pairs"]["axis 0 index values"] == "0 37.5 80.25 119.875 161"
    assert header["pairs"]["DataNodeClassName"] == "vtkMRMLScalarVolumeNode"

    loaded = read_image_input(path)
    assert loaded.name == "cine" and loaded.frame_times_ms == times
    np.testing.assert_array_equal(loaded.ijk_to_ras, OBLIQUE)
    np.testing.assert_array_equal(loaded.frames, series.frames)
    # uncompressed, and without times: frames are numbered
    plain = make_series(frames=2)
    loaded = read_image_input(write_seq_nrrd(plain, tmp_path / "raw.seq.nrrd", compress=False))
    assert loaded.frame_times_ms is None and loaded.frames.shape == (2, 3, 5, 6)
    np.testing.assert_array_equal(loaded.frames, plain.frames)


def test_slicer_reads_our_seq_nrrd(tmp_path, scene):
    series = make_series(frames=3, times=[20.0, 60.5, 101.0])
    path = write_seq_nrrd(series, tmp_path / "cine.seq.nrrd")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(sequence)
    assert sequence.GetNumberOfDataNodes() == 3
    assert mrml.sequence_index_values(sequence) == [20.0, 60.5, 101.0]
    assert (sequence.GetIndexName(), sequence.GetIndexUnit()) == ("time", "ms")
    for index in range(3):
        item = sequence.GetNthDataNode(index)
        np.testing.assert_allclose(mrml.ijk_to_ras(item), OBLIQUE, atol=1e-9)
        np.testing.assert_array_equal(mrml.array_from_volume(item), series.frames[index])


def test_we_read_slicer_written_seq_nrrd(tmp_path, scene):
    series = make_series(frames=3, times=[15.0, 55.0, 95.0])
    sequence, _ = add_to_scene(scene, series)
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    scene.AddNode(storage)
    path = tmp_path / "slicer.seq.nrrd"
    storage.SetFileName(str(path))
    assert storage.WriteData(sequence)
    loaded = read_image_input(path)
    assert loaded.frame_times_ms == [15.0, 55.0, 95.0]
    np.testing.assert_allclose(loaded.ijk_to_ras, OBLIQUE, atol=1e-9)
    np.testing.assert_array_equal(loaded.frames, series.frames)


def test_file_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        read_image_input(tmp_path / "nothing.nrrd")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError) as error:
        read_image_input(tmp_path / "photo.png")
    assert "unsupported file type" in one_line(error)
    (tmp_path / "broken.nii.gz").write_bytes(gzip.compress(b"not a nifti header"))
    with pytest.raises(InputError) as error:
        read_image_input(tmp_path / "broken.nii.gz")
    assert "broken.nii.gz: not a readable image file" in one_line(error)

    path = write_seq_nrrd(make_series(frames=2), tmp_path / "cut.seq.nrrd", compress=False)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError) as error:
        read_image_input(path)
    assert "truncated" in one_line(error)

    volume = write_image(make_series(), tmp_path / "volume.nrrd")
    with pytest.raises(InputError, match="only selects among DICOM series"):
        read_image_input(volume, series_uid="1.2.3")
    with pytest.raises(InputError, match="seq.nrrd or .nii.gz"):
        write_image(make_series(frames=2), tmp_path / "cine.mha")


def test_colour_image_is_refused(tmp_path):
    import SimpleITK as sitk

    rgb = sitk.Image([4, 3, 2], sitk.sitkVectorUInt8, 3)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(InputError) as error:
        read_image_input(tmp_path / "rgb.mha")
    assert "3 values per voxel" in one_line(error)


@pytest.mark.realdata
@pytest.mark.parametrize("relative", ["ct/totalseg_aorta/ct_cropped.nii.gz", "vessels/aorta.mha"])
def test_real_volume_files_match_slicer(shared_data, scene, relative):
    path = shared_data / relative
    series = read_image_input(path)
    node = mrml.load_volume(scene, path)
    assert series.frames.shape[0] == 1 and series.frames.dtype == np.float32
    assert series.frames.shape[1:] == mrml.array_from_volume(node).shape
    np.testing.assert_allclose(series.ijk_to_ras, mrml.ijk_to_ras(node), atol=1e-4)
    np.testing.assert_array_equal(series.frames[0], mrml.array_from_volume(node).astype(np.float32))


@pytest.mark.realdata
def test_single_dicom_file_input(shared_data):
    series = read_image_input(shared_data / "sunnybrook" / "dicoms" / "SCD0000101" / "1.dcm")
    assert series.frames.shape == (1, 1, 256, 256)
    assert series.spacing_mm == pytest.approx((1.367188, 1.367188, 10.0))
    assert series.frame_times_ms == pytest.approx([18.75])  # 1.dcm: TriggerTime 18.75
