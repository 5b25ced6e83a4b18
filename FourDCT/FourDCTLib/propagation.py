"""Propagate a reference-phase segmentation to every phase of a 4D CT.

Only a box around the reference segmentation (plus a margin) is registered, on a coarser isotropic grid;
the segmentation is carried at the image's own resolution by warping each segment's signed distance map and
thresholding it at zero, which keeps surfaces smooth and sub-voxel motion visible. Phases are read one at a
time through a ``PhaseReader``, so a long, high-resolution study is never in memory whole.

Two temporal strategies:

* ``reference``: every phase is registered directly to the reference phase, each starting from the field of
  its neighbour nearer the reference (large end-systolic motion is then reached in small steps);
* ``sequential``: every phase is registered to its neighbour nearer the reference and the fields are composed,
  so each registration sees little motion but errors accumulate along the chain.

Each phase gets quality figures: image similarity of the registered reference (normalised cross-correlation
in the box, before and after), and the Jacobian determinant of the map (folding where it is not positive).
Phases whose figures stand out are flagged for review.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from CardiacSuiteLib import geometry
from CardiacSuiteLib.geometry import Box

from . import registration
from .choices import STRATEGIES
from .registration import RegistrationSettings


class PhaseReader(Protocol):
    """What propagation needs from a 4D image: the phases one at a time, on one grid."""

    @property
    def count(self) -> int: ...

    @property
    def ijk_to_ras(self) -> np.ndarray: ...

    @property
    def shape(self) -> tuple[int, int, int]: ...

    def read(self, index: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Segment:
    value: int  # label value in the reference label map
    name: str
    color: tuple[float, float, float] = (0.8, 0.8, 0.8)


@dataclass(frozen=True)
class PropagationSettings:
    registration: RegistrationSettings = RegistrationSettings()
    strategy: str = STRATEGIES[0]
    margin_mm: float = 20.0  # box around the reference segmentation that is registered
    # Review flags: a phase is flagged when its similarity after registration is a low outlier among the phases
    # (below the median by more than `ncc_outlier_mads` scaled MADs, and by at least `ncc_min_drop`), when
    # registration lowered the similarity by more than `ncc_worse_tolerance`, or when more than
    # `max_folding_pct` of the box folds.
    ncc_outlier_mads: float = 4.0
    ncc_min_drop: float = 0.02
    ncc_worse_tolerance: float = 0.005
    max_folding_pct: float = 0.1

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy '{self.strategy}'; choose one of {', '.join(STRATEGIES)}")


@dataclass
class PhaseResult:
    phase: int
    labels: np.ndarray  # uint8 on the output box grid
    field: object  # SimpleITK displacement field (LPS mm, phase grid -> reference), on the registration grid
    ncc_before: float
    ncc_after: float
    folding_pct: float  # share of registration-grid voxels where the Jacobian determinant is <= 0
    jacobian_min: float
    jacobian_max: float
    seconds: float
    flags: list[str] = field(default_factory=list)

    def qc(self) -> dict:
        return {
            "ncc_before": self.ncc_before,
            "ncc_after": self.ncc_after,
            "folding_pct": self.folding_pct,
            "jacobian_min": self.jacobian_min,
            "jacobian_max": self.jacobian_max,
            "flagged": bool(self.flags),
            "flags": list(self.flags),
        }


@dataclass
class Propagation:
    """Per-phase label maps (on ``box`` of the image grid), displacement fields and quality figures."""

    reference_phase: int
    segments: list[Segment]
    image_ijk_to_ras: np.ndarray
    box: Box
    grid_ijk_to_ras: np.ndarray  # the registration grid (finest level)
    grid_shape: tuple[int, int, int]
    settings: PropagationSettings
    phases: list[PhaseResult]
    seconds: float = 0.0

    @property
    def box_ijk_to_ras(self) -> np.ndarray:
        return self.box.ijk_to_ras(self.image_ijk_to_ras)

    def volumes_ml(self) -> dict[str, list[float]]:
        voxel = geometry.voxel_ml(self.image_ijk_to_ras)
        return {
            segment.name: [float((result.labels == segment.value).sum()) * voxel for result in self.phases]
            for segment in self.segments
        }

    @property
    def flagged_phases(self) -> list[int]:
        return [result.phase for result in self.phases if result.flags]

    def release(self) -> None:
        """Drop the per-phase label maps and fields once they are in the scene or on disk (memory)."""
        for result in self.phases:
            result.labels = None
            result.field = None

    def full_labels(self, phase: int, shape: tuple[int, int, int]) -> np.ndarray:
        """A phase's label map on the whole image grid."""
        out = np.zeros(shape, np.uint8)
        out[self.box.slices] = self.phases[phase].labels
        return out

    def displacement_ras(self, phase: int) -> np.ndarray:
        """A phase's displacement (RAS mm, ``[K, J, I, 3]`` on the registration grid), phase points to reference."""
        import SimpleITK as sitk

        lps = sitk.GetArrayFromImage(self.phases[phase].field)
        return (lps * np.array([-1.0, -1.0, 1.0])).astype(np.float32)


