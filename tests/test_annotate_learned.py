"""Learned unary of the graph cut: filter features, per-supervoxel aggregation, texture-only objects."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.annotate import graph_cut
from emseg.annotate.features import eigvalsh3, filter_features, region_features, sigma_voxels
from emseg.annotate.learned import object_probability, probability_costs
from emseg.errors import InvalidValuesError


def iou(mask, truth):
    mask, truth = mask.astype(bool), truth.astype(bool)
    return (mask & truth).sum() / (mask | truth).sum()


def texture_ball(shape=(32, 64, 64), seed=0):
    """A ball of fine-grained texture in coarse-grained texture, SAME mean and std per voxel.

    Both are Gaussian noise smoothed at different scales and standardised, so their grey-value
    histograms are identical: only texture (filter responses at several scales) separates them.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    centre = np.array(shape) / 2
    radius = np.array(shape) / 3.2
    truth = sum(((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), centre, radius)) < 1

    def texture(sigma):
        noise = gaussian_filter(rng.normal(size=shape), sigma)
        return (noise - noise.mean()) / noise.std()

    raw = np.where(truth, texture(0.7), texture(5.0)) * 25 + 128
    return np.clip(raw, 0, 255).astype(np.uint8), truth


def texture_strokes(truth):
    """On the central z-plane only: an object line across the ball, background lines beside it."""
    strokes = np.zeros(truth.shape, np.uint8)
    z, y0 = truth.shape[0] // 2, truth.shape[1] // 2
    xs = np.flatnonzero(truth[z, y0])
    strokes[z, y0, xs.min() + 2: xs.max() - 1] = 1
    strokes[z, y0, 2: xs.min() - 3] = 2
    strokes[z, y0, xs.max() + 4: -2] = 2
    for y in (3, 8, -9, -4):  # a few rows across the background, as a user scribbles
        strokes[z, y, 3:-3] = 2
    return strokes


@pytest.mark.timeout(90)
def test_texture_object_with_the_same_grey_values_needs_the_learned_unary():
    raw, truth = texture_ball()
    inside, outside = raw[truth].astype(float), raw[~truth].astype(float)
    assert abs(inside.mean() - outside.mean()) < 2 and abs(inside.std() - outside.std()) < 2
    strokes = texture_strokes(truth)
    common = dict(smooth_nm=0, dist_weight=0.0, supervoxel_nm=24.0)  # no denoising: it would blur the fine texture
    histogram = graph_cut(raw, strokes, (8.0, 8.0, 8.0), learned_weight=0.0, hist_weight=1.0, **common)
    learned = graph_cut(raw, strokes, (8.0, 8.0, 8.0), **common)
    assert iou(histogram.mask, truth) < 0.5
    assert iou(learned.mask, truth) > 0.85
    for result in (histogram, learned):  # hard constraints hold for both
        assert (result.mask[strokes == 1] == 1).all() and (result.mask[strokes == 2] == 0).all()


@pytest.mark.timeout(60)
def test_learned_cut_is_deterministic_and_probability_contrast_works():
    raw, truth = texture_ball(seed=3)
    strokes = texture_strokes(truth)
    common = dict(smooth_nm=0, supervoxel_nm=24.0)
    first = graph_cut(raw, strokes, (8, 8, 8), keep_supervoxels=True, **common)
    again = graph_cut(raw, strokes, (8, 8, 8), **common)
    assert (first.mask == again.mask).all()
    assert first.supervoxels.shape == raw.shape and first.supervoxels.max() + 1 == first.n_supervoxels
    by_probability = graph_cut(raw, strokes, (8, 8, 8), contrast="probability", **common)
    assert iou(by_probability.mask, truth) > 0.7
    with pytest.raises(InvalidValuesError, match="contrast must be"):
        graph_cut(raw, strokes, (8, 8, 8), contrast="colour")


def test_closed_form_eigenvalues_match_numpy(rng):
    a = rng.normal(size=(500, 3, 3))
    a = a + a.transpose(0, 2, 1)
    a[:5] = np.diag([2.0, 2.0, 2.0])  # degenerate: all eigenvalues equal
    elements = (a[:, 0, 0], a[:, 1, 1], a[:, 2, 2], a[:, 0, 1], a[:, 0, 2], a[:, 1, 2])
    got = np.stack(eigvalsh3(*elements), axis=1)
    want = np.linalg.eigvalsh(a)[:, ::-1]
    assert np.allclose(got, want, atol=1e-9)


def test_scales_follow_the_voxel_size():
    assert sigma_voxels(20.0, (40.0, 5.0, 5.0)) == [0.5, 4.0, 4.0]
    assert sigma_voxels(10.0, (50.0, 4.0, 4.0)) == [0.0, 2.5, 2.5]  # below 0.3 voxel: not smoothed
    image = np.zeros((8, 16, 16), np.float32)
    image[:, 8:] = 100.0  # an edge across y only
    features = filter_features(image, (40.0, 5.0, 5.0), scales_nm=(10.0,))
    assert features.shape == (9, 8, 16, 16)
    gradient = features[1]
    assert gradient[:, 7:9].min() > 10 * gradient[:, :3].max() + 1e-6  # edge response where the edge is


def test_region_features_mean_and_std():
    labels = np.array([0, 0, 1, 1, 1, 2], np.int32).reshape(1, 1, 6)
    image = np.array([1, 3, 2, 2, 2, 7], np.float32).reshape(1, 1, 6)
    features = np.stack([image, 2 * image])
    out = region_features(labels, image, features, spread=True)
    assert out.shape == (3, 5)
    assert np.allclose(out[:, 0], [2, 2, 7]) and np.allclose(out[:, 1], [4, 4, 14])
    assert np.allclose(out[:, 2], [1, 0, 0]) and np.allclose(out[:, 3], [2, 0, 0])
    assert np.allclose(out[:, 4], [1, 0, 0])  # intensity std
    assert region_features(labels, image, features).shape == (3, 3)


def test_forest_probability_and_costs():
    features = np.concatenate([np.linspace(0, 0.2, 10), np.linspace(1, 1.2, 10), [0.1, 1.1]])[:, None]
    votes_object = np.array([3] * 10 + [0] * 10 + [0, 0])
    votes_background = np.array([0] * 10 + [2] * 10 + [0, 0])
    votes_background[0] = 5  # a row with more background than object strokes is a background sample
    p = object_probability(features, votes_object, votes_background, n_trees=20)
    assert p[-2] > 0.8 and p[-1] < 0.2  # unstroked rows follow their features
    one_class = object_probability(features, votes_object, np.zeros(22, int))
    assert np.allclose(one_class, 0.5)
    cost_object, cost_background = probability_costs(np.array([0.0, 0.5, 1.0]))
    assert np.isfinite(cost_object).all() and cost_object[0] > cost_object[1] > cost_object[2]
    assert np.allclose(cost_object[1], cost_background[1])
