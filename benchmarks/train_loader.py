"""Does the training loader keep up with the model? Samples/s of the block sampler vs
iterations/s of the network (forward + backward + Adam step) for a training config.

    python benchmarks/train_loader.py [configs/mito_lucchi.yaml] [--seconds 30] [--workers 1]

The loader must deliver more samples per second than the model consumes (ratio > 1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402


def rate(step, seconds: float, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/mito_lucchi.yaml")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the config's)")
    args = parser.parse_args()
    from emseg.train import Trainer, load_config
    from emseg.train.loss import training_loss

    config = load_config(args.config)
    if args.workers is not None:
        config.num_workers = args.workers
    trainer = Trainer(config, progress=False)
    batches = iter(trainer.loader())
    batch = next(batches)
    loader_rate = rate(lambda: next(batches), args.seconds) * config.batch_size

    def model_step() -> None:
        logits = trainer.model(batch["raw"])
        loss = training_loss(config.loss, logits, batch["target"], batch["mask"])
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()

    model_rate = rate(model_step, args.seconds) * config.batch_size
    print(f"config {args.config}: input {trainer.input_shape} → output {trainer.output_shape}, "
          f"{config.num_workers} loader worker(s), torch threads {torch.get_num_threads()}")
    print_table(["what", "samples/s"], [["loader (augmented blocks)", f"{loader_rate:.2f}"],
                                        ["model (fwd+bwd+step)", f"{model_rate:.2f}"],
                                        ["loader ÷ model", f"{loader_rate / model_rate:.2f}"]])


if __name__ == "__main__":
    main()
