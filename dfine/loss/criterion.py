"""The D-FINE training losses: VFL, L1 + GIoU, FGL and DDF (GO-LSD), and their weighted sum.

:class:`DFINECriterion` is a pure function of ``(outputs, targets)``: every intermediate (matches,
FGL targets, teacher distributions, DDF normalisers) is computed inside one call and nothing is
kept on the object between calls.

Which matches each term uses (as published):

* ``loss_vfl`` (and ``loss_focal``): every layer with its own Hungarian match, normalised by the
  number of target boxes ``num_boxes``.
* ``loss_bbox``, ``loss_giou``, ``loss_fgl``, ``loss_ddf``: the union of the matches of all
  layers (decoder layers, the pre-decoder head and the encoder head), normalised by the size of
  that union.
* denoising layers: the known query <-> target pairs from ``dn_meta``, normalised by
  ``num_boxes * dn_num_group``.

Counts are averaged over DDP ranks when ``torch.distributed`` is initialised and clamped to >= 1.
All losses are computed in float32 with autocast disabled.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from ..models.fdr import bbox2distance, box_cxcywh_to_xyxy
from .config import CriterionConfig, apply_overrides, validate
from .matcher import HungarianMatcher, Indices, union_of_matches

Targets = Sequence[Mapping[str, Tensor]]


# --------------------------------------------------------------------------------------------
# matched pairs


class Matched(NamedTuple):
    """Matched (query, target) pairs of a batch, flattened over images (``N`` pairs)."""

    batch: Tensor  # [N] int64 image index
    query: Tensor  # [N] int64 query index
    labels: Tensor  # [N] int64 target class
    boxes: Tensor  # [N, 4] target boxes, normalised cx, cy, w, h
    num_boxes: float  # normaliser of the losses using these pairs

    @property
    def count(self) -> int:
        return int(self.batch.shape[0])


def gather_matches(indices: Indices, targets: Targets, num_boxes: float, device: torch.device) -> Matched:
    """Flatten per-image ``(query_idx, target_idx)`` pairs into a :class:`Matched` on ``device``.

    The indices may sit on different devices (on a GPU: the denoising queries of an image with
    targets on the GPU, the empty pairs of one without on the CPU)."""
    batch = torch.cat([torch.full((q.shape[0],), i, dtype=torch.int64, device=device) for i, (q, _) in enumerate(indices)])
    query = torch.cat([q.to(device) for q, _ in indices])
    labels = torch.cat([t["labels"][k.to(t["labels"].device)] for t, (_, k) in zip(targets, indices)])
    boxes = torch.cat([t["boxes"][k.to(t["boxes"].device)] for t, (_, k) in zip(targets, indices)])
    return Matched(batch, query, labels.to(device), boxes.to(device).float(), num_boxes)


def paired_iou(boxes1: Tensor, boxes2: Tensor) -> Tuple[Tensor, Tensor]:
    """IoU and GIoU of ``boxes1[i]`` with ``boxes2[i]``.

    boxes1, boxes2: ``[N, 4]`` x1, y1, x2, y2. Returns ``(iou [N], giou [N])``: the diagonals of
    ``torchvision.ops.box_iou`` and ``generalized_box_iou``, same formula, without the ``N x N``.
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    inter_wh = (torch.min(boxes1[:, 2:], boxes2[:, 2:]) - torch.max(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    inter = inter_wh[:, 0] * inter_wh[:, 1]
    union = area1 + area2 - inter
    iou = inter / union
    hull_wh = (torch.max(boxes1[:, 2:], boxes2[:, 2:]) - torch.min(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    hull = hull_wh[:, 0] * hull_wh[:, 1]
    return iou, iou - (hull - union) / hull


# --------------------------------------------------------------------------------------------
# the loss terms, each a function of tensors


def vfl_loss(logits: Tensor, matched: Matched, scores: Tensor, alpha: float, gamma: float) -> Tensor:
    """Varifocal loss.

    logits: ``[B, Q, C]``; scores: ``[N]`` target score of each matched pair (its IoU, detached).
    The target of a matched query is ``score`` at its class and 0 elsewhere; the BCE of each logit
    is weighted by that score for positives and by ``alpha * sigmoid(logit)**gamma`` for the rest.
    Returns ``sum over images and classes of the mean over queries * Q / num_boxes``.
    """
    b, q, c = logits.shape
    if q == 0:
        return logits.sum() * 0.0
    target = torch.zeros_like(logits)
    target[matched.batch, matched.query, matched.labels] = 1.0
    score = torch.zeros((b, q), dtype=logits.dtype, device=logits.device)
    score[matched.batch, matched.query] = scores.to(logits.dtype)
    target_score = score.unsqueeze(-1) * target
    weight = alpha * logits.detach().sigmoid().pow(gamma) * (1 - target) + target_score
    loss = F.binary_cross_entropy_with_logits(logits, target_score, weight=weight, reduction="none")
    return loss.mean(1).sum() * q / matched.num_boxes


def focal_loss(logits: Tensor, matched: Matched, alpha: float, gamma: float) -> Tensor:
    """Sigmoid focal loss on one-hot targets; logits ``[B, Q, C]``, normalised like :func:`vfl_loss`."""
    q = logits.shape[1]
    if q == 0:
        return logits.sum() * 0.0
    target = torch.zeros_like(logits)
    target[matched.batch, matched.query, matched.labels] = 1.0
    loss = sigmoid_focal_loss(logits, target, alpha, gamma, reduction="none")
    return loss.mean(1).sum() * q / matched.num_boxes


def box_losses(src: Tensor, matched: Matched, giou: Tensor, weight: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """L1 and GIoU losses of matched boxes.

    src: ``[N, 4]`` predicted boxes (normalised cx, cy, w, h) of the matched queries; giou: ``[N]``
    their GIoU with the targets; weight: optional ``[N]`` per-box weight of the GIoU term.
    Returns ``(sum |src - target| / num_boxes, sum (1 - giou) * weight / num_boxes)``.
    """
    l1 = F.l1_loss(src, matched.boxes, reduction="none").sum() / matched.num_boxes
    giou_loss = 1 - giou
    if weight is not None:
        giou_loss = giou_loss * weight
    return l1, giou_loss.sum() / matched.num_boxes


def fgl_loss(corners: Tensor, matched: Matched, target: Tuple[Tensor, Tensor, Tensor], iou: Tensor) -> Tensor:
    """Fine-grained localisation loss.

    corners: ``[B, Q, 4 * (reg_max + 1)]`` edge-distribution logits; target: ``(index, weight_right,
    weight_left)``, each ``[4N]``, from :func:`dfine.models.fdr.bbox2distance`; iou: ``[N]``
    detached IoU of each matched box. Per edge, the cross-entropy at the two bins around the target
    offset, mixed by the interpolation weights, weighted by the box IoU; summed, / num_boxes.
    """
    index, weight_right, weight_left = target
    bins = corners.shape[-1] // 4
    logp = F.log_softmax(corners[matched.batch, matched.query].reshape(-1, bins), dim=1)
    left = index.long().unsqueeze(1)
    ce_left = -logp.gather(1, left).squeeze(1)
    ce_right = -logp.gather(1, left + 1).squeeze(1)
    loss = ce_left * weight_left + ce_right * weight_right
    loss = loss * iou.repeat_interleave(4)
    return loss.sum() / matched.num_boxes


def ddf_loss(corners: Tensor, teacher_prob: Tensor, weight: Tensor, positive: Tensor,
             edges: Tuple[float, float], num_pos: float, num_neg: float, temperature: float) -> Tensor:
    """Decoupled distillation focal loss (GO-LSD): a layer's edge distributions towards the last layer's.

    corners: ``[B, Q, 4 * (reg_max + 1)]`` student logits; teacher_prob: ``[B*Q*4, reg_max + 1]``
    ``softmax(teacher / T)``; weight: ``[B*Q*4]`` per-edge weight (teacher confidence, or IoU for
    matched queries); positive: ``[B*Q*4]`` bool, edges of matched queries; edges: the numbers of
    positive and negative edges the sums are divided by (this batch's, or their mean over DDP ranks).
    Per edge ``weight * T^2 * KL(teacher || student)``; the means over positive and over negative
    edges are mixed as ``(mean_pos * num_pos + mean_neg * num_neg) / (num_pos + num_neg)``.
    """
    bins = teacher_prob.shape[-1]
    log_student = F.log_softmax(corners.reshape(-1, bins) / temperature, dim=1)
    kl = F.kl_div(log_student, teacher_prob, reduction="none").sum(-1)
    per_edge = weight * temperature ** 2 * kl
    zero = per_edge.new_zeros(())
    num_positive, num_negative = edges
    mean_pos = torch.where(positive, per_edge, zero).sum() / num_positive if num_positive > 0 else zero
    mean_neg = torch.where(positive, zero, per_edge).sum() / num_negative if num_negative > 0 else zero
    return (mean_pos * num_pos + mean_neg * num_neg) / (num_pos + num_neg)


# --------------------------------------------------------------------------------------------
# bookkeeping of one call


def rank_means(*counts: float, device: torch.device) -> Tuple[float, ...]:
    """``counts`` averaged over DDP ranks (one all-reduce) when ``torch.distributed`` is
    initialised, else unchanged."""
    if dist.is_available() and dist.is_initialized():
        total = torch.tensor([float(c) for c in counts], dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return tuple((total / dist.get_world_size()).tolist())
    return tuple(float(c) for c in counts)


def mean_count(count: int, device: torch.device) -> float:
    """``count`` averaged over DDP ranks (when ``torch.distributed`` is initialised), clamped to >= 1."""
    return max(rank_means(count, device=device)[0], 1.0)


def denoising_indices(dn_meta: Mapping[str, Any], sizes: Sequence[int]) -> Indices:
    """The known (query, target) pairs of the denoising queries.

    ``dn_meta["dn_positive_idx"][i]`` lists the positive denoising queries of image ``i``: group
    by group, one per target, so target ``k`` of group ``g`` is query ``dn_positive_idx[i][g*K_i + k]``.
    """
    positive = dn_meta.get("dn_positive_idx")
    groups = int(dn_meta.get("dn_num_group", 0))
    result = []
    for i, n in enumerate(sizes):
        if n == 0 or positive is None or groups == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            result.append((empty, empty.clone()))
            continue
        queries = positive[i].long()
        if queries.shape[0] != n * groups:
            raise ValueError(f"dn_meta['dn_positive_idx'][{i}] has {queries.shape[0]} queries, expected "
                             f"{n} targets x {groups} groups = {n * groups}")
        result.append((queries, torch.arange(n, dtype=torch.int64).repeat(groups)))
    return result


class _LocalContext:
    """What the FGL and DDF terms of one group of layers share within a call.

    A group is the matched layers (decoder, pre-decoder head) or the denoising layers. Its layers
    share the reference points (so the FGL targets) and the teacher (the group's last layer).
    """

    def __init__(self, matched: Matched, up: Tensor, reg_scale: Tensor, num_pos: float, num_neg: float,
                 edges: Optional[Tuple[float, float]] = None):
        self.matched = matched
        self.up = up
        self.reg_scale = reg_scale
        self.num_pos = num_pos  # DDF weight of the mean over positive edges
        self.num_neg = num_neg  # DDF weight of the mean over negative edges
        self.edges = edges  # DDF divisors (positive, negative edges); None: this batch's counts
        self.fgl_target: Optional[Tuple[Tensor, Tensor, Tensor]] = None
        self.teacher: Optional[Tuple[Tensor, Tensor, Tensor]] = None  # prob, confidence [B, Q], positive


# --------------------------------------------------------------------------------------------
# the criterion


class DFINECriterion(nn.Module):
    """The D-FINE losses of one batch, weighted, by their published names.

    Args:
        matcher: the Hungarian matcher.
        weight_dict: weight of each term (``loss_vfl``, ``loss_bbox``, ``loss_giou``, ``loss_fgl``,
            ``loss_ddf``, ``loss_focal``); a term without a weight is not computed.
        losses: groups of terms to compute, among ``vfl``, ``focal``, ``boxes``, ``local``.
        alpha, gamma: VFL / focal parameters (published 0.75, 2).
        num_classes: classes of ``pred_logits``.
        reg_max: the decoder's ``reg_max`` (edge distributions have ``reg_max + 1`` bins).
        boxes_weight_format: ``None``, ``"iou"`` or ``"giou"``: weight the GIoU loss by the matched
            boxes' (G)IoU and use it as the VFL target score.
        share_matched_indices: match only the last decoder layer and reuse its match for the other
            decoder layers and the pre-decoder head (the published D-FINE criterion accepts this
            flag and ignores it; ``False`` is the published behaviour).
        distill_temperature: DDF softmax temperature ``T`` (published 5).

    ``criterion(outputs, targets)``: ``outputs`` is the model's train-mode dict, ``targets`` a list
    (one per image) of dicts with ``labels [K] int64`` and ``boxes [K, 4]`` normalised cx, cy, w, h.
    Returns ``{name: weighted scalar}`` with suffixes ``_aux_i``, ``_pre``, ``_enc_i``, ``_dn_i``,
    ``_dn_pre``; the training loss is their sum.
    """

    def __init__(self, *, matcher: HungarianMatcher, weight_dict: Mapping[str, float],
                 losses: Sequence[str] = ("vfl", "boxes", "local"), alpha: float = 0.75, gamma: float = 2.0,
                 num_classes: int = 80, reg_max: int = 32, boxes_weight_format: Optional[str] = None,
                 share_matched_indices: bool = False, distill_temperature: float = 5.0):
        super().__init__()
        validate(CriterionConfig(weight_dict=dict(weight_dict), losses=tuple(losses),
                                 boxes_weight_format=boxes_weight_format))
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.losses = tuple(losses)
        self.alpha = alpha
        self.gamma = gamma
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.boxes_weight_format = boxes_weight_format
        self.share_matched_indices = share_matched_indices
        self.distill_temperature = distill_temperature

    @classmethod
    def from_config(cls, cfg: CriterionConfig, *, num_classes: int, reg_max: int) -> "DFINECriterion":
        return cls(matcher=HungarianMatcher.from_config(cfg.matcher), weight_dict=cfg.weight_dict,
                   losses=cfg.losses, alpha=cfg.alpha, gamma=cfg.gamma, num_classes=num_classes,
                   reg_max=reg_max, boxes_weight_format=cfg.boxes_weight_format,
                   share_matched_indices=cfg.share_matched_indices)

    def extra_repr(self) -> str:
        return (f"losses={self.losses}, weight_dict={self.weight_dict}, alpha={self.alpha}, gamma={self.gamma}, "
                f"num_classes={self.num_classes}, reg_max={self.reg_max}, matcher={self.matcher}")

    def forward(self, outputs: Mapping[str, Any], targets: Targets) -> Dict[str, Tensor]:
        self._check_outputs(outputs)
        self._check_targets(targets, outputs["pred_logits"])
        with torch.autocast(outputs["pred_logits"].device.type, enabled=False):
            losses = self._compute(outputs, targets)
        return {k: torch.nan_to_num(v, nan=0.0) for k, v in losses.items()}

    # ---- one call

    def _compute(self, outputs: Mapping[str, Any], targets: Targets) -> Dict[str, Tensor]:
        device = outputs["pred_logits"].device
        b, q = outputs["pred_logits"].shape[:2]
        sizes = [int(t["labels"].shape[0]) for t in targets]
        decoder = [("", outputs)] + [(f"_aux_{i}", a) for i, a in enumerate(outputs.get("aux_outputs") or ())]
        if outputs.get("pre_outputs") is not None:
            decoder.append(("_pre", outputs["pre_outputs"]))
        encoder = [(f"_enc_{i}", e) for i, e in enumerate(outputs.get("enc_aux_outputs") or ())]
        if (outputs.get("enc_meta") or {}).get("class_agnostic", False):
            enc_targets = [{"labels": torch.zeros_like(t["labels"]), "boxes": t["boxes"]} for t in targets]
        else:
            enc_targets = targets

        dec_indices, enc_indices = self._match([l for _, l in decoder], [l for _, l in encoder], targets, enc_targets)
        union = union_of_matches(dec_indices + enc_indices)
        num_boxes = mean_count(sum(sizes), device)
        go = gather_matches(union, targets, mean_count(sum(len(u) for u, _ in union), device), device)
        # DDF mixes its positive / negative means by sqrt of the edge counts of the union, scaled
        # to a batch of 8 images; the denoising layers reuse these weights. Under DDP the counts
        # are means over ranks, so the ranks' mean loss is the loss of the whole batch.
        union_count, images = rank_means(go.count, b, device=device)
        scale = 8 / images
        num_pos = math.sqrt(4 * union_count * scale)
        num_neg = math.sqrt(4 * (images * q - union_count) * scale)
        edges = (4 * union_count, 4 * (images * q - union_count))

        losses: Dict[str, Tensor] = {}
        ctx = _LocalContext(go, outputs.get("up"), outputs.get("reg_scale"), num_pos, num_neg, edges)
        matched_by_id: Dict[int, Matched] = {}
        for (suffix, layer), idx in zip(decoder, dec_indices):
            if id(idx) not in matched_by_id:
                matched_by_id[id(idx)] = gather_matches(idx, targets, num_boxes, device)
            losses.update(self._layer_losses(layer, matched_by_id[id(idx)], go, ctx, suffix))
        for (suffix, layer), idx in zip(encoder, enc_indices):
            cls = gather_matches(idx, enc_targets, num_boxes, device)
            losses.update(self._layer_losses(layer, cls, go, None, suffix))

        if outputs.get("dn_outputs") is not None:
            dn_meta = outputs["dn_meta"]
            dn_num_boxes = num_boxes * int(dn_meta.get("dn_num_group", 0))
            dn = gather_matches(denoising_indices(dn_meta, sizes), targets,
                                dn_num_boxes if dn_num_boxes > 0 else 1.0, device)
            dn_ctx = _LocalContext(dn, outputs.get("up"), outputs.get("reg_scale"), num_pos, num_neg)
            for i, layer in enumerate(outputs["dn_outputs"]):
                losses.update(self._layer_losses(layer, dn, dn, dn_ctx, f"_dn_{i}"))
            if outputs.get("dn_pre_outputs") is not None:
                losses.update(self._layer_losses(outputs["dn_pre_outputs"], dn, dn, dn_ctx, "_dn_pre"))
        return losses

    def _match(self, decoder: List[Mapping[str, Tensor]], encoder: List[Mapping[str, Tensor]],
               targets: Targets, enc_targets: Targets) -> Tuple[List[Indices], List[Indices]]:
        """Hungarian matches of the decoder layers and of the encoder layers, one batched pass."""
        to_match = decoder[:1] if self.share_matched_indices else list(decoder)
        same_targets = enc_targets is targets
        if same_targets:
            to_match += encoder
        found = self.matcher.match_many(to_match, targets)
        if self.share_matched_indices:
            dec, enc = [found[0]] * len(decoder), found[1:]
        else:
            dec, enc = found[:len(decoder)], found[len(decoder):]
        if not same_targets:
            enc = self.matcher.match_many(encoder, enc_targets) if encoder else []
        return dec, enc

    def _layer_losses(self, layer: Mapping[str, Tensor], cls: Matched, box: Matched,
                      ctx: Optional[_LocalContext], suffix: str) -> Dict[str, Tensor]:
        """The weighted terms of one layer.

        cls: the layer's own matches (classification terms); box: the matches of the box terms
        (the union for matched layers); ctx: the group's shared FGL / DDF state, ``None`` for
        layers without those terms (encoder heads).
        """
        w = self.weight_dict
        logits = layer["pred_logits"].float()
        boxes = layer["pred_boxes"].float()
        out: Dict[str, Tensor] = {}
        if "vfl" in self.losses and "loss_vfl" in w:
            src = boxes.detach()[cls.batch, cls.query]
            iou, giou = paired_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(cls.boxes))
            scores = giou if self.boxes_weight_format == "giou" else iou
            out["loss_vfl"] = vfl_loss(logits, cls, scores, self.alpha, self.gamma)
        if "focal" in self.losses and "loss_focal" in w:
            out["loss_focal"] = focal_loss(logits, cls, self.alpha, self.gamma)
        src = boxes[box.batch, box.query]
        iou, giou = paired_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(box.boxes))
        if "boxes" in self.losses:
            weight = {None: None, "iou": iou, "giou": giou}[self.boxes_weight_format]
            l1, giou_loss = box_losses(src, box, giou, None if weight is None else weight.detach())
            out["loss_bbox"], out["loss_giou"] = l1, giou_loss
        if "local" in self.losses and ctx is not None and layer.get("pred_corners") is not None:
            out.update(self._local_losses(layer, ctx, iou.detach()))
        return {f"{k}{suffix}": v * w[k] for k, v in out.items() if k in w}

    def _local_losses(self, layer: Mapping[str, Tensor], ctx: _LocalContext, iou: Tensor) -> Dict[str, Tensor]:
        """FGL and DDF of one layer with edge distributions; iou: ``[N]`` detached IoU of its matches."""
        w = self.weight_dict
        m = ctx.matched
        corners = layer["pred_corners"].float()
        out: Dict[str, Tensor] = {}
        if "loss_fgl" in w:
            if m.count == 0:
                out["loss_fgl"] = corners.sum() * 0.0
            else:
                if ctx.fgl_target is None:  # the first layer of the group sets them, as published
                    with torch.no_grad():
                        ref = layer["ref_points"].detach().float()[m.batch, m.query]
                        ctx.fgl_target = bbox2distance(ref, box_cxcywh_to_xyxy(m.boxes), self.reg_max,
                                                       ctx.reg_scale, ctx.up)
                out["loss_fgl"] = fgl_loss(corners, m, ctx.fgl_target, iou)
        teacher = layer.get("teacher_corners")
        if "loss_ddf" in w and teacher is not None:
            student = layer["pred_corners"]
            if teacher is student or torch.equal(student, teacher):
                out["loss_ddf"] = corners.sum() * 0.0
            else:
                prob, confidence, positive = self._teacher(layer, ctx)
                weight = confidence.clone()
                weight[m.batch, m.query] = iou
                weight = weight.unsqueeze(-1).expand(*weight.shape, 4).reshape(-1)
                edges = ctx.edges or (4 * m.count, positive.shape[0] - 4 * m.count)
                out["loss_ddf"] = ddf_loss(corners, prob, weight, positive, edges,
                                           ctx.num_pos, ctx.num_neg, self.distill_temperature)
        return out

    def _teacher(self, layer: Mapping[str, Tensor], ctx: _LocalContext) -> Tuple[Tensor, Tensor, Tensor]:
        """The group's teacher: ``softmax(teacher_corners / T)`` ``[B*Q*4, reg_max + 1]``, its
        confidence ``max_c sigmoid(teacher_logits)`` ``[B, Q]`` and the positive-edge mask ``[B*Q*4]``."""
        if ctx.teacher is None:
            with torch.no_grad():
                bins = self.reg_max + 1
                teacher = layer["teacher_corners"].detach().float().reshape(-1, bins)
                prob = F.softmax(teacher / self.distill_temperature, dim=1)
                confidence = layer["teacher_logits"].detach().float().sigmoid().max(dim=-1).values
                positive = torch.zeros_like(confidence, dtype=torch.bool)
                positive[ctx.matched.batch, ctx.matched.query] = True
                positive = positive.unsqueeze(-1).expand(*positive.shape, 4).reshape(-1)
            ctx.teacher = (prob, confidence, positive)
        return ctx.teacher

    # ---- input checks

    def _check_outputs(self, outputs: Mapping[str, Any]) -> None:
        for key in ("pred_logits", "pred_boxes"):
            if key not in outputs:
                raise ValueError(f"criterion outputs lack {key!r}; pass the model's train-mode output dict")
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        if logits.dim() != 3 or logits.shape[-1] != self.num_classes:
            raise ValueError(f"pred_logits must be [B, Q, {self.num_classes}] (num_classes={self.num_classes}), "
                             f"got {list(logits.shape)}")
        if boxes.shape != logits.shape[:2] + (4,):
            raise ValueError(f"pred_boxes must be [B, Q, 4] like pred_logits, got {list(boxes.shape)}")
        corners = outputs.get("pred_corners")
        if "local" in self.losses and corners is not None:
            if corners.shape[-1] != 4 * (self.reg_max + 1):
                raise ValueError(f"pred_corners has {corners.shape[-1]} values per query, expected "
                                 f"4 * (reg_max + 1) = {4 * (self.reg_max + 1)}; build the criterion with the model's reg_max")
            for key in ("ref_points", "up", "reg_scale"):
                if outputs.get(key) is None:
                    raise ValueError(f"criterion outputs have pred_corners but lack {key!r}")
        if outputs.get("dn_outputs") is not None and outputs.get("dn_meta") is None:
            raise ValueError("criterion outputs have dn_outputs but lack 'dn_meta'")

    def _check_targets(self, targets: Targets, logits: Tensor) -> None:
        if not isinstance(targets, (list, tuple)):
            raise TypeError(f"targets must be a list of dicts (one per image), got {type(targets).__name__}")
        if len(targets) != logits.shape[0]:
            raise ValueError(f"got {len(targets)} targets for a batch of {logits.shape[0]} images")
        for i, t in enumerate(targets):
            if not isinstance(t, Mapping) or "labels" not in t or "boxes" not in t:
                raise ValueError(f"targets[{i}] must be a dict with 'labels' [K] int64 and 'boxes' [K, 4]")
            labels, boxes = t["labels"], t["boxes"]
            if labels.dim() != 1 or labels.dtype != torch.int64:
                raise ValueError(f"targets[{i}]['labels'] must be a 1-D int64 tensor, got {labels.dtype} "
                                 f"{list(labels.shape)}")
            if boxes.shape != (labels.shape[0], 4) or not boxes.is_floating_point():
                raise ValueError(f"targets[{i}]['boxes'] must be a float [{labels.shape[0]}, 4] tensor "
                                 f"(normalised cx, cy, w, h), got {boxes.dtype} {list(boxes.shape)}")
        labels = torch.cat([t["labels"] for t in targets])
        if labels.numel() and bool(((labels < 0) | (labels >= self.num_classes)).any()):
            raise ValueError(f"target labels must lie in 0..{self.num_classes - 1}, "
                             f"got {labels.min().item()}..{labels.max().item()}")


def build_criterion(name: str, num_classes: int = 80, **overrides: Any) -> DFINECriterion:
    """The published criterion of model ``name`` (``dfine_n`` .. ``dfine_x``).

    ``num_classes`` must match the model's. ``overrides`` are :class:`CriterionConfig` fields
    (``weight_dict`` and ``matcher`` entries are merged, see :func:`dfine.loss.config.apply_overrides`),
    plus ``reg_max`` when the model was built with a non-default one. Unknown keys raise ``TypeError``.
    """
    from ..models.config import preset  # the decoder config holds reg_max

    reg_max = overrides.pop("reg_max", None)
    model_reg_max = preset(name).decoder.reg_max  # also checks the name
    reg_max = model_reg_max if reg_max is None else reg_max
    cfg = apply_overrides(CriterionConfig(), **overrides)
    return DFINECriterion.from_config(cfg, num_classes=num_classes, reg_max=reg_max)
