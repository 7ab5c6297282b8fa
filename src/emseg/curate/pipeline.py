"""The whole curation: sources → patches → dHash → dedup (per dataset) → filter → one store.

Resumable per dataset: a dataset is marked done in the store's attributes only when all its
rows are written; rerunning the same command skips done datasets and redoes a partial one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emseg.curate.dedup import DEFAULT_THRESHOLD, greedy_exemplars
from emseg.curate.dhash import dhash_patches
from emseg.curate.informative import features_of, heuristic_score
from emseg.curate.patches import check_extent, count_patches, iter_patches, planes_for
from emseg.curate.sources import Dataset, resolve_sources
from emseg.curate.store import PatchStore
from emseg.errors import ConfigError, InvalidValuesError, OutputExistsError

Scorer = Callable[[np.ndarray], np.ndarray]


def heuristic_scorer(patches: np.ndarray, heights=None, widths=None) -> np.ndarray:
    """The default filter: texture heuristic (no training)."""
    return heuristic_score(features_of(patches, heights, widths))


def _converter(volume) -> Callable[[np.ndarray], np.ndarray]:
    """Dataset-wide uint8 conversion (floats: one min–max range for the whole volume)."""
    from emseg.io import to_uint8
    from emseg.io.normalize import estimate_value_range

    if np.dtype(volume.dtype).kind == "f":
        value_range = estimate_value_range(volume)
        return lambda data: to_uint8(data, value_range=value_range)
    return to_uint8


def open_items(dataset: Dataset) -> list:
    """Open every volume of a dataset, checking that each can give patches."""
    from emseg.io import open_volume

    volumes = []
    for item in dataset.items:
        volume = open_volume(item)
        check_extent(volume.shape, item)
        volumes.append(volume)
    return volumes


def _open_store(output: Path, overwrite: bool) -> PatchStore:
    if output.exists() and overwrite:
        shutil.rmtree(output)
    if output.exists():
        if not (output / ".zgroup").exists():
            raise OutputExistsError(f"{output}: exists and is not a patch store; choose another path or --overwrite")
        store = PatchStore.open(output, mode="r+")
        ends = [stop for _, stop in store.done.values()]
        store.truncate(max(ends, default=0))  # drop a partly written dataset
        return store
    return PatchStore.create(output)


def curate(
    sources: list[str],
    output: str | Path,
    *,
    seed: int = 0,
    threshold: int = DEFAULT_THRESHOLD,
    scorer: Scorer | None = None,
    min_score: float = 0.5,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: None,
) -> PatchStore:
    """Run the curation and return the (complete) store. See docs/curation.md."""
    datasets = resolve_sources(sources)
    for ds in datasets:  # fail early on unreadable or too small inputs, before writing anything
        open_items(ds)
    store = _open_store(Path(output), overwrite)
    recorded = store.meta.get("sources", {})
    for ds in datasets:
        if ds.name in recorded and recorded[ds.name] != ds.source:
            raise ConfigError(
                f"{output}: dataset {ds.name!r} was curated from {recorded[ds.name]}, not {ds.source}; "
                "rename it (NAME=PATH) or use a new output"
            )
    store.update_meta(complete=False)
    for ds in datasets:
        if ds.name in store.done:
            log(f"{ds.name}: already curated, skipped")
            continue
        curate_dataset(store, ds, seed=seed, threshold=threshold, scorer=scorer, min_score=min_score,
                       progress=progress)
        counts = dataset_counts(store, ds.name)
        log(f"{ds.name}: {counts['patches']} patches, {counts['exemplars']} exemplars, {counts['kept']} kept")
    store.update_meta(complete=True)
    return store


def curate_dataset(
    store: PatchStore, ds: Dataset, *, seed: int, threshold: int, scorer: Scorer | None, min_score: float,
    progress: bool = True,
) -> None:
    """Extract, hash, deduplicate and score one dataset, then mark it done."""
    from tqdm import tqdm

    names = store.dataset_names
    if ds.name not in names:
        names.append(ds.name)
    index = names.index(ds.name)
    store.update_meta(datasets=names, sources={**store.meta.get("sources", {}), ds.name: ds.source})
    start = len(store)
    volumes = open_items(ds)
    total = sum(count_patches(v.shape, planes_for(v.shape, v.voxel_size)) for v in volumes)
    lo, hi = 255, 0
    with tqdm(total=total, desc=f"{ds.name}: patches", unit="patch", disable=not progress) as bar:
        for volume in volumes:
            for batch in iter_patches(volume, _converter(volume)):
                lo, hi = min(lo, int(batch.patches.min())), max(hi, int(batch.patches.max()))
                hashes = dhash_patches(batch.patches, batch.height, batch.width)
                store.append(batch.patches, {
                    "dataset": np.full(len(batch), index), "plane": batch.plane, "slice": batch.slice,
                    "y": batch.y, "x": batch.x, "height": batch.height, "width": batch.width, "hash": hashes,
                })
                bar.update(len(batch))
    stop = len(store)
    if stop == start or lo == hi:
        store.truncate(start)
        what = "gives no patches" if stop == start else f"is constant (every value is {lo})"
        raise InvalidValuesError(f"{ds.source}: dataset {ds.name!r} {what}; nothing to curate (earlier datasets are kept)")
    exemplar = greedy_exemplars(store.group["table"]["hash"][start:stop], seed=seed, threshold=threshold) + start
    store.write_column("exemplar", start, exemplar)
    score_dataset(store, start, stop, exemplar, scorer, min_score, progress, ds.name)
    store.update_meta(done={**store.done, ds.name: [start, stop]})


def score_dataset(store: PatchStore, start: int, stop: int, exemplar: np.ndarray, scorer: Scorer | None,
                  min_score: float, progress: bool, name: str, batch: int = 256) -> None:
    """Score the exemplars of rows start:stop and set ``kept``."""
    from tqdm import tqdm

    rows = np.flatnonzero(exemplar == np.arange(start, stop)) + start
    heights = store.group["table"]["height"][start:stop]
    widths = store.group["table"]["width"][start:stop]
    score = np.full(stop - start, np.nan, dtype=np.float32)
    for i in tqdm(range(0, len(rows), batch), desc=f"{name}: filter", disable=not progress):
        chunk = rows[i:i + batch]
        patches = store.patches.get_orthogonal_selection((chunk,)) if len(chunk) else None
        h, w = heights[chunk - start], widths[chunk - start]
        score[chunk - start] = heuristic_scorer(patches, h, w) if scorer is None else scorer(patches)
    store.write_column("score", start, score)
    store.write_column("kept", start, (exemplar == np.arange(start, stop)) & (np.nan_to_num(score) >= min_score))


def dataset_counts(store: PatchStore, name: str) -> dict[str, int]:
    """Patches, exemplars (after dedup) and kept (after the filter) of one dataset."""
    start, stop = store.done[name]
    exemplar = store.group["table"]["exemplar"][start:stop]
    kept = store.group["table"]["kept"][start:stop]
    return {"patches": stop - start, "exemplars": int((exemplar == np.arange(start, stop)).sum()),
            "kept": int(kept.sum())}
