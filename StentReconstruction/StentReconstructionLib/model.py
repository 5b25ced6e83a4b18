"""The data every reconstruction algorithm reads (``Region``) and writes (``Reconstruction``).

A reconstruction is described in the same terms whatever made it, so the score, the measurements, the
propagation and the scene treat every algorithm alike: an axis sampled every 0.5 mm, the device envelope (the
surface through the strut centres) as radii per station and sector around that axis, a closed surface model,
and the strut centrelines where the algorithm resolves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from CardiacSuiteLib.geometry import Box

from .devices import DeviceSpec

#: Axis stations are this far apart (mm): the issue's "every 0.5 mm" for cross-sections.
STATION_STEP_MM = 0.5
#: Sectors of the envelope around the axis.
ENVELOPE_SECTORS = 72


class CannotReconstruct(Exception):
    """An algorithm cannot give a result on this image; the message says why (it goes into its entry)."""


@dataclass
class Region:
    """The image around the device's extent, with the metal found in it."""

    image: np.ndarray  # float32 HU, [k, j, i], the box of the input image
    ijk_to_ras: np.ndarray  # 4×4 of the box
    box: Box  # the box in the input image's grid
    spec: DeviceSpec
    extent: np.ndarray  # (N, 3) RAS: the user's start-to-end guess, every STATION_STEP_MM
    threshold_hu: float  # metal threshold used
    background_hu: float  # median HU of the non-metal neighbourhood of the extent
    noise_hu: float  # robust SD of the background
    metal: np.ndarray  # bool [k, j, i]: voxels above the threshold connected to the extent's neighbourhood
    vessel: np.ndarray | None = None  # bool [k, j, i]: vessel lumen or root, when given
    threshold_rule: str = ""  # how the threshold was chosen, in words

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel size along (k, j, i)."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)[::-1]

    def ras_to_ijk(self, points: np.ndarray) -> np.ndarray:
        """Continuous (i, j, k) indices of RAS points."""
        inverse = np.linalg.inv(self.ijk_to_ras)
        points = np.asarray(points, float)
        return points @ inverse[:3, :3].T + inverse[:3, 3]

    def voxel_ras(self, mask: np.ndarray) -> np.ndarray:
        """RAS centres of the voxels of a mask on the region grid."""
        kji = np.argwhere(mask).astype(float)
        return kji[:, ::-1] @ self.ijk_to_ras[:3, :3].T + self.ijk_to_ras[:3, 3]


@dataclass
class Reconstruction:
    """One algorithm's device: axis, envelope, surface, struts, and how it was made."""

    id: str  # "A", "B", "C", …
    name: str
    axis: np.ndarray  # (N, 3) RAS, device start to end, every STATION_STEP_MM
    radii: np.ndarray  # (N, ENVELOPE_SECTORS) envelope radius (mm) per station and sector, in the axis frames
    surface: object  # vtkPolyData, closed, RAS
    struts: list[np.ndarray] = field(default_factory=list)  # open polylines (M, 3) RAS, where resolved
    material: np.ndarray | None = None  # (M, 3) RAS strut-centre points the algorithm located (its evidence)
    method: dict = field(default_factory=dict)  # parameters and choices, recorded in results.json
    notes: list[str] = field(default_factory=list)

    def envelope_points(self) -> np.ndarray:
        """(N, S, 3) RAS points of the envelope."""
        from .sections import envelope_points

        return envelope_points(self.axis, self.radii)
