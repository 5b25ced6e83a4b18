"""Long work off the caller's thread: progress, cancel, result or error, with no Qt and no scene.

A face (a Slicer module widget) hands ``work(progress, cancel)`` to a :class:`BackgroundJob` and polls it from a
GUI timer; the work itself is Lib code that only reads the arrays it was given and returns a result, so the
scene is touched on the GUI thread alone. ``CardiacSuiteUI.longwork`` is the Slicer-side half (progress bar,
cancel button, error display); batch scripts and tests use this class directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .inference import CancelToken, ProgressCallback

Work = Callable[[ProgressCallback, CancelToken], Any]


class BackgroundJob:
    """One piece of work running in a worker thread.

    The worker stores only the latest progress and, at the end, the result or the exception; the caller polls
    :meth:`progress` and :meth:`done`. ``discarded`` is set when the caller no longer wants the result (the
    scene it was meant for was closed).
    """

    def __init__(self, work: Work, cancel_token: CancelToken | None = None, name: str = "CardiacSuite") -> None:
        self.cancel_token = cancel_token or CancelToken()
        self.result: Any = None
        self.error: BaseException | None = None
        self.discarded = False
        self._work = work
        self._lock = threading.Lock()
        self._progress: tuple[float, str] = (0.0, "")
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> BackgroundJob:
        self._thread.start()
        return self

    def report(self, fraction: float, message: str) -> None:
        """Progress callback handed to the work; called from the worker thread."""
        with self._lock:
            self._progress = (min(max(float(fraction), 0.0), 1.0), message)

    def progress(self) -> tuple[float, str]:
        with self._lock:
            return self._progress

    def done(self) -> bool:
        return self._finished.is_set()

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def discard(self) -> None:
        """Cancel, and mark the result as unwanted whatever it turns out to be."""
        self.discarded = True
        self.cancel()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the worker (joining releases the GIL to it); True when it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self.result = self._work(self.report, self.cancel_token)
        except BaseException as error:  # handed to the caller, which reports it
            self.error = error
        finally:
            self._finished.set()


def run_job(work: Work, cancel_token: CancelToken | None = None, progress: ProgressCallback | None = None,
            poll_s: float = 0.05) -> Any:
    """Run ``work`` in a :class:`BackgroundJob` and wait for it, forwarding progress; raise its error."""
    job = BackgroundJob(work, cancel_token).start()
    last = None
    finished = False
    while not finished:
        finished = job.wait(poll_s)
        if progress is not None and job.progress() != last:
            last = job.progress()
            progress(*last)
    if job.error is not None:
        raise job.error
    return job.result


__all__ = ["BackgroundJob", "Work", "run_job"]
