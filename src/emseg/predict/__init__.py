"""Model + Volume → probability maps through `emseg.blocks`; 2D models in stack or orthoplane mode."""

from emseg.predict.run import BlocksFailedError, PredictResult, predict

__all__ = ["BlocksFailedError", "PredictResult", "predict"]
