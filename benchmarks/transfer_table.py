"""CEM500K-style transfer table: validation IoU of random vs MoCoV2-pretrained U-Net-ResNet encoders.

    python benchmarks/transfer_table.py [--data ../shared/data] [--out bench_out/transfer]

1. Patch store: a plain 224-px grid over the *training* parts only (Lucchi z 0–131, ISBI slices
   0–23), written in the `emseg curate` store layout (no dedup/filter: a stand-in for curation).
2. MoCoV2 pretraining (`emseg.pretrain.run.pretrain`) of a ResNet-18 for a fixed time budget.
3. For each task (Lucchi mitochondria: train z 0–131 / validate z 132–164; ISBI membranes:
   train 0–23 / validate 24–29) and each label regime (all training slices; a few evenly spaced
   slices), train2d with: random init (all layers trained), pretrained + frozen encoder, pretrained
   + fine-tuned — same iterations for all — and report volume IoU on the validation slices.
Extra columns: ``--init NAME=PATH`` (e.g. ``imagenet=resnet50.pth`` or ``cem500k=cem500k_mocov2_resnet50_200ep.pth.tar``)
adds frozen runs from weights a user has locally; nothing is downloaded.
Writes table.csv, table.md and table.png under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def grid_patch_store(path: Path, sources: list[tuple[str, Path, int]], size: int = 224, stride: int = 224) -> int:
    """Write a patch store (layout of `emseg curate`) from a grid over slices ``0..z_stop-1``."""
    import zarr

    from emseg.io import open_volume

    patches, rows = [], {k: [] for k in ("dataset", "slice", "y", "x", "height", "width")}
    for ds, (_, file, z_stop) in enumerate(sources):
        vol = np.asarray(open_volume(str(file))[0:z_stop])
        for z in range(z_stop):
            for y in range(0, vol.shape[1], stride):
                for x in range(0, vol.shape[2], stride):
                    tile = vol[z, y:y + size, x:x + size]
                    if min(tile.shape) < size // 2:
                        continue
                    padded = np.zeros((size, size), np.uint8)
                    padded[:tile.shape[0], :tile.shape[1]] = tile
                    patches.append(padded)
                    for key, value in zip(rows, (ds, z, y, x, *tile.shape)):
                        rows[key].append(value)
    n = len(patches)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("patches", shape=(n, size, size), chunks=(64, size, size), dtype="uint8")[:] = np.stack(patches)
    table = group.create_group("table")
    columns = {**{k: np.asarray(v, np.int32) for k, v in rows.items()}, "plane": np.zeros(n, np.uint8),
               "hash": np.zeros(n, np.uint64), "exemplar": np.arange(n, dtype=np.int64),
               "score": np.ones(n, np.float32), "kept": np.ones(n, bool)}
    for name, values in columns.items():
        table.create_array(name, shape=values.shape, dtype=values.dtype)[:] = values
    group.attrs["emseg"] = {"kind": "patch_store", "patch_size": size, "complete": True,
                            "datasets": [s[0] for s in sources]}
    return n


def evenly(start: int, stop: int, count: int) -> list[int]:
    return sorted({int(round(v)) for v in np.linspace(start, stop - 1, count)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "transfer")
    parser.add_argument("--width", type=int, default=32, help="ResNet-18 base width (64 = standard)")
    parser.add_argument("--pretrain-seconds", type=float, default=240, help="MoCoV2 wall-time budget")
    parser.add_argument("--pretrain-batch", type=int, default=32)
    parser.add_argument("--pretrain-size", type=int, default=96, help="view size for MoCoV2")
    parser.add_argument("--iterations", type=int, default=60, help="train2d iterations (same for every run)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=96)
    parser.add_argument("--few", type=int, default=8, help="labelled slices in the few-label regime (ISBI: half)")
    parser.add_argument("--lucchi-val-every", type=int, default=3, help="validate on every n-th slice of z 132–164")
    parser.add_argument("--lucchi-val-roi", type=int, nargs=4, default=[128, 640, 256, 768],
                        help="y0 y1 x0 x1 of the Lucchi validation crop (CPU time)")
    parser.add_argument("--init", action="append", default=[], help="NAME=PATH extra encoder (frozen), e.g. imagenet=...")
    parser.add_argument("--encoder", type=Path, help="use these MoCoV2 weights instead of pretraining here")
    parser.add_argument("--tasks", nargs="+", default=["lucchi_mito", "isbi_membrane"])
    parser.add_argument("--regimes", nargs="+", default=["full", "few"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from emseg.pretrain.run import PretrainConfig, pretrain
    from emseg.train.transfer2d import SliceSet, Transfer2DConfig, train2d

    torch.set_num_threads(args.threads)
    lucchi, isbi = args.data / "lucchi", args.data / "isbi2012"
    if not (lucchi / "train_image.tif").exists() or not (isbi / "train_image.tif").exists():
        print(f"skip: real EM data not found under {args.data} (needs lucchi/ and isbi2012/)")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    if args.encoder:
        encoder = args.encoder
        payload = torch.load(encoder, map_location="cpu", weights_only=False)
        history = payload.get("history") or [{"loss": float("nan"), "acc": float("nan")}]
        summary, n, seen = {"images_per_s": float("nan"), "history": history}, 0, 0
    else:
        store = args.out / "patches.zarr"
        tic = time.perf_counter()
        n = grid_patch_store(store, [("lucchi_train_z0-131", lucchi / "train_image.tif", 132),
                                     ("isbi_train_0-23", isbi / "train_image.tif", 24)])
        timings["patch store"] = time.perf_counter() - tic
        print(f"patch store: {n} patches in {timings['patch store']:.0f} s")

        # time-budgeted MoCoV2: measure one short epoch, then size the run to the budget
        encoder = args.out / "moco_resnet18.pt"
        probe = PretrainConfig(arch="resnet18", width=args.width, epochs=1, batch_size=args.pretrain_batch,
                               image_size=args.pretrain_size, queue_size=4096, steps_per_epoch=3, device="cpu",
                               schedule="cosine")
        tic = time.perf_counter()
        speed = pretrain(store, encoder, probe, overwrite=True, progress=False)["images_per_s"]
        steps = max(3, int(args.pretrain_seconds * speed / args.pretrain_batch))
        epochs = 4
        config = probe.model_copy(update={"epochs": epochs, "steps_per_epoch": max(1, steps // epochs)})
        summary = pretrain(store, encoder, config, overwrite=True)
        timings["pretrain"] = time.perf_counter() - tic
        seen = epochs * config.steps_per_epoch * args.pretrain_batch
        print(f"pretrain: {seen} images ({seen / n:.2f} passes over {n} patches), {summary['images_per_s']:.1f} images/s, "
              f"final loss {summary['history'][-1]['loss']:.3f}, positive-key acc {summary['history'][-1]['acc']:.2f}")

    zoom = (args.patch_size / 224) ** 2  # keep the recipe's zoom range (scale 0.08–1 at 224 px) at this patch size
    tasks = {
        "lucchi_mito": (lucchi / "train_image.tif", lucchi / "train_mito.tif", (0, 132),
                        SliceSet(image=str(lucchi / "train_image.tif"), labels=str(lucchi / "train_mito.tif"),
                                 slices=list(range(132, 165, args.lucchi_val_every)), roi=tuple(args.lucchi_val_roi)),
                        args.few),
        "isbi_membrane": (isbi / "train_image.tif", isbi / "train_membrane.tif", (0, 24),
                          SliceSet(image=str(isbi / "train_image.tif"), labels=str(isbi / "train_membrane.tif"),
                                   slices=list(range(24, 30))), max(2, args.few // 2)),
    }
    inits = [("random", "random", False), ("emseg-MoCoV2 frozen", str(encoder), True),
             ("emseg-MoCoV2 fine-tuned", str(encoder), False)]
    for spec in args.init:
        name, _, path = spec.partition("=")
        inits.append((f"{name} frozen", path, True))
    rows = []
    for task, (image, labels, (z0, z1), val, few) in tasks.items():
        if task not in args.tasks:
            continue
        for regime, slices in (("full", list(range(z0, z1))), (f"few ({few} slices)", evenly(z0, z1, few))):
            if regime.split()[0] not in args.regimes:
                continue
            for init_name, init, frozen in inits:
                cfg = Transfer2DConfig(
                    train=SliceSet(image=str(image), labels=str(labels), slices=slices), val=val, init=init,
                    freeze_encoder=frozen, arch="resnet18", width=args.width, iterations=args.iterations,
                    batch_size=args.batch_size, patch_size=args.patch_size, scale=(0.08 * zoom, 1.0 * zoom),
                    device="cpu")
                result = train2d(cfg, args.out / f"{task}_{regime.split()[0]}_{init_name.replace(' ', '_')}.pt",
                                 progress=False)
                rows.append({"task": task, "regime": regime, "init": init_name, "iou": result["iou"],
                             "iou_per_image": result["iou_per_image_mean"], "train_loss": result["final_loss"],
                             "wall_s": result["wall_s"]})
                print(f"{task:14s} {regime:18s} {init_name:24s} IoU {result['iou']:.3f} "
                      f"(loss {result['final_loss']:.3f}, {result['wall_s']:.0f} s)", flush=True)
    write_outputs(rows, args, timings, summary, n, seen)
    return 0


def write_outputs(rows: list[dict], args, timings: dict, pre: dict, n: int, seen: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame.to_csv(args.out / "table.csv", index=False)
    pivot = frame.pivot_table(index=["task", "regime"], columns="init", values="iou", sort=False)
    random_iou = pivot["random"]
    lines = ["| task | regime | " + " | ".join(pivot.columns) + " |", "|---" * (2 + len(pivot.columns)) + "|"]
    for (task, regime), values in pivot.iterrows():
        cells = [f"{v:.3f}" + ("" if name == "random" else f" ({v / random_iou[(task, regime)]:.2f}×)")
                 for name, v in values.items()]
        lines.append(f"| {task} | {regime} | " + " | ".join(cells) + " |")
    meta = {"patches": n, "pretrain_images_seen": seen, "pretrain_images_per_s": pre["images_per_s"],
            "pretrain_final_loss": pre["history"][-1]["loss"], "iterations": args.iterations,
            "width": args.width, "patch_size": args.patch_size, "timings_s": timings}
    (args.out / "table.md").write_text("\n".join(lines) + "\n\n" + json.dumps(meta, indent=1) + "\n")
    print("\n".join(lines))
    print(json.dumps(meta))
    ax = pivot.plot.bar(figsize=(8, 4), rot=0)
    ax.set(ylabel="validation IoU", title="U-Net-ResNet-18: random vs MoCoV2-pretrained init")
    ax.set_xticklabels([f"{t}\n{r}" for t, r in pivot.index], fontsize=8)
    plt.tight_layout()
    plt.savefig(args.out / "table.png", dpi=100)


if __name__ == "__main__":
    sys.exit(main())
