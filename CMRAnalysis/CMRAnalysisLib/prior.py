"""A prior study of the same patient beside this one: every function figure then, now, and how much it changed.

The prior study is the output folder of an earlier short-axis function analysis (``cardiacsuite cmr-function``
writes ``results.json`` there, with the cine's header under ``input``). :func:`open_prior_study` reads and checks it
before any model runs, so a wrong folder or another patient's study costs nothing; :func:`compare` walks both result
documents and pairs every figure they share, so a figure added to the analysis is compared without being listed
here. Each figure's unit comes from the suffix of its key (``edv_ml``, ``ef_pct``, ``mass_index_g_m2``), the naming
rule the results follow; a difference of percentages is in percentage points.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path

from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.vocabulary import Key

#: The file a function analysis writes into its output folder.
RESULTS_FILE = "results.json"
#: Header fields (DICOM keywords, as ``results.json`` keeps them under ``input``) that say whose study it is.
PATIENT_FIELDS = (Key.PATIENT_ID, "PatientName", "PatientBirthDate")
#: Header fields that say which study and series it is, and when.
STUDY_FIELDS = (Key.STUDY_INSTANCE_UID, "StudyDate", "SeriesInstanceUID")
#: DICOM tag of each of those fields, to read them from a DICOM database.
HEADER_TAGS = {Key.PATIENT_ID: "0010,0020", "PatientName": "0010,0010", "PatientBirthDate": "0010,0030",
               Key.STUDY_INSTANCE_UID: "0020,000D", "StudyDate": "0008,0020", "SeriesInstanceUID": "0020,000E"}
#: Parts of a results document that are not measurements of the heart: run times, method constants, the input's
#: header, the model, the reference-range copies of the figures, and an earlier comparison.
NOT_MEASURED = frozenset({"timing_s", "method", "input", "model", "reference", "prior"})
#: Unit and printed decimals of a figure, from the suffix of its key (longest suffixes first).
UNIT_SUFFIXES = (
    ("_l_min_m2", "l/min/m²", 2),
    ("_ml_m2", "ml/m²", 1),
    ("_g_m2", "g/m²", 1),
    ("_l_min", "l/min", 2),
    ("_ml_s", "ml/s", 0),
    ("_edv_s", "EDV/s", 2),
    ("_bpm", "bpm", 0),
    ("_pct", "%", 1),
    ("_ml", "ml", 1),
    ("_m2", "m²", 2),
    ("_mm", "mm", 1),
    ("_ms", "ms", 0),
    ("_cm", "cm", 0),
    ("_kg", "kg", 1),
    ("_g", "g", 1),
)
#: The unit of a difference between two percentages.
PERCENTAGE_POINTS = "percentage points"
#: How the words of a key read in a label.
WORDS = {
    "lv": "LV", "rv": "RV", "aha": "AHA", "segments": "segment", "territories": "territory", "edv": "EDV",
    "esv": "ESV", "sv": "SV", "ef": "EF", "co": "cardiac output", "per": "PER", "pfr": "PFR", "edvi": "EDVi",
    "esvi": "ESVi", "svi": "SVi", "ci": "cardiac index", "hr": "heart rate", "rr": "RR interval",
    "bsa": "body surface area", "ed": "ED", "es": "ES",
}
#: Columns of the comparison table (text, formatted with each figure's decimals).
COMPARISON_COLUMNS = ["Measurement", "Prior", "Current", "Difference", "Unit", "Difference unit",
                      "Relative difference (%)"]
#: Curves of each study the comparison keeps: phase number, time (ms), both ventricles' and the myocardial volume (ml).
CURVE_KEYS = ("phase", "time_ms", "lv_ml", "rv_ml", "myocardium_ml")


@dataclass
class PriorStudy:
    """A prior analysis to compare with, checked against the study being analysed (whose header is ``current``)."""

    folder: str
    results: dict
    current: dict[str, str]
    allow_other_patient: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def identity(self) -> dict[str, str]:
        return study_identity(self.results.get("input") or {})

    def record(self) -> dict:
        """What the study keeps, so that a recompute compares again (``from_record`` reads it back)."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping) -> PriorStudy:
        return cls(**record)


@dataclass(frozen=True)
class Figure:
    """One measured figure of a results document: where it is, what it is called, its unit."""

    path: tuple[str, ...]
    value: float

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def unit(self) -> str:
        return unit_of(self.path[-1])[0]

    @property
    def label(self) -> str:
        stem = self.path[-1]
        for suffix, _unit, _digits in UNIT_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        words = [WORDS.get(part, part) for part in self.path[:-1]] + [WORDS.get(w, w) for w in stem.split("_")]
        label = " ".join(word for word in words if word)
        return label[:1].upper() + label[1:]


# ------------------------------------------------------------------------------------------------ reading


def study_identity(header: Mapping) -> dict[str, str]:
    """The patient and study fields of a header (a series' metadata, or ``results.json``'s ``input``) that are set."""
    found = {}
    for name in (*PATIENT_FIELDS, *STUDY_FIELDS):
        value = header.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            found[name] = str(value).strip()
    return found


