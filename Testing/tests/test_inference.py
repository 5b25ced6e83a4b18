"""Inference: device choice, the ONNX Runtime and torch backends, slice segmentation geometry and post-processing.

The geometry tests use a fake backend that labels the (resized, normalised) input by intensity thresholds, so
the expected label map is known exactly in the input's own pixel grid. The torch tests use a tiny MONAI UNet;
the ONNX tests use the real registered model, installed from its Python package into a temporary cache.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from CardiacSuiteLib.errors import Cancelled, InputError, ModelError
from CardiacSuiteLib.inference import CancelToken, report
from CardiacSuiteLib.inference.backends import (
    OnnxRuntimeBackend,
    TorchBackend,
    build_network,
    choose_device,
    create_backend,
    cuda_available,
)
from CardiacSuiteLib.inference.registry import ModelRegistry, parse_entry
from CardiacSuiteLib.inference.segment2d import Preparation, SliceSegmenter, keep_largest_components
from CardiacSuiteLib.inference.worker import WorkerBackend, WorkerStartError, use_worker_process

# TorchScript is deprecated in recent torch, but it is a supported model format here; its warnings are expected.
pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean might cause the trace"),
]

UNET = {
    "name": "UNet",
    "args": {"spatial_dims": 2, "in_channels": 1, "out_channels": 4, "channels": [4, 8], "strides": [2]},
}
SIZE = 256  # the fake model's input size: small, so the geometry tests stay fast


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CARDIACSUITE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CARDIACSUITE_MODELS", raising=False)


def make_entry(**changes):
    raw = {
        "id": "tiny-unet",
        "version": "1.0",
        "title": "Tiny UNet",
        "task": "unit-test",
        "modality": "MR",
        "labels": [{"value": 1, "name": "RV"}, {"value": 2, "name": "Myo"}, {"value": 3, "name": "LV"}],
        "input": {
            "dimensions": 2,
            "size": [SIZE, SIZE],
            "crop": "nonzero-square",
            "normalisation": {"type": "percentile-minmax", "lower": 0.0, "upper": 100.0, "nonzero": True},
        },
        "backend": "torch",
        "file": {"name": "weights.pt", "sha256": "0" * 64},
        "sources": [],
        "licence": "MIT",
        "card": {},
    }
    raw.update(changes)
    return parse_entry(raw, "test")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 2.0 * np.logical_and(a, b).sum() / total if total else 1.0


# ------------------------------------------------------------------------------------------------ devices


needs_cuda = pytest.mark.skipif(not cuda_available(), reason="no usable CUDA device on this machine")
without_cuda = pytest.mark.skipif(cuda_available(), reason="this machine has CUDA; the CUDA tests run instead")


@without_cuda
def test_choose_device_without_cuda():
    assert choose_device("cpu") == "cpu"
    assert choose_device("auto") == "cpu"
    assert choose_device() == "cpu"
    with pytest.raises(ModelError, match="CUDA was asked for but no CUDA device is usable here; choose the cpu device"):
        choose_device("cuda")


@needs_cuda
def test_choose_device_with_cuda():
    assert choose_device("cpu") == "cpu"
    assert choose_device("auto") == "cuda"
    assert choose_device("cuda") == "cuda"


@pytest.mark.parametrize("requested", ["gpu", "CUDA", "", "cuda:0"])
def test_choose_device_rejects_unknown_names(requested):
    with pytest.raises(ModelError, match=f"device must be auto, cpu or cuda, not '{requested}'"):
        choose_device(requested)


def test_progress_report_is_clamped():
    calls = []
    report(lambda fraction, message: calls.append((fraction, message)), 1.5, "done")
    report(lambda fraction, message: calls.append((fraction, message)), -0.2, "start")
    report(None, 0.5, "nobody listens")
    assert calls == [(1.0, "done"), (0.0, "start")]


def test_cancel_token():
    token = CancelToken()
    token.raise_if_cancelled()
    token.cancel()
    assert token.cancelled
    with pytest.raises(Cancelled, match="nothing was added to the scene"):
        token.raise_if_cancelled()


# ------------------------------------------------------------------------------------------------ torch


@pytest.fixture(scope="module")
def tiny_unet():
    import torch

    torch.manual_seed(0)
    network = build_network(UNET).eval()
    batch = np.random.default_rng(0).random((2, 1, 32, 48), dtype=np.float32)
    with torch.inference_mode():
        expected = network(torch.from_numpy(batch)).numpy()
    return network, batch, expected


@pytest.fixture
def tiny_weights(tmp_path, tiny_unet):
    """The tiny UNet's state dict saved as a weights file."""
    import torch

    path = tmp_path / "weights.pt"
    torch.save(tiny_unet[0].state_dict(), path)
    return path


