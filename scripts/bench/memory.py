"""Peak memory with instance masks: lightdet's cropped masks vs full bitmaps, one Mask R-CNN training step vs
torchvision, and a short shapes training per source tree (before / after a change).

Peak RSS is per process, so every measurement runs in a fresh subprocess of this script (``--child ...``) that
does one thing and prints its ``resource.getrusage(RUSAGE_SELF).ru_maxrss``; this process prints the tables and
the ratios (lightdet / torchvision, below 1: lightdet needs less).

* masks: the bytes of a COCO-sized batch's ground-truth masks (``--images`` images of ``--size``, ``--boxes``
  instances each: ellipses in boxes of log-uniform sides from 16 to 600 px): lightdet's ``CroppedMasks`` vs
  the ``uint8 [N, H, W]`` bitmaps they stand for (what torchvision takes as targets).
* step: one Mask R-CNN R50-FPN training step (forward, backward, SGD step) on that batch: lightdet's
  torchvision preset with torchvision's seeded weights converted as ``scripts/bench/vs_torchvision.py``
  converts them, and torchvision's ``maskrcnn_resnet50_fpn`` with the same weights; each side runs once to
  build the model and the batch only ("setup") and once more to also take the step, so the step's own
  increase shows.
* train: ``lightdet-train experiment=shapes_mask_rcnn trainer.max_steps=20`` on a small shapes set without
  DataLoader workers, once per ``--tree NAME=REV``: the package and configs of git revision ``REV`` (extracted
  to a temporary folder), or ``NAME=worktree`` for the installed checkout.

    python scripts/bench/memory.py
    python scripts/bench/memory.py --tree before=HEAD~1 --tree after=HEAD
    python scripts/bench/memory.py --skip-step --tree worktree=worktree
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

ARCH = "maskrcnn_resnet50_fpn"
REPO = Path(__file__).resolve().parents[2]
TRAIN = [
    "experiment=shapes_mask_rcnn", "trainer.max_steps=20", "dataset.num_train=64", "dataset.num_val=8",
    "dataset.num_workers=0", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "seed=0",
]  # fmt: skip


def ellipse(h: int, w: int) -> torch.Tensor:
    """``uint8 [h, w]``: the ellipse inscribed in an ``h x w`` box."""
    ys = (torch.arange(h) + 0.5 - h / 2) / (h / 2)
    xs = (torch.arange(w) + 0.5 - w / 2) / (w / 2)
    return (ys[:, None] ** 2 + xs[None, :] ** 2 <= 1).to(torch.uint8)


def make_inputs(images: int, size: tuple[int, int], boxes: int, seed: int = 0) -> list[tuple]:
    """Per image: ``uint8 [3, H, W]`` pixels, ``int64 [K, 4]`` integer boxes and ``int64 [K]`` labels (0..79)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    out = []
    for _ in range(images):
        pixels = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        sides = torch.empty(boxes, 2).uniform_(math.log(16), math.log(600), generator=g).exp()
        wh = sides.minimum(torch.tensor([w, h], dtype=torch.float32)).round().clamp(min=2)
        xy = (torch.rand(boxes, 2, generator=g) * (torch.tensor([w, h]) - wh)).floor()
        out.append((pixels, torch.cat([xy, xy + wh], 1).long(), torch.randint(0, 80, (boxes,), generator=g)))
    return out


def cropped_masks(regions: torch.Tensor, size: tuple[int, int]):
    """The instances' ellipses as lightdet's masks, built from the crops (no full bitmap is ever made)."""
    from lightdet.structures import CroppedMasks

    crops = [ellipse(y1 - y0, x1 - x0) for x0, y0, x1, y1 in regions.tolist()]
    return CroppedMasks.from_crops(crops, regions, size)


