"""``ct-reformat``: the LV long axis, the short- and long-axis reformats and the LV function of a CT or 4D CT.

The geometry is checked on an analytic heart built here (its long axis is known exactly); the command on small 4D CT phantoms drawn from the real whole-heart label maps (2 mm, 3 phases: end
diastole, near end systole, early diastole), whose true LV volumes are the phantom's own label maps. The
10-phase figures of Docs/CTReformat.md come from ``Testing/validation/run_ct_reformat.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.geometry import Grid, voxel_ml
from CardiacSuiteLib.phantoms.ct4d import make_phantom
from CardiacSegmentationLib import reformat

LABELS = "ct/wholeheart_labels"
AXIS = np.array([0.55, -0.6, 0.58]) / np.linalg.norm([0.55, -0.6, 0.58])  # the analytic LV's, apex to base
SIDE = np.cross(AXIS, [0.0, 0.0, 1.0]) / np.linalg.norm(np.cross(AXIS, [0.0, 0.0, 1.0]))


def _truth_ef(phases) -> float:
    volumes = [float((p.labels == reformat.LEFT_VENTRICLE).sum()) for p in phases]
    return 100.0 * (max(volumes) - min(volumes)) / max(volumes)


class Rendered:
    def __init__(self, phantom):
        self.phantom = phantom
        self.phases = [phantom.phase(n) for n in range(len(phantom.percents))]
        self.truth_ef = _truth_ef(self.phases)
        self.truth_ml = [float((p.labels == reformat.LEFT_VENTRICLE).sum()) * voxel_ml(phantom.ijk_to_ras)
                         for p in self.phases]

    def axis(self) -> reformat.LongAxis:
        """The long axis by the same rule on the true labels of the reference phase."""
        return reformat.find_long_axis(self.phases[0].labels, self.phantom.ijk_to_ras)


_cache: dict = {}


def rendered(shared_data: Path, heart: str) -> Rendered:
    if heart not in _cache:
        _cache[heart] = Rendered(make_phantom(shared_data / LABELS / f"{heart}.nii.gz", spacing_mm=2.0, phases=3,
                                              seed=3))
    return _cache[heart]


def _run(argv: list[str]) -> int:
    from CardiacSuiteLib.cli import main

    return main(argv)


# ---------------------------------------------------------------------------------------------- geometry


def _analytic_heart(spacing_mm: float = 2.0):
    """An LV of known axis: an ellipsoidal cavity (semi-axes 20, 20, 40 mm) in a 9 mm wall cut at the base, the
    left atrium above the base on the axis, the aorta beside it and an RV ball against the septum."""
    size = int(np.ceil(200.0 / spacing_mm))
    matrix = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    matrix[:3, 3] = -100.0
    grid = Grid((size, size, size), matrix)
    points = grid.kji_to_ras(np.indices(grid.shape).reshape(3, -1).T).reshape(*grid.shape, 3)
    apex = -AXIS * 40.0  # the cavity's apical tip; its centre is at the origin
    relative = points - apex
    z = relative @ AXIS
    radial = np.linalg.norm(relative - z[..., None] * AXIS, axis=-1)
    below_base = z <= 70.0
    cavity = ((radial / 20.0) ** 2 + ((z - 40.0) / 40.0) ** 2 <= 1.0) & below_base
    wall = ((radial / 29.0) ** 2 + ((z - 40.0) / 49.0) ** 2 <= 1.0) & below_base & ~cavity
    labels = np.zeros(grid.shape, np.uint8)
    labels[np.linalg.norm(points - (apex + AXIS * 92.0), axis=-1) <= 22.0] = reformat.LEFT_ATRIUM
    labels[np.linalg.norm(points - (apex + AXIS * 74.0 + SIDE * 14.0), axis=-1) <= 10.0] = reformat.AORTA
    labels[np.linalg.norm(points - (apex + AXIS * 35.0 - SIDE * 45.0), axis=-1) <= 16.0] = reformat.RIGHT_VENTRICLE
    labels[wall] = reformat.LV_MYOCARDIUM
    labels[cavity] = reformat.LEFT_VENTRICLE
    return labels, matrix


def test_long_axis_and_planes_of_an_analytic_heart():
    """Axis within 3 degrees of the ellipsoid's, base to apex; 4CH toward the RV, 3CH through the aortic valve."""
    labels, matrix = _analytic_heart()

    axis = reformat.find_long_axis(labels, matrix)
    assert reformat.angle_deg(axis.direction, -AXIS) < 3.0
    assert 70.0 < axis.length_mm < 90.0  # mitral plane (70 mm above the cavity tip) to the epicardial apex (-9 mm)
    planes = reformat.plane_set(labels, matrix, axis)
    for plane in reformat.PLANES:
        assert abs(np.dot(planes.in_plane(plane), axis.direction)) < 1e-9
    assert abs(np.dot(planes.in_plane("2CH"), planes.in_plane("4CH"))) < 1e-9
    assert np.dot(planes.septal, -SIDE) > 0.95  # toward the RV
    aortic = np.array(planes.landmarks["aortic_valve_centre_ras_mm"])
    normal_3ch = np.cross(planes.outflow, axis.direction)
    assert abs(np.dot(aortic - axis.base, normal_3ch)) < 1.0  # the aortic valve centre lies in the 3CH plane

    sax = reformat.short_axis_grid(planes, labels, matrix, slice_mm=8.0, pixel_mm=1.25)
    np.testing.assert_allclose(sax.spacing_kji, [8.0, 1.25, 1.25])
    np.testing.assert_allclose(sax.ijk_to_ras[:3, 2] / 8.0, axis.direction, atol=1e-9)
    sampled = reformat.reformat_labels(labels, matrix, sax)
    areas = [(s == reformat.LEFT_VENTRICLE).sum() for s in sampled]
    assert areas[0] > 0 and areas[-1] < max(areas) / 4  # slices run from the base to the apex
    cavity_ml = float((labels == reformat.LEFT_VENTRICLE).sum()) * voxel_ml(matrix)
    summed_ml = float(np.sum(areas)) * 1.25 * 1.25 * 8.0 / 1000.0
    assert abs(summed_ml - cavity_ml) / cavity_ml < 0.04
    # Laid out as a CMR short-axis image: the RV on the left (low columns), the anterior wall at the top.
    mid = sampled[len(sampled) // 2]
    rv_columns = np.nonzero(mid == reformat.RIGHT_VENTRICLE)[1]
    lv_columns = np.nonzero(mid == reformat.LEFT_VENTRICLE)[1]
    assert rv_columns.size and rv_columns.mean() < lv_columns.mean()
    assert sax.ijk_to_ras[1, 1] <= 0.0  # rows run away from anterior (RAS +A)


def test_given_long_axis_is_used_and_a_short_one_refused():
    axis = reformat.long_axis_from_points([0, 0, 0], [10, -60, 30], "given")
    assert axis.source == "given" and axis.length_mm > 60
    with pytest.raises(InputError, match="shorter than 20 mm"):
        reformat.long_axis_from_points([0, 0, 0], [5, 5, 5])


def test_no_lv_and_flat_images_are_refused(tmp_path, capsys):
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[5:10, 5:10, 5:10] = reformat.RIGHT_VENTRICLE
    with pytest.raises(InputError, match="no left ventricle"):
        reformat.find_long_axis(labels, np.eye(4))
    from CardiacSuiteLib.imagedata import ImageSeries
    from CardiacSuiteLib.imageio import write_image

    flat = tmp_path / "slice.nrrd"
    write_image(ImageSeries(np.zeros((1, 1, 64, 64), np.int16), np.eye(4)), flat)
    assert _run(["ct-reformat", str(flat), "--out", str(tmp_path / "out")]) == 2
    assert "need a 3D CT" in capsys.readouterr().err
    water = tmp_path / "water.nrrd"
    noise = np.random.default_rng(0).normal(0.0, 20.0, (1, 40, 40, 40)).astype(np.int16)
    write_image(ImageSeries(noise, np.diag([2.0, 2.0, 2.0, 1.0])), water)
    assert _run(["ct-reformat", str(water), "--out", str(tmp_path / "out"), "--atlas", str(water)]) == 2
    assert "CT" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- command


def _write_4d(path: Path, render: Rendered) -> Path:
    from CardiacSuiteLib.image4d import ArrayPhases
    from CardiacSuiteLib.imageio import write_seq_nrrd

    frames = np.stack([p.image for p in render.phases])
    return write_seq_nrrd(ArrayPhases(frames, render.phantom.ijk_to_ras, render.phantom.percents, name="phantom"), path)


def test_command_on_a_4d_phantom_with_automatic_segmentation(tmp_path, shared_data, capsys):
    """mmwhs heart, atlas = the other heart: EF within 3 points by both methods, axis within 4 degrees, files."""
    from CardiacSuiteLib.imageio import read_image_input

    render = rendered(shared_data, "mmwhs")
    study = _write_4d(tmp_path / "study.seq.nrrd", render)
    out = tmp_path / "out"
    code = _run(["ct-reformat", str(study), "--out", str(out), "--atlas",
                 str(shared_data / LABELS / "wh.nii.gz"), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "EF" in printed and "%" in printed and " ml" in printed
    results = json.loads((out / "results.json").read_text())
    for method in ("short_axis_summation", "voxel_count"):
        ef = results["lv_function"][method]["ef_pct"]
        assert abs(ef - render.truth_ef) <= 3.0, (method, ef, render.truth_ef)
    assert results["method"]["phases_method"] == "propagate"
    comparison = results["fourdct_comparison"]
    assert len(comparison["phases"]) == 3 and comparison["fourdct"]["ef_pct"] is not None
    found = np.array(results["long_axis"]["direction_base_to_apex"])
    assert reformat.angle_deg(found, -render.phantom.frame.axis) < 4.0  # the phantom's own LV axis

    sax = read_image_input(out / "sax.seq.nrrd")
    expected = np.array(results["short_axis"]["ijk_to_ras"])
    np.testing.assert_allclose(sax.ijk_to_ras, expected, atol=1e-3)
    assert sax.frames.shape[0] == 3 and sax.frames.shape[1:] == tuple(results["short_axis"]["shape_ijk"][::-1])
    assert abs(np.linalg.norm(sax.ijk_to_ras[:3, 2]) - 8.0) < 1e-3
    np.testing.assert_allclose(sax.ijk_to_ras[:3, 2] / 8.0, found, atol=1e-3)
    labels = read_image_input(out / "sax_labels.seq.nrrd")
    assert (labels.frames == reformat.LEFT_VENTRICLE).any()
    for plane in ("2ch", "3ch", "4ch"):
        image = read_image_input(out / f"{plane}.seq.nrrd")
        in_plane = image.ijk_to_ras[:3, 1] / np.linalg.norm(image.ijk_to_ras[:3, 1])
        np.testing.assert_allclose(in_plane, found, atol=1e-3)  # every long-axis plane contains the axis
        assert (out / f"{plane}_labels.seq.nrrd").exists()
    line = json.loads((out / "long_axis.mrk.json").read_text())
    points = line["markups"][0]["controlPoints"]
    assert line["markups"][0]["type"] == "Line" and len(points) == 2
    flip = np.array([-1.0, -1.0, 1.0]) if line["markups"][0].get("coordinateSystem") == "LPS" else np.ones(3)
    np.testing.assert_allclose(np.array(points[0]["position"]) * flip, results["long_axis"]["base_ras_mm"], atol=0.01)


def test_command_on_two_ct_files_with_a_given_segmentation(tmp_path, shared_data, capsys):
    """Two 3D CTs (end diastole, end systole) and the true end-diastolic labels: EF within 3 points; one CT alone
    gives the volume and no ejection fraction; a given long axis is used as given."""
    from CardiacSegmentationLib.cli_reformat import read_reference_labels
    from CardiacSuiteLib.image4d import open_4d
    from CardiacSuiteLib.imagedata import ImageSeries
    from CardiacSuiteLib.imageio import write_image

    render = rendered(shared_data, "wh")
    matrix = render.phantom.ijk_to_ras
    files = []
    for index in (0, 1):
        files.append(write_image(ImageSeries(render.phases[index].image[None], matrix),
                                 tmp_path / f"phase_{index * 33}.nii.gz"))
    segmentation = write_image(ImageSeries(render.phases[0].labels[None], matrix), tmp_path / "labels.nrrd")
    np.testing.assert_array_equal(read_reference_labels(segmentation, open_4d(files), 0), render.phases[0].labels)
    truth_ef = 100.0 * (render.truth_ml[0] - render.truth_ml[1]) / render.truth_ml[0]

    out = tmp_path / "pair"
    assert _run(["ct-reformat", *map(str, files), "--segmentation", str(segmentation), "--out", str(out),
                 "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    for method in ("short_axis_summation", "voxel_count"):
        assert abs(results["lv_function"][method]["ef_pct"] - truth_ef) <= 3.0

    axis = render.axis()
    given = [*axis.base.round(2), *(axis.apex + [0.0, 0.0, 5.0]).round(2)]
    single = tmp_path / "single"
    assert _run(["ct-reformat", str(files[0]), "--segmentation", str(segmentation), "--out", str(single),
                 "--long-axis", *map(str, given), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "no ejection fraction" in printed
    results = json.loads((single / "results.json").read_text())
    assert results["long_axis"]["source"].startswith("given")
    np.testing.assert_allclose(results["long_axis"]["apex_ras_mm"], given[3:], atol=0.01)
    for method in ("short_axis_summation", "voxel_count"):
        assert results["lv_function"][method]["ef_pct"] is None
        assert abs(results["lv_function"][method]["edv_ml"] - render.truth_ml[0]) / render.truth_ml[0] < 0.06
    assert (single / "sax.nrrd").exists() and (single / "4ch.nrrd").exists()

    empty = write_image(ImageSeries(np.where(render.phases[0].labels == 3, 0, render.phases[0].labels)[None], matrix),
                        tmp_path / "no_lv.nrrd")
    assert _run(["ct-reformat", str(files[0]), "--segmentation", str(empty), "--out", str(tmp_path / "x")]) == 2
    assert "no left ventricle" in capsys.readouterr().err
