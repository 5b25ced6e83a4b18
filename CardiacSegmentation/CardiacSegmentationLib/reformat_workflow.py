"""CT to short and long axis for LV function: the one workflow behind ``cardiacsuite ct-reformat`` and the
module's ``reformatLV``.

1. ``open_ct``: a 3D CT or any 4D input (``image4d.open_4d``) as a ``PhaseStack`` (one phase for a 3D CT).
2. ``lv_labels``: the heart labels per phase. The reference phase (end diastole by default) comes from a given
   segmentation or from CardiacSegmentation's own automatic pipeline; for a 4D CT the other phases either carry
   it with FourDCT's propagation (``propagate``, the default: the more accurate on the 4D phantom, see
   Docs/CTReformat.md) or are each segmented on their own (``segment``). FourDCT's propagated LV volume curve
   is kept either way, for the comparison. The LV cavity of every phase is then re-decided by intensity
   (``lv_function.refine_cavity``).
3. ``reformat_phases``: the long axis (found, or given), the short-axis stack and the 2-, 3- and 4-chamber planes
   of every phase, the LV function by short-axis slice summation and by voxel count, and the comparison.

Everything runs on a box around the heart (30 mm margin), one phase at a time; nothing here touches a scene.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from CardiacSuiteLib.errors import InputError
from CardiacSuiteLib.geometry import Box, Grid, spacing_kji

from . import lv_function, reformat
from .presets import PHASE_METHODS, PLANES
from .reformat import LongAxis, PlaneSet
from .structures import HEART_STRUCTURES

ProgressCallback = Callable[[float, str], None]
HEART_MARGIN_MM = 30.0
LONG_AXIS_LINE = "LV long axis"
# Segment names (lower case, punctuation as spaces) that mean each MM-WHS structure, beyond the full names.
SEGMENT_ALIASES = {
    "lv": 3, "lv cavity": 3, "lv blood pool": 3, "left ventricle blood pool": 3, "left ventricular cavity": 3,
    "myo": 1, "myocardium": 1, "lv myocardium": 1, "left ventricular myocardium": 1,
    "la": 2, "rv": 5, "ra": 4, "ao": 6, "pa": 7,
}


@dataclass
class ReformatSettings:
    """The choices that change the figures; each is recorded in the results."""

    slice_mm: float = 8.0
    pixel_mm: float = 1.25
    phases_method: str = PHASE_METHODS[0]
    reference_phase: int | None = None  # None: end diastole as FourDCT suggests it (nearest 0 % of R-R)
    long_axis: LongAxis | None = None  # None: found from the reference phase's labels
    atlas_path: str | None = None

    def validate(self) -> None:
        if self.phases_method not in PHASE_METHODS:
            raise InputError(f"the phases method must be one of {', '.join(PHASE_METHODS)}, not '{self.phases_method}'")
        if not 2.0 <= self.slice_mm <= 20.0:
            raise InputError(f"the short-axis slice spacing must be 2-20 mm, not {self.slice_mm:g} mm")
        if not 0.3 <= self.pixel_mm <= 3.0:
            raise InputError(f"the reformat pixel size must be 0.3-3 mm, not {self.pixel_mm:g} mm")


@dataclass
class HeartLabels:
    """Per-phase heart labels (MM-WHS values) on a box around the heart, and where they came from."""

    box: Box
    ijk_to_ras: np.ndarray  # of the box
    reference_phase: int
    labels: list[np.ndarray]
    method: dict
    fourdct_lv_ml: list[float] | None = None
    refinement: list[dict] = field(default_factory=list)


@dataclass
class Reformatted:
    """The reformatted study: geometry, images and labels per phase ([T, K, J, I]), and the results document."""

    axis: LongAxis
    planes: PlaneSet
    short_axis_grid: Grid
    short_axis_images: np.ndarray  # int16 HU
    short_axis_labels: np.ndarray  # uint8, MM-WHS values
    long_axis_grids: dict[str, Grid]
    long_axis_images: dict[str, np.ndarray]
    long_axis_labels: dict[str, np.ndarray]
    index_values: list[float]
    index_name: str
    index_unit: str
    results: dict


# ---------------------------------------------------------------------------------------------- input


def open_ct(inputs, series_uid: str | None = None, allow_missing: bool = False,
            progress: ProgressCallback | None = None):
    """A 3D CT (DICOM folder or file, NRRD, NIfTI) or a 4D CT (DICOM, .seq.nrrd, 4D NIfTI, one file per phase)
    as a ``PhaseStack``; a 2D image or a non-CT series is refused."""
    from CardiacSuiteLib.image4d import ArrayPhases, open_4d
    from CardiacSuiteLib.imageio import is_seq_nrrd, read_image_input

    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    first = Path(paths[0])
    sequence = first.name.lower().endswith((".nrrd", ".nhdr")) and first.is_file() and is_seq_nrrd(first)
    if len(paths) == 1 and first.is_file() and not sequence:
        series = read_image_input(paths[0], series_uid)
        stack = ArrayPhases.from_series(series) if series.is_dynamic else ArrayPhases(
            series.frames, series.ijk_to_ras, None, index_name="phase", name=series.name, source=series.source)
        stack.metadata = dict(series.metadata, Modality=series.modality)
        stack.warnings = list(series.warnings)
    elif len(paths) == 1 and first.is_dir():
        try:
            stack = open_4d(paths[0], allow_missing, series_uid, progress=progress)
        except InputError as four_d:
            try:
                series = read_image_input(paths[0], series_uid)
            except InputError:
                raise four_d from None
            stack = ArrayPhases(series.frames[:1], series.ijk_to_ras, None, index_name="phase", name=series.name,
                                source=series.source)
            stack.metadata = dict(series.metadata, Modality=series.modality)
    else:
        stack = open_4d(paths if len(paths) > 1 else paths[0], allow_missing, series_uid, progress=progress)
    if len(stack.shape) != 3 or min(stack.shape) < 8:
        raise InputError(
            f"{paths[0]}: the image is {' x '.join(str(n) for n in stack.shape[::-1])} voxels; the LV axis and the"
            " short-axis reformat need a 3D CT covering the heart (at least 8 slices)"
        )
    return stack


def default_reference_phase(stack) -> int:
    """End diastole as FourDCT suggests it without volumes: the phase nearest 0 % of R-R (else the first)."""
    from FourDCTLib.scene import suggest_ed_es

    return suggest_ed_es(stack.index_values, stack.index_unit)[0] if stack.count > 1 else 0


# ---------------------------------------------------------------------------------------------- labels


def segment_value(name: str) -> int | None:
    """The MM-WHS label value a segment name means (full CardiacSegmentation names or short ones such as LV)."""
    import re

    cleaned = re.sub(r"[_\-.]+", " ", name).strip().lower()
    for structure in HEART_STRUCTURES:
        if cleaned == structure.name.lower():
            return structure.value
    return SEGMENT_ALIASES.get(cleaned)


def labels_from_segmentation(segmentation_node, reference_volume, what: str = "") -> np.ndarray:
    """A heart segmentation node as MM-WHS labels on the reference volume's grid; segments matched by name."""
    from CardiacSuiteLib import mrml

    segmentation = segmentation_node.GetSegmentation()
    names = [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]
    values = {name: segment_value(name) for name in names if segment_value(name) is not None}
    if reformat.LEFT_VENTRICLE not in values.values():
        raise InputError(
            f"{what or segmentation_node.GetName()}: no segment is the left ventricle (segments:"
            f" {', '.join(names) or 'none'}); name the LV blood pool 'Left ventricle' or 'LV'"
        )
    return mrml.labelmap_from_segmentation(segmentation_node, reference_volume, values)


