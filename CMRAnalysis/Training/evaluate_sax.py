"""Evaluate the registered short-axis cine models on ACDC validation patients and Sunnybrook (not shipped).

For each model id (both by default) it prints a per-case table on the 20 ``acdc/`` patients (never used to
train ``sax-fast-unet``; ``myopari-acdc-tiramisu`` was trained on all of ACDC, so its figures there are
optimistic): ED and ES Dice for LV cavity, myocardium and RV, and the LV EF from the ED/ES label maps (pixel
counts: ACDC has no spacing, EF is a ratio) against the expert labels' EF. Then, on Sunnybrook (GE, the external
test), the time to segment every slice of every phase of a study, and the LV EF/EDV of ``analyse_cine`` against
the manual contours. Example::

    nice -n 5 .venv/bin/python CMRAnalysis/Training/evaluate_sax.py --json /tmp/sax-eval.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sax_data  # noqa: E402
MODELS = ["sax-fast-unet", "myopari-acdc-tiramisu"]
SUNNYBROOK = ["SCD0000101", "SCD0000201", "SCD0000301"]


def load_segmenter(model_id: str, cache: Path):
    from CardiacSuiteLib.inference.registry import ModelRegistry
    from CardiacSuiteLib.inference.segment2d import SliceSegmenter

    return SliceSegmenter.from_registry(ModelRegistry.default(cache_dir=cache), model_id, sax_data.TASK, device="cpu")


def evaluate_acdc(segmenter, volumes: list[sax_data.Volume]) -> tuple[list[dict], float]:
    """Per-patient Dice (ED, ES) and EF; returns the rows and the seconds per slice of prepare + segment."""
    from CardiacSuiteLib.inference.segment2d import keep_largest_components

    predicted, seconds, slices = {}, 0.0, 0
    for volume in volumes:
        started = time.perf_counter()
        labels = segmenter.segment(volume.image, segmenter.prepare(volume.image))
        seconds += time.perf_counter() - started
        slices += len(volume.image)
        predicted[volume.name] = keep_largest_components(labels, list(sax_data.HEART_LABELS))
    by_name = {v.name: v for v in volumes}
    rows = []
    for patient in sorted({v.patient for v in volumes}):
        row: dict = {"patient": patient}
        for phase in ("ED", "ES"):
            volume = by_name[f"{patient}_{phase}"]
            for structure, value in sax_data.structure_dice(predicted[volume.name], volume.label).items():
                row[f"{phase}_{structure}"] = value
            extra, missed = sax_data.lv_slice_disagreement(predicted[volume.name], volume.label)
            row[f"{phase}_extra_slices"], row[f"{phase}_missed_slices"] = extra, missed
        row["EF_ref"] = sax_data.ejection_fraction(by_name[f"{patient}_ED"].label, by_name[f"{patient}_ES"].label)
        row["EF"] = sax_data.ejection_fraction(predicted[f"{patient}_ED"], predicted[f"{patient}_ES"])
        row["EF_err"] = row["EF"] - row["EF_ref"]
        rows.append(row)
    return rows, seconds / slices


def print_acdc(model_id: str, rows: list[dict]) -> dict:
    keys = [f"{p}_{s}" for p in ("ED", "ES") for s in ("LV", "Myo", "RV")]
    print(f"\n== {model_id}: ACDC validation patients (n = {len(rows)})")
    print("patient      " + " ".join(f"{k:>7}" for k in keys) + "  EF_ref     EF  EF_err")
    for row in rows:
        print(f"{row['patient']:<12} " + " ".join(f"{row[k]:7.3f}" for k in keys) + f"  {row['EF_ref']:6.1f} {row['EF']:6.1f} {row['EF_err']:+7.1f}")
    summary = {}
    for key in keys:
        values = np.array([row[key] for row in rows])
        summary[key] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)), "min": float(values.min()),
                        "worst": rows[int(values.argmin())]["patient"]}
    errors = np.abs([row["EF_err"] for row in rows])
    summary["EF_abs_err"] = {"mean": float(errors.mean()), "sd": float(errors.std(ddof=1)), "max": float(errors.max()),
                             "worst": rows[int(errors.argmax())]["patient"]}
    print("mean ± sd    " + " ".join(f"{summary[k]['mean']:7.3f}" for k in keys) + f"  |EF err| {summary['EF_abs_err']['mean']:.2f}")
    print("sd           " + " ".join(f"{summary[k]['sd']:7.3f}" for k in keys) + f"  sd {summary['EF_abs_err']['sd']:.2f}")
    print("worst        " + " ".join(f"{summary[k]['min']:7.3f}" for k in keys) + f"  max {summary['EF_abs_err']['max']:.1f} ({summary['EF_abs_err']['worst']})")
    # The basal/apical slice decision: slices where the model finds LV cavity and the expert none, and back.
    for phase in ("ED", "ES"):
        extra = [row[f"{phase}_extra_slices"] for row in rows]
        missed = [row[f"{phase}_missed_slices"] for row in rows]
        summary[f"{phase}_slice_disagreement"] = {"extra": int(sum(extra)), "missed": int(sum(missed)),
                                                   "patients": int(sum(1 for e, m in zip(extra, missed) if e or m))}
        print(f"{phase} LV slices: {sum(extra)} counted that the expert left out, {sum(missed)} left out that the expert"
              f" counted, in {summary[f'{phase}_slice_disagreement']['patients']} of {len(rows)} patients")
    return summary


def evaluate_sunnybrook(segmenter, patient: str, full_study: bool, repeats: int = 3) -> dict:
    """Whole-study segmentation time (every slice, every phase) and analyse_cine's LV EF/EDV against manual contours."""
    from CardiacSuiteLib.imageio import read_image_input
    from CMRAnalysisLib.function import analyse_cine
    from CMRAnalysisLib.sunnybrook import manual_reference, patients

    root = sax_data.data_root() / "sunnybrook"
    dicoms, contours = {pid: (d, c) for pid, d, c in patients(root)}[patient]
    series = read_image_input(dicoms)
    frames = series.frames.astype(np.float32)
    result: dict = {"patient": patient, "phases": int(frames.shape[0]), "slices": int(frames.shape[1])}
    for _ in range(repeats if full_study else 0):  # the best of a few runs: the CPU is shared
        started, cpu = time.perf_counter(), time.process_time()
        preparation = segmenter.prepare(frames)
        labels = segmenter.segment(frames.reshape(-1, *frames.shape[2:]), preparation)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        if seconds < result.get("study_seconds", np.inf):
            result.update(study_seconds=seconds, study_cpu_seconds=cpu, study_slices=int(labels.shape[0]))
        result["load_average"] = os.getloadavg()[0]
    reference = manual_reference(patient, dicoms, contours, series)
    started = time.perf_counter()
    measured, _ = analyse_cine(frames, series.ijk_to_ras, segmenter, series.frame_times_ms)
    result["analyse_cine_seconds"] = time.perf_counter() - started
    lv = measured["lv"]
    result.update(edv=lv["edv_ml"], esv=lv["esv_ml"], ef=lv["ef_pct"], edv_ref=reference.edv_ml, esv_ref=reference.esv_ml, ef_ref=reference.ef_pct)
    result["ef_err"] = result["ef"] - result["ef_ref"]
    result["edv_err_pct"] = 100.0 * (result["edv"] - result["edv_ref"]) / result["edv_ref"]
    # Dice of the LV cavity against the filled manual i-contours on the contoured slices of the manual ED/ES phases.
    dices = []
    for phase in (reference.ed_phase, reference.es_phase):
        ks = reference.contoured_slices[phase]
        auto = segmenter.segment(frames[phase], segmenter.prepare(frames))[ks] == segmenter.entry.label_value("Left ventricle")
        dices.append(sax_data.dice(auto, reference.masks[phase][ks]))
    result["lv_dice_ed"], result["lv_dice_es"] = dices
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sunnybrook", nargs="*", default=SUNNYBROOK)
    parser.add_argument("--full-study", nargs="*", default=["SCD0000101"], help="Sunnybrook patients timed on every slice of every phase")
    parser.add_argument("--repeats", type=int, default=3, help="whole-study timings per model (the best is kept)")
    parser.add_argument("--skip-acdc", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ["CARDIACSUITE_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    report: dict = {"threads": args.threads, "load_average_at_start": os.getloadavg(), "models": {}}
    validation = [] if args.skip_acdc else sax_data.read_acdc(sax_data.data_root() / "acdc")
    with tempfile.TemporaryDirectory() as cache:
        for model_id in args.models:
            segmenter = load_segmenter(model_id, Path(cache))
            entry: dict = {"version": segmenter.entry.version}
            if validation:
                rows, per_slice = evaluate_acdc(segmenter, validation)
                entry.update(acdc_rows=rows, acdc_summary=print_acdc(model_id, rows), acdc_seconds_per_slice=per_slice)
                print(f"prepare + segment: {1000 * per_slice:.1f} ms per slice (ACDC volumes)")
            entry["sunnybrook"] = []
            for patient in args.sunnybrook:
                result = evaluate_sunnybrook(segmenter, patient, patient in args.full_study, args.repeats)
                entry["sunnybrook"].append(result)
                study = (
                    f"whole study {result['study_slices']} slices in {result['study_seconds']:.1f} s"
                    f" ({1000 * result['study_seconds'] / result['study_slices']:.0f} ms per slice, CPU"
                    f" {result['study_cpu_seconds']:.1f} s, load {result['load_average']:.1f}); "
                    if "study_seconds" in result
                    else ""
                )
                print(
                    f"{model_id} {patient}: {study}analyse_cine {result['analyse_cine_seconds']:.1f} s; EDV {result['edv']:.1f} vs"
                    f" {result['edv_ref']:.1f} ml ({result['edv_err_pct']:+.1f} %), EF {result['ef']:.1f} vs {result['ef_ref']:.1f}"
                    f" ({result['ef_err']:+.1f}); LV Dice ED {result['lv_dice_ed']:.3f} ES {result['lv_dice_es']:.3f}",
                    flush=True,
                )
            report["models"][model_id] = entry
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