def full_bitmaps(regions: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The same ellipses as ``uint8 [K, H, W]`` bitmaps (torchvision's targets)."""
    out = torch.zeros((len(regions), *size), dtype=torch.uint8)
    for k, (x0, y0, x1, y1) in enumerate(regions.tolist()):
        out[k, y0:y1, x0:x1] = ellipse(y1 - y0, x1 - x0)
    return out


def lightdet_batch(inputs: list[tuple], size: tuple[int, int]):
    from lightdet.structures import DetBatch, DetSample, ImageMeta

    samples = [
        DetSample(
            image=pixels,
            boxes=regions.float(),
            labels=labels,
            masks=cropped_masks(regions, size),
            meta=ImageMeta(image_id=i, file_name=f"{i}.jpg", ori_size=size, img_size=size),
        )  # fmt: skip
        for i, (pixels, regions, labels) in enumerate(inputs)
    ]
    return DetBatch.collate(samples)


def masks_table(args: argparse.Namespace) -> None:
    """Bytes of the batch's masks, cropped vs full bitmaps (in this process: nothing here is a peak)."""
    size = tuple(args.size)
    inputs = make_inputs(args.images, size, args.boxes)
    cropped = sum(cropped_masks(regions, size).nbytes for _, regions, _ in inputs)
    full = sum(full_bitmaps(regions, size).numel() for _, regions, _ in inputs)
    print(f"masks of one batch ({args.images} images {size[0]}x{size[1]}, {args.boxes} instances each):")
    print(f"  {'CroppedMasks':<22}{cropped / 2**20:10.2f} MiB")
    print(f"  {'uint8 [N, H, W] bitmaps':<22}{full / 2**20:10.2f} MiB   ratio {cropped / full:.4f}")


def step_child(args: argparse.Namespace) -> None:
    """Builds one side's model (weights from ``--weights``) and the batch; with ``--phase step`` also trains
    one step."""
    size = tuple(args.size)
    inputs = make_inputs(args.images, size, args.boxes)
    state = torch.load(Path(args.weights) / f"{args.side}.pth", weights_only=True)
    if args.side == "lightdet":
        from hydra.utils import instantiate

        from lightdet.checkpoint import compose_model_config, get_preset

        model = instantiate(compose_model_config(get_preset("torchvision", ARCH)).model, _convert_="all")
        batch = lightdet_batch(inputs, size)

        def losses() -> dict[str, torch.Tensor]:
            return model.loss(batch)
    else:
        import torchvision.models.detection as tvd

        model = tvd.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, min_size=min(size), max_size=max(size)
        )
        images = [pixels.float() / 255 for pixels, _, _ in inputs]
        targets = [
            {"boxes": r.float(), "labels": lab + 1, "masks": full_bitmaps(r, size)} for _, r, lab in inputs
        ]

        def losses() -> dict[str, torch.Tensor]:
            return model(images, targets)

    model.load_state_dict(state)
    del state
    if args.phase == "step":
        model.train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        loss = sum(v for k, v in losses().items() if k.startswith("loss"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def train_child(args: argparse.Namespace) -> int:
    """``lightdet-train`` in this process, with the package this process imports (``PYTHONPATH``)."""
    import runpy

    import lightdet

    print(f"lightdet_from {Path(lightdet.__file__).parent}")
    sys.argv = ["lightdet-train", *TRAIN, f"paths.data_dir={args.data}", f"paths.output_root={args.out}"]
    try:
        runpy.run_module("lightdet.cli.train", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


def run_child(child: list[str], what: str, env: dict[str, str] | None = None) -> tuple[float | None, str]:
    """Runs ``--child ...`` in a fresh process: its peak RSS in MiB (None when it failed) and the folder of
    the ``lightdet`` package it ran (training runs; empty otherwise)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *child]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=tempfile.gettempdir()
    )
    found = dict(
        line.split(" ", 1)
        for line in proc.stdout.splitlines()
        if line.startswith(("maxrss_kib ", "lightdet_from "))
    )
    if proc.returncode != 0 or "maxrss_kib" not in found:
        print(f"  {what}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}")
        return None, ""
    return int(found["maxrss_kib"]) / 1024, found.get("lightdet_from", "")


def save_weights(folder: Path, size: tuple[int, int]) -> None:
    """torchvision's seeded Mask R-CNN and lightdet's conversion of it (``vs_torchvision.build_pair``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vs_torchvision import build_pair

    ours, tv = build_pair(ARCH, *size)
    torch.save(ours.state_dict(), folder / "lightdet.pth")
    torch.save(tv.state_dict(), folder / "torchvision.pth")


def step_table(args: argparse.Namespace, tmp: Path) -> None:
    save_weights(tmp, tuple(args.size))
    h, w = args.size
    common = f"--size {h} {w} --images {args.images} --boxes {args.boxes} --weights {tmp}".split()
    rss = {}
    for side in ("lightdet", "torchvision"):
        for phase in ("setup", "step"):
            child = ["step", "--side", side, "--phase", phase, *common]
            rss[side, phase] = run_child(child, f"{side} {phase}")[0]
    print(f"\nMask R-CNN R50-FPN, one training step on {args.images} images {h}x{w} with {args.boxes} masks each "
          f"(peak RSS, MiB, fresh process each; threads={torch.get_num_threads()}):")  # fmt: skip
    print(f"  {'':<12}{'setup':>10}{'step':>10}{'step - setup':>14}")
    for side in ("lightdet", "torchvision"):
        s, t = rss[side, "setup"], rss[side, "step"]
        if s is not None and t is not None:
            print(f"  {side:<12}{s:10.0f}{t:10.0f}{t - s:14.0f}")
    if None not in rss.values():
        (ls, lt), (ts, tt) = [(rss[side, "setup"], rss[side, "step"]) for side in ("lightdet", "torchvision")]
        print(f"  ratio lightdet / torchvision: step {lt / tt:.3f}, step - setup {(lt - ls) / (tt - ts):.3f}")


def extract(rev: str, folder: Path) -> Path:
    """``src`` and ``conf`` of git revision ``rev`` under ``folder``; the configs go to ``src/lightdet/conf``
    so that this tree's package finds its own."""
    folder.mkdir(parents=True)
    archive = folder / "tree.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "-C", str(REPO), "archive", rev, "src", "conf"], stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    shutil.move(folder / "conf", folder / "src" / "lightdet" / "conf")
    return folder / "src"


def train_table(args: argparse.Namespace, tmp: Path) -> None:
    data = tmp / "data"
    shapes = ["--data", str(data)]
    run_child(["shapes", *shapes], "shapes data")  # generated once, outside the measured runs
    rss, package = {}, {}
    for spec in args.tree:
        name, _, rev = spec.partition("=")
        env = {}
        if rev != "worktree":
            env["PYTHONPATH"] = str(extract(rev, tmp / f"tree_{name}"))
        rss[name], package[name] = run_child(
            ["train", *shapes, "--out", str(tmp / f"runs_{name}")], f"train {name}", env
        )
    print(
        f"\nlightdet-train {' '.join(TRAIN[:2])} (64 train images, no workers; peak RSS, MiB, fresh process each):"
    )
    for spec in args.tree:
        name, _, rev = spec.partition("=")
        value = f"{rss[name]:10.0f}" if rss[name] is not None else f"{'failed':>10}"
        print(f"  {name:<12}{value}   {rev} (lightdet from {package[name] or '?'})")
    if len(rss) == 2 and None not in rss.values():
        (first, a), (second, b) = rss.items()
        print(f"  ratio {second} / {first}: {b / a:.3f}")


def child_main(args: argparse.Namespace) -> None:
    code = 0
    if args.child == "step":
        step_child(args)
    elif args.child == "train":
        code = train_child(args)
    else:
        from lightdet.data import ensure_shapes

        ensure_shapes(Path(args.data) / "shapes", num_train=64, num_val=8, seed=0)
    print(f"maxrss_kib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
    sys.exit(code)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, nargs=2, default=(800, 1333), metavar=("H", "W"))
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--boxes", type=int, default=50)
    p.add_argument(
        "--tree",
        action="append",
        default=None,
        metavar="NAME=REV",
        help="a source tree for the training runs: a git revision, or 'worktree' (default: worktree=worktree)",
    )
    p.add_argument("--skip-step", action="store_true", help="no Mask R-CNN step measurement")
    p.add_argument("--skip-train", action="store_true", help="no shapes training runs")
    p.add_argument("--child", choices=["step", "train", "shapes"], help=argparse.SUPPRESS)
    p.add_argument("--side", choices=["lightdet", "torchvision"], help=argparse.SUPPRESS)
    p.add_argument("--phase", choices=["setup", "step"], help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child_main(args)
    args.tree = args.tree or ["worktree=worktree"]
    masks_table(args)
    with tempfile.TemporaryDirectory(prefix="lightdet_memory_") as tmp:
        if not args.skip_step:
            step_table(args, Path(tmp))
        if not args.skip_train:
            train_table(args, Path(tmp))


if __name__ == "__main__":
    main()
