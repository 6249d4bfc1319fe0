"""The real-time DETRs exported through SupportsExport: ONNX Runtime, TorchScript and ExportedProgram give the
eager model's top-k detections (boxes within 1e-2 px, scores within 1e-4, labels equal) at two image sizes
through one dynamic-shape file; the example size, the opset check and lightdet-export on a DETR checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from detr_builders import spread
from export_builders import DETRS, SIZES, export_model, image_batches, seeded_model, write_checkpoint
from model_builders import make_sample

from lightdet.cli.export import main
from lightdet.export import (
    ExportError,
    ExportOptions,
    assert_parity,
    export_detector,
    load_export,
    read_metadata,
)
from lightdet.export.detr import DETRGraphHead
from lightdet.structures import DetBatch, Detections

TOP_K = 60  # num_top_queries of the tiny DETRs: every image returns exactly this many detections
FAMILY = {"rtdetr": "rtdetr", "rtdetrv2": "rtdetr", "dfine": "dfine"}


def eager(model, batches: list[DetBatch]) -> list[Detections]:
    with torch.no_grad():
        return [d for b in batches for d in model.predict(b)]


def exported(path: Path, batches: list[DetBatch]) -> list[Detections]:
    detector = load_export(path).as_detector()
    return [d for b in batches for d in detector.predict(b)]


def check(reference: list[Detections], candidate: list[Detections]) -> None:
    report = assert_parity(reference, candidate)
    assert report.total == len(SIZES) * TOP_K
    assert [len(d) for d in candidate] == [TOP_K] * len(SIZES)


@pytest.mark.parametrize("name", list(DETRS))
def test_onnx_runtime_and_torchscript_match_eager(name: str, tmp_path: Path) -> None:
    model = seeded_model(name)
    batches = image_batches()
    reference = eager(model, batches)
    assert reference[0].scores.std() > 1e-3  # spread weights: detections differ, not a grid of anchors
    for fmt in ("onnx", "torchscript"):
        path = export_model(model, tmp_path, fmt)
        assert read_metadata(path).family == FAMILY[name]
        check(reference, exported(path, batches))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dfine"])  # the DETR head with FDR; RT-DETR's graph is checked in ONNX/TorchScript
def test_exported_program_matches_eager(name: str, tmp_path: Path) -> None:
    model = seeded_model(name)
    batches = image_batches()
    check(eager(model, batches), exported(export_model(model, tmp_path, "exported_program"), batches))


def test_batch_of_two_gives_each_images_detections(tmp_path: Path) -> None:
    """The top-k is per image: a --batch 2 file returns each image's own top 60, split by batch_index."""
    model = seeded_model("dfine")
    samples = [make_sample(96, 128, seed=seed) for seed in (10, 11)]
    reference = eager(model, [DetBatch.collate([s]) for s in samples])
    runner = load_export(export_model(model, tmp_path, "onnx", batch=2))
    both = DetBatch.collate(samples)
    assert_parity(reference, runner.as_detector().predict(both))
    assert runner(both.images)["batch_index"].tolist() == [0] * TOP_K + [1] * TOP_K


def test_example_grows_until_the_queries_fit(tmp_path: Path) -> None:
    """D-FINE-N's two levels (strides 16, 32) have 100 cells at the default 128 x 160 example: with 300 queries
    the eager model cannot run it, so a dynamic export traces twice the size and still takes both test sizes."""
    model = seeded_model("dfine")
    head = DETRGraphHead(model)
    assert head.example_size((128, 160)) == (128, 160)  # 50 queries: 100 cells suffice
    model.decoder.num_queries = 300
    assert head.memory_strides() == [16, 32] and head.example_size((128, 160)) == (256, 320)
    with pytest.raises(RuntimeError):
        eager(model, image_batches([(128, 160)]))
    path = export_model(model, tmp_path, "onnx")
    assert read_metadata(path).input_size["example_size"] == [256, 320]
    batches = image_batches([(256, 320), (320, 256)])
    check(eager(model, batches), exported(path, batches))


def test_bilinear_sampling_needs_opset_16(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"opset 15 .*grid_sample.*decoder\.layers\.0\.cross_attn and 1 more.*16"):
        export_detector(
            seeded_model("rtdetr"), tmp_path / "m.onnx", ExportOptions(opset=15), class_names=["a", "b", "c"]
        )


@pytest.fixture(scope="module")
def detr_checkpoint(shapes_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded (untrained, spread) ``experiment=shapes_rtdetr`` checkpoint carrying its config."""
    from hydra.utils import instantiate

    import lightdet

    run = tmp_path_factory.mktemp("detr_run")
    cfg = lightdet.compose(
        "shapes_rtdetr", [f"paths.data_dir={shapes_data}", "dataset.num_workers=0"], output_dir=run
    )
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all").eval()
    spread(model)
    return write_checkpoint(model, cfg, run / "detr.ckpt")


def test_lightdet_export_writes_a_detr_checkpoint_and_checks_it(
    detr_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI path: the checkpoint's shapes pipeline (keep-ratio resize: a dynamic file), metadata, the
    written file run next to the eager model on two seeded images."""
    out = tmp_path / "rtdetr.onnx"
    assert main([str(detr_checkpoint), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rtdetr, onnx, 5 classes" in printed and "(100.00%)" in printed
    meta = read_metadata(out)
    assert meta.family == "rtdetr" and meta.input_size["dynamic"] and meta.score_threshold == 0.0
    assert meta.outputs == ["boxes", "scores", "labels", "batch_index"]
