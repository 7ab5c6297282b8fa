"""3D U-Net in the funlib / ASEM style: valid convolutions, context known from geometry.

Default (ASEM): 3 downsamplings by 2, two 3×3×3 convs + ReLU per level, 32 feature maps
× 2 per level, nearest ("constant") upsampling, about 5.8 M parameters. Because every
convolution is ``valid``, the output is smaller than the input; `output_shape` and
`context` give that geometry so training and prediction never add margins by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Shape = tuple[int, int, int]


def _triple(v: int | Sequence[int]) -> Shape:
    return (int(v),) * 3 if isinstance(v, int) else tuple(int(x) for x in v)  # type: ignore[return-value]


class ConvPass(nn.Sequential):
    """``n_convs`` valid 3D convolutions, each followed by ReLU (optionally GroupNorm first)."""

    def __init__(self, cin: int, cout: int, kernel: Shape, n_convs: int = 2, norm: bool = False):
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers.append(nn.Conv3d(cin if i == 0 else cout, cout, kernel))
            if norm:
                layers.append(nn.GroupNorm(min(8, cout), cout))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def _center_crop(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    offsets = [(s - t) // 2 for s, t in zip(x.shape[-3:], shape)]
    return x[..., offsets[0]:offsets[0] + shape[0], offsets[1]:offsets[1] + shape[1],
             offsets[2]:offsets[2] + shape[2]]


class UNet3D(nn.Module):
    """Valid-padding 3D U-Net; ``forward`` maps (B, 1, *input) → (B, out_channels, *output).

    out_channels = 1 gives logits for a sigmoid; 2 gives logits for a softmax
    (`probabilities` applies the right one and returns the foreground probability).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        fmaps: int = 32,
        fmap_inc_factor: int = 2,
        downsample_factors: Sequence[int | Sequence[int]] = ((2, 2, 2),) * 3,
        kernel_size: int | Sequence[int] = 3,
        convs_per_level: int = 2,
        upsample: Literal["nearest", "transposed"] = "nearest",
        norm: bool = False,
        stem_factor: int = 1,
    ):
        super().__init__()
        self.config = dict(in_channels=in_channels, out_channels=out_channels, fmaps=fmaps,
                           fmap_inc_factor=fmap_inc_factor,
                           downsample_factors=[list(_triple(f)) for f in downsample_factors],
                           kernel_size=list(_triple(kernel_size)), convs_per_level=convs_per_level,
                           upsample=upsample, norm=norm, stem_factor=stem_factor)
        self.factors = [_triple(f) for f in downsample_factors]
        self.kernel = _triple(kernel_size)
        self.convs_per_level = convs_per_level
        levels = len(self.factors) + 1
        widths = [fmaps * fmap_inc_factor**i for i in range(levels)]
        self.stem_factor = int(stem_factor)
        if self.stem_factor < 1:
            raise ValueError(f"stem_factor must be ≥ 1, got {stem_factor}")
        first_in = in_channels
        if self.stem_factor > 1:  # learned s×s×s patches: the U-Net runs at s× coarser resolution
            s = self.stem_factor
            self.stem = nn.Sequential(nn.Conv3d(in_channels, fmaps, s, stride=s), nn.ReLU(inplace=True))
            first_in = fmaps
        self.down = nn.ModuleList(
            ConvPass(first_in if i == 0 else widths[i - 1], widths[i], self.kernel, convs_per_level, norm)
            for i in range(levels))
        self.pool = nn.ModuleList(nn.MaxPool3d(f, stride=f) for f in self.factors)
        self.upsample_mode = upsample
        if upsample == "transposed":
            self.up = nn.ModuleList(nn.ConvTranspose3d(widths[i + 1], widths[i + 1], f, stride=f)
                                    for i, f in enumerate(self.factors))
        elif upsample == "nearest":
            self.up = nn.ModuleList(nn.Upsample(scale_factor=f, mode="nearest") for f in self.factors)
        else:
            raise ValueError(f"upsample must be 'nearest' or 'transposed', got {upsample!r}")
        self.up_conv = nn.ModuleList(
            ConvPass(widths[i] + widths[i + 1], widths[i], self.kernel, convs_per_level, norm)
            for i in range(levels - 1))
        if self.stem_factor > 1:  # back to full resolution: one learned s×s×s output patch per voxel
            self.head = nn.ConvTranspose3d(widths[0], out_channels, self.stem_factor, stride=self.stem_factor)
        else:
            self.head = nn.Conv3d(widths[0], out_channels, 1)

    # ---- geometry -------------------------------------------------------------------
    # Per axis, a valid input is fixed by the size b ≥ 1 of the bottom feature map:
    # going up, input(b) = ((b + c)·f + c)·f + c …; output(b) = ((b·f − c)·f − c) …
    def _crop(self, axis: int) -> int:
        return self.convs_per_level * (self.kernel[axis] - 1)

    def _io_for_bottom(self, axis: int, bottom: int) -> tuple[int, int]:
        c = self._crop(axis)
        size_in, size_out = bottom + c, bottom
        for f in reversed(self.factors):
            size_in = size_in * f[axis] + c
            size_out = size_out * f[axis] - c
            if size_out < 1:
                return size_in * self.stem_factor, 0
        return size_in * self.stem_factor, size_out * self.stem_factor

    def _bottom_for(self, axis: int, ok) -> int:
        bottom = 1
        while not ok(*self._io_for_bottom(axis, bottom)):
            bottom += 1
        return bottom

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        """Output shape for ``input_shape`` (raises ValueError when it is not valid)."""
        result = []
        for axis, size in enumerate(input_shape):
            bottom = self._bottom_for(axis, lambda i, o, size=int(size): i >= size)
            size_in, size_out = self._io_for_bottom(axis, bottom)
            if size_in != int(size) or size_out < 1:
                raise ValueError(f"input shape {tuple(input_shape)} is not valid for this U-Net; "
                                 f"the nearest valid one is {self.valid_input_shape(input_shape)}")
            result.append(size_out)
        return tuple(result)  # type: ignore[return-value]

    def valid_input_shape(self, at_least: Sequence[int]) -> Shape:
        """Smallest valid input shape ≥ ``at_least`` along every axis."""
        return tuple(self._io_for_bottom(a, self._bottom_for(a, lambda i, o, t=int(t): i >= t and o >= 1))[0]
                     for a, t in enumerate(at_least))  # type: ignore[return-value]

    def input_shape_for(self, output_shape: Sequence[int]) -> Shape:
        """Smallest valid input whose output is at least ``output_shape``."""
        return tuple(self._io_for_bottom(a, self._bottom_for(a, lambda i, o, t=int(t): o >= t))[0]
                     for a, t in enumerate(output_shape))  # type: ignore[return-value]

    @property
    def context(self) -> Shape:
        """Voxels lost per axis (input − output); the same for every valid input."""
        shape = []
        for a in range(3):
            size_in, size_out = self._io_for_bottom(a, self._bottom_for(a, lambda i, o: o >= 1))
            shape.append(size_in - size_out)
        return tuple(shape)  # type: ignore[return-value]

    # ---- forward --------------------------------------------------------------------
    @property
    def grid(self) -> Shape:
        """Translation period per axis: block offsets that are multiples of it give
        bit-identical blockwise output (stem × product of the downsampling factors)."""
        grid = [self.stem_factor] * 3
        for f in self.factors:
            grid = [g * x for g, x in zip(grid, f)]
        return tuple(grid)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem_factor > 1:
            x = self.stem(x)
        skips = []
        for level, conv in enumerate(self.down[:-1]):
            x = conv(x)
            skips.append(x)
            x = self.pool[level](x)
        x = self.down[-1](x)
        for level in reversed(range(len(self.factors))):
            x = self.up[level](x)
            x = torch.cat([_center_crop(skips[level], x.shape[-3:]), x], dim=1)
            x = self.up_conv[level](x)
        return self.head(x)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Foreground probability (B, 1, ...) from logits: sigmoid or softmax channel 1."""
        if logits.shape[1] == 1:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)[:, 1:2]
