"""The model registry: schema checks of Models.json entries, lookup, and the checksummed per-user cache.

Every cache lives under ``tmp_path`` (``CARDIACSUITE_HOME`` is redirected for each test), and no test reaches
the internet: downloads use ``file://`` URLs or an HTTP server on 127.0.0.1 that the test starts and stops.
A guard refuses any other network connection, so a test that tried would fail rather than download.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import http.server
import json
import socket
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from CardiacSuiteLib.errors import ModelError
from CardiacSuiteLib.inference import registry as registry_module
from CardiacSuiteLib.inference.registry import (
    BUILTIN_REGISTRY,
    ModelRegistry,
    load_registry_file,
    parse_entry,
    sha256_of,
)

MYOPARI_ID = "myopari-acdc-tiramisu"
MYOPARI_TASK = "cmr-sax-cine"
FAST_ID = "sax-fast-unet"  # the bundled fast short-axis model
WEIGHTS = b"tiny synthetic weights\n" * 40  # a stand-in for a model file in the URL tests
MEMBER = "pkg/Resources/tiny.bin"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private CardiacSuite home, no extra registries, and no network beyond the loopback interface."""
    monkeypatch.setenv("CARDIACSUITE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CARDIACSUITE_MODELS", raising=False)
    real_connect = socket.socket.connect

    def loopback_only(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"a test tried to reach {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


def raw_entry(**changes) -> dict:
    """A valid registry entry for a tiny synthetic model; keyword arguments replace (or, as None, remove) fields."""
    raw = {
        "id": "tiny-model",
        "version": "1.0",
        "title": "Tiny synthetic model",
        "task": "unit-test",
        "modality": "MR",
        "labels": [{"value": 1, "name": "Blob", "color": [1, 0, 0], "code": {}}],
        "input": {"dimensions": 2, "size": [32, 32]},
        "backend": "torch",
        "file": {"name": "tiny.bin", "size": len(WEIGHTS), "sha256": hashlib.sha256(WEIGHTS).hexdigest()},
        "sources": [],
        "licence": "MIT",
        "card": {},
    }
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def write_registry(path: Path, *entries: dict, schema_version=1) -> Path:
    path.write_text(json.dumps({"schemaVersion": schema_version, "models": list(entries)}), encoding="utf-8")
    return path


def cache_files(cache: Path) -> list[Path]:
    return sorted(path for path in cache.rglob("*") if path.is_file()) if cache.exists() else []


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert message and "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------ schema


def test_builtin_registry_parses():
    entries = load_registry_file(BUILTIN_REGISTRY)
    assert [entry.id for entry in entries] == [MYOPARI_ID, FAST_ID]
    assert [entry.id for entry in entries if entry.default] == [MYOPARI_ID]  # one default per task
    entry = entries[0]
    assert entry.task == MYOPARI_TASK and entry.backend == "onnxruntime" and entry.default
    assert entry.input["dimensions"] == 2 and entry.input["size"] == [256, 256]
    assert [(label.value, label.name) for label in entry.labels] == [
        (1, "Right ventricle"), (2, "Left ventricle myocardium"), (3, "Left ventricle")
    ]
    assert all(label.code.get("scheme") == "SCT" for label in entry.labels)
    assert len(entry.sha256) == 64 and entry.file_size == 5684481
    assert [source["type"] for source in entry.sources] == ["python-package", "url"]
    assert entry.key == f"{MYOPARI_ID}-0.1.6" and entry.label_value("Left ventricle") == 3


def test_default_registry_uses_the_home_cache(tmp_path):
    registry = ModelRegistry.default()
    assert registry.cache_dir == tmp_path / "home" / "models"
    assert ModelRegistry.default(cache_dir=tmp_path / "elsewhere").cache_dir == tmp_path / "elsewhere"


def test_a_valid_synthetic_entry_parses():
    entry = parse_entry(raw_entry(network={"name": "UNet"}, default=True), "test.json")
    assert entry.file_name == "tiny.bin" and entry.file_size == len(WEIGHTS)
    assert entry.network == {"name": "UNet"} and entry.postprocessing == {} and entry.io == {}
    assert entry.labels[0].color == (1, 0, 0)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"title": None}, "title"),
        ({"labels": None}, "labels"),
        ({"sources": None}, "sources"),
        ({"task": 3}, "task"),
        ({"input": []}, "input"),
        ({"file": {"name": "tiny.bin", "sha256": "abc123"}}, "sha256"),
        ({"file": {"name": "tiny.bin", "sha256": "z" * 64}}, "sha256"),
        ({"file": {"name": "tiny.bin"}}, "sha256"),
        ({"backend": "tensorflow"}, "backend"),
        ({"labels": [{"value": 0, "name": "Background"}]}, "label"),
        ({"labels": [{"value": 1}]}, "label"),
        ({"labels": [{"value": "1", "name": "Blob"}]}, "label"),
        ({"file": {"name": "../tiny.bin", "sha256": "0" * 64}}, "file.name"),
        ({"file": {"name": "sub\\tiny.bin", "sha256": "0" * 64}}, "file.name"),
        ({"file": {"sha256": "0" * 64}}, "file.name"),
        ({"sources": [{"type": "ftp", "url": "ftp://example.org/tiny.bin"}]}, "source type"),
        ({"sources": [{"url": "https://example.org/tiny.bin"}]}, "source type"),
    ],
)
def test_schema_rejects_bad_entry_naming_model_and_field(tmp_path, changes, field):
    path = write_registry(tmp_path / "extra.json", raw_entry(), raw_entry(id="bad-model", **changes))
    with pytest.raises(ModelError) as caught:
        load_registry_file(path)
    message = one_line(caught)
    assert "'bad-model'" in message and field in message and str(path) in message


