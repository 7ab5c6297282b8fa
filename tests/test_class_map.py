"""One class map: several predicted probability maps → a uint8 class label volume (names,
thresholds, conflicts, metadata), measured per class, densities in a mask, opened in napari."""

from __future__ import annotations

import json
from pathlib import Path

import cc3d
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from emseg.cli import main
from emseg.errors import InvalidValuesError, InvalidVoxelSizeError, ShapeMismatchError
from emseg.io import open_volume, write_ome_zarr
from emseg.measure.classes import measure_classes
from emseg.measure.density import density
from emseg.postprocess.classes import stored_classes, write_class_map

pytestmark = pytest.mark.timeout(180)
MANIFEST = Path(__file__).resolve().parents[1] / "src" / "emseg" / "napari_plugin" / "napari.yaml"
VOXEL = (20.0, 10.0, 10.0)
SHAPE = (12, 24, 24)


def predicted(path, prob, organelle="object", threshold=0.5, voxel_size=VOXEL):
    """A probability map with the metadata `emseg predict` writes."""
    attrs = {"kind": "probabilities", "model": {"organelle": organelle, "threshold": threshold}}
    return write_ome_zarr(prob.astype(np.float32), path, voxel_size, levels=1, attrs=attrs)


def smooth(seed: int) -> np.ndarray:
    prob = ndimage.gaussian_filter(np.random.default_rng(seed).random(SHAPE), 1.5)
    return (prob - prob.min()) / (prob.max() - prob.min())


@pytest.fixture
def maps(tmp_path):
    """Three organelle maps with their models' thresholds (mito 0.6, vesicle 0.5, psd 0.7)."""
    spec = [("mito", 0.6, 1), ("vesicle", 0.5, 2), ("psd", 0.7, 3)]
    return {name: (predicted(tmp_path / f"{name}_prob.ome.zarr", smooth(seed), name, t), t) for name, t, seed in spec}


def expected_classes(probs, thresholds):
    """The conflict rule on whole arrays: highest (p - t) / (1 - t) among classes with p >= t."""
    scores = np.stack([np.where(p >= t, (p - t) / (1 - t), -np.inf) for p, t in zip(probs, thresholds)])
    return np.where(np.isfinite(scores.max(axis=0)), scores.argmax(axis=0) + 1, 0).astype(np.uint8)


def test_conflicts_go_to_the_class_furthest_above_its_own_threshold(tmp_path):
    a = np.array([[[0.9, 0.6, 0.2, 0.7, 0.9]]], np.float32)  # mito, threshold 0.5
    b = np.array([[[0.8, 0.7, 0.1, 0.75, 0.95]]], np.float32)  # er, threshold 0.72
    paths = [predicted(tmp_path / "a.ome.zarr", a, "mito", 0.5, (1, 1, 1)),
             predicted(tmp_path / "b.ome.zarr", b, "er", 0.72, (1, 1, 1))]
    write_class_map(paths, tmp_path / "c.ome.zarr")
    # voxel 3: er 0.75 is the more probable but only (0.75-0.72)/0.28 = 0.11 above its threshold, mito 0.4 → mito;
    # voxel 4: er (0.95-0.72)/0.28 = 0.82 > mito 0.8 → er
    np.testing.assert_array_equal(open_volume(tmp_path / "c.ome.zarr")[0, 0], [1, 1, 0, 1, 2])


def test_class_map_blockwise_names_thresholds_and_metadata(tmp_path, maps):
    paths = [maps[n][0] for n in ("mito", "vesicle", "psd")]
    result = write_class_map(paths, tmp_path / "classes.ome.zarr", overrides={"psd": 0.4}, block=(4, 8, 8))
    assert [(c.name, c.threshold, c.threshold_from) for c in result["classes"]] == [
        ("mito", 0.6, "model"), ("vesicle", 0.5, "model"), ("psd", 0.4, "option")]
    out = open_volume(tmp_path / "classes.ome.zarr")
    assert out.dtype == np.uint8 and out.voxel_size == VOXEL
    probs = [open_volume(p)[:, :, :] for p in paths]
    expected = expected_classes(probs, [0.6, 0.5, 0.4])
    assert set(np.unique(expected)) == {0, 1, 2, 3}  # every class and background present, conflicts too
    np.testing.assert_array_equal(out[:, :, :], expected)
    attrs = json.loads((tmp_path / "classes.ome.zarr" / ".zattrs").read_text())
    assert attrs["emseg"]["classes"] == {"1": "mito", "2": "vesicle", "3": "psd"}
    assert attrs["emseg"]["thresholds"] == {"1": 0.6, "2": 0.5, "3": 0.4} and attrs["emseg"]["complete"]
    assert attrs["image-label"]["properties"] == [{"label-value": 1, "name": "mito"},
                                                  {"label-value": 2, "name": "vesicle"},
                                                  {"label-value": 3, "name": "psd"}]
    assert stored_classes(tmp_path / "classes.ome.zarr") == {1: "mito", 2: "vesicle", 3: "psd"}
    assert stored_classes(paths[0]) == {}
    write_class_map([paths[0], paths[0], paths[0]], tmp_path / "same.ome.zarr")  # one organelle thrice
    assert stored_classes(tmp_path / "same.ome.zarr") == {1: "mito", 2: "mito-2", 3: "mito-3"}