def test_build_network_names_unknown_networks():
    with pytest.raises(ModelError, match="has no network 'NoSuchNet'"):
        build_network({"name": "NoSuchNet"})


def test_torch_backend_with_a_monai_state_dict(tmp_path, tiny_unet):
    import torch

    network, batch, expected = tiny_unet
    path = tmp_path / "weights.pt"
    torch.save(network.state_dict(), path)
    backend = create_backend(make_entry(network=UNET), path, "cpu")
    assert isinstance(backend, TorchBackend) and backend.device == "cpu"
    scores = backend.predict(batch)
    assert scores.shape == (2, 4, 32, 48) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    # A checkpoint that wraps the weights as {"state_dict": ...} loads too.
    torch.save({"state_dict": network.state_dict()}, path)
    np.testing.assert_allclose(TorchBackend(path, make_entry(network=UNET), "cpu").predict(batch), expected, atol=1e-5)


@needs_cuda
def test_torch_backend_on_cuda_matches_the_cpu(tiny_weights, tiny_unet):
    _, batch, expected = tiny_unet
    backend = create_backend(make_entry(network=UNET), tiny_weights, "auto")
    assert isinstance(backend, TorchBackend) and backend.device == "cuda"
    np.testing.assert_allclose(backend.predict(batch), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torch_backend_with_torchscript(tmp_path, tiny_unet, how):
    import torch

    network, batch, expected = tiny_unet
    path = tmp_path / "model.ts"
    if how == "script":
        compiled = torch.jit.script(network)
    else:
        compiled = torch.jit.trace(network, torch.from_numpy(batch))
    torch.jit.save(compiled, str(path))
    backend = TorchBackend(path, make_entry(), "cpu")  # no "network": the file is TorchScript
    scores = backend.predict(batch[:1])
    assert scores.shape == (1, 4, 32, 48)
    np.testing.assert_allclose(scores, expected[:1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("network", [UNET, None])
@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "flipped"])
def test_corrupt_torch_weights_are_a_model_error(tmp_path, tiny_unet, network, damage):
    import torch

    path = tmp_path / "weights.pt"
    if network:
        torch.save(tiny_unet[0].state_dict(), path)
    else:
        torch.jit.save(torch.jit.script(tiny_unet[0]), str(path))
    data = path.read_bytes()
    if damage == "garbage":
        data = b"this is not a torch file " * 40
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = b""
    else:  # the zip signature at the start no longer reads "PK"
        data = bytes([data[0] ^ 0xFF]) + data[1:]
    path.write_bytes(data)
    entry = make_entry(network=network) if network else make_entry()
    with pytest.raises(ModelError) as caught:
        TorchBackend(path, entry, "cpu")
    message = str(caught.value)
    assert "torch cannot load" in message and str(path) in message and "'tiny-unet'" in message


def test_weights_of_another_network_are_a_model_error(tmp_path, tiny_unet):
    import torch

    path = tmp_path / "weights.pt"
    torch.save(tiny_unet[0].state_dict(), path)
    bigger = {"name": "UNet", "args": {**UNET["args"], "channels": [8, 16]}}
    with pytest.raises(ModelError, match="torch cannot load"):
        TorchBackend(path, make_entry(network=bigger), "cpu")


def test_a_file_that_is_not_a_state_dict_is_a_model_error(tmp_path):
    import torch

    path = tmp_path / "weights.pt"
    torch.save(torch.zeros(3), path)  # a valid torch file holding a bare tensor
    with pytest.raises(ModelError, match="torch cannot load"):
        TorchBackend(path, make_entry(network=UNET), "cpu")


def test_unknown_backend_is_a_model_error(tmp_path):
    entry = make_entry()
    object.__setattr__(entry, "backend", "tensorflow")  # parse_entry refuses it; a hand-made entry might not
    with pytest.raises(ModelError, match="needs backend 'tensorflow'"):
        create_backend(entry, tmp_path / "weights.pt", "cpu")


# ------------------------------------------------------------------------------------------------ ONNX Runtime


@pytest.fixture(scope="module")
def real_model(tmp_path_factory):
    """The registered cine model, installed from its Python package into a temporary cache."""
    registry = ModelRegistry.default(cache_dir=tmp_path_factory.mktemp("models"))
    entry = registry.get(task="cmr-sax-cine")
    return registry, entry, registry.resolve(entry)


@pytest.fixture(scope="module")
def real_backend(real_model):
    _, entry, path = real_model
    return create_backend(entry, path, "cpu")


def test_onnxruntime_backend_with_the_real_model(real_backend):
    assert isinstance(real_backend, OnnxRuntimeBackend) and real_backend.device == "cpu"
    assert (real_backend.input_name, real_backend.output_name) == ("input", "output")
    rows, cols = np.mgrid[:256, :256]
    disc = ((rows - 128) ** 2 + (cols - 120) ** 2 < 30**2).astype(np.float32)
    batch = np.stack([0.2 + 0.7 * disc, np.zeros((256, 256), np.float32)])[:, np.newaxis]
    scores = real_backend.predict(batch.astype(np.float64))  # any float input is accepted
    assert scores.shape == (2, 4, 256, 256) and scores.dtype == np.float32
    assert np.all(scores >= 0) and np.all(scores <= 1)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-4)