def read_results_folder(folder: str | Path) -> dict:
    """The results document of a function analysis's output folder; a clear error when it is not one."""
    path = Path(folder).expanduser()
    advice = "choose the output folder of an earlier short-axis function analysis (cardiacsuite cmr-function)"
    if not path.exists():
        raise InputError(f"prior study: {path} does not exist; {advice}")
    if not path.is_dir():
        raise InputError(f"prior study: {path} is a file, not a folder; {advice}")
    results_path = path / RESULTS_FILE
    if not results_path.is_file():
        raise InputError(f"prior study: {path} holds no {RESULTS_FILE}; {advice}")
    try:
        document = json.loads(results_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"prior study: {results_path} cannot be read ({error}); check the file's permissions") from None
    except ValueError as error:
        raise InputError(f"prior study: {results_path} is not valid JSON ({error}); rerun the prior analysis"
                         " to write it again") from None
    missing = function_result_problem(document)
    if missing:
        raise InputError(f"prior study: {results_path} is not the result of a short-axis function analysis"
                         f" ({missing}); {advice}")
    return document


def function_result_problem(document) -> str | None:
    """What a document lacks to be a function result (both ventricles' volumes, the volume curves), or None."""
    if not isinstance(document, dict):
        return "it is not a JSON object"
    for ventricle in ("lv", "rv"):
        if not isinstance(document.get(ventricle), dict) or not _is_number(document[ventricle].get("edv_ml")):
            return f"no {ventricle.upper()} end-diastolic volume"
    curves = document.get("curves")
    if not isinstance(curves, dict) or not all(isinstance(curves.get(key), list) for key in ("phase", "lv_ml", "rv_ml")):
        return "no volume curves"
    return None


def open_prior_study(folder: str | Path, current: Mapping[str, str], allow_other_patient: bool = False) -> PriorStudy:
    """Read the prior analysis in ``folder`` and check it is of the patient whose header is ``current``.

    A different PatientID, name or birth date is an error unless ``allow_other_patient``; a study without any of
    them is compared with a warning in the results, since the same patient could not be checked.
    """
    results = read_results_folder(folder)
    prior = PriorStudy(str(Path(folder).expanduser().resolve()), results, dict(current), allow_other_patient)
    prior.warnings = patient_warnings(prior)
    return prior


def _normalised(name: str, value: str) -> str:
    """Spelling differences that do not make another patient: case, blanks, DICOM name separators."""
    text = " ".join(value.split()).casefold()
    return text.replace("^", " ").strip() if name == "PatientName" else text


def patient_warnings(prior: PriorStudy) -> list[str]:
    """Warnings about the patient check; InputError when the fields that both studies carry disagree."""
    then, now = prior.identity, prior.current
    compared = [name for name in PATIENT_FIELDS if name in then and name in now]
    differing = [f"{name} '{then[name]}' there, '{now[name]}' here" for name in compared
                 if _normalised(name, then[name]) != _normalised(name, now[name])]
    warnings = []
    if differing:
        described = "; ".join(differing)
        if not prior.allow_other_patient:
            raise InputError(f"prior study: {prior.folder} is of another patient ({described}); choose a prior study"
                             " of this patient, or allow a comparison of different patients")
        warnings.append(f"the studies are of different patients ({described}); compared as asked")
    if not compared:
        lacking = [side for side, header in (("the prior study", then), ("this study", now))
                   if not any(name in header for name in PATIENT_FIELDS)]
        who = " and ".join(lacking) if lacking else "the two studies"
        verb = "carries" if len(lacking) == 1 else "carry"
        what = "no patient ID, name or birth date" if lacking else "no patient field in common"
        warnings.append(f"same patient not checked: {who} {verb} {what}")
    if then.get(Key.STUDY_INSTANCE_UID) and then.get(Key.STUDY_INSTANCE_UID) == now.get(Key.STUDY_INSTANCE_UID):
        warnings.append("the prior study is this same study (same StudyInstanceUID)")
    return warnings


# ------------------------------------------------------------------------------------------------ comparing


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # NaN is not a figure


def unit_of(key: str) -> tuple[str | None, int]:
    """(unit, printed decimals) of a figure from its key's suffix; (None, 0) for a key that is not a figure."""
    for suffix, unit, digits in UNIT_SUFFIXES:
        if key.endswith(suffix):
            return unit, digits
    return None, 0


def measured_figures(results: Mapping, path: tuple[str, ...] = ()) -> Iterator[Figure]:
    """Every number of a results document that measures the heart: a key with a unit, outside :data:`NOT_MEASURED`.

    Phase numbers, counts and per-slice lists have no unit suffix or are lists, so they are left out by the rule.
    """
    for key, value in results.items():
        key = str(key)
        if not path and key in NOT_MEASURED:
            continue
        if isinstance(value, Mapping):
            yield from measured_figures(value, (*path, key))
        elif _is_number(value) and unit_of(key)[0] is not None:
            yield Figure((*path, key), float(value))


