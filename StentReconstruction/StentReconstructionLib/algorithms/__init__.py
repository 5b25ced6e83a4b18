"""The device reconstruction algorithms, in the order they are run and shown: A, B, C.

Each turns the same ``Region`` into a ``Reconstruction`` described in the same terms, so the score and the
measurements treat them alike; they differ in how they find the strut centres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..model import CannotReconstruct, Reconstruction, Region
from . import model_fit, threshold, tracing


@dataclass(frozen=True)
class Algorithm:
    """One reconstruction method as the module lists it."""

    id: str
    name: str
    description: str
    run: Callable[[Region], Reconstruction]


ALGORITHMS: dict[str, Algorithm] = {
    "A": Algorithm(
        "A", "threshold with blooming correction",
        "Metal above the threshold; the strut centre on each radial ray at the midpoint of its half-maximum "
        "crossings (undoing the blooming); axis from circle fits per station; iso-surface of the metal.",
        threshold.run),
    "B": Algorithm(
        "B", "wire tracing",
        "Skeleton of the metal as a wire graph, spurs pruned, wires refined to the intensity centroid across "
        "them; node degrees checked against the design, gaps and loose ends counted; wires shown as tubes.",
        tracing.run),
    "C": Algorithm(
        "C", "model-based tube fit",
        "A smooth tapered, mildly elliptical tube fitted by robust least squares to the HU-weighted metal voxels "
        "(blooming is symmetric about the strut centre); closed tube surface.",
        model_fit.run),
}


def run_algorithm(algorithm_id: str, region: Region) -> Reconstruction:
    """Run one algorithm by its id; ``CannotReconstruct`` says why when it cannot give a result."""
    if algorithm_id not in ALGORITHMS:
        raise ValueError(f"unknown algorithm '{algorithm_id}'; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algorithm_id].run(region)


__all__ = ["Algorithm", "ALGORITHMS", "run_algorithm", "CannotReconstruct"]
