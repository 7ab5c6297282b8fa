"""Voxel and instance scores of predictions against ground truth."""
