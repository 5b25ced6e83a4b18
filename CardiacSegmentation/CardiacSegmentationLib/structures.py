"""The heart and coronary structures CardiacSegmentation labels: value, name, colour and SNOMED CT code.

Kept apart from the MRML face (``scene``) so that pure-array code (the reformat, the measurements) can use the
label values without importing VTK.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Structure:
    value: int
    name: str
    color: tuple[float, float, float]
    code: tuple[str, str, str]  # (scheme, value, meaning), SNOMED CT


# Label values follow the MM-WHS convention used by the atlas (1–7).
HEART_STRUCTURES = (
    Structure(1, "Left ventricle myocardium", (0.80, 0.55, 0.35), ("SCT", "74281007", "Myocardium of left ventricle")),
    Structure(2, "Left atrium", (0.90, 0.45, 0.50), ("SCT", "82471001", "Left atrium")),
    Structure(3, "Left ventricle", (0.86, 0.24, 0.24), ("SCT", "87878005", "Left ventricle")),
    Structure(4, "Right atrium", (0.40, 0.55, 0.90), ("SCT", "73829009", "Right atrium")),
    Structure(5, "Right ventricle", (0.30, 0.40, 0.85), ("SCT", "53085002", "Right ventricle")),
    Structure(6, "Aorta", (0.95, 0.35, 0.20), ("SCT", "15825003", "Aorta")),
    Structure(7, "Pulmonary artery", (0.35, 0.70, 0.90), ("SCT", "81040000", "Pulmonary artery")),
)
CORONARY_STRUCTURES = (
    Structure(1, "Left coronary tree", (0.95, 0.80, 0.20), ("SCT", "3862006", "Left main coronary artery")),
    Structure(2, "Right coronary tree", (0.95, 0.60, 0.10), ("SCT", "13647008", "Right coronary artery")),
)


def heart_label(name: str) -> int:
    """The label value of a heart structure by its name (``HEART_STRUCTURES``)."""
    return next(structure.value for structure in HEART_STRUCTURES if structure.name == name)
