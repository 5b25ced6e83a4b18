"""Reference ("normal") values for ventricular function: lookup by sex and age, z-scores and flags.

Each published source is one JSON file in ``Resources/NormalValues`` with its citation, the table each number
was read from, the technique, the BSA formula it used and, above all, where it counted the papillary muscles:
"in LV volume" (blood pool) or "in LV mass" (myocardium). That choice moves LV volumes and mass by more than the
spread of normal, so an LV result is only compared with a table of the same convention; when none exists the
answer says so instead of quietly comparing with the other kind.

Where a source gives mean ± SD, the z-score is (x − mean) / SD and the normal range is mean ± 1.96 SD; where it
gives only lower/upper limits, the value is flagged against them and no z-score is given.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import bsa as bsa_module

TABLE_DIR = Path(__file__).resolve().parent / "Resources" / "NormalValues"
SCHEMA = "cardiacsuite-normal-values/1"
Z_95 = 1.96

IN_LV_VOLUME = "in LV volume"
IN_LV_MASS = "in LV mass"
NOT_STATED = "not stated"
CONVENTIONS = (IN_LV_VOLUME, IN_LV_MASS, NOT_STATED)

# parameter id → (label, unit); the indexed parameters are the absolute ones divided by BSA.
PARAMETERS: dict[str, tuple[str, str]] = {
    "lv_edv_ml": ("LV end-diastolic volume", "ml"),
    "lv_esv_ml": ("LV end-systolic volume", "ml"),
    "lv_sv_ml": ("LV stroke volume", "ml"),
    "lv_ef_pct": ("LV ejection fraction", "%"),
    "lv_mass_g": ("LV mass", "g"),
    "lv_edv_ml_m2": ("LV end-diastolic volume index", "ml/m2"),
    "lv_esv_ml_m2": ("LV end-systolic volume index", "ml/m2"),
    "lv_sv_ml_m2": ("LV stroke volume index", "ml/m2"),
    "lv_mass_g_m2": ("LV mass index", "g/m2"),
    "rv_edv_ml": ("RV end-diastolic volume", "ml"),
    "rv_esv_ml": ("RV end-systolic volume", "ml"),
    "rv_sv_ml": ("RV stroke volume", "ml"),
    "rv_ef_pct": ("RV ejection fraction", "%"),
    "rv_edv_ml_m2": ("RV end-diastolic volume index", "ml/m2"),
    "rv_esv_ml_m2": ("RV end-systolic volume index", "ml/m2"),
    "rv_sv_ml_m2": ("RV stroke volume index", "ml/m2"),
}
INDEXED = {
    "lv_edv_ml": "lv_edv_ml_m2",
    "lv_esv_ml": "lv_esv_ml_m2",
    "lv_sv_ml": "lv_sv_ml_m2",
    "lv_mass_g": "lv_mass_g_m2",
    "rv_edv_ml": "rv_edv_ml_m2",
    "rv_esv_ml": "rv_esv_ml_m2",
    "rv_sv_ml": "rv_sv_ml_m2",
}
# Where each absolute parameter lives in the results dict of function.analyse_cine.
RESULT_KEYS = {
    "lv_edv_ml": ("lv", "edv_ml"),
    "lv_esv_ml": ("lv", "esv_ml"),
    "lv_sv_ml": ("lv", "sv_ml"),
    "lv_ef_pct": ("lv", "ef_pct"),
    "lv_mass_g": ("lv", "mass_g"),
    "rv_edv_ml": ("rv", "edv_ml"),
    "rv_esv_ml": ("rv", "esv_ml"),
    "rv_sv_ml": ("rv", "sv_ml"),
    "rv_ef_pct": ("rv", "ef_pct"),
}

REQUIRED_KEYS = (
    "schema",
    "id",
    "citation",
    "tables",
    "technique",
    "papillary_convention",
    "papillary_convention_source",
    "bsa_formula",
    "population",
    "statistic",
    "entries",
)
CITATION_KEYS = ("authors", "title", "journal", "year", "doi")


# ------------------------------------------------------------------------------------------------ loading


def validate_table(data: Any, name: str = "table") -> list[str]:
    """Problems with one normal-value file, one line each; empty when it can be trusted by the lookups."""
    if not isinstance(data, dict):
        return [f"{name}: the file must hold a JSON object"]
    problems = [f"{name}: missing '{key}'" for key in REQUIRED_KEYS if key not in data]
    if problems:
        return problems
    if data["schema"] != SCHEMA:
        problems.append(f"{name}: schema is {data['schema']!r}, expected {SCHEMA!r}")
    citation = data["citation"]
    if not isinstance(citation, dict):
        problems.append(f"{name}: citation must be an object")
    else:
        problems += [f"{name}: citation lacks '{key}'" for key in CITATION_KEYS if key not in citation]
        if citation.get("doi") is None and not (citation.get("pmcid") or citation.get("url")):
            problems.append(f"{name}: a citation without a DOI needs a pmcid or url")
        if not isinstance(citation.get("year"), int):
            problems.append(f"{name}: citation year must be an integer")
    if data["papillary_convention"] not in CONVENTIONS:
        problems.append(f"{name}: papillary_convention must be one of {CONVENTIONS}")
    if not isinstance(data["tables"], list) or not data["tables"]:
        problems.append(f"{name}: 'tables' must list the tables the values were read from")
    technique = data["technique"]
    if not isinstance(technique, dict) or not {"field_strength_t", "sequence"} <= set(technique):
        problems.append(f"{name}: technique needs field_strength_t and sequence")
    if data["bsa_formula"] is not None and data["bsa_formula"] not in bsa_module.BSA_FORMULAS:
        problems.append(f"{name}: bsa_formula {data['bsa_formula']!r} is not a known formula id")
    if data["bsa_formula"] is None and not data.get("bsa_formula_note"):
        problems.append(f"{name}: an unknown bsa_formula needs a bsa_formula_note saying why")
    entries = data["entries"]
    if not isinstance(entries, list) or not entries:
        return problems + [f"{name}: 'entries' must be a non-empty list"]
    seen = set()
    for index, entry in enumerate(entries):
        problems += _entry_problems(entry, f"{name}: entries[{index}]")
        if isinstance(entry, dict):
            key = (entry.get("parameter"), entry.get("sex"), entry.get("age_min"), entry.get("age_max"))
            if key in seen:
                problems.append(f"{name}: entries[{index}] repeats {key}")
            seen.add(key)
    return problems


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _entry_problems(entry: Any, where: str) -> list[str]:
    if not isinstance(entry, dict):
        return [f"{where}: must be an object"]
    problems = []
    parameter = entry.get("parameter")
    if parameter not in PARAMETERS:
        problems.append(f"{where}: unknown parameter {parameter!r}")
    elif entry.get("unit") != PARAMETERS[parameter][1]:
        problems.append(f"{where}: unit {entry.get('unit')!r} should be {PARAMETERS[parameter][1]!r}")
    if entry.get("sex") not in {"male", "female"}:
        problems.append(f"{where}: sex must be 'male' or 'female'")
    low, high = entry.get("age_min"), entry.get("age_max")
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high <= 120):
        problems.append(f"{where}: age_min/age_max must be whole years with age_min <= age_max")
    mean, sd, lower, upper = (entry.get(key) for key in ("mean", "sd", "lower", "upper"))
    has_sd = _number(mean) and _number(sd) and sd > 0
    has_limits = _number(lower) and _number(upper) and lower < upper
    if not (has_sd or has_limits):
        problems.append(f"{where}: needs mean with a positive sd, or lower < upper limits")
    for key in ("mean", "sd", "lower", "upper"):
        if entry.get(key) is not None and not _number(entry.get(key)):
            problems.append(f"{where}: {key} must be a number or absent")
    if not entry.get("table") or not entry.get("cell"):
        problems.append(f"{where}: needs 'table' and 'cell' naming where the numbers were read")
    return problems


@lru_cache(maxsize=4)
def load_tables(directory: str | None = None) -> tuple[dict, ...]:
    """Every normal-value file, validated; a broken shipped file is a bug, so it raises rather than skips."""
    folder = Path(directory) if directory else TABLE_DIR
    tables = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        problems = validate_table(data, path.name)
        if problems:
            raise ValueError("invalid normal-value table:\n" + "\n".join(problems))
        tables.append({**data, "file": path.name})
    return tuple(tables)


# ------------------------------------------------------------------------------------------------ lookup


_PAPILLARY_KEYWORDS = (
    ("blood pool", IN_LV_VOLUME),
    ("blood", IN_LV_VOLUME),
    ("cavity", IN_LV_VOLUME),
    ("volume", IN_LV_VOLUME),
    ("myocardium", IN_LV_MASS),
    ("myocardial", IN_LV_MASS),
    ("mass", IN_LV_MASS),
)


def papillary_convention(text: str | None) -> str | None:
    """'in LV volume' / 'in LV mass' from a convention name or description, None when it cannot be told.

    Accepts the analysis options ('blood', 'myocardium'), the table wording ('in LV volume', 'in LV mass') and
    free descriptions such as ``results['method']['papillary_muscles']``, where the first keyword decides:
    "counted in the LV myocardium (mass): cavity pixels darker than ..." is a mass convention.
    """
    if text is None:
        return None
    lowered = " ".join(str(text).lower().split())
    hits = [(lowered.find(word), convention) for word, convention in _PAPILLARY_KEYWORDS if word in lowered]
    return min(hits)[1] if hits else None


@dataclass
class Reference:
    """The outcome of one lookup: the source cell and its statistics, or why there is none."""

    parameter: str
    found: bool
    reason: str = ""
    mean: float | None = None
    sd: float | None = None
    lower: float | None = None
    upper: float | None = None
    limits_from: str | None = None  # "mean ± 1.96 SD" or "source limits"
    unit: str | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_lv(parameter: str) -> bool:
    return parameter.startswith("lv_")


def reference_for(
    parameter: str,
    sex: str | None,
    age: float | None,
    papillary: str | None,
    source: str | None = None,
    tables: tuple[dict, ...] | None = None,
) -> Reference:
    """The reference cell for one parameter, or a Reference with ``found=False`` and the reason in words.

    LV parameters need a table whose papillary convention equals the analysis's; RV parameters do not depend on
    it. Then sex and age must be known and fall in a band. Among matching cells the one with mean ± SD (a z-score
    is possible) and the larger cohort wins. Age bands are whole years, inclusive at both ends.
    """
    if parameter not in PARAMETERS:
        return Reference(parameter, False, f"unknown parameter '{parameter}'")
    unit = PARAMETERS[parameter][1]
    candidates = [t for t in (tables if tables is not None else load_tables()) if source in (None, t["id"])]
    if source is not None and not candidates:
        return Reference(parameter, False, f"no normal-value source '{source}'", unit=unit)
    candidates = [t for t in candidates if any(e["parameter"] == parameter for e in t["entries"])]
    if not candidates:
        return Reference(parameter, False, f"no shipped source gives {PARAMETERS[parameter][0]}", unit=unit)
    convention = papillary_convention(papillary)
    if _is_lv(parameter):
        if convention is None:
            return Reference(
                parameter,
                False,
                f"the analysis's papillary convention ({papillary!r}) is not recognised; LV values are not compared",
                unit=unit,
            )
        matching = [t for t in candidates if t["papillary_convention"] == convention]
        if not matching:
            others = sorted({f"{t['id']} ({t['papillary_convention']})" for t in candidates})
            return Reference(
                parameter,
                False,
                f"papillary convention mismatch: the analysis counts papillary muscles {convention}, but the"
                f" sources for {PARAMETERS[parameter][0]} are {', '.join(others)}; not compared",
                unit=unit,
            )
        candidates = matching
    sex_key = bsa_module.normalise_sex(sex)
    if sex_key is None:
        why = "sex not given" if sex is None else f"sex '{sex}' has no sex-specific reference"
        return Reference(parameter, False, f"{why}; reference ranges are sex-specific, so no flag", unit=unit)
    if age is None or not _number(age) or age < 0:
        return Reference(parameter, False, "age not given; reference ranges depend on age, so no flag", unit=unit)
    whole_years = math.floor(age)
    cells = [
        (table, entry)
        for table in candidates
        for entry in table["entries"]
        if entry["parameter"] == parameter
        and entry["sex"] == sex_key
        and entry["age_min"] <= whole_years <= entry["age_max"]
    ]
    if not cells:
        bands = sorted(
            {
                f"{e['age_min']}-{e['age_max']}"
                for t in candidates
                for e in t["entries"]
                if e["parameter"] == parameter and e["sex"] == sex_key
            }
        )
        return Reference(
            parameter,
            False,
            f"no {sex_key} reference band covers age {age:g} (bands: {', '.join(bands) or 'none'})",
            unit=unit,
        )
    # Within one source, the narrowest age band that covers the person wins over its whole-cohort cell; between
    # sources, the one with an SD (for a z-score), then the larger cohort.
    narrowest: dict[str, tuple[dict, dict]] = {}
    for table, entry in cells:
        kept = narrowest.get(table["id"])
        if kept is None or entry["age_max"] - entry["age_min"] < kept[1]["age_max"] - kept[1]["age_min"]:
            narrowest[table["id"]] = (table, entry)
    table, entry = max(narrowest.values(), key=lambda cell: (_number(cell[1].get("sd")), cell[1].get("n") or 0))
    mean, sd = entry.get("mean"), entry.get("sd")
    if _number(entry.get("lower")) and _number(entry.get("upper")):
        lower, upper, limits_from = entry["lower"], entry["upper"], "source limits"
    else:
        lower, upper, limits_from = mean - Z_95 * sd, mean + Z_95 * sd, "mean ± 1.96 SD"
    return Reference(
        parameter,
        True,
        "",
        mean=mean,
        sd=sd if _number(sd) else None,
        lower=lower,
        upper=upper,
        limits_from=limits_from,
        unit=unit,
        source={
            "file": table["file"],
            "id": table["id"],
            "table": entry["table"],
            "cell": entry["cell"],
            "sex": entry["sex"],
            "age_band": f"{entry['age_min']}-{entry['age_max']}",
            "n": entry.get("n"),
            "papillary_convention": table["papillary_convention"],
            "bsa_formula": table["bsa_formula"],
            "citation": _short_citation(table["citation"]),
        },
    )


def _short_citation(citation: dict) -> str:
    first_author = citation["authors"].split(",")[0].strip()
    ident = f"doi:{citation['doi']}" if citation.get("doi") else citation.get("pmcid") or citation.get("url")
    return f"{first_author} et al., {citation['journal']} ({citation['year']}), {ident}"


# ------------------------------------------------------------------------------------------------ assessment


def z_score(value: float, mean: float | None, sd: float | None) -> float | None:
    """(value − mean) / SD, or None where the source gives no SD."""
    if mean is None or sd is None or not sd > 0:
        return None
    return (value - mean) / sd


def flag(value: float, lower: float, upper: float) -> str:
    """'low' below the lower limit, 'high' above the upper, otherwise 'normal' (limits themselves are normal)."""
    if value < lower:
        return "low"
    if value > upper:
        return "high"
    return "normal"


def _judge(parameter: str, value: float | None, reference: Reference) -> dict[str, Any]:
    label, unit = PARAMETERS[parameter]
    result: dict[str, Any] = {
        "parameter": parameter,
        "label": label,
        "value": value,
        "unit": unit,
        "reference": reference.as_dict() if reference.found else None,
        "z_score": None,
        "flag": None,
        "reason": reference.reason,
    }
    if value is None or not _number(value):
        result["reason"] = "no measured value"
        return result
    if reference.found:
        result["z_score"] = z_score(value, reference.mean, reference.sd)
        result["flag"] = flag(value, reference.lower, reference.upper)
    return result


def assess(
    results: dict,
    sex: str | None,
    age: float | None,
    bsa: float | None,
    papillary: str | None = None,
    source: str | None = None,
    bsa_formula: str | None = None,
) -> dict[str, Any]:
    """Every LV/RV figure of a function analysis against the shipped references, absolute and indexed.

    ``results`` is the dict of ``function.analyse_cine`` (``lv``/``rv`` with ``edv_ml``, ``esv_ml``, ``sv_ml``,
    ``ef_pct``, ``mass_g``); ``papillary`` defaults to ``results['method']['papillary_muscles']``. Missing
    sex, age or BSA leaves the affected parameters unflagged with the reason, never guessed.
    """
    if papillary is None:
        papillary = (results.get("method") or {}).get("papillary_muscles")
    formula_id = bsa_module.formula_for(bsa_formula).id if bsa_formula else None
    tables = load_tables()
    parameters: dict[str, dict[str, Any]] = {}
    for parameter, (ventricle, key) in RESULT_KEYS.items():
        value = (results.get(ventricle) or {}).get(key)
        entry = _judge(parameter, value, reference_for(parameter, sex, age, papillary, source, tables))
        index_id = INDEXED.get(parameter)
        if index_id is None:
            parameters[parameter] = entry
            continue
        index_value = bsa_module.indexed(value, bsa) if _number(value) else None
        entry["indexed_value"], entry["indexed_unit"] = index_value, PARAMETERS[index_id][1]
        parameters[parameter] = entry
        indexed_entry = _judge(index_id, index_value, reference_for(index_id, sex, age, papillary, source, tables))
        if bsa is None and _number(value):
            indexed_entry["reason"] = "BSA not given; indexed values need height and weight"
        reference = indexed_entry["reference"]
        if reference and formula_id and reference["source"]["bsa_formula"] not in (None, formula_id):
            indexed_entry["note"] = (
                f"BSA formula differs: analysis used {formula_id}, the source used {reference['source']['bsa_formula']}"
            )
        elif reference and formula_id and reference["source"]["bsa_formula"] is None:
            indexed_entry["note"] = "the source's BSA formula is not recorded; indexed comparison is approximate"
        parameters[index_id] = indexed_entry
    return {
        "sex": bsa_module.normalise_sex(sex),
        "age": age,
        "bsa_m2": bsa,
        "bsa_formula": formula_id,
        "papillary_convention": papillary_convention(papillary),
        "parameters": parameters,
        "sources": sorted({p["reference"]["source"]["id"] for p in parameters.values() if p["reference"]}),
    }
