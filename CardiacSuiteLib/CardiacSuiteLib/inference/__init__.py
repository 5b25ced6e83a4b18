"""One inference library for every AI task: registry, cache, backends, MONAI pre/post-processing.

Heavy packages (onnxruntime, torch, MONAI) are imported inside the functions that need them, so importing
this package is cheap and works where they are not installed yet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..errors import Cancelled

ProgressCallback = Callable[[float, str], None]


class CancelToken:
    """Shared between the caller and a long operation; the operation checks it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user; nothing was added to the scene")


def report(progress: ProgressCallback | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


__all__ = ["CancelToken", "Cancelled", "ProgressCallback", "report"]
