"""``lightdet-convert hf``: transformers RT-DETR / RT-DETRv2 / D-FINE folders -> lightdet checkpoints that the
Predictor runs as is; every key of both naming generations converted or dropped with a reason."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2.functional as TF

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models" / "detr"))
from hf_reference import make_reference  # noqa: E402

from lightdet.checkpoint.from_hf import convert_hf_state_dict, read_hf_folder  # noqa: E402
from lightdet.cli.convert import convert_hf_file, main  # noqa: E402
from lightdet.models.detr.box_ops import cxcywh_to_xyxy  # noqa: E402
from lightdet.structures import clip_boxes  # noqa: E402

pytest.importorskip("transformers")


@pytest.mark.parametrize("kind", ["rt_detr", "rt_detr_v2", "d_fine"])
def test_every_key_of_both_naming_generations_is_accounted_for(kind: str, tmp_path: Path) -> None:
    reference = make_reference(kind, tmp_path)
    _, on_disk = read_hf_folder(tmp_path)
    for state in (on_disk, reference.state_dict()):  # save_pretrained's names and transformers 5's own
        out, report = convert_hf_state_dict(state, kind)
        assert not report.unexpected
        assert set(report.converted) | set(report.dropped) == set(state)
        assert all(reason for reason in report.dropped.values())
        assert len(out) == len(set(report.converted.values()))


def test_convert_cli_then_predictor_matches_transformers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lightdet import Predictor

    folder, dst = tmp_path / "hf", tmp_path / "rtdetr.ckpt"
    reference = make_reference("rt_detr", folder)
    assert main(["hf", str(folder), str(dst), "rt_detr"]) == 0
    assert "unexpected 0, missing 0" in capsys.readouterr().out
    # As converted (no BatchNorm folding): the seeded model's encoder output is nearly flat, so the query
    # selection's ties follow float rounding; the optimised copy's own parity is tested on spread models.
    predictor = Predictor.from_checkpoint(dst, device="cpu", optimize=False)
    assert predictor.class_names == [f"LABEL_{i}" for i in range(5)]
    g = torch.Generator().manual_seed(5)
    image = (torch.nn.functional.interpolate(torch.rand(1, 3, 30, 40, generator=g), size=(480, 640),
                                             mode="bilinear")[0] * 255).round().to(torch.uint8)
    det = predictor.predict(image)
    assert len(det) == 60  # top num_queries (x classes) as transformers' post-processing
    # transformers on the same 640x640 input (the checkpoint's test pipeline: bilinear antialiased resize)
    pixel = TF.resize(image, [640, 640], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    with torch.no_grad():
        ref = reference(pixel_values=pixel[None].float() / 255)
    scores, index = ref.logits.sigmoid().flatten(1).topk(60)
    boxes = cxcywh_to_xyxy(ref.pred_boxes[0, index[0] // 5]) * torch.tensor([640.0, 480.0, 640.0, 480.0])
    torch.testing.assert_close(det.scores, scores[0], atol=1e-4, rtol=0)
    assert torch.equal(det.labels, index[0] % 5)
    torch.testing.assert_close(det.boxes, clip_boxes(boxes, (480, 640)), atol=1e-2, rtol=0)


def test_arch_must_agree_with_config(tmp_path: Path) -> None:
    make_reference("rt_detr", tmp_path)
    with pytest.raises(ValueError, match="differs from config.json"):
        convert_hf_file(tmp_path, tmp_path / "x.ckpt", "d_fine")


def test_missing_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hf", str(tmp_path), str(tmp_path / "x.ckpt")]) == 2
    assert "config.json" in capsys.readouterr().err
