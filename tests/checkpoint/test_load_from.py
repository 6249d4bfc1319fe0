"""load_from: the weights source forms, downloads, weights_only, and fine-tuning onto another class set."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torch import nn

import lightdet
from lightdet.api import class_dependent_keys
from lightdet.checkpoint.load import (
    WeightsSource,
    load_weights,
    match_weights,
    parse_load_from,
    read_weights,
    resolve_location,
)
from lightdet.data.synthetic import make_shapes

CLASS_LAYERS = {f"roi_head.bbox_head.{m}.{p}" for m in ("fc_cls", "fc_reg") for p in ("weight", "bias")}
# A CPU run of seconds: the tiny dataset below, two batches per epoch, no loggers or progress display.
TINY = [
    "dataset.batch_size=4", "dataset.num_workers=0", "trainer.accelerator=cpu", "trainer.devices=1",
    "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=none",
    "schedule.warmup_iters=2", "dataset.num_train=16", "dataset.num_val=6",
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("run/last.ckpt", WeightsSource("run/last.ckpt")),
        ("https://host/x.ckpt", WeightsSource("https://host/x.ckpt")),
        ("lightdet:w.pth", WeightsSource("w.pth")),
        ("torchvision:fasterrcnn_resnet50_fpn:/c/tv.pth", WeightsSource("/c/tv.pth", "torchvision", "fasterrcnn_resnet50_fpn")),
        ("mmdet:faster_rcnn_r50_fpn_1x_coco:https://h/m.pth",
         WeightsSource("https://h/m.pth", "mmdet", "faster_rcnn_r50_fpn_1x_coco")),
        ({"path": "/c/tv.pth", "source": "torchvision", "arch": "fasterrcnn_resnet50_fpn"},
         WeightsSource("/c/tv.pth", "torchvision", "fasterrcnn_resnet50_fpn")),
    ],
)
def test_parse_load_from(spec, expected: WeightsSource) -> None:
    assert parse_load_from(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("torchvision:/c/tv.pth", "needs its arch"),
        ("mmdet:no_such_arch:/c/m.pth", "no checkpoint preset"),
        ({"file": "x"}, "needs 'path'"),
        ({"path": "x", "source": "caffe"}, "source must be one of"),
    ],
)
def test_parse_load_from_errors(spec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_load_from(spec)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no_such.ckpt"):
        resolve_location(str(tmp_path / "no_such.ckpt"))


def test_offline_download_names_url_and_cache_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, dst: str, progress: bool = True) -> None:
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    url = "https://example.org/weights/frcnn.pth"
    with pytest.raises(OSError) as info:
        resolve_location(url, tmp_path / "cache")
    assert url in str(info.value) and str(tmp_path / "cache" / "frcnn.pth") in str(info.value)


def test_url_downloads_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_download(url: str, dst: str, progress: bool = True) -> None:
        calls.append(url)
        torch.save({"w": torch.ones(1)}, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    url = "https://example.org/weights/tiny.pth"
    first = resolve_location(url, tmp_path)
    assert first == tmp_path / "tiny.pth" and resolve_location(url, tmp_path) == first
    assert calls == [url]


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "meta": WeightsSource("x")}, path)
    with pytest.raises(ValueError, match="weights_only"):
        read_weights(WeightsSource(str(path)))


def test_match_weights_sorts_every_tensor() -> None:
    target = {"a": torch.zeros(2), "cls": torch.zeros(3), "b": torch.zeros(4), "gone": torch.zeros(1)}
    state = {"a": torch.ones(2), "cls": torch.ones(5), "b": torch.ones(2), "extra": torch.ones(1)}
    to_load, report = match_weights(state, target, class_dependent={"cls"})
    assert list(to_load) == ["a"] and report.kept == ["a"]
    assert report.reinitialized == ["cls"] and report.missing == ["gone"] and report.unexpected == ["extra"]
    assert report.mismatched == {"b": ((2,), (4,))}


class _Tiny(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.body = nn.Linear(2, 2)
        self.head = nn.Linear(2, classes)


def test_other_architecture_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {"detector.body.weight": torch.ones(3, 3)}}, path)
    with pytest.raises(ValueError, match=r"does not fit this model(.|\n)*body.weight checkpoint \(3, 3\)"):
        load_weights(_Tiny(2), str(path))


def test_torchvision_weights_load_through_the_converter(tmp_path: Path) -> None:
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    path = tmp_path / "tv.pth"
    torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), path)
    cfg = lightdet.compose("faster_rcnn", ["dataset.classes=[cat,dog,bird]"], output_dir=tmp_path / "run")
    from hydra.utils import instantiate

    model = instantiate(cfg.model, _convert_="all")
    assert class_dependent_keys(cfg, model) == CLASS_LAYERS
    report = load_weights(model, f"torchvision:fasterrcnn_resnet50_fpn:{path}", class_dependent=CLASS_LAYERS)
    assert set(report.reinitialized) == CLASS_LAYERS and not (report.unexpected or report.missing)
    assert set(report.kept) == set(model.state_dict()) - CLASS_LAYERS  # untrained: BatchNorm, not frozen


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A checkpoint trained on three shapes classes, and the data directory."""
    data = tmp_path_factory.mktemp("data")
    make_shapes(data / "shapes", num_train=16, num_val=6, seed=0)
    cfg = lightdet.compose(
        overrides=[*TINY, f"paths.data_dir={data}", "dataset.classes=[circle,square,hexagon]"],
        output_dir=tmp_path_factory.mktemp("base"),
    )
    return lightdet.train(cfg).output_dir / "checkpoints" / "last.ckpt", data


@pytest.mark.slow
def test_finetune_onto_other_classes_keeps_all_but_the_class_layers(base_run, tmp_path: Path) -> None:
    ckpt, data = base_run
    cfg = lightdet.compose(
        "faster_rcnn_small_finetune_shapes",
        [*TINY, f"paths.data_dir={data}", f"load_from={ckpt}", "module.freeze=[backbone]"],
        output_dir=tmp_path / "finetune",
    )
    assert cfg.dataset.num_classes == 2  # [triangle, star]: another class set, another class count
    base = {
        k[len("detector.") :]: v
        for k, v in torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"].items()
    }
    result = lightdet.train(cfg)
    report = result.load_report
    assert report is not None and set(report.reinitialized) == CLASS_LAYERS
    assert not (report.missing or report.unexpected or report.mismatched)
    assert set(report.kept) == set(base) - CLASS_LAYERS
    tuned = result.module.detector.state_dict()
    # the frozen backbone still holds the loaded weights after fine-tuning; the new head has 2 + 1 outputs
    assert all(torch.equal(tuned[k], base[k]) for k in report.kept if k.startswith("backbone."))
    assert tuned["roi_head.bbox_head.fc_cls.weight"].shape[0] == 3
    assert result.summary["best"]["val/bbox_mAP"] is not None
    assert not result.module.detector.backbone.training


def test_unknown_freeze_name_lists_the_parts(compose_cfg) -> None:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    cfg = compose_cfg(["module.freeze=[backbone,nek]"])
    with pytest.raises(InstantiationException, match="no submodule 'nek'.*backbone, neck, rpn_head, roi_head"):
        instantiate(cfg.module, _convert_="all")
