"""``supervision`` glue: :class:`dfine.inference.Detections` -> ``supervision.Detections``, and the
annotators ``dfine track`` draws with (boxes, ``#id class`` labels, short trails).

supervision is an optional extra (``pip install dfine[track]``), imported here on first use only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Union

import numpy as np

from ..errors import DfineError

if TYPE_CHECKING:  # pragma: no cover
    from ..inference import Detections

INSTALL_HINT = 'pip install "dfine[track]"'


def import_supervision() -> Any:
    """The ``supervision`` module, or a one-line error saying how to install it."""
    try:
        import supervision
    except ImportError:
        raise DfineError(f"this needs the supervision package: {INSTALL_HINT}") from None
    return supervision


def to_supervision(dets: "Detections") -> Any:
    """``supervision.Detections`` of one image: ``xyxy [K, 4]`` pixels, ``confidence [K]``,
    ``class_id [K]`` model labels, ``data['class_name'] [K]`` names and ``data['category_id'] [K]``
    the dataset's ids; ``metadata['path']`` the image path when there is one."""
    sv = import_supervision()
    out = sv.Detections(xyxy=np.asarray(dets.boxes, dtype=np.float32).reshape(-1, 4),
                        confidence=np.asarray(dets.scores, dtype=np.float32),
                        class_id=np.asarray(dets.labels, dtype=np.int64),
                        data={"class_name": np.array(dets.names, dtype=str).reshape(-1),
                              "category_id": np.asarray(dets.category_ids, dtype=np.int64)})
    if dets.path is not None:
        out.metadata["path"] = dets.path
    return out


class TrackAnnotator:
    """Draws tracked ``supervision.Detections`` on RGB frames: a box and a ``#id class`` label per
    track (coloured by track id) and a trail of its last ``trail`` centre points. ``labels``: ``"auto"``
    (supervision's text size for the frame, smaller on boxes smaller than a label), ``"none"`` (boxes and
    trails alone) or the text's height in px, as :func:`dfine.drawing.draw`'s."""

    def __init__(self, trail: int = 30, labels: Union[str, int, bool] = "auto"):
        from ..drawing import label_px
        import_supervision()
        label_px(labels, (1, 1), np.zeros((0, 4)))  # a bad value fails here, not in the writer thread
        self.trail = trail
        self.labels = labels
        self._size: Any = None

    def _annotators(self, width: int, height: int) -> None:
        """Text and lines sized for the frame (supervision's choice: text scale 1 per 1000 px of the
        shorter side, at least 0.4; lines 2 px, 4 from 1080p), made for the first frame."""
        sv = import_supervision()
        lookup, wh = sv.ColorLookup.TRACK, (width, height)
        self._scale, thickness = max(0.4, sv.calculate_optimal_text_scale(wh)), sv.calculate_optimal_line_thickness(wh)
        self._text_thickness = max(1, thickness // 2)
        self._boxes = sv.BoxAnnotator(thickness=thickness, color_lookup=lookup)
        self._trails = sv.TraceAnnotator(trace_length=self.trail, thickness=thickness, color_lookup=lookup)
        self._size = wh

    def __call__(self, frame: np.ndarray, tracks: Any) -> np.ndarray:
        """A copy of ``frame [H, W, 3]`` uint8 with ``tracks`` (carrying ``tracker_id``) drawn."""
        if self._size is None:
            self._annotators(frame.shape[1], frame.shape[0])
        scene = frame.copy()
        labels: List[str] = [f"#{int(t)} {n}" for t, n in zip(tracks.tracker_id, _names(tracks))]
        scene = self._trails.annotate(scene, tracks)
        scene = self._boxes.annotate(scene, tracks)
        return self._draw_labels(scene, tracks, labels)

    def text_scale(self, boxes: np.ndarray) -> Optional[float]:
        """The labels' OpenCV text scale over ``boxes [N, 4]`` (xyxy px) in this frame (None: no labels): the
        frame's, no taller than :func:`dfine.drawing.label_px` allows for those boxes (40x20 px cars under
        ~100x30 px labels on a 1080p drone video: a walk), in steps of 0.05 so that it does not flicker."""
        from ..drawing import label_px
        px = label_px(self.labels, self._size, boxes)
        if px is None:
            return None
        if self.labels == "auto" or self.labels is True:
            return min(self._scale, max(0.05, round(px / _px_per_scale() / 0.05) * 0.05))
        return px / _px_per_scale()

    def _draw_labels(self, scene: np.ndarray, tracks: Any, texts: Sequence[str]) -> np.ndarray:
        """``texts`` in bands of the tracks' colours, each where :func:`dfine.drawing.place_label` puts
        ``dfine predict``'s labels (inside the frame, over no label placed before it nor over much of another
        box; left out where there is no such place), the best score placed first."""
        import cv2

        from ..drawing import COVER_SHARE, place_label
        sv = import_supervision()
        boxes = np.asarray(tracks.xyxy, dtype=np.float64).reshape(-1, 4)
        scale = self.text_scale(boxes) if len(boxes) else None
        if scale is None:
            return scene
        pad = max(2, round(6 * scale))
        scores = tracks.confidence if tracks.confidence is not None else np.zeros(len(boxes))
        spots: dict = {}
        for i in np.argsort(-np.asarray(scores), kind="stable").tolist():
            (w, h), _ = cv2.getTextSize(texts[i], cv2.FONT_HERSHEY_SIMPLEX, scale, self._text_thickness)
            spot = place_label(boxes[i].tolist(), (w + 2 * pad, h + 2 * pad), self._size, list(spots.values()),
                               np.delete(boxes, i, axis=0), COVER_SHARE)
            if spot is not None:
                spots[i] = spot
        palette = sv.ColorPalette.DEFAULT  # the boxes' and trails' colours, by track id
        for i, (x0, y0, x1, y1) in spots.items():
            scene = sv.draw_text(scene, texts[i], sv.Point(x=(x0 + x1) / 2, y=(y0 + y1) / 2), text_color=sv.Color.WHITE,
                                 text_scale=scale, text_thickness=self._text_thickness, text_padding=pad,
                                 background_color=palette.by_idx(int(tracks.tracker_id[i])))
        return scene


def _px_per_scale() -> float:
    """The height in px of OpenCV's Hershey text at scale 1, as ``getTextSize`` measures it (22 to 27 px)."""
    import cv2
    return float(cv2.getTextSize("#0 car", cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][1])


def _names(dets: Any) -> List[str]:
    names: Optional[np.ndarray] = dets.data.get("class_name")
    return [str(n) for n in names] if names is not None else [str(c) for c in dets.class_id]
