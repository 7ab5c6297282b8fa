"""Qt pieces shared by the emseg docks: layer pickers, model picker, path fields, progress."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QVBoxLayout, QWidget

#: checkpoints made in this session (Fine-tune adds to it); offered by every model picker
RECENT_CHECKPOINTS: list[str] = []


def layer_voxel_size(layer) -> tuple[float, float, float]:
    """Voxel size (z, y, x nm) of a 3D layer: its scale (emseg layers use nm as world units)."""
    scale = tuple(float(s) for s in layer.scale[-3:])
    return scale if all(s > 0 for s in scale) else (1.0, 1.0, 1.0)


def layer_array(layer) -> np.ndarray:
    """The layer's data as a 3D numpy array (reads a lazy layer into memory)."""
    data = np.asarray(layer.data)
    if data.ndim != 3:
        from emseg.errors import InvalidValuesError

        raise InvalidValuesError(f"layer {layer.name!r}: expected a 3D (z, y, x) volume, got shape {data.shape}")
    return data


def checkpoint_path(name_or_path: str) -> str:
    """A bundled model name (e.g. ``mito``) → its file; a path stays as it is."""
    from emseg.models import BUNDLED_DIR

    bundled = BUNDLED_DIR / f"{name_or_path}.pt"
    return str(bundled) if bundled.exists() else name_or_path


class LayerCombo(QComboBox):
    """Names of the viewer's layers of one kind, kept up to date as layers come and go."""

    def __init__(self, viewer, kind: str, optional: bool = False, parent=None):
        super().__init__(parent)
        self.viewer, self.kind, self.optional = viewer, kind, optional
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.refresh)
        self.refresh()

    def refresh(self, *_):
        current = self.currentText()
        self.blockSignals(True)
        self.clear()
        if self.optional:
            self.addItem("(none)")
        self.addItems([layer.name for layer in self.viewer.layers if type(layer).__name__.lower() == self.kind])
        index = self.findText(current)
        self.setCurrentIndex(index if index >= 0 else 0)
        self.blockSignals(False)

    def layer(self):
        """The chosen layer, or None."""
        name = self.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def select(self, name: str) -> None:
        self.refresh()
        self.setCurrentIndex(max(0, self.findText(name)))


class ModelPicker(QWidget):
    """Editable choice of a bundled model name or a checkpoint path (with a browse button)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(16)
        browse = QPushButton("…")
        browse.setToolTip("Choose a checkpoint (.pt)")
        browse.clicked.connect(self._browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(browse)
        self.refresh()

    def refresh(self) -> None:
        from emseg.models import bundled

        current = self.combo.currentText()
        self.combo.clear()
        self.combo.addItems(bundled() + [p for p in RECENT_CHECKPOINTS if p])
        if current:
            self.combo.setCurrentText(current)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "Checkpoints (*.pt)")
        if path:
            self.combo.setCurrentText(path)

    def value(self) -> str:
        return self.combo.currentText().strip()

    def set_value(self, value: str) -> None:
        self.refresh()
        self.combo.setCurrentText(value)


class PathEdit(QWidget):
    """A path text field with a browse button (folder or file)."""

    def __init__(self, placeholder: str = "", folder: bool = True, parent=None):
        super().__init__(parent)
        self.folder = folder
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(browse)

    def _browse(self) -> None:
        if self.folder:
            path = QFileDialog.getExistingDirectory(self, "Folder")
        else:
            path, _ = QFileDialog.getSaveFileName(self, "File")
        if path:
            self.edit.setText(path)

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text).expanduser() if text else None

    def set_path(self, path) -> None:
        self.edit.setText(str(path))


class Progress(QWidget):
    """Progress bar plus a one-line status message."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.label)

    def busy(self, message: str) -> None:
        """Indeterminate progress (unknown length) with a message."""
        self.bar.setRange(0, 0)
        self.label.setText(message)

    def update(self, done: int, total: int, message: str) -> None:
        self.bar.setRange(0, max(1, int(total)))
        self.bar.setValue(int(done))
        self.label.setText(message)

    def finish(self, message: str) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(1)
        self.label.setText(message)

    def fail(self, error: BaseException) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.label.setText(f"error: {error}")
        try:
            from napari.utils.notifications import show_error

            show_error(f"emseg: {error}")
        except Exception:  # noqa: BLE001 — notifications are a convenience only
            pass


class EmsegDock(QWidget):
    """Base of the emseg docks: the viewer, a run button, a progress line, one background job at
    a time, and ``finished`` (emitted with the result, or with the error)."""

    finished = Signal(object)

    def __init__(self, napari_viewer, run_label: str, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker = None
        self.run_button = QPushButton(run_label)
        self.run_button.clicked.connect(self.run)
        self.progress = Progress()
        self._tmp = None

    def run(self) -> None:  # pragma: no cover — every dock defines it
        raise NotImplementedError

    def workdir(self, chosen: Path | None, prefix: str) -> Path:
        """``chosen``, or a temporary folder kept while the dock lives."""
        if chosen is not None:
            return chosen
        self._tmp = self._tmp or tempfile.TemporaryDirectory(prefix=f"emseg-{prefix}-")
        return Path(self._tmp.name)

    def start(self, function, *args, busy: str, on_return, on_yield=None, **kwargs) -> None:
        """Run ``function(*args, **kwargs)`` (a generator yields progress) in a napari
        thread_worker; ``on_return(result)`` runs in the GUI thread and returns what
        ``finished`` carries."""
        from napari.qt.threading import thread_worker

        self.run_button.setEnabled(False)
        self.progress.busy(busy)
        worker = thread_worker(function, start_thread=False)(*args, **kwargs)
        if on_yield is not None:
            worker.yielded.connect(on_yield)
        worker.returned.connect(lambda result: self._returned(on_return, result))
        worker.errored.connect(self.fail)
        self.worker = worker
        worker.start()

    def _returned(self, handler, result) -> None:
        try:
            emitted = handler(result)
        except Exception as error:  # noqa: BLE001 — shown to the user
            self.fail(error)
            return
        self.run_button.setEnabled(True)
        self.worker = None
        self.finished.emit(emitted)

    def done(self, message: str, result) -> None:
        """Finish a quick action run in the GUI thread."""
        self.progress.finish(message)
        self.finished.emit(result)

    def fail(self, error: BaseException) -> None:
        self.progress.fail(error)
        self.run_button.setEnabled(True)
        self.worker = None
        self.finished.emit(error)


def device_combo() -> QComboBox:
    """auto (CUDA, then MPS, then CPU), cpu, cuda, mps."""
    combo = QComboBox()
    combo.addItems(["auto", "cpu", "cuda", "mps"])
    return combo
