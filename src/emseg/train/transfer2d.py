"""2D transfer training (CEM500K recipe): U-Net-ResNet on slices, random or pretrained encoder.

Pretrained encoders are frozen by default (only the decoder learns), random inits are trained
end to end; AdamW (lr 3e-3, weight decay 0.1) with a OneCycle schedule (over the iterations or,
when shorter, ``max_minutes``), BCE for binary masks;
augmentations: random resized crop (scale 0.08–1), rotation ±180°, flips, brightness/contrast
0.3. Validation IoU is computed per volume over the validation slices (stack mode) and as the
mean of per-image IoUs; with validation the checkpoint is the best-validated state. Sparse slice
annotations: a sample mask selects the annotated slices and limits the loss and the scores.
The output is an emseg checkpoint (architecture ``unet2d_resnet``, with the inference mode that
`emseg predict` uses by default: stack or orthoplane).
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from emseg.config_base import StrictConfig
from emseg.errors import ConfigError, ShapeMismatchError
from emseg.models.normalization import Normalization


class SliceSet(StrictConfig):
    """Slices of an image volume with their labels (and optionally a sample mask).

    ``slices``: e.g. ``"0:132"`` or ``[0, 5, 9]``; unset: every slice, or with a ``sample_mask``
    every slice that has annotated pixels (sparse slice annotations). Pixels outside the sample
    mask do not count in the loss nor in validation scores.
    """

    image: str
    labels: str
    sample_mask: str | None = None
    slices: list[int] | None = None
    roi: tuple[int, int, int, int] | None = Field(None, description="y0, y1, x0, x1 crop of every slice (None: all)")

    @field_validator("slices", mode="before")
    @classmethod
    def _parse(cls, value):
        if isinstance(value, str):
            start, _, stop = value.partition(":")
            return list(range(int(start or 0), int(stop)))
        return value


class Transfer2DConfig(StrictConfig):
    """``emseg train2d`` YAML; defaults are the CEM500K transfer recipe.

    Old key names (``lr``, ``val``, ``val_every``) are accepted with a deprecation warning.
    """

    config_name = "train2d config"

    train: SliceSet
    validation: SliceSet | None = None
    init: str = Field("random", description="'random' or a path to an emseg / CEM500K / torchvision encoder file")
    freeze_encoder: bool | None = Field(None, description="None: frozen for pretrained inits, trained for random")
    arch: str = "resnet50"
    width: int = 64
    iterations: int = Field(2000, ge=1)
    batch_size: int = Field(16, ge=1)
    patch_size: int = Field(224, ge=32)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = 0.1
    scale: tuple[float, float] = Field((0.08, 1.0), description="random resized crop: fraction of the slice area")
    zoom: tuple[float, float] | None = Field(None, description="instead of scale: patch pixels per image pixel, "
                                             "e.g. [0.8, 1.25] keeps objects near their size at prediction")
    rotate_degrees: float = 180.0
    brightness: float = 0.3
    contrast: float = 0.3
    loss: Literal["bce", "bce+dice"] = "bce"
    class_balance: bool = Field(False, description="BCE with foreground and background weighing half each")
    threshold: float | Literal["auto"] = Field(0.5, description="'auto': the best validation F1 of 0.30 … 0.90")
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = False
    inference_mode: Literal["stack", "orthoplane"] = Field("stack", description="how `emseg predict` runs it")
    organelle: str = "object"
    validate_every: int | None = Field(None, ge=1, description="iterations between validations (None: at the end)")
    max_minutes: float | None = Field(None, gt=0, description="stop (validate, keep the best) after this long")
    seed: int = 0
    device: str = "auto"


@dataclass
class Slices:
    """Selected slices in memory: uint8 images (Z, H, W), binary labels, the loss/score mask."""

    raw: np.ndarray
    labels: np.ndarray
    mask: np.ndarray | None
    voxel_size: tuple[float, float, float]


def load_slices(spec: SliceSet) -> Slices:
    """The slices ``spec`` selects (with a sample mask and no ``slices``: the annotated ones)."""
    from emseg.io import open_volume, to_uint8

    image, labels = open_volume(spec.image), open_volume(spec.labels)
    sample = open_volume(spec.sample_mask) if spec.sample_mask else None
    for other, what in ((labels, spec.labels), (sample, spec.sample_mask)):
        if other is not None and other.shape != image.shape:
            raise ShapeMismatchError(f"{what} {other.shape} and {spec.image} {image.shape} differ in shape")
    y0, y1, x0, x1 = spec.roi or (0, image.shape[1], 0, image.shape[2])

    def plane(volume, z: int) -> np.ndarray:
        return np.asarray(volume[z:z + 1, y0:y1, x0:x1])[0]

    slices = spec.slices
    if slices is None:
        slices = list(range(image.shape[0]))
        if sample is not None:
            slices = [z for z in slices if plane(sample, z).any()]
            if not slices:
                raise ConfigError(f"{spec.sample_mask}: the sample mask annotates no pixel")
    bad = [z for z in slices if not 0 <= z < image.shape[0]]
    if bad:
        raise ConfigError(f"{spec.image}: slices {bad[:5]} outside 0..{image.shape[0] - 1}")
    raw = np.stack([plane(image, z) for z in slices])
    if raw.dtype != np.uint8:
        raw = to_uint8(raw)
    truth = np.stack([plane(labels, z) > 0 for z in slices])
    mask = np.stack([plane(sample, z) > 0 for z in slices]) if sample is not None else None
    return Slices(raw, truth, mask, tuple(image.voxel_size))


def build_model(config: Transfer2DConfig):
    """(model, norms, frozen) for the config's init."""
    from emseg.models.resnet import CEM500K_NORMS, infer_arch, load_encoder_weights, read_encoder_file
    from emseg.models.unet2d import UNetResNet2D

    if config.init == "random":
        frozen = bool(config.freeze_encoder) if config.freeze_encoder is not None else False
        return UNetResNet2D(config.arch, 1, 1, config.width), None, frozen
    state, norms, _ = read_encoder_file(config.init)
    arch, width = infer_arch(state)
    model = UNetResNet2D(arch, 1, 1, width)
    norms = load_encoder_weights(model.encoder, config.init) or norms or CEM500K_NORMS
    frozen = config.freeze_encoder if config.freeze_encoder is not None else True
    return model, norms, frozen


