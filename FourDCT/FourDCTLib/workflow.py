"""The FourDCT jobs as the module and the command line run them: import, propagate, summarise, file, show.

Import is ``read_phases`` (files into temporary per-phase files, no scene) then ``add_study``. Propagation is
one workflow for both faces, in three steps so that the Slicer module can run the long one off the GUI thread:
``read_reference`` takes what a propagation needs from the scene (the reference segmentation as a label map on
the 4D grid), ``run_propagation`` computes without touching the scene (and stops at the cancel token between
phases), and ``add_results`` files the results in the scene: sequences, table, plot, the study's references and
end diastole beside end systole. The module reads its 4D CT from a scene sequence, the command line from files
(one phase at a time, so that a long study never sits in the scene whole); what each adds to the scene is the
same. ``propagate_in_scene`` runs the three steps in a row for scripts and tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from CardiacSuiteLib.case import CardiacCase, Key, Role
from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.image4d import PERCENT, PhaseStack, format_index, open_4d

from . import scene as fourd_scene
from . import viewing
from .choices import METHODS, ORIENTATIONS, SCENE_VOLUMES, STRATEGIES
from .propagation import Propagation, PropagationSettings, Segment, propagate
from .registration import RegistrationSettings

ProgressCallback = Callable[[float, str], None]

# Segment names that mean each structure (lower case, compared after removing punctuation).
STRUCTURE_NAMES = {
    "lv": ("lv", "left ventricle", "left ventricle blood pool", "left ventricular cavity", "lv cavity", "lv blood pool",
           "left ventricular blood pool", "lv endocardium"),
    "la": ("la", "left atrium", "left atrium blood pool", "la blood pool", "left atrial cavity"),
    "aorta": ("aorta", "ao", "ascending aorta", "aortic root"),
}


def find_structure(segments: Sequence[Segment], structure: str) -> Segment | None:
    """The segment that is the LV, LA or aorta, from its name; None when no name says so."""
    names = STRUCTURE_NAMES[structure]
    for segment in segments:
        cleaned = re.sub(r"[_\-.]+", " ", segment.name).strip().lower()
        if cleaned in names:
            return segment
    return None


def parse_phase(text: str | int, index_values: Sequence[float], index_unit: str, index_name: str = "phase",
                what: str = "phase") -> int:
    """'3' is the fourth phase (0-based position); '75%' or '350ms' is the phase with that index value.

    ``what`` names the phase in messages (e.g. 'reference phase').
    """
    count = len(index_values)
    if isinstance(text, int):
        position = text
    else:
        text = str(text).strip()
        match = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*(%|ms)", text)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            if unit != index_unit:
                raise InputError(
                    f"{what} '{text}' is in {unit}, but the phases are indexed by {index_name} "
                    f"({index_unit or 'no unit'}); give a position 0 to {count - 1}"
                )
            matches = [n for n, v in enumerate(index_values) if abs(v - value) < 1e-6]
            if not matches:
                listing = ", ".join(format_index(v, index_unit) for v in index_values)
                raise InputError(f"no phase at {text}; the phases are {listing}")
            return matches[0]
        try:
            position = int(text)
        except ValueError:
            raise InputError(
                f"{what} '{text}' is neither a position (0 to {count - 1}) nor a value like '75%'"
            ) from None
    if not 0 <= position < count:
        raise InputError(f"{what} {position} is not one of the {count} phases (0 to {count - 1})")
    return position


def parse_reference_phase(text: str | int, stack: PhaseStack) -> int:
    """The reference phase given as a position or an index value (see ``parse_phase``)."""
    return parse_phase(text, stack.index_values, stack.index_unit, stack.index_name, "reference phase")


def results_document(propagation: Propagation, stack: PhaseStack, lv: Segment | None = None) -> dict:
    """Everything a report needs, per phase and per structure, with units and the method used."""
    volumes = propagation.volumes_ml()
    segments = propagation.segments
    lv = lv or find_structure(segments, "lv")
    settings = propagation.settings
    phases = []
    for index, result in enumerate(propagation.phases):
        phases.append({
            "position": index,
            "index_value": stack.index_values[index],
            "label": stack.index_label(index),
            "reference": index == propagation.reference_phase,
            "structures": {s.name: {"volume_ml": volumes[s.name][index]} for s in segments},
            "qc": result.qc(),
            "seconds": result.seconds,
        })
    document = {
        "index": {"name": stack.index_name, "unit": stack.index_unit, "values": stack.index_values},
        "reference_phase": propagation.reference_phase,
        "structures": [s.name for s in segments],
        "method": {
            "registration": settings.registration.method,
            "strategy": settings.strategy,
            "grid_mm": settings.registration.grid_mm,
            "levels": list(settings.registration.levels),
            "iterations": list(settings.registration.iterations),
            "margin_mm": settings.margin_mm,
            "labels": "signed distance maps warped at the image resolution, thresholded at 0",
            "similarity": "normalised cross-correlation of the registered reference with the phase, in the box",
            "folding": "share of registration-grid voxels with a Jacobian determinant <= 0",
        },
        "box": {"low_kji": list(propagation.box.low), "high_kji": list(propagation.box.high)},
        "phases": phases,
        "flagged_phases": [stack.index_label(p) for p in propagation.flagged_phases],
        "seconds": propagation.seconds,
        "units": {"volume_ml": "ml", "seconds": "s", "folding_pct": "%", "grid_mm": "mm", "margin_mm": "mm"},
    }
    if lv is not None:
        figures = fourd_scene.ejection_figures(volumes[lv.name], stack.index_values)
        figures["structure"] = lv.name
        figures["ed_label"] = stack.index_label(figures["ed_phase"])
        figures["es_label"] = stack.index_label(figures["es_phase"])
        document["lv_function"] = figures
        document["units"].update({"edv_ml": "ml", "esv_ml": "ml", "sv_ml": "ml", "ef_pct": "%"})
    return document


# ---------------------------------------------------------------------------------------------- import


@dataclass
class Imported:
    sequence: object
    browser: object
    case_node: object
    warnings: list[str]


def read_phases(inputs, allow_missing: bool = False, series_uid: str | None = None,
                progress: ProgressCallback | None = None, cancel=None) -> PhaseStack:
    """Any 4D input (see ``image4d.open_4d``) read into temporary files, with no scene; stops when cancelled."""

    def report(fraction: float, message: str) -> None:
        if cancel is not None:
            cancel.raise_if_cancelled()
        if progress is not None:
            progress(fraction, message)

    return open_4d(inputs, allow_missing=allow_missing, series_uid=series_uid, progress=report)


def study_case(scene, name: str, stack: PhaseStack) -> CardiacCase:
    """The study a 4D CT belongs to: found by its DICOM study UID when it has one, else by name, else new."""
    return CardiacCase.get_or_create(scene, f"{name} study", str(stack.metadata.get(Key.STUDY_INSTANCE_UID, "")),
                                     str(stack.metadata.get(Key.PATIENT_ID, "")))


def add_study(scene, stack: PhaseStack) -> Imported:
    """A read 4D CT as a volume sequence with a browser, filed under its study; the stack is closed."""
    try:
        sequence, browser = fourd_scene.add_phases(scene, stack)
    finally:
        stack.close()
    case = study_case(scene, sequence.GetName(), stack)
    case.set_reference(Role.CT4D_SEQUENCE, sequence)
    case.set_reference(Role.CT4D_BROWSER, browser)
    return Imported(sequence, browser, case.node, list(stack.warnings))


# ---------------------------------------------------------------------------------------------- propagation


@dataclass
class PropagationInput:
    """What a propagation takes from the scene, read on the GUI thread so that the work itself needs no scene."""

    stack: PhaseStack
    reference_phase: int
    labels: np.ndarray
    segments: list[Segment]
    segmentation_node: object
    name: str


@dataclass
class InScene:
    propagation: Propagation
    nodes: fourd_scene.PropagationNodes
    results: dict
    case_node: object
    volume_sequence: object = None
    view: viewing.MultiPhaseView | None = None


def propagation_settings(method: str = METHODS[0], strategy: str = STRATEGIES[0], grid_mm: float = 2.0,
                         margin_mm: float = 20.0) -> PropagationSettings:
    """The settings of a propagation from the options the module and the command line offer."""
    if grid_mm <= 0 or margin_mm < 0:
        raise InputError(
            f"the registration grid must be positive and the margin around the segmentation not negative (mm); got "
            f"grid {grid_mm:g} mm, margin {margin_mm:g} mm"
        )
    try:
        return PropagationSettings(registration=RegistrationSettings(method=method, grid_mm=float(grid_mm)),
                                   strategy=strategy, margin_mm=float(margin_mm))
    except ValueError as error:
        raise InputError(str(error)) from None


def read_reference(scene, stack: PhaseStack, segmentation_node, reference_phase: int,
                   name: str | None = None) -> PropagationInput:
    """The reference segmentation as a label map on the 4D grid (the helper grid node is removed again)."""
    if not 0 <= reference_phase < stack.count:
        raise InputError(f"reference phase {reference_phase} is not one of the {stack.count} phases")
    grid_node = fourd_scene.reference_volume_node(scene, stack, reference_phase)
    try:
        labels, segments = fourd_scene.labels_from_segmentation(segmentation_node, grid_node)
    finally:
        scene.RemoveNode(grid_node)
    if not labels.any():
        raise InputError(
            f"segmentation '{segmentation_node.GetName()}' does not overlap the 4D CT; segment the reference phase "
            "of this study"
        )
    return PropagationInput(stack, reference_phase, labels, segments, segmentation_node, name or stack.name or "4D CT")


def run_propagation(inputs: PropagationInput, settings: PropagationSettings | None = None,
                    progress: ProgressCallback | None = None, cancel=None) -> Propagation:
    """The registration and label carrying, phase by phase; touches no scene node, so it may run in a worker."""
    try:
        return propagate(inputs.stack, inputs.reference_phase, inputs.labels, inputs.segments, settings, progress, cancel)
    except ValueError as error:
        raise InputError(str(error)) from None


def add_results(
    scene,
    inputs: PropagationInput,
    propagation: Propagation,
    volume_sequence=None,
    scene_volumes: str = "box",
    case: CardiacCase | None = None,
    orientation: str = ORIENTATIONS[0],
    release: bool = False,
) -> InScene:
    """File a propagation in the scene: both sequences, table and plot, the study's references and LV function,
    and end diastole beside end systole.

    With ``volume_sequence`` (the 4D CT is in the scene) the results are synchronised in its browser. Without,
    the phases are added after the results as ``scene_volumes`` says (cropped to the registered box, whole, or
    not at all), in the results' browser. ``release`` drops the per-phase label maps and fields once they are in
    the scene, before the volumes are added (memory, for long studies).
    """
    if scene_volumes not in SCENE_VOLUMES:
        raise ValueError(f"scene volumes must be one of {', '.join(SCENE_VOLUMES)}, not '{scene_volumes}'")
    stack, name = inputs.stack, inputs.name
    browser = _browser_of(scene, volume_sequence) if volume_sequence is not None else None
    nodes = fourd_scene.add_propagation(scene, propagation, stack, name, browser)
    results = results_document(propagation, stack)
    if release:
        propagation.release()
    if volume_sequence is None and scene_volumes != "none":
        box = propagation.box if scene_volumes == "box" else None
        volume_sequence, _ = fourd_scene.add_phases(scene, stack, name, box, browser=nodes.browser)
    case = case or study_case(scene, name, stack)
    if volume_sequence is not None:
        case.set_reference(Role.CT4D_SEQUENCE, volume_sequence)
    case.set_reference(Role.CT4D_BROWSER, nodes.browser)
    case.set_reference(Role.CT4D_SEGMENTATION_SEQUENCE, nodes.segmentation_sequence)
    case.set_reference(Role.CT4D_TRANSFORM_SEQUENCE, nodes.transform_sequence)
    case.set_reference(Role.CT4D_TABLE, nodes.table)
    case.set_reference(Role.CT4D_REFERENCE_SEGMENTATION, inputs.segmentation_node)
    function = results.get("lv_function")
    if function is not None:
        case.set_value(Key.CT4D_FUNCTION, function)
    view = None
    if volume_sequence is not None:
        view = show_phase_views(scene, volume_sequence, "", orientation, nodes.segmentation_sequence, function)
    return InScene(propagation, nodes, results, case.node, volume_sequence, view)


def propagate_in_scene(
    scene,
    volume_sequence,
    segmentation_node,
    reference_phase: int,
    settings: PropagationSettings | None = None,
    progress: ProgressCallback | None = None,
    cancel=None,
    case: CardiacCase | None = None,
    name: str | None = None,
    orientation: str = ORIENTATIONS[0],
) -> InScene:
    """Propagate a reference segmentation through a volume sequence that is in the scene, in one call.

    Nothing is added to the scene when it fails or is cancelled.
    """
    stack = fourd_scene.phases_from_sequence(volume_sequence)
    inputs = read_reference(scene, stack, segmentation_node, reference_phase, name or volume_sequence.GetName())
    propagation = run_propagation(inputs, settings, progress, cancel)
    return add_results(scene, inputs, propagation, volume_sequence, case=case, orientation=orientation)


def _browser_of(scene, sequence):
    """The first browser whose master (or synchronised) sequence is ``sequence``, or None."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(index, "vtkMRMLSequenceBrowserNode")
        if viewing.is_view_browser(browser):
            continue
        if browser.IsSynchronizedSequenceNode(sequence, True):
            return browser
    return None


