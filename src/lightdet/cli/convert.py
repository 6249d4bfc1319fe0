"""``lightdet-convert``: a published torchvision / MMDetection checkpoint -> a lightdet checkpoint.

The written file carries the composed config whose numerics match the source (RoIAlign variant, anchor
rounding, proposal counts, box-coder clamping ...), so ``lightdet-test ckpt=DST`` runs it as is.

Examples::

    lightdet-convert torchvision fasterrcnn_resnet50_fpn fasterrcnn_resnet50_fpn_coco-258fb6c6.pth tv_frcnn.ckpt
    lightdet-convert mmdet faster_rcnn_r50_fpn_1x_coco faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth mm.ckpt
    lightdet-test ckpt=tv_frcnn.ckpt paths.data_dir=/data split=val
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from lightdet.checkpoint.files import read_checkpoint
from lightdet.checkpoint.load import DETECTOR_PREFIX
from lightdet.checkpoint.presets import PRESETS, SOURCES, convert, get_preset
from lightdet.composition import compose_config
from lightdet.engine.module import CONFIG_KEY


def compose_converted_config(source: str, arch: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The ``lightdet-train`` config of a converted checkpoint: the preset's model on COCO's 80 classes."""
    preset = get_preset(source, arch)
    return compose_config("train", [*preset.hydra_overrides(), "dataset=coco", f"name={arch}", *overrides])


def convert_file(source: str, arch: str, src: Path, dst: Path, overrides: Sequence[str] = ()) -> str:
    """Converts ``src`` and writes ``dst``; returns the conversion report's summary.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ValueError: the weights do not fill the model (unknown, missing or mis-shaped keys).
    """
    loaded = read_checkpoint(src, role="SRC")
    state, report, _ = convert(source, arch, loaded, coco80=True)
    if not report.ok:
        raise ValueError(f"{src} does not fit lightdet's {arch}:\n{report.summary()}")
    cfg = compose_converted_config(source, arch, overrides)
    payload = {
        "state_dict": {DETECTOR_PREFIX + k: v for k, v in state.items()},
        CONFIG_KEY: OmegaConf.to_container(cfg, resolve=False),
        "pytorch-lightning_version": L.__version__,
        "epoch": 0,
        "global_step": 0,
        "converted_from": {"source": source, "arch": arch, "file": src.name},
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(dst)
    return report.summary()


def build_parser() -> argparse.ArgumentParser:
    archs = "\n".join(f"  {s:<12} {a}" for s, a in PRESETS)
    parser = argparse.ArgumentParser(
        prog="lightdet-convert",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Convert a published checkpoint into a lightdet checkpoint that carries its config, so that "
            "lightdet-test runs it as is. torchvision's 91-way "
            "COCO classifier is reduced to the 80 real COCO classes (its 10 unused 'N/A' logits are dropped)."
        ),
        epilog=(
            f"Known SOURCE ARCH pairs:\n{archs}\n\nExample:\n"
            "  lightdet-convert torchvision fasterrcnn_resnet50_fpn fasterrcnn_resnet50_fpn_coco-258fb6c6.pth tv.ckpt\n"
            "  lightdet-test ckpt=tv.ckpt paths.data_dir=/data split=val"
        ),
    )
    parser.add_argument("source", choices=SOURCES, help="the library that published the checkpoint")
    parser.add_argument("arch", help="the architecture name (see the list below)")
    parser.add_argument("src", type=Path, help="the published checkpoint (.pth)")
    parser.add_argument("dst", type=Path, help="the lightdet checkpoint to write (.ckpt)")
    parser.add_argument(
        "overrides", nargs="*", default=[],
        help="Hydra overrides stored in the written config, e.g. dataset.data_root=/data/coco",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = convert_file(args.source, args.arch, args.src, args.dst, args.overrides)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary)
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
