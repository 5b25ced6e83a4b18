"""The choices a user makes for a CMR analysis, declared once for the module's fields and the command's options.

Light to import (no scene, no model), so that the command line can build its parser from these at start-up.
Errors speak of the input ("excluded slices: ..."), never of a field or a flag, since both show them.
"""

from __future__ import annotations

import re

from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.inference.backends import DEVICES

from .bsa import BSA_FORMULAS
from .papillary import CONVENTIONS as PAPILLARY_CONVENTIONS

#: Which phases the model contours: every phase (curves, rates) or end-diastole and end-systole only.
ALL_PHASES, ED_ES_PHASES = "all", "ed-es"
PHASES = (ALL_PHASES, ED_ES_PHASES)
#: Patient sex as the reference tables know it; "unknown" leaves sex-specific references unflagged.
UNKNOWN_SEX = "unknown"
KNOWN_SEXES = ("male", "female")
SEXES = (UNKNOWN_SEX, *KNOWN_SEXES)
#: Body surface area equations, by id (``bsa.BSA_FORMULAS``).
BSA_FORMULA_IDS = tuple(BSA_FORMULAS)
DEFAULT_BSA_FORMULA = "mosteller"
#: Atrial volumes: the biplane length rule, and where the contours come from.
ATRIAL_LENGTH_RULES = ("shorter", "mean")
ATRIAL_METHODS = ("auto", "seeded", "model")

__all__ = [
    "ALL_PHASES", "ATRIAL_LENGTH_RULES", "ATRIAL_METHODS", "BSA_FORMULA_IDS", "DEFAULT_BSA_FORMULA", "DEVICES",
    "ED_ES_PHASES", "KNOWN_SEXES", "PAPILLARY_CONVENTIONS", "PHASES", "SEXES", "UNKNOWN_SEX", "parse_slice_list",
    "slice_inclusion", "slice_list_problem",
]

_SLICE_PART = re.compile(r"(\d+)(?:\s*-\s*(\d+))?")


def parse_slice_list(text: str | None, slice_count: int | None = None) -> list[int]:
    """Sorted 0-based slice numbers from text such as "0, 9-10"; an ``InputError`` for anything else.

    With ``slice_count``, numbers beyond the last slice are refused, and so is excluding every slice.
    """
    slices: set[int] = set()
    for part in (text or "").replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        match = _SLICE_PART.fullmatch(part)
        if match is None:
            raise InputError(f"excluded slices: '{part}' is neither a slice number nor a range such as 0-2")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise InputError(f"excluded slices: the range '{part}' runs backwards")
        slices.update(range(first, last + 1))
    if slice_count is not None:
        outside = sorted(number for number in slices if number >= slice_count)
        if outside:
            numbers = ", ".join(f"'{number}'" for number in outside)
            verb = "is" if len(outside) == 1 else "are"
            raise InputError(
                f"excluded slices: {numbers} {verb} beyond the {slice_count} slices of this cine"
                f" (numbered 0 to {slice_count - 1})"
            )
        if len(slices) >= slice_count:
            raise InputError("excluded slices: every slice is excluded; nothing would be measured")
    return sorted(slices)


def slice_inclusion(excluded_slices: str | None, slice_count: int | None) -> list[bool] | None:
    """Per-slice choice (True counts) from a list of excluded slices; None (the basal rule) when none is listed."""
    excluded = parse_slice_list(excluded_slices, slice_count)
    if not excluded:
        return None
    if not slice_count:
        raise InputError("excluded slices need a cine whose slices can be counted")
    return [number not in excluded for number in range(slice_count)]


def slice_list_problem(text: str | None, slice_count: int | None = None) -> str | None:
    """What is wrong with a list of excluded slices, for a form to show as the user types; None when nothing is."""
    try:
        parse_slice_list(text, slice_count)
    except InputError as error:
        return str(error)
    return None
