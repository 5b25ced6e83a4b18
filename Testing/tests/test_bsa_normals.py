"""BSA formulas against hand-computed cases, and the normal-value tables: schema, lookups, z-scores, flags.

The hand computations are written out next to each case (intermediate powers to 6 significant figures), so a
wrong constant in ``bsa.py`` shows up as a wrong product here, not as a changed snapshot.
"""

from __future__ import annotations

import json
import math

import pytest

from CardiacSuiteLib.errors import InputError
from CMRAnalysisLib import bsa, normals

SHIPPED = sorted(normals.TABLE_DIR.glob("*.json"))

# ------------------------------------------------------------------------------------------------ BSA


@pytest.mark.parametrize(
    "formula, height, weight, sex, expected",
    [
        # sqrt(180 × 80 / 3600) = sqrt(14400 / 3600) = sqrt(4) = 2
        ("mosteller", 180, 80, None, 2.0),
        # sqrt(180 × 75 / 3600) = sqrt(3.75) = 1.936492
        ("mosteller", 180, 75, None, 1.936492),
        # 75^0.425 = 6.264711; 180^0.725 = 43.15912; 0.007184 × 6.264711 × 43.15912 = 1.942406
        ("dubois", 180, 75, None, 1.942406),
        # 75^0.5378 = 10.19549; 180^0.3964 = 7.834116; 0.024265 × 10.19549 × 7.834116 = 1.938109
        ("haycock", 180, 75, None, 1.938109),
        # 75^0.51456 = 9.222136; 180^0.42246 = 8.969380; 0.0235 × 9.222136 × 8.969380 = 1.943846
        ("gehan-george", 180, 75, None, 1.943846),
        # W = 75000 g; log10 W = 4.875061; exponent 0.7285 − 0.0188 × 4.875061 = 0.636849;
        # 75000^0.636849 = 1272.557; 180^0.3 = 4.748777; 0.0003207 × 4.748777 × 1272.557 = 1.938018
        ("boyd", 180, 75, None, 1.938018),
        # 0.0061 × 170 + 0.0128 × 60 − 0.1529 = 1.037 + 0.768 − 0.1529 = 1.6521
        ("stevenson", 170, 60, None, 1.6521),
        # men: 0.0057 × 170 + 0.0121 × 60 + 0.0882 = 0.969 + 0.726 + 0.0882 = 1.7832
        ("hu-1999", 170, 60, "M", 1.7832),
        # women: 0.0073 × 160 + 0.0127 × 50 − 0.2106 = 1.168 + 0.635 − 0.2106 = 1.5924
        ("hu-1999", 160, 50, "F", 1.5924),
    ],
)
def test_formulas_by_hand(formula, height, weight, sex, expected):
    assert bsa.body_surface_area(height, weight, formula, sex=sex) == pytest.approx(expected, rel=2e-6)


def test_every_formula_is_documented_and_coded():
    assert {"mosteller", "dubois", "haycock", "gehan-george", "boyd", "stevenson", "hu-1999"} <= set(bsa.BSA_FORMULAS)
    for key, formula in bsa.BSA_FORMULAS.items():
        assert formula.id == key
        assert formula.name and formula.equation and formula.population and formula.verification
        assert len(formula.citation) > 40, key
        assert formula.code.scheme in {"DCM", bsa.LOCAL_CODING_SCHEME} and formula.code.value and formula.code.meaning
        assert 1.5 < bsa.body_surface_area(175, 70, key, sex="F") < 2.1, key  # every formula: an average adult


