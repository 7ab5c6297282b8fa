"""Data preparation across cells: blockwise CLAHE, sample masks, exclusion masks, histogram matching.

Each function returns a lazy uint8 dask array (the sample mask: a numpy array when the
volume fits the in-memory budget) to write with `emseg.io.write_ome_zarr`; see docs/prepare.md.
"""

_EXPORTS = {
    "ClaheConfig": "clahe", "clahe": "clahe",
    "ORGANELLE_WIDTHS": "exclusion", "exclusion_mask": "exclusion",
    "match_histogram": "histogram",
    "SampleMaskConfig": "sample_mask", "sample_mask": "sample_mask",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import lazily, so that `emseg --help` does not pay for scipy/skimage."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"emseg.prepare.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
