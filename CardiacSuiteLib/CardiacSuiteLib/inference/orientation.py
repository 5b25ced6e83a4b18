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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# RAS unit vectors: where the LV apex and the RV lie, seen from the LV, in a normal (levocardic) chest.
APEX_DIRECTION_RAS = np.array([-1.0, 1.0, -1.0]) / np.sqrt(3.0)
RV_DIRECTION_RAS = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)
# The trained view: the RV at this angle from the LV (degrees, image x to the right, y down; ACDC's mean 165°).
TRAINED_RV_ANGLE_DEG = 165.0
# Below this |cos| between the slice normal and the expected long axis the slices are not short axis (or the
# geometry is unknown, such as an identity matrix), and they are left as stored.
MIN_SHORT_AXIS_COSINE = 0.7


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

    def describe(self) -> str:
        if self.is_identity:
            return "as stored"
        parts = ["mirrored left-right"] if self.mirror else []
        if self.quarter_turns % 4:
            parts.append(f"turned {90 * (self.quarter_turns % 4)}° counter-clockwise")
        return " and ".join(parts)


def short_axis_view(ijk_to_ras: np.ndarray | None) -> SliceView:
    """The ``SliceView`` that brings slices with this geometry (``I`` = columns, ``J`` = rows) to the trained view.

    The identity when the geometry is missing or the slices are not short axis.
    """
    if ijk_to_ras is None:
        return SliceView()
    matrix = np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    column_axis, row_axis = (matrix[:, n] / np.linalg.norm(matrix[:, n]) for n in (0, 1))
    normal = np.cross(column_axis, row_axis)
    facing = float(normal @ APEX_DIRECTION_RAS)
    if abs(facing) < MIN_SHORT_AXIS_COSINE:
        return SliceView()
    mirror = facing > 0  # trained view: the normal (columns × rows) points to the base
    angle = np.degrees(np.arctan2(RV_DIRECTION_RAS @ row_axis, RV_DIRECTION_RAS @ column_axis))
    if mirror:
        angle = 180.0 - angle
    # Each counter-clockwise quarter turn moves a direction at angle θ to θ − 90° (rows grow downwards).
    misfit = [abs((angle - 90.0 * k - TRAINED_RV_ANGLE_DEG + 180.0) % 360.0 - 180.0) for k in range(4)]
    return SliceView(mirror, int(np.argmin(misfit)))
