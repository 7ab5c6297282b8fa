"""Seeded watershed: blockwise equals whole-volume up to renumbering (the halo rule), seed rules,
touching objects split, the postprocess option and its CLI errors."""

from __future__ import annotations

import cc3d
import dask.array as da
import numpy as np
import pytest
from scipy import ndimage
from test_postprocess_components import same_partition

from emseg.cli import main
from emseg.errors import InvalidValuesError
from emseg.io import open_volume, write_ome_zarr
from emseg.postprocess.pipeline import PostprocessConfig, postprocess, stored_attrs
from emseg.postprocess.watershed import DistanceSeeds, halo_voxels, segment, watershed_instances

pytestmark = pytest.mark.timeout(300)


def add_ball(mask: np.ndarray, centre, radius: float, voxel_size=(1.0, 1.0, 1.0)) -> None:
    zz, yy, xx = (np.arange(s) * v for s, v in zip(mask.shape, voxel_size))
    d2 = ((zz[:, None, None] - centre[0]) ** 2 + (yy[None, :, None] - centre[1]) ** 2
          + (xx[None, None, :] - centre[2]) ** 2)
    mask |= d2 <= radius**2


def clusters(shape=(24, 36, 36), cell=12, seed=0) -> np.ndarray:
    """1-3 overlapping balls per cell of ``cell`` voxels, kept inside it: every connected
    component is shorter than ``cell`` on each axis, and many are touching pairs."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    for corner in np.ndindex(*(s // cell for s in shape)):
        piece = np.zeros((cell - 1,) * 3, bool)
        for _ in range(rng.integers(1, 4)):
            r = rng.uniform(2.0, 4.0)
            add_ball(piece, rng.uniform(r, cell - 1 - r, 3), r)
        mask[tuple(slice(c * cell, c * cell + cell - 1) for c in corner)] = piece
    return mask


@pytest.mark.parametrize("connectivity", [6, 26])
@pytest.mark.parametrize("chunks", [(7, 10, 9), (12, 36, 13)])
def test_blockwise_equals_whole_volume_for_objects_shorter_than_the_halo(connectivity, chunks, tmp_path):
    mask = clusters(seed=connectivity)
    extent = max(max(s.stop - s.start for s in box) for box in ndimage.find_objects(cc3d.connected_components(mask)))
    assert extent <= 11  # the rule: bounding boxes at most halo - 1 = 11 voxels
    seeds = DistanceSeeds((1.0, 1.0, 1.0), h_nm=0.5, connectivity=connectivity)
    whole = segment(mask, seeds, connectivity)
    n_whole = len(np.unique(whole)) - 1
    assert n_whole > cc3d.connected_components(mask, connectivity=connectivity).max()  # something was split
    for workdir in (None, tmp_path):
        labels, n = watershed_instances(da.from_array(mask, chunks=chunks), seeds, (12, 12, 12), connectivity,
                                        workdir=workdir)
        result = labels.compute()
        assert n == n_whole
        assert same_partition(result, whole)
        assert set(np.unique(result)) == set(range(n + 1))  # consecutive ids


def test_blockwise_equals_whole_volume_anisotropic():
    voxel_size = (3.0, 1.0, 1.0)
    mask = np.zeros((12, 40, 40), bool)
    for z, y, x in ((10, 8, 8), (10, 8, 17), (20, 25, 25), (27, 30, 30), (15, 30, 9)):  # nm
        add_ball(mask, (z, y, x), 5.0, voxel_size)
    seeds = DistanceSeeds(voxel_size, h_nm=1.0)
    halo = halo_voxels(24.0, voxel_size)
    assert halo == (8, 24, 24)
    whole = segment(mask, seeds, 26)
    labels, n = watershed_instances(da.from_array(mask, chunks=(4, 9, 11)), seeds, halo)
    assert n == len(np.unique(whole)) - 1 >= 5
    assert same_partition(labels.compute(), whole)


def test_objects_wider_than_the_halo_are_never_joined_to_others():
    rng = np.random.default_rng(3)
    mask = ndimage.gaussian_filter(rng.random((20, 40, 40)), 2.0) > 0.5  # large winding objects
    components = cc3d.connected_components(mask, connectivity=26)
    labels, n = watershed_instances(da.from_array(mask, chunks=(6, 11, 13)), DistanceSeeds((1.0, 1.0, 1.0), 0.5),
                                    (2, 2, 2))
    result = labels.compute()
    assert np.array_equal(result > 0, mask)  # every foreground voxel is labelled
    pairs = np.unique(np.stack([result[mask], components[mask]]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1]  # each label lies in one component
    assert n >= components.max() and set(np.unique(result)) == set(range(n + 1))


def two_balls(gap: float = 10.0, radius: float = 6.0, radius2: float = 6.0) -> np.ndarray:
    mask = np.zeros((16, 20, 32), bool)
    add_ball(mask, (8, 10, 8), radius)
    add_ball(mask, (8, 10, 8 + gap), radius2)
    return mask


def test_seed_rules_h_and_minimum_distance():
    mask = two_balls()  # distance 6.08 at both centres, 3.61 at the neck: each has a dynamic of 2.47
    assert cc3d.connected_components(mask).max() == 1

    def count(**kwargs):
        return len(np.unique(segment(mask, DistanceSeeds((1.0, 1.0, 1.0), **kwargs), 26))) - 1

    assert count(h_nm=1.5) == 2
    assert count(h_nm=2.6) == 1  # the neck is not deep enough: two equal peaks are one seed
    assert count(h_nm=1.5, min_distance_nm=8.0) == 2  # seeds are 10 apart
    assert count(h_nm=1.5, min_distance_nm=12.0) == 1
    mask = two_balls(gap=9.0, radius2=4.5)  # peaks 6.08 and 4.58, saddle 3.61: the lower has a dynamic of 0.97
    assert count(h_nm=0.9) == 2 and count(h_nm=1.0) == 1
    small = np.zeros((9, 9, 9), bool)
    add_ball(small, (4, 4, 4), 2.0)  # inscribed radius < h: no seed, still one object
    labels = segment(small, DistanceSeeds((1.0, 1.0, 1.0), h_nm=5.0), 26)
    assert np.array_equal(labels > 0, small) and len(np.unique(labels)) == 2
    with pytest.raises(InvalidValuesError, match="h must be > 0"):
        DistanceSeeds((1.0, 1.0, 1.0), h_nm=0)
    with pytest.raises(InvalidValuesError, match="halo"):
        halo_voxels(0, (1.0, 1.0, 1.0))


def test_postprocess_watershed_splits_touching_synthetic_mitochondria(tmp_path):
    from emseg.synth import make_volume

    s = make_volume((24, 64, 64), 8.0, seed=0, mito_density=3.0, touching=1.0)
    prob = s.mito.astype(np.float32)
    default = postprocess(prob, tmp_path / "cc.ome.zarr", PostprocessConfig(block=(16, 32, 32)), voxel_size=s.voxel_size)
    config = PostprocessConfig(instances="watershed", h_nm=10, seed_distance_nm=150, block=(16, 32, 32))
    info = postprocess(prob, tmp_path / "ws.ome.zarr", config, voxel_size=s.voxel_size)
    n_true = int(s.mito_instances.max())
    assert default["objects"] == cc3d.connected_components(s.mito > 0).max() < n_true  # pairs merged
    assert info["objects"] == n_true
    labels = open_volume(str(tmp_path / "ws.ome.zarr"))[:, :, :]
    for t in range(1, n_true + 1):  # each true mitochondrion is one label with IoU ≥ 0.75
        inside = s.mito_instances == t
        ids, counts = np.unique(labels[inside], return_counts=True)
        best = ids[np.argmax(counts)]
        assert best > 0 and (inside & (labels == best)).sum() / (inside | (labels == best)).sum() >= 0.75
    attrs = stored_attrs(open_volume(str(tmp_path / "ws.ome.zarr")))
    assert attrs["postprocess"]["instances"] == "watershed" and attrs["postprocess"]["h_nm"] == 10


def test_cli_watershed_and_one_line_errors(tmp_path, capsys):
    prob = two_balls().astype(np.float32)
    write_ome_zarr(prob, tmp_path / "p.ome.zarr", (1.0, 1.0, 1.0), levels=1)
    out = tmp_path / "l.ome.zarr"
    args = ["postprocess", str(tmp_path / "p.ome.zarr"), "-o", str(out)]
    assert main(args) == 0 and open_volume(str(out))[:, :, :].max() == 1  # default: connected components
    assert main(args + ["--overwrite", "--instances", "watershed", "--h", "1.5", "--halo", "20"]) == 0
    assert open_volume(str(out))[:, :, :].max() == 2
    capsys.readouterr()
    for bad, words in ((["--instances", "voronoi"], "instances"), (["--instances", "watershed", "--h", "0"], "h_nm"),
                       (["--instances", "watershed", "--halo", "-1"], "halo_nm")):
        assert main(args + ["--overwrite"] + bad) == 2
        err = capsys.readouterr().err
        assert words in err and err.startswith("emseg: error:")
    two = ["postprocess", str(tmp_path / "p.ome.zarr"), str(tmp_path / "p.ome.zarr"), "-o", str(tmp_path / "c.ome.zarr")]
    assert main(two + ["--instances", "watershed"]) == 2
    assert "--instances applies to one map" in capsys.readouterr().err
