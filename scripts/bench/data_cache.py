"""Images/s of the shapes training pipeline with dataset.cache=null / ram / disk and several worker counts.

Generates a shapes dataset (``lightdet.data.make_shapes``) into a temporary folder and loads its train split
through the default config's train pipeline (``dataset=shapes``: LoadImage + RandomFlip) in aspect-ratio
grouped batches of 8, as ``lightdet-train`` does. Each cache builds its dataset once (the cache is filled
then; the time is printed); each run of a setting (cache x workers) starts a fresh train DataLoader and,
after ``--warmup`` batches (worker start-up), times ``--batches`` batches. Runs alternate between the
settings; the medians of the runs are printed with the ratio to ``cache=null`` at the same worker count.
``--train-steps K`` also times K training steps of the default model (DataLoader + forward + backward +
SGD step, after one warm-up step) per setting, which is what the workers have to feed.

    python scripts/bench/data_cache.py                                  # 512 images, workers 0 1 2
    python scripts/bench/data_cache.py --workers 0 1 2 4 --batches 60 --runs 5
    python scripts/bench/data_cache.py --train-steps 10 --runs 3
    python scripts/bench/data_cache.py --threads 1                      # one intra-op thread in the main process
    python scripts/bench/data_cache.py --images 128 --image-size 480 640  # photo-sized images
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from lightdet.composition import compose_config
from lightdet.data import CocoDataset, DetDataModule, make_shapes
from lightdet.data.workers import auto_num_workers, usable_cpus

CACHES = ("null", "ram", "disk")


def build_dataset(root: Path, cache: str) -> tuple[Any, float]:
    """The shapes train split through the default config's train pipeline with ``cache``, and seconds to build it
    (what ``dataset=shapes`` builds, without the generation check)."""
    pipeline = instantiate(compose_config("train", []).dataset.pipeline.train, _convert_="all")
    start = time.perf_counter()
    dataset = CocoDataset(root / "annotations" / "train.json", root / "train", pipeline=pipeline, filter_empty=True,
                          cache=None if cache == "null" else cache)
    return dataset, time.perf_counter() - start


def _batches(dataset: Any, workers: int, batch_size: int) -> Iterator[Any]:
    """Train batches, epoch after epoch, from a fresh DataLoader whose workers persist across epochs."""
    dm = DetDataModule(train=dataset, batch_size=batch_size, num_workers=workers, persistent_workers=True)
    loader = dm.train_dataloader()
    while True:
        yield from loader


def loader_rate(dataset: Any, workers: int, batch_size: int, warmup: int, batches: int) -> float:
    """Images/s of ``batches`` batches of a fresh train DataLoader, after ``warmup`` batches (worker start-up)."""
    stream = _batches(dataset, workers, batch_size)
    for _ in range(warmup):
        next(stream)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += len(next(stream))
    rate = images / (time.perf_counter() - start)
    stream.close()  # the workers stop here, before the next setting starts its own
    return rate


def train_rate(dataset: Any, workers: int, batch_size: int, steps: int) -> float:
    """Images/s of ``steps`` SGD steps of the default model, fed by a fresh train DataLoader (one warm-up step)."""
    detector = instantiate(compose_config("train", []).model, _convert_="all").train()
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.001, momentum=0.9)
    stream = _batches(dataset, workers, batch_size)
    start, images = 0.0, 0
    for step in range(steps + 1):
        if step == 1:
            start, images = time.perf_counter(), 0
        batch = next(stream)
        losses = detector.loss(batch)
        total = torch.stack([v.float() for k, v in losses.items() if k.startswith("loss")]).sum()
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        images += len(batch)
    rate = images / (time.perf_counter() - start)
    stream.close()
    return rate


def report(title: str, rates: dict[tuple[str, int], list[float]], workers: list[int]) -> None:
    print(f"\n{title}: images/s, median of {len(next(iter(rates.values())))} runs (ratio to cache=null)")
    print("workers " + "".join(f"{c:>18}" for c in CACHES))
    for w in workers:
        base = statistics.median(rates["null", w])
        cells = [f"{statistics.median(rates[c, w]):8.4g} ({statistics.median(rates[c, w]) / base:4.2f}x)"
                 for c in CACHES]
        print(f"{w:>7} " + "".join(f"{cell:>18}" for cell in cells))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=512, help="shapes train images (default 512)")
    p.add_argument("--image-size", type=int, nargs=2, default=[112, 144], metavar=("MIN", "MAX"),
                   help="image sides in pixels (default 112 144, the shipped shapes dataset)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts (default 0 1 2)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=40, help="timed batches per run (default 40)")
    p.add_argument("--warmup", type=int, default=4, help="batches before timing (default 4)")
    p.add_argument("--runs", type=int, default=3, help="alternating runs per setting (default 3)")
    p.add_argument("--train-steps", type=int, default=0, help="also time this many training steps per setting")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads of the main process (default: torch's; workers use 1 each)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{usable_cpus()} usable CPUs, {torch.get_num_threads()} intra-op threads in the main process; "
          f"num_workers=auto starts {auto_num_workers(1)} worker(s) for one device")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shapes"
        with contextlib.redirect_stdout(None):
            lo, hi = args.image_size
            make_shapes(root, num_train=args.images, num_val=8, seed=0, min_image_size=lo, max_image_size=hi)
        datasets = {}
        for cache in CACHES:
            datasets[cache], seconds = build_dataset(root, cache)
            print(f"cache={cache:<5} dataset built in {seconds:6.2f} s ({len(datasets[cache])} images of {lo}-{hi} px)")
        settings = [(c, w) for w in args.workers for c in CACHES]
        rates: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
        steps: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
        for _ in range(args.runs):
            for cache, w in settings:
                rates[cache, w].append(loader_rate(datasets[cache], w, args.batch_size, args.warmup, args.batches))
                if args.train_steps:
                    steps[cache, w].append(train_rate(datasets[cache], w, args.batch_size, args.train_steps))
        report(f"DataLoader alone, {args.batches} batches of {args.batch_size}", rates, args.workers)
        if args.train_steps:
            report(f"training steps of the default model, {args.train_steps} steps of {args.batch_size}", steps,
                   args.workers)


if __name__ == "__main__":
    main()
