"""`emseg annotate`: strokes on a few planes → dense mask (OME-Zarr) + sample mask + training entry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from emseg.timing import timed


def sample_mask_path(output: Path) -> Path:
    """``mask.ome.zarr`` → ``mask_sample_mask.ome.zarr`` (beside it)."""
    name = output.name
    stem = name[: -len(".ome.zarr")] if name.endswith(".ome.zarr") else output.stem
    return output.with_name(f"{stem}_sample_mask.ome.zarr")


def register(app: typer.Typer) -> None:
    @app.command()
    def annotate(
        image: Annotated[str, typer.Argument(help="Raw volume (any format emseg reads).")],
        strokes: Annotated[str, typer.Argument(
            help="Stroke label volume of the image's shape: 0 = none, 1 = object, 2 = background.")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Output mask, OME-Zarr (e.g. mito.ome.zarr).")],
        roi: Annotated[Optional[str], typer.Option(
            help="Region to annotate, z0:z1,y0:y1,x0:x1 in voxels (default: whole volume).")] = None,
        voxel_size: Annotated[Optional[tuple[float, float, float]], typer.Option(
            "--voxel-size", help="Voxel size Z Y X in nm (overrides the file's metadata).")] = None,
        learned_weight: Annotated[float, typer.Option(
            help="Weight of the learned term (random forest on multi-scale texture features; 0 = off).")] = 1.0,
        prior: Annotated[Optional[str], typer.Option(
            help="A probability map of the image's shape (e.g. `emseg predict` output) that the strokes "
                 "correct: adds its -log p term per supervoxel.")] = None,
        prior_weight: Annotated[float, typer.Option(help="Weight of the prior's term.")] = 1.0,
        prior_threshold: Annotated[Optional[float], typer.Option(
            help="The prior's decision threshold (default: the one stored with the map by `emseg predict`, "
                 "else 0.5).")] = None,
        hist_weight: Annotated[float, typer.Option(help="Weight of the intensity-histogram term.")] = 0.0,
        dist_weight: Annotated[float, typer.Option(help="Weight of the distance-to-stroke term.")] = 0.0,
        smoothness: Annotated[float, typer.Option(help="Weight of the contrast-sensitive smoothness term.")] = 1.0,
        supervoxel_nm: Annotated[Optional[float], typer.Option(
            help="Supervoxel edge in nm (default 5 voxels).")] = None,
        memory_gb: Annotated[float, typer.Option(help="Memory budget; larger ROIs are refused with a suggestion.")] = 4.0,
        ignore_outside: Annotated[bool, typer.Option(
            "--ignore-outside", help="Ignore strokes outside the ROI instead of failing.")] = False,
        sample_mask: Annotated[Optional[Path], typer.Option(
            help="Sample-mask output (default: <output>_sample_mask.ome.zarr).")] = None,
        yaml_out: Annotated[Optional[Path], typer.Option(
            "--yaml", help="Also write the training-config source entry (YAML) here.")] = None,
        overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    ) -> None:
        """Graph cut: a few brush strokes on a few planes → a dense 3D binary mask.

        Writes the mask (1 = object, volume-shaped, 0 outside the ROI) and a sample mask
        (1 inside the ROI) as OME-Zarr labels, and prints the training-config source entry.
        """
        from emseg.annotate import graph_cut, training_source_entry
        from emseg.io import open_volume, write_ome_zarr
        from emseg.io.outputs import check_output, check_writable

        sample_out = sample_mask or sample_mask_path(output)
        for path in (output, sample_out):  # before the graph cut, which takes seconds to minutes
            check_output(path, [image, strokes, prior], overwrite)
        if yaml_out is not None:
            check_writable(yaml_out)
        volume = open_volume(image, voxel_size)
        stroke_volume = open_volume(strokes, volume.voxel_size)
        prior_volume = None if prior is None else open_volume(prior, volume.voxel_size)
        clock = timed()
        result = graph_cut(volume, stroke_volume, volume.voxel_size, roi=roi, learned_weight=learned_weight,
                           prior=prior_volume, prior_weight=prior_weight,
                           prior_threshold=prior_threshold, hist_weight=hist_weight,
                           dist_weight=dist_weight, smoothness=smoothness, supervoxel_nm=supervoxel_nm,
                           memory_budget=int(memory_gb * 2**30), ignore_outside=ignore_outside, progress=True)
        attrs = {"emseg": {"annotate": {"roi": [[s.start, s.stop] for s in result.roi], "strokes": strokes,
                                        "n_supervoxels": result.n_supervoxels}}}
        write_ome_zarr(result.full_mask(), output, volume.voxel_size, kind="labels", overwrite=overwrite,
                       progress=True, attrs=attrs)
        write_ome_zarr(result.sample_mask(), sample_out, volume.voxel_size, kind="labels", overwrite=overwrite,
                       progress=False, attrs=attrs)
        fraction = float(result.mask.mean())
        typer.echo(f"wrote {output} ({fraction:.1%} of the ROI is object) and {sample_out} "
                   f"in {clock}")
        entry = training_source_entry(image, output, sample_out, result.roi, as_yaml=True)
        if yaml_out is not None:
            yaml_out.write_text(entry)
            typer.echo(f"wrote the training source entry to {yaml_out}")
        typer.echo(entry.rstrip())
