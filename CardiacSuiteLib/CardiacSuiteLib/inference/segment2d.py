"""Slice-by-slice segmentation with a registered 2D model, in the input's exact pixel grid.

Pre-processing follows the model's registry entry (intensity normalisation, crop, antialiased bilinear resize
with Pillow: ``resize``); the model's class scores are resized back bilinearly to the crop, the argmax taken
there, and the labels pasted into the original grid, so the output has exactly the input's rows, columns and
geometry. Nothing here imports torch or MONAI: an ONNX model runs without either.

Crops (``input.crop``): ``nonzero-square`` takes the largest centred square of the study's nonzero footprint;
``heart-roi`` lets the model find the heart itself: a coarse pass over the whole field of view of a few
mid-ventricular slices (spread over the phases) gives the box around the labels in ``input.roi.labels``, a second
pass on a square around that box refines it, and every slice is then segmented in a square of
``input.roi.margin`` times the box's longer side, centred on the box (moved inside the image where needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, ModelError
from . import CancelToken, ProgressCallback, report
from .backends import Backend, create_backend
from .registry import ModelEntry, ModelRegistry
from .resize import resize_slices


@dataclass(frozen=True)
class Preparation:
    """Intensity window and in-plane crop shared by every slice of one study, so all phases match."""

    low: float
    high: float
    rows: slice
    cols: slice


#: Defaults of the ``heart-roi`` crop (``input.roi`` in a registry entry overrides any of them).
HEART_ROI_DEFAULTS: dict[str, Any] = {
    "labels": [1, 2, 3],  # label values whose union is the heart
    "margin": 1.8,  # crop side = margin x the longer side of the heart box found on the mid slices
    "slices": 3,  # mid-ventricular slices (4D input) used to find the heart
    "phases": 4,  # phases (4D input), evenly spread, used to find the heart
    "refine": True,  # a second pass on a crop around the coarse box
    "min_side": 32,  # smallest crop side, pixels
    "min_pixels": 20,  # fewer heart pixels than this on the sampled slices: the heart was not found
}


def nonzero_square(images: np.ndarray) -> tuple[slice, slice]:
    """The largest square centred in the nonzero footprint of all ``images`` (last two axes rows, cols)."""
    footprint = (images > 0).reshape(-1, *images.shape[-2:]).any(axis=0)
    if not footprint.any():
        return slice(0, images.shape[-2]), slice(0, images.shape[-1])
    r = np.flatnonzero(footprint.any(axis=1))
    c = np.flatnonzero(footprint.any(axis=0))
    height, width = r[-1] - r[0] + 1, c[-1] - c[0] + 1
    side = min(height, width)
    r0 = r[0] + (height - side) // 2
    c0 = c[0] + (width - side) // 2
    return slice(int(r0), int(r0 + side)), slice(int(c0), int(c0 + side))


def square_around(box: tuple[int, int, int, int], margin: float, shape: tuple[int, int], min_side: int = 32) -> tuple[slice, slice]:
    """A square of ``margin`` x the longer side of ``box`` (r0, r1, c0, c1; ends exclusive), centred on it.

    The square is moved (not cut) to lie inside an image of ``shape`` and is never larger than its shorter side,
    so that the crop keeps the pixels square.
    """
    r0, r1, c0, c1 = box
    side = int(round(margin * max(r1 - r0, c1 - c0)))
    side = max(min(side, shape[0], shape[1]), min(min_side, shape[0], shape[1]))
    top = int(round((r0 + r1) / 2.0 - side / 2.0))
    left = int(round((c0 + c1) / 2.0 - side / 2.0))
    top = min(max(top, 0), shape[0] - side)
    left = min(max(left, 0), shape[1] - side)
    return slice(top, top + side), slice(left, left + side)


def roi_sample_slices(images: np.ndarray, slices: int = 3, phases: int = 4) -> np.ndarray:
    """The slices ``[n, rows, cols]`` the heart is looked for on.

    A cine ``[T, K, rows, cols]`` gives its ``slices`` middle slices at ``phases`` evenly spread phases; a stack
    ``[N, rows, cols]`` gives up to ``slices x phases`` slices evenly spread over its middle 40 %; one slice is itself.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 2:
        return images[np.newaxis]
    if images.ndim == 3:
        count = images.shape[0]
        chosen = np.unique(np.round(np.linspace(0.3 * (count - 1), 0.7 * (count - 1), min(count, slices * phases))))
        return images[chosen.astype(int)]
    stack = images.reshape(-1, *images.shape[-3:])
    count_t, count_k = stack.shape[:2]
    centre = count_k // 2
    first = max(0, min(centre - slices // 2, count_k - slices))
    ks = np.arange(first, min(count_k, first + slices))
    ts = np.unique(np.round(np.linspace(0, count_t - 1, min(count_t, phases)))).astype(int)
    return stack[np.ix_(ts, ks)].reshape(-1, *images.shape[-2:])


class SliceSegmenter:
    def __init__(self, entry: ModelEntry, backend: Backend, batch_size: int | None = None):
        """``batch_size``: slices per forward pass; by default the entry's ``input.batch_size``, else 4."""
        if entry.input.get("dimensions") != 2:
            raise ModelError(f"model '{entry.id}' is not a 2D slice model")
        self.entry = entry
        self.backend = backend
        self.batch_size = int(batch_size or entry.input.get("batch_size", 4))
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
        if norm.get("type", "percentile-minmax") != "percentile-minmax":
            raise ModelError(f"normalisation '{norm.get('type')}' of model '{self.entry.id}' is not supported")
        low, high = intensity_window(images, norm)
        rows, cols = slice(0, images.shape[-2]), slice(0, images.shape[-1])
        crop = self.entry.input.get("crop")
        if crop == "nonzero-square":
            rows, cols = nonzero_square(images)
        elif crop == "heart-roi":
            rows, cols = self.heart_roi(images, float(low), float(high))
        return Preparation(float(low), float(high), rows, cols)

    @property
    def roi_settings(self) -> dict[str, Any]:
        return {**HEART_ROI_DEFAULTS, **self.entry.input.get("roi", {})}

    def heart_box(self, samples: np.ndarray, low: float, high: float, rows: slice, cols: slice) -> tuple[int, int, int, int] | None:
        """Box (r0, r1, c0, c1) of the heart labels predicted on ``samples`` seen through the crop ``rows, cols``.

        The union of the heart labels over the samples is reduced to its largest connected region; None when
        fewer than ``min_pixels`` heart pixels are found.
        """
        from scipy import ndimage

        settings = self.roi_settings
        labels = self._predict(normalised(samples[:, rows, cols], low, high))
        heart = np.isin(labels, settings["labels"]).any(axis=0)
        if heart.sum() < settings["min_pixels"]:
            return None
        regions, count = ndimage.label(heart)
        if count > 1:
            heart = regions == (np.argmax(np.bincount(regions.ravel())[1:]) + 1)
        r = np.flatnonzero(heart.any(axis=1))
        c = np.flatnonzero(heart.any(axis=0))
        return rows.start + int(r[0]), rows.start + int(r[-1]) + 1, cols.start + int(c[0]), cols.start + int(c[-1]) + 1

    def heart_roi(self, images: np.ndarray, low: float, high: float) -> tuple[slice, slice]:
        """The ``heart-roi`` crop: coarse pass on the field of view, refined pass on a crop, square with margin."""
        settings = self.roi_settings
        samples = roi_sample_slices(images, settings["slices"], settings["phases"])
        shape = images.shape[-2:]
        rows, cols = nonzero_square(images)
        box = self.heart_box(samples, low, high, rows, cols)
        if box is None:  # no heart on the field of view: segment the whole of it, as nonzero-square would
            return rows, cols
        if settings["refine"]:
            rows, cols = square_around(box, settings["margin"], shape, settings["min_side"])
            box = self.heart_box(samples, low, high, rows, cols) or box
        return square_around(box, settings["margin"], shape, settings["min_side"])

    def _predict(
        self,
        cropped: np.ndarray,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        progress_span: tuple[float, float] = (0.0, 1.0),
    ) -> np.ndarray:
        """Labels ``[N, r, c]`` for normalised, cropped slices ``[N, r, c]``: resize, predict in batches, argmax at
        the crop's size; checks ``cancel`` before each batch and reports progress after it."""
        labels = np.zeros(cropped.shape, dtype=np.uint8)
        start, stop = progress_span
        for first in range(0, len(cropped), self.batch_size):
            if cancel is not None:
                cancel.raise_if_cancelled()
            batch = self.model_input(cropped[first : first + self.batch_size])[:, np.newaxis]
            labels[first : first + len(batch)] = scores_to_labels(self.backend.predict(batch), cropped.shape[1:])
            done = first + len(batch)
            report(progress, start + (stop - start) * done / len(cropped), f"segmented {done} of {len(cropped)} slices")
        return labels

    def model_input(self, cropped: np.ndarray) -> np.ndarray:
        """Normalised, cropped slices ``[N, r, c]`` resized to the model's input size ``[N, *size]`` (float32)."""
        return resize_slices(cropped, self.size)

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, C, *size]`` for ``model_input``'s slices, at the model's own resolution.

        For comparing views of the same slices (``orientation.check_view``), where resizing back is not needed.
        """
        softmax = self.entry.io.get("output_kind", "logits") != "probabilities"
        batches = []
        for first in range(0, len(inputs), self.batch_size):
            batch = np.ascontiguousarray(inputs[first : first + self.batch_size, np.newaxis])
            scores = np.asarray(self.backend.predict(batch), dtype=np.float32)
            if softmax:
                scores = np.exp(scores - scores.max(axis=1, keepdims=True))
                scores /= scores.sum(axis=1, keepdims=True)
            batches.append(scores)
        return np.concatenate(batches)

    def segment(
        self,
        slices: np.ndarray,
        preparation: Preparation | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        progress_span: tuple[float, float] = (0.0, 1.0),
    ) -> np.ndarray:
        """Label map ``[N, rows, cols]`` (uint8) for a stack of 2D slices ``[N, rows, cols]``."""
        slices = np.asarray(slices, dtype=np.float32)
        if slices.ndim != 3:
            raise InputError(f"expected a stack of 2D slices, got an array of shape {slices.shape}")
        prep = preparation or self.prepare(slices)
        labels = np.zeros(slices.shape, dtype=np.uint8)
        cropped = normalised(slices[:, prep.rows, prep.cols], prep.low, prep.high)
        labels[:, prep.rows, prep.cols] = self._predict(cropped, progress, cancel, progress_span)
        return labels


def intensity_window(images: np.ndarray, normalisation: dict) -> tuple[float, float]:
    """The ``percentile-minmax`` window (low, high) of a registry entry's ``input.normalisation`` over ``images``."""
    values = images[images > 0] if normalisation.get("nonzero", True) else images.ravel()
    if values.size == 0:
        raise InputError("the image is empty (every pixel is zero or negative): nothing to segment")
    low, high = np.percentile(values, [normalisation.get("lower", 0.0), normalisation.get("upper", 100.0)])
    return float(low), float(high if high > low else low + 1.0)


def normalised(images: np.ndarray, low: float, high: float) -> np.ndarray:
    """Intensities mapped to [0, 1] by the window ``low``-``high`` that ``SliceSegmenter.prepare`` chose."""
    return np.clip((images - low) / (high - low), 0.0, 1.0)


def scores_to_labels(scores: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels ``[N, *shape]`` from the model's per-class scores ``[N, C, r, c]``.

    The scores (logits or probabilities) are resized bilinearly to the crop's own size before the argmax, so
    that boundaries fall between the model's pixels instead of on its coarser grid, as with resizing the labels.
    """
    if tuple(scores.shape[-2:]) != tuple(shape):
        scores = resize_slices(scores, shape)
    return np.asarray(scores).argmax(axis=1).astype(np.uint8)


def keep_largest_components(labels: np.ndarray, values: list[int]) -> np.ndarray:
    """For each label value, only its largest connected component (faces touching, in 2D or 3D); the rest become 0.

    SciPy's labelling, as MONAI's ``KeepLargestConnectedComponent(independent=True, connectivity=1)`` does it, at
    a fraction of its time and without importing MONAI; the caller's label map is left as it was (and returned
    itself when none of ``values`` is in it).
    """
    from scipy import ndimage

    chosen = np.isin(labels, values)
    if not chosen.any():
        return labels
    # Only the box around the chosen labels is searched: the heart is a small part of the field of view.
    box = ndimage.find_objects(chosen.astype(np.uint8))[0]
    kept = np.array(labels, copy=True)
    inside, structure = kept[box], ndimage.generate_binary_structure(labels.ndim, 1)
    for value in values:
        components, count = ndimage.label(inside == value, structure=structure)
        if count > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            inside[(components > 0) & (components != int(sizes.argmax()))] = 0
    return kept
