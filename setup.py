"""Packages of the headless install: every ``*Lib`` package of the modules the top-level CMakeLists.txt adds,
with its ``Resources`` (models' cards, normal values, requirements).

The metadata and dependencies are in pyproject.toml; only the package list is computed, so that adding a module
to CMakeLists.txt is the one edit that makes it installable.
"""

import sys
from pathlib import Path

from setuptools import find_packages, setup

sys.path.insert(0, str(Path(__file__).resolve().parent / "Utilities"))
from extension_modules import lib_packages  # noqa: E402

package_dir = {}
packages = []
for package, folder in lib_packages().items():
    package_dir[package] = folder
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in find_packages(folder, exclude=["*.Resources", "*.Resources.*"])]

setup(package_dir=package_dir, packages=packages, package_data={package: ["Resources/**/*"] for package in package_dir})
