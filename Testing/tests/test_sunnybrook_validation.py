"""Real-data validation: ``cardiacsuite cmr-function`` on each Sunnybrook patient against the manual contours.

The acceptance bar is LV EF within 5 percentage points and EDV within 10 % of the manual disc summation.
Sunnybrook (GE 1.5 T) is in neither model's ACDC training data, so this is a fair external test. The published
model is slow on a CPU, so it contours end-diastole and end-systole only; the fast model contours every phase.
"""

from __future__ import annotations

import json

import pytest

from CardiacSuiteLib.cli import main
from CardiacSuiteLib.imageio import read_image_input
from CMRAnalysisLib.sunnybrook import manual_reference, patients

PATIENTS = ["SCD0000101", "SCD0000201", "SCD0000301"]
MODELS = [("myopari-acdc-tiramisu", "ed-es"), ("sax-fast-unet", "all")]


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("model,phases", MODELS)
@pytest.mark.parametrize("patient", PATIENTS)
def test_lv_function_agrees_with_manual_contours(patient, model, phases, shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CARDIACSUITE_HOME", str(tmp_path / "home"))
    root = shared_data / "sunnybrook"
    entry = {pid: (dicoms, contours) for pid, dicoms, contours in patients(root)}[patient]
    reference = manual_reference(patient, *entry, read_image_input(entry[0]))

    out = tmp_path / "out"
    assert main(["cmr-function", str(entry[0]), "--out", str(out), "--device", "cpu", "--quiet", "--phases", phases,
                 "--model", model]) == 0
    results = json.loads((out / "results.json").read_text())
    edv, ef = results["lv"]["edv_ml"], results["lv"]["ef_pct"]
    report = (
        f"{patient} ({model}): EDV {edv:.1f} vs {reference.edv_ml:.1f} ml manual, ESV {results['lv']['esv_ml']:.1f} vs"
        f" {reference.esv_ml:.1f} ml, EF {ef:.1f} vs {reference.ef_pct:.1f} %"
    )
    print(report)
    assert abs(ef - reference.ef_pct) <= 5.0, report
    assert abs(edv - reference.edv_ml) <= 0.10 * reference.edv_ml, report
