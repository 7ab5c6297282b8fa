"""Patch grid, the curation pipeline, the patch store contract, resume and bad input."""

import numpy as np
import pytest

from emseg.curate.patches import count_patches, grid, iter_patches, planes_for
from emseg.curate.pipeline import curate
from emseg.curate.store import PatchStore
from emseg.errors import ConfigError, EmsegError, InvalidValuesError


def test_grid_and_planes():
    assert grid(768) == [(0, 224), (224, 224), (448, 224)]  # 96 px strip dropped
    assert grid(1024)[-1] == (896, 128)  # 128 px strip kept
    assert grid(336) == [(0, 224), (224, 112)] and grid(335) == [(0, 224)]
    assert grid(165) == [(0, 165)] and grid(100) == []
    assert planes_for((30, 512, 512), (50, 4, 4)) == [0]
    assert planes_for((165, 768, 1024), (5, 5, 5)) == [0, 1, 2]
    assert planes_for((100, 300, 300), (5.9, 5, 5)) == [0, 1, 2] and planes_for((100, 300, 300), (6.1, 5, 5)) == [0]


def test_patches_come_from_the_right_place(rng):
    from emseg.io import array_volume, to_uint8

    data = rng.integers(0, 256, (120, 130, 250), dtype=np.uint8)
    volume = array_volume(data, (8, 8, 8))
    batches = list(iter_patches(volume, to_uint8))
    total = sum(len(b) for b in batches)
    assert total == count_patches(data.shape, [0, 1, 2]) == 120 * 1 * 1 + 130 * 1 * 1 + 250 * 1 * 1
    for b in batches:
        for i in range(0, len(b), 37):
            p, s, y, x, h, w = (int(v[i]) for v in (b.plane, b.slice, b.y, b.x, b.height, b.width))
            plane = data[s] if p == 0 else data[:, s, :] if p == 1 else data[:, :, s]
            assert np.array_equal(b.patches[i, :h, :w], plane[y:y + h, x:x + w])
            assert not b.patches[i, h:, :].any() and not b.patches[i, :, w:].any()


def write_volume(path, data, voxel_size=(8.0, 8.0, 8.0)):
    from emseg.io import write_ome_zarr

    return str(write_ome_zarr(data, path, voxel_size, levels=1))


@pytest.fixture(scope="module")
def synth_sources(tmp_path_factory):
    from emseg.synth import make_volume

    folder = tmp_path_factory.mktemp("src")
    a = make_volume((6, 240, 240), (30.0, 8.0, 8.0), seed=1).raw  # anisotropic: xy only
    b = make_volume((4, 230, 460), (30.0, 8.0, 8.0), seed=2).raw
    noise = np.random.default_rng(0).normal(120, 1.0, b[:, :, 224:].shape)
    b[:, :, 224:] = np.clip(noise, 0, 255).astype(np.uint8)  # blank resin: the filter rejects it
    return {"a": write_volume(folder / "a.ome.zarr", np.concatenate([a, a[:2]])),  # repeated slices
            "b": write_volume(folder / "b.ome.zarr", b.astype(np.uint16) * 256)}  # uint16 → uint8


@pytest.mark.timeout(90)
def test_store_contract_dedup_and_filter(tmp_path, synth_sources):
    out = tmp_path / "p.zarr"
    curate([f"A={synth_sources['a']}", f"B={synth_sources['b']}"], out, progress=False)
    import zarr

    group = zarr.open_group(str(out), mode="r", zarr_format=2)
    meta = group.attrs["emseg"]
    assert meta["kind"] == "patch_store" and meta["patch_size"] == 224 and meta["complete"] is True
    assert meta["datasets"] == ["A", "B"]
    assert group["patches"].dtype == np.uint8 and group["patches"].chunks == (64, 224, 224)
    store = PatchStore.open(out)
    t = store.table
    assert len(t) == store.patches.shape[0] == 8 + 4 * 2
    dtypes = {c: str(t[c].dtype) for c in t.columns}
    assert dtypes == {"dataset": "int32", "plane": "uint8", "slice": "int32", "y": "int32", "x": "int32",
                      "height": "int32", "width": "int32", "hash": "uint64", "exemplar": "int64",
                      "score": "float32", "kept": "bool"}
    rows = np.arange(len(t))
    exemplar = t.exemplar.to_numpy()
    # the two repeated slices of A are duplicates of their originals, within dataset A
    a = t.dataset.to_numpy() == 0
    assert (exemplar[a] < a.sum()).all() and (exemplar[~a] >= a.sum()).all()
    assert (exemplar[a] != rows[a]).sum() >= 2
    assert np.isnan(t.score[exemplar != rows]).all() and not np.isnan(t.score[exemplar == rows]).any()
    assert np.array_equal(t.kept, (exemplar == rows) & (t.score.to_numpy() >= 0.5))
    blank = (~a) & (t.x.to_numpy() == 224) & (exemplar == rows)
    informative = (~a) & (t.x.to_numpy() == 0) & (exemplar == rows)
    assert blank.any() and not t.kept[blank].any() and t.kept[informative].all()
    assert np.array_equal(store.kept_indices(), np.flatnonzero(t.kept))


