"""`emseg train` and `emseg finetune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

RUN_FILES = ("last.pt", "best.pt", "log.csv", "curves.png")  # what a training run writes into its folder


def check_run_folder(output_dir: Path, resume: bool, overwrite: bool, inputs: tuple = ()) -> None:
    """Before any work: a folder holding an earlier run's checkpoints is continued with ``resume``
    or replaced with ``overwrite`` (only the run's own files are removed), never silently."""
    from emseg.errors import ConfigError, OutputExistsError
    from emseg.io.outputs import check_output, check_writable

    if resume and overwrite:
        raise ConfigError(f"{output_dir}: use either --resume or --overwrite, not both")
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputExistsError(f"{output_dir}: exists and is not a folder; choose another --output-dir")
    check_writable(output_dir, into=True)
    if resume:
        return
    existing = [output_dir / name for name in RUN_FILES if (output_dir / name).exists()]
    if not any(path.suffix == ".pt" for path in existing):
        return
    if not overwrite:
        raise OutputExistsError(f"{output_dir}: holds checkpoints of an earlier run; pass --resume to continue it "
                                "or --overwrite to replace it")
    for path in existing:  # refuses a file that is also an input (e.g. --from OUTPUT_DIR/best.pt)
        check_output(path, inputs, overwrite=True, kind="file")
    for path in existing:
        path.unlink()



def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        config: Annotated[Path, typer.Argument(help="Training YAML (sources, model, iterations; see docs/training.md).")],
        resume: Annotated[bool, typer.Option(help="Continue from OUTPUT_DIR/last.pt.")] = False,
        device: Annotated[Optional[str], typer.Option(help="auto (CUDA → MPS → CPU), cpu, cuda, mps.")] = None,
        output_dir: Annotated[Optional[Path], typer.Option(help="Override the config's output_dir.")] = None,
        max_minutes: Annotated[Optional[float], typer.Option(help="Override the config's wall-clock budget (minutes) for this run; with --resume and a cosine schedule the learning rate restarts (warm restart).")] = None,
        overwrite: Annotated[bool, typer.Option(help="Replace an earlier run's checkpoints and log in OUTPUT_DIR.")] = False,
    ) -> None:
        """Train a 3D U-Net for one organelle from (loosely) annotated blocks."""
        from emseg.io.options import require_positive
        from emseg.train.config import load_config
        from emseg.train.loop import train as run

        require_positive("--max-minutes", max_minutes)
        cfg = load_config(config)
        if output_dir is not None:
            cfg.output_dir = str(output_dir)
        if max_minutes is not None:
            cfg.max_minutes = max_minutes
        check_run_folder(Path(cfg.output_dir), resume, overwrite)
        trainer = run(cfg, resume=resume, device=device)
        typer.echo(f"best validation F1 {trainer.best_f1:.4f}; checkpoints in {trainer.out}")

    @app.command()
    def finetune(
        data: Annotated[Path, typer.Argument(help="Training YAML with the new cell's annotation.")],
        from_: Annotated[str, typer.Option("--from", help="Checkpoint path or bundled model name (e.g. mito).")],
        iterations: Annotated[int, typer.Option(help="Fine-tuning iterations.")] = 1000,
        device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, mps.")] = None,
        output_dir: Annotated[Optional[Path], typer.Option(help="Override the config's output_dir.")] = None,
        overwrite: Annotated[bool, typer.Option(help="Replace an earlier run's checkpoints and log in OUTPUT_DIR.")] = False,
    ) -> None:
        """Fine-tune a trained model to a new cell with a small extra annotation."""
        from emseg.io.options import require_positive
        from emseg.models import BUNDLED_DIR
        from emseg.train.config import load_config
        from emseg.train.loop import finetune as run

        require_positive("--iterations", iterations)
        cfg = load_config(data)
        if output_dir is not None:
            cfg.output_dir = str(output_dir)
        checkpoint = BUNDLED_DIR / f"{from_}.pt" if (BUNDLED_DIR / f"{from_}.pt").exists() else from_
        check_run_folder(Path(cfg.output_dir), False, overwrite, (checkpoint,))
        trainer = run(str(checkpoint), cfg, iterations, device=device)
        typer.echo(f"best validation F1 {trainer.best_f1:.4f}; checkpoints in {trainer.out}")
