"""Measure dock: per-object table from `emseg.measure.objects.measure` (as `emseg measure`),
sortable, a click moves the viewer to the object; histograms; CSV and mesh export
(`emseg.measure.meshes.export_meshes`, as `emseg mesh`)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QPushButton, QTableWidget, QTableWidgetItem, QWidget

from emseg.napari_plugin._common import EmsegDock, LayerCombo, PathEdit, layer_array, layer_voxel_size

TABLE_COLUMNS = ("volume_nm3", "surface_area_nm2", "equivalent_diameter_nm", "sphericity", "elongation",
                 "mean_intensity", "touches_border", "centroid_z_nm", "centroid_y_nm", "centroid_x_nm")


def cell_value(value):
    """Table cell data that sorts numerically: ints stay ints, floats get 4 significant digits."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(f"{float(value):.4g}")


def measure_layers(labels: np.ndarray, raw: np.ndarray | None, voxel_size, surface: bool = True):
    """The CLI's per-object table for in-memory label (and raw) arrays."""
    from emseg.measure.objects import measure

    return measure(labels, raw, voxel_size, surface)


class MeasureWidget(EmsegDock):
    """Per-object measurements of a labels layer with histogram and exports."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, "Measure", parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.result = None
        self.labels = LayerCombo(napari_viewer, "labels")
        self.image = LayerCombo(napari_viewer, "image", optional=True)
        self.surface = QCheckBox("surface area and sphericity (meshes)")
        self.surface.setChecked(True)
        self.table = QTableWidget()
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setMinimumHeight(180)
        self.table.cellClicked.connect(self.go_to_row)
        self.column = QComboBox()
        self.column.currentTextChanged.connect(self.plot)
        self.figure = Figure(figsize=(4, 2.4), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(200)
        self.csv = PathEdit("objects.csv", folder=False)
        csv_button = QPushButton("Export CSV")
        csv_button.clicked.connect(self.export_csv)
        self.mesh_folder = PathEdit("folder for meshes")
        self.mesh_format = QComboBox()
        self.mesh_format.addItems(["ply", "obj", "precomputed"])
        mesh_button = QPushButton("Export meshes")
        mesh_button.clicked.connect(self.export_meshes)
        mesh_row = QWidget()
        row = QHBoxLayout(mesh_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.mesh_format)
        row.addWidget(mesh_button)
        form = QFormLayout(self)
        form.addRow("labels", self.labels)
        form.addRow("intensities", self.image)
        form.addRow(self.surface)
        form.addRow(self.run_button)
        form.addRow(self.progress)
        form.addRow(self.table)
        form.addRow("histogram", self.column)
        form.addRow(self.canvas)
        form.addRow(self.csv, csv_button)
        form.addRow(self.mesh_folder, mesh_row)

    # ---- measuring ---------------------------------------------------------------------
    def run(self) -> None:
        """Measure in a background thread; fills the table and the histogram."""
        try:
            labels_layer, image = self.labels.layer(), self.image.layer()
            if labels_layer is None:
                raise ValueError("choose a labels layer")
            labels = layer_array(labels_layer)
            raw = layer_array(image) if image is not None else None
        except Exception as error:  # noqa: BLE001 — shown to the user
            self.fail(error)
            return
        self._measured = labels_layer
        self.start(measure_layers, labels, raw, layer_voxel_size(labels_layer), self.surface.isChecked(),
                   busy=f"measuring {labels_layer.name}", on_return=self._show)

    def _show(self, table):
        self.result = table
        columns = [c for c in TABLE_COLUMNS if c in table]
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setRowCount(len(table))
        self.table.setColumnCount(len(columns) + 1)
        self.table.setHorizontalHeaderLabels(["id"] + columns)
        for r, (label, row) in enumerate(table.iterrows()):
            for c, value in enumerate([label] + [row[k] for k in columns]):
                item = QTableWidgetItem()
                item.setData(Qt.DisplayRole, cell_value(value))
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self.column.blockSignals(True)
        self.column.clear()
        self.column.addItems([c for c in columns if c != "touches_border" and not c.startswith("centroid")])
        self.column.blockSignals(False)
        self.plot(self.column.currentText())
        self.progress.finish(f"{len(table)} objects; click a row to jump to the object")
        return table

    def row_id(self, row: int) -> int:
        """Object id shown in table row ``row`` (after any sorting)."""
        return int(self.table.item(row, 0).data(Qt.DisplayRole))

    def go_to_row(self, row: int, _column: int = 0) -> None:
        """Centre the viewer on the object of ``row`` (world units are nm) and select its label."""
        label = self.row_id(row)
        centroid = [float(self.result.loc[label, f"centroid_{a}_nm"]) for a in "zyx"]
        layer = self._measured
        world = [c - s / 2 + t for c, s, t in zip(centroid, layer.scale[-3:], layer.translate[-3:])]
        self.viewer.dims.set_point(list(range(self.viewer.dims.ndim - 3, self.viewer.dims.ndim)), world)
        self.viewer.camera.center = world
        layer.selected_label = label

    def plot(self, column: str) -> None:
        """Histogram of one column over all objects."""
        self.figure.clear()
        if self.result is None or not column:
            self.canvas.draw_idle()
            return
        ax = self.figure.add_subplot(111)
        values = self.result[column].replace([np.inf, -np.inf], np.nan).dropna()
        ax.hist(values, bins=min(40, max(5, len(values) // 3)), color="tab:blue", alpha=0.8)
        ax.set(xlabel=column, ylabel="objects", title=f"{len(self.result)} objects")
        self.figure.tight_layout()
        self.canvas.draw_idle()

    # ---- exports -----------------------------------------------------------------------
    def export_csv(self):
        """Write the table (as `emseg measure -o`); returns the path."""
        path = self.csv.path()
        if self.result is None or path is None:
            self.fail(ValueError("measure first and choose a CSV file"))
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        self.result.to_csv(path)
        self.done(f"wrote {len(self.result)} objects to {path}", path)
        return path

    def export_meshes(self) -> None:
        """Meshes of every object of the labels layer (as `emseg mesh`), in a background thread."""
        from emseg.io import array_volume
        from emseg.measure.meshes import export_meshes

        layer, folder = self.labels.layer(), self.mesh_folder.path()
        if layer is None or folder is None:
            self.fail(ValueError("choose a labels layer and a mesh folder"))
            return
        try:
            volume = array_volume(layer_array(layer), layer_voxel_size(layer), name=layer.name)
        except Exception as error:  # noqa: BLE001 — shown to the user
            self.fail(error)
            return
        self.start(export_meshes, volume, folder, self.mesh_format.currentText(), busy=f"meshing {layer.name}",
                   on_return=self._meshed)

    def _meshed(self, written):
        faces = sum(w["faces"] for w in written)
        self.progress.finish(f"wrote {len(written)} meshes ({faces} faces) to {self.mesh_folder.path()}")
        return written
