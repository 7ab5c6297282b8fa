"""Graph-cut annotation: correctness on synthetic volumes, hard constraints, anisotropy, bad input, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.annotate import RoiTooLargeError, graph_cut, simulate_strokes, training_source_entry
from emseg.annotate.supervoxels import adjacency
from emseg.errors import InvalidValuesError, ShapeMismatchError


def two_regions(shape=(24, 48, 48), noise=12.0, seed=0):
    """A bright ball (object) in a dark, noisy background; returns (raw uint8, truth bool)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    centre = np.array(shape) / 2
    truth = ((zz - centre[0]) / (shape[0] / 3)) ** 2 + ((yy - centre[1]) / (shape[1] / 3)) ** 2 \
        + ((xx - centre[2]) / (shape[2] / 3)) ** 2 < 1
    raw = np.where(truth, 170.0, 80.0) + rng.normal(0, noise, shape)
    return np.clip(raw, 0, 255).astype(np.uint8), truth


def iou(mask, truth):
    mask, truth = mask.astype(bool), truth.astype(bool)
    return (mask & truth).sum() / (mask | truth).sum()


def plane_strokes(truth, z):
    """An object line through the ball and a background line near the border, on plane ``z``."""
    strokes = np.zeros(truth.shape, np.uint8)
    y0 = truth.shape[1] // 2
    row = truth[z, y0]
    xs = np.flatnonzero(row)
    strokes[z, y0, xs.min() + 3: xs.max() - 2] = 1
    strokes[z, 2, 2:-2] = 2
    return strokes


