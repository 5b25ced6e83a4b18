"""Static checks of what cannot run outside Slicer: module files, Qt Designer forms, CMake lists, icons.

Qt, CTK and the Slicer application are not available headless, so the module files (``<Module>/<Module>.py``)
cannot be imported here. These checks read them instead: every Python file compiles (on Python 3.11 and, when
it is installed, 3.12), every ``.ui`` parses, every ``self.ui.<name>`` exists in the form, every
``SlicerParameterName`` is a parameter of the module's ``@parameterNodeWrapper`` class, each module has the five
template classes, no Lib package reaches for Qt or the application, each CMake list names files that exist, and
every icon is 128×128.

Each checker returns a list of problems, one ``path:line: what is wrong`` per problem, and the tests assert that
the list is empty, so a failure names the offending file and line. The ``test_rejects_*`` tests feed every checker
a bad snippet, so that each rule is known to catch what it is meant to catch.
"""

from __future__ import annotations

import ast
import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(REPO_ROOT / "Utilities"))
import extension_modules  # noqa: E402  (the module list, read from the top-level CMakeLists.txt)

MODULES = tuple(extension_modules.scripted_modules(REPO_ROOT))
LIBRARY = extension_modules.LIBRARY
ICON_SIZE = (128, 128)
REPOSITORY_RAW_URL = "https://raw.githubusercontent.com/CardiacSuite/SlicerCardiacSuite/main/"
DOCUMENTATION_URL = "https://github.com/CardiacSuite/SlicerCardiacSuite#"

# Folders that hold no project source (environments, build trees, caches).
SKIPPED_DIRS = {".git", ".venv", "venv", "build", "out", ".whl", "__pycache__", ".pytest_cache", ".ruff_cache"}

# ------------------------------------------------------------------------------------------------ discovery


