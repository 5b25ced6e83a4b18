"""The whole-heart atlas: where it comes from, and how it is read.

The weight-free automatic mode registers a labelled heart (MM-WHS-style labels 1–7) onto the patient's CT.
The atlas is a label map only (no image): its CT appearance is synthesised from the patient's own intensities
(``chambers.py``), so any contrast timing works. It is looked up, in order, from the ``atlas`` argument, the
``CARDIACSUITE_HEART_ATLAS`` environment variable, ``~/.cardiacsuite/atlas/wholeheart.nii.gz`` (or
``CARDIACSUITE_HOME``), and the test data's label maps when a data folder is given (``data_root`` or
``CARDIACSUITE_DATA``); the extension never guesses a data folder from where it is installed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.geometry import Grid
from CardiacSuiteLib.phantoms.ct_heart import DATA_ENV, whole_heart_label_path

ATLAS_ENV = "CARDIACSUITE_HEART_ATLAS"
DEFAULT_ATLAS_NAME = "mmwhs"
ATLAS_LABELS = {1: "LV myocardium", 2: "LA", 3: "LV", 4: "RA", 5: "RV", 6: "Aorta", 7: "PA"}


@dataclass
class Atlas:
    labels: np.ndarray  # [K, J, I] uint8, values 0–7
    grid: Grid
    source: str


def atlas_candidates(name: str = DEFAULT_ATLAS_NAME, data_root: str | os.PathLike | None = None) -> list[Path]:
    """Every place an atlas is looked for when none is given, in order."""
    home = Path(os.environ.get("CARDIACSUITE_HOME", Path.home() / ".cardiacsuite"))
    candidates = []
    if os.environ.get(ATLAS_ENV):
        candidates.append(Path(os.environ[ATLAS_ENV]))
    candidates.append(home / "atlas" / "wholeheart.nii.gz")
    if data_root or os.environ.get(DATA_ENV):
        candidates.append(whole_heart_label_path(name, data_root))
    return candidates


def find_atlas(
    atlas: str | os.PathLike | None = None, name: str = DEFAULT_ATLAS_NAME, data_root: str | os.PathLike | None = None
) -> Path:
    """The atlas file to use; a clear ``InputError`` naming every place looked at when there is none."""
    if atlas:
        path = Path(atlas)
        if not path.is_file():
            raise InputError(f"whole-heart atlas {path} does not exist")
        return path
    candidates = atlas_candidates(name, data_root)
    for path in candidates:
        if path.is_file():
            return path
    places = ", ".join(str(p) for p in candidates)
    raise InputError(
        "no whole-heart atlas found (looked at " + places + "); the automatic mode needs one: choose an atlas label"
        f" map, set {ATLAS_ENV} (or {DATA_ENV}, the test-data folder holding ct/wholeheart_labels), or copy a"
        " whole-heart label map (labels 1-7, MM-WHS style) to the first of these places"
    )


def read_label_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A label map (NIfTI or NRRD) as ``([K, J, I] uint8, IJK-to-RAS)``."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"{path}: not a readable label map ({str(error).strip().splitlines()[-1]})") from None
    array = sitk.GetArrayFromImage(image)
    if array.ndim != 3:
        raise InputError(f"{path}: a 3D label map is needed, this has {array.ndim} dimensions")
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = np.array(image.GetSpacing())
    origin = np.array(image.GetOrigin())
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    matrix = np.eye(4)
    matrix[:3, :3] = lps_to_ras @ direction * spacing
    matrix[:3, 3] = lps_to_ras @ origin
    values = np.unique(array)
    if values.min() < 0 or values.max() > 7 or not set(range(1, 8)) <= set(values.tolist()):
        raise InputError(f"{path}: an atlas needs labels 1-7 (MM-WHS style); found {values.tolist()[:12]}")
    return array.astype(np.uint8), matrix


def load_atlas(atlas: str | os.PathLike | None = None, spacing_mm: float = 1.0, margin_mm: float = 20.0) -> Atlas:
    """The atlas resampled to an isotropic grid and cropped to the heart with a margin."""
    from CardiacSuiteLib.geometry import resample

    path = find_atlas(atlas)
    labels, matrix = read_label_file(path)
    grid = Grid(labels.shape, matrix)
    work = grid.resampled(spacing_mm)
    resampled = resample(labels, grid, work, order=0)
    # The crop may need room outside the original grid: pad instead of clipping.
    margin = int(np.ceil(margin_mm / spacing_mm))
    index = np.argwhere(resampled > 0)
    low = index.min(axis=0) - margin
    high = index.max(axis=0) + margin + 1
    cropped_grid = work.crop(low, high)
    cropped = resample(labels, grid, cropped_grid, order=0)
    return Atlas(cropped, cropped_grid, str(path))


def install_atlas(source: str | os.PathLike, spacing_mm: float = 1.0, destination: str | os.PathLike | None = None) -> Path:
    """Write a compact copy of a whole-heart label map (resampled to ``spacing_mm``, cropped to the heart with a
    20 mm margin, gzip NIfTI) where the automatic mode finds it: ``~/.cardiacsuite/atlas/wholeheart.nii.gz``.

    This is how a user (or the extension's packaging step) provides the atlas without the research data
    folder; at 1 mm it is about 100 kB.
    """
    import nibabel

    atlas = load_atlas(source, spacing_mm=spacing_mm, margin_mm=20.0)
    home = Path(os.environ.get("CARDIACSUITE_HOME", Path.home() / ".cardiacsuite"))
    target = Path(destination) if destination else home / "atlas" / "wholeheart.nii.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial.nii.gz")
    nibabel.save(nibabel.Nifti1Image(atlas.labels.transpose(2, 1, 0), atlas.grid.ijk_to_ras), str(partial))
    os.replace(partial, target)
    return target
