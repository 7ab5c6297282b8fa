"""Ensembles (issue #22 item 3): a 2D and a 3D tiny net at different voxel sizes, each predicted
into its own sub-image, averaged on the input's grid; resumable; members recorded in the metadata."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from test_predict import one_torch_thread, tiny_unet  # noqa: F401 (autouse fixture: one torch thread)
from test_predict_2d import TinyNet2D  # also registers the "tiny2d_test" architecture

from emseg.errors import ConfigError, EmsegError, OutputExistsError
from emseg.io import array_volume, write_ome_zarr
from emseg.models import save_checkpoint
from emseg.predict import predict
from emseg.predict.engine import PredictJob
from emseg.predict.ensemble import AverageJob
from emseg.predict.run import model_fingerprint

VOXEL = (8.0, 8.0, 8.0)  # the input's and the 3D net's
VOXEL_2D = (16.0, 8.0, 8.0)  # the 2D net's: the input is resampled for it (z halved)
KWARGS = dict(chunks=8, block_shape=16, device="cpu", allow_resample=True)


@pytest.fixture(autouse=True)
def quiet_resampling():
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*resampling the input", category=UserWarning)
        yield


@pytest.fixture(scope="module")
def raw():
    return np.random.default_rng(7).integers(0, 256, (16, 48, 40), dtype=np.uint8)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """A 3D U-Net at 8 nm (threshold 0.4) and a 2D net at 16 × 8 × 8 nm (threshold 0.7)."""
    folder = tmp_path_factory.mktemp("nets")
    net3d, net2d = tiny_unet(seed=3), TinyNet2D(seed=5).eval()
    save_checkpoint(folder / "n3d.pt", net3d, architecture="unet3d", model_config=net3d.config, voxel_size=VOXEL,
                    normalization={"mean": 0.5, "std": 0.25}, organelle="mito", threshold=0.4)
    save_checkpoint(folder / "n2d.pt", net2d, architecture="tiny2d_test", model_config={"layers": 3},
                    voxel_size=VOXEL_2D, normalization={"mean": 0.45, "std": 0.2}, organelle="mito", threshold=0.7)
    return str(folder / "n3d.pt"), str(folder / "n2d.pt"), net3d, net2d


@pytest.fixture(scope="module")
def singles(raw, nets, tmp_path_factory):
    """Each net's own prediction, as `emseg predict` makes it alone (uint8)."""
    folder = tmp_path_factory.mktemp("singles")
    with pytest.warns(UserWarning, match="resampling"):
        outs = [predict(n, array_volume(raw, VOXEL), folder / f"{i}.zarr", **KWARGS).output
                for i, n in enumerate(nets[:2])]
    return [zarr.open_array(f"{o}/0", mode="r")[:] for o in outs]


def read(path, sub: str = "0") -> np.ndarray:
    return zarr.open_array(f"{path}/{sub}", mode="r")[:]


def emseg_attrs(path) -> dict:
    return dict(zarr.open_group(str(path), mode="r").attrs["emseg"])


@pytest.mark.timeout(120)
def test_ensemble_is_the_mean_of_its_members_and_records_them(raw, nets, singles, tmp_path):
    a, b = singles
    result = predict(list(nets[:2]), array_volume(raw, VOXEL), tmp_path / "e.zarr", **KWARGS)
    assert result.complete and len(result.members) == 2
    ensemble = read(tmp_path / "e.zarr")
    assert ensemble.shape == raw.shape and ensemble.dtype == np.uint8
    mean = (a.astype(np.float64) + b) / 2
    assert np.abs(ensemble - mean).max() <= 0.5 + 1e-6  # the mean, rounded once more to uint8
    assert np.abs(ensemble.astype(int) - a).max() > 5 and np.abs(ensemble.astype(int) - b).max() > 5
    np.testing.assert_array_equal(read(tmp_path / "e.zarr", "member_0/0"), a)  # each member = its single run
    np.testing.assert_array_equal(read(tmp_path / "e.zarr", "member_1/0"), b)

    attrs = emseg_attrs(tmp_path / "e.zarr")
    assert attrs["complete"] and attrs["kind"] == "probabilities"
    members = attrs["ensemble"]
    assert [m["source"] for m in members] == list(nets[:2])
    assert [m["fingerprint"] for m in members] == [model_fingerprint(n) for n in nets[2:]]
    assert [m["mode"] for m in members] == ["3d", "stack"]
    assert [m["voxel_size"] for m in members] == [list(VOXEL), list(VOXEL_2D)]
    assert [m["weight"] for m in members] == [0.5, 0.5] and [m["path"] for m in members] == ["member_0", "member_1"]
    assert attrs["model"]["threshold"] == pytest.approx(0.55) and attrs["model"]["architecture"] == "ensemble"

    from emseg.postprocess.pipeline import model_threshold

    assert model_threshold(str(tmp_path / "e.zarr")) == pytest.approx(0.55)  # what postprocess will use


@pytest.mark.timeout(120)
def test_weights_and_comma_list(raw, nets, singles, tmp_path):
    a, b = singles
    result = predict(f"{nets[0]},{nets[1]}", array_volume(raw, VOXEL), tmp_path / "w.zarr", weights="3,1",
                     **KWARGS)
    assert result.complete
    assert np.abs(read(tmp_path / "w.zarr") - (3.0 * a + b) / 4).max() <= 0.5 + 1e-6
    attrs = emseg_attrs(tmp_path / "w.zarr")
    assert [m["weight"] for m in attrs["ensemble"]] == [0.75, 0.25]
    assert attrs["model"]["threshold"] == pytest.approx(0.75 * 0.4 + 0.25 * 0.7)


