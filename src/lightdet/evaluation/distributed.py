"""Gathering per-image evaluation results from every rank, without the images a sampler padded in.

``DistributedSampler`` pads the dataset so that every rank gets the same number of images, repeating
the first images of the (shuffled) index list. Evaluating the union of the ranks' results as-is would
count those images twice; keeping the first occurrence of every image id makes the metrics equal to a
single-process run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch.distributed as dist

from lightdet.evaluation.ground_truth import GroundTruth, describe_ground_truth

__all__ = ["RankResults", "PerImageResults", "merge_rank_results", "all_gather_results", "is_rank_zero"]

#: One rank's results: the image ids it processed, in order, and per image the list of its COCO result
#: dicts (``results[i]`` belongs to ``image_ids[i]``).
RankResults = tuple[Sequence[int], Sequence[list[dict[str, Any]]]]


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_rank_zero() -> bool:
    """True in a single process and on global rank 0 of an initialised process group."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def merge_rank_results(per_rank: Sequence[RankResults]) -> tuple[list[int], list[list[dict[str, Any]]]]:
    """Concatenates the ranks' per-image results, keeping only the first occurrence of each image id.

    Args:
        per_rank: for each rank in rank order, ``(image_ids, results)`` with ``len(results) ==
            len(image_ids)``.

    Returns:
        ``(image_ids, results)`` with unique image ids, ranks in order, each rank's images in order.

    Raises:
        ValueError: when a rank's ``image_ids`` and ``results`` differ in length.
    """
    seen: set[int] = set()
    image_ids: list[int] = []
    results: list[list[dict[str, Any]]] = []
    for rank, (ids, rank_results) in enumerate(per_rank):
        if len(ids) != len(rank_results):
            raise ValueError(
                f"rank {rank}: {len(ids)} image ids but {len(rank_results)} per-image result lists"
            )
        for image_id, image_results in zip(ids, rank_results):
            if image_id in seen:
                continue
            seen.add(image_id)
            image_ids.append(int(image_id))
            results.append(image_results)
    return image_ids, results


def all_gather_results(
    image_ids: Sequence[int], results: Sequence[list[dict[str, Any]]]
) -> tuple[list[int], list[list[dict[str, Any]]]]:
    """Gathers ``(image_ids, results)`` from every rank and merges them (see :func:`merge_rank_results`).

    Every rank receives the same merged results, so metrics computed from them agree across ranks.
    Without an initialised process group (or with a single rank) this only de-duplicates the local
    results.
    """
    local: RankResults = (list(image_ids), list(results))
    if not _is_distributed():
        return merge_rank_results([local])
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    return merge_rank_results(gathered)


class PerImageResults(ABC):
    """What every evaluator shares: per-image result lists keyed by image id, gathered across ranks.

    Subclasses load their ground truth ``ann_file`` in ``_ground_truth()`` (setting ``_class_names``)
    and append to ``_image_ids`` / ``_results`` in ``process``; ``compute`` reads :meth:`merged`.
    """

    ann_file: GroundTruth
    _class_names: list[str]

    @abstractmethod
    def _ground_truth(self) -> Any:
        """Loads the ground truth once (and sets ``_class_names``); returns it."""

    @property
    def source(self) -> str:
        """How messages name the ground truth (see :func:`describe_ground_truth`)."""
        return describe_ground_truth(self.ann_file)

    @property
    def class_names(self) -> list[str]:
        """Names of labels ``0..K-1`` (reads the annotation file on first access)."""
        self._ground_truth()
        return list(self._class_names)

    @property
    def num_images(self) -> int:
        """Number of distinct images processed since the last :meth:`reset`."""
        return len(set(self._image_ids))

    def reset(self) -> None:
        """Forgets every processed image."""
        self._image_ids: list[int] = []
        self._results: list[list[dict[str, Any]]] = []

    def state(self) -> tuple[list[int], list[list[dict[str, Any]]]]:
        """``(image_ids, per-image result dicts)`` processed so far (copies), as :meth:`sync` gathers."""
        return list(self._image_ids), [list(r) for r in self._results]

    def load_state(self, state: RankResults) -> None:
        """Replaces the processed results by ``state`` (e.g. ranks merged by ``merge_rank_results``)."""
        image_ids, results = state
        if len(image_ids) != len(results):
            raise ValueError(
                f"load_state: {len(image_ids)} image ids but {len(results)} per-image result lists"
            )
        self._image_ids, self._results = [int(i) for i in image_ids], [list(r) for r in results]

    def sync(self) -> None:
        """Replaces the local results by the de-duplicated union over all ranks (no-op in one process).

        Every rank must call it (it is a collective); afterwards ``compute`` agrees on all ranks.
        """
        self._image_ids, self._results = all_gather_results(self._image_ids, self._results)

    def merged(self) -> tuple[list[int], list[list[dict[str, Any]]]]:
        """The processed images, each once (first occurrence), with their results."""
        return merge_rank_results([(self._image_ids, self._results)])