def _segment(image: np.ndarray, ijk_to_ras: np.ndarray, atlas_path: str | None, modality: str = "",
             progress: ProgressCallback | None = None) -> np.ndarray:
    from .pipeline import check_image, segment_heart

    check_image(image, modality)
    return segment_heart(image, ijk_to_ras, "auto", atlas_path=atlas_path, progress=progress).labels


def _step(progress: ProgressCallback | None, low: float, high: float) -> ProgressCallback | None:
    if progress is None:
        return None
    return lambda fraction, message: progress(low + (high - low) * fraction, message)


def lv_labels(stack, settings: ReformatSettings, reference_labels: np.ndarray | None = None,
              progress: ProgressCallback | None = None) -> HeartLabels:
    """The heart labels of every phase on a box around the heart (see the module docstring)."""
    from FourDCTLib.propagation import PropagationSettings, Segment, propagate

    settings.validate()
    reference = default_reference_phase(stack) if settings.reference_phase is None else settings.reference_phase
    if not 0 <= reference < stack.count:
        raise InputError(f"reference phase {reference} is not one of the {stack.count} phases (0 to {stack.count - 1})")
    modality = str(stack.metadata.get("Modality", ""))
    method: dict = {"reference_phase": stack.index_label(reference)}
    if reference_labels is None:
        reference_labels = _segment(stack.read(reference), stack.ijk_to_ras, settings.atlas_path, modality,
                                    _step(progress, 0.0, 0.3))
        method["reference"] = "CardiacSegmentation automatic (atlas + intensity model) on the reference phase"
    else:
        if reference_labels.shape != stack.shape:
            raise InputError(f"the segmentation's grid {reference_labels.shape[::-1]} is not the CT's {stack.shape[::-1]}")
        method["reference"] = "the given segmentation, on the reference phase"
    reformat.check_lv(reference_labels, stack.ijk_to_ras)
    box = Box.around(reference_labels > 0, HEART_MARGIN_MM, spacing_kji(stack.ijk_to_ras))
    full = [None] * stack.count
    full[reference] = reference_labels
    fourdct = None
    if stack.count > 1:
        segments = [Segment(s.value, s.name) for s in HEART_STRUCTURES]
        propagation = propagate(stack, reference, reference_labels, segments, PropagationSettings(),
                                _step(progress, 0.3, 0.7))
        fourdct = propagation.volumes_ml()["Left ventricle"]
        if settings.phases_method == "propagate":
            for index, phase in enumerate(propagation.phases):
                if index != reference:
                    labels = np.zeros(stack.shape, np.uint8)
                    labels[propagation.box.slices] = phase.labels
                    full[index] = labels
            method["phases"] = ("reference labels carried to every phase by FourDCT's propagation (demons,"
                                " reference strategy, 2 mm grid)")
        else:
            for index in range(stack.count):
                if index != reference:
                    if progress is not None:
                        progress(0.7 + 0.2 * index / stack.count, f"segmenting phase {stack.index_label(index)}")
                    full[index] = _segment(stack.read(index), stack.ijk_to_ras, settings.atlas_path, modality)
            method["phases"] = "every phase segmented on its own by CardiacSegmentation's automatic pipeline"
    labels, records = [], []
    for index in range(stack.count):
        refined, record = lv_function.refine_cavity(stack.read(index)[box.slices].astype(np.float32),
                                                    full[index][box.slices])
        labels.append(refined)
        records.append(record)
        full[index] = None
    return HeartLabels(box, box.ijk_to_ras(stack.ijk_to_ras), reference, labels, method, fourdct, records)