def _skipped(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return any(part in SKIPPED_DIRS or part.endswith(".egg-info") or part.startswith(".tox") for part in parts)


def python_files(root: Path = REPO_ROOT) -> list[Path]:
    return sorted(path for path in root.rglob("*.py") if not _skipped(path, root))


def lib_python_files(root: Path = REPO_ROOT) -> list[Path]:
    """Every .py file inside a package named ``*Lib`` (CardiacSuiteLib and each ``<Module>Lib``), at any depth.

    The top-level folder is the scripted module's, not a package: ``CardiacSuiteLib/CardiacSuiteUI`` holds the
    Slicer-side helpers the widgets share and may use Qt.
    """
    return [
        path for path in python_files(root) if any(part.endswith("Lib") for part in path.relative_to(root).parts[1:-1])
    ]


def module_names(root: Path = REPO_ROOT) -> list[str]:
    """Top-level folders ``X`` holding ``X/X.py``: Slicer scripted modules."""
    return sorted(
        folder.name for folder in root.iterdir()
        if folder.is_dir() and not _skipped(folder, root) and (folder / f"{folder.name}.py").is_file()
    )


def _where(path: Path, line: int | None = None) -> str:
    try:
        shown = path.relative_to(REPO_ROOT)
    except ValueError:
        shown = path
    return f"{shown}:{line}" if line else f"{shown}"


def _line_of(text: str, needle: str) -> int | None:
    index = text.find(needle)
    return text.count("\n", 0, index) + 1 if index >= 0 else None


def _report(problems: list[str]) -> str:
    return "\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------------------ compiling

COMPILE_SCRIPT = """
import sys
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as stream:
            compile(stream.read(), path, "exec", dont_inherit=True)
    except SyntaxError as error:
        print(f"{path}:{error.lineno}: does not compile on Python {sys.version.split()[0]}: {error.msg}")
    except (ValueError, UnicodeDecodeError) as error:
        print(f"{path}:1: does not compile on Python {sys.version.split()[0]}: {error}")
"""


def compile_problems(paths: list[Path], python: str | None = None) -> list[str]:
    """Compile every file with ``python`` (a subprocess) or with this interpreter; one problem per failure."""
    if python is None:
        problems = []
        for path in paths:
            try:
                compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
            except SyntaxError as error:
                problems.append(f"{_where(path, error.lineno)}: does not compile on Python "
                                f"{sys.version.split()[0]}: {error.msg}")
            except (ValueError, UnicodeDecodeError) as error:
                problems.append(f"{_where(path, 1)}: does not compile: {error}")
        return problems
    completed = subprocess.run(
        [python, "-c", COMPILE_SCRIPT, *map(str, paths)], capture_output=True, text=True, timeout=300
    )
    if completed.returncode != 0:
        return [f"{python} failed: {completed.stderr.strip()}"]
    return [line for line in completed.stdout.splitlines() if line.strip()]


def python312() -> str | None:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    return found[-1] if found else None


# ------------------------------------------------------------------------------------------------ .ui forms


def parse_ui(path: Path) -> tuple[ET.Element | None, list[str]]:
    try:
        return ET.parse(path).getroot(), []
    except ET.ParseError as error:
        return None, [f"{_where(path, error.position[0])}: not well-formed XML: {error}"]


def ui_problems(path: Path) -> list[str]:
    """The form parses, is a Qt Designer form whose top-level widget is a qMRMLWidget, and names are unique."""
    root, problems = parse_ui(path)
    if root is None:
        return problems
    text = path.read_text(encoding="utf-8")
    if root.tag != "ui":
        return [f"{_where(path, 1)}: the root element is <{root.tag}>, not <ui>"]
    top = root.find("widget")
    if top is None:
        return [f"{_where(path, 1)}: the form has no top-level <widget>"]
    if top.get("class") != "qMRMLWidget":
        problems.append(f"{_where(path, _line_of(text, '<widget'))}: the top-level widget is a {top.get('class')},"
                        " not a qMRMLWidget (setMRMLScene would not reach the MRML widgets)")
    seen: set[str] = set()
    for widget in root.iter("widget"):
        name = widget.get("name")
        if name in seen:
            line = _line_of(text, 'name="%s"' % name)
            problems.append(f"{_where(path, line)}: widget name '{name}' is used twice")
        seen.add(name)
    return problems


def ui_widget_names(root: ET.Element) -> set[str]:
    return {widget.get("name") for widget in root.iter("widget") if widget.get("name")}


def ui_bindings(root: ET.Element) -> list[tuple[str, str, str]]:
    """(widget class, widget name, parameter name) of every widget with a SlicerParameterName property."""
    bindings = []
    for widget in root.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                value = prop.find("string")
                bindings.append((widget.get("class"), widget.get("name"), (value.text or "") if value is not None else ""))
    return bindings


def scene_connection_problems(path: Path) -> list[str]:
    """Every MRML widget (qMRML*) gets the scene: the top-level mrmlSceneChanged signal reaches its setMRMLScene."""
    root, problems = parse_ui(path)
    if root is None:
        return problems
    text = path.read_text(encoding="utf-8")
    top = root.find("widget")
    top_name = top.get("name") if top is not None else None
    connected = set()
    for connection in root.iter("connection"):
        if (connection.findtext("sender") == top_name
                and connection.findtext("signal", "").replace(" ", "") == "mrmlSceneChanged(vtkMRMLScene*)"
                and connection.findtext("slot", "").replace(" ", "") == "setMRMLScene(vtkMRMLScene*)"):
            connected.add(connection.findtext("receiver"))
    for widget in root.iter("widget"):
        name = widget.get("name")
        if widget is not top and (widget.get("class") or "").startswith("qMRML") and name not in connected:
            line = _line_of(text, 'name="%s"' % name)
            problems.append(f"{_where(path, line)}: MRML widget '{name}' is not"
                            f" connected to {top_name}'s mrmlSceneChanged(vtkMRMLScene*) signal, so it never gets"
                            " the scene")
    return problems


# ------------------------------------------------------------------------------------------------ module files


def parse_python(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def self_ui_problems(module_py: Path, ui_path: Path) -> list[str]:
    """Every ``self.ui.<name>`` in the module file is a widget of its form."""
    root, problems = parse_ui(ui_path)
    if root is None:
        return problems
    names = ui_widget_names(root)
    for node in ast.walk(parse_python(module_py)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"
                and node.attr not in names):
            problems.append(f"{_where(module_py, node.lineno)}: self.ui.{node.attr} is not a widget in {_where(ui_path)}")
    return problems


def _decorator_names(node: ast.ClassDef | ast.FunctionDef) -> set[str]:
    names = set()
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, ast.Attribute):
            names.add(target.attr)
    return names


def _fields(cls: ast.ClassDef) -> dict[str, ast.expr]:
    return {
        statement.target.id: statement.annotation
        for statement in cls.body
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
    }


# Widget classes whose GUI connector needs a particular parameter type (Slicer's parameterNodeWrapper guiConnectors).
WIDGET_TYPE_RULES = {
    "QCheckBox": (lambda text, enums: text == "bool", "a bool"),
    "QSpinBox": (lambda text, enums: "int" in re.findall(r"\w+", text), "an int"),
    "QSlider": (lambda text, enums: "int" in re.findall(r"\w+", text), "an int"),
    "QDoubleSpinBox": (lambda text, enums: "float" in re.findall(r"\w+", text), "a float"),
    "ctkSliderWidget": (lambda text, enums: "float" in re.findall(r"\w+", text), "a float"),
    "QLineEdit": (lambda text, enums: "str" in re.findall(r"\w+", text), "a str"),
    "QComboBox": (
        lambda text, enums: "Choice" in text or any(name in re.findall(r"\w+", text) for name in enums),
        "Annotated[..., Choice([...])] or an enum (Slicer's combo box connector needs the choices)",
    ),
    "qMRMLNodeComboBox": (lambda text, enums: "vtkMRML" in text, "an MRML node class or a Union of them"),
}


def parameter_name_problems(module_py: Path, ui_path: Path, module: str) -> list[str]:
    """Every SlicerParameterName in the form is a field of ``<module>ParameterNode`` of a type its widget can show."""
    root, problems = parse_ui(ui_path)
    if root is None:
        return problems
    tree = parse_python(module_py)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    wrappers = [cls for cls in classes.values() if "parameterNodeWrapper" in _decorator_names(cls)]
    expected = f"{module}ParameterNode"
    wrapper = next((cls for cls in wrappers if cls.name == expected), None)
    if wrapper is None:
        return [f"{_where(module_py, 1)}: no @parameterNodeWrapper class named {expected}"]
    enums = {name for name, cls in classes.items() if any("Enum" in ast.unparse(base) for base in cls.bases)}
    text = ui_path.read_text(encoding="utf-8")
    for widget_class, widget_name, parameter in ui_bindings(root):
        line = _line_of(text, f"<string>{parameter}</string>") or _line_of(text, f'name="{widget_name}"')
        fields, owner = _fields(wrapper), wrapper.name
        annotation = None
        for part in parameter.split("."):
            if part not in fields:
                annotation = None
                problems.append(f"{_where(ui_path, line)}: widget '{widget_name}' is bound to '{parameter}', but"
                                f" {owner} (in {_where(module_py)}) has no field '{part}'")
                break
            annotation = fields[part]
            pack = classes.get(ast.unparse(annotation))
            fields, owner = (_fields(pack), pack.name) if pack is not None else ({}, ast.unparse(annotation))
        if annotation is None or widget_class not in WIDGET_TYPE_RULES:
            continue
        accepts, needs = WIDGET_TYPE_RULES[widget_class]
        if not accepts(ast.unparse(annotation), enums):
            problems.append(f"{_where(ui_path, line)}: {widget_class} '{widget_name}' is bound to '{parameter}' of type"
                            f" {ast.unparse(annotation)}; it needs {needs}")
    return problems


WIDGET_METHODS = ("setup", "cleanup", "enter", "exit", "onSceneStartClose", "onSceneEndClose",
                  "initializeParameterNode", "setParameterNode", "_checkCanApply")
CLASS_BASES = {
    "": {"ScriptedLoadableModule"},
    "Widget": {"ScriptedLoadableModuleWidget", "VTKObservationMixin"},
    "Logic": {"ScriptedLoadableModuleLogic"},
    "Test": {"ScriptedLoadableModuleTest"},
}


def shared_face_classes(root: Path = REPO_ROOT) -> dict[str, ast.ClassDef]:
    """Classes of ``CardiacSuiteLib/CardiacSuiteUI``: bases a module's widget or logic may derive from."""
    classes = {}
    for path in sorted((root / LIBRARY / "CardiacSuiteUI").glob("*.py")):
        classes.update({node.name: node for node in parse_python(path).body if isinstance(node, ast.ClassDef)})
    return classes


def _bases_and_methods(cls: ast.ClassDef, shared: dict[str, ast.ClassDef]) -> tuple[set[str], set[str]]:
    """Base-class names and method names of ``cls``, following bases defined in the shared face package."""
    bases, methods = set(), {node.name for node in cls.body if isinstance(node, ast.FunctionDef)}
    for base in cls.bases:
        name = ast.unparse(base).split(".")[-1]
        bases.add(name)
        if name in shared and shared[name] is not cls:
            inherited_bases, inherited_methods = _bases_and_methods(shared[name], shared)
            bases |= inherited_bases
            methods |= inherited_methods
    return bases, methods


def module_class_problems(module_py: Path, module: str) -> list[str]:
    """The template's five classes, their bases and the widget's lifecycle methods (inherited ones count when the
    base is a shared class of CardiacSuiteUI)."""
    tree = parse_python(module_py)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    shared = shared_face_classes()
    problems = []
    for suffix in ("", "ParameterNode", "Widget", "Logic", "Test"):
        name = module + suffix
        cls = classes.get(name)
        if cls is None:
            problems.append(f"{_where(module_py, 1)}: class {name} is missing (the Slicer template has {module},"
                            f" {module}ParameterNode, {module}Widget, {module}Logic and {module}Test)")
            continue
        bases, methods = _bases_and_methods(cls, shared)
        missing = CLASS_BASES.get(suffix, set()) - bases
        if missing:
            problems.append(f"{_where(module_py, cls.lineno)}: class {name} does not derive from {', '.join(sorted(missing))}")
        if suffix == "ParameterNode" and "parameterNodeWrapper" not in _decorator_names(cls):
            problems.append(f"{_where(module_py, cls.lineno)}: class {name} is not decorated with @parameterNodeWrapper")
        if suffix == "Widget":
            for method in WIDGET_METHODS:
                if method not in methods:
                    problems.append(f"{_where(module_py, cls.lineno)}: {name} lacks the template method {method}()")
    return problems


def _assigned_attributes(function: ast.FunctionDef) -> dict[str, ast.expr]:
    """``self.parent.<attr> = value`` assignments in a function."""
    found = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute)
                        and target.value.attr == "parent"):
                    found[target.attr] = node.value
    return found


