"""Reading checkpoint files: one loader for ``lightdet-test``, ``lightdet-infer``, the API, ``load_from``,
``resume`` and ``ckpt_path``, whose errors name the file and say what was found in it.

* :func:`read_checkpoint`: ``torch.load(weights_only=True)`` after telling apart a missing file, a folder, an
  empty or truncated file, a file that is not a PyTorch checkpoint (a text file, an image ...), and a pickle
  holding Python objects (refused, never run).
* :func:`check_fits`: a state dict against the model it is meant for; on a mismatch it names both
  architectures and the few parts that differ, not the full key lists.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["CheckpointError", "read_checkpoint", "check_fits", "describe_model"]

#: A zip archive's local file header: ``torch.save``'s format since PyTorch 1.6.
_ZIP_MAGIC = b"PK\x03\x04"
#: A pickle's first byte (protocol 2 and later): ``torch.save(_use_new_zipfile_serialization=False)``.
_PICKLE_MAGIC = 0x80


class CheckpointError(ValueError):
    """A file that cannot be used as the checkpoint it was given as; the message names it."""


def _what_it_is(head: bytes) -> str:
    """A short description of a non-checkpoint file from its first bytes."""
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff")):
        return "an image"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data starting with {head[:8]!r}"
    first = text.strip().splitlines()[0][:60] if text.strip() else ""
    return f"a text file (starts with {first!r})"


def read_checkpoint(path: str | Path, *, role: str = "ckpt") -> dict[str, Any]:
    """Loads a checkpoint file's dict with ``weights_only=True`` (zip files memory-mapped).

    Args:
        path: the file.
        role: how the user gave it (``ckpt``, ``ckpt_path``, ``load_from`` ...), repeated in messages.

    Raises:
        FileNotFoundError: no such file (a run directory is answered with its ``last.ckpt``).
        CheckpointError: an empty, truncated or foreign file, or one that holds Python objects.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        last = p / "checkpoints" / "last.ckpt"
        hint = f"; its latest checkpoint is {last}" if last.is_file() else ""
        raise CheckpointError(f"{role}={str(path)!r} is a directory, not a checkpoint file{hint}")
    if not p.is_file():
        raise FileNotFoundError(f"{role}={str(path)!r}: no such checkpoint file")
    size = p.stat().st_size
    with p.open("rb") as file:
        head = file.read(64)
    if size == 0:
        raise CheckpointError(f"{role}={str(path)!r}: the file is empty (0 bytes)")
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(p):
            raise CheckpointError(
                f"{role}={str(path)!r} is truncated: a zip archive of {size} bytes without its central "
                "directory (the write was interrupted?). Use another checkpoint of the run, e.g. last.ckpt."
            )
    elif head[0] != _PICKLE_MAGIC:
        raise CheckpointError(f"{role}={str(path)!r} is not a PyTorch checkpoint: it is {_what_it_is(head)}")
    payload = _load(p, role, mmap=head.startswith(_ZIP_MAGIC))
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{role}={str(path)!r} holds a {type(payload).__name__}, not a checkpoint dict")
    return dict(payload)


def _load(path: Path, role: str, *, mmap: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{role}={str(path)!r} holds Python objects besides tensors, which weights_only=True refuses to "
            f"unpickle ({str(err).splitlines()[0]}). If you trust the file, re-save its weights alone: "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pth')"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"{role}={str(path)!r} cannot be read as a checkpoint: {str(err).splitlines()[0]}"
        ) from None


def describe_model(node: Mapping[str, Any] | None) -> str:
    """``TwoStageDetector (backbone ResNet-50, neck FPN, rpn_head RPNHead, roi_head StandardRoIHead)``."""
    if not node:
        return "an unknown architecture (no config stored)"

    def name(part: Mapping[str, Any]) -> str:
        base = str(part.get("_target_", "?")).rsplit(".", 1)[-1]
        return f"{base}-{part['depth']}" if "depth" in part else base

    parts = [f"{k} {name(v)}" for k, v in node.items() if isinstance(v, Mapping) and "_target_" in v]
    return f"{name(node)} ({', '.join(parts)})" if parts else name(node)


def _group(keys: list[str], depth: int = 2) -> list[str]:
    """``roi_head.mask_head (12 tensors)``: keys counted by their first ``depth`` components."""
    counts = Counter(".".join(k.split(".")[:depth]) for k in keys)
    return [f"{prefix} ({n} tensor{'s' if n > 1 else ''})" for prefix, n in counts.most_common()]


def check_fits(
    state: Mapping[str, Tensor],
    model: nn.Module,
    *,
    path: str | Path,
    role: str = "ckpt",
    stored: Mapping[str, Any] | None = None,
    wanted: Mapping[str, Any] | None = None,
) -> None:
    """Raises unless ``state`` has exactly ``model``'s tensors with their shapes.

    Args:
        state: the checkpoint's detector tensors (without the ``detector.`` prefix).
        stored, wanted: the checkpoint's and this run's ``model`` config nodes, to name both architectures.

    Raises:
        CheckpointError: listing the differing parts (at most 8 lines of each kind).
    """
    target = model.state_dict()
    missing = sorted(k for k in target if k not in state)
    unexpected = sorted(k for k in state if k not in target)
    shapes = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if not (missing or unexpected or shapes):
        return
    lines = [
        f"{role}={str(path)!r} does not fit the model: it is a checkpoint of {describe_model(stored)}, "
        f"while {describe_model(wanted)} was asked for."
    ]
    lines += [f"  only in the model: {g}" for g in _group(missing)[:8]]
    lines += [f"  only in the checkpoint: {g}" for g in _group(unexpected)[:8]]
    lines += [
        f"  other shape: {k} checkpoint {tuple(state[k].shape)} vs model {tuple(target[k].shape)}" for k in shapes[:8]
    ]
    lines.append("Pick the matching model=... / model/backbone=..., or use load_from= to keep what fits.")
    raise CheckpointError("\n".join(lines))
