"""Volume–time curves: heart rate, and peak ejection and filling rates from a smooth periodic fit.

Differentiating raw per-phase volumes amplifies segmentation noise, so the curve is fitted with a low-order
Fourier series over one RR interval (the cycle is periodic) and the rates come from the fit's analytic
derivative. PER is the steepest fall of volume during systole (ED → ES), PFR the steepest rise in diastole
(ES → the next ED), both in ml/s and in EDV/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_HARMONICS = 4
FIT_SAMPLES = 1000


@dataclass(frozen=True)
class CycleTiming:
    """Frame times within the cycle and the RR interval they belong to."""

    times_ms: np.ndarray
    rr_ms: float
    source: str  # where the RR interval came from

    @property
    def heart_rate_bpm(self) -> float:
        return 60000.0 / self.rr_ms


def cycle_timing(frame_times_ms: list[float] | None, phases: int, nominal_rr_ms: float | None = None) -> CycleTiming | None:
    """RR from the DICOM NominalInterval when present, else from the trigger times (last + one mean step)."""
    if frame_times_ms is None or phases < 3:
        return None
    times = np.asarray(frame_times_ms, dtype=float)
    step = float(np.median(np.diff(times)))
    estimated = float(times[-1] + step - times[0])
    if nominal_rr_ms and nominal_rr_ms > times[-1]:
        return CycleTiming(times, float(nominal_rr_ms), "NominalInterval (DICOM 0018,1062)")
    return CycleTiming(times, estimated, "trigger times: last trigger time plus one frame interval")


def fourier_fit(times_ms: np.ndarray, values: np.ndarray, rr_ms: float, harmonics: int = DEFAULT_HARMONICS):
    """Least-squares Fourier coefficients of a periodic curve; harmonics are capped by the number of frames."""
    harmonics = max(1, min(harmonics, (len(values) - 1) // 2))
    omega = 2.0 * np.pi / rr_ms
    columns = [np.ones_like(times_ms)]
    for n in range(1, harmonics + 1):
        columns += [np.cos(n * omega * times_ms), np.sin(n * omega * times_ms)]
    coefficients, *_ = np.linalg.lstsq(np.stack(columns, axis=1), values, rcond=None)
    return coefficients, omega, harmonics


def evaluate_fit(coefficients, omega: float, harmonics: int, t_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fitted volume (ml) and its derivative (ml/s) at ``t_ms``."""
    value = np.full_like(t_ms, coefficients[0], dtype=float)
    slope = np.zeros_like(t_ms, dtype=float)
    for n in range(1, harmonics + 1):
        a, b = coefficients[2 * n - 1], coefficients[2 * n]
        value += a * np.cos(n * omega * t_ms) + b * np.sin(n * omega * t_ms)
        slope += n * omega * (-a * np.sin(n * omega * t_ms) + b * np.cos(n * omega * t_ms))
    return value, slope * 1000.0


def ejection_and_filling_rates(
    volumes_ml: np.ndarray, timing: CycleTiming, ed: int, es: int, harmonics: int = DEFAULT_HARMONICS
) -> dict:
    """PER and PFR (ml/s, EDV/s) and their times after end-diastole (ms), from the Fourier fit."""
    volumes = np.asarray(volumes_ml, dtype=float)
    coefficients, omega, used = fourier_fit(timing.times_ms, volumes, timing.rr_ms, harmonics)
    start, end_systole = timing.times_ms[ed], timing.times_ms[es]
    systole_ms = (end_systole - start) % timing.rr_ms
    grid = start + np.linspace(0.0, timing.rr_ms, FIT_SAMPLES, endpoint=False)
    _, slope = evaluate_fit(coefficients, omega, used, grid)
    since_ed = grid - start
    in_systole = since_ed <= systole_ms
    systole_slope = np.where(in_systole, slope, np.inf)
    diastole_slope = np.where(~in_systole, slope, -np.inf)
    per_index, pfr_index = int(np.argmin(systole_slope)), int(np.argmax(diastole_slope))
    edv = volumes[ed]
    per, pfr = float(-slope[per_index]), float(slope[pfr_index])
    return {
        "per_ml_s": per,
        "pfr_ml_s": pfr,
        "per_edv_s": per / edv if edv > 0 else None,
        "pfr_edv_s": pfr / edv if edv > 0 else None,
        "time_to_per_ms": float(since_ed[per_index]),
        "time_to_pfr_ms": float(since_ed[pfr_index]),
        "time_to_pfr_from_es_ms": float(since_ed[pfr_index] - systole_ms),
        "fit": f"Fourier series, {used} harmonics, least squares over one RR interval",
    }
