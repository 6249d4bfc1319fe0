"""Key renaming by ordered regular-expression rules."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from torch import Tensor

from lightdet.checkpoint.report import ConversionReport

Rule = tuple[str, str]  # (pattern matched against the whole source key, replacement)


def rename_keys(
    state: Mapping[str, Tensor], rules: Sequence[Rule]
) -> tuple[dict[str, Tensor], ConversionReport]:
    """Renames every key by the first rule whose pattern matches it in full.

    Returns the renamed tensors and a report whose ``converted`` maps source to new keys and whose
    ``unexpected`` lists source keys no rule matched (those are left out).
    """
    compiled = [(re.compile(p), r) for p, r in rules]
    out: dict[str, Tensor] = {}
    report = ConversionReport()
    for key, value in state.items():
        for pattern, replacement in compiled:
            if pattern.fullmatch(key):
                new = pattern.sub(replacement, key)
                if new in out:
                    first = report_source(report, new)
                    raise ValueError(f"checkpoint keys {first!r} and {key!r} both map to {new!r}")
                out[new] = value
                report.converted[key] = new
                break
        else:
            report.unexpected.append(key)
    return out, report


def report_source(report: ConversionReport, new_key: str) -> str:
    """The source key that was converted to ``new_key``."""
    return next(k for k, v in report.converted.items() if v == new_key)


def unwrap_state_dict(checkpoint: Mapping[str, object], source: str) -> dict[str, Tensor]:
    """The tensors of a checkpoint: a state dict, or ``{"state_dict": ...}`` / ``{"model": ...}`` holding one.

    Raises:
        ValueError: naming ``source`` when the object holds no state dict of tensors.
    """
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if isinstance(checkpoint, Mapping) and "model" in checkpoint and "state_dict" not in checkpoint:
        state = checkpoint["model"]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(
            f"{source}: expected a state dict of tensors, or a dict with one under 'state_dict' or 'model'"
        )
    return dict(state)  # type: ignore[arg-type]
