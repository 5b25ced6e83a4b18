"""The model selector of a module that runs a registered model: the task's models, the chosen one, its download.

Weights are never downloaded without asking: ``ensureAvailable`` asks first, then downloads through the module's
``LongWork`` (progress shown, GUI responsive) and calls back when the model can run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from slicer.i18n import tr as _

import slicer

from CardiacSuiteLib.errors import CardiacSuiteError
from CardiacSuiteLib.inference.registry import ModelRegistry


class ModelChooser:
    """Fills a combo box with the task's models (default first) and describes the chosen one in a label."""

    def __init__(self, title: str, task: str, selector, infoLabel, onChosen: Callable[[str], None]) -> None:
        self.title = title
        self.task = task
        self.selector = selector
        self.infoLabel = infoLabel
        self.onChosen = onChosen
        self._registry: Optional[ModelRegistry] = None
        self.selector.connect("currentIndexChanged(int)", self._onIndexChanged)

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            self._registry = ModelRegistry.default()
        return self._registry

    @property
    def count(self) -> int:
        return self.selector.count

    def entry(self, modelId: str = ""):
        """The registry entry of ``modelId``, or the task's default model when it is empty."""
        return self.registry.get(modelId or None, task=self.task)

    def populate(self) -> None:
        wasBlocked = self.selector.blockSignals(True)
        self.selector.clear()
        try:
            entries = self.registry.choices(self.task)
        except CardiacSuiteError as error:
            entries = []
            self.infoLabel.text = _("The model registry cannot be read: {error}").format(error=error)
        for entry in entries:
            self.selector.addItem(f"{entry.title} (v{entry.version})", entry.id)
        self.selector.blockSignals(wasBlocked)
        self._describe()

    def show(self, modelId: str) -> None:
        """Select ``modelId`` (a parameter-node value); an id this installation does not know shows the default."""
        if self.selector.count == 0:
            return
        index = self.selector.findData(modelId) if modelId else 0
        index = max(index, 0)
        if index != self.selector.currentIndex:
            wasBlocked = self.selector.blockSignals(True)
            self.selector.currentIndex = index
            self.selector.blockSignals(wasBlocked)
            self._describe()

    def ensureAvailable(self, entry, longWork, then: Callable[[], None]) -> None:
        """Call ``then`` now when the weights are here; else ask, download in the background, then call it."""
        if self.registry.available(entry):
            then()
            return
        size = f"{entry.file_size / 1e6:.0f} MB" if entry.file_size else _("unknown size")
        question = _(
            "The model '{title}' ({id} {version}, {size}) is not installed.\n\n"
            "Download it now from its registered source? Its checksum is verified before use.\n\nLicence: {licence}"
        ).format(title=entry.title, id=entry.id, version=entry.version, size=size, licence=entry.licence)
        if not slicer.util.confirmOkCancelDisplay(question, windowTitle=self.title):
            longWork.setStatus(_("The model is not installed; nothing was run."))
            return

        def downloaded(result=None) -> None:
            self._describe()
            then()

        longWork.start(
            lambda progress, cancel: self.registry.install(entry, allow_download=True, progress=progress),
            onSuccess=downloaded,
            message=_("Downloading the model {id} {version}...").format(id=entry.id, version=entry.version),
            failureMessage=_("The model could not be downloaded."),
            cancellable=False,
        )

    def _onIndexChanged(self, index: int) -> None:
        if index >= 0:
            self.onChosen(self.selector.itemData(index) or "")
        self._describe()

    def _describe(self) -> None:
        modelId = self.selector.currentData
        if not modelId:
            return
        entry = self.entry(modelId)
        installed = _("installed") if self.registry.is_installed(entry) else _("not installed yet")
        self.infoLabel.text = _("{id} {version} ({backend}); licence: {licence}; {installed}").format(
            id=entry.id, version=entry.version, backend=entry.backend, licence=entry.licence, installed=installed
        )
        self.selector.toolTip = entry.title