def test_onnxruntime_refuses_a_broken_file(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07not an onnx model")
    entry = make_entry(backend="onnxruntime")
    with pytest.raises(ModelError, match="ONNX Runtime cannot load"):
        create_backend(entry, path, "cpu")


def test_from_registry_builds_a_segmenter(real_model):
    registry, entry, _ = real_model
    segmenter = SliceSegmenter.from_registry(registry, None, "cmr-sax-cine", device="cpu")
    assert segmenter.entry == entry and segmenter.size == (256, 256) and segmenter.device == "cpu"


# ------------------------------------------------------------------------------------------------ geometry


class ThresholdBackend:
    """Labels the normalised model input by intensity band: below 1/6 → 0, then 1, 2 and 3 above 5/6."""

    device = "cpu"

    def __init__(self):
        self.batches = []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.shape)
        assert batch.dtype == np.float32 and batch.shape[1:] == (1, SIZE, SIZE)
        classes = np.digitize(batch[:, 0], [1 / 6, 1 / 2, 5 / 6])
        return np.moveaxis(np.eye(4, dtype=np.float32)[classes], -1, 1)


# Intensities: tissue 100, outer ring 200, inner ring 300, disc 400 (0, 1/3, 2/3 and 1 once normalised).
# Each region touches only its neighbours in this order, so interpolation between two of them never lands in
# the band of a third, and the label map resized back must match the thresholded original to within a pixel.
INTENSITY_TO_LABEL = {100.0: 0, 200.0: 1, 300.0: 2, 400.0: 3}


