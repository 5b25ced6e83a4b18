"""ECG-gated multi-phase (4D) cardiac CT: find the phases in a DICOM folder and put them in cardiac order.

Scanners store a 4D CT in two ways: one series per reconstructed phase (the usual export of Siemens, Canon and
Philips), or one series whose images repeat every slice position once per phase (enhanced multi-frame CT, and
some GE exports). The phase of an image is taken, in this order, from:

1. ``NominalPercentageOfCardiacPhase`` (0020,9241), top level or in the per-frame cardiac synchronisation
   macro (GE, enhanced CT);
2. a percentage written in ``SeriesDescription`` or ``ImageComments`` ('… 75%', '75 %'; Siemens, Canon,
   Philips): one per series, a range such as '0-90%' is ignored;
3. ``TriggerTime`` / ``NominalCardiacTriggerDelayTime`` (ms after the R wave): per series the median, since
   retrospective reconstructions give every slice its own beat;
4. ``TemporalPositionIdentifier`` / ``TemporalPositionIndex``.

The phase percentage, when known, is the sequence index. Duplicate phases, missing phases (a gap in evenly
stepped percentages, or fewer phases than ``NumberOfTemporalPositions``) and phases that do not share one grid
are errors with a message that names them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import geometry
from .discovery import DicomScan, FrameRecord, SeriesSummary, scan_folder, summarise_records

PERCENT_KEY = "NominalPercentageOfCardiacPhase"
TEXT_PERCENT_KEY = "phase percentage in SeriesDescription/ImageComments"
TRIGGER_KEY = "TriggerTime"
TEMPORAL_KEY = "TemporalPositionIdentifier"

_PERCENT = re.compile(r"(?<![\d.\-])(\d{1,3}(?:\.\d+)?)\s*%")
_RANGE = re.compile(r"\d+(?:\.\d+)?\s*%?\s*-\s*\d+(?:\.\d+)?\s*%")


@dataclass
class CardiacPhase:
    """One phase: its value in the cardiac cycle and the images that make its volume."""

    value: float  # % of the R-R interval, ms after the R wave, or a temporal position
    summary: SeriesSummary  # the phase's images, readable with ``read_series``
    series_description: str = ""
    series_number: int | None = None

    @property
    def records(self) -> list[FrameRecord]:
        return self.summary.records


@dataclass
class CardiacPhases:
    """The phases of a 4D CT in cardiac order, and how they were ordered."""

    phases: list[CardiacPhase]
    key: str  # which header value ordered them (one of the *_KEY names)
    index_name: str  # sequence index: 'cardiac phase', 'time' or 'phase'
    index_unit: str  # '%', 'ms' or ''
    single_series: bool  # True when one series held every phase
    folder: Path
    info: dict = field(default_factory=dict)  # series-level header values of the first phase
    warnings: list[str] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        return [p.value for p in self.phases]

    def label(self, index: int) -> str:
        value = self.phases[index].value
        return f"{value:g} {self.index_unit}".rstrip()


def text_percentage(*texts: str) -> float | None:
    """The one phase percentage written in these texts ('Cardiac 0.75 B26f 75%' → 75); None if none or ambiguous."""
    found: set[float] = set()
    for text in texts:
        if not text:
            continue
        cleaned = _RANGE.sub(" ", text)
        found.update(float(m.group(1)) for m in _PERCENT.finditer(cleaned) if 0.0 <= float(m.group(1)) <= 100.0)
    return found.pop() if len(found) == 1 else None


def find_cardiac_phases(
    folder: str | os.PathLike | DicomScan, series_uid: str | None = None, allow_missing: bool = False
) -> CardiacPhases:
    """The 4D CT in a DICOM folder (or an existing scan), phases ordered; InputError for what cannot be used."""
    scan = folder if isinstance(folder, DicomScan) else scan_folder(Path(folder), merge_stacks=False)
    if not scan.series:
        from .series import _nothing_loadable

        raise InputError(_nothing_loadable(scan))
    volumes = [s for s in scan.series if s.num_positions >= 2 or s.num_phases >= 2]
    if series_uid:
        chosen = scan.find(series_uid)
        if chosen is None:
            listing = "; ".join(s.describe() for s in scan.series)
            raise InputError(f"{scan.folder}: no series with UID {series_uid}; series found: {listing}")
        if chosen.num_phases >= 2:
            return _single_series_phases(chosen, scan.folder, allow_missing)
        volumes = [s for s in volumes if s.num_phases == 1 and _group_key(s) == _group_key(chosen)]
    groups: dict[tuple, list[SeriesSummary]] = {}
    for summary in volumes:
        if summary.num_phases == 1:
            groups.setdefault(_group_key(summary), []).append(summary)
    candidates: list[tuple[str, object]] = [("series", s) for s in volumes if s.num_phases >= 2]
    candidates += [("group", g) for g in groups.values() if len(g) >= 2]
    if len(candidates) == 1:
        kind, found = candidates[0]
        if kind == "series":
            return _single_series_phases(found, scan.folder, allow_missing)
        return _series_per_phase(found, scan.folder, allow_missing)
    if not candidates:
        if len(volumes) == 1:
            raise InputError(
                f"{scan.folder}: one CT volume ({volumes[0].describe()}) and no other phases; a 4D CT needs the "
                "volumes of several cardiac phases (export every phase of the ECG-gated reconstruction)"
            )
        raise InputError(
            f"{scan.folder}: no set of volumes that share a study, frame of reference and pixel grid; a 4D CT needs "
            "the volumes of several cardiac phases of one acquisition"
        )
    listing = "; ".join(
        f"[{n + 1}] " + (found.describe() if kind == "series" else f"{len(found)} series like {_name(found[0])} (e.g. UID {found[0].uid})")
        for n, (kind, found) in enumerate(candidates)
    )
    raise InputError(
        f"{scan.folder} holds {len(candidates)} separate multi-phase acquisitions: {listing}. Choose the acquisition "
        "to load by the series UID of one of its series"
    )


def _group_key(summary: SeriesSummary) -> tuple:
    first = summary.records[0]
    orientation = tuple(round(v, 3) for v in first.orientation) if first.orientation else None
    return (
        summary.study_uid,
        str(summary.info.get("FrameOfReferenceUID", "")),
        summary.modality,
        orientation,
        first.rows,
        first.columns,
    )


def _name(summary: SeriesSummary) -> str:
    number = f"series {summary.series_number} " if summary.series_number is not None else ""
    return f"{number}'{summary.description or summary.uid}'"


def _series_per_phase(group: list[SeriesSummary], folder: Path, allow_missing: bool) -> CardiacPhases:
    """One series per phase: each series gets one value, and the series are ordered by it."""
    values: list[float | None]
    key = None
    warnings: list[str] = []
    percent = [_constant([r.nominal_percentage for r in s.records]) for s in group]
    if all(v is not None for v in percent):
        key, values = PERCENT_KEY, percent
    else:
        texts = [text_percentage(s.description, *{r.image_comments for r in s.records}) for s in group]
        if all(v is not None for v in texts):
            key, values = TEXT_PERCENT_KEY, texts
        else:
            triggers = [_median([r.trigger_time for r in s.records]) for s in group]
            if all(v is not None for v in triggers):
                key, values = TRIGGER_KEY, triggers
            else:
                temporal = [_constant([r.temporal_position for r in s.records]) for s in group]
                if all(v is not None for v in temporal):
                    key, values = TEMPORAL_KEY, temporal
    if key is None:
        listing = ", ".join(_name(s) for s in group[:6])
        raise InputError(
            f"{folder}: {len(group)} CT series of one acquisition ({listing}) but nothing in their headers says which "
            "cardiac phase each is (no NominalPercentageOfCardiacPhase, no percentage in the series description, no "
            "TriggerTime or TemporalPositionIdentifier); export them with the phase information"
        )
    order = sorted(range(len(group)), key=lambda n: values[n])
    phases = [
        CardiacPhase(float(values[n]), group[n], group[n].description, group[n].series_number) for n in order
    ]
    index_name, unit = _index(key)
    names = [f"{_name(p.summary)}" for p in phases]
    warnings.extend(check_phase_values([p.value for p in phases], unit, names, allow_missing,
                                  _temporal_positions(group)))
    _check_geometry(phases, unit)
    if key != PERCENT_KEY:
        warnings.append(f"phases ordered by {key}")
    return CardiacPhases(phases, key, index_name, unit, False, folder, dict(group[order[0]].info), warnings)


def _single_series_phases(summary: SeriesSummary, folder: Path, allow_missing: bool) -> CardiacPhases:
    """One series holding every phase: split its images by phase."""
    records = summary.records
    key = None
    by_value: dict[float, list[FrameRecord]] = {}
    if all(r.nominal_percentage is not None for r in records):
        key = PERCENT_KEY
        for r in records:
            by_value.setdefault(float(r.nominal_percentage), []).append(r)
    elif all(r.temporal_position is not None for r in records) and len({r.temporal_position for r in records}) > 1:
        key = TEMPORAL_KEY
        for r in records:
            by_value.setdefault(float(r.temporal_position), []).append(r)
    elif all(r.trigger_time is not None for r in records) and len({r.trigger_time for r in records}) > 1:
        key = TRIGGER_KEY
        by_value = _split_by_trigger_time(records)
    if key is None:
        raise InputError(
            f"{folder}: series {_name(summary)} repeats its slice positions but nothing in the headers says which "
            "cardiac phase each image is (no NominalPercentageOfCardiacPhase, TemporalPositionIdentifier or "
            "TriggerTime); export it with the phase information"
        )
    index_name, unit = _index(key)
    phases = []
    for value in sorted(by_value):
        part = summarise_records(summary.uid, by_value[value], summary.info, len({r.path for r in by_value[value]}))
        part.folder = summary.folder
        phases.append(CardiacPhase(value, part, summary.description, summary.series_number))
    names = [f"{p.value:g} {unit}".rstrip() for p in phases]
    for phase, name in zip(phases, names):
        if phase.summary.num_phases > 1:
            raise InputError(
                f"duplicate phases: phase {name} of series {_name(summary)} holds {phase.summary.num_phases} images at "
                "one slice position; each phase needs one image per position — the series mixes two reconstructions"
            )
    warnings = check_phase_values([p.value for p in phases], unit, names, allow_missing, _temporal_positions([summary]))
    _check_geometry(phases, unit)
    if key != PERCENT_KEY:
        warnings.append(f"phases ordered by {key}")
    return CardiacPhases(phases, key, index_name, unit, True, folder, dict(summary.info), warnings)


def _split_by_trigger_time(records: list[FrameRecord]) -> dict[float, list[FrameRecord]]:
    """Per slice position, the images in trigger-time order: the n-th is phase n (value: its mean time)."""
    first = next(r for r in records if r.orientation is not None)
    row, column = geometry.orientation_vectors(first.orientation)
    labels, _ = geometry.cluster_positions(np.array([r.position for r in records]), geometry.slice_normal(row, column))
    per_slice: dict[int, list[FrameRecord]] = {}
    for label, record in zip(labels, records):
        per_slice.setdefault(int(label), []).append(record)
    counts = {len(v) for v in per_slice.values()}
    if len(counts) != 1:
        raise InputError(
            f"missing phases: slice positions hold {min(counts)} to {max(counts)} images each; every position needs one "
            "image per phase — the export may be incomplete"
        )
    ranked: dict[int, list[FrameRecord]] = {}
    for items in per_slice.values():
        for rank, record in enumerate(sorted(items, key=lambda r: r.trigger_time)):
            ranked.setdefault(rank, []).append(record)
    return {float(np.mean([r.trigger_time for r in items])): items for items in ranked.values()}


def _index(key: str) -> tuple[str, str]:
    if key in (PERCENT_KEY, TEXT_PERCENT_KEY):
        return "cardiac phase", "%"
    if key == TRIGGER_KEY:
        return "time", "ms"
    return "phase", ""


def _temporal_positions(summaries: list[SeriesSummary]) -> int | None:
    values = {r.temporal_positions for s in summaries for r in s.records if r.temporal_positions}
    return values.pop() if len(values) == 1 else None


def check_phase_values(values: list[float], unit: str, names: list[str], allow_missing: bool = False,
                       expected_count: int | None = None) -> list[str]:
    """Duplicates are always an error; missing phases (a gap in evenly stepped percentages, or fewer phases than
    the headers announce) are an error unless ``allow_missing``, and are then returned as warnings."""
    seen: dict[float, int] = {}
    for position, value in enumerate(values):
        key = round(value, 3)
        if key in seen:
            raise InputError(
                f"duplicate phases: {names[seen[key]]} and {names[position]} are both phase {value:g} {unit}".rstrip()
                + "; a 4D CT needs one volume per phase — remove the repeated reconstruction from the folder"
            )
        seen[key] = position
    problems = []
    if unit == "%" and len(values) >= 3:
        steps = np.diff(sorted(values))
        step = float(steps.min())
        multiples = steps / step
        if step > 0 and np.allclose(multiples, np.rint(multiples), atol=0.05) and np.rint(multiples).max() > 1:
            ordered = sorted(values)
            missing = [low + step * n for low, m in zip(ordered[:-1], np.rint(multiples).astype(int)) for n in range(1, m)]
            problems.append(
                "missing phases: " + ", ".join(f"{v:g} %" for v in missing)
                + f" (found {', '.join(f'{v:g}' for v in ordered)} %, every {step:g} %)"
            )
    if expected_count and len(values) < expected_count:
        problems.append(f"missing phases: the headers announce {expected_count} temporal positions, {len(values)} were found")
    if problems and not allow_missing:
        raise InputError(
            problems[0] + "; export every phase of the reconstruction, or allow missing phases "
            "to go on without them"
        )
    return problems


def _check_geometry(phases: list[CardiacPhase], unit: str) -> None:
    """Every phase must have the same orientation, pixel grid and slice positions as the first."""
    first = phases[0]
    reference = _phase_grid(first)
    for phase in phases[1:]:
        grid = _phase_grid(phase)
        name = f"{phase.value:g} {unit}".rstrip()
        first_name = f"{first.value:g} {unit}".rstrip()
        if grid is None or reference is None:
            continue
        (orientation_a, spacing_a, positions_a, size_a), (orientation_b, spacing_b, positions_b, size_b) = reference, grid
        problem = None
        if size_a != size_b:
            problem = f"{size_b[0]}×{size_b[1]} pixels against {size_a[0]}×{size_a[1]}"
        elif not geometry.same_orientation(orientation_a, orientation_b):
            problem = "a different slice orientation"
        elif not geometry.same_spacing(spacing_a, spacing_b):
            problem = f"pixel spacing {spacing_b[0]:g}×{spacing_b[1]:g} mm against {spacing_a[0]:g}×{spacing_a[1]:g} mm"
        elif len(positions_a) != len(positions_b):
            problem = f"{len(positions_b)} slices against {len(positions_a)}"
        elif np.abs(positions_a - positions_b).max() > 0.01:
            shift = float(np.abs(positions_a - positions_b).max())
            problem = f"slice positions up to {shift:.2f} mm apart"
        if problem:
            raise InputError(
                f"mixed geometry: phase {name} ({_name(phase.summary)}) has {problem} compared with phase {first_name}; "
                "all phases of a 4D CT must share one grid (reconstruct them with the same field of view and slice range)"
            )


def _phase_grid(phase: CardiacPhase):
    records = [r for r in phase.records if r.position is not None and r.orientation is not None]
    if not records or records[0].pixel_spacing is None:
        return None
    first = records[0]
    row, column = geometry.orientation_vectors(first.orientation)
    normal = geometry.slice_normal(row, column)
    positions = np.array(sorted({round(float(np.dot(r.position, normal)), 3) for r in records}))
    return first.orientation, first.pixel_spacing, positions, (first.rows, first.columns)


def _constant(values):
    present = {v for v in values if v is not None}
    return present.pop() if len(present) == 1 and None not in values else None


def _median(values):
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present and len(present) == len(values) else None


def read_phase(phase: CardiacPhase):
    """One phase's volume as an ``ImageSeries`` (one frame), read with the exact geometry of its images."""
    from .series import read_series

    return read_series(phase.summary)
