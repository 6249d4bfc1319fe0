"""The original repositories' key names (lyuwenyu/RT-DETR v1 and v2, Peterande/D-FINE; read from their
modules into tests/fixtures/detr_original_keys.json) convert into lightdet's models, EMA weights first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from lightdet.checkpoint.from_rtdetr_repo import convert_rtdetr_repo, select_weights
from lightdet.checkpoint.report import check_against_target
from lightdet.composition import compose_config

KEYS = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "detr_original_keys.json").read_text())
# the original checkpoints above and the lightdet model configs they correspond to
CASES = {
    "rtdetr_r18vd": ["+model=rtdetr_r18vd"],
    "rtdetrv2_r18vd": ["+model=rtdetrv2_r18vd"],
    "dfine_s": ["+model=dfine_s"],
    "rtdetr_r50vd_backbone": ["+model=rtdetr_r50vd"],
}


def zeros(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.zeros(shape) for k, shape in KEYS[name].items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_original_keys_fill_the_model(name: str) -> None:
    cfg = compose_config(None, [*CASES[name], "+dataset.num_classes=80"])
    with torch.device("meta"):
        target = instantiate(cfg.model).state_dict()
    state = zeros(name)
    out, report = convert_rtdetr_repo(state)
    assert not report.unexpected and set(report.converted) | set(report.dropped) == set(state)
    loadable = check_against_target(out, report, target)
    assert not report.shape_mismatch and not report.unexpected
    if name.endswith("_backbone"):  # only the backbone's keys were kept for the R50 case
        assert all(not k.startswith("backbone.") for k in report.missing)
    else:
        assert report.ok, report.summary()
        assert len(loadable) == len(target)


def test_ema_weights_are_preferred() -> None:
    model, ema = {"a": torch.zeros(1)}, {"a": torch.ones(1)}
    assert select_weights({"model": model, "ema": {"module": ema, "updates": 3}})["a"].item() == 1.0
    assert select_weights({"model": model, "ema": {"module": ema}}, ema=False)["a"].item() == 0.0
    assert select_weights({"module.a": torch.ones(1)}) == {"a": torch.ones(1)}
    with pytest.raises(ValueError, match="RT-DETR / D-FINE checkpoint"):
        select_weights({"model": {"a": 1}})
