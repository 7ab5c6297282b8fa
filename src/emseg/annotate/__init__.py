"""Graph cut from sparse brush strokes to dense 3D annotation."""
