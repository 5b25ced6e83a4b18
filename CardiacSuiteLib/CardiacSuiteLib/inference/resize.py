"""Slice resizing for the 2D pipeline with Pillow instead of torch and MONAI.

An ONNX model then runs without importing torch or MONAI at all, which is most of a cold start's seconds on a
small CPU. Pillow's bilinear filter widens its support when it shrinks an image (antialiasing), which is what
``torch.nn.functional.interpolate(..., antialias=True)`` reproduces and what the fast model was trained with.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_slices(slices: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float32 ``[..., rows, cols]`` resized bilinearly to ``size`` (rows, cols), antialiased when shrinking."""
    slices = np.asarray(slices, dtype=np.float32)
    rows, cols = (int(n) for n in size)
    if slices.shape[-2:] == (rows, cols):
        return slices.copy()
    flat = slices.reshape(-1, *slices.shape[-2:])
    out = np.empty((len(flat), rows, cols), np.float32)
    for index, image in enumerate(flat):
        out[index] = np.asarray(Image.fromarray(image, mode="F").resize((cols, rows), Image.Resampling.BILINEAR))
    return out.reshape(*slices.shape[:-2], rows, cols)

