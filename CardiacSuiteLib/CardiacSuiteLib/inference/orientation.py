"""Short-axis slices turned to the in-plane orientation the cine models were trained on, and back.

Scanners store short-axis cines in any in-plane orientation: turned by any angle, and mirrored when the slice
normal points to the apex instead of the base. The 2D models learned one view (ACDC's: the RV to the left of the
LV, the slice normal toward the base) and tolerate rotation only partly and mirroring not at all: a mirrored heart
has its RV on the wrong side. The image geometry says how the slices lie in the patient, and the heart's long axis
points to the patient's left, front and feet in every non-dextrocardic patient, so the stored slices are mirrored
and turned by quarter turns (exact, no resampling) to the trained view before inference, and the labels turned
back.

Checked on the three Sunnybrook patients: the RV direction predicted from the geometry alone fell within 11° of
the RV actually found by the model (96°, 180°, 170° found; 100°, 191°, 178° predicted, in image degrees).

The geometry cannot tell a mirror-image heart (dextrocardia) from a normal one, so ``check_view`` asks the image.
The LV ring looks the same mirrored; what a mirror changes is the side the RV lies on, and a model trained on one
side does not find an RV on the other (it leaves it out, or labels RV on muscle where it expects one). So the model
segments a few mid-ventricular slices seen through the geometry's view and through its mirror image, and the mirror
is taken when it finds more RV blood against the LV (``septal_rv_blood``: the RV probability summed, slice by slice,
over RV-labelled pixels as bright as blood in regions touching the LV, larger by more than twice the standard error
of the per-slice differences) at an angle within half a quarter turn (45°) of the trained one, the tolerance the
geometry's quarter turns already allow. Slices whose normal follows a long axis pointing to the patient's right are
viewed as a mirror-image heart's (the images of a normal heart in the sagittally mirrored geometry); slices with no
short-axis geometry get their quarter turn from the RV the model finds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .segment2d import Preparation, SliceSegmenter

# RAS unit vectors: where the LV apex and the RV lie, seen from the LV, in a normal (levocardic) chest.
APEX_DIRECTION_RAS = np.array([-1.0, 1.0, -1.0]) / np.sqrt(3.0)
RV_DIRECTION_RAS = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)
# The trained view: the RV at this angle from the LV (degrees, image x to the right, y down; ACDC's mean 165°).
TRAINED_RV_ANGLE_DEG = 165.0
# Below this |cos| between the slice normal and the expected long axis the slices are not short axis (or the
# geometry is unknown, such as an identity matrix): the geometry gives no view, and ``check_view`` asks the image.
MIN_SHORT_AXIS_COSINE = 0.7
# A mirror-image (situs inversus) chest is the normal one mirrored through the patient's sagittal plane (R ↔ L).
SAGITTAL_MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0])
LEVOCARDIA, DEXTROCARDIA = "levocardia", "dextrocardia"
# The orientation check looks at the middle slices at end-diastole and near end-systole (the first half-cycle).
CHECK_SLICES, CHECK_PHASES = 3, 2
# The mirrored view must find more RV than the geometry's by this many standard errors of the per-slice differences.
EVIDENCE_STANDARD_ERRORS = 2.0
# An RV farther than this from the trained angle would have been given another quarter turn: not the trained view.
MAX_RV_MISFIT_DEG = 45.0
# Farther than this from the trained angle, the RV lies on the LV's other side (nearer, on the trained side).
WRONG_SIDE_MISFIT_DEG = 90.0


@dataclass(frozen=True)
class SliceView:
    """Mirror the columns (first), then turn by ``quarter_turns`` × 90° counter-clockwise as displayed."""

    mirror: bool = False
    quarter_turns: int = 0

    @property
    def is_identity(self) -> bool:
        return not self.mirror and self.quarter_turns % 4 == 0

    def apply(self, images: np.ndarray) -> np.ndarray:
        """``images[..., rows, cols]`` as the model should see them (a view when no copy is needed)."""
        if self.is_identity:
            return images
        turned = images[..., ::-1] if self.mirror else images
        return np.ascontiguousarray(np.rot90(turned, self.quarter_turns, axes=(-2, -1)))

    def undo(self, labels: np.ndarray) -> np.ndarray:
        """Label maps produced on ``apply``'s output, back in the stored orientation."""
        if self.is_identity:
            return labels
        turned = np.rot90(labels, -self.quarter_turns, axes=(-2, -1))
        return np.ascontiguousarray(turned[..., ::-1] if self.mirror else turned)

    def then(self, other: SliceView) -> SliceView:
        """The single view equal to this one followed by ``other`` (a mirror turns earlier turns the other way)."""
        turns = -self.quarter_turns if other.mirror else self.quarter_turns
        return SliceView(self.mirror != other.mirror, (other.quarter_turns + turns) % 4)

    def mirrored(self) -> SliceView:
        """This view followed by a left-right mirror of what it shows."""
        return self.then(SliceView(mirror=True))

    def describe(self) -> str:
        if self.is_identity:
            return "as stored"
        parts = ["mirrored left-right"] if self.mirror else []
        if self.quarter_turns % 4:
            parts.append(f"turned {90 * (self.quarter_turns % 4)}° counter-clockwise")
        return " and ".join(parts)


