"""C-arm projection angles: view directions, the perpendicularity ("S") curve and foreshortening-free views.

Convention (the one cath labs read off the gantry): the view direction v is the unit vector from the isocentre
to the image detector, in RAS, v = (−sin α·cos β, cos α·cos β, sin β), α = LAO (+) / RAO (−), the rotation
about the patient's head–foot axis towards the patient's left, β = CRA (+) / CAU (−), the tilt towards the
head; AP (0°, 0°) looks from anterior. A plane of normal n is seen edge-on, and a vessel segment of direction
n without foreshortening, when v ⟂ n: −n_R sin α cos β + n_A cos α cos β + n_S sin β = 0, so
β(α) = atan((n_R sin α − n_A cos α) / n_S) (Gurvitch R, Wood DA, Leipsic J, et al. JACC Cardiovasc Interv
2010;3:1157–65; SCCT 2019 TAVR consensus). Angles are only meaningful for a CT acquired supine, feet first or
head first as the image orientation states (SCCT: give projections only for a supine CT).
"""

from __future__ import annotations

import math

import numpy as np

CONVENTION = ("view direction isocentre→detector (RAS) = (−sin LAO·cos CRA, cos LAO·cos CRA, sin CRA); "
              "LAO(+)/RAO(−) about the head–foot axis towards the patient's left, CRA(+)/CAU(−) towards the head")
#: LAO/RAO range of the S-curve, degrees (what a C-arm reaches).
S_CURVE_LAO_DEG = np.arange(-90.0, 90.0 + 1e-9, 1.0)


def view_direction(lao_deg, cra_deg) -> np.ndarray:
    """Unit view direction(s), RAS, for LAO(+)/RAO(−) and CRA(+)/CAU(−) angles in degrees."""
    a, b = np.radians(lao_deg), np.radians(cra_deg)
    return np.stack(np.broadcast_arrays(-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)), axis=-1)


def angles_of(direction: np.ndarray) -> tuple[float, float]:
    """LAO(+)/RAO(−) and CRA(+)/CAU(−) degrees of a view direction; a direction pointing posterior is the same
    line of sight seen from the front, so it is flipped first."""
    v = np.asarray(direction, dtype=float)
    v = v / np.linalg.norm(v)
    if v[1] < 0:
        v = -v
    return float(np.degrees(math.atan2(-v[0], v[1]))), float(np.degrees(math.asin(float(np.clip(v[2], -1.0, 1.0)))))


def perpendicularity_curve(normal: np.ndarray, lao_deg=S_CURVE_LAO_DEG) -> np.ndarray:
    """CRA(+)/CAU(−) degrees at each LAO(+)/RAO(−) angle whose view is perpendicular to ``normal``."""
    n = np.asarray(normal, dtype=float)
    n = n / np.linalg.norm(n)
    if n[2] < 0:
        n = -n
    a = np.radians(np.asarray(lao_deg, dtype=float))
    return np.degrees(np.arctan2(n[0] * np.sin(a) - n[1] * np.cos(a), n[2]))


def s_curve(normal: np.ndarray, lao_deg=S_CURVE_LAO_DEG) -> list[dict]:
    """The perpendicularity curve as a list of ``{"lao_deg", "cra_deg"}`` (1° steps of LAO/RAO)."""
    cra = perpendicularity_curve(normal, lao_deg)
    return [{"lao_deg": round(float(a), 1), "cra_deg": round(float(b), 2)} for a, b in zip(lao_deg, cra)]


def in_plane_view(direction: np.ndarray, normal: np.ndarray) -> dict:
    """The view along ``direction`` made perpendicular to ``normal`` (so it lies on the S-curve), as angles."""
    n = np.asarray(normal, dtype=float) / np.linalg.norm(normal)
    v = np.asarray(direction, dtype=float)
    v = v - (v @ n) * n
    if np.linalg.norm(v) < 1e-9:
        raise ValueError("the direction is along the normal: no view perpendicular to it")
    lao, cra = angles_of(v)
    return {"lao_deg": round(lao, 1), "cra_deg": round(cra, 1), "label": label(lao, cra)}


def label(lao_deg: float, cra_deg: float) -> str:
    """'LAO 12° CAU 8°' style text."""
    side = "LAO" if lao_deg >= 0 else "RAO"
    tilt = "CRA" if cra_deg >= 0 else "CAU"
    return f"{side} {abs(lao_deg):.0f}° {tilt} {abs(cra_deg):.0f}°"


def foreshortening_free(direction: np.ndarray, reachable_cra_deg: float = 40.0) -> dict:
    """Views that show a straight vessel segment of ``direction`` at full length: the S-curve of that direction,
    and the point of it with the smallest gantry tilt within ±``reachable_cra_deg`` (the easiest to reach)."""
    curve = s_curve(direction)
    usable = [p for p in curve if abs(p["cra_deg"]) <= reachable_cra_deg] or curve
    best = min(usable, key=lambda p: (abs(p["cra_deg"]) + 0.5 * abs(p["lao_deg"])))
    return {"recommended": {**best, "label": label(best["lao_deg"], best["cra_deg"])}, "s_curve": curve,
            "rule": f"view ⟂ segment direction; recommended: least |CRA/CAU| + ½|LAO/RAO| with |CRA/CAU| ≤ "
                    f"{reachable_cra_deg:g}°"}
