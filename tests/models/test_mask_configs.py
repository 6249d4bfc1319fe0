"""The mask and cascade configs: the class count reaches every stage, the experiments evaluate segm."""

import pytest
import torch
from hydra.utils import instantiate
from mask_model_builders import make_mask_batch
from omegaconf import OmegaConf

from config_helpers import num_classes_nodes
from lightdet.models import CascadeRoIHead, FCNMaskHead, TwoStageDetector


def test_custom_cascade_experiment_changes_only_the_dataset(compose_cfg):
    def resolved(experiment: str) -> dict:
        return OmegaConf.to_container(compose_cfg([f"experiment={experiment}"]), resolve=True)

    custom = resolved("cascade_mask_rcnn_r50_fpn_1x_custom")
    coco = resolved("cascade_mask_rcnn_r50_fpn_1x_coco")
    found = num_classes_nodes(custom["model"])
    assert len(found) == 6 and set(found.values()) == {5}  # three box heads, three mask heads
    assert set(num_classes_nodes(coco["model"]).values()) == {80}
    assert custom["dataset"]["classes"] == ["a", "b", "c", "d", "e"] and custom["dataset"]["with_mask"]
    coco_model = {k: v for k, v in num_classes_nodes(coco["model"]).items()}
    assert coco_model.keys() == found.keys()


@pytest.mark.parametrize(
    "experiment", ["mask_rcnn_r50_fpn_1x_coco", "cascade_mask_rcnn_r50_fpn_1x_coco", "shapes_mask_rcnn"]
)
def test_mask_experiments_load_masks_and_evaluate_segm(compose_cfg, experiment):
    cfg = compose_cfg([f"experiment={experiment}"])
    assert cfg.dataset.with_mask and list(cfg.dataset.evaluator.iou_types) == ["bbox", "segm"]


def count(compose_cfg, model: str) -> tuple[int, torch.nn.Module]:
    with torch.device("meta"):
        detector = instantiate(compose_cfg([f"model={model}", "dataset=coco"]).model)
    return sum(p.numel() for p in detector.parameters()), detector


MASK_HEAD = 4 * (256 * 256 * 9 + 256) + (256 * 256 * 4 + 256) + (256 * 80 + 80)  # convs, upsample, logits
SHARED_FCS = (256 * 49 * 1024 + 1024) + (1024 * 1024 + 1024)
FASTER_HEAD = SHARED_FCS + (1024 * 81 + 81) + (1024 * 320 + 320)
AGNOSTIC_HEAD = SHARED_FCS + (1024 * 81 + 81) + (1024 * 4 + 4)


@pytest.mark.parametrize(
    ("model", "extra"),
    [("mask_rcnn", MASK_HEAD), ("cascade_rcnn", 3 * AGNOSTIC_HEAD - FASTER_HEAD),
     ("cascade_mask_rcnn", 3 * (AGNOSTIC_HEAD + MASK_HEAD) - FASTER_HEAD)],
)
def test_models_have_the_mmdetection_heads(compose_cfg, model, extra):
    faster, _ = count(compose_cfg, "faster_rcnn")
    params, detector = count(compose_cfg, model)
    assert params - faster == extra  # the same backbone, neck and RPN; MMDetection's head shapes
    if model.startswith("cascade"):
        assert isinstance(detector.roi_head, CascadeRoIHead) and len(detector.roi_head.stages) == 3
        assert [s.loss_weight for s in detector.roi_head.stages] == [1.0, 0.5, 0.25]
    else:
        assert isinstance(detector.roi_head.mask_head, FCNMaskHead)


def test_small_shapes_model_trains_and_predicts_masks(compose_cfg):
    cfg = compose_cfg(["experiment=shapes_mask_rcnn", "dataset.classes=[a,b,c]"])
    torch.manual_seed(0)
    model: TwoStageDetector = instantiate(cfg.model)
    batch = make_mask_batch()
    losses = model.train().loss(batch)
    assert losses["loss_mask"] > 0
    dets = model.eval().predict(batch)
    assert [tuple(d.masks.shape[1:]) for d in dets] == [(64, 80), (72, 64), (48, 64)]
