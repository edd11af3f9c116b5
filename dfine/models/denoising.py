"""Contrastive denoising queries (training only).

Ground-truth boxes and labels are copied into ``num_group`` groups; each group holds a positive
copy (small box noise) and a negative copy (large box noise) of every target. Labels are flipped
at random with probability ``label_noise_ratio / 2``. Groups cannot attend to each other and the
matching queries cannot attend to any denoising query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .fdr import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from .layers import inverse_sigmoid


@dataclass
class DenoisingGroup:
    """What the decoder prepends to its queries, and what the criterion needs to score them.

    content: ``[B, num_dn, hidden]`` query contents; ref_unact: ``[B, num_dn, 4]`` inverse-sigmoid
    reference boxes; attn_mask: ``[num_dn + Q, num_dn + Q]`` bool, True = may not attend;
    meta: ``dn_positive_idx`` (per image, indices of positive queries), ``dn_num_group``,
    ``dn_num_split`` = ``[num_dn, Q]``.
    """

    content: Optional[Tensor]
    ref_unact: Optional[Tensor]
    attn_mask: Optional[Tensor]
    meta: Dict


def denoising_attn_mask(num_gt: int, num_group: int, num_queries: int, device: torch.device) -> Tensor:
    """``[T, T]`` bool mask (``T = 2 * num_gt * num_group + num_queries``), True = blocked.

    Denoising query ``i`` sees only its own group and the matching queries; matching queries
    see no denoising query.
    """
    num_dn = 2 * num_gt * num_group
    size = num_dn + num_queries
    group = torch.arange(num_dn, device=device) // (2 * num_gt)
    mask = torch.zeros(size, size, dtype=torch.bool, device=device)
    mask[:num_dn, :num_dn] = group[:, None] != group[None, :]
    mask[num_dn:, :num_dn] = True
    return mask


def contrastive_denoising_group(targets: List[Dict[str, Tensor]], num_classes: int, num_queries: int,
                                class_embed: nn.Embedding, num_denoising: int = 100,
                                label_noise_ratio: float = 0.5, box_noise_scale: float = 1.0) -> DenoisingGroup:
    """Build the denoising queries for a batch of targets (``labels [K]``, ``boxes [K, 4]`` cxcywh)."""
    num_gts = [len(t["labels"]) for t in targets]
    device = targets[0]["labels"].device
    max_gt = max(num_gts)
    if max_gt == 0:
        return DenoisingGroup(None, None, None, {"dn_positive_idx": None, "dn_num_group": 0,
                                                 "dn_num_split": [0, num_queries]})
    num_group = max(num_denoising // max_gt, 1)
    bs = len(targets)

    labels = torch.full([bs, max_gt], num_classes, dtype=torch.int32, device=device)
    boxes = torch.zeros([bs, max_gt, 4], device=device)
    valid = torch.zeros([bs, max_gt], dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        k = num_gts[i]
        if k:
            labels[i, :k] = t["labels"]
            boxes[i, :k] = t["boxes"]
            valid[i, :k] = True
    labels = labels.tile([1, 2 * num_group])
    boxes = boxes.tile([1, 2 * num_group, 1])
    valid = valid.tile([1, 2 * num_group])

    negative = torch.zeros([bs, max_gt * 2, 1], device=device)
    negative[:, max_gt:] = 1
    negative = negative.tile([1, num_group, 1])
    positive = (1 - negative).squeeze(-1) * valid
    pos_idx = torch.nonzero(positive)[:, 1]
    pos_idx = torch.split(pos_idx, [n * num_group for n in num_gts])
    num_dn = int(max_gt * 2 * num_group)

    if label_noise_ratio > 0:
        flip = torch.rand_like(labels, dtype=torch.float) < (label_noise_ratio * 0.5)
        new_labels = torch.randint_like(flip, 0, num_classes, dtype=labels.dtype)
        labels = torch.where(flip & valid, new_labels, labels)

    if box_noise_scale > 0:
        xyxy = box_cxcywh_to_xyxy(boxes)
        half_wh = torch.tile(boxes[..., 2:] * 0.5, [1, 1, 2]) * box_noise_scale
        sign = torch.randint_like(boxes, 0, 2) * 2.0 - 1.0
        part = torch.rand_like(boxes)
        part = (part + 1.0) * negative + part * (1 - negative)
        xyxy = (xyxy + sign * part * half_wh).clip(min=0.0, max=1.0)
        boxes = box_xyxy_to_cxcywh(xyxy)
        boxes[boxes < 0] *= -1
    ref_unact = inverse_sigmoid(boxes)

    content = class_embed(labels)
    mask = denoising_attn_mask(max_gt, num_group, num_queries, device)
    meta = {"dn_positive_idx": pos_idx, "dn_num_group": num_group, "dn_num_split": [num_dn, num_queries]}
    return DenoisingGroup(content, ref_unact, mask, meta)
