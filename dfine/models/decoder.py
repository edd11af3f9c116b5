"""D-FINE decoder: query selection from encoder tokens, deformable cross-attention, and
Fine-grained Distribution Refinement (FDR) heads with the LQE score correction.

Inputs: the encoder maps ``[B, C, H_l, W_l]``. Outputs (eval): ``pred_logits [B, Q, num_classes]``
and ``pred_boxes [B, Q, 4]`` normalised cx, cy, w, h; in training also everything the losses need.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .denoising import DenoisingGroup, contrastive_denoising_group
from .fdr import distance2bbox, integral, weighting_function
from .layers import (MLP, ConvNormPlain, Linear, activation, inverse_sigmoid, linear_act, map_tokens, prior_logit,
                     self_attention)


class MSDeformableAttention(nn.Module):
    """Multi-scale deformable attention with per-level point counts.

    Each head samples ``num_points[l]`` points on level ``l`` around the reference box; offsets are
    scaled by the box size, ``1 / num_points[l]`` and ``offset_scale``. Attention weights are
    normalised jointly over all points of all levels.
    """

    def __init__(self, embed_dim: int = 256, num_heads: int = 8, num_points: Sequence[int] = (4, 4, 4),
                 method: str = "default", offset_scale: float = 0.5):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"hidden_dim {embed_dim} must be divisible by nhead {num_heads}")
        self.num_heads = num_heads
        self.num_points = list(num_points)
        self.method = method
        self.offset_scale = offset_scale
        total = sum(self.num_points)
        self.register_buffer("num_points_scale",
                             torch.tensor([1 / n for n in self.num_points for _ in range(n)], dtype=torch.float32))
        self.sampling_offsets = Linear(embed_dim, num_heads * total * 2)
        self.attention_weights = Linear(embed_dim, num_heads * total)
        self._reset_parameters()
        if method == "discrete":
            self.sampling_offsets.requires_grad_(False)

    def _reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([theta.cos(), theta.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid.reshape(self.num_heads, 1, 2).tile([1, sum(self.num_points), 1])
        scale = torch.cat([torch.arange(1, n + 1) for n in self.num_points]).reshape(1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_((grid * scale).flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)

    def forward(self, query: Tensor, reference: Tensor, values: List[Tensor], shapes: List[List[int]]) -> Tensor:
        """query ``[B, Q, C]``; reference ``[B, Q, 1, 4]`` cxcywh; values per level
        ``[B * heads, C / heads, H_l, W_l]`` (exporting: one :func:`sampling_canvas` of them, see
        :func:`canvas_export`); shapes ``[[H_l, W_l], ...]`` -> ``[B, Q, C]``."""
        if canvas_export(self.method):
            return self._forward_on_canvas(query, reference, values[0], shapes)
        b, q = query.shape[:2]
        total = sum(self.num_points)
        offsets, weights = self._project(query, self.sampling_offsets.weight, self.sampling_offsets.bias)
        offsets = offsets.reshape(b, q, self.num_heads, total, 2)
        scale = self.num_points_scale.to(query.dtype).unsqueeze(-1)
        offsets = offsets * scale * reference[:, :, None, :, 2:] * self.offset_scale
        locations = reference[:, :, None, :, :2] + offsets  # [B, Q, heads, total, 2] in 0..1
        return deformable_sample(values, shapes, locations, weights, self.num_points, self.method)

    def _project(self, query: Tensor, offset_weight: Tensor, offset_bias: Tensor) -> Tuple[Tensor, Tensor]:
        """Sampling offsets ``[B, Q, heads * P * 2]`` (in the order of ``offset_weight``'s rows) and
        attention weights ``[B, heads, P, Q]`` of ``query`` ``[B, Q, C]``.

        Both projections of the query run as one product (their weights side by side): one call,
        and one matrix product in an export, instead of two. The softmax over each query's points is
        taken points-major (``[B, heads, P, Q]``), where it runs along the long query axis: in
        OpenVINO 4 instead of 16 us per layer (N, 2 threads); the same in PyTorch."""
        b, q = query.shape[:2]
        total = sum(self.num_points)
        n = total * self.num_heads
        weight = torch.cat([offset_weight, self.attention_weights.weight])
        bias = torch.cat([offset_bias, self.attention_weights.bias])
        offsets, logits = linear_act(query, weight, bias).split([2 * n, n], dim=-1)
        logits = logits.reshape(b, q, self.num_heads, total).permute(0, 2, 3, 1)
        return offsets, F.softmax(logits, dim=2)

    def _forward_on_canvas(self, query: Tensor, reference: Tensor, canvas: Tensor, shapes: List[List[int]]) -> Tensor:
        """:meth:`forward` as exported: the offsets projected coordinate-major (``[B, Q, 2, heads * P]``:
        the offset rows reordered, x of every head's points, then y), so that every per-query and
        per-point factor broadcasts along the last axis, or is a constant of the same trailing shape
        (ONNX Runtime ran the middle-axis broadcasts of :meth:`forward` at ~80 us each per layer, N at
        192 px); then one sampling call on the canvas of all levels."""
        b, q = query.shape[:2]
        heads, total = self.num_heads, sum(self.num_points)
        rows = self.sampling_offsets.weight.shape[1]
        weight = self.sampling_offsets.weight.reshape(heads, total, 2, rows).permute(2, 0, 1, 3).reshape(-1, rows)
        bias = self.sampling_offsets.bias.reshape(heads, total, 2).permute(2, 0, 1).reshape(-1)
        offsets, weights = self._project(query, weight, bias)
        offsets = offsets.reshape(b, q, 2, heads * total)
        scale = self.num_points_scale.to(query.dtype).repeat(heads)  # [heads * P]
        box = reference.reshape(b, q, 4, 1)
        locations = box[:, :, :2] + offsets * scale * box[:, :, 2:] * self.offset_scale  # [B, Q, 2, heads * P]
        levels = [level for level, n in enumerate(self.num_points) for _ in range(n)] * heads
        grid = canvas_grid(locations, shapes, levels, canvas.shape[-2:])
        grid = grid.reshape(b, q, 2, heads, total).permute(0, 3, 4, 1, 2).flatten(0, 1)  # [B * heads, P, Q, 2]
        samples = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return _weighted_sum(samples, weights)


def canvas_export(method: str) -> bool:
    """Whether the deformable attention samples one canvas of all levels (:func:`sampling_canvas`):
    while exporting to ONNX, for bilinear sampling. Per decoder layer that is one sampling call
    instead of one per level, and no concatenation or split (OpenVINO, N at 192 px: ~20 us)."""
    return method == "default" and torch.onnx.is_in_onnx_export()


def deformable_sample(values: List[Tensor], shapes: List[List[int]], locations: Tensor, weights: Tensor,
                      num_points: List[int], method: str = "default") -> Tensor:
    """Bilinear sampling of ``values`` (per level ``[B * heads, head_dim, H_l, W_l]``, any strides) at
    ``locations`` ``[B, Q, heads, P, 2]`` (x, y in 0..1) weighted by ``weights`` ``[B, heads, P, Q]``
    (points-major); returns ``[B, Q, heads * head_dim]``.

    The points are laid out points-major (sampling grids ``[B * heads, P_l, Q, 2]``, samples
    ``[B * heads, head_dim, P, Q]``): the weighting then runs along the long query axis, several
    times faster on CPU than along the few points of each query.
    """
    grids = locations if method == "discrete" else 2 * locations - 1
    grids = grids.permute(0, 2, 3, 1, 4).flatten(0, 1).split(num_points, dim=1)
    sampled = []
    for level, (h, w) in enumerate(shapes):
        value = values[level]
        if method == "discrete":
            sampled.append(_sample_nearest(value, grids[level], h, w))
        else:
            sampled.append(F.grid_sample(value, grids[level], mode="bilinear", padding_mode="zeros",
                                         align_corners=False))
    return _weighted_sum(torch.cat(sampled, dim=2), weights)


def _weighted_sum(samples: Tensor, weights: Tensor) -> Tensor:
    """samples ``[B * heads, head_dim, P, Q]`` weighted by ``weights`` ``[B, heads, P, Q]`` and summed
    over the points -> ``[B, Q, heads * head_dim]``."""
    b, heads, points, q = weights.shape
    out = (samples * weights.reshape(b * heads, 1, points, q)).sum(2)
    return out.reshape(b, heads * samples.shape[1], q).permute(0, 2, 1)


def canvas_layout(shapes: List[List[int]]) -> Tuple[int, int, List[int]]:
    """Where :func:`sampling_canvas` puts the levels ``shapes`` (``[[H_l, W_l], ...]``): returns
    the canvas height and width and the first column of each level. Levels sit side by side from
    row 1, each with a column of zeros on either side, a row of zeros above and at least one below."""
    lefts, width = [], 1
    for _, w in shapes:
        lefts.append(width)
        width = width + int(w) + 1
    return max(int(h) for h, _ in shapes) + 2, width, lefts


def sampling_canvas(values: List[Tensor], shapes: List[List[int]]) -> Tensor:
    """The per-level maps ``[N, C, H_l, W_l]`` on one zero canvas ``[N, C, H, W]`` (:func:`canvas_layout`).

    Bilinear sampling of the canvas at a point clamped to at most half a pixel beyond its level's
    edge reads only that level and its zero border, so it equals sampling the level itself with
    zero padding (:func:`canvas_grid`): one sampling call then serves all levels."""
    height, _, _ = canvas_layout(shapes)
    padded = [F.pad(v, (1 if i == 0 else 0, 1, 1, height - 1 - h)) for i, (v, (h, _)) in enumerate(zip(values, shapes))]
    return torch.cat(padded, dim=-1)


def canvas_grid(locations: Tensor, shapes: List[List[int]], levels: List[int], canvas_hw: Sequence[int]) -> Tensor:
    """Sampling grid on the canvas (``grid_sample``'s -1..1, ``align_corners=False``) for
    ``locations`` ``[..., 2, P]`` (x, y in 0..1 of each point's level; ``levels[p]`` is point p's).
    Each point is clamped to half a pixel beyond its level's edge (pixel centre -1 or W_l), where
    bilinear sampling reads only the level and its zero border: a point further out samples zero,
    as with the level's own zero padding."""
    height, width, lefts = canvas_layout(shapes)
    assert (height, width) == tuple(canvas_hw), (height, width, canvas_hw)
    size = locations.new_tensor([[shapes[lv][1] for lv in levels], [shapes[lv][0] for lv in levels]])  # [2, P]
    origin = locations.new_tensor([[lefts[lv] for lv in levels], [1] * len(levels)])
    canvas = locations.new_tensor([[width], [height]])
    # canvas pixel = origin + location * size - 0.5; grid = (pixel + 0.5) * 2 / canvas - 1
    inside = torch.maximum(torch.minimum(locations, 1 + 0.5 / size), -0.5 / size)
    return inside * (2 * size / canvas) + (2 * origin / canvas - 1)


def _sample_nearest(value: Tensor, grid: Tensor, h: int, w: int) -> Tensor:
    """The published "discrete" sampling: nearest cell, indices clamped to ``[0, h - 1]``.

    value ``[N, C, h, w]``, grid ``[N, A, B, 2]`` in 0..1 -> ``[N, C, A, B]``."""
    n, c = value.shape[:2]
    q, p = grid.shape[1:3]
    coord = (grid * torch.tensor([[w, h]], device=value.device) + 0.5).to(torch.int64).clamp(0, h - 1)
    coord = coord.reshape(n, q * p, 2)
    batch = torch.arange(n, device=value.device).unsqueeze(-1).expand(n, q * p)
    picked = value[batch, :, coord[..., 1], coord[..., 0]]  # [N, Q*P, C]
    return picked.permute(0, 2, 1).reshape(n, c, q, p)


class Gate(nn.Module):
    """Gated fusion ``norm(g1 * x1 + g2 * x2)`` with ``g = sigmoid(linear([x1, x2]))``."""

    def __init__(self, d_model: int):
        super().__init__()
        self.gate = Linear(2 * d_model, 2 * d_model)
        nn.init.constant_(self.gate.bias, prior_logit(0.5))
        nn.init.zeros_(self.gate.weight)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        g1, g2 = torch.sigmoid(self.gate(torch.cat([x1, x2], dim=-1))).chunk(2, dim=-1)
        return self.norm(g1 * x1 + g2 * x2)


class DecoderLayer(nn.Module):
    """Self-attention, deformable cross-attention merged through a gate, FFN."""

    def __init__(self, d_model: int, n_head: int, dim_feedforward: int, dropout: float, act: str,
                 num_points: Sequence[int], cross_attn_method: str = "default"):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_head, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformableAttention(d_model, n_head, num_points, method=cross_attn_method)
        self.dropout2 = nn.Dropout(dropout)
        self.gateway = Gate(d_model)
        self.linear1 = Linear(d_model, dim_feedforward)
        self.activation = activation(act)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        nn.init.xavier_uniform_(self.linear1.weight)
        nn.init.xavier_uniform_(self.linear2.weight)

    def forward(self, target: Tensor, reference: Tensor, values: List[Tensor], shapes: List[List[int]],
                attn_mask: Optional[Tensor], pos: Tensor) -> Tensor:
        """target ``[B, Q, C]``, reference ``[B, Q, 1, 4]``, pos ``[B, Q, C]`` -> ``[B, Q, C]``."""
        attn = self_attention(self.self_attn, target + pos, target, attn_mask)
        target = self.norm1(target + self.dropout1(attn))
        cross = self.cross_attn(target + pos, reference, values, shapes)
        target = self.gateway(target, self.dropout2(cross))
        ffn = self.linear2(self.dropout3(self.linear1(target, self.activation)))
        target = target + self.dropout4(ffn)
        return self.norm3(target.clamp(min=-65504, max=65504))


class LQE(nn.Module):
    """Location quality estimator: adds to the class logits a score computed from the top-``k``
    probabilities (and their mean) of each edge distribution."""

    def __init__(self, k: int, hidden_dim: int, num_layers: int, reg_max: int):
        super().__init__()
        self.k = k
        self.reg_max = reg_max
        self.reg_conf = MLP(4 * (k + 1), hidden_dim, 1, num_layers)
        nn.init.zeros_(self.reg_conf.layers[-1].bias)
        nn.init.zeros_(self.reg_conf.layers[-1].weight)

    def forward(self, scores: Tensor, corners: Tensor) -> Tensor:
        """scores ``[B, Q, C]``, corners ``[B, Q, 4 * (reg_max + 1)]`` -> ``[B, Q, C]``."""
        b, q, _ = corners.shape
        prob = F.softmax(corners.reshape(b, q, 4, self.reg_max + 1), dim=-1)
        if torch.onnx.is_in_onnx_export():  # top-k along the leading axis: OpenVINO's TopK ran ~3x faster there
            top = prob.permute(3, 0, 1, 2).topk(self.k, dim=0).values.permute(1, 2, 3, 0)
        else:
            top, _ = prob.topk(self.k, dim=-1)
        stat = torch.cat([top, top.mean(dim=-1, keepdim=True)], dim=-1)
        return scores + self.reg_conf(stat.reshape(b, q, -1))


class FDRDecoder(nn.Module):
    """The stack of decoder layers and LQE heads (published name ``decoder.decoder``).

    ``up`` and ``reg_scale`` are the parent's frozen ``[1]`` parameters, shared here under the same
    names as in published checkpoints.
    """

    def __init__(self, layers: List[DecoderLayer], num_head: int, reg_max: int, up: nn.Parameter,
                 reg_scale: nn.Parameter, eval_idx: int):
        super().__init__()
        self.num_head = num_head
        self.reg_max = reg_max
        self.eval_idx = eval_idx
        self.up = up
        self.reg_scale = reg_scale
        self.layers = nn.ModuleList(layers)
        self.lqe_layers = nn.ModuleList(LQE(4, 64, 2, reg_max) for _ in layers)

    def convert_to_deploy(self) -> None:
        self.layers = self.layers[: self.eval_idx + 1]
        self.lqe_layers = nn.ModuleList([nn.Identity()] * self.eval_idx + [self.lqe_layers[self.eval_idx]])

    def split_values(self, memory: Tensor, shapes: List[List[int]]) -> List[Tensor]:
        """``[B, L, C]`` tokens -> per level ``[B * heads, C / heads, H_l, W_l]`` sampling maps.

        For one image on the CPU these are strided views of ``memory`` (channels last): PyTorch's
        CPU grid sampler reads them as fast as contiguous maps (faster on the largest level), so no
        copy is made. Otherwise the tokens are copied once into that layout."""
        b, length, c = memory.shape
        heads = self.num_head
        sizes = [h * w for h, w in shapes]
        if b == 1 and memory.device.type == "cpu" and not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()):
            return [level.view(h, w, heads, c // heads).permute(2, 3, 0, 1)
                    for level, (h, w) in zip(memory[0].split(sizes), shapes)]
        value = memory.reshape(b, length, heads, c // heads).permute(0, 2, 3, 1).contiguous()
        return [level.reshape(b * heads, c // heads, h, w) for level, (h, w) in zip(value.split(sizes, dim=-1), shapes)]

    def forward(self, target: Tensor, ref_unact: Tensor, memory: Tensor, shapes: List[List[int]],
                heads: "DFINETransformer", attn_mask: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Run the layers; returns stacked per-layer ``boxes``, ``logits``, ``corners``, ``refs``
        (``[L, B, Q, .]``; only the eval layer outside training) and ``pre_boxes``/``pre_logits``."""
        values = self.split_values(memory, shapes)
        if all(canvas_export(layer.cross_attn.method) for layer in self.layers):
            values = [sampling_canvas(values, shapes)]
        project = weighting_function(self.reg_max, self.up, self.reg_scale)
        ref = torch.sigmoid(ref_unact)
        output = target
        out_detach: Tensor | float = 0
        corners_prev: Tensor | float = 0
        boxes, logits, corners_all, refs = [], [], [], []
        pre_boxes = pre_logits = ref_initial = None
        for i, layer in enumerate(self.layers):
            pos = heads.query_pos_head(ref).clamp(min=-10, max=10)
            output = layer(output, ref.unsqueeze(2), values, shapes, attn_mask, pos)
            class_logits = None
            if i == 0:
                pre_boxes = torch.sigmoid(heads.pre_bbox_head(output) + inverse_sigmoid(ref))
                if self.training:  # the first layer's class logits serve twice: computed once
                    pre_logits = class_logits = heads.dec_score_head[0](output)
                ref_initial = pre_boxes.detach()
            corners = heads.dec_bbox_head[i](output + out_detach) + corners_prev
            box = distance2bbox(ref_initial, integral(corners, project), self.reg_scale)
            if self.training or i == self.eval_idx:
                if class_logits is None:
                    class_logits = heads.dec_score_head[i](output)
                scores = self.lqe_layers[i](class_logits, corners)
                boxes.append(box)
                logits.append(scores)
                corners_all.append(corners)
                refs.append(ref_initial)
                if not self.training:
                    break
            corners_prev = corners
            ref = box.detach()
            out_detach = output.detach()
        return {"boxes": torch.stack(boxes), "logits": torch.stack(logits), "corners": torch.stack(corners_all),
                "refs": torch.stack(refs), "pre_boxes": pre_boxes, "pre_logits": pre_logits}


class DFINETransformer(nn.Module):
    """The D-FINE decoder with its heads (published name ``decoder``).

    Args mirror :class:`~dfine.models.config.DFINETransformerConfig`; ``eval_spatial_size``
    ``(H, W)`` pre-computes the anchors of that input size (any size multiple of 32 works).
    """

    def __init__(self, num_classes: int = 80, hidden_dim: int = 256, num_queries: int = 300,
                 feat_channels: Sequence[int] = (512, 1024, 2048), feat_strides: Sequence[int] = (8, 16, 32),
                 num_levels: int = 3, num_points: Sequence[int] = (4, 4, 4), nhead: int = 8, num_layers: int = 6,
                 dim_feedforward: int = 1024, dropout: float = 0.0, activation: str = "relu",
                 num_denoising: int = 100, label_noise_ratio: float = 0.5, box_noise_scale: float = 1.0,
                 learn_query_content: bool = False, eval_spatial_size: Optional[Sequence[int]] = None,
                 eval_idx: int = -1, eps: float = 1e-2, aux_loss: bool = True, cross_attn_method: str = "default",
                 query_select_method: str = "default", reg_max: int = 32, reg_scale: float = 4.0,
                 layer_scale: float = 1.0):
        super().__init__()
        if layer_scale != 1:
            raise ValueError(f"DFINETransformer.layer_scale={layer_scale} is not supported (no published "
                             f"recipe uses it); use 1")
        if query_select_method not in ("default", "one2many", "agnostic"):
            raise ValueError(f"query_select_method must be default, one2many or agnostic, got {query_select_method!r}")
        if cross_attn_method not in ("default", "discrete"):
            raise ValueError(f"cross_attn_method must be default or discrete, got {cross_attn_method!r}")
        strides = list(feat_strides)
        while len(strides) < num_levels:
            strides.append(strides[-1] * 2)
        self.hidden_dim = hidden_dim
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.num_levels = num_levels
        self.feat_strides = strides
        self.eps = eps
        self.aux_loss = aux_loss
        self.reg_max = reg_max
        self.query_select_method = query_select_method
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.learn_query_content = learn_query_content
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx
        self.eval_spatial_size = tuple(eval_spatial_size) if eval_spatial_size else None
        self._anchor_cache: Dict[Tuple, Tuple[Tensor, Tensor]] = {}

        self._build_input_proj(list(feat_channels))
        self.up = nn.Parameter(torch.tensor([0.5]), requires_grad=False)
        self.reg_scale = nn.Parameter(torch.tensor([float(reg_scale)]), requires_grad=False)
        layers = [DecoderLayer(hidden_dim, nhead, dim_feedforward, dropout, activation, num_points,
                               cross_attn_method) for _ in range(num_layers)]
        self.decoder = FDRDecoder(layers, nhead, reg_max, self.up, self.reg_scale, self.eval_idx)
        if num_denoising > 0:
            self.denoising_class_embed = nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes)
            nn.init.normal_(self.denoising_class_embed.weight[:-1])
        if learn_query_content:
            self.tgt_embed = nn.Embedding(num_queries, hidden_dim)
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, 2)
        self.enc_output = nn.Sequential(OrderedDict([("proj", Linear(hidden_dim, hidden_dim)),
                                                     ("norm", nn.LayerNorm(hidden_dim))]))
        self.enc_score_head = Linear(hidden_dim, 1 if query_select_method == "agnostic" else num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)
        self.dec_score_head = nn.ModuleList(Linear(hidden_dim, num_classes) for _ in range(num_layers))
        self.pre_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)
        self.dec_bbox_head = nn.ModuleList(MLP(hidden_dim, hidden_dim, 4 * (reg_max + 1), 3)
                                           for _ in range(num_layers))
        if self.eval_spatial_size:
            anchors, valid = self.generate_anchors(self._level_shapes(self.eval_spatial_size))
            self.register_buffer("anchors", anchors)
            self.register_buffer("valid_mask", valid)
        self._reset_parameters(feat_channels)

    def _reset_parameters(self, feat_channels: Sequence[int]) -> None:
        bias = prior_logit(0.01)
        nn.init.constant_(self.enc_score_head.bias, bias)
        for mlp in (self.enc_bbox_head, self.pre_bbox_head, *self.dec_bbox_head):
            nn.init.zeros_(mlp.layers[-1].weight)
            nn.init.zeros_(mlp.layers[-1].bias)
        for head in self.dec_score_head:
            nn.init.constant_(head.bias, bias)
        nn.init.xavier_uniform_(self.enc_output[0].weight)
        if self.learn_query_content:
            nn.init.xavier_uniform_(self.tgt_embed.weight)
        nn.init.xavier_uniform_(self.query_pos_head.layers[0].weight)
        nn.init.xavier_uniform_(self.query_pos_head.layers[1].weight)
        for proj, c in zip(self.input_proj, feat_channels):
            if c != self.hidden_dim:
                nn.init.xavier_uniform_(proj.conv.weight)

    def _build_input_proj(self, feat_channels: List[int]) -> None:
        """1x1 conv + BN per map whose width differs from ``hidden_dim``; extra levels by 3x3 s2 convs."""
        def proj(c_in: int, k: int, s: int) -> nn.Module:
            return nn.Identity() if c_in == self.hidden_dim else ConvNormPlain(c_in, self.hidden_dim, k, s)

        self.input_proj = nn.ModuleList(proj(c, 1, 1) for c in feat_channels)
        c_in = feat_channels[-1]
        for _ in range(self.num_levels - len(feat_channels)):
            self.input_proj.append(proj(c_in, 3, 2))
            c_in = self.hidden_dim

    def convert_to_deploy(self) -> None:
        """Keep only what the eval layer needs (the published deploy form)."""
        e = self.eval_idx
        self.dec_score_head = nn.ModuleList([nn.Identity()] * e + [self.dec_score_head[e]])
        self.dec_bbox_head = nn.ModuleList(
            head if i <= e else nn.Identity() for i, head in enumerate(self.dec_bbox_head))

    # ---- encoder tokens and anchors ----
    def _flatten(self, feats: List[Tensor]) -> Tuple[Tensor, List[List[int]]]:
        """Project the maps and flatten them into ``[B, sum(H_l * W_l), C]`` tokens."""
        proj = [self.input_proj[i](f) for i, f in enumerate(feats)]
        for i in range(len(feats), self.num_levels):
            proj.append(self.input_proj[i](feats[-1] if i == len(feats) else proj[-1]))
        shapes = [list(p.shape[2:]) for p in proj]
        tokens = torch.cat([map_tokens(p) for p in proj], dim=1)
        return tokens, shapes

    def _level_shapes(self, size: Sequence[int]) -> List[List[int]]:
        return [[int(size[0] / s), int(size[1] / s)] for s in self.feat_strides]

    def generate_anchors(self, shapes: List[List[int]], grid_size: float = 0.05,
                         device: torch.device | str = "cpu") -> Tuple[Tensor, Tensor]:
        """Anchors ``[1, L, 4]`` (inverse-sigmoid cxcywh; ``inf`` where invalid) and ``valid [1, L, 1]``."""
        levels = []
        for lvl, (h, w) in enumerate(shapes):
            gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            xy = (torch.stack([gx, gy], dim=-1).unsqueeze(0) + 0.5) / torch.tensor([w, h], dtype=torch.float32)
            wh = torch.ones_like(xy) * grid_size * (2.0 ** lvl)
            levels.append(torch.cat([xy, wh], dim=-1).reshape(-1, h * w, 4))
        anchors = torch.cat(levels, dim=1).to(device)
        valid = ((anchors > self.eps) * (anchors < 1 - self.eps)).all(-1, keepdim=True)
        anchors = torch.log(anchors / (1 - anchors))
        return torch.where(valid, anchors, torch.inf), valid

    def _anchors(self, shapes: List[List[int]], device: torch.device) -> Tuple[Tensor, Tensor]:
        if self.eval_spatial_size and shapes == self._level_shapes(self.eval_spatial_size):
            return self.anchors, self.valid_mask
        key = (tuple(map(tuple, shapes)), str(device))
        if key not in self._anchor_cache:
            self._anchor_cache[key] = self.generate_anchors(shapes, device=device)
        return self._anchor_cache[key]

    def _select_topk(self, memory: Tensor, logits: Tensor, anchors: Tensor) -> Tuple[Tensor, Optional[Tensor], Tensor]:
        """Top-``num_queries`` tokens by class score -> (memory ``[B, Q, C]``, logits, anchors ``[B, Q, 4]``)."""
        k = self.num_queries
        if self.query_select_method == "default":
            idx = logits.max(-1).values.topk(k, dim=-1).indices
        elif self.query_select_method == "one2many":
            idx = logits.flatten(1).topk(k, dim=-1).indices // self.num_classes
        else:
            idx = logits.squeeze(-1).topk(k, dim=-1).indices

        def take(x: Tensor) -> Tensor:
            if torch.onnx.is_in_onnx_export():  # rows of the flattened tokens: a Gather, where the
                # gather below exports as GatherElements on an expanded index (OpenVINO: reference kernels)
                rows = idx if x.shape[0] == 1 else idx + torch.arange(idx.shape[0], device=idx.device).unsqueeze(-1) * x.shape[1]
                return x.reshape(-1, x.shape[-1])[rows]
            return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

        return take(memory), take(logits) if self.training else None, take(anchors)

    def _enc_output(self, memory: Tensor, valid: Tensor) -> Tensor:
        """``enc_output`` of the tokens ``[B, L, C]`` with the invalid ones (``valid [1, L, 1]`` False)
        zeroed. Without gradients the tokens are not masked in a pass over all of them: only the
        invalid rows (the outer ring of anchors) are recomputed from zeros, the same values."""
        if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return self.enc_output(valid.to(memory.dtype) * memory)
        out = self.enc_output(memory)
        invalid = (~valid[0, :, 0]).nonzero().squeeze(1)
        if invalid.numel():
            out[:, invalid] = self.enc_output(memory.new_zeros(memory.shape[0], invalid.numel(), memory.shape[2]))
        return out

    def _queries(self, memory: Tensor, shapes: List[List[int]], dn: Optional[DenoisingGroup]):
        """Select the initial queries: contents ``[B, Q', C]``, reference boxes (unactivated) and the
        encoder's top-k predictions for the encoder loss (training)."""
        anchors, valid = self._anchors(shapes, memory.device)
        anchors = anchors.expand(memory.shape[0], -1, -1)
        out_memory = self._enc_output(memory, valid)
        enc_logits = self.enc_score_head(out_memory)
        top_memory, top_logits, top_anchors = self._select_topk(out_memory, enc_logits, anchors)
        top_boxes_unact = self.enc_bbox_head(top_memory) + top_anchors
        enc_outputs = []
        if self.training:
            enc_outputs.append({"pred_logits": top_logits, "pred_boxes": torch.sigmoid(top_boxes_unact)})
        if self.learn_query_content:
            content = self.tgt_embed.weight.unsqueeze(0).tile([memory.shape[0], 1, 1])
        else:
            content = top_memory.detach()
        ref_unact = top_boxes_unact.detach()
        if dn is not None and dn.content is not None:
            ref_unact = torch.cat([dn.ref_unact, ref_unact], dim=1)
            content = torch.cat([dn.content, content], dim=1)
        return content, ref_unact, enc_outputs

    def forward(self, feats: List[Tensor], targets: Optional[List[Dict[str, Tensor]]] = None) -> Dict:
        memory, shapes = self._flatten(feats)
        if memory.shape[1] < self.num_queries:  # a user's --imgsz 160 (dfine benchmark, predict): one line, no traceback
            from ..errors import DfineError
            raise DfineError(f"the input gives {memory.shape[1]} encoder tokens, fewer than the model's "
                             f"{self.num_queries} queries: a larger input size (--imgsz, imgsz=), or a model with "
                             f"fewer queries")
        dn = None
        if self.training and self.num_denoising > 0:
            if targets is None:
                raise ValueError("training with denoising needs targets: call model(images, targets)")
            dn = contrastive_denoising_group(targets, self.num_classes, self.num_queries, self.denoising_class_embed,
                                             self.num_denoising, self.label_noise_ratio, self.box_noise_scale)
        content, ref_unact, enc_outputs = self._queries(memory, shapes, dn)
        out = self.decoder(content, ref_unact, memory, shapes, self, attn_mask=dn.attn_mask if dn else None)
        if not self.training:
            return {"pred_logits": out["logits"][-1], "pred_boxes": out["boxes"][-1]}
        return self._training_outputs(out, enc_outputs, dn)

    def _training_outputs(self, out: Dict, enc_outputs: List[Dict], dn: Optional[DenoisingGroup]) -> Dict:
        """Split off the denoising queries and arrange everything the criterion reads."""
        boxes, logits, corners, refs = out["boxes"], out["logits"], out["corners"], out["refs"]
        pre_boxes, pre_logits = out["pre_boxes"], out["pre_logits"]
        if dn is not None:  # with no target in the batch the denoising part is empty (split [0, Q])
            split = dn.meta["dn_num_split"]
            dn_pre_logits, pre_logits = pre_logits.split(split, dim=1)
            dn_pre_boxes, pre_boxes = pre_boxes.split(split, dim=1)
            dn_boxes, boxes = boxes.split(split, dim=2)
            dn_logits, logits = logits.split(split, dim=2)
            dn_corners, corners = corners.split(split, dim=2)
            dn_refs, refs = refs.split(split, dim=2)
        result = {"pred_logits": logits[-1], "pred_boxes": boxes[-1], "pred_corners": corners[-1],
                  "ref_points": refs[-1], "up": self.up, "reg_scale": self.reg_scale}
        if not self.aux_loss:
            return result
        result["aux_outputs"] = _layer_outputs(logits[:-1], boxes[:-1], corners[:-1], refs[:-1],
                                               corners[-1], logits[-1])
        result["enc_aux_outputs"] = enc_outputs
        result["pre_outputs"] = {"pred_logits": pre_logits, "pred_boxes": pre_boxes}
        result["enc_meta"] = {"class_agnostic": self.query_select_method == "agnostic"}
        if dn is not None:
            result["dn_outputs"] = _layer_outputs(dn_logits, dn_boxes, dn_corners, dn_refs,
                                                  dn_corners[-1], dn_logits[-1])
            result["dn_pre_outputs"] = {"pred_logits": dn_pre_logits, "pred_boxes": dn_pre_boxes}
            result["dn_meta"] = dn.meta
        return result


def _layer_outputs(logits, boxes, corners, refs, teacher_corners, teacher_logits) -> List[Dict[str, Tensor]]:
    """One dict per decoder layer, each carrying the last layer's distributions as the teacher."""
    return [{"pred_logits": a, "pred_boxes": b, "pred_corners": c, "ref_points": d,
             "teacher_corners": teacher_corners, "teacher_logits": teacher_logits}
            for a, b, c, d in zip(logits, boxes, corners, refs)]
