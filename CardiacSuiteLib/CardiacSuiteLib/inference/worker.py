"""Model inference in a separate Python process, so that the GUI thread never competes with a network for time.

Inside Slicer, a module widget calls :func:`use_worker_process` once with Slicer's ``PythonSlicer``; from then on
every backend :func:`~CardiacSuiteLib.inference.backends.create_backend` makes runs its network in a child
process (as SlicerMONAIAuto3DSeg does) and the segmenter only sends batches and receives scores. A child that
cannot start (a missing package in that interpreter, say) is reported in the log and the backend runs in
process instead, so the analysis never fails because of the worker. Batch scripts and the command line run in
process unless they ask otherwise.

Run as ``python -m CardiacSuiteLib.inference.worker``: the parent sends pickled frames on stdin (the model
entry, its file and the device first, then one batch per frame) and reads one frame per reply on stdout.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import ModelError
from .registry import ModelEntry

_HEADER = struct.Struct("<Q")
_worker_python: str | None = None


class WorkerStartError(ModelError):
    """The child process could not be started or stopped before it answered (not a problem of the model)."""


def use_worker_process(python: str | None) -> None:
    """Run every backend made from now on in a child process of ``python`` (``None``: in this process)."""
    global _worker_python
    _worker_python = python


def worker_python() -> str | None:
    return _worker_python


def _send(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the other side closed the channel")
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the channel closed in the middle of a message")
    return pickle.loads(data)


class WorkerBackend:
    """A backend whose network lives in a child process; ``predict`` has the in-process backend's contract."""

    def __init__(self, entry: ModelEntry, path: Path, device: str, python: str) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH", "")]))
        self._lock = threading.Lock()
        try:
            self._process = subprocess.Popen(
                [python, "-m", "CardiacSuiteLib.inference.worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            )
        except OSError as error:
            self._process = None
            raise WorkerStartError(f"the inference worker ({python}) cannot be started: {error}") from None
        try:
            _send(self._process.stdin, (entry, str(path), device))
            status, value = _receive(self._process.stdout)
        except (EOFError, OSError) as error:
            self.close()
            raise WorkerStartError(f"the inference worker ({python}) stopped before the model was loaded: {error}") from None
        if status != "ready":
            self.close()
            raise value
        self.device = value
        self.entry = entry

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            try:
                _send(self._process.stdin, np.ascontiguousarray(batch, dtype=np.float32))
                status, value = _receive(self._process.stdout)
            except (EOFError, OSError, ValueError) as error:  # ValueError: the channel was closed on our side
                raise ModelError(f"the inference worker stopped during inference ({error}); run the analysis again")
        if status != "scores":
            raise value
        return value

    def close(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            try:
                process.stdin.close()
                process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()

    def __del__(self) -> None:
        if getattr(self, "_process", None) is not None:
            self.close()


def start_worker_backend(entry: ModelEntry, path: Path, device: str, python: str, in_process):
    """A :class:`WorkerBackend`, or ``in_process()`` when the child cannot load the model (said in the log)."""
    try:
        return WorkerBackend(entry, path, device, python)
    except WorkerStartError as error:
        logging.warning(f"CardiacSuite: inference runs in this process instead of a worker: {error}")
        return in_process()


def main() -> int:
    channel_in, channel_out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything a library prints must not reach the channel
    from .backends import create_backend

    try:
        entry, path, device = _receive(channel_in)
        backend = create_backend(entry, Path(path), device, worker=False)
    except EOFError:
        return 1
    except Exception as error:
        _send(channel_out, ("error", error))
        return 1
    _send(channel_out, ("ready", backend.device))
    while True:
        try:
            batch = _receive(channel_in)
        except EOFError:
            return 0
        try:
            _send(channel_out, ("scores", backend.predict(batch)))
        except Exception as error:
            _send(channel_out, ("error", error))


if __name__ == "__main__":
    sys.exit(main())
