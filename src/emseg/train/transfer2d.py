"""2D transfer training (CEM500K recipe): U-Net-ResNet on slices, random or pretrained encoder.

Pretrained encoders are frozen by default (only the decoder learns), random inits are trained
end to end; AdamW (lr 3e-3, weight decay 0.1) with a OneCycle schedule, BCE for binary masks;
augmentations: random resized crop (scale 0.08–1), rotation ±180°, flips, brightness/contrast
0.3. Validation IoU is computed per volume over the validation slices (stack mode) and as the
mean of per-image IoUs. The output is an emseg checkpoint (architecture ``unet2d_resnet``) that
`emseg predict` runs in stack or orthoplane mode.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field, field_validator

from emseg.errors import ConfigError, ShapeMismatchError


class SliceSet(BaseModel):
    """Slices ``slices`` (e.g. ``"0:132"`` or ``[0, 5, 9]``) of an image volume and its label volume."""

    image: str
    labels: str
    slices: list[int] | None = None
    roi: tuple[int, int, int, int] | None = Field(None, description="y0, y1, x0, x1 crop of every slice (None: all)")

    @field_validator("slices", mode="before")
    @classmethod
    def _parse(cls, value):
        if isinstance(value, str):
            start, _, stop = value.partition(":")
            return list(range(int(start or 0), int(stop)))
        return value


class Transfer2DConfig(BaseModel):
    """``emseg train2d`` YAML; defaults are the CEM500K transfer recipe."""

    train: SliceSet
    val: SliceSet | None = None
    init: str = Field("random", description="'random' or a path to an emseg / CEM500K / torchvision encoder file")
    freeze_encoder: bool | None = Field(None, description="None: frozen for pretrained inits, trained for random")
    arch: str = "resnet50"
    width: int = 64
    iterations: int = Field(2000, ge=1)
    batch_size: int = Field(16, ge=1)
    patch_size: int = Field(224, ge=32)
    lr: float = 3e-3
    weight_decay: float = 0.1
    scale: tuple[float, float] = (0.08, 1.0)
    rotate_degrees: float = 180.0
    brightness: float = 0.3
    contrast: float = 0.3
    threshold: float = 0.5
    organelle: str = "object"
    val_every: int | None = Field(None, ge=1, description="iterations between validations (None: only at the end)")
    seed: int = 0
    device: str = "auto"


def load_slices(spec: SliceSet) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(uint8 images (Z, H, W), binary labels, voxel size) of the selected slices, in memory."""
    from emseg.io import open_volume, to_uint8

    image, labels = open_volume(spec.image), open_volume(spec.labels)
    if image.shape != labels.shape:
        raise ShapeMismatchError(f"{spec.image} {image.shape} and {spec.labels} {labels.shape} differ in shape")
    slices = spec.slices if spec.slices is not None else list(range(image.shape[0]))
    bad = [z for z in slices if not 0 <= z < image.shape[0]]
    if bad:
        raise ConfigError(f"{spec.image}: slices {bad[:5]} outside 0..{image.shape[0] - 1}")
    y0, y1, x0, x1 = spec.roi or (0, image.shape[1], 0, image.shape[2])
    raw = np.stack([np.asarray(image[z:z + 1, y0:y1, x0:x1])[0] for z in slices])
    if raw.dtype != np.uint8:
        raw = to_uint8(raw)
    truth = np.stack([np.asarray(labels[z:z + 1, y0:y1, x0:x1])[0] > 0 for z in slices])
    return raw, truth, tuple(image.voxel_size)


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
    model.eval()
    out = np.empty(raw.shape, np.float32)
    for i in range(0, raw.shape[0], batch):
        x = (torch.from_numpy(raw[i:i + batch]).float()[:, None] / 255 - norms[0]) / norms[1]
        out[i:i + batch] = model.probabilities(model(x.to(device)))[:, 0].cpu().numpy()
    return out


