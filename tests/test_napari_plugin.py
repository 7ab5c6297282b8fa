"""The napari plugin, driven for real (napari's make_napari_viewer + pytest-qt, under Xvfb).

Skipped when napari is not installed (`pip install -e ".[napari]"`). Each test saves a
screenshot of the viewer with its dock after the run: to docs/napari/<widget>.png when
EMSEG_SCREENSHOTS=1, otherwise to tmp_path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from emseg.metrics import voxel_scores  # noqa: E402
from emseg.napari_plugin.sample import SAMPLE_SHAPE, SAMPLE_VOXEL_SIZE, synthetic_em  # noqa: E402

MANIFEST = Path(__file__).resolve().parents[1] / "src" / "emseg" / "napari_plugin" / "napari.yaml"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "napari"
WAIT_MS = 280_000
SCREENSHOTS = os.environ.get("EMSEG_SCREENSHOTS") == "1"


@pytest.fixture(scope="module")
def sample():
    """The sample-data layers (raw image, mito instances) — the same as File > Open Sample."""
    return synthetic_em()


@pytest.fixture
def viewer(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    for data, kwargs, kind in sample:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer


def screenshot(viewer, widget, name: str, tmp_path: Path, reset: bool = True) -> Path:
    """Dock ``widget`` and save a screenshot of the whole window; returns the PNG path."""
    from PIL import Image

    if widget is not None:
        viewer.window.add_dock_widget(widget, name=name, area="right")
    viewer.window._qt_window.resize(1400, 900)
    if reset:
        viewer.reset_view()
    image = viewer.screenshot(canvas_only=False, flash=False)
    folder = DOCS if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    Image.fromarray(np.asarray(image)).save(path)
    assert path.stat().st_size > 10_000
    return path


def run_and_wait(qtbot, widget, start) -> object:
    """Call ``start`` and wait for the widget's ``finished`` signal; fail on an error result."""
    with qtbot.waitSignal(widget.finished, timeout=WAIT_MS) as blocker:
        start()
    result = blocker.args[0]
    if isinstance(result, BaseException):
        raise result
    return result


def tiny_checkpoint(path: Path) -> Path:
    """An untrained small UNet3D (fast on CPU) at the sample's voxel size."""
    import torch

    from emseg.models import build, save_checkpoint

    torch.manual_seed(0)
    config = {"fmaps": 2, "downsample_factors": [[2, 2, 2]]}
    return save_checkpoint(path, build("unet3d", **config), architecture="unet3d", model_config=config,
                           voxel_size=SAMPLE_VOXEL_SIZE, normalization={"mean": 0.5, "std": 0.2},
                           organelle="mito")


@pytest.mark.timeout(300)
def test_manifest_and_sample_menu(make_napari_viewer, tmp_path):
    import npe2

    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "emseg"
    assert {w.display_name for w in manifest.contributions.widgets} == {"Segment", "Annotate", "Fine-tune",
                                                                         "Measure"}
    for command in manifest.contributions.commands:  # every python_name imports
        module, _, attr = command.python_name.partition(":")
        assert callable(getattr(__import__(module, fromlist=[attr]), attr))
    plugins = npe2.PluginManager.instance()
    if "emseg" not in plugins:
        plugins.register(manifest)
    viewer = make_napari_viewer()
    viewer.open_sample("emseg", "synthetic_em")  # File > Open Sample > emseg
    raw, truth = viewer.layers["synthetic EM"], viewer.layers["mito ground truth"]
    assert raw.data.shape == SAMPLE_SHAPE and raw.data.dtype == np.uint8
    assert tuple(raw.scale) == SAMPLE_VOXEL_SIZE
    assert truth.data.max() >= 3 and 0.02 < (truth.data > 0).mean() < 0.5
    truth.visible = True
    screenshot(viewer, None, "sample", tmp_path)


@pytest.mark.timeout(300)
def test_segment_widget(viewer, qtbot, tmp_path):
    from emseg.napari_plugin.segment import SegmentWidget

    widget = SegmentWidget(viewer)
    steps = []
    widget.model.set_value("mito")
    widget.image.select("synthetic EM")
    widget.output.set_path(tmp_path / "segment")
    widget.device.setCurrentText("cpu")
    start = widget.run

    def run():
        start()
        widget.worker.yielded.connect(steps.append)

    from qtpy.QtCore import QTimer

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(50)  # the GUI thread keeps running while the model predicts
    began = time.perf_counter()
    layer = run_and_wait(qtbot, widget, run)
    timer.stop()
    seconds = time.perf_counter() - began
    assert len(ticks) >= 0.3 * seconds / 0.05 and max(np.diff([began] + ticks)) < 2.0  # never blocked > 2 s
    assert layer.name in viewer.layers and layer.data.shape == SAMPLE_SHAPE
    assert tuple(layer.scale) == SAMPLE_VOXEL_SIZE
    assert layer.data.max() >= 1  # the bundled model finds objects
    assert Path(layer.metadata["source"]).is_dir()
    assert any(total > 0 and done == total for done, total, _ in steps)  # the bar reached the end
    assert widget.run_button.isEnabled() and "objects" in widget.progress.label.text()
    screenshot(viewer, widget, "segment", tmp_path)


