"""Train and evaluate from a composed config: what ``lightdet-train`` and ``lightdet-test`` run.

``train(cfg)`` instantiates the datamodule, the LightningModule (detector, optimizer, schedule,
evaluator), callbacks, loggers and the trainer, and nothing else; the parts never see the config.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lightdet.checkpoint.files import check_fits, read_checkpoint
from lightdet.checkpoint.load import DETECTOR_PREFIX
from lightdet.composition import compose, config_from_container
from lightdet.config_check import check_config_types
from lightdet.engine.module import CONFIG_KEY
from lightdet.engine.summary import RunSummary, write_json

if TYPE_CHECKING:
    from lightdet.checkpoint.load import LoadReport
    from lightdet.export.runtime import ExportedRunner
    from lightdet.models.tta import TestTimeAugmentation

__all__ = [
    "TrainResult",
    "compose",
    "train",
    "evaluate",
    "find_resume_checkpoint",
    "stored_config",
    "class_dependent_keys",
    "CONFIG_KEY",
]

log = logging.getLogger(__name__)

# DetectionModule moves DetBatch itself (non-blocking); Lightning warns whenever a module does so and a
# DataModule is used, which is every run.
warnings.filterwarnings("ignore", message=r".*overridden `transfer_batch_to_device` in `LightningModule`")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        trainer: the fitted ``lightning.Trainer``.
        module: the ``DetectionModule``.
        summary: the content of ``summary.json`` (best/last metrics, history, checkpoint paths).
        output_dir: the run directory.
        load_report: what ``load_from`` kept and re-initialised (None without ``load_from``).
    """

    trainer: L.Trainer
    module: L.LightningModule
    summary: dict[str, Any] = field(default_factory=dict)
    output_dir: Path = Path(".")
    load_report: LoadReport | None = None

    @property
    def best_score(self) -> float | None:
        """The best ``val/bbox_mAP`` (None when nothing was validated)."""
        return self.summary.get("best", {}).get("val/bbox_mAP")


def _instantiate_all(nodes: DictConfig | None) -> list[Any]:
    """Instantiates every ``_target_`` node of a ``{name: node}`` group (callbacks, loggers)."""
    if not nodes:
        return []
    return [instantiate(node, _convert_="all") for node in nodes.values() if node and "_target_" in node]


def find_resume_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint to resume a run directory from: ``last.ckpt``, else the newest ``*.ckpt``."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if last.is_file():
        return last
    found = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _resume_path(cfg: DictConfig) -> str | None:
    if cfg.get("ckpt_path"):
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise FileNotFoundError(f"ckpt_path={cfg.ckpt_path!r}: no such checkpoint file")
        return str(path)
    resume = cfg.get("resume")
    if not resume:
        return None
    run_dir = Path(cfg.paths.output_dir) if str(resume) == "auto" else Path(str(resume))
    if str(resume) != "auto" and not run_dir.is_dir():
        raise FileNotFoundError(f"resume={resume!r}: no such run directory")
    found = find_resume_checkpoint(run_dir)
    if found is None and str(resume) != "auto":
        raise FileNotFoundError(f"resume={resume!r}: no checkpoint under {run_dir / 'checkpoints'}")
    log.info("resume=%s: %s", resume, f"resuming from {found}" if found else "no checkpoint yet, starting fresh")
    return str(found) if found else None


def _check_resume(resume: str | None, module: Any, role: str) -> int:
    """The global step a run starts from (0 without ``resume``); a checkpoint of another model is refused."""
    if resume is None:
        return 0
    payload = read_checkpoint(resume, role=role)
    stored = payload.get(CONFIG_KEY, {}).get("model")
    check_fits(
        detector_state(payload), module.detector, path=resume, role=role, stored=stored,
        wanted=module.lightdet_config.get("model"),
    )  # fmt: skip
    return int(payload.get("global_step", 0))