def compare_figure(prior: Figure, current: Figure) -> dict:
    """Prior and current value, difference (current minus prior) and relative difference, with units."""
    difference = current.value - prior.value
    return {
        "label": current.label,
        "unit": current.unit,
        "prior": prior.value,
        "current": current.value,
        "difference": difference,
        "difference_unit": PERCENTAGE_POINTS if current.unit == "%" else current.unit,
        "relative_difference_pct": 100.0 * difference / prior.value if prior.value else None,
    }


def method_warnings(prior_results: dict, current_results: dict) -> list[str]:
    """Method choices that differ between the studies and so change figures beyond the heart's own change."""
    warnings = []
    then, now = prior_results.get("method") or {}, current_results.get("method") or {}
    if then.get("papillary_muscles") and then.get("papillary_muscles") != now.get("papillary_muscles"):
        warnings.append(f"papillary muscles: prior study {then['papillary_muscles']}, this study"
                        f" {now.get('papillary_muscles')}; LV volumes and mass differ by method too")
    formulas = [(results.get("bsa_formula") or {}).get("id") for results in (prior_results, current_results)]
    if all(formulas) and formulas[0] != formulas[1]:
        warnings.append(f"body surface area: {formulas[0]} formula then, {formulas[1]} now; indexed values differ"
                        " by formula too")
    models = [(results.get("model") or {}) for results in (prior_results, current_results)]
    labels = [f"{model.get('id')} {model.get('version')}" for model in models]
    if all(model.get("id") for model in models) and labels[0] != labels[1]:
        warnings.append(f"model: {labels[0]} then, {labels[1]} now; differences include the models' disagreement")
    return warnings


def study_date(identity: Mapping[str, str]) -> date | None:
    """The StudyDate (DICOM DA, YYYYMMDD) of a study, or None when absent or not a date."""
    text = identity.get("StudyDate", "")
    try:
        return datetime.strptime(text.replace("-", "").replace(".", ""), "%Y%m%d").date()
    except ValueError:
        return None


def _curves(results: dict) -> dict:
    curves = results.get("curves") or {}
    return {key: curves.get(key) for key in CURVE_KEYS}


def compare(current_results: dict, prior: PriorStudy) -> dict:
    """The ``prior`` block of the results: both studies, the interval, every shared figure, both curves."""
    then = {figure.key: figure for figure in measured_figures(prior.results)}
    quantities = {figure.key: compare_figure(then[figure.key], figure)
                  for figure in measured_figures(current_results) if figure.key in then}
    warnings = list(prior.warnings) + method_warnings(prior.results, current_results)
    dates = study_date(prior.identity), study_date(prior.current)
    interval = (dates[1] - dates[0]).days if all(dates) else None
    if interval is None:
        warnings.append("interval between the studies unknown: a StudyDate is missing")
    elif interval < 0:
        warnings.append(f"the prior study is dated {-interval} days after this one")
    prior_input = prior.results.get("input") or {}
    return {
        "folder": prior.folder,
        "prior_study": {**prior.identity, "name": prior_input.get("name", ""), "source": prior_input.get("source", "")},
        "current_study": dict(prior.current),
        "same_patient_checked": [name for name in PATIENT_FIELDS if name in prior.identity and name in prior.current],
        "interval_days": interval,
        "warnings": list(dict.fromkeys(warnings)),
        "quantities": quantities,
        "curves": {"prior": _curves(prior.results), "current": _curves(current_results),
                   "units": {"time_ms": "ms", "lv_ml": "ml", "rv_ml": "ml", "myocardium_ml": "ml"}},
        "method": {
            "difference": "current minus prior, in the figure's unit (percentage points for percentages)",
            "relative_difference_pct": "difference divided by the prior value, in %",
            "interval_days": "StudyDate of this study minus that of the prior study, in days",
        },
    }


# ------------------------------------------------------------------------------------------------ presenting


def _text(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def comparison_rows(block: dict) -> tuple[list[str], list[list[str]]]:
    """Rows (all text) of the comparison table: measurement, prior, current, difference, units, relative change."""
    rows = []
    for key, item in block["quantities"].items():
        digits = unit_of(key.rsplit(".", 1)[-1])[1]
        rows.append([item["label"], _text(item["prior"], digits), _text(item["current"], digits),
                     _text(item["difference"], digits, signed=True), item["unit"], item["difference_unit"],
                     _text(item["relative_difference_pct"], 1, signed=True)])
    return list(COMPARISON_COLUMNS), rows


def describe_prior(block: dict) -> str:
    """One line naming the prior study: its date, the interval, its patient ID, its folder."""
    study = block["prior_study"]
    parts = []
    when = study_date(study)
    if when is not None:
        parts.append(f"of {when.isoformat()}")
    if block.get("interval_days") is not None:
        parts.append(f"{block['interval_days']} days before this one")
    if study.get(Key.PATIENT_ID):
        parts.append(f"PatientID {study[Key.PATIENT_ID]}")
    return f"Prior study {', '.join(parts) + ', ' if parts else ''}from {block['folder']}"


__all__ = [
    "COMPARISON_COLUMNS", "HEADER_TAGS", "PERCENTAGE_POINTS", "PriorStudy", "compare", "comparison_rows", "describe_prior",
    "measured_figures", "open_prior_study", "read_results_folder", "study_identity",
]
