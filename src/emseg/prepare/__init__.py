"""Data preparation across cells: blockwise CLAHE, sample masks, exclusion masks, histogram matching.

Each function returns a lazy uint8 dask array (the sample mask: a numpy array when the
volume fits the in-memory budget) to write with `emseg.io.write_ome_zarr`; see docs/prepare.md.
"""

from emseg.prepare.clahe import ClaheConfig, clahe
from emseg.prepare.exclusion import ORGANELLE_WIDTHS, exclusion_mask
from emseg.prepare.histogram import match_histogram
from emseg.prepare.sample_mask import SampleMaskConfig, sample_mask

__all__ = ["ORGANELLE_WIDTHS", "ClaheConfig", "SampleMaskConfig", "clahe", "exclusion_mask", "match_histogram",
           "sample_mask"]
