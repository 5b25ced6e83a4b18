"""Modules meet in the scene only through the names declared in CardiacSuiteLib.vocabulary.

A role, key or attribute string written anywhere else in shipped code (a stray ``"CineVolume"``) is how two
modules drift apart; these tests find every such literal, and check that the vocabulary itself is well formed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydicom.datadict import keyword_dict

from CardiacSuiteLib import vocabulary
from CardiacSuiteLib.vocabulary import Attribute, Key, Role
from test_dependencies import shipped_files
from test_static_checks import REPO_ROOT

VOCABULARY_FILE = Path(vocabulary.__file__).resolve()
DICOM_KEYWORDS = set(keyword_dict)


def declared_names() -> dict[str, str]:
    """Every declared value -> its name (``Role.CINE``)."""
    names = {vocabulary.CASE_MODULE_NAME: "CASE_MODULE_NAME", vocabulary.MODULE_NAME_ATTRIBUTE: "MODULE_NAME_ATTRIBUTE"}
    for cls in (Role, Key, Attribute):
        for name, value in vars(cls).items():
            if not name.startswith("_") and isinstance(value, str):
                names[value] = f"{cls.__name__}.{name}"
    return names


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """Docstrings and ``__all__`` entries: prose and Python names, not scene names."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
        if isinstance(node, ast.Assign) and any(getattr(target, "id", "") == "__all__" for target in node.targets):
            found.update(id(item) for item in ast.walk(node.value))
    return found


def _dicom_metadata_keys(tree: ast.AST, names: dict[str, str]) -> set[int]:
    """Keys of a DICOM metadata dict (one that also holds DICOM keywords the vocabulary does not declare)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [key for key in node.keys if isinstance(key, ast.Constant) and isinstance(key.value, str)]
            if any(key.value in DICOM_KEYWORDS and key.value not in names for key in keys):
                found.update(id(key) for key in keys if key.value in DICOM_KEYWORDS)
    return found


def _reads_dicom(tree: ast.AST) -> bool:
    return any(isinstance(node, (ast.Import, ast.ImportFrom)) and "pydicom" in ast.unparse(node) for node in ast.walk(tree))


def stray_literals(paths: list[Path], names: dict[str, str]) -> list[str]:
    """``path:line: "value" is vocabulary.Name`` for every string literal equal to a declared value."""
    problems = []
    for path in paths:
        if path.resolve() == VOCABULARY_FILE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skipped = _skipped_nodes(tree)
        # Key.STUDY_INSTANCE_UID and Key.PATIENT_ID share their spelling with DICOM keywords: in code that reads
        # or writes DICOM, those literals name the DICOM attribute.
        dicom = DICOM_KEYWORDS if _reads_dicom(tree) else set()
        skipped |= _dicom_metadata_keys(tree, names)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped \
                    and node.value in names and node.value not in dicom:
                shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path.name
                problems.append(f'{shown}:{node.lineno}: "{node.value}" is written out; use {names[node.value]}')
    return problems


def test_no_shipped_code_spells_out_a_scene_name():
    problems = stray_literals(shipped_files(), declared_names())
    assert not problems, "\n".join(problems)


def test_every_declared_value_is_unique():
    values = [value for cls in (Role, Key, Attribute) for name, value in vars(cls).items()
              if not name.startswith("_") and isinstance(value, str)]
    assert len(values) == len(set(values))
    assert len(values) >= 30


def test_every_role_key_and_attribute_says_what_it_holds():
    """Each name carries a ``#:`` comment (what it holds, who writes it) for the design document's contract."""
    lines = VOCABULARY_FILE.read_text(encoding="utf-8").splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if " = " in stripped and stripped.split(" = ")[0].isupper() and line.startswith("    "):
            previous = lines[number - 1].strip()
            if not previous.startswith("#:") and not previous.startswith("#") and not previous.endswith('"'):
                undocumented.append(f"vocabulary.py:{number + 1}: {stripped}")
    assert not undocumented, "\n".join(undocumented)


@pytest.mark.parametrize("snippet", [
    'ROLE = "CineVolume"\n',
    'node.GetParameter("CT4DFunction")\n',
    'def f(case):\n    return case.reference(f"CT4DSequence")\n',
])
def test_rejects_a_stray_literal(tmp_path, snippet):
    path = tmp_path / "stray.py"
    path.write_text(snippet)
    assert len(stray_literals([path], declared_names())) == 1


def test_accepts_docstrings_and_the_declared_names(tmp_path):
    path = tmp_path / "clean.py"
    path.write_text('"""Reads the CineVolume role."""\nfrom CardiacSuiteLib.vocabulary import Role\n'
                    '__all__ = ["CardiacCase"]\n'
                    'def f(case):\n    """Reads CT4DFunction."""\n    return case.reference(Role.CINE_VOLUME)\n')
    assert stray_literals([path], declared_names()) == []


def test_dicom_keywords_are_dicom_where_dicom_is_read(tmp_path):
    dicom = tmp_path / "dicom_reader.py"
    dicom.write_text('import pydicom\ndef uid(ds):\n    return getattr(ds, "StudyInstanceUID")\n')
    scene = tmp_path / "scene_reader.py"
    scene.write_text('def uid(case):\n    return case.node.GetParameter("StudyInstanceUID")\n')
    metadata = tmp_path / "phantom.py"
    metadata.write_text('META = {"PatientID": "PHANTOM", "SliceThickness": 8.0}\n')
    assert stray_literals([dicom], declared_names()) == []
    assert stray_literals([metadata], declared_names()) == []
    assert len(stray_literals([scene], declared_names())) == 1
