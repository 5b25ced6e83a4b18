"""The extension's module list, read from the one place it is written: the top-level CMakeLists.txt.

Slicer builds the extension from the ``add_subdirectory(...)`` lines there (the shared library first, then each
scripted module). Headless development needs the same list to install the Lib packages (setup.py) and to put
each module folder on ``sys.path`` as Slicer does (the Makefile's ``.pth`` file); both ask this file.

    python Utilities/extension_modules.py          # print the folders, one per line
    python Utilities/extension_modules.py --pth    # write cardiacsuite-modules.pth into this Python's site-packages
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = "CardiacSuiteLib"
_ADD_SUBDIRECTORY = re.compile(r"^\s*add_subdirectory\(\s*([A-Za-z0-9_]+)\s*\)", re.MULTILINE)


def extension_folders(root: Path = ROOT) -> list[str]:
    """Every folder the extension's CMakeLists.txt adds, in order: the library, then the modules."""
    return _ADD_SUBDIRECTORY.findall((root / "CMakeLists.txt").read_text(encoding="utf-8"))


def scripted_modules(root: Path = ROOT) -> list[str]:
    """The Slicer modules (each folder ``X`` with ``X/X.py``), without the shared library."""
    return [name for name in extension_folders(root) if name != LIBRARY]


def lib_packages(root: Path = ROOT) -> dict[str, str]:
    """Importable package name -> source folder, for every ``*Lib`` package of the extension."""
    packages = {}
    for folder in extension_folders(root):
        package = folder if folder == LIBRARY else f"{folder}Lib"
        if (root / folder / package / "__init__.py").is_file():
            packages[package] = f"{folder}/{package}"
    return packages


def write_pth(root: Path = ROOT) -> Path:
    """Put each extension folder on this interpreter's path, as Slicer puts its scripted-module folders."""
    path = Path(sysconfig.get_paths()["purelib"], "cardiacsuite-modules.pth")
    path.write_text("".join(f"{root / folder}\n" for folder in extension_folders(root)), encoding="utf-8")
    return path


if __name__ == "__main__":
    if sys.argv[1:] == ["--pth"]:
        print(write_pth())
    else:
        print("\n".join(extension_folders()))