@pytest.mark.timeout(300)
def test_segment_widget_from_file(make_napari_viewer, qtbot, tmp_path, sample):
    """A file (read lazily by the blockwise engine) instead of a layer; voxel size from the file."""
    from emseg.io import write_ome_zarr
    from emseg.napari_plugin.segment import SegmentWidget

    path = write_ome_zarr(sample[0][0], tmp_path / "raw.ome.zarr", SAMPLE_VOXEL_SIZE) or tmp_path / "raw.ome.zarr"
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    widget.model.set_value(str(tiny_checkpoint(tmp_path / "tiny.pt")))
    widget.use_file.setChecked(True)
    widget.file.set_path(path)
    widget.output.set_path(tmp_path / "out")
    widget.device.setCurrentText("cpu")
    widget.threshold.setValue(0.05)
    widget.roi.setText("0:32, 0:40, 0:40")  # only blocks touching this region are predicted
    layer = run_and_wait(qtbot, widget, widget.run)
    assert layer.data.shape == SAMPLE_SHAPE and tuple(layer.scale) == SAMPLE_VOXEL_SIZE
    assert layer.name.startswith("raw tiny")
    assert Path(layer.metadata["source"]).parent.parent == tmp_path / "out"
    import zarr

    probabilities = zarr.open_group(str(Path(layer.metadata["source"]).parent / "probabilities.ome.zarr"), mode="r")
    assert dict(probabilities.attrs)["emseg"]["predict"]["roi"] == [[0, 32], [0, 40], [0, 40]]
    chunks = probabilities["0"].chunks
    y_far = -(-40 // chunks[1]) * chunks[1]  # rows beyond the chunks that touch the ROI
    assert y_far < SAMPLE_SHAPE[1], chunks
    assert probabilities["0"][:32, :40, :40].max() > 0 and probabilities["0"][:, y_far:].max() == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_annotate_widget(viewer, qtbot, tmp_path, sample):
    import yaml

    from emseg.annotate import simulate_strokes
    from emseg.io import open_volume
    from emseg.napari_plugin.annotate import AnnotateWidget

    truth = sample[1][0] > 0
    widget = AnnotateWidget(viewer)
    widget.image.select("synthetic EM")
    widget.add_stroke_layers()
    strokes = simulate_strokes(truth, planes=2, axis=0)  # strokes on xy planes ...
    strokes = np.maximum(strokes, simulate_strokes(truth, planes=2, axis=2))  # ... and on yz planes
    viewer.layers["object strokes"].data = (strokes == 1).astype(np.uint8)
    viewer.layers["background strokes"].data = (strokes == 2).astype(np.uint8) * 2
    layer = run_and_wait(qtbot, widget, widget.run)
    assert layer.name == "graph cut mask" and layer.data.shape == SAMPLE_SHAPE
    assert voxel_scores(layer.data > 0, truth)["f1"] > 0.7
    assert widget.prior.currentText() == "(none)"
    viewer.add_image(np.where(truth, 0.9, 0.1).astype(np.float32), name="prior", scale=SAMPLE_VOXEL_SIZE)
    widget.prior.select("prior")
    with_prior = run_and_wait(qtbot, widget, widget.run)
    assert voxel_scores(with_prior.data > 0, truth)["f1"] > 0.85
    widget.prior.select("(none)")
    widget.folder.set_path(tmp_path / "source")
    saved = run_and_wait(qtbot, widget, widget.save)
    entry = yaml.safe_load(Path(saved).read_text())[0]
    assert entry["roi"] == [[0, n] for n in SAMPLE_SHAPE]
    mask = open_volume(entry["labels"])
    assert mask.voxel_size == SAMPLE_VOXEL_SIZE and np.array_equal(mask[:, :, :], layer.data > 0)
    assert open_volume(entry["sample_mask"])[:, :, :].all()
    stroked_plane = int(np.argmax((strokes > 0).sum(axis=(1, 2))))
    screenshot(viewer, widget, "annotate", tmp_path)
    viewer.dims.set_point(0, stroked_plane * SAMPLE_VOXEL_SIZE[0])
    layer.opacity = 0.35
    screenshot(viewer, None, "annotate", tmp_path, reset=False)


def test_annotate_prior_threshold_comes_from_the_map(viewer, tmp_path):
    """A prior layer read from a map that `emseg predict` wrote uses its model's threshold."""
    from emseg.io import write_ome_zarr
    from emseg.napari_plugin.annotate import AnnotateWidget, layer_model_threshold

    probabilities = np.full((8, 16, 16), 100, np.uint8)
    write_ome_zarr(probabilities, tmp_path / "p.ome.zarr", (8, 8, 8), attrs={"model": {"threshold": 0.3}})
    write_ome_zarr(probabilities, tmp_path / "plain.ome.zarr", (8, 8, 8))
    stored = viewer.add_image(probabilities, name="stored", metadata={"source": str(tmp_path / "p.ome.zarr")})
    plain = viewer.add_image(probabilities, name="plain", metadata={"source": str(tmp_path / "plain.ome.zarr")})
    missing = viewer.add_image(probabilities, name="missing", metadata={"source": str(tmp_path / "gone.zarr")})
    assert layer_model_threshold(stored) == pytest.approx(0.3)
    assert layer_model_threshold(plain) is None and layer_model_threshold(missing) is None
    assert layer_model_threshold(viewer.add_image(probabilities, name="unsaved")) is None
    widget = AnnotateWidget(viewer)
    assert widget.prior_threshold.value() == 0  # 0 shows "from the map's model, else 0.5"
    viewer.add_image(np.zeros((8, 16, 16), np.uint8), name="raw")
    widget.image.select("raw")
    widget.add_stroke_layers()
    viewer.layers["object strokes"].data[4, 4, 4] = 1
    viewer.layers["background strokes"].data[4, 12, 12] = 2
    calls = []
    widget.start = lambda *args, **kwargs: calls.append(kwargs)  # what run() would hand to graph_cut
    for layer, typed, want in (("stored", 0, 0.3), ("plain", 0, None), ("stored", 0.65, 0.65)):
        widget.prior.select(layer)
        widget.prior_threshold.setValue(typed)
        widget.run()
        assert calls[-1]["prior_threshold"] == (pytest.approx(want) if want else None)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_finetune_widget(viewer, qtbot, tmp_path, sample):
    import torch

    from emseg.napari_plugin._common import RECENT_CHECKPOINTS, checkpoint_path
    from emseg.napari_plugin.finetune import FinetuneWidget

    mask = viewer.add_labels((sample[1][0] > 0).astype(np.uint8), name="graph cut mask", scale=SAMPLE_VOXEL_SIZE)
    if SCREENSHOTS:  # the docs show the bundled model learning (about 45 s on 2 cores)
        start_ckpt, iterations, step = Path(checkpoint_path("mito")), 10, 5
    else:  # a tiny network keeps the test fast
        start_ckpt, iterations, step = tiny_checkpoint(tmp_path / "tiny.pt"), 4, 2
    widget = FinetuneWidget(viewer)
    widget.model.set_value(str(start_ckpt))
    widget.image.select("synthetic EM")
    widget.mask.select(mask.name)
    widget.iterations.setValue(iterations)
    widget.step.setValue(step)
    widget.device.setCurrentText("cpu")
    widget.output.set_path(tmp_path / "ft")
    best = run_and_wait(qtbot, widget, widget.run)
    assert Path(best).exists() and str(best) in RECENT_CHECKPOINTS and widget.model.value() == str(best)
    state = torch.load(best, map_location="cpu", weights_only=False)
    history = torch.load(Path(best).parent / "last.pt", map_location="cpu", weights_only=False)["training"]["history"]
    assert [r["iteration"] for r in history] == [step, iterations] and all(r["val_f1"] != "" for r in history)
    before = torch.load(start_ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert any(not torch.equal(before[k], v) for k, v in state["state_dict"].items())  # weights moved
    ax = widget.figure.axes[0]
    assert len(ax.lines[0].get_xdata()) == 2  # the live loss curve has both points
    screenshot(viewer, widget, "finetune", tmp_path)

    # Stop: a long run ends after the current step and keeps the best checkpoint so far
    assert not widget.stop_button.isEnabled()
    widget.iterations.setValue(10_000)
    widget.step.setValue(1)
    widget.output.set_path(tmp_path / "ft-stop")

    def start_then_stop():
        widget.run()
        assert widget.stop_button.isEnabled()
        widget.worker.yielded.connect(lambda update: update[0] >= 1 and widget.stop_button.click())

    stopped = run_and_wait(qtbot, widget, start_then_stop)
    last = torch.load(Path(stopped).parent / "last.pt", map_location="cpu", weights_only=False)
    assert Path(stopped).exists() and 1 <= last["training"]["iteration"] < 10 and not widget.stop_button.isEnabled()


@pytest.mark.timeout(300)
def test_measure_widget(viewer, qtbot, tmp_path, sample):
    import pandas as pd
    from qtpy.QtCore import Qt

    from emseg.napari_plugin.measure import MeasureWidget

    truth = sample[1][0]
    viewer.layers["mito ground truth"].visible = True
    widget = MeasureWidget(viewer)
    widget.labels.select("mito ground truth")
    widget.image.select("synthetic EM")
    table = run_and_wait(qtbot, widget, widget.run)
    ids = np.unique(truth[truth > 0])
    assert sorted(table.index) == list(ids) and widget.table.rowCount() == len(ids)
    assert np.allclose(table["voxels"], [np.sum(truth == i) for i in table.index])
    headers = [widget.table.horizontalHeaderItem(c).text() for c in range(widget.table.columnCount())]
    volume_col = headers.index("volume_nm3")
    widget.table.sortItems(volume_col, Qt.DescendingOrder)
    largest = widget.row_id(0)
    assert largest == table["volume_nm3"].idxmax()
    widget.go_to_row(0)
    z_nm = table.loc[largest, "centroid_z_nm"]
    assert abs(viewer.dims.point[0] - z_nm) <= SAMPLE_VOXEL_SIZE[0]
    assert viewer.layers["mito ground truth"].selected_label == largest
    assert widget.canvas.figure.axes and widget.column.count() >= 4
    widget.csv.set_path(tmp_path / "objects.csv")
    csv = run_and_wait(qtbot, widget, widget.export_csv)
    assert len(pd.read_csv(csv)) == len(ids)
    widget.mesh_folder.set_path(tmp_path / "meshes")
    written = run_and_wait(qtbot, widget, widget.export_meshes)
    assert len(written) == len(ids) and all((tmp_path / "meshes" / f"{w['id']}.ply").exists() for w in written)
    screenshot(viewer, widget, "measure", tmp_path, reset=False)  # keep the view on the clicked object


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_segment_widget_on_real_em(make_napari_viewer, qtbot, tmp_path, shared_data):
    """The bundled mito model through the Segment dock on a held-out Lucchi crop (z 132-164)."""
    from emseg.io import open_volume
    from emseg.napari_plugin.segment import SegmentWidget

    roi = (slice(132, 164), slice(320, 512), slice(128, 320))
    raw = open_volume(str(shared_data / "lucchi" / "train_image.tif"))
    truth = open_volume(str(shared_data / "lucchi" / "train_mito.tif"))[roi] > 0
    viewer = make_napari_viewer()
    viewer.add_image(raw[roi], name="Lucchi z132-164", scale=raw.voxel_size)
    widget = SegmentWidget(viewer)
    widget.model.set_value("mito")
    widget.device.setCurrentText("cpu")
    widget.output.set_path(tmp_path)
    layer = run_and_wait(qtbot, widget, widget.run)
    assert voxel_scores(layer.data > 0, truth)["f1"] > 0.5
    viewer.dims.set_point(0, 16 * raw.voxel_size[0])
    screenshot(viewer, widget, "segment_real_em", tmp_path)


def test_bundled_model_fits_a_small_annotation():
    """Only the output block must fit the annotated ROI: the input context is mirrored at its border."""
    from emseg.errors import InvalidValuesError
    from emseg.models import load
    from emseg.napari_plugin.finetune import fitting_output_shape

    net = load("mito").model
    assert all(i > 64 for i in net.input_shape_for((1, 1, 1)))  # its input is larger than the ROI
    shape = fitting_output_shape(net, (20, 64, 64))
    assert all(o <= n for o, n in zip(net.output_shape(net.input_shape_for(shape)), (20, 64, 64)))
    with pytest.raises(InvalidValuesError, match="too small"):
        fitting_output_shape(net, (4, 64, 64))


def test_segment_refuses_napari_default_scale_when_resampling(tmp_path):
    from emseg.errors import ConfigError
    from emseg.io import array_volume
    from emseg.napari_plugin.segment import segment_steps

    volume = array_volume(np.zeros((8, 8, 8), np.uint8), (1.0, 1.0, 1.0), name="unscaled layer")
    with pytest.raises(ConfigError, match="unscaled layer: voxel size 1 × 1 × 1 nm looks like napari's default"):
        next(segment_steps("mito", volume, tmp_path / "work", None, 0.0, allow_resample=True))
    assert not (tmp_path / "work").exists()