def module_metadata_problems(module_py: Path, module: str) -> list[str]:
    """Category Cardiac, dependencies, contributors, acknowledgement and a help text linking to the documentation."""
    tree = parse_python(module_py)
    cls = next((node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == module), None)
    init = next((node for node in cls.body if isinstance(node, ast.FunctionDef) and node.name == "__init__"), None) \
        if cls is not None else None
    if init is None:
        return [f"{_where(module_py, 1)}: class {module} has no __init__ setting the module's metadata"]
    assigned = _assigned_attributes(init)
    problems = []
    for attribute in ("title", "categories", "dependencies", "contributors", "helpText", "acknowledgementText"):
        if attribute not in assigned:
            problems.append(f"{_where(module_py, init.lineno)}: {module}.__init__ does not set self.parent.{attribute}")
    if "categories" in assigned and "'Cardiac'" not in ast.unparse(assigned["categories"]):
        problems.append(f"{_where(module_py, assigned['categories'].lineno)}: the module's category is not 'Cardiac'")
    if "helpText" in assigned and DOCUMENTATION_URL not in ast.unparse(assigned["helpText"]):
        problems.append(f"{_where(module_py, assigned['helpText'].lineno)}: the help text does not link to the module's"
                        f" documentation ({DOCUMENTATION_URL}...)")
    for attribute in ("contributors", "acknowledgementText", "helpText"):
        value = assigned.get(attribute)
        if value is not None and not any(isinstance(n, ast.Constant) and str(n.value).strip() for n in ast.walk(value)):
            problems.append(f"{_where(module_py, value.lineno)}: self.parent.{attribute} is empty (the generic test fails)")
    return problems


def _is_scene_clear(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
            and ast.unparse(statement.value.func) == "slicer.mrmlScene.Clear")


def _body_without_docstring(function: ast.FunctionDef) -> list[ast.stmt]:
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return body


def self_test_problems(module_py: Path, module: str) -> list[str]:
    """``<Module>Test``: independent test_* methods that start with a scene clear and assert something."""
    tree = parse_python(module_py)
    cls = next((node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == f"{module}Test"), None)
    if cls is None:
        return [f"{_where(module_py, 1)}: class {module}Test is missing"]
    problems = []
    methods = {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef)}
    tests = [method for name, method in methods.items() if name.startswith("test_")]
    if not tests:
        problems.append(f"{_where(module_py, cls.lineno)}: {module}Test has no test_* method")
    if "runTest" not in methods:
        problems.append(f"{_where(module_py, cls.lineno)}: {module}Test has no runTest (the Reload and Test button calls it)")
    for method in tests:
        body = _body_without_docstring(method)
        if not body or not _is_scene_clear(body[0]):
            problems.append(f"{_where(module_py, method.lineno)}: {method.name} does not start with"
                            " slicer.mrmlScene.Clear() (ctest runs every test_* method on its own)")
        asserts = [node for node in ast.walk(method) if isinstance(node, ast.Call)
                   and isinstance(node.func, ast.Attribute) and node.func.attr.startswith(("assert", "fail"))]
        asserts += [node for node in ast.walk(method) if isinstance(node, ast.Assert)]
        if not asserts:
            problems.append(f"{_where(module_py, method.lineno)}: {method.name} asserts nothing, so it cannot fail")
    return problems


INSTALLERS = {"pip_install", "pip_ensure", "installTorch"}


def import_time_install_problems(module_py: Path, module: str) -> list[str]:
    """Python packages are never installed at import time or in the module's constructor (only on first use)."""
    tree = parse_python(module_py)
    problems = []

    def scan(nodes, where):
        for statement in nodes:
            for node in ast.walk(statement):
                if isinstance(node, ast.Call):
                    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                    if name in INSTALLERS:
                        problems.append(f"{_where(module_py, node.lineno)}: {name}() runs {where}; install packages"
                                        " on first use (e.g. on Apply) instead")

    scan([node for node in tree.body if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))],
         "when the module is imported")
    module_class = next((node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == module), None)
    if module_class is not None:
        scan(module_class.body, "in the module's constructor (at Slicer startup)")
    return problems


# ------------------------------------------------------------------------------------------------ the Lib rule

# slicer.<name> that needs the Slicer application (Qt, the GUI, the global scene or the loaded modules).
FORBIDDEN_SLICER_NAMES = {
    "app", "mrmlScene", "modules", "moduleNames", "ScriptedLoadableModule", "parameterNodeWrapper",
    "packaging", "pydeps", "i18n", "testing", "cli", "qt", "ctk", "ScriptedFileIO",
}
# Modules a Lib file must not import at all.
FORBIDDEN_MODULES = ("qt", "ctk", "PythonQt", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper",
                     "slicer.packaging", "slicer.pydeps", "slicer.i18n", "slicer.testing", "slicer.cli")
# slicer.util helpers that work on the nodes they are given, without the application (checked in Slicer's util.py).
ALLOWED_SLICER_UTIL = {
    "VTKObservationMixin", "NodeModify", "MRMLNodeNotFoundException",
    "arrayFromVolume", "arrayFromVolumeModified", "updateVolumeFromArray",
    "arrayFromModelPoints", "arrayFromModelPointsModified", "arrayFromModelPointData",
    "arrayFromModelPointDataModified", "arrayFromModelCellData", "arrayFromModelCellDataModified",
    "arrayFromModelPolyIds", "arrayFromMarkupsControlPoints", "arrayFromMarkupsCurvePoints",
    "arrayFromMarkupsCurveData", "arrayFromMarkupsControlPointData", "arrayFromGridTransform",
    "arrayFromVTKMatrix", "vtkMatrixFromArray", "updateVTKMatrixFromArray", "arrayFromTransformMatrix",
    "updateTransformMatrixFromArray", "arrayFromTableColumn", "toVTKString", "toBool", "computeChecksum", "chdir",
}


def _forbidden_module(name: str) -> bool:
    return any(name == forbidden or name.startswith(forbidden + ".") for forbidden in FORBIDDEN_MODULES)


def _qt_class(name: str) -> bool:
    """slicer.qSlicer…, slicer.qMRML…: Qt widgets and application classes."""
    return len(name) > 1 and name[0] == "q" and name[1].isupper()


