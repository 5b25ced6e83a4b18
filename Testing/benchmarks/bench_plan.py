"""InterventionPlanning benchmark: the time and peak memory of each protocol of ``cardiacsuite plan`` on a
512×512×300 CT, on the CPU, in a child process (load, measure, pictures, scene, save).

Run: ``python Testing/benchmarks/bench_plan.py [--work DIR] [--protocols tavr,mitral,pulmonary,pci]``.

Each protocol's digital phantom (``Testing/phantoms``: aortic root, mitral, RVOT, coronary stenosis) is pasted
into the middle of a 512×512×300 CT of its own voxel size (soft tissue with noise round it), written as NRRD,
and measured through the command line with the inputs a user gives (TAVR and the pulmonary valve from the CT
alone or the landmarks the protocol needs, PCI with the vessel centreline). Printed per protocol: the command's
wall and CPU time, peak resident memory, and the protocol's own measuring time from ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import fourdct_phantom as fp  # noqa: E402

SHAPE = (300, 512, 512)  # k, j, i


def embed(image: np.ndarray, ijk_to_ras: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``image`` in the middle of a SHAPE grid of the same voxels, with soft tissue (40 HU, 20 HU noise) round it."""
    rng = np.random.default_rng(seed)
    big = rng.normal(40.0, 20.0, SHAPE).astype(np.float32)
    offset = [(n - m) // 2 for n, m in zip(SHAPE, image.shape)]
    if any(o < 0 for o in offset):
        raise ValueError("the phantom is larger than the benchmark grid")
    big[tuple(slice(o, o + m) for o, m in zip(offset, image.shape))] = image
    matrix = np.array(ijk_to_ras, float, copy=True)
    matrix[:3, 3] = ijk_to_ras[:3, 3] - ijk_to_ras[:3, :3] @ np.array(offset[::-1], float)
    return big, matrix


def write_ct(image: np.ndarray, ijk_to_ras: np.ndarray, path: Path) -> Path:
    from CardiacSuiteLib.imagedata import ImageSeries
    from CardiacSuiteLib.imageio import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(ImageSeries(frames=image[None], ijk_to_ras=ijk_to_ras, modality="CT", name=path.stem), path)


def tavr_study(work: Path) -> tuple[Path, list[str]]:
    from phantoms import aortic_root

    phantom = aortic_root.aortic_root(seed=11)
    big, matrix = embed(phantom.image, phantom.ijk_to_ras)
    return write_ct(big, matrix, work / "tavr" / "ct.nrrd"), []


def mitral_study(work: Path) -> tuple[Path, list[str]]:
    """The mitral phantom with the six annulus landmarks, the aortic annulus centre and the puncture point given,
    as a user places them."""
    from phantoms import mitral

    from InterventionPlanningLib import landmarks

    phantom = mitral.mitral(seed=3)
    big, matrix = embed(phantom.image, phantom.ijk_to_ras)
    folder = work / "mitral"
    ct = write_ct(big, matrix, folder / "ct.nrrd")
    given = {**phantom.landmarks, "aortic_annulus_center": phantom.aortic_annulus_center,
             "transseptal_puncture": phantom.transseptal_puncture}
    landmarks.write_points(folder / "landmarks.mrk.json", "mitral landmarks", given, {})
    return ct, ["--landmarks", str(folder / "landmarks.mrk.json")]


def pulmonary_study(work: Path) -> tuple[Path, list[str]]:
    """The RVOT phantom with the user's clicks (RVOT start and bifurcation)."""
    from phantoms import rvot

    from InterventionPlanningLib import landmarks

    phantom = rvot.rvot_phantom(seed=3)
    big, matrix = embed(phantom.image, phantom.ijk_to_ras)
    folder = work / "pulmonary"
    ct = write_ct(big, matrix, folder / "ct.nrrd")
    clicks = {name: phantom.clicks[name] for name in ("rvot_start", "pa_bifurcation")}
    landmarks.write_points(folder / "landmarks.mrk.json", "clicks", clicks, {})
    return ct, ["--landmarks", str(folder / "landmarks.mrk.json")]


def pci_study(work: Path) -> tuple[Path, list[str]]:
    """The 60 % stenosis phantom with its vessel centreline drawn as a curve."""
    from phantoms import coronary_stenosis

    phantom = coronary_stenosis.coronary_stenosis(stenosis_percent=60, seed=60)
    folder = work / "pci"
    coronary_stenosis.write(phantom, folder)
    big, matrix = embed(phantom.image, phantom.ijk_to_ras)
    ct = write_ct(big, matrix, folder / "ct.nrrd")
    return ct, ["--curve", str(folder / "vessel.mrk.json"), "--vessel", "LAD"]


STUDIES = {"tavr": tavr_study, "mitral": mitral_study, "pulmonary": pulmonary_study, "pci": pci_study}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="folder for the rendered CTs and outputs (default: a temporary one)")
    parser.add_argument("--protocols", default="tavr,mitral,pulmonary,pci")
    args = parser.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_plan_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
          f"{' / '.join(f'{v:.1f}' for v in os.getloadavg())}; CPU only; CT {SHAPE[2]}×{SHAPE[1]}×{SHAPE[0]}")
    print(f"\n{'protocol':<12}{'wall (s)':>10}{'CPU (s)':>10}{'memory (MiB)':>14}{'command (s)':>13}")
    failed = 0
    for protocol in args.protocols.split(","):
        ct, options = STUDIES[protocol](work)
        out = work / f"out_{protocol}"
        status, seconds, peak, output, cpu = fp.run_measured(fp.cardiacsuite() + [
            "plan", protocol, str(ct), "--out", str(out), "--quiet", *options])
        if status != 0:
            print(output)
            print(f"{protocol}: failed ({status})")
            failed += 1
            continue
        timing = json.loads((out / "results.json").read_text()).get("timing_s")
        print(f"{protocol:<12}{seconds:>10.1f}{cpu:>10.1f}{peak:>14.0f}{timing:>13.1f}", flush=True)
        ct.unlink()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
