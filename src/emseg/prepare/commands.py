"""`emseg prepare clahe|sample-mask|exclusion-mask|match-histogram`: blockwise data
preparation across cells, each writing an OME-Zarr with the input's voxel size."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from emseg.timing import Clock, timed

prepare_app = typer.Typer(
    help="Prepare volumes for training across cells (blockwise, memory-bounded, OME-Zarr out).",
    no_args_is_help=True,
)

VoxelSizeOpt = Annotated[
    Optional[tuple[float, float, float]],
    typer.Option("--voxel-size", help="Voxel size Z Y X in nm (overrides the file's metadata)."),
]
ChunksOpt = Annotated[int, typer.Option(help="Output chunk edge in voxels (dask blocks are multiples of it).")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing output.")]
InArg = Annotated[str, typer.Argument(help="Input volume (TIFF, HDF5 file.h5:/ds, zarr, OME-Zarr, N5, MRC).")]
OutArg = Annotated[Path, typer.Argument(help="Output OME-Zarr folder (e.g. cell.clahe.ome.zarr).")]


def _check_output(path: Path, overwrite: bool, *inputs: str | None, chunks: int = 64) -> None:
    """The shared output check (never an input or a folder holding one; exists → --overwrite)
    and the --chunks range check, before any work."""
    from emseg.io.options import require_positive
    from emseg.io.outputs import check_output

    require_positive("--chunks", chunks)
    check_output(path, inputs, overwrite)


def _write(data, output: Path, volume, kind: str, chunks: int, overwrite: bool, params: dict, clock: Clock) -> None:
    from emseg.io import write_ome_zarr

    write_ome_zarr(data, output, volume.voxel_size, chunks=chunks, kind=kind, overwrite=overwrite,
                   progress=True, attrs={"source": str(volume.path), "prepare": params})
    typer.echo(f"wrote {output} ({tuple(volume.shape)}, {tuple(volume.voxel_size)} nm) in {clock} "
               f"({volume.size / 1e6 / clock.seconds:.1f} MVox/s)")


@prepare_app.command("clahe")
def clahe_command(
    source: InArg,
    output: OutArg,
    kernel_size: Annotated[int, typer.Option(help="Contextual region edge in voxels.")] = 128,
    clip_limit: Annotated[float, typer.Option(help="Clip limit (skimage's normalised meaning).")] = 0.02,
    nbins: Annotated[int, typer.Option(help="Histogram bins.")] = 256,
    voxel_size: VoxelSizeOpt = None,
    chunks: ChunksOpt = 64,
    overwrite: OverwriteOpt = False,
) -> None:
    """3D CLAHE (uint8 out), identical to whole-volume skimage equalize_adapthist, computed blockwise."""
    from emseg.io.options import from_options
    from emseg.prepare.clahe import ClaheConfig, clahe
    from emseg.prepare.common import as_volume

    clock = timed()
    config = from_options(ClaheConfig, kernel_size=kernel_size, clip_limit=clip_limit, nbins=nbins)
    _check_output(output, overwrite, source, chunks=chunks)
    volume = as_volume(source, voxel_size)
    data = clahe(volume, config, chunks=chunks, progress=True)
    _write(data, output, volume, "image", chunks, overwrite, {"step": "clahe", **config.model_dump()}, clock)


@prepare_app.command("sample-mask")
def sample_mask_command(
    source: InArg,
    output: OutArg,
    low: Annotated[float, typer.Option(help="Keep voxels with value > LOW.")] = 2,
    high: Annotated[float, typer.Option(help="Keep voxels with value < HIGH.")] = 180,
    opening_radius: Annotated[int, typer.Option(help="Ball radius of the opening (voxels).")] = 3,
    closing_radius: Annotated[int, typer.Option(help="Ball radius of the closing (voxels).")] = 2,
    min_object_size: Annotated[int, typer.Option(help="Remove objects smaller than this (voxels).")] = 100_000,
    max_hole_size: Annotated[int, typer.Option(help="Fill holes smaller than this (voxels).")] = 100_000,
    max_voxels_in_memory: Annotated[int, typer.Option(
        help="Size cleaning runs on in memory; larger volumes are cleaned on a downsampled copy.")] = 2**27,
    voxel_size: VoxelSizeOpt = None,
    chunks: ChunksOpt = 64,
    overwrite: OverwriteOpt = False,
) -> None:
    """Sample mask (1 = cell, 0 = resin/empty): threshold, opening, closing, small objects/holes removed."""
    from emseg.prepare.common import as_volume
    from emseg.prepare.sample_mask import SampleMaskConfig, sample_mask

    clock = timed()
    _check_output(output, overwrite, source, chunks=chunks)
    try:
        config = SampleMaskConfig(low=low, high=high, opening_radius=opening_radius, closing_radius=closing_radius,
                                  min_object_size_vox=min_object_size, max_hole_size_vox=max_hole_size,
                                  max_voxels_in_memory=max_voxels_in_memory)
    except ValueError as err:  # pydantic's ValidationError
        from emseg.errors import ConfigError
        from emseg.io.options import first_problem

        raise ConfigError(f"sample-mask options: {first_problem(err)}") from None
    volume = as_volume(source, voxel_size)
    data = sample_mask(volume, config, chunks=chunks, progress=True)
    _write(data, output, volume, "labels", chunks, overwrite, {"step": "sample_mask", **config.model_dump()}, clock)


@prepare_app.command("exclusion-mask")
def exclusion_mask_command(
    labels: Annotated[str, typer.Argument(help="Label volume (binary or instances; integer dtype).")],
    output: OutArg,
    width: Annotated[Optional[int], typer.Option(help="Excluded band half-width in voxels (>= 0).")] = None,
    organelle: Annotated[Optional[str], typer.Option(
        help="Use ASEM's width for: mito (4), er (2), golgi (2), nuclear_pores (1), coated_pits (2).")] = None,
    image: Annotated[Optional[str], typer.Option(help="Raw volume the labels belong to (shapes are checked).")] = None,
    voxel_size: VoxelSizeOpt = None,
    chunks: ChunksOpt = 64,
    overwrite: OverwriteOpt = False,
) -> None:
    """Metric mask: 0 within WIDTH voxels of every label boundary, 1 elsewhere (ASEM's boundary exclusion)."""
    from emseg.prepare.common import as_volume
    from emseg.prepare.exclusion import exclusion_mask, exclusion_width

    clock = timed()
    _check_output(output, overwrite, labels, image, chunks=chunks)
    width = exclusion_width(width, organelle)
    volume = as_volume(labels, voxel_size)
    data = exclusion_mask(volume, width, image=image, chunks=chunks)
    _write(data, output, volume, "labels", chunks, overwrite, {"step": "exclusion_mask", "width": width}, clock)


@prepare_app.command("match-histogram")
def match_histogram_command(
    source: InArg,
    reference: Annotated[str, typer.Argument(help="Reference cell's volume (same bit depth).")],
    output: OutArg,
    mask: Annotated[Optional[str], typer.Option(help="Sample mask of the input: only voxels > 0 count.")] = None,
    reference_mask: Annotated[Optional[str], typer.Option(help="Sample mask of the reference.")] = None,
    voxel_size: VoxelSizeOpt = None,
    chunks: ChunksOpt = 64,
    overwrite: OverwriteOpt = False,
) -> None:
    """Map the input's grey levels so that its histogram matches the reference cell's."""
    from emseg.prepare.common import as_volume
    from emseg.prepare.histogram import match_histogram

    clock = timed()
    _check_output(output, overwrite, source, reference, mask, reference_mask, chunks=chunks)
    volume = as_volume(source, voxel_size)
    data = match_histogram(volume, reference, mask, reference_mask, chunks=chunks, progress=True)
    params = {"step": "match_histogram", "reference": str(reference), "mask": mask, "reference_mask": reference_mask}
    _write(data, output, volume, "image", chunks, overwrite, params, clock)


def register(app: typer.Typer) -> None:
    """Add `emseg prepare ...` to the main CLI."""
    app.add_typer(prepare_app, name="prepare")
