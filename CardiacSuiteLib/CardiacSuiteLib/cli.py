"""``cardiacsuite``: the batch and scripting face of CardiacSuite.

Every command builds a headless Slicer scene, runs the same library code the Slicer modules run, and writes
its outputs into ``--out`` only once everything has succeeded (a failed run leaves the folder as it was).
Bad input ends the command with exit status 2 and one line saying what is wrong and what to do.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import traceback
from contextlib import contextmanager
from pathlib import Path

from .errors import CardiacSuiteError, InputError
from .inference.backends import DEVICES

# Each module's Lib package that offers commands has a ``cli`` module with ``add_commands(subparsers)``.
COMMAND_MODULES = [
    "CMRAnalysisLib.cli",
    "CMRAnalysisLib.cli_atria",
    "CardiacSegmentationLib.cli",
    "CardiacSegmentationLib.cli_reformat",
    "FourDCTLib.cli",
    "StentReconstructionLib.cli",
    "InterventionPlanningLib.cli",
    "SurgicalPlanReportLib.cli",
]

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


# ------------------------------------------------------------------------------------------------ output


class Progress:
    """Progress on stderr: a rewritten line on a terminal, a line per 10 % step in a log."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.last_step = -1

    def __call__(self, fraction: float, message: str) -> None:
        if self.quiet:
            return
        if self.interactive:
            self.stream.write(f"\r[{fraction * 100:5.1f} %] {message:<60}")
            if fraction >= 1.0:
                self.stream.write("\n")
        else:
            step = int(fraction * 10)
            if step == self.last_step:
                return
            self.last_step = step
            self.stream.write(f"[{fraction * 100:5.1f} %] {message}\n")
        self.stream.flush()


@contextmanager
def staged_output(out_dir: Path):
    """Write into a staging folder beside ``out_dir``; move the files in only when the block succeeds."""
    out_dir = Path(out_dir)
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    except OSError as error:
        raise InputError(f"cannot write to {parent}: {error.strerror}") from None
    try:
        yield staging
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in staging.iterdir():
            target = out_dir / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(item, target)
    except OSError as error:
        raise InputError(f"could not write the results to {out_dir}: {error.strerror or error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _json_default(value):
    import numpy as np

    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# ------------------------------------------------------------------------------------------------ commands


def models(args: argparse.Namespace) -> int:
    from .inference.registry import ModelRegistry

    registry = ModelRegistry.default()
    if args.action == "list":
        for entry in registry.models():
            state = "installed" if registry.is_installed(entry) else "not installed"
            print(f"{entry.id}\t{entry.version}\t{entry.task}\t{entry.backend}\t{state}\t{entry.licence}")
        return 0
    if not args.model_id:
        raise InputError(f"'cardiacsuite models {args.action}' needs a model id (see 'cardiacsuite models list')")
    entry = registry.get(args.model_id)
    if args.action == "install":
        path = registry.install(entry, allow_download=args.download, progress=Progress(args.quiet))
    elif args.action == "import":
        if not args.file:
            raise InputError("'cardiacsuite models import ID FILE' needs the weights file")
        path = registry.import_file(entry, args.file)
    elif args.action == "verify":
        path = registry.verified_path(entry)
    else:
        raise InputError(f"unknown models action '{args.action}'")
    print(f"{entry.id} {entry.version}: {path} (sha256 verified)")
    return 0


# ------------------------------------------------------------------------------------------------ parser


def add_model_options(command: argparse.ArgumentParser) -> None:
    """The options every AI command shares."""
    command.add_argument("--model", help="model id from 'cardiacsuite models list' (default: the task's default)")
    command.add_argument("--device", choices=DEVICES, default="auto", help="default: auto")
    command.add_argument("--download", action="store_true", help="allow downloading the model weights if absent")
    command.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardiacsuite", description="CardiacSuite: cardiac MR analysis and cardiac CT planning, headless."
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
    commands = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name).add_commands(commands)

    models_parser = commands.add_parser("models", help="list, install, import or verify model weights")
    models_parser.add_argument("action", choices=("list", "install", "import", "verify"))
    models_parser.add_argument("model_id", nargs="?")
    models_parser.add_argument("file", nargs="?", help="weights file for 'import'")
    models_parser.add_argument("--download", action="store_true", help="'install' may download from the model's URL")
    models_parser.add_argument("--quiet", action="store_true")
    models_parser.set_defaults(handler=models)
    return parser


# Lib errors speak of the input, as Slicer users see them; on the command line, name the option that answers them.
OPTION_HINTS = (
    ("by its series UID", "--series UID"),
    ("by the series UID of one of its series", "--series UID"),
    ("allow missing phases", "--allow-missing-phases"),
    ("downloading was not agreed to", "--download"),
)


def with_option_hint(message: str, hints=OPTION_HINTS) -> str:
    """``message`` followed by the command-line option that does what it asks for, when one does."""
    options = [option for phrase, option in hints if phrase in message and option not in message]
    return message + (f" (option {options[0]})" if options else "")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CardiacSuiteError as error:
        print(f"cardiacsuite: error: {with_option_hint(str(error))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cardiacsuite: interrupted; no results were written", file=sys.stderr)
        return 130
    except MemoryError:
        print("cardiacsuite: error: out of memory; close other programs or process fewer phases", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as error:  # the one place where an unexpected failure becomes a one-line report
        if args.debug:
            traceback.print_exc()
        print(
            f"cardiacsuite: internal error: {type(error).__name__}: {error} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
