"""An appearance cue for the ``trackers`` package's association: colour histograms of the boxes.

The package's ByteTrack, SORT and OC-SORT match detections to tracks by motion alone (a Kalman
prediction and IoU), and none of its trackers takes re-identification features. Two things go wrong
without one (measured on ``benchmarks/tracking.py``'s videos): in a pile of overlapping objects of
similar size the IoU prefers the wrong neighbour and ids swap, and after an occlusion the motion
prediction has drifted off the object, which then comes back under a new id. The trackers take their
box similarity as a pluggable ``iou`` object (a ``trackers.utils.iou.BaseIoU``); :class:`ColourCue` is
one, so the trackers' own matching, stages and track life cycle run unchanged, and only the
similarity they match on changes (``T`` tracks, ``D`` detections, both ``[.., 4]`` xyxy pixels)::

    sim[t, d] = max(iou[t, d] * (FLOOR + (1 - FLOOR) * app[t, d]),
                    REID * app[t, d]  if app[t, d] >= REID_MIN and d's centre is within GATE box sizes of t's
                                      (predicted box, or the box it was last seen in))
    sim[t, d] = 0   if another track u near d has app[u, d] >= REID_MIN and app[u, d] - app[t, d] >= VETO_MARGIN

``app`` is the histogram intersection (0..1) of the track's colour histogram (a running mean over the
detections it took that overlapped no other detection) and the detection's (RGB, 8 bins a channel, of
the middle half of the box, which for a convex object is mostly the object). ``FLOOR`` keeps a track
whose object changed colour (lighting) matchable by motion at a lower score. The veto keeps a
track from taking, by motion, the box of a neighbour that is clearly another track's colour (ByteTrack
matches its high- and low-score boxes in two separate rounds, so the neighbour may already have a
box of the first round and the second would hand its partial box to the wrong track). A new track
that is a second box on an object already tracked is removed at birth (:meth:`ColourCue.learn`).
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Dict, List, Optional

import numpy as np
from trackers.utils.iou import BaseIoU

BINS = 8        # histogram bins per RGB channel
INNER = 0.5     # side of the middle part of a box whose colours are counted, as a share of the box side
FLOOR = 0.4     # a pair with no colour in common keeps this share of its IoU
REID = 0.5      # similarity of a pair matched on colour alone (above the trackers' IoU thresholds: 0.1, 0.3)
REID_MIN = 0.6  # colour agreement such a pair needs
GATE = 3.0      # ... and how near it must be: centres within this many box sizes (sqrt of the area)
SAMPLES = 64    # pixels counted per side of a box's middle part, at most
MOMENTUM = 0.9  # weight of the old histogram in a track's running mean
CLEAN_IOU = 0.3  # a detection overlapping another by this IoU mixes two objects' colours: not learnt from
LEARN_MIN = 0.5  # ... nor is one whose colours agree less than this with the track's (a box around two objects)
VETO_MARGIN = 0.3  # a pair is not matched when a nearby track agrees by REID_MIN and by this much more in colour
BIRTH_OVERLAP = 0.5  # a new track whose box shares this much of the smaller box with an older track's ...


def colour_histograms(frame: np.ndarray, boxes: np.ndarray, bins: int = BINS, inner: float = INNER,
                      samples: int = SAMPLES) -> np.ndarray:
    """``[N, bins**3]`` float32 RGB histograms (each summing to 1; 0 for an empty crop) of the middle
    ``inner`` part of each of ``boxes [N, 4]`` (xyxy pixels) in ``frame [H, W, 3]`` RGB uint8, counted
    on a grid of at most ``samples`` x ``samples`` pixels (the cost stays flat on large boxes)."""
    h, w = frame.shape[:2]
    out = np.zeros((len(boxes), bins ** 3), np.float32)
    weights = np.array([bins * bins, bins, 1], np.int32)
    for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, float)):
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * inner / 2, (y1 - y0) * inner / 2
        top, left = max(0, math.floor(cy - hh)), max(0, math.floor(cx - hw))
        bottom, right = min(h, math.ceil(cy + hh)), min(w, math.ceil(cx + hw))
        if bottom <= top or right <= left:
            continue
        step_y, step_x = -(-(bottom - top) // samples), -(-(right - left) // samples)
        codes = (frame[top:bottom:step_y, left:right:step_x].astype(np.int32) * bins // 256) @ weights
        out[k] = np.bincount(codes.ravel(), minlength=bins ** 3) / codes.size
    return out


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Histogram intersection ``[T, D]`` of ``a [T, K]`` and ``b [D, K]``."""
    return np.minimum(a[:, None, :], b[None, :, :]).sum(-1)


