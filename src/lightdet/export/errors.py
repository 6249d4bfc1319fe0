"""The errors of the export package: what cannot be exported (and why), and a failed parity check."""

from __future__ import annotations


class ExportError(ValueError):
    """A model, a part of it or an option that cannot be exported; the message names it and says why."""


class ParityError(AssertionError):
    """An exported model's detections differ from the eager model's beyond the tolerances.

    The message gives the matched fraction and the worst box and score differences (see
    :func:`lightdet.export.parity.compare_detections`).
    """
