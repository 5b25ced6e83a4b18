"""FourDCT propagation benchmark: wall time and peak memory per registration method, and the memory bound.

Run: ``python Testing/benchmarks/bench_fourdct.py [--configs demons:reference,bspline:reference,…]
[--memory-check] [--work DIR]``.

1. Speed: the 10-phase phantom on the label maps' whole 512×512×248 grid (0.49×0.49×0.625 mm, as a clinical
   cardiac CT) is propagated by ``cardiacsuite propagate`` in a child process for each configuration; printed:
   wall time of the command, the propagation alone (from results.json), seconds per phase, and the command's
   peak resident memory. The phantom is rendered once into ``--work`` (shared with the validation script).
2. ``--memory-check``: a 20-phase 512×512×300 study (the 10 rendered phases twice with fresh noise, at 0, 5, …,
   95 %, padded with lung to 300 slices: 3.1 GB of 16-bit voxels) is imported (``import-4d``, .seq.nrrd to
   .seq.nrrd) and propagated; the peak resident memory of each command must stay under 4 GiB.

No GPU method is benchmarked: both methods run on the CPU (SimpleITK).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import fourdct_phantom as fp  # noqa: E402

LIMIT_MIB = 4096.0


def speed(study: fp.Study, configs: list[str], phases: int) -> None:
    print(f"\n{'method':<22}{'strategy':<12}{'grid':>6}{'wall':>9}{'CPU':>9}{'propagation':>13}{'per phase':>11}{'peak memory':>13}")
    print(f"{'':<22}{'':<12}{'(mm)':>6}{'(s)':>9}{'(s)':>9}{'(s)':>13}{'(s)':>11}{'(MiB)':>13}")
    for config in configs:
        parts = config.split(":")
        method, strategy = parts[0], parts[1] if len(parts) > 1 else "reference"
        grid = parts[2] if len(parts) > 2 else "2"
        out = study.folder / f"bench_{method}_{strategy}_{grid}"
        status, seconds, peak, output, cpu = fp.run_measured(fp.cardiacsuite() + [
            "propagate", str(study.ct), "--segmentation", str(study.segmentation), "--reference-phase",
            str(study.reference_phase), "--out", str(out), "--method", method, "--strategy", strategy, "--grid", grid,
            "--quiet"])
        if status != 0:
            print(output)
            print(f"{config}: failed ({status})")
            continue
        results = json.loads((out / "results.json").read_text())
        propagation = results["timing_s"]["propagation"]
        print(f"{method:<22}{strategy:<12}{grid:>6}{seconds:>9.1f}{cpu:>9.1f}{propagation:>13.1f}"
              f"{propagation / (phases - 1):>11.1f}{peak:>13.0f}", flush=True)


def memory_check(study: fp.Study, work: Path) -> int:
    """20 phases × 512×512×300, built from the rendered study; import and propagate under the memory limit."""
    from CardiacSuiteLib.image4d import MemmapPhases, read_seq_nrrd_phases
    from CardiacSuiteLib.imageio import write_seq_nrrd

    big = work / "memory_20x512x512x300"
    big.mkdir(parents=True, exist_ok=True)
    ct = big / "ct20.seq.nrrd"
    source = read_seq_nrrd_phases(study.ct)
    slices = 300
    below = (slices - source.shape[0]) // 2
    matrix = source.ijk_to_ras.copy()
    matrix[:3, 3] -= matrix[:3, 2] * below
    if not ct.exists():
        stack = MemmapPhases(matrix, (slices, *source.shape[1:]), np.int16, big, name="ct20")
        rng = np.random.default_rng(20)
        for copy in range(2):
            for phase in range(source.count):
                volume = rng.normal(-820.0, 25.0, (slices, *source.shape[1:])).astype(np.int16)
                volume[below : below + source.shape[0]] = source.read(phase)
                if copy:  # fresh noise on the heart too
                    volume[below : below + source.shape[0]] += rng.normal(0, 8, source.shape).astype(np.int16)
                stack.append(volume, 5.0 * (2 * phase + copy))
        order = np.argsort(stack.index_values)
        ordered = MemmapPhases(matrix, stack.shape, np.int16, big, name="ct20")
        for index in order:
            ordered.append(stack.read(int(index)), stack.index_values[int(index)])
        stack.close()
        write_seq_nrrd(ordered, ct)
        ordered.close()
    reference = big / "reference.seg.nrrd"
    if not reference.exists():
        from CardiacSuiteLib import mrml
        from CardiacSuiteLib.app import create_app

        app = create_app()
        labels = np.zeros((slices, *source.shape[1:]), np.uint8)
        labels[below : below + source.shape[0]] = study.truth(0)
        specs = [mrml.SegmentSpec(v, fp.NAMES[v], fp.COLORS[v]) for v in fp.NAMES]
        node = mrml.add_segmentation_from_labelmap(app.scene, labels, matrix, specs, "reference")
        mrml.save_node(node, reference)
        app.scene.Clear(True)
    source.close()
    voxels = 20 * slices * 512 * 512
    print(f"\nmemory check: 20 phases × 512×512×{slices} = {voxels / 1e9:.2f} G voxels "
          f"({voxels * 2 / 2**30:.2f} GiB as int16, {voxels * 4 / 2**30:.2f} GiB as float32); limit {LIMIT_MIB:.0f} MiB")
    failures = 0
    for name, command in (
        ("import-4d", ["import-4d", str(ct), "--out", str(big / "copy.seq.nrrd"), "--quiet"]),
        ("propagate", ["propagate", str(ct), "--segmentation", str(reference), "--reference-phase", "0",
                       "--out", str(big / "out"), "--quiet"]),
    ):
        status, seconds, peak, output, cpu = fp.run_measured(fp.cardiacsuite() + command)
        ok = status == 0 and peak < LIMIT_MIB
        failures += 0 if ok else 1
        print(f"  {name:<10} {seconds:7.1f} s wall, {cpu:7.1f} s CPU   peak {peak:7.0f} MiB   {'PASS' if ok else 'FAIL'}"
              + ("" if status == 0 else f" (status {status})\n{output}"))
    (big / "copy.seq.nrrd").unlink(missing_ok=True)
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="demons:reference,demons:sequential,bspline:reference",
                        help="method:strategy[:grid_mm],…")
    parser.add_argument("--memory-check", action="store_true", help="also run the 20×512×512×300 memory check")
    parser.add_argument("--work", default="/tmp/cardiacsuite-fourdct-phantom", help="folder for the rendered studies")
    args = parser.parse_args(argv)

    tag = "mmwhs_tuned_a1_s0_native_10_full"
    folder = Path(args.work) / tag
    phantom = fp.make("mmwhs", None, 10, fp.TUNED, 0, None)
    if (folder / "phantom.json").exists():
        study = fp.Study(folder, phantom, 0)
    else:
        print(f"rendering the 10-phase 512×512×248 phantom into {folder} (once; several minutes)")
        study = fp.write_study(phantom, folder, 0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} (1, 5, 15 min); Python {platform.python_version()}")
    print("study: 10 phases × 512×512×248 voxels of 0.49×0.49×0.625 mm, reference segmentation of 7 structures")
    speed(study, args.configs.split(","), 10)
    failures = memory_check(study, Path(args.work)) if args.memory_check else 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
