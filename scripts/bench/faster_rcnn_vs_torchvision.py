"""Faster R-CNN R50-FPN: lightdet vs torchvision, same weights, same inputs, side by side.

Times inference (``predict``) and one training step (forward + backward + SGD step) of both models in one
process, alternating between them, and prints the medians and the ratio lightdet / torchvision (below 1 means
lightdet is faster). The weights are torchvision's seeded random weights converted with lightdet's torchvision
preset, so both compute the same function at inference.

    python scripts/bench/faster_rcnn_vs_torchvision.py --size 512 768 --batch 2 --repeats 5
    python scripts/bench/faster_rcnn_vs_torchvision.py --device cuda --size 800 1216 --batch 2 --repeats 20
    python scripts/bench/faster_rcnn_vs_torchvision.py --device cuda --size 800 1333 --batch 8 --precision 16-mixed

``--precision 16-mixed`` / ``bf16-mixed`` runs both models under the same autocast; images/s are printed
beside the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from hydra.utils import instantiate
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from lightdet.checkpoint import compose_model_config, convert, get_preset
from lightdet.structures import DetBatch, DetSample, ImageMeta


def _batch(n: int, h: int, w: int, seed: int = 0) -> tuple[DetBatch, list[torch.Tensor], list[dict]]:
    g = torch.Generator().manual_seed(seed)
    samples, images, targets = [], [], []
    for i in range(n):
        img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        xy = torch.rand(8, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 32 + torch.rand(8, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(0, 80, (8,), generator=g)
        meta = ImageMeta(image_id=i, file_name=f"{i}.jpg", ori_size=(h, w), img_size=(h, w))
        samples.append(DetSample(image=img, boxes=boxes, labels=labels, meta=meta))
        images.append(img.float() / 255)
        targets.append({"boxes": boxes, "labels": labels + 1})
    return DetBatch.collate(samples), images, targets


def _time(fn: Callable[[], object], device: torch.device, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, nargs=2, default=(512, 768), metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="32", choices=["32", "16-mixed", "bf16-mixed"])
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = {"32": None, "16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}[args.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)

    def autocast():
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    h, w = args.size

    torch.manual_seed(0)
    tv = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=min(h, w), max_size=max(h, w))
    preset = get_preset("torchvision", "fasterrcnn_resnet50_fpn")
    ours = instantiate(compose_model_config(preset).model, _convert_="all")
    state, report, _ = convert("torchvision", "fasterrcnn_resnet50_fpn", tv.state_dict(), target=ours.state_dict())
    assert report.ok, report.summary()
    ours.load_state_dict(state)
    tv, ours = tv.to(device), ours.to(device)
    batch, images, targets = _batch(args.batch, h, w)
    batch = batch.to(device)
    images = [i.to(device) for i in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]

    def infer_ours() -> object:
        with torch.inference_mode(), autocast():
            return ours.eval().predict(batch)

    def infer_tv() -> object:
        with torch.inference_mode(), autocast():
            return tv.eval()(images)

    opt_ours = torch.optim.SGD([q for q in ours.parameters() if q.requires_grad], lr=1e-5)
    opt_tv = torch.optim.SGD([q for q in tv.parameters() if q.requires_grad], lr=1e-5)

    def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def train_ours() -> None:
        ours.train()
        with autocast():
            loss = sum(v for k, v in ours.loss(batch).items() if k.startswith("loss"))
        step(opt_ours, loss)

    def train_tv() -> None:
        tv.train()
        with autocast():
            loss = sum(tv(images, targets).values())
        step(opt_tv, loss)

    print(
        f"device={device} precision={args.precision} batch={args.batch} size={h}x{w} repeats={args.repeats} "
        f"threads={torch.get_num_threads()}"
    )
    for name, a, b in (("inference", infer_ours, infer_tv), ("train step", train_ours, train_tv)):
        ta, tb = [], []
        for _ in range(args.repeats):  # alternate so that machine noise hits both alike
            ta += _time(a, device, 1)
            tb += _time(b, device, 1)
        ma, mb = statistics.median(ta), statistics.median(tb)
        print(
            f"{name:>10}: lightdet {ma * 1000:8.1f} ms ({args.batch / ma:6.1f} img/s)  torchvision "
            f"{mb * 1000:8.1f} ms ({args.batch / mb:6.1f} img/s)  ratio {ma / mb:5.2f}"
        )


if __name__ == "__main__":
    main()
