"""Planning measurements on the real CT crops of ``../shared/data/ct`` next to their reference, with the
difference. The reference is TotalSegmentator's model output (masks and the diameters of its report), not a
manual measurement, so the differences are an agreement between two automatic methods, not an error.

    python Testing/validation/run_plan_real.py [--data ../shared/data] [--json out.json]

TAVR runs ``cardiacsuite plan tavr ct_cropped.nii.gz --segmentation aorta.nii.gz`` on ``totalseg_aorta``; the
pulmonary protocol runs ``cardiacsuite plan pulmonary ct_cropped.nii.gz --segmentation pulmonary_artery.nii.gz``
on ``totalseg_pulmonary``. The report's "diameter" is the section's largest diameter and "diameter_pd" the one
perpendicular to it (cm); its area is in cm².
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from CardiacSuiteLib.cli import main as cardiacsuite

DEFAULT_DATA = Path(os.environ.get("CARDIACSUITE_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def report_landmark(report: dict, name: str) -> dict:
    for entry in report["landmarks"].values():
        if entry["name"] == name:
            area = 100.0 * entry["area"]
            return {"area_mm2": area, "area_derived_diameter_mm": 2.0 * math.sqrt(area / math.pi),
                    "diameter_max_mm": 10.0 * entry["diameter"], "diameter_perpendicular_mm": 10.0 * entry["diameter_pd"]}
    raise KeyError(name)


def run(protocol: str, folder: Path, mask: str, out: Path) -> dict:
    status = cardiacsuite(["plan", protocol, str(folder / "ct_cropped.nii.gz"), "--segmentation", str(folder / mask),
                           "--out", str(out), "--quiet"])
    if status != 0:
        return {"failed": f"exit {status}"}
    return json.loads((out / "results.json").read_text())


def compare(rows: list, label: str, ours: dict, reference: dict) -> None:
    for key in ("area_mm2", "area_derived_diameter_mm", "diameter_max_mm"):
        if key in ours and ours[key] is not None:
            rows.append((label, key, ours[key], reference[key], ours[key] - reference[key]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows: list = []
    with tempfile.TemporaryDirectory() as scratch:
        aorta = args.data / "ct" / "totalseg_aorta"
        tavr = run("tavr", aorta, "aorta.nii.gz", Path(scratch) / "tavr")
        if "failed" in tavr:
            print("TAVR:", tavr["failed"])
        else:
            report = json.loads((aorta / "aorta_report.json").read_text())
            compare(rows, "TAVR annulus", tavr["annulus"], report_landmark(report, "annulus"))
            compare(rows, "TAVR STJ", tavr["stj"], report_landmark(report, "sinotub. junc."))
            print("TAVR plane:", tavr["annulus"]["definition"])
        pulmonary_folder = args.data / "ct" / "totalseg_pulmonary"
        pulmonary = run("pulmonary", pulmonary_folder, "pulmonary_artery.nii.gz", Path(scratch) / "pulmonary")
        if "failed" in pulmonary:
            print("pulmonary:", pulmonary["failed"])
        else:
            report = json.loads((pulmonary_folder / "pulmonary_report.json").read_text())
            first = next(iter(report["landmarks"].values()))["name"]
            compare(rows, f"PPVI annulus vs '{first}'", pulmonary["annulus"], report_landmark(report, first))
    print(f"{'where':34s}{'figure':28s}{'ours':>10s}{'reference':>11s}{'difference':>12s}")
    for label, key, ours, reference, difference in rows:
        print(f"{label:34s}{key:28s}{ours:10.1f}{reference:11.1f}{difference:+12.1f}")
    if args.json:
        args.json.write_text(json.dumps([dict(zip(("where", "figure", "ours", "reference", "difference"), r))
                                         for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
