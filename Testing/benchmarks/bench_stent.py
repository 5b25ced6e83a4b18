"""StentReconstruction benchmark: time of each algorithm, of the propagation over 10 phases, and peak memory,
on the CPU, through ``cardiacsuite stent`` in a child process.

Run: ``python Testing/benchmarks/bench_stent.py [--work DIR]``.

The phantoms (``Testing/phantoms/stent.py``) are rendered into ``--work``: a 3.0 mm coronary stent (0.45 mm
voxels) and a 26 mm TAVR frame (0.5 mm voxels) as single CTs, and both as 10-phase 4D studies. Printed per
study: the command's wall and CPU time and peak resident memory, the time of finding the metal, of each
algorithm, and for the 4D studies of the phase registration and of moving and checking the devices.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phantoms import stent as phantoms  # noqa: E402
from validation import fourdct_phantom as fp  # noqa: E402


def point_text(point) -> str:
    return ",".join(f"{v:.3f}" for v in point)


def studies(work: Path) -> list[tuple[str, Path, object, list[str]]]:
    found = []
    for name, kind, nominal in (("coronary 3.0 mm", "coronary", ["--nominal-diameter", "3", "--nominal-length", "16"]),
                                ("TAVR 26 mm", "tavr", ["--nominal-diameter", "26", "--nominal-length", "20"])):
        device = ["--device", "coronary" if kind == "coronary" else "tavr", *nominal]
        single = (phantoms.coronary_stent if kind == "coronary" else phantoms.tavr_frame)()
        folder = work / f"{kind}_3d"
        phantoms.write(single, folder)
        found.append((name, folder / "ct.nrrd", single, device))
        moving = phantoms.moving(kind)
        folder = work / f"{kind}_4d"
        phantoms.write_4d(moving, folder)
        reference = moving.phases[moving.reference_phase]
        found.append((f"{name}, 10 phases", folder / "ct.seq.nrrd", reference,
                      device + ["--phase", str(moving.reference_phase)]))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="folder for the rendered phantoms and outputs (default: a temporary one)")
    args = parser.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_stent_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
          f"{' / '.join(f'{v:.1f}' for v in os.getloadavg())}; CPU only")
    print(f"\n{'study':<28}{'wall':>7}{'CPU':>7}{'memory':>9}{'metal':>7}{'A':>7}{'B':>7}{'C':>7}{'register':>10}{'move+check':>12}")
    print(f"{'':<28}{'(s)':>7}{'(s)':>7}{'(MiB)':>9}{'(s)':>7}{'(s)':>7}{'(s)':>7}{'(s)':>7}{'(s)':>10}{'(s)':>12}")
    failed = 0
    for name, path, phantom, options in studies(work):
        out = work / f"out_{path.parent.name}"
        status, seconds, peak, output, cpu = fp.run_measured(fp.cardiacsuite() + [
            "stent", str(path), "--start", point_text(phantom.click_start), "--end", point_text(phantom.click_end),
            "--out", str(out), "--quiet", *options])
        if status != 0:
            print(output)
            print(f"{name}: failed ({status})")
            failed += 1
            continue
        timing = json.loads((out / "results.json").read_text())["timing_s"]
        algorithms = timing["algorithms"]
        registration = timing.get("registration")
        moving = None if registration is None else timing["propagation"] - registration
        cells = [f"{algorithms.get(i, float('nan')):>7.2f}" for i in "ABC"]
        print(f"{name:<28}{seconds:>7.1f}{cpu:>7.1f}{peak:>9.0f}{timing['region']:>7.2f}{''.join(cells)}"
              f"{'-' if registration is None else f'{registration:.1f}':>10}{'-' if moving is None else f'{moving:.1f}':>12}",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