def detector_state(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The detector's tensors of a lightdet checkpoint (its ``state_dict`` without the ``detector.`` prefix)."""
    return {
        k[len(DETECTOR_PREFIX) :]: v for k, v in payload.get("state_dict", {}).items() if k.startswith(DETECTOR_PREFIX)
    }


def _callbacks(cfg: DictConfig) -> list[Any]:
    """The configured callbacks, minus a progress bar / model summary that the trainer switches off."""
    from lightning.pytorch.callbacks import ModelSummary, ProgressBar

    off = tuple(
        kind
        for kind, flag in ((ProgressBar, "enable_progress_bar"), (ModelSummary, "enable_model_summary"))
        if not cfg.trainer.get(flag, True)
    )
    return [c for c in _instantiate_all(cfg.get("callbacks")) if not (off and isinstance(c, off))]


def _without_metric_monitors(callbacks: Sequence[Any]) -> None:
    """With no evaluator there is no val/bbox_mAP: a "best" checkpoint then keeps the latest epoch."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    for c in callbacks:
        if isinstance(c, ModelCheckpoint) and c.monitor:
            log.warning("no evaluator: checkpoint %r monitors nothing and keeps the latest epoch", c.filename)
            c.monitor = None


def _build(cfg: DictConfig, callbacks: Sequence[Any]) -> tuple[L.LightningDataModule, Any, L.Trainer]:
    # Stored unresolved, so that `lightdet-test ckpt=... paths.data_dir=/elsewhere` re-resolves the paths.
    # Taken first: instantiating `module` (detector: ${model}) resolves the model node in place.
    composed = OmegaConf.to_container(cfg, resolve=False)
    datamodule = instantiate(cfg.dataset.datamodule, _convert_="all")
    module = instantiate(cfg.module, _convert_="all")
    if module.evaluator is None:
        _without_metric_monitors(callbacks)
    module.lightdet_config = composed
    loggers = _instantiate_all(cfg.get("logger"))
    _warn_cpu_processes(cfg.trainer)
    trainer = instantiate(cfg.trainer, callbacks=list(callbacks), logger=loggers or False, _convert_="all")
    return datamodule, module, trainer


def _warn_cpu_processes(trainer_cfg: DictConfig) -> None:
    """Several devices on the CPU start one training process each: say what they share."""
    import os

    accelerator, devices = str(trainer_cfg.get("accelerator", "auto")), trainer_cfg.get("devices", 1)
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and isinstance(devices, int) and devices > 1:
        cores = os.cpu_count() or 1
        log.warning(
            "trainer.devices=%d on the CPU starts %d training processes sharing this machine's %d cores "
            "(about %.1f each). DDP on the CPU tests the distributed path (trainer=ddp_sim); it does not "
            "train faster than one process.", devices, devices, cores, cores / devices,
        )


def train(cfg: DictConfig) -> TrainResult:
    """Trains (and optionally tests) the configured detector; writes the run directory.

    The run directory (``cfg.paths.output_dir``) receives ``config.yaml``, ``checkpoints/`` (last and
    best by ``val/bbox_mAP``), ``metrics.csv``, TensorBoard logs and ``summary.json``.
    """
    check_config_types(cfg)
    L.seed_everything(int(cfg.seed), workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if L.fabric.utilities.rank_zero.rank_zero_only.rank == 0:
        OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    summary = RunSummary(out)
    datamodule, module, trainer = _build(cfg, [*_callbacks(cfg), summary])
    resume = _resume_path(cfg)
    start_step = _check_resume(resume, module, "ckpt_path" if cfg.get("ckpt_path") else "resume")
    for logger in trainer.loggers:
        if hasattr(logger, "start_at"):  # lightdet's loggers continue the history of a resumed run
            logger.start_at(start_step)
    loaded = _apply_load_from(OmegaConf.create(module.lightdet_config), module.detector, resume)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    if cfg.get("test_after_train"):
        ckpt = "best" if trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path else None
        trainer.test(module, datamodule=datamodule, ckpt_path=ckpt)
    result = TrainResult(
        trainer=trainer, module=module, summary=summary.payload(trainer), output_dir=out, load_report=loaded
    )
    if trainer.is_global_zero:
        _print_summary(result)
    return result


def _print_summary(result: TrainResult) -> None:
    from rich.console import Console
    from rich.table import Table

    best = result.summary.get("best", {})
    table = Table(title="lightdet run summary", show_header=False)
    mAP = best.get("val/bbox_mAP")
    table.add_row("best val/bbox_mAP", "n/a" if mAP is None else f"{mAP:.4f} (epoch {best.get('epoch')})")
    last = result.summary.get("last", {})
    if "val/bbox_mAP" in last:
        table.add_row("final val/bbox_mAP", f"{last['val/bbox_mAP']:.4f}")
    table.add_row("best checkpoint", str(best.get("ckpt")))
    table.add_row("last checkpoint", str(last.get("ckpt")))
    table.add_row("run directory", str(result.output_dir))
    table.add_row("summary", str(result.output_dir / "summary.json"))
    for label, name in (("plots", "results.png"), ("analysis", "analysis/report.html")):
        path = result.output_dir / "plots" / name
        if path.is_file():  # written by the run report (lightdet.engine.report)
            table.add_row(label, str(path))
    Console().print(table)


def stored_config(ckpt: str | Path) -> DictConfig:
    """The composed config a lightdet checkpoint carries (written by lightdet-train / lightdet-convert)."""
    path = Path(ckpt)
    payload = read_checkpoint(path, role="ckpt")
    if CONFIG_KEY not in payload:
        raise ValueError(
            f"{path} carries no '{CONFIG_KEY}': it was not written by lightdet-train or lightdet-convert. "
            "Convert a torchvision/MMDetection checkpoint with `lightdet-convert` first."
        )
    return config_from_container(payload[CONFIG_KEY])


def merge_overrides(stored: DictConfig, composed: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Replaces in ``stored`` exactly what the command-line ``overrides`` changed in ``composed``.

    ``dataset=coco`` replaces the whole ``dataset`` node, ``model/backbone=resnet101`` the
    ``model.backbone`` node and ``dataset.batch_size=4`` that one value; everything else keeps the
    checkpoint's value.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    merged = OmegaConf.create(OmegaConf.to_container(stored, resolve=False))
    OmegaConf.set_struct(merged, False)
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        key = o.key_or_group.split("@", 1)[0].replace("/", ".")
        if key == "experiment":
            raise ValueError(
                "experiment=... cannot be applied to a checkpoint's stored config: override the groups or keys "
                "that differ instead (e.g. dataset=coco, dataset.batch_size=4)"
            )
        if key.startswith("hydra"):
            continue
        if o.is_delete():
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(merged, parent) if parent else merged
            if isinstance(node, DictConfig):
                node.pop(leaf, None)
            continue
        value = OmegaConf.select(composed, key, throw_on_missing=False)
        target_parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(merged, target_parent) if target_parent else merged
        if node is None:
            OmegaConf.update(merged, key, value, merge=False, force_add=True)
        else:
            node[leaf] = value
    return merged


def evaluate(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Evaluates ``cfg.ckpt`` on ``cfg.split`` with the checkpoint's config plus ``overrides``.

    ``cfg.ckpt`` may also be a file written by ``lightdet-export``: it runs with its runtime (ONNX Runtime,
    PyTorch) on the data and evaluator of the config it carries, and with test-time augmentation (``tta=``)
    through the same :class:`~lightdet.models.tta.TestTimeAugmentation` as a checkpoint's model.

    Returns the metrics (``test/bbox_mAP``, ...). Writes ``cfg.out`` (COCO results JSON) and
    ``summary.json`` beside it when ``cfg.out`` is set.
    """
    from lightdet.export.runtime import exported_runner

    runner = exported_runner(cfg.ckpt)  # a file written by lightdet-export, else None
    stored = stored_config(cfg.ckpt) if runner is None else runner.stored_config()
    merged = merge_overrides(stored, cfg, overrides)
    for key in ("ckpt", "split", "out", "paths", "trainer", "logger", "callbacks"):
        merged[key] = cfg[key]
    if merged.get("out"):
        merged.dataset.evaluator.outfile = str(merged.out)
    split = str(merged.split)
    if split not in ("val", "test"):
        raise ValueError(f"split={split!r}: expected 'val' or 'test'")
    # Only the evaluated split is built: a machine holding just the val images must be enough.
    merged.dataset.datamodule.train = None
    check_config_types(merged)
    datamodule, module, trainer = _build(merged, _callbacks(merged))
    if runner is not None:
        module.detector = runner.as_detector()  # the exported graph replaces the model built from its config
    if merged.get("tta"):  # tta=flip ...: predict through TestTimeAugmentation (same state-dict keys)
        module.detector = instantiate(merged.tta, _convert_="all")(module.detector)
        if runner is not None:
            _check_exported_tta(runner, module.detector)
    if split == "val":
        datamodule.test = datamodule.val
    if runner is None:
        _check_resume(str(cfg.ckpt), module, "ckpt")
        results = trainer.test(module, datamodule=datamodule, ckpt_path=str(cfg.ckpt))
    else:
        results = trainer.test(module, datamodule=datamodule)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if merged.get("out") and trainer.is_global_zero:
        out = Path(merged.out)
        write_json(out.parent / "summary.json", {"ckpt": str(cfg.ckpt), "split": split, "metrics": metrics})
    return metrics


def _check_exported_tta(runner: ExportedRunner, tta: TestTimeAugmentation) -> None:
    """A file exported for one image size (``--no-dynamic``) runs the unscaled views of ``tta`` only.

    Raises:
        ValueError: naming the file, its size and the scales it cannot take, before any image is run.
    """
    size = runner.metadata.input_size
    other = sorted({scale for scale, _ in tta.views if scale != 1.0})
    if not size["dynamic"] and other:
        h, w = size["example_size"]
        raise ValueError(
            f"{runner.path}: tta scales {other} need other image sizes than the {h}x{w} this file was exported "
            "for; export the checkpoint with --dynamic, or test with tta=flip (scale 1 only)"
        )


# -- fine-tuning: load_from ---------------------------------------------------------------------------
def class_dependent_keys(cfg: DictConfig, detector: torch.nn.Module) -> set[str]:
    """The detector's state-dict keys whose shape follows ``dataset.num_classes``.

    Found by building the configured model with one more class on the ``meta`` device (shapes only, no
    memory) and comparing shapes, so any head whose ``num_classes`` interpolates the dataset's is covered.
    """
    probe = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    probe.dataset.num_classes = int(cfg.dataset.num_classes) + 1
    if OmegaConf.select(probe, "model.backbone.weights", default=None) is not None:
        probe.model.backbone.weights = None  # initial weights only: the probe needs shapes, not a download
    with torch.device("meta"):
        other = instantiate(probe.model, _convert_="all").state_dict()
    return {k for k, v in detector.state_dict().items() if k in other and other[k].shape != v.shape}


def _apply_load_from(cfg: DictConfig, detector: torch.nn.Module, resume: str | None) -> LoadReport | None:
    """Initialises ``detector`` from ``cfg.load_from``, if set (see :mod:`lightdet.checkpoint.load`).

    ``cfg`` is the config as composed (the model's ``num_classes`` still an interpolation).
    """
    from lightdet.checkpoint.load import load_weights

    spec = cfg.get("load_from")
    if not spec:
        return None
    if resume:
        log.warning("load_from=%s is ignored: resuming from %s restores every weight", spec, resume)
        return None
    spec = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else str(spec)
    return load_weights(detector, spec, class_dependent=class_dependent_keys(cfg, detector))  # type: ignore[arg-type]

