"""Graph cut on SLIC supervoxels: a few strokes on a few planes → a dense 3D binary mask.

Energy (Boykov & Jolly 2001 on a supervoxel graph, as kirchhausenlab/gc_segment):
unary = ``learned_weight`` · −log p(class | features), p from a random forest trained on the
stroked supervoxels' multi-scale filter features (ilastik-style, `emseg.annotate.features`) +
``hist_weight`` · mean(−log p(intensity | class)) + ``dist_weight`` · mean(log(1 + EDT_nm to the
nearest stroke of that class)), per supervoxel (defaults 1, 0, 0); pairwise = ``smoothness`` ·
exp(−Δg² / 2σ²) · (contact area / mean area) / (centroid distance / mean distance); stroked
voxels are split off into their own nodes with infinite t-links (hard constraints).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from emseg.annotate.features import DEFAULT_SCALES_NM, filter_features, region_features
from emseg.annotate.learned import object_probability, probability_costs, stroke_votes
from emseg.annotate.strokes import BACKGROUND, OBJECT, Region, check_shapes, check_strokes, stroke_summary
from emseg.annotate.supervoxels import adjacency, slic_working_grid, upsample_nearest
from emseg.errors import EmsegError, InvalidValuesError
from emseg.io.roi import format_roi, parse_roi
from emseg.io.volume import check_voxel_size

BYTES_PER_VOXEL = 64  # peak of graph_cut measured at 54 B/voxel on 256³ (float32 copies, int32 labels, EDT)
FEATURE_BYTES_PER_VOXEL = 200  # learned unary: 27 float32 features + filter temporaries, on the working grid
DEFAULT_MEMORY_BUDGET = 4 * 2**30
HARD = 1e9


class RoiTooLargeError(EmsegError):
    """The ROI needs more memory than the budget allows."""


@dataclass
class GraphCutResult:
    """A dense mask over ``roi`` of a volume of ``shape``; ``sample_mask`` marks the annotated ROI."""

    mask: np.ndarray  # uint8, ROI shape, 1 = object
    roi: Region
    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    timings: dict[str, float] = field(default_factory=dict)
    n_supervoxels: int = 0
    supervoxels: np.ndarray | None = None  # SLIC labels over the ROI (only with keep_supervoxels=True)

    def full_mask(self, chunks: int = 64):
        """The mask placed in a volume-shaped dask array (0 outside the ROI)."""
        return pad_to_volume(self.mask, self.roi, self.shape, chunks)

    def sample_mask(self, chunks: int = 64):
        """Volume-shaped dask array, 1 inside the ROI (annotated), 0 elsewhere."""
        return pad_to_volume(np.ones_like(self.mask), self.roi, self.shape, chunks)


def pad_to_volume(block: np.ndarray, roi: Region, shape: Sequence[int], chunks: int):
    import dask.array as da

    pad = [(s.start, n - s.stop) for s, n in zip(roi, shape)]
    return da.pad(da.from_array(block, chunks=chunks), pad, mode="constant", constant_values=0).rechunk(chunks)


def suggest_roi(shape: Sequence[int], box: Region | None, max_voxels: int) -> Region:
    """A cube-ish ROI of at most ``max_voxels`` centred on the strokes' box (or the volume)."""
    box = box or tuple(slice(0, n) for n in shape)
    edge = max(8, int(max_voxels ** (1 / 3)))
    region = []
    for s, n in zip(box, shape):
        size = min(n, edge)
        centre = (s.start + s.stop) // 2
        start = min(max(0, centre - size // 2), n - size)
        region.append(slice(start, start + size))
    return tuple(region)  # type: ignore[return-value]


def check_memory(roi: Region, shape: Sequence[int], box: Region | None, budget: int, name: str,
                 working_voxels: int = 0) -> None:
    """Refuse an ROI whose estimated peak (per ROI voxel + per working-grid voxel) exceeds ``budget``."""
    voxels = int(np.prod([s.stop - s.start for s in roi]))
    need = voxels * BYTES_PER_VOXEL + min(voxels, working_voxels) * FEATURE_BYTES_PER_VOXEL
    if need > budget:
        max_voxels = budget // BYTES_PER_VOXEL
        raise RoiTooLargeError(
            f"{name}: ROI {format_roi(roi)} ({voxels / 1e6:.0f} M voxels) needs about {need / 2**30:.1f} GiB, "
            f"more than the memory budget of {budget / 2**30:.1f} GiB; annotate a smaller ROI, e.g. "
            f"--roi {format_roi(suggest_roi(shape, box, max_voxels))}, or raise the budget (--memory-gb)"
        )


def seed_histograms(levels: np.ndarray, strokes: np.ndarray, bins: int, smooth: float = 1.0):
    """−log p(level | class) lookup tables (object, background) from the stroked voxels."""
    from scipy.ndimage import gaussian_filter1d

    tables = []
    for value in (OBJECT, BACKGROUND):
        hist = np.bincount(levels[strokes == value], minlength=bins).astype(np.float64)
        hist = gaussian_filter1d(hist, smooth) + 1e-3 * hist.sum() / bins + 1e-9
        tables.append((-np.log(hist / hist.sum())).astype(np.float32))
    return tables


def stroke_distance(strokes: np.ndarray, value: int, voxel_size: Sequence[float], factor: int) -> np.ndarray:
    """log(1 + distance in nm to the nearest stroke of ``value``), computed on a grid ``factor`` coarser."""
    from scipy.ndimage import distance_transform_edt

    if factor > 1:
        pad = [(0, (-s) % factor) for s in strokes.shape]
        hit = np.pad(strokes == value, pad)
        z, y, x = (s // factor for s in hit.shape)
        hit = hit.reshape(z, factor, y, factor, x, factor).any(axis=(1, 3, 5))
    else:
        hit = strokes == value
    dist = distance_transform_edt(~hit, sampling=[v * factor for v in voxel_size]).astype(np.float32)
    return upsample_nearest(np.log1p(dist), strokes.shape, factor)


def split_stroked(labels: np.ndarray, strokes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move stroked voxels of each supervoxel into new nodes, one per (supervoxel, class).

    Returns the new labels and the class (1 or 2) of the added nodes, in node order. A
    supervoxel with strokes of both classes is thereby split; unstroked voxels stay soft.
    """
    n = int(labels.max()) + 1
    where = np.flatnonzero(strokes)
    key = labels.ravel()[where].astype(np.int64) * 2 + (strokes.ravel()[where] - 1)
    unique, inverse = np.unique(key, return_inverse=True)
    labels = labels.copy()
    labels.ravel()[where] = n + inverse
    return labels, (unique % 2 + 1).astype(np.uint8)


def prior_probability(prior, region: Region, name: str) -> np.ndarray:
    """The prior's ROI as float32 P(object): uint8 (0..255) is scaled, floats must lie in 0..1."""
    block = np.asarray(prior[region])
    if block.dtype == np.uint8:
        return block.astype(np.float32) / 255
    if not np.issubdtype(block.dtype, np.floating):
        raise InvalidValuesError(f"{name}: a prior must be probabilities (float 0..1 or uint8 0..255), "
                                 f"got {block.dtype}")
    block = block.astype(np.float32)
    if not np.isfinite(block).all() or block.min() < 0 or block.max() > 1:
        raise InvalidValuesError(f"{name}: prior values must lie in 0..1, found "
                                 f"{np.nanmin(block):.3g}..{np.nanmax(block):.3g} in ROI {format_roi(region)}")
    return block


def prior_decision_threshold(prior, threshold: float | None, name: str) -> float:
    """``threshold``, or the one `emseg predict` stored with the map (its model's), else 0.5."""
    if threshold is None:
        from emseg.postprocess.pipeline import model_threshold

        threshold = model_threshold(prior) if hasattr(prior, "path") else 0.5
    if not 0 < threshold < 1:
        raise InvalidValuesError(f"{name}: the prior's threshold must lie strictly between 0 and 1, got {threshold}")
    return float(threshold)


def centre_on_threshold(p: np.ndarray, threshold: float) -> np.ndarray:
    """P(object) mapped piecewise-linearly so that ``threshold`` becomes 0.5 (0 and 1 stay): the −log p
    costs then prefer the object exactly where the prior's own decision does."""
    if threshold == 0.5:
        return p
    return np.where(p < threshold, p * np.float32(0.5 / threshold),
                    0.5 + (p - threshold) * np.float32(0.5 / (1 - threshold))).astype(np.float32)


def node_means(labels: np.ndarray, values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    sums = np.bincount(labels.ravel(), weights=values.ravel(), minlength=counts.size)
    return sums / np.maximum(counts, 1)


def graph_cut(
    volume,
    strokes,
    voxel_size: Sequence[float] | None = None,
    *,
    roi: str | Sequence | None = None,
    hist_weight: float = 0.0,
    dist_weight: float = 0.0,
    smoothness: float = 1.0,
    learned_weight: float = 1.0,
    prior=None,
    prior_weight: float = 1.0,
    prior_threshold: float | None = None,
    feature_scales_nm: Sequence[float] | None = None,
    n_trees: int = 60,
    feature_spread: bool = True,
    contrast: str = "intensity",
    supervoxel_nm: float | None = None,
    compactness: float = 0.1,
    smooth_nm: float | None = None,
    max_slic_voxels: int = 2_000_000,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ignore_outside: bool = False,
    progress: bool = False,
    keep_supervoxels: bool = False,
    seed: int = 0,
) -> GraphCutResult:
    """Dense binary mask over ``roi`` of ``volume`` from sparse ``strokes`` (1 = object, 2 = background).

    volume, strokes: numpy arrays or `Volume`s of the same shape (z, y, x); strokes may lie on
        any planes along any axis. voxel_size: nm (z, y, x); defaults to the volume's.
    roi: ``"z0:z1,y0:y1,x0:x1"`` or three slices; default the whole volume.
    hist_weight, dist_weight: weights of the intensity-histogram and stroke-distance unaries.
    smoothness: weight of the contrast-sensitive pairwise term (higher = smoother, larger regions).
    learned_weight: weight of the learned unary −log p(class | features), p from a random forest
        (``n_trees``, ``random_state=seed``) trained on the stroked supervoxels' multi-scale filter
        features (scales ``feature_scales_nm``, default 10, 20, 40 nm); 0 switches it off.
    prior: optional P(object) volume of the same shape (float 0..1, or uint8 0..255 as `emseg predict`
        writes), e.g. a model's prediction that the strokes correct; ``prior_weight`` weighs its
        −log p term per node (mean probability over the node's voxels). ``prior_threshold`` is the
        prior's decision threshold (default: the one `emseg predict` stored with the map, else 0.5);
        probabilities are rescaled so that it counts as 0.5. In nodes where the cut keeps the prior's
        decision, the mask follows the prior's own voxels (p ≥ its threshold).
    contrast: what the pairwise term's contrast compares between neighbours: ``"intensity"``
        (mean grey value) or ``"probability"`` (the forest's P(object); needs learned_weight > 0).
    supervoxel_nm: supervoxel edge in nm (default 5 voxels of the finest axis).
    compactness: SLIC's balance of space vs intensity (intensities scaled to 0..1).
    smooth_nm: Gaussian denoising sigma in nm before everything (default 1 voxel of the finest axis).
    max_slic_voxels: SLIC runs on a grid downsampled to at most this many voxels (speed).
    memory_budget: bytes; a larger ROI raises `RoiTooLargeError` with a suggested ROI.
    ignore_outside: strokes outside the ROI are ignored instead of raising an error.
    keep_supervoxels: also return the SLIC labels over the ROI (``result.supervoxels``).
    Returns a `GraphCutResult` (mask over the ROI, the ROI, sample mask, timings).
    """
    from tqdm.auto import tqdm

    name = getattr(volume, "path", "<array>")
    stroke_name = getattr(strokes, "path", "<strokes>")
    prior_name = str(getattr(prior, "path", "<prior>"))
    if voxel_size is None:
        voxel_size = getattr(volume, "voxel_size", None) or (1.0, 1.0, 1.0)
    voxel_size = check_voxel_size(voxel_size, str(name))
    if not hasattr(volume, "shape"):
        volume = np.asarray(volume)
    if not hasattr(strokes, "shape"):
        strokes = np.asarray(strokes)
    if len(volume.shape) != 3:
        raise InvalidValuesError(f"{name}: expected a 3D volume (z, y, x), got shape {np.shape(volume)}")
    shape = tuple(int(s) for s in volume.shape)
    check_shapes(shape, strokes.shape, str(name), str(stroke_name))
    if contrast not in ("intensity", "probability"):
        raise InvalidValuesError(f"contrast must be 'intensity' or 'probability', got {contrast!r}")
    region = parse_roi(roi, shape, str(name))
    if prior is not None:
        check_shapes(shape, prior.shape, str(name), prior_name, subject="the prior has",
                     hint="pass a probability map predicted on this image")
        prior_threshold = prior_decision_threshold(prior, prior_threshold, prior_name)
    counts, box = stroke_summary(strokes)
    check_strokes(counts, str(stroke_name))
    check_memory(region, shape, box, memory_budget, str(name), max_slic_voxels if learned_weight > 0 else 0)

    timings: dict[str, float] = {}
    steps = tqdm(total=6, desc="graph cut", disable=not progress, unit="step")

    def tick(label: str, start: float) -> float:
        now = time.perf_counter()
        timings[label] = now - start
        steps.set_postfix_str(label)
        steps.update()
        return now

    t = time.perf_counter()
    raw = np.asarray(volume[region]).astype(np.float32)
    seeds = np.asarray(strokes[region]).astype(np.uint8)
    inside = {v: int((seeds == v).sum()) for v in (OBJECT, BACKGROUND)}
    outside = sum(counts.values()) - sum(inside.values())
    if outside and not ignore_outside:
        raise InvalidValuesError(
            f"{stroke_name}: {outside} stroke voxels lie outside the ROI {format_roi(region)} "
            f"(strokes span {format_roi(box)}); enlarge the ROI or pass ignore_outside (--ignore-outside)"
        )
    check_strokes(inside, f"{stroke_name} within ROI {format_roi(region)}")
    t = tick("read", t)

    from scipy.ndimage import gaussian_filter

    finest = min(voxel_size)
    smooth_nm = finest if smooth_nm is None else smooth_nm
    if smooth_nm > 0:
        raw = gaussian_filter(raw, [smooth_nm / v for v in voxel_size])
    supervoxel_nm = supervoxel_nm or 5 * finest
    small_labels, small, factor = slic_working_grid(raw, voxel_size, supervoxel_nm, compactness, max_slic_voxels)
    labels = upsample_nearest(small_labels, raw.shape, factor)
    n_slic = int(labels.max()) + 1
    slic_labels = labels if keep_supervoxels else None
    t = tick("supervoxels", t)

    p_object = None
    if learned_weight > 0 or contrast == "probability":
        scales = DEFAULT_SCALES_NM if feature_scales_nm is None else tuple(feature_scales_nm)
        spacing = [v * factor for v in voxel_size]
        features = region_features(small_labels, small, filter_features(small, spacing, scales), feature_spread)
        votes = stroke_votes(labels, seeds, n_slic)
        p_object = object_probability(features, *votes, n_trees=n_trees, seed=seed)
        del features
    t = tick("learned unary", t)

    # unaries per voxel, averaged per node (a term with weight 0 is not computed: its costs are finite)
    labels, stroke_class = split_stroked(labels, seeds)
    n_nodes = int(labels.max()) + 1
    count = np.bincount(labels.ravel(), minlength=n_nodes).astype(np.float64)
    unary_obj, unary_bg = np.zeros(n_nodes), np.zeros(n_nodes)
    if hist_weight > 0:
        bins = 64
        lo, hi = float(raw.min()), float(raw.max())
        levels = ((raw - lo) * ((bins - 1) / max(hi - lo, 1e-6))).astype(np.int32)
        cost_obj, cost_bg = seed_histograms(levels, seeds, bins)
        unary_obj += hist_weight * node_means(labels, cost_obj[levels], count)
        unary_bg += hist_weight * node_means(labels, cost_bg[levels], count)
    if p_object is not None and learned_weight > 0:
        learned_obj, learned_bg = probability_costs(p_object)
        unary_obj[:n_slic] += learned_weight * learned_obj
        unary_bg[:n_slic] += learned_weight * learned_bg
    prior_says_object = p_prior = None
    if prior is not None and prior_weight > 0:
        p_voxels = centre_on_threshold(prior_probability(prior, region, prior_name), prior_threshold)
        p_prior = node_means(labels, p_voxels, count)
        prior_says_object = p_voxels >= 0.5
        del p_voxels
        prior_obj, prior_bg = probability_costs(p_prior)
        unary_obj += prior_weight * prior_obj
        unary_bg += prior_weight * prior_bg
    if dist_weight > 0:
        unary_obj += dist_weight * node_means(labels, stroke_distance(seeds, OBJECT, voxel_size, factor), count)
        unary_bg += dist_weight * node_means(labels, stroke_distance(seeds, BACKGROUND, voxel_size, factor), count)
    hard = np.arange(n_slic, n_nodes)
    unary_obj[hard[stroke_class == BACKGROUND]] = HARD
    unary_bg[hard[stroke_class == OBJECT]] = HARD
    t = tick("unaries", t)

    # pairwise: Boykov–Jolly contrast term over the supervoxel adjacency graph
    i, j, area = adjacency(labels, voxel_size)
    if contrast == "probability":
        mean = np.concatenate([p_object, (stroke_class == OBJECT).astype(np.float32)])
    else:
        mean = node_means(labels, raw, count)
    grid = np.indices(raw.shape, dtype=np.float32)
    centroid = np.stack([node_means(labels, grid[a] * voxel_size[a], count) for a in range(3)], axis=1)
    del grid
    diff2 = (mean[i] - mean[j]) ** 2
    sigma2 = max(float(diff2.mean()), 1e-6)
    dist = np.linalg.norm(centroid[i] - centroid[j], axis=1) + finest
    weight = smoothness * np.exp(-diff2 / (2 * sigma2)) * (area / area.mean()) / (dist / dist.mean())
    t = tick("graph", t)

    import maxflow

    graph = maxflow.Graph[float](n_nodes, i.size)
    nodes = graph.add_nodes(n_nodes)
    graph.add_edges(nodes[i], nodes[j], weight, weight)
    # source = object: a node cut to the sink (background) pays its source capacity
    graph.add_grid_tedges(nodes, unary_bg, unary_obj)
    graph.maxflow()
    is_object = ~graph.get_grid_segments(nodes)
    mask = is_object[labels].astype(np.uint8)
    if prior_says_object is not None:
        # where the cut keeps the prior's decision, keep the prior's finer boundary inside the node too
        keep = is_object == (p_prior >= 0.5)
        keep[hard] = False  # stroked voxels keep their stroke's label
        detail = keep[labels]
        mask[detail] = prior_says_object[detail]
    tick("max-flow", t)
    steps.close()
    return GraphCutResult(mask, region, shape, voxel_size, timings, n_slic, slic_labels)  # type: ignore[arg-type]
