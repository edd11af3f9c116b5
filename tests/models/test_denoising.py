"""Contrastive denoising groups: shapes, noise bounds and the attention mask."""

import torch
import torch.nn as nn

from dfine.models.denoising import contrastive_denoising_group, denoising_attn_mask


def _targets():
    return [{"labels": torch.tensor([1, 2, 3]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 3)},
            {"labels": torch.tensor([4]), "boxes": torch.tensor([[0.3, 0.3, 0.1, 0.4]])}]


def test_groups_cannot_see_each_other_and_matching_queries_cannot_see_denoising():
    num_gt, groups, queries = 3, 4, 10
    mask = denoising_attn_mask(num_gt, groups, queries, torch.device("cpu"))
    num_dn = 2 * num_gt * groups
    assert mask.shape == (num_dn + queries, num_dn + queries)
    for i in range(num_dn):
        for j in range(num_dn):
            assert mask[i, j] == (i // (2 * num_gt) != j // (2 * num_gt))
    assert mask[num_dn:, :num_dn].all()  # matching queries never see denoising queries
    assert not mask[:, num_dn:].any()  # everyone sees the matching queries


def test_masked_attention_keeps_groups_apart():
    """Changing one group's content leaves every other group's attention output unchanged."""
    num_gt, groups, queries, dim = 2, 3, 5, 8
    mask = denoising_attn_mask(num_gt, groups, queries, torch.device("cpu"))
    attn = nn.MultiheadAttention(dim, 2, batch_first=True)
    x = torch.randn(1, mask.shape[0], dim)
    y = x.clone()
    y[:, 0:4] += 5.0  # group 0
    out_x, _ = attn(x, x, x, attn_mask=mask)
    out_y, _ = attn(y, y, y, attn_mask=mask)
    torch.testing.assert_close(out_x[:, 4:], out_y[:, 4:])
    assert not torch.allclose(out_x[:, :4], out_y[:, :4])


def test_group_shapes_and_positive_indices():
    embed = nn.Embedding(6, 16, padding_idx=5)
    g = contrastive_denoising_group(_targets(), num_classes=5, num_queries=10, class_embed=embed,
                                    num_denoising=12, label_noise_ratio=0.5, box_noise_scale=1.0)
    groups = 12 // 3
    assert g.meta["dn_num_group"] == groups
    assert g.meta["dn_num_split"] == [2 * 3 * groups, 10]
    assert g.content.shape == (2, 24, 16) and g.ref_unact.shape == (2, 24, 4)
    assert [len(i) for i in g.meta["dn_positive_idx"]] == [3 * groups, 1 * groups]
    boxes = torch.sigmoid(g.ref_unact)
    assert ((boxes >= 0) & (boxes <= 1)).all()


def test_no_targets_gives_an_empty_group():
    embed = nn.Embedding(6, 16, padding_idx=5)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    g = contrastive_denoising_group(empty, 5, 10, embed)
    assert g.content is None and g.meta["dn_num_split"] == [0, 10]
