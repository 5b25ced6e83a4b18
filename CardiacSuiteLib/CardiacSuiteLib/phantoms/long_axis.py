"""A digital phantom of 2- and 4-chamber long-axis cines with analytically known atrial volumes.

There is no real long-axis data to test atrial volumes on, so this draws one heart in 3D and images it in two
planes. The left and right atria are ellipsoids whose semi-axes change over the cycle; the left and right
ventricles are half-ellipsoids below the mitral and tricuspid valve planes, which descend in systole; thin
pulmonary-vein stubs leave the left atrial roof; lungs and chest tissue surround the heart. Both views are
computed from the same 3D model, and each view's IJK-to-RAS matrix is the exact plane it was drawn in:

* the 4-chamber plane holds the long axis (apex to base) and the left-right axis of the heart; it shows all four
  chambers;
* the 2-chamber plane holds the long axis and the heart's front-back axis; it shows the left atrium and ventricle.

The two planes meet along the left atrium's long axis, and each holds two of its principal axes. That is the
one case where the biplane area-length formula is exact: with semi-axes a (long), b (4-chamber) and c
(2-chamber), A₄ch = πab, A₂ch = πac, L = 2a and 8/(3π)·A₂ch·A₄ch/L = 4/3·π·abc, the ellipsoid's volume.
The right atrium is a spheroid about its long axis (c = b) by default, for which the single-plane 4-chamber
formula 8/(3π)·A²/L = 4/3·π·ab² is exact too; ``ra_depth_ratio`` makes it a general ellipsoid, and the phantom
then records both its true volume and the single-plane estimate, which differ by that ratio.

Contrast is bright-blood SSFP-like (blood bright, myocardium dark, chest tissue grey, lung dark), rendered with
3×3 sub-pixel sampling (partial volume), Gaussian blur, a smooth coil-sensitivity shading and Rician noise.
Only the mid-plane of each slice is drawn (no through-plane partial volume). There is no left atrial appendage.
Every figure derived from this module comes from a phantom, not from patients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..imagedata import ImageSeries

AREA_LENGTH_CONSTANT = 8.0 / (3.0 * np.pi)

# Label values of ``LaxPhantom.labels`` (blood pools sampled at the pixel centres).
LA, RA, LV, RV, PULMONARY_VEIN = 1, 2, 3, 4, 5

# Tissue classes drawn in the image and their SSFP-like signal (blood = about 1).
_AIR, _TISSUE, _LUNG, _MYOCARDIUM, _LV, _RV, _LA, _RA, _PV = range(9)
_SIGNAL = np.array([0.0, 0.42, 0.07, 0.27, 1.0, 0.97, 0.93, 0.9, 0.95], dtype=np.float32)
_SUBSAMPLES = 3

VIEWS = ("2ch", "4ch")


@dataclass
class HeartFrame:
    """The heart's axes in RAS: ``long`` from apex to base, ``lateral`` from the right heart to the left, ``depth``."""

    origin: np.ndarray  # centre of the mitral valve plane at end-diastole (RAS, mm)
    long: np.ndarray
    lateral: np.ndarray
    depth: np.ndarray

    def side(self, view: str) -> np.ndarray:
        """The in-plane axis that, with ``long``, spans the view: lateral for 4-chamber, depth for 2-chamber."""
        return self.lateral if view == "4ch" else self.depth


