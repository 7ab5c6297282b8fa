"""One normaliser for training and prediction: the sampler's network input equals what
`emseg predict` feeds the network for the same crop when augmentation is off."""

from __future__ import annotations

import numpy as np

from emseg.blocks.plan import Block
from emseg.io.volume import array_volume
from emseg.models.normalization import Normalization, normalize
from emseg.predict.engine import PredictJob
from emseg.train.config import Augment, Sampling
from emseg.train.data import BlockSampler, RegionReader, SourceData


def test_training_input_equals_prediction_input_for_the_same_crop_without_augmentation():
    shape, input_shape, output_shape = (40, 40, 40), (12, 12, 12), (4, 4, 4)
    raw = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)  # every voxel's value is its index
    whole = tuple(slice(0, n) for n in shape)
    source = SourceData("s", RegionReader(raw, whole), RegionReader(np.ones(shape, np.uint8), whole), None, None,
                        "nonzero", None, (8.0, 8.0, 8.0), 1.0)
    normalization = {"mean": 0.3, "std": 0.2}
    off = Augment(mirror=False, transpose=False, elastic_probability=0, intensity_scale=0, intensity_shift=0)
    sampler = BlockSampler([source], input_shape, output_shape, normalization, off, Sampling(min_foreground=0))
    job = PredictJob(volume=array_volume(raw, (8, 8, 8)), model_source=None, output="",
                     geometry=type("Geometry", (), {"read_shape": input_shape}), normalization=normalization)
    rng = np.random.default_rng(0)
    compared = 0
    while compared < 5:
        x = sampler.sample(rng)["raw"][0].numpy()
        unit = x.astype(np.float64) * normalization["std"] + normalization["mean"]
        corner = np.unravel_index(int(round(unit[0, 0, 0] * 65535)), shape)
        if not all((np.diff(x, axis=a) > 0).all() for a in range(3)):
            continue  # a crop mirrored at the border (values of an interior crop rise along every axis)
        predicted = job.read(Block((0, 0, 0), whole, tuple(int(c) for c in corner)))
        np.testing.assert_array_equal(x, predicted)
        compared += 1
    crop = raw[:12, :12, :12]
    np.testing.assert_array_equal(Normalization.of(normalization).apply(crop), normalize(crop, 0.3, 0.2))