def lib_import_problems(path: Path) -> list[str]:
    """A Lib file imports no Qt/CTK/Slicer GUI module and reads no application state (slicer.app, .mrmlScene, …)."""
    try:
        tree = parse_python(path)
    except SyntaxError as error:
        return [f"{_where(path, error.lineno)}: does not parse: {error.msg}"]
    problems = []
    slicer_aliases, util_aliases = set(), set()

    def flag(node, message):
        problems.append(f"{_where(path, node.lineno)}: {message} (Lib code must run without the Slicer application:"
                        " take the scene and the nodes as arguments)")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _forbidden_module(alias.name):
                    flag(node, f"imports {alias.name}")
                elif alias.name == "slicer.util" and alias.asname:
                    util_aliases.add(alias.asname)
                elif alias.name == "slicer" or alias.name.startswith("slicer."):
                    if alias.name.startswith("slicer.") and _qt_class(alias.name.split(".")[1]):
                        flag(node, f"imports {alias.name}")
                    slicer_aliases.add(alias.asname or "slicer")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _forbidden_module(node.module):
                flag(node, f"imports from {node.module}")
            elif node.module == "slicer":
                for alias in node.names:
                    if alias.name in FORBIDDEN_SLICER_NAMES or _qt_class(alias.name) or alias.name == "*":
                        flag(node, f"imports {alias.name} from slicer")
                    elif alias.name == "util":
                        util_aliases.add(alias.asname or "util")
            elif node.module == "slicer.util":
                for alias in node.names:
                    if alias.name not in ALLOWED_SLICER_UTIL:
                        flag(node, f"imports slicer.util.{alias.name}, which needs the application")

    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in slicer_aliases:
            if node.attr in FORBIDDEN_SLICER_NAMES or _qt_class(node.attr):
                flag(node, f"uses {base.id}.{node.attr}")
        elif isinstance(base, ast.Name) and base.id in util_aliases:
            if node.attr not in ALLOWED_SLICER_UTIL:
                flag(node, f"uses slicer.util.{node.attr}, which needs the application")
        elif (isinstance(base, ast.Attribute) and base.attr == "util" and isinstance(base.value, ast.Name)
              and base.value.id in slicer_aliases and node.attr not in ALLOWED_SLICER_UTIL):
            flag(node, f"uses slicer.util.{node.attr}, which needs the application")
    return problems


# ------------------------------------------------------------------------------------------------ CMake


def cmake_commands(path: Path) -> list[tuple[str, list[str], int]]:
    """(command, arguments, line) of every command in a CMake list (comments removed, quotes kept as one token)."""
    text = path.read_text(encoding="utf-8")
    stripped = re.sub(r'("(?:[^"\\]|\\.)*")|#[^\n]*', lambda m: m.group(1) or "", text)
    commands = []
    for match in re.finditer(r"(\w+)\s*\(((?:[^()\"]|\"(?:[^\"\\]|\\.)*\"|\([^()]*\))*)\)", stripped):
        arguments = re.findall(r'"(?:[^"\\]|\\.)*"|[^\s]+', match.group(2))
        commands.append((match.group(1).lower(), arguments, stripped.count("\n", 0, match.start()) + 1))
    return commands


def _cmake_expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), value.strip('"'))


def module_cmake_problems(folder: Path) -> list[str]:
    """A module's CMake lists: its name, the files they name exist, generic tests, and the self-test registration."""
    cmake = folder / "CMakeLists.txt"
    if not cmake.is_file():
        return [f"{_where(folder)}: has no CMakeLists.txt"]
    problems = []
    commands = cmake_commands(cmake)
    variables = {"CMAKE_CURRENT_SOURCE_DIR": str(folder)}
    for command, arguments, line in commands:
        if command == "set" and arguments and arguments[0] == "MODULE_NAME":
            variables["MODULE_NAME"] = arguments[1] if len(arguments) > 1 else ""
            if variables["MODULE_NAME"] != folder.name:
                problems.append(f"{_where(cmake, line)}: MODULE_NAME is '{variables['MODULE_NAME']}', not the folder"
                                f" name '{folder.name}'")
    if "MODULE_NAME" not in variables:
        problems.append(f"{_where(cmake, 1)}: does not set MODULE_NAME")
    for command, arguments, line in commands:
        if command == "set" and arguments and arguments[0] in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"):
            for item in arguments[1:]:
                if re.fullmatch(r"\$\{\w+\}", item.strip('"')) and item.strip('"')[2:-1] not in variables:
                    continue  # a list filled by file(GLOB ...), checked below
                relative = _cmake_expand(item, variables)
                if not (folder / relative).is_file():
                    problems.append(f"{_where(cmake, line)}: {arguments[0]} names {relative}, which does not exist"
                                    f" in {_where(folder)}")
        if command == "file" and arguments and arguments[0] in ("GLOB", "GLOB_RECURSE"):
            patterns = [_cmake_expand(a, variables) for a in arguments[2:]
                        if a not in ("RELATIVE", "CONFIGURE_DEPENDS", "FOLLOW_SYMLINKS", "LIST_DIRECTORIES")
                        and _cmake_expand(a, variables) != str(folder)]
            for pattern in patterns:
                base = Path(pattern).parent
                if not base.is_absolute():
                    base = folder / base
                if pattern.endswith(".py") and not base.is_dir():
                    problems.append(f"{_where(cmake, line)}: file({arguments[0]}) looks for {pattern}, but"
                                    f" {_where(base)} does not exist")
    build = [arguments for command, arguments, _ in commands if command == "slicermacrobuildscriptedmodule"]
    if not build:
        problems.append(f"{_where(cmake, 1)}: does not call slicerMacroBuildScriptedModule")
    elif folder.name != LIBRARY and "WITH_GENERIC_TESTS" not in build[0]:
        problems.append(f"{_where(cmake, 1)}: slicerMacroBuildScriptedModule lacks WITH_GENERIC_TESTS")
    if folder.name != LIBRARY:
        if not any(command == "add_subdirectory" and arguments[:1] == ["Testing"] for command, arguments, _ in commands):
            problems.append(f"{_where(cmake, 1)}: does not add_subdirectory(Testing) (inside if(BUILD_TESTING))")
        testing = folder / "Testing" / "CMakeLists.txt"
        python_testing = folder / "Testing" / "Python" / "CMakeLists.txt"
        if not testing.is_file() or not python_testing.is_file():
            problems.append(f"{_where(folder)}: Testing/CMakeLists.txt or Testing/Python/CMakeLists.txt is missing")
        else:
            unittests = [arguments for command, arguments, _ in cmake_commands(python_testing)
                         if command == "slicer_add_python_unittest"]
            scripts = [_cmake_expand(arguments[arguments.index("SCRIPT") + 1], variables)
                       for arguments in unittests if "SCRIPT" in arguments[:-1]]
            if not scripts:
                problems.append(f"{_where(python_testing, 1)}: no slicer_add_python_unittest(SCRIPT ...) registers the"
                                " module's self-test")
            for script in scripts:
                if not (folder / Path(script).name).is_file():
                    problems.append(f"{_where(python_testing, 1)}: the self-test script {script} is not a file of"
                                    f" {_where(folder)}")
    return problems


