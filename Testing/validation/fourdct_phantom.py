"""The 4D CT phantom on disk, and the figures that judge a propagation against its truth.

``write_study`` renders a phantom phase by phase into a folder: ``ct.seq.nrrd`` (the 4D CT, as the command
line reads it), ``reference.seg.nrrd`` (the truth at the reference phase: what a clinician would draw) and
``truth_NN.npz`` (the true label map of every phase, cropped to the rendered box). ``score`` compares a
propagation's per-phase label maps with the truth; ``run_measured`` runs a command in a child process and
reports its wall time and peak memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from CardiacSuiteLib import mrml
from FourDCTLib.metrics import surface_figures
from CardiacSuiteLib.phantoms import ct_heart
from CardiacSuiteLib.phantoms.ct4d import Motion, Phantom4D, make_phantom
from CardiacSuiteLib.image4d import MemmapPhases
from CardiacSuiteLib.imageio import write_seq_nrrd

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ct" / "wholeheart_labels"
NAMES = {**ct_heart.WHOLE_HEART_LABELS, 1: "LV myocardium"}
COLORS = {1: (0.8, 0.5, 0.4), 2: (0.9, 0.8, 0.3), 3: (0.9, 0.3, 0.3), 4: (0.3, 0.6, 0.9), 5: (0.3, 0.4, 0.9),
          6: (0.9, 0.2, 0.6), 7: (0.4, 0.8, 0.9)}
SCORED = {"Left ventricle": 3, "Left atrium": 2, "Aorta": 6}

#: The motion the method was tuned on, and a different one (other heart, seed, amplitudes, timing) to check it.
TUNED = Motion()
OTHER = Motion(radial_mm=6.5, longitudinal_mm=11.0, twist_deg=-14.0, translation_mm=(-3.0, 2.5, -2.0),
               systole_fraction=0.4)


@dataclass
class Study:
    folder: Path
    phantom: Phantom4D
    reference_phase: int

    @property
    def ct(self) -> Path:
        return self.folder / "ct.seq.nrrd"

    @property
    def segmentation(self) -> Path:
        return self.folder / "reference.seg.nrrd"

    def truth(self, phase: int) -> np.ndarray:
        """The true label map of a phase on the whole grid."""
        with np.load(self.folder / f"truth_{phase:02d}.npz") as data:
            full = np.zeros(self.phantom.shape, np.uint8)
            low, high = data["low"], data["high"]
            full[low[0] : high[0], low[1] : high[1], low[2] : high[2]] = data["labels"]
            return full


def make(heart: str = "mmwhs", spacing_mm: float | None = None, phases: int = 10, motion: Motion = TUNED,
         seed: int = 0, margin_mm: float | None = 30.0, pad_slices: int | None = None) -> Phantom4D:
    phantom = make_phantom(DATA / f"{heart}.nii.gz", spacing_mm=spacing_mm, phases=phases, motion=motion, seed=seed,
                           margin_mm=margin_mm)
    if pad_slices is not None and pad_slices > phantom.shape[0]:
        phantom = pad(phantom, pad_slices)
    return phantom


def pad(phantom: Phantom4D, slices: int) -> Phantom4D:
    """The same phantom on a grid with more slices (lung above and below), e.g. 300 for the memory check."""
    from CardiacSuiteLib.phantoms.ct_heart import LabelVolume

    extra = slices - phantom.shape[0]
    below = extra // 2
    labels = np.zeros((slices, *phantom.shape[1:]), np.uint8)
    labels[below : below + phantom.shape[0]] = phantom.reference.labels
    matrix = phantom.ijk_to_ras.copy()
    matrix[:3, 3] -= matrix[:3, 2] * below
    phantom.reference = LabelVolume(labels, matrix)
    phantom._hu = None
    phantom._distances = None
    return phantom


def write_study(phantom: Phantom4D, folder: Path, reference_phase: int = 0, progress=print) -> Study:
    """Render every phase once, writing the CT sequence, the reference segmentation and the truth."""
    from CardiacSuiteLib.app import create_app

    folder.mkdir(parents=True, exist_ok=True)
    stack = MemmapPhases(phantom.ijk_to_ras, phantom.shape, np.int16, folder, name="phantom")
    box = phantom._render_box()
    for index in range(len(phantom.percents)):
        started = time.perf_counter()
        rendered = phantom.phase(index)
        stack.append(rendered.image, phantom.percents[index])
        np.savez_compressed(folder / f"truth_{index:02d}.npz", labels=rendered.labels[box.slices],
                            low=np.array(box.low), high=np.array(box.high))
        if index == reference_phase:
            app = create_app()
            specs = [mrml.SegmentSpec(v, NAMES[v], COLORS[v]) for v in NAMES]
            node = mrml.add_segmentation_from_labelmap(app.scene, rendered.labels, phantom.ijk_to_ras, specs, "reference")
            mrml.save_node(node, folder / "reference.seg.nrrd")
            app.scene.Clear(True)
        if progress:
            progress(f"  phase {index} ({phantom.percents[index]:g} %) rendered in {time.perf_counter() - started:.1f} s")
    write_seq_nrrd(stack, folder / "ct.seq.nrrd")
    stack.close()
    (folder / "phantom.json").write_text(json.dumps({
        "source": phantom.source, "shape_kji": list(phantom.shape), "ijk_to_ras": phantom.ijk_to_ras.tolist(),
        "motion": phantom.motion.__dict__, "percents": phantom.percents, "seed": phantom.seed,
        "noise_hu": phantom.noise_hu, "blur_mm": phantom.blur_mm, "reference_phase": reference_phase,
    }, indent=1, default=list))
    return Study(folder, phantom, reference_phase)


def score(study: Study, labels_of_phase, structures: dict[str, int] = SCORED) -> dict:
    """{phase: {structure: SurfaceFigures dict}} for every phase but the reference."""
    spacing = np.linalg.norm(study.phantom.ijk_to_ras[:3, :3], axis=0)[::-1]
    out = {}
    for phase in range(len(study.phantom.percents)):
        if phase == study.reference_phase:
            continue
        truth = study.truth(phase)
        labels = labels_of_phase(phase)
        out[phase] = {name: surface_figures(labels == value, truth == value, spacing).as_dict()
                      for name, value in structures.items()}
    return out


def labels_from_output(out_dir: Path, study: Study):
    """A reader of the per-phase label maps the command line wrote (segmentations/phase_NN_*.seg.nrrd)."""
    from CardiacSuiteLib.app import create_app

    files = sorted((out_dir / "segmentations").glob("phase_*.seg.nrrd"))
    values = {name: value for value, name in NAMES.items()}

    def read(phase: int) -> np.ndarray:
        app = create_app()
        try:
            node = mrml.load_segmentation(app.scene, files[phase])
            grid = app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
            import vtk

            image = vtk.vtkImageData()
            k, j, i = study.phantom.shape
            image.SetDimensions(i, j, k)
            image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
            grid.SetAndObserveImageData(image)
            grid.SetIJKToRASMatrix(mrml.numpy_to_matrix(study.phantom.ijk_to_ras))
            return mrml.labelmap_from_segmentation(node, grid, values)
        finally:
            app.scene.Clear(True)

    return read


#: Run as ``python -c``: the command line, and at exit the peak resident memory of this process alone (VmHWM of
#: /proc/self/status, kB) written to the file named by ``FOURDCT_PEAK_FILE``.
_LAUNCHER = """
import atexit, os, runpy, sys

