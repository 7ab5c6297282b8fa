"""Curation benchmark: dHash vs imagehash, dedup time, counts per stage, filter accuracy.

    python benchmarks/curation.py [--data ../shared/data] [--dedup-n 1000000] [--out bench_curation]

Single-threaded BLAS (per-core figures). Prints markdown tables; wall and CPU seconds are both
given because the machine may be shared.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def real_patches(data: Path, n: int) -> np.ndarray:
    import tifffile

    vol = tifffile.imread(data / "lucchi" / "train_image.tif")
    rng = np.random.default_rng(0)
    out = []
    while len(out) < n:
        z, y, x = rng.integers(0, 165), rng.integers(0, 768 - 224), rng.integers(0, 1024 - 224)
        out.append(vol[z, y:y + 224, x:x + 224])
    return np.stack(out)


def bench_dhash(patches: np.ndarray, rounds: int = 5) -> None:
    """Patches per CPU-second of both, in alternating rounds (they share the machine's noise)."""
    import statistics

    import imagehash
    from PIL import Image

    from emseg.curate.dhash import dhash_square

    n_ref = min(len(patches), 1000)
    with Timer() as first:  # numba compiles the kernel, or loads it from its cache, once per process
        dhash_square(patches[:1])
    refs, ours = [], []
    for _ in range(rounds):
        with Timer() as ref:
            want = [int(str(imagehash.dhash(Image.fromarray(p))), 16) for p in patches[:n_ref]]
        with Timer() as fast:
            got = dhash_square(patches)
        refs.append(n_ref / ref.cpu)
        ours.append(len(patches) / fast.cpu)
    same = np.array_equal(got[:n_ref], np.array(want, dtype=np.uint64))
    r, o = statistics.median(refs), statistics.median(ours)
    print(f"\n## dHash (224 px Lucchi patches, one thread, median of {rounds} alternating rounds)\n")
    print("| method | patches per round | patches/CPU-s (median) | rounds | ratio |")
    print("|---|---|---|---|---|")
    print(f"| imagehash.dhash | {n_ref} | {r:.0f} | {', '.join(f'{v:.0f}' for v in refs)} | 1.0 |")
    print(f"| emseg dhash_square | {len(patches)} | {o:.0f} | {', '.join(f'{v:.0f}' for v in ours)} | {o / r:.2f} |")
    print(f"\nbit-identical to imagehash on {n_ref} patches: {same}")
    print(f"first call (kernel compile or cache load, once per process): {first.wall:.2f} s wall")


def bench_dedup(n: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_curate_hash import clustered_hashes

    from emseg.curate.dedup import choose_m, greedy_exemplars, greedy_exemplars_bruteforce

    rng = np.random.default_rng(0)
    print("\n## Greedy dedup (Hamming ≤ 12; clustered hashes: n/10 centres, ≤ 10 random bit flips each)\n")
    print("| hashes | method | wall s | CPU s | exemplars | equal to brute force |")
    print("|---|---|---|---|---|---|")
    small = clustered_hashes(20_000, 2_000, 10, rng)
    with Timer() as brute:
        ref = greedy_exemplars_bruteforce(small, seed=1)
    with Timer() as fast:
        got = greedy_exemplars(small, seed=1)
    print(f"| 20000 | brute force | {brute.wall:.1f} | {brute.cpu:.1f} | {len(np.unique(ref))} | |")
    m = choose_m(len(np.unique(small)), 12)
    print(f"| 20000 | hybrid: multi-index (m={m})  → direct | {fast.wall:.1f} | {fast.cpu:.1f} | "
          f"{len(np.unique(got))} | {np.array_equal(ref, got)} |")
    big = clustered_hashes(n, n // 10, 10, rng)
    with Timer() as t:
        got = greedy_exemplars(big, seed=1)
    estimate = brute.cpu * (n / len(small)) * (len(np.unique(got)) / len(np.unique(ref)))
    print(f"| {n} | hybrid: multi-index (m={choose_m(len(np.unique(big)), 12)}) → direct | {t.wall:.1f} | {t.cpu:.1f} | "
          f"{len(np.unique(got))} | brute force ≈ {estimate:.0f} CPU s (N × exemplars scaling) |")


def bench_pipeline(data: Path, out: Path) -> None:
    from emseg.curate.pipeline import curate, dataset_counts
    from emseg.curate.report import write_report
    from emseg.io import write_ome_zarr
    from emseg.synth import make_volume

    synth = make_volume((64, 448, 448), (8.0, 8.0, 8.0), seed=0)
    synth_path = write_ome_zarr(synth.raw, out / "synth.ome.zarr", synth.voxel_size, levels=1, overwrite=True)
    sources = [f"lucchi={data / 'lucchi' / 'train_image.tif'}", f"isbi={data / 'isbi2012' / 'train_image.tif'}",
               f"synth={synth_path}"]
    with Timer() as t:
        store = curate(sources, out / "patches.zarr", overwrite=True, progress=False)
    write_report(store, out / "report")
    print("\n## Counts per stage (default heuristic filter)\n")
    print("| dataset | voxel size nm | planes | patches | exemplars | dedup ratio | kept |")
    print("|---|---|---|---|---|---|---|")
    vs = {"lucchi": "5,5,5", "isbi": "50,4,4", "synth": "8,8,8"}
    table = store.table
    for i, name in enumerate(store.dataset_names):
        c = dataset_counts(store, name)
        planes = ",".join(("xy", "xz", "yz")[p] for p in sorted(table.plane[table.dataset == i].unique()))
        print(f"| {name} | {vs[name]} | {planes} | {c['patches']} | {c['exemplars']} | "
              f"{c['patches'] / c['exemplars']:.1f} | {c['kept']} |")
    print(f"\nwhole run: {len(store)} patches in {t.wall:.0f} s wall / {t.cpu:.0f} s CPU "
          f"({len(store) / t.cpu:.0f} patches per CPU-s); report in {out / 'report'}")
    return store


def bench_filter(store) -> None:
    from emseg.curate.cnn_filter import predict, train_filter
    from emseg.curate.informative import features_of, heuristic_score, labelled_sample

    rng = np.random.default_rng(0)
    exemplars = np.flatnonzero(store.table.exemplar.to_numpy() == np.arange(len(store)))
    full = exemplars[(store.table.height.to_numpy()[exemplars] == 224) & (store.table.width.to_numpy()[exemplars] == 224)]
    pick = np.sort(rng.choice(full, size=min(600, len(full)), replace=False))
    good = store.patches.get_orthogonal_selection((pick,))
    patches, labels, kind = labelled_sample(good, len(good), seed=1)
    heur = heuristic_score(features_of(patches)) >= 0.5
    with Timer() as t:
        net, metrics = train_filter(patches, labels, epochs=6, seed=0, progress=False, threads=1)
    order = np.random.default_rng(0).permutation(len(labels))
    val = order[: metrics["n_val"]]
    cnn = predict(net, patches[val]) >= 0.5
    print("\n## Informativeness filter (labelled by construction: EM exemplars = informative; "
          "generated blank / noise / saturated / blurred = uninformative)\n")
    print("| filter | evaluated on | accuracy | per bad kind (recall) |")
    print("|---|---|---|---|")
    per = ", ".join(f"{k} {np.mean(~heur[kind == k]):.2f}" for k in ("blank", "noise", "saturated", "blurred"))
    print(f"| texture heuristic (no training) | all {len(labels)} | {np.mean(heur == labels):.3f} | "
          f"{per}, EM kept {np.mean(heur[kind == 'em']):.2f} |")
    print(f"| texture heuristic | CNN's held-out 15 % ({len(val)}) | {np.mean(heur[val] == labels[val]):.3f} | |")
    print(f"| CNN (BCE, 85/15, 6 epochs, {t.cpu:.0f} CPU-s) | held-out 15 % ({len(val)}) | "
          f"{np.mean(cnn == labels[val]):.3f} | |")


def bench_hand_labels(store, labels_csv: Path = ROOT / "benchmarks" / "data" / "curation_hand_labels.csv") -> None:
    """Heuristic vs labels given by eye to real patches of this store (see the CSV's header)."""
    import pandas as pd

    labels = pd.read_csv(labels_csv, comment="#")
    table = store.table.copy()
    table["dataset"] = [store.dataset_names[i] for i in table.dataset]
    table["plane"] = [("xy", "xz", "yz")[i] for i in table.plane]
    table["row"] = np.arange(len(table))
    merged = labels.merge(table, on=["dataset", "plane", "slice", "y", "x"], how="left")
    if merged.row.isna().any():
        print(f"\nhand labels: {int(merged.row.isna().sum())} labelled patches are not in this store; skipped")
        merged = merged.dropna(subset=["row"])
    truth = merged.label.to_numpy() == "informative"
    kept = merged.score.to_numpy() >= 0.5
    print(f"\n## Heuristic on {len(merged)} real patches labelled by eye ({labels_csv.name})\n")
    print("| labelled | n | kept by the heuristic | min score |")
    print("|---|---|---|---|")
    for name, sel in (("informative", truth), ("uninformative", ~truth)):
        if sel.any():
            print(f"| {name} | {sel.sum()} | {kept[sel].sum()} | {merged.score.to_numpy()[sel].min():.3f} |")
    print(f"\naccuracy {np.mean(kept == truth):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--dedup-n", type=int, default=1_000_000)
    parser.add_argument("--dhash-n", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path("bench_curation"))
    parser.add_argument("--skip", nargs="*", default=[], choices=["dhash", "dedup", "pipeline"])
    args = parser.parse_args()
    have_data = (args.data / "lucchi" / "train_image.tif").exists()
    if not have_data:
        print(f"skipping dHash-on-real-data and pipeline parts: no data at {args.data}")
    args.out.mkdir(parents=True, exist_ok=True)
    if "dhash" not in args.skip:
        patches = real_patches(args.data, args.dhash_n) if have_data else \
            np.random.default_rng(0).integers(0, 256, (args.dhash_n, 224, 224), dtype=np.uint8)
        bench_dhash(patches)
    if "dedup" not in args.skip:
        bench_dedup(args.dedup_n)
    if "pipeline" not in args.skip and have_data:
        store = bench_pipeline(args.data, args.out)
        bench_hand_labels(store)
        bench_filter(store)


if __name__ == "__main__":
    main()
