"""Body surface area (BSA) from height and weight, with a selectable and recorded formula.

Indexed volumes and masses (ml/m², g/m²) are only comparable with a reference range computed with the same
BSA formula, so every formula here carries its equation, its citation and a code to store with the result:
the DICOM CID 3663 "Body Surface Area Equation" code where DICOM has one, otherwise a local code under the
private coding scheme ``99CARDIACSUITE``.

Units everywhere: height in cm, weight in kg, BSA in m² (Boyd's equation takes grams inside, as published).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from CardiacSuiteLib.errors import InputError

HEIGHT_RANGE_CM = (30.0, 250.0)
WEIGHT_RANGE_KG = (1.0, 400.0)
BSA_RANGE_M2 = (0.05, 5.0)  # a divisor outside this is a unit mistake (cm² instead of m²), not a patient
LOCAL_CODING_SCHEME = "99CARDIACSUITE"


@dataclass(frozen=True)
class Code:
    """A coded concept as DICOM SR stores it: value, coding scheme designator, code meaning."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class BsaFormula:
    """One BSA equation and what a report must say about it."""

    id: str
    name: str
    equation: str
    citation: str
    code: Code
    population: str
    compute: Callable[[float, float, str | None], float] = field(repr=False)
    needs_sex: bool = False
    verification: str = ""
    notes: tuple[str, ...] = ()


def _mosteller(h: float, w: float, _sex: str | None) -> float:
    return math.sqrt(h * w / 3600.0)


def _dubois(h: float, w: float, _sex: str | None) -> float:
    return 0.007184 * w**0.425 * h**0.725


def _haycock(h: float, w: float, _sex: str | None) -> float:
    return 0.024265 * w**0.5378 * h**0.3964


def _gehan_george(h: float, w: float, _sex: str | None) -> float:
    return 0.0235 * w**0.51456 * h**0.42246


def _boyd(h: float, w: float, _sex: str | None) -> float:
    grams = 1000.0 * w
    return 0.0003207 * h**0.3 * grams ** (0.7285 - 0.0188 * math.log10(grams))


def _stevenson(h: float, w: float, _sex: str | None) -> float:
    return 0.0061 * h + 0.0128 * w - 0.1529


def _hu_1999(h: float, w: float, sex: str | None) -> float:
    if sex == "male":
        return 0.0057 * h + 0.0121 * w + 0.0882
    return 0.0073 * h + 0.0127 * w - 0.2106


_CHINESE_VERIFICATION = (
    "The primary publication could not be read here; the constants were checked against several independent"
    " public implementations, which agree. Check them against the original before relying on them clinically."
)

_FORMULAS = (
    BsaFormula(
        id="mosteller",
        name="Mosteller",
        equation="BSA = sqrt(H[cm] × W[kg] / 3600)",
        citation="Mosteller RD. Simplified calculation of body-surface area. N Engl J Med 1987;317(17):1098.",
        code=Code("122244", "DCM", "BSA = (HT*WT/36)^0.5"),
        population="adults and children",
        compute=_mosteller,
        verification="Constants checked against secondary references (admiral compute_bsa, GlobalRPh).",
        notes=("DICOM's code meaning writes HT in metres: (H[m] × W / 36)^0.5 is the same number.",),
    ),
    BsaFormula(
        id="dubois",
        name="DuBois & DuBois",
        equation="BSA = 0.007184 × W[kg]^0.425 × H[cm]^0.725",
        citation=(
            "Du Bois D, Du Bois EF. A formula to estimate the approximate surface area if height and weight be"
            " known. Arch Intern Med 1916;17(6):863-871."
        ),
        code=Code("122241", "DCM", "BSA = 0.007184*WT^0.425*HT^0.725"),
        population="adults (derived from 9 subjects)",
        compute=_dubois,
        verification="Constants checked against DICOM CID 3663 and secondary references.",
    ),
    BsaFormula(
        id="haycock",
        name="Haycock",
        equation="BSA = 0.024265 × W[kg]^0.5378 × H[cm]^0.3964",
        citation=(
            "Haycock GB, Schwartz GJ, Wisotsky DH. Geometric method for measuring body surface area: a"
            " height-weight formula validated in infants, children, and adults. J Pediatr 1978;93(1):62-66."
        ),
        code=Code("122243", "DCM", "BSA = 0.024265*WT^0.5378*HTcm^0.3964"),
        population="infants, children and adults",
        compute=_haycock,
        verification="Constants checked against DICOM CID 3663 and secondary references.",
    ),
    BsaFormula(
        id="gehan-george",
        name="Gehan & George",
        equation="BSA = 0.0235 × W[kg]^0.51456 × H[cm]^0.42246",
        citation=(
            "Gehan EA, George SL. Estimation of human body surface area from height and weight."
            " Cancer Chemother Rep 1970;54(4):225-235."
        ),
        code=Code("122242", "DCM", "BSA = 0.0235*WT^0.51456*HTcm^0.42246"),
        population="children and adults (401 direct measurements)",
        compute=_gehan_george,
        verification="Constants checked against DICOM CID 3663 and secondary references.",
    ),
    BsaFormula(
        id="boyd",
        name="Boyd",
        equation="BSA = 0.0003207 × H[cm]^0.3 × W[g]^(0.7285 − 0.0188 × log10 W[g])",
        citation="Boyd E. The Growth of the Surface Area of the Human Body. University of Minnesota Press; 1935.",
        code=Code("122240", "DCM", "BSA = 0.003207*WT^(0.7285-0.0188*log(WT))*HT^0.3"),
        population="general (see the original monograph)",
        compute=_boyd,
        verification="Constants checked against secondary references (admiral compute_bsa and others).",
        notes=(
            "The DICOM code meaning prints the constant as 0.003207 without units; with W in grams, H in cm and"
            " BSA in m² the constant is 0.0003207 (0.003207 would give about 19 m² for an adult).",
        ),
    ),
    BsaFormula(
        id="stevenson",
        name="Stevenson (Chinese adults)",
        equation="BSA = 0.0061 × H[cm] + 0.0128 × W[kg] − 0.1529",
        citation=(
            "Stevenson PH, 1937, Chinese Journal of Physiology (the height-weight-surface formula for Chinese"
            " subjects; title, volume and pages as commonly cited, not verified here)."
        ),
        code=Code("BSA-STEVENSON-1937", LOCAL_CODING_SCHEME, "BSA = 0.0061*HTcm+0.0128*WT-0.1529 (Stevenson)"),
        population="Chinese adults (derived from 10 measured subjects)",
        compute=_stevenson,
        verification=_CHINESE_VERIFICATION,
        notes=(
            "A later Chinese paper-mould study of 56 men aged 18-45 reported BSA = 0.00607 H + 0.0127 W − 0.0698"
            " (abstract read; authors and journal not identified); for 170 cm / 60 kg it gives 1.72 m² against"
            " Stevenson's 1.65 m². The sources disagree; record which formula was used.",
            "Single public implementations print the intercept as −0.1592 or −0.1329; −0.1529 is the value the"
            " majority agree on.",
        ),
    ),
    BsaFormula(
        id="hu-1999",
        name="Hu Yongmin et al. 1999 (Chinese adults, by sex)",
        equation=(
            "men: BSA = 0.0057 × H[cm] + 0.0121 × W[kg] + 0.0882; women: BSA = 0.0073 × H[cm] + 0.0127 × W[kg] − 0.2106"
        ),
        citation=(
            "Hu Yongmin (胡咏梅) et al., 1999: the Chinese adult body surface area formulas (中国人体表面积公式),"
            " commonly cited as Acta Physiologica Sinica (生理学报) 1999 (journal, volume and pages not verified here)."
        ),
        code=Code("BSA-HU-1999", LOCAL_CODING_SCHEME, "BSA = sex-specific linear formula (Hu 1999)"),
        population="Chinese adults, separate equations for men and women",
        compute=_hu_1999,
        needs_sex=True,
        verification=_CHINESE_VERIFICATION,
    ),
)

