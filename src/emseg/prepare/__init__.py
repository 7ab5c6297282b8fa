"""Data preparation across cells: blockwise CLAHE, sample masks, exclusion masks, histogram matching."""
