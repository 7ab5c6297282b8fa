"""`emseg evaluate`: voxel and instance scores of a prediction against ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def parse_sweep(spec: str) -> list[float]:
    """``START:STOP:STEP`` (inclusive) or a comma-separated list of thresholds."""
    import numpy as np

    from emseg.errors import InvalidValuesError

    try:
        if ":" in spec:
            start, stop, step = (float(v) for v in spec.split(":"))
            if step <= 0:
                raise ValueError("step must be > 0")
            if start > stop:
                raise ValueError(f"START {start:g} is above STOP {stop:g}")
            thresholds = [round(float(t), 6) for t in np.arange(start, stop + step / 2, step)]
        else:
            thresholds = [float(v) for v in spec.split(",") if v.strip()]
        if not thresholds:
            raise ValueError("no thresholds")
        if not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError("thresholds must be in [0, 1]")
        return thresholds
    except ValueError as err:
        raise InvalidValuesError(f"--sweep {spec!r}: expected START:STOP:STEP or a list like 0.3,0.5 ({err})") from err


def register(app: typer.Typer) -> None:
    @app.command()
    def evaluate(
        pred: Annotated[str, typer.Argument(help="Prediction: probability map or labels (binary or instances).")],
        gt: Annotated[str, typer.Argument(help="Ground-truth labels (binary or instances).")],
        sample_mask: Annotated[Optional[str], typer.Option("--sample-mask", help="1 = annotated; only there counts.")] = None,
        metric_mask: Annotated[Optional[str], typer.Option("--metric-mask", help="1 = scored (voxel scores).")] = None,
        exclusion_width: Annotated[int, typer.Option(
            "--exclusion-width", help="Build the metric mask: exclude N voxels around GT boundaries.")] = 0,
        threshold: Annotated[float, typer.Option("--threshold", "-t", help="Probability threshold in [0, 1].")] = 0.5,
        sweep: Annotated[Optional[str], typer.Option(
            help="Threshold sweep START:STOP:STEP or list (e.g. 0.1:0.9:0.1): F1 vs threshold table + PNG.")] = None,
        instances: Annotated[bool, typer.Option(help="Instance matching and Hausdorff.")] = True,
        probability: Annotated[Optional[str], typer.Option(
            "--probability", help="Probability map that ranks predicted instances for AP when PRED is labels "
                                  "(default: PRED itself if it is a map, else instances rank by size).")] = None,
        merge_fraction: Annotated[float, typer.Option(
            "--merge-fraction", help="Merge: a predicted object holds ≥ this share of each of ≥ 2 true objects; "
                                     "split: ≥ 2 predicted objects each lie this much in one true object.")] = 0.5,
        json_out: Annotated[Optional[Path], typer.Option("--json", help="Write all results as JSON here.")] = None,
        plot: Annotated[Optional[Path], typer.Option(help="PNG of the sweep (default: beside --json).")] = None,
        voxel_size: Annotated[Optional[tuple[float, float, float]], typer.Option(
            "--voxel-size", help="Voxel size Z Y X in nm (overrides the files' metadata).")] = None,
        block: Annotated[tuple[int, int, int], typer.Option(help="Processing block Z Y X (voxels).")] = (64, 256, 256),
        allow_incomplete: Annotated[bool, typer.Option(
            "--allow-incomplete", help="Score a prediction whose run was killed (missing blocks read as 0).")] = False,
    ) -> None:
        """Voxel precision/recall/F1/IoU inside sample ∧ metric mask; instance F1 and AP (MitoEM)
        at IoU ≥ 0.5 and 0.75; merge and split counts; mean Hausdorff distance (nm) of matched
        objects; optional sweep."""
        from emseg.evaluate.pipeline import evaluate as run
        from emseg.evaluate.pipeline import format_result
        from emseg.evaluate.voxel import plot_sweep

        result = run(pred, gt, sample_mask, metric_mask, exclusion_width, threshold, voxel_size, instances,
                     parse_sweep(sweep) if sweep else None, block=block, progress=True,
                     allow_incomplete=allow_incomplete, probability=probability, merge_fraction=merge_fraction)
        typer.echo(format_result(result))
        if json_out:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(result, indent=2))
            typer.echo(f"wrote {json_out}")
        if "sweep" in result:
            plot = plot or (json_out.with_suffix(".sweep.png") if json_out else Path("sweep.png"))
            plot_sweep(result["sweep"], plot)
            typer.echo(f"wrote {plot}")