def phantom(shape: tuple[int, int, int], border: tuple[int, int, int, int]) -> np.ndarray:
    """Slices with a zero border (top, bottom, left, right) around tissue holding an off-centre disc in two rings."""
    slices, height, width = shape
    top, bottom, left, right = border
    images = np.zeros(shape, np.float32)
    rows, cols = np.mgrid[:height, :width].astype(np.float32)
    images[:, top : height - bottom, left : width - right] = 100.0
    inner_h, inner_w = height - top - bottom, width - left - right
    scale = min(inner_h, inner_w)
    for index in range(slices):
        cr = top + inner_h / 2 + (index - 1) * 0.06 * scale  # the rings move from slice to slice
        cc = left + inner_w / 2 - 0.04 * scale
        radius = (0.11 + 0.02 * index) * scale
        image = images[index]
        image[np.hypot(rows - cr, cols - cc) < radius + 0.24 * scale] = 200.0
        image[np.hypot(rows - cr, cols - cc - 0.03 * scale) < radius + 0.12 * scale] = 300.0
        image[np.hypot(rows - cr - 0.02 * scale, cols - cc - 0.05 * scale) < radius] = 400.0
    return images


def crop_of(shape, border):
    """The centred square crop of the nonzero footprint, as ``prepare`` must choose it."""
    _, height, width = shape
    top, bottom, left, right = border
    h, w = height - top - bottom, width - left - right
    side = min(h, w)
    r0, c0 = top + (h - side) // 2, left + (w - side) // 2
    return slice(r0, r0 + side), slice(c0, c0 + side)


CASES = [
    ((3, 200, 170), (5, 15, 10, 20)),  # taller than wide: the crop cuts rows, the model upsamples
    ((3, 150, 260), (0, 0, 40, 40)),  # wider than tall with no row border
    ((2, 300, 330), (10, 10, 20, 20)),  # bigger than the model's input: the model downsamples
]


@pytest.mark.parametrize("shape, border", CASES)
def test_segmentation_comes_back_in_the_input_grid(shape, border):
    images = phantom(shape, border)
    segmenter = SliceSegmenter(make_entry(), ThresholdBackend(), batch_size=2)
    prep = segmenter.prepare(images)
    rows, cols = crop_of(shape, border)
    assert (prep.rows, prep.cols) == (rows, cols)
    assert (prep.low, prep.high) == (100.0, 400.0)

    labels = segmenter.segment(images, prep)
    assert labels.shape == images.shape and labels.dtype == np.uint8
    truth = np.zeros(shape, np.uint8)
    for intensity, value in INTENSITY_TO_LABEL.items():
        truth[images == intensity] = value
    outside = np.ones(shape[1:], bool)
    outside[rows, cols] = False
    assert not labels[:, outside].any(), "labels outside the crop"
    truth[:, outside] = 0
    for index in range(shape[0]):
        for value in (1, 2, 3):
            expected, got = truth[index] == value, labels[index] == value
            assert expected.sum() > 200
            assert dice(expected, got) > 0.95, (index, value, dice(expected, got))
            # No shift: the label's centroid stays on the truth's, well within half a pixel.
            np.testing.assert_allclose(np.argwhere(got).mean(axis=0), np.argwhere(expected).mean(axis=0), atol=0.25)
    assert segmenter.segment(images).tolist() == labels.tolist()  # the preparation defaults to the stack's own


def test_segment_uses_batches_of_the_model_size():
    backend = ThresholdBackend()
    images = phantom((5, 90, 80), (0, 0, 0, 0))
    SliceSegmenter(make_entry(), backend, batch_size=2).segment(images)
    assert backend.batches == [(2, 1, SIZE, SIZE), (2, 1, SIZE, SIZE), (1, 1, SIZE, SIZE)]


def test_prepare_with_no_crop_and_all_pixels():
    normalisation = {"type": "percentile-minmax", "lower": 0, "upper": 100, "nonzero": False}
    entry = make_entry(input={"dimensions": 2, "size": [SIZE, SIZE], "normalisation": normalisation})
    images = phantom((1, 40, 30), (5, 5, 5, 5))
    prep = SliceSegmenter(entry, ThresholdBackend()).prepare(images)
    assert prep == Preparation(0.0, 400.0, slice(0, 40), slice(0, 30))


