"""`emseg demo`: the whole pipeline on a synthetic volume, offline, in a few minutes on a CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the demo writes.")] = Path("demo"),
        minutes: Annotated[float, typer.Option(help="Training budget in minutes (wall clock).")] = 4.0,
        iterations: Annotated[Optional[int], typer.Option(help="Stop training after this many iterations.")] = None,
        shape: Annotated[tuple[int, int, int], typer.Option(help="Synthetic volume Z Y X in voxels.")] = (96, 256, 256),
        mito_density: Annotated[float, typer.Option(help="Scales the number of synthetic mitochondria.")] = 1.0,
        block: Annotated[int, typer.Option(help="Edge of each annotated block in voxels.")] = 64,
        seed: Annotated[int, typer.Option(help="Random seed (volume, strokes, training).")] = 0,
        workers: Annotated[int, typer.Option(help="Data-loader processes while training (0: in the main process).")] = 1,
        device: Annotated[str, typer.Option(help="auto (CUDA → MPS → CPU), cpu, cuda, mps.")] = "auto",
        overwrite: Annotated[bool, typer.Option(help="Replace the demo outputs in a non-empty --out.")] = False,
    ) -> None:
        """Synthetic EM volume → loose annotation of a few blocks → train a small 3D U-Net →
        predict the whole volume blockwise → instances → measurements → scores against the truth,
        for the new model and the bundled one; writes OUT/report.html."""
        from emseg.demo.pipeline import run_demo
        from emseg.demo.report import format_timings, metrics_table
        from emseg.demo.settings import DemoSettings

        settings = DemoSettings(shape=shape, block=block, mito_density=mito_density, num_workers=workers, max_minutes=minutes, seed=seed,
                                device=device,
                                **({"iterations": iterations} if iterations else {}))
        summary = run_demo(out, settings, overwrite=overwrite, log=typer.echo)
        typer.echo("\n" + format_timings(summary["seconds"]))
        typer.echo("")
        for name, row in metrics_table(summary):
            typer.echo(f"{name}: voxel F1 {row[0]}, IoU {row[1]}, instance F1@0.5 {row[4]}, objects {row[6]}")
        typer.echo(f"\nreport: {Path(summary['report']).resolve()}")
