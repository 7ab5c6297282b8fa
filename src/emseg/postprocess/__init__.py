"""Probabilities → labels: threshold, blockwise connected components, size filter, conflicts."""