@pytest.mark.timeout(60)
def test_resume_skips_done_and_redoes_partial(tmp_path, synth_sources):
    out = tmp_path / "p.zarr"
    curate([f"A={synth_sources['a']}"], out, progress=False)
    first = PatchStore.open(out).table
    store = PatchStore.open(out, mode="r+")  # a crash mid-dataset leaves extra rows behind
    store.append(np.ones((5, 224, 224), np.uint8), {"dataset": np.full(5, 1)})
    store.update_meta(complete=False)
    curate([f"A={synth_sources['a']}", f"B={synth_sources['b']}"], out, progress=False)
    both = PatchStore.open(out)
    assert both.complete and both.dataset_names == ["A", "B"]
    assert both.table.iloc[: len(first)].equals(first)
    assert len(both) == len(first) + 8 and (both.table.dataset.to_numpy()[len(first):] == 1).all()


def test_bad_inputs_have_clear_messages_and_keep_curated(tmp_path, synth_sources):
    from emseg.cli import main

    out = tmp_path / "p.zarr"
    curate([f"A={synth_sources['a']}"], out, progress=False)
    before = len(PatchStore.open(out))
    flat = write_volume(tmp_path / "flat.ome.zarr", np.full((3, 240, 240), 7, np.uint8))
    with pytest.raises(InvalidValuesError, match="flat.ome.zarr.*constant"):
        curate([f"A={synth_sources['a']}", flat], out, progress=False)
    assert len(PatchStore.open(out)) == before and "A" in PatchStore.open(out).done
    small = write_volume(tmp_path / "small.ome.zarr", np.zeros((1, 100, 300), np.uint8))
    with pytest.raises(InvalidValuesError, match="small.ome.zarr.*100 x 300"):
        curate([small], tmp_path / "q.zarr", progress=False)
    with pytest.raises(ConfigError, match="duplicate dataset name 'x'"):
        curate([f"x={synth_sources['a']}", f"x={synth_sources['b']}"], tmp_path / "q.zarr", progress=False)
    text = tmp_path / "notes.tif"
    text.write_text("not an image")
    with pytest.raises(EmsegError, match="notes.tif"):
        curate([str(text)], tmp_path / "q.zarr", progress=False)
    assert main(["curate", str(text), "-o", str(tmp_path / "q.zarr")]) == 2
    assert main(["curate", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "q.zarr")]) == 2
    assert not (tmp_path / "q.zarr").exists()


@pytest.mark.timeout(60)
def test_cli_report_sheet(tmp_path, synth_sources):
    from emseg.cli import main

    out = tmp_path / "p.zarr"
    assert main(["curate", f"A={synth_sources['a']}", "-o", str(out)]) == 0
    report = (tmp_path / "p_report" / "report.md").read_text()
    assert "| A |" in report and (tmp_path / "p_report" / "A_kept.png").exists()
    assert main(["curate", "sheet", str(out), "-o", str(tmp_path / "s.html"), "--n", "5"]) == 0
    assert (tmp_path / "s.html").read_text().count("<figure") == 5


@pytest.mark.timeout(60)
def test_folder_of_2d_images_and_list_file(tmp_path, synth_sources):
    import warnings

    from PIL import Image

    from emseg.synth import make_volume

    raw = make_volume((2, 300, 260), (8.0, 8.0, 8.0), seed=9).raw
    folder = tmp_path / "shots"
    folder.mkdir()
    Image.fromarray(raw[0]).save(folder / "a.png")  # 300 x 260: 1 x 1 cells (76 / 36 px strips dropped)
    Image.fromarray(raw[1, :240, :]).save(folder / "b.png")  # a different size: not one stack
    listing = tmp_path / "sources.txt"
    listing.write_text(f"# datasets\nshots={folder}\nA={synth_sources['a']}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PNGs carry no voxel size
        store = curate([str(listing)], tmp_path / "p.zarr", progress=False)
    assert store.dataset_names == ["shots", "A"]
    shots = store.table[store.table.dataset == 0]
    assert len(shots) == 2 and set(shots.plane) == {0} and set(shots.height) == {224}
