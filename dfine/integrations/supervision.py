"""``supervision`` glue: :class:`dfine.inference.Detections` -> ``supervision.Detections``, and the
annotators ``dfine track`` draws with (boxes, ``#id class`` labels, short trails).

supervision is an optional extra (``pip install dfine[track]``), imported here on first use only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional

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
    track (coloured by track id) and a trail of its last ``trail`` centre points."""

    def __init__(self, trail: int = 30):
        import_supervision()
        self.trail = trail
        self._size: Any = None

    def _annotators(self, width: int, height: int) -> None:
        """Text and lines sized for the frame (supervision's choice: text scale 1 per 1000 px of the
        shorter side, at least 0.4; lines 2 px, 4 from 1080p), made for the first frame."""
        sv = import_supervision()
        lookup, wh = sv.ColorLookup.TRACK, (width, height)
        scale, thickness = max(0.4, sv.calculate_optimal_text_scale(wh)), sv.calculate_optimal_line_thickness(wh)
        self._boxes = sv.BoxAnnotator(thickness=thickness, color_lookup=lookup)
        # smart_position: labels kept inside the frame and apart (a box at the top border had its '#id class'
        # drawn above the frame, so not at all: a walk's overhead video showed no id on cars coming in)
        self._labels = sv.LabelAnnotator(text_scale=scale, text_thickness=max(1, thickness // 2),
                                         text_padding=max(3, round(6 * scale)), color_lookup=lookup,
                                         smart_position=True)
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
        return self._labels.annotate(scene, tracks, labels=labels)


def _names(dets: Any) -> List[str]:
    names: Optional[np.ndarray] = dets.data.get("class_name")
    return [str(n) for n in names] if names is not None else [str(c) for c in dets.class_id]
