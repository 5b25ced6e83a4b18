"""Segmentation modes and disease-specific presets: which structures, which parameters, which measurements.

A preset is what a planner picks for a case: coronary disease (chambers, aorta, coronary tree from the ostia,
the ostia themselves) or valve disease (chambers and great vessels, then aortic root, LVOT, mitral annulus
and pulmonary root measurements). ``auto`` and ``semi`` are the plain chamber modes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The two coronary trees: how ostia, path points and centerline curves say which tree they belong to.
LEFT, RIGHT = "left", "right"
SIDES = (LEFT, RIGHT)

#: The long-axis planes ``ct-reformat`` writes beside the short-axis stack.
PLANES = ("2CH", "3CH", "4CH")
#: How ``ct-reformat`` gets the LV of every phase of a 4D CT: the reference phase's carried by FourDCT's
#: transforms, or each phase segmented.
PHASE_METHODS = ("propagate", "segment")

#: How a preset finds the chambers: the weight-free automatic method, or growing the user's seeds.
CHAMBERS_ATLAS = "atlas"
CHAMBERS_SEEDS = "seeds"


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    chambers: str  # CHAMBERS_ATLAS or CHAMBERS_SEEDS
    coronary: bool = False
    valve: bool = False
    whole_aorta: bool = True  # follow the aorta through the arch and down (False: root and ascending only)
    working_spacing_mm: float = 1.0
    coronary_spacing_mm: float = 0.6
    measurements: tuple[str, ...] = ()
    notes: dict = field(default_factory=dict)

    @property
    def needs_seeds(self) -> bool:
        return self.chambers == CHAMBERS_SEEDS

    @property
    def needs_atlas(self) -> bool:
        return self.chambers == CHAMBERS_ATLAS

    @property
    def needs_ostia(self) -> bool:
        return self.coronary

    def description(self) -> str:
        """One sentence for a user choosing the mode: what it is and what it prepares."""
        return f"{self.title}. Prepares: {'; '.join(self.measurements)}."


PRESETS = {
    "auto": Preset(
        "auto",
        "Chambers and great vessels, fully automatic (atlas + intensity model, no trained weights)",
        CHAMBERS_ATLAS,
        measurements=("structure volumes (ml)", "LV myocardial mass (g)"),
    ),
    "semi": Preset(
        "semi",
        "Chambers and great vessels grown from seeds (Slicer grow-from-seeds), refined by the user",
        CHAMBERS_SEEDS,
        whole_aorta=False,
        measurements=("structure volumes (ml)", "LV myocardial mass (g)"),
    ),
    "coronary": Preset(
        "coronary",
        "Coronary disease: chambers, aorta, coronary ostia and the left and right coronary trees",
        CHAMBERS_ATLAS,
        coronary=True,
        whole_aorta=False,
        measurements=(
            "structure volumes (ml)",
            "LV myocardial mass (g)",
            "coronary ostia (RAS mm) and their height above the aortic annulus plane (mm)",
            "per vessel: length, minimal and mean lumen diameter (mm)",
        ),
    ),
    "valve": Preset(
        "valve",
        "Valve disease: chambers and great vessels, aortic root, LVOT, mitral annulus and pulmonary root",
        CHAMBERS_ATLAS,
        valve=True,
        whole_aorta=True,
        working_spacing_mm=0.8,
        measurements=(
            "aortic annulus plane and size (area, perimeter, diameters)",
            "LVOT 5 mm below the annulus",
            "sinus of Valsalva, sinotubular junction, ascending aorta at 40 mm",
            "mitral annulus plane and size",
            "pulmonary annulus and main pulmonary artery",
            "structure volumes (ml)",
        ),
    ),
}

#: Every mode and preset, in the order a user is offered them (the Slicer module and ``ct-segment --mode``).
MODES: tuple[str, ...] = tuple(PRESETS)
DEFAULT_MODE = "auto"


def get_preset(name: str) -> Preset:
    from CardiacSuiteLib.errors import InputError

    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown mode '{name}'; choose one of: {', '.join(PRESETS)}") from None
