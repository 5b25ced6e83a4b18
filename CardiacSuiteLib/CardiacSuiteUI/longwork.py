"""One way for every module widget to run long work: progress bar, cancel button, errors shown, GUI responsive.

The work is a Lib function ``work(progress, cancel)`` that never touches Qt or the scene. It runs in a
``CardiacSuiteLib.jobs.BackgroundJob`` thread; a GUI timer polls it, waiting on the worker a few milliseconds
each time so that the worker gets the interpreter (joining releases the GIL), shows its progress, and, when it
ends, hands the result to ``onSuccess`` on the GUI thread, which adds it to the scene. A cancelled job adds
nothing; an error is shown as one line (a ``CardiacSuiteError``) or with its traceback in the details (anything
else), and logged.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any, Optional

import qt

import slicer
from slicer.i18n import tr as _

from CardiacSuiteLib.errors import Cancelled, CardiacSuiteError
from CardiacSuiteLib.inference import CancelToken
from CardiacSuiteLib.jobs import BackgroundJob, Work

POLL_INTERVAL_MS = 50
# Each poll waits this long on the worker; the GUI thread is busy only for this share of the time.
WORKER_TIME_PER_POLL_S = 0.025


class LongWork:
    """Runs one job at a time for a module widget and drives its progress bar, cancel button and status label.

    ``title`` is the window title of error messages (the module's name). ``lockedWidgets`` are disabled while a
    job runs (the inputs and options), so the user cannot change what the job is computing.
    """

    def __init__(self, title: str, progressBar, cancelButton=None, statusLabel=None,
                 lockedWidgets: Optional[list] = None, onStateChanged: Optional[Callable[[], None]] = None) -> None:
        self.title = title
        self.progressBar = progressBar
        self.cancelButton = cancelButton
        self.statusLabel = statusLabel
        self.lockedWidgets = list(lockedWidgets or [])
        self.onStateChanged = onStateChanged
        self._job: Optional[BackgroundJob] = None
        self._onSuccess: Optional[Callable[[Any], None]] = None
        self._failureMessage = ""
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._poll)
        if self.cancelButton is not None:
            self.cancelButton.connect("clicked(bool)", lambda checked=False: self.cancel())
        self._show(False)

    @property
    def running(self) -> bool:
        return self._job is not None

    def start(self, work: Work, onSuccess: Callable[[Any], None], message: str = "",
              failureMessage: str = "", cancellable: bool = True) -> bool:
        """Start ``work`` in a worker thread; ``onSuccess(result)`` runs on the GUI thread when it ends well."""
        if self._job is not None:
            return False
        self._onSuccess = onSuccess
        self._failureMessage = failureMessage or _("{title} failed.").format(title=self.title)
        self._job = BackgroundJob(work, CancelToken(), name=self.title)
        self._show(True, cancellable)
        self.setStatus(message)
        self._job.start()
        self._timer.start()
        return True

    def runOnGuiThread(self, message: str, step: Callable[[], Any]) -> Any:
        """A short step that must touch the scene (reading inputs, writing results), with a wait cursor.

        ``CardiacSuiteError`` is shown as one line and ``None`` returned; anything else propagates.
        """
        self.setStatus(message)
        slicer.app.processEvents()  # show the message before the step blocks
        try:
            with slicer.util.WaitCursor():
                return step()
        except CardiacSuiteError as error:
            self._reportError(error)
            return None

    def cancel(self) -> None:
        """Ask the work to stop at its next check; nothing it made reaches the scene."""
        if self._job is None:
            return
        self._job.cancel()
        if self.cancelButton is not None:
            self.cancelButton.enabled = False
        self.setStatus(_("Cancelling..."))

    def discard(self) -> None:
        """The scene the work was meant for is closing: stop it and never use its result."""
        if self._job is not None:
            self._job.discard()

    def stop(self, timeoutS: float = 10.0) -> None:
        """Discard and wait for the worker (module cleanup)."""
        self._timer.stop()
        job = self._job
        if job is not None:
            job.discard()
            if not job.wait(timeoutS):
                logging.warning(f"{self.title}: the worker did not stop within {timeoutS:.0f} s")
        self._job = None

    def setStatus(self, text: str) -> None:
        if self.statusLabel is not None:
            self.statusLabel.text = text
        if text:
            logging.info(f"{self.title}: {text}")

    def _poll(self) -> None:
        job = self._job
        if job is None:
            self._timer.stop()
            return
        job.wait(WORKER_TIME_PER_POLL_S)
        fraction, message = job.progress()
        if not job.discarded and self.progressBar is not None:
            self.progressBar.value = int(round(100.0 * fraction))
            self.progressBar.format = "%p%  " + message.replace("%", "%%")
        if not job.done():
            return
        self._timer.stop()
        job.wait()
        self._job = None
        self._show(False)
        if job.discarded:
            logging.info(f"{self.title}: the scene was closed; the result was discarded")
            return
        if isinstance(job.error, Cancelled):
            self.setStatus(_("Cancelled: nothing was added to the scene."))
            return
        if job.error is not None:
            self._reportError(job.error)
            return
        try:
            with slicer.util.tryWithErrorDisplay(_("The results could not be added to the scene."), waitCursor=True):
                try:
                    self._onSuccess(job.result)
                except CardiacSuiteError as error:
                    self._reportError(error)
        finally:
            self._changed()

    def _reportError(self, error: BaseException) -> None:
        if isinstance(error, CardiacSuiteError):
            self.setStatus(str(error))
            slicer.util.errorDisplay(str(error), windowTitle=self.title)
            return
        details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        logging.error(f"{self.title} failed:\n{details}")
        self.setStatus(_("Failed: {error}").format(error=error))
        slicer.util.errorDisplay(f"{self._failureMessage}\n\n{error}", windowTitle=self.title, detailedText=details)

    def _show(self, running: bool, cancellable: bool = True) -> None:
        if self.progressBar is not None:
            self.progressBar.value = 0
            self.progressBar.format = "%p%"
            self.progressBar.visible = running
        if self.cancelButton is not None:
            self.cancelButton.visible = running and cancellable
            self.cancelButton.enabled = running and cancellable
        for widget in self.lockedWidgets:
            widget.enabled = not running
        if running:
            self.setStatus("")
        self._changed()

    def _changed(self) -> None:
        if self.onStateChanged is not None:
            self.onStateChanged()
