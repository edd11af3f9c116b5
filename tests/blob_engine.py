"""A stand-in model for tests of Detector plumbing (orientation, bit depth, slicing, batching):
it "detects" bright blobs (connected components above 0.5 in the model input) as class 0 with
score 0.9, in original-image pixels, like a real D-FINE engine's ``run``. Objects smaller than
``min_px`` model-input pixels on a side are missed, as a real detector misses them."""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
from scipy import ndimage

from dfine.inference import _Engine


def blob_run(min_px: int = 2, max_dets: int = 50):
    calls: List[int] = []

    def run(images: np.ndarray, sizes: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        calls.append(len(images))
        b, _, h, w = images.shape
        labels = np.zeros((b, max_dets), np.int64)
        boxes = np.zeros((b, max_dets, 4), np.float32)
        scores = np.zeros((b, max_dets), np.float32)
        for i in range(b):
            comps, _ = ndimage.label(images[i].max(axis=0) > 0.5)
            found = [s for s in ndimage.find_objects(comps)
                     if s[0].stop - s[0].start >= min_px and s[1].stop - s[1].start >= min_px][:max_dets]
            sx, sy = sizes[i][0] / w, sizes[i][1] / h
            for k, (ys, xs) in enumerate(found):
                boxes[i, k] = (xs.start * sx, ys.start * sy, xs.stop * sx, ys.stop * sy)
                scores[i, k] = 0.9
        return labels, boxes, scores
    run.calls = calls  # type: ignore[attr-defined]
    return run


def blob_engine(imgsz=(128, 128), min_px: int = 2) -> _Engine:
    return _Engine(blob_run(min_px), "torch", tuple(imgsz), ("blob",), (1,))


def patch_detector(monkeypatch, imgsz=(128, 128), min_px: int = 2) -> _Engine:
    """Make every ``Detector(...)`` run on a blob engine; returns the engine."""
    engine = blob_engine(imgsz, min_px)
    monkeypatch.setattr("dfine.inference._open", lambda *a, **k: engine)
    return engine
