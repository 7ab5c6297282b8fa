"""`emseg pretrain` (MoCoV2 on a patch store), `emseg train2d` (2D transfer training) and
`emseg benchmark2d` (the CEM500K-style transfer table)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from emseg.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Add the pretraining and 2D transfer commands to the CLI."""

    @app.command()
    def pretrain(
        patches: Annotated[str, typer.Argument(help="Patch store (PATCHES.zarr from `emseg curate`).")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Encoder weights to write (e.g. encoder.pt).")],
        arch: Annotated[str, typer.Option(help="resnet18 | resnet34 | resnet50.")] = "resnet50",
        epochs: Annotated[int, typer.Option(help="Epochs (recipe: 200).")] = 200,
        batch_size: Annotated[int, typer.Option(help="Batch per process (recipe: 128; lr scales linearly).")] = 128,
        width: Annotated[int, typer.Option(help="ResNet base width (64 = standard).")] = 64,
        image_size: Annotated[int, typer.Option(help="Size of the augmented views.")] = 224,
        queue_size: Annotated[int, typer.Option(help="MoCo queue length.")] = 65536,
        learning_rate: Annotated[Optional[float], typer.Option(
            "--learning-rate", "--lr", help="Base learning rate (default 0.015 × batch / 128).")] = None,
        schedule: Annotated[str, typer.Option(help="step (×0.1 at 60 %/80 % of epochs) or cosine.")] = "step",
        bn_groups: Annotated[int, typer.Option(help="Single-process shuffle-BN groups (see docs).")] = 2,
        steps_per_epoch: Annotated[Optional[int], typer.Option(help="Cap batches per epoch.")] = None,
        device: Annotated[str, typer.Option(help="auto | cpu | cuda | mps.")] = "auto",
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        resume: Annotated[bool, typer.Option(help="Continue from OUTPUT's .state.pt.")] = False,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    ) -> None:
        """MoCoV2 pretraining of a 1-channel ResNet on the kept patches (CEM500K recipe).

        Writes OUTPUT (CEM500K-format weights with norms), OUTPUT.state.pt (resume) and
        OUTPUT.png (loss / positive-key accuracy). For many GPUs:
        `torchrun --nproc_per_node N -m emseg pretrain ...`.
        """
        from emseg.io.options import from_options
        from emseg.pretrain.run import PretrainConfig
        from emseg.pretrain.run import pretrain as run_pretrain

        config = from_options(PretrainConfig, arch=arch, epochs=epochs, batch_size=batch_size, width=width,
                              image_size=image_size, queue_size=queue_size, learning_rate=learning_rate,
                              schedule=schedule, bn_groups=bn_groups, steps_per_epoch=steps_per_epoch,
                              device=device, seed=seed)
        summary = run_pretrain(patches, output, config, resume=resume, overwrite=overwrite)
        if os.environ.get("RANK", "0") == "0":
                typer.echo(f"wrote {summary['output']} ({summary['patches']} patches, {summary['images_per_s']:.1f} "
                       f"images/s on {summary['device']})")

    @app.command()
    def train2d(
        config: Annotated[Path, typer.Argument(help="YAML config (see docs/pretraining.md).")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint to write.")] = Path("model2d.pt"),
    ) -> None:
        """Train a 2D U-Net-ResNet (random or pretrained encoder, frozen or fine-tuned) on slices."""
        from emseg.train.transfer2d import load_config
        from emseg.train.transfer2d import train2d as run_train2d

        summary = run_train2d(load_config(config), output)
        scores = f", validation IoU {summary['iou']:.3f}" if "iou" in summary else ""
        typer.echo(f"wrote {output} in {summary['wall_s']:.0f} s{scores}")

    @app.command()
    def benchmark2d(
        data: Annotated[Path, typer.Option(help="Folder laid out like ../shared/data (lucchi/, isbi2012/).")],
        output: Annotated[Path, typer.Option("--output", "-o",
                                             help="Output folder (table.csv/.md/.png, summary.json).")],
        pretrain_minutes: Annotated[float, typer.Option(help="MoCoV2 wall-time budget in minutes.")] = 4.0,
        iterations: Annotated[int, typer.Option(help="train2d iterations, the same for every run.")] = 100,
        encoder: Annotated[Optional[Path], typer.Option(
            help="Use these MoCoV2 weights instead of pretraining.")] = None,
        init: Annotated[Optional[list[str]], typer.Option(
            help="Extra frozen encoder NAME=PATH (e.g. cem500k=cem500k_mocov2_resnet50_200ep.pth.tar); "
                 "repeatable.")] = None,
        tasks: Annotated[Optional[list[str]], typer.Option(
            help="lucchi_mito | isbi_membrane (repeatable; default both).")] = None,
        regimes: Annotated[Optional[list[str]], typer.Option(help="full | few (repeatable; default both).")] = None,
        few: Annotated[int, typer.Option(help="Labelled slices in the few-label regime.")] = 8,
        width: Annotated[int, typer.Option(help="ResNet-18 base width (64 = standard).")] = 32,
        threads: Annotated[int, typer.Option(help="torch threads.")] = 1,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    ) -> None:
        """Random vs MoCoV2-pretrained U-Net-ResNet-18 on Lucchi mitochondria and ISBI membranes.

        Grid patches of the training slices (+ a synthetic volume) → MoCoV2 for --pretrain-minutes → train2d for every task × regime (full; --few labelled slices) × init (random; pretrained frozen; pretrained fine-tuned; --init extras, frozen), all with the same --iterations.

        Lucchi: train z 0–131, validate every 3rd slice of z 132–164 (512² crop). ISBI 2012: train 0–23, validate 24–29. Writes OUTPUT/table.csv, table.md, table.png and summary.json (wall time of every run, pretraining images/s). See docs/pretraining.md.
        """
        from emseg.io.options import from_options
        from emseg.pretrain.benchmark2d import Benchmark2DConfig, run_benchmark

        extra = {}
        for spec in init or []:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise ConfigError(f"--init {spec!r}: expected NAME=PATH")
            extra[name] = path
        config = from_options(Benchmark2DConfig, pretrain_minutes=pretrain_minutes, iterations=iterations,
                              encoder=str(encoder) if encoder else None, inits=extra, tasks=tasks or None,
                              regimes=regimes or ["full", "few"], few=few, width=width, threads=threads, seed=seed)
        summary = run_benchmark(data, output, config)
        typer.echo((output / "table.md").read_text())
        total = summary["timings_s"]["total"]
        typer.echo(f"wrote {output}/table.csv, table.md, table.png, summary.json in {total:.0f} s")
