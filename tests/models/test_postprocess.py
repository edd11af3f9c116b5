"""PostProcessor: focal top-k over (query, class) pairs, pixel boxes, category-id mapping."""

import pytest
import torch

import dfine
from dfine.data.mscoco import MSCOCO_CATEGORY_IDS


def _outputs():
    logits = torch.full((1, 3, 4), -10.0)
    logits[0, 0, 2] = 3.0   # best: query 0, class 2
    logits[0, 2, 1] = 1.0   # second: query 2, class 1
    logits[0, 1, 3] = 0.0   # third: query 1, class 3
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.25, 0.5, 0.5], [0.1, 0.9, 0.2, 0.2]]])
    return {"pred_logits": logits, "pred_boxes": boxes}


def test_top_k_pairs_and_pixel_boxes():
    post = dfine.PostProcessor(num_classes=4, num_top_queries=3)
    det = post(_outputs(), torch.tensor([[200.0, 100.0]]))[0]
    assert det["labels"].tolist() == [2, 1, 3]
    torch.testing.assert_close(det["scores"], torch.sigmoid(torch.tensor([3.0, 1.0, 0.0])))
    torch.testing.assert_close(det["boxes"][0], torch.tensor([80.0, 30.0, 120.0, 70.0]))
    torch.testing.assert_close(det["boxes"][1], torch.tensor([0.0, 80.0, 40.0, 100.0]))


def test_category_ids_and_mscoco_remap():
    post = dfine.PostProcessor(num_classes=4, num_top_queries=2, category_ids=[10, 20, 30, 40])
    assert post(_outputs(), torch.tensor([[1.0, 1.0]]))[0]["labels"].tolist() == [30, 20]
    logits = torch.full((1, 2, 80), -10.0)
    logits[0, 0, 79] = 5.0
    out = {"pred_logits": logits, "pred_boxes": torch.rand(1, 2, 4)}
    coco = dfine.PostProcessor(num_classes=80, num_top_queries=1, remap_mscoco_category=True)
    assert coco(out, torch.tensor([[1.0, 1.0]]))[0]["labels"].tolist() == [MSCOCO_CATEGORY_IDS[79]] == [90]


def test_deploy_form_is_a_tuple_of_batched_tensors():
    labels, boxes, scores = dfine.PostProcessor(num_classes=4, num_top_queries=2).deploy()(
        _outputs(), torch.tensor([[1.0, 1.0]]))
    assert labels.shape == (1, 2) and boxes.shape == (1, 2, 4) and scores.shape == (1, 2)


def test_wrong_category_table_length():
    with pytest.raises(ValueError, match="3 entries but num_classes is 4"):
        dfine.PostProcessor(num_classes=4, category_ids=[1, 2, 3])
