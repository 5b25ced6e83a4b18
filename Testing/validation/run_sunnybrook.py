"""Validate the CMR function analysis against the Sunnybrook manual contours, per patient.

Run: ``python Testing/validation/run_sunnybrook.py [--model ID] [--data DIR]``. Prints, per patient, the
automatic and manual LV EDV, ESV and EF, the differences, and the LV Dice at ED and ES on the manually
contoured slices.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from CardiacSuiteLib.imageio import read_image_input
from CardiacSuiteLib.inference.registry import ModelRegistry
from CardiacSuiteLib.inference.segment2d import SliceSegmenter
from CMRAnalysisLib.function import TASK, FunctionOptions, analyse_cine
from CMRAnalysisLib.sunnybrook import dice, manual_reference, patients

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "sunnybrook"


def validate(root: Path, model_id: str | None = None, device: str = "cpu", phases: str = "all") -> list[dict]:
    segmenter = SliceSegmenter.from_registry(ModelRegistry.default(), model_id, TASK, device)
    lv = segmenter.entry.label_value("Left ventricle")
    rows = []
    for patient, dicom_folder, contour_folder in patients(root):
        started = time.perf_counter()
        series = read_image_input(dicom_folder)
        reference = manual_reference(patient, dicom_folder, contour_folder, series)
        auto, measured = analyse_cine(
            series.frames, series.ijk_to_ras, segmenter, series.frame_times_ms, FunctionOptions(phases=phases)
        )
        dices = {}
        for role, manual_phase in (("ed", reference.ed_phase), ("es", reference.es_phase)):
            # Dice on the reader's own phase and slices (the automatic labels of that phase when segmented).
            auto_phase = manual_phase if manual_phase in measured.labels else auto[f"{role}_phase"]
            slices = reference.contoured_slices[manual_phase]
            auto_mask = measured.labels[auto_phase][slices] == lv
            dices[role] = dice(auto_mask, reference.masks[manual_phase][slices])
        rows.append(
            {
                "patient": patient,
                "auto_edv_ml": auto["lv"]["edv_ml"],
                "manual_edv_ml": reference.edv_ml,
                "auto_esv_ml": auto["lv"]["esv_ml"],
                "manual_esv_ml": reference.esv_ml,
                "auto_ef_pct": auto["lv"]["ef_pct"],
                "manual_ef_pct": reference.ef_pct,
                "edv_error_pct": 100.0 * (auto["lv"]["edv_ml"] - reference.edv_ml) / reference.edv_ml,
                "ef_error_points": auto["lv"]["ef_pct"] - reference.ef_pct,
                "auto_phases": (auto["ed_phase"], auto["es_phase"]),
                "manual_phases": (reference.ed_phase, reference.es_phase),
                "dice_ed": dices["ed"],
                "dice_es": dices["es"],
                "seconds": time.perf_counter() - started,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("CARDIACSUITE_DATA", DEFAULT_DATA.parent)) / "sunnybrook")
    parser.add_argument("--model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--phases", choices=("all", "ed-es"), default="all")
    args = parser.parse_args()
    rows = validate(args.data, args.model, args.device, args.phases)
    print("patient     | EDV auto/manual ml | ESV auto/manual ml | EF auto/manual % | EDV err % | EF err pts | LV Dice ED/ES | phases auto (manual) | s")
    for r in rows:
        print(
            f"{r['patient']} | {r['auto_edv_ml']:7.1f} / {r['manual_edv_ml']:7.1f} | {r['auto_esv_ml']:7.1f} / {r['manual_esv_ml']:7.1f}"
            f" | {r['auto_ef_pct']:5.1f} / {r['manual_ef_pct']:5.1f} | {r['edv_error_pct']:+6.1f} | {r['ef_error_points']:+5.1f}"
            f" | {r['dice_ed']:.3f} / {r['dice_es']:.3f} | {r['auto_phases']} ({r['manual_phases']}) | {r['seconds']:.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
