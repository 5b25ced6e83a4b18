"""The model registry: which models exist, where their weights come from, and the per-user cache.

A model is an entry of ``Resources/Models.json`` (id, version, task, labels with terminology codes, input
geometry and normalisation, backend, file with size and sha256, sources, licence and model card). Weights
live in a per-user cache (never inside the Slicer install tree) and are verified by checksum every time they
are used. They arrive from one of the entry's sources: weights bundled with CardiacSuite itself, an installed
Python package that ships them, a URL (only when the user asks for a download), or a file the user imports by
hand for an offline hospital.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CardiacSuiteError, ModelError

RESOURCES = Path(__file__).resolve().parents[1] / "Resources"
BUILTIN_REGISTRY = RESOURCES / "Models.json"
SCHEMA_VERSION = 1
BACKENDS = ("onnxruntime", "torch")
SOURCE_TYPES = ("bundled", "python-package", "url")
REQUIRED_KEYS = {
    "id": str,
    "version": str,
    "title": str,
    "task": str,
    "modality": str,
    "labels": list,
    "input": dict,
    "backend": str,
    "file": dict,
    "sources": list,
    "licence": str,
    "card": dict,
}

ProgressCallback = Callable[[float, str], None]


def user_home() -> Path:
    """CardiacSuite's per-user folder (``CARDIACSUITE_HOME`` or ``~/.cardiacsuite``), kept across Slicer upgrades."""
    return Path(os.environ.get("CARDIACSUITE_HOME", Path.home() / ".cardiacsuite"))


@dataclass(frozen=True)
class LabelInfo:
    value: int
    name: str
    color: tuple[float, float, float]
    code: dict


@dataclass(frozen=True)
class ModelEntry:
    id: str
    version: str
    title: str
    task: str
    modality: str
    labels: tuple[LabelInfo, ...]
    input: dict
    backend: str
    file_name: str
    file_size: int | None
    sha256: str
    sources: tuple[dict, ...]
    licence: str
    card: dict
    postprocessing: dict = field(default_factory=dict)
    io: dict = field(default_factory=dict)
    network: dict = field(default_factory=dict)
    default: bool = False

    @property
    def key(self) -> str:
        return f"{self.id}-{self.version}"

    def label_value(self, name: str) -> int:
        for label in self.labels:
            if label.name == name:
                return label.value
        raise KeyError(name)


def parse_entry(raw: dict, origin: str) -> ModelEntry:
    """Check one registry entry against the schema and turn it into a ``ModelEntry``."""
    if not isinstance(raw, dict):
        raise ModelError(f"{origin}: every entry of 'models' must be an object, not {raw!r}")
    where = f"{origin}: model {raw.get('id', '?')!r}"
    for key in ("id", "version"):
        text = raw.get(key)
        if isinstance(text, str) and not _SAFE_NAME.fullmatch(text):
            raise ModelError(f"{where}: '{key}' may hold only letters, digits, '.', '_' and '-' (it names a cache folder)")
    for key, kind in REQUIRED_KEYS.items():
        if key not in raw:
            raise ModelError(f"{where} lacks the required field '{key}'")
        if not isinstance(raw[key], kind):
            raise ModelError(f"{where}: field '{key}' must be a {kind.__name__}")
    if raw["backend"] not in BACKENDS:
        raise ModelError(f"{where}: backend '{raw['backend']}' is not one of {', '.join(BACKENDS)}")
    file_info = raw["file"]
    sha = str(file_info.get("sha256", ""))
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower()):
        raise ModelError(f"{where}: file.sha256 must be 64 hexadecimal digits")
    if not file_info.get("name") or "/" in file_info["name"] or "\\" in file_info["name"]:
        raise ModelError(f"{where}: file.name must be a plain file name")
    labels = []
    for label in raw["labels"]:
        if not isinstance(label, dict) or not isinstance(label.get("value"), int):
            raise ModelError(f"{where}: every label needs a positive integer 'value' and a 'name'")
        if label["value"] <= 0 or not label.get("name"):
            raise ModelError(f"{where}: every label needs a positive integer 'value' and a 'name'")
        labels.append(
            LabelInfo(label["value"], label["name"], tuple(label.get("color", (1.0, 1.0, 0.0))), label.get("code", {}))
        )
    for source in raw["sources"]:
        kind = source.get("type") if isinstance(source, dict) else None
        if kind not in SOURCE_TYPES:
            raise ModelError(f"{where}: source type {kind!r} is not one of {', '.join(SOURCE_TYPES)}")
    return ModelEntry(
        id=raw["id"],
        version=raw["version"],
        title=raw["title"],
        task=raw["task"],
        modality=raw["modality"],
        labels=tuple(labels),
        input=raw["input"],
        backend=raw["backend"],
        file_name=file_info["name"],
        file_size=file_info.get("size"),
        sha256=sha.lower(),
        sources=tuple(raw["sources"]),
        licence=raw["licence"],
        card=raw["card"],
        postprocessing=raw.get("postprocessing", {}),
        io=raw.get("io", {}),
        network=raw.get("network", {}),
        default=bool(raw.get("default", False)),
    )