# ---------------------------------------------------------------------------------------------- reformat


def _lv_extent(labels: list[np.ndarray]) -> np.ndarray:
    """The LV (cavity or myocardium) of any phase, as one label map: the stack must cover it at every phase."""
    union = np.zeros(labels[0].shape, bool)
    for phase in labels:
        union |= (phase == reformat.LEFT_VENTRICLE) | (phase == reformat.LV_MYOCARDIUM)
    extent = np.where(union, reformat.LEFT_VENTRICLE, 0).astype(np.uint8)
    extent[(labels[0] == reformat.RIGHT_VENTRICLE) & ~union] = reformat.RIGHT_VENTRICLE
    return extent


def _as_int16(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16)


def reformat_phases(stack, heart: HeartLabels, settings: ReformatSettings,
                    progress: ProgressCallback | None = None) -> Reformatted:
    """Long axis, short-axis stack and long-axis planes of every phase, and the LV function figures."""
    started = time.perf_counter()
    matrix = heart.ijk_to_ras
    reference_labels = heart.labels[heart.reference_phase]
    axis = settings.long_axis or reformat.find_long_axis(reference_labels, matrix)
    planes = reformat.plane_set(reference_labels, matrix, axis)
    sax = reformat.short_axis_grid(planes, reference_labels, matrix, settings.slice_mm, settings.pixel_mm,
                                   extent_labels=_lv_extent(heart.labels))
    long_grids = {plane: reformat.long_axis_grid(planes, plane, settings.pixel_mm) for plane in PLANES}
    count = stack.count
    sax_images = np.empty((count, *sax.shape), np.int16)
    sax_labels = np.empty((count, *sax.shape), np.uint8)
    long_images = {p: np.empty((count, *g.shape), np.int16) for p, g in long_grids.items()}
    long_labels = {p: np.empty((count, *g.shape), np.uint8) for p, g in long_grids.items()}
    voxel_curve, slab_areas = [], []
    for index in range(count):
        if progress is not None:
            progress(index / count, f"reformatting phase {stack.index_label(index)}")
        image = stack.read(index)[heart.box.slices].astype(np.float32)
        labels = heart.labels[index]
        sax_images[index] = _as_int16(reformat.reformat_image(image, matrix, sax, slab_mm=settings.slice_mm))
        sax_labels[index] = reformat.reformat_labels(labels, matrix, sax)
        for plane, grid in long_grids.items():
            long_images[plane][index] = _as_int16(reformat.reformat_image(image, matrix, grid))
            long_labels[plane][index] = reformat.reformat_labels(labels, matrix, grid)
        voxel_curve.append(lv_function.voxel_volume_ml(labels, matrix))
        slab_areas.append(lv_function.slab_areas_mm2(labels, matrix, sax))
    times = stack.index_values if stack.index_unit == "ms" else None
    function = lv_function.short_axis_function(sax_images.astype(np.float32), dict(enumerate(sax_labels)),
                                               sax.ijk_to_ras, times)
    labels_text = [stack.index_label(n) for n in range(count)]
    results = _results(stack, heart, settings, axis, planes, sax, long_grids, function, voxel_curve, slab_areas,
                       labels_text)
    results["timing_s"] = {"reformat_and_measure": round(time.perf_counter() - started, 2)}
    return Reformatted(axis, planes, sax, sax_images, sax_labels, long_grids, long_images, long_labels,
                       list(stack.index_values), stack.index_name, stack.index_unit, results)


