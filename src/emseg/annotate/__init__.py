"""Graph cut from sparse brush strokes to dense 3D annotation."""

from emseg.annotate.graph_cut import GraphCutResult, RoiTooLargeError, graph_cut
from emseg.annotate.strokes import simulate_strokes
from emseg.annotate.training import training_source_entry

__all__ = ["GraphCutResult", "RoiTooLargeError", "graph_cut", "simulate_strokes", "training_source_entry"]