def load_registry_file(path: Path) -> list[ModelEntry]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"model registry {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ModelError(f"model registry {path} is not valid JSON (line {error.lineno}): {error.msg}") from None
    if not isinstance(document, dict):
        raise ModelError(f"model registry {path} must hold a JSON object with 'schemaVersion' and 'models'")
    if document.get("schemaVersion") != SCHEMA_VERSION:
        raise ModelError(f"model registry {path} has schemaVersion {document.get('schemaVersion')!r}, expected 1")
    if not isinstance(document.get("models", []), list):
        raise ModelError(f"model registry {path}: 'models' must be a list")
    return [parse_entry(raw, str(path)) for raw in document.get("models", [])]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelRegistry:
    """The models known to this installation and their per-user cache."""

    def __init__(self, entries: list[ModelEntry], cache_dir: Path):
        self.entries = list(entries)
        self.cache_dir = Path(cache_dir)
        seen = set()
        for entry in self.entries:
            if entry.key in seen:
                raise ModelError(f"model {entry.id} version {entry.version} is registered twice")
            seen.add(entry.key)

    @classmethod
    def default(cls, cache_dir: str | os.PathLike | None = None) -> ModelRegistry:
        """The built-in registry plus any extra registry files listed in ``CARDIACSUITE_MODELS`` (os.pathsep)."""
        entries = load_registry_file(BUILTIN_REGISTRY)
        for extra in filter(None, os.environ.get("CARDIACSUITE_MODELS", "").split(os.pathsep)):
            entries += load_registry_file(Path(extra))
        return cls(entries, Path(cache_dir) if cache_dir else user_home() / "models")

    # ------------------------------------------------------------------------------------------ lookup

    def models(self, task: str | None = None) -> list[ModelEntry]:
        return [entry for entry in self.entries if task is None or entry.task == task]

    def choices(self, task: str) -> list[ModelEntry]:
        """The task's models as a user is offered them: the default first, then in registry order."""
        return sorted(self.models(task), key=lambda entry: not entry.default)

    def get(self, model_id: str | None = None, task: str | None = None, version: str | None = None) -> ModelEntry:
        """The entry for ``model_id`` (newest listed version unless given), or the task's default model."""
        if model_id is None:
            candidates = self.models(task)
            if not candidates:
                raise ModelError(f"no model is registered for the task '{task}'")
            defaults = [entry for entry in candidates if entry.default]
            return (defaults or candidates)[0]
        matches = [entry for entry in self.entries if entry.id == model_id]
        if version is not None:
            matches = [entry for entry in matches if entry.version == version]
        if not matches:
            known = ", ".join(sorted({entry.id for entry in self.models(task)})) or "none"
            raise ModelError(f"unknown model '{model_id}'" + (f" version {version}" if version else "") + f"; known models: {known}")
        newest = max(matches, key=lambda entry: _version_key(entry.version))
        if task is not None and newest.task != task:
            raise ModelError(f"model '{model_id}' is for the task '{newest.task}', not '{task}'")
        return newest

    # ------------------------------------------------------------------------------------------ cache

    def cached_path(self, entry: ModelEntry) -> Path:
        return self.cache_dir / entry.id / entry.version / entry.file_name

    def bundled_path(self, entry: ModelEntry) -> Path | None:
        """The weights shipped inside the extension for ``entry``, or None when it has no bundled file here.

        Bundled weights are used where they lie, never copied into the cache: an extension update that ships
        new weights under the same version can then never meet a stale copy.
        """
        for source in entry.sources:
            if source["type"] == "bundled":
                path = resource_root(source) / source["path"]
                if path.is_file():
                    return path
        return None

    def is_installed(self, entry: ModelEntry) -> bool:
        path = self.bundled_path(entry) or self.cached_path(entry)
        return path.is_file() and (entry.file_size is None or path.stat().st_size == entry.file_size)

    def available(self, entry: ModelEntry) -> bool:
        """True when the weights are installed or can be installed from a local source (no download)."""
        if self.is_installed(entry):
            return True
        try:
            self.install(entry, allow_download=False)
        except CardiacSuiteError:
            return False
        return True

    def verified_path(self, entry: ModelEntry) -> Path:
        """The cached weights after a checksum check; a corrupt file is reported, never used."""
        path = self.cached_path(entry)
        if not path.is_file():
            raise ModelError(
                f"model '{entry.id}' {entry.version} is not installed; run 'cardiacsuite models install {entry.id}'"
                f" or import its file with 'cardiacsuite models import {entry.id} FILE'"
            )
        actual = sha256_of(path)
        if actual != entry.sha256:
            raise ModelError(
                f"model file {path} is corrupt or not the registered one (sha256 {actual[:12]}…, expected"
                f" {entry.sha256[:12]}…); delete it and install the model again"
            )
        return path

    def resolve(self, entry: ModelEntry, allow_download: bool = False, progress: ProgressCallback | None = None) -> Path:
        """Verified weights for ``entry``, installing them first from a local source (or a download if allowed)."""
        bundled = self.bundled_path(entry)
        if bundled is not None:
            actual = sha256_of(bundled)
            if actual != entry.sha256:
                raise ModelError(
                    f"bundled model file {bundled} is corrupt or not the registered one (sha256 {actual[:12]}…,"
                    f" expected {entry.sha256[:12]}…); reinstall CardiacSuite"
                )
            return bundled
        if not self.cached_path(entry).is_file():
            self.install(entry, allow_download=allow_download, progress=progress)
        return self.verified_path(entry)

    def install(self, entry: ModelEntry, allow_download: bool = False, progress: ProgressCallback | None = None) -> Path:
        """Fetch the weights from the first source that has them into the cache, checksum-verified."""
        reasons = []
        for source in entry.sources:
            if source["type"] == "bundled":
                bundled = resource_root(source) / source["path"]
                if not bundled.is_file():
                    reasons.append(f"bundled file {bundled} is missing from this installation")
                    continue
                return self.resolve(entry)  # used where it lies (see bundled_path)
            if source["type"] == "python-package":
                located = _package_file(source)
                if located is None:
                    hint = f" ({source['install']})" if source.get("install") else ""
                    reasons.append(f"Python package '{source['package']}' is not installed{hint}")
                    continue
                return self.import_file(entry, located)
            if source["type"] == "url":
                if not allow_download:
                    reasons.append(f"download from {source['url']} not allowed: downloading was not agreed to")
                    continue
                return self._download(entry, source, progress)
        raise ModelError(f"model '{entry.id}' {entry.version} could not be installed: " + "; ".join(reasons))

    def import_file(self, entry: ModelEntry, path: str | os.PathLike) -> Path:
        """Copy a weights file the user has (e.g. downloaded on another machine) into the cache, verified."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path} does not exist or is not a file")
        actual = sha256_of(path)
        if actual != entry.sha256:
            raise ModelError(
                f"{path} is not the weights of '{entry.id}' {entry.version} (sha256 {actual[:12]}…, expected"
                f" {entry.sha256[:12]}…); nothing was imported"
            )
        target = self.cached_path(entry)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as handle:
            temporary = Path(handle.name)
        try:
            shutil.copyfile(path, temporary)
            os.replace(temporary, target)  # atomic: the cache never holds a half-written model
        finally:
            temporary.unlink(missing_ok=True)
        return target

    def _download(self, entry: ModelEntry, source: dict, progress: ProgressCallback | None) -> Path:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache_dir) as folder:
            downloaded = Path(folder) / "download"
            try:
                with urllib.request.urlopen(source["url"], timeout=60) as response, open(downloaded, "wb") as out:
                    total = int(response.headers.get("Content-Length") or 0)
                    done = 0
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        done += len(chunk)
                        if progress and total:
                            progress(done / total, f"downloading {entry.id}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")
            except OSError as error:
                raise ModelError(f"could not download {source['url']}: {error}") from None
            weights = downloaded
            if source.get("member"):
                try:
                    with zipfile.ZipFile(downloaded) as archive:
                        weights = Path(folder) / entry.file_name
                        with archive.open(source["member"]) as member, open(weights, "wb") as out:
                            shutil.copyfileobj(member, out)
                except (zipfile.BadZipFile, KeyError) as error:
                    raise ModelError(f"{source['url']} does not hold {source['member']}: {error}") from None
            return self.import_file(entry, weights)


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _version_key(version: str) -> tuple:
    """Numeric parts compare as numbers, so 0.10.0 is newer than 0.9.1."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.\-+]", version))


def resource_root(source: dict) -> Path:
    """Where a bundled source's path starts: a module's ``Resources`` folder, CardiacSuiteLib's by default."""
    module = source.get("module", "CardiacSuiteLib")
    if module == "CardiacSuiteLib":
        return RESOURCES
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"CardiacSuite module '{module}' holding bundled model weights is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "Resources"


def _package_file(source: dict) -> Path | None:
    """A file shipped inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(source["package"])
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(list(spec.submodule_search_locations)[0]) / source["path"]
    return candidate if candidate.is_file() else None
