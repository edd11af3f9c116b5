"""COCO-format data: dataset, transforms, multi-scale collate and loaders."""

from dfine.data.coco import CocoDetection, DatasetError, LabelMap, label_map_from_coco, read_coco_json
from dfine.data.collate import BatchCollate, multiscale_sizes
from dfine.data.loader import DetectionDataLoader, build_dataloader, build_dataset, check_same_labels
from dfine.data.transforms import DetectionTransform, build_transforms

__all__ = ["CocoDetection", "DatasetError", "LabelMap", "label_map_from_coco", "read_coco_json", "BatchCollate",
           "multiscale_sizes", "DetectionDataLoader", "build_dataloader", "build_dataset", "check_same_labels",
           "DetectionTransform", "build_transforms"]
