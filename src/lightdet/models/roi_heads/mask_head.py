"""Mask R-CNN's mask branch (MMDetection's ``FCNMaskHead`` with its RoI extractor): an :class:`RoIBranch`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.layers import ConvModule
from lightdet.models.ops.masks import PASTE_MODES, mask_targets, paste_in_original
from lightdet.models.ops.roi_extractor import MultiLevelRoIAlign
from lightdet.models.roi_heads.sampling import SampledRoIs, rois_from_boxes
from lightdet.structures import DetBatch, Detections


class FCNMaskHead(nn.Module):
    """RoIAlign ``S x S`` -> ``num_convs`` x (3x3 conv + ReLU) -> 2x deconv + ReLU -> 1x1 per-class logits.

    Parameter names are MMDetection's (``convs.{i}.conv``, ``upsample``, ``conv_logits``), so its checkpoints
    load unchanged under ``roi_head.mask_head``.

    Args:
        mask_roi_extractor: pools ``[R, C, S, S]`` (``S = 14``); masks are predicted at ``M = 2S``.
        num_classes: foreground classes K (``conv_logits`` has K outputs, or 1 when ``class_agnostic``).
        in_channels, conv_out_channels, num_convs: the FCN.
        class_agnostic: one mask per RoI instead of one per class.
        loss_weight: weight of the per-pixel binary cross-entropy (``loss_mask``, mean over pixels).
        target_aligned, target_sampling_ratio, binarize_targets: how ground-truth masks become ``M x M``
            targets (:func:`~lightdet.models.ops.masks.mask_targets`; MMDetection: True, 0, True; torchvision:
            False, 0, False).
        mask_thr: test-time probability threshold of a mask pixel.
        paste_mode: ``"mmdet"`` or ``"torchvision"`` geometry of pasting (see
            :func:`~lightdet.models.ops.masks.paste_regions`).

    ``forward``: ``[R, C, S, S]`` -> logits ``[R, K or 1, M, M]``.
    """

    def __init__(
        self,
        mask_roi_extractor: MultiLevelRoIAlign,
        num_classes: int,
        in_channels: int = 256,
        *,
        num_convs: int = 4,
        conv_out_channels: int = 256,
        class_agnostic: bool = False,
        loss_weight: float = 1.0,
        target_aligned: bool = True,
        target_sampling_ratio: int = 0,
        binarize_targets: bool = True,
        mask_thr: float = 0.5,
        paste_mode: str = "mmdet",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"FCNMaskHead: num_classes must be >= 1, got {num_classes}")
        if paste_mode not in PASTE_MODES:
            raise ValueError(f"FCNMaskHead: paste_mode must be one of {PASTE_MODES}, got {paste_mode!r}")
        self.mask_roi_extractor = mask_roi_extractor
        self.num_classes, self.class_agnostic = num_classes, class_agnostic
        self.mask_size = 2 * mask_roi_extractor.output_size
        widths = [in_channels] + [conv_out_channels] * num_convs
        self.convs = nn.ModuleList(
            ConvModule(widths[i], widths[i + 1], 3, padding=1, relu=True) for i in range(num_convs)
        )
        self.upsample = nn.ConvTranspose2d(widths[-1], conv_out_channels, 2, stride=2)
        self.conv_logits = nn.Conv2d(conv_out_channels, 1 if class_agnostic else num_classes, 1)
        self.loss_weight = loss_weight
        self.target_aligned, self.target_sampling_ratio = target_aligned, target_sampling_ratio
        self.binarize_targets = binarize_targets
        self.mask_thr, self.paste_mode = mask_thr, paste_mode
        self._init_weights()

    def _init_weights(self) -> None:
        for m in [*(c.conv for c in self.convs), self.upsample]:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        # Small logits at the start (detectron2's choice): MMDetection's Kaiming init here starts the BCE
        # around 3-20, which diverged the from-scratch shapes model at lr 0.02.
        nn.init.normal_(self.conv_logits.weight, std=0.001)
        nn.init.zeros_(self.conv_logits.bias)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = conv(x)
        return self.conv_logits(F.relu(self.upsample(x), inplace=True))

    def _select(self, logits: Tensor, labels: Tensor) -> Tensor:
        """``[R, K or 1, M, M]`` -> ``[R, M, M]``, the channel of each RoI's label."""
        channel = torch.zeros_like(labels) if self.class_agnostic else labels
        return logits[torch.arange(logits.shape[0], device=logits.device), channel]

    def loss(self, feats: Sequence[Tensor], samples: list[SampledRoIs], batch: DetBatch) -> dict[str, Tensor]:
        """``loss_mask``: binary cross-entropy of each positive RoI's label channel against its target."""
        positives = [s.boxes[: s.num_pos] for s in samples]
        logits = self(self.mask_roi_extractor(feats, rois_from_boxes(positives)))
        if logits.shape[0] == 0:  # keeps every parameter in the graph (DDP) with a zero loss
            return {"loss_mask": logits.sum() * 0}
        targets = torch.cat([self.targets(s, batch, i) for i, s in enumerate(samples)])
        labels = torch.cat([s.labels[: s.num_pos] for s in samples])
        pred = self._select(logits, labels).float()
        return {"loss_mask": self.loss_weight * F.binary_cross_entropy_with_logits(pred, targets)}

    def targets(self, sample: SampledRoIs, batch: DetBatch, image: int) -> Tensor:
        """``float [P, M, M]`` targets of one image's positive RoIs from ``batch.masks[image]``."""
        if sample.num_pos == 0:
            return sample.boxes.new_zeros((0, self.mask_size, self.mask_size))
        masks = batch.masks[image]
        if masks is None:
            raise ValueError(
                f"FCNMaskHead: image {batch.metas[image].image_id} ({batch.metas[image].file_name}) has no "
                "masks; a mask head trains on DetBatch.masks (set dataset.with_mask=true)"
            )
        return mask_targets(
            masks, sample.gt_index[: sample.num_pos], sample.boxes[: sample.num_pos], self.mask_size,
            aligned=self.target_aligned, sampling_ratio=self.target_sampling_ratio,
            binarize=self.binarize_targets,
        )

    def predict_probs(self, feats: Sequence[Tensor], detections: list[Detections]) -> list[Tensor]:
        """Per image ``[N_i, M, M]`` sigmoid probabilities of each detection's label (input pixels)."""
        rois = rois_from_boxes([d.boxes for d in detections])
        labels = torch.cat([d.labels for d in detections])
        probs = self.label_probs(self.mask_roi_extractor(feats, rois), labels)
        return list(probs.split([len(d) for d in detections]))

    def label_probs(self, pooled: Tensor, labels: Tensor) -> Tensor:
        """``[R, C, S, S]`` pooled features -> ``[R, M, M]`` sigmoid probabilities of each RoI's label."""
        return self._select(self(pooled), labels).float().sigmoid()

    def predict(
        self, feats: Sequence[Tensor], detections: list[Detections], batch: DetBatch
    ) -> list[Detections]:
        """Attaches ``bool [N, *meta.ori_size]`` masks to each image's detections (boxes in input pixels)."""
        probs = self.predict_probs(feats, detections)
        return attach_masks(detections, probs, batch, self.mask_thr, self.paste_mode)