def evaluate(model, raw: np.ndarray, labels: np.ndarray, norms, device, threshold: float = 0.5) -> dict:
    """Volume IoU over all slices and mean per-image IoU."""
    from emseg.metrics import confusion_counts, scores_from_counts

    pred = predict_slices(model, raw, norms, device) > threshold
    per_image = [scores_from_counts(confusion_counts(p, t))["iou"] for p, t in zip(pred, labels)]
    total = scores_from_counts(confusion_counts(pred, labels))
    return {"iou": total["iou"], "f1": total["f1"], "iou_per_image_mean": float(np.mean(per_image))}


def train2d(config: Transfer2DConfig, output: str | os.PathLike, progress: bool = True) -> dict:
    """Train, validate and write the checkpoint; returns the summary (IoU, wall time, …)."""
    import torch.nn.functional as F
    from tqdm import tqdm

    from emseg.device import pick_device
    from emseg.models import save_checkpoint
    from emseg.pretrain.augment import AugmentConfig, jitter, random_affine, warp

    start = time.perf_counter()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = torch.device(pick_device(config.device))
    raw, labels, voxel_size = load_slices(config.train)
    val = load_slices(config.val) if config.val else None
    model, norms, frozen = build_model(config)
    if norms is None:  # random init: the training images' statistics
        sample = raw[:, ::4, ::4].astype(np.float32) / 255
        norms = (float(sample.mean()), float(max(sample.std(), 1e-3)))
    model.freeze_encoder(frozen)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.iterations)
    aug = AugmentConfig(out_size=config.patch_size, scale=config.scale, rotate_p=1.0,
                        rotate_degrees=config.rotate_degrees, brightness=config.brightness, contrast=config.contrast)
    raw_t, labels_t = torch.from_numpy(raw), torch.from_numpy(labels.astype(np.uint8))
    sizes = torch.tensor(raw.shape[1:]).repeat(config.batch_size, 1)
    history: list[dict] = []
    losses: list[float] = []
    bar = tqdm(range(config.iterations), desc="train2d", disable=not progress)
    for it in bar:
        model.train()
        pick = torch.randint(0, raw.shape[0], (config.batch_size,), generator=gen)
        theta = random_affine(sizes, tuple(raw.shape[1:]), aug, gen)
        x = warp(raw_t[pick][:, None].float() / 255, theta, config.patch_size)
        y = warp(labels_t[pick][:, None].float(), theta, config.patch_size, mode="nearest")
        x = (jitter(x, aug.brightness, aug.contrast, gen) - norms[0]) / norms[1]
        loss = F.binary_cross_entropy_with_logits(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        last = it + 1 == config.iterations
        if val is not None and (last or (config.val_every and (it + 1) % config.val_every == 0)):
            scores = evaluate(model, val[0], val[1], norms, device, config.threshold)
            history.append({"iteration": it + 1, "train_loss": float(np.mean(losses[-50:])), **scores})
    wall = time.perf_counter() - start
    summary = {"init": config.init, "frozen": frozen, "iterations": config.iterations, "wall_s": wall,
               "final_loss": float(np.mean(losses[-50:])), "history": history,
               **({k: history[-1][k] for k in ("iou", "f1", "iou_per_image_mean")} if history else {})}
    save_checkpoint(output, model, architecture="unet2d_resnet", model_config=model.config, voxel_size=voxel_size,
                    normalization={"mean": norms[0], "std": norms[1]}, organelle=config.organelle,
                    threshold=config.threshold, training={"config": config.model_dump(), **summary})
    return summary


def load_config(path: str | os.PathLike) -> Transfer2DConfig:
    """Read and validate a train2d YAML file."""
    import yaml
    from pydantic import ValidationError

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        return Transfer2DConfig(**(yaml.safe_load(path.read_text()) or {}))
    except (ValidationError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: invalid train2d config: {exc}") from None