@torch.no_grad()
def predict_slices(model, raw: np.ndarray, norms: tuple[float, float], device, batch: int = 2) -> np.ndarray:
    """Foreground probabilities (Z, H, W) float32 for uint8 slices, whole slices at a time."""
    normalization = Normalization(*norms)
    model.eval()
    out = np.empty(raw.shape, np.float32)
    for i in range(0, raw.shape[0], batch):
        x = torch.from_numpy(normalization.apply(raw[i:i + batch]))[:, None]
        out[i:i + batch] = model.probabilities(model(x.to(device)))[:, 0].float().cpu().numpy()
    return out


def evaluate(model, data: Slices, norms, device, threshold: float | str = 0.5) -> dict:
    """Volume F1/IoU over all slices (inside the sample mask) and the mean per-image IoU, at
    ``threshold`` or, for ``"auto"``, at the best-F1 threshold of 0.30 … 0.90."""
    from emseg.metrics import confusion_counts, scores_from_counts
    from emseg.train.validate import AUTO_THRESHOLDS

    prob = predict_slices(model, data.raw, norms, device)
    mask = data.mask if data.mask is not None else np.ones(data.labels.shape, bool)
    thresholds = AUTO_THRESHOLDS if threshold == "auto" else (float(threshold),)
    totals = {t: scores_from_counts(confusion_counts(prob >= t, data.labels, mask)) for t in thresholds}
    best = max(thresholds, key=lambda t: (totals[t]["f1"], -abs(t - 0.5)))
    per_image = [scores_from_counts(confusion_counts(p >= best, t, m))["iou"]
                 for p, t, m in zip(prob, data.labels, mask)]
    return {"iou": totals[best]["iou"], "f1": totals[best]["f1"], "iou_per_image_mean": float(np.mean(per_image)),
            "threshold": best}


