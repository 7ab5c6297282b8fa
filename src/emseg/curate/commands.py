"""`emseg curate ...`: curation, labelling sheet, filter training and the report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from emseg.errors import ConfigError


class _DefaultRun(TyperGroup):
    """`emseg curate SOURCES...` means `emseg curate run SOURCES...`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


curate_app = typer.Typer(
    cls=_DefaultRun,
    no_args_is_help=True,
    help="CEM500K curation: volumes → deduplicated, informative 224 px patches in one zarr store. "
    "`emseg curate SOURCES... -o PATCHES.zarr` runs it (same as `emseg curate run ...`).",
)


@curate_app.command("run")
def run(
    sources: Annotated[list[str], typer.Argument(help="Datasets: PATH or NAME=PATH (volume, 2D image, folder, or a .txt list of sources). One source = one dataset.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Patch store to write (PATCHES.zarr); rerun to resume.")],
    seed: Annotated[int, typer.Option(help="Shuffle seed of the greedy deduplication.")] = 0,
    threshold: Annotated[int, typer.Option(help="Hamming distance (of 64 bits) under which patches are duplicates.")] = 12,
    filter_model: Annotated[Optional[Path], typer.Option("--filter", help="Filter model from `emseg curate train-filter` (default: texture heuristic).")] = None,
    min_score: Annotated[float, typer.Option(help="Keep exemplars scoring at least this.")] = 0.5,
    report: Annotated[bool, typer.Option(help="Write report.md and contact sheets beside the store.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Start again instead of resuming.")] = False,
) -> None:
    """Curate SOURCES into one patch store (progress bar; resumable per dataset)."""
    from emseg.curate.pipeline import curate

    scorer = None
    if filter_model is not None:
        from emseg.curate.cnn_filter import load_filter

        scorer = load_filter(filter_model)
    store = curate(sources, output, seed=seed, threshold=threshold, scorer=scorer, min_score=min_score,
                   overwrite=overwrite, log=typer.echo)
    typer.echo(f"wrote {output}: {len(store)} patches, {len(store.kept_indices())} kept")
    if report:
        from emseg.curate.report import write_report

        typer.echo(f"report: {write_report(store, report_folder(output))}")


def report_folder(store_path: Path) -> Path:
    return store_path.parent / (store_path.name.removesuffix(".zarr") + "_report")


@curate_app.command("report")
def report_cmd(
    store: Annotated[Path, typer.Argument(help="Patch store.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Report folder (default: STORE_report).")] = None,
) -> None:
    """Write report.md (counts per stage per dataset) and contact sheets of kept/duplicate/rejected patches."""
    from emseg.curate.report import write_report
    from emseg.curate.store import PatchStore

    typer.echo(f"report: {write_report(PatchStore.open(store), output or report_folder(store))}")


@curate_app.command("sheet")
def sheet_cmd(
    store: Annotated[Path, typer.Argument(help="Patch store.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path("label_patches.html"),
    n: Annotated[int, typer.Option(help="Number of random patches to show.")] = 200,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """HTML labelling sheet: click uninformative patches, press save → labels.csv for train-filter."""
    from emseg.curate.report import labelling_sheet
    from emseg.curate.store import PatchStore

    typer.echo(f"open {labelling_sheet(PatchStore.open(store), output, n=n, seed=seed)} in a browser")


@curate_app.command("train-filter")
def train_filter_cmd(
    labels: Annotated[Path, typer.Argument(help="CSV with columns index,label (informative/uninformative or 1/0).")],
    store: Annotated[Path, typer.Option("--store", help="Patch store the indices refer to.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Filter model to write (.pt).")] = Path("patch_filter.pt"),
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed (split and init).")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads for torch (0 = default).")] = 0,
) -> None:
    """Train the CNN informativeness filter (BCE, 85/15 split) and save it for `emseg curate --filter`."""
    from emseg.curate.cnn_filter import save_filter, train_filter
    from emseg.curate.store import PatchStore

    index, label = read_labels(labels)
    patch_store = PatchStore.open(store)
    if index.max(initial=-1) >= len(patch_store) or index.min(initial=0) < 0:
        raise ConfigError(f"{labels}: patch index out of range for {store} ({len(patch_store)} patches)")
    order = sorted(set(index.tolist()))
    lookup = {r: i for i, r in enumerate(order)}
    patches = patch_store.patches.get_orthogonal_selection((order,))[[lookup[r] for r in index]]
    net, metrics = train_filter(patches, label, epochs=epochs, seed=seed, threads=threads)
    save_filter(output, net, metrics)
    typer.echo(f"wrote {output}; held-out accuracy {metrics['val_accuracy']:.3f} on {metrics['n_val']} patches")


def read_labels(path: Path):
    """(indices, labels 1 = informative) from a labels CSV."""
    import numpy as np
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: no such labels file") from err
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"{path}: not a CSV ({err})") from err
    if not {"index", "label"} <= set(table.columns):
        raise ConfigError(f"{path}: needs columns 'index' and 'label', has {list(table.columns)}")
    words = {"informative": 1, "uninformative": 0, "1": 1, "0": 0, "true": 1, "false": 0}
    raw = table["label"].astype(str).str.strip().str.lower()
    bad = sorted(set(raw) - set(words))
    if bad:
        raise ConfigError(f"{path}: unknown labels {bad}; use informative/uninformative or 1/0")
    return table["index"].to_numpy(dtype=np.int64), raw.map(words).to_numpy(dtype=np.int64)


def register(app: typer.Typer) -> None:
    """Add `emseg curate` to the CLI."""
    app.add_typer(curate_app, name="curate")
