"""assign_dense_targets: the one target loop of RPN, RetinaNet and FCOS, on hand-worked assignments."""

import torch
from model_builders import make_sample

from lightdet.models.dense_heads.dense_utils import assign_dense_targets
from lightdet.models.ops.assigner import IGNORED, NEGATIVE
from lightdet.structures import DetBatch

# four priors on a row: centres x = 4, 12, 20, 28 (y = 4); the second image is 16 px wide, so its last two
# priors lie in the batch padding
CENTRES = torch.tensor([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [28.0, 4.0]])


def _batch() -> DetBatch:
    first = make_sample(32, 32, [[0, 0, 8, 8], [16, 0, 24, 8], [24, 0, 32, 8]], [2, 0, 1], ignore=[False, True, False])
    second = make_sample(32, 16, [[8, 0, 16, 8]], [1])
    return DetBatch.collate([first, second])


def test_ignored_boxes_are_regions_and_padding_priors_are_ignored():
    seen: list[tuple[int, list, list]] = []

    def assign(i, gt, ignored):
        seen.append((i, gt.tolist(), ignored.tolist()))
        # image 0: prior 0 -> kept box 0, prior 3 -> kept box 1 (the third box), prior 2 inside the crowd box
        return torch.tensor([[0, NEGATIVE, IGNORED, 1], [NEGATIVE, 0, 0, 0]][i])

    targets = assign_dense_targets(_batch(), CENTRES, 3, assign)
    assert seen[0] == (0, [[0, 0, 8, 8], [24, 0, 32, 8]], [[16, 0, 24, 8]])
    assert seen[1] == (1, [[8, 0, 16, 8]], [])
    assert targets.gt_index.tolist() == [[0, NEGATIVE, IGNORED, 1], [NEGATIVE, 0, IGNORED, IGNORED]]
    assert targets.labels.tolist() == [[2, 3, 3, 1], [3, 1, 3, 3]]
    assert targets.weights.tolist() == [[1, 1, 0, 1], [1, 1, 0, 0]]
    # positives in (image, prior) order, lined up with x[positive] of any [B, N, ...] output
    assert targets.matched.tolist() == [[0, 0, 8, 8], [24, 0, 32, 8], [8, 0, 16, 8]]
    outputs = torch.arange(8.0).view(2, 4, 1)
    assert outputs[targets.positive].flatten().tolist() == [0.0, 3.0, 5.0]
    assert targets.num_pos == 3


def test_a_batch_without_boxes_has_no_positives_and_a_normaliser_of_one():
    batch = DetBatch.collate([make_sample(32, 32), make_sample(32, 32, seed=1)])
    targets = assign_dense_targets(batch, CENTRES, 3, lambda i, gt, ignored: torch.full((4,), NEGATIVE))
    assert targets.matched.shape == (0, 4) and not targets.positive.any()
    assert targets.labels.eq(3).all() and targets.num_pos == 1
