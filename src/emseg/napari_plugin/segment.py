"""Segment dock: bundled model or checkpoint → blockwise prediction (`emseg.predict.predict`, as
`emseg predict`) → instance labels (`emseg.postprocess`, as `emseg postprocess`) → labels layer."""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from qtpy.QtWidgets import QButtonGroup, QCheckBox, QDoubleSpinBox, QFormLayout, QLineEdit, QRadioButton

from emseg.napari_plugin._common import EmsegDock, LayerCombo, ModelPicker, PathEdit, device_combo, layer_array, layer_voxel_size

#: labels larger than this many voxels are shown lazily (dask over the OME-Zarr) instead of read into memory
IN_MEMORY_VOXELS = 256 * 1024**2


def planned_blocks(output: Path) -> int | None:
    """Number of write blocks of a prediction whose output group exists (from its metadata)."""
    import zarr

    try:
        settings = dict(zarr.open_group(str(prediction_dir(output)), mode="r").attrs["emseg"])["predict"]
    except Exception:  # noqa: BLE001 — not created yet
        return None
    if "block_shape" not in settings:
        return None
    roi = settings["roi"]
    return math.prod(math.ceil((hi - lo) / b) for (lo, hi), b in zip(roi, settings["block_shape"]))


def prediction_dir(output: Path) -> Path:
    """Where the blocks of a prediction are written: ``output``, or its ``model_scale``
    sub-image when the input is resampled to the model's voxel size."""
    from emseg.predict.run import MODEL_SCALE

    return output / MODEL_SCALE if (output / MODEL_SCALE).exists() else output


def segment_steps(model: str, volume, workdir: Path, threshold: float | None, min_size_nm3: float,
                  device: str = "auto", allow_resample: bool = False, roi: str | None = None):
    """Generator behind the Segment dock: yields (done, total, message) while predicting, then
    returns the path of the instance-label OME-Zarr. Runs the CLI's functions, in a helper thread."""
    from emseg.blocks.ledger import Ledger
    from emseg.postprocess.pipeline import PostprocessConfig, postprocess
    from emseg.predict import predict

    if allow_resample:  # an unscaled layer (napari's default 1 × 1 × 1) counts as an assumed voxel size
        from emseg.predict.run import refuse_assumed_voxel_size

        unscaled = tuple(float(v) for v in volume.voxel_size) == (1.0, 1.0, 1.0)
        refuse_assumed_voxel_size(dataclasses.replace(volume, voxel_size_assumed=True) if unscaled else volume,
                                  "looks like napari's default scale", "set the layer's scale to its voxel size "
                                  "in nm (or untick resample) so the model sees the right size")
    workdir.mkdir(parents=True, exist_ok=True)
    probabilities, labels = workdir / "probabilities.ome.zarr", workdir / "labels.ome.zarr"
    start = time.perf_counter()
    yield 0, 0, "loading the model"
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(predict, model, volume, probabilities, device=device, overwrite=True,
                             allow_resample=allow_resample, roi=roi)
        while not future.done():
            time.sleep(0.2)
            total = planned_blocks(probabilities)
            if total:
                done = len(Ledger(prediction_dir(probabilities)).done())
                yield done, total, f"predicting: {done}/{total} blocks ({time.perf_counter() - start:.0f} s)"
        result = future.result()
    n = len(result.report.done) + result.report.skipped
    yield n, n, "post-processing (threshold, components, size filter)"
    config = PostprocessConfig(threshold=threshold, min_size_nm3=min_size_nm3)
    summary = postprocess(probabilities, labels, config, overwrite=True)
    yield n, n, f"{summary['objects']} objects in {time.perf_counter() - start:.1f} s"
    return labels, summary["objects"], time.perf_counter() - start


class SegmentWidget(EmsegDock):
    """Run a model on an image layer or a file; the result appears as a labels layer."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, "Segment", parent)
        self.model = ModelPicker()
        self.use_layer, self.use_file = QRadioButton("image layer"), QRadioButton("file")
        self.use_layer.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.use_layer)
        group.addButton(self.use_file)
        self.image = LayerCombo(napari_viewer, "image")
        self.file = PathEdit("volume file (any format emseg reads)", folder=False)
        self.output = PathEdit("output folder (default: a temporary folder)")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 0.99)  # 0 shows as "model's": the model's validated threshold
        self.threshold.setSpecialValueText("model's")
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.0)
        self.min_size = QDoubleSpinBox()
        self.min_size.setRange(0, 1e15)
        self.min_size.setDecimals(0)
        self.min_size.setSuffix(" nm³")
        self.roi = QLineEdit()
        self.roi.setPlaceholderText("z0:z1,y0:y1,x0:x1 in voxels (empty: everything)")
        self.roi.setToolTip("Only blocks that touch this region are predicted (as emseg predict --roi).")
        self.device = device_combo()
        self.resample = QCheckBox("resample to the model's voxel size")
        self.resample.setToolTip("Run the model at its own voxel size (the bundled mito model works at 10 nm) "
                                 "and interpolate the result back to the layer's. Check the layer's scale first.")
        self.resample.setChecked(True)
        form = QFormLayout(self)
        form.addRow("model", self.model)
        form.addRow(self.use_layer, self.image)
        form.addRow(self.use_file, self.file)
        form.addRow("output", self.output)
        form.addRow("threshold", self.threshold)
        form.addRow("min size", self.min_size)
        form.addRow("region", self.roi)
        form.addRow("device", self.device)
        form.addRow(self.resample)
        form.addRow(self.run_button)
        form.addRow(self.progress)

    def _input(self):
        from emseg.errors import ConfigError
        from emseg.io import array_volume, open_volume

        if self.use_file.isChecked():
            path = self.file.path()
            if path is None:
                raise ConfigError("choose an input file")
            return open_volume(str(path)), path.stem.split(".")[0]
        layer = self.image.layer()
        if layer is None:
            raise ConfigError("choose an image layer (or a file)")
        return array_volume(layer_array(layer), layer_voxel_size(layer), name=layer.name), layer.name

    def run(self) -> None:
        """Start segmenting in a background thread."""
        try:
            volume, name = self._input()
        except Exception as error:  # noqa: BLE001 — shown to the user
            self.fail(error)
            return
        workdir = self.workdir(self.output.path(), "segment") / f"{name}-{time.strftime('%H%M%S')}"
        model = self.model.value()
        self.start(segment_steps, model, volume, workdir, self.threshold.value() or None, self.min_size.value(),
                   self.device.currentText(), self.resample.isChecked(), self.roi.text().strip() or None,
                   busy="starting",
                   on_yield=lambda step: self.progress.update(*step),
                   on_return=lambda result: self._show(result, name, model))

    def _show(self, result, name: str, model: str):
        from emseg.io import open_volume

        path, objects, seconds = result
        labels = open_volume(str(path))
        data = labels[:, :, :] if math.prod(labels.shape) <= IN_MEMORY_VOXELS else labels.to_dask()
        layer = self.viewer.add_labels(data, name=f"{name} {Path(model).stem} labels", scale=labels.voxel_size,
                                       metadata={"source": str(path), "voxel_size": labels.voxel_size})
        self.progress.finish(f"{objects} objects in {seconds:.1f} s → {path}")
        return layer
