"""Strict configs (issue #23 item 4): one base, one vocabulary, old names warn, unknown keys fail
in one line naming the key, and configs stored in checkpoints before still load and resume."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from pydantic import ValidationError

from emseg.config_base import VOCABULARY, StrictConfig
from emseg.demo.settings import DemoSettings
from emseg.errors import ConfigError
from emseg.io.options import from_options
from emseg.prepare.clahe import ClaheConfig
from emseg.prepare.sample_mask import SampleMaskConfig
from emseg.pretrain.benchmark2d import Benchmark2DConfig, TaskSpec
from emseg.pretrain.run import PretrainConfig
from emseg.train.config import Augment, Sampling, Source, TrainConfig
from emseg.train.transfer2d import SliceSet, Transfer2DConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "emseg"
# pydantic configs not on the base yet (another change is editing them): see the note of issue #23
NOT_YET = {"postprocess/pipeline.py", "evaluate"}

SOURCE = {"raw": "raw.tif", "labels": "labels.tif"}
SLICES = {"image": "raw.tif", "labels": "labels.tif"}
TASK = {"name": "t", "raw": "raw.tif", "labels": "labels.tif", "train": (0, 4), "validation": [4]}
MINIMAL = [  # (config, the least valid input)
    (TrainConfig, {"train": [SOURCE]}), (Source, SOURCE), (Augment, {}), (Sampling, {}),
    (Transfer2DConfig, {"train": SLICES}), (SliceSet, SLICES), (PretrainConfig, {}),
    (Benchmark2DConfig, {}), (TaskSpec, TASK), (SampleMaskConfig, {}), (ClaheConfig, {}), (DemoSettings, {}),
]


def test_every_pydantic_config_derives_from_the_base():
    plain = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel == "config_base.py" or any(rel.startswith(skip) for skip in NOT_YET):
            continue
        plain += [f"{rel}: {m}" for m in re.findall(r"class (\w+)\((?:pydantic\.)?BaseModel\)", path.read_text())]
    assert not plain, plain
    for cls, _ in MINIMAL:
        assert issubclass(cls, StrictConfig)
        assert cls.model_config["extra"] == "forbid" and cls.model_config["validate_assignment"]


@pytest.mark.parametrize("cls, valid", MINIMAL, ids=[c.__name__ for c, _ in MINIMAL])
def test_unknown_key_is_one_line_naming_it(cls, valid):
    with pytest.raises(ConfigError) as err:
        cls.from_dict({**valid, "iteratons": 5}, where="run.yaml")
    assert str(err.value) == "run.yaml: iteratons: unknown key"
    with pytest.raises(ValidationError):  # built in Python: pydantic's error; the CLI prints it on one line
        cls(**valid, iteratons=5)


def test_unknown_nested_key_and_cli_option_errors_are_one_line():
    with pytest.raises(ConfigError) as err:
        Transfer2DConfig.from_dict({"train": {**SLICES, "slice": [1]}}, where="t.yaml")
    assert str(err.value) == "t.yaml: train → slice: unknown key"
    with pytest.raises(ConfigError, match=r"^--learning-rate -1\.0: Input should be greater than 0$"):
        from_options(PretrainConfig, learning_rate=-1.0)


@pytest.mark.parametrize("cls, valid, old, new, value", [
    (PretrainConfig, {}, "lr", "learning_rate", 0.03),
    (TrainConfig, {"train": [SOURCE]}, "lr", "learning_rate", 0.01),
    (TrainConfig, {"train": [SOURCE]}, "val", "validation", [SOURCE]),
    (TrainConfig, {"train": [SOURCE]}, "val_every", "validate_every", 7),
    (Transfer2DConfig, {"train": SLICES}, "val_every", "validate_every", 7),
    (DemoSettings, {}, "minutes", "max_minutes", 2.0),
    (TaskSpec, {k: v for k, v in TASK.items() if k != "raw"}, "image", "raw", "old.tif"),
    (TaskSpec, {k: v for k, v in TASK.items() if k != "validation"}, "val", "validation", [5, 6]),
    (TaskSpec, TASK, "val_roi", "validation_roi", (0, 8, 0, 8)),
    (SampleMaskConfig, {}, "min_object_size", "min_object_size_vox", 10),
    (SampleMaskConfig, {}, "max_hole_size", "max_hole_size_vox", 10),
])
def test_old_names_warn_and_map_to_the_vocabulary(cls, valid, old, new, value):
    with pytest.warns(DeprecationWarning, match=f"'{old}' is deprecated, use '{new}'"):
        config = cls.model_validate({**valid, old: value})
    current = cls.model_validate({**valid, new: value})
    assert config == current
    with pytest.raises(ConfigError, match=f"give '{new}' only"):
        cls.from_dict({**valid, old: value, new: value})


def test_vocabulary_applies_only_where_the_current_name_is_a_field():
    assert SliceSet.old_names() == {}  # SliceSet still calls its raw volume 'image'
    assert Source.old_names() == {"image": "raw"}
    assert set(VOCABULARY.values()) >= {"learning_rate", "validation", "validate_every", "raw"}
    with pytest.raises(TypeError, match="renamed_keys"):
        class Broken(StrictConfig):
            renamed_keys = {"b": "c"}
            a: int = 0


def test_assignments_are_validated_and_copies_checked():
    config = PretrainConfig()
    with pytest.raises(ValidationError):
        config.epochs = 0
    with pytest.raises(ValidationError):
        config.epoch = 3
    config.epochs = 3
    assert config.epochs == 3
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        config.model_copy(update={"epoch": 1})
    with pytest.warns(DeprecationWarning, match="'lr' is deprecated"):
        assert config.model_copy(update={"lr": 0.5}).learning_rate == 0.5


def test_bundled_checkpoint_config_validates_unchanged():
    """The bundled mito's stored training config (a dict written before the base existed)."""
    from emseg.models import load

    stored = load("mito").training["config"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no key of it is old or unknown
        config = TrainConfig.from_dict(stored, where="mito.pt")
    assert config.model_dump() == stored


def test_old_pretrain_config_from_an_encoder_file_validates():
    old = {**PretrainConfig().model_dump(), "lr": 0.02}
    del old["learning_rate"]
    with pytest.warns(DeprecationWarning):
        assert PretrainConfig.model_validate(old).learning_rate == 0.02


@pytest.mark.timeout(300)
def test_checkpoint_written_before_resumes(tmp_path):
    """Training resumes from the bundled mito (written before the base) as its ``last.pt``."""
    import torch

    from emseg.models import BUNDLED_DIR
    from emseg.train import Trainer

    raw_data = np.random.default_rng(0).integers(0, 256, (96, 96, 96), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", raw_data)
    tifffile.imwrite(tmp_path / "mito.tif", (raw_data > 128).astype(np.uint8))
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(BUNDLED_DIR / "mito.pt", run / "last.pt")
    stored = torch.load(run / "last.pt", weights_only=False)["training"]
    raw = {**stored["config"], "output_dir": str(run), "iterations": stored["iteration"] + 1, "num_workers": 0,
           "output_shape": [8, 8, 8], "validation": [], "max_minutes": None, "precision": "fp32",
           "train": [{"raw": str(tmp_path / "raw.tif"), "labels": str(tmp_path / "mito.tif"),
                      "voxel_size": [10, 10, 10]}]}
    trainer = Trainer(TrainConfig.from_dict(raw), resume=True, progress=False)
    assert trainer.iteration == stored["iteration"] and trainer.config.class_balance is False
    trainer.run()
    assert torch.load(run / "last.pt", weights_only=False)["training"]["iteration"] == stored["iteration"] + 1
