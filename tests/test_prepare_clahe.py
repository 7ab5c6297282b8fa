"""Blockwise 3D CLAHE: equals whole-volume skimage, shows no seams."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.errors import InvalidValuesError
from emseg.prepare.clahe import ClaheConfig, clahe, tile_weights

skimage_exposure = pytest.importorskip("skimage.exposure")


def reference_clahe(raw: np.ndarray, kernel, clip_limit=0.02, nbins=256) -> np.ndarray:
    """Whole-volume skimage CLAHE as uint8 (float [0, 1] × 255, rounded)."""
    out = skimage_exposure.equalize_adapthist(raw, kernel_size=kernel, clip_limit=clip_limit, nbins=nbins)
    return np.rint(out * 255).astype(np.uint8)


def face_and_inside_gradients(volume: np.ndarray, block: int, axis: int) -> tuple[float, float]:
    """Mean |difference| between neighbours across block faces and inside blocks, along ``axis``."""
    grad = np.abs(np.diff(volume.astype(np.float64), axis=axis))
    index = np.arange(grad.shape[axis])
    at_face = index % block == block - 1
    return float(np.take(grad, index[at_face], axis).mean()), float(np.take(grad, index[~at_face], axis).mean())


@pytest.mark.parametrize("kernel, chunks", [(16, 32), (24, (16, 40, 24)), ((8, 16, 32), 64), (64, 32)])
def test_blockwise_equals_whole_volume(synth_small, kernel, chunks):
    raw = synth_small.raw[:, :60, :50]  # sizes not multiples of the kernel or the blocks
    out = clahe(raw, ClaheConfig(kernel_size=kernel), chunks=chunks).compute()
    assert out.dtype == np.uint8 and out.shape == raw.shape
    assert np.abs(out.astype(int) - reference_clahe(raw, kernel)).max() <= 1


def test_tile_weights_reproduce_reflect_padding():
    size, kernel = 5, 4
    weights = tile_weights(size, kernel)
    padded = np.pad(np.arange(size), (0, 2 * kernel - size), mode="reflect")
    for tile in range(2):
        counts = np.bincount(padded[tile * kernel:(tile + 1) * kernel], minlength=size)
        assert (weights[tile] == counts).all()


def test_clahe_uint16_and_float(synth_small):
    raw16 = synth_small.raw.astype(np.uint16) * 200
    ref = reference_clahe(raw16, 16)
    assert np.abs(clahe(raw16, ClaheConfig(kernel_size=16), chunks=32).compute().astype(int) - ref).max() <= 1
    rawf = synth_small.raw.astype(np.float32) / 255
    ref = reference_clahe(rawf, 16)
    assert np.abs(clahe(rawf, ClaheConfig(kernel_size=16), chunks=32).compute().astype(int) - ref).max() <= 1


def test_bad_input():
    with pytest.raises(InvalidValuesError, match="constant"):
        clahe(np.full((8, 8, 8), 7, np.uint8), ClaheConfig(kernel_size=4))
    with pytest.raises(InvalidValuesError):
        clahe(np.linspace(-5, 5, 512).reshape(8, 8, 8), ClaheConfig(kernel_size=4))
    with pytest.raises(ValueError):
        ClaheConfig(kernel_size=0)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_lucchi_kernel128_matches_skimage(shared_data):
    """ASEM defaults (kernel 128, clip 0.02, 256 bins) on a Lucchi ROI, blocks not aligned to tiles."""
    from emseg.io import open_volume

    raw = open_volume(str(shared_data / "lucchi" / "train_image.tif"))[:128, 200:328, 300:428]
    out = clahe(raw, chunks=48).compute()
    diff = np.abs(out.astype(int) - reference_clahe(raw, 128))
    assert diff[16:-16, 16:-16, 16:-16].max() <= 1  # the requirement (away from the border)
    assert diff.max() <= 1  # and in fact everywhere: the reflect padding is reproduced


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_no_seams_at_block_faces(shared_data):
    """Gradients across block faces look like gradients inside blocks; per-block CLAHE
    without context (the negative control) shows its seams in the same measure."""
    from emseg.io import open_volume

    raw = open_volume(str(shared_data / "lucchi" / "train_image.tif"))[:64, 256:384, 256:384]
    block = 32
    ours = clahe(raw, ClaheConfig(kernel_size=32), chunks=block).compute()
    naive = np.zeros_like(raw)
    for z in range(0, 64, block):
        for y in range(0, 128, block):
            for x in range(0, 128, block):
                region = np.s_[z:z + block, y:y + block, x:x + block]
                naive[region] = reference_clahe(raw[region], 32)
    for axis in range(3):
        face, inside = face_and_inside_gradients(ours, block, axis)
        assert face <= 1.1 * inside, (axis, face, inside)
        naive_face, naive_inside = face_and_inside_gradients(naive, block, axis)
        assert naive_face > 1.1 * naive_inside, (axis, naive_face, naive_inside)