def _write_peak():
    path = os.environ.get("FOURDCT_PEAK_FILE")
    if path:
        with open("/proc/self/status") as status:
            peak = next((line.split()[1] for line in status if line.startswith("VmHWM:")), "")
        with open(path, "w") as out:
            out.write(peak)

atexit.register(_write_peak)
sys.argv = ["cardiacsuite", *sys.argv[1:]]
runpy.run_module("CardiacSuiteLib.cli", run_name="__main__", alter_sys=True)
"""


def run_measured(command: list[str], env: dict | None = None) -> tuple[int, float, float, str, float]:
    """(exit status, wall seconds, peak resident memory in MiB, output, CPU seconds) of a command run as a child
    process. CPU time (user + system, all threads) says how much work it was when the machine is shared.

    The peak is the child's own high-water mark, reported by the child itself at exit (see ``cardiacsuite()``).
    ``ru_maxrss`` from ``wait4`` is only the fallback: Linux carries the parent's peak resident memory into the
    child across ``exec``, so a parent that rendered a phantom (gigabytes) would inflate every child's figure.
    """
    import tempfile

    env = dict(env or os.environ)
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak_kb"
        env["FOURDCT_PEAK_FILE"] = str(peak_file)
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        reported = peak_file.read_text().strip() if peak_file.exists() else ""
    peak_mib = int(reported) / 1024.0 if reported.isdigit() else usage.ru_maxrss / 1024.0
    cpu = usage.ru_utime + usage.ru_stime
    return process.returncode, seconds, peak_mib, output, cpu


def cardiacsuite() -> list[str]:
    """The ``cardiacsuite`` command line in a child Python that reports its own peak memory at exit."""
    return [sys.executable, "-c", _LAUNCHER]
