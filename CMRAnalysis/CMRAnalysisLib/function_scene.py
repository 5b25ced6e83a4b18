"""The function analysis in the MRML scene: read the cine, write the results, recompute after edits.

Results land as: a segmentation sequence (synchronised with the cine's browser when every phase was
segmented, so stepping through phases shows image and contours together), a results table, a volume-curve
table with a plot chart, an AHA segment table, RV insertion points as editable markups, with patient data a
table of indexed values against reference ranges, with a prior study of the patient a comparison table and the
prior volume curves in the same plot, and references plus the full results on the study's CardiacCase node.
``recompute_from_scene`` reads the (possibly edited) segmentations and markups back and
updates every figure, recording what the reader changed. ``workflow`` runs the whole analysis on top of this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import slicer
from CardiacSuiteLib import mrml
from CardiacSuiteLib.case import CardiacCase, Key, Role
from CardiacSuiteLib.errors import InputError

from . import prior as prior_study
from .function import LABELS, FunctionOptions, labels_digest, measure_function
from .patient import PatientInfo, assess_patient
from .prior import PriorStudy

SEGMENT_SPECS = [
    mrml.SegmentSpec(1, "Right ventricle", (0.35, 0.55, 0.95)),
    mrml.SegmentSpec(2, "Left ventricle myocardium", (0.25, 0.8, 0.35)),
    mrml.SegmentSpec(3, "Left ventricle", (0.9, 0.3, 0.25)),
]
CURVES_ROLE = Role.FUNCTION_CURVES_TABLE
PLOT_ROLE = Role.FUNCTION_CURVES_PLOT
AHA_ROLE = Role.FUNCTION_AHA_TABLE
INSERTION_ROLE = Role.RV_INSERTION_POINTS
REFERENCE_TABLE_ROLE = Role.FUNCTION_REFERENCE_TABLE
PRIOR_TABLE_ROLE = Role.FUNCTION_PRIOR_TABLE
PRIOR_CURVES_ROLE = Role.FUNCTION_PRIOR_CURVES_TABLE
RESULTS_KEY = Key.FUNCTION_RESULTS
OPTIONS_KEY = Key.FUNCTION_OPTIONS
PRIOR_KEY = Key.FUNCTION_PRIOR_STUDY
CURVE_COLUMNS = ["Phase", "Time (ms)", "LV volume (ml)", "RV volume (ml)", "LV myocardial volume (ml)"]
#: Plot colour of each ventricle's volume curve (the segment colours); a prior study's curves are dashed.
CURVE_COLORS = {CURVE_COLUMNS[2]: (0.9, 0.3, 0.25), CURVE_COLUMNS[3]: (0.35, 0.55, 0.95)}
AHA_COLUMNS = ["Segment", "Name", "Territory", "ED thickness (mm)", "ES thickness (mm)", "Thickening (%)"]
#: AHA segment table column of each value the bull's-eye can show (the keys of ``polar_map.SCALES``).
POLAR_MAP_COLUMNS = {
    "thickening_pct": AHA_COLUMNS[5],
    "ed_thickness_mm": AHA_COLUMNS[3],
    "es_thickness_mm": AHA_COLUMNS[4],
}
REFERENCE_COLUMNS = ["Measurement", "Value", "Unit", "Normal range", "z-score", "Flag", "Source or reason"]


@dataclass
class FunctionAnalysis:
    """What the analysis added to (or updated in) the scene, and its figures."""

    results: dict
    table: object
    segmentation_sequence: object
    segmentation_browser: object
    case_node: object
    curves_table: object = None
    plot_chart: object = None
    aha_table: object = None
    insertion_points: object = None
    prior_table: object = None


# ------------------------------------------------------------------------------------------------ input


def cine_from_node(input_node) -> tuple[np.ndarray, np.ndarray, list[float] | None, list[str] | None]:
    """Frames ``[T, K, J, I]``, IJK-to-RAS, frame times (ms) and index strings of a volume sequence or volume."""
    if input_node is None:
        raise InputError("no input selected: choose a short-axis cine (volume sequence) or a volume")
    if input_node.IsA("vtkMRMLSequenceNode"):
        count = input_node.GetNumberOfDataNodes()
        if count == 0:
            raise InputError(f"sequence '{input_node.GetName()}' is empty")
        first = input_node.GetNthDataNode(0)
        if not first.IsA("vtkMRMLScalarVolumeNode"):
            raise InputError(f"sequence '{input_node.GetName()}' does not hold volumes")
        geometry = mrml.ijk_to_ras(first)
        frames = []
        for index in range(count):
            item = input_node.GetNthDataNode(index)
            if not np.allclose(mrml.ijk_to_ras(item), geometry, atol=1e-3):
                raise InputError(f"phase {index} of '{input_node.GetName()}' has a different geometry from phase 0")
            frames.append(mrml.array_from_volume(item))
        if len({frame.shape for frame in frames}) != 1:
            raise InputError(f"the phases of '{input_node.GetName()}' differ in size")
        index_values = [input_node.GetNthIndexValue(i) for i in range(count)]
        times = None
        if input_node.GetIndexUnit() == "ms":
            try:
                times = [float(value) for value in index_values]
            except ValueError:
                times = None
        return np.stack(frames), geometry, times, index_values
    if input_node.IsA("vtkMRMLScalarVolumeNode"):
        return mrml.array_from_volume(input_node)[np.newaxis], mrml.ijk_to_ras(input_node), None, None
    raise InputError(f"'{input_node.GetName()}' is a {input_node.GetClassName()}, not a cine or a volume")


def browser_of(scene, sequence_node):
    """The sequence browser that shows ``sequence_node``, if any (None for no node, or one outside the scene)."""
    if sequence_node is None or sequence_node.GetScene() is None:
        return None
    browsers = scene.GetNodesByClass("vtkMRMLSequenceBrowserNode")
    for index in range(browsers.GetNumberOfItems()):
        browser = browsers.GetItemAsObject(index)
        if browser.IsSynchronizedSequenceNodeID(sequence_node.GetID(), True):
            return browser
    return None


# ------------------------------------------------------------------------------------------------ results


def add_function_results(scene, input_node, results: dict, labels: dict[int, np.ndarray], geometry, index_values, options, case=None) -> FunctionAnalysis:
    """Add the segmentations and every result node of one analysis to ``scene`` and file them under ``case``.

    Without ``case`` the study is found (or made) by the input's name.
    """
    name = input_node.GetName()
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{name} segmentation")
    if index_values is not None and input_node.IsA("vtkMRMLSequenceNode"):
        sequence.SetIndexName(input_node.GetIndexName())
        sequence.SetIndexUnit(input_node.GetIndexUnit())
        sequence.SetIndexType(input_node.GetIndexType())
    for phase in sorted(labels):
        item = slicer.vtkMRMLSegmentationNode()
        mrml.fill_segmentation_from_labelmap(item, labels[phase], geometry, SEGMENT_SPECS)
        item.SetName(f"{name} phase {phase}")
        sequence.SetDataNodeAtValue(item, index_values[phase] if index_values is not None else str(phase))
    cine_browser = browser_of(scene, input_node) if input_node.IsA("vtkMRMLSequenceNode") else None
    if cine_browser is not None and len(labels) == len(index_values or []):
        cine_browser.AddSynchronizedSequenceNode(sequence)
        browser = cine_browser
    else:
        browser = mrml.add_browser(scene, sequence, f"{name} segmentation browser")
    # Edits the reader makes on the displayed (proxy) segmentation are written back into the sequence.
    browser.SetSaveChanges(sequence, True)
    proxy = browser.GetProxyNode(sequence)
    if proxy is not None:
        proxy.SetName(f"{name} segmentation")
        proxy.CreateDefaultDisplayNodes()
        if input_node.IsA("vtkMRMLScalarVolumeNode"):
            proxy.SetReferenceImageGeometryParameterFromVolumeNode(input_node)

    if case is None:
        case = CardiacCase.get_or_create(scene, f"{name} study")
    if input_node.IsA("vtkMRMLSequenceNode"):
        case.set_reference(Role.CINE, input_node)
        if cine_browser is not None:
            case.set_reference(Role.CINE_BROWSER, cine_browser)
    elif input_node.IsA("vtkMRMLScalarVolumeNode"):
        case.set_reference(Role.CINE_VOLUME, input_node)
    case.set_reference(Role.FUNCTION_SEGMENTATION, sequence)
    case.set_reference(Role.FUNCTION_SEGMENTATION_BROWSER, browser)
    case.set_value(OPTIONS_KEY, _options_record(options))
    analysis = FunctionAnalysis(results, None, sequence, browser, case.node)
    _write_result_nodes(scene, case, name, results, analysis)
    return analysis


def _options_record(options: FunctionOptions) -> dict:
    return {
        "phases": options.phases,
        "papillary": options.papillary,
        "slice_inclusion": options.slice_inclusion,
        "rv_insertion_ras": [list(p) for p in options.rv_insertion_ras] if options.rv_insertion_ras else None,
        "territories": options.territories,
        "nominal_rr_ms": options.nominal_rr_ms,
    }


def _write_result_nodes(scene, case: CardiacCase, name: str, results: dict, analysis: FunctionAnalysis) -> None:
    """Create or refresh the table, curve, plot, AHA and markup nodes from ``results``."""
    analysis.table = _replace_table(scene, case, Role.FUNCTION_TABLE, f"{name} function", *results_table(results))
    analysis.curves_table = _replace_table(scene, case, CURVES_ROLE, f"{name} volume curves", CURVE_COLUMNS,
                                           curve_rows(results["curves"]))
    analysis.plot_chart = _volume_plot(scene, case, name, analysis.curves_table)
    if results.get("aha", {}).get("available"):
        analysis.aha_table = _replace_table(scene, case, AHA_ROLE, f"{name} AHA segments", *aha_table(results["aha"]))
        analysis.insertion_points = _insertion_markups(scene, case, name, results["aha"]["rv_insertion_points_ras"])
    case.set_value(RESULTS_KEY, results)


def _replace_table(scene, case: CardiacCase, role: str, name: str, columns, rows):
    old = case.reference(role)
    if old is not None:
        scene.RemoveNode(old)
    table = mrml.add_table(scene, name, columns, rows)
    case.set_reference(role, table)
    return table


def _remove_table(scene, case: CardiacCase, role: str) -> None:
    """The study's table of ``role`` (an earlier analysis's) out of the scene, and the reference to it."""
    old = case.reference(role)
    if old is not None:
        scene.RemoveNode(old)
    case.set_reference(role, None)


def curve_rows(curves: dict) -> list[list]:
    """Rows of :data:`CURVE_COLUMNS` from a results document's ``curves`` (phase numbers stand in for unknown times)."""
    times = curves.get("time_ms") or [float(p) for p in curves["phase"]]
    myocardium = curves.get("myocardium_ml") or [None] * len(curves["phase"])
    return [list(r) for r in zip(curves["phase"], times, curves["lv_ml"], curves["rv_ml"], myocardium)]


