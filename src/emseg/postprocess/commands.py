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
                                                         "volume. Several maps: conflict resolution → class labels.")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Output OME-Zarr label volume.")],
        threshold: Annotated[Optional[list[float]], typer.Option(
            "--threshold", "-t", help="Threshold in [0, 1]; repeat once per input map for per-class thresholds. Default: the threshold stored with the model that made the map (else 0.5).")] = None,
        connectivity: Annotated[int, typer.Option(help="6, 18 or 26.")] = 26,
        min_size: Annotated[float, typer.Option("--min-size", help="Drop objects smaller than this (nm³).")] = 0.0,
        fill_holes: Annotated[bool, typer.Option("--fill-holes", help="Fill enclosed cavities.")] = False,
        opening: Annotated[int, typer.Option(help="Binary opening radius (voxels).")] = 0,
        closing: Annotated[int, typer.Option(help="Binary closing radius (voxels).")] = 0,
        block: Annotated[tuple[int, int, int], typer.Option(help="Processing block Z Y X (voxels).")] = (128, 256, 256),
        voxel_size: Annotated[Optional[tuple[float, float, float]], typer.Option(
            "--voxel-size", help="Voxel size Z Y X in nm (overrides the file's metadata).")] = None,
        input_kind: Annotated[str, typer.Option("--input", help="auto | probability | labels (auto: floats and "
                                                    "emseg-written uint8 images are probabilities).")] = "auto",
        levels: Annotated[Optional[int], typer.Option(help="Pyramid levels of the output (0: until small).")] = 1,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
        allow_incomplete: Annotated[bool, typer.Option(
            "--allow-incomplete", help="Use a prediction whose run was killed (missing blocks read as 0).")] = False,
    ) -> None:
        """Threshold, close/open, fill holes, blockwise connected components and size filter
        → instance labels (uint32/uint64). With several maps: per-class thresholds, argmax
        among the classes above threshold → one class label volume (uint8)."""
        from emseg.errors import InvalidValuesError
        from emseg.io.options import require_positive
        from emseg.io.outputs import check_output
        from emseg.postprocess.pipeline import PostprocessConfig, postprocess_classes
        from emseg.postprocess.pipeline import postprocess as run

        require_positive("--block", block)
        thresholds = list(threshold or [])  # none given: each map's model threshold
        outside = [t for t in thresholds if not 0.0 <= t <= 1.0]
        if outside:
            raise InvalidValuesError(f"--threshold {outside[0]}: threshold must be in [0, 1]")
        if len(inputs) > 1:
            if len(thresholds) == 1:
                thresholds *= len(inputs)
            if thresholds and len(thresholds) != len(inputs):
                raise InvalidValuesError(f"{len(inputs)} inputs but {len(thresholds)} thresholds")
            check_output(output, inputs, overwrite)  # options first: a usage error never costs an output
            start = time.perf_counter()
            result = postprocess_classes(inputs, thresholds, output, voxel_size, block, overwrite, progress=True,
                                         allow_incomplete=allow_incomplete)
            typer.echo(f"wrote class labels {result['output']} (classes: "
                       + ", ".join(f"{i + 1}={n}" for i, n in enumerate(result["classes"]))
                       + f") in {time.perf_counter() - start:.1f} s")
            return
        if len(thresholds) > 1:
            raise InvalidValuesError(f"one input but {len(thresholds)} thresholds")
        try:
            config = PostprocessConfig(threshold=thresholds[0] if thresholds else None, connectivity=connectivity, min_size_nm3=min_size,
                                       fill_holes=fill_holes, opening_vox=opening, closing_vox=closing, block=block,
                                       input=input_kind)
        except ValueError as err:  # pydantic's ValidationError
            raise InvalidValuesError(f"postprocess options: {err}") from err
        check_output(output, inputs, overwrite)
        start = time.perf_counter()
        result = run(inputs[0], output, config, voxel_size, overwrite, progress=True, levels=levels or None,
                     allow_incomplete=allow_incomplete)
        typer.echo(f"wrote {result['objects']} objects to {result['output']} ({result['dtype']}, "
                   f"{result['shape']} at {result['voxel_size']} nm) in {time.perf_counter() - start:.1f} s")
