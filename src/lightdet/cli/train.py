"""``lightdet-train``: train a detector from the composed Hydra config.

Examples::

    lightdet-train experiment=shapes_rtmdet           # the quickstart (make train): RTMDet-tiny on shapes, CPU
    lightdet-train                                    # no arguments: the small Faster R-CNN on shapes, CPU
    lightdet-train model=faster_rcnn dataset=coco schedule=1x trainer=gpu
    lightdet-train experiment=faster_rcnn_r50_fpn_1x_coco optimizer.lr=0.01
    lightdet-train model/backbone=resnet101 --cfg job # print the composed config and exit
    lightdet-train -m optimizer.lr=0.01,0.02 schedule=1x,2x   # a sweep, one run directory per job
    lightdet-train -m optimizer.lr=0.01,0.02 hydra.sweep.dir=outputs/lr resume=auto   # resumable sweep

DDP under Hydra: Lightning's subprocess launcher starts ranks 1..N-1 by running this command again with
``hydra.run.dir`` set to the rank-0 run directory and ``hydra.output_subdir=null``, so every rank writes
into one directory and only rank 0 writes the config, checkpoints and summary. In a multirun job the
command line is the whole sweep; ``_isolated_multirun_job`` makes the children run just this job.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf, read_write

from lightdet.cli._hydra import CONF_DIR, prepare_argv, run_app

__all__ = ["main", "check_resumed_job"]

log = logging.getLogger(__name__)


#: Environment variables Lightning's DDP launcher sets in the launching process. Left behind, they make the
#: next job of a sweep believe that its ranks were launched externally, and it never starts them.
_DDP_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def _isolated_multirun_job() -> Iterator[None]:
    """Runs one job of a multirun so that DDP works in it and in the jobs after it.

    Lightning builds its DDP child command from ``sys.argv`` and ``hydra.run.dir``: in a sweep those are
    the sweep's command line (the children would run the whole sweep) and an unused timestamped
    directory, so both are pointed at this job. Afterwards the process group is destroyed and the
    launcher's environment variables are restored, so that the next job launches its own ranks.
    """
    import torch.distributed as dist
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        yield
        return
    saved_argv, saved_dir = sys.argv, hydra_cfg.run.dir
    saved_env = {key: os.environ.get(key) for key in _DDP_LAUNCH_ENV}
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]  # this job's overrides, without -m
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = saved_argv
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = saved_dir
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _swept_keys(argv: Sequence[str], sweeper_params: Sequence[str]) -> list[str]:
    """Config keys (dotted) that a sweep varies: ``a=1,2`` style overrides and the sweeper's params."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([a for a in argv if "=" in a and not a.startswith("-")])
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    keys += list(sweeper_params)
    return sorted({k.split("@", 1)[0].replace("/", ".") for k in keys if not k.startswith("hydra")})


def check_resumed_job(cfg: DictConfig, ckpt: str | Path, swept_keys: Sequence[str]) -> None:
    """Refuses to resume a sweep job from a checkpoint that another job (other swept values) wrote.

    Raises:
        ValueError: a swept key whose value in the checkpoint's stored config differs from ``cfg``'s.
    """
    from lightdet.api import stored_config

    stored = stored_config(ckpt)
    for key in swept_keys:
        mine = OmegaConf.select(cfg, key, throw_on_missing=False)
        theirs = OmegaConf.select(stored, key, throw_on_missing=False)
        as_plain = [OmegaConf.to_container(v) if isinstance(v, DictConfig | ListConfig) else v for v in (mine, theirs)]
        if as_plain[0] != as_plain[1]:
            raise ValueError(
                f"resume=auto: {ckpt} was written by a job with {key}={as_plain[1]!r}, but this job has "
                f"{key}={as_plain[0]!r}: hydra.sweep.dir holds a different sweep. Give this sweep its own "
                "hydra.sweep.dir, or drop resume=auto to start its jobs afresh."
            )


def _check_multirun_resume(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from lightdet.api import find_resume_checkpoint

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN or str(cfg.get("resume")) != "auto":
        return
    ckpt = find_resume_checkpoint(cfg.paths.output_dir)
    if ckpt is not None:
        params = hydra_cfg.sweeper.get("params")  # Optuna's search space; the basic sweeper's is empty
        check_resumed_job(cfg, ckpt, _swept_keys(sys.argv[1:], list(params) if params else []))
        log.info("resume=auto: job %s continues from %s", hydra_cfg.job.num, ckpt)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _run(cfg: DictConfig) -> float | None:
    from lightdet.api import train

    _check_multirun_resume(cfg)
    with _isolated_multirun_job():
        result = train(cfg)
    # The return value is what Hydra sweepers (e.g. Optuna, hparams_search=optuna) optimise.
    return result.best_score


def main() -> None:
    sys.argv = [sys.argv[0], *prepare_argv("train", sys.argv[1:])]
    run_app(_run, "train")


if __name__ == "__main__":
    main()
