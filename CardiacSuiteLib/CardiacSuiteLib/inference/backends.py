"""Inference backends: ONNX Runtime for exported networks, torch for MONAI networks and TorchScript.

Each backend maps a float32 batch ``[N, C, H, W(, D)]`` to per-class scores of the same spatial size. The
device is CUDA when asked for (or on ``auto``) and available, else the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ModelError
from .registry import ModelEntry


class Backend(Protocol):
    device: str

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def cpu_threads() -> int:
    return int(os.environ.get("CARDIACSUITE_THREADS", os.cpu_count() or 1))


def cuda_available(backend: str | None = None) -> bool:
    """Whether ``backend`` (``torch``, ``onnxruntime``; None: either) can run on a CUDA device here.

    Only the named backend's library is imported: torch alone takes seconds to import, which an ONNX model
    on a cold start should not pay.
    """
    if backend in (None, "torch"):
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None and torch.cuda.is_available():
            return True
    if backend in (None, "onnxruntime"):
        try:
            import onnxruntime
        except ImportError:
            return False
        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return False


#: Devices a user may ask for; ``auto`` takes CUDA when it is usable.
DEVICES = ("auto", "cpu", "cuda")


def choose_device(requested: str = "auto", backend: str | None = None) -> str:
    """``cpu`` or ``cuda``: ``auto`` takes CUDA when ``backend`` can use it; an explicit ``cuda`` without it is an error."""
    if requested not in DEVICES:
        raise ModelError(f"device must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}, not '{requested}'")
    if requested == "cpu":
        return "cpu"
    if cuda_available(backend):
        return "cuda"
    if requested == "cuda":
        raise ModelError("CUDA was asked for but no CUDA device is usable here; choose the cpu device (or auto)")
    return "cpu"


class OnnxRuntimeBackend:
    def __init__(self, path: Path, entry: ModelEntry, device: str):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own untyped errors for bad files
            raise ModelError(f"ONNX Runtime cannot load {path}: {error}") from None
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"
        self.input_name = entry.io.get("input") or self.session.get_inputs()[0].name
        self.output_name = entry.io.get("output") or self.session.get_outputs()[0].name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]


class TorchBackend:
    """A TorchScript file, or a MONAI network named in the entry's ``network`` with a state-dict file."""

    def __init__(self, path: Path, entry: ModelEntry, device: str):
        import torch

        torch.set_num_threads(cpu_threads())
        self.torch = torch
        self.device = device
        try:
            if entry.network:
                self.model = build_network(entry.network)
                state = torch.load(str(path), map_location="cpu", weights_only=True)
                self.model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
            else:
                self.model = torch.jit.load(str(path), map_location="cpu")
        except ModelError:
            raise
        except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, TypeError... for bad files
            raise ModelError(f"torch cannot load {path} for model '{entry.id}': {error}") from None
        self.model.to(device).eval()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)
            output = self.model(tensor)
            if isinstance(output, (list, tuple)):
                output = output[0]
            return output.float().cpu().numpy()


def build_network(spec: dict):
    """A MONAI network from ``{"name": "UNet", "args": {...}}`` (names from ``monai.networks.nets``)."""
    from monai.networks import nets

    name = spec.get("name", "")
    factory = getattr(nets, name, None)
    if factory is None:
        raise ModelError(f"monai.networks.nets has no network '{name}'")
    return factory(**spec.get("args", {}))


def create_backend(entry: ModelEntry, path: Path, device: str = "auto", worker: bool = True) -> Backend:
    """The backend for ``entry``; in a worker process when one was asked for (``worker.use_worker_process``)."""
    device = choose_device(device, entry.backend)
    if entry.backend not in ("onnxruntime", "torch"):
        raise ModelError(f"model '{entry.id}' needs backend '{entry.backend}', which CardiacSuite does not provide")
    from . import worker as worker_process

    python = worker_process.worker_python() if worker else None
    if python:
        return worker_process.start_worker_backend(entry, path, device, python,
                                                   lambda: create_backend(entry, path, device, worker=False))
    if entry.backend == "onnxruntime":
        return OnnxRuntimeBackend(path, entry, device)
    return TorchBackend(path, entry, device)
