"""The bundled fast short-axis cine model (``sax-fast-unet``) and the ``heart-roi`` crop that drives it.

The registry entry resolves from the weights shipped in CMRAnalysisLib's resources with a good checksum; the
model segments an ACDC validation patient (never trained on) above a Dice floor measured with
``CMRAnalysis/Training/evaluate_sax.py`` less a margin; under the ``heart-roi`` crop the label map comes back in
the input's exact grid, and the crop finds the heart of the digital beating-heart phantom.
"""

from __future__ import annotations

import numpy as np
import pytest

from CardiacSuiteLib.inference.registry import ModelRegistry, sha256_of
from CardiacSuiteLib.inference.segment2d import (
    SliceSegmenter,
    keep_largest_components,
    nonzero_square,
    roi_sample_slices,
    square_around,
)
from CardiacSuiteLib.phantoms.cine import beating_heart_cine

MODEL_ID = "sax-fast-unet"
TASK = "cmr-sax-cine"
# Measured on ACDC patient 001 (acdc/, held out from training) with evaluate_sax.py; the floors keep a margin.
ACDC_CASE = "patient001"
DICE_FLOOR = {"ED": {1: 0.80, 2: 0.75, 3: 0.88}, "ES": {1: 0.65, 2: 0.75, 3: 0.80}}


@pytest.fixture(scope="module")
def fast_model(tmp_path_factory):
    registry = ModelRegistry.default(cache_dir=tmp_path_factory.mktemp("models"))
    entry = registry.get(MODEL_ID, task=TASK)
    path = registry.resolve(entry)
    return registry, entry, path, SliceSegmenter.from_registry(registry, MODEL_ID, TASK, device="cpu")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / total) if total else 1.0


def test_entry_resolves_from_the_bundled_weights(fast_model):
    registry, entry, path, segmenter = fast_model
    assert [source["type"] for source in entry.sources] == ["bundled"]
    assert entry.sources[0]["module"] == "CMRAnalysisLib"
    assert path.stat().st_size == entry.file_size < 8_000_000
    assert sha256_of(path) == entry.sha256
    assert entry.backend == "onnxruntime" and entry.input["crop"] == "heart-roi"
    assert "CC BY-NC-SA 4.0" in entry.licence
    # Both short-axis cine models stay selectable by id.
    assert {MODEL_ID, "myopari-acdc-tiramisu"} <= {model.id for model in registry.models(TASK)}
    # One slice channel in, four class scores out, any batch size, at the entry's input size.
    (model_input,), (model_output,) = segmenter.backend.session.get_inputs(), segmenter.backend.session.get_outputs()
    assert model_input.shape[1:] == [1, *entry.input["size"]] and model_output.shape[1] == 4
    assert isinstance(model_input.shape[0], str)


def test_square_around_stays_inside_and_square():
    rows, cols = square_around((5, 60, 200, 250), 1.8, (256, 216))
    assert rows.stop - rows.start == cols.stop - cols.start == 99
    assert rows.start == 0 and cols.stop == 216  # moved inside, not cut
    rows, cols = square_around((0, 250, 0, 200), 2.0, (256, 216))
    assert (rows.stop - rows.start, cols.stop - cols.start) == (216, 216)


def test_roi_samples_are_mid_slices_over_phases():
    cine = np.arange(6 * 9, dtype=np.float32).reshape(6, 9, 1, 1) * np.ones((1, 1, 4, 4), np.float32)
    samples = roi_sample_slices(cine, slices=3, phases=4)
    assert sorted({int(v) % 9 for v in samples[:, 0, 0]}) == [3, 4, 5]
    assert sorted({int(v) // 9 for v in samples[:, 0, 0]}) == [0, 2, 3, 5]
    stack = roi_sample_slices(cine[0], slices=3, phases=4)  # a stack: slices spread over its middle 40 %
    assert 3 <= len(stack) <= 12 and {int(v) for v in stack[:, 0, 0]} <= {2, 3, 4, 5, 6}


def test_heart_roi_finds_the_phantom_heart_and_keeps_the_grid(fast_model):
    *_, segmenter = fast_model
    phantom = beating_heart_cine(phases=8, slices=8, size=160, seed=3)
    frames = phantom.series.frames
    prep = segmenter.prepare(frames)
    heart = (phantom.labels > 0).any(axis=(0, 1))
    r, c = np.flatnonzero(heart.any(axis=1)), np.flatnonzero(heart.any(axis=0))
    side = prep.rows.stop - prep.rows.start
    assert side == prep.cols.stop - prep.cols.start
    assert side < 0.9 * min(nonzero_square(frames)[0].stop - nonzero_square(frames)[0].start, 160)
    assert prep.rows.start <= r[0] and r[-1] < prep.rows.stop, "the crop cuts the heart's rows"
    assert prep.cols.start <= c[0] and c[-1] < prep.cols.stop, "the crop cuts the heart's columns"
    # Every slice of two phases, through the crop and back: same grid, labels where the phantom drew them.
    for phase in (phantom.ed_phase, phantom.es_phase):
        labels = segmenter.segment(frames[phase], prep)
        assert labels.shape == frames[phase].shape and labels.dtype == np.uint8
        lv = labels == 3
        truth = phantom.labels[phase] == 3
        assert dice(lv, truth) > 0.85
        np.testing.assert_allclose(np.argwhere(lv).mean(axis=0)[1:], np.argwhere(truth).mean(axis=0)[1:], atol=1.5)


@pytest.mark.realdata
def test_segments_an_acdc_validation_patient(fast_model, shared_data):
    h5py = pytest.importorskip("h5py")
    *_, segmenter = fast_model
    for phase, frame in (("ED", "frame01"), ("ES", "frame02")):
        with h5py.File(shared_data / "acdc" / f"{ACDC_CASE}_{frame}.h5", "r") as h5:
            image, truth = h5["image"][:], h5["label"][:]
        labels = keep_largest_components(segmenter.segment(image, segmenter.prepare(image)), [1, 2, 3])
        assert labels.shape == image.shape  # 256 x 216: a non-square grid comes back as it was
        for value, floor in DICE_FLOOR[phase].items():
            score = dice(labels == value, truth == value)
            assert score >= floor, (phase, value, score)
