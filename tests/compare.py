"""Comparisons against the golden fixtures, as ../shared/README.md prescribes."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment


def assert_query_sets_close(ours: torch.Tensor, gold: torch.Tensor, atol: float) -> None:
    """``ours``/``gold``: ``[Q, D]`` query rows. Pair each golden row with one of ours (one-to-one,
    minimising the largest-coordinate distance) and require every pair within ``atol``."""
    assert ours.shape == gold.shape, (ours.shape, gold.shape)
    dist = torch.cdist(gold.double(), ours.double(), p=float("inf"))
    rows, cols = linear_sum_assignment(dist.numpy())
    worst = dist[rows, cols].max().item()
    assert worst <= atol, f"worst paired query differs by {worst:.3g} > {atol}"


def assert_detections_close(labels, boxes, scores, gold: dict, score_tol: float = 1e-3,
                            box_tol: float = 1.0) -> None:
    """Deploy detections of one image vs golden ones, as sets: each golden detection pairs
    one-to-one with one of ours of the same label, score within ``score_tol``, box within ``box_tol`` px."""
    g_lab, g_box, g_sco = gold["labels"], gold["boxes"], gold["scores"]
    assert labels.shape == g_lab.shape
    box_d = torch.cdist(g_box.double(), boxes.double(), p=float("inf"))
    score_d = (g_sco.double()[:, None] - scores.double()[None, :]).abs()
    same = g_lab[:, None] == labels[None, :]
    cost = torch.where(same, box_d / box_tol + score_d / score_tol, torch.full_like(box_d, 1e9))
    rows, cols = linear_sum_assignment(cost.numpy())
    assert same[rows, cols].all(), "some golden detection has no detection of the same label"
    assert box_d[rows, cols].max() <= box_tol, f"box off by {box_d[rows, cols].max():.3g} px"
    assert score_d[rows, cols].max() <= score_tol, f"score off by {score_d[rows, cols].max():.3g}"
