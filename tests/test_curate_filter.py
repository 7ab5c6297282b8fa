"""Informativeness: the default texture heuristic and the trainable CNN filter."""

import numpy as np
import pytest

from emseg.curate.informative import BAD_KINDS, bad_patch, features_of, heuristic_score, labelled_sample


@pytest.fixture(scope="module")
def good_patches():
    from emseg.synth import make_volume

    return make_volume((12, 224, 224), (8.0, 8.0, 8.0), seed=5).raw


def test_heuristic_separates_em_from_generated_bad_patches(good_patches):
    patches, labels, kind = labelled_sample(good_patches, 40, seed=2)
    pred = heuristic_score(features_of(patches)) >= 0.5
    assert (pred == labels).mean() >= 0.95
    for k in BAD_KINDS:
        assert not pred[kind == k].any(), k


@pytest.mark.slow
def test_heuristic_on_real_em(shared_data):
    import tifffile

    with tifffile.TiffFile(shared_data / "isbi2012" / "train_image.tif") as tif:
        slices = [tif.pages[z].asarray() for z in (0, 15, 29)]
    real = np.stack([s[y:y + 224, x:x + 224] for s in slices for y in (0, 224) for x in (0, 224)])
    assert (heuristic_score(features_of(real)) >= 0.5).mean() >= 0.9
    rng = np.random.default_rng(0)
    blurred = np.stack([bad_patch("blurred", rng, p) for p in real[:4]])
    assert (heuristic_score(features_of(blurred)) < 0.5).all()


@pytest.mark.timeout(90)
def test_train_filter_cli_learns_and_pipeline_uses_it(tmp_path, good_patches):
    from emseg.cli import main
    from emseg.curate.cnn_filter import load_filter
    from emseg.curate.store import PatchStore

    patches, labels, _ = labelled_sample(good_patches, 36, seed=3)
    store = PatchStore.create(tmp_path / "p.zarr")
    store.append(patches, {"dataset": np.zeros(len(patches))})
    csv = tmp_path / "labels.csv"
    csv.write_text("index,label\n" + "".join(
        f"{i},{'informative' if lab else 'uninformative'}\n" for i, lab in enumerate(labels)))
    model = tmp_path / "filter.pt"
    assert main(["curate", "train-filter", str(csv), "--store", str(tmp_path / "p.zarr"), "-o", str(model),
                 "--epochs", "12", "--threads", "1"]) == 0
    score = load_filter(model)(patches)
    assert score.shape == (len(patches),) and ((score >= 0.5) == labels).mean() >= 0.8
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("index,label\n0,maybe\n")
    assert main(["curate", "train-filter", str(bad_csv), "--store", str(tmp_path / "p.zarr")]) == 2
    assert main(["curate", "run", str(tmp_path / "nothing.tif"), "-o", str(tmp_path / "q.zarr"),
                 "--filter", str(model)]) == 2