def test_maps_that_do_not_fit_together_are_refused_naming_the_file(tmp_path, maps):
    mito = maps["mito"][0]
    small = predicted(tmp_path / "small.ome.zarr", smooth(4)[:, :20], "er")
    coarse = predicted(tmp_path / "coarse.ome.zarr", smooth(4), "er", voxel_size=(40, 10, 10))
    labels = write_ome_zarr(np.ones(SHAPE, np.uint32), tmp_path / "labels.ome.zarr", VOXEL, levels=1, kind="labels")
    with pytest.raises(ShapeMismatchError, match="small.ome.zarr.*shape"):
        write_class_map([mito, small], tmp_path / "x.ome.zarr")
    with pytest.raises(InvalidVoxelSizeError, match="coarse.ome.zarr.*voxel size"):
        write_class_map([mito, coarse], tmp_path / "x.ome.zarr")
    with pytest.raises(InvalidValuesError, match="labels.ome.zarr: not a probability map"):
        write_class_map([mito, labels], tmp_path / "x.ome.zarr")
    with pytest.raises(InvalidValuesError, match="'a' is given twice"):
        write_class_map([mito, maps["psd"][0]], tmp_path / "x.ome.zarr", names=["a", "a"])
    with pytest.raises(InvalidValuesError, match="no class 'er'"):
        write_class_map([mito, maps["psd"][0]], tmp_path / "x.ome.zarr", overrides={"er": 0.3})
    assert not (tmp_path / "x.ome.zarr").exists()


def test_cli_class_map(tmp_path, maps, capsys):
    paths = [str(maps[n][0]) for n in ("mito", "vesicle", "psd")]
    out = tmp_path / "classes.ome.zarr"
    assert main(["postprocess", *paths, "-o", str(out), "-t", "psd=0.4", "--block", "4", "8", "8"]) == 0
    said = capsys.readouterr().out
    assert "1=mito (t=0.6, model)" in said and "3=psd (t=0.4, option)" in said
    probs = [open_volume(p)[:, :, :] for p in paths]
    np.testing.assert_array_equal(open_volume(out)[:, :, :], expected_classes(probs, [0.6, 0.5, 0.4]))
    assert main(["postprocess", *paths, "-o", str(tmp_path / "n.ome.zarr"), "-t", "0.55",
                 "--names", "a,b,c"]) == 0
    assert stored_classes(tmp_path / "n.ome.zarr") == {1: "a", 2: "b", 3: "c"}
    np.testing.assert_array_equal(open_volume(tmp_path / "n.ome.zarr")[:, :, :], expected_classes(probs, [0.55] * 3))
    for args, message in [(["-t", "er=0.4"], "no class 'er'"), (["-t", "psd=x"], "NAME=NUMBER"),
                          (["-t", "psd=1.5"], "must be in [0, 1]"), (["--min-size", "100"], "--min-size applies"),
                          (["-t", "0.5", "-t", "0.6"], "3 probability maps but 2 thresholds")]:
        assert main(["postprocess", *paths, "-o", str(tmp_path / "bad.ome.zarr"), *args]) == 2
        assert message in capsys.readouterr().err
    assert main(["postprocess", paths[0], "-o", str(tmp_path / "bad.ome.zarr"), "-t", "mito=0.5"]) == 2
    assert "give several probability maps" in capsys.readouterr().err
    assert not (tmp_path / "bad.ome.zarr").exists()


def class_volume(tmp_path):
    """A small class map: two mito (class 1), three vesicles (class 2) touching a mito."""
    classes = np.zeros((10, 20, 20), np.uint8)
    classes[1:4, 1:6, 1:6] = 1
    classes[5:9, 10:18, 10:18] = 1
    classes[1:3, 6:8, 1:3] = 2  # touches the first mito: still its own object of its own class
    classes[6:8, 2:4, 2:4] = 2
    classes[6:8, 2:4, 14:16] = 2
    path = tmp_path / "classes.ome.zarr"
    write_ome_zarr(classes, path, (10, 5, 5), levels=1, kind="labels",
                   attrs={"classes": {"1": "mito", "2": "vesicle"}})
    return classes, path


