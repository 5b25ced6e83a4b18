"""The in-memory form every image input takes before it enters the scene.

DICOM series, NRRD/NIfTI files and ``.seq.nrrd`` sequences are all read into an ``ImageSeries``: voxels as
``[frame, k, j, i]`` plus the exact IJK-to-RAS geometry. Loaders fill it; ``add_to_scene`` turns it into MRML
nodes (a scalar volume, or a volume sequence with a browser for cine and 4D).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import mrml


@dataclass
class ImageSeries:
    frames: np.ndarray  # [T, K, J, I]; T == 1 for a single 3D volume
    ijk_to_ras: np.ndarray  # 4×4, millimetres, RAS
    frame_times_ms: list[float] | None = None  # trigger time of each frame (cine, 4D)
    name: str = "image"
    modality: str = ""  # DICOM Modality: MR, CT, …
    source: str = ""  # file or folder it came from
    metadata: dict = field(default_factory=dict)  # patient/series identifiers, RR interval, heart rate, …
    warnings: list[str] = field(default_factory=list)

    @property
    def is_dynamic(self) -> bool:
        return self.frames.shape[0] > 1

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k in mm (k is the slice spacing, not the thickness)."""
        return mrml.spacing_from_matrix(self.ijk_to_ras)


def add_to_scene(scene, series: ImageSeries, name: str | None = None):
    """Add the series to the scene: a volume node, or ``(sequence, browser)`` for more than one frame."""
    name = name or series.name
    if not series.is_dynamic:
        return mrml.add_volume(scene, series.frames[0], series.ijk_to_ras, name)
    times = series.frame_times_ms or list(range(series.frames.shape[0]))
    unit = "ms" if series.frame_times_ms else ""
    return mrml.add_volume_sequence(
        scene, list(series.frames), series.ijk_to_ras, times, name, index_name="time", index_unit=unit
    )
