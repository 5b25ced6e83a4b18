"""Slice-by-slice segmentation with a registered 2D model, in the input's exact pixel grid.

Pre-processing follows the model's registry entry (intensity normalisation, crop, resize), done with MONAI
transforms; the label map is resized back with nearest-neighbour interpolation and pasted into the original
grid, so the output has exactly the input's rows, columns and geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, ModelError
from . import CancelToken, ProgressCallback, report
from .backends import Backend, create_backend
from .registry import ModelEntry, ModelRegistry


@dataclass(frozen=True)
class Preparation:
    """Intensity window and in-plane crop shared by every slice of one study, so all phases match."""

    low: float
    high: float
    rows: slice
    cols: slice


class SliceSegmenter:
    def __init__(self, entry: ModelEntry, backend: Backend, batch_size: int = 4):
        if entry.input.get("dimensions") != 2:
            raise ModelError(f"model '{entry.id}' is not a 2D slice model")
        self.entry = entry
        self.backend = backend
        self.batch_size = batch_size
        self.size = tuple(entry.input.get("size", (256, 256)))

    @classmethod
    def from_registry(
        cls,
        registry: ModelRegistry,
        model_id: str | None,
        task: str,
        device: str = "auto",
        allow_download: bool = False,
    ) -> SliceSegmenter:
        entry = registry.get(model_id, task=task)
        path = registry.resolve(entry, allow_download=allow_download)
        return cls(entry, create_backend(entry, path, device))

    @property
    def device(self) -> str:
        return self.backend.device

    def prepare(self, images: np.ndarray) -> Preparation:
        """Intensity window and crop from all the study's pixels (any shape whose last two axes are rows, cols)."""
        images = np.asarray(images, dtype=np.float32)
        norm = self.entry.input.get("normalisation", {})
        values = images[images > 0] if norm.get("nonzero", True) else images.ravel()
        if values.size == 0:
            raise InputError("the image is empty (every pixel is zero or negative): nothing to segment")
        if norm.get("type", "percentile-minmax") != "percentile-minmax":
            raise ModelError(f"normalisation '{norm.get('type')}' of model '{self.entry.id}' is not supported")
        low, high = np.percentile(values, [norm.get("lower", 0.0), norm.get("upper", 100.0)])
        if high <= low:
            high = low + 1.0
        rows, cols = slice(0, images.shape[-2]), slice(0, images.shape[-1])
        if self.entry.input.get("crop") == "nonzero-square":
            footprint = (images > 0).reshape(-1, *images.shape[-2:]).any(axis=0)
            r = np.flatnonzero(footprint.any(axis=1))
            c = np.flatnonzero(footprint.any(axis=0))
            height, width = r[-1] - r[0] + 1, c[-1] - c[0] + 1
            side = min(height, width)
            r0 = r[0] + (height - side) // 2
            c0 = c[0] + (width - side) // 2
            rows, cols = slice(int(r0), int(r0 + side)), slice(int(c0), int(c0 + side))
        return Preparation(float(low), float(high), rows, cols)

    def segment(
        self,
        slices: np.ndarray,
        preparation: Preparation | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        progress_span: tuple[float, float] = (0.0, 1.0),
    ) -> np.ndarray:
        """Label map ``[N, rows, cols]`` (uint8) for a stack of 2D slices ``[N, rows, cols]``."""
        from monai.transforms import Resize

        slices = np.asarray(slices, dtype=np.float32)
        if slices.ndim != 3:
            raise InputError(f"expected a stack of 2D slices, got an array of shape {slices.shape}")
        prep = preparation or self.prepare(slices)
        scaled = np.clip((slices - prep.low) / (prep.high - prep.low), 0.0, 1.0)
        cropped = scaled[:, prep.rows, prep.cols]
        side = cropped.shape[1:]
        to_model = Resize(spatial_size=self.size, mode="bilinear", anti_aliasing=True)
        to_image = Resize(spatial_size=side, mode="nearest-exact")
        labels = np.zeros(slices.shape, dtype=np.uint8)
        start, stop = progress_span
        for first in range(0, len(slices), self.batch_size):
            if cancel is not None:
                cancel.raise_if_cancelled()
            chunk = cropped[first : first + self.batch_size]
            batch = np.asarray(to_model(chunk), dtype=np.float32)[:, np.newaxis]
            scores = self.backend.predict(batch)
            predicted = scores.argmax(axis=1).astype(np.float32)
            restored = np.asarray(to_image(predicted)).round().astype(np.uint8)
            labels[first : first + len(chunk), prep.rows, prep.cols] = restored
            done = min(first + self.batch_size, len(slices))
            report(progress, start + (stop - start) * done / len(slices), f"segmented {done} of {len(slices)} slices")
        return labels


def keep_largest_components(labels: np.ndarray, values: list[int]) -> np.ndarray:
    """Keep, for each label value, only its largest 3D connected component (MONAI's post-processing)."""
    from monai.transforms import KeepLargestConnectedComponent

    present = [value for value in values if (labels == value).any()]
    if not present:
        return labels
    transform = KeepLargestConnectedComponent(applied_labels=present, independent=True, connectivity=1)
    # MONAI edits a numpy input in place: give it a copy so that the caller's label map is left as it was.
    return np.asarray(transform(labels[np.newaxis].copy()))[0].astype(labels.dtype)
