"""Data for training and evaluating the short-axis cine models (not shipped in the extension).

ACDC (Bernard et al., IEEE TMI 2018; CC BY-NC-SA 4.0) is read from ``../shared/data``: ``acdc_train/`` (70
patients) trains, ``acdc/`` (20 other patients) validates. Each volume is one phase (ED ``frame01`` or ES
``frame02``), ``[slices, rows, cols]``, labels 1 RV, 2 LV myocardium, 3 LV cavity. ``acdc_train`` stores
uint16 = min-max normalised intensity x ``attrs['intensity_levels']``; dividing gives the float image of ``acdc/``.

The teacher (the registered ``myopari-acdc-tiramisu`` model, run through ``SliceSegmenter`` exactly as the
extension runs it) labels every training slice and the unlabelled multi-frame cine once; its outputs are cached
as ``.npz`` files in a folder outside the repository.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
for path in (REPO / "CardiacSuiteLib", REPO / "CMRAnalysis"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

TEACHER_ID = "myopari-acdc-tiramisu"
TASK = "cmr-sax-cine"
HEART_LABELS = (1, 2, 3)
STRUCTURES = {"RV": 1, "Myo": 2, "LV": 3}


def data_root() -> Path:
    return Path(os.environ.get("CARDIACSUITE_DATA", REPO.parent / "shared" / "data"))


@dataclass
class Volume:
    """One ACDC phase (or the unlabelled cine as a stack of frames): raw float image, labels, teacher labels."""

    name: str  # e.g. patient003_ED
    patient: str
    phase: str  # ED, ES or cine
    image: np.ndarray  # [K, rows, cols] float32, as read (not yet normalised)
    label: np.ndarray | None  # [K, rows, cols] uint8 expert labels, None when unlabelled
    teacher: np.ndarray | None = None  # [K, rows, cols] uint8 teacher labels


def read_acdc(folder: Path) -> list[Volume]:
    """Every ``patientNNN_frame0{1,2}.h5`` in ``folder`` as float volumes (ED = frame01, ES = frame02)."""
    import h5py

    volumes = []
    for path in sorted(folder.glob("patient*_frame0[12].h5")):
        patient, frame = path.stem.split("_")
        phase = "ED" if frame == "frame01" else "ES"
        with h5py.File(path, "r") as h5:
            image = h5["image"][:].astype(np.float32)
            if "intensity_levels" in h5.attrs:
                image /= float(h5.attrs["intensity_levels"])
            label = h5["label"][:].astype(np.uint8)
        volumes.append(Volume(f"{patient}_{phase}", patient, phase, image, label))
    if not volumes:
        raise SystemExit(f"no ACDC volumes in {folder}")
    return volumes


def read_unlabelled_cine() -> list[Volume]:
    """The 16-frame single-slice cine of ``cine_multiframe/`` as one stack of frames (no expert labels)."""
    from CardiacSuiteLib.imageio import read_image_input

    path = data_root() / "cine_multiframe" / "mr-dicom.dcm"
    if not path.is_file():
        return []
    frames = read_image_input(path).frames.astype(np.float32)  # [T, 1, rows, cols]
    return [Volume("cine_multiframe", "cine_multiframe", "cine", frames[:, 0], None)]


def read_sunnybrook_cines(patient_ids: list[str]) -> list[Volume]:
    """Every phase of these Sunnybrook cines as unlabelled volumes in the trained view (no manual contour is read).

    The slices are turned to the view the pipeline shows the model (``orientation.short_axis_view``), so that the
    teacher labels them, and the student learns them, as at inference. A patient whose frames are learned this way
    must not be scored afterwards: ``train_sax_fast.py`` leaves one patient out per fold.
    """
    from CardiacSuiteLib.imageio import read_image_input
    from CardiacSuiteLib.inference.orientation import short_axis_view
    from CMRAnalysisLib.sunnybrook import patients

    folders = {pid: dicoms for pid, dicoms, _ in patients(data_root() / "sunnybrook")}
    volumes = []
    for pid in patient_ids:
        if pid not in folders:
            raise SystemExit(f"no Sunnybrook patient {pid} in {data_root() / 'sunnybrook'}")
        series = read_image_input(folders[pid])
        frames = short_axis_view(series.ijk_to_ras).apply(series.frames.astype(np.float32))
        for phase, image in enumerate(frames):
            volumes.append(Volume(f"{pid}_t{phase:02d}", pid, "unlabelled", np.ascontiguousarray(image), None))
    return volumes


def teacher_segmenter(cache: Path):
    """The teacher model as the extension runs it (ONNX Runtime, CPU), installed into ``cache/models``."""
    from CardiacSuiteLib.inference.registry import ModelRegistry
    from CardiacSuiteLib.inference.segment2d import SliceSegmenter

    registry = ModelRegistry.default(cache_dir=cache / "models")
    return SliceSegmenter.from_registry(registry, TEACHER_ID, TASK, device="cpu")


def attach_teacher(volumes: list[Volume], cache: Path, log=print) -> None:
    """Teacher labels for every volume, computed once and cached in ``cache/teacher/<name>-<digest>.npz``."""
    folder = cache / "teacher"
    folder.mkdir(parents=True, exist_ok=True)
    segmenter = None
    started = time.perf_counter()
    for number, volume in enumerate(volumes):
        digest = hashlib.sha256(volume.image.tobytes()).hexdigest()[:12]
        path = folder / f"{volume.name}-{digest}.npz"
        if path.is_file():
            volume.teacher = np.load(path)["labels"]
            continue
        if segmenter is None:
            segmenter = teacher_segmenter(cache)
        from CardiacSuiteLib.inference.segment2d import keep_largest_components

        labels = segmenter.segment(volume.image, segmenter.prepare(volume.image))
        labels = keep_largest_components(labels, list(HEART_LABELS)) if volume.phase != "cine" else labels
        np.savez_compressed(path, labels=labels)
        volume.teacher = labels
        log(f"teacher {number + 1}/{len(volumes)} {volume.name}: {len(labels)} slices, {time.perf_counter() - started:.0f} s")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * float((a & b).sum()) / total if total else 1.0


def structure_dice(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    return {name: dice(predicted == value, reference == value) for name, value in STRUCTURES.items()}


def lv_slice_disagreement(predicted: np.ndarray, reference: np.ndarray, value: int = 3) -> tuple[int, int]:
    """Slices with LV cavity in ``predicted`` but not in ``reference`` (extra), and the other way (missed)."""
    auto = (predicted == value).any(axis=(1, 2))
    expert = (reference == value).any(axis=(1, 2))
    return int((auto & ~expert).sum()), int((expert & ~auto).sum())


def ejection_fraction(ed: np.ndarray, es: np.ndarray, value: int = 3) -> float:
    """EF (%) from ED and ES label maps: pixel counts x a constant voxel volume (ACDC has no spacing; EF is a ratio)."""
    edv, esv = float((ed == value).sum()), float((es == value).sum())
    return 100.0 * (edv - esv) / edv if edv else float("nan")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="precompute the teacher cache only")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/cardiacsuite-sax-fast"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ["CARDIACSUITE_THREADS"] = str(args.threads)
    root = data_root()
    attach_teacher(read_acdc(root / "acdc_train") + read_unlabelled_cine(), args.cache, log=lambda m: print(m, flush=True))
