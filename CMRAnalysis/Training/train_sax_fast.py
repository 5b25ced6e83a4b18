"""Train the fast short-axis cine model (``sax-fast-unet``): a compact MONAI UNet for RV, LV myocardium, LV cavity.

Not shipped in the extension. The shipped weights (``sax-fast-unet`` 1.0.0) come from four stages, each
restarting the one-cycle schedule from the previous stage's weights; reproducible on the CPU from a clean
checkout (about 40-60 s per epoch on 2 cores)::

    T=CMRAnalysis/Training/train_sax_fast.py; C="--cache /tmp/cardiacsuite-sax-fast"
    nice -n 5 .venv/bin/python $T --epochs 20 --threads 2 --out /tmp/sax-fast-stage1 $C
    nice -n 5 .venv/bin/python $T --epochs 16 --lr 1e-3 --seed 20240604 \
        --init /tmp/sax-fast-stage1/sax-fast-unet-1.0.0.pt --out /tmp/sax-fast-stage2 $C
    nice -n 5 .venv/bin/python $T --epochs 8 --lr 8e-4 --seed 20240605 --val-every 4 \
        --init /tmp/sax-fast-stage2/sax-fast-unet-1.0.0.pt --out /tmp/sax-fast-stage3 $C
    nice -n 5 .venv/bin/python $T --epochs 20 --lr 1e-3 --seed 20240606 --threads 1 --margin-range 1.25 2.2 \
        --init /tmp/sax-fast-stage3/sax-fast-unet-1.0.0.pt --out /tmp/sax-fast-stage4 $C

The extension ships these weights as ONNX (``sax-fast-unet`` 1.0.1: the 1.0.0 weights, exported by
``export_onnx.py``, which checks the logits against PyTorch), run with ONNX Runtime.

``logs/`` holds the training logs of stages 3 and 4 (loss and validation per epoch, the sha256 of the weights
each started from). Stage 4 samples heart crops closer to the margin used at inference (1.8). Seeds make the
augmentation and the order reproducible; bit-identical weights also need the same torch build and thread count.

Scheme
- Training data: ACDC ``acdc_train/`` (70 patients, ED and ES, expert labels). Validation: ACDC ``acdc/`` (20
  other patients, never trained on): a held-out split, which is the cross-validation scheme of this model. The
  final weights are those of the last epoch (no selection on the validation set). Sunnybrook is never used: it
  is the external test set.
- Distillation: the registered ``myopari-acdc-tiramisu`` model labels every training slice and the 16 frames
  of the unlabelled ``cine_multiframe`` cine once (cached in ``--cache``); its hard labels are a second target
  (cross-entropy, weight ``--distil``) seen through the same augmentations as the image, and the only target on
  the unlabelled frames.
- Heart-region crop: one network learns all scales. A quarter of the samples show the whole field of view (what
  the coarse pass of the ``heart-roi`` crop sees); the rest show a square of 1.3-2.5 x the heart box (found, as
  at inference, on the mid-ventricular slices) with its centre jittered (what the fine pass sees).
- Augmentation: rotation, scaling, anisotropic stretch, translation; intensity gamma, contrast, brightness,
  window saturation, smooth multiplicative bias field, blur, low resolution, Gaussian and Rician noise (the M&Ms
  lesson: intensity augmentation carries a model to other vendors).
- Optional: ``--distil-sunnybrook PATIENT ...`` adds every phase of those Sunnybrook cines, learned from the
  teacher's labels alone (the manual contours are never read); a patient learned this way must not be scored,
  so it is for leave-one-patient-out folds. Tried as a fifth stage (12 epochs from the 1.0.0 weights, SCD0000201
  and SCD0000301 distilled): held-out SCD0000101 LV EF error -3.6 points (1.0.0: -4.1), EDV -2.7 % (-3.3 %), and
  on the two distilled patients the EF errors stayed at -3.4 and -1.3 points, not the teacher's -0.9 and -0.7: the
  student keeps its own end-systolic boundary. Not shipped.
- Validation runs the real pipeline (``SliceSegmenter`` with the ``heart-roi`` crop and the registry entry's
  input settings) every ``--val-every`` epochs and prints ED/ES Dice per structure.

Writes ``<out>/sax-fast-unet-<version>.pt`` (state dict), ``<out>/training_log.json`` and ``<out>/entry_input.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sax_data  # noqa: E402

MODEL_ID = "sax-fast-unet"
VERSION = "1.0.0"
SIZE = 128
NETWORK = {
    "name": "UNet",
    "args": {
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 4,
        "channels": [16, 32, 64, 128, 256],
        "strides": [2, 2, 2, 2],
        "num_res_units": 1,
        "norm": "instance",
    },
}
NORMALISATION = {"type": "percentile-minmax", "lower": 0.5, "upper": 99.5, "nonzero": True}
ROI = {"labels": [1, 2, 3], "margin": 1.8, "slices": 3, "phases": 4, "refine": True, "min_side": 32, "min_pixels": 20}
INPUT = {
    "dimensions": 2,
    "size": [SIZE, SIZE],
    "spacing_mm": None,
    "channels": 1,
    "crop": "heart-roi",
    "roi": ROI,
    "batch_size": 64,
    "normalisation": NORMALISATION,
}
FOV_FRACTION = 0.25
MARGIN_RANGE = (1.3, 2.5)


def entry_dict() -> dict:
    """The registry fields the pipeline needs (validation builds a ``SliceSegmenter`` from them)."""
    return {
        "id": MODEL_ID,
        "version": VERSION,
        "title": "Fast short-axis cine UNet",
        "task": sax_data.TASK,
        "modality": "MR",
        "labels": [
            {"value": 1, "name": "Right ventricle"},
            {"value": 2, "name": "Left ventricle myocardium"},
            {"value": 3, "name": "Left ventricle"},
        ],
        "input": INPUT,
        "network": NETWORK,
        "backend": "torch",
        "file": {"name": f"{MODEL_ID}-{VERSION}.pt", "sha256": "0" * 64},
        "sources": [],
        "licence": "CC BY-NC-SA 4.0",
        "card": {},
    }


# ----------------------------------------------------------------------------------------------- samples


def normalise(image: np.ndarray) -> np.ndarray:
    """The pipeline's percentile-minmax normalisation over the volume's nonzero pixels, clipped to [0, 1]."""
    from CardiacSuiteLib.inference.segment2d import intensity_window, normalised

    return normalised(image, *intensity_window(image, NORMALISATION)).astype(np.float32)


def heart_box(labels: np.ndarray) -> tuple[int, int, int, int] | None:
    """Box of the heart labels on the mid-ventricular slices chosen as at inference (``roi_sample_slices``)."""
    from CardiacSuiteLib.inference.segment2d import roi_sample_slices

    mid = roi_sample_slices(labels.astype(np.float32), ROI["slices"], ROI["phases"]) > 0
    heart = mid.any(axis=0)
    if not heart.any():
        heart = (labels > 0).any(axis=0)
    if not heart.any():
        return None
    r, c = np.flatnonzero(heart.any(axis=1)), np.flatnonzero(heart.any(axis=0))
    return int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1


class Dataset:
    """Normalised slices with expert labels (255 where there are none), teacher labels and per-patient heart boxes."""

    def __init__(self, volumes: list[sax_data.Volume], unlabelled_repeats: int, margin_range: tuple[float, float] = MARGIN_RANGE):
        self.margin_range = margin_range
        self.images, self.labels, self.teacher, self.boxes, self.fov = [], [], [], [], []
        boxes: dict[str, tuple[int, int, int, int] | None] = {}
        for volume in volumes:  # patient box = union of the mid-slice boxes of its phases, as at inference
            reference = volume.label if volume.label is not None else volume.teacher
            box = heart_box(reference)
            old = boxes.get(volume.patient)
            if box and old:
                box = (min(box[0], old[0]), max(box[1], old[1]), min(box[2], old[2]), max(box[3], old[3]))
            boxes[volume.patient] = box or old
        for volume in volumes:
            image = normalise(volume.image)
            from CardiacSuiteLib.inference.segment2d import nonzero_square

            fov = nonzero_square(volume.image)
            repeats = unlabelled_repeats if volume.phase == "cine" else 1
            for _ in range(repeats):
                for k in range(len(image)):
                    self.images.append(image[k])
                    self.labels.append(volume.label[k] if volume.label is not None else np.full(image[k].shape, 255, np.uint8))
                    self.teacher.append(volume.teacher[k] if volume.teacher is not None else np.full(image[k].shape, 255, np.uint8))
                    self.boxes.append(boxes[volume.patient])
                    self.fov.append(fov)

    def __len__(self) -> int:
        return len(self.images)

    def crop(self, index: int, rng: np.random.Generator):
        """A training crop (image, label, teacher), resized to SIZE: the field of view or a square around the heart."""
        import torch
        import torch.nn.functional as F

        from CardiacSuiteLib.inference.segment2d import square_around

        image, label, teacher = self.images[index], self.labels[index], self.teacher[index]
        box = self.boxes[index]
        if box is None or rng.random() < FOV_FRACTION:
            rows, cols = self.fov[index]
            side = rows.stop - rows.start
            shrink = int(side * rng.uniform(0.0, 0.15))
            top = rows.start + int(rng.integers(0, shrink + 1))
            left = cols.start + int(rng.integers(0, shrink + 1))
            rows, cols = slice(top, top + side - shrink), slice(left, left + side - shrink)
        else:
            margin = rng.uniform(*self.margin_range)
            extent = max(box[1] - box[0], box[3] - box[2]) * margin
            dr, dc = rng.normal(0.0, 0.08 * extent, 2)
            jittered = (int(box[0] + dr), int(box[1] + dr), int(box[2] + dc), int(box[3] + dc))
            rows, cols = square_around(jittered, margin, image.shape, ROI["min_side"])
        stack = np.stack([image[rows, cols], label[rows, cols], teacher[rows, cols]]).astype(np.float32)
        tensor = torch.from_numpy(stack)[:, None]
        resized_image = F.interpolate(tensor[:1], size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        resized_labels = F.interpolate(tensor[1:], size=(SIZE, SIZE), mode="nearest-exact")
        return resized_image[0, 0], resized_labels[0, 0], resized_labels[1, 0]


# ----------------------------------------------------------------------------------------------- augmentation


def geometric(images, labels, teacher, generator):
    """Random rotation (±35°), scale (0.85-1.2), stretch (±10 %) and shift (±8 %): bilinear image, nearest labels."""
    import torch
    import torch.nn.functional as F

    n = images.shape[0]

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-35.0, 35.0) * math.pi / 180.0
    scale = uniform(0.85, 1.2)
    stretch = uniform(-0.1, 0.1)
    sx, sy = 1.0 / (scale * (1 + stretch)), 1.0 / (scale * (1 - stretch))
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * sx, -sin * sx
    theta[:, 1, 0], theta[:, 1, 1] = sin * sy, cos * sy
    theta[:, :, 2] = uniform(-0.08, 0.08)[:, None] * torch.tensor([1.0, 0.0]) + uniform(-0.08, 0.08)[:, None] * torch.tensor([0.0, 1.0])
    grid = F.affine_grid(theta, (n, 1, SIZE, SIZE), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    both = torch.cat([labels, teacher], dim=1)
    # Outside the image the labels are background (0), as the image there is zero.
    both = F.grid_sample(both, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return images, both[:, :1], both[:, 1:]


def intensity(images, generator):
    """Gamma, contrast, brightness, window saturation, bias field, blur, low resolution, Gaussian/Rician noise."""
    import torch
    import torch.nn.functional as F

    n = images.shape[0]

    def uniform(low, high, shape=(n, 1, 1, 1)):
        return low + (high - low) * torch.rand(shape, generator=generator)

    def chance(p):
        return (torch.rand((n, 1, 1, 1), generator=generator) < p).float()

    x = images.clamp(0.0, 1.0)
    x = x ** torch.exp(uniform(-0.5, 0.5))  # gamma 0.6-1.65
    field = F.interpolate(torch.randn((n, 1, 4, 4), generator=generator) * 0.3, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
    x = x * torch.exp(field * chance(0.5))
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = (x - mean) * uniform(0.7, 1.3) + mean + uniform(-0.1, 0.1)
    x = x * (1.0 + chance(0.3) * uniform(0.0, 0.4))  # brighter window: saturates the bright blood pool
    sigma = uniform(0.3, 1.3).flatten()
    blurred = torch.stack([_blur(x[i : i + 1], float(sigma[i])) for i in range(n)]).squeeze(1)
    x = torch.where(chance(0.25).bool(), blurred, x)
    factor = float(uniform(1.2, 2.0, (1,)))
    low = F.interpolate(F.interpolate(x, scale_factor=1.0 / factor, mode="bilinear", antialias=True), size=(SIZE, SIZE), mode="bilinear")
    x = torch.where(chance(0.2).bool(), low, x)
    noise = uniform(0.0, 0.06) * chance(0.6)
    gaussian = x + noise * torch.randn(x.shape, generator=generator)
    rician = torch.sqrt((x + noise * torch.randn(x.shape, generator=generator)) ** 2 + (noise * torch.randn(x.shape, generator=generator)) ** 2)
    x = torch.where(chance(0.5).bool(), gaussian, rician)
    return x.clamp(0.0, 1.0)


def _blur(x, sigma: float):
    import torch
    import torch.nn.functional as F

    radius = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))


# ----------------------------------------------------------------------------------------------- validation


class ModuleBackend:
    """A backend around an in-memory torch module, so that validation runs the extension's own pipeline."""

    device = "cpu"

    def __init__(self, model):
        self.model = model

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(batch, np.float32))).numpy()