def _volume_plot(scene, case: CardiacCase, name: str, table):
    chart = case.reference(PLOT_ROLE)
    if chart is None:
        chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} volume curves")
        chart.SetTitle("Volume-time curves")
        chart.SetXAxisTitle(CURVE_COLUMNS[1])
        chart.SetYAxisTitle("Volume (ml)")
        case.set_reference(PLOT_ROLE, chart)
    for index in reversed(range(chart.GetNumberOfPlotSeriesNodes())):
        old = chart.GetNthPlotSeriesNode(index)
        chart.RemovePlotSeriesNodeID(old.GetID())
        scene.RemoveNode(old)
    for column, color in CURVE_COLORS.items():
        _add_curve(scene, chart, table, column, column, color)
    return chart


def _add_curve(scene, chart, table, name: str, column: str, color, dashed: bool = False) -> None:
    """One volume curve of ``table`` (time against ``column``) into ``chart``."""
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName(CURVE_COLUMNS[1])
    series.SetYColumnName(column)
    series.SetPlotType(series.PlotTypeScatter)
    series.SetMarkerStyle(series.MarkerStyleSquare if dashed else series.MarkerStyleCircle)
    if dashed:
        series.SetLineStyle(series.LineStyleDash)
    series.SetColor(*color)
    chart.AddAndObservePlotSeriesNodeID(series.GetID())


