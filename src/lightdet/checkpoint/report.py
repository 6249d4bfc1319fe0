"""What a checkpoint conversion did with every key, so nothing is dropped silently."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ConversionReport:
    """The fate of every source and target key.

    Attributes:
        converted: source key -> lightdet key, for every tensor in the converted state dict.
        dropped: source key -> reason, for tensors deliberately left out (e.g. BatchNorm step counters that
            the target's frozen norm layers do not have).
        unexpected: source keys that no rule maps, or whose converted key the target model lacks.
        missing: target keys that no source tensor fills (empty when no target was given).
        shape_mismatch: lightdet key -> (converted shape, target shape); such tensors are left out.
    """

    converted: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    shape_mismatch: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every target key is filled with a right-shaped tensor and no source key is unknown."""
        return not (self.unexpected or self.missing or self.shape_mismatch)

    def summary(self) -> str:
        """A few human-readable lines (counts, then the problem keys)."""
        lines = [
            f"converted {len(self.converted)}, dropped {len(self.dropped)}, "
            f"unexpected {len(self.unexpected)}, missing {len(self.missing)}, "
            f"shape mismatches {len(self.shape_mismatch)}"
        ]
        reasons = sorted(set(self.dropped.values()))
        lines += [f"  dropped ({sum(r == x for x in self.dropped.values())}): {r}" for r in reasons]
        lines += [f"  unexpected: {k}" for k in self.unexpected]
        lines += [f"  missing: {k}" for k in self.missing]
        lines += [f"  shape mismatch: {k} {a} vs model {b}" for k, (a, b) in self.shape_mismatch.items()]
        return "\n".join(lines)


def check_against_target(
    state: dict[str, Tensor], report: ConversionReport, target: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Compares a converted state dict with the target model's, filling ``report``; returns the loadable part.

    Keys the target lacks are reported as unexpected (BatchNorm ``num_batches_tracked`` counters as dropped,
    since frozen norm layers have none); keys the source lacks as missing; differing shapes as mismatches.
    """
    source_of = {v: k for k, v in report.converted.items()}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key not in target:
            if key.endswith("num_batches_tracked"):
                report.dropped[source_of[key]] = "BatchNorm step counter; the target norm layer has none"
            else:
                report.unexpected.append(source_of[key])
            del report.converted[source_of[key]]
        elif tuple(value.shape) != tuple(target[key].shape):
            report.shape_mismatch[key] = (tuple(value.shape), tuple(target[key].shape))
            del report.converted[source_of[key]]
        else:
            out[key] = value
    report.missing.extend(sorted(k for k in target if k not in state))
    return out