def mean_label_probs(
    heads: Sequence[FCNMaskHead], labels: Tensor, pool: Callable[[MultiLevelRoIAlign], Tensor]
) -> Tensor:
    """``[R, M, M]`` sigmoid probabilities of each RoI's label, averaged over ``heads`` (a cascade's stages).

    ``pool(extractor)`` gives the ``[R, C, S, S]`` features of the RoIs; heads whose extractors pool alike
    (:meth:`MultiLevelRoIAlign.pools_like`) share one call of it.
    """
    pooled: list[tuple[MultiLevelRoIAlign, Tensor]] = []
    probs = []
    for head in heads:
        extractor = head.mask_roi_extractor
        shared = next((p for e, p in pooled if extractor.pools_like(e)), None)
        if shared is None:
            shared = pool(extractor)
            pooled.append((extractor, shared))
        probs.append(head.label_probs(shared, labels))
    return probs[0] if len(probs) == 1 else torch.stack(probs).mean(0)


def attach_masks(
    detections: list[Detections], probs: list[Tensor], batch: DetBatch, threshold: float, mode: str
) -> list[Detections]:
    """Pastes each image's ``[N_i, M, M]`` probabilities at its original size and attaches them as masks."""
    return [
        Detections(
            boxes=d.boxes, scores=d.scores, labels=d.labels,
            masks=paste_in_original(p, d.boxes, meta, threshold=threshold, mode=mode),
        )
        for d, p, meta in zip(detections, probs, batch.metas)
    ]
