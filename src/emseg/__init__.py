"""emseg: organelle segmentation, meshes and numbers for volume electron microscopy."""

from emseg.errors import EmsegError

__version__ = "0.1.0"
__all__ = ["EmsegError", "__version__"]
