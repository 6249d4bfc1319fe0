"""Box classification and regression head on pooled RoI features (MMDetection's ``Shared2FCBBoxHead``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightdet.models.losses.regression import box_regression_loss
from lightdet.models.ops.box_coder import DeltaXYWHCoder


class BBoxHead(nn.Module):
    """Flatten -> ``num_shared_fcs`` x (Linear + ReLU) -> class logits and box deltas.

    Args:
        num_classes: foreground classes K; ``fc_cls`` has K + 1 outputs with **background last** (index K).
        in_channels, roi_feat_size: shape of the pooled features ``[R, in_channels, size, size]``.
        num_shared_fcs, fc_out_channels: the shared MLP (``shared_fcs.{i}``); with 0 FCs the classifiers
            see the flattened features.
        reg_class_agnostic: one box per RoI (``fc_reg`` 4 outputs) instead of one per class (4K).
        box_coder: deltas <-> boxes (R-CNN: stds 0.1, 0.1, 0.2, 0.2).
        loss_cls: softmax classification loss (logits ``[R, K+1]``, int64 targets ``[R]``).
        loss_bbox: box loss; ``target_space`` decides between encoded targets and decoded predictions.

    ``forward``: ``[R, C, S, S]`` -> ``(cls_logits [R, K+1], deltas [R, 4K] or [R, 4])``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        roi_feat_size: int = 7,
        *,
        num_shared_fcs: int = 2,
        fc_out_channels: int = 1024,
        reg_class_agnostic: bool = False,
        box_coder: DeltaXYWHCoder,
        loss_cls: nn.Module,
        loss_bbox: nn.Module,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"BBoxHead: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.reg_class_agnostic = reg_class_agnostic
        width = in_channels * roi_feat_size * roi_feat_size
        self.shared_fcs = nn.ModuleList()
        for _ in range(num_shared_fcs):
            self.shared_fcs.append(nn.Linear(width, fc_out_channels))
            width = fc_out_channels
        self.fc_cls = nn.Linear(width, num_classes + 1)
        self.fc_reg = nn.Linear(width, 4 if reg_class_agnostic else 4 * num_classes)
        self.box_coder, self.loss_cls, self.loss_bbox = box_coder, loss_cls, loss_bbox
        self._init_weights()

    def _init_weights(self) -> None:
        for fc in self.shared_fcs:
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.fc_cls.weight, std=0.01)
        nn.init.normal_(self.fc_reg.weight, std=0.001)
        nn.init.zeros_(self.fc_cls.bias)
        nn.init.zeros_(self.fc_reg.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = torch.relu_(fc(x))
        return self.fc_cls(x), self.fc_reg(x)

    def _per_class(self, deltas: Tensor) -> Tensor:
        """``[R, 4K]`` or ``[R, 4]`` -> ``[R, K or 1, 4]``."""
        return deltas.view(deltas.shape[0], deltas.shape[1] // 4, 4)

    def loss(
        self, cls_logits: Tensor, deltas: Tensor, rois: Tensor, labels: Tensor, gt_boxes: Tensor
    ) -> dict[str, Tensor]:
        """Losses over ``R`` sampled RoIs, both normalised by ``R``.

        Args:
            cls_logits: ``[R, K+1]``; deltas: ``[R, 4K]`` or ``[R, 4]``; rois: ``[R, 4]`` boxes.
            labels: ``int64 [R]``, K for background; gt_boxes: ``[R, 4]`` matched boxes (used for positives).

        Returns:
            ``loss_cls``, ``loss_bbox`` and ``acc`` (classification accuracy in percent, not a loss).
        """
        cls_logits, deltas = cls_logits.float(), deltas.float()  # float32 under autocast too
        num = max(labels.numel(), 1)
        pos = torch.nonzero(labels < self.num_classes).squeeze(1)
        per_class = self._per_class(deltas)
        pos_deltas = per_class[pos, 0 if self.reg_class_agnostic else labels[pos]]
        loss_bbox = box_regression_loss(
            self.loss_bbox, self.box_coder, pos_deltas, rois[pos], gt_boxes[pos], num
        )
        loss_cls = self.loss_cls(cls_logits, labels, avg_factor=num)
        with torch.no_grad():
            correct = (cls_logits.argmax(1) == labels).float()
            acc = correct.mean() * 100 if labels.numel() else cls_logits.new_zeros(())
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox, "acc": acc}

    def predict_boxes(
        self, cls_logits: Tensor, deltas: Tensor, rois: Tensor, image_size: tuple[int, int]
    ) -> tuple[Tensor, Tensor]:
        """One image's ``[R, ...]`` outputs -> boxes ``[R, K, 4]`` clipped to ``image_size`` and class scores
        ``[R, K]`` (softmax, background column removed)."""
        scores = cls_logits.float().softmax(-1)[:, : self.num_classes]
        boxes = self.box_coder.decode(rois.float(), self._per_class(deltas.float()), image_size)
        return boxes.expand(-1, self.num_classes, 4), scores