def test_missing_id_is_reported():
    with pytest.raises(ModelError, match="lacks the required field 'id'"):
        parse_entry(raw_entry(id=None), "extra.json")


def test_duplicate_id_and_version_is_rejected(tmp_path):
    path = write_registry(tmp_path / "extra.json", raw_entry(), raw_entry(title="Again"))
    with pytest.raises(ModelError, match="tiny-model version 1.0 is registered twice"):
        ModelRegistry(load_registry_file(path), tmp_path / "cache")
    # The same id with another version is fine.
    ModelRegistry(load_registry_file(write_registry(path, raw_entry(), raw_entry(version="2.0"))), tmp_path / "cache")


def test_duplicate_of_a_builtin_model_in_an_extra_registry_is_rejected(tmp_path, monkeypatch):
    builtin = json.loads(BUILTIN_REGISTRY.read_text(encoding="utf-8"))["models"][0]
    monkeypatch.setenv("CARDIACSUITE_MODELS", str(write_registry(tmp_path / "extra.json", builtin)))
    with pytest.raises(ModelError, match=f"{MYOPARI_ID} version 0.1.6 is registered twice"):
        ModelRegistry.default()


@pytest.mark.parametrize("version", [2, None, "1"])
def test_wrong_schema_version_is_rejected(tmp_path, version):
    path = write_registry(tmp_path / "extra.json", raw_entry(), schema_version=version)
    with pytest.raises(ModelError) as caught:
        load_registry_file(path)
    assert "schemaVersion" in one_line(caught) and str(path) in str(caught.value)


