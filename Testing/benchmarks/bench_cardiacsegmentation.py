"""Benchmark of CardiacSegmentation on a 512 × 512 × 300 CT (CPU): whole heart and per-vessel tracing.

    .venv/bin/python Testing/benchmarks/bench_cardiacsegmentation.py [--threads N]

A phantom of the 'wh' label map on its own 0.49 × 0.49 × 0.625 mm grid (with a coronary tree) is placed in a
512 × 512 × 300 scan. Each measurement runs in a fresh process so that its peak memory (max RSS) is its own:

- automatic whole-heart segmentation (``segment_heart`` in auto mode: chambers, myocardium, great vessels,
  aorta followed), wall-clock seconds;
- coronary preparation (working box, exclusion, vessel likelihood) once per case, then each main vessel
  traced from its ostium through one point at its distal end (minimal path + re-centring), and each whole
  tree grown from its ostium.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "CardiacSuiteLib"), str(REPO / "CardiacSegmentation")]


def make_case(folder: Path) -> dict:
    from CardiacSuiteLib.phantoms.coronary import ct_phantom_with_coronaries, embed_in_field_of_view

    phantom = ct_phantom_with_coronaries("wh", spacing_mm=None, seed=7, deformation_mm=4.0)
    scan = embed_in_field_of_view(phantom, (300, 512, 512))
    np.save(folder / "image.npy", scan.image.astype(np.int16))
    np.save(folder / "matrix.npy", scan.ijk_to_ras)
    vessels = {v.name: {"end": v.points[-1].tolist(), "side": v.side} for v in scan.vessels}
    ostia = {k: v.tolist() for k, v in scan.ostia.items()}
    return {"shape": list(scan.image.shape), "vessels": vessels, "ostia": ostia}


def run_child(job: str, folder: Path, extra: dict) -> dict:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", job, "--folder", str(folder), "--extra", json.dumps(extra)],
        capture_output=True, text=True, env={**os.environ},
    )
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-2000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def child(job: str, folder: Path, extra: dict) -> dict:
    image = np.load(folder / "image.npy").astype(np.float32)
    matrix = np.load(folder / "matrix.npy")
    started = time.perf_counter()
    figures: dict = {}
    if job == "heart":
        from CardiacSegmentationLib.pipeline import segment_heart

        heart = segment_heart(image, matrix, "auto")
        figures["seconds"] = time.perf_counter() - started
        figures["steps_s"] = heart.results["timing_s_steps"]
    else:
        from CardiacSegmentationLib.coronary import CoronaryTracer

        ostia = {k: np.array(v) for k, v in extra["ostia"].items()}
        tracer = CoronaryTracer(image, matrix, ostia)
        figures["preparation_s"] = time.perf_counter() - started
        figures["vessels_s"] = {}
        for name in ("LAD", "LCx", "RCA"):
            vessel = extra["vessels"][name]
            t = time.perf_counter()
            branch = tracer.trace_vessel(vessel["side"], [np.array(vessel["end"])], name)
            figures["vessels_s"][name] = {"seconds": time.perf_counter() - t, "length_mm": branch.length_mm}
        figures["trees_s"] = {}
        for side in ostia:
            t = time.perf_counter()
            tree = tracer.trace_tree(side)
            figures["trees_s"][side] = {"seconds": time.perf_counter() - t, "branches": len(tree.branches)}
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="limit SimpleITK/numpy threads (default: all cores)")
    parser.add_argument("--child")
    parser.add_argument("--folder")
    parser.add_argument("--extra", default="{}")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.folder), json.loads(args.extra))))
        return 0
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-cardiacseg-") as folder:
        started = time.perf_counter()
        case = make_case(Path(folder))
        print(f"case: {case['shape'][2]} x {case['shape'][1]} x {case['shape'][0]} voxels (0.49 x 0.49 x 0.625 mm),"
              f" phantom built in {time.perf_counter() - started:.0f} s; {os.cpu_count()} CPU cores")
        heart = run_child("heart", Path(folder), {})
        print(f"automatic whole heart: {heart['seconds']:.1f} s, peak memory {heart['peak_rss_mb']:.0f} MB")
        print("  steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in heart["steps_s"].items()))
        coronary = run_child("coronary", Path(folder), case)
        print(f"coronary preparation (box, exclusion, likelihood): {coronary['preparation_s']:.1f} s,"
              f" peak memory {coronary['peak_rss_mb']:.0f} MB")
        for name, row in coronary["vessels_s"].items():
            print(f"  {name} traced from its ostium: {row['seconds']:.2f} s ({row['length_mm']:.0f} mm)")
        for side, row in coronary["trees_s"].items():
            print(f"  {side} tree grown from its ostium: {row['seconds']:.1f} s ({row['branches']} branches)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