def set_one_cycle(optimizer, max_lr: float, progress: float) -> None:
    """OneCycle (torch's defaults: 30 % cosine warm-up from max_lr / 25, cosine annealing to
    max_lr / 25e4, Adam's beta1 cycled 0.95 → 0.85 → 0.95) at ``progress`` in [0, 1]: the larger
    of the iteration and wall-clock fractions, so a run stopped by ``max_minutes`` still anneals."""
    progress = min(max(progress, 0.0), 1.0)
    start, peak, end = max_lr / 25, max_lr, max_lr / 25e4
    if progress < 0.3:
        phase, lr_from, lr_to, beta_from, beta_to = progress / 0.3, start, peak, 0.95, 0.85
    else:
        phase, lr_from, lr_to, beta_from, beta_to = (progress - 0.3) / 0.7, peak, end, 0.85, 0.95
    weight = (1 - math.cos(math.pi * phase)) / 2
    for group in optimizer.param_groups:
        group["lr"] = lr_from + (lr_to - lr_from) * weight
        group["betas"] = (beta_from + (beta_to - beta_from) * weight, group["betas"][1])


def crop_scale(config: Transfer2DConfig, slice_shape: tuple[int, ...]) -> tuple[float, float]:
    """The random resized crop's area range: ``scale``, or the one ``zoom`` gives on these slices."""
    if config.zoom is None:
        return tuple(config.scale)
    area = float(slice_shape[0] * slice_shape[1])
    side = [config.patch_size / z for z in sorted(config.zoom, reverse=True)]
    return tuple(min(1.0, s * s / area) for s in side)