class ColourCue(BaseIoU):
    """The similarity a ``trackers`` tracker matches on: IoU fused with colour agreement (module doc).

    Call :meth:`observe` with each frame and its detections before the tracker's ``update`` and
    :meth:`learn` with ``update``'s result after it. Tracks are known by the tracker's tracklet objects
    (looked up from the predicted boxes the tracker passes in, which are theirs exactly), detections by
    their boxes (the trackers pass rows of ``detections.xyxy``)."""

    def __init__(self, tracker: Any):
        self.tracker = tracker
        self.colours: "weakref.WeakKeyDictionary[Any, np.ndarray]" = weakref.WeakKeyDictionary()
        self.seen: "weakref.WeakKeyDictionary[Any, np.ndarray]" = weakref.WeakKeyDictionary()  # last matched box
        self._boxes = np.zeros((0, 4), np.float32)
        self._hists = np.zeros((0, BINS ** 3), np.float32)
        self._index: Dict[bytes, int] = {}
        self._clean = np.zeros(0, bool)
        self._before: set = set()

    def observe(self, frame: np.ndarray, boxes: np.ndarray) -> None:
        """The frame ``[H, W, 3]`` RGB uint8 and the boxes ``[D, 4]`` about to be given to the tracker."""
        from supervision import box_iou_batch
        self._boxes = np.asarray(boxes)
        self._hists = colour_histograms(frame, self._boxes)
        self._index = {b.tobytes(): i for i, b in enumerate(self._boxes)}
        overlap = box_iou_batch(self._boxes, self._boxes) if len(self._boxes) else np.zeros((0, 0))
        np.fill_diagonal(overlap, 0)
        self._clean = overlap.max(1, initial=0) < CLEAN_IOU
        self._before = set(self.tracker.tracks)  # tracklets compare by identity

    def learn(self, result: Any) -> None:
        """Update the tracks' colours from the tracker's output ``result`` (supervision.Detections with
        ``tracker_id``): each confirmed track from the detection it took, each new track from the
        detection it was started from, unless it is a second track on an object already tracked (removed)."""
        by_id = {t.tracker_id: t for t in self.tracker.tracks if t.tracker_id >= 0}
        for box, tid in zip(result.xyxy, result.tracker_id):
            j = self._index.get(np.asarray(box, self._boxes.dtype).tobytes())
            if tid >= 0 and tid in by_id and j is not None:
                self._learn(by_id[tid], j)
        new = [t for t in self.tracker.tracks if t not in self._before and t not in self.colours]
        if new and len(self._boxes):
            from supervision import box_iou_batch
            overlap = box_iou_batch(np.array([t.get_state_bbox() for t in new]), self._boxes)
            for t, row in zip(new, overlap):
                self._learn(t, int(row.argmax()))
            self._gate_births(new, overlap.argmax(1))
        for t in self.tracker.tracks:
            if t.time_since_update == 0:
                self.seen[t] = np.asarray(t.get_state_bbox(), float)

    def _gate_births(self, new: List[Any], dets: np.ndarray) -> None:
        """Remove the new tracks (started from detections ``dets``) that duplicate an older one: their
        box overlaps its box (the one it took this frame, or its prediction while lost) by at least
        BIRTH_OVERLAP of the smaller box, and their colours agree by REID_MIN or more. Such a box is a
        second, partial box of an object already tracked (the detector often adds one for a half-hidden
        object); as a track of its own it would take the object's boxes in turns with the first."""
        from supervision import box_iou_batch
        old = [t for t in self.tracker.tracks if t in self._before and t in self.colours]
        if not old:
            return
        inside = box_iou_batch(np.array([t.get_state_bbox() for t in new]),
                               np.array([t.get_state_bbox() for t in old]), overlap_metric="IOS")
        same = _intersection(self._hists[dets], np.stack([self.colours[t] for t in old])) >= REID_MIN
        for t, dup in zip(new, ((inside >= BIRTH_OVERLAP) & same).any(1)):
            if dup:
                self.tracker.tracks.remove(t)
                self.colours.pop(t, None)

    def _learn(self, track: Any, j: int) -> None:
        if not self._clean[j]:
            return
        old = self.colours.get(track)
        if old is None:
            self.colours[track] = self._hists[j].copy()
        elif np.minimum(old, self._hists[j]).sum() >= LEARN_MIN:
            self.colours[track] = MOMENTUM * old + (1 - MOMENTUM) * self._hists[j]

    def _tracks_of(self, predicted: np.ndarray) -> List[Optional[Any]]:
        table: Dict[bytes, list] = {}
        for t in self.tracker.tracks:
            table.setdefault(np.asarray(t.get_state_bbox()).tobytes(), []).append(t)
        return [(table.get(np.asarray(b).tobytes()) or [None]).pop(0) for b in predicted]

    def _compute(self, boxes_1: np.ndarray, boxes_2: np.ndarray) -> np.ndarray:
        """``[T, D]`` similarity of predicted track boxes ``boxes_1`` and detection boxes ``boxes_2``."""
        from supervision import box_iou_batch
        iou = box_iou_batch(boxes_1, boxes_2)
        tracks = self._tracks_of(boxes_1)
        dets = [self._index.get(np.asarray(b, self._boxes.dtype).tobytes()) for b in boxes_2]
        app = np.ones_like(iou)  # a track with no colour yet: motion alone decides
        known_pair = np.zeros(iou.shape, bool)
        rows = [r for r, t in enumerate(tracks) if t is not None and t in self.colours]
        cols = [c for c, j in enumerate(dets) if j is not None]
        if rows and cols:
            hists = self._hists[[dets[c] for c in cols]]
            app[np.ix_(rows, cols)] = _intersection(np.stack([self.colours[tracks[r]] for r in rows]), hists)
            known_pair[np.ix_(rows, cols)] = True
        sim = np.maximum(iou * (FLOOR + (1 - FLOOR) * app),
                         np.where(self._near(tracks, boxes_1, boxes_2) & known_pair & (app >= REID_MIN), REID * app, 0.0))
        if rows and cols:
            best = self._best_colour(hists, np.asarray(boxes_2)[cols])
            veto = (best >= REID_MIN) & (best - app[np.ix_(rows, cols)] >= VETO_MARGIN)
            sim[np.ix_(rows, cols)] = np.where(veto, 0.0, sim[np.ix_(rows, cols)])
        return sim

    def _best_colour(self, hists: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``[1, D]``: for each detection (histograms ``[D, K]``, boxes ``[D, 4]``), the best colour
        agreement of any track with a colour near it (:meth:`_near`; the track's box is its prediction,
        or the box it took this frame), whichever stage of the tracker's matching it is in."""
        tracks = [t for t in self.tracker.tracks if t in self.colours]
        if not tracks:
            return np.zeros((1, len(boxes)))
        app = _intersection(np.stack([self.colours[t] for t in tracks]), hists)
        near = self._near(tracks, np.array([t.get_state_bbox() for t in tracks]), boxes)
        return np.where(near, app, 0.0).max(0, keepdims=True)

    def _near(self, tracks: List[Optional[Any]], predicted: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``[T, D]`` bool: each of ``boxes`` lies near track ``t`` (GATE box sizes) of its ``predicted``
        box or of the box it was last seen in (a lost object is searched for both where its motion
        model expects it and where it was last seen: the prediction drifts during an occlusion)."""
        seen = np.array([self.seen.get(t, p) if t is not None else p for t, p in zip(tracks, np.asarray(predicted, float))])
        return _near(predicted, boxes) | _near(seen.reshape(-1, 4), boxes)


def _near(boxes_1: np.ndarray, boxes_2: np.ndarray) -> np.ndarray:
    """``[T, D]`` bool: the centre of each of ``boxes_2`` lies within GATE box sizes (sqrt of the area)
    of the centre of each of ``boxes_1`` (both xyxy pixels)."""
    b1, b2 = np.asarray(boxes_1, float), np.asarray(boxes_2, float)
    centre_1, centre_2 = (b1[:, :2] + b1[:, 2:]) / 2, (b2[:, :2] + b2[:, 2:]) / 2
    size = np.sqrt(np.clip((b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1]), 0, None))[:, None]
    return np.linalg.norm(centre_1[:, None] - centre_2[None], axis=2) < GATE * size
