"""What every planning protocol takes and gives back, so that the command line, the scene and the report
treat TAVR, mitral, pulmonary valve and PCI alike.

A protocol is a function ``measure(inputs: PlanInputs) -> PlanResult``. Landmarks are named points (RAS mm);
a protocol finds the ones it needs automatically unless ``inputs.landmarks`` already holds them (the user's
edits), and records which were given and which were found. Everything in ``PlanResult.results`` is plain JSON
(numbers in the unit their key names: ``_mm``, ``_mm2``, ``_mm3``, ``_deg``, ``_percent``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .sections import Volume


@dataclass
class PlanInputs:
    image: np.ndarray  # [k, j, i] HU, the phase being measured
    ijk_to_ras: np.ndarray  # 4×4
    labels: np.ndarray | None = None  # label map on the same grid, or None
    label_names: dict[int, str] = field(default_factory=dict)  # label value -> lower-case name ("aorta", …)
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)  # given (edited) landmarks, RAS mm
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # given curves (e.g. a vessel centreline), RAS
    valve_size_mm: float | None = None
    vessel: str | None = None
    phases: list | None = None  # other phases for multi-phase measures: list of (label, image [k, j, i])
    phase_label: str = ""  # the phase measured, as text ("35 %")
    options: dict = field(default_factory=dict)

    @property
    def volume(self) -> Volume:
        if not hasattr(self, "_volume"):
            self._volume = Volume(self.image, self.ijk_to_ras)
        return self._volume

    def mask(self, *names: str) -> np.ndarray | None:
        """The union of the labels whose names contain any of ``names`` (None without labels or a match)."""
        if self.labels is None:
            return None
        values = [v for v, n in self.label_names.items() if any(x in n.lower() for x in names)]
        if not values:
            return None
        return np.isin(self.labels, values)


@dataclass
class SectionImage:
    """A cross-section to show and to save as PNG: the CT in the plane and the measured contour on it."""

    name: str  # file stem, e.g. "annulus"
    title: str  # caption, e.g. "Annulus (area 466 mm², perimeter 77.2 mm)"
    pixels: np.ndarray  # [row, column] HU, rows along v, columns along u
    pixel_mm: float
    contour_2d: np.ndarray | None = None  # (N, 2) mm in (u, v) about the image centre
    extra_2d: dict = field(default_factory=dict)  # name -> (N, 2) mm lines or points drawn on top
    centre: np.ndarray | None = None  # RAS of the picture's centre, with its in-plane axes u (columns) and
    u: np.ndarray | None = None  # v (rows): where the section lies in the patient, to show it in the scene
    v: np.ndarray | None = None


@dataclass
class PlanResult:
    protocol: str  # "tavr", "mitral", "pulmonary", "pci"
    results: dict  # the figures, JSON-ready
    landmarks: dict[str, np.ndarray]  # every landmark used, found or given, RAS mm (in display order)
    landmark_sources: dict[str, str]  # name -> "given" | "found"
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # annulus contour, centrelines, S-curve …, RAS
    sections: list[SectionImage] = field(default_factory=list)
    table: list[tuple[str, float | str, str]] = field(default_factory=list)  # (measurement, value, unit) rows
    notes: list[str] = field(default_factory=list)
