"""Per-object measurements (nm units) and meshes."""
