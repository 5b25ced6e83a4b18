"""Patient data that turns function figures into clinical ones: BSA, indexed values, reference ranges."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import bsa, normals

# Indexed to body surface area: EDV index, ESV index, stroke volume index, mass index, cardiac index.
INDEXED_KEYS = {
    "edv_ml": "edvi_ml_m2",
    "esv_ml": "esvi_ml_m2",
    "sv_ml": "svi_ml_m2",
    "mass_g": "mass_index_g_m2",
    "co_l_min": "ci_l_min_m2",
}


@dataclass
class PatientInfo:
    height_cm: float | None = None
    weight_kg: float | None = None
    sex: str | None = None
    age: float | None = None
    bsa_formula: str = "mosteller"

    def as_dict(self) -> dict:
        return asdict(self)


def assess_patient(results: dict, patient: PatientInfo | None) -> dict:
    """Add BSA, indexed values (per m²), and reference flags with z-scores to ``results`` (in place)."""
    if patient is None:
        return results
    sex = bsa.normalise_sex(patient.sex) if patient.sex else None
    body_surface = None
    if patient.height_cm is not None and patient.weight_kg is not None:
        body_surface = bsa.body_surface_area(patient.height_cm, patient.weight_kg, patient.bsa_formula, sex)
        formula = bsa.formula_for(patient.bsa_formula)
        results["bsa_m2"] = body_surface
        results["bsa_formula"] = {"id": formula.id, "name": formula.name, "equation": formula.equation, "citation": formula.citation}
        for ventricle in ("lv", "rv"):
            for key, indexed_key in INDEXED_KEYS.items():
                value = results[ventricle].get(key)
                if value is not None:
                    results[ventricle][indexed_key] = bsa.indexed(value, body_surface)
    results["patient"] = patient.as_dict()
    results["reference"] = normals.assess(results, sex, patient.age, body_surface, bsa_formula=patient.bsa_formula)
    return results
