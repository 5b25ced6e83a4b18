"""Benchmark: one whole short-axis cine study on this machine, split into load, inference and measurement.

Run: ``python Testing/benchmarks/bench_cmr_function.py [DICOM folder or image] [--model ID ...] [--device cpu]
[--repeat N] [--processes M]``. Without an input it uses the Sunnybrook patient SCD0000101 from the shared data.

- ``process``: ``cardiacsuite cmr-function`` started ``M`` times as a fresh process (what a user typing the
  command waits for: interpreter start, imports, model load, the analysis, the files written), wall time from
  start to exit and the process's peak resident memory; median (min-max).
- in this one process, the command ``N + 1`` times: the first run (cold: Python imports VTK, the model's
  runtime and, for a PyTorch model, torch and MONAI, and reads the model) is printed on its own, then the median
  of each stage over the other runs (warm: as for every study after the first in Slicer or in a batch script),
  and the peak resident memory of this process. Run each model in its own process (the default) for a fair peak
  memory figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from CardiacSuiteLib.cli import main as cli_main

DEFAULT_INPUT = Path(__file__).resolve().parents[3] / "shared" / "data" / "sunnybrook" / "dicoms" / "SCD0000101"


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_once(args: argparse.Namespace, model: str | None) -> dict | None:
    import json

    with tempfile.TemporaryDirectory() as out:
        command = ["cmr-function", args.input, "--out", out, "--device", args.device, "--quiet"]
        if model:
            command += ["--model", model]
        started = time.perf_counter()
        if cli_main(command) != 0:
            return None
        results = json.loads(Path(out, "results.json").read_text())
        results["timing_s"]["wall"] = time.perf_counter() - started
        return results


def run_process(args: argparse.Namespace, model: str | None) -> tuple[float, float] | None:
    """Wall seconds and peak resident MB of one fresh ``cardiacsuite cmr-function`` process."""
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryFile("w+") as errors:
        command = [sys.executable, "-m", "CardiacSuiteLib.cli", "cmr-function", args.input, "--out", out,
                   "--device", args.device, "--quiet"]
        if model:
            command += ["--model", model]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own peak memory, not this process's
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            print(f"cmr-function failed: {errors.read()[-2000:]}", file=sys.stderr)
            return None
        return wall, usage.ru_maxrss / 1024.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", default=str(DEFAULT_INPUT))
    parser.add_argument("--model", help="model id (default: the registry's default short-axis cine model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3, help="warm runs after the first (cold) one")
    parser.add_argument("--processes", type=int, default=3, help="fresh cmr-function processes timed from outside")
    args = parser.parse_args()

    processes = [run_process(args, args.model) for _ in range(args.processes)]
    if any(run is None for run in processes):
        return 1

    cold = run_once(args, args.model)
    if cold is None:
        return 1
    warm: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        results = run_once(args, args.model)
        if results is None:
            return 1
        for key, value in results["timing_s"].items():
            warm.setdefault(key, []).append(value)
    cpu = platform.processor() or platform.machine()
    print(
        f"cmr-function benchmark: {args.input}\n  study: {cold['phases']} phases x {cold['slices']} slices"
        f" ({cold['phases'] * cold['slices']} slices segmented); model {cold['model']['id']} {cold['model']['version']}"
        f" on {cold['model']['device']}; {os.cpu_count()} CPU cores ({cpu}); load average {os.getloadavg()[0]:.1f}"
    )
    if processes:
        walls, memories = [run[0] for run in processes], [run[1] for run in processes]
        print(
            f"  process      {statistics.median(walls):7.2f} s   fresh 'cardiacsuite cmr-function' processes: median"
            f" ({min(walls):.2f}-{max(walls):.2f}) of {len(walls)}; peak memory {statistics.median(memories):.0f} MB"
        )
    stages = ("load", "model_load", "inference", "measurement", "scene", "save", "total", "wall")
    print(f"  {'stage':<12} {'cold run':>9}   warm runs: median (min-max) of {args.repeat}")
    for key in stages:
        values = warm.get(key, [float("nan")])
        print(
            f"  {key:<12} {cold['timing_s'].get(key, float('nan')):7.2f} s   {statistics.median(values):7.2f} s"
            f" ({min(values):.2f}-{max(values):.2f})"
        )
    print(f"  peak memory  {peak_memory_mb():7.0f} MB (resident, whole process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
