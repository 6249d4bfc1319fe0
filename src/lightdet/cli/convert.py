"""``lightdet-convert``: a published torchvision / MMDetection / Hugging Face checkpoint -> a lightdet checkpoint.

The written file carries the composed config whose numerics match the source (RoIAlign variant, anchor
rounding, proposal counts, box-coder clamping ...), so ``lightdet-test ckpt=DST`` runs it as is.

Examples::

    lightdet-convert torchvision fasterrcnn_resnet50_fpn fasterrcnn_resnet50_fpn_coco-258fb6c6.pth tv_frcnn.ckpt
    lightdet-convert mmdet faster_rcnn_r50_fpn_1x_coco faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth mm.ckpt
    lightdet-convert hf PekingU-rtdetr_r50vd/ rtdetr_r50vd.ckpt          # config.json + model.safetensors
    lightdet-convert rtdetr rtdetrv2_r18vd rtdetrv2_r18vd_120e_coco.pth r18.ckpt   # the original repositories
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
from lightdet.checkpoint.from_hf import (
    HF_MODEL_TYPES,
    HF_TEST_PIPELINE,
    convert_hf_state_dict,
    hf_overrides,
    read_hf_folder,
)
from lightdet.checkpoint.from_rtdetr_repo import convert_rtdetr_repo, select_weights
from lightdet.checkpoint.load import DETECTOR_PREFIX
from lightdet.checkpoint.presets import PRESETS, SOURCES, convert, get_preset
from lightdet.checkpoint.report import check_against_target
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
    write_converted(state, cfg, dst, {"source": source, "arch": arch, "file": src.name})
    return report.summary()


def convert_hf_file(src: Path, dst: Path, arch: str | None = None, overrides: Sequence[str] = ()) -> str:
    """Converts a Hugging Face RT-DETR / RT-DETRv2 / D-FINE folder (``config.json`` + ``model.safetensors``).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: unknown architecture, or weights that do not fill the model.
    """
    from hydra.utils import instantiate

    config, weights = read_hf_folder(src)
    cfg = compose_config("train", [*hf_overrides(config, arch), f"name={config.get('model_type')}", *overrides])
    with torch.device("meta"):
        target = instantiate(cfg.model).state_dict()
    state, report = convert_hf_state_dict(weights, str(config.get("model_type")))
    state = check_against_target(state, report, target)
    if not report.ok:
        raise ValueError(f"{src} does not fit lightdet's {config.get('model_type')}:\n{report.summary()}")
    write_converted(state, cfg, dst, {"source": "hf", "arch": config.get("model_type"), "file": src.name})
    return report.summary()


def convert_rtdetr_file(model: str, src: Path, dst: Path, overrides: Sequence[str] = (), ema: bool = True) -> str:
    """Converts an original RT-DETR / RT-DETRv2 / D-FINE ``.pth`` (its EMA weights unless ``ema`` is False) into
    lightdet's ``model`` (``conf/model/<model>.yaml``) on COCO's 80 classes with the 640x640 test resize.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ValueError: the weights do not fill the model (another size: pick the matching ``model``).
    """
    from hydra.utils import instantiate

    cfg = compose_config("train", [f"model={model}", "dataset=coco", HF_TEST_PIPELINE, f"name={model}", *overrides])
    with torch.device("meta"):
        target = instantiate(cfg.model).state_dict()
    state, report = convert_rtdetr_repo(select_weights(read_checkpoint(src, role="SRC"), ema=ema))
    state = check_against_target(state, report, target)
    if not report.ok:
        raise ValueError(f"{src} does not fit lightdet's {model}:\n{report.summary()}")
    write_converted(state, cfg, dst, {"source": "rtdetr", "arch": model, "file": src.name})
    return report.summary()


def write_converted(state: dict[str, torch.Tensor], cfg: DictConfig, dst: Path, origin: dict[str, object]) -> None:
    """Writes a lightdet checkpoint (Lightning layout) holding ``state`` and the composed ``cfg``."""
    payload = {
        "state_dict": {DETECTOR_PREFIX + k: v for k, v in state.items()},
        CONFIG_KEY: OmegaConf.to_container(cfg, resolve=False),
        "pytorch-lightning_version": L.__version__,
        "epoch": 0,
        "global_step": 0,
        "converted_from": origin,
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(dst)


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
            f"Known SOURCE ARCH pairs:\n{archs}\n\nHugging Face RT-DETR / RT-DETRv2 / D-FINE: lightdet-convert hf SRC DST "
            "[ARCH] (see lightdet-convert hf --help)\nOriginal RT-DETR / D-FINE .pth: lightdet-convert rtdetr MODEL SRC DST "
            "(see lightdet-convert rtdetr --help)\n\nExample:\n"
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


def build_hf_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightdet-convert hf",
        description=(
            "Convert a Hugging Face transformers RT-DETR / RT-DETRv2 / D-FINE checkpoint (a folder, or a file in "
            "it, with config.json and model.safetensors) into a lightdet checkpoint. The architecture and sizes "
            "come from config.json; the written config has the 640x640 test resize, inputs scaled to [0, 1] and "
            "id2label's class names."
        ),
    )
    parser.add_argument("src", type=Path, help="the Hugging Face checkpoint folder (or a file in it)")
    parser.add_argument("dst", type=Path, help="the lightdet checkpoint to write (.ckpt)")
    parser.add_argument("arch", nargs="?", choices=HF_MODEL_TYPES, help="must agree with config.json's model_type")
    parser.add_argument("--override", dest="overrides", action="append", default=[],
                        help="a Hydra override stored in the written config (repeatable)")
    return parser


def build_rtdetr_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightdet-convert rtdetr",
        description=(
            "Convert a checkpoint of the original repositories (lyuwenyu/RT-DETR rtdetr_pytorch and rtdetrv2_pytorch, "
            "Peterande/D-FINE; their EMA weights when present) into a lightdet checkpoint of MODEL, on COCO's 80 "
            "classes with the 640x640 test resize and inputs scaled to [0, 1]."
        ),
    )
    parser.add_argument("model", help="the lightdet model config of the same size, e.g. rtdetr_r50vd, rtdetrv2_r18vd, dfine_l")
    parser.add_argument("src", type=Path, help="the original .pth file")
    parser.add_argument("dst", type=Path, help="the lightdet checkpoint to write (.ckpt)")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="take 'model', not the EMA weights")
    parser.add_argument("--override", dest="overrides", action="append", default=[],
                        help="a Hydra override stored in the written config (repeatable)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    kind = argv[0] if argv and argv[0] in ("hf", "rtdetr") else None
    parsers = {"hf": build_hf_parser, "rtdetr": build_rtdetr_parser}
    args = parsers[kind]().parse_args(argv[1:]) if kind else build_parser().parse_args(argv)
    try:
        if kind == "hf":
            summary = convert_hf_file(args.src, args.dst, args.arch, args.overrides)
        elif kind == "rtdetr":
            summary = convert_rtdetr_file(args.model, args.src, args.dst, args.overrides, args.ema)
        else:
            summary = convert_file(args.source, args.arch, args.src, args.dst, args.overrides)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary)
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
