"""Each loss term on hand-built cases with a closed-form answer."""

import math

import pytest
import torch
import torchvision

from dfine.loss.criterion import (Matched, box_losses, ddf_loss, fgl_loss, focal_loss, paired_iou,
                                  vfl_loss)
from dfine.models.fdr import bbox2distance, box_cxcywh_to_xyxy, weighting_function


def _matched(batch, query, labels, boxes, num_boxes):
    t = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    return Matched(t(batch), t(query), t(labels), torch.tensor(boxes, dtype=torch.float32), float(num_boxes))


def _bce(x, t):
    s = 1 / (1 + math.exp(-x))
    return -(t * math.log(s) + (1 - t) * math.log(1 - s))


def test_paired_iou_is_the_diagonal_of_torchvision():
    g = torch.Generator().manual_seed(0)
    a = box_cxcywh_to_xyxy(torch.rand(9, 4, generator=g) * 0.5 + 0.1)
    b = box_cxcywh_to_xyxy(torch.rand(9, 4, generator=g) * 0.5 + 0.1)
    iou, giou = paired_iou(a, b)
    assert torch.equal(iou, torchvision.ops.box_iou(a, b).diagonal())
    assert torch.equal(giou, torchvision.ops.generalized_box_iou(a, b).diagonal())


def test_box_losses_are_zero_for_perfect_boxes():
    boxes = [[0.3, 0.4, 0.2, 0.1], [0.7, 0.6, 0.3, 0.5]]
    m = _matched([0, 0], [3, 1], [0, 1], boxes, 2)
    src = torch.tensor(boxes)
    _, giou = paired_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(m.boxes))
    l1, giou_loss = box_losses(src, m, giou)
    assert l1.item() == 0.0
    assert giou_loss.item() == pytest.approx(0.0, abs=1e-7)


def test_box_losses_of_disjoint_boxes():
    # pred x in [0, 1], target x in [2, 3], same y range [0, 1]: IoU 0, hull 3, union 2
    m = _matched([0], [0], [0], [[2.5, 0.5, 1.0, 1.0]], 1)
    src = torch.tensor([[0.5, 0.5, 1.0, 1.0]])
    _, giou = paired_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(m.boxes))
    l1, giou_loss = box_losses(src, m, giou)
    assert l1.item() == pytest.approx(2.0)
    assert giou_loss.item() == pytest.approx(1 + 1 / 3)
    # normalised by num_boxes, and a per-box weight scales the GIoU term only
    m4 = m._replace(num_boxes=4.0)
    l1, giou_loss = box_losses(src, m4, giou, weight=torch.tensor([0.5]))
    assert l1.item() == pytest.approx(0.5)
    assert giou_loss.item() == pytest.approx((1 + 1 / 3) * 0.5 / 4)


def test_vfl_closed_form():
    # one image, 2 queries, 2 classes; query 0 matched to a class-1 target with IoU 0.6
    logits = torch.tensor([[[0.2, -0.5], [1.0, -2.0]]])
    m = _matched([0], [0], [1], [[0.5, 0.5, 0.2, 0.2]], 3)
    loss = vfl_loss(logits, m, torch.tensor([0.6]), alpha=0.75, gamma=2.0)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = 0.6 * _bce(-0.5, 0.6)  # the positive: BCE towards the IoU, weighted by it
    for x in (0.2, 1.0, -2.0):  # negatives: weight alpha * p^gamma
        expected += 0.75 * sig(x) ** 2 * _bce(x, 0.0)
    assert loss.item() == pytest.approx(expected / 3, rel=1e-6)


def test_vfl_is_finite_without_matches_or_queries():
    empty = _matched([], [], [], torch.zeros(0, 4).tolist(), 1)
    assert torch.isfinite(vfl_loss(torch.randn(2, 5, 3), empty, torch.zeros(0), 0.75, 2.0))
    no_queries = torch.randn(2, 0, 3, requires_grad=True)
    loss = vfl_loss(no_queries, empty, torch.zeros(0), 0.75, 2.0)
    assert loss.item() == 0.0
    loss.backward()


def test_focal_closed_form():
    logits = torch.tensor([[[0.2, -0.5]]])
    m = _matched([0], [0], [0], [[0.5, 0.5, 0.2, 0.2]], 2)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    pos = 0.25 * (1 - sig(0.2)) ** 2 * _bce(0.2, 1.0)
    neg = 0.75 * sig(-0.5) ** 2 * _bce(-0.5, 0.0)
    assert focal_loss(logits, m, 0.25, 2.0).item() == pytest.approx((pos + neg) / 2, rel=1e-6)


