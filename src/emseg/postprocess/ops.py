"""Voxelwise and morphological steps on lazy (dask) volumes: threshold, opening/closing,
hole filling and conflict resolution between organelle probability maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emseg.errors import InvalidValuesError


def check_threshold(threshold: float, name: str = "threshold") -> float:
    """A probability threshold must lie in [0, 1]."""
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0 or np.isnan(threshold):
        raise InvalidValuesError(f"{name} must be in [0, 1], got {threshold}")
    return threshold


def probability_scale(dtype: np.dtype) -> float:
    """Value that stands for probability 1: 1.0 for floats, 255 for uint8 maps, 65535 for uint16."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return 1.0
    if dtype in (np.uint8, np.uint16):
        return float(np.iinfo(dtype).max)
    raise InvalidValuesError(f"probabilities must be float, uint8 or uint16, got {dtype}")


def threshold_mask(prob, threshold: float):
    """Boolean dask array ``prob >= threshold`` (threshold in [0, 1], scaled for uint8/uint16 maps)."""
    threshold = check_threshold(threshold)
    return prob >= threshold * probability_scale(prob.dtype)


def foreground(labels):
    """Boolean dask array of non-zero labels (binary or instance volumes)."""
    if np.dtype(labels.dtype).kind not in "uib":
        raise InvalidValuesError(f"labels must be integers, got dtype {labels.dtype}")
    return labels > 0


def ball(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    zz, yy, xx = np.meshgrid(r, r, r, indexing="ij")
    return zz**2 + yy**2 + xx**2 <= radius**2


def _open_close(block: np.ndarray, opening: int, closing: int) -> np.ndarray:
    from scipy import ndimage

    out = block.astype(bool)
    if closing:
        # dilate then erode; outside the volume counts as foreground for the erosion so that
        # objects touching the border are not eaten (scipy's binary_closing would)
        out = ndimage.binary_dilation(out, ball(closing))
        out = ndimage.binary_erosion(out, ball(closing), border_value=1)
    if opening:
        out = ndimage.binary_opening(out, ball(opening))
    return out


def open_close(mask, opening_vox: int = 0, closing_vox: int = 0):
    """Binary closing then opening with balls of the given radii (voxels), blockwise with
    enough overlap that the result equals the whole-volume operation."""
    if opening_vox < 0 or closing_vox < 0:
        raise InvalidValuesError(f"opening/closing radii must be >= 0, got {opening_vox}, {closing_vox}")
    if not opening_vox and not closing_vox:
        return mask
    depth = 2 * (opening_vox + closing_vox)
    depth = tuple(min(depth, min(c)) if len(c) > 1 else 0 for c in mask.chunks)
    return mask.map_overlap(_open_close, depth=depth, boundary="none", dtype=bool,
                            opening=int(opening_vox), closing=int(closing_vox))


def fill_holes(mask, connectivity: int = 26, progress: bool = False):
    """Fill background regions enclosed by foreground (not connected to the volume border),
    found with blockwise connected components of the background."""
    from emseg.postprocess.components import find_components, relabel

    background = ~mask
    bg_connectivity = 26 if connectivity == 6 else 6  # the complementary connectivity
    components = find_components(background, bg_connectivity, progress)
    is_hole = (~components.touches_border).astype(np.uint8)
    is_hole[0] = 0
    holes = relabel(background, components, is_hole, dtype=np.uint8)
    return mask | (holes > 0)


def threshold_margin(p: np.ndarray, threshold: float) -> np.ndarray:
    """How far ``p`` has gone from its class's threshold towards 1: ``(p - t) / (1 - t)``
    (0 at the threshold, 1 at certainty; a class whose threshold is 1 scores 0 at p = 1)."""
    return (p - threshold) / (1.0 - threshold if threshold < 1.0 else 1.0)


def _class_block(*blocks_and_thresholds):
    n = len(blocks_and_thresholds) // 2
    blocks, thresholds = blocks_and_thresholds[:n], blocks_and_thresholds[n:]
    best = np.zeros(blocks[0].shape, np.float32)
    out = np.zeros(blocks[0].shape, np.uint8)
    for k, (block, (threshold, scale)) in enumerate(zip(blocks, thresholds)):
        p = block.astype(np.float32) / scale
        score = threshold_margin(p, threshold)
        claim = (p >= threshold) & ((score > best) | (out == 0))
        out[claim] = k + 1
        best[claim] = score[claim]
    return out


def resolve_conflicts(probs: Sequence, thresholds: Sequence[float]):
    """One class label volume (uint8: 0 = none, k = the k-th map) from several single-organelle
    probability maps. A voxel belongs to the classes whose probability reaches their own
    threshold; where several do, the one with the highest `threshold_margin` ``(p - t) / (1 - t)``
    wins (ties: the first map)."""
    import dask.array as da

    if len(probs) != len(thresholds):
        raise InvalidValuesError(f"{len(probs)} probability maps but {len(thresholds)} thresholds")
    if not 1 <= len(probs) <= 255:
        raise InvalidValuesError(f"need 1 to 255 probability maps, got {len(probs)}")
    shapes = {tuple(p.shape) for p in probs}
    if len(shapes) > 1:
        from emseg.errors import ShapeMismatchError

        raise ShapeMismatchError(f"probability maps have different shapes: {sorted(shapes)}")
    chunks = probs[0].chunks
    arrays = [da.asarray(p).rechunk(chunks) for p in probs]
    pairs = [(check_threshold(t), probability_scale(p.dtype)) for t, p in zip(thresholds, probs)]
    return da.map_blocks(lambda *b: _class_block(*b, *pairs), *arrays, dtype=np.uint8)
