"""`emseg <verb>`: a thin command-line layer over the library.

Every `EmsegError` is printed as one line (``emseg: error: <file>: <problem>``) with exit
code 2; so is an `OSError` that the file system raised for a named file (read-only, no
permission, link loop, disk full: see `OS_REASONS`); a usage error prints click's usage line
with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from emseg.errors import EmsegError

app = typer.Typer(
    help="emseg: organelle segmentation, meshes and numbers for volume EM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

VoxelSizeOpt = Annotated[
    Optional[tuple[float, float, float]],
    typer.Option("--voxel-size", help="Voxel size Z Y X in nm (overrides the file's metadata)."),
]
ChannelOpt = Annotated[Optional[int], typer.Option("--channel", help="Channel to read from an RGB/multichannel image.")]


def open_input(path: str, voxel_size=None, channel=None, level: str = "0"):
    from emseg.io import open_volume

    return open_volume(path, voxel_size, channel=channel, level=level)


@app.command()
def info(
    path: Annotated[str, typer.Argument(help="Volume: TIFF, slice folder, file.h5:/dataset, zarr, OME-Zarr, N5, MRC.")],
    voxel_size: VoxelSizeOpt = None,
    channel: ChannelOpt = None,
    level: Annotated[str, typer.Option(help="OME-Zarr scale level.")] = "0",
) -> None:
    """Print shape, dtype, voxel size, chunks, size and a sample's value range."""
    import numpy as np

    from emseg.io import describe

    volume = open_input(path, voxel_size, channel, level)
    for key, value in describe(volume).items():
        typer.echo(f"{key:>16}: {value}")
    z = volume.shape[0] // 2
    sample = volume[z]
    typer.echo(f"{'values (z=' + str(z) + ')':>16}: min {np.min(sample)}, max {np.max(sample)}, mean {np.mean(sample):.2f}")


@app.command()
def convert(
    source: Annotated[str, typer.Argument(help="Input volume (any format emseg reads).")],
    output: Annotated[Path, typer.Argument(help="Output OME-Zarr folder (e.g. out.ome.zarr).")],
    voxel_size: VoxelSizeOpt = None,
    chunks: Annotated[int, typer.Option(help="Chunk edge in voxels.")] = 64,
    levels: Annotated[Optional[int], typer.Option(help="Pyramid levels (default: until small).")] = None,
    labels: Annotated[bool, typer.Option("--labels", help="Input is a label volume (mode downsampling).")] = False,
    channel: ChannelOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Convert any volume to OME-Zarr (NGFF 0.4, zarr v2) with a multiscale pyramid."""
    from emseg.io import write_ome_zarr
    from emseg.io.options import require_positive
    from emseg.io.outputs import check_output

    require_positive("--chunks", chunks)
    check_output(output, [source], overwrite)
    volume = open_input(source, voxel_size, channel)
    start = time.perf_counter()
    out = write_ome_zarr(volume, output, chunks=chunks, levels=levels,
                         kind="labels" if labels else "image", overwrite=overwrite, progress=True)
    typer.echo(f"wrote {out} ({volume.shape}, {volume.voxel_size} nm) in {time.perf_counter() - start:.1f} s")


# Each stage adds its commands in emseg/<stage>/commands.py, which defines
# ``register(app: typer.Typer)``; list the module here (one line per stage).
# Keep heavy imports (torch, dask) inside the command functions so `emseg --help` stays fast.
COMMAND_MODULES: list[str] = [
    "emseg.train.commands",
    "emseg.postprocess.commands",
    "emseg.evaluate.commands",
    "emseg.measure.commands",
    "emseg.curate.commands",
    "emseg.prepare.commands",
    "emseg.pretrain.commands",
    "emseg.predict.commands",
    "emseg.annotate.commands",
    "emseg.demo.commands",
]
for _module in COMMAND_MODULES:
    __import__(_module, fromlist=["register"]).register(app)


def _click_errors() -> tuple[type[Exception], ...]:
    """``ClickException`` of click and of the copy that typer vendors as ``typer._click`` (typer >= 0.2x)."""
    import importlib

    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except ImportError:
            continue
    return tuple(found)


#: errno values of an `OSError` that are the file system's answer, not a bug: printed as one line
OS_REASONS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.ELOOP,
                        errno.ENAMETOOLONG, errno.ENOSPC, errno.EDQUOT})


def os_error_line(err: OSError) -> str | None:
    """``<file>: <reason>`` for an `OSError` of `OS_REASONS` that names its file, else ``None``.
    A hidden temporary ``.NAME.partial-…`` (an output being written) is shown as ``NAME``."""
    import os

    from emseg.io.tempfiles import partial_output_name

    if err.errno not in OS_REASONS or err.filename is None:
        return None
    name = os.fsdecode(err.filename)
    head, tail = os.path.split(name)
    output = partial_output_name(tail)
    if output is None:
        return f"{name}: {err.strerror or err}"
    return f"{os.path.join(head, output)}: cannot write the output ({err.strerror or err})"


def _validation_error() -> type[Exception]:
    """pydantic's ValidationError, imported only when an error is being handled."""
    from pydantic import ValidationError

    return ValidationError


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning `EmsegError` into one line and exit code 2."""
    warnings.formatwarning = lambda msg, cat, *a, **k: f"emseg: warning: {msg}\n"
    try:
        app(args=argv, standalone_mode=False)
    except EmsegError as err:
        typer.echo(f"emseg: error: {err}", err=True)
        return 2
    except typer.Exit as exit_:
        return exit_.exit_code
    except typer.Abort:
        typer.echo("emseg: aborted", err=True)
        return 1
    except _click_errors() as err:  # usage errors: one usage line (the help for a bare `emseg`)
        err.show()
        return err.exit_code
    except _validation_error() as err:  # a config built without a one-line check of its own
        from emseg.io.options import validation_line

        typer.echo(f"emseg: error: {validation_line(err)}", err=True)
        return 2
    except OSError as err:  # a backstop: outputs are checked before any work (io.outputs.check_writable)
        line = os_error_line(err)
        if line is None:
            raise
        typer.echo(f"emseg: error: {line}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