def _insertion_markups(scene, case: CardiacCase, name: str, points: dict):
    markups = case.reference(INSERTION_ROLE)
    if markups is None:
        markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{name} RV insertion points")
        markups.CreateDefaultDisplayNodes()
        case.set_reference(INSERTION_ROLE, markups)
    markups.RemoveAllControlPoints()
    for label in ("anterior", "inferior"):
        index = markups.AddControlPoint(*points[label])
        markups.SetNthControlPointLabel(index, f"{label} RV insertion")
    case.set_value(Key.RV_INSERTION_POINTS_AS_MEASURED, {k: points[k] for k in ("anterior", "inferior")})
    return markups


# ------------------------------------------------------------------------------------------------ correction loop


def recompute_from_scene(scene, case: CardiacCase, options: FunctionOptions | None = None) -> FunctionAnalysis:
    """Recompute every figure from the segmentations (and insertion points) as the reader left them.

    Phases whose labels differ from the AI's are listed under ``edited.phases``; moved insertion points are
    used and recorded. The model is not run again.
    """
    cine = case_cine(case)
    sequence = case.reference(Role.FUNCTION_SEGMENTATION)
    browser = case.reference(Role.FUNCTION_SEGMENTATION_BROWSER)
    previous = case.value(RESULTS_KEY)
    if cine is None or sequence is None or browser is None or previous is None:
        raise InputError(f"study '{case.node.GetName()}' has no function analysis to recompute: run the analysis first")
    if options is None:
        options = FunctionOptions(**case.value(OPTIONS_KEY, {}))
    started = time.perf_counter()
    frames, geometry, times, index_values = cine_from_node(cine)
    labels = read_segmentation_sequence(scene, sequence, browser, geometry, frames.shape[1:], index_values)
    # Points the reader placed stay in the options (so later recomputes keep them); a new move replaces them.
    markups = case.reference(INSERTION_ROLE)
    measured_points = case.value(Key.RV_INSERTION_POINTS_AS_MEASURED)
    if markups is not None and markups.GetNumberOfControlPoints() == 2 and measured_points:
        current = [list(markups.GetNthControlPointPositionWorld(i)) for i in range(2)]
        if not np.allclose(current, [measured_points["anterior"], measured_points["inferior"]], atol=0.01):
            options.rv_insertion_ras = (current[0], current[1])
    moved = options.rv_insertion_ras is not None
    results = measure_function(frames, labels, geometry, times, options)
    digests = previous.get("ai_label_digests", {})
    edited = [p for p in sorted(labels) if digests.get(str(p)) != labels_digest(labels[p])]
    results["model"] = previous.get("model")
    results["ai_label_digests"] = digests
    results["edited"] = {
        "phases": edited,
        "rv_insertion_points_moved": moved,
        "note": "figures recomputed from the reader's contours" if edited or moved else "no edits found",
    }
    results["timing_s"] = {"measurement": time.perf_counter() - started}
    case.set_value(OPTIONS_KEY, _options_record(options))
    analysis = FunctionAnalysis(results, None, sequence, browser, case.node)
    _write_result_nodes(scene, case, cine.GetName(), results, analysis)
    return analysis