def extension_cmake_problems(root: Path, modules: tuple[str, ...] = MODULES) -> list[str]:
    """The top-level list: metadata, every module (the library first) and an icon URL that points at a real file."""
    cmake = root / "CMakeLists.txt"
    if not cmake.is_file():
        return [f"{_where(cmake)}: missing"]
    commands = cmake_commands(cmake)
    problems = []
    settings = {arguments[0]: " ".join(arguments[1:]).strip('"') for command, arguments, _ in commands
                if command == "set" and arguments}
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        if not settings.get(key):
            problems.append(f"{_where(cmake, 1)}: {key} is not set")
    if settings.get("EXTENSION_CATEGORY") and settings["EXTENSION_CATEGORY"] != "Cardiac":
        problems.append(f"{_where(cmake, 1)}: EXTENSION_CATEGORY is not Cardiac")
    icon = settings.get("EXTENSION_ICONURL", "")
    if icon.startswith(REPOSITORY_RAW_URL):
        if not (root / icon[len(REPOSITORY_RAW_URL):]).is_file():
            problems.append(f"{_where(cmake, 1)}: EXTENSION_ICONURL points at {icon[len(REPOSITORY_RAW_URL):]},"
                            " which is not in the repository")
    elif icon:
        problems.append(f"{_where(cmake, 1)}: EXTENSION_ICONURL is not a raw URL under {REPOSITORY_RAW_URL}")
    subdirectories = [(arguments[0], line) for command, arguments, line in commands if command == "add_subdirectory"]
    for name, line in subdirectories:
        if not (root / name / "CMakeLists.txt").is_file():
            problems.append(f"{_where(cmake, line)}: add_subdirectory({name}) but {name}/CMakeLists.txt does not exist")
    names = [name for name, _ in subdirectories]
    if names[:1] != [LIBRARY]:
        problems.append(f"{_where(cmake, 1)}: add_subdirectory({LIBRARY}) must come first (the modules import it)")
    for module in modules:
        if module not in names:
            problems.append(f"{_where(cmake, 1)}: module {module} is not added with add_subdirectory")
    for command in ("find_package", "include"):
        if not any(c == command for c, _, _ in commands):
            problems.append(f"{_where(cmake, 1)}: no {command}(...) (find_package(Slicer), include(${{Slicer_USE_FILE}}))")
    return problems


# ------------------------------------------------------------------------------------------------ icons


def png_size(path: Path) -> tuple[int, int] | None:
    header = path.read_bytes()[:24]
    if len(header) < 24 or header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", header[16:24])


def icon_problems(paths: list[Path]) -> list[str]:
    problems = []
    for path in paths:
        if not path.is_file():
            problems.append(f"{_where(path)}: icon missing")
            continue
        size = png_size(path)
        if size is None:
            problems.append(f"{_where(path)}: not a PNG file")
        elif size != ICON_SIZE:
            problems.append(f"{_where(path)}: icon is {size[0]}×{size[1]}, not {ICON_SIZE[0]}×{ICON_SIZE[1]}")
    return problems


def icon_paths(root: Path = REPO_ROOT) -> list[Path]:
    found = {root / "CardiacSuite.png"}
    found.update(path for path in root.rglob("Resources/Icons/*.png") if not _skipped(path, root))
    return sorted(found)


# ------------------------------------------------------------------------------------------------ requirements

SLICER_PROVIDED = {"numpy", "scipy", "simpleitk", "vtk", "torch", "pillow"}


def requirements_problems(requirements: Path, pyproject: Path) -> list[str]:
    """Slicer-side requirements: lower bounds only, none of Slicer's own packages, each also a project dependency."""
    if not requirements.is_file():
        return [f"{_where(requirements)}: missing"]
    declared = pyproject.read_text(encoding="utf-8").lower() if pyproject.is_file() else ""
    problems = []
    for number, raw in enumerate(requirements.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0].lower().replace("_", "-")
        if name in SLICER_PROVIDED:
            problems.append(f"{_where(requirements, number)}: {name} comes with Slicer or the PyTorch extension and"
                            " must not be installed by CardiacSuite")
        if "==" in line or "<" in line or "~=" in line:
            problems.append(f"{_where(requirements, number)}: '{line}' pins or caps a version; inside Slicer use >= only")
        if f'"{name}' not in declared:
            problems.append(f"{_where(requirements, number)}: {name} is not a dependency in {_where(pyproject)}")
    return problems


# ================================================================================================ the real tree


def test_expected_modules_are_present():
    """The module list is written once, in CMakeLists.txt: every module folder is in it, and nothing else."""
    assert len(MODULES) >= 5, f"CMakeLists.txt adds only {MODULES}"
    assert sorted(MODULES) == module_names(), f"CMakeLists.txt adds {MODULES}; module folders: {module_names()}"


def test_headless_install_and_path_follow_the_module_list():
    """setup.py installs every module's Lib package and the Makefile's .pth lists every folder, both from CMake."""
    packages = extension_modules.lib_packages(REPO_ROOT)
    assert set(packages) == {LIBRARY, *(f"{module}Lib" for module in MODULES)}
    assert "extension_modules" in (REPO_ROOT / "setup.py").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "Utilities/extension_modules.py --pth" in makefile
    for module in MODULES:
        assert module not in makefile and module not in (REPO_ROOT / "pyproject.toml").read_text(), \
            f"{module} is named outside CMakeLists.txt"


def test_every_python_file_compiles():
    problems = compile_problems(python_files())
    assert not problems, _report(problems)


def test_every_python_file_compiles_on_python_312():
    python = python312()
    if python is None:
        pytest.skip("no Python 3.12 found at ~/.pyenv/versions/3.12*/bin/python3.12")
    problems = compile_problems(python_files(), python=python)
    assert not problems, _report(problems)


@pytest.mark.parametrize("module", MODULES)
def test_ui_form_parses(module):
    ui = REPO_ROOT / module / "Resources" / "UI" / f"{module}.ui"
    assert ui.is_file(), f"{_where(ui)}: missing"
    problems = ui_problems(ui) + scene_connection_problems(ui)
    assert not problems, _report(problems)


def test_every_ui_file_parses():
    problems = []
    for ui in sorted(REPO_ROOT.rglob("*.ui")):
        if not _skipped(ui, REPO_ROOT):
            problems += ui_problems(ui)
    assert not problems, _report(problems)


@pytest.mark.parametrize("module", MODULES)
def test_self_ui_names_exist_in_form(module):
    problems = self_ui_problems(REPO_ROOT / module / f"{module}.py", REPO_ROOT / module / "Resources" / "UI" / f"{module}.ui")
    assert not problems, _report(problems)


@pytest.mark.parametrize("module", MODULES)
def test_slicer_parameter_names_match_parameter_node(module):
    problems = parameter_name_problems(
        REPO_ROOT / module / f"{module}.py", REPO_ROOT / module / "Resources" / "UI" / f"{module}.ui", module
    )
    assert not problems, _report(problems)


