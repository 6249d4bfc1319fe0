"""lightdet vs torchvision detectors: same weights, same inputs, side by side, in one process.

For Faster R-CNN, Mask R-CNN, RetinaNet and FCOS (R50-FPN), torchvision's seeded random model is put in the
form its pretrained recipe has (``FrozenBatchNorm2d``, ``layer2``-``layer4`` trainable) and converted with
lightdet's torchvision preset, so both compute the same function, at inference and in a training step (the
printed proposal, RoI and positive counts agree). Inference (``predict``)
and one training step (forward + backward + SGD step) of both are timed alternately, and the medians and the
ratio lightdet / torchvision are printed (below 1: lightdet is faster). Inference is timed twice for lightdet:
the model as built ("as built") and after :func:`lightdet.models.optimize_for_inference` (BatchNorm folded into
the convs, channels-last weights), which is what ``Predictor``, ``lightdet-test`` and ``lightdet-infer`` run.
``--profile`` prints, for each side,
where the inference time goes: wall time per stage (pre-processing, backbone + neck, first stage / dense
head, second stage and post-processing) and the costliest operators.

    python scripts/bench/vs_torchvision.py --model fasterrcnn_resnet50_fpn --size 512 768 --batch 2
    python scripts/bench/vs_torchvision.py --model all --size 512 768 --batch 2 --repeats 5 --no-train
    python scripts/bench/vs_torchvision.py --model retinanet_resnet50_fpn --profile
    python scripts/bench/vs_torchvision.py --device cuda --size 800 1333 --batch 8 --precision 16-mixed
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
import torchvision.models.detection as tvd
from hydra.utils import instantiate
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from lightdet.benchmark import StealMeter, steal_note
from lightdet.checkpoint import compose_model_config, convert, get_preset
from lightdet.models import optimize_for_inference
from lightdet.structures import DetBatch, DetSample, ImageMeta

MODELS: dict[str, Callable[..., nn.Module]] = {
    "fasterrcnn_resnet50_fpn": tvd.fasterrcnn_resnet50_fpn,
    "maskrcnn_resnet50_fpn": tvd.maskrcnn_resnet50_fpn,
    "retinanet_resnet50_fpn": tvd.retinanet_resnet50_fpn,
    "fcos_resnet50_fpn": tvd.fcos_resnet50_fpn,
}
#: the children whose forward time the profile attributes to a stage, for each side
STAGES = {
    "lightdet": ("preprocessor", "backbone", "neck", "rpn_head", "roi_head", "bbox_head"),
    "torchvision": ("transform", "backbone", "rpn", "roi_heads", "head"),
}


def make_batch(n: int, h: int, w: int, seed: int = 0) -> tuple[DetBatch, list[torch.Tensor], list[dict]]:
    """``n`` random images with 8 boxes each: lightdet's batch and torchvision's images and targets."""
    g = torch.Generator().manual_seed(seed)
    samples, images, targets = [], [], []
    for i in range(n):
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        xy = torch.rand(8, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 32 + torch.rand(8, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(0, 80, (8,), generator=g)
        masks = torch.zeros((8, h, w), dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
            masks[k, y1:y2, x1:x2] = 1
        meta = ImageMeta(image_id=i, file_name=f"{i}.jpg", ori_size=(h, w), img_size=(h, w))
        samples.append(DetSample(image=img, boxes=boxes, labels=labels, masks=masks.bool(), meta=meta))
        images.append(img.float() / 255)
        targets.append({"boxes": boxes, "labels": labels + 1, "masks": masks})
    return DetBatch.collate(samples), images, targets


def as_pretrained_recipe(tv: nn.Module, trainable_layers: int = 3) -> nn.Module:
    """Gives torchvision's randomly initialised model the backbone it has when built from pretrained weights.

    Without weights, torchvision builds its ResNet with ``nn.BatchNorm2d`` (batch statistics while training)
    and trains all five stages; with them, it uses ``FrozenBatchNorm2d`` and trains ``layer2``-``layer4``.
    lightdet's torchvision preset is the pretrained recipe, so the train steps only compute the same function
    (the same proposals, RoIs and positives) once torchvision's model is put in that form.
    """
    body = tv.backbone.body
    for name, module in list(body.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(module, key).detach())
            parent, _, child = name.rpartition(".")
            setattr(body.get_submodule(parent) if parent else body, child, frozen)
    trained = ("layer4", "layer3", "layer2", "layer1", "conv1")[:trainable_layers]
    for name, param in body.named_parameters():
        if not name.startswith(trained):
            param.requires_grad_(False)
    return tv


def build_pair(arch: str, h: int, w: int) -> tuple[nn.Module, nn.Module]:
    """torchvision's seeded model in its pretrained-recipe form, and lightdet's, converted from it."""
    torch.manual_seed(0)
    tv = MODELS[arch](weights=None, weights_backbone=None, min_size=min(h, w), max_size=max(h, w))
    tv = as_pretrained_recipe(tv)
    ours = instantiate(compose_model_config(get_preset("torchvision", arch)).model, _convert_="all")
    state, report, _ = convert("torchvision", arch, tv.state_dict(), target=ours.state_dict())
    assert report.ok, report.summary()
    ours.load_state_dict(state)
    return ours, tv


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


@contextmanager
def stage_clock(model: nn.Module, names: tuple[str, ...], totals: dict[str, float]) -> Iterator[None]:
    """Adds each named child's forward wall time to ``totals`` (heads called through other methods are
    timed by wrapping those methods too)."""
    undo = []
    for name in names:
        child = getattr(model, name, None)
        if child is None:
            continue
        for method in ("forward", "predict", "loss", "proposals"):
            original = getattr(child, method, None)
            if original is None or method in child.__dict__:
                continue

            def wrapper(*a, _f=original, _n=name, **k):
                t = time.perf_counter()
                try:
                    return _f(*a, **k)
                finally:
                    totals[_n] += time.perf_counter() - t

            setattr(child, method, wrapper)
            undo.append((child, method))
    try:
        yield
    finally:
        for child, method in undo:
            delattr(child, method)


def profile(label: str, model: nn.Module, run: Callable[[], object], repeats: int) -> None:
    """Prints the stage times (exclusive of nested stages is not attempted: a stage includes what it calls)
    and the ten costliest operators of ``run``."""
    totals: dict[str, float] = defaultdict(float)
    run()
    t = time.perf_counter()
    with stage_clock(model, STAGES[label], totals):
        for _ in range(repeats):
            run()
    whole = (time.perf_counter() - t) / repeats
    print(f"  {label}: {whole * 1000:.1f} ms per call")
    for name, total in totals.items():
        print(f"    {name:<13} {total / repeats * 1000:8.1f} ms  ({total / repeats / whole:5.1%})")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
    print("    top operators (self CPU time): " + ", ".join(f"{e.key} {e.self_cpu_time_total / 1000:.1f} ms" for e in rows))


@contextmanager
def wrapped(obj: object, method: str, record: Callable[[object], None]) -> Iterator[None]:
    """Calls ``record(result)`` after every call of ``obj.method`` while the block runs."""
    original = getattr(obj, method)

    def wrapper(*a, **k):
        out = original(*a, **k)
        record(out)
        return out

    setattr(obj, method, wrapper)
    try:
        yield
    finally:
        delattr(obj, method)


def sample_counts(ours: nn.Module, tv: nn.Module, step_ours: Callable[[], None], step_tv: Callable[[], None]) -> None:
    """Prints, for a two-stage model, the proposals per image and the sampled RoIs per image (positives) that
    one training step of each side uses: the train-step comparison is only fair when they agree."""
    counts: dict[str, list[int]] = defaultdict(list)
    bg = ours.roi_head.num_classes if hasattr(ours.roi_head, "num_classes") else None

    def ours_rpn(out) -> None:
        counts["ours proposals"] += [len(p.boxes) for p in out[1]]

    def ours_sample(s) -> None:
        counts["ours rois"].append(len(s.boxes))
        counts["ours positives"].append(int((s.labels != bg).sum()))

    def tv_rpn(out) -> None:
        counts["tv proposals"] += [len(b) for b in out[0]]

    def tv_sample(out) -> None:
        counts["tv rois"] += [len(p) for p in out[0]]
        counts["tv positives"] += [int((lb > 0).sum()) for lb in out[2]]

    with wrapped(ours.rpn_head, "loss", ours_rpn), wrapped(ours.roi_head, "sample", ours_sample):
        step_ours()
    with wrapped(tv.rpn, "filter_proposals", tv_rpn), wrapped(tv.roi_heads, "select_training_samples", tv_sample):
        step_tv()
    for what in ("proposals", "rois", "positives"):
        print(f"  {what:>10} per image: lightdet {counts['ours ' + what]}  torchvision {counts['tv ' + what]}")


def bench(arch: str, args: argparse.Namespace, device: torch.device) -> None:
    h, w = args.size
    ours, tv = build_pair(arch, h, w)
    ours, tv = ours.to(device), tv.to(device)
    batch, images, targets = make_batch(args.batch, h, w)
    batch = batch.to(device)
    images = [i.to(device) for i in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    dtype = {"32": None, "16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}[args.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)

    def autocast():
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    fast = optimize_for_inference(copy.deepcopy(ours))

    def infer_built() -> object:
        with torch.inference_mode(), autocast():
            return ours.eval().predict(batch)

    def infer_ours() -> object:
        with torch.inference_mode(), autocast():
            return fast.predict(batch)

    def infer_tv() -> object:
        with torch.inference_mode(), autocast():
            return tv.eval()(images)

    def step(model: nn.Module, losses: Callable[[], dict[str, torch.Tensor]], optimizer) -> None:
        model.train()
        with autocast():
            loss = sum(v for k, v in losses().items() if k.startswith("loss"))
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    opt_ours = torch.optim.SGD([q for q in ours.parameters() if q.requires_grad], lr=1e-5)
    opt_tv = torch.optim.SGD([q for q in tv.parameters() if q.requires_grad], lr=1e-5)
    pairs = [("inference", infer_ours, infer_tv), ("as built", infer_built, infer_tv)]
    if not args.no_train:
        pairs.append((
            "train step", lambda: step(ours, lambda: ours.loss(batch), opt_ours),
            lambda: step(tv, lambda: {f"loss_{k}": v for k, v in tv(images, targets).items()}, opt_tv),
        ))  # fmt: skip
    print(f"{arch}: device={device} precision={args.precision} batch={args.batch} size={h}x{w} "
          f"repeats={args.repeats} threads={torch.get_num_threads()}")  # fmt: skip
    for name, a, b in pairs:
        a(), b()  # warm-up
        ta, tb = [], []
        meter = StealMeter()
        for _ in range(args.repeats):  # alternate so that machine noise hits both alike
            ta.append(timed(a, device))
            tb.append(timed(b, device))
        ma, mb = statistics.median(ta), statistics.median(tb)
        print(f"  {name:>10}: lightdet {ma * 1000:8.1f} ms ({args.batch / ma:6.1f} img/s)  torchvision "
              f"{mb * 1000:8.1f} ms ({args.batch / mb:6.1f} img/s)  ratio {ma / mb:5.2f}  "
              f"{steal_note(meter.share())}")  # fmt: skip
    if not args.no_train and hasattr(ours, "roi_head"):
        sample_counts(ours, tv, pairs[-1][1], pairs[-1][2])
    if args.profile:
        profile("lightdet", fast, infer_ours, args.repeats)
        profile("torchvision", tv, infer_tv, args.repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fasterrcnn_resnet50_fpn", choices=[*MODELS, "all"])
    p.add_argument("--size", type=int, nargs=2, default=(512, 768), metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="32", choices=["32", "16-mixed", "bf16-mixed"])
    p.add_argument("--no-train", action="store_true", help="time inference only")
    p.add_argument("--profile", action="store_true", help="print where the inference time goes, per stage and operator")
    args = p.parse_args()
    device = torch.device(args.device)
    for arch in MODELS if args.model == "all" else [args.model]:
        bench(arch, args, device)


if __name__ == "__main__":
    main()
