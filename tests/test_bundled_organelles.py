"""The sparse-slice organelle models (vesicles, psd, membranes) ship in the package and run through
predict → postprocess (one class map with mito) → measure (per class, density in a mask)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emseg.models import UNetResNet2D, bundled, load

ORGANELLES = ("vesicles", "psd", "membranes")


@pytest.mark.parametrize("name", ORGANELLES)
def test_organelle_is_bundled_with_its_metadata(name):
    assert name in bundled()
    model = load(name)
    assert isinstance(model.model, UNetResNet2D) and model.organelle == name
    assert model.voxel_size == (5.0, 5.0, 5.0) and model.inference == {"mode": "stack"}
    chosen = model.training["threshold_choice"]  # chosen on the validation slices through `emseg predict`
    assert model.threshold == chosen["threshold"] and chosen["slices"] == [118, 135]
    assert model.training["config"]["train"]["slices"][-1] == 105  # never trained on validation or test slices
    assert model.training["weights_dtype"] == "float16" and "optimizer" not in model.training


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_four_models_to_one_class_map_and_densities(shared_data, tmp_path):
    """A test-slice crop through the CLI as a user runs it: four predictions, one class map with the
    four names, a per-class table and per-class densities in a box mask."""
    import tifffile
    import zarr

    from emseg.cli import main
    from emseg.io import open_volume, write_ome_zarr

    crop = (slice(161, 165), slice(256, 512), slice(384, 640))  # test slices: never seen in training
    raw = np.asarray(open_volume(shared_data / "lucchi" / "train_image.tif")[crop])
    tifffile.imwrite(tmp_path / "crop.tif", raw, imagej=True, resolution=(0.2, 0.2),
                     metadata={"spacing": 5.0, "unit": "nm", "axes": "ZYX"})
    maps = []
    for name in ("mito", *ORGANELLES):
        out = tmp_path / f"{name}.ome.zarr"
        assert main(["predict", name, str(tmp_path / "crop.tif"), str(out), "--allow-resample"]) == 0
        maps.append(str(out))
    vesicle_truth = tifffile.imread(shared_data / "lucchi" / "train_sparse_vesicles.tif")[crop] > 0
    vesicle_prob = np.asarray(zarr.open_group(maps[1])["0"]) / 255.0
    tp = np.sum((vesicle_prob >= load("vesicles").threshold) & vesicle_truth)
    assert vesicle_truth.mean() > 0.01 and tp / vesicle_truth.sum() > 0.5  # finds most labelled vesicle pixels
    assert main(["postprocess", *maps, "-o", str(tmp_path / "classes.ome.zarr")]) == 0
    classes = zarr.open_group(str(tmp_path / "classes.ome.zarr"))
    assert classes.attrs["emseg"]["classes"] == {"1": "mito", "2": "vesicles", "3": "psd", "4": "membranes"}
    values = set(np.unique(np.asarray(classes["0"]))) - {0}
    assert {2, 4} <= values  # vesicles and membranes are in every crop of this neuropil
    box = np.zeros(raw.shape, np.uint8)
    box[:, 64:192, 64:192] = 1
    write_ome_zarr(box, tmp_path / "box.ome.zarr", (5.0, 5.0, 5.0))
    assert main(["measure", str(tmp_path / "classes.ome.zarr"), "-o", str(tmp_path / "t.csv"),
                 "--mask", str(tmp_path / "box.ome.zarr")]) == 0
    table = pd.read_csv(tmp_path / "t.csv")
    assert set(table["class"]) >= {"vesicles", "membranes"}
    dens = pd.read_csv(tmp_path / "t.density.csv").set_index("class")
    assert dens.loc["vesicles", "objects_per_um3"] > 0
    assert json.loads(json.dumps(dens["mask_volume_um3"].tolist()))[0] == pytest.approx(4 * 128 * 128 * 125 / 1e9)
