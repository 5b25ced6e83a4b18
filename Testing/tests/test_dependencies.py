"""Declared dependencies are exactly what the shipped code imports.

Shipped code is what Slicer installs: every ``*Lib`` package, the module files and the ``CardiacSuiteUI`` face
helpers (not Testing/, Training/ or Utilities/). Each third-party top-level import must be a dependency in
pyproject.toml, and each dependency must be imported somewhere; the Slicer-side requirements file must list the
same set minus what Slicer itself ships.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from test_static_checks import LIBRARY, MODULES, REPO_ROOT, SLICER_PROVIDED, python_files

# Provided by the Slicer application itself (headless: by the slicer-core wheel, which brings its VTK).
HOST_MODULES = {"slicer", "vtk", "qt", "ctk", "PythonQt", "mrml", "PyTorchUtils"}
NOT_SHIPPED = {"Testing", "Training", "Resources"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def shipped_files(root: Path = REPO_ROOT) -> list[Path]:
    files = []
    for folder in (LIBRARY, *MODULES):
        files += [path for path in python_files(root / folder) if not NOT_SHIPPED & set(path.parts)]
    return files


def imported_top_level_names(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level module name -> files importing it (absolute imports, including those inside functions)."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def own_packages() -> set[str]:
    return {LIBRARY, "CardiacSuiteUI", *MODULES, *(f"{module}Lib" for module in MODULES)}


def third_party_distributions(paths: list[Path]) -> dict[str, set[str]]:
    """Distribution name (normalised) -> files, for every import that is neither stdlib, host nor our own."""
    distributions = packages_distributions()
    found: dict[str, set[str]] = {}
    for name, files in imported_top_level_names(paths).items():
        if name in sys.stdlib_module_names or name in HOST_MODULES or name in own_packages() or name == "__future__":
            continue
        for distribution in distributions.get(name, [name]):
            found.setdefault(_normalise(distribution), set()).update(files)
    return found


def declared_dependencies(pyproject: Path = REPO_ROOT / "pyproject.toml") -> set[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return {_normalise(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]) for requirement in project["dependencies"]}


def slicer_requirements(path: Path = REPO_ROOT / LIBRARY / LIBRARY / "Resources" / "requirements.txt") -> set[str]:
    names = set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(_normalise(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0]))
    return names


def test_scan_covers_every_layer():
    files = {str(path.relative_to(REPO_ROOT)) for path in shipped_files()}
    assert any(name.startswith(f"{LIBRARY}/{LIBRARY}/") for name in files)
    assert any(name.startswith(f"{LIBRARY}/CardiacSuiteUI/") for name in files)
    assert all(f"{module}/{module}.py" in files for module in MODULES)
    assert not any("/Testing/" in f"/{name}" or "/Training/" in f"/{name}" for name in files)


def test_every_import_of_shipped_code_is_declared():
    used = third_party_distributions(shipped_files())
    undeclared = {name: sorted(files)[:3] for name, files in used.items() if name not in declared_dependencies()}
    assert not undeclared, f"imported by shipped code but not a dependency in pyproject.toml: {undeclared}"


def test_every_declared_dependency_is_imported_by_shipped_code():
    unused = declared_dependencies() - set(third_party_distributions(shipped_files()))
    assert not unused, (f"dependencies in pyproject.toml that no shipped code imports (tests and training belong"
                        f" in requirements/lock.txt only): {sorted(unused)}")


def test_slicer_requirements_are_the_dependencies_slicer_does_not_ship():
    assert slicer_requirements() == declared_dependencies() - SLICER_PROVIDED


def test_the_check_sees_a_stray_import(tmp_path):
    stray = tmp_path / "stray.py"
    stray.write_text("import os\nimport numpy\nimport slicer\nfrom CardiacSuiteLib import case\n\n"
                     "def f():\n    import h5py\n    from PIL import Image\n")
    assert set(third_party_distributions([stray])) == {"numpy", "h5py", "pillow"}
