"""One ROI rule for every command: parse, refuse (never clip), format."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.annotate.graph_cut import graph_cut
from emseg.errors import ConfigError
from emseg.io.roi import format_roi, parse_roi


@pytest.mark.parametrize("roi", ["2:10,:,5:", [(2, 10), (0, 20), (5, 30)], (slice(2, 10), slice(None), slice(5, None))])
def test_a_roi_is_the_same_region_whether_written_as_text_pairs_or_slices(roi):
    region = parse_roi(roi, (20, 20, 30))
    assert region == (slice(2, 10), slice(0, 20), slice(5, 30))
    assert parse_roi(format_roi(region), (20, 20, 30)) == region


def test_annotate_refuses_the_roi_that_predict_refuses_instead_of_clipping_it():
    raw = np.zeros((8, 16, 16), np.uint8)
    strokes = np.zeros((8, 16, 16), np.uint8)
    with pytest.raises(ConfigError, match="ROI 0:1000 on axis z is empty or outside the volume"):
        graph_cut(raw, strokes, (8, 8, 8), roi="0:1000,-10:,5:20")
    with pytest.raises(ConfigError, match="raw.tif: ROI -10:16 on axis y"):
        parse_roi("0:8,-10:,5:10", raw.shape, "raw.tif")
    with pytest.raises(ConfigError, match="step"):
        parse_roi((slice(0, 8, 2), slice(None), slice(None)), raw.shape)


def test_a_training_source_whose_roi_leaves_the_volume_is_refused_with_its_name(tmp_path):
    import tifffile

    from emseg.train.config import Source
    from emseg.train.data import open_source

    tifffile.imwrite(tmp_path / "raw.tif", np.zeros((8, 16, 16), np.uint8))
    tifffile.imwrite(tmp_path / "labels.tif", np.ones((8, 16, 16), np.uint8))
    source = Source(name="cell1", raw=str(tmp_path / "raw.tif"), labels=str(tmp_path / "labels.tif"),
                    voxel_size=[8, 8, 8], roi=[[0, 4], [0, 16], [0, 20]])
    with pytest.raises(ConfigError, match="source cell1: ROI 0:20 on axis x is empty or outside"):
        open_source(source, "train[0]")