@dataclass
class LaxPhantom:
    """Both cines, their exact labels and the analytic volumes of each phase (all from a phantom)."""

    two_chamber: ImageSeries
    four_chamber: ImageSeries
    labels: dict[str, np.ndarray]  # view → [T, 1, J, I] blood-pool labels at pixel centres (LA, RA, LV, RV, …)
    # per phase of the 4-chamber cine (the 2-chamber cine may have its own phase count):
    la_semi_axes_mm: np.ndarray  # [T, 3]: a (long axis), b (in the 4-chamber plane), c (in the 2-chamber plane)
    ra_semi_axes_mm: np.ndarray  # [T, 3]
    frame: HeartFrame
    la_centre_ras: np.ndarray  # [T, 3]
    ra_centre_ras: np.ndarray  # [T, 3]
    valve_descent_mm: np.ndarray  # [T] mitral-plane displacement toward the apex
    parameters: dict = field(default_factory=dict)

    # -------------------------------------------------------------------------------------- truth

    @property
    def la_volume_ml(self) -> np.ndarray:
        """True left atrial volume per phase: the ellipsoid's 4/3·π·abc."""
        return ellipsoid_volume_ml(self.la_semi_axes_mm)

    @property
    def ra_volume_ml(self) -> np.ndarray:
        return ellipsoid_volume_ml(self.ra_semi_axes_mm)

    @property
    def la_biplane_ml(self) -> np.ndarray:
        """Biplane area-length of the continuous LA sections (equal to ``la_volume_ml``: see the module notes)."""
        a, b, c = self.la_semi_axes_mm.T
        return AREA_LENGTH_CONSTANT * (np.pi * a * c) * (np.pi * a * b) / (2.0 * a) / 1000.0

    @property
    def ra_single_plane_ml(self) -> np.ndarray:
        """Single-plane 4-chamber area-length of the continuous RA section: 4/3·π·ab² (exact when c = b)."""
        a, b, _ = self.ra_semi_axes_mm.T
        return AREA_LENGTH_CONSTANT * (np.pi * a * b) ** 2 / (2.0 * a) / 1000.0

    def seeds_ras(self, phase: int = 0) -> dict[str, np.ndarray]:
        """Seed points at the atrial centres of ``phase``: both planes pass through the LA centre."""
        return {"la_2ch": self.la_centre_ras[phase].copy(), "la_4ch": self.la_centre_ras[phase].copy(),
                "ra_4ch": self.ra_centre_ras[phase].copy()}

    def series(self, view: str) -> ImageSeries:
        return self.two_chamber if view == "2ch" else self.four_chamber

    def plane_coordinates_mm(self, view: str) -> tuple[np.ndarray, np.ndarray]:
        """Height above the end-diastolic mitral plane and in-plane side offset (mm) of each pixel centre, [J, I]."""
        series = self.series(view)
        rows, cols = series.frames.shape[-2:]
        j, i = np.mgrid[0:rows, 0:cols].astype(float)
        ras = series.ijk_to_ras[:3, 0, None, None] * i + series.ijk_to_ras[:3, 1, None, None] * j
        ras = ras + series.ijk_to_ras[:3, 3, None, None] - self.frame.origin[:, None, None]
        return np.tensordot(self.frame.long, ras, axes=1), np.tensordot(self.frame.side(view), ras, axes=1)


def ellipsoid_volume_ml(semi_axes_mm: np.ndarray) -> np.ndarray:
    semi_axes_mm = np.asarray(semi_axes_mm, dtype=float)
    return 4.0 / 3.0 * np.pi * np.prod(semi_axes_mm, axis=-1) / 1000.0


def atrial_filling(fraction: np.ndarray) -> np.ndarray:
    """Atrial size over the cycle, 0 (smallest) to 1 (largest), from the ventricular end-diastole at 0.

    Reservoir filling up to ventricular end-systole (40 % of the cycle), passive emptying, diastasis, then the
    atrial contraction back to the smallest size at the next end-diastole.
    """
    knots = np.array([0.0, 0.4, 0.6, 0.8, 1.0])
    values = np.array([0.0, 1.0, 0.55, 0.5, 0.0])
    fraction = np.mod(fraction, 1.0)
    index = np.clip(np.searchsorted(knots, fraction, side="right") - 1, 0, len(knots) - 2)
    local = (fraction - knots[index]) / (knots[index + 1] - knots[index])
    smooth = 0.5 - 0.5 * np.cos(np.pi * local)
    return values[index] + (values[index + 1] - values[index]) * smooth


def ventricular_systole(fraction: np.ndarray) -> np.ndarray:
    """Ventricular contraction, 0 at end-diastole, 1 at end-systole (40 % of the cycle), relaxed by 70 %."""
    fraction = np.mod(fraction, 1.0)
    rising = 0.5 - 0.5 * np.cos(np.pi * np.clip(fraction / 0.4, 0.0, 1.0))
    falling = 0.5 + 0.5 * np.cos(np.pi * np.clip((fraction - 0.4) / 0.3, 0.0, 1.0))
    return np.where(fraction <= 0.4, rising, falling)


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=float)
    return vector / np.linalg.norm(vector)


def default_frame() -> HeartFrame:
    """An oblique heart: apex to the patient's left, front and feet, as in a typical chest."""
    long = _unit([0.55, -0.5, 0.67])  # apex → base: toward the right, back and head
    lateral = np.array([-1.0, 0.35, -0.2])  # right heart → left heart, roughly the patient's left
    lateral = _unit(lateral - np.dot(lateral, long) * long)
    depth = np.cross(long, lateral)
    return HeartFrame(np.array([5.0, -15.0, 30.0]), long, lateral, depth)


