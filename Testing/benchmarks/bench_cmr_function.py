"""Benchmark: one whole short-axis cine study on this machine, split into load, inference and measurement.

Run: ``python Testing/benchmarks/bench_cmr_function.py [DICOM folder or image] [--model ID] [--device cpu]
[--repeat N]``. Without an input it uses the Sunnybrook patient SCD0000101 from the shared data. Prints the
median of each stage over the repeats and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from CardiacSuiteLib.cli import main as cli_main

DEFAULT_INPUT = Path(__file__).resolve().parents[3] / "shared" / "data" / "sunnybrook" / "dicoms" / "SCD0000101"


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", default=str(DEFAULT_INPUT))
    parser.add_argument("--model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import json

    timings: dict[str, list[float]] = {}
    study = None
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as out:
            command = ["cmr-function", args.input, "--out", out, "--device", args.device, "--quiet"]
            if args.model:
                command += ["--model", args.model]
            started = time.perf_counter()
            if cli_main(command) != 0:
                return 1
            wall = time.perf_counter() - started
            results = json.loads(Path(out, "results.json").read_text())
            study = results
            for key, value in results["timing_s"].items():
                timings.setdefault(key, []).append(value)
            timings.setdefault("wall", []).append(wall)
    cpu = platform.processor() or platform.machine()
    print(
        f"cmr-function benchmark: {args.input}\n  study: {study['phases']} phases x {study['slices']} slices;"
        f" model {study['model']['id']} {study['model']['version']} on {study['model']['device']};"
        f" {os.cpu_count()} CPU cores ({cpu}); median of {args.repeat} runs"
    )
    for key in ("load", "inference", "measurement", "save", "total", "wall"):
        values = timings[key]
        print(f"  {key:<12} {statistics.median(values):8.2f} s   (min {min(values):.2f}, max {max(values):.2f})")
    print(f"  peak memory  {peak_memory_mb():8.0f} MB (resident, whole process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