def test_dicom_codes_are_those_of_cid_3663():
    """Code values and meanings as in pydicom's copy of DICOM PS3.16, CID 3663 Body Surface Area Equation."""
    from pydicom.sr._concepts_dict import concepts

    cid_3663 = {
        value: meaning
        for by_value in concepts["DCM"].values()
        for value, (meaning, cids) in by_value.items()
        if 3663 in cids
    }
    dicom = {key: f for key, f in bsa.BSA_FORMULAS.items() if f.code.scheme == "DCM"}
    assert {f.code.value for f in dicom.values()} == {"122240", "122241", "122242", "122243", "122244"}
    for formula in dicom.values():
        assert cid_3663[formula.code.value] == formula.code.meaning
    assert {f.code.value for f in bsa.BSA_FORMULAS.values() if f.code.scheme != "DCM"}.isdisjoint(cid_3663)


def test_formula_names_are_forgiving_but_unknown_ones_refused():
    assert bsa.formula_for("DuBois").id == "dubois"
    assert bsa.formula_for("Gehan_George").id == "gehan-george"
    assert bsa.formula_for("HU").id == "hu-1999"
    with pytest.raises(InputError, match="unknown BSA formula 'fujimoto'.*mosteller"):
        bsa.body_surface_area(170, 70, "fujimoto")


