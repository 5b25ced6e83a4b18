"""Validation of CardiacSegmentation on full-resolution CT phantoms and on the real CT crops.

    .venv/bin/python Testing/validation/run_cardiacseg.py [--quick] [--json results.json]

1. Chambers (weight-free automatic mode): a phantom of each whole-heart label map on its own
   0.49 × 0.49 × 0.625 mm grid, smoothly deformed (up to 5 mm), with the *other* label map as the atlas.
   Dice, mean surface distance and HD95 per structure.
2. Coronary arteries: the same phantoms carry a coronary tree with known centerlines and radii; the tree is
   traced from the two ostia only. Rotterdam overlap (OV), share of the reference detected, and the mean
   distance of the correct traced points (AI, mm), per vessel and per tree.
3. Real CT crops (../shared/data/ct, 1.5 mm): aorta against the provided model-output masks (the whole aorta
   and its true lumen), pulmonary artery against its mask.

``--quick`` uses 1.0 mm phantoms (minutes instead of a quarter of an hour). Figures from phantoms are phantom
figures: exact ground truth, idealised anatomy and image formation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "CardiacSuiteLib"), str(REPO / "CardiacSegmentation")]

NAMES = {1: "LV myocardium", 2: "LA", 3: "LV", 4: "RA", 5: "RV", 6: "Aorta", 7: "PA"}
OTHER = {"wh": "mmwhs", "mmwhs": "wh"}


def data_root() -> Path:
    return Path(os.environ.get("CARDIACSUITE_DATA", REPO.parent / "shared" / "data"))


def chambers_and_coronaries(quick: bool) -> dict:
    from CardiacSegmentationLib.atlas import load_atlas
    from CardiacSegmentationLib.chambers import segment_chambers
    from CardiacSegmentationLib.coronary import trace_coronaries
    from CardiacSegmentationLib.metrics import dice, hausdorff95, mean_surface_distance, tree_overlap
    from CardiacSuiteLib.phantoms.coronary import ct_phantom_with_coronaries

    report = {}
    for heart, seed in (("wh", 101), ("mmwhs", 102)):
        started = time.perf_counter()
        phantom = ct_phantom_with_coronaries(
            heart, spacing_mm=1.0 if quick else None, seed=seed, deformation_mm=5.0, data_root=data_root()
        )
        built = time.perf_counter() - started
        grid = phantom.grid
        truth = np.where(phantom.labels == 8, 0, phantom.labels)
        atlas = load_atlas(data_root() / "ct" / "wholeheart_labels" / f"{OTHER[heart]}.nii.gz")
        result = segment_chambers(phantom.image, phantom.ijk_to_ras, atlas)
        rows = {}
        for value, name in NAMES.items():
            a, b = result.labels == value, truth == value
            rows[name] = {
                "dice": round(dice(a, b), 3),
                "msd_mm": round(mean_surface_distance(a, b, grid.spacing_kji), 2),
                "hd95_mm": round(hausdorff95(a, b, grid.spacing_kji), 2),
            }
        coronary = trace_coronaries(phantom.image, phantom.ijk_to_ras, phantom.ostia)
        vessels = {}
        for side, tree in coronary.trees.items():
            reference = {v.name: (v.points, v.radii) for v in phantom.vessels if v.side == side}
            scores = tree_overlap(reference, [b.points for b in tree.branches])
            vessels[side] = {k: {m: round(x, 3) for m, x in v.items()} for k, v in scores.items()}
            vessels[side]["traced_branches"] = [(b.name, round(b.length_mm, 1)) for b in tree.branches]
        report[heart] = {
            "atlas": OTHER[heart],
            "grid_mm": [round(float(v), 3) for v in grid.spacing_kji[::-1]],
            "shape_ijk": list(phantom.image.shape[::-1]),
            "phantom_build_s": round(built, 1),
            "chambers_s": round(result.timings_s["total"], 1),
            "coronary_s": round(coronary.timings_s["total"], 1),
            "structures": rows,
            "coronary": vessels,
        }
        print_heart(heart, report[heart])
    return report


def print_heart(heart: str, figures: dict) -> None:
    grid = " x ".join(f"{v:.3f}" for v in figures["grid_mm"])
    print(f"\n== phantom of '{heart}' (atlas '{figures['atlas']}'), grid {grid} mm, {figures['shape_ijk']} voxels")
    print(f"   chambers {figures['chambers_s']:.1f} s, coronary trees {figures['coronary_s']:.1f} s")
    print(f"   {'structure':<15}{'Dice':>8}{'MSD (mm)':>10}{'HD95 (mm)':>11}")
    for name, row in figures["structures"].items():
        print(f"   {name:<15}{row['dice']:>8.3f}{row['msd_mm']:>10.2f}{row['hd95_mm']:>11.2f}")
    print(f"   {'vessel':<10}{'OV':>7}{'detected':>10}{'AI (mm)':>9}{'length (mm)':>13}")
    for side, scores in figures["coronary"].items():
        for name, row in scores.items():
            if name in ("traced_branches",):
                continue
            length = f"{row['length_mm']:.0f}" if "length_mm" in row else ""
            detected = f"{row['detected']:.3f}" if "detected" in row else ""
            print(f"   {name if name != 'tree' else side + ' tree':<10}{row['OV']:>7.3f}{detected:>10}{row['AI_mm']:>9.2f}{length:>13}")


def real_crops() -> dict:
    import nibabel

    from CardiacSegmentationLib.atlas import load_atlas
    from CardiacSegmentationLib.chambers import segment_chambers
    from CardiacSegmentationLib.metrics import dice

    def read(path):
        image = nibabel.load(str(path))
        return np.asarray(image.dataobj).transpose(2, 1, 0), image.affine

    atlas = load_atlas(data_root() / "ct" / "wholeheart_labels" / "mmwhs.nii.gz")
    report = {}
    folder = data_root() / "ct" / "totalseg_aorta"
    ct, affine = read(folder / "ct_cropped.nii.gz")
    result = segment_chambers(ct.astype(np.float32), affine, atlas)
    aorta = result.labels == 6
    report["totalseg_aorta"] = {
        "aorta_dice_vs_aorta_mask": round(dice(aorta, read(folder / "aorta.nii.gz")[0] > 0), 3),
        "aorta_dice_vs_true_lumen_mask": round(dice(aorta, read(folder / "aorta_true_lumen.nii.gz")[0] > 0), 3),
        "aorta_centerline_mm": round(result.aorta.length_mm, 1) if result.aorta is not None else None,
        "seconds": round(result.timings_s["total"], 1),
    }
    folder = data_root() / "ct" / "totalseg_pulmonary"
    ct, affine = read(folder / "ct_cropped.nii.gz")
    result = segment_chambers(ct.astype(np.float32), affine, atlas)
    report["totalseg_pulmonary"] = {
        "pa_dice_vs_pulmonary_artery_mask": round(dice(result.labels == 7, read(folder / "pulmonary_artery.nii.gz")[0] > 0), 3),
        "seconds": round(result.timings_s["total"], 1),
    }
    print("\n== real CT crops (1.5 mm; masks are TotalSegmentator output, not manual)")
    for case, figures in report.items():
        print(f"   {case}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1.0 mm phantoms instead of the label maps' own grid")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args()
    if not (data_root() / "ct" / "wholeheart_labels" / "wh.nii.gz").is_file():
        print(f"whole-heart label maps not found under {data_root()} (set CARDIACSUITE_DATA)", file=sys.stderr)
        return 2
    report = {"phantoms": chambers_and_coronaries(args.quick), "real": real_crops()}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