def view_geometry(frame: HeartFrame, view: str, size: int, pixel_mm: float, thickness_mm: float,
                  tilt_deg: float = 10.0, centre_below_valve_mm: float = 12.0) -> np.ndarray:
    """IJK-to-RAS of a ``size``² image of ``view``: rows run toward the apex, tilted by ``tilt_deg`` in plane."""
    tilt = np.radians(tilt_deg)
    side = frame.side(view)
    column_dir = np.cos(tilt) * side + np.sin(tilt) * frame.long
    row_dir = np.sin(tilt) * side - np.cos(tilt) * frame.long
    normal = np.cross(column_dir, row_dir)
    centre = frame.origin - centre_below_valve_mm * frame.long
    matrix = np.eye(4)
    matrix[:3, 0] = column_dir * pixel_mm
    matrix[:3, 1] = row_dir * pixel_mm
    matrix[:3, 2] = normal * thickness_mm
    matrix[:3, 3] = centre - (size - 1) / 2.0 * pixel_mm * (column_dir + row_dir)
    return matrix


def _inside_ellipsoid(x, y, u, centre, axes) -> np.ndarray:
    return ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + ((u - centre[2]) / axes[2]) ** 2 <= 1.0


def _inside_tube(x, y, u, start, direction, length, radius) -> np.ndarray:
    dx, dy, du = x - start[0], y - start[1], u - start[2]
    along = direction[0] * dx + direction[1] * dy + direction[2] * du
    across_sq = dx * dx + dy * dy + du * du - along * along
    return (along >= 0.0) & (along <= length) & (across_sq <= radius * radius)


def _background(ras: np.ndarray, frame: HeartFrame) -> np.ndarray:
    """Air, chest tissue and lungs (static over the cycle), from RAS points [3, N]."""
    classes = np.full(ras.shape[1], _AIR, np.uint8)
    rel = ras - (frame.origin - 20.0 * frame.long)[:, None]
    body = (rel[0] / 170.0) ** 2 + (rel[1] / 125.0) ** 2 + (rel[2] / 260.0) ** 2 <= 1.0
    classes[body] = _TISSUE
    for sign in (-1.0, 1.0):  # lungs on both sides of the mediastinum
        lung = ((rel[0] - sign * 105.0) / 62.0) ** 2 + ((rel[1] + 10.0) / 85.0) ** 2 + (rel[2] / 120.0) ** 2 <= 1.0
        classes[lung & body] = _LUNG
    return classes


def _heart(x, y, u, background: np.ndarray, state: dict) -> tuple[np.ndarray, np.ndarray]:
    """Tissue class (for the image) and blood-pool label (for the truth) at points in heart coordinates.

    ``x`` (lateral), ``y`` (depth) and ``u`` (height above the end-diastolic mitral plane) are mm; in a view one of
    ``x``, ``y`` is the scalar 0 because both planes contain the long axis.
    """
    classes = background.copy()
    s_mitral, s_tricuspid = state["mitral_u"], state["tricuspid_u"]
    lv_r, lv_len, lv_wall = state["lv_radius"], state["lv_length"], state["lv_wall"]
    rv_x, rv_axes = state["rv_centre_x"], state["rv_axes"]
    la_c, la_axes = state["la_centre"], state["la_axes"]
    ra_c, ra_axes = state["ra_centre"], state["ra_axes"]
    wall = state["atrial_wall"]

    below_mitral = u <= s_mitral
    below_tricuspid = u <= s_tricuspid
    lv_outer = below_mitral & _inside_ellipsoid(x, y, u, (0, 0, s_mitral), (lv_r + lv_wall, lv_r + lv_wall, lv_len + lv_wall))
    rv_outer = below_tricuspid & _inside_ellipsoid(x, y, u, (rv_x, 0, s_tricuspid), rv_axes + 4.0)
    la_outer = _inside_ellipsoid(x, y, u, la_c, la_axes + wall)
    ra_outer = _inside_ellipsoid(x, y, u, ra_c, ra_axes + wall)
    classes[lv_outer | rv_outer | la_outer | ra_outer] = _MYOCARDIUM

    lv = below_mitral & _inside_ellipsoid(x, y, u, (0, 0, s_mitral), (lv_r, lv_r, lv_len))
    rv = below_tricuspid & _inside_ellipsoid(x, y, u, (rv_x, 0, s_tricuspid), rv_axes)
    la = _inside_ellipsoid(x, y, u, la_c, la_axes)
    ra = _inside_ellipsoid(x, y, u, ra_c, ra_axes)
    veins = np.zeros(classes.shape, bool)
    for direction in state["vein_directions"]:
        veins |= _inside_tube(x, y, u, la_c, direction, state["vein_length"], state["vein_radius"])
    veins &= ~la
    classes[veins] = _PV
    classes[rv] = _RV
    classes[lv] = _LV
    classes[ra] = _RA
    classes[la] = _LA

    labels = np.zeros(classes.shape, np.uint8)
    labels[veins] = PULMONARY_VEIN
    labels[rv] = RV
    labels[lv] = LV
    labels[ra] = RA
    labels[la] = LA
    return classes, labels