class BatchMaker:
    """Random augmented training batches (CEM500K: random resized crop, rotation, flips, brightness
    and contrast), drawn on ``device`` from the slices held there."""

    def __init__(self, data: Slices, config: Transfer2DConfig, norms: tuple[float, float], device, seed: int):
        from emseg.pretrain.augment import AugmentConfig

        self.config, self.norms = config, norms
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.raw = torch.from_numpy(data.raw).to(device)
        self.labels = torch.from_numpy(data.labels.astype(np.uint8)).to(device)
        self.mask = torch.from_numpy(data.mask.astype(np.uint8)).to(device) if data.mask is not None else None
        self.sizes = torch.tensor(data.raw.shape[1:], device=device).repeat(config.batch_size, 1)
        self.aug = AugmentConfig(out_size=config.patch_size, scale=crop_scale(config, data.raw.shape[1:]),
                                 rotate_p=1.0, rotate_degrees=config.rotate_degrees, brightness=config.brightness,
                                 contrast=config.contrast)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised images, targets, loss mask), each (B, 1, S, S) float32."""
        from emseg.pretrain.augment import jitter, random_affine, warp

        size, n = self.config.patch_size, self.config.batch_size
        pick = torch.randint(0, self.raw.shape[0], (n,), generator=self.gen, device=self.raw.device)
        theta = random_affine(self.sizes, tuple(self.raw.shape[1:]), self.aug, self.gen)
        x = warp(self.raw[pick][:, None].float() / 255, theta, size)
        y = warp(self.labels[pick][:, None].float(), theta, size, mode="nearest")
        mask = (warp(self.mask[pick][:, None].float(), theta, size, mode="nearest") if self.mask is not None
                else torch.ones_like(y))
        x = (jitter(x, self.aug.brightness, self.aug.contrast, self.gen) - self.norms[0]) / self.norms[1]
        return x, y, mask


def train2d(config: Transfer2DConfig, output: str | os.PathLike, progress: bool = True) -> dict:
    """Train, validate and write the checkpoint (with validation: the best-validated state and
    its threshold); returns the summary (IoU, wall time, images/s, history)."""
    from tqdm import tqdm

    from emseg.device import pick_device
    from emseg.models import save_checkpoint
    from emseg.train.loss import training_loss

    start = time.perf_counter()
    torch.manual_seed(config.seed)
    device = torch.device(pick_device(config.device))
    data = load_slices(config.train)
    val = load_slices(config.validation) if config.validation else None
    model, norms, frozen = build_model(config)
    if norms is None:  # random init: the training images' statistics
        sample = data.raw[:, ::4, ::4].astype(np.float32) / 255
        norms = (float(sample.mean()), float(max(sample.std(), 1e-3)))
    model.freeze_encoder(frozen)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    batches = BatchMaker(data, config, norms, device, config.seed)
    history: list[dict] = []
    losses: list[float] = []
    best: dict = {"f1": -1.0}
    train_seconds = 0.0
    budget = config.max_minutes * 60 if config.max_minutes else float("inf")
    bar = tqdm(range(config.iterations), desc="train2d", disable=not progress)
    for it in bar:
        tick = time.perf_counter()
        set_one_cycle(optimizer, config.learning_rate, max(it / config.iterations, (tick - start) / budget))
        model.train()
        x, y, mask = batches()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
            logits = model(x.contiguous(memory_format=memory_format))
        loss = training_loss(config.loss, logits.float(), y, mask, config.class_balance)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        train_seconds += time.perf_counter() - tick
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        last = it + 1 == config.iterations or time.perf_counter() - start >= budget
        if val is not None and (last or (config.validate_every and (it + 1) % config.validate_every == 0)):
            scores = evaluate(model, val, norms, device, config.threshold)
            history.append({"iteration": it + 1, "train_loss": float(np.mean(losses[-50:])),
                            "seconds": round(time.perf_counter() - start, 1), **scores})
            if scores["f1"] > best["f1"]:
                best = {**scores, "iteration": it + 1, "state": copy.deepcopy(model.state_dict())}
        if last:
            break
    if "state" in best:
        model.load_state_dict(best.pop("state"))
    threshold = best.get("threshold", 0.5 if config.threshold == "auto" else config.threshold)
    wall = time.perf_counter() - start
    summary = {"init": config.init, "frozen": frozen, "iterations": len(losses), "wall_s": wall,
               "images_per_s": len(losses) * config.batch_size / max(train_seconds, 1e-9),
               "final_loss": float(np.mean(losses[-50:])), "history": history,
               **({"best_iteration": best["iteration"]} if "iteration" in best else {}),
               **{k: best[k] for k in ("iou", "f1", "iou_per_image_mean", "threshold") if k in best}}
    save_checkpoint(output, model.to(memory_format=torch.contiguous_format), architecture="unet2d_resnet",
                    model_config=model.config, voxel_size=data.voxel_size,
                    normalization={"mean": norms[0], "std": norms[1]}, organelle=config.organelle,
                    threshold=threshold, training={"config": config.model_dump(), **summary},
                    inference={"mode": config.inference_mode})
    return summary


def load_config(path: str | os.PathLike) -> Transfer2DConfig:
    """Read and validate a train2d YAML file; relative file paths are taken from the YAML's folder
    when they exist there."""
    import yaml
    from pydantic import ValidationError

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        config = Transfer2DConfig(**(yaml.safe_load(path.read_text()) or {}))
    except (ValidationError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: invalid train2d config: {exc}") from None
    for spec in (config.train, config.validation):
        for key in ("image", "labels", "sample_mask"):
            value = getattr(spec, key, None) if spec is not None else None
            if value and not Path(value).is_absolute() and (path.parent / value).exists():
                setattr(spec, key, str(path.parent / value))
    if config.init != "random" and not Path(config.init).is_absolute() and (path.parent / config.init).exists():
        config.init = str(path.parent / config.init)
    return config
