"""Hungarian matching of predicted queries to ground-truth boxes.

The cost of pairing query ``q`` with target ``k`` is

    cost_class * focal(p_qk) + cost_bbox * L1(box_q, box_k) + cost_giou * (-GIoU(box_q, box_k))

where ``p_qk`` is the sigmoid score of the target's class and ``focal(p)`` is
``alpha (1 - p)^gamma (-log(p + 1e-8)) - (1 - alpha) p^gamma (-log(1 - p + 1e-8))``.
NaN costs count as 1. The assignment minimising the total cost is found per image with
``scipy.optimize.linear_sum_assignment``.

Several decoder layers can be matched at once (:meth:`HungarianMatcher.match_many`): their cost
matrices are computed in one batched pass and copied to the host once.
"""

from __future__ import annotations

from typing import List, Mapping, Sequence, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..models.fdr import box_cxcywh_to_xyxy
from .config import MatcherConfig

Indices = List[Tuple[Tensor, Tensor]]
"""One ``(query_idx [N_i], target_idx [N_i])`` pair of int64 CPU tensors per image."""

# A padding target: a valid box, so padded columns of the cost matrix stay finite.
_PAD_BOX = (0.5, 0.5, 1.0, 1.0)


def pairwise_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU of every box of ``boxes1`` with every box of ``boxes2``, batched.

    boxes1: ``[..., N, 4]``, boxes2: ``[..., M, 4]`` x1, y1, x2, y2 (batch dims broadcast).
    Returns ``[..., N, M]``. Same formula and order of operations as
    ``torchvision.ops.generalized_box_iou``, which only takes 2-D inputs.
    """
    a = boxes1.unsqueeze(-2)  # [..., N, 1, 4]
    b = boxes2.unsqueeze(-3)  # [..., 1, M, 4]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    inter_wh = (torch.min(a[..., 2:], b[..., 2:]) - torch.max(a[..., :2], b[..., :2])).clamp(min=0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = area_a + area_b - inter
    iou = inter / union
    hull_wh = (torch.max(a[..., 2:], b[..., 2:]) - torch.min(a[..., :2], b[..., :2])).clamp(min=0)
    hull = hull_wh[..., 0] * hull_wh[..., 1]
    return iou - (hull - union) / hull


def pad_targets(targets: Sequence[Mapping[str, Tensor]]) -> Tuple[Tensor, Tensor, List[int]]:
    """Stack per-image targets into padded tensors.

    Returns ``labels [B, K]`` int64 (padding 0), ``boxes [B, K, 4]`` normalised cx, cy, w, h
    (padding a whole-image box) and the true counts ``[K_0, ..., K_{B-1}]``, with
    ``K = max(K_i)``.
    """
    sizes = [int(t["labels"].shape[0]) for t in targets]
    k = max(sizes, default=0)
    device = targets[0]["boxes"].device if targets else torch.device("cpu")
    labels = torch.zeros(len(targets), k, dtype=torch.int64, device=device)
    boxes = torch.tensor(_PAD_BOX, device=device).repeat(len(targets), k, 1)
    for i, (t, n) in enumerate(zip(targets, sizes)):
        labels[i, :n] = t["labels"]
        boxes[i, :n] = t["boxes"].float()
    return labels, boxes, sizes


class HungarianMatcher:
    """One-to-one assignment of queries to targets by minimum total cost.

    Args:
        cost_class: weight of the classification cost (published ``cost_class``, 2).
        cost_bbox: weight of the L1 box distance (published ``cost_bbox``, 5).
        cost_giou: weight of the negative GIoU (published ``cost_giou``, 2).
        alpha, gamma: focal-cost parameters (published 0.25, 2).
        use_focal_loss: focal cost on sigmoid scores (published ``True``); ``False`` uses
            ``-softmax(logits)[class]``.
    """

    def __init__(self, *, cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 alpha: float = 0.25, gamma: float = 2.0, use_focal_loss: bool = True):
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher: cost_class, cost_bbox and cost_giou cannot all be 0")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.alpha = alpha
        self.gamma = gamma
        self.use_focal_loss = use_focal_loss

    @classmethod
    def from_config(cls, cfg: MatcherConfig) -> "HungarianMatcher":
        w = cfg.weight_dict
        return cls(cost_class=w["cost_class"], cost_bbox=w["cost_bbox"], cost_giou=w["cost_giou"],
                   alpha=cfg.alpha, gamma=cfg.gamma, use_focal_loss=cfg.use_focal_loss)

    def __repr__(self) -> str:
        return (f"HungarianMatcher(cost_class={self.cost_class}, cost_bbox={self.cost_bbox}, "
                f"cost_giou={self.cost_giou}, alpha={self.alpha}, gamma={self.gamma}, "
                f"use_focal_loss={self.use_focal_loss})")

    @torch.no_grad()
    def cost(self, logits: Tensor, boxes: Tensor, tgt_labels: Tensor, tgt_boxes: Tensor) -> Tensor:
        """Matching cost of every query with every target of its own image.

        logits: ``[..., B, Q, C]``; boxes: ``[..., B, Q, 4]`` normalised cx, cy, w, h;
        tgt_labels: ``[B, K]`` int64; tgt_boxes: ``[B, K, 4]`` normalised cx, cy, w, h.
        Returns ``[..., B, Q, K]`` float32, NaN replaced by 1.
        """
        logits, boxes = logits.float(), boxes.float()
        shape = logits.shape[:-1] + tgt_labels.shape[-1:]  # [..., B, Q, K]
        index = tgt_labels.unsqueeze(-2).expand(shape)
        if self.use_focal_loss:
            prob = logits.gather(-1, index).sigmoid()
            neg = (1 - self.alpha) * (prob ** self.gamma) * (-(1 - prob + 1e-8).log())
            pos = self.alpha * ((1 - prob) ** self.gamma) * (-(prob + 1e-8).log())
            cost_class = pos - neg
        else:
            cost_class = -logits.softmax(-1).gather(-1, index)
        tgt = tgt_boxes.float().expand(boxes.shape[:-2] + tgt_boxes.shape[-2:])
        cost_bbox = torch.cdist(boxes, tgt, p=1)
        cost_giou = -pairwise_generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt))
        total = self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou
        return torch.nan_to_num(total, nan=1.0)

    def __call__(self, outputs: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]]) -> Indices:
        """Match one layer: ``outputs`` has ``pred_logits [B, Q, C]`` and ``pred_boxes [B, Q, 4]``."""
        return self.match_many([outputs], targets)[0]

    def match_many(self, layers: Sequence[Mapping[str, Tensor]],
                   targets: Sequence[Mapping[str, Tensor]]) -> List[Indices]:
        """Match several layers against the same targets; one :data:`Indices` per layer.

        Layers whose ``pred_logits`` have the same shape are costed together in one batch.
        ``targets``: per image ``labels [K_i]`` int64 and ``boxes [K_i, 4]`` normalised cx, cy, w, h.
        """
        labels, tgt_boxes, sizes = pad_targets(targets)
        result: List[Indices] = [[] for _ in layers]
        groups: dict = {}
        for i, layer in enumerate(layers):
            groups.setdefault(tuple(layer["pred_logits"].shape), []).append(i)
        for members in groups.values():
            logits = torch.stack([layers[i]["pred_logits"].detach() for i in members])
            boxes = torch.stack([layers[i]["pred_boxes"].detach() for i in members])
            # one host copy for all layers and images; padded target columns are cut off below
            cost = self.cost(logits, boxes, labels, tgt_boxes).cpu().numpy() if any(sizes) else None
            for j, i in enumerate(members):
                result[i] = [_assign(cost, j, b, n) for b, n in enumerate(sizes)]
        return result


def _assign(cost, layer: int, image: int, num_targets: int) -> Tuple[Tensor, Tensor]:
    """Optimal assignment of one image from the ``[L, B, Q, K]`` cost array (unused when no targets)."""
    if num_targets == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty.clone()
    rows, cols = linear_sum_assignment(cost[layer, image, :, :num_targets])
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)


def union_of_matches(per_layer: Sequence[Indices]) -> Indices:
    """The GO-LSD union of several layers' matches, one ``(query, target)`` pair per query.

    Every ``(query, target)`` pair seen in any layer is counted; a query keeps the target it was
    paired with most often. Pairs are ranked by count, descending, with ties in the order
    ``torch.argsort(descending=True)`` leaves them (the published ranking), starting from pairs
    sorted by (query, target); the result lists queries in that rank order.
    """
    result = []
    for image in zip(*per_layer):
        queries = torch.cat([q for q, _ in image])
        tgts = torch.cat([t for _, t in image])
        if queries.numel() == 0:
            result.append((queries, tgts))
            continue
        span = int(tgts.max()) + 1
        pairs, counts = torch.unique(queries * span + tgts, return_counts=True)
        ranked = pairs[torch.argsort(counts, descending=True)]
        q_ranked = ranked // span
        # first occurrence of each query in rank order
        by_query = torch.argsort(q_ranked, stable=True)
        q_sorted = q_ranked[by_query]
        first = torch.ones_like(q_sorted, dtype=torch.bool)
        first[1:] = q_sorted[1:] != q_sorted[:-1]
        keep = torch.zeros_like(first)
        keep[by_query[first]] = True
        kept = ranked[keep]
        result.append((kept // span, kept % span))
    return result
