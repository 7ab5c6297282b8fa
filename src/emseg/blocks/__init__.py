"""Block plans (write ROI + read ROI, chunk-aligned), the done-block ledger, execution on Dask."""

from emseg.blocks.execute import RunReport, run_blocks, run_pipeline
from emseg.blocks.ledger import Ledger
from emseg.blocks.plan import Block, BlockPlan, block_shape_for, plan_blocks, reflect_read
from emseg.io.roi import parse_roi  # the one ROI rule, also part of this package's API

__all__ = ["Block", "BlockPlan", "Ledger", "RunReport", "block_shape_for", "parse_roi", "plan_blocks",
           "reflect_read", "run_blocks", "run_pipeline"]