def segment_volumes(segmenter, volumes: list[sax_data.Volume]) -> dict[str, np.ndarray]:
    """Labels for each volume through ``prepare`` + ``segment`` + largest components, as ``analyse_cine`` does."""
    from CardiacSuiteLib.inference.segment2d import keep_largest_components

    out = {}
    for volume in volumes:
        labels = segmenter.segment(volume.image, segmenter.prepare(volume.image))
        out[volume.name] = keep_largest_components(labels, list(sax_data.HEART_LABELS))
    return out


def validate(model, volumes: list[sax_data.Volume]) -> dict[str, float]:
    from CardiacSuiteLib.inference.registry import parse_entry
    from CardiacSuiteLib.inference.segment2d import SliceSegmenter

    model.eval()
    segmenter = SliceSegmenter(parse_entry(entry_dict(), "training"), ModuleBackend(model))
    predicted = segment_volumes(segmenter, volumes)
    scores: dict[str, list[float]] = {}
    for volume in volumes:
        for name, value in sax_data.structure_dice(predicted[volume.name], volume.label).items():
            scores.setdefault(f"{volume.phase}_{name}", []).append(value)
    ef_errors = []
    for volume in volumes:
        if volume.phase == "ED":
            es = f"{volume.patient}_ES"
            ef_errors.append(
                abs(
                    sax_data.ejection_fraction(predicted[volume.name], predicted[es])
                    - sax_data.ejection_fraction(volume.label, next(v.label for v in volumes if v.name == es))
                )
            )
    result = {key: float(np.mean(values)) for key, values in sorted(scores.items())}
    result["LV_EF_abs_error"] = float(np.mean(ef_errors))
    return result


