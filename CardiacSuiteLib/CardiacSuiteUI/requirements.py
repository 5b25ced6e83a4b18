"""Python packages a module needs inside Slicer, installed on first use after asking, never at import time."""

from __future__ import annotations

from pathlib import Path

from slicer.i18n import tr as _

import CardiacSuiteLib
from CardiacSuiteLib.errors import CardiacSuiteError

# Shipped with Slicer (or, for torch, by the PyTorch extension); never installed or replaced by CardiacSuite.
SLICER_PROVIDED_PACKAGES = ["torch", "numpy", "scipy", "SimpleITK", "vtk", "pillow"]
REQUIREMENTS_FILE = Path(CardiacSuiteLib.__file__).parent / "Resources" / "requirements.txt"


def ensurePythonRequirements(moduleTitle: str, backend: str = "") -> bool:
    """Make sure the packages in CardiacSuiteLib/Resources/requirements.txt (and torch for a torch model) are there.

    ``slicer.packaging.pip_ensure`` does nothing when they are installed and skips installation in testing mode.
    torch comes from the PyTorch extension, which picks the build that matches this computer's GPU. Raises
    CardiacSuiteError when a package is missing and cannot be installed or the user declines; True otherwise.
    """
    if backend == "torch":
        _ensureTorch()

    import slicer.packaging

    requirements = slicer.packaging.load_requirements(REQUIREMENTS_FILE)
    try:
        slicer.packaging.pip_ensure(requirements, skip_packages=SLICER_PROVIDED_PACKAGES, requester="CardiacSuite")
    except RuntimeError as error:  # the user declined the installation
        names = ", ".join(requirement.name for requirement in requirements)
        raise CardiacSuiteError(
            _("{module} needs these Python packages: {names}. They were not installed ({reason}).").format(
                module=moduleTitle, names=names, reason=error
            )
        ) from None
    return True


def _ensureTorch() -> None:
    try:
        import PyTorchUtils
    except ModuleNotFoundError:
        raise CardiacSuiteError(
            _("This model needs the PyTorch extension. Install 'PyTorch' from the Extensions Manager and restart Slicer.")
        ) from None
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    if not torchLogic.torchInstalled():
        if torchLogic.installTorch(askConfirmation=True) is None:
            raise CardiacSuiteError(_("This model needs PyTorch, which was not installed."))
