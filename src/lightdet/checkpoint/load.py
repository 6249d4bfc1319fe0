"""``load_from``: start training from a checkpoint's weights (not its optimizer, schedule or step: that is resume).

A weights source is written as one string or a dict::

    load_from: outputs/run/checkpoints/last.ckpt                   # a lightdet checkpoint or state dict
    load_from: https://example.org/frcnn.ckpt                       # downloaded once into the cache dir
    load_from: torchvision:fasterrcnn_resnet50_fpn:/ckpts/frcnn.pth  # converted from torchvision's names
    load_from: mmdet:faster_rcnn_r50_fpn_1x_coco:https://.../x.pth  # converted from MMDetection's names
    load_from: hf:rt_detr:/ckpts/rtdetr_r50vd/                      # transformers' RT-DETR/v2 / D-FINE folder
    load_from: rtdetr:/ckpts/rtdetrv2_r18vd_120e_coco.pth           # lyuwenyu/RT-DETR or D-FINE .pth (EMA)
    load_from: {source: torchvision, arch: fasterrcnn_resnet50_fpn, path: /ckpts/frcnn.pth}

Files are read with ``torch.load(weights_only=True)``. Every model tensor ends up in exactly one of the
:class:`LoadReport` lists: kept (loaded), re-initialised (class-dependent and of another shape: the number of
classes changed), or missing (the checkpoint lacks it); checkpoint tensors the model lacks are unexpected. A
shape difference anywhere else means another architecture and is an error.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from lightdet.checkpoint.files import read_checkpoint
from lightdet.checkpoint.from_hf import HF_MODEL_TYPES, convert_hf_state_dict, read_hf_folder
from lightdet.checkpoint.from_rtdetr_repo import convert_rtdetr_repo, select_weights
from lightdet.checkpoint.presets import SOURCES, get_preset
from lightdet.checkpoint.rules import unwrap_state_dict

__all__ = ["WeightsSource", "LoadReport", "parse_load_from", "resolve_location", "read_weights", "load_weights"]

log = logging.getLogger(__name__)

#: Prefix of the detector's tensors in a DetectionModule (Lightning) state dict.
DETECTOR_PREFIX = "detector."
#: Sources read by their own converters, without a preset: ``hf`` (a ``transformers`` folder, ARCH optional and
#: checked against its config.json) and ``rtdetr`` (the original RT-DETR / RT-DETRv2 / D-FINE ``.pth``).
DETR_SOURCES = ("hf", "rtdetr")
_SOURCES = ("lightdet", *SOURCES, *DETR_SOURCES)
_SPEC = re.compile(rf"^({'|'.join(_SOURCES)}):(?:([\w.-]+):)?(.+)$")
_DICT_KEYS = ("path", "source", "arch", "cache_dir")


@dataclass(frozen=True)
class WeightsSource:
    """Where ``load_from`` reads weights.

    Attributes:
        path: a local file or an http(s) URL.
        source: ``"lightdet"`` (a lightdet checkpoint, or a state dict with lightdet's key names),
            ``"torchvision"`` or ``"mmdet"`` (renamed by the converters of :mod:`lightdet.checkpoint`), ``"hf"``
            (a ``transformers`` RT-DETR / RT-DETRv2 / D-FINE folder, or a file in it) or ``"rtdetr"`` (an
            original RT-DETR / D-FINE ``.pth``, its EMA weights when it has them).
        arch: the converter's architecture name (``lightdet-convert --help`` lists them); required for
            ``torchvision`` and ``mmdet``; optional for ``hf`` (then it must equal config.json's model_type).
        cache_dir: where URLs are downloaded; None: ``torch.hub.get_dir()/checkpoints``
            (``$TORCH_HOME/hub/checkpoints``).
    """

    path: str
    source: str = "lightdet"
    arch: str | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.source not in _SOURCES:
            raise ValueError(f"load_from: source must be one of {_SOURCES}, got {self.source!r}")
        if self.source == "hf" and self.arch is not None and self.arch not in HF_MODEL_TYPES:
            raise ValueError(f"load_from: hf ARCH must be one of {HF_MODEL_TYPES}, got {self.arch!r}")
        if self.source not in ("lightdet", *DETR_SOURCES):
            if not self.arch:
                raise ValueError(f"load_from: a {self.source} checkpoint needs its arch, e.g. '{self.source}:ARCH:PATH'")
            get_preset(self.source, self.arch)  # names the known architectures when unknown
        if not str(self.path):
            raise ValueError("load_from: empty path")


def parse_load_from(spec: str | Mapping[str, object] | WeightsSource) -> WeightsSource:
    """``PATH``, ``SOURCE:ARCH:PATH`` (``lightdet:PATH``) or a dict with ``path``/``source``/``arch``/``cache_dir``."""
    if isinstance(spec, WeightsSource):
        return spec
    if isinstance(spec, Mapping):
        unknown = sorted(set(map(str, spec)) - set(_DICT_KEYS))
        if unknown or "path" not in spec:
            raise ValueError(f"load_from: a dict needs 'path' and may have {list(_DICT_KEYS)}; got keys {sorted(spec)}")
        return WeightsSource(**{str(k): (None if v is None else str(v)) for k, v in spec.items()})  # type: ignore[arg-type]
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"load_from: expected a path, 'SOURCE:ARCH:PATH' or a dict, got {type(spec).__name__}")
    m = _SPEC.match(str(spec))
    if m is None:
        return WeightsSource(path=str(spec))
    source, arch, path = m.groups()
    return WeightsSource(path=path, source=source, arch=arch)


def _is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https", "ftp")


def resolve_location(location: str, cache_dir: str | Path | None = None) -> Path:
    """The local file of ``location``: the path itself, or a URL's copy in the cache (downloaded once).

    Raises:
        FileNotFoundError: a local path that does not exist.
        OSError: a URL that cannot be downloaded (no network); names the URL and the cache path to fill by hand.
    """
    if not _is_url(location):
        path = Path(urlparse(location).path if location.startswith("file://") else location).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"load_from={location!r}: no such file")
        return path
    cache = Path(cache_dir) if cache_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    target = cache / Path(urlparse(location).path).name
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    log.info("load_from: downloading %s to %s", location, target)
    try:
        torch.hub.download_url_to_file(location, str(target), progress=True)
    except (URLError, OSError, ValueError) as err:
        raise OSError(
            f"load_from: could not download {location} into the cache file {target} ({err}). Without a network, "
            f"download it on another machine and copy it to {target}, or set load_from to a local path."
        ) from err
    return target


def read_weights(source: WeightsSource) -> tuple[dict[str, Tensor], list[str]]:
    """Loads ``source`` and renames its tensors to the detector's names (no ``detector.`` prefix).

    Returns:
        ``(state_dict, unconverted)``: the renamed tensors, and the source keys a converter did not map.
    """
    if source.source == "hf":
        return read_hf_weights(source)
    path = resolve_location(source.path, source.cache_dir)
    payload = read_checkpoint(path, role="load_from")
    if source.source == "rtdetr":
        converted, report = convert_rtdetr_repo(select_weights(payload))
        return converted, list(report.unexpected)
    state = unwrap_state_dict(payload, f"load_from {path}")
    if source.source == "lightdet":
        if any(k.startswith(DETECTOR_PREFIX) for k in state):
            # a DetectionModule checkpoint: only the detector's tensors are weights of the model
            state = {k[len(DETECTOR_PREFIX) :]: v for k, v in state.items() if k.startswith(DETECTOR_PREFIX)}
        return state, []
    assert source.arch is not None  # checked by WeightsSource
    converted, report = get_preset(source.source, source.arch).converter(state, True)
    return converted, list(report.unexpected)


def read_hf_weights(source: WeightsSource) -> tuple[dict[str, Tensor], list[str]]:
    """A local ``transformers`` folder (``config.json`` + ``model.safetensors``) renamed to lightdet's keys.

    Raises:
        ValueError: ``source.arch`` differs from config.json's ``model_type``.
    """
    config, weights = read_hf_folder(Path(source.path).expanduser())
    model_type = str(config.get("model_type"))
    if source.arch is not None and source.arch != model_type:
        raise ValueError(f"load_from: ARCH {source.arch!r} differs from config.json's model_type {model_type!r}")
    converted, report = convert_hf_state_dict(weights, model_type)
    return converted, list(report.unexpected)


@dataclass
class LoadReport:
    """What ``load_from`` did with every tensor (model keys, without the ``detector.`` prefix).

    Attributes:
        kept: model tensors loaded from the checkpoint.
        reinitialized: class-dependent model tensors whose checkpoint shape differs (another number of
            classes): they keep the model's fresh initialisation.
        missing: model tensors the checkpoint lacks (they keep their initialisation).
        unexpected: checkpoint tensors the model lacks (ignored).
        mismatched: other tensors of another shape, ``key -> (checkpoint shape, model shape)`` (an error).
    """

    kept: list[str] = field(default_factory=list)
    reinitialized: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def summary(self) -> str:
        """Counts, the kept tensors per top-level module, then every re-initialised/missing/unexpected key."""
        per_module = Counter(k.split(".", 1)[0] for k in self.kept)
        lines = [
            f"kept {len(self.kept)}, re-initialised {len(self.reinitialized)}, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape mismatches {len(self.mismatched)}",
            "  kept: every model tensor not listed below ("
            + ", ".join(f"{m} {n}" for m, n in sorted(per_module.items())) + ")",
        ]
        lines += [f"  re-initialised (number of classes differs): {k}" for k in self.reinitialized]
        lines += [f"  missing (kept its initialisation): {k}" for k in self.missing]
        lines += [f"  unexpected (ignored): {k}" for k in self.unexpected]
        lines += [f"  shape mismatch: {k} checkpoint {a} vs model {b}" for k, (a, b) in self.mismatched.items()]
        return "\n".join(lines)


def match_weights(
    state: Mapping[str, Tensor], target: Mapping[str, Tensor], class_dependent: Collection[str] = ()
) -> tuple[dict[str, Tensor], LoadReport]:
    """Splits ``state`` against the model's ``target`` state dict; returns the tensors to load and the report."""
    report = LoadReport()
    to_load: dict[str, Tensor] = {}
    for key, want in target.items():
        if key not in state:
            report.missing.append(key)
        elif tuple(state[key].shape) == tuple(want.shape):
            to_load[key] = state[key]
            report.kept.append(key)
        elif key in class_dependent:
            report.reinitialized.append(key)
        else:
            report.mismatched[key] = (tuple(state[key].shape), tuple(want.shape))
    report.unexpected = sorted(k for k in state if k not in target)
    return to_load, report


def load_weights(
    model: nn.Module,
    spec: str | Mapping[str, object] | WeightsSource,
    *,
    class_dependent: Collection[str] = (),
) -> LoadReport:
    """Loads ``spec``'s weights into ``model`` (a detector) and logs the :class:`LoadReport`.

    Args:
        model: the detector (``TwoStageDetector`` ...), already initialised.
        spec: see :func:`parse_load_from`.
        class_dependent: the model keys whose shape depends on the number of classes; these are
            re-initialised when the checkpoint's shape differs.

    Raises:
        ValueError: another shape for a tensor that is not class-dependent (another architecture), or no
            tensor of the checkpoint fits the model.
    """
    source = parse_load_from(spec)
    state, unconverted = read_weights(source)
    to_load, report = match_weights(state, model.state_dict(), class_dependent)
    report.unexpected = sorted([*report.unexpected, *unconverted])
    if report.mismatched or not report.kept:
        raise ValueError(
            f"load_from={source.path!r} ({source.source}) does not fit this model: is it the same architecture "
            f"(model=..., model/backbone=...)?\n{report.summary()}"
        )
    model.load_state_dict(to_load, strict=False)
    log.info("load_from %s (%s):\n%s", source.path, source.source, report.summary())
    return report
