"""``on_bad_image``: ``error`` (default) stops naming the image; ``skip`` loads another image in its place, the
skipped one travels in ``meta.skipped`` from DataLoader workers to the training process, which logs it once
and lists it in ``summary.json`` (merged across DDP ranks)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lightdet.data import CocoDataset, DetDataModule, make_shapes
from lightdet.data.image_io import BadImageError
from lightdet.engine.summary import RunSummary
from lightdet.structures import DetBatch, SkippedImage


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def _skipping(root: Path) -> CocoDataset:
    return CocoDataset(root / "ann.json", root / "img", on_bad_image="skip")


def test_error_is_the_default_and_names_the_setting(coco_dir) -> None:
    root = coco_dir()
    _truncate(root / "img" / "a.jpg")
    with pytest.raises(BadImageError, match=r"ann\.json: image 10: file '.*a\.jpg' is truncated .*; "
                       r"dataset\.on_bad_image=skip would skip it"):
        CocoDataset(root / "ann.json", root / "img")[0]


def test_skip_loads_another_image_and_names_the_skipped_one(coco_dir) -> None:
    root = coco_dir()
    _truncate(root / "img" / "a.jpg")
    ds = _skipping(root)
    sample = ds[0]
    assert sample.meta.image_id in (11, 12)
    (skipped,) = sample.meta.skipped
    assert skipped == SkippedImage(10, str(root / "img" / "a.jpg"), f"CocoDataset {root / 'ann.json'}",
                                   "is truncated (Truncated File Read)")
    assert ds[0].meta.image_id == sample.meta.image_id  # the same replacement every time
    assert ds[1].meta.skipped == () and ds[2].meta.skipped == ()


def test_skip_gives_up_when_nothing_can_be_read(coco_dir) -> None:
    root = coco_dir(images=False)
    with pytest.raises(BadImageError, match=r"CocoDataset .*ann\.json: none of 16 images tried in place of image "
                       r"index 1 could be loaded \(on_bad_image=skip\); is the image folder right\? The last: "
                       r".*\.(jpg|png) not found"):
        _skipping(root)[1]


def test_an_unknown_policy_is_refused(coco_dir) -> None:
    root = coco_dir()
    with pytest.raises(ValueError, match=r"CocoDataset: on_bad_image must be 'error' or 'skip', got 'ignore'"):
        CocoDataset(root / "ann.json", root / "img", on_bad_image="ignore")  # type: ignore[arg-type]


def test_skipped_images_reach_the_main_process_from_workers(coco_dir) -> None:
    root = coco_dir()
    (root / "img" / "b.png").write_bytes(b"")
    dm = DetDataModule(train=_skipping(root), batch_size=3, num_workers=2, shuffle=False,
                       group_by_aspect_ratio=False, persistent_workers=False)
    (batch,) = list(dm.train_dataloader())
    skipped = [s for meta in batch.metas for s in meta.skipped]
    assert [(s.image_id, s.reason) for s in skipped] == [(11, "is empty (0 bytes)")]
    assert 11 not in [meta.image_id for meta in batch.metas] and len(batch) == 3


def _batch_skipping(*images: SkippedImage) -> DetBatch:
    from dataclasses import replace

    import torch

    from lightdet.structures import DetSample, ImageMeta

    meta = ImageMeta(image_id=1, file_name="x.jpg", ori_size=(4, 4), img_size=(4, 4), skipped=images)
    sample = DetSample(image=torch.zeros(3, 4, 4, dtype=torch.uint8), boxes=torch.zeros(0, 4),
                       labels=torch.zeros(0, dtype=torch.int64), meta=meta)
    return DetBatch.collate([sample, replace(sample, meta=replace(meta, skipped=()))])


def test_run_summary_logs_each_skipped_image_once_and_lists_it(tmp_path: Path, caplog) -> None:
    bad = SkippedImage(3, "img/a.jpg", "CocoDataset ann.json", "is empty (0 bytes)")
    other = SkippedImage(4, "img/b.jpg", "CocoDataset ann.json", "not found")
    summary, rank_0 = RunSummary(tmp_path), SimpleNamespace(is_global_zero=True)
    with caplog.at_level(logging.WARNING, logger="lightdet.engine.summary"):
        for batch in (_batch_skipping(bad), _batch_skipping(bad, other), _batch_skipping(bad)):
            summary.on_train_batch_end(rank_0, None, None, batch, 0)  # type: ignore[arg-type]
        summary.on_validation_batch_end(rank_0, None, None, _batch_skipping(other), 0)  # type: ignore[arg-type]
        RunSummary(tmp_path).on_train_batch_end(SimpleNamespace(is_global_zero=False), None, None,  # type: ignore
                                                _batch_skipping(bad), 0)
    assert [r.getMessage() for r in caplog.records] == [
        "skipped image img/a.jpg (id 3) of CocoDataset ann.json: is empty (0 bytes) (dataset.on_bad_image=skip)",
        "skipped image img/b.jpg (id 4) of CocoDataset ann.json: not found (dataset.on_bad_image=skip)",
    ]
    resumed = RunSummary(tmp_path)
    resumed.load_state_dict(summary.state_dict())
    assert resumed.skipped == summary.skipped and len(summary.skipped) == 2


# -- a training run -------------------------------------------------------------------------------------
# 2 gloo processes, each with a DataLoader worker, over 8 training images in order: rank r loads the
# positions r, r + 2, ... (no shuffling, no grouping), 2 batches of 2 = its whole shard.
DDP_SKIP = [
    "trainer=ddp_sim", "dataset.num_train=8", "dataset.num_val=2", "dataset.batch_size=2", "dataset.num_workers=1",
    "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.max_epochs=1", "logger=csv",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "schedule.warmup_iters=2",
    "+dataset.datamodule.shuffle=false", "+dataset.datamodule.group_by_aspect_ratio=false",
    "dataset.on_bad_image=skip",
]  # fmt: skip


def _train(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lightdet-train")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def _file_at(root: Path, split: str, position: int) -> Path:
    images = json.loads((root / "annotations" / f"{split}.json").read_text())["images"]
    return root / split / images[position]["file_name"]


@pytest.mark.slow  # 2 training processes: about 20 s
def test_a_ddp_run_skips_bad_images_of_every_rank_and_lists_them(tmp_path: Path) -> None:
    root = make_shapes(tmp_path / "data" / "shapes", num_train=8, num_val=2, seed=0)
    _truncate(on_rank_1 := _file_at(root, "train", 1))
    (on_rank_0 := _file_at(root, "train", 2)).write_bytes(b"")
    (in_val := _file_at(root, "val", 1)).write_bytes(b"GIF89a")
    run_dir = tmp_path / "run"
    proc = _train([*DDP_SKIP, f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = json.loads((run_dir / "summary.json").read_text())["skipped_images"]
    assert listed["count"] == 3
    assert {i["file_name"]: i["reason"].split(" (")[0] for i in listed["images"]} == {
        str(on_rank_1): "is truncated", str(on_rank_0): "is empty", str(in_val): "is not an image"}
    logs = "".join(p.read_text() for p in run_dir.glob("train*.log"))
    for path in (on_rank_0, on_rank_1, in_val):  # rank 0 logs each image once, the other ranks' at the merge
        assert logs.count(f"skipped image {path} ") == 1, logs
        assert f"skipped image {path} " in (run_dir / "train.log").read_text()