@pytest.mark.timeout(60)
def test_two_region_volume_is_cut_correctly():
    raw, truth = two_regions()
    strokes = plane_strokes(truth, truth.shape[0] // 2)
    result = graph_cut(raw, strokes, (8.0, 8.0, 8.0))
    assert result.mask.shape == raw.shape and result.mask.dtype == np.uint8
    assert iou(result.mask, truth) > 0.9
    assert result.n_supervoxels > 50


@pytest.mark.timeout(60)
def test_hard_constraints_hold_against_the_image():
    """Strokes that contradict the image (object stroke in the background) keep their label."""
    raw, truth = two_regions(seed=1)
    strokes = plane_strokes(truth, truth.shape[0] // 2)
    strokes[4, 40, 5:15] = 1  # "object" stroke drawn in the dark background
    strokes[12, 24, 22:26] = 2  # "background" stroke inside the bright ball
    result = graph_cut(raw, strokes, (8.0, 8.0, 8.0), smoothness=20.0)
    assert (result.mask[strokes == 1] == 1).all()
    assert (result.mask[strokes == 2] == 0).all()


@pytest.mark.timeout(60)
def test_anisotropic_voxel_size_is_respected():
    """The same physical scene sampled anisotropically (z 4× coarser) is cut as well, and the
    adjacency graph weighs faces by their physical area."""
    raw_iso, truth_iso = two_regions(shape=(48, 48, 48), seed=2)
    raw, truth = raw_iso[::4], truth_iso[::4]
    strokes = np.zeros(raw.shape, np.uint8)
    strokes[:, 24] = plane_strokes(truth_iso[:, :, :].transpose(1, 0, 2), 24)[24][::4]  # a y-plane
    strokes[:, 24, :4] = 2
    assert (strokes == 1).any() and (strokes == 2).any()
    result = graph_cut(raw, strokes, (32.0, 8.0, 8.0))
    assert iou(result.mask, truth) > 0.85
    labels = np.zeros((2, 2, 2), np.int32)
    labels[1] = 1  # two labels touching across z: 4 faces of 8 × 8 nm²
    i, j, area = adjacency(labels, (32.0, 8.0, 8.0))
    assert (i.tolist(), j.tolist(), area.tolist()) == ([0], [1], [256.0])
    labels = np.zeros((2, 2, 2), np.int32)
    labels[:, :, 1] = 1  # touching across x: 4 faces of 32 × 8 nm²
    assert adjacency(labels, (32.0, 8.0, 8.0))[2].tolist() == [1024.0]


@pytest.mark.timeout(60)
def test_roi_and_sample_mask_and_training_entry():
    raw, truth = two_regions()
    strokes = plane_strokes(truth, 12)
    result = graph_cut(raw, strokes, (8, 8, 8), roi="4:20,0:48,0:48")
    assert result.mask.shape == (16, 48, 48)
    full, sample = np.asarray(result.full_mask()), np.asarray(result.sample_mask())
    assert full.shape == sample.shape == raw.shape
    assert sample[4:20].all() and not sample[:4].any() and not sample[20:].any()
    assert (full[4:20] == result.mask).all() and not full[:4].any()
    entry = training_source_entry("raw.tif", "m.ome.zarr", "s.ome.zarr", result.roi)
    assert entry == {"raw": "raw.tif", "labels": "m.ome.zarr", "sample_mask": "s.ome.zarr",
                     "roi": [[4, 20], [0, 48], [0, 48]]}
    assert "sample_mask: s.ome.zarr" in training_source_entry("r", "m", "s.ome.zarr", result.roi, as_yaml=True)


def test_one_class_strokes_are_refused():
    raw, truth = two_regions(shape=(8, 16, 16))
    strokes = np.zeros(raw.shape, np.uint8)
    strokes[4, 8, 4:12] = 1
    with pytest.raises(InvalidValuesError, match="both classes.*background"):
        graph_cut(raw, strokes, (8, 8, 8))
    strokes[4, 2, 2:5] = 7
    with pytest.raises(InvalidValuesError, match="found \\[7\\]"):
        graph_cut(raw, strokes, (8, 8, 8))


def test_strokes_outside_the_roi_are_refused_or_ignored():
    raw, truth = two_regions()
    strokes = plane_strokes(truth, 12)
    strokes[2, 5, 5:10] = 2  # outside the ROI below
    with pytest.raises(InvalidValuesError, match="5 stroke voxels lie outside the ROI 6:20"):
        graph_cut(raw, strokes, (8, 8, 8), roi="6:20,:,:")
    assert graph_cut(raw, strokes, (8, 8, 8), roi="6:20,:,:", ignore_outside=True).mask.shape == (14, 48, 48)
    with pytest.raises(InvalidValuesError, match="within ROI"):  # only background strokes inside
        graph_cut(raw, strokes, (8, 8, 8), roi="0:4,:,:", ignore_outside=True)


def test_shape_mismatch_and_too_large_roi():
    raw, truth = two_regions(shape=(8, 16, 16))
    with pytest.raises(ShapeMismatchError, match="strokes have shape \\(8, 16, 15\\)"):
        graph_cut(raw, np.zeros((8, 16, 15), np.uint8), (8, 8, 8))
    strokes = np.zeros(raw.shape, np.uint8)
    strokes[4, 8, 4:12] = 1
    strokes[4, 1, 1:4] = 2
    with pytest.raises(RoiTooLargeError, match="memory budget.*--roi \\d+:\\d+,\\d+:\\d+,\\d+:\\d+"):
        graph_cut(raw, strokes, (8, 8, 8), memory_budget=64 * 500)


@pytest.mark.timeout(60)
def test_simulated_strokes_follow_the_ground_truth():
    _, truth = two_regions(shape=(24, 64, 64))
    strokes = simulate_strokes(truth, planes=3, axis=1)
    stroked_planes = np.flatnonzero((strokes > 0).any(axis=(0, 2)))
    assert stroked_planes.tolist() == [10, 32, 53]
    assert truth[strokes == 1].all() and not truth[strokes == 2].any()
    assert (strokes == 1).sum() > 10 and (strokes == 2).sum() > 10


@pytest.mark.timeout(90)
def test_cli_writes_mask_sample_mask_and_yaml(tmp_path):
    from emseg.cli import main
    from emseg.io import open_volume, write_ome_zarr

    raw, truth = two_regions()
    write_ome_zarr(raw, tmp_path / "raw.ome.zarr", (8, 8, 8))
    write_ome_zarr(plane_strokes(truth, 12), tmp_path / "strokes.ome.zarr", (8, 8, 8), kind="labels")
    out = tmp_path / "mask.ome.zarr"
    args = ["annotate", str(tmp_path / "raw.ome.zarr"), str(tmp_path / "strokes.ome.zarr"), "-o", str(out),
            "--yaml", str(tmp_path / "entry.yaml")]
    assert main(args) == 0
    mask = open_volume(out)
    assert mask.shape == raw.shape and iou(mask[:, :, :], truth) > 0.9
    assert open_volume(tmp_path / "mask_sample_mask.ome.zarr")[:, :, :].all()
    import yaml

    entry = yaml.safe_load((tmp_path / "entry.yaml").read_text())[0]
    assert entry["labels"] == str(out) and entry["roi"] == [[0, 24], [0, 48], [0, 48]]
    assert main(args) == 2  # exists without --overwrite
    assert main(args[:3] + ["-o", str(tmp_path / "x.ome.zarr"), "--roi", "0:10,0:48,0:48"]) == 2  # strokes outside


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_lucchi_roi_runs_and_beats_chance(shared_data):
    from emseg.io import open_volume

    image = open_volume(shared_data / "lucchi" / "train_image.tif")
    truth = open_volume(shared_data / "lucchi" / "train_mito.tif")[0:32, 200:328, 300:428] > 0
    raw = image[0:32, 200:328, 300:428]
    strokes = simulate_strokes(truth, planes=3, axis=0)
    result = graph_cut(raw, strokes, image.voxel_size)
    assert (result.mask[strokes == 1] == 1).all() and (result.mask[strokes == 2] == 0).all()
    assert iou(result.mask, truth) > truth.mean() * 3  # far better than labelling everything


def two_balls(shape=(24, 48, 96), seed=3):
    """Two identical bright balls (left, right) in a noisy background; returns (raw, left, right)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape)
    balls = [((zz - 12) / 8) ** 2 + ((yy - 24) / 14) ** 2 + ((xx - cx) / 14) ** 2 < 1 for cx in (24, 72)]
    raw = np.where(balls[0] | balls[1], 170.0, 80.0) + rng.normal(0, 12, shape)
    return np.clip(raw, 0, 255).astype(np.uint8), balls[0], balls[1]


@pytest.mark.timeout(60)
def test_prior_decides_what_the_strokes_do_not_reach():
    """Strokes on the left ball only; a prior that calls the right ball background removes it."""
    raw, left, right = two_balls()
    strokes = plane_strokes(left, 12)
    without = graph_cut(raw, strokes, (8.0, 8.0, 8.0)).mask.astype(bool)
    assert without[right].mean() > 0.8  # same texture: the learned term takes it
    prior = np.where(left, 0.95, 0.05).astype(np.float32)
    with_prior = graph_cut(raw, strokes, (8.0, 8.0, 8.0), prior=prior, prior_weight=2.0).mask.astype(bool)
    assert with_prior[right].mean() < 0.1
    assert iou(with_prior, left) > 0.85
    as_uint8 = graph_cut(raw, strokes, (8.0, 8.0, 8.0), prior=(prior * 255).astype(np.uint8), prior_weight=2.0)
    assert iou(as_uint8.mask, with_prior) > 0.95


def test_prior_keeps_its_finer_boundary_where_the_cut_agrees():
    """The prior's object is 2 voxels inside the image's ball, a boundary that supervoxels do not follow:
    where the strokes do not overrule it, the mask takes the prior's voxels (IoU 0.81 by whole nodes)."""
    from scipy.ndimage import binary_erosion

    raw, left, _ = two_balls()
    inner = binary_erosion(left, iterations=2)
    prior = np.where(inner, 0.95, 0.05).astype(np.float32)
    strokes = plane_strokes(left, 12)
    strokes[12, 24, 2:6] = 1  # object strokes where the prior says background: they keep their label
    assert prior[strokes == 1].min() < 0.5
    mask = graph_cut(raw, strokes, (8.0, 8.0, 8.0), prior=prior, prior_weight=2.0).mask
    assert iou(mask, inner) > 0.93
    assert mask[strokes == 1].all() and not mask[strokes == 2].any()


def test_prior_threshold_counts_as_even_odds():
    from emseg.annotate.graph_cut import centre_on_threshold

    p = np.array([0.0, 0.2, 0.4, 0.7, 1.0], np.float32)
    centred = centre_on_threshold(p, 0.4)
    assert np.allclose(centred, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert np.array_equal(centre_on_threshold(p, 0.5), p)
    raw, truth = two_regions(shape=(8, 16, 16))
    strokes = np.zeros(raw.shape, np.uint8)
    strokes[4, 8, 4:12], strokes[4, 1, 1:4] = 1, 2
    with pytest.raises(InvalidValuesError, match="strictly between 0 and 1"):
        graph_cut(raw, strokes, (8, 8, 8), prior=np.zeros(raw.shape, np.float32), prior_threshold=1.0)


def test_bad_prior_is_refused():
    raw, truth = two_regions(shape=(8, 16, 16))
    strokes = np.zeros(raw.shape, np.uint8)
    strokes[4, 8, 4:12] = 1
    strokes[4, 1, 1:4] = 2
    with pytest.raises(ShapeMismatchError, match="prior has shape \\(8, 16, 15\\)"):
        graph_cut(raw, strokes, (8, 8, 8), prior=np.zeros((8, 16, 15), np.float32))
    with pytest.raises(InvalidValuesError, match="prior values must lie in 0..1"):
        graph_cut(raw, strokes, (8, 8, 8), prior=np.full(raw.shape, 2.0, np.float32))
    with pytest.raises(InvalidValuesError, match="must be probabilities"):
        graph_cut(raw, strokes, (8, 8, 8), prior=np.ones(raw.shape, np.int32))


def test_cli_takes_a_prior(tmp_path):
    from emseg.cli import main
    from emseg.io import open_volume, write_ome_zarr

    raw, left, right = two_balls()
    write_ome_zarr(raw, tmp_path / "raw.ome.zarr", (8, 8, 8))
    write_ome_zarr(plane_strokes(left, 12), tmp_path / "strokes.ome.zarr", (8, 8, 8), kind="labels")
    write_ome_zarr(np.where(left, 242, 13).astype(np.uint8), tmp_path / "prob.ome.zarr", (8, 8, 8))
    out = tmp_path / "mask.ome.zarr"
    assert main(["annotate", str(tmp_path / "raw.ome.zarr"), str(tmp_path / "strokes.ome.zarr"), "-o", str(out),
                 "--prior", str(tmp_path / "prob.ome.zarr"), "--prior-weight", "2"]) == 0
    mask = open_volume(out)[:, :, :].astype(bool)
    assert iou(mask, left) > 0.85 and mask[right].mean() < 0.1

    # a map whose model threshold is 0.2 (stored by `emseg predict`): 0.4 on the right ball means object
    write_ome_zarr(np.where(left, 242, np.where(right, 102, 13)).astype(np.uint8), tmp_path / "p02.ome.zarr",
                   (8, 8, 8), attrs={"model": {"threshold": 0.2}})
    args = ["annotate", str(tmp_path / "raw.ome.zarr"), str(tmp_path / "strokes.ome.zarr"), "--overwrite",
            "--prior", str(tmp_path / "p02.ome.zarr"), "--prior-weight", "4", "--learned-weight", "0"]
    assert main([*args, "-o", str(tmp_path / "stored.ome.zarr")]) == 0
    assert open_volume(tmp_path / "stored.ome.zarr")[:, :, :].astype(bool)[right].mean() > 0.9
    assert main([*args, "-o", str(tmp_path / "even.ome.zarr"), "--prior-threshold", "0.5"]) == 0
    assert open_volume(tmp_path / "even.ome.zarr")[:, :, :].astype(bool)[right].mean() < 0.1
