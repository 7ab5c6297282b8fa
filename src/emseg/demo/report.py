"""report.html: one self-contained page (PNGs embedded as base64; they are also in the folder)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from emseg.demo.pipeline import MODELS

METRIC_COLUMNS = ("voxel F1", "voxel IoU", "precision", "recall", "instance F1 @0.5", "instance F1 @0.75",
                  "objects found / true", "mean Hausdorff (nm)")


def metric_row(evaluation: dict) -> list[str]:
    voxel, inst = evaluation["voxel"], evaluation.get("instance", {})
    hd = (evaluation.get("hausdorff_nm") or {}).get("mean")
    first = inst.get("0.5", {})
    return [f"{voxel['f1']:.3f}", f"{voxel['iou']:.3f}", f"{voxel['precision']:.3f}", f"{voxel['recall']:.3f}",
            f"{first.get('f1', float('nan')):.3f}", f"{inst.get('0.75', {}).get('f1', float('nan')):.3f}",
            f"{first.get('n_pred', '?')} / {first.get('n_true', '?')}", "–" if hd is None else f"{hd:.0f}"]


def metrics_table(summary: dict) -> list[tuple[str, list[str]]]:
    return [(MODELS[key], metric_row(result["evaluation"])) for key, result in summary["models"].items()]


def format_timings(seconds: dict[str, float]) -> str:
    """Plain-text table of the steps and their seconds (for the terminal)."""
    width = max(len(k) for k in seconds)
    lines = [f"{'step':<{width}}  seconds", f"{'-' * width}  -------"]
    lines += [f"{name:<{width}}  {value:7.1f}" for name, value in seconds.items()]
    return "\n".join(lines)


def image(path: Path | str | None, alt: str) -> str:
    if not path or not Path(path).exists():
        return f"<p><em>{html.escape(alt)}: not available</em></p>"
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>' \
           f"{html.escape(alt)} ({html.escape(Path(path).name)})</figcaption></figure>"


def table(header: list[str], rows: list[list[str]], table_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%}figure{margin:1em 0}
figcaption{font-size:.85em;color:#555}code,pre{background:#f4f4f4}"""


def write_report(out: Path, summary: dict, overlays: list[Path]) -> Path:
    """Write out/report.html from the run's summary and figures; returns its path."""
    settings = summary["settings"]
    shape = " × ".join(str(s) for s in settings["shape"])
    dice = ", ".join(f"{d:.3f}" for d in summary["annotation_dice"])
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>emseg demo report</title>"
        f"<style>{STYLE}</style></head><body>",
        "<h1>emseg demo: from a synthetic volume to measured mitochondria</h1>",
        f"<p>Synthetic EM volume {shape} voxels at {settings['voxel_size']:g} nm (seed {settings['seed']}). "
        f"Loose annotation of {len(summary['train_blocks'])} blocks of {settings['block']}³ voxels "
        f"(strokes on {settings['stroke_planes']} planes per block → graph cut; Dice of the annotation "
        f"against the truth: {dice}). A 3D U-Net (fmaps {settings['fmaps']}) trained for at most "
        f"{settings['max_minutes']:g} min on them (<code>{html.escape(summary['training_yaml'])}</code>, "
        f"best checkpoint <code>{html.escape(summary['checkpoint'])}</code>), then both it and the bundled "
        "model segmented the whole volume blockwise.</p>",
        "<h2>Scores against the synthetic truth</h2>",
        "<p>Scores of the post-processed instances (probability ≥ 0.5, holes filled, connected components, "
        f"objects under {settings['min_size_nm3']:.0e} nm³ dropped) on every voxel outside the training blocks "
        "(the held-out validation block, used to pick the best checkpoint, is included). Instance F1 "
        "matches objects at IoU ≥ 0.5 / 0.75.</p>",
        table(["model", *METRIC_COLUMNS], [[name, *row] for name, row in metrics_table(summary)], "metrics"),
        "<p>The bundled model was trained on real FIB-SEM (Lucchi et al. 2012, mouse hippocampus, 5 nm); "
        "the synthetic volume looks different (textures, contrast, membranes), so it may do poorly "
        "here. That is the domain gap fine-tuning (<code>emseg finetune --from mito</code>) closes.</p>",
        "<h2>Overlays</h2><p>Green outline: truth. Colours: the objects each model found. Dashed boxes: "
        "training blocks (yellow) and the validation block (cyan).</p>",
        *[image(p, f"overlay {p.stem}") for p in overlays],
        "<h2>Training curves</h2>", image(Path(summary["checkpoint"]).parent / "curves.png", "training curves"),
        "<h2>Measurements</h2>",
    ]
    for key, result in summary["models"].items():
        parts.append(f"<h3>{html.escape(MODELS[key])}: {result['objects']} objects "
                     f"(<code>{html.escape(result['csv'])}</code>)</h3>")
        parts.append(image(result["histograms"], f"{MODELS[key]} histograms"))
    seconds = summary["seconds"]
    parts += ["<h2>Time per step</h2>",
              table(["step", "seconds"], [[k, f"{v:.1f}"] for k, v in seconds.items()], "timings"),
              "</body></html>"]
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