@pytest.mark.parametrize("module", MODULES)
def test_module_follows_the_scripted_module_template(module):
    module_py = REPO_ROOT / module / f"{module}.py"
    problems = (module_class_problems(module_py, module) + module_metadata_problems(module_py, module)
                + self_test_problems(module_py, module) + import_time_install_problems(module_py, module))
    assert not problems, _report(problems)


def test_lib_packages_do_not_need_the_slicer_application():
    files = lib_python_files()
    assert any(LIBRARY in path.parts for path in files), "no file of CardiacSuiteLib was scanned"
    problems = [problem for path in files for problem in lib_import_problems(path)]
    assert not problems, _report(problems)


@pytest.mark.parametrize("folder", (LIBRARY, *MODULES))
def test_module_cmake_names_existing_files(folder):
    problems = module_cmake_problems(REPO_ROOT / folder)
    assert not problems, _report(problems)


def test_extension_cmake():
    problems = extension_cmake_problems(REPO_ROOT)
    assert not problems, _report(problems)


def test_icons_are_128_pixels():
    paths = icon_paths() + [REPO_ROOT / m / "Resources" / "Icons" / f"{m}.png" for m in MODULES]
    problems = icon_problems(sorted(set(paths)))
    assert not problems, _report(problems)


def test_slicer_requirements():
    problems = requirements_problems(
        REPO_ROOT / LIBRARY / LIBRARY / "Resources" / "requirements.txt", REPO_ROOT / "pyproject.toml"
    )
    assert not problems, _report(problems)


# A stand-in for Slicer's CMake package: enough to configure the extension and record what each module installs.
STUB_SLICER_CONFIG = """
set(Slicer_VERSION "5.12.0")
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake")
"""
STUB_USE_SLICER = """
set(BUILD_TESTING ON)
function(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS;WITH_SUBDIR" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  foreach(file IN LISTS MY_SCRIPTS MY_RESOURCES)
    if(NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${file}")
      message(SEND_ERROR "${MY_NAME}: ${file} does not exist in ${CMAKE_CURRENT_SOURCE_DIR}")
    endif()
  endforeach()
  file(APPEND "${CMAKE_BINARY_DIR}/installed.txt" "MODULE ${MY_NAME} ${CMAKE_CURRENT_SOURCE_DIR} ${MY_WITH_GENERIC_TESTS}\\n")
  foreach(file IN LISTS MY_SCRIPTS)
    file(APPEND "${CMAKE_BINARY_DIR}/installed.txt" "SCRIPT ${MY_NAME} ${file}\\n")
  endforeach()
  foreach(file IN LISTS MY_RESOURCES)
    file(APPEND "${CMAKE_BINARY_DIR}/installed.txt" "RESOURCE ${MY_NAME} ${file}\\n")
  endforeach()
endfunction()
function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT;TESTNAME_PREFIX" "SLICER_ARGS" ${ARGN})
  file(APPEND "${CMAKE_BINARY_DIR}/installed.txt" "UNITTEST ${MODULE_NAME} ${MY_SCRIPT}\\n")
endfunction()
"""


def configure_with_stub_slicer(source: Path, build: Path) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    stub = build.parent / "stub-slicer"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "SlicerConfig.cmake").write_text(STUB_SLICER_CONFIG)
    (stub / "UseSlicer.cmake").write_text(STUB_USE_SLICER)
    (stub / "Empty.cmake").write_text("")
    completed = subprocess.run(
        ["cmake", "-S", str(source), "-B", str(build), f"-DSlicer_DIR={stub}"],
        capture_output=True, text=True, timeout=120,
    )
    record = build / "installed.txt"
    lines = [line.split() for line in record.read_text().splitlines()] if record.is_file() else []
    return completed, lines


def test_cmake_configures_and_installs_every_package_file(tmp_path):
    """Configure the extension against a stand-in Slicer: the globs pick up every Lib file, including new ones."""
    if shutil.which("cmake") is None or not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("cmake or a C compiler is not installed")
    completed, records = configure_with_stub_slicer(REPO_ROOT, tmp_path / "build")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    modules = {record[1]: record for record in records if record[0] == "MODULE"}
    assert set(modules) == {LIBRARY, *MODULES}
    assert all(modules[m][3] == "TRUE" for m in MODULES), "a module lacks WITH_GENERIC_TESTS"
    assert {record[1] for record in records if record[0] == "UNITTEST"} == set(MODULES)
    installed = {(record[1], record[2]) for record in records if record[0] in ("SCRIPT", "RESOURCE")}
    problems = []
    for folder in (LIBRARY, *MODULES):
        package = REPO_ROOT / folder / (folder if folder == LIBRARY else f"{folder}Lib")
        for path in sorted(package.rglob("*")):
            if path.is_file() and not _skipped(path, REPO_ROOT) and path.suffix != ".pyc":
                relative = path.relative_to(REPO_ROOT / folder).as_posix()
                if (folder, relative) not in installed:
                    problems.append(f"{_where(path)}: not installed by {folder}/CMakeLists.txt")
    assert not problems, _report(problems)


# ================================================================================================ each rule catches


def _at(path: Path, needle: str) -> str:
    """``name:line:`` of the first line of ``path`` that contains ``needle``, as the checkers report it."""
    return f"{path.name}:{_line_of(path.read_text(encoding='utf-8'), needle)}:"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


GOOD_UI = """
<?xml version="1.0" encoding="UTF-8"?>
<ui version="4.0">
 <class>Bad</class>
 <widget class="qMRMLWidget" name="Bad">
  <layout class="QVBoxLayout" name="verticalLayout">
   <item>
    <widget class="qMRMLNodeComboBox" name="inputSelector">
     <property name="SlicerParameterName" stdset="0">
      <string>inputVolume</string>
     </property>
    </widget>
   </item>
   <item>
    <widget class="QComboBox" name="modeSelector">
     <property name="SlicerParameterName" stdset="0">
      <string>mode</string>
     </property>
    </widget>
   </item>
   <item>
    <widget class="QPushButton" name="applyButton"/>
   </item>
  </layout>
 </widget>
 <connections>
  <connection>
   <sender>Bad</sender>
   <signal>mrmlSceneChanged(vtkMRMLScene*)</signal>
   <receiver>inputSelector</receiver>
   <slot>setMRMLScene(vtkMRMLScene*)</slot>
  </connection>
 </connections>
</ui>
"""

