"""Checkpoints that carry everything needed to use a model (nnU-Net habit).

A checkpoint is one ``torch.save`` file holding a dict::

    {"emseg_checkpoint": 1,
     "architecture": "unet3d", "model_config": {...},      # registry name + kwargs
     "state_dict": {...},
     "voxel_size": [z, y, x] (nm), "normalization": {"mean": m, "std": s},
     "organelle": "mito", "threshold": 0.5,
     "inference": {"mode": "orthoplane", "tta": True},  # how `emseg predict` runs it by default (optional)
     "training": {...}  # config, iteration, optimizer state, validation scores (optional)
    }
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from emseg.errors import ConfigError, CorruptFileError, VolumeNotFoundError
from emseg.io.tempfiles import write_file_atomic
from emseg.models.normalization import Normalization
from emseg.models.registry import build

FORMAT_VERSION = 1
INFERENCE_MODES = ("3d", "stack", "orthoplane")


def inference_settings(inference: dict | None, where: str = "checkpoint") -> dict:
    """Checked copy of a checkpoint's ``inference`` dict: ``mode`` (3d, stack or orthoplane) and
    ``tta`` (bool), both optional; anything else is a one-line `ConfigError` naming ``where``."""
    if inference is None:
        return {}
    if not isinstance(inference, dict):
        raise ConfigError(f"{where}: inference settings must be a dict, got {type(inference).__name__}")
    unknown = sorted(set(inference) - {"mode", "tta"})
    if unknown:
        raise ConfigError(f"{where}: unknown inference setting(s) {', '.join(map(repr, unknown))} (known: mode, tta)")
    if "mode" in inference and inference["mode"] not in INFERENCE_MODES:
        raise ConfigError(f"{where}: inference mode must be one of {', '.join(INFERENCE_MODES)}, "
                          f"got {inference['mode']!r}")
    if "tta" in inference and not isinstance(inference["tta"], bool):
        raise ConfigError(f"{where}: inference tta must be true or false, got {inference['tta']!r}")
    return dict(inference)


@dataclass
class LoadedModel:
    """A model ready for inference plus what is needed to use it."""

    model: nn.Module
    architecture: str
    model_config: dict
    voxel_size: tuple[float, float, float]
    normalization: dict = field(default_factory=lambda: Normalization().to_dict())
    organelle: str = "object"
    threshold: float = 0.5
    training: dict = field(default_factory=dict)
    path: str = ""
    inference: dict = field(default_factory=dict)  # e.g. {"mode": "orthoplane", "tta": True}; {} = predict's defaults


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, architecture: str, model_config: dict,
                    voxel_size, normalization: dict, organelle: str = "object", threshold: float = 0.5,
                    training: dict | None = None, inference: dict | None = None) -> Path:
    """Write a checkpoint atomically (temp file + rename): a killed save never leaves half a file, a
    full disk raises `DiskFullError` and leaves nothing, and a killed save's temp file is removed next time.

    ``inference`` (e.g. ``{"mode": "orthoplane", "tta": True}``) is how `emseg predict` runs the
    model when its caller leaves mode at ``auto`` and tta unset."""
    target = Path(path)
    inference = inference_settings(inference, str(target))
    spatial = getattr(model, "spatial_dims", 3)
    if "mode" in inference and (inference["mode"] == "3d") != (spatial == 3):
        raise ConfigError(f"{target}: inference mode {inference['mode']!r} does not fit a {spatial}D model "
                          "(3D: '3d'; 2D: 'stack' or 'orthoplane')")
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "emseg_checkpoint": FORMAT_VERSION,
        "architecture": architecture,
        "model_config": dict(model_config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "voxel_size": [float(v) for v in voxel_size],
        "normalization": {k: float(v) for k, v in normalization.items()},
        "organelle": organelle,
        "threshold": float(threshold),
        "inference": inference,
        "training": training or {},
    }
    return write_file_atomic(target, lambda f: torch.save(payload, f))


def safe_torch_load(path: str | os.PathLike, what: str = "checkpoint", map_location="cpu"):
    """``torch.load(path, weights_only=True)``: tensors and plain data only, so a crafted
    pickle never runs code. Damaged or refused files raise a one-line `CorruptFileError`."""
    path = Path(path)
    if not path.is_file():
        raise VolumeNotFoundError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        if lines and lines[0].startswith("Weights only load failed"):
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            detail = f" (it asks for {found.group(1)})" if found else ""
            raise CorruptFileError(f"{path}: refused to load this {what}: it holds Python objects, not only "
                                   f"tensors and plain data, and loading them could run code{detail}") from None
        raise CorruptFileError(f"{path}: not a readable {what} ({type(exc).__name__}: "
                               f"{lines[0] if lines else ''})") from None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict, with clear errors for missing, corrupt or unsafe files."""
    path = Path(path)
    if not path.exists():
        raise VolumeNotFoundError(f"{path}: checkpoint not found")
    payload = safe_torch_load(path, "checkpoint")
    if not isinstance(payload, dict) or "emseg_checkpoint" not in payload:
        raise CorruptFileError(f"{path}: not an emseg checkpoint (missing 'emseg_checkpoint' key)")
    return payload


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model from a checkpoint, in eval mode on ``device``."""
    payload = read_checkpoint(path)
    try:
        model = build(payload["architecture"], **payload["model_config"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise CorruptFileError(f"{path}: checkpoint does not match its architecture ({exc})") from None
    model.eval().to(device)
    return LoadedModel(
        model=model, architecture=payload["architecture"], model_config=payload["model_config"],
        voxel_size=tuple(payload["voxel_size"]), normalization=payload["normalization"],
        organelle=payload.get("organelle", "object"), threshold=payload.get("threshold", 0.5),
        training=payload.get("training", {}), path=str(path),
        inference=inference_settings(payload.get("inference"), str(path)))


def slim_checkpoint(source: str | os.PathLike, target: str | os.PathLike, threshold: float | None = None,
                    threshold_choice: dict | None = None, inference: dict | None = None,
                    half: bool = False) -> Path:
    """Copy a checkpoint without optimizer state and loss history (for sharing or bundling);
    everything needed to use it (weights, config, normalisation, scores) is kept.

    ``threshold`` replaces the one training chose (e.g. one chosen on the validation part through
    `emseg predict`); ``threshold_choice`` records how it was chosen (kept in ``training``);
    ``inference`` replaces the stored inference settings (see `save_checkpoint`); ``half`` stores
    float weights as float16 (half the file; they load into the float32 network as they are, so
    score the slimmed file itself)."""
    payload = read_checkpoint(source)
    training = {k: v for k, v in payload.get("training", {}).items() if k not in ("optimizer", "history")}
    payload = {**payload, "training": training}
    if threshold is not None:
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        payload["threshold"] = float(threshold)
        training["threshold_choice"] = {"threshold": float(threshold), **(threshold_choice or {})}
    if inference is not None:
        payload["inference"] = inference_settings(inference, str(target))
    if half:
        payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        training["weights_dtype"] = "float16"
    target = Path(target)
    return write_file_atomic(target, lambda f: torch.save(payload, f))
