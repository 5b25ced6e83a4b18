"""The FourDCT jobs as the module and the command line run them: propagate, summarise, file under the study.

``propagate_in_scene`` is what the Slicer module's Apply does (inputs are scene nodes, results become scene
nodes); the command line reads files into a ``PhaseStack`` and calls ``propagation.propagate`` and
``results_document`` itself, so that a long study is never loaded into a scene whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from CardiacSuiteLib.errors import InputError

from . import scene as fourd_scene
from .phases import PhaseStack
from .propagation import Propagation, PropagationSettings, Segment, propagate

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


def parse_reference_phase(text: str | int, stack: PhaseStack) -> int:
    """'3' is the fourth phase (0-based position); '75%' or '350ms' is the phase with that index value."""
    if isinstance(text, int):
        position = text
    else:
        text = str(text).strip()
        match = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*(%|ms)", text)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            if unit != stack.index_unit:
                raise InputError(
                    f"reference phase '{text}' is in {unit}, but the phases are indexed by "
                    f"{stack.index_name} ({stack.index_unit or 'no unit'}); give a position 0 to {stack.count - 1}"
                )
            matches = [n for n, v in enumerate(stack.index_values) if abs(v - value) < 1e-6]
            if not matches:
                listing = ", ".join(stack.index_label(n) for n in range(stack.count))
                raise InputError(f"no phase at {text}; the phases are {listing}")
            return matches[0]
        try:
            position = int(text)
        except ValueError:
            raise InputError(
                f"reference phase '{text}' is neither a position (0 to {stack.count - 1}) nor a value like '75%'"
            ) from None
    if not 0 <= position < stack.count:
        raise InputError(f"reference phase {position} is not one of the {stack.count} phases (0 to {stack.count - 1})")
    return position


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


@dataclass
class InScene:
    propagation: Propagation
    nodes: fourd_scene.PropagationNodes
    results: dict
    case_node: object


def propagate_in_scene(
    scene,
    volume_sequence,
    segmentation_node,
    reference_phase: int,
    settings: PropagationSettings | None = None,
    progress: Callable[[float, str], None] | None = None,
    cancel=None,
    browser=None,
    case=None,
    name: str | None = None,
) -> InScene:
    """Propagate a reference segmentation through a volume sequence that is in the scene.

    Nothing is added to the scene when it fails or is cancelled (the reference-grid helper node is removed).
    """
    from CardiacSuiteLib.case import CardiacCase

    stack = fourd_scene.phases_from_sequence(volume_sequence)
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
    try:
        result = propagate(stack, reference_phase, labels, segments, settings, progress, cancel)
    except ValueError as error:
        raise InputError(str(error)) from None
    name = name or volume_sequence.GetName()
    if browser is None:
        browser = _browser_of(scene, volume_sequence)
    nodes = fourd_scene.add_propagation(scene, result, stack, name, browser)
    results = results_document(result, stack)
    if case is None:
        case = CardiacCase.get_or_create(scene, f"{name} study")
    case.set_reference(fourd_scene.Role.VOLUME_SEQUENCE, volume_sequence)
    if nodes.browser is not None:
        case.set_reference(fourd_scene.Role.BROWSER, nodes.browser)
    case.set_reference(fourd_scene.Role.SEGMENTATION_SEQUENCE, nodes.segmentation_sequence)
    case.set_reference(fourd_scene.Role.TRANSFORM_SEQUENCE, nodes.transform_sequence)
    case.set_reference(fourd_scene.Role.TABLE, nodes.table)
    case.set_reference(fourd_scene.Role.REFERENCE_SEGMENTATION, segmentation_node)
    if "lv_function" in results:
        case.set_value("CT4DFunction", results["lv_function"])
    return InScene(result, nodes, results, case.node)


def _browser_of(scene, sequence):
    """The first browser whose master (or synchronised) sequence is ``sequence``, or None."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(index, "vtkMRMLSequenceBrowserNode")
        if browser.GetAttribute("FourDCT.ViewBrowser"):
            continue
        if browser.IsSynchronizedSequenceNode(sequence, True):
            return browser
    return None


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


def lv_volume_curve(document: dict) -> np.ndarray | None:
    function = document.get("lv_function")
    if function is None:
        return None
    name = function["structure"]
    return np.array([p["structures"][name]["volume_ml"] for p in document["phases"]])
