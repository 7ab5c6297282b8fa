"""Training sources opened and checked, and a pickle-safe random block sampler.

Each source is confined to its ROI: blocks and their context are read inside it and padded by
mirroring at its borders, so a validation ROI of the same volume is never seen in training.
Voxels outside a source's sample mask get mask 0 and do not count in the loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from emseg.errors import ConfigError, EmsegError
from emseg.io import open_volume
from emseg.io.roi import parse_roi
from emseg.io.volume import Volume
from emseg.models.normalization import Normalization
from emseg.predict.resample import cast_like, resample_array, same_voxel_size
from emseg.train.augment import augment_block
from emseg.train.config import Augment, Sampling, Source


class RegionReader:
    """Reads boxes from a volume (or in-memory array) restricted to an ROI, mirror-padded."""

    def __init__(self, data: Volume | np.ndarray, roi: tuple[slice, slice, slice]):
        self.data, self.roi = data, roi
        self.shape = tuple(s.stop - s.start for s in roi)

    def load(self) -> "RegionReader":
        """The same reader holding its ROI in memory."""
        return RegionReader(np.ascontiguousarray(self.data[self.roi]), tuple(slice(0, n) for n in self.shape))

    def read(self, start: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
        """Box at ``start`` (ROI coordinates, may be negative/beyond) of ``shape``, mirrored."""
        lo = [max(0, s) for s in start]
        hi = [min(n, s + k) for s, k, n in zip(start, shape, self.shape)]
        if any(h <= low for low, h in zip(lo, hi)):  # box entirely outside: reflect its centre inside
            lo = [min(max(0, s), n - 1) for s, n in zip(start, self.shape)]
            hi = [low + 1 for low in lo]
        region = tuple(slice(r.start + low, r.start + h) for r, low, h in zip(self.roi, lo, hi))
        block = np.asarray(self.data[region])
        pads = [(low - s, s + k - h) for s, k, low, h in zip(start, shape, lo, hi)]
        if any(p for pair in pads for p in pair):
            block = np.pad(block, pads, mode="symmetric")
        return block


@dataclass
class SourceData:
    """An opened, checked source: readers for raw, target (binary), masks; its weight."""

    name: str
    raw: RegionReader
    target: RegionReader
    sample_mask: RegionReader | None
    metric_mask: RegionReader | None
    label_values: list[int] | str
    exclusion_width: int | None
    voxel_size: tuple[float, float, float]
    weight: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.raw.shape  # type: ignore[return-value]


def binarize(labels: np.ndarray, label_values: list[int] | str) -> np.ndarray:
    """1 where ``labels`` has one of ``label_values`` (or any non-zero value), else 0."""
    if label_values == "nonzero":
        return (labels != 0).astype(np.uint8)
    return np.isin(labels, np.asarray(label_values)).astype(np.uint8)


def open_source(source: Source, label: str, in_memory_limit_gb: float = 4.0,
                voxel_size: Sequence[float] | None = None) -> SourceData:
    """Open and check one source; every problem becomes a ConfigError naming it.

    ``voxel_size`` (nm, z y x): the model's working voxel size; a source at another one is
    resampled to it in memory after its ROI is cut (raw linearly, labels and masks by the
    fraction of each working voxel they cover, kept where ≥ 0.5).
    """
    name = source.name or label
    where = f"source {name}"
    try:
        raw = open_volume(source.raw, source.voxel_size)
        labels = open_volume(source.labels, raw.voxel_size)
        masks = {k: open_volume(getattr(source, k), raw.voxel_size) if getattr(source, k) else None
                 for k in ("sample_mask", "metric_mask")}
    except EmsegError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    for kind, vol in [("labels", labels), *masks.items()]:
        if vol is not None and vol.shape != raw.shape:
            raise ConfigError(f"{where}: {kind} shape {vol.shape} differs from raw shape {raw.shape} ({vol.path})")
    if labels.dtype.kind not in "uib":
        raise ConfigError(f"{where}: labels must be integers, got {labels.dtype} ({labels.path})")
    roi = parse_roi(source.roi, raw.shape, where)
    readers = {"raw": RegionReader(raw, roi), "labels": RegionReader(labels, roi)}
    readers.update({k: RegionReader(v, roi) if v is not None else None for k, v in masks.items()})
    nbytes = sum(math.prod(readers["raw"].shape) * v.dtype.itemsize
                 for v in [raw, labels, *[m for m in masks.values() if m is not None]])
    rescale = voxel_size is not None and not same_voxel_size(raw.voxel_size, voxel_size)
    if rescale and nbytes > in_memory_limit_gb * 2**30:
        raise ConfigError(f"{where}: resampling from {tuple(raw.voxel_size)} to {tuple(voxel_size)} nm needs the "
                          f"source in memory ({nbytes / 2**30:.1f} GiB > in_memory_limit_gb {in_memory_limit_gb}); "
                          "give it an roi, raise in_memory_limit_gb, or resample the files first")
    if nbytes <= in_memory_limit_gb * 2**30:
        readers = {k: r.load() if r is not None else None for k, r in readers.items()}
    if rescale:
        readers = resample_readers(readers, source.label_values, raw.voxel_size, voxel_size)
        width = source.exclusion_width  # given in the file's voxels: the same width in nm
        width = max(1, round(width * raw.voxel_size[-1] / voxel_size[-1])) if width else width
        source = source.model_copy(update={"label_values": "nonzero", "exclusion_width": width})
    target = readers["labels"]
    if isinstance(target.data, np.ndarray):
        target = RegionReader(binarize(target.data, source.label_values), target.roi)
        fg = int(target.data.sum())
        annotated = (int(np.count_nonzero(readers["sample_mask"].data)) if readers["sample_mask"] is not None
                     else target.data.size)
    else:
        fg, annotated = count_foreground(labels, roi, source.label_values), math.prod(target.shape)
    if fg == 0:
        raise ConfigError(f"{where}: no foreground (label values {source.label_values}) inside the roi")
    return SourceData(name, readers["raw"], target, readers["sample_mask"], readers["metric_mask"],
                      source.label_values, source.exclusion_width,
                      tuple(float(v) for v in (voxel_size if rescale else raw.voxel_size)),
                      source.weight if source.weight is not None else float(annotated))


def resample_readers(readers: dict, label_values, source_voxel_size, voxel_size) -> dict:
    """In-memory readers resampled to ``voxel_size``; labels become the binary target."""
    scale = [t / s for t, s in zip(voxel_size, source_voxel_size)]
    out = {}
    for key, reader in readers.items():
        if reader is None:
            out[key] = None
            continue
        data = reader.data
        if key == "raw":
            data = cast_like(resample_array(data, scale), data.dtype)
        else:
            binary = binarize(data, label_values) if key == "labels" else (data != 0).astype(np.uint8)
            data = (resample_array(binary, scale) >= 0.5).astype(np.uint8)
        out[key] = RegionReader(data, tuple(slice(0, n) for n in data.shape))
    return out


def count_foreground(labels: Volume, roi, label_values) -> int:
    """Foreground voxels of a large label volume, blockwise through dask."""
    data = labels.to_dask()[roi]
    return int(data.map_blocks(binarize, label_values, dtype=np.uint8).sum().compute())


class BlockSampler(torch.utils.data.IterableDataset):
    """Endless random training blocks: (raw input, target, loss mask) as float tensors.

    Pickle-safe (sources hold arrays or lazy Volumes), each DataLoader worker seeds its own
    generator. Blocks with < ``min_foreground`` foreground are rejected with probability
    ``reject_probability``; blocks with < ``min_annotated`` of the sample mask always are.
    """

    def __init__(self, sources: list[SourceData], input_shape, output_shape, normalization: dict,
                 augment: Augment, sampling: Sampling, seed: int = 0):
        super().__init__()
        self.sources, self.input_shape, self.output_shape = sources, tuple(input_shape), tuple(output_shape)
        self.normalization, self.augment, self.sampling, self.seed = normalization, augment, sampling, seed
        weights = np.array([s.weight for s in sources], dtype=float)
        self.probabilities = weights / weights.sum()

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, worker, torch.initial_seed() % 2**31])
        while True:
            yield self.sample(rng)

    def sample(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        for _attempt in range(50):
            source = self.sources[rng.choice(len(self.sources), p=self.probabilities)]
            out_start = tuple(int(rng.integers(0, max(1, n - o + 1))) - max(0, o - n) // 2
                              for n, o in zip(source.shape, self.output_shape))
            target = source.target.read(out_start, self.output_shape)
            mask = (source.sample_mask.read(out_start, self.output_shape) if source.sample_mask is not None
                    else np.ones_like(target))
            annotated = float(np.count_nonzero(mask)) / mask.size
            if annotated < self.sampling.min_annotated:
                continue
            fg = float(np.count_nonzero(target & (mask > 0))) / max(1, np.count_nonzero(mask))
            if fg < self.sampling.min_foreground and rng.random() < self.sampling.reject_probability:
                continue
            break
        raw, target, mask = augment_block(source, out_start, self.input_shape, self.output_shape,
                                          self.augment, rng)
        raw = Normalization.of(self.normalization).standardize(raw)
        return {"raw": torch.from_numpy(np.ascontiguousarray(raw[None], dtype=np.float32)),
                "target": torch.from_numpy(np.ascontiguousarray(target[None], dtype=np.float32)),
                "mask": torch.from_numpy(np.ascontiguousarray(mask[None], dtype=np.float32))}