def phase_order(count: int, reference: int) -> list[tuple[int, int]]:
    """(phase, neighbour nearer the reference) in processing order: outward from the reference both ways
    around the cycle, each phase after the neighbour it starts from."""
    order = []
    forward = list(range(1, count // 2 + 1))
    backward = list(range(1, count - count // 2))
    for steps in range(1, max(len(forward), len(backward)) + 1):
        if steps <= len(forward):
            order.append(((reference + steps) % count, (reference + steps - 1) % count))
        if steps <= len(backward):
            order.append(((reference - steps) % count, (reference - steps + 1) % count))
    return order


@dataclass
class _SegmentDistance:
    segment: Segment
    image: object  # SimpleITK float32 signed distance (mm, negative inside), on a box of the output grid
    box: Box  # where it lies in the output box
    reach_mm: float  # how far outside the segment the map is exact


def _segment_distances(labels_box: np.ndarray, box_ijk_to_ras: np.ndarray, segments: Sequence[Segment], reach_mm: float):
    from scipy import ndimage

    spacing = geometry.spacing_kji(box_ijk_to_ras)
    out = []
    for segment in segments:
        mask = labels_box == segment.value
        if not mask.any():
            continue
        box = Box.around(mask, reach_mm, spacing)
        local = mask[box.slices]
        half = 0.5 * float(spacing.min())
        outside = ndimage.distance_transform_edt(~local, sampling=spacing)
        inside = ndimage.distance_transform_edt(local, sampling=spacing)
        distance = np.where(local, half - inside, outside - half).astype(np.float32)
        out.append(_SegmentDistance(segment, geometry.to_sitk(distance, box.ijk_to_ras(box_ijk_to_ras)), box, reach_mm))
    return out


def _warp_labels(distances: list[_SegmentDistance], field, out_shape, box_ijk_to_ras: np.ndarray, max_motion_mm: float):
    """Labels on the output box at a phase: each segment's distance map sampled through the field, < 0 inside.

    A segment is only evaluated where it can reach: its reference box grown by the largest displacement.
    Where segments overlap, the one whose surface is farthest away (most negative distance) wins.
    """
    import SimpleITK as sitk

    spacing = geometry.spacing_kji(box_ijk_to_ras)
    labels = np.zeros(out_shape, np.uint8)
    best = np.zeros(out_shape, np.float32)
    transform = sitk.DisplacementFieldTransform(sitk.Image(field))
    for item in distances:
        pad = np.ceil((max_motion_mm + 2.0 * float(spacing.max())) / spacing).astype(int)
        low = np.maximum(np.asarray(item.box.low) - pad, 0)
        high = np.minimum(np.asarray(item.box.high) + pad, out_shape)
        target = Box(tuple(int(v) for v in low), tuple(int(v) for v in high))
        grid = geometry.reference_image(target.ijk_to_ras(box_ijk_to_ras), target.shape, sitk.sitkFloat32)
        sampled = sitk.GetArrayFromImage(
            sitk.Resample(item.image, grid, transform, sitk.sitkLinear, float(item.reach_mm), sitk.sitkFloat32)
        )
        region = best[target.slices]
        take = (sampled < 0) & (sampled < region)
        region[take] = sampled[take]
        labels[target.slices][take] = item.segment.value
    return labels


def _ncc(a, b) -> float:
    import SimpleITK as sitk

    x = sitk.GetArrayViewFromImage(a).astype(np.float64).ravel()
    y = sitk.GetArrayViewFromImage(b).astype(np.float64).ravel()
    x = x - x.mean()
    y = y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def _jacobian(field) -> tuple[float, float, float]:
    """Folding (% of voxels with det <= 0), smallest and largest Jacobian determinant of ``x -> x + u(x)``."""
    import SimpleITK as sitk

    u = sitk.GetArrayViewFromImage(field).astype(np.float64)  # [K, J, I, 3], LPS components
    spacing = np.asarray(field.GetSpacing(), dtype=float)[::-1]  # along k, j, i
    direction = np.asarray(field.GetDirection(), dtype=float).reshape(3, 3)[:, ::-1]  # columns: k, j, i axes
    # d u_c / d (distance along grid axis a), then to patient axes: J = I + G Dᵀ (D orthonormal).
    gradient = np.stack([np.stack(np.gradient(u[..., c], *spacing), axis=-1) for c in range(3)], axis=-2)
    jacobian = np.eye(3) + gradient @ direction.T
    determinant = np.linalg.det(jacobian)
    return float(100.0 * (determinant <= 0).mean()), float(determinant.min()), float(determinant.max())


def _max_motion_mm(field) -> float:
    import SimpleITK as sitk

    array = sitk.GetArrayViewFromImage(field)
    return float(np.sqrt((array.astype(np.float64) ** 2).sum(axis=-1)).max()) if array.size else 0.0


def propagate(
    phases: PhaseReader,
    reference_phase: int,
    reference_labels: np.ndarray,
    segments: Sequence[Segment],
    settings: PropagationSettings | None = None,
    progress: Callable[[float, str], None] | None = None,
    cancel=None,
) -> Propagation:
    """Carry ``reference_labels`` (the reference phase's label map, on the image grid) to every phase."""
    settings = settings or PropagationSettings()
    started = time.perf_counter()
    count = phases.count
    if not 0 <= reference_phase < count:
        raise ValueError(f"reference phase {reference_phase} is not one of the {count} phases (0 to {count - 1})")
    reference_labels = np.asarray(reference_labels)
    if reference_labels.shape != tuple(phases.shape):
        raise ValueError(
            f"the reference segmentation's grid {reference_labels.shape} differs from the image's {tuple(phases.shape)}"
        )
    segments = [s for s in segments if (reference_labels == s.value).any()] or []
    if not segments:
        raise ValueError("the reference segmentation is empty at the reference phase; nothing to propagate")

    ijk_to_ras = np.asarray(phases.ijk_to_ras, dtype=float)
    spacing = geometry.spacing_kji(ijk_to_ras)
    box = Box.around(np.isin(reference_labels, [s.value for s in segments]), settings.margin_mm, spacing)
    box_ijk_to_ras = box.ijk_to_ras(ijk_to_ras)
    grid_ijk_to_ras, grid_shape = geometry.resampled_grid(box_ijk_to_ras, box.shape, settings.registration.grid_mm)
    reg = settings.registration

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(max(fraction, 0.0), 1.0), message)
        if cancel is not None:
            cancel.raise_if_cancelled()

    window = reg.window_hu
    if window is None:
        values = np.asarray(phases.read(reference_phase)[box.slices], dtype=np.float32)
        window = tuple(float(v) for v in np.percentile(values, [1.0, 99.0]))

    def prepared(index: int):
        volume = np.asarray(phases.read(index)[box.slices], dtype=np.float32)
        return registration.prepare(geometry.to_sitk(volume, box_ijk_to_ras), grid_ijk_to_ras, grid_shape, window)

    report(0.0, f"reading the reference phase {reference_phase}")
    reference_box_labels = np.ascontiguousarray(reference_labels[box.slices]).astype(np.uint8)
    distances = _segment_distances(reference_box_labels, box_ijk_to_ras, segments, reach_mm=4.0 * float(spacing.max()) + 2.0)
    moving = prepared(reference_phase)
    identity = registration.zero_field(moving)
    results: dict[int, PhaseResult] = {
        reference_phase: PhaseResult(
            reference_phase, np.where(np.isin(reference_box_labels, [s.value for s in segments]), reference_box_labels, 0).astype(np.uint8),
            identity, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0
        )
    }
    fixed_cache = {reference_phase: moving}
    order = phase_order(count, reference_phase)
    for done, (phase, neighbour) in enumerate(order):
        report(done / max(len(order), 1), f"registering phase {phase} ({done + 1} of {len(order)})")
        phase_started = time.perf_counter()
        fixed = prepared(phase)
        if settings.strategy == "reference":
            initial = results[neighbour].field if neighbour != reference_phase else None
            field_map = registration.register(fixed, moving, reg, initial)
        else:
            step = registration.register(fixed, fixed_cache[neighbour], reg, None)
            field_map = registration.compose(results[neighbour].field, step) if neighbour != reference_phase else step
        if settings.strategy == "sequential":
            fixed_cache[phase] = fixed  # registration-grid images are small (a few MB each)
        warped = registration.warp_image(moving, field_map, default=window[0])
        folding, jac_min, jac_max = _jacobian(field_map)
        labels = _warp_labels(distances, field_map, box.shape, box_ijk_to_ras, _max_motion_mm(field_map))
        results[phase] = PhaseResult(
            phase, labels, field_map, _ncc(fixed, moving), _ncc(fixed, warped), folding, jac_min, jac_max,
            time.perf_counter() - phase_started,
        )
    ordered = [results[index] for index in range(count)]
    _flag(ordered, reference_phase, settings)
    report(1.0, "propagation finished")
    return Propagation(
        reference_phase=reference_phase,
        segments=list(segments),
        image_ijk_to_ras=ijk_to_ras,
        box=box,
        grid_ijk_to_ras=grid_ijk_to_ras,
        grid_shape=grid_shape,
        settings=settings,
        phases=ordered,
        seconds=time.perf_counter() - started,
    )


def _flag(results: list[PhaseResult], reference_phase: int, settings: PropagationSettings) -> None:
    others = [r for r in results if r.phase != reference_phase]
    if not others:
        return
    after = np.array([r.ncc_after for r in others])
    median = float(np.median(after))
    mad = 1.4826 * float(np.median(np.abs(after - median)))
    threshold = median - max(settings.ncc_outlier_mads * mad, settings.ncc_min_drop)
    for result in others:
        if result.ncc_after < threshold:
            result.flags.append(
                f"image similarity after registration {result.ncc_after:.3f} is low (other phases: median {median:.3f})"
            )
        if result.ncc_after < result.ncc_before - settings.ncc_worse_tolerance:
            result.flags.append(
                f"registration lowered the image similarity ({result.ncc_before:.3f} -> {result.ncc_after:.3f})"
            )
        if result.folding_pct > settings.max_folding_pct:
            result.flags.append(f"the deformation folds in {result.folding_pct:.2f} % of the region")
