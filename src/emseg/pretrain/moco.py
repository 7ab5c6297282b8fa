"""MoCoV2 (He et al. 2020; Chen et al. 2020) as used by CEM500K.

Query encoder ``encoder_q`` = ResNet + MLP head (``fc.0``, ReLU, ``fc.2``), key encoder
``encoder_k`` = its momentum copy, a queue of ``queue_size`` negative keys. Parameter names
match the reference implementation, so ``state_dict()`` prefixed with ``module.`` is the
CEM500K checkpoint layout.

Shuffle-BN. The reference shuffles the key batch across GPUs so a query and its positive key
never share BatchNorm statistics (otherwise the network "cheats" through batch statistics).
Under DDP we do the same (all-gather, shuffle, scatter). In a single process the substitute is
*grouped shuffle-BN*: the batch is split into ``bn_groups`` sub-batches that go through the
encoders separately (each gets its own BN statistics, like one GPU each); queries keep the
order, keys are permuted before grouping and un-permuted after, so a positive pair lands in
the same BN group only by chance (about 1 / ``bn_groups``), exactly as with that many GPUs.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from emseg.models.resnet import ResNet


def mlp_head(in_features: int, dim: int) -> nn.Sequential:
    """``fc`` of MoCoV2: Linear(in, in) → ReLU → Linear(in, dim) (keys fc.0, fc.2)."""
    return nn.Sequential(nn.Linear(in_features, in_features), nn.ReLU(inplace=True), nn.Linear(in_features, dim))


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """All ranks' tensors concatenated along dim 0 (no gradient)."""
    if not _distributed():
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=0)


class MoCo(nn.Module):
    """MoCoV2 with queue, momentum encoder and MLP head."""

    def __init__(self, arch: str = "resnet50", width: int = 64, dim: int = 128, queue_size: int = 65536,
                 momentum: float = 0.999, temperature: float = 0.2, bn_groups: int = 2):
        super().__init__()
        self.momentum, self.temperature, self.bn_groups = momentum, temperature, max(1, int(bn_groups))
        self.encoder_q = ResNet(arch, 1, width)
        self.encoder_q.fc = mlp_head(self.encoder_q.num_features, dim)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self) -> None:
        """θ_k ← m·θ_k + (1 − m)·θ_q."""
        for p_q, p_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            p_k.mul_(self.momentum).add_(p_q.detach(), alpha=1 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (N, dim; all ranks') over the oldest queue entries; the pointer wraps."""
        keys = concat_all_gather(keys)
        size = self.queue.shape[1]
        ptr = int(self.queue_ptr)
        index = (ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[:, index] = keys.T.to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + keys.shape[0]) % size

    def _grouped(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        groups = self.bn_groups if not _distributed() and x.shape[0] >= 2 * self.bn_groups else 1
        return torch.cat([encoder(chunk) for chunk in x.chunk(groups)], dim=0)

    @torch.no_grad()
    def _keys(self, im_k: torch.Tensor) -> torch.Tensor:
        if _distributed():  # reference shuffle-BN across ranks
            gathered = concat_all_gather(im_k)
            perm = torch.randperm(gathered.shape[0], device=im_k.device)
            dist.broadcast(perm, src=0)
            rank, n = dist.get_rank(), im_k.shape[0]
            local = gathered[perm.view(dist.get_world_size(), -1)[rank]]
            k = F.normalize(self.encoder_k(local), dim=1)
            all_k = concat_all_gather(k)
            return all_k[torch.argsort(perm)][rank * n:(rank + 1) * n]
        perm = torch.randperm(im_k.shape[0], device=im_k.device)
        k = F.normalize(self._grouped(self.encoder_k, im_k[perm]), dim=1)
        return k[torch.argsort(perm)]

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, 1 + K) with the positive key in column 0, and targets (zeros)."""
        q = F.normalize(self._grouped(self.encoder_q, im_q), dim=1)
        with torch.no_grad():
            self.momentum_update()
            k = self._keys(im_k)
        l_pos = (q * k).sum(dim=1, keepdim=True)
        l_neg = q @ self.queue.clone().detach()
        logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature
        self.enqueue(k)
        return logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
