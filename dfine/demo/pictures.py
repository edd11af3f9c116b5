"""The demo's pictures: training curves, a grid of annotated predictions, and FDR at work
(the edge distributions of the first and last decoder layer for a few predicted boxes)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence, Tuple, Union

import numpy as np

from ..engine.plots import plot_prediction_grid, pyplot, save_figure

__all__ = ["plot_curves", "plot_prediction_grid", "FdrTrace", "trace_fdr", "plot_fdr"]

PathLike = Union[str, os.PathLike]
_EDGES = ("left", "top", "right", "bottom")


def plot_curves(step_losses: Sequence[float], history: Sequence[Mapping[str, Any]], path: PathLike) -> Path:
    """Training loss per step (with a moving average) and val mAP / mAP50 per epoch."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = np.arange(1, len(step_losses) + 1)
    a.plot(steps, step_losses, color="tab:blue", alpha=0.3, lw=1, label="step")
    if len(step_losses) >= 5:
        w = max(2, len(step_losses) // 20)
        smooth = np.convolve(step_losses, np.ones(w) / w, mode="valid")
        a.plot(steps[w - 1:], smooth, color="tab:blue", lw=2, label=f"mean of {w}")
    a.set(xlabel="step", ylabel="total loss", title="training loss")
    a.grid(alpha=0.3)
    a.legend()
    epochs = [e["epoch"] + 1 for e in history]
    for key, label in (("test_AP50", "mAP50"), ("test_AP", "mAP")):
        b.plot(epochs, [e.get(key, math.nan) for e in history], marker="o", label=label)
    b.set(xlabel="epoch", ylabel="val", ylim=(0, 1), title="validation (EMA model)")
    if epochs:
        b.set_xticks(epochs)
    b.grid(alpha=0.3)
    b.legend()
    fig.tight_layout()
    return save_figure(fig, path)


@dataclass
class FdrTrace:
    """What the decoder computed for one image: per layer ``boxes [L, Q, 4]`` and ``refs [L, Q, 4]``
    (normalised cx, cy, w, h), ``corners [L, Q, 4, reg_max + 1]`` edge distributions (softmax),
    ``scores [Q]`` and ``labels [Q]`` of the last layer; ``bins [reg_max + 1]`` the bin positions
    ``W(n)``; ``reg_scale`` the offset unit (reference size / reg_scale)."""

    boxes: np.ndarray
    refs: np.ndarray
    corners: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    bins: np.ndarray
    reg_scale: float


def trace_fdr(model: Any, image: Any) -> FdrTrace:
    """Run ``model`` (a :class:`~dfine.models.dfine.DFINE` in eval mode, not deployed) on one
    ``image [3, H, W]`` float 0..1 and keep every decoder layer's edge distributions.

    The decoder stack returns all its layers when its own ``training`` flag is set (its layers
    stay in eval mode); a forward hook reads them."""
    import torch
    import torch.nn.functional as F

    from ..models.fdr import weighting_function

    head = model.decoder
    stack = head.decoder
    captured: Dict[str, Any] = {}
    hook = stack.register_forward_hook(lambda module, args, out: captured.update(out))
    stack.training = True
    try:
        with torch.no_grad():
            model(image[None])
    finally:
        stack.training = False
        hook.remove()
    bins = weighting_function(stack.reg_max, stack.up, stack.reg_scale).detach().float()
    corners = captured["corners"][:, 0].float()  # [L, Q, 4 * (R + 1)]
    probs = F.softmax(corners.reshape(*corners.shape[:2], 4, -1), dim=-1)
    last = captured["logits"][-1, 0].float().sigmoid()  # [Q, C]
    scores, labels = last.max(dim=-1)
    return FdrTrace(boxes=captured["boxes"][:, 0].float().numpy(), refs=captured["refs"][:, 0].float().numpy(),
                    corners=probs.numpy(), scores=scores.numpy(), labels=labels.numpy(), bins=bins.numpy(),
                    reg_scale=float(stack.reg_scale.abs()))


def _edge_positions(ref: np.ndarray, bins: np.ndarray, reg_scale: float, width: int, height: int) -> np.ndarray:
    """``[4, R + 1]`` pixel position of each bin of each edge (left, top, right, bottom)."""
    cx, cy, w, h = ref
    reach = 0.5 * reg_scale + bins
    return np.stack([(cx - reach * w / reg_scale) * width, (cy - reach * h / reg_scale) * height,
                     (cx + reach * w / reg_scale) * width, (cy + reach * h / reg_scale) * height])


def _xyxy(box: np.ndarray, width: int, height: int) -> np.ndarray:
    cx, cy, w, h = box
    return np.array([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / max((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter, 1e-9)


def plot_fdr(image: Any, trace: FdrTrace, class_names: Sequence[str], path: PathLike, top: int = 3,
             truth: Sequence[Tuple[int, Sequence[float]]] = ()) -> Path:
    """For the ``top`` highest-scoring boxes of ``trace`` (one image, a PIL image): the image
    with the first layer's box (orange, dashed) and the last layer's (green), then per edge the
    probability of each bin position (in pixels) for both layers, with their expected values
    and, when a ground truth box overlaps, its edge (black dotted)."""
    plt = pyplot()
    width, height = image.size
    order = [int(q) for q in np.argsort(-trace.scores)[:top]]
    fig, axes = plt.subplots(len(order), 5, figsize=(16, 2.9 * len(order)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.3, 1, 1, 1, 1]})
    first, last = 0, trace.corners.shape[0] - 1
    for row, q in enumerate(order):
        ref = trace.refs[0, q]
        positions = _edge_positions(ref, trace.bins, trace.reg_scale, width, height)
        box0, box1 = _xyxy(trace.boxes[first, q], width, height), _xyxy(trace.boxes[last, q], width, height)
        gt = max(truth, key=lambda t: _iou(np.asarray(t[1], float), box1), default=None)
        gt_box = np.asarray(gt[1], float) if gt is not None and _iou(np.asarray(gt[1], float), box1) > 0.3 else None
        ax = axes[row, 0]
        ax.imshow(image)
        for box, color, style, label in ((box0, "tab:orange", "--", "layer 1"), (box1, "lime", "-", f"layer {last + 1}")):
            ax.add_patch(plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, ec=color, lw=2,
                                       ls=style, label=label))
        pad = 0.6 * max(box1[2] - box1[0], box1[3] - box1[1], 8)
        ax.set_xlim(max(0, min(box0[0], box1[0]) - pad), min(width, max(box0[2], box1[2]) + pad))
        ax.set_ylim(min(height, max(box0[3], box1[3]) + pad), max(0, min(box0[1], box1[1]) - pad))
        ax.set_title(f"{class_names[int(trace.labels[q])]} {trace.scores[q]:.2f}", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
        ax.axis("off")
        for e, name in enumerate(_EDGES):
            ax = axes[row, e + 1]
            x = positions[e]
            for layer, color, lw, box in ((first, "tab:orange", 1.2, box0), (last, "green", 2.0, box1)):
                p = trace.corners[layer, q, e]
                ax.plot(x, p, color=color, lw=lw, marker=".", ms=4, label=f"layer {layer + 1}")
                ax.axvline(box[e], color=color, lw=1, ls="--")
            if gt_box is not None:
                ax.axvline(gt_box[e], color="black", lw=1.2, ls=":", label="ground truth")
            inner = np.sort(x)[1:-1]  # the two outermost bins sit far out (2x the next): left out of view
            ax.set_xlim(inner[0], inner[-1])
            ax.set_ylim(bottom=0)
            ax.set_title(f"{name} edge", fontsize=9)
            ax.set_xlabel("x (px)" if e in (0, 2) else "y (px)", fontsize=8)
            if e == 0:
                ax.set_ylabel("probability", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if row == 0 and e == 0:
                ax.legend(fontsize=7)
    fig.suptitle("FDR at work: each edge is a distribution over bins; the last layer sharpens the first "
                 "layer's guess and moves the box (dashed lines: expected edge)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