class Interrupted(BaseException):
    """Stands in for a kill: not an Exception, so nothing retries or records it."""


@pytest.mark.timeout(180)
@pytest.mark.parametrize("where", ["member", "average"])
def test_interrupted_ensemble_resumes_to_the_same_output(raw, nets, tmp_path, monkeypatch, where):
    from emseg.predict import ensemble

    reference = predict(list(nets[:2]), array_volume(raw, VOXEL), tmp_path / "ref.zarr", **KWARGS)
    monkeypatch.setattr(ensemble, "AVERAGE_BLOCK", 8)  # 60 averaging blocks instead of one
    out = tmp_path / "e.zarr"
    calls = {"n": 0}
    target, name = (PredictJob, "compute") if where == "member" else (AverageJob, "write")
    original = getattr(target, name)

    def dies_later(self, *args):
        calls["n"] += 1
        if calls["n"] > (9 + 7 if where == "member" else 10):  # member: the 3D net's 9 blocks, 7 of the 2D net's 9
            raise Interrupted
        return original(self, *args)

    monkeypatch.setattr(target, name, dies_later)
    with pytest.raises(Interrupted):
        predict(list(nets[:2]), array_volume(raw, VOXEL), out, **KWARGS)
    attrs = emseg_attrs(out)
    assert attrs["complete"] is False  # the ensemble is not complete while a member or the mean is not
    assert emseg_attrs(out / "member_0")["complete"]
    if where == "member":
        assert not emseg_attrs(out / "member_1")["complete"]
    monkeypatch.setattr(target, name, original)

    again = predict(list(nets[:2]), array_volume(raw, VOXEL), out, **KWARGS)
    assert again.complete and emseg_attrs(out)["complete"]
    assert again.members[0].report.done == []  # member 0 was finished: nothing recomputed
    skipped = again.members[1].report.skipped if where == "member" else again.report.skipped
    assert skipped > 0  # the interrupted part resumed instead of starting over
    np.testing.assert_array_equal(read(out), read(reference.output))


def test_bad_ensembles_are_refused_before_any_work(raw, nets, tmp_path):
    volume, out = array_volume(raw, VOXEL), tmp_path / "x.zarr"
    n3d, n2d = nets[:2]
    cases = [
        (dict(model=[n3d, n2d], weights=[1.0]), r"1 weight\(s\) for 2 models"),
        (dict(model=[n3d], weights=[1.0]), "weights need an ensemble of two or more models"),
        (dict(model=[n3d, n2d], weights="1,x"), "--weights must be numbers"),
        (dict(model=[n3d, n2d], weights=[1.0, -1.0]), "non-negative"),
        (dict(model=[n3d, n3d]), r"n3d\.pt: listed twice"),
        (dict(model=f"{n3d},,{n2d}"), "an empty name"),
        (dict(model=[n3d, n2d], mode="bogus"), "mode must be auto, 3d, stack or orthoplane"),
        (dict(model=[n3d, n2d], dtype="int7"), "dtype must be 'uint8' or 'float16'"),
        (dict(model=[n3d, n3d.replace("n3d", "missing")]), "missing.pt: checkpoint not found"),
    ]
    for extra, message in cases:
        with pytest.raises(EmsegError, match=message):
            predict(volume=volume, output=out, **{**KWARGS, **extra})
    with pytest.raises(ConfigError, match=r"differs from the model's \(16.0, 8.0, 8.0\) nm \(.*n2d\.pt\)"):
        predict([n3d, n2d], volume, out, chunks=8, device="cpu")  # no --allow-resample
    with pytest.raises(ConfigError, match=r"mode 'orthoplane' fits none of the ensemble's models"):
        predict([n3d, tiny_unet(seed=9)], volume, out, mode="orthoplane", **KWARGS)
    assert not out.exists()


@pytest.mark.timeout(120)
def test_explicit_mode_applies_to_the_members_it_fits(raw, nets, tmp_path):
    result = predict(list(nets[:2]), array_volume(raw, VOXEL), tmp_path / "o.zarr", mode="orthoplane", **KWARGS)
    assert result.complete
    assert [m["mode"] for m in emseg_attrs(tmp_path / "o.zarr")["ensemble"]] == ["3d", "orthoplane"]


def test_existing_output_of_other_models_or_weights_is_refused(raw, nets, singles, tmp_path):
    volume, out = array_volume(raw, VOXEL), tmp_path / "e.zarr"
    predict(nets[0], volume, out, **KWARGS)  # a single model's output
    with pytest.raises(OutputExistsError, match="another model or other settings"):
        predict(list(nets[:2]), volume, out, **KWARGS)
    predict(list(nets[:2]), volume, out, overwrite=True, **KWARGS)
    with pytest.raises(OutputExistsError, match="another model or other settings"):
        predict(list(nets[:2]), volume, out, weights=[2, 1], **KWARGS)


@pytest.mark.timeout(120)
def test_cli_ensemble(raw, nets, singles, tmp_path, capsys):
    from emseg.cli import main

    image = write_ome_zarr(raw, tmp_path / "img.ome.zarr", VOXEL, chunks=16, levels=1)
    args = ["predict", f"{nets[0]},{nets[1]}", str(image), str(tmp_path / "c.zarr"), "--allow-resample",
            "--chunks", "8", "--block", "16", "--device", "cpu"]
    assert main(args) == 0
    assert "2 models averaged" in capsys.readouterr().out
    assert np.abs(read(tmp_path / "c.zarr") - (singles[0].astype(float) + singles[1]) / 2).max() <= 0.5 + 1e-6
    assert main(args + ["--weights", "1,2,3"]) == 2
    assert "3 weight(s) for 2 models" in capsys.readouterr().err
