"""`emseg measure` (per-object table) and `emseg mesh` (object meshes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from emseg.timing import timed

VoxelSizeOpt = Annotated[Optional[tuple[float, float, float]], typer.Option(
    "--voxel-size", help="Voxel size Z Y X in nm (overrides the file's metadata).")]
BlockOpt = Annotated[tuple[int, int, int], typer.Option(help="Processing block Z Y X (voxels).")]


def register(app: typer.Typer) -> None:
    @app.command()
    def measure(
        labels: Annotated[str, typer.Argument(help="Instance labels (a binary 0/1 mask is split into components), "
                                                   "or a class map from `emseg postprocess MAP1 MAP2 …`.")],
        output: Annotated[Path, typer.Option("--output", "-o", help="CSV table, one row per object.")],
        raw: Annotated[Optional[str], typer.Option(help="Raw EM volume for intensity mean/std.")] = None,
        mask: Annotated[Optional[str], typer.Option(
            help="Binary mask (e.g. a bouton or cell): per class, objects counted inside it (by centroid), "
                 "volume fraction and objects per µm³ of mask.")] = None,
        classes: Annotated[bool, typer.Option(
            "--classes", help="Measure LABELS as a class map (each value a class) even without the class names "
                              "`emseg postprocess` stores.")] = False,
        units: Annotated[str, typer.Option(help="nm | um: units of the table's lengths, areas and volumes.")] = "nm",
        summary_out: Annotated[Optional[Path], typer.Option(
            "--summary", help="Summary CSV (default: <output>.summary.csv).")] = None,
        density_out: Annotated[Optional[Path], typer.Option(
            "--density", help="With --mask: density CSV (default: <output>.density.csv).")] = None,
        plot: Annotated[Optional[Path], typer.Option(help="Histogram PNG (default: <output>.png).")] = None,
        surface: Annotated[bool, typer.Option(help="Surface area and sphericity from meshes.")] = True,
        voxel_size: VoxelSizeOpt = None,
        block: BlockOpt = (64, 256, 256),
        overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
    ) -> None:
        """Per-object volume (nm³), surface area (nm²), equivalent diameter, centroid and
        bounding box (nm), principal axes, elongation, eccentricity, sphericity, intensity
        mean/std and a touches-border flag; plus a summary CSV and histogram PNG. A class map
        gives one table with a `class` column; --mask adds an `in_mask` column and a density CSV."""
        from emseg.errors import InvalidValuesError
        from emseg.io.outputs import check_output
        from emseg.measure.objects import plot_histograms, summary
        from emseg.measure.units import check_units, in_units

        check_units(units)
        if density_out is not None and mask is None:
            raise InvalidValuesError("--density names the density CSV of --mask: give --mask too")
        summary_out = summary_out or output.with_suffix(".summary.csv")
        density_out = (density_out or output.with_suffix(".density.csv")) if mask else None
        plot = plot or output.with_suffix(".png")
        for path in (output, summary_out, plot, density_out):  # all decided before measuring
            if path is not None:
                check_output(path, [labels, raw, mask], overwrite, kind="file")
        clock = timed()
        table, density = measure_table(labels, raw, mask, classes, voxel_size, surface, block)
        table = in_units(table, units)
        output.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(output)
        stats = summary(table)
        stats.to_csv(summary_out)
        plot_histograms(table, plot)
        typer.echo(stats.to_string(float_format=lambda v: f"{v:.4g}"))
        written = [output, summary_out, plot]
        if density is not None:
            density.to_csv(density_out)
            written.append(density_out)
            typer.echo(density.to_string(float_format=lambda v: f"{v:.4g}"))
        typer.echo(f"wrote {len(table)} objects to {', '.join(map(str, written))} "
                   f"in {clock}")

    @app.command()
    def mesh(
        labels: Annotated[str, typer.Argument(help="Instance label volume.")],
        outdir: Annotated[Path, typer.Argument(help="Output folder.")],
        fmt: Annotated[str, typer.Option("--format", help="ply | obj | precomputed (neuroglancer).")] = "ply",
        ids: Annotated[Optional[str], typer.Option(help="Comma-separated object ids (default: all).")] = None,
        simplify: Annotated[float, typer.Option(help="Keep this fraction of faces (0-1].")] = 1.0,
        smooth: Annotated[float, typer.Option(help="Gaussian σ (voxels) before marching cubes; 0 = none.")] = 0.75,
        voxel_size: VoxelSizeOpt = None,
        block: BlockOpt = (64, 256, 256),
    ) -> None:
        """Meshes (vertices in nm, x y z) of all or chosen objects as PLY, OBJ or neuroglancer
        precomputed (legacy mesh source: open OUTDIR as `precomputed://…` in neuroglancer)."""
        from emseg.errors import InvalidValuesError
        from emseg.io.outputs import check_writable
        from emseg.measure.meshes import export_meshes
        from emseg.measure.objects import check_labels
        from emseg.postprocess.pipeline import open_input

        try:
            chosen = [int(v) for v in ids.split(",") if v.strip()] if ids else None
        except ValueError as err:
            raise InvalidValuesError(f"--ids {ids!r}: expected comma-separated integers") from err
        check_writable(outdir, into=True)
        volume = open_input(labels, voxel_size)
        check_labels(volume)
        clock = timed()
        written = export_meshes(volume, outdir, fmt, chosen, simplify, smooth, block, progress=True)
        faces = sum(w["faces"] for w in written)
        typer.echo(f"wrote {len(written)} meshes ({faces} faces) to {outdir} in {clock}")


def measure_table(labels: str, raw: str | None, mask: str | None, force_classes: bool, voxel_size, surface: bool,
                  block) -> tuple:
    """(nm table, density table or None): per class for a class map (stored names, or ``force_classes``)."""
    from emseg.measure.classes import class_names, measure_classes
    from emseg.measure.density import density
    from emseg.measure.objects import check_labels, measure
    from emseg.postprocess.classes import stored_classes
    from emseg.postprocess.pipeline import open_input, processing_chunks

    volume = open_input(labels, voxel_size)
    check_labels(volume)
    names = stored_classes(volume)
    if force_classes or names:
        names = class_names(volume, processing_chunks(volume.shape, block)[0], names)
        table = measure_classes(volume, raw, voxel_size, surface, block, progress=True, names=names)
    else:
        table = measure(volume, raw, voxel_size, surface, block, progress=True)
    if mask is None:
        return table, None
    result, flags = density(volume, table, mask, voxel_size, block, names or None, progress=True)
    return table.assign(in_mask=flags), result
