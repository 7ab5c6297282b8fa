"""2D U-Net with a ResNet encoder (CEM500K transfer model), same padding.

Any input size works: the image is reflect-padded to a multiple of 32 and the output cropped
back, so output shape == input shape. ``spatial_dims = 2`` and ``halo`` (margin in pixels a
blockwise predictor reads around each tile so tiles agree with whole-image prediction to
within small differences) let `emseg predict` run it slice by slice (stack) or on the three
orthogonal planes (orthoplane).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emseg.models.resnet import ResNet


class DecoderBlock(nn.Sequential):
    """Two 3×3 conv → BN → ReLU after upsampling and concatenating the skip."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class UNetResNet2D(nn.Module):
    """U-Net decoder on `ResNet` features; ``encoder.*`` keys are torchvision ResNet names."""

    spatial_dims = 2

    def __init__(self, arch: str = "resnet50", in_channels: int = 1, out_channels: int = 1, width: int = 64,
                 decoder_channels: tuple[int, ...] | list[int] | None = None, halo: int = 64):
        super().__init__()
        self.encoder = ResNet(arch, in_channels, width)
        if decoder_channels is None:
            decoder_channels = tuple(max(4, c * width // 64) for c in (256, 128, 64, 32, 16))
        decoder_channels = tuple(int(c) for c in decoder_channels)
        if len(decoder_channels) != 5:
            raise ValueError("decoder_channels needs 5 entries (strides 16, 8, 4, 2, 1)")
        skips = list(self.encoder.channels[:4])[::-1] + [0]  # c4, c3, c2, c1, none
        blocks, cin = [], self.encoder.channels[4]
        for skip, cout in zip(skips, decoder_channels):
            blocks.append(DecoderBlock(cin + skip, cout))
            cin = cout
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, out_channels, 3, padding=1)
        self.halo = int(halo)
        self.config = dict(arch=arch, in_channels=in_channels, out_channels=out_channels, width=width,
                           decoder_channels=list(decoder_channels), halo=int(halo))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_y, pad_x = (-height) % 32, (-width) % 32
        if pad_y or pad_x:
            mode = "reflect" if pad_y < height and pad_x < width else "replicate"
            x = F.pad(x, (0, pad_x, 0, pad_y), mode=mode)
        feats = self.encoder.features(x)
        y = feats[-1]
        for block, skip in zip(self.decoder, feats[:4][::-1] + [None]):
            y = F.interpolate(y, scale_factor=2, mode="nearest")
            if skip is not None:
                y = torch.cat([y, skip], dim=1)
            y = block(y)
        return self.head(y)[..., :height, :width]

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Foreground probability (B, 1, H, W) from logits: sigmoid or softmax channel 1."""
        if logits.shape[1] == 1:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)[:, 1:2]

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Stop (or restart) training the encoder; frozen BN layers keep their running statistics."""
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        self._encoder_frozen = frozen

    def train(self, mode: bool = True) -> "UNetResNet2D":
        super().train(mode)
        if mode and getattr(self, "_encoder_frozen", False):
            self.encoder.eval()
        return self
