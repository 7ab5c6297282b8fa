"""Training from loose annotations: config errors, sampler, augmentation, loss, training,
resume and fine-tuning on small synthetic volumes with tiny networks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tifffile
import torch

from emseg.errors import ConfigError
from emseg.synth import make_volume
from emseg.train import Trainer, finetune, parse_config, train
from emseg.train.augment import random_transpose
from emseg.train.config import Augment, Sampling
from emseg.train.data import BlockSampler, open_source
from emseg.train.loss import balanced_bce, masked_bce, training_loss
from emseg.train.validate import validate

TINY = {"architecture": "unet3d", "fmaps": 4, "downsample_factors": [[2, 2, 2], [2, 2, 2]]}


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    """A synthetic cell written as TIFFs: raw, mito labels, a loose sample mask."""
    folder = tmp_path_factory.mktemp("cell")
    synth = make_volume((48, 96, 96), (8.0, 8.0, 8.0), seed=1)
    mask = np.zeros(synth.raw.shape, np.uint8)
    mask[:, :, :72] = 1  # only part of the volume is annotated
    for name, data in [("raw", synth.raw), ("mito", synth.mito.astype(np.uint8)), ("mask", mask)]:
        tifffile.imwrite(folder / f"{name}.tif", data)
    return folder, synth


def config(folder, **extra):
    base = {"model": TINY, "output_shape": [24, 24, 24], "num_workers": 0, "learning_rate": 1e-3,
            "train": [{"name": "cellA", "raw": str(folder / "raw.tif"), "labels": str(folder / "mito.tif"),
                       "voxel_size": [8, 8, 8], "roi": [[0, 32], [0, 96], [0, 96]]}],
            "validation": [{"raw": str(folder / "raw.tif"), "labels": str(folder / "mito.tif"),
                            "voxel_size": [8, 8, 8], "roi": [[32, 48], [0, 96], [0, 96]], "exclusion_width": 1}]}
    base.update(extra)
    return parse_config(base)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(colour="red"), "source train[0] 'cellA' → colour: unknown key"),
    (lambda s: s.update(raw="missing.tif"), "source cellA: missing.tif: no such file"),
    (lambda s: s.update(labels="__small__"), "source cellA: labels shape"),
    (lambda s: s.update(roi=[[0, 10], [0, 96], [0, 200]]), "source cellA: ROI 0:200 on axis x is empty or outside"),
    (lambda s: s.update(label_values=[7]), "source cellA: no foreground"),
])
def test_bad_config_names_the_source(cell, tmp_path, change, message):
    folder, _ = cell
    tifffile.imwrite(tmp_path / "small.tif", np.ones((4, 8, 8), np.uint8))
    raw = config(folder).model_dump()
    change(raw["train"][0])
    if raw["train"][0].get("labels") == "__small__":
        raw["train"][0]["labels"] = str(tmp_path / "small.tif")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cfg = parse_config(raw)
        Trainer(cfg, progress=False)


def test_sampler_is_picklable_and_respects_masks(cell):
    folder, _ = cell
    source_cfg = config(folder).train[0].model_copy(update={"sample_mask": str(folder / "mask.tif")})
    source = open_source(source_cfg, "train[0]")
    sampler = BlockSampler([source], (64, 64, 64), (24, 24, 24), {"mean": 0.5, "std": 0.2},
                           Augment(), Sampling(min_annotated=0.0), seed=0)
    clone = pickle.loads(pickle.dumps(sampler))
    rng = np.random.default_rng(0)
    fg = []
    for _ in range(12):
        block = clone.sample(rng)
        assert block["raw"].shape == (1, 64, 64, 64) and block["target"].shape == (1, 24, 24, 24)
        assert set(np.unique(block["mask"].numpy())) <= {0.0, 1.0}
        fg.append(float((block["target"] * block["mask"]).sum() / block["mask"].sum().clamp(min=1)))
    assert np.mean([f >= 0.05 for f in fg]) > 0.5  # foreground-biased sampling


def test_source_is_resampled_to_the_working_voxel_size(cell):
    folder, synth = cell
    source_cfg = config(folder).train[0].model_copy(update={"sample_mask": str(folder / "mask.tif"),
                                                            "label_values": [1]})
    source = open_source(source_cfg, "train[0]", voxel_size=(16.0, 16.0, 16.0))
    assert source.voxel_size == (16.0, 16.0, 16.0) and source.shape == (16, 48, 48)  # roi z 0-32 halved
    raw = synth.raw[:32].astype(np.float32).reshape(16, 2, 48, 2, 48, 2).mean(axis=(1, 3, 5))
    np.testing.assert_array_equal(source.raw.data, np.rint(raw).astype(synth.raw.dtype))  # 2×2×2 means
    mito = synth.mito[:32].astype(np.float32).reshape(16, 2, 48, 2, 48, 2).mean(axis=(1, 3, 5))
    np.testing.assert_array_equal(source.target.data, (mito >= 0.5).astype(np.uint8))
    assert set(np.unique(source.sample_mask.data)) == {0, 1} and not source.sample_mask.data[:, :, 36:].any()
    assert source.sample_mask.data[:, :, :36].all()
    validation = config(folder).validation[0].model_copy(update={"exclusion_width": 4})
    assert open_source(validation, "validation[0]", voxel_size=(16.0, 16.0, 16.0)).exclusion_width == 2  # 32 nm
    with pytest.raises(ConfigError, match="source cellA: resampling .* needs the source in memory"):
        open_source(source_cfg, "train[0]", in_memory_limit_gb=1e-6, voxel_size=(16.0, 16.0, 16.0))


def test_model_trained_at_a_coarser_voxel_size_records_it(cell, tmp_path):
    folder, _ = cell
    cfg = config(folder, iterations=2, validate_every=2, output_dir=str(tmp_path / "run"),
                 voxel_size=[16, 16, 16], output_shape=[8, 8, 8])
    trainer = train(cfg, progress=False)
    assert trainer.voxel_size == (16.0, 16.0, 16.0) and trainer.val_sources[0].shape == (8, 48, 48)
    state = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    assert state["voxel_size"] == [16.0, 16.0, 16.0]
    resumed = Trainer(cfg.model_copy(update={"iterations": 3}), resume=True, progress=False)
    assert resumed.voxel_size == (16.0, 16.0, 16.0) and resumed.train_sources[0].shape == (16, 48, 48)
    # fine-tuning keeps the model's scale when the new config does not set one
    tuned = Trainer(config(folder, output_dir=str(tmp_path / "ft")), init_from=str(tmp_path / "run" / "best.pt"),
                    progress=False)
    assert tuned.voxel_size == (16.0, 16.0, 16.0)
    with pytest.raises(ConfigError, match="voxel_size"):
        config(folder, voxel_size=[16, 0, 16])


def test_transpose_only_between_equal_voxel_sizes():
    rng = np.random.default_rng(0)
    block = np.arange(4 * 4 * 4).reshape(4, 4, 4)
    for _ in range(20):
        (out,) = random_transpose((block,), (40.0, 8.0, 8.0), rng)
        assert np.array_equal(np.sort(out[0].ravel()), np.sort(block[0].ravel()))  # z stays z
    seen = {random_transpose((block,), (8.0, 8.0, 8.0), rng)[0].tobytes() for _ in range(40)}
    assert len(seen) > 2  # isotropic: z is swapped too


def test_loss_ignores_unannotated_voxels():
    logits = torch.randn(1, 1, 6, 6, 6)
    target = (torch.rand(1, 1, 6, 6, 6) > 0.5).float()
    mask = torch.zeros_like(target)
    mask[..., :3] = 1
    other = target.clone()
    other[..., 3:] = 1 - other[..., 3:]  # change labels only where mask = 0
    assert torch.isclose(balanced_bce(logits, target, mask), balanced_bce(logits, other, mask))
    assert not torch.isclose(balanced_bce(logits, target, torch.ones_like(mask)),
                             balanced_bce(logits, other, torch.ones_like(mask)))
    assert torch.isclose(masked_bce(logits, target, mask), masked_bce(logits, other, mask))


def test_class_balance_weighs_the_rare_class_up():
    """One foreground voxel in 64, all predicted background with the same confidence: balanced BCE
    gives that voxel half the loss, plain BCE 1/64 of it."""
    target = torch.zeros(1, 1, 4, 4, 4)
    target[0, 0, 0, 0, 0] = 1
    logits = torch.full_like(target, -2.0)
    mask = torch.ones_like(target)
    fg_loss = torch.nn.functional.softplus(torch.tensor(2.0))  # -log sigmoid(-2)
    bg_loss = torch.nn.functional.softplus(torch.tensor(-2.0))  # -log (1 - sigmoid(-2))
    assert torch.isclose(balanced_bce(logits, target, mask), 0.5 * fg_loss + 0.5 * bg_loss)
    assert torch.isclose(masked_bce(logits, target, mask), (fg_loss + 63 * bg_loss) / 64)
    assert torch.isclose(training_loss("bce", logits, target, mask, class_balance=False),
                         masked_bce(logits, target, mask))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_train_resume_and_outputs(cell, tmp_path):
    folder, _ = cell
    cfg = config(folder, iterations=6, validate_every=3, checkpoint_every=3, output_dir=str(tmp_path / "run"))
    trainer = train(cfg, progress=False)
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "curves.png").exists()
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("iteration,loss") and len(log) == 3  # validations at 3 and 6
    first = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    resumed = Trainer(cfg.model_copy(update={"iterations": 9}), resume=True, progress=False)
    assert resumed.iteration == 6
    assert all(torch.equal(first[k], v) for k, v in resumed.model.state_dict().items())
    resumed.run()
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["training"]["iteration"] == 9 and state["training"]["config"]["iterations"] == 9
    assert state["normalization"] == trainer.normalization and state["voxel_size"] == [8.0, 8.0, 8.0]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_finetune_improves_f1_on_new_cell(cell, tmp_path):
    """A model trained on cell A meets cell B with inverted contrast (another preparation):
    fine-tuning on a small annotation of B changes the model and raises validation F1 on B."""
    folder, synth = cell
    cfg_a = config(folder, iterations=10, validate_every=10, output_shape=[16, 16, 16], output_dir=str(tmp_path / "a"))
    trained = train(cfg_a, progress=False)
    other = make_volume((48, 96, 96), (8.0, 8.0, 8.0), seed=4)
    tifffile.imwrite(tmp_path / "b_raw.tif", 255 - other.raw)
    tifffile.imwrite(tmp_path / "b_mito.tif", other.mito.astype(np.uint8))
    b = {"raw": str(tmp_path / "b_raw.tif"), "labels": str(tmp_path / "b_mito.tif"), "voxel_size": [8, 8, 8]}
    cfg_b = config(folder, output_dir=str(tmp_path / "b"), validate_every=60, output_shape=[16, 16, 16],
                   learning_rate=3e-3,
                   train=[{**b, "roi": [[0, 32], [0, 96], [0, 96]]}],
                   validation=[{**b, "roi": [[32, 48], [0, 96], [0, 96]]}])
    before = Trainer(cfg_b, init_from=str(tmp_path / "a" / "best.pt"), progress=False)
    f1_before = validate(before.model, before.val_sources, before.normalization)["f1"]
    tuned = finetune(str(tmp_path / "a" / "best.pt"), cfg_b, iterations=60, progress=False)
    f1_after = validate(tuned.model, tuned.val_sources, tuned.normalization)["f1"]
    changed = any(not torch.equal(a, b) for a, b in zip(trained.model.state_dict().values(),
                                                          tuned.model.state_dict().values()))
    assert changed and f1_after > f1_before + 0.05, (f1_before, f1_after)
    assert before.config.class_balance is True  # unset everywhere: ASEM's class-balanced BCE


def test_finetune_and_resume_keep_the_models_loss_unless_set(cell, tmp_path):
    folder, _ = cell
    base = config(folder, iterations=1, validate_every=1, output_shape=[16, 16, 16], class_balance=False,
                  output_dir=str(tmp_path / "base"))
    train(base, progress=False)
    checkpoint = tmp_path / "base" / "best.pt"
    new = config(folder, output_shape=[16, 16, 16], output_dir=str(tmp_path / "tuned"))
    assert new.class_balance is None
    assert Trainer(new, init_from=str(checkpoint), progress=False).config.class_balance is False
    explicit = new.model_copy(update={"class_balance": True})
    assert Trainer(explicit, init_from=str(checkpoint), progress=False).config.class_balance is True
    # resuming with the option unset keeps the run's plain BCE
    resumed = Trainer(base.model_copy(update={"class_balance": None, "iterations": 2}), resume=True, progress=False)
    assert resumed.config.class_balance is False
    # a fresh run records the resolved default; a checkpoint from before the option means class balance
    fresh = train(config(folder, iterations=1, validate_every=1, output_shape=[16, 16, 16],
                         output_dir=str(tmp_path / "fresh")), progress=False)
    assert fresh.config.class_balance is True
    state = torch.load(tmp_path / "fresh" / "best.pt", weights_only=False)
    assert state["training"]["config"]["class_balance"] is True
    del state["training"]["config"]["class_balance"]
    torch.save(state, tmp_path / "old.pt")
    assert Trainer(new, init_from=str(tmp_path / "old.pt"), progress=False).config.class_balance is True


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_auto_threshold_and_cosine_schedule(cell, tmp_path):
    """threshold: auto keeps the best-F1 threshold of the sweep in the checkpoint; cosine anneals the lr."""
    from emseg.train.validate import AUTO_THRESHOLDS
    folder, _ = cell
    cfg = config(folder, iterations=8, validate_every=4, threshold="auto", lr_schedule="cosine",
                 output_dir=str(tmp_path / "run"))
    trainer = train(cfg, progress=False)
    assert trainer.optimizer.param_groups[0]["lr"] < 0.1 * cfg.learning_rate
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    chosen = best["threshold"]
    assert chosen in AUTO_THRESHOLDS and best["training"]["validation"]["threshold"] == chosen
    auto = validate(trainer.model, trainer.val_sources, trainer.normalization, "auto")
    for t in (0.3, 0.5, 0.9):
        assert auto["f1"] >= validate(trainer.model, trainer.val_sources, trainer.normalization, t)["f1"]


@pytest.mark.parametrize("name", ["mito_lucchi.yaml", "mito_lucchi_asem.yaml", "mito_lucchi_v4.yaml"])
def test_shipped_configs_parse_and_build(name):
    """The configs in configs/ validate, and their networks produce the output block they ask for."""
    from pathlib import Path

    from emseg.models import build
    from emseg.train.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / name)
    model_config = {k: v for k, v in config.model.items() if k != "architecture"}
    net = build(config.model["architecture"], **model_config)
    assert tuple(net.output_shape(net.input_shape_for(config.output_shape))) == tuple(config.output_shape)
    if name == "mito_lucchi_asem.yaml":  # ASEM: 204^3 -> 116^3, about 5.8 M parameters
        assert tuple(net.input_shape_for(config.output_shape)) == (204, 204, 204)
        assert 5.7e6 < sum(p.numel() for p in net.parameters()) < 5.9e6


def test_elastic_warp_of_target_equals_the_cropped_full_warp():
    """Target and mask are warped on the output block only: the same voxels as warping the
    whole input block and cropping it."""
    from scipy import ndimage

    from emseg.train.augment import augment_block, warp_coordinates
    from emseg.train.data import RegionReader, SourceData

    rng = np.random.default_rng(3)
    raw = rng.integers(0, 255, (40, 60, 60), dtype=np.uint8)
    labels = (ndimage.gaussian_filter(raw.astype(float), 3) > 127).astype(np.uint8)
    roi = tuple(slice(0, n) for n in raw.shape)
    source = SourceData("s", RegionReader(raw, roi), RegionReader(labels, roi), None, None, "nonzero", None,
                        (5.0, 5.0, 5.0), 1.0)
    cfg = Augment(elastic_probability=1.0, mirror=False, transpose=False, intensity_scale=0.0,
                  intensity_shift=0.0)
    _, target, mask = augment_block(source, (10, 20, 20), (20, 20, 20), (8, 8, 8), cfg, np.random.default_rng(7))
    replay = np.random.default_rng(7)
    replay.random()  # the elastic draw
    margin = [8, 8 + 5, 8 + 5]  # jitter 4σ, plus the rotation's extra for a 20-voxel block
    coords = warp_coordinates((20, 20, 20), margin, cfg, True, replay)
    start = [s - 6 - m for s, m in zip((10, 20, 20), margin)]
    box = source.target.read(start, [20 + 2 * m for m in margin])
    full = ndimage.map_coordinates(box, coords, order=0, mode="mirror")[6:14, 6:14, 6:14]
    assert target.any() and not target.all()
    assert np.array_equal(target, full)
    assert mask.all()  # no sample mask: every voxel counts, also after the warp


@pytest.mark.parametrize("recipe", ["mito_lucchi.yaml", "mito_lucchi_v4.yaml"])
def test_lucchi_protocol_parts_are_disjoint_and_the_recipes_follow_it(recipe):
    """Train, validation and test are apart by the split's gap; the Lucchi recipes train on the train
    part and validate on the validation part only (every voxel), so the test block chose nothing."""
    from pathlib import Path

    from emseg.evaluate.protocol import LUCCHI, ZSplit
    from emseg.train.config import load_config

    with pytest.raises(ValueError, match="at least 5 slices apart"):
        ZSplit(train=(0, 100), validation=(102, 130), test=(135, 165), min_gap=5)
    with pytest.raises(ValueError, match="empty"):
        ZSplit(train=(10, 10), validation=(20, 30), test=(40, 50))
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / recipe)
    assert [s.roi for s in config.train] == [LUCCHI.roi("train", (768, 1024))]
    assert [s.roi for s in config.validation] == [LUCCHI.roi("validation", (768, 1024))]
    assert all(not s.exclusion_width for s in config.validation)
    test = set(range(*LUCCHI.test))
    assert not test & set(range(*LUCCHI.train)) and not test & set(range(*LUCCHI.validation))


def test_bf16_precision_trains(cell, tmp_path):
    """precision: bf16 runs the forward pass under bfloat16 autocast; weights stay float32 and the
    loss stays finite."""
    trainer = Trainer(config(cell[0], iterations=3, precision="bf16", validate_every=3,
                             output_dir=str(tmp_path / "bf16")), progress=False)
    trainer.run()
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert all(np.isfinite(r["loss"]) for r in trainer.history)
    assert trainer.history[-1]["val_f1"] != ""