# ----------------------------------------------------------------------------------------------- training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("/tmp/sax-fast-run"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/cardiacsuite-sax-fast"), help="teacher cache (outside the repository)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--distil", type=float, default=0.5, help="weight of the teacher cross-entropy")
    parser.add_argument("--distil-every", type=int, default=4, help="teacher labels for every n-th training patient (and all unlabelled frames)")
    parser.add_argument("--unlabelled-repeats", type=int, default=4, help="times the unlabelled cine frames appear per epoch")
    parser.add_argument("--val-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20240603)
    parser.add_argument("--init", type=Path, help="start from these weights (a second stage with a fresh schedule)")
    parser.add_argument("--margin-range", type=float, nargs=2, default=MARGIN_RANGE, metavar=("LOW", "HIGH"),
                        help="heart-crop sides sampled, as multiples of the heart box (the fine pass at inference uses input.roi.margin)")
    parser.add_argument("--distil-sunnybrook", nargs="*", default=[], metavar="PATIENT",
                        help="Sunnybrook patients whose every cine phase is learned from the teacher's labels alone"
                             " (their manual contours are never read; such a patient must not be scored afterwards)")
    parser.add_argument("--limit", type=int, default=0, help="use only this many training volumes (smoke tests)")
    args = parser.parse_args(argv)

    os.environ["CARDIACSUITE_THREADS"] = str(args.threads)
    import torch
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    from CardiacSuiteLib.inference.backends import build_network

    torch.set_num_threads(args.threads)
    set_determinism(seed=args.seed)
    random.seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f} s] {message}", flush=True)

    root = sax_data.data_root()
    training = sax_data.read_acdc(root / "acdc_train")
    if args.limit:
        training = training[: args.limit]
    unlabelled = sax_data.read_unlabelled_cine() + sax_data.read_sunnybrook_cines(args.distil_sunnybrook)
    patients = sorted({v.patient for v in training})
    distilled = {p for i, p in enumerate(patients) if args.distil_every and i % args.distil_every == 0}
    sax_data.attach_teacher([v for v in training if v.patient in distilled] + unlabelled, args.cache, log)
    validation = sax_data.read_acdc(root / "acdc")
    dataset = Dataset(training + unlabelled, args.unlabelled_repeats, tuple(args.margin_range))
    log(f"{len(training)} training volumes, {len(dataset)} slices per epoch; {len(validation)} validation volumes")

    model = build_network(NETWORK)
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
        log(f"initialised from {args.init}")
    parameters = sum(p.numel() for p in model.parameters())
    log(f"{NETWORK['name']} {parameters} parameters")
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(dataset) / args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.1)
    generator = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    history = []
    weights = args.out / f"{MODEL_ID}-{VERSION}.pt"
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = rng.permutation(len(dataset))
        totals = {"loss": 0.0, "supervised": 0.0, "distil": 0.0}
        epoch_start = time.perf_counter()
        for step in range(steps_per_epoch):
            indices = order[step * args.batch : (step + 1) * args.batch]
            crops = [dataset.crop(int(i), rng) for i in indices]
            images = torch.stack([c[0] for c in crops])[:, None]
            labels = torch.stack([c[1] for c in crops])[:, None]
            teacher = torch.stack([c[2] for c in crops])[:, None]
            labelled = torch.tensor([bool((c[1] != 255).all()) for c in crops])
            distilled = torch.tensor([bool((c[2] != 255).all()) for c in crops])
            images, labels, teacher = geometric(images, labels, teacher, generator)
            teacher[~distilled] = 255  # grid_sample pads with 0: keep 'no teacher' samples entirely ignored
            images = intensity(images, generator)
            logits = model(images)
            supervised = dice_ce(logits[labelled], labels[labelled]) if labelled.any() else logits.sum() * 0.0
            distil = torch.nn.functional.cross_entropy(logits, teacher[:, 0].long(), ignore_index=255)
            if not bool((teacher != 255).any()):
                distil = logits.sum() * 0.0
            loss = supervised + args.distil * distil
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            totals["loss"] += float(loss.detach())
            totals["supervised"] += float(supervised.detach())
            totals["distil"] += float(distil.detach())
        record = {key: value / steps_per_epoch for key, value in totals.items()}
        record.update(epoch=epoch, seconds=round(time.perf_counter() - epoch_start, 1), lr=schedule.get_last_lr()[0])
        torch.save(model.state_dict(), weights)
        message = f"epoch {epoch}/{args.epochs} loss {record['loss']:.4f} (supervised {record['supervised']:.4f}, distil {record['distil']:.4f}) {record['seconds']:.0f} s"
        if epoch % args.val_every == 0 or epoch == args.epochs:
            record["validation"] = validate(model, validation)
            message += " | val " + " ".join(f"{k} {v:.3f}" for k, v in record["validation"].items())
        log(message)
        history.append(record)
        (args.out / "training_log.json").write_text(
            json.dumps(
                {
                    "model": MODEL_ID,
                    "version": VERSION,
                    "network": NETWORK,
                    "input": INPUT,
                    "parameters": parameters,
                    "arguments": {k: str(v) for k, v in vars(args).items()},
                    "init_sha256": sax_data.sha256_file(args.init) if args.init else None,
                    "training_volumes": [v.name for v in training] + [v.name for v in unlabelled],
                    "distilled_volumes": [v.name for v in training + unlabelled if v.teacher is not None],
                    "validation_volumes": [v.name for v in validation],
                    "torch": torch.__version__,
                    "python": platform.python_version(),
                    "elapsed_s": round(time.perf_counter() - started, 1),
                    "epochs": history,
                },
                indent=1,
            )
        )
    (args.out / "entry_input.json").write_text(json.dumps({"input": INPUT, "network": NETWORK}, indent=1))
    log(f"done: {weights} ({weights.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
