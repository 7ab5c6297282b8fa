"""Fine-tune dock: the loaded model (bundled or checkpoint) on the current annotation (image +
graph-cut mask layer) with `emseg.train.loop.Trainer` — the trainer behind `emseg finetune` —
in a background thread, with a progress bar and a live loss / F1 plot."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from qtpy.QtWidgets import QFormLayout, QPushButton, QSpinBox

from emseg.napari_plugin._common import (
    RECENT_CHECKPOINTS,
    EmsegDock,
    LayerCombo,
    ModelPicker,
    PathEdit,
    checkpoint_path,
    device_combo,
    layer_array,
    layer_voxel_size,
)

MAX_OUTPUT = 44  # the training recipe's output block edge; smaller when the annotated ROI is small
VALIDATION_SHAPE = (48, 96, 96)  # live F1 on the central part of the annotation


def fitting_output_shape(net, roi_shape) -> list[int]:
    """Largest training output block (≤ 44 per axis) that fits in the annotated ROI; the input
    context around it may reach beyond the ROI (the sampler mirrors it at the ROI border)."""
    shape = []
    for axis, size in enumerate(roi_shape):
        for out in range(MAX_OUTPUT, 0, -1):
            if net.output_shape(net.input_shape_for((out,) * 3))[axis] <= size:
                shape.append(out)
                break
        else:
            from emseg.errors import InvalidValuesError

            needed = net.output_shape(net.valid_input_shape((1, 1, 1)))[axis]
            raise InvalidValuesError(f"the annotated ROI ({tuple(roi_shape)}) is too small for this model: "
                                     f"it needs at least {needed} voxels along axis {'zyx'[axis]}")
    return shape


def central_roi(roi, most) -> list[list[int]]:
    """The central part of ``roi`` ([[lo, hi]] × 3), at most ``most`` voxels along each axis."""
    out = []
    for (lo, hi), m in zip(roi, most):
        start = lo + max(0, (hi - lo - m) // 2)
        out.append([start, min(hi, start + m)])
    return out


def finetune_config(source: dict, model: str, output_dir: Path, iterations: int, step: int, device: str):
    """A `TrainConfig` that trains on one annotation and validates on its central part (at most
    ``VALIDATION_SHAPE``, to keep the live F1 cheap): a fit indicator, not a held-out score."""
    from emseg.models import load
    from emseg.train.config import TrainConfig

    roi_shape = [hi - lo for lo, hi in source["roi"]]
    net = load(model).model
    validation = {**source, "roi": central_roi(source["roi"], VALIDATION_SHAPE)}
    return TrainConfig(train=[source], validation=[validation], iterations=iterations, validate_every=step,
                       checkpoint_every=max(iterations, 1), output_shape=fitting_output_shape(net, roi_shape),
                       num_workers=0, output_dir=str(output_dir), device=device)


def finetune_steps(model: str, raw, mask, roi, voxel_size, output_dir: Path, iterations: int, step: int,
                   device: str = "auto", stop: threading.Event | None = None):
    """Generator behind the Fine-tune dock: yields (iteration, total, history) every ``step``
    iterations and returns (best checkpoint, its F1); ``stop`` ends the run after the current
    step, keeping the best checkpoint so far ((None, None) if none was validated yet)."""
    from emseg.napari_plugin.annotate import save_training_source
    from emseg.train.loop import Trainer

    source, _ = save_training_source(raw, mask, roi, voxel_size, output_dir / "data")
    config = finetune_config(source, model, output_dir, iterations, step, device)
    yield 0, iterations, []
    trainer = Trainer(config, init_from=checkpoint_path(model), progress=False)
    while trainer.iteration < iterations and not (stop is not None and stop.is_set()):
        trainer.run(min(iterations, trainer.iteration + step))
        yield trainer.iteration, iterations, list(trainer.history)
    best = trainer.out / "best.pt"
    return (best, trainer.best_f1) if best.exists() else (None, None)


class FinetuneWidget(EmsegDock):
    """Short fine-tuning run on the current annotation; the checkpoint becomes a model choice."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, "Fine-tune", parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.model = ModelPicker()
        self.image = LayerCombo(napari_viewer, "image")
        self.mask = LayerCombo(napari_viewer, "labels")
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 1_000_000)
        self.iterations.setValue(200)
        self.step = QSpinBox()
        self.step.setRange(1, 100_000)
        self.step.setValue(20)
        self.step.setToolTip("validate (F1 on the annotation) and update the plot every N iterations")
        self.device = device_combo()
        self.output = PathEdit("output folder (default: a temporary folder)")
        self.figure = Figure(figsize=(4, 2.6), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        form = QFormLayout(self)
        form.addRow("model", self.model)
        form.addRow("image", self.image)
        form.addRow("annotation mask", self.mask)
        form.addRow("iterations", self.iterations)
        form.addRow("plot every", self.step)
        form.addRow("device", self.device)
        form.addRow("output", self.output)
        self.stop_button = QPushButton("Stop (keep the best so far)")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self._stop = threading.Event()
        form.addRow(self.run_button)
        form.addRow(self.stop_button)
        form.addRow(self.progress)
        form.addRow(self.canvas)
        self.plot([])

    def run(self) -> None:
        """Start fine-tuning in a background thread."""
        from emseg.napari_plugin.annotate import mask_roi

        try:
            image, mask = self.image.layer(), self.mask.layer()
            if image is None or mask is None:
                raise ValueError("choose the image and the annotation mask (Annotate → graph cut)")
            raw, labels = layer_array(image), layer_array(mask)
        except Exception as error:  # noqa: BLE001 — shown to the user
            self.fail(error)
            return
        output = self.workdir(self.output.path(), "finetune") / f"finetune-{time.strftime('%H%M%S')}"
        self._stop = threading.Event()
        self.stop_button.setText("Stop (keep the best so far)")
        self.stop_button.setEnabled(True)
        self.start(finetune_steps, self.model.value(), raw, labels, mask_roi(mask), layer_voxel_size(image),
                   output, self.iterations.value(), self.step.value(), self.device.currentText(), self._stop,
                   busy="preparing the annotation and the model", on_yield=self._step, on_return=self._done)

    def stop(self) -> None:
        """End the run after the current step; the best checkpoint so far is kept."""
        self._stop.set()
        self.stop_button.setEnabled(False)
        self.stop_button.setText("stopping after this step…")

    def fail(self, error: BaseException) -> None:
        self.stop_button.setEnabled(False)
        super().fail(error)

    def _step(self, update) -> None:
        iteration, total, history = update
        last = history[-1] if history else {}
        f1 = f", F1 {last['val_f1']:.3f}" if last.get("val_f1", "") != "" else ""
        loss = f"loss {last['loss']:.3f}" if last else "starting"
        self.progress.update(iteration, total, f"iteration {iteration}/{total}: {loss}{f1}")
        self.plot(history)

    def plot(self, history: list[dict]) -> None:
        """Loss (left axis) and F1 on the annotation (right axis) against iterations."""
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss", color="tab:blue")
        if history:
            ax.plot([r["iteration"] for r in history], [r["loss"] for r in history], "o-", color="tab:blue")
            scored = [r for r in history if r.get("val_f1", "") != ""]
            f1 = ax.twinx()
            f1.set_ylabel("F1 (annotation)", color="tab:orange")
            f1.set_ylim(0, 1)
            f1.plot([r["iteration"] for r in scored], [r["val_f1"] for r in scored], "s-", color="tab:orange")
        self.figure.tight_layout()
        self.canvas.draw_idle()

    def _done(self, result):
        best, f1 = result
        self.stop_button.setEnabled(False)
        if best is None:
            self.progress.finish("stopped before the first validation: no checkpoint")
            return None
        RECENT_CHECKPOINTS.append(str(best))
        self.model.set_value(str(best))
        self.progress.finish(f"best F1 on the annotation {f1:.3f}; checkpoint {best} (now a model choice)")
        return best
