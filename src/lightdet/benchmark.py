"""Model cost and speed: parameters, FLOPs at an input size, latency and images/s (``lightdet-bench``).

What MMDetection splits into ``get_flops`` and ``benchmark``: one measurement of a built detector on
synthetic uint8 images of a chosen size, through the same ``predict`` a deployment calls (preprocessing,
backbone, heads and post-processing included), with warm-up runs first and the median of the timed runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from lightdet.models.folding import optimize_for_inference
from lightdet.structures import DetBatch, DetSample, ImageMeta

__all__ = [
    "BenchResult",
    "StealMeter",
    "steal_note",
    "synthetic_batch",
    "count_parameters",
    "count_flops",
    "time_calls",
    "benchmark",
]

#: precision name -> autocast dtype (None: no autocast)
PRECISIONS = {"32": None, "16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


@dataclass(frozen=True)
class BenchResult:
    """One benchmark: sizes, cost and the timing statistics (seconds per batch)."""

    params_m: float | None
    gflops: float | None
    batch: int
    size: tuple[int, int]
    device: str
    precision: str
    backend: str
    median_s: float
    p90_s: float
    runs: int
    cpu_steal: float | None = None

    @property
    def images_per_s(self) -> float:
        return self.batch / self.median_s

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "images_per_s": self.images_per_s}


def synthetic_batch(batch: int, height: int, width: int, *, seed: int = 0) -> DetBatch:
    """``batch`` random uint8 images of ``height x width`` without annotations."""
    g = torch.Generator().manual_seed(seed)
    samples = [
        DetSample(
            image=torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g),
            boxes=torch.zeros((0, 4)), labels=torch.zeros((0,), dtype=torch.int64),
            meta=ImageMeta(image_id=i, file_name=f"{i}.jpg", ori_size=(height, width), img_size=(height, width)),
        )
        for i in range(batch)
    ]  # fmt: skip
    return DetBatch.collate(samples)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(run: Callable[[], object]) -> int:
    """Floating-point operations of one call (``torch.utils.flop_counter``: convolutions and matmuls,
    which dominate a detector; element-wise ops and NMS are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: Above this share of CPU time taken by the hypervisor, timings are not comparable with a quiet machine's.
STEAL_WARNING = 0.05


class StealMeter:
    """The share of this machine's CPU time that its hypervisor took ("steal") since the meter started.

    On a shared cloud VM another guest can take a large part of the CPU for minutes, and timings taken then
    are slower by about that share. Linux counts it in the ``steal`` column of ``/proc/stat``; elsewhere
    (macOS, Windows, a container without ``/proc``) :meth:`share` is None.

    >>> meter = StealMeter()
    >>> ...  # timed work
    >>> meter.share()  # e.g. 0.02, or None
    """

    def __init__(self, stat_path: str | Path = "/proc/stat") -> None:
        self.path = Path(stat_path)
        self.start = self.read()

    def read(self) -> tuple[int, int] | None:
        """``(steal, total)`` clock ticks of all CPUs since boot, from the ``cpu`` line; None without one."""
        try:
            first = self.path.read_text().splitlines()[0].split()
        except (OSError, IndexError):
            return None
        if not first or first[0] != "cpu" or len(first) < 9:
            return None
        ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
        return ticks[7], sum(ticks)

    def share(self) -> float | None:
        """Steal ticks over all ticks since the meter started (0 when no tick passed); None if unreadable."""
        end = self.read()
        if self.start is None or end is None:
            return None
        total = end[1] - self.start[1]
        return (end[0] - self.start[0]) / total if total > 0 else 0.0


def steal_note(share: float | None) -> str:
    """A benchmark line's note on :class:`StealMeter`'s share: ``"steal 3%"``, flagged above
    :data:`STEAL_WARNING` (``"steal 21% (busy host: not comparable)"``), empty where it cannot be read."""
    if share is None:
        return ""
    flag = " (busy host: not comparable)" if share > STEAL_WARNING else ""
    return f"steal {share:.0%}{flag}"


def time_calls(run: Callable[[], object], *, warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Seconds of each of ``repeats`` calls after ``warmup`` untimed ones (CUDA synchronised)."""
    for _ in range(warmup):
        run()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def benchmark(
    model: nn.Module,
    *,
    size: tuple[int, int] = (800, 1333),
    batch: int = 1,
    device: str | torch.device = "cpu",
    precision: str = "32",
    warmup: int = 3,
    repeats: int = 10,
    flops: bool = True,
    optimize: bool = True,
) -> BenchResult:
    """Measures ``model.predict`` on ``batch`` synthetic images of ``size = (height, width)``.

    With ``optimize`` (the default, as ``Predictor`` and ``lightdet-test`` run) the model is first rewritten in
    place by :func:`~lightdet.models.optimize_for_inference` (BatchNorm folded, channels-last weights); the
    parameter count is taken before, as trained. An exported file's runner
    (:class:`~lightdet.export.runtime.ExportedDetector`, ``backend`` ``onnxruntime`` ...) is timed as it is;
    its parameters and FLOPs are not counted (None).

    Raises:
        ValueError: an unknown precision, or half precision on the CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    dev = torch.device(device)
    if dev.type == "cpu" and precision == "16-mixed":
        raise ValueError("precision=16-mixed needs a CUDA device; on the CPU use 32 or bf16-mixed")
    backend = str(getattr(model, "backend", "eager"))
    eager = backend == "eager"
    if eager:
        model = model.to(dev).eval()
    params = count_parameters(model) if eager else None
    if optimize and eager:
        optimize_for_inference(model)
    data = synthetic_batch(batch, *size).to(dev)
    dtype = PRECISIONS[precision]
    autocast = torch.autocast(dev.type, dtype=dtype) if dtype is not None else nullcontext()

    @torch.inference_mode()
    def run() -> object:
        with autocast:
            return model.predict(data)

    gflops = count_flops(run) / 1e9 / batch if flops and eager else None
    meter = StealMeter()
    times = time_calls(run, warmup=warmup, repeats=repeats, device=dev)
    steal = meter.share()
    ordered = sorted(times)
    return BenchResult(
        params_m=None if params is None else params / 1e6, gflops=gflops, batch=batch, size=size,
        device=str(dev), precision=precision, backend=backend, median_s=statistics.median(times),
        p90_s=ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], runs=repeats, cpu_steal=steal,
    )  # fmt: skip
