"""Shared fixtures: synthetic volumes and the path to the real EM data (when present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; skip when a fresh clone has none."""
    if not (SHARED_DATA / "lucchi" / "train_image.tif").exists():
        pytest.skip(f"real EM data not found at {SHARED_DATA} (only present beside the project checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synth_small():
    """A small synthetic EM volume (32 × 64 × 64 at 8 nm) with labels."""
    from emseg.synth import make_volume

    return make_volume((32, 64, 64), (8.0, 8.0, 8.0), seed=3)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that reads ../shared/data is ``slow`` (the marker's definition in pyproject.toml), marked or not."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
