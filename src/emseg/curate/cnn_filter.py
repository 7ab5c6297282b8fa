"""The trained informativeness filter: a small CNN with BCE on labelled patches (85/15 split).

The reference trained a ResNet34 at 224 px; to train in minutes on a CPU this uses a small
residual CNN (4 blocks, 8–32 channels) on the patch downsampled 4× (56 px, 4 × 4 mean), the same loss, split and
label semantics. The saved file is a
torch checkpoint ``{"state_dict", "config", "metrics"}``; `load_filter` returns a scorer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emseg.errors import ConfigError, CorruptFileError

DOWNSAMPLE = 4


def build_net(width: int = 8):
    """The filter network: 56-px input → 1 logit."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))

    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        Block(width, width), Block(width, 2 * width), Block(2 * width, 4 * width),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, 1),
    )


def to_input(patches: np.ndarray):
    """uint8 (N, 224, 224) → float tensor (N, 1, 56, 56), 4×4 mean, scaled to about [-1, 1]."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(patches)).float().unsqueeze(1)
    x = torch.nn.functional.avg_pool2d(x, DOWNSAMPLE)
    return (x - 128.0) / 64.0


def train_filter(
    patches: np.ndarray, labels: np.ndarray, epochs: int = 6, seed: int = 0, batch: int = 32, progress: bool = True,
    threads: int = 0,
) -> tuple[object, dict]:
    """Train on ``patches`` (uint8 N×224×224) with labels 1 = informative; returns (net, metrics).

    ``threads``: torch CPU threads (0 = torch's default; 1 is much faster on a busy machine).
    """
    import torch
    from tqdm import tqdm

    if threads:
        torch.set_num_threads(threads)
    labels = np.asarray(labels).astype(np.float32)
    if len(np.unique(labels)) < 2 or len(labels) < 10:
        raise ConfigError(f"train-filter needs ≥ 10 labelled patches of both classes, got {len(labels)}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    n_val = max(1, int(round(0.15 * len(labels))))
    val, train = order[:n_val], order[n_val:]
    net = build_net()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    steps = epochs * int(np.ceil(len(train) / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    bar = tqdm(total=steps, desc="train-filter", disable=not progress)
    for _ in range(epochs):
        net.train()
        shuffled = rng.permutation(train)
        for start in range(0, len(train), batch):
            idx = shuffled[start:start + batch]
            x = to_input(patches[idx])
            if rng.random() < 0.5:
                x = torch.flip(x, dims=[3])
            loss = loss_fn(net(x).squeeze(1), torch.from_numpy(labels[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.detach().item():.3f}")
    bar.close()
    recalibrate_batchnorm(net, patches[train], batch)
    prob = predict(net, patches[val])
    metrics = {"val_accuracy": float(((prob >= 0.5) == (labels[val] >= 0.5)).mean()), "n_train": int(len(train)),
               "n_val": int(len(val)), "epochs": epochs}
    return net, metrics


def recalibrate_batchnorm(net, patches: np.ndarray, batch: int = 32) -> None:
    """Exact BatchNorm statistics over the training patches (short trainings leave them off)."""
    import torch

    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for start in range(0, len(patches), batch):
            net(to_input(patches[start:start + batch]))


def predict(net, patches: np.ndarray, batch: int = 64) -> np.ndarray:
    """Probability of 'informative' per patch."""
    import torch

    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(patches), batch):
            out.append(torch.sigmoid(net(to_input(patches[start:start + batch]))).squeeze(1).numpy())
    return np.concatenate(out) if out else np.empty(0, np.float32)


def save_filter(path: str | Path, net, metrics: dict) -> Path:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": "emseg_patch_filter", "state_dict": net.state_dict(), "config": {"width": 8},
                "metrics": metrics}, path)
    return path


def load_filter(path: str | Path):
    """A function uint8 patches → informativeness in [0, 1] from a saved filter."""
    from emseg.models.checkpoint import safe_torch_load

    if not Path(path).is_file():
        raise CorruptFileError(f"{path}: no such filter model")
    ckpt = safe_torch_load(path, "filter model (from `emseg curate train-filter`)")
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "emseg_patch_filter":
        raise CorruptFileError(f"{path}: not a filter model saved by `emseg curate train-filter`")
    net = build_net(**ckpt["config"])
    net.load_state_dict(ckpt["state_dict"])
    return lambda patches: predict(net, patches)
