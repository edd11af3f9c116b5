"""Fine-grained Distribution Refinement (FDR): the maths of the D-FINE paper in one place.

Each box edge is predicted as a distribution over ``reg_max + 1`` bins. The bins sit at the
non-uniform positions ``W(n)`` (:func:`weighting_function`); the expected value of the
distribution (:func:`integral`) is an edge offset in units of ``reference size / reg_scale``,
and :func:`distance2bbox` turns four such offsets around a reference box into a box.
:func:`bbox2distance` is the inverse used to build the FGL targets.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` cx, cy, w, h -> x1, y1, x2, y2 (negative sizes are clamped to 0)."""
    cx, cy, w, h = boxes.unbind(-1)
    half_w, half_h = 0.5 * w.clamp(min=0.0), 0.5 * h.clamp(min=0.0)
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` x1, y1, x2, y2 -> cx, cy, w, h."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def weighting_function(reg_max: int, up: Tensor, reg_scale: Tensor) -> Tensor:
    """The bin positions ``W(n)``, ``n = 0..reg_max``: ``[reg_max + 1]``, same dtype as ``up``.

    ``W`` is 0 at the centre bin, grows geometrically towards both ends
    (``±(step**i - 1)`` with ``step = (|up * reg_scale| + 1) ** (2 / (reg_max - 2))``) and the two
    outer bins sit at ``±2 |up * reg_scale|``. ``up`` and ``reg_scale`` are ``[1]`` tensors.
    """
    bound = up.abs() * reg_scale.abs()  # [1]
    step = (bound + 1) ** (2 / (reg_max - 2))
    half = reg_max // 2
    right = torch.stack([step ** i - 1 for i in range(1, half)]).reshape(-1)
    left = -torch.flip(right, dims=[0])
    return torch.cat([-2 * bound, left, torch.zeros_like(bound), right, 2 * bound])


def integral(corners: Tensor, project: Tensor) -> Tensor:
    """Expected edge offsets of the edge distributions.

    corners: ``[..., 4 * (reg_max + 1)]`` logits; project: ``[reg_max + 1]`` = ``W(n)``.
    Returns ``[..., 4]`` offsets (left, top, right, bottom) = ``sum_n softmax(corners)_n W(n)``.
    """
    bins = project.shape[0]
    prob = F.softmax(corners.reshape(-1, bins), dim=1)
    weight = project.to(prob.device)
    if torch.onnx.is_in_onnx_export():  # a [1, bins] matrix: ONNX Runtime ran the product with a vector
        weight = weight[None]  # ~4x slower (N at 192 px: ~60 against ~13 us per layer)
    return F.linear(prob, weight).reshape(*corners.shape[:-1], 4)


def distance2bbox(points: Tensor, distance: Tensor, reg_scale: Tensor) -> Tensor:
    """Boxes from edge offsets around reference boxes.

    points: ``[..., 4]`` reference boxes cx, cy, w, h (normalised); distance: ``[..., 4]`` offsets
    (left, top, right, bottom) in units of ``w / reg_scale`` (``h / reg_scale``) beyond half the
    reference size. Returns ``[..., 4]`` cx, cy, w, h.
    """
    reg_scale = reg_scale.abs()
    cx, cy, w, h = points.unbind(-1)
    half = 0.5 * reg_scale
    x1 = cx - (half + distance[..., 0]) * (w / reg_scale)
    y1 = cy - (half + distance[..., 1]) * (h / reg_scale)
    x2 = cx + (half + distance[..., 2]) * (w / reg_scale)
    y2 = cy + (half + distance[..., 3]) * (h / reg_scale)
    return box_xyxy_to_cxcywh(torch.stack([x1, y1, x2, y2], dim=-1))


def translate_gt(gt: Tensor, reg_max: int, reg_scale: Tensor, up: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Soft bin targets for continuous offsets.

    gt: any shape, flattened to ``[N]`` offsets. Returns ``(index, weight_right, weight_left)``, each
    ``[N]``: ``index`` (float) is the bin just left of the value, and the two weights split it linearly
    between bins ``index`` and ``index + 1``. Values left of ``W(0)`` put all weight on bin 0; values
    right of ``W(reg_max)`` get index ``reg_max - 0.1`` and all weight on the right.
    """
    gt = gt.reshape(-1)
    values = weighting_function(reg_max, up, reg_scale)
    index = ((values.unsqueeze(0) - gt.unsqueeze(1)) <= 0).sum(dim=1) - 1
    index = index.float()
    weight_right = torch.zeros_like(index)
    weight_left = torch.zeros_like(index)

    inside = (index >= 0) & (index < reg_max)
    left_i = index[inside].long()
    left_d = (gt[inside] - values[left_i]).abs()
    right_d = (values[left_i + 1] - gt[inside]).abs()
    weight_right[inside] = left_d / (left_d + right_d)
    weight_left[inside] = 1.0 - weight_right[inside]

    below = index < 0
    weight_right[below] = 0.0
    weight_left[below] = 1.0
    index[below] = 0.0

    above = index >= reg_max
    weight_right[above] = 1.0
    weight_left[above] = 0.0
    index[above] = reg_max - 0.1
    return index, weight_right, weight_left


def bbox2distance(points: Tensor, bbox: Tensor, reg_max: int, reg_scale: Tensor, up: Tensor,
                  eps: float = 0.1) -> Tuple[Tensor, Tensor, Tensor]:
    """FGL targets: the soft bin targets of the edges of ``bbox`` around ``points``.

    points: ``[N, 4]`` reference boxes cx, cy, w, h; bbox: ``[N, 4]`` target boxes x1, y1, x2, y2.
    Returns ``(index [4N], weight_right [4N], weight_left [4N])``, detached, with ``index``
    clamped to ``[0, reg_max - eps]``.
    """
    reg_scale = reg_scale.abs()
    unit_w = points[:, 2] / reg_scale + 1e-16
    unit_h = points[:, 3] / reg_scale + 1e-16
    half = 0.5 * reg_scale
    left = (points[:, 0] - bbox[:, 0]) / unit_w - half
    top = (points[:, 1] - bbox[:, 1]) / unit_h - half
    right = (bbox[:, 2] - points[:, 0]) / unit_w - half
    bottom = (bbox[:, 3] - points[:, 1]) / unit_h - half
    offsets = torch.stack([left, top, right, bottom], dim=-1)
    index, weight_right, weight_left = translate_gt(offsets, reg_max, reg_scale, up)
    index = index.clamp(min=0, max=reg_max - eps)
    return index.reshape(-1).detach(), weight_right.detach(), weight_left.detach()