@pytest.mark.parametrize(
    "height, weight, message",
    [
        (29.9, 70, "height 29.9 cm is outside the plausible range 30-250 cm"),
        (250.1, 70, "height 250.1 cm"),
        (1.75, 70, "height 1.75 cm"),  # metres typed as centimetres
        (175, 0.9, "weight 0.9 kg is outside the plausible range 1-400 kg"),
        (175, 401, "weight 401 kg"),
        (175, 154000, "weight 154000 kg"),  # grams typed as kilograms
        (float("nan"), 70, "height nan cm"),
        ("175", 70, "height must be a number"),
        (True, 70, "height must be a number"),
        (175, None, "weight must be a number"),
    ],
)
def test_implausible_inputs_are_refused_with_a_clear_message(height, weight, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        bsa.body_surface_area(height, weight)


def test_range_edges_are_accepted():
    # sqrt(30 × 1 / 3600) = 0.091287; sqrt(250 × 400 / 3600) = sqrt(27.7778) = 5.270463 is above 5 m²: refused
    assert bsa.body_surface_area(30, 1) == pytest.approx(0.091287, rel=1e-5)
    assert bsa.body_surface_area(250, 100) == pytest.approx(math.sqrt(250 * 100 / 3600))
    with pytest.raises(InputError, match="not a plausible body surface area"):
        bsa.body_surface_area(250, 400)


def test_linear_chinese_formulas_refuse_tiny_bodies():
    # Stevenson at 30 cm / 1 kg: 0.183 + 0.0128 − 0.1529 = 0.0429 m², below any real body
    with pytest.raises(InputError, match="Stevenson.*not a plausible body surface area"):
        bsa.body_surface_area(30, 1, "stevenson")


def test_sex_specific_formula_needs_the_sex():
    with pytest.raises(InputError, match="separate equations for men and women"):
        bsa.body_surface_area(170, 60, "hu-1999")
    with pytest.raises(InputError, match="separate equations"):
        bsa.body_surface_area(170, 60, "hu-1999", sex="O")


def test_indexed_values():
    assert bsa.indexed(150.0, 1.5) == pytest.approx(100.0)  # 150 ml / 1.5 m² = 100 ml/m²
    assert bsa.indexed(None, 1.8) is None
    assert bsa.indexed(120.0, None) is None
    with pytest.raises(InputError, match="BSA 0 m²"):
        bsa.indexed(120.0, 0)
    with pytest.raises(InputError, match="BSA 18500 m²"):
        bsa.indexed(120.0, 18500)  # cm² passed as m²


# ------------------------------------------------------------------------------------------------ tables


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_table_is_valid(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    assert normals.validate_table(data, path.name) == []
    assert data["id"] == path.stem
    for entry in data["entries"]:
        # every number must appear in the quoted source cell, so a typo in mean or SD cannot hide
        assert f"{entry['mean']:g}" in entry["cell"], entry
        assert f"{entry['sd']:g}" in entry["cell"], entry
        population = data["population"]
        low, high = population["age_range_years"]
        assert low <= entry["age_min"] <= entry["age_max"] <= high


def test_at_least_four_sources_ship_and_load():
    tables = normals.load_tables()
    assert len(tables) == len(SHIPPED) >= 4
    assert {t["papillary_convention"] for t in tables} >= {normals.IN_LV_VOLUME, normals.IN_LV_MASS}


def _table(**changes):
    table = {
        "schema": normals.SCHEMA,
        "id": "synthetic",
        "citation": {"authors": "A B", "title": "T", "journal": "J", "year": 2000, "doi": "10.0/x"},
        "tables": ["Table 1"],
        "technique": {"field_strength_t": 1.5, "sequence": "bSSFP"},
        "papillary_convention": normals.IN_LV_VOLUME,
        "papillary_convention_source": "test",
        "bsa_formula": "mosteller",
        "population": {},
        "statistic": "mean ± SD",
        "entries": [
            {"parameter": "lv_edv_ml", "sex": "male", "age_min": 20, "age_max": 29, "mean": 150, "sd": 20,
             "unit": "ml", "table": "Table 1", "cell": "r1"},
            {"parameter": "lv_edv_ml", "sex": "male", "age_min": 30, "age_max": 39, "mean": 140, "sd": 20,
             "unit": "ml", "table": "Table 1", "cell": "r2"},
            {"parameter": "lv_edv_ml_m2", "sex": "male", "age_min": 20, "age_max": 39, "lower": 60, "upper": 100,
             "unit": "ml/m2", "table": "Table 2", "cell": "r3"},
        ],
        "file": "synthetic.json",
    }  # fmt: skip
    table.update(changes)
    return table


def test_schema_validation_catches_broken_tables():
    assert normals.validate_table(_table()) == []
    assert any("missing 'papillary_convention'" in p for p in normals.validate_table(
        {k: v for k, v in _table().items() if k != "papillary_convention"}))  # fmt: skip
    bad = _table(papillary_convention="somewhere", bsa_formula=None)
    bad["entries"] = [dict(bad["entries"][0], unit="l", sd=0), dict(bad["entries"][0]), {"parameter": "lv_volume"}]
    problems = "\n".join(normals.validate_table(bad, "bad.json"))
    for expected in ("papillary_convention must be one of", "needs a bsa_formula_note", "unit 'l' should be 'ml'",
                     "needs mean with a positive sd", "repeats", "unknown parameter 'lv_volume'"):  # fmt: skip
        assert expected in problems


def test_age_band_edges():
    tables = (_table(),)

    def band(age):
        found = normals.reference_for("lv_edv_ml", "male", age, "in LV volume", tables=tables)
        return found.source["age_band"] if found.found else found.reason

    assert band(20) == "20-29"
    assert band(29.99) == "20-29"  # bands are whole years: 29.99 years old is 29
    assert band(30) == "30-39"
    assert band(39.5) == "30-39"
    assert band(19.9).startswith("no male reference band covers age 19.9 (bands: 20-29, 30-39)")
    assert band(40).startswith("no male reference band covers age 40")


def test_narrowest_covering_band_wins_over_a_whole_cohort_cell():
    table = _table()
    cohort = {"parameter": "lv_edv_ml", "sex": "male", "age_min": 20, "age_max": 39, "mean": 145, "sd": 25,
              "unit": "ml", "table": "Table 0", "cell": "all ages", "n": 900}  # fmt: skip
    table["entries"] = [dict(entry, n=100) for entry in table["entries"]] + [cohort]
    found = normals.reference_for("lv_edv_ml", "male", 33, "in LV volume", tables=(table,))
    assert (found.source["age_band"], found.mean, found.sd) == ("30-39", 140, 20)  # not the larger whole cohort


def test_shipped_band_edges_and_sex():
    # Petersen 2017 (UK Biobank): LVEF 58 ± 5 % in men, 61 ± 5 % in women, ages 45-74
    for age in (45, 74, 74.9):
        assert normals.reference_for("lv_ef_pct", "M", age, "in LV volume").mean == 58
    assert normals.reference_for("lv_ef_pct", "female", 60, "blood").mean == 61
    assert not normals.reference_for("lv_ef_pct", "M", 44.9, "in LV volume").found
    assert not normals.reference_for("lv_ef_pct", "M", 75, "in LV volume").found


def test_z_score_and_flag_by_hand():
    # women, Petersen 2017: mean 61, SD 5 → limits 61 ± 1.96 × 5 = 51.2 … 70.8
    reference = normals.reference_for("lv_ef_pct", "F", 50, "in LV volume")
    assert (reference.lower, reference.upper) == pytest.approx((51.2, 70.8))
    assert reference.limits_from == "mean ± 1.96 SD"
    assert reference.source["file"] == "petersen-2017-ukbiobank.json"
    assert reference.source["sex"] == "female" and reference.source["age_band"] == "45-74"
    judged = {v: normals._judge("lv_ef_pct", v, reference) for v in (50, 51.2, 70.8, 71)}
    assert judged[50]["z_score"] == pytest.approx(-2.2) and judged[50]["flag"] == "low"  # (50 − 61) / 5
    assert judged[51.2]["flag"] == "normal" and judged[70.8]["flag"] == "normal"  # the limits are normal
    assert judged[71]["z_score"] == pytest.approx(2.0) and judged[71]["flag"] == "high"  # (71 − 61) / 5


def test_limits_only_source_flags_without_z_score():
    reference = normals.reference_for("lv_edv_ml_m2", "M", 25, "in LV volume", tables=(_table(),))
    assert reference.limits_from == "source limits" and reference.sd is None
    result = normals._judge("lv_edv_ml_m2", 105.0, reference)
    assert result["flag"] == "high" and result["z_score"] is None


def test_convention_mismatch_is_reported_not_compared():
    # LV EF: the only sources are Petersen (in LV volume) and Zhang (not stated)
    mismatch = normals.reference_for("lv_ef_pct", "M", 50, "in LV mass")
    assert not mismatch.found and mismatch.mean is None
    assert "papillary convention mismatch" in mismatch.reason
    assert "petersen-2017-ukbiobank (in LV volume)" in mismatch.reason
    # LV EDV: Hudsmith counts papillary muscles in the mass; a blood-pool analysis must not be compared with it
    assert "mismatch" in normals.reference_for("lv_edv_ml", "M", 50, "blood").reason
    assert normals.reference_for("lv_edv_ml", "M", 50, "myocardium").source["id"] == "hudsmith-2005"
    # an unreadable convention is not guessed
    assert "not recognised" in normals.reference_for("lv_edv_ml", "M", 50, "unknown").reason


def test_rv_reference_does_not_depend_on_the_lv_convention():
    for convention in ("blood", "myocardium"):
        reference = normals.reference_for("rv_ef_pct", "F", 40, convention)
        assert reference.found and (reference.mean, reference.sd) == (64.0, 5.3)  # Zhang 2021, women


def test_missing_or_other_sex_and_missing_age_give_no_flag():
    assert "sex not given" in normals.reference_for("lv_ef_pct", None, 50, "blood").reason
    assert "sex 'O' has no sex-specific reference" in normals.reference_for("lv_ef_pct", "O", 50, "blood").reason
    assert "age not given" in normals.reference_for("lv_ef_pct", "F", None, "blood").reason
    assert "no normal-value source 'nope'" in normals.reference_for("lv_ef_pct", "F", 50, "blood", source="nope").reason


def test_papillary_convention_wording():
    blood = "papillary muscles and trabeculations counted in the LV blood pool (volume)"
    muscle = "papillary muscles and trabeculations counted in the LV myocardium (mass): cavity pixels darker than"
    assert normals.papillary_convention(blood) == normals.IN_LV_VOLUME
    assert normals.papillary_convention(muscle) == normals.IN_LV_MASS
    assert normals.papillary_convention("papillary muscles and trabeculations counted in the LV cavity") == (
        normals.IN_LV_VOLUME
    )
    assert normals.papillary_convention("not stated") is None


def _results(papillary="papillary muscles and trabeculations counted in the LV blood pool (volume)"):
    return {
        "lv": {"edv_ml": 150.0, "esv_ml": 60.0, "sv_ml": 90.0, "ef_pct": 60.0, "mass_g": 84.0},
        "rv": {"edv_ml": 160.0, "esv_ml": 70.0, "sv_ml": 90.0, "ef_pct": 56.25},
        "method": {"papillary_muscles": papillary},
    }


def test_assess_a_function_result():
    report = normals.assess(_results(), "F", 52, 2.0, bsa_formula="mosteller")
    parameters = report["parameters"]
    assert report["papillary_convention"] == normals.IN_LV_VOLUME and report["sex"] == "female"
    # LV mass 84 g / 2.0 m² = 42 g/m² = the women's mean of Petersen 2017 (42 ± 7) → z 0, normal
    mass = parameters["lv_mass_g_m2"]
    assert mass["value"] == pytest.approx(42.0) and mass["z_score"] == pytest.approx(0.0)
    assert mass["flag"] == "normal" and mass["reference"]["source"]["id"] == "petersen-2017-ukbiobank"
    assert "BSA formula is not recorded" in mass["note"]
    assert parameters["lv_mass_g"]["indexed_value"] == pytest.approx(42.0)
    # LVEF 60 % against 61 ± 5 → z (60 − 61) / 5 = −0.2
    assert parameters["lv_ef_pct"]["z_score"] == pytest.approx(-0.2)
    # RVEF 56.25 % against Zhang 2021 women 64.0 ± 5.3 → z = −7.75 / 5.3 = −1.462264; limits 53.612 … 74.388
    assert parameters["rv_ef_pct"]["z_score"] == pytest.approx(-1.462264, rel=1e-6)
    assert parameters["rv_ef_pct"]["flag"] == "normal"
    # RV ESV 70 ml against women 36.8 ± 8.9 → z = 33.2 / 8.9 = 3.730337, high
    assert parameters["rv_esv_ml"]["flag"] == "high"
    assert parameters["rv_esv_ml"]["z_score"] == pytest.approx(3.730337, rel=1e-6)
    # blood-pool LV volumes have no matching source: reported, not compared
    assert parameters["lv_edv_ml"]["flag"] is None and "mismatch" in parameters["lv_edv_ml"]["reason"]
    assert set(report["sources"]) == {"petersen-2017-ukbiobank", "zhang-2021-chinese"}


def test_assess_without_sex_age_or_bsa():
    no_sex = normals.assess(_results(), None, 52, 2.0)
    assert all(p["flag"] is None for p in no_sex["parameters"].values())
    assert "sex not given" in no_sex["parameters"]["rv_ef_pct"]["reason"]
    no_bsa = normals.assess(_results(), "M", 52, None)
    assert no_bsa["parameters"]["lv_mass_g_m2"]["value"] is None
    assert "BSA not given" in no_bsa["parameters"]["lv_mass_g_m2"]["reason"]
    assert no_bsa["parameters"]["lv_ef_pct"]["flag"] == "normal"  # men 58 ± 5: 60 is inside 48.2 … 67.8


def test_assess_single_phase_result_has_no_ejection_values():
    results = _results()
    results["lv"].update(sv_ml=None, ef_pct=None)
    report = normals.assess(results, "F", 52, 2.0)
    assert report["parameters"]["lv_ef_pct"]["reason"] == "no measured value"
    assert report["parameters"]["lv_sv_ml_m2"]["value"] is None