def read_segmentation_sequence(scene, sequence, browser, geometry, shape, index_values) -> dict[int, np.ndarray]:
    """Label maps (1 RV, 2 myocardium, 3 LV) of every item, on the cine's grid, keyed by cine phase index.

    The items are read from the sequence itself, which holds the reader's edits (the browser saves changes
    made on the displayed segmentation back into it).
    """
    reference = mrml.add_volume(scene, np.zeros(shape, np.uint8), geometry, "function segmentation reference grid")
    values = {spec.name: spec.value for spec in SEGMENT_SPECS}
    labels = {}
    # Sequence items live outside the scene; an in-scene copy exports with the scene's colour tables.
    copy = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "function segmentation item")
    try:
        for item in range(sequence.GetNumberOfDataNodes()):
            value = sequence.GetNthIndexValue(item)
            phase = index_values.index(value) if index_values is not None and value in index_values else int(value)
            copy.Copy(sequence.GetNthDataNode(item))
            labels[phase] = mrml.labelmap_from_segmentation(copy, reference, values)
    finally:
        scene.RemoveNode(copy)
        scene.RemoveNode(reference)
    return labels


# ------------------------------------------------------------------------------------------------ tables


def _fmt(value, digits: int = 1) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"


def results_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Rows of (measurement, LV, RV, unit); method choices are in the results' ``method``."""
    lv, rv = results["lv"], results["rv"]
    rows = [
        ["End-diastolic volume", _fmt(lv["edv_ml"]), _fmt(rv["edv_ml"]), "ml"],
        ["End-systolic volume", _fmt(lv["esv_ml"]), _fmt(rv["esv_ml"]), "ml"],
        ["Stroke volume", _fmt(lv.get("sv_ml")), _fmt(rv.get("sv_ml")), "ml"],
        ["Ejection fraction", _fmt(lv.get("ef_pct")), _fmt(rv.get("ef_pct")), "%"],
        ["Cardiac output", _fmt(lv.get("co_l_min"), 2), _fmt(rv.get("co_l_min"), 2), "l/min"],
        ["Peak ejection rate", _fmt(lv.get("per_ml_s"), 0), _fmt(rv.get("per_ml_s"), 0), "ml/s"],
        ["Peak filling rate", _fmt(lv.get("pfr_ml_s"), 0), _fmt(rv.get("pfr_ml_s"), 0), "ml/s"],
        ["Myocardial volume (ED)", _fmt(lv.get("myocardium_ed_ml")), "", "ml"],
        ["Myocardial mass (ED, 1.05 g/ml)", _fmt(lv.get("mass_g")), "", "g"],
        ["End-diastolic phase", str(lv["ed_phase"]), str(rv["ed_phase"]), "index"],
        ["End-systolic phase", str(lv["es_phase"]), str(rv["es_phase"]), "index"],
        ["Heart rate", _fmt(results.get("hr_bpm"), 0), "", "bpm"],
    ]
    return ["Measurement", "LV", "RV", "Unit"], rows


