"""``lightdet-test``: evaluate a checkpoint and print the COCO tables.

Examples::

    lightdet-test ckpt=outputs/faster_rcnn_small_quickstart_shapes/<time>/checkpoints/last.ckpt
    lightdet-test ckpt=model.ckpt dataset=coco paths.data_dir=/data split=val out=results/coco.json
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lightdet.cli._hydra import CONF_DIR, prepare_argv, run_app


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="test")
def _run(cfg: DictConfig) -> None:
    from lightdet.api import evaluate

    evaluate(cfg, overrides=list(HydraConfig.get().overrides.task))


def main() -> None:
    sys.argv = [sys.argv[0], *prepare_argv("test", sys.argv[1:])]
    run_app(_run, "test")


if __name__ == "__main__":
    main()
