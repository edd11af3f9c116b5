"""Hungarian matcher: cost formula, optimal assignment, batching, the GO-LSD union."""

import itertools
import math

import pytest
import torch
import torchvision

from dfine.loss.matcher import HungarianMatcher, pairwise_generalized_box_iou, union_of_matches
from dfine.models.fdr import box_cxcywh_to_xyxy
from tests.loss.fakes import random_targets


def _cxcywh(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_pairwise_giou_matches_torchvision_and_broadcasts():
    g = torch.Generator().manual_seed(1)
    a = box_cxcywh_to_xyxy(torch.rand(3, 7, 4, generator=g) * 0.5 + 0.1)
    b = box_cxcywh_to_xyxy(torch.rand(3, 5, 4, generator=g) * 0.5 + 0.1)
    ours = pairwise_generalized_box_iou(a, b)
    assert ours.shape == (3, 7, 5)
    for i in range(3):
        assert torch.equal(ours[i], torchvision.ops.generalized_box_iou(a[i], b[i]))


def test_cost_entry_follows_the_published_formula():
    matcher = HungarianMatcher(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, alpha=0.25, gamma=2.0)
    logits = torch.tensor([[[0.3, -1.2, 2.0]]])  # [B=1, Q=1, C=3]
    pred = torch.tensor([[[0.5, 0.5, 0.2, 0.4]]])
    tgt = torch.tensor([[[0.45, 0.55, 0.3, 0.3]]])
    cost = matcher.cost(logits, pred, torch.tensor([[1]]), tgt)
    p = 1 / (1 + math.exp(1.2))
    focal = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8) - 0.75 * p ** 2 * -math.log(1 - p + 1e-8)
    l1 = 0.05 + 0.05 + 0.1 + 0.1
    giou = torchvision.ops.generalized_box_iou(box_cxcywh_to_xyxy(pred[0]), box_cxcywh_to_xyxy(tgt[0])).item()
    assert cost.shape == (1, 1, 1)
    assert cost.item() == pytest.approx(5 * l1 + 2 * focal - 2 * giou, rel=1e-5)


def test_known_assignment_on_a_tiny_problem():
    # query 2 sits exactly on target 0, query 0 on target 1; query 1 is far from both
    targets = [{"labels": torch.tensor([1, 0]), "boxes": _cxcywh([0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2])}]
    logits = torch.full((1, 3, 2), -4.0)
    logits[0, 2, 1] = 4.0
    logits[0, 0, 0] = 4.0
    boxes = _cxcywh([0.7, 0.7, 0.2, 0.2], [0.5, 0.1, 0.05, 0.05], [0.2, 0.2, 0.1, 0.1]).unsqueeze(0)
    (rows, cols), = HungarianMatcher()({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert rows.tolist() == [0, 2] and cols.tolist() == [1, 0]
    assert rows.dtype == cols.dtype == torch.int64


def test_assignment_is_optimal_not_greedy():
    """Against brute force over all injective assignments, on random small problems."""
    matcher = HungarianMatcher()
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        targets = random_targets([3], 3, g)
        logits = torch.randn(1, 4, 3, generator=g)
        boxes = torch.rand(1, 4, 4, generator=g) * 0.5 + 0.1
        (rows, cols), = matcher({"pred_logits": logits, "pred_boxes": boxes}, targets)
        cost = matcher.cost(logits, boxes, targets[0]["labels"][None], targets[0]["boxes"][None])[0]
        best = min(sum(cost[q, k].item() for k, q in enumerate(perm))
                   for perm in itertools.permutations(range(4), 3))
        assert cost[rows, cols].sum().item() == pytest.approx(best, abs=1e-5)
        assert len(set(rows.tolist())) == 3 and sorted(cols.tolist()) == [0, 1, 2]


def test_match_many_equals_matching_each_layer_and_handles_empty_images():
    g = torch.Generator().manual_seed(0)
    targets = random_targets([3, 0, 5], 6, g)
    layers = [{"pred_logits": torch.randn(3, 20, 6, generator=g), "pred_boxes": torch.rand(3, 20, 4, generator=g) * 0.5 + 0.1}
              for _ in range(4)]
    matcher = HungarianMatcher()
    together = matcher.match_many(layers, targets)
    for layer, got in zip(layers, together):
        alone = matcher(layer, targets)
        for (r1, c1), (r2, c2) in zip(got, alone):
            assert torch.equal(r1, r2) and torch.equal(c1, c2)
        assert [len(r) for r, _ in got] == [3, 0, 5]


def test_no_targets_anywhere_gives_empty_matches():
    targets = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    layer = {"pred_logits": torch.randn(2, 5, 3), "pred_boxes": torch.rand(2, 5, 4)}
    assert [(len(r), len(c)) for r, c in HungarianMatcher()(layer, targets)] == [(0, 0), (0, 0)]


def test_nan_predictions_still_match():
    targets = random_targets([2], 3, torch.Generator().manual_seed(0))
    boxes = torch.rand(1, 4, 4) * 0.5 + 0.1
    boxes[0, 1] = float("nan")
    (rows, cols), = HungarianMatcher()({"pred_logits": torch.randn(1, 4, 3), "pred_boxes": boxes}, targets)
    assert len(rows) == 2


def test_all_zero_costs_are_rejected():
    with pytest.raises(ValueError, match="cost_class"):
        HungarianMatcher(cost_class=0, cost_bbox=0, cost_giou=0)


def _pairs(*pairs):
    return (torch.tensor([p[0] for p in pairs], dtype=torch.int64), torch.tensor([p[1] for p in pairs], dtype=torch.int64))


def test_union_keeps_the_most_frequent_target_per_query():
    layers = [
        [_pairs((0, 0), (1, 1), (3, 2))],
        [_pairs((0, 0), (1, 2), (4, 1))],
        [_pairs((0, 1), (1, 2), (3, 0))],
    ]
    (queries, tgts), = union_of_matches(layers)
    got = dict(zip(queries.tolist(), tgts.tolist()))
    assert got[0] == 0 and got[1] == 2 and got[4] == 1
    assert got[3] in (0, 2)  # a tie: one of the two
    assert sorted(got) == [0, 1, 3, 4]
    # ranked by count: the pairs seen twice come first
    assert set(queries[:2].tolist()) == {0, 1}


def test_union_of_identical_layers_is_that_layer():
    layer = [_pairs((5, 1), (2, 0), (9, 2)), _pairs()]
    (q, t), (q2, t2) = union_of_matches([layer, layer, layer])
    assert sorted(zip(q.tolist(), t.tolist())) == [(2, 0), (5, 1), (9, 2)]
    assert len(q2) == len(t2) == 0
