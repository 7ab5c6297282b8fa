"""The training loop: sampler → model → masked (class-balanced or plain) loss, validation, checkpoints, logs.

Writes into ``output_dir``: ``last.pt`` (resumable: weights, optimizer, iteration, RNG-free
state), ``best.pt`` (highest validation F1, chosen automatically), ``log.csv`` and
``curves.png``. Every checkpoint carries the full config, normalisation and voxel size.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
import torch

from emseg.device import pick_device
from emseg.errors import ConfigError
from emseg.models import build, read_checkpoint, save_checkpoint
from emseg.models.normalization import unit_scale
from emseg.train.config import TrainConfig
from emseg.train.data import BlockSampler, SourceData, open_source
from emseg.train.loss import training_loss
from emseg.train.validate import validate

LOG_FIELDS = ["iteration", "loss", "seconds", "val_f1", "val_iou", "val_precision", "val_recall", "val_threshold"]


def open_sources(config: TrainConfig, voxel_size=None) -> tuple[list[SourceData], list[SourceData]]:
    """Training and validation sources, resampled to ``voxel_size`` when given."""
    limit = config.in_memory_limit_gb
    train = [open_source(s, f"train[{i}]", limit, voxel_size) for i, s in enumerate(config.train)]
    val = [open_source(s, f"validation[{i}]", limit, voxel_size) for i, s in enumerate(config.validation)]
    return train, val


def estimate_normalization(sources: list[SourceData], samples: int = 8, seed: int = 0) -> dict[str, float]:
    """Mean and std of unit-scaled raw over a few random 64³ boxes per source."""
    rng = np.random.default_rng(seed)
    values = []
    for source in sources:
        for _ in range(samples):
            shape = tuple(min(64, n) for n in source.shape)
            start = tuple(int(rng.integers(0, n - s + 1)) for n, s in zip(source.shape, shape))
            values.append(unit_scale(source.raw.read(start, shape)).ravel())
    data = np.concatenate(values)
    return {"mean": float(data.mean()), "std": float(max(data.std(), 1e-3))}


def model_config(config: TrainConfig) -> tuple[str, dict]:
    cfg = dict(config.model)
    return cfg.pop("architecture", "unet3d"), cfg


class Trainer:
    """Holds model, optimizer, data and logs for one training run (fresh, resumed or fine-tuned)."""

    def __init__(self, config: TrainConfig, init_from: str | None = None, resume: bool = False,
                 device: str | None = None, progress: bool = True):
        self.config, self.progress = config, progress
        self.out = Path(config.output_dir)
        self.device = pick_device(device or config.device)
        torch.manual_seed(config.seed)
        working = config.voxel_size
        if working is None and init_from is not None and Path(init_from).exists():
            working = read_checkpoint(init_from).get("voxel_size")  # fine-tuning keeps the model's scale
        self.train_sources, self.val_sources = open_sources(config, working)
        voxel_sizes = {tuple(round(v, 3) for v in s.voxel_size) for s in self.train_sources}
        # without a working voxel size, mixed sources are not resampled and the model records the finest
        self.voxel_size = tuple(float(v) for v in working) if working is not None else min(voxel_sizes)
        self.iteration, self.best_f1, self.history = 0, -1.0, []
        architecture, mcfg = model_config(config)
        self.normalization = config.normalization
        state = None
        if resume:
            last = self.out / "last.pt"
            if not last.exists():
                raise ConfigError(f"{last}: nothing to resume (no last.pt in {self.out})")
            state = read_checkpoint(last)
            architecture, mcfg = state["architecture"], state["model_config"]
            self.normalization = state["normalization"]
            training = state["training"]
            self.iteration, self.best_f1 = training["iteration"], training.get("best_f1", -1.0)
            self.history = training.get("history", [])
        elif init_from is not None:
            state = read_checkpoint(init_from)
            architecture, mcfg = state["architecture"], state["model_config"]
            self.normalization = state["normalization"]
        if config.class_balance is None:  # resumed and fine-tuned runs keep the model's loss; else ASEM's
            stored = (state or {}).get("training", {}).get("config", {}).get("class_balance")
            self.config = config.model_copy(update={"class_balance": stored is not False})
        self.architecture, self.model_cfg = architecture, mcfg
        self.model = build(architecture, **mcfg).to(self.device)
        if state is not None:
            self.model.load_state_dict(state["state_dict"])
        if self.normalization is None:
            self.normalization = estimate_normalization(self.train_sources, seed=config.seed)
        self.output_shape = tuple(config.output_shape)
        self.input_shape = self.model.input_shape_for(self.output_shape)
        self.output_shape = self.model.output_shape(self.input_shape)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate,
                                          weight_decay=config.weight_decay)
        if resume and state is not None and "optimizer" in state["training"]:
            self.optimizer.load_state_dict(state["training"]["optimizer"])

    # ---- data --------------------------------------------------------------------------
    def loader(self):
        sampler = BlockSampler(self.train_sources, self.input_shape, self.output_shape, self.normalization,
                               self.config.augment, self.config.sampling, seed=self.config.seed + self.iteration)
        workers = self.config.num_workers
        return torch.utils.data.DataLoader(
            sampler, batch_size=self.config.batch_size, num_workers=workers,
            persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
            multiprocessing_context="spawn" if workers > 0 else None)

    # ---- loop --------------------------------------------------------------------------
    def run(self, iterations: int | None = None) -> dict:
        """Train until ``iterations`` (default: the config's) or ``max_minutes``; return the last scores."""
        from tqdm import tqdm

        total = self.config.iterations if iterations is None else iterations
        self.out.mkdir(parents=True, exist_ok=True)
        start, scores = time.perf_counter(), {}
        budget = self.config.max_minutes * 60 if self.config.max_minutes else math.inf
        bar = tqdm(total=total, initial=self.iteration, disable=not self.progress, desc="train", unit="it")
        self.model.train()
        data = iter(self.loader())
        loss_sum, loss_n = 0.0, 0
        first = self.iteration
        while self.iteration < total and time.perf_counter() - start < budget:
            self.set_learning_rate(max((self.iteration - first) / max(total - first, 1),
                                       (time.perf_counter() - start) / budget))
            batch = next(data)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"):
                logits = self.model(batch["raw"].to(self.device))
            loss = training_loss(self.config.loss, logits.float(), batch["target"].to(self.device),
                                 batch["mask"].to(self.device), self.config.class_balance)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.iteration += 1
            loss_sum, loss_n = loss_sum + loss.detach().item(), loss_n + 1
            bar.update(1)
            last = self.iteration == total or time.perf_counter() - start >= budget
            if self.val_sources and (self.iteration % self.config.validate_every == 0 or last):
                scores = validate(self.model, self.val_sources, self.normalization, self.config.threshold,
                                  self.device)
                self.log(loss_sum / loss_n, time.perf_counter() - start, scores)
                loss_sum, loss_n = 0.0, 0
                if scores["f1"] > self.best_f1:
                    self.best_f1 = scores["f1"]
                    self.save(self.out / "best.pt", scores)
            elif self.iteration % 50 == 0:
                self.log(loss_sum / loss_n, time.perf_counter() - start, {})
                loss_sum, loss_n = 0.0, 0
            bar.set_postfix(loss=f"{loss.detach().item():.3f}", f1=f"{self.best_f1:.3f}" if self.best_f1 >= 0 else "-")
            if self.iteration % self.config.checkpoint_every == 0 or last:
                self.save(self.out / "last.pt", scores)
        bar.close()
        self.save(self.out / "last.pt", scores)
        if not self.val_sources:
            self.save(self.out / "best.pt", scores)
        self.plot()
        return scores

    def set_learning_rate(self, progress: float) -> None:
        """Constant, or cosine decay to 0 over the run (``progress`` in [0, 1]: the larger of the
        iteration and wall-clock fractions, so a time-limited run still anneals)."""
        factor = 1.0
        if self.config.lr_schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.learning_rate * factor

    # ---- outputs -----------------------------------------------------------------------
    def save(self, path: Path, scores: dict) -> None:
        """Checkpoint with the threshold its validation chose (before any validation: the
        configured one, 0.5 for ``auto``)."""
        threshold = scores.get("threshold", 0.5 if self.config.threshold == "auto" else self.config.threshold)
        save_checkpoint(path, self.model, architecture=self.architecture, model_config=self.model_cfg,
                        voxel_size=self.voxel_size, normalization=self.normalization,
                        organelle=self.config.organelle, threshold=threshold,
                        training={"config": self.config.model_dump(), "iteration": self.iteration,
                                  "optimizer": self.optimizer.state_dict(), "validation": scores,
                                  "best_f1": self.best_f1, "history": self.history,
                                  "input_shape": list(self.input_shape), "output_shape": list(self.output_shape)})

    def log(self, loss: float, seconds: float, scores: dict) -> None:
        row = {"iteration": self.iteration, "loss": round(loss, 5), "seconds": round(seconds, 1),
               **{f"val_{k}": round(scores[k], 5) if k in scores else ""
                  for k in ("f1", "iou", "precision", "recall", "threshold")}}
        self.history.append(row)
        path = self.out / "log.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)

    def plot(self) -> None:
        """curves.png: training loss and validation F1/IoU against iterations."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.history
        if not rows:
            return
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
        ax[0].plot([r["iteration"] for r in rows], [r["loss"] for r in rows])
        ax[0].set(xlabel="iteration", ylabel="loss", title="training loss")
        val = [r for r in rows if r["val_f1"] != ""]
        for key in ("val_f1", "val_iou"):
            ax[1].plot([r["iteration"] for r in val], [r[key] for r in val], marker="o", label=key[4:])
        ax[1].set(xlabel="iteration", ylim=(0, 1), title="validation")
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(self.out / "curves.png", dpi=100)
        plt.close(fig)


def train(config: TrainConfig, resume: bool = False, device: str | None = None, progress: bool = True) -> Trainer:
    """Train a model from ``config``; returns the trainer (its ``out`` holds best.pt/last.pt)."""
    trainer = Trainer(config, resume=resume, device=device, progress=progress)
    trainer.run()
    return trainer


def finetune(checkpoint: str, config: TrainConfig, iterations: int, device: str | None = None,
             progress: bool = True) -> Trainer:
    """Continue training a trained model (architecture, weights, normalisation) on new data."""
    trainer = Trainer(config, init_from=checkpoint, device=device, progress=progress)
    trainer.run(iterations)
    return trainer
