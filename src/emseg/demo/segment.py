"""One model through the pipeline: blockwise prediction → instances → measurements → scores."""

from __future__ import annotations

from pathlib import Path

from emseg.demo.data import DemoData
from emseg.demo.settings import DemoSettings


def predict_volume(model: str, data: DemoData, folder: Path, settings: DemoSettings) -> Path:
    """Probabilities (uint8 OME-Zarr) of the whole volume, blockwise, as `emseg predict` does."""
    import warnings

    from emseg.predict import predict

    with warnings.catch_warnings():  # the bundled model works at 10 nm: resampling is expected here
        warnings.filterwarnings("ignore", message=".*resampling the input", category=UserWarning)
        result = predict(model, str(data.raw), folder / "probabilities.ome.zarr", device=settings.device,
                         overwrite=True, progress=True, allow_resample=True)
    return result.output


def instances(probabilities: Path, folder: Path, settings: DemoSettings) -> dict:
    """The model's threshold, connected components, size filter: instance labels as `emseg postprocess`."""
    from emseg.postprocess.pipeline import PostprocessConfig, postprocess

    config = PostprocessConfig(min_size_nm3=settings.min_size_nm3, fill_holes=True)
    return postprocess(str(probabilities), folder / "labels.ome.zarr", config, overwrite=True, progress=True)


def measurements(labels: Path, data: DemoData, folder: Path) -> tuple[Path, Path, int]:
    """Per-object table (nm units) as CSV and its histograms as PNG, as `emseg measure`."""
    from emseg.measure.objects import measure, plot_histograms

    table = measure(str(labels), raw=str(data.raw), progress=True)
    csv, png = folder / "objects.csv", folder / "histograms.png"
    table.to_csv(csv)
    if len(table):
        plot_histograms(table, png)
    return csv, png, len(table)


def scores(labels: Path, data: DemoData) -> dict:
    """Voxel and instance scores of the post-processed instances (what a user keeps) against
    the synthetic truth, outside the training blocks, as `emseg evaluate`."""
    from emseg.evaluate.pipeline import evaluate

    return evaluate(str(labels), str(data.truth), sample_mask=str(data.eval_mask), progress=True)