GOOD_MODULE = '''
from typing import Annotated
import slicer
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper, Choice
from slicer import vtkMRMLScalarVolumeNode


class Bad(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Bad"
        self.parent.categories = ["Cardiac"]
        self.parent.dependencies = []
        self.parent.contributors = ["Someone"]
        self.parent.helpText = "See https://github.com/CardiacSuite/SlicerCardiacSuite#bad"
        self.parent.acknowledgementText = "Thanks."


@parameterNodeWrapper
class BadParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    mode: Annotated[str, Choice(["a", "b"])] = "a"


class BadWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def setup(self):
        self.ui.applyButton.enabled = True

    def cleanup(self): pass
    def enter(self): pass
    def exit(self): pass
    def onSceneStartClose(self, caller, event): pass
    def onSceneEndClose(self, caller, event): pass
    def initializeParameterNode(self): pass
    def setParameterNode(self, node): pass
    def _checkCanApply(self, caller=None, event=None): pass


class BadLogic(ScriptedLoadableModuleLogic):
    pass


class BadTest(ScriptedLoadableModuleTest):
    def runTest(self):
        self.test_One()

    def test_One(self):
        """Docstring first is fine."""
        slicer.mrmlScene.Clear()
        self.assertEqual(1 + 1, 2)
'''


@pytest.fixture
def bad_module(tmp_path):
    """A small module that passes every check; each negative test breaks one thing in a copy of it."""
    folder = tmp_path / "Bad"
    module_py = _write(folder / "Bad.py", GOOD_MODULE)
    ui = _write(folder / "Resources" / "UI" / "Bad.ui", GOOD_UI)
    return module_py, ui


def test_good_snippets_pass(bad_module):
    module_py, ui = bad_module
    problems = (ui_problems(ui) + scene_connection_problems(ui) + self_ui_problems(module_py, ui)
                + parameter_name_problems(module_py, ui, "Bad") + module_class_problems(module_py, "Bad")
                + module_metadata_problems(module_py, "Bad") + self_test_problems(module_py, "Bad")
                + import_time_install_problems(module_py, "Bad") + compile_problems([module_py]))
    assert problems == []


def test_rejects_python_that_does_not_compile(tmp_path):
    broken = _write(tmp_path / "broken.py", "def f(:\n    pass\n")
    problems = compile_problems([broken])
    assert len(problems) == 1 and "broken.py:1:" in problems[0]
    python = python312()
    if python:
        problems = compile_problems([broken], python=python)
        assert len(problems) == 1 and "broken.py:1:" in problems[0] and "3.12" in problems[0]


def test_rejects_malformed_ui(tmp_path):
    ui = _write(tmp_path / "Bad.ui", '<?xml version="1.0"?>\n<ui>\n <widget class="qMRMLWidget" name="Bad">\n</ui>\n')
    problems = ui_problems(ui)
    assert len(problems) == 1 and "Bad.ui:4:" in problems[0] and "not well-formed" in problems[0]


def test_rejects_duplicate_widget_names_and_unconnected_mrml_widgets(bad_module):
    _, ui = bad_module
    ui.write_text(ui.read_text().replace('name="applyButton"', 'name="modeSelector"')
                  .replace("<receiver>inputSelector</receiver>", "<receiver>nothing</receiver>"))
    assert any("'modeSelector' is used twice" in p for p in ui_problems(ui))
    problems = scene_connection_problems(ui)
    assert len(problems) == 1 and _at(ui, 'name="inputSelector"') in problems[0] and "inputSelector" in problems[0]


def test_rejects_self_ui_name_missing_from_form(bad_module):
    module_py, ui = bad_module
    module_py.write_text(module_py.read_text().replace("self.ui.applyButton", "self.ui.aplyButton"))
    problems = self_ui_problems(module_py, ui)
    assert len(problems) == 1 and _at(module_py, "self.ui.aplyButton") in problems[0] and "self.ui.aplyButton" in problems[0]


def test_rejects_parameter_name_without_field(bad_module):
    module_py, ui = bad_module
    ui.write_text(ui.read_text().replace("<string>inputVolume</string>", "<string>inputVolum</string>"))
    problems = parameter_name_problems(module_py, ui, "Bad")
    assert len(problems) == 1 and _at(ui, "<string>inputVolum</string>") in problems[0] and "no field 'inputVolum'" in problems[0]


def test_rejects_combo_box_bound_to_a_field_without_choices(bad_module):
    module_py, ui = bad_module
    module_py.write_text(module_py.read_text().replace('Annotated[str, Choice(["a", "b"])]', "str"))
    problems = parameter_name_problems(module_py, ui, "Bad")
    assert len(problems) == 1 and _at(ui, "<string>mode</string>") in problems[0] and "Choice" in problems[0]


def test_rejects_missing_template_class_and_method(bad_module):
    module_py, _ = bad_module
    module_py.write_text(module_py.read_text().replace("class BadLogic(ScriptedLoadableModuleLogic)", "class Logic(object)")
                         .replace("    def enter(self): pass\n", ""))
    problems = module_class_problems(module_py, "Bad")
    assert any("class BadLogic is missing" in p for p in problems)
    assert any(_at(module_py, "class BadWidget") in p and "enter()" in p for p in problems)


def test_rejects_parameter_node_without_wrapper_and_missing_metadata(bad_module):
    module_py, _ = bad_module
    module_py.write_text(module_py.read_text().replace("@parameterNodeWrapper\n", "")
                         .replace('["Cardiac"]', '["Examples"]').replace('"Thanks."', '""'))
    assert any("not decorated with @parameterNodeWrapper" in p for p in module_class_problems(module_py, "Bad"))
    problems = module_metadata_problems(module_py, "Bad")
    assert any(_at(module_py, "self.parent.categories") in p and "not 'Cardiac'" in p for p in problems)
    assert any(_at(module_py, "self.parent.acknowledgementText") in p and "acknowledgementText is empty" in p for p in problems)


def test_rejects_self_test_that_keeps_state_or_asserts_nothing(bad_module):
    module_py, _ = bad_module
    module_py.write_text(module_py.read_text()
                         .replace("        slicer.mrmlScene.Clear()\n", "")
                         .replace("        self.assertEqual(1 + 1, 2)\n", "        print(1 + 1)\n"))
    problems = self_test_problems(module_py, "Bad")
    assert any("test_One does not start with slicer.mrmlScene.Clear()" in p for p in problems)
    assert any(_at(module_py, "def test_One") in p and "asserts nothing" in p for p in problems)


def test_rejects_installing_packages_at_import(bad_module):
    module_py, _ = bad_module
    module_py.write_text(module_py.read_text() + "\nslicer.util.pip_install('monai')\n")
    problems = import_time_install_problems(module_py, "Bad")
    assert len(problems) == 1 and _at(module_py, "pip_install") in problems[0] and "imported" in problems[0]