def _slice_axes(ijk_to_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit column axis, row axis and normal (columns × rows) of the slices, in RAS."""
    matrix = np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    column_axis, row_axis = (matrix[:, n] / np.linalg.norm(matrix[:, n]) for n in (0, 1))
    return column_axis, row_axis, np.cross(column_axis, row_axis)


def geometry_situs(ijk_to_ras: np.ndarray | None) -> str | None:
    """``LEVOCARDIA`` or ``DEXTROCARDIA``: the long axis (apex to the patient's left or right) the slices are short
    axis to, the nearer one where both qualify; None when the geometry is missing or fits neither."""
    if ijk_to_ras is None:
        return None
    normal = _slice_axes(ijk_to_ras)[2]
    levo = abs(float(normal @ APEX_DIRECTION_RAS))
    dextro = abs(float(normal @ (SAGITTAL_MIRROR[:3, :3] @ APEX_DIRECTION_RAS)))
    if max(levo, dextro) < MIN_SHORT_AXIS_COSINE:
        return None
    return LEVOCARDIA if levo >= dextro else DEXTROCARDIA


def short_axis_view(ijk_to_ras: np.ndarray | None, situs: str = LEVOCARDIA) -> SliceView:
    """The ``SliceView`` that brings slices with this geometry (``I`` = columns, ``J`` = rows) to the trained view.

    With ``situs=DEXTROCARDIA`` the heart is taken as the mirror image of a normal one: its images are those of a
    normal heart in the sagittally mirrored geometry. The identity when the geometry is missing or the slices are
    not short axis.
    """
    if ijk_to_ras is None:
        return SliceView()
    if situs == DEXTROCARDIA:
        ijk_to_ras = SAGITTAL_MIRROR @ np.asarray(ijk_to_ras, dtype=float)
    column_axis, row_axis, normal = _slice_axes(ijk_to_ras)
    facing = float(normal @ APEX_DIRECTION_RAS)
    if abs(facing) < MIN_SHORT_AXIS_COSINE:
        return SliceView()
    mirror = facing > 0  # trained view: the normal (columns × rows) points to the base
    angle = np.degrees(np.arctan2(RV_DIRECTION_RAS @ row_axis, RV_DIRECTION_RAS @ column_axis))
    if mirror:
        angle = 180.0 - angle
    return SliceView(mirror, best_quarter_turns(angle))


def angle_misfit_deg(angle_deg: float, target_deg: float = TRAINED_RV_ANGLE_DEG) -> float:
    """Circular distance between two image angles, degrees (0 to 180)."""
    return abs((angle_deg - target_deg + 180.0) % 360.0 - 180.0)


def best_quarter_turns(rv_angle_deg: float) -> int:
    """Counter-clockwise quarter turns that bring an RV seen at ``rv_angle_deg`` nearest the trained RV angle."""
    # Each counter-clockwise quarter turn moves a direction at angle θ to θ − 90° (rows grow downwards).
    return int(np.argmin([angle_misfit_deg(rv_angle_deg - 90.0 * k) for k in range(4)]))


def rv_angle_deg(rv: np.ndarray, lv: np.ndarray) -> float | None:
    """Direction of the RV from the LV in image degrees (x right, y down), or None; masks ``[n, rows, cols]``.

    The unit vectors from the LV centroid to the RV centroid of every slice with both are averaged, so that a
    slice where the RV is small weighs as much as one where it is large.
    """
    total = np.zeros(2)
    for rv_plane, lv_plane in zip(rv, lv):
        right, left = np.argwhere(rv_plane), np.argwhere(lv_plane)
        if len(right) and len(left):
            offset = right.mean(axis=0) - left.mean(axis=0)
            norm = np.linalg.norm(offset)
            if norm > 0:
                total += offset / norm
    if not total.any():
        return None
    return float(np.degrees(np.arctan2(total[0], total[1])) % 360.0)


def septal_rv_blood(labels: np.ndarray, images: np.ndarray, rv: int, myocardium: int, cavity: int) -> np.ndarray:
    """The pixels of ``labels[n, rows, cols]`` that are RV as anatomy has it: blood against the LV.

    A model shown a mirrored heart labels RV where it expects one, on muscle or fat as readily as on blood; a real
    RV is a blood pool as bright as the LV cavity (bright-blood cine) that abuts the LV myocardium at the septum.
    Kept: RV regions touching the LV, and in them the pixels of ``images`` brighter than midway between the
    slice's median myocardium and median LV cavity intensities.
    """
    from scipy import ndimage

    kept = np.zeros(labels.shape, dtype=bool)
    touching = np.ones((3, 3), dtype=bool)
    for n, (plane, image) in enumerate(zip(labels, images)):
        muscle, blood = plane == myocardium, plane == cavity
        regions, count = ndimage.label(plane == rv, structure=touching)
        if not count or not muscle.any() or not blood.any():
            continue
        near_lv = ndimage.binary_dilation(muscle | blood, structure=touching)
        septal = np.isin(regions, np.unique(regions[near_lv & (regions > 0)]))
        kept[n] = septal & (image > 0.5 * (np.median(image[muscle]) + np.median(image[blood])))
    return kept


@dataclass(frozen=True)
class ViewScore:
    """How well the model's result on the sampled slices seen through ``view`` fits the trained anatomy."""

    view: SliceView  # on top of the geometry's view
    rv_evidence: np.ndarray = field(repr=False)  # per sampled slice: RV probability summed on ``septal_rv_blood``
    confidence: float  # mean max-softmax probability on the pixels either compared view calls heart (reported only)
    rv_angle_deg: float | None  # where the model found the RV, image degrees
    rv_misfit_deg: float  # circular distance to TRAINED_RV_ANGLE_DEG; 180 when no RV or LV was found

    def as_dict(self, base: SliceView) -> dict:
        return {
            "view": base.then(self.view).describe(),
            "rv_model_pixels_per_slice": round(float(self.rv_evidence.mean()), 1),
            "mean_max_probability": round(self.confidence, 4),
            "rv_angle_deg": None if self.rv_angle_deg is None else round(self.rv_angle_deg, 1),
            "rv_misfit_deg": round(self.rv_misfit_deg, 1),
        }


CRITERION = (
    "the model segments the middle slices at end-diastole and near end-systole seen through the geometry's view"
    " and through its mirror image; the mirror is taken when it finds more RV blood against the LV (RV probability"
    " summed over the RV-labelled pixels of regions touching the LV that are brighter than midway between the"
    " myocardium and the LV cavity, in pixels of the model's input, per slice) by more than"
    f" {EVIDENCE_STANDARD_ERRORS:.0f} standard errors of the per-slice differences, with the RV within"
    f" {MAX_RV_MISFIT_DEG:.0f}° of the trained angle ({TRAINED_RV_ANGLE_DEG:.0f} image degrees); or when that RV"
    f" blood lies more than {WRONG_SIDE_MISFIT_DEG:.0f}° from the trained angle in the geometry's view (on the LV's"
    f" other side) and less than {WRONG_SIDE_MISFIT_DEG:.0f}° from it in the mirror image (on the trained side). The"
    " first test serves a model that paints an RV where it expects one (in a mirrored heart it finds little RV"
    " blood there), the second a model that follows the image (it finds the real RV, on the wrong side)"
)


@dataclass
class ViewCheck:
    """The view the model is shown and why: the geometry's, or its mirror image where the image says so."""

    view: SliceView
    preparation: Preparation  # intensity window and crop of the frames as ``view`` shows them
    base: SliceView  # the geometry's view (the identity without short-axis geometry)
    geometry: str | None  # LEVOCARDIA, DEXTROCARDIA (the long axis the slices are short axis to) or None
    mirrored_by_image: bool  # the image chose the mirror image of the geometry's view (of the stored slices without)
    kept: ViewScore
    rejected: ViewScore
    seconds: float

    @property
    def dextrocardia(self) -> bool | None:
        """The heart is a mirror image of a normal one, or its long axis points to the patient's right; None
        without short-axis geometry (the patient's sides are then unknown)."""
        if self.geometry is None:
            return None
        return self.geometry == DEXTROCARDIA or self.mirrored_by_image

    def warning(self) -> str | None:
        """What a reader must be told, or None when the model saw a normal heart as the geometry predicted."""
        if self.dextrocardia:
            if self.geometry == DEXTROCARDIA:
                why = "the slices are short axis to a long axis pointing to the patient's right"
            else:
                why = "the anatomy is the mirror image of what the geometry predicts"
            return (f"heart on the right ({why}): the image was shown to the model {self.view.describe()};"
                    " check the RV and LV labels")
        if self.geometry is None and not self.view.is_identity:
            return (f"the slices have no short-axis geometry: the image was shown to the model {self.view.describe()},"
                    " as the RV the model found suggested; check the RV and LV labels")
        return None

    def finding(self) -> dict:
        """The results' record of the check (JSON-ready)."""
        return {
            "dextrocardia": self.dextrocardia,
            "geometry": {LEVOCARDIA: "short axis to a long axis pointing to the patient's left",
                         DEXTROCARDIA: "short axis to a long axis pointing to the patient's right",
                         None: "not short axis, or no geometry"}[self.geometry],
            "mirrored_by_image": self.mirrored_by_image,
            "input_orientation": self.view.describe(),
            "criterion": CRITERION,
            "scores": {"kept": self.kept.as_dict(self.base), "rejected": self.rejected.as_dict(self.base)},
            "warning": self.warning(),
        }


def check_view(
    frames: np.ndarray,
    ijk_to_ras: np.ndarray | None,
    segmenter: SliceSegmenter,
    rv: int,
    myocardium: int,
    cavity: int,
) -> ViewCheck:
    """The view of the cine ``frames[T, K, rows, cols]`` to show the model, chosen from the geometry and the image.

    ``rv``, ``myocardium`` and ``cavity`` are the model's label values. The returned preparation is the
    segmenter's for the chosen view; its heart-roi passes run once more only when the image changed the view.
    """
    from .segment2d import normalised, roi_sample_slices

    situs = geometry_situs(ijk_to_ras)
    base = short_axis_view(ijk_to_ras, situs) if situs else SliceView()
    viewed = base.apply(frames)
    preparation = segmenter.prepare(viewed)
    started = time.perf_counter()  # what the check adds to the analysis, the preparation being needed anyway
    samples = roi_sample_slices(viewed[: max(1, len(viewed) // 2)], CHECK_SLICES, CHECK_PHASES)
    window = normalised(samples, preparation.low, preparation.high)
    inputs = segmenter.model_input(window[:, preparation.rows, preparation.cols])

    def scored(candidates: list[SliceView]) -> list[ViewScore]:
        """Each candidate (applied on top of ``base``) scored on the same sampled slices."""
        shown = [view.apply(inputs) for view in candidates]
        per_view = np.split(segmenter.probabilities(np.concatenate(shown)), len(candidates))
        labels = [p.argmax(axis=1) for p in per_view]
        best = [view.undo(p.max(axis=1)) for view, p in zip(candidates, per_view)]
        heart = np.any([view.undo(label) > 0 for view, label in zip(candidates, labels)], axis=0)
        scores = []
        for view, images, p, label, confidence in zip(candidates, shown, per_view, labels, best):
            blood = septal_rv_blood(label, images, rv, myocardium, cavity)
            evidence = (p[:, rv] * blood).sum(axis=(1, 2))
            angle = rv_angle_deg(blood, np.isin(label, (myocardium, cavity)))
            misfit = 180.0 if angle is None else angle_misfit_deg(angle)
            mean_confidence = float(confidence[heart].mean()) if heart.any() else 0.0
            scores.append(ViewScore(view, evidence, mean_confidence, angle, misfit))
        return scores

    as_viewed, mirror_image = scored([SliceView(), SliceView(mirror=True)])
    if situs is None:  # no geometry to turn by: the quarter turns that put each one's RV nearest the trained angle
        turned = [SliceView(score.view.mirror, best_quarter_turns(score.rv_angle_deg)) if score.rv_angle_deg is not None
                  else score.view for score in (as_viewed, mirror_image)]
        if any(view.quarter_turns for view in turned):
            as_viewed, mirror_image = scored(turned)
    difference = mirror_image.rv_evidence - as_viewed.rv_evidence
    standard_error = difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else 0.0
    more_rv_blood = (mirror_image.rv_misfit_deg <= MAX_RV_MISFIT_DEG
                     and difference.mean() > EVIDENCE_STANDARD_ERRORS * standard_error)
    rv_on_the_other_side = (as_viewed.rv_misfit_deg > WRONG_SIDE_MISFIT_DEG
                            and mirror_image.rv_misfit_deg < WRONG_SIDE_MISFIT_DEG)
    mirror = bool(more_rv_blood or rv_on_the_other_side)
    kept, rejected = (mirror_image, as_viewed) if mirror else (as_viewed, mirror_image)
    view = base.then(kept.view)
    if not kept.view.is_identity:  # the crop found on a view the model misread: find it again on the right one
        preparation = segmenter.prepare(view.apply(frames))
    return ViewCheck(view, preparation, base, situs, mirror, kept, rejected, time.perf_counter() - started)
