"""COCO-format data: dataset, transforms, multi-scale collate and loaders.

The names below are imported on first use (PEP 562), so importing a torch-free part of the
package (``dfine.data.check``, ``dfine.data.convert``, ``dfine.data.cocojson``: what ``dfine
data check`` and ``dfine data convert`` run) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time see __getattr__
    from dfine.data.coco import CocoDetection
    from dfine.data.cocojson import DatasetError, LabelMap, label_map_from_coco, read_coco_json
    from dfine.data.collate import BatchCollate, multiscale_sizes
    from dfine.data.loader import DetectionDataLoader, build_dataloader, build_dataset, check_same_labels
    from dfine.data.transforms import DetectionTransform, build_transforms

# public name -> the module that defines it
_LAZY = {"CocoDetection": "coco", "DatasetError": "cocojson", "LabelMap": "cocojson",
         "label_map_from_coco": "cocojson", "read_coco_json": "cocojson", "BatchCollate": "collate",
         "multiscale_sizes": "collate", "DetectionDataLoader": "loader", "build_dataloader": "loader",
         "build_dataset": "loader", "check_same_labels": "loader", "DetectionTransform": "transforms",
         "build_transforms": "transforms"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"dfine.data.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dfine.data' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))


__all__ = list(_LAZY)
