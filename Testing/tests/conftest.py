"""Shared fixtures: a real headless MRML scene and the location of the real test data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_root() -> Path:
    return Path(os.environ.get("CARDIACSUITE_DATA", REPO_ROOT.parent / "shared" / "data"))


# Shipped code finds the test data only through CARDIACSUITE_DATA (never through a checkout's layout).
os.environ.setdefault("CARDIACSUITE_DATA", str(data_root()))


@pytest.fixture(scope="session", autouse=True)
def private_cardiacsuite_home(tmp_path_factory):
    """Tests never read or write the user's real model cache."""
    previous = os.environ.get("CARDIACSUITE_HOME")
    os.environ["CARDIACSUITE_HOME"] = str(tmp_path_factory.mktemp("cardiacsuite-home"))
    yield
    if previous is None:
        os.environ.pop("CARDIACSUITE_HOME", None)
    else:
        os.environ["CARDIACSUITE_HOME"] = previous


@pytest.fixture
def app(tmp_path):
    from CardiacSuiteLib.app import create_app

    host = create_app(cache_dir=tmp_path / "cache")
    yield host
    host.scene.Clear(True)


@pytest.fixture
def scene(app):
    return app.scene


@pytest.fixture
def shared_data() -> Path:
    """The real data folder; tests using it skip with a reason when it is absent (CI requires it)."""
    root = data_root()
    if not root.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real test data missing at {root}: CI requires ../shared/data")
        pytest.skip(f"real test data not found at {root} (set CARDIACSUITE_DATA)")
    return root
