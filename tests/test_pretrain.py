"""MoCoV2: queue and momentum logic, augmentations, patch store reading, tiny pretrain run with resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emseg.pretrain.augment import AugmentConfig, augment_view, random_affine, warp
from emseg.pretrain.moco import MoCo


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a shared 2-core machine more threads only fight each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_patch_store(path, n=40, size=64, seed=0, kept_every=1, small_every=5):
    """A patch store exactly as `emseg curate` writes it (zarr v2; see emseg.pretrain.data)."""
    import zarr

    from emseg.synth import make_volume

    rng = np.random.default_rng(seed)
    vol = make_volume((8, 128, 128), (8.0, 8.0, 8.0), seed=seed).raw
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    patches = group.create_array("patches", shape=(n, size, size), chunks=(16, size, size), dtype="uint8")
    heights = np.full(n, size, np.int32)
    widths = np.full(n, size, np.int32)
    data = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        z, y, x = rng.integers(0, 8), rng.integers(0, 128 - size), rng.integers(0, 128 - size)
        if small_every and i % small_every == 0:
            heights[i], widths[i] = size // 2, size - 8
        data[i, :heights[i], :widths[i]] = vol[z, y:y + heights[i], x:x + widths[i]]
    patches[:] = data
    columns = {"dataset": np.zeros(n, np.int32), "plane": np.zeros(n, np.uint8), "slice": np.zeros(n, np.int32),
               "y": np.zeros(n, np.int32), "x": np.zeros(n, np.int32), "height": heights, "width": widths,
               "hash": np.arange(n, dtype=np.uint64), "exemplar": np.arange(n, dtype=np.int64),
               "score": np.ones(n, np.float32), "kept": (np.arange(n) % kept_every == 0)}
    table = group.create_group("table")
    for name, values in columns.items():
        table.create_array(name, shape=values.shape, dtype=values.dtype)[:] = values
    group.attrs["emseg"] = {"kind": "patch_store", "patch_size": size, "complete": True, "datasets": ["synth"]}
    return path


def test_momentum_update_formula():
    torch.manual_seed(0)
    moco = MoCo("resnet18", 4, dim=8, queue_size=16, momentum=0.9)
    with torch.no_grad():
        for p in moco.encoder_q.parameters():
            p.add_(1.0)
    q = [p.clone() for p in moco.encoder_q.parameters()]
    k = [p.clone() for p in moco.encoder_k.parameters()]
    moco.momentum_update()
    for pq, pk, new in zip(q, k, moco.encoder_k.parameters()):
        assert torch.allclose(new, 0.9 * pk + 0.1 * pq)
    assert all(not p.requires_grad for p in moco.encoder_k.parameters())


def test_queue_enqueue_and_wrap():
    moco = MoCo("resnet18", 4, dim=8, queue_size=10)
    keys1 = torch.arange(6 * 8, dtype=torch.float32).view(6, 8)
    moco.enqueue(keys1)
    assert int(moco.queue_ptr) == 6
    assert torch.equal(moco.queue[:, :6], keys1.T)
    keys2 = -torch.arange(1, 6 * 8 + 1, dtype=torch.float32).view(6, 8)
    moco.enqueue(keys2)
    assert int(moco.queue_ptr) == 2  # (6 + 6) % 10: the pointer wraps
    assert torch.equal(moco.queue[:, 6:10], keys2[:4].T)
    assert torch.equal(moco.queue[:, 0:2], keys2[4:].T)


def test_forward_logits_positive_first_and_queue_grows():
    torch.manual_seed(0)
    moco = MoCo("resnet18", 4, dim=8, queue_size=32, bn_groups=2)
    x = torch.randn(8, 1, 32, 32)
    logits, target = moco(x, x.clone())
    assert logits.shape == (8, 33) and target.eq(0).all()
    assert int(moco.queue_ptr) == 8
    # keys went into the queue L2-normalised
    assert torch.allclose(moco.queue[:, :8].norm(dim=0), torch.ones(8), atol=1e-5)


def test_affine_identity_and_crop_inside_true_region():
    cfg = AugmentConfig(out_size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), rotate_p=0, flip=False)
    img = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16)
    theta = random_affine(torch.tensor([[16, 16]]), (16, 16), cfg)
    assert torch.allclose(warp(img, theta, 16), img, atol=1e-3)
    # a 32x32 canvas whose true content is the top-left 8x8 (value 1), the rest 0: crops never leave it
    canvas = torch.zeros(64, 1, 32, 32)
    canvas[:, :, :8, :8] = 1
    cfg2 = AugmentConfig(out_size=8, scale=(0.2, 1.0), rotate_p=0, flip=True)
    out = warp(canvas, random_affine(torch.tensor([[8, 8]] * 64), (32, 32), cfg2), 8)
    assert out.min() > 0.5 and out.mean() > 0.97  # only bilinear edge blending touches the padding


def test_augment_view_is_random_normalised_and_sized():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (6, 1, 40, 40), dtype=torch.uint8)
    sizes = torch.tensor([[40, 40]] * 6)
    a = augment_view(x, sizes, AugmentConfig(out_size=24), 0.5, 0.2, gen)
    b = augment_view(x, sizes, AugmentConfig(out_size=24), 0.5, 0.2, gen)
    assert a.shape == (6, 1, 24, 24) and not torch.allclose(a, b)
    assert torch.isfinite(a).all()


def test_patch_store_reading(tmp_path):
    from emseg.pretrain.data import iterate_batches, open_patch_store, patch_stats

    make_patch_store(tmp_path / "p.zarr", n=40, kept_every=2)
    table = open_patch_store(tmp_path / "p.zarr")
    assert len(table) == 20
    batches = list(iterate_batches(table, 6, seed=0))
    assert len(batches) == 3 and batches[0][0].shape == (6, 64, 64)
    images, sizes = batches[0]
    small = np.flatnonzero(sizes[:, 0] == 32)
    for i in small:  # mirrored, not zero-padded
        assert (images[i, 32:] > 0).mean() > 0.9
    mean, std = patch_stats(table)
    assert 0 < mean < 1 and 0 < std < 0.5


def test_incomplete_store_is_refused(tmp_path):
    import zarr

    from emseg.errors import CorruptFileError
    from emseg.pretrain.data import open_patch_store

    make_patch_store(tmp_path / "p.zarr", n=16)
    zarr.open_group(str(tmp_path / "p.zarr"), mode="r+").attrs["emseg"] = {"kind": "patch_store", "complete": False}
    with pytest.raises(CorruptFileError, match="incomplete"):
        open_patch_store(tmp_path / "p.zarr")


@pytest.mark.timeout(120)
def test_tiny_pretrain_resume_and_outputs(tmp_path):
    from emseg.models.resnet import ResNet, load_encoder_weights
    from emseg.pretrain.run import PretrainConfig, pretrain, state_path

    store = make_patch_store(tmp_path / "p.zarr", n=32)
    cfg = PretrainConfig(arch="resnet18", width=4, epochs=1, batch_size=8, queue_size=64, image_size=32,
                         steps_per_epoch=2, device="cpu")
    out = tmp_path / "enc.pt"
    first = pretrain(store, out, cfg, progress=False)
    assert out.exists() and out.with_suffix(".png").exists() and state_path(out).exists()
    assert first["images_per_s"] > 0 and len(first["history"]) == 1
    resumed = pretrain(store, out, cfg.model_copy(update={"epochs": 2}), resume=True, progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    payload = torch.load(out, weights_only=False)
    assert all(k.startswith("module.encoder_q.") for k in payload["state_dict"])
    assert payload["config"]["arch"] == "resnet18" and len(payload["norms"]) == 2
    encoder = ResNet("resnet18", 1, 4)
    assert load_encoder_weights(encoder, out) == pytest.approx(tuple(payload["norms"]))
    from emseg.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        pretrain(store, out, cfg, progress=False)