def _fgl_case(reg_max=8):
    """A matched box whose four edge offsets from its reference sit exactly on bin ``reg_max // 2 + 1``."""
    up, reg_scale = torch.tensor([0.5]), torch.tensor([4.0])
    w = weighting_function(reg_max, up, reg_scale)
    ref = torch.tensor([[0.5, 0.5, 0.4, 0.2]])
    offset = w[reg_max // 2 + 1].item()  # in units of ref size / reg_scale beyond half the ref size
    half = 0.5 * 4.0
    x1 = 0.5 - (half + offset) * 0.4 / 4.0
    x2 = 0.5 + (half + offset) * 0.4 / 4.0
    y1 = 0.5 - (half + offset) * 0.2 / 4.0
    y2 = 0.5 + (half + offset) * 0.2 / 4.0
    target_xyxy = torch.tensor([[x1, y1, x2, y2]])
    target = bbox2distance(ref, target_xyxy, reg_max, reg_scale, up)
    cxcywh = [[(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]]
    return target, _matched([0], [0], [0], cxcywh, 1)


def test_fgl_target_sits_on_one_bin():
    target, _ = _fgl_case()
    index, weight_right, weight_left = target
    # rounding may put the value just left of bin 5 (left bin 4, all weight right) or on it
    left = index.long()
    assert set(left.tolist()) <= {4, 5}
    on_target = torch.where(left == 5, weight_left, weight_right)
    assert torch.allclose(on_target, torch.ones(4), atol=1e-4)


def test_fgl_is_near_zero_for_a_distribution_concentrated_on_the_target_bin():
    reg_max = 8
    target, m = _fgl_case(reg_max)
    corners = torch.full((1, 1, 4, reg_max + 1), -30.0)
    corners[..., reg_max // 2 + 1] = 30.0
    loss = fgl_loss(corners.reshape(1, 1, -1), m, target, iou=torch.tensor([1.0]))
    # ~0 up to the rounding of the target (a 1e-6 weight on a neighbouring bin costs 60 nats)
    assert 0 <= loss.item() < 1e-3
    corners[..., reg_max // 2 + 1] = -30.0
    corners[..., reg_max // 2] = 30.0  # one bin off: about 60 nats per edge
    loss = fgl_loss(corners.reshape(1, 1, -1), m, target, iou=torch.tensor([1.0]))
    assert loss.item() == pytest.approx(4 * 60.0, rel=1e-3)


def test_fgl_of_a_uniform_distribution_is_log_bins():
    reg_max = 8
    target, m = _fgl_case(reg_max)
    corners = torch.zeros(1, 1, 4 * (reg_max + 1), requires_grad=True)
    loss = fgl_loss(corners, m._replace(num_boxes=2.0), target, iou=torch.tensor([0.5]))
    # four edges, each -log(1/9), weighted by the IoU 0.5, over num_boxes 2
    assert loss.item() == pytest.approx(4 * math.log(reg_max + 1) * 0.5 / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(corners.grad).all()


def test_ddf_is_zero_when_student_equals_teacher():
    corners = torch.randn(2, 3, 4 * 5)
    prob = torch.softmax(corners.reshape(-1, 5) / 5.0, dim=1)
    positive = torch.zeros(24, dtype=torch.bool)
    positive[:8] = True
    loss = ddf_loss(corners.clone(), prob, torch.rand(24), positive, (8, 16), num_pos=2.0, num_neg=3.0, temperature=5.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_ddf_closed_form():
    # 1 image, 1 query: 4 edges of 2 bins; student uniform, teacher on [0.8, 0.2] (after /T)
    t = 5.0
    teacher = torch.tensor([0.8, 0.2]).repeat(4, 1)
    student = torch.zeros(1, 1, 8)
    weight = torch.tensor([1.0, 1.0, 0.5, 0.5])
    kl = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    # all edges positive: the negative mean is absent
    positive = torch.ones(4, dtype=torch.bool)
    loss = ddf_loss(student, teacher, weight, positive, (4, 0), num_pos=1.0, num_neg=1.0, temperature=t)
    assert loss.item() == pytest.approx(t * t * kl * 0.75 * 1.0 / 2.0, rel=1e-5)
    # two positive, two negative edges, mixed by num_pos=1, num_neg=3
    positive = torch.tensor([True, True, False, False])
    loss = ddf_loss(student, teacher, weight, positive, (2, 2), num_pos=1.0, num_neg=3.0, temperature=t)
    assert loss.item() == pytest.approx((t * t * kl * 1.0 * 1 + t * t * kl * 0.5 * 3) / 4, rel=1e-5)
