"""Annotate dock: object / background strokes (two labels layers, any plane), optionally over a
model's probability layer (the prior) → graph cut (`emseg.annotate.graph_cut`, as `emseg annotate`)
→ an editable mask layer → a training source (raw, mask and sample mask as OME-Zarr plus the YAML
entry of `training_source_entry`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QDoubleSpinBox, QFormLayout, QLineEdit, QPushButton

from emseg.napari_plugin._common import EmsegDock, LayerCombo, PathEdit, layer_array, layer_voxel_size

OBJECT, BACKGROUND = 1, 2
MASK_LAYER = "graph cut mask"


def combine_strokes(object_strokes: np.ndarray, background_strokes: np.ndarray) -> np.ndarray:
    """One stroke volume (0 none, 1 object, 2 background) from the two stroke layers; where both
    were painted, background wins (the safer error for training)."""
    strokes = np.zeros(object_strokes.shape, np.uint8)
    strokes[object_strokes > 0] = OBJECT
    strokes[background_strokes > 0] = BACKGROUND
    return strokes


def save_training_source(raw: np.ndarray, mask: np.ndarray, roi, voxel_size, folder: Path,
                         name: str = "annotation") -> tuple[dict, Path]:
    """Write raw, mask (1 = object) and sample mask (1 inside ``roi``) as OME-Zarr into ``folder``
    and the training-config source entry as ``<name>.yaml``; returns (entry, yaml path)."""
    from emseg.annotate import training_source_entry
    from emseg.annotate.commands import sample_mask_path
    from emseg.io import write_ome_zarr

    folder.mkdir(parents=True, exist_ok=True)
    raw_path, mask_path = folder / f"{name}_raw.ome.zarr", folder / f"{name}_mask.ome.zarr"
    sample_path = sample_mask_path(mask_path)
    sample = np.zeros(mask.shape, np.uint8)
    sample[tuple(roi)] = 1
    write_ome_zarr(raw, raw_path, voxel_size, overwrite=True)
    write_ome_zarr((mask > 0).astype(np.uint8), mask_path, voxel_size, kind="labels", overwrite=True)
    write_ome_zarr(sample, sample_path, voxel_size, kind="labels", overwrite=True)
    yaml_path = folder / f"{name}.yaml"
    yaml_path.write_text(training_source_entry(raw_path, mask_path, sample_path, roi, as_yaml=True))
    return training_source_entry(raw_path, mask_path, sample_path, roi), yaml_path


def layer_model_threshold(layer) -> float | None:
    """The model threshold `emseg predict` stored with the map a layer was read from (its source
    path, or ``metadata["source"]``); None when the layer has no such file."""
    from emseg.postprocess.pipeline import stored_model_threshold

    path = getattr(getattr(layer, "source", None), "path", None) or layer.metadata.get("source")
    if not path:
        return None
    try:
        return stored_model_threshold(str(path))
    except Exception:  # noqa: BLE001 — a file emseg cannot read has no stored threshold
        return None


def mask_roi(layer) -> tuple[slice, slice, slice]:
    """The annotated ROI stored with a graph-cut mask layer (default: the whole volume)."""
    roi = layer.metadata.get("emseg_roi")
    return tuple(slice(a, b) for a, b in roi) if roi else tuple(slice(0, n) for n in layer.data.shape[-3:])


class AnnotateWidget(EmsegDock):
    """Strokes → graph cut → mask layer → training source."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, "Run graph cut", parent)
        self.image = LayerCombo(napari_viewer, "image")
        self.object_strokes = LayerCombo(napari_viewer, "labels")
        self.background_strokes = LayerCombo(napari_viewer, "labels")
        self.mask = LayerCombo(napari_viewer, "labels")
        self.prior = LayerCombo(napari_viewer, "image", optional=True)
        add = QPushButton("Add stroke layers")
        add.clicked.connect(self.add_stroke_layers)
        self.roi = QLineEdit()
        self.roi.setPlaceholderText("z0:z1,y0:y1,x0:x1 (default: whole volume)")
        self.smoothness = QDoubleSpinBox()
        self.smoothness.setRange(0.0, 10.0)
        self.smoothness.setSingleStep(0.1)
        self.smoothness.setValue(1.0)  # graph_cut's default
        self.prior_threshold = QDoubleSpinBox()
        self.prior_threshold.setDecimals(3)
        self.prior_threshold.setRange(0.0, 0.999)
        self.prior_threshold.setSingleStep(0.05)
        self.prior_threshold.setSpecialValueText("from the map's model, else 0.5")  # shown at 0
        self.folder = PathEdit("folder for the training source")
        self.save_button = QPushButton("Save as training source")
        self.save_button.clicked.connect(self.save)
        form = QFormLayout(self)
        form.addRow("image", self.image)
        form.addRow(add)
        form.addRow("object strokes", self.object_strokes)
        form.addRow("background strokes", self.background_strokes)
        form.addRow("ROI", self.roi)
        form.addRow("model prior (optional)", self.prior)
        form.addRow("prior threshold", self.prior_threshold)
        form.addRow("smoothness", self.smoothness)
        form.addRow(self.run_button)
        form.addRow("mask", self.mask)
        form.addRow("save to", self.folder)
        form.addRow(self.save_button)
        form.addRow(self.progress)

    def add_stroke_layers(self) -> None:
        """Two empty labels layers over the image: paint object strokes (1) and background strokes (2)."""
        image = self.image.layer()
        if image is None:
            self.fail(ValueError("add an image layer first"))
            return
        shape, scale = image.data.shape[-3:], image.scale[-3:]
        background = self.viewer.add_labels(np.zeros(shape, np.uint8), name="background strokes", scale=scale)
        background.selected_label = BACKGROUND
        obj = self.viewer.add_labels(np.zeros(shape, np.uint8), name="object strokes", scale=scale)
        obj.selected_label = OBJECT
        obj.mode = "paint"
        self.object_strokes.select(obj.name)
        self.background_strokes.select(background.name)

    def run(self) -> None:
        """Graph cut in a background thread; the result replaces the mask layer."""
        from emseg.annotate import graph_cut

        try:
            image, obj, bg = self.image.layer(), self.object_strokes.layer(), self.background_strokes.layer()
            if image is None or obj is None or bg is None:
                raise ValueError("choose the image and both stroke layers")
            raw = layer_array(image)
            strokes = combine_strokes(layer_array(obj), layer_array(bg))
            prior_layer = self.prior.layer()
            prior = None if prior_layer is None else layer_array(prior_layer)
            threshold = self.prior_threshold.value() or (None if prior_layer is None else
                                                         layer_model_threshold(prior_layer))
        except Exception as error:  # noqa: BLE001 — shown to the user
            self.fail(error)
            return
        self.start(graph_cut, raw, strokes, layer_voxel_size(image), roi=self.roi.text().strip() or None,
                   smoothness=self.smoothness.value(), prior=prior, prior_threshold=threshold,
                   busy="graph cut: supervoxels, max-flow/min-cut",
                   on_return=lambda result: self._show(result, image.scale[-3:]))

    def _show(self, result, scale):
        mask = np.asarray(result.full_mask().compute(), np.uint8)
        metadata = {"emseg_roi": [[s.start, s.stop] for s in result.roi], "voxel_size": result.voxel_size}
        if MASK_LAYER in self.viewer.layers:
            layer = self.viewer.layers[MASK_LAYER]
            layer.data, layer.metadata = mask, metadata
        else:
            layer = self.viewer.add_labels(mask, name=MASK_LAYER, scale=scale, metadata=metadata, opacity=0.5)
        self.mask.select(layer.name)
        seconds = sum(result.timings.values())
        self.progress.finish(f"{result.mask.mean():.1%} of the ROI is object ({result.n_supervoxels} supervoxels, "
                             f"{seconds:.1f} s); edit the mask with the brush, then save")
        return layer

    def save(self) -> Path | None:
        """Write the image and the (edited) mask as a training source; returns the YAML path."""
        try:
            image, mask, folder = self.image.layer(), self.mask.layer(), self.folder.path()
            if image is None or mask is None or folder is None:
                raise ValueError("choose the image, the mask layer and a folder")
            _, yaml_path = save_training_source(layer_array(image), layer_array(mask), mask_roi(mask),
                                                layer_voxel_size(image), folder)
        except Exception as error:  # noqa: BLE001 — shown to the user
            self.fail(error)
            return None
        self.done(f"training source written: {yaml_path}", yaml_path)
        return yaml_path
