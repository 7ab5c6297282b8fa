"""`emseg predict`: the command-line face of `emseg.predict.predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the ``predict`` command to the emseg CLI."""

    @app.command("predict")
    def predict_command(
        model: Annotated[str, typer.Argument(help="Checkpoint path (.pt) or a bundled model name (e.g. mito); several, comma-separated (a.pt,mito), are an ensemble: their probabilities are averaged.")],
        input: Annotated[str, typer.Argument(help="Input volume (any format emseg reads).")],
        output: Annotated[Path, typer.Argument(help="Output OME-Zarr of probabilities (e.g. mito.ome.zarr).")],
        roi: Annotated[Optional[str], typer.Option(help="Region in voxels: z0:z1,y0:y1,x0:x1 (bounds may be empty).")] = None,
        mask: Annotated[Optional[str], typer.Option(help="Mask volume (any scale): only blocks holding mask voxels are computed.")] = None,
        device: Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps.")] = "auto",
        batch_size: Annotated[int, typer.Option(help="Blocks per forward pass.")] = 1,
        workers: Annotated[Optional[int], typer.Option(help="Start a local Dask cluster with N worker processes.")] = None,
        scheduler: Annotated[Optional[str], typer.Option(help="Address of a running Dask scheduler (tcp://HOST:PORT).")] = None,
        dtype: Annotated[str, typer.Option(help="Output type: uint8 (0-255) or float16.")] = "uint8",
        mode: Annotated[str, typer.Option(help="auto (the checkpoint's stored mode, else 3d for 3D nets, stack for 2D), 3d, stack (2D net slice by slice) or orthoplane (2D net, xy/xz/yz averaged).")] = "auto",
        axis: Annotated[str, typer.Option(help="Stack axis for 2D nets in stack mode: z, y or x.")] = "z",
        tta: Annotated[Optional[bool], typer.Option("--tta/--no-tta", help="Average predictions over flips (slower); default: the checkpoint's stored choice, else off.")] = None,
        halo: Annotated[Optional[int], typer.Option(help="Halo in voxels for same-padded / 2D nets (default: the model's, else 32).")] = None,
        block: Annotated[Optional[int], typer.Option(help="Write block edge in voxels (rounded up to whole chunks); default: twice the model's context, at least 64.")] = None,
        chunks: Annotated[int, typer.Option(help="Output chunk edge in voxels.")] = 64,
        voxel_size: Annotated[Optional[tuple[float, float, float]], typer.Option("--voxel-size", help="Input voxel size Z Y X in nm (overrides the file).")] = None,
        amp: Annotated[bool, typer.Option("--amp", help="bfloat16 autocast (GPU).")] = False,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an output made by another model or settings.")] = False,
        allow_resample: Annotated[bool, typer.Option("--allow-resample", help="Resample the input when its voxel size differs from the model's.")] = False,
        weights: Annotated[Optional[str], typer.Option(help="Ensemble weights, one per model, comma-separated (e.g. 2,1); default: equal.")] = None,
    ) -> None:
        """Predict probabilities blockwise into OME-Zarr; rerun the same command to resume a killed run.
        Several models (MODEL = a.pt,b.pt) predict into OUTPUT/member_<i> and are averaged into OUTPUT/0."""
        from emseg.errors import ConfigError
        from emseg.io import open_volume
        from emseg.io.options import require_positive
        from emseg.predict import predict

        require_positive("--batch-size", batch_size)
        require_positive("--chunks", chunks)
        require_positive("--workers", workers)
        if workers and scheduler:
            raise ConfigError("use either --workers or --scheduler, not both")
        if axis not in ("z", "y", "x"):
            raise ConfigError(f"--axis must be z, y or x, got {axis!r}")
        volume = open_volume(input, voxel_size)
        result = predict(model, volume, output, roi=roi, mask=mask, mode=mode, axis="zyx".index(axis), tta=tta,
                         halo=halo, block_shape=block, chunks=chunks, dtype=dtype, device=device, amp=amp,
                         batch_size=batch_size, workers=workers, scheduler=scheduler, overwrite=overwrite,
                         allow_resample=allow_resample, weights=weights, progress=True)
        r = result.report
        voxels = result.plan.n_voxels
        averaged = f", {len(result.members)} models averaged" if result.members else ""
        typer.echo(f"{output}: {len(r.done)} blocks computed, {r.skipped} already done{averaged}, "
                   f"{'complete' if result.complete else 'incomplete'} ({voxels / 1e6:.2f} MVox planned, "
                   f"{r.seconds:.1f} s)")
