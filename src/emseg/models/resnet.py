"""1-channel ResNet-18/34/50 encoders with torchvision's parameter names.

The names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc`` …) match
torchvision's ResNet exactly, so the published CEM500K MoCoV2 weights — a checkpoint whose
``state_dict`` keys start with ``module.encoder_q.`` plus ``norms`` = [mean, std] — load with
`load_encoder_weights`. ``width`` scales every channel count (64 = the standard network; small
widths keep tests fast).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from emseg.errors import ConfigError, CorruptFileError, VolumeNotFoundError

CEM500K_NORMS = (0.58331613, 0.09966064)
PREFIXES = ("module.encoder_q.", "encoder_q.", "module.", "encoder.")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # stride on the 3x3 (torchvision v1.5)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


SPECS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """torchvision-compatible ResNet with ``in_channels`` input (1 for EM).

    `forward` returns the pooled feature vector through ``fc`` (Identity unless a head is set);
    `features` returns the five maps used by the U-Net decoder (strides 2, 4, 8, 16, 32).
    """

    def __init__(self, arch: str = "resnet50", in_channels: int = 1, width: int = 64):
        super().__init__()
        if arch not in SPECS:
            raise ConfigError(f"unknown ResNet {arch!r}; choose one of {', '.join(SPECS)}")
        block, layers = SPECS[arch]
        self.arch, self.width = arch, width
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, width, layers[0], 1)
        self.layer2 = self._make_layer(block, width * 2, layers[1], 2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], 2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = width * 8 * block.expansion
        self.channels = (width, width * block.expansion, width * 2 * block.expansion,
                         width * 4 * block.expansion, width * 8 * block.expansion)
        self.fc: nn.Module = nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 2, 4, 8, 16, 32."""
        c1 = self.relu(self.bn1(self.conv1(x)))
        c2 = self.layer1(self.maxpool(c1))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c1, c2, c3, c4, c5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)[-1]), 1))


def strip_encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Backbone weights from a CEM500K/MoCo/emseg/torchvision state dict.

    Keeps ``module.encoder_q.*`` (or plain backbone keys), drops the key encoder, queue and the
    ``fc`` head; a 3-channel ``conv1`` (ImageNet weights) is summed to 1 channel.
    """
    if any(k.startswith("module.encoder_q.") or k.startswith("encoder_q.") for k in state):
        state = {k: v for k, v in state.items() if "encoder_q." in k}
    out = {}
    for key, value in state.items():
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if key.startswith("fc.") or key in ("queue", "queue_ptr") or key.startswith("encoder_k."):
            continue
        out[key] = value
    if "conv1.weight" in out and out["conv1.weight"].shape[1] == 3:
        out["conv1.weight"] = out["conv1.weight"].sum(dim=1, keepdim=True)
    return out


def read_encoder_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], tuple[float, float] | None, dict]:
    """(backbone state, norms or None, config) from a CEM500K-, emseg- or torchvision-format file."""
    path = Path(path)
    if not path.exists():
        raise VolumeNotFoundError(f"{path}: encoder weights not found")
    from emseg.models.checkpoint import safe_torch_load

    payload = safe_torch_load(path, "encoder weights file")
    if not isinstance(payload, dict):
        raise CorruptFileError(f"{path}: expected a dict of weights, got {type(payload).__name__}")
    state = payload.get("state_dict", payload)
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptFileError(f"{path}: holds no weights (expected a dict of tensors or a 'state_dict' entry)")
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if "emseg_checkpoint" in payload:  # an emseg 2D U-Net checkpoint: take its encoder
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    norms = payload.get("norms")
    if norms is None and isinstance(payload.get("normalization"), dict):
        norms = (payload["normalization"]["mean"], payload["normalization"]["std"])
    if norms is not None:
        norms = (float(norms[0]), float(norms[1]))
    config = dict(payload.get("config", {}))
    return strip_encoder_state(state), norms, config


def load_encoder_weights(encoder: ResNet, path: str | os.PathLike) -> tuple[float, float] | None:
    """Load backbone weights into ``encoder`` (strict on the backbone); returns the file's norms."""
    state, norms, _ = read_encoder_file(path)
    own = {k for k in encoder.state_dict() if not k.startswith("fc.")}
    missing = sorted(own - set(state))
    unexpected = sorted(set(state) - own)
    if missing or unexpected:
        raise CorruptFileError(f"{path}: weights do not match {encoder.arch} (width {encoder.width}); "
                               f"missing {missing[:4]}{'…' if len(missing) > 4 else ''}, "
                               f"unexpected {unexpected[:4]}{'…' if len(unexpected) > 4 else ''}")
    try:
        encoder.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CorruptFileError(f"{path}: weight shapes do not match {encoder.arch} (width {encoder.width}): "
                               f"{str(exc)[:300]}") from None
    return norms


def infer_arch(state: dict[str, torch.Tensor]) -> tuple[str, int]:
    """(arch, width) of a backbone state dict, from its layer counts and conv1 width."""
    width = int(state["conv1.weight"].shape[0])
    blocks = [len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    bottleneck = any(k.endswith("conv3.weight") for k in state)
    for name, (block, layers) in SPECS.items():
        if tuple(blocks) == layers and (block is Bottleneck) == bottleneck:
            return name, width
    raise CorruptFileError(f"weights are not a known ResNet (blocks per layer {blocks})")