# ---------------------------------------------------------------------------------------------- views


def view_phases(index_values: Sequence[float], index_unit: str, text: str = "",
                lv_function: dict | None = None) -> tuple[list[int], list[str]]:
    """The phases to show side by side and their labels.

    Those listed in ``text`` (positions or values such as '40%', comma-separated); else end diastole and end
    systole: from the LV volume curve of a propagation when there is one, otherwise from the usual
    reconstruction points (see ``scene.suggest_ed_es``).
    """
    items = [item.strip() for item in text.split(",") if item.strip()]
    if items:
        phases = [parse_phase(item, index_values, index_unit) for item in items]
        return phases, [format_index(index_values[p], index_unit) for p in phases]
    if lv_function is not None:
        ed, es = lv_function["ed_phase"], lv_function["es_phase"]
    else:
        ed, es = fourd_scene.suggest_ed_es(index_values, index_unit if index_unit == PERCENT else "")
    phases = [ed, es] if ed != es else [ed]
    labels = [f"ED {format_index(index_values[ed], index_unit)}", f"ES {format_index(index_values[es], index_unit)}"]
    return phases, labels[: len(phases)]


def show_phase_views(scene, volume_sequence, text: str = "", orientation: str = ORIENTATIONS[0], segmentation_sequence=None,
                     lv_function: dict | None = None) -> viewing.MultiPhaseView:
    """Show the phases ``view_phases`` chooses side by side, with linked views."""
    unit = volume_sequence.GetIndexUnit() or ""
    phases, labels = view_phases(fourd_scene.index_values(volume_sequence), unit, text, lv_function)
    return viewing.show_phases(scene, volume_sequence, phases, labels, segmentation_sequence, orientation)


# ---------------------------------------------------------------------------------------------- summaries


def structure_table(document: dict) -> list[str]:
    """Lines of a plain-text summary: volume per structure and phase, the QC figures and flags."""
    names = document["structures"]
    header = "phase".ljust(10) + "".join(f"{n[:14]:>16}" for n in names) + "   NCC before  NCC after  folding"
    lines = [header, " " * 10 + "".join(f"{'(ml)':>16}" for _ in names) + f"{'':>13}{'':>11}{'(%)':>9}"]
    for phase in document["phases"]:
        row = phase["label"].ljust(10) + "".join(f"{phase['structures'][n]['volume_ml']:>16.1f}" for n in names)
        qc = phase["qc"]
        row += f"{qc['ncc_before']:>13.3f}{qc['ncc_after']:>11.3f}{qc['folding_pct']:>9.3f}"
        if phase["reference"]:
            row += "  reference"
        elif qc["flags"]:
            row += "  REVIEW: " + "; ".join(qc["flags"])
        lines.append(row)
    return lines
