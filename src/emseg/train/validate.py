"""Validation: predict whole validation ROIs in memory, tile by tile, and score them.

(The blockwise, out-of-memory engine is `emseg.predict`; validation ROIs are small.)
"""

from __future__ import annotations

import numpy as np
import torch

from emseg.masks import boundary_exclusion_mask
from emseg.metrics import Counts, confusion_counts, scores_from_counts
from emseg.models.normalization import Normalization


def tile_starts(size: int, tile: int) -> list[int]:
    """Tile origins covering ``size``; the last tile is shifted back to end at ``size``."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile))
    return starts + [size - tile]


DEFAULT_OUTPUT_TILE = 112  # per axis; large tiles waste less compute on context


@torch.inference_mode()
def predict_in_memory(model, raw: np.ndarray, normalization: dict, output_tile=None,
                      device: torch.device | str = "cpu") -> np.ndarray:
    """Foreground probability (float32, same shape as ``raw``) of a valid-conv model."""
    output_tile = output_tile or (DEFAULT_OUTPUT_TILE,) * 3
    output_tile = tuple(min(t, max(n, 1)) for t, n in zip(output_tile, raw.shape))
    input_tile = model.input_shape_for(output_tile)
    output_tile = model.output_shape(input_tile)
    context = [(i - o) // 2 for i, o in zip(input_tile, output_tile)]
    pad = [(c, i - o - c + max(0, o - n)) for c, i, o, n in zip(context, input_tile, output_tile, raw.shape)]
    x = Normalization.of(normalization).apply(raw)
    x = np.pad(x, pad, mode="symmetric")
    out = np.zeros(raw.shape, np.float32)
    was_training = model.training
    model.eval()
    for z in tile_starts(raw.shape[0], output_tile[0]):
        for y in tile_starts(raw.shape[1], output_tile[1]):
            for xx in tile_starts(raw.shape[2], output_tile[2]):
                block = x[z:z + input_tile[0], y:y + input_tile[1], xx:xx + input_tile[2]]
                logits = model(torch.from_numpy(np.ascontiguousarray(block))[None, None].to(device))
                prob = model.probabilities(logits)[0, 0].float().cpu().numpy()
                box = tuple(slice(s, min(s + o, n)) for s, o, n in zip((z, y, xx), output_tile, raw.shape))
                out[box] = prob[tuple(slice(0, b.stop - b.start) for b in box)]
    model.train(was_training)
    return out


AUTO_THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(13))  # 0.30 … 0.90


def validate(model, sources, normalization: dict, threshold: float | str = 0.5, device="cpu",
             output_tile=None) -> dict[str, float]:
    """Voxel precision/recall/F1/IoU over all validation sources, inside sample ∧ metric mask.

    ``threshold="auto"`` scores the thresholds 0.30, 0.35 … 0.90 and returns the best by F1
    (its value under ``"threshold"``); otherwise the given threshold is used."""
    thresholds = AUTO_THRESHOLDS if threshold == "auto" else (float(threshold),)
    totals = {t: Counts() for t in thresholds}
    for source in sources:
        full = tuple(source.shape)
        raw = source.raw.read((0, 0, 0), full)
        target = source.target.read((0, 0, 0), full)
        prob = predict_in_memory(model, raw, normalization, output_tile, device)
        mask = np.ones(full, bool)
        if source.sample_mask is not None:
            mask &= source.sample_mask.read((0, 0, 0), full) > 0
        if source.metric_mask is not None:
            mask &= source.metric_mask.read((0, 0, 0), full) > 0
        if source.exclusion_width:
            mask &= boundary_exclusion_mask(target, source.exclusion_width) > 0
        for t in thresholds:
            totals[t] = totals[t] + confusion_counts(prob >= t, target > 0, mask)
    scored = {t: scores_from_counts(c) for t, c in totals.items()}
    best = max(thresholds, key=lambda t: (scored[t]["f1"], -abs(t - 0.5)))
    return {**scored[best], "threshold": best}
