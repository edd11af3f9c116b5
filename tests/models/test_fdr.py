"""The FDR maths: weighting function, integral, box decoding and its inverse."""

import torch

from dfine.models.fdr import bbox2distance, box_cxcywh_to_xyxy, distance2bbox, integral, weighting_function

UP, SCALE = torch.tensor([0.5]), torch.tensor([4.0])


def test_weighting_function_shape_symmetry_and_ends():
    w = weighting_function(32, UP, SCALE)
    assert w.shape == (33,)
    assert w[16] == 0
    torch.testing.assert_close(w, -w.flip(0))
    assert torch.all(w[1:] > w[:-1])  # strictly increasing
    torch.testing.assert_close(w[[0, -1]], torch.tensor([-4.0, 4.0]))  # +-2 |up * reg_scale|
    # geometric growth between the inner bins: (W(i+1) + 1) / (W(i) + 1) is constant on the right side
    ratios = (w[18:32] + 1) / (w[17:31] + 1)
    torch.testing.assert_close(ratios, torch.full_like(ratios, ratios[0].item()))


def test_integral_of_one_hot_distribution_is_the_bin_position():
    w = weighting_function(32, UP, SCALE)
    corners = torch.full((2, 4 * 33), -1e4)
    bins = torch.tensor([[0, 16, 20, 32], [5, 16, 16, 27]])
    for b in range(2):
        for e in range(4):
            corners[b, e * 33 + bins[b, e]] = 1e4
    torch.testing.assert_close(integral(corners, w), w[bins])


def test_zero_offsets_give_back_the_reference_box():
    ref = torch.tensor([[0.5, 0.4, 0.2, 0.3], [0.1, 0.9, 0.05, 0.1]])
    torch.testing.assert_close(distance2bbox(ref, torch.zeros(2, 4), SCALE), ref)


def test_bbox2distance_inverts_distance2bbox():
    ref = torch.tensor([[0.5, 0.4, 0.2, 0.3]])
    offsets = torch.tensor([[0.3, -0.2, 1.1, 0.0]])
    box = box_cxcywh_to_xyxy(distance2bbox(ref, offsets, SCALE))
    index, w_right, w_left = bbox2distance(ref, box, 32, SCALE, UP)
    w = weighting_function(32, UP, SCALE)
    left = index.floor().long()
    recovered = w[left] * w_left + w[left + 1] * w_right
    torch.testing.assert_close(recovered, offsets.reshape(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(w_left + w_right, torch.ones(4))
