"""What the reconstruction knows about each kind of device before it looks at the image.

The figures are design ranges, not fits to any image: strut sizes and metals of current coronary stents,
balloon- and self-expanding aortic frames, pulmonary valve frames and stent grafts. They set the search radius
around the extent, the lowest metal threshold worth trying, the cell size of the completeness grid and the
wall distance at which apposition counts as lost (cardiac-ct.md §3.4).
"""

from __future__ import annotations

from dataclasses import dataclass

DEVICE_KINDS = ("coronary", "tavr", "pulmonary", "graft")


@dataclass(frozen=True)
class DeviceDesign:
    """Design ranges of one kind of device."""

    label: str
    diameter_range_mm: tuple[float, float]
    #: Lowest metal threshold (HU); the threshold used is the larger of this and the image's own level.
    min_threshold_hu: float
    #: Completeness grid: angular sectors around the axis and axial bin length (mm). Open-cell frames get
    #: coarse cells, so that a cell between struts is not read as missing metal.
    sectors: int
    axial_bin_mm: float
    #: Device-to-wall distance (mm) at which the apposition term reaches zero.
    apposition_limit_mm: float
    #: Node degree of the wire graph away from the device ends (2: zig-zag rings, 4: diamond cells).
    node_degree: int
    #: Shortest gap along a wire (mm) counted as a break.
    gap_mm: float


DESIGNS = {
    "coronary": DeviceDesign("coronary stent", (2.0, 5.0), 600.0, 16, 1.0, 0.5, 2, 1.0),
    "tavr": DeviceDesign("transcatheter aortic valve frame", (18.0, 34.0), 1000.0, 12, 3.0, 2.0, 4, 2.0),
    "pulmonary": DeviceDesign("pulmonary valve frame", (16.0, 32.0), 1000.0, 12, 3.0, 2.0, 4, 2.0),
    "graft": DeviceDesign("stent graft", (8.0, 40.0), 800.0, 12, 3.0, 1.5, 2, 2.0),
}


@dataclass(frozen=True)
class DeviceSpec:
    """The device as the user describes it: its kind and, when known, its nominal size."""

    kind: str = "coronary"
    nominal_diameter_mm: float | None = None
    nominal_length_mm: float | None = None

    def __post_init__(self):
        if self.kind not in DESIGNS:
            raise ValueError(f"unknown device type '{self.kind}'; choose one of {', '.join(DEVICE_KINDS)}")
        for name in ("nominal_diameter_mm", "nominal_length_mm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"the nominal {name.split('_')[1]} must be a positive number of mm, not {value}")

    @property
    def design(self) -> DeviceDesign:
        return DESIGNS[self.kind]

    @property
    def search_radius_mm(self) -> float:
        """How far from the extent metal may lie and still belong to the device."""
        largest = self.nominal_diameter_mm or self.design.diameter_range_mm[1]
        return 0.5 * largest * 1.3 + 2.0
