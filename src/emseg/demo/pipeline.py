"""The demo's steps in order, each timed; everything lands under one output folder.

out/data/        raw, truth, simulated annotation, sample and evaluation masks (OME-Zarr)
out/train.yaml   the training config (`emseg train out/train.yaml` repeats the training)
out/model/       best.pt, last.pt, log.csv, curves.png (written by the training code)
out/demo_model/, out/bundled_model/   probabilities, labels, objects.csv, histograms.png, evaluation.json
out/figures/     overlay PNGs;  out/report.html;  out/summary.json
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emseg.demo.settings import DemoSettings
from emseg.errors import OutputExistsError

OWN_ENTRIES = ("data", "model", "demo_model", "bundled_model", "figures", "train.yaml", "report.html",
               "summary.json", "demo_settings.json")
MODELS = {"demo_model": "3D U-Net trained by this demo", "bundled_model": "bundled default model 'mito'"}


@dataclass
class StepTimer:
    """Prints each step as it starts and records how long it took."""

    total_steps: int
    log: Callable[[str], None] = print
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, function, *args, **kwargs):
        self.log(f"[{len(self.seconds) + 1}/{self.total_steps}] {name} …")
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.seconds[name] = time.perf_counter() - start
        self.log(f"      {name}: {self.seconds[name]:.1f} s")
        return result


def prepare_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless ``overwrite``; then remove only what an earlier demo wrote."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{out}: folder exists and is not empty; pass --overwrite to replace the "
                                    "demo's outputs there, or choose another --out")
        for name in OWN_ENTRIES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def train_model(yaml_path: Path, settings: DemoSettings) -> Path:
    """Train through the same function `emseg train` calls; returns the best (else last) checkpoint."""
    from emseg.train.config import load_config
    from emseg.train.loop import train

    trainer = train(load_config(yaml_path), device=settings.device)
    best = trainer.out / "best.pt"
    return best if best.exists() else trainer.out / "last.pt"


def segment_and_score(model: str, data, folder: Path, settings: DemoSettings, timer: StepTimer, label: str) -> dict:
    from emseg.demo.segment import instances, measurements, predict_volume, scores

    folder.mkdir(parents=True, exist_ok=True)
    probabilities = timer.run(f"predict ({label})", predict_volume, model, data, folder, settings)
    post = timer.run(f"post-process ({label})", instances, probabilities, folder, settings)
    csv, histograms, n = timer.run(f"measure ({label})", measurements, Path(post["output"]), data, folder)
    evaluation = timer.run(f"evaluate ({label})", scores, Path(post["output"]), data)
    (folder / "evaluation.json").write_text(json.dumps(evaluation, indent=1))
    return {"probabilities": str(probabilities), "labels": post["output"], "objects": n, "csv": str(csv),
            "histograms": str(histograms) if n else None, "evaluation": evaluation}


def run_demo(out: str | Path = "demo", settings: DemoSettings | None = None, overwrite: bool = False,
             log: Callable[[str], None] = print) -> dict:
    """Run every step; returns the summary (also written to out/summary.json)."""
    from emseg.demo.data import prepare_data, training_config, write_training_yaml
    from emseg.demo.figures import write_overlays
    from emseg.demo.report import write_report
    from emseg.io import open_volume

    settings = settings or DemoSettings()
    out = Path(out)
    prepare_output(out, overwrite)
    (out / "demo_settings.json").write_text(settings.model_dump_json(indent=1))
    timer = StepTimer(total_steps=11, log=log)
    start = time.perf_counter()
    data = timer.run("synthetic volume + loose annotation", prepare_data, out, settings, log)
    yaml_path = write_training_yaml(training_config(data, settings, out / "model"), out / "train.yaml")
    checkpoint = timer.run(f"train 3D U-Net (≤ {settings.max_minutes:g} min)", train_model, yaml_path, settings)
    results = {
        "demo_model": segment_and_score(str(checkpoint), data, out / "demo_model", settings, timer, "demo model"),
        "bundled_model": segment_and_score("mito", data, out / "bundled_model", settings, timer, "bundled model"),
    }
    summary = {"out": str(out), "settings": settings.model_dump(mode="json"), "checkpoint": str(checkpoint),
               "training_yaml": str(yaml_path), "annotation_dice": data.annotation_dice,
               "train_blocks": [[[s.start, s.stop] for s in b] for b in data.train_blocks],
               "validation_block": [[s.start, s.stop] for s in data.validation_block],
               "models": results, "seconds": timer.seconds}
    predictions = {MODELS[k]: open_volume(r["labels"]) for k, r in results.items()}
    overlays = timer.run("overlay figures", write_overlays, out / "figures", open_volume(data.raw),
                         open_volume(data.truth), predictions, data.train_blocks, data.validation_block)
    summary["seconds"]["total"] = time.perf_counter() - start
    report = write_report(out, summary, overlays)
    summary["report"] = str(report)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
