"""Distributed evaluation: the ranks' padded shards merge to exactly the single-process metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from coco_random import make_random_coco
from torch.utils.data import DistributedSampler

from lightdet.evaluation import CocoEvaluator, all_gather_results, merge_rank_results


def test_merge_keeps_first_occurrence_in_rank_order() -> None:
    r0 = ([10, 11, 12], [[{"image_id": 10, "r": 0}], [], [{"image_id": 12, "r": 0}]])
    r1 = ([13, 10, 13], [[{"image_id": 13, "r": 1}], [{"image_id": 10, "r": 1}], [{"image_id": 13, "r": 9}]])
    ids, results = merge_rank_results([r0, r1])
    assert ids == [10, 11, 12, 13]
    assert [[r["r"] for r in rs] for rs in results] == [[0], [], [0], [1]]


def test_merge_rejects_misaligned_rank() -> None:
    with pytest.raises(ValueError, match="rank 1: 2 image ids but 1"):
        merge_rank_results([([1], [[]]), ([2, 3], [[]])])


def test_all_gather_without_process_group_is_local_dedup() -> None:
    assert not dist.is_initialized()
    ids, results = all_gather_results([5, 6, 5], [[{"a": 1}], [], [{"a": 2}]])
    assert ids == [5, 6] and results == [[{"a": 1}], []]


def _rank_shard(num_images: int, rank: int, world: int) -> list[int]:
    """The indices a shuffled DistributedSampler gives ``rank``, padding duplicates included."""
    return list(DistributedSampler(range(num_images), num_replicas=world, rank=rank, shuffle=True, seed=3))


def _evaluate_shard(rank: int, world: int, tmp: str) -> None:
    """One rank of a gloo group: evaluate this rank's shard, sync, compute, write the metrics."""
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    try:
        # Each rank regenerates the same seeded data into its own file: writing the parent's gt.json
        # again here would race with the other rank reading it.
        data = make_random_coco(Path(tmp) / f"gt_rank{rank}.json", seed=5, num_images=13)
        evaluator = CocoEvaluator(str(data.ann_file), outfile=f"{tmp}/results.json")
        shard = _rank_shard(len(data.metas), rank, world)
        for start in range(0, len(shard), 2):  # batches of two
            idx = shard[start : start + 2]
            evaluator.process([data.detections[i] for i in idx], [data.metas[i] for i in idx])
        evaluator.sync()
        result = evaluator.compute()
        payload = {"metrics": result.metrics, "per_class": result.per_class, "num_images": result.num_images}
        Path(tmp, f"rank{rank}.json").write_text(json.dumps(payload))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned interpreters import torch and lightdet: 4-20 s on 2 busy cores
def test_two_process_gloo_sync_equals_single_process(tmp_path: Path) -> None:
    world = 2
    data = make_random_coco(tmp_path / "gt.json", seed=5, num_images=13)  # 13 images: rank 1 gets a pad
    padded = sum((_rank_shard(13, r, world) for r in range(world)), [])
    assert len(padded) == 14 and len(set(padded)) == 13

    single = CocoEvaluator(str(data.ann_file))
    single.process(data.detections, data.metas)
    expected = single.compute()

    mp.spawn(_evaluate_shard, args=(world, str(tmp_path)), nprocs=world, join=True)
    for rank in range(world):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["num_images"] == 13
        assert got["metrics"] == pytest.approx(expected.metrics, abs=1e-12)
        assert got["per_class"] == pytest.approx(expected.per_class, abs=1e-12, nan_ok=True)
    written = json.loads((tmp_path / "results.json").read_text())
    assert len(written) == sum(len(d) for d in data.detections)  # the padded image's results once


def test_simulated_ranks_equal_single_process(tmp_path: Path) -> None:
    """Three ranks' evaluators, gathered by hand: same numbers as one evaluator on all images."""
    data = make_random_coco(tmp_path / "gt.json", seed=7, num_images=11)
    world, states = 3, []
    for rank in range(world):
        evaluator = CocoEvaluator(str(data.ann_file))
        shard = _rank_shard(len(data.metas), rank, world)
        evaluator.process([data.detections[i] for i in shard], [data.metas[i] for i in shard])
        states.append(evaluator.state())
    merged = CocoEvaluator(str(data.ann_file))
    merged.load_state(merge_rank_results(states))
    single = CocoEvaluator(str(data.ann_file))
    single.process(data.detections, data.metas)
    assert merged.compute().metrics == single.compute().metrics
    assert sum(len(s[0]) for s in states) == 12 > len(data.metas)  # padding really happened