def test_prepare_refuses_an_empty_image():
    segmenter = SliceSegmenter(make_entry(), ThresholdBackend())
    for empty in (np.zeros((2, 40, 30), np.float32), np.full((1, 8, 8), -5.0)):
        with pytest.raises(InputError, match="empty"):
            segmenter.prepare(empty)
        with pytest.raises(InputError, match="empty"):
            segmenter.segment(empty)


def test_unsupported_inputs_are_refused():
    segmenter = SliceSegmenter(make_entry(), ThresholdBackend())
    with pytest.raises(InputError, match="stack of 2D slices"):
        segmenter.segment(np.ones((1, 2, 8, 8), np.float32))
    with pytest.raises(ModelError, match="not a 2D slice model"):
        SliceSegmenter(make_entry(input={"dimensions": 3}), ThresholdBackend())
    z_score = make_entry(input={"dimensions": 2, "normalisation": {"type": "z-score"}})
    with pytest.raises(ModelError, match="normalisation 'z-score'"):
        SliceSegmenter(z_score, ThresholdBackend()).prepare(np.ones((1, 8, 8)))


def test_progress_is_monotonic_within_its_span():
    calls = []
    images = phantom((5, 60, 60), (0, 0, 0, 0))
    segmenter = SliceSegmenter(make_entry(), ThresholdBackend(), batch_size=2)
    segmenter.segment(images, progress=lambda *call: calls.append(call), progress_span=(0.6, 0.8))
    fractions = [fraction for fraction, _ in calls]
    assert fractions == sorted(fractions) and len(fractions) == 3
    assert all(0.6 < fraction <= 0.8 + 1e-12 for fraction in fractions)
    assert fractions[-1] == pytest.approx(0.8)
    assert calls[-1][1] == "segmented 5 of 5 slices"


def test_cancel_from_the_progress_callback_stops_segmentation():
    token = CancelToken()
    backend = ThresholdBackend()
    calls = []

    def progress(fraction, message):
        calls.append(fraction)
        token.cancel()  # the user presses Cancel after the first batch

    images = phantom((6, 60, 60), (0, 0, 0, 0))
    with pytest.raises(Cancelled):
        SliceSegmenter(make_entry(), backend, batch_size=2).segment(images, progress=progress, cancel=token)
    assert len(backend.batches) == 1 and calls == [pytest.approx(2 / 6)]
    # A token cancelled beforehand stops it before any inference.
    backend = ThresholdBackend()
    with pytest.raises(Cancelled):
        SliceSegmenter(make_entry(), backend).segment(images, cancel=token)
    assert backend.batches == []


# ------------------------------------------------------------------------------------------------ post-processing


def test_keep_largest_components():
    labels = np.zeros((3, 30, 30), np.uint8)
    labels[:, 5:15, 5:15] = 1  # a big blob through all slices
    labels[0, 25:28, 25:28] = 1  # a small disconnected blob of the same label
    labels[:, 20:24, 2:8] = 2
    labels[2, 0:2, 28:30] = 2  # a small blob of label 2
    labels[1, 27, 0] = 4  # a label not listed: untouched even though tiny
    original = labels.copy()
    kept = keep_largest_components(labels, [1, 2, 3])
    assert kept.dtype == np.uint8 and kept.shape == labels.shape
    np.testing.assert_array_equal(labels, original)  # the input is not modified
    expected = original.copy()
    expected[0, 25:28, 25:28] = 0
    expected[2, 0:2, 28:30] = 0
    np.testing.assert_array_equal(kept, expected)


def test_keep_largest_components_uses_face_connectivity_in_3d():
    labels = np.zeros((2, 10, 10), np.uint8)
    labels[0, 1:4, 1:4] = 3
    labels[1, 1:4, 1:4] = 3  # touches the first slice's blob face to face: one component
    labels[1, 5:9, 5:9] = 3  # a larger blob touching only diagonally (not at all here): separate
    kept = keep_largest_components(labels, [3])
    assert (kept == 3).sum() == 18 and not kept[1, 5:9, 5:9].any()


