"""`emseg demo`: synthetic volume → loose annotations → training → prediction → post-processing,
measurements and evaluation, for a freshly trained model and the bundled one, in one HTML report."""

from emseg.demo.settings import DemoSettings

__all__ = ["DemoSettings", "run_demo"]


def __getattr__(name: str):
    if name == "run_demo":
        from emseg.demo.pipeline import run_demo

        return run_demo
    raise AttributeError(f"module 'emseg.demo' has no attribute {name!r}")