def test_measure_per_class_and_density_in_a_box_mask(tmp_path):
    classes, path = class_volume(tmp_path)
    table = measure_classes(path, surface=False, block=(4, 8, 8))
    assert table.index.names == ["class", "id"]
    for value, name in ((1, "mito"), (2, "vesicle")):
        rows = table.loc[name]
        components, n = cc3d.connected_components(classes == value, connectivity=26, return_N=True)
        assert len(rows) == n and sorted(rows["voxels"]) == sorted(np.bincount(components.ravel())[1:])
    mask = np.zeros(classes.shape, np.uint8)
    mask[:, :10, :12] = 1  # a box: holds the first mito's centroid and two vesicles' (not the one at x 14-16)
    result, flags = density(path, table, mask, block=(4, 8, 8), classes={1: "mito", 2: "vesicle"})
    voxel_um3 = 10 * 5 * 5 / 1e9
    inside = mask.sum()
    assert result.loc["mito", "objects"] == 1 and result.loc["vesicle", "objects"] == 2
    assert result.loc["mito", "volume_fraction"] == pytest.approx(((classes == 1) & (mask > 0)).sum() / inside)
    assert result.loc["vesicle", "objects_per_um3"] == pytest.approx(2 / (inside * voxel_um3))
    assert result.loc["mito", "mask_volume_um3"] == pytest.approx(inside * voxel_um3)
    assert flags.sum() == 3 and len(flags) == len(table)
    with pytest.raises(ShapeMismatchError, match="mask"):
        density(path, table, mask[:5])
    with pytest.raises(InvalidValuesError, match="mask is empty"):
        density(path, table, np.zeros_like(mask))


def test_cli_measure_class_map_with_mask_and_units(tmp_path, capsys):
    classes, path = class_volume(tmp_path)
    mask = np.zeros(classes.shape, np.uint8)
    mask[:5] = 1  # z 0-4: the first mito, the first vesicle
    write_ome_zarr(mask, tmp_path / "bouton.ome.zarr", (10, 5, 5), levels=1, kind="labels")
    out = tmp_path / "m" / "objects.csv"
    assert main(["measure", str(path), "-o", str(out), "--mask", str(tmp_path / "bouton.ome.zarr"),
                 "--units", "um", "--no-surface"]) == 0
    table = pd.read_csv(out)
    assert list(table.columns[:2]) == ["class", "id"] and {"volume_um3", "centroid_z_um", "in_mask"} <= set(table)
    assert table.groupby("class").size().to_dict() == {"mito": 2, "vesicle": 3}
    assert table["volume_um3"].sum() == pytest.approx((classes > 0).sum() * 250 / 1e9)
    dens = pd.read_csv(tmp_path / "m" / "objects.density.csv", index_col="class")
    assert dens.loc["mito", "objects"] == 1 and dens.loc["vesicle", "objects"] == 1
    assert dens.loc["vesicle", "objects_per_um3"] == pytest.approx(1 / (mask.sum() * 250 / 1e9))
    summary = pd.read_csv(tmp_path / "m" / "objects.summary.csv", index_col=[0, 1])
    assert summary.loc[("vesicle", "volume_um3"), "objects"] == 3
    # a class map without stored names: --classes measures each value as a class
    plain = write_ome_zarr(classes, tmp_path / "plain.ome.zarr", (10, 5, 5), levels=1, kind="labels")
    assert main(["measure", str(plain), "-o", str(tmp_path / "p.csv"), "--classes", "--no-surface"]) == 0
    assert pd.read_csv(tmp_path / "p.csv").groupby("class").size().to_dict() == {1: 2, 2: 3}
    assert main(["measure", str(path), "-o", str(tmp_path / "u.csv"), "--units", "pc"]) == 2
    assert "--units pc" in capsys.readouterr().err
    assert main(["measure", str(path), "-o", str(tmp_path / "u.csv"), "--mask", str(tmp_path / "m")]) == 2


def test_napari_opens_a_class_map_as_named_labels(tmp_path, maps, request):
    napari = pytest.importorskip("napari")
    pytest.importorskip("pytestqt")
    from emseg.napari_plugin.classes import class_map_layer, get_reader

    out = tmp_path / "classes.ome.zarr"
    write_class_map([maps[n][0] for n in ("mito", "vesicle", "psd")], out)
    assert get_reader(str(maps["mito"][0])) is None and get_reader(str(tmp_path / "nothing")) is None
    layers = get_reader(str(out))(str(out))
    assert layers[0][1]["name"] == "classes" and layers[0][2] == "labels"
    import npe2

    plugins = npe2.PluginManager.instance()
    if "emseg" not in plugins:
        plugins.register(npe2.PluginManifest.from_file(MANIFEST))
    viewer = request.getfixturevalue("make_napari_viewer")()
    [layer] = viewer.open(str(out), plugin="emseg")  # File > Open, through the manifest's reader
    assert isinstance(layer, napari.layers.Labels) and tuple(layer.scale) == VOXEL
    assert list(layer.features["class"]) == ["none", "mito", "vesicle", "psd"]
    data = np.asarray(layer.data)
    for value, name in ((1, "mito"), (3, "psd")):
        world = tuple(np.argwhere(data == value)[0] * np.asarray(VOXEL))
        viewer.dims.point = world  # the status bar reads the shown plane
        assert f"class: {name}" in layer.get_status(world, world=True)["coordinates"]
    with pytest.raises(InvalidValuesError, match="not a class map"):
        class_map_layer(maps["mito"][0])