def _grid_record(grid: Grid) -> dict:
    return {"shape_ijk": list(grid.shape[::-1]), "spacing_mm": [round(float(v), 4) for v in grid.spacing_kji[::-1]],
            "ijk_to_ras": np.round(grid.ijk_to_ras, 5).tolist()}


def _results(stack, heart: HeartLabels, settings: ReformatSettings, axis: LongAxis, planes: PlaneSet, sax: Grid,
             long_grids: dict[str, Grid], function: dict, voxel_curve: list[float], slab_areas: list[np.ndarray],
             labels: list[str]) -> dict:
    sax_curve = [lv_function.summed_volume_ml(areas, sax) for areas in slab_areas]
    short_axis = lv_function.ejection(sax_curve)
    voxel = lv_function.ejection(voxel_curve)
    centre = {key: function["lv"][key] for key in ("edv_ml", "esv_ml", "sv_ml", "ef_pct", "ed_phase", "es_phase")}
    centre["mass_g"] = function["lv"]["mass_g"]
    document = {
        "phases": [
            {"position": n, "label": labels[n], "index_value": stack.index_values[n],
             "lv_volume_ml": {"short_axis_summation": round(float(sax_curve[n]), 2),
                              "voxel_count": round(float(voxel_curve[n]), 2),
                              "short_axis_centre_planes": round(float(function["curves"]["lv_ml"][n]), 2)},
             "short_axis_area_mm2": [round(float(a), 1) for a in slab_areas[n]],
             "cavity_threshold_hu": heart.refinement[n].get("threshold_hu")}
            for n in range(stack.count)
        ],
        "lv_function": {
            "short_axis_summation": {**short_axis, "method": lv_function.SAX_METHOD},
            "voxel_count": {**voxel, "method": lv_function.VOXEL_METHOD},
            "short_axis_centre_planes": {**centre, "method": lv_function.CENTRE_PLANE_METHOD},
        },
        "long_axis": axis.as_dict(),
        "landmarks": planes.landmarks,
        "short_axis": {**_grid_record(sax), "slice_spacing_mm": settings.slice_mm,
                       "slab": f"each slice is the mean CT over its {settings.slice_mm:g} mm slab; labels at its centre"},
        "long_axis_planes": {
            plane: {**_grid_record(grid), "contains": {"2CH": "the long axis, perpendicular to the 4-chamber plane",
                                                       "3CH": "the long axis and the aortic valve centre",
                                                       "4CH": "the long axis and the RV centre"}[plane]}
            for plane, grid in long_grids.items()
        },
        "cmr_function": function,
        "method": {**heart.method, "cavity": lv_function.CAVITY_METHOD,
                   "phases_method": settings.phases_method if stack.count > 1 else "single phase"},
        "cavity_refinement": heart.refinement,
        "units": {"volume_ml": "ml", "ef_pct": "%", "mass_g": "g", "spacing_mm": "mm", "length_mm": "mm",
                  "ras_mm": "mm (RAS)", "threshold_hu": "HU"},
    }
    for entry in document["lv_function"].values():
        entry["ed_label"], entry["es_label"] = labels[entry["ed_phase"]], labels[entry["es_phase"]]
    if heart.fourdct_lv_ml is not None:
        document["fourdct_comparison"] = lv_function.compare_curves(sax_curve, heart.fourdct_lv_ml, labels)
        document["fourdct_comparison"]["fourdct_method"] = (
            "FourDCT propagation of the reference labels (demons, reference strategy, 2 mm grid), LV voxel count"
            " without the intensity re-decision")
    return document