def aha_table(aha_results: dict) -> tuple[list[str], list[list[str]]]:
    """Rows of (segment, name, territory, ED and ES wall thickness, systolic thickening)."""
    columns = list(AHA_COLUMNS)
    rows = []
    for number, segment in aha_results["segments"].items():
        rows.append(
            [number, segment["name"], segment["territory"] or "", _fmt(segment["ed_thickness_mm"]),
             _fmt(segment["es_thickness_mm"]), _fmt(segment["thickening_pct"])]
        )
    return columns, rows


def reference_table_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Rows (all text) of the body surface area, the cardiac indices and each value against its reference."""
    rows = []
    if results.get("bsa_m2") is not None:
        formula = results.get("bsa_formula") or {}
        rows.append(["Body surface area", _fmt(results["bsa_m2"], 2), "m2", "", "", "",
                     f"{formula.get('name', '')}: {formula.get('equation', '')}"])
    for ventricle in ("lv", "rv"):
        cardiac_index = (results.get(ventricle) or {}).get("ci_l_min_m2")
        if cardiac_index is not None:
            rows.append([f"{ventricle.upper()} cardiac index", _fmt(cardiac_index, 2), "l/min/m2", "", "", "", ""])
    for item in (results.get("reference") or {}).get("parameters", {}).values():
        reference = item.get("reference")
        normal_range = ""
        source = item.get("reason") or ""
        if reference:
            normal_range = f"{_fmt(reference.get('lower'))} - {_fmt(reference.get('upper'))}"
            source = (reference.get("source") or {}).get("citation") or ""
        if item.get("note"):
            source = f"{source}; {item['note']}" if source else item["note"]
        z_score = item.get("z_score")
        rows.append([
            item.get("label", item.get("parameter", "")),
            _fmt(item.get("value")),
            item.get("unit") or "",
            normal_range,
            "" if z_score is None else f"{z_score:+.1f}",
            item.get("flag") or "",
            source,
        ])
    return list(REFERENCE_COLUMNS), rows


def add_patient_assessment(scene, analysis: FunctionAnalysis, patient: PatientInfo | None) -> None:
    """BSA, indexed values and reference flags into the results, and the reference-values table (or none).

    The table of an earlier analysis of the study is replaced, or removed when there are no patient data now.
    """
    case = CardiacCase(analysis.case_node)
    if patient is None:
        _remove_table(scene, case, REFERENCE_TABLE_ROLE)
        return
    assess_patient(analysis.results, patient)
    case.set_value(RESULTS_KEY, analysis.results)
    _replace_table(scene, case, REFERENCE_TABLE_ROLE, f"{_study_name(analysis)} reference values",
                   *reference_table_rows(analysis.results))


def add_prior_comparison(scene, analysis: FunctionAnalysis, prior: PriorStudy | None) -> None:
    """A prior study beside this one: the results' ``prior`` block, a comparison table, the prior volume curves
    (dashed) in the study's plot chart, and the prior kept on the study so that a recompute compares again.

    Without a prior, the comparison of an earlier analysis of the study is removed.
    """
    case = CardiacCase(analysis.case_node)
    if prior is None:
        for role in (PRIOR_TABLE_ROLE, PRIOR_CURVES_ROLE):
            _remove_table(scene, case, role)
        if case.node.GetParameter(PRIOR_KEY):
            case.node.UnsetParameter(PRIOR_KEY)
        return
    block = prior_study.compare(analysis.results, prior)
    analysis.results["prior"] = block
    case.set_value(RESULTS_KEY, analysis.results)
    case.set_value(PRIOR_KEY, prior.record())
    name = _study_name(analysis)
    analysis.prior_table = _replace_table(scene, case, PRIOR_TABLE_ROLE, f"{name} prior study comparison",
                                          *prior_study.comparison_rows(block))
    curves = _replace_table(scene, case, PRIOR_CURVES_ROLE, f"{name} prior study volume curves", CURVE_COLUMNS,
                            curve_rows(block["curves"]["prior"]))
    when = prior_study.study_date(block["prior_study"])
    suffix = f", prior {when.isoformat()}" if when else ", prior"
    if analysis.plot_chart is not None:
        for column, color in CURVE_COLORS.items():
            _add_curve(scene, analysis.plot_chart, curves, column + suffix, column, color, dashed=True)


def stored_prior(case: CardiacCase) -> PriorStudy | None:
    """The prior study the study's results were last compared with, or None."""
    record = case.value(PRIOR_KEY)
    return PriorStudy.from_record(record) if record else None


def _study_name(analysis: FunctionAnalysis) -> str:
    return analysis.table.GetName().removesuffix(" function") if analysis.table is not None else "CMR"


def case_cine(case: CardiacCase):
    """The cine (volume sequence) or single volume the study's function analysis was made on, or None."""
    return case.reference(Role.CINE) or case.reference(Role.CINE_VOLUME)


__all__ = [
    "FunctionAnalysis", "LABELS", "add_function_results", "add_patient_assessment", "add_prior_comparison", "case_cine",
    "cine_from_node", "curve_rows", "read_segmentation_sequence", "recompute_from_scene", "reference_table_rows",
    "results_table", "stored_prior",
]
