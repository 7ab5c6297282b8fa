"""The MoCoV2 pretraining loop: single process (CPU / one GPU) or DDP under ``torchrun``.

Outputs for ``-o encoder.pt``:
- ``encoder.pt``: CEM500K layout — ``state_dict`` with ``module.encoder_q.*`` keys, ``norms``
  [mean, std], plus ``config`` and ``history`` (emseg extras); loads with
  `emseg.models.resnet.load_encoder_weights` and as ``init:`` of ``emseg train2d``.
- ``encoder.state.pt``: everything to resume (MoCo incl. key encoder and queue, optimizer,
  scheduler, epoch, history), written atomically after every epoch.
- ``encoder.png``: loss and accuracy of the positive key per epoch.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from emseg.config_base import StrictConfig
from emseg.errors import ConfigError, OutputExistsError
from emseg.io.tempfiles import write_file_atomic


class PretrainConfig(StrictConfig):
    """MoCoV2 settings; defaults are the CEM500K recipe (ResNet-50, 200 epochs, batch 128)."""

    config_name = "pretrain config"

    arch: Literal["resnet18", "resnet34", "resnet50"] = "resnet50"
    width: int = Field(64, ge=4)
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(128, ge=2)
    learning_rate: float | None = Field(None, gt=0, description="None: 0.015 × total batch / 128 (linear scaling)")
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: Literal["step", "cosine"] = "step"
    milestones: tuple[float, float] = (0.6, 0.8)  # fractions of epochs: 120 and 160 of 200
    dim: int = 128
    queue_size: int = Field(65536, ge=1)
    moco_momentum: float = 0.999
    temperature: float = 0.2
    bn_groups: int = Field(2, ge=1, description="single-process shuffle-BN substitute: BN groups per batch")
    image_size: int = Field(224, ge=32)
    steps_per_epoch: int | None = Field(None, ge=1, description="cap batches per epoch (short runs)")
    seed: int = 0
    device: str = "auto"


def _atomic_save(obj: dict, path: Path) -> None:
    write_file_atomic(path, lambda f: torch.save(obj, f))


def state_path(output: Path) -> Path:
    return output.with_name(output.stem + ".state.pt")


def encoder_payload(moco, norms: tuple[float, float], config: PretrainConfig, history: list[dict]) -> dict:
    """The CEM500K-format file: ``module.encoder_q.*`` weights + ``norms`` (+ emseg config/history)."""
    state = {f"module.encoder_q.{k}": v.detach().cpu() for k, v in moco.encoder_q.state_dict().items()}
    return {"emseg_encoder": 1, "state_dict": state, "norms": [float(norms[0]), float(norms[1])],
            "config": {"arch": config.arch, "width": config.width, **config.model_dump()}, "history": history}


def lr_at(config: PretrainConfig, base_lr: float, epoch: float) -> float:
    """Step (× 0.1 at the milestones) or cosine learning rate at (fractional) ``epoch``."""
    if config.schedule == "cosine":
        return base_lr * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))
    drops = sum(epoch >= m * config.epochs for m in config.milestones)
    return base_lr * 0.1 ** drops


def plot_history(history: list[dict], path: Path) -> None:
    """Loss and positive-key accuracy per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [h["loss"] for h in history], marker="o")
    ax1.set(xlabel="epoch", ylabel="InfoNCE loss", title="MoCoV2 loss")
    ax2.plot(epochs, [100 * h["acc"] for h in history], marker="o", color="tab:green")
    ax2.set(xlabel="epoch", ylabel="top-1 positive key (%)", title="accuracy of the positive key")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def pretrain(patches: str | os.PathLike, output: str | os.PathLike, config: PretrainConfig,
             resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Run MoCoV2 on the kept patches of a patch store; returns a summary dict (throughput etc.)."""
    import torch.distributed as dist
    import torch.nn.functional as F
    from tqdm import tqdm

    from emseg.device import pick_device
    from emseg.pretrain.augment import AugmentConfig, augment_view
    from emseg.pretrain.data import batches_per_epoch, endless_batches, open_patch_store, patch_stats
    from emseg.pretrain.moco import MoCo

    output = Path(output)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if world > 1 and torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device(pick_device(config.device))
    main = rank == 0

    spath = state_path(output)
    if output.exists() and not (resume or overwrite):
        raise OutputExistsError(f"{output}: exists; pass --overwrite to replace it or --resume to continue")
    if resume and not spath.exists():
        raise ConfigError(f"{spath}: nothing to resume from")

    table = open_patch_store(patches)
    torch.manual_seed(config.seed)
    moco = MoCo(config.arch, config.width, config.dim, config.queue_size, config.moco_momentum,
                config.temperature, config.bn_groups).to(device)
    base_lr = config.learning_rate if config.learning_rate is not None else 0.015 * config.batch_size * world / 128
    optimizer = torch.optim.SGD(moco.encoder_q.parameters(), lr=base_lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    history: list[dict] = []
    start_epoch = 0
    if resume:
        from emseg.models.checkpoint import safe_torch_load

        state = safe_torch_load(spath, "pretraining state", map_location=device)
        moco.load_state_dict(state["moco"])
        optimizer.load_state_dict(state["optimizer"])
        history, start_epoch, norms = state["history"], state["epoch"], tuple(state["norms"])
    else:
        norms = patch_stats(table)
    model = moco
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(moco, device_ids=[device] if device.type == "cuda" else None)
    steps = batches_per_epoch(table, config.batch_size, world)
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    aug = AugmentConfig(out_size=config.image_size)
    images_seen, compute_time = 0, 0.0
    for epoch in range(start_epoch, config.epochs):
        model.train()
        losses, accs = [], []
        bar = tqdm(total=steps, desc=f"pretrain epoch {epoch + 1}/{config.epochs}", disable=not (progress and main),
                   leave=False)
        batches = endless_batches(table, config.batch_size, config.seed * 100003 + epoch, rank, world)
        for step, (images, sizes) in enumerate(batches):
            if step >= steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(config, base_lr, epoch + step / steps)
            tic = time.perf_counter()
            x = torch.from_numpy(images).to(device)[:, None]
            size_t = torch.from_numpy(sizes).to(device)
            im_q = augment_view(x, size_t, aug, *norms)
            im_k = augment_view(x, size_t, aug, *norms)
            logits, target = model(im_q, im_k)
            loss = F.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            compute_time += time.perf_counter() - tic
            images_seen += images.shape[0] * world
            losses.append(float(loss.detach()))
            accs.append(float((logits.argmax(1) == 0).float().mean()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", acc=f"{accs[-1]:.2f}")
        bar.close()
        if not losses:
            raise ConfigError(f"{patches}: fewer kept patches ({len(table)}) than one batch of {config.batch_size}")
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "acc": float(np.mean(accs)),
                        "lr": optimizer.param_groups[0]["lr"]})
        if main:
            output.parent.mkdir(parents=True, exist_ok=True)
            _atomic_save({"moco": moco.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                          "history": history, "norms": list(norms), "config": config.model_dump()}, spath)
            _atomic_save(encoder_payload(moco, norms, config, history), output)
            plot_history(history, output.with_suffix(".png"))
            if progress:
                h = history[-1]
                print(f"epoch {h['epoch']}: loss {h['loss']:.4f}, positive-key accuracy {100 * h['acc']:.1f} %")
    throughput = images_seen / compute_time if compute_time else float("nan")
    return {"output": str(output), "epochs": config.epochs, "patches": len(table), "norms": list(norms),
            "images_per_s": throughput, "history": history, "device": str(device)}