def test_keep_largest_components_with_nothing_to_do():
    labels = np.zeros((2, 8, 8), np.uint8)
    labels[0, 1, 1] = 5
    assert keep_largest_components(labels, [1, 2, 3]) is labels
    blob = np.zeros((4, 4), np.uint8)
    blob[0, 0] = blob[3, 3] = blob[3, 2] = 1
    single = keep_largest_components(blob, [1])  # a single 2D slice works too
    assert single.tolist() == [[0] * 4, [0] * 4, [0] * 4, [0, 0, 1, 1]]


# ------------------------------------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_real_model_on_an_acdc_case(shared_data, real_model, real_backend):
    import h5py

    path = shared_data / "acdc" / "patient001_frame01.h5"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with h5py.File(path, "r") as case:
        image = np.asarray(case["image"], np.float32)
        truth = np.asarray(case["label"])
    _, entry, _ = real_model
    segmenter = SliceSegmenter(entry, real_backend)
    prep = segmenter.prepare(image)  # the window and crop from the whole study, as the CMR function does
    middle = slice(len(image) // 2 - 2, len(image) // 2 + 2)
    labels = segmenter.segment(image[middle], prep)
    labels = keep_largest_components(labels, entry.postprocessing["largest_component_labels"])
    assert labels.shape == truth[middle].shape
    lv = entry.label_value("Left ventricle")
    score = dice(labels == lv, truth[middle] == lv)
    assert score > 0.90, f"LV Dice {score:.3f}"
    myo = entry.label_value("Left ventricle myocardium")
    assert dice(labels == myo, truth[middle] == myo) > 0.85


# ------------------------------------------------------------------------------------------------ worker process


@pytest.fixture
def in_a_worker():
    use_worker_process(sys.executable)
    yield
    use_worker_process(None)


def test_worker_process_gives_the_in_process_scores(tiny_weights, tiny_unet, in_a_worker):
    _, batch, expected = tiny_unet
    backend = create_backend(make_entry(network=UNET), tiny_weights, "cpu")
    assert isinstance(backend, WorkerBackend) and backend.device == "cpu"
    np.testing.assert_allclose(backend.predict(batch), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.predict(batch[:1]), expected[:1], rtol=1e-5, atol=1e-5)
    backend.close()
    with pytest.raises(ModelError, match="the inference worker stopped during inference"):
        backend.predict(batch)


def test_worker_reports_a_corrupt_model_as_the_model_error(tmp_path, in_a_worker):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"this is not a torch file " * 40)
    with pytest.raises(ModelError) as raised:
        create_backend(make_entry(network=UNET), path, "cpu")
    assert not isinstance(raised.value, WorkerStartError)


def test_a_worker_that_cannot_start_falls_back_to_this_process(tmp_path, tiny_weights, tiny_unet, caplog):
    _, batch, expected = tiny_unet
    use_worker_process(str(tmp_path / "no-such-python"))
    try:
        backend = create_backend(make_entry(network=UNET), tiny_weights, "cpu")
    finally:
        use_worker_process(None)
    assert isinstance(backend, TorchBackend)
    assert "inference runs in this process instead of a worker" in caplog.text
    np.testing.assert_allclose(backend.predict(batch), expected, rtol=1e-5, atol=1e-5)


def test_the_real_model_segments_alike_in_a_worker(real_model, real_backend, in_a_worker):
    _, entry, path = real_model
    rows, cols = np.mgrid[:256, :256]
    disc = ((rows - 128) ** 2 + (cols - 120) ** 2 < 30**2).astype(np.float32)
    batch = (0.2 + 0.7 * disc)[np.newaxis, np.newaxis]
    worker_backend = create_backend(entry, path, "cpu")
    assert isinstance(worker_backend, WorkerBackend)
    np.testing.assert_allclose(worker_backend.predict(batch), real_backend.predict(batch), atol=1e-5)
    worker_backend.close()