@pytest.mark.parametrize(
    "snippet, what",
    [
        ("import qt\n", "imports qt"),
        ("from ctk import ctkCollapsibleButton\n", "imports from ctk"),
        ("from slicer.ScriptedLoadableModule import *\n", "imports from slicer.ScriptedLoadableModule"),
        ("import slicer.parameterNodeWrapper\n", "imports slicer.parameterNodeWrapper"),
        ("from slicer.parameterNodeWrapper import parameterNodeWrapper\n", "imports from slicer.parameterNodeWrapper"),
        ("import slicer\nscene = slicer.mrmlScene\n", "uses slicer.mrmlScene"),
        ("import slicer\nslicer.app.processEvents()\n", "uses slicer.app"),
        ("import slicer\nlogic = slicer.modules.segmentations.logic()\n", "uses slicer.modules"),
        ("import slicer as s\nscene = s.mrmlScene\n", "uses s.mrmlScene"),
        ("from slicer import mrmlScene\n", "imports mrmlScene from slicer"),
        ("import slicer\nw = slicer.qMRMLNodeComboBox()\n", "uses slicer.qMRMLNodeComboBox"),
        ("import slicer\nslicer.util.errorDisplay('x')\n", "uses slicer.util.errorDisplay"),
        ("import slicer.util\nnode = slicer.util.getNode('x')\n", "uses slicer.util.getNode"),
        ("from slicer.util import loadVolume\n", "imports slicer.util.loadVolume"),
        ("from slicer import util\nutil.pip_install('x')\n", "uses slicer.util.pip_install"),
        ("def f():\n    import slicer.packaging\n", "imports slicer.packaging"),
    ],
)
def test_rejects_lib_code_that_needs_the_application(tmp_path, snippet, what):
    path = _write(tmp_path / "SomethingLib" / "bad.py", "x = 1\n" + snippet)
    problems = lib_import_problems(path)
    assert problems, f"not caught: {snippet!r}"
    assert f"bad.py:{len(snippet.splitlines()) + 1}:" in problems[-1] and what in problems[-1], problems


def test_accepts_lib_code_that_takes_the_scene(tmp_path):
    path = _write(tmp_path / "SomethingLib" / "good.py", """
        import slicer
        from slicer import vtkMRMLScalarVolumeNode
        from slicer.util import arrayFromVolume, VTKObservationMixin


        def add(scene):
            node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
            logic = slicer.vtkSlicerSegmentationsModuleLogic()
            return slicer.util.arrayFromVolume(node), logic
    """)
    assert lib_import_problems(path) == []


def test_lib_scan_covers_files_added_later(tmp_path):
    _write(tmp_path / "CardiacSuiteLib" / "CardiacSuiteLib" / "newpackage" / "deep.py", "import qt\n")
    _write(tmp_path / "Foo" / "FooLib" / "algo.py", "x = 1\n")
    _write(tmp_path / "Foo" / "Foo.py", "import qt\n")  # a module file may import qt
    scanned = {path.relative_to(tmp_path).as_posix() for path in lib_python_files(tmp_path)}
    assert scanned == {"CardiacSuiteLib/CardiacSuiteLib/newpackage/deep.py", "Foo/FooLib/algo.py"}


def test_rejects_cmake_naming_missing_files(tmp_path):
    folder = tmp_path / "Bad"
    _write(folder / "Bad.py", "")
    _write(folder / "Resources" / "Icons" / "Bad.png", "")
    _write(folder / "CMakeLists.txt", """
        set(MODULE_NAME Bad)
        set(MODULE_PYTHON_SCRIPTS
          ${MODULE_NAME}.py
          ${MODULE_NAME}Lib/missing.py
          )
        set(MODULE_PYTHON_RESOURCES
          Resources/Icons/${MODULE_NAME}.png
          Resources/UI/${MODULE_NAME}.ui
          )
        slicerMacroBuildScriptedModule(NAME ${MODULE_NAME} SCRIPTS ${MODULE_PYTHON_SCRIPTS})
    """)
    problems = module_cmake_problems(folder)
    assert any("CMakeLists.txt:2:" in p and "BadLib/missing.py" in p for p in problems)
    assert any("CMakeLists.txt:6:" in p and "Resources/UI/Bad.ui" in p for p in problems)
    assert any("lacks WITH_GENERIC_TESTS" in p for p in problems)
    assert any("add_subdirectory(Testing)" in p for p in problems)


def test_rejects_extension_cmake_with_missing_module_and_icon(tmp_path):
    _write(tmp_path / "CMakeLists.txt", f"""
        project(CardiacSuite)
        set(EXTENSION_CATEGORY "Examples")
        set(EXTENSION_ICONURL "{REPOSITORY_RAW_URL}CardiacSuite.png")
        add_subdirectory(CMRAnalysis)
        add_subdirectory(CardiacSuiteLib)
    """)
    problems = extension_cmake_problems(tmp_path)
    assert any("EXTENSION_CATEGORY is not Cardiac" in p for p in problems)
    assert any("CardiacSuite.png, which is not in the repository" in p for p in problems)
    assert any("CMakeLists.txt:4:" in p and "CMRAnalysis/CMakeLists.txt does not exist" in p for p in problems)
    assert any(f"add_subdirectory({LIBRARY}) must come first" in p for p in problems)
    assert any("module FourDCT is not added" in p for p in problems)


def test_rejects_icons_of_the_wrong_size(tmp_path):
    good = tmp_path / "good.png"
    wrong = tmp_path / "wrong.png"
    header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    good.write_bytes(header + struct.pack(">II", 128, 128) + b"\x08\x06\x00\x00\x00")
    wrong.write_bytes(header + struct.pack(">II", 64, 128) + b"\x08\x06\x00\x00\x00")
    (tmp_path / "text.png").write_text("not a png")
    problems = icon_problems([good, wrong, tmp_path / "text.png", tmp_path / "absent.png"])
    assert len(problems) == 3
    assert "wrong.png: icon is 64×128" in problems[0] and "not a PNG" in problems[1] and "missing" in problems[2]


def test_rejects_slicer_requirements_that_pin_or_replace_slicer_packages(tmp_path):
    requirements = _write(tmp_path / "requirements.txt", "monai>=1.3\nnumpy>=1.26\npydicom==3.0.1\nfoo>=1\n")
    pyproject = _write(tmp_path / "pyproject.toml", 'dependencies = ["monai>=1.3", "numpy>=1.26", "pydicom>=3.0"]\n')
    problems = requirements_problems(requirements, pyproject)
    assert any("requirements.txt:2:" in p and "numpy comes with Slicer" in p for p in problems)
    assert any("requirements.txt:3:" in p and "pins" in p for p in problems)
    assert any("requirements.txt:4:" in p and "foo is not a dependency" in p for p in problems)
    assert not any("requirements.txt:1:" in p for p in problems)


def test_stub_configure_catches_a_missing_resource(tmp_path):
    if shutil.which("cmake") is None or not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("cmake or a C compiler is not installed")
    source = tmp_path / "source"
    _write(source / "CMakeLists.txt", """
        cmake_minimum_required(VERSION 3.16.3)
        project(Stub NONE)
        find_package(Slicer REQUIRED)
        include(${Slicer_USE_FILE})
        add_subdirectory(Bad)
    """)
    _write(source / "Bad" / "Bad.py", "")
    _write(source / "Bad" / "CMakeLists.txt", """
        set(MODULE_NAME Bad)
        slicerMacroBuildScriptedModule(NAME Bad SCRIPTS Bad.py RESOURCES Resources/UI/Bad.ui WITH_GENERIC_TESTS)
    """)
    completed, _ = configure_with_stub_slicer(source, tmp_path / "build")
    assert completed.returncode != 0 and "Resources/UI/Bad.ui does not exist" in completed.stderr
