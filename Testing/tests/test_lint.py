"""Pyflakes-level lint over the whole repository: unused imports, undefined names, syntax errors."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed; it is pinned in requirements/lock.txt")
    result = subprocess.run([ruff, "check", "--no-cache", str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_repository_tracks_no_environment_or_large_files():
    """The environment is built by `make`, never committed; weights shipped in the tree stay a few MB."""
    listing = subprocess.run(["git", "ls-files", "-z"], capture_output=True, cwd=REPO)
    if listing.returncode != 0:
        pytest.skip("not a git checkout")
    files = [name for name in listing.stdout.decode().split("\0") if name]
    assert not [f for f in files if f.startswith((".venv/", "venv/")) or "/site-packages/" in f]
    large = [f for f in files if (REPO / f).is_file() and (REPO / f).stat().st_size > 20 * 1024 * 1024]
    assert not large, f"files over 20 MB are tracked: {large}"