def test_invalid_json_reports_the_line(tmp_path):
    path = tmp_path / "extra.json"
    path.write_text('{\n  "schemaVersion": 1,\n  "models": [\n    {"id": "x",}\n  ]\n}\n', encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        load_registry_file(path)
    message = one_line(caught)
    assert "not valid JSON" in message and "line 4" in message and str(path) in message


@pytest.mark.parametrize(
    "document", ["[]", '"models"', '{"schemaVersion": 1, "models": {}}', '{"schemaVersion": 1, "models": [3]}']
)
def test_registry_of_the_wrong_shape_is_a_model_error(tmp_path, document):
    path = tmp_path / "extra.json"
    path.write_text(document, encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        load_registry_file(path)
    assert str(path) in one_line(caught)


@pytest.mark.parametrize("changes", [{"labels": ["Blob"]}, {"sources": ["https://example.org/tiny.bin"]}])
def test_list_items_of_the_wrong_kind_are_model_errors(changes):
    with pytest.raises(ModelError) as caught:
        parse_entry(raw_entry(**changes), "extra.json")
    assert "'tiny-model'" in one_line(caught)


def test_missing_registry_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_registry_file(tmp_path / "absent.json")


# ------------------------------------------------------------------------------------------------ lookup


def test_get_returns_the_task_default(tmp_path):
    other = raw_entry(id="other-cine", task=MYOPARI_TASK)
    path = write_registry(tmp_path / "extra.json", other, raw_entry())
    registry = ModelRegistry(load_registry_file(path) + load_registry_file(BUILTIN_REGISTRY), tmp_path / "cache")
    assert registry.get(task=MYOPARI_TASK).id == MYOPARI_ID  # the one marked default, though listed later
    assert registry.get(task="unit-test").id == "tiny-model"  # no default: the first listed
    assert [entry.id for entry in registry.models(MYOPARI_TASK)] == ["other-cine", MYOPARI_ID, FAST_ID]
    with pytest.raises(ModelError, match="no model is registered for the task 'ct-heart'"):
        registry.get(task="ct-heart")


def test_get_by_id_and_version(tmp_path):
    path = write_registry(tmp_path / "extra.json", raw_entry(), raw_entry(version="2.0", title="Two"))
    registry = ModelRegistry(load_registry_file(path), tmp_path / "cache")
    assert registry.get("tiny-model", version="2.0").title == "Two"
    assert registry.get("tiny-model", task="unit-test", version="1.0").version == "1.0"
    with pytest.raises(ModelError, match=r"unknown model 'tiny-model' version 3\.0; known models: tiny-model"):
        registry.get("tiny-model", version="3.0")


def test_unknown_id_lists_the_known_models(tmp_path):
    path = write_registry(tmp_path / "extra.json", raw_entry(), raw_entry(id="another"))
    registry = ModelRegistry(load_registry_file(path) + load_registry_file(BUILTIN_REGISTRY), tmp_path / "cache")
    with pytest.raises(ModelError) as caught:
        registry.get("no-such-model")
    assert one_line(caught).endswith(f"known models: another, {MYOPARI_ID}, {FAST_ID}, tiny-model")
    with pytest.raises(ModelError, match=f"known models: {MYOPARI_ID}, {FAST_ID}$"):
        registry.get("no-such-model", task=MYOPARI_TASK)


def test_model_for_another_task_is_refused():
    with pytest.raises(ModelError, match=f"'{MYOPARI_ID}' is for the task '{MYOPARI_TASK}', not 'ct-heart'"):
        ModelRegistry.default().get(MYOPARI_ID, task="ct-heart")


def test_extra_registry_files_are_merged(tmp_path, monkeypatch):
    first = write_registry(tmp_path / "first.json", raw_entry())
    second = write_registry(tmp_path / "second.json", raw_entry(id="second-model", task=MYOPARI_TASK))
    monkeypatch.setenv("CARDIACSUITE_MODELS", f"{first}{registry_module.os.pathsep}{second}")
    registry = ModelRegistry.default(cache_dir=tmp_path / "cache")
    assert [entry.id for entry in registry.models()] == [MYOPARI_ID, FAST_ID, "tiny-model", "second-model"]
    assert registry.get("tiny-model").title == "Tiny synthetic model"
    assert registry.get(task=MYOPARI_TASK).id == MYOPARI_ID  # the built-in default stays the default


def test_bad_extra_registry_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("CARDIACSUITE_MODELS", str(tmp_path / "absent.json"))
    with pytest.raises(ModelError, match="absent.json does not exist"):
        ModelRegistry.default()


# ------------------------------------------------------------------------------------------------ cache: packages


@pytest.fixture
def builtin(tmp_path) -> ModelRegistry:
    return ModelRegistry.default(cache_dir=tmp_path / "cache")


def test_install_from_the_python_package_without_importing_it(builtin, monkeypatch):
    for name in [name for name in sys.modules if name == "myopari" or name.startswith("myopari.")]:
        monkeypatch.delitem(sys.modules, name)
    entry = builtin.get(MYOPARI_ID)
    assert not builtin.is_installed(entry)
    installed = builtin.install(entry)
    assert installed == builtin.cached_path(entry)
    assert installed == builtin.cache_dir / MYOPARI_ID / "0.1.6" / "tiramisu_acdc_fp32.onnx"
    assert builtin.is_installed(entry) and builtin.verified_path(entry) == installed
    assert installed.stat().st_size == entry.file_size
    assert cache_files(builtin.cache_dir) == [installed]  # no temporary file left beside it
    assert not [name for name in sys.modules if name == "myopari" or name.startswith("myopari.")]


def test_resolve_installs_from_the_package_once(builtin):
    entry = builtin.get(task=MYOPARI_TASK)
    path = builtin.resolve(entry)
    modified = path.stat().st_mtime_ns
    assert builtin.resolve(entry) == path and path.stat().st_mtime_ns == modified


def test_missing_package_falls_back_to_url_which_needs_permission(builtin, monkeypatch):
    monkeypatch.setattr(registry_module.importlib.util, "find_spec", lambda name: None)
    entry = builtin.get(MYOPARI_ID)
    with pytest.raises(ModelError) as caught:
        builtin.install(entry)
    message = one_line(caught)
    assert "Python package 'myopari' is not installed (pip install --no-deps myopari==0.1.6)" in message
    assert "not allowed" in message and "downloading was not agreed to" in message
    assert cache_files(builtin.cache_dir) == []


def test_verified_path_of_a_missing_model_says_how_to_install(builtin):
    with pytest.raises(ModelError) as caught:
        builtin.verified_path(builtin.get(MYOPARI_ID))
    message = one_line(caught)
    assert "not installed" in message
    assert f"cardiacsuite models install {MYOPARI_ID}" in message and f"models import {MYOPARI_ID}" in message


def test_corrupt_cached_file_is_reported_and_never_used(builtin):
    entry = builtin.get(MYOPARI_ID)
    path = builtin.install(entry)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    path.write_bytes(bytes(data))
    assert builtin.is_installed(entry)  # the size still matches: only the checksum can tell
    for use in (builtin.verified_path, builtin.resolve):
        with pytest.raises(ModelError) as caught:
            use(entry)
        message = one_line(caught)
        assert "corrupt" in message and str(path) in message and entry.sha256[:12] in message
    assert path.read_bytes() == bytes(data)  # reported, not silently replaced


def test_import_of_a_wrong_file_leaves_nothing_in_the_cache(builtin, tmp_path):
    entry = builtin.get(MYOPARI_ID)
    wrong = tmp_path / "downloads" / "tiramisu_acdc_fp32.onnx"
    wrong.parent.mkdir()
    wrong.write_bytes(b"\0" * 1000)
    with pytest.raises(ModelError) as caught:
        builtin.import_file(entry, wrong)
    message = one_line(caught)
    assert str(wrong) in message and "nothing was imported" in message and MYOPARI_ID in message
    assert cache_files(builtin.cache_dir) == [] and not builtin.is_installed(entry)
    with pytest.raises(ModelError, match="does not exist"):
        builtin.import_file(entry, tmp_path / "absent.onnx")


def test_import_of_the_right_file(builtin, tmp_path):
    import importlib.util

    package = Path(importlib.util.find_spec("myopari").submodule_search_locations[0])
    source = package / "Resources" / "tiramisu_acdc_fp32.onnx"
    entry = builtin.get(MYOPARI_ID)
    copy_elsewhere = tmp_path / "usb stick" / "model.onnx"
    copy_elsewhere.parent.mkdir()
    copy_elsewhere.write_bytes(source.read_bytes())
    path = builtin.import_file(entry, copy_elsewhere)
    assert path == builtin.verified_path(entry) and sha256_of(path) == entry.sha256
    assert cache_files(builtin.cache_dir) == [path]
    assert copy_elsewhere.exists()  # imported by copy


def test_sha256_of_matches_hashlib(tmp_path):
    path = tmp_path / "data.bin"
    data = bytes(range(256)) * 5000  # more than one read chunk
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------ cache: URLs


def zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def url_registry(tmp_path, url: str, member: str | None = MEMBER) -> tuple[ModelRegistry, object]:
    source = {"type": "url", "url": url}
    if member:
        source["member"] = member
    entry = parse_entry(raw_entry(sources=[source]), "test")
    return ModelRegistry([entry], tmp_path / "cache"), entry


@pytest.fixture
def wheel(tmp_path) -> Path:
    (tmp_path / "served").mkdir(exist_ok=True)
    return zip_with(tmp_path / "served" / "tiny-1.0-py3-none-any.whl", {"pkg/__init__.py": b"", MEMBER: WEIGHTS})


@pytest.fixture
def loopback_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path/served``; yields its base URL and stops it afterwards."""
    folder = tmp_path / "served"
    folder.mkdir(exist_ok=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_url_install_is_refused_without_permission(tmp_path, wheel):
    registry, entry = url_registry(tmp_path, wheel.as_uri())
    with pytest.raises(ModelError) as caught:
        registry.install(entry)
    message = one_line(caught)
    assert "not allowed" in message and wheel.as_uri() in message and "downloading was not agreed to" in message
    with pytest.raises(ModelError, match="not allowed"):
        registry.resolve(entry)
    assert cache_files(registry.cache_dir) == []


def test_url_install_of_a_zip_member_from_a_file_url(tmp_path, wheel):
    registry, entry = url_registry(tmp_path, wheel.as_uri())
    calls = []
    path = registry.install(entry, allow_download=True, progress=lambda fraction, message: calls.append(fraction))
    assert path == registry.verified_path(entry) and path.read_bytes() == WEIGHTS
    assert cache_files(registry.cache_dir) == [path]  # the download and its temporary folder are gone
    assert calls and calls[-1] == pytest.approx(1.0)


def test_url_install_over_loopback_http_reports_progress(tmp_path, wheel, loopback_server):
    registry, entry = url_registry(tmp_path, f"{loopback_server}/{wheel.name}")
    calls = []
    path = registry.resolve(entry, allow_download=True, progress=lambda *call: calls.append(call))
    assert path.read_bytes() == WEIGHTS and cache_files(registry.cache_dir) == [path]
    fractions = [fraction for fraction, _ in calls]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert all(0.0 < fraction <= 1.0 for fraction in fractions)
    assert all("downloading tiny-model" in message for _, message in calls)


def test_url_install_of_a_plain_file_over_http(tmp_path, loopback_server):
    (tmp_path / "served" / "tiny.bin").write_bytes(WEIGHTS)
    registry, entry = url_registry(tmp_path, f"{loopback_server}/tiny.bin", member=None)
    assert registry.install(entry, allow_download=True).read_bytes() == WEIGHTS


def test_url_zip_lacking_the_member(tmp_path):
    archive = zip_with(tmp_path / "other.whl", {"pkg/Resources/other.bin": WEIGHTS})
    registry, entry = url_registry(tmp_path, archive.as_uri())
    with pytest.raises(ModelError) as caught:
        registry.install(entry, allow_download=True)
    assert MEMBER in one_line(caught) and archive.as_uri() in str(caught.value)
    assert cache_files(registry.cache_dir) == []


def test_url_that_is_not_a_zip(tmp_path):
    not_zip = tmp_path / "page.html"
    not_zip.write_text("<html>moved</html>")
    registry, entry = url_registry(tmp_path, not_zip.as_uri())
    with pytest.raises(ModelError, match="does not hold"):
        registry.install(entry, allow_download=True)
    assert cache_files(registry.cache_dir) == []


def test_url_download_of_the_wrong_weights_leaves_nothing(tmp_path):
    archive = zip_with(tmp_path / "tampered.whl", {MEMBER: WEIGHTS + b"!"})
    registry, entry = url_registry(tmp_path, archive.as_uri())
    with pytest.raises(ModelError, match="nothing was imported"):
        registry.install(entry, allow_download=True)
    assert cache_files(registry.cache_dir) == [] and not registry.is_installed(entry)


def test_http_error_is_a_model_error(tmp_path, loopback_server):
    registry, entry = url_registry(tmp_path, f"{loopback_server}/absent.whl")
    with pytest.raises(ModelError) as caught:
        registry.install(entry, allow_download=True)
    assert "could not download" in one_line(caught) and "404" in str(caught.value)
    assert cache_files(registry.cache_dir) == []


def test_a_package_source_is_tried_before_the_url(tmp_path, wheel):
    package = {"type": "python-package", "package": "cardiacsuite_no_such_package", "path": "tiny.bin"}
    url = {"type": "url", "url": wheel.as_uri(), "member": MEMBER}
    entry = parse_entry(raw_entry(sources=[package, url]), "test")
    registry = ModelRegistry([entry], tmp_path / "cache")
    assert registry.install(entry, allow_download=True).read_bytes() == WEIGHTS
    with pytest.raises(ModelError) as caught:
        ModelRegistry([entry], tmp_path / "cache2").install(entry)
    assert "'cardiacsuite_no_such_package' is not installed" in one_line(caught)


def test_builtin_sources_are_unchanged_by_parsing():
    raw = json.loads(BUILTIN_REGISTRY.read_text(encoding="utf-8"))["models"][0]
    before = copy.deepcopy(raw)
    parse_entry(raw, "Models.json")
    assert raw == before


def test_get_returns_the_newest_version_unless_one_is_named(tmp_path):
    entries = [parse_entry(raw_entry(version=v), "test") for v in ("0.9.1", "0.10.0", "0.2")]
    registry = ModelRegistry(entries, tmp_path)
    assert registry.get("tiny-model").version == "0.10.0"
    assert registry.get("tiny-model", version="0.9.1").version == "0.9.1"


@pytest.mark.parametrize("field, value", [("id", "../escape"), ("version", "1/2"), ("id", ".hidden")])
def test_id_and_version_cannot_leave_the_cache(field, value):
    with pytest.raises(ModelError, match=field):
        parse_entry(raw_entry(**{field: value}), "test")


# ------------------------------------------------------------------------------------------------ bundled weights


def test_bundled_weights_are_used_in_place_and_a_stale_cache_copy_is_ignored(tmp_path, monkeypatch):
    resources = tmp_path / "Resources"
    (resources / "Models").mkdir(parents=True)
    (resources / "Models" / "tiny.bin").write_bytes(WEIGHTS)
    monkeypatch.setattr(registry_module, "resource_root", lambda source: resources)
    entry = parse_entry(raw_entry(sources=[{"type": "bundled", "module": "CMRAnalysisLib", "path": "Models/tiny.bin"}]), "test")
    registry = ModelRegistry([entry], tmp_path / "cache")
    stale = registry.cached_path(entry)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x" * len(WEIGHTS))  # an older copy under the same version, e.g. from a previous release
    assert registry.is_installed(entry)
    assert registry.resolve(entry) == registry.install(entry) == resources / "Models" / "tiny.bin"
    assert cache_files(tmp_path / "cache") == [stale]  # nothing copied, nothing overwritten

    (resources / "Models" / "tiny.bin").write_bytes(b"y" * len(WEIGHTS))
    with pytest.raises(ModelError) as caught:
        registry.resolve(entry)
    message = one_line(caught)
    assert "bundled model file" in message and "corrupt" in message and "reinstall CardiacSuite" in message