def run_ct_reformat(stack, settings: ReformatSettings | None = None, reference_labels: np.ndarray | None = None,
                    progress: ProgressCallback | None = None) -> tuple[HeartLabels, Reformatted]:
    """``lv_labels`` then ``reformat_phases``, with the time each took."""
    settings = settings or ReformatSettings()
    started = time.perf_counter()
    heart = lv_labels(stack, settings, reference_labels, _step(progress, 0.0, 0.85))
    labelled = time.perf_counter()
    result = reformat_phases(stack, heart, settings, _step(progress, 0.85, 1.0))
    result.results["timing_s"]["labels"] = round(labelled - started, 2)
    return heart, result


# ---------------------------------------------------------------------------------------------- scene


def add_long_axis_line(scene, axis: LongAxis):
    """The long axis as a markups line (base, then apex) that a reader can move and run the reformat again with."""
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", LONG_AXIS_LINE)
    for label, point in (("base", axis.base), ("apex", axis.apex)):
        index = line.AddControlPointWorld(*[float(v) for v in point])
        line.SetNthControlPointLabel(index, label)
    return line


def add_to_scene(scene, result: Reformatted, name: str) -> dict:
    """The reformatted volumes (volume sequences with a browser for several phases) and the long-axis line."""
    from CardiacSuiteLib import mrml

    def add(images: np.ndarray, grid: Grid, title: str):
        if images.shape[0] == 1:
            return mrml.add_volume(scene, images[0], grid.ijk_to_ras, title)
        return mrml.add_volume_sequence(scene, list(images), grid.ijk_to_ras, result.index_values, title,
                                        result.index_name, result.index_unit)[0]

    nodes = {"SAX": add(result.short_axis_images, result.short_axis_grid, f"{name} short axis")}
    for plane in PLANES:
        nodes[plane] = add(result.long_axis_images[plane], result.long_axis_grids[plane], f"{name} {plane}")
    nodes["long_axis"] = add_long_axis_line(scene, result.axis)
    return nodes


def summary_lines(results: dict) -> list[str]:
    """What a reader is told of a reformat: the axis, the short-axis stack, the LV function by each method."""
    axis = results["long_axis"]
    short = results["short_axis"]
    lines = [
        f"LV long axis ({axis['source']}): base {axis['base_ras_mm']} mm, apex {axis['apex_ras_mm']} mm (RAS),"
        f" length {axis['length_mm']:.1f} mm",
        f"short axis: {short['shape_ijk'][2]} slices {short['slice_spacing_mm']:g} mm apart,"
        f" {short['spacing_mm'][0]:g} mm pixels",
    ]
    for key, title in (("short_axis_summation", "short-axis slice summation"), ("voxel_count", "voxel count")):
        f = results["lv_function"][key]
        if f["ef_pct"] is None:
            lines.append(f"LV volume ({title}): {f['edv_ml']:.1f} ml (one phase: no ejection fraction)")
        else:
            lines.append(f"LV ({title}): EDV {f['edv_ml']:.1f} ml at {f['ed_label']}, ESV {f['esv_ml']:.1f} ml at"
                         f" {f['es_label']}, SV {f['sv_ml']:.1f} ml, EF {f['ef_pct']:.1f} %")
    comparison = results.get("fourdct_comparison")
    if comparison is not None:
        lines.append(f"FourDCT propagated LV: EF {comparison['fourdct']['ef_pct']:.1f} %; mean |short axis - FourDCT|"
                     f" {comparison['mean_absolute_difference_ml']:.1f} ml per phase")
    return lines
