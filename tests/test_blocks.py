"""Block plans, mirrored reads, the ledger and the block pipeline (failures, retries)."""

from __future__ import annotations

import numpy as np
import pytest

from emseg.blocks import Ledger, parse_roi, plan_blocks, reflect_read, run_blocks
from emseg.errors import ConfigError


def test_plan_covers_roi_with_whole_chunks():
    plan = plan_blocks((50, 70, 33), (16, 32, 16), (30, 46, 30), (7, 7, 7), (8, 16, 16),
                       roi=parse_roi("5:40,10:70,:", (50, 70, 33)))
    covered = np.zeros((50, 70, 33), dtype=int)
    for block in plan.blocks:
        covered[block.write] += 1
        for s, c, n in zip(block.write, (8, 16, 16), (50, 70, 33)):
            assert s.start % c == 0 and (s.stop % c == 0 or s.stop == n)  # whole chunks only
        assert block.read_start == tuple(s.start - 7 for s in block.write)
    assert covered.max() == 1  # no voxel written twice: concurrent writers never share a chunk
    assert covered[5:40, 10:70, :].min() == 1
    assert covered[:0].sum() == 0 and covered[48:].sum() == 0  # nothing beyond the chunk-aligned cover
    assert len({b.key for b in plan.blocks}) == len(plan)


def test_plan_rejects_blocks_that_split_chunks_or_pooling_grid():
    with pytest.raises(ConfigError, match="multiple of the output chunks"):
        plan_blocks((32, 32, 32), (24, 16, 16), (24, 16, 16), (0, 0, 0), (16, 16, 16))
    with pytest.raises(ConfigError, match="downsampling"):
        plan_blocks((32, 32, 32), (12, 16, 16), (12, 16, 16), (0, 0, 0), (4, 4, 4), grid=(8, 8, 8))


@pytest.mark.parametrize("roi", ["0:10,0:5,200:300", "5:5,0:5,0:5", "-1:3,:,:", "a:b,:,:", "1:2,3:4"])
def test_bad_roi_is_a_clear_error(roi):
    with pytest.raises(ConfigError, match="ROI"):
        parse_roi(roi, (20, 20, 20), "vol.zarr")


def test_reflect_read_matches_numpy_reflect_padding(rng):
    data = rng.integers(0, 255, (6, 9, 7), dtype=np.uint8)
    padded = np.pad(data, 40, mode="reflect")  # wider than the volume: repeated mirroring
    for start in [(-5, -3, -20), (2, 4, 3), (-20, 5, 1), (3, -1, 6)]:
        got = reflect_read(data, start, (12, 14, 30))
        ref = padded[tuple(slice(s + 40, s + 40 + n) for s, n in zip(start, (12, 14, 30)))]
        np.testing.assert_array_equal(got, ref)


def test_ledger_marks_and_lists(tmp_path):
    ledger = Ledger(tmp_path / "out.zarr")
    assert ledger.done() == set()
    ledger.mark("0_1_2")
    ledger.mark("0_1_2")
    ledger.mark("1_0_0")
    assert ledger.done() == {"0_1_2", "1_0_0"}
    assert not list(ledger.root.glob(".*"))  # no temp files left behind


class FlakyJob:
    """Doubles its input; the write of ``bad`` fails ``fails`` times."""

    def __init__(self, bad: str, fails: int):
        self.bad, self.fails, self.written = bad, fails, {}

    def read(self, block):
        return np.full(block.write_shape, sum(block.index), dtype=np.float32)

    def compute(self, inputs):
        return [x * 2 for x in inputs]

    def write(self, block, result):
        if block.key == self.bad and self.fails > 0:
            self.fails -= 1
            raise OSError("disk hiccup")
        self.written[block.key] = result


@pytest.mark.parametrize("batch_size", [1, 3])
def test_failed_block_is_retried_and_marked_only_after_write(tmp_path, batch_size):
    plan = plan_blocks((8, 8, 8), (4, 4, 4), (4, 4, 4), (0, 0, 0), (4, 4, 4))
    job, ledger = FlakyJob("1_0_1", fails=1), Ledger(tmp_path)
    report = run_blocks(job, plan.blocks, ledger, batch_size=batch_size, retries=1)
    assert report.ok and sorted(report.done) == sorted(b.key for b in plan.blocks)
    assert ledger.done() == set(job.written) and len(job.written) == 8
    assert float(job.written["1_0_1"].max()) == 4.0


def test_failed_block_is_reported_never_marked(tmp_path):
    plan = plan_blocks((8, 8, 8), (4, 4, 4), (4, 4, 4), (0, 0, 0), (4, 4, 4))
    job, ledger = FlakyJob("0_1_1", fails=10), Ledger(tmp_path)
    report = run_blocks(job, plan.blocks, ledger, batch_size=2, retries=2)
    assert set(report.failed) == {"0_1_1"} and "disk hiccup" in report.failed["0_1_1"]
    assert "0_1_1" not in ledger.done() and len(ledger.done()) == 7
    assert job.fails == 7  # tried 3 times (1 + 2 retries)
    again = run_blocks(FlakyJob("none", 0), plan.blocks, ledger)  # a rerun does only the missing block
    assert again.done == ["0_1_1"] and again.skipped == 7
