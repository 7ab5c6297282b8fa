"""Binary cross-entropy masked by the sample mask, class-balanced by default (optionally + soft Dice)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def foreground_logits(logits: torch.Tensor) -> torch.Tensor:
    """One logit per voxel: the sigmoid channel, or the softmax log-odds of class 1."""
    return logits[:, :1] if logits.shape[1] == 1 else (logits[:, 1:2] - logits[:, :1])


def masked_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Plain BCE averaged over the voxels inside ``mask``: each voxel weighs the same."""
    weights = mask / mask.sum().clamp(min=1.0)
    return F.binary_cross_entropy_with_logits(foreground_logits(logits), target, weight=weights, reduction="sum")


def balanced_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE where foreground and background inside ``mask`` weigh half each (ASEM style);
    voxels outside ``mask`` (not annotated) do not count."""
    fg = (target * mask).sum()
    bg = ((1 - target) * mask).sum()
    if fg == 0 or bg == 0:  # one class only: plain mean over the annotated voxels
        return masked_bce(logits, target, mask)
    weights = mask * (target * (0.5 / fg.clamp(min=1.0)) + (1 - target) * (0.5 / bg.clamp(min=1.0)))
    return F.binary_cross_entropy_with_logits(foreground_logits(logits), target, weight=weights, reduction="sum")


def soft_dice(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(foreground_logits(logits)) * mask
    target = target * mask
    return 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)


def training_loss(name: str, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                  class_balance: bool = True) -> torch.Tensor:
    """``"bce"`` or ``"bce+dice"``; the BCE class-balanced (ASEM) or, without ``class_balance``, plain."""
    loss = (masked_bce if class_balance is False else balanced_bce)(logits, target, mask)
    if name == "bce+dice":
        loss = loss + soft_dice(logits, target, mask)
    return loss
