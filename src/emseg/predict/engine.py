"""The prediction job: block geometry for a model, and read / compute / write of blocks.

3D valid-convolution nets (they have ``input_shape_for``) read exactly the context their
geometry needs, so blockwise output is bit-identical to a whole-volume pass. Same-padded
nets (``spatial_dims == 2``, or 3D nets without ``input_shape_for``) read a halo around each
write block and keep only the block's centre (crop-and-stitch, no blending): the error
is what the net sees beyond ``halo`` voxels, measured in tests/test_predict_2d.py.
2D nets run in ``stack`` mode (slices along one axis) or ``orthoplane`` mode (xy, xz and
yz passes averaged, as CEM500K does for isotropic data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from emseg.blocks.plan import Block, reflect_read
from emseg.models.normalization import Normalization

Mode = Literal["3d", "stack", "orthoplane"]
_CACHE: dict[str, Any] = {}  # per process: model on its device, open output array


@dataclass(frozen=True)
class Geometry:
    """What a block plan needs from the model: read shape, context before, pooling grid."""

    block_shape: tuple[int, int, int]
    read_shape: tuple[int, int, int]
    context_lo: tuple[int, int, int]
    grid: tuple[int, int, int] = (1, 1, 1)


def downsampling_grid(model) -> tuple[int, int, int]:
    """Translation period of a valid-conv net per axis: its ``grid`` when it reports one, else
    the product of its downsampling ``factors`` (1 if unknown)."""
    if hasattr(model, "grid"):
        return tuple(int(g) for g in model.grid)  # type: ignore[return-value]
    grid = [1, 1, 1]
    for f in getattr(model, "factors", []):
        grid = [g * int(x) for g, x in zip(grid, f)]
    return tuple(grid)  # type: ignore[return-value]


def is_valid_conv(model) -> bool:
    return getattr(model, "spatial_dims", 3) == 3 and hasattr(model, "input_shape_for")


def geometry(model, block_shape, mode: Mode, halo: int | None = None, axis: int = 0) -> Geometry:
    """Read region for ``block_shape`` write blocks of ``model`` in ``mode``."""
    block_shape = tuple(int(b) for b in block_shape)
    if is_valid_conv(model) and mode == "3d":
        read = tuple(model.input_shape_for(block_shape))
        context = tuple(int(c) for c in model.context)
        return Geometry(block_shape, read, tuple(c // 2 for c in context), downsampling_grid(model))
    h = int(halo if halo is not None else getattr(model, "halo", 32))
    divisor = int(getattr(model, "size_divisor", 1))
    if mode == "stack":
        halo_axes = [a for a in range(3) if a != axis]
    else:  # orthoplane, or a same-padded 3D net
        halo_axes = [0, 1, 2]
    read, lo = [], []
    for a, b in enumerate(block_shape):
        if a in halo_axes:
            read.append(math.ceil((b + 2 * h) / divisor) * divisor)
            lo.append(h)
        else:
            read.append(b)
            lo.append(0)
    return Geometry(block_shape, tuple(read), tuple(lo))  # type: ignore[arg-type]


def probabilities(model, logits):
    """Foreground probability (B, 1, ...): the model's own rule, else sigmoid / softmax[1]."""
    import torch

    if hasattr(model, "probabilities"):
        return model.probabilities(logits)
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)[:, 1:2]


def to_output_dtype(prob: np.ndarray, dtype: str) -> np.ndarray:
    """uint8 0–255 (rounded), float16, or (library only, for exactness checks) float32."""
    if dtype == "float32":
        return prob.astype(np.float32)
    if dtype == "uint8":
        return np.rint(np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8)
    return prob.astype(np.float16)


@dataclass
class PredictJob:
    """Everything a process needs to predict blocks; picklable (the model is loaded or
    unpickled once per process and cached, on that process's best device)."""

    volume: Any  # emseg Volume (picklable reader)
    model_source: Any  # checkpoint path (str) or a LoadedModel
    output: str
    geometry: Geometry
    mode: Mode = "3d"
    axis: int = 0
    tta: bool = False
    dtype: str = "uint8"
    device: str = "auto"
    amp: bool = False
    normalization: dict = field(default_factory=lambda: Normalization().to_dict())
    token: str = ""  # identifies the model + settings; cache key
    torch_threads: int = 0  # 0: leave torch's default

    # -- per-process state ---------------------------------------------------------
    def model(self):
        key = f"model:{self.token}:{self.device}"
        if key not in _CACHE:
            import torch

            from emseg.device import pick_device
            from emseg.models import load

            device = pick_device(self.device)
            if self.torch_threads:
                torch.set_num_threads(self.torch_threads)
            loaded = load(self.model_source, device=str(device)) if isinstance(self.model_source, str) \
                else self.model_source
            _CACHE[key] = (loaded.model.eval().to(device), device)
        return _CACHE[key]

    def out_array(self):
        key = f"out:{self.output}"
        if key not in _CACHE:
            import zarr

            _CACHE[key] = zarr.open_array(f"{self.output}/0", mode="r+")
        return _CACHE[key]

    # -- the three job methods -----------------------------------------------------
    def read(self, block: Block) -> np.ndarray:
        raw = reflect_read(self.volume, block.read_start, self.geometry.read_shape)
        return Normalization.of(self.normalization).apply(raw)

    def compute(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        model, device = self.model()
        x = torch.from_numpy(np.stack(inputs)[:, None]).to(device)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp):
            if self.mode == "3d":
                prob = self._tta(lambda t: self._forward_3d(model, t), x, (2, 3, 4))
            elif self.mode == "stack":
                prob = self._tta(lambda t: self._forward_2d(model, t, self.axis), x, self._plane_dims(self.axis))
            else:
                prob = sum(self._tta(lambda t, a=a: self._forward_2d(model, t, a), x, self._plane_dims(a))
                           for a in range(3)) / 3
        b = self.geometry.block_shape
        lo = self.geometry.context_lo if self.mode != "3d" or not is_valid_conv(model) else (0, 0, 0)
        prob = prob[:, 0, lo[0]:lo[0] + b[0], lo[1]:lo[1] + b[1], lo[2]:lo[2] + b[2]]
        return list(prob.float().cpu().numpy())

    def write(self, block: Block, prob: np.ndarray) -> None:
        shape = block.write_shape
        data = to_output_dtype(prob[:shape[0], :shape[1], :shape[2]], self.dtype)
        self.out_array()[block.write] = data

    # -- helpers ---------------------------------------------------------------------
    @staticmethod
    def _plane_dims(axis: int) -> tuple[int, ...]:
        return tuple(d for d in (2, 3, 4) if d != axis + 2)

    def _tta(self, forward, x, dims):
        if not self.tta:
            return forward(x)
        total = forward(x)
        for d in dims:
            total = total + forward(x.flip(d)).flip(d)
        return total / (len(dims) + 1)

    @staticmethod
    def _forward_3d(model, x):
        return probabilities(model, model(x)).float()

    @staticmethod
    def _forward_2d(model, x, axis):
        """(B, 1, Z, Y, X) → slices along ``axis`` through the 2D net → back to (B, 1, Z, Y, X)."""
        moved = x.movedim(axis + 2, 1)  # (B, n, 1, H, W) after the squeeze below
        b, n = moved.shape[:2]
        slices = moved.reshape(b * n, 1, *moved.shape[-2:])
        prob = probabilities(model, model(slices)).float()
        return prob.reshape(b, n, *prob.shape[-2:]).unsqueeze(1).movedim(2, axis + 2)
