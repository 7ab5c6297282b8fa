"""`emseg train` and `emseg finetune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        config: Annotated[Path, typer.Argument(help="Training YAML (sources, model, iterations; see docs/training.md).")],
        resume: Annotated[bool, typer.Option(help="Continue from OUTPUT_DIR/last.pt.")] = False,
        device: Annotated[Optional[str], typer.Option(help="auto (CUDA → MPS → CPU), cpu, cuda, mps.")] = None,
        output_dir: Annotated[Optional[Path], typer.Option(help="Override the config's output_dir.")] = None,
        max_minutes: Annotated[Optional[float], typer.Option(help="Override the config's wall-clock budget (minutes) for this run; with --resume and a cosine schedule the learning rate restarts (warm restart).")] = None,
    ) -> None:
        """Train a 3D U-Net for one organelle from (loosely) annotated blocks."""
        from emseg.train.config import load_config
        from emseg.train.loop import train as run

        cfg = load_config(config)
        if output_dir is not None:
            cfg.output_dir = str(output_dir)
        if max_minutes is not None:
            cfg.max_minutes = max_minutes
        trainer = run(cfg, resume=resume, device=device)
        typer.echo(f"best validation F1 {trainer.best_f1:.4f}; checkpoints in {trainer.out}")

    @app.command()
    def finetune(
        data: Annotated[Path, typer.Argument(help="Training YAML with the new cell's annotation.")],
        from_: Annotated[str, typer.Option("--from", help="Checkpoint path or bundled model name (e.g. mito).")],
        iterations: Annotated[int, typer.Option(help="Fine-tuning iterations.")] = 1000,
        device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, mps.")] = None,
        output_dir: Annotated[Optional[Path], typer.Option(help="Override the config's output_dir.")] = None,
    ) -> None:
        """Fine-tune a trained model to a new cell with a small extra annotation."""
        from emseg.models import BUNDLED_DIR
        from emseg.train.config import load_config
        from emseg.train.loop import finetune as run

        cfg = load_config(data)
        if output_dir is not None:
            cfg.output_dir = str(output_dir)
        checkpoint = BUNDLED_DIR / f"{from_}.pt" if (BUNDLED_DIR / f"{from_}.pt").exists() else from_
        trainer = run(str(checkpoint), cfg, iterations, device=device)
        typer.echo(f"best validation F1 {trainer.best_f1:.4f}; checkpoints in {trainer.out}")
