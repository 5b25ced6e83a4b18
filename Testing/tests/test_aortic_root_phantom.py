"""The aortic-root phantom (``Testing/phantoms/aortic_root.py``): its truth agrees with the image it renders.

TAVR measurement code is scored against this truth, so each reported quantity is re-measured here from the
rendered mask or the noise-free image (annulus, LVOT, STJ and aortic areas, sinus diameters, nadirs, coronary
heights, calcium volumes), the C-arm formulas are checked for what they promise, and ``write`` is read back.
Rendered at 0.8 mm to keep the module fast.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

TESTING = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTING))

from phantoms import aortic_root as ar  # noqa: E402
from phantoms.stent import _blurred_ball  # noqa: E402

from CardiacSuiteLib.imageio import read_image_input  # noqa: E402

SPACING = 0.8


@pytest.fixture(scope="module")
def clean() -> ar.AorticRootPhantom:
    return ar.aortic_root(spacing_mm=SPACING, noise_sd_hu=0.0)


@pytest.fixture(scope="module")
def noisy() -> ar.AorticRootPhantom:
    return ar.aortic_root(spacing_mm=SPACING, seed=3)


def _sample(phantom: ar.AorticRootPhantom, volume: np.ndarray, points: np.ndarray, order: int) -> np.ndarray:
    inverse = np.linalg.inv(phantom.ijk_to_ras)
    ijk = points @ inverse[:3, :3].T + inverse[:3, 3]
    return ndimage.map_coordinates(volume.astype(float), [ijk[..., 2], ijk[..., 1], ijk[..., 0]], order=order,
                                   cval=0.0)


def _plane_area(phantom: ar.AorticRootPhantom, volume: np.ndarray, origin: np.ndarray, normal: np.ndarray,
                level: float, order: int, half_mm: float = 26.0, step: float = 0.2) -> float:
    """Area (mm²) of the part of a plane section where ``volume`` exceeds ``level``, over a centred square."""
    normal = normal / np.linalg.norm(normal)
    u = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    s = np.arange(-half_mm, half_mm + 1e-9, step)
    points = origin + s[:, None, None] * u + s[None, :, None] * v
    values = _sample(phantom, volume, points, order)
    inside = values > level
    labels, _ = ndimage.label(inside)
    centre = labels[len(s) // 2, len(s) // 2]
    assert centre > 0, "the plane's centre is not in the lumen"
    return float((labels == centre).sum() * step * step)


def _blood_level(phantom: ar.AorticRootPhantom) -> float:
    return 0.5 * (phantom.blood_hu + phantom.parameters["wall_hu"])


def test_annulus_measures_are_the_ellipse_through_the_nadirs(clean):
    a, b = clean.annulus["semi_axes_mm"]
    local = clean.to_local(clean.nadirs)
    assert np.allclose(local[:, 2], 0.0, atol=1e-9)  # the annular plane is the plane of the nadirs
    assert np.allclose((local[:, 0] / a) ** 2 + (local[:, 1] / b) ** 2, 1.0, atol=1e-9)
    angles = np.sort(np.degrees(np.arctan2(local[:, 1], local[:, 0])) % 360.0)
    assert np.allclose(np.diff(np.concatenate([angles, angles[:1] + 360.0])), 120.0, atol=1e-6)
    ring = clean.annulus["points"]
    assert np.allclose(clean.to_local(ring)[:, 2], 0.0, atol=1e-9)
    polygon = np.linalg.norm(np.diff(np.vstack([ring, ring[:1]]), axis=0), axis=1).sum()
    assert clean.annulus["perimeter_mm"] == pytest.approx(polygon, rel=1e-4)
    assert clean.annulus["area_mm2"] == pytest.approx(math.pi * a * b)
    assert clean.annulus["area_derived_diameter_mm"] == pytest.approx(2.0 * math.sqrt(a * b))
    assert clean.annulus["perimeter_derived_diameter_mm"] == pytest.approx(clean.annulus["perimeter_mm"] / math.pi)
    assert (clean.annulus["diameter_min_mm"], clean.annulus["diameter_max_mm"]) == (2 * b, 2 * a)
    n = clean.annulus["normal"]
    assert np.allclose(clean.orientation.T @ clean.orientation, np.eye(3), atol=1e-12)
    assert np.linalg.det(clean.orientation) == pytest.approx(1.0)
    assert np.allclose(clean.orientation[:, 2], n)
    assert clean.angulation_deg == pytest.approx(math.degrees(math.acos(n[2])))
    assert 40.0 <= clean.angulation_deg <= 60.0
    # the normal points into the aorta: the STJ lies above the plane
    assert (clean.stj["center"] - clean.annulus["center"]) @ n == pytest.approx(clean.stj["height_mm"])


def test_cross_sections_match_the_reported_areas(clean):
    center, n = clean.annulus["center"], clean.annulus["normal"]
    mask = clean.blood_mask
    level = _blood_level(clean)
    for image_or_mask, threshold, order in ((mask, 0.5, 0), (clean.image, level, 1)):
        area = _plane_area(clean, image_or_mask, center, n, threshold, order)
        assert area == pytest.approx(clean.annulus["area_mm2"], rel=0.03)
        lvot = _plane_area(clean, image_or_mask, clean.lvot["center"], n, threshold, order)
        assert lvot == pytest.approx(clean.lvot["area_mm2"], rel=0.03)
        stj = _plane_area(clean, image_or_mask, clean.stj["center"], n, threshold, order)
        assert stj == pytest.approx(math.pi * (0.5 * clean.stj["diameter_mm"]) ** 2, rel=0.03)
        ascending = _plane_area(clean, image_or_mask, clean.ascending["point_40mm"], n, threshold, order)
        assert ascending == pytest.approx(math.pi * (0.5 * clean.ascending_40mm_diameter_mm) ** 2, rel=0.03)
    assert (clean.ascending["point_40mm"] - center) @ n == pytest.approx(40.0, abs=1e-6)
    tilt = math.degrees(math.acos(np.clip(clean.ascending["direction"] @ n, -1.0, 1.0)))
    assert tilt == pytest.approx(clean.ascending["tilt_deg"], abs=0.1)


def test_blood_pool_hu_and_noise(noisy):
    core = ndimage.binary_erosion(noisy.blood_mask, iterations=3)
    values = noisy.image[core]
    assert values.size > 10_000
    assert values.mean() == pytest.approx(noisy.blood_hu, abs=3.0)
    assert values.std() == pytest.approx(noisy.noise_sd_hu, rel=0.2)
    assert 350.0 <= noisy.blood_hu <= 450.0


def test_nadirs_are_the_lowest_blood_points_of_their_sinus(clean):
    a, b = clean.annulus["semi_axes_mm"]
    local = clean.to_local(clean.voxel_points()[clean.blood_mask])
    rho, phi, z = np.hypot(local[:, 0], local[:, 1]), np.arctan2(local[:, 1], local[:, 0]), local[:, 2]
    ellipse = a * b / np.sqrt((b * np.cos(phi)) ** 2 + (a * np.sin(phi)) ** 2)
    # blood bulging past the annulus, within reach of the sinus wall (the coronaries run on further out)
    sinus = (rho > ellipse + 0.5) & (rho < ellipse + 10.0) & (z > -3.0) & (z < clean.stj["height_mm"])
    assert not np.any(sinus & (z < 0.0)), "no sinus blood below the annular plane"
    nadir_local = clean.to_local(clean.nadirs)
    for k, name in enumerate(clean.cusp_names):
        phi_k = math.atan2(nadir_local[k, 1], nadir_local[k, 0])
        offset = np.degrees(np.angle(np.exp(1j * (phi - phi_k))))
        mine = sinus & (np.abs(offset) < 60.0)
        lowest = int(np.argmin(np.where(mine, z, np.inf)))
        assert z[lowest] < 1.5, name
        assert abs(offset[lowest]) < 15.0, name
        assert np.linalg.norm(local[lowest] - nadir_local[k]) < 2.5, name
        # the sinus floor rises from the nadir towards both commissures
        for lo, hi in ((20.0, 40.0), (-40.0, -20.0)):
            band = mine & (offset >= lo) & (offset < hi)
            assert z[band].min() > z[lowest] + 1.0, name
    # the commissures sit on the wall at the commissure height, between the sinuses
    commissures = clean.to_local(clean.commissures)
    assert np.allclose(commissures[:, 2], clean.parameters["commissure_height_mm"])


def test_coronary_ostium_heights_match_the_mask(clean):
    points = clean.voxel_points()[clean.blood_mask]
    local = clean.to_local(points)
    rho = np.hypot(local[:, 0], local[:, 1])
    for side in ("left", "right"):
        ostium = clean.coronary_ostia[side]
        radius = 0.5 * ostium["diameter_mm"]
        edge = clean.to_local(ostium["lower_edge"][None])[0]
        assert edge[2] == pytest.approx(ostium["height_mm"])
        rho_edge = math.hypot(edge[0], edge[1])
        # blood just outside the sinus wall that belongs to the coronary: its floor is the ostium's lower edge
        band = (rho > rho_edge + 1.5) & (rho < rho_edge + 5.0)
        tree = ostium["centerline"]
        distance = np.min(np.linalg.norm(points[band][:, None, :] - tree[None, ::2, :], axis=-1), axis=1)
        in_tube = distance < radius + 0.4
        assert in_tube.sum() > 20, side
        assert local[band][in_tube, 2].min() == pytest.approx(ostium["height_mm"], abs=0.6), side
        centre = clean.to_local(ostium["point"][None])[0]
        assert centre[2] == pytest.approx(ostium["height_mm"] + radius)
    assert clean.coronary_ostia["left"]["height_mm"] == 13.0
    assert clean.coronary_ostia["right"]["height_mm"] == 16.0


def test_sinus_diameters_match_the_image(clean):
    level = _blood_level(clean)
    diameters = []
    for name in clean.cusp_names:
        sov = clean.sov[name]
        start, end = sov["sinus_point"], sov["commissure_point"]
        direction = (end - start) / np.linalg.norm(end - start)
        assert np.linalg.norm(end - start) == pytest.approx(sov["diameter_mm"], abs=1e-6)
        shifts = []
        for point, outward in ((start, -direction), (end, direction)):
            s = np.linspace(-3.0, 3.0, 601)  # from inside to outside across the wall
            profile = _sample(clean, clean.image, point + s[:, None] * outward, 1)
            crossing = int(np.argmax(profile < level))
            pair = slice(crossing - 1, crossing + 1)
            shifts.append(np.interp(level, profile[pair][::-1], s[pair][::-1]))
        measured = sov["diameter_mm"] + sum(shifts)
        assert measured == pytest.approx(sov["diameter_mm"], abs=0.3), name
        diameters.append(sov["diameter_mm"])
        assert 0.0 < sov["height_mm"] < clean.stj["height_mm"]
    assert clean.sov["mean_diameter_mm"] == pytest.approx(np.mean(diameters))
    assert 29.0 < clean.sov["mean_diameter_mm"] < 36.0


def test_calcium_volumes(clean):
    assert clean.calcium_volume_mm3 == pytest.approx({"non_coronary": 40.0, "left": 120.0, "right": 80.0})
    assert min(clean.calcium["hu"]) > clean.calcium_threshold_hu
    assert 900.0 <= min(clean.calcium["hu"]) and max(clean.calcium["hu"]) <= 1300.0
    voxel = SPACING**3
    points = clean.voxel_points()
    for name in clean.cusp_names:
        chosen = [k for k, cusp in enumerate(clean.calcium["cusp"]) if cusp == name]
        measured = 0.0
        for k in chosen:
            centre, radius, hu = clean.calcium["centers"][k], clean.calcium["radii_mm"][k], clean.calcium["hu"][k]
            near = np.linalg.norm(points - centre, axis=-1) < radius + 1.5
            # a blurred ball's surface is where its blur fraction equals the exact value at its radius
            surface = float(_blurred_ball(np.array(radius), radius, clean.psf_sigma_mm))
            measured += (clean.image[near] > clean.blood_hu + surface * (hu - clean.blood_hu)).sum() * voxel
        assert measured == pytest.approx(clean.calcium_volume_mm3[name], rel=0.15), name


def test_perpendicularity_curve_keeps_the_annulus_edge_on(clean):
    n = clean.annulus["normal"]
    lao = np.linspace(-90.0, 90.0, 181)
    cra = ar.perpendicularity_curve(n, lao)
    views = ar.view_direction(lao, cra)
    assert np.allclose(np.linalg.norm(views, axis=1), 1.0)
    assert np.max(np.abs(views @ n)) < 1e-12
    assert np.allclose(ar.perpendicularity_curve(-n, lao), cra)
    # conventions: AP looks from anterior, LAO from the patient's left, CRA from the head
    assert np.allclose(ar.view_direction(0.0, 0.0), [0.0, 1.0, 0.0])
    assert np.allclose(ar.view_direction(90.0, 0.0), [-1.0, 0.0, 0.0], atol=1e-12)
    assert np.allclose(ar.view_direction(0.0, 90.0), [0.0, 0.0, 1.0], atol=1e-12)
    # a plane tilted towards anterior is edge-on in a caudal AP view, by its tilt
    tilted = np.array([0.0, math.sin(math.radians(30.0)), math.cos(math.radians(30.0))])
    assert float(ar.perpendicularity_curve(tilted, 0.0)) == pytest.approx(-30.0)

    view = clean.coplanar_view
    assert float(ar.perpendicularity_curve(n, view["lao_deg"])) == pytest.approx(view["cra_deg"], abs=1e-9)
    v = ar.view_direction(view["lao_deg"], view["cra_deg"])
    assert np.allclose(v, view["view_direction"])
    assert abs(v @ n) < 1e-12
    screen = np.cross(v, n)
    along = (clean.nadirs - clean.annulus["center"]) @ screen
    order = np.argsort(along)
    assert clean.cusp_names[order[1]] == "right"  # the right cusp in the middle, the other two either side
    assert along[order[1]] - along[order[0]] == pytest.approx(along[order[2]] - along[order[1]], abs=1e-9)
    assert ar.c_arm_angles(v) == pytest.approx((view["lao_deg"], view["cra_deg"]))


def test_write_round_trips(clean, tmp_path):
    path = ar.write(clean, tmp_path / "root")
    assert path.name == "ct.nrrd"
    series = read_image_input(path)
    assert series.frames.shape == (1, *clean.shape)
    assert np.allclose(series.frames[0], clean.image, atol=1e-3)
    assert np.allclose(series.ijk_to_ras, clean.ijk_to_ras, atol=1e-9)
    truth = json.loads((tmp_path / "root" / "truth.json").read_text())
    assert truth["annulus"]["area_mm2"] == pytest.approx(clean.annulus["area_mm2"])
    assert np.allclose(truth["nadirs"], clean.nadirs, atol=1e-4)
    assert truth["cusp_names"] == list(clean.cusp_names)
    assert truth["coronary_ostia"]["left"]["height_mm"] == clean.coronary_ostia["left"]["height_mm"]
    assert truth["calcium_volume_mm3"] == pytest.approx(clean.calcium_volume_mm3)
    assert truth["coplanar_view"]["lao_deg"] == pytest.approx(clean.coplanar_view["lao_deg"])
    assert np.allclose(truth["orientation"], clean.orientation, atol=1e-4)
    assert truth["seed"] == clean.seed
