"""Model outputs -> detections in image pixels."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_convert


class PostProcessor(nn.Module):
    """Top-``num_top_queries`` (query, class) pairs by sigmoid score, boxes scaled to pixels.

    ``post(outputs, orig_sizes)`` with ``outputs`` holding ``pred_logits [B, Q, C]`` and
    ``pred_boxes [B, Q, 4]`` (normalised cxcywh) and ``orig_sizes [B, 2]`` as (width, height)
    returns one dict per image: ``labels [K]`` int64, ``boxes [K, 4]`` xyxy pixels, ``scores [K]``.
    With ``category_ids`` (label -> dataset category id), labels come back as category ids;
    ``remap_mscoco_category=True`` uses COCO's own 80 ids. After :meth:`deploy` it returns the
    tuple ``(labels [B, K], boxes [B, K, 4], scores [B, K])`` (the ONNX form).
    """

    def __init__(self, num_classes: int = 80, num_top_queries: int = 300, use_focal_loss: bool = True,
                 remap_mscoco_category: bool = False, category_ids: Optional[Sequence[int]] = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.num_top_queries = int(num_top_queries)
        self.use_focal_loss = use_focal_loss
        if remap_mscoco_category and category_ids is None:
            from ..data.mscoco import MSCOCO_CATEGORY_IDS
            category_ids = MSCOCO_CATEGORY_IDS
        if category_ids is not None and len(category_ids) != self.num_classes:
            raise ValueError(f"category_ids has {len(category_ids)} entries but num_classes is {self.num_classes}")
        self.register_buffer("category_ids", None if category_ids is None
                             else torch.tensor(list(category_ids), dtype=torch.int64), persistent=False)
        self.deploy_mode = False

    def deploy(self) -> "PostProcessor":
        self.eval()
        self.deploy_mode = True
        return self

    def forward(self, outputs: Dict[str, Tensor], orig_sizes: Tensor
                ) -> Union[List[Dict[str, Tensor]], Tuple[Tensor, Tensor, Tensor]]:
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        boxes = box_convert(boxes, in_fmt="cxcywh", out_fmt="xyxy") * orig_sizes.repeat(1, 2).unsqueeze(1)
        if self.use_focal_loss:
            k = min(self.num_top_queries, logits.shape[1] * logits.shape[2])
            scores, index = torch.topk(torch.sigmoid(logits).flatten(1), k, dim=-1)
            labels = index - index // self.num_classes * self.num_classes  # modulo, exportable
            query = index // self.num_classes
            boxes = boxes.gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
        else:
            scores, labels = F.softmax(logits, dim=-1)[:, :, :-1].max(dim=-1)
            if scores.shape[1] > self.num_top_queries:
                scores, index = torch.topk(scores, self.num_top_queries, dim=-1)
                labels = labels.gather(1, index)
                boxes = boxes.gather(1, index.unsqueeze(-1).expand(-1, -1, 4))
        if self.deploy_mode:
            return labels, boxes, scores
        if self.category_ids is not None:
            labels = self.category_ids.to(labels.device)[labels]
        return [{"labels": lab, "boxes": box, "scores": sco} for lab, box, sco in zip(labels, boxes, scores)]