def lax_phantom(
    phases: int = 25,
    size: int = 128,
    pixel_mm: float = 1.8,
    thickness_mm: float = 8.0,
    rr_ms: float = 1000.0,
    noise: float = 0.035,
    blur_px: float = 0.6,
    valve_descent_mm: float = 12.0,
    ra_depth_ratio: float = 1.0,
    two_chamber_phases: int | None = None,
    seed: int = 11,
) -> LaxPhantom:
    """Draw the 2- and 4-chamber cines of one beating heart (a phantom) with its analytic atrial volumes.

    ``two_chamber_phases`` gives the 2-chamber cine its own phase count (a separate breath-hold, as in a real
    study); both cines cover one cardiac cycle of ``rr_ms`` from the ventricular end-diastole.
    """
    rng = np.random.default_rng(seed)
    frame = default_frame()
    counts = {"4ch": phases, "2ch": two_chamber_phases or phases}
    la_min, la_max = np.array([24.0, 17.0, 15.0]), np.array([30.0, 22.5, 20.5])
    ra_min, ra_max = np.array([24.0, 17.0, 17.0]), np.array([31.0, 23.0, 23.0])
    ra_min[2] *= ra_depth_ratio
    ra_max[2] *= ra_depth_ratio
    ra_lateral = -(la_max[1] + ra_max[1] + 8.0)  # an 8 mm interatrial septum (walls and fat) at the largest size

    def state_at(fraction: float) -> dict:
        fill = float(atrial_filling(np.array(fraction)))
        systole = float(ventricular_systole(np.array(fraction)))
        mitral = -valve_descent_mm * systole
        tricuspid = -5.0 - 1.3 * valve_descent_mm * systole  # the tricuspid plane sits 5 mm toward the apex
        la_abc = la_min + (la_max - la_min) * fill  # (a, b, c) = (long, lateral, depth)
        ra_abc = ra_min + (ra_max - ra_min) * fill
        vein_tilt = np.radians(55.0)
        return {
            "fill": fill,
            "mitral_u": mitral,
            "tricuspid_u": tricuspid,
            "lv_radius": 25.0 - 6.0 * systole,
            "lv_length": 80.0 - 8.0 * systole,
            "lv_wall": 10.0 + 3.0 * systole,
            "rv_centre_x": ra_lateral + 1.5,
            "rv_axes": np.array([18.0 - 5.0 * systole, 24.0 - 6.0 * systole, 70.0 - 8.0 * systole]),
            "la_abc": la_abc,
            "ra_abc": ra_abc,
            "la_centre": np.array([0.0, 0.0, mitral + la_abc[0]]),
            "la_axes": la_abc[[1, 2, 0]],  # in (x, y, u) order
            "ra_centre": np.array([ra_lateral, 0.0, tricuspid + ra_abc[0]]),
            "ra_axes": ra_abc[[1, 2, 0]],
            "atrial_wall": 2.5,
            # two vein stubs in the 4-chamber plane (x, u) and one in the 2-chamber plane (y, u)
            "vein_directions": [
                np.array([np.sin(vein_tilt), 0.0, np.cos(vein_tilt)]),
                np.array([0.0, -np.sin(vein_tilt), np.cos(vein_tilt)]),
            ],
            "vein_length": 60.0,
            "vein_radius": 3.5,
        }

    def to_ras(centre_heart: np.ndarray) -> np.ndarray:
        return frame.origin + centre_heart[0] * frame.lateral + centre_heart[1] * frame.depth + centre_heart[2] * frame.long

    series, labels = {}, {}
    shading_rng = rng.normal(size=3)
    offsets = (np.arange(_SUBSAMPLES) - (_SUBSAMPLES - 1) / 2.0) / _SUBSAMPLES  # the middle one is the pixel centre
    fine = (np.arange(size)[:, None] + offsets[None, :]).ravel()
    jj, ii = np.meshgrid(fine, fine, indexing="ij")
    centre_pick = (slice(None), _SUBSAMPLES // 2, slice(None), _SUBSAMPLES // 2)
    for view in VIEWS:
        count = counts[view]
        matrix = view_geometry(frame, view, size, pixel_mm, thickness_mm)
        ras = matrix[:3, 0, None] * ii.ravel() + matrix[:3, 1, None] * jj.ravel() + matrix[:3, 3, None]
        rel = ras - frame.origin[:, None]
        u = (frame.long @ rel).astype(np.float32)
        w = (frame.side(view) @ rel).astype(np.float32)
        background = _background(ras, frame)
        heart_box = (u > -110.0) & (u < 85.0) & (w > -110.0) & (w < 70.0)  # every chamber lies in it
        u, w = u[heart_box], w[heart_box]
        x, y = (w, 0.0) if view == "4ch" else (0.0, w)  # the plane holds the long axis and its side axis exactly
        # coil shading: a smooth multiplicative field, up to about ±12 %
        gj, gi = np.mgrid[0:size, 0:size] / (size - 1.0) - 0.5
        shading = 1.0 + 0.12 * np.tanh(shading_rng[0] * gi + shading_rng[1] * gj + 0.5 * shading_rng[2] * gi * gj)
        images = np.zeros((count, 1, size, size), np.float32)
        truth = np.zeros((count, 1, size, size), np.uint8)
        for phase in range(count):
            classes, fine_labels = background.copy(), np.zeros(background.shape, np.uint8)
            classes[heart_box], fine_labels[heart_box] = _heart(x, y, u, background[heart_box], state_at(phase / count))
            signal = _SIGNAL[classes].reshape(size, _SUBSAMPLES, size, _SUBSAMPLES).mean(axis=(1, 3))
            signal = ndimage.gaussian_filter(signal, blur_px) * shading
            real = signal + rng.normal(0.0, noise, signal.shape)
            imaginary = rng.normal(0.0, noise, signal.shape)
            images[phase, 0] = np.sqrt(real**2 + imaginary**2) * 1000.0
            truth[phase, 0] = fine_labels.reshape(size, _SUBSAMPLES, size, _SUBSAMPLES)[centre_pick]
        name = "2-chamber" if view == "2ch" else "4-chamber"
        series[view] = ImageSeries(
            frames=images,
            ijk_to_ras=matrix,
            frame_times_ms=[p * rr_ms / count for p in range(count)],
            name=f"Phantom {name} cine",
            modality="MR",
            source="digital phantom (CardiacSuiteLib.phantoms.long_axis)",
            metadata={"PatientID": "PHANTOM", "StudyInstanceUID": "2.25.4242", "SeriesDescription": f"phantom {name}",
                      "NominalInterval": rr_ms, "SliceThickness": thickness_mm},
        )
        labels[view] = truth

    count = counts["4ch"]
    states = [state_at(p / count) for p in range(count)]
    la_axes = np.array([s["la_abc"] for s in states])
    ra_axes = np.array([s["ra_abc"] for s in states])
    return LaxPhantom(
        two_chamber=series["2ch"],
        four_chamber=series["4ch"],
        labels=labels,
        la_semi_axes_mm=la_axes,
        ra_semi_axes_mm=ra_axes,
        frame=frame,
        la_centre_ras=np.array([to_ras(s["la_centre"]) for s in states]),
        ra_centre_ras=np.array([to_ras(s["ra_centre"]) for s in states]),
        valve_descent_mm=np.array([-s["mitral_u"] for s in states]),
        parameters={"phases": phases, "two_chamber_phases": counts["2ch"], "size": size, "pixel_mm": pixel_mm,
                    "noise": noise, "blur_px": blur_px, "valve_descent_mm": valve_descent_mm,
                    "ra_depth_ratio": ra_depth_ratio, "rr_ms": rr_ms, "seed": seed,
                    # where the left and right heart meet in the 4-chamber plane, and the tricuspid plane's offset
                    "septum_side_mm": ra_lateral / 2.0, "tricuspid_below_mitral_mm": 5.0},
    )