BSA_FORMULAS: Mapping[str, BsaFormula] = MappingProxyType({formula.id: formula for formula in _FORMULAS})


def formula_for(formula: str) -> BsaFormula:
    """The registry entry for ``formula`` (case and ``_``/``-``/space insensitive)."""
    key = str(formula).strip().lower().replace("_", "-").replace(" ", "-").replace("&", "")
    key = {"du-bois": "dubois", "gehan": "gehan-george", "gehangeorge": "gehan-george", "hu": "hu-1999"}.get(key, key)
    if key not in BSA_FORMULAS:
        raise InputError(f"unknown BSA formula '{formula}'; choose one of: {', '.join(BSA_FORMULAS)}")
    return BSA_FORMULAS[key]


def normalise_sex(sex: str | None) -> str | None:
    """'male' / 'female' from DICOM (M/F) or words; None for missing or other (O) values."""
    if sex is None:
        return None
    text = str(sex).strip().lower()
    if text in {"m", "male", "man", "men", "男"}:
        return "male"
    if text in {"f", "female", "woman", "women", "女"}:
        return "female"
    return None


def _checked_number(name: str, value: object, low: float, high: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{name} must be a number in {unit}; got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise InputError(
            f"{name} {value} {unit} is outside the plausible range {low:g}-{high:g} {unit}; check the value and"
            " its unit"
        )
    return number


def body_surface_area(height_cm: float, weight_kg: float, formula: str = "mosteller", sex: str | None = None) -> float:
    """BSA in m² with the chosen formula; refuses implausible heights or weights (usually a unit mix-up)."""
    entry = formula_for(formula)
    height = _checked_number("height", height_cm, *HEIGHT_RANGE_CM, "cm")
    weight = _checked_number("weight", weight_kg, *WEIGHT_RANGE_KG, "kg")
    sex_key = normalise_sex(sex)
    if entry.needs_sex and sex_key is None:
        raise InputError(f"the {entry.name} formula has separate equations for men and women; give the sex (M or F)")
    bsa = entry.compute(height, weight, sex_key)
    if not BSA_RANGE_M2[0] <= bsa <= BSA_RANGE_M2[1]:
        raise InputError(
            f"the {entry.name} formula gives {bsa:.3f} m² for {height:g} cm / {weight:g} kg, which is not a"
            " plausible body surface area; this formula is not valid for this body size"
        )
    return bsa


def indexed(value: float | None, bsa: float | None) -> float | None:
    """``value`` divided by BSA (ml → ml/m², g → g/m²); None when either is missing, so absent stays absent."""
    if value is None or bsa is None:
        return None
    divisor = _checked_number("BSA", bsa, *BSA_RANGE_M2, "m²")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"only numbers can be indexed to BSA; got {value!r}")
    return float(value) / divisor
