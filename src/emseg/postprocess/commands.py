"""`emseg postprocess`: probability map(s) → OME-Zarr labels."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def postprocess(
        inputs: Annotated[list[str], typer.Argument(help="Probability map(s) (float, or uint8 0-255) or a label "
                                                         "volume. Several maps: one class label volume (uint8).")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Output OME-Zarr label volume.")],
        threshold: Annotated[Optional[list[str]], typer.Option(
            "--threshold", "-t", metavar="T|NAME=T", help="Threshold in [0, 1]. Several maps: one for all, one per map (repeat), or "
                                      "NAME=T for one class. Default: the threshold stored with the model that made "
                                      "the map (else 0.5).")] = None,
        names: Annotated[Optional[str], typer.Option(
            help="Several maps: class names, comma-separated in map order (default: each model's organelle, "
                 "else the file name).")] = None,
        connectivity: Annotated[int, typer.Option(help="6, 18 or 26.")] = 26,
        min_size: Annotated[float, typer.Option("--min-size", help="Drop objects smaller than this (nm³).")] = 0.0,
        fill_holes: Annotated[bool, typer.Option("--fill-holes", help="Fill enclosed cavities.")] = False,
        opening: Annotated[int, typer.Option(help="Binary opening radius (voxels).")] = 0,
        closing: Annotated[int, typer.Option(help="Binary closing radius (voxels).")] = 0,
        block: Annotated[tuple[int, int, int], typer.Option(help="Processing block Z Y X (voxels).")] = (128, 256, 256),
        instances: Annotated[str, typer.Option(
            "--instances", help="components: connected components; watershed: seeded watershed of the distance "
                                "transform, splits touching objects (docs/postprocess.md).")] = "components",
        h: Annotated[float, typer.Option("--h", help="Watershed: a seed is a maximum of the distance to the "
                                                     "background with a dynamic of at least this (nm).")] = 20.0,
        seed_distance: Annotated[float, typer.Option(
            "--seed-distance", help="Watershed: merge seeds of one object closer than this (nm; 0: off).")] = 0.0,
        halo: Annotated[float, typer.Option(help="Watershed: context around each block (nm); objects shorter than "
                                                 "this on every axis come out as in a whole-volume run.")] = 400.0,
        voxel_size: Annotated[Optional[tuple[float, float, float]], typer.Option(
            "--voxel-size", help="Voxel size Z Y X in nm (overrides the file's metadata).")] = None,
        input_kind: Annotated[str, typer.Option("--input", help="auto | probability | labels (auto: floats and "
                                                    "emseg-written uint8 images are probabilities).")] = "auto",
        levels: Annotated[Optional[int], typer.Option(help="Pyramid levels of the output (0: until small).")] = 1,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
        allow_incomplete: Annotated[bool, typer.Option(
            "--allow-incomplete", help="Use a prediction whose run was killed (missing blocks read as 0).")] = False,
    ) -> None:
        """Threshold, close/open, fill holes, blockwise connected components (or, with
        --instances watershed, a seeded watershed that splits touching objects) and size filter
        → instance labels (uint32/uint64). With several maps: each class's threshold; where
        several classes reach theirs, the highest (p - t)/(1 - t) wins → one class label volume
        (uint8, class names in its metadata)."""
        from emseg.errors import InvalidValuesError
        from emseg.io.options import require_positive
        from emseg.io.outputs import check_output
        from emseg.postprocess.classes import parse_threshold_options
        from emseg.postprocess.pipeline import PostprocessConfig
        from emseg.postprocess.pipeline import postprocess as run

        require_positive("--block", block)
        thresholds, named = parse_threshold_options(threshold or [])  # none given: each map's model threshold
        if len(inputs) > 1:
            instance_options = {"--connectivity": connectivity != 26, "--min-size": min_size > 0,
                                "--fill-holes": fill_holes, "--opening": opening, "--closing": closing,
                                "--input": input_kind != "auto", "--instances": instances != "components"}
            given = [option for option, used in instance_options.items() if used]
            if given:
                raise InvalidValuesError(f"{given[0]} applies to one map (instance labels), not to a class map "
                                         "of several maps")
            class_map(inputs, output, thresholds, named, names, voxel_size, block, levels, overwrite,
                      allow_incomplete)
            return
        if named or names:
            raise InvalidValuesError(f"{'--names' if names else '--threshold NAME=T'} names the classes of a class "
                                     "map: give several probability maps")
        if len(thresholds) > 1:
            raise InvalidValuesError(f"one input but {len(thresholds)} thresholds")
        try:
            config = PostprocessConfig(threshold=thresholds[0] if thresholds else None, connectivity=connectivity,
                                       min_size_nm3=min_size, fill_holes=fill_holes, opening_vox=opening,
                                       closing_vox=closing, block=block, input=input_kind, instances=instances,
                                       h_nm=h, seed_distance_nm=seed_distance, halo_nm=halo)
        except ValueError as err:  # pydantic's ValidationError
            raise InvalidValuesError(f"postprocess options: {err}") from err
        check_output(output, inputs, overwrite)
        start = time.perf_counter()
        result = run(inputs[0], output, config, voxel_size, overwrite, progress=True, levels=levels or None,
                     allow_incomplete=allow_incomplete)
        typer.echo(f"wrote {result['objects']} objects to {result['output']} ({result['dtype']}, "
                   f"{result['shape']} at {result['voxel_size']} nm) in {time.perf_counter() - start:.1f} s")


def class_map(inputs: list[str], output: Path, thresholds: list[float], named: dict[str, float],
              names: str | None, voxel_size, block, levels: int | None, overwrite: bool,
              allow_incomplete: bool) -> None:
    """`emseg postprocess MAP1 MAP2 … -o classes.ome.zarr`: one class label volume."""
    from emseg.io.outputs import check_output
    from emseg.postprocess.classes import write_class_map

    check_output(output, inputs, overwrite)  # options first: a usage error never costs an output
    start = time.perf_counter()
    result = write_class_map(inputs, output, thresholds, named, names.split(",") if names else None, voxel_size,
                             block, levels=levels or None, overwrite=overwrite, progress=True,
                             allow_incomplete=allow_incomplete)
    shown = ", ".join(f"{k + 1}={c.name} (t={c.threshold:g}, {c.threshold_from})"
                      for k, c in enumerate(result["classes"]))
    typer.echo(f"wrote class map {result['output']} ({shown}) in {time.perf_counter() - start:.1f} s")
