"""Papillary muscles and trabeculations: counted in the LV blood pool or in the myocardial mass.

AI contours follow their training labels (ACDC: papillary muscles inside the cavity). For the other
convention, cavity pixels darker than the midpoint between the blood pool and the compact myocardium (per
slice, per phase) are moved to the myocardium: in bright-blood SSFP, papillary muscles and trabeculations
have myocardial signal. The choice is recorded with every result, and normal values must match it.
"""

from __future__ import annotations

import numpy as np

BLOOD = "blood"
MYOCARDIUM = "myocardium"
CONVENTIONS = (BLOOD, MYOCARDIUM)
MIN_PIXELS = 20


def describe(convention: str) -> str:
    if convention == BLOOD:
        return "papillary muscles and trabeculations counted in the LV blood pool (volume)"
    return (
        "papillary muscles and trabeculations counted in the LV myocardium (mass): cavity pixels darker than the"
        " midpoint of blood-pool and myocardial median signal, per slice and phase"
    )


def move_to_myocardium(image: np.ndarray, labels: np.ndarray, lv: int, myo: int) -> np.ndarray:
    """Relabel dark intra-cavity pixels of each slice ``[K, J, I]`` as myocardium; returns a new label map."""
    result = labels.copy()
    for k in range(labels.shape[0]):
        cavity, muscle = labels[k] == lv, labels[k] == myo
        if cavity.sum() < MIN_PIXELS or muscle.sum() < MIN_PIXELS:
            continue
        threshold = 0.5 * (np.median(image[k][cavity]) + np.median(image[k][muscle]))
        result[k][cavity & (image[k] < threshold)] = myo
    return result
