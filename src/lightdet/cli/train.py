"""``lightdet-train``: train a detector from the composed Hydra config.

Examples::

    lightdet-train                                    # quickstart: synthetic shapes, small Faster R-CNN, CPU
    lightdet-train model=faster_rcnn dataset=coco schedule=1x trainer=gpu
    lightdet-train experiment=faster_rcnn_r50_fpn_1x_coco optimizer.lr=0.01
    lightdet-train model/backbone=resnet101 --cfg job # print the composed config and exit
    lightdet-train -m optimizer.lr=0.01,0.02 schedule=1x,2x   # a sweep, one run directory per job
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from lightdet.cli._hydra import CONF_DIR, prepare_argv


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _run(cfg: DictConfig) -> float | None:
    from lightdet.api import train

    # The return value is what Hydra sweepers (e.g. Optuna) optimise.
    return train(cfg).best_score


def main() -> None:
    sys.argv = [sys.argv[0], *prepare_argv("train", sys.argv[1:])]
    _run()


if __name__ == "__main__":
    main()
