"""The training-config source entry for a graph-cut annotation."""

from __future__ import annotations

import os
from collections.abc import Sequence

from emseg.io.roi import format_roi


def training_source_entry(
    raw: str | os.PathLike,
    labels: str | os.PathLike,
    sample_mask: str | os.PathLike,
    roi: Sequence[slice],
    as_yaml: bool = False,
) -> dict | str:
    """One ``sources`` entry of a training YAML: raw image, graph-cut labels (binary, 1 = object),
    the sample mask (1 inside the annotated ROI) and the ROI as ``[[z0, z1], [y0, y1], [x0, x1]]``.

    ``as_yaml=True`` returns the YAML text of a one-item list, ready to paste under ``train:`` (or
    ``validation:``) of a training YAML.
    """
    entry = {
        "raw": os.fspath(raw),
        "labels": os.fspath(labels),
        "sample_mask": os.fspath(sample_mask),
        "roi": [[int(s.start), int(s.stop)] for s in roi],
    }
    if not as_yaml:
        return entry
    import yaml

    return f"# graph-cut annotation of ROI {format_roi(roi)}\n" + yaml.safe_dump([entry], sort_keys=False)
