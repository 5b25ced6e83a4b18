"""``ct-reformat`` on the 4D CT phantoms: LV ejection fraction against the truth, axis angle, time; and the
figures of Docs/CTReformat.md.

For each whole-heart label map (``mmwhs``, ``wh``; the other one is the atlas) a 10-phase 4D CT phantom at 2 mm
(``phantoms.ct4d.make_phantom``) is reformatted with the automatic segmentation of the end-diastolic phase and
each ``--phases-method``. The truth is the phantom's own label map at every phase (LV cavity voxel count);
the axis is scored against the phantom's LV axis (``ct4d.lv_frame``: principal axis of cavity + myocardium).

    python Testing/validation/run_ct_reformat.py [--hearts mmwhs,wh] [--methods propagate,segment] [--images DIR]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def truth_ef(volumes: list[float]) -> float:
    return 100.0 * (max(volumes) - min(volumes)) / max(volumes)


def render_figure(result, path: Path, phase_ed: int, phase_es: int) -> None:
    """Short-axis slices (end diastole) over the 2-, 3- and 4-chamber planes at end diastole and end systole,
    with the LV cavity outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from CardiacSegmentationLib.reformat import LEFT_VENTRICLE, LV_MYOCARDIUM

    sax, labels = result.short_axis_images[phase_ed], result.short_axis_labels[phase_ed]
    shown = [k for k in range(sax.shape[0]) if (labels[k] == LEFT_VENTRICLE).any()]
    picks = [shown[int(round(i))] for i in np.linspace(0, len(shown) - 1, 4)]
    figure, axes = plt.subplots(2, 5, figsize=(10, 4.4), dpi=70)
    window = dict(cmap="gray", vmin=-200, vmax=600, interpolation="nearest")
    for column, k in enumerate(picks):
        axis = axes[0, column]
        axis.imshow(sax[k], **window)
        axis.contour(labels[k] == LEFT_VENTRICLE, levels=[0.5], colors="tab:red", linewidths=0.8)
        axis.contour(labels[k] == LV_MYOCARDIUM, levels=[0.5], colors="tab:orange", linewidths=0.6)
        axis.set_title(f"SAX {k + 1} (ED)", fontsize=8)
    for column, (plane, phase, tag) in enumerate(
        [("2CH", phase_ed, "ED"), ("3CH", phase_ed, "ED"), ("4CH", phase_ed, "ED"), ("4CH", phase_es, "ES")]
    ):
        axis = axes[1, column]
        image, label = result.long_axis_images[plane][phase, 0], result.long_axis_labels[plane][phase, 0]
        axis.imshow(image, **window)
        axis.contour(label == LEFT_VENTRICLE, levels=[0.5], colors="tab:red", linewidths=0.8)
        axis.set_title(f"{plane} ({tag})", fontsize=8)
    axes[0, 4].set_visible(False)
    axes[1, 4].plot([p["lv_volume_ml"]["short_axis_summation"] for p in result.results["phases"]], "o-",
                    label="short axis")
    axes[1, 4].plot([p["lv_volume_ml"]["voxel_count"] for p in result.results["phases"]], "s--", label="voxels")
    axes[1, 4].set_title("LV volume (ml) per phase", fontsize=8)
    axes[1, 4].legend(fontsize=6)
    axes[1, 4].tick_params(labelsize=6)
    for axis in axes[:, :4].ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    plt.close(figure)


def main() -> None:
    from CardiacSuiteLib.geometry import voxel_ml
    from CardiacSuiteLib.image4d import ArrayPhases
    from CardiacSuiteLib.phantoms.ct4d import make_phantom
    from CardiacSegmentationLib.reformat import angle_deg
    from CardiacSegmentationLib.reformat_workflow import ReformatSettings, run_ct_reformat

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hearts", default="mmwhs,wh")
    parser.add_argument("--methods", default="propagate,segment")
    parser.add_argument("--images", help="write the reformat figure of each heart here (PNG)")
    args = parser.parse_args()
    data = Path(os.environ.get("CARDIACSUITE_DATA", REPO.parent / "shared" / "data")) / "ct" / "wholeheart_labels"
    print(f"load average at the start: {' / '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("| heart | phases method | true EF (%) | SAX summation EF (%) | voxel count EF (%) | SAX centre planes EF (%) |"
          " FourDCT EF (%) | true EDV / ESV (ml) | SAX EDV / ESV (ml) | axis angle (deg) | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for heart in args.hearts.split(","):
        other = "wh" if heart == "mmwhs" else "mmwhs"
        phantom = make_phantom(data / f"{heart}.nii.gz", spacing_mm=2.0, phases=10, seed=0)
        phases = [phantom.phase(n) for n in range(10)]
        truth = [float((p.labels == 3).sum()) * voxel_ml(phantom.ijk_to_ras) for p in phases]
        stack = ArrayPhases(np.stack([p.image for p in phases]), phantom.ijk_to_ras, phantom.percents, name=heart)
        for method in args.methods.split(","):
            started = time.perf_counter()
            _, result = run_ct_reformat(stack, ReformatSettings(phases_method=method, atlas_path=str(data / f"{other}.nii.gz")))
            seconds = time.perf_counter() - started
            f = result.results["lv_function"]
            sax, voxels, centre = f["short_axis_summation"], f["voxel_count"], f["short_axis_centre_planes"]
            fourdct = result.results["fourdct_comparison"]["fourdct"]["ef_pct"]
            angle = angle_deg(result.axis.direction, -phantom.frame.axis)
            print(f"| {heart} | {method} | {truth_ef(truth):.1f} | {sax['ef_pct']:.1f} | {voxels['ef_pct']:.1f} |"
                  f" {centre['ef_pct']:.1f} | {fourdct:.1f} | {max(truth):.1f} / {min(truth):.1f} | {sax['edv_ml']:.1f} / {sax['esv_ml']:.1f} |"
                  f" {angle:.1f} | {seconds:.0f} |", flush=True)
            if args.images and method == "propagate":
                render_figure(result, Path(args.images) / f"ct_reformat_{heart}.png", sax["ed_phase"], sax["es_phase"])


if __name__ == "__main__":
    main()
