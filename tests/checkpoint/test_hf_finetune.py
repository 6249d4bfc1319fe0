"""Real-time DETR checkpoints in use: ``load_from: hf:ARCH:PATH`` fine-tunes a tiny transformers RT-DETR onto
other classes (only the class layers re-initialised), ``lightdet-convert rtdetr`` turns an original-repository
``.pth`` into a checkpoint, and ``lightdet-test`` / ``lightdet-infer`` run a converted checkpoint as is."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

import lightdet
from lightdet.checkpoint.from_hf import hf_model_overrides, read_hf_folder
from lightdet.checkpoint.load import load_weights, parse_load_from
from lightdet.cli.convert import main as convert_main
from lightdet.composition import compose_config
from lightdet.data.synthetic import make_shapes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models" / "detr"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_helpers import run_cli  # noqa: E402
from hf_reference import make_reference  # noqa: E402

pytest.importorskip("transformers")

TINY = [
    "dataset.batch_size=2", "dataset.num_workers=0", "trainer.accelerator=cpu", "trainer.devices=1",
    "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=none",
    "schedule.warmup_iters=2", "dataset.num_train=8", "dataset.num_val=2", "callbacks=none",
]
CLASS_LAYERS = {
    "decoder.denoising_class_embed.weight", "decoder.query_selection.enc_score_head.weight",
    "decoder.query_selection.enc_score_head.bias",
    *[f"decoder.dec_score_head.{i}.{p}" for i in range(2) for p in ("weight", "bias")],
}


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded tiny transformers RT-DETR (5 labels) saved with save_pretrained."""
    folder = tmp_path_factory.mktemp("hf")
    make_reference("rt_detr", folder)
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    make_shapes(data / "shapes", num_train=8, num_val=2, seed=0)
    return data


def model_overrides(folder: Path) -> list[str]:
    name, overrides = hf_model_overrides(read_hf_folder(folder)[0])
    return [f"model={name}", *overrides]


def test_hf_source_needs_a_known_arch() -> None:
    assert parse_load_from("hf:d_fine:/x").arch == "d_fine"
    assert parse_load_from("hf:/x").arch is None
    with pytest.raises(ValueError, match="hf ARCH must be one of"):
        parse_load_from("hf:rtdetr:/x")


def test_hf_arch_must_match_config(hf_folder: Path) -> None:
    with pytest.raises(ValueError, match="differs from config.json"):
        load_weights(torch.nn.Linear(1, 1), f"hf:d_fine:{hf_folder}")  # refused before any tensor is matched


@pytest.mark.slow
def test_finetune_hf_checkpoint_onto_other_classes(hf_folder: Path, data_dir: Path, tmp_path: Path) -> None:
    cfg = lightdet.compose(
        overrides=[*model_overrides(hf_folder), *TINY, f"paths.data_dir={data_dir}", "optimizer=adamw",
                   "dataset.classes=[circle,square,star]", f"load_from=hf:rt_detr:{hf_folder}"],
        output_dir=tmp_path / "finetune",
    )
    reference = {k: v for k, v in instantiate(compose_config(None, [
        *("+" + o if o.startswith("model=") else o for o in model_overrides(hf_folder)), "+dataset.num_classes=5",
    ]).model).state_dict().items()}
    result = lightdet.train(cfg)
    report = result.load_report
    assert report is not None and set(report.reinitialized) == CLASS_LAYERS
    assert not (report.missing or report.unexpected or report.mismatched)
    assert set(report.kept) == set(reference) - CLASS_LAYERS
    tuned = result.module.detector.state_dict()
    assert tuned["decoder.dec_score_head.1.weight"].shape[0] == 3  # three classes now
    assert result.module.trainer.global_step == 2


def test_convert_original_repo_pth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A training checkpoint of the original layout ({model, ema: {module}}) converts; the EMA weights are taken."""
    cfg = compose_config(None, ["+model=rtdetr_small", "+dataset.num_classes=80"])
    ours = instantiate(cfg.model).state_dict()
    original = {k.replace("decoder.layers.", "decoder.decoder.layers.")
                 .replace("decoder.query_selection.enc_output.proj.", "decoder.enc_output.0.")
                 .replace("decoder.query_selection.enc_output.norm.", "decoder.enc_output.1.")
                 .replace("decoder.query_selection.", "decoder."): v + 1 for k, v in ours.items()}
    src, dst = tmp_path / "orig.pth", tmp_path / "conv.ckpt"
    torch.save({"model": {k: torch.zeros_like(v) for k, v in original.items()}, "ema": {"module": original}}, src)
    assert convert_main(["rtdetr", "rtdetr_small", str(src), str(dst)]) == 0
    assert "unexpected 0, missing 0" in capsys.readouterr().out
    written = torch.load(dst, map_location="cpu", weights_only=False)
    state = {k.removeprefix("detector."): v for k, v in written["state_dict"].items()}
    assert set(state) == set(ours)
    assert all(torch.equal(state[k], ours[k] + 1) for k in ours)
    assert written["lightdet_config"]["dataset"]["pipeline"]["test"][1]["scale"] == [640, 640]


@pytest.mark.slow
def test_test_and_infer_run_a_converted_hf_checkpoint(hf_folder: Path, data_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "rtdetr.ckpt"
    assert convert_main(["hf", str(hf_folder), str(ckpt)]) == 0
    shapes = [f"paths.data_dir={data_dir}", "dataset=shapes", "dataset.num_train=8", "dataset.num_val=2",
              "dataset.num_workers=0"]
    out = tmp_path / "results" / "results.json"
    done = run_cli(["lightdet-test", f"ckpt={ckpt}", *shapes, f"out={out}", "trainer.limit_test_batches=1"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "test/bbox_mAP" in json.loads((out.parent / "summary.json").read_text())["metrics"]
    image = next((data_dir / "shapes" / "val").glob("*.jpg"))
    done = run_cli(["lightdet-infer", f"ckpt={ckpt}", f"input={image}", f"out={tmp_path / 'pred'}"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    predictions = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert predictions
