"""Multi-object tracking on D-FINE detections with the ``trackers`` package (ByteTrack, SORT, OC-SORT).

>>> for frame, tracks in dfine.track("street.mp4", model="dfine_s_coco"):   # doctest: +SKIP
...     tracks.xyxy, tracks.tracker_id, tracks.data["class_name"]

Frames are decoded in a reader thread (:class:`dfine.video.FrameReader`) while the detector runs on
batches of them, then fed one by one, in order, to the tracker. The trackers are the maintained ones
from Roboflow's ``trackers`` package (supervision's own ByteTrack is deprecated in its favour); both
are optional (``pip install dfine[track]``) and imported on first use.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DfineError, keyword_hints
from ..text import counted
from ..inference import class_filter
from ..video import STREAM_TIMEOUT, FrameReader, FrameSource, open_source
from .supervision import INSTALL_HINT, import_supervision, to_supervision

TRACKERS = ("bytetrack", "sort", "ocsort")
# what the association compares besides motion: "colour" (dfine.integrations.appearance) or "none"
APPEARANCE = ("colour", "none")
# ByteTrack's second association stage matches lost tracks to detections down to this score
LOW_SCORE = 0.1
# D-FINE ranks (query, class) pairs, so one box can come back under two classes (and two queries can
# find one object); trackers ignore classes, so before tracking, boxes overlapping a better one by
# IoU >= this are dropped whatever their class
NMS_IOU = 0.7
# frames (at 30 fps) a lost track waits: twice the trackers' own 30. An object hidden behind another is
# scored low by the detector, so SORT and OC-SORT (which see only boxes above --conf) lose it for as
# long as the occlusion lasts (up to ~45 frames in benchmarks/tracking.py's videos); a track waiting
# that long is only taken back by a box near where it was predicted or last seen that agrees with its
# colour (dfine.integrations.appearance), as DeepSORT's appearance gate lets it wait 70 frames
LOST_FRAMES = 60


def import_trackers() -> Any:
    try:
        import trackers
    except ImportError:
        raise DfineError(f"tracking needs the trackers package: {INSTALL_HINT}") from None
    return trackers


@dataclass(frozen=True)
class TrackerConfig:
    """How detections become tracks (the ``trackers`` package's settings, named once for all three).

    ``name``: ``bytetrack``, ``sort`` or ``ocsort``. ``conf``: the score a detection needs to start a
    track (ByteTrack: also to be matched in its first stage; SORT and OC-SORT get no detection below it).
    ``low_conf``: ByteTrack only, detections down to this score can continue a track (its second stage,
    which keeps tracks through occlusions). ``match_iou``: the IoU a detection needs with a track's
    predicted box to continue it (None: the tracker's own default, 0.1 ByteTrack, 0.3 SORT and OC-SORT).
    ``lost_frames``: how many frames (counted at 30 fps, scaled to the video's rate) a track that
    lost its object waits to be found again before a new id is given (LOST_FRAMES: 2 s, longer than
    the trackers' own 1 s, as the colour cue guards the late matches). ``min_frames``: frames in a row
    a new track must be matched before it gets an id (None: the tracker's default, 2 ByteTrack, 3
    SORT and OC-SORT). ``nms``: before tracking, boxes overlapping a better one by this IoU are
    dropped whatever their class (None: off). ``appearance``: ``colour`` (default) also compares the
    boxes' colour histograms when matching (:mod:`dfine.integrations.appearance`), ``none`` matches on
    motion alone as the trackers do by themselves."""

    name: str = "bytetrack"
    conf: float = 0.5
    low_conf: float = LOW_SCORE
    match_iou: Optional[float] = None
    lost_frames: int = LOST_FRAMES
    min_frames: Optional[int] = None
    nms: Optional[float] = NMS_IOU
    appearance: str = "colour"

    def __post_init__(self):
        if self.name not in TRACKERS:
            raise DfineError(f"unknown tracker {self.name!r}; choose one of {', '.join(TRACKERS)}")
        if self.appearance not in APPEARANCE:
            raise DfineError(f"unknown appearance cue {self.appearance!r}; choose one of {', '.join(APPEARANCE)}")
        for key in ("conf", "low_conf", "match_iou", "nms"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= 1:
                raise DfineError(f"tracker {key} must be in 0..1, got {value}")
        if self.lost_frames < 0:
            raise DfineError(f"tracker lost_frames must be >= 0, got {self.lost_frames}")
        if self.min_frames is not None and self.min_frames < 1:
            raise DfineError(f"tracker min_frames must be >= 1, got {self.min_frames}")

    @property
    def detection_conf(self) -> float:
        """The detector's score threshold: ByteTrack also gets the low-score detections it uses to keep
        tracks through occlusions; SORT and OC-SORT match every detection they get, so only ``conf`` ones."""
        return min(self.conf, self.low_conf) if self.name == "bytetrack" else self.conf

    def make(self, fps: float) -> "FrameTracker":
        """A fresh tracker for a video of ``fps`` frames per second."""
        trackers = import_trackers()
        kw: Dict[str, Any] = {"frame_rate": fps, "lost_track_buffer": self.lost_frames}
        if self.match_iou is not None:
            kw["minimum_iou_threshold"] = self.match_iou
        if self.min_frames is not None:
            kw["minimum_consecutive_frames"] = self.min_frames
        cue = None
        if self.appearance == "colour":
            from .appearance import ColourCue
            cue = kw["iou"] = ColourCue(tracker=None)
        if self.name == "bytetrack":
            tracker = trackers.ByteTrackTracker(track_activation_threshold=self.conf, high_conf_det_threshold=self.conf, **kw)
        elif self.name == "sort":
            tracker = trackers.SORTTracker(track_activation_threshold=self.conf, **kw)
        else:
            tracker = trackers.OCSORTTracker(high_conf_det_threshold=self.conf, **kw)
        if cue is not None:
            cue.tracker = tracker
        return FrameTracker(tracker, cue)


class FrameTracker:
    """A ``trackers`` tracker (``.tracker``) fed one frame at a time; with an appearance cue (``.cue``,
    the tracker's ``iou``), the cue sees each frame and learns from each result."""

    def __init__(self, tracker: Any, cue: Any = None):
        self.tracker, self.cue = tracker, cue

    def __getattr__(self, name: str) -> Any:
        """The wrapped tracker's settings and state (``minimum_iou_threshold``, ``tracks``...)."""
        if name in ("tracker", "cue"):
            raise AttributeError(name)
        return getattr(self.tracker, name)

    def update(self, dets: Any, frame: np.ndarray) -> Any:
        """``dets`` (supervision.Detections) of ``frame [H, W, 3]`` RGB uint8 -> the tracker's result
        (every detection, ``tracker_id`` -1 where no confirmed track has it)."""
        if self.cue is not None:
            self.cue.observe(frame, dets.xyxy)
        result = self.tracker.update(dets)
        if self.cue is not None:
            self.cue.learn(result)
        return self._keep_confirmed(result)

    def _keep_confirmed(self, result: Any) -> Any:
        """OC-SORT (in ``trackers``, as in the published code) hides a confirmed track's box after each
        frame it missed until it is matched ``min_frames`` frames in a row again, so every occlusion
        cost 2 more frames of output; here a confirmed track's box is reported from the first frame it
        is found again, as ByteTrack and SORT do (its id from the tracklet whose last observation the
        box is)."""
        missing = result.tracker_id < 0
        if not missing.any():
            return result
        found = {np.asarray(t.last_observation, float).tobytes(): t.tracker_id for t in self.tracker.tracks
                 if getattr(t, "last_observation", None) is not None and t.time_since_update == 0 and t.tracker_id >= 0}
        if found:
            result.tracker_id = np.array([found.get(np.asarray(b, float).tobytes(), -1) if m else i
                                          for b, i, m in zip(result.xyxy, result.tracker_id, missing)], dtype=int)
        return result


class Tracking:
    """An iterator over ``(frame, tracks)``: ``frame [H, W, 3]`` RGB uint8 and ``tracks`` a
    ``supervision.Detections`` of the confirmed tracks in it (``xyxy`` pixels, ``confidence``,
    ``class_id``, ``tracker_id`` >= 1, ``data['class_name']``). The source and the model are opened when
    it is made (errors surface there); frames are read while iterating. ``frames`` counts those done."""

    def __init__(self, source: Union[str, int, os.PathLike, FrameSource], detector: Any,
                 tracker: Union[str, TrackerConfig] = "bytetrack", classes: Optional[Sequence[Union[str, int]]] = None,
                 buffer: int = 16, timeout: float = STREAM_TIMEOUT, source_name: Optional[str] = None,
                 model_name: Optional[str] = None):
        import_supervision()
        # the source and the model as given, as the JSON summary names them (default: the FrameSource's and the
        # Detector's own name)
        self.given = (source_name or (source.name if isinstance(source, FrameSource) else str(source)),
                      model_name or str(getattr(detector, "name", type(detector).__name__)))
        self.config = tracker if isinstance(tracker, TrackerConfig) else TrackerConfig(tracker)
        self.detector = detector
        self.labels = class_filter(classes, detector.class_names)
        self.source: FrameSource = source if isinstance(source, FrameSource) else open_source(source, timeout)
        self.tracker = self.config.make(self.source.fps)
        self.buffer = buffer
        self.frames = 0
        self._running: Optional[Iterator[Tuple[np.ndarray, Any]]] = None  # the frames being read (see __next__)
        # the highest score of any detection so far, of the chosen classes (None: none, or sliced)
        self.best_score: Optional[float] = None
        self._votes: Dict[int, Counter] = {}  # track id -> how often it was detected as each label
        self._shown: Dict[int, int] = {}  # track id -> the label it is shown as
        self._label_names: Dict[int, Tuple[Any, Any]] = {}  # label -> (class name, category id) as detected

    def __iter__(self) -> "Tracking":
        return self

    def __repr__(self) -> str:
        """``Tracking(street.mp4, bytetrack at conf 0.5: 24 frames read, 2 tracks; ...)``."""
        return (f"Tracking({self.given[0]}, {self.config.name} at conf {self.config.conf:g}: "
                f"{counted(self.frames, 'frame')} read, {counted(len(self._votes), 'track')}; iterate for "
                f"(frame, tracks), or .save() for the video, MOT text and JSON dfine track writes)")

    @keyword_hints(name="Tracking.save")  # save(vidoe=False) was a bare TypeError (a walk)
    def save(self, output_dir: Optional[Union[str, os.PathLike]] = None, *, video: bool = True, trail: int = 30,
             progress: bool = True, labels: Any = "auto") -> "TrackFiles":
        """Track every frame and write what ``dfine track`` writes, by its own code, into ``output_dir``
        (default ``runs/track``, or ``runs/track2``, ... when that holds an earlier run; created):
        ``NAME.mp4`` (boxes, ``#id class`` labels, ``trail`` frames of trail; ``video=False``: none; ``labels``:
        ``"auto"``, ``"none"`` or the text's height in px, as ``--labels``),
        ``NAME.txt`` (MOT-challenge ``frame,id,x,y,w,h,score,class,-1,-1``, frames from 1, ``class`` the
        dataset's category id) and ``NAME.json`` (every track's class, first and last frame and length).
        Returns the files and counts. Call it instead of iterating, not after. Ctrl-C keeps what was
        written (the JSON says ``interrupted``) and raises ``KeyboardInterrupt``."""
        if self._running is not None:
            raise DfineError(f"save() tracks from the first frame and {counted(self.frames, 'frame')} were read "
                             f"already (by iterating, or an earlier save()): call it on a new dfine.track(...)")
        from ..outputs import removed_if_left_empty
        out, created = track_output_dir(output_dir, self.source.name, self.given[0], option="output_dir=")
        with removed_if_left_empty(created):
            files = write_tracks(self, out, video=video, trail=trail, progress=progress, labels=labels, python=True)
        if files.interrupted:
            raise KeyboardInterrupt
        return files

    def __next__(self) -> Tuple[np.ndarray, Any]:
        """The next ``(frame, tracks)``: ``next(dfine.track(...))`` works as a ``for`` loop does; the frames
        are read once."""
        if self._running is None:  # a walk's next(dfine.track(...)) was a TypeError
            self._running = self._frames()
        return next(self._running)

    def _frames(self) -> Iterator[Tuple[np.ndarray, Any]]:
        from PIL import Image

        from ..inference import detect
        threshold = self.config.detection_conf
        sliced = getattr(self.detector, "slice", None) is not None  # only the tiles' kept scores are seen
        with FrameReader(self.source, buffer=self.buffer) as reader:
            for batch in reader.batches(self.detector.batch_size):
                # the highest score too: with no track, what --conf would start one (a walk)
                results, seen = detect(self.detector, [Image.fromarray(f) for f in batch], conf=threshold,
                                       labels=self.labels)
                if seen is not None and not sliced:
                    self.best_score = seen if self.best_score is None else max(self.best_score, seen)
                for frame, dets in zip(batch, results):
                    self.frames += 1
                    yield frame, self._update(to_supervision(dets), frame)

    @property
    def class_names(self) -> Optional[List[str]]:
        """The names of the classes tracked when ``classes`` chose some, else None."""
        names = self.detector.class_names
        return None if self.labels is None else [str(names[i]) for i in self.labels.tolist()]

    def _update(self, dets: Any, frame: np.ndarray) -> Any:
        tracks = self.tracker.update(tracker_input(dets, self.labels, self.config.nms), frame)
        tracks = tracks[tracks.tracker_id >= 0]
        tracks.tracker_id = tracks.tracker_id + 1  # 1-based, as MOT-challenge files count them
        return self._steady_classes(tracks)

    def _steady_classes(self, tracks: Any) -> Any:
        """``tracks`` with each track's class the one it was detected as most often so far, kept until
        another is detected more often (a tie keeps it): a detection's class flips between like classes
        from frame to frame, and a walk's MOT file had one track as car 7 frames and person 5, counted
        twice by its (id, class) pairs. (:class:`TrackLog` writes the text with each track's last class.)"""
        if not len(tracks):
            return tracks
        names, ids = tracks.data.get("class_name"), tracks.data.get("category_id")
        steady = []
        for i, (tid, label) in enumerate(zip(tracks.tracker_id.tolist(), tracks.class_id.tolist())):
            votes = self._votes.setdefault(tid, Counter())
            votes[label] += 1
            self._label_names.setdefault(label, (names[i] if names is not None else None,
                                                 ids[i] if ids is not None else None))
            leader, shown = votes.most_common(1)[0][0], self._shown.get(tid)
            if shown is None or votes[leader] > votes[shown]:
                self._shown[tid] = shown = leader
            steady.append(shown)
        tracks.class_id = np.asarray(steady, dtype=tracks.class_id.dtype)
        if names is not None:  # rebuilt: a name longer than the frame's longest would be cut in its array
            tracks.data["class_name"] = np.array([str(self._label_names[label][0]) for label in steady], dtype=str)
        if ids is not None:
            tracks.data["category_id"] = np.array([self._label_names[label][1] for label in steady], dtype=np.int64)
        return tracks


def tracker_input(dets: Any, labels: Optional[np.ndarray] = None, nms: Optional[float] = NMS_IOU) -> Any:
    """``supervision.Detections`` of one frame as a tracker should get them: only ``labels`` (None:
    all), then class-agnostic NMS at IoU ``nms`` (None: off), best score kept."""
    if labels is not None:
        dets = dets[np.isin(dets.class_id, labels)]
    if nms is not None and len(dets) > 1:
        dets = dets.with_nms(threshold=nms, class_agnostic=True)
    return dets


def _passed_on() -> List[str]:
    """The keywords :func:`track` passes on: :class:`TrackerConfig`'s fields, then the Detector's options."""
    import inspect
    from dataclasses import fields
    from ..inference import Detector
    detector = [k for k in inspect.signature(Detector.__init__).parameters if k not in ("self", "model", "conf")]
    return [f.name for f in fields(TrackerConfig) if f.name != "name"] + detector


# lost_frame= blamed dfine.Detector() and listed none of the tracker's keywords (a walk)
#: other trackers' words for TrackerConfig's (ByteTrack's, supervision's, trackers'; a walk's iou= was offered timeout=)
TRACKER_WORDS = {"track_thresh": "conf", "track_activation_threshold": "conf", "high_thresh": "conf",
                 "low_thresh": "low_conf", "match_thresh": "match_iou", "iou": "match_iou",
                 "iou_threshold": "match_iou", "minimum_iou_threshold": "match_iou", "max_age": "lost_frames",
                 "track_buffer": "lost_frames", "lost_track_buffer": "lost_frames", "min_hits": "min_frames",
                 "minimum_consecutive_frames": "min_frames"}


@keyword_hints(name="dfine.track", also=_passed_on(), aliases=TRACKER_WORDS)
def track(source: Union[str, int, os.PathLike], model: Any, tracker: Union[str, TrackerConfig] = "bytetrack",
          classes: Optional[Sequence[Union[str, int]]] = None, conf: Optional[float] = None,
          timeout: float = STREAM_TIMEOUT, fps: Optional[float] = None, **kw: Any) -> Tracking:
    """Track objects through ``source``: a video file, a folder of frames, a webcam index or a stream URL.

    ``model``: a :class:`dfine.Detector` or anything it opens (checkpoint, zoo name, .onnx, .xml,
    .engine). ``tracker``: ``bytetrack`` (default), ``sort``, ``ocsort`` or a :class:`TrackerConfig`;
    ``conf`` and the other :class:`TrackerConfig` fields given as keywords (``low_conf``, ``match_iou``,
    ``lost_frames``, ``min_frames``, ``nms``) change it; without ``conf`` or a :class:`TrackerConfig`,
    tracks start at the model's :attr:`~dfine.Detector.recommended_conf` when it carries one, else at the
    ``conf`` of a Detector given when lower (ByteTrack's ``low_conf`` then half of it when the default would sit
    above it, said, as ``dfine track`` does); the remaining keywords go to the Detector
    (``device``, ``batch_size``, ``backend``, ``slice``...). ``classes``: names (or label numbers) to
    keep. ``timeout``: seconds a stream may take to open or to send its next frame before it counts as
    ended. ``fps``: the rate a folder of frames was taken at (default 30, said; a video's own otherwise).
    Iterate for ``(frame, tracks)`` (or ``next()``: the frames are read once), or call
    ``.save(output_dir)`` instead to write what ``dfine track`` writes: ``NAME.mp4`` (the annotated video),
    ``NAME.txt`` (MOT-challenge text) and ``NAME.json`` (every track), in ``runs/track`` by default
    (:meth:`Tracking.save`)."""
    from dataclasses import fields, replace
    from ..inference import Detector
    names = {f.name for f in fields(TrackerConfig)} - {"name"}
    changes = {k: kw.pop(k) for k in list(kw) if k in names}
    if conf is not None:
        changes["conf"] = conf
    config = tracker if isinstance(tracker, TrackerConfig) else TrackerConfig(tracker)
    config = replace(config, **changes)
    given = str(model) if isinstance(model, (str, os.PathLike)) else None  # as the JSON summary names it
    if isinstance(model, (str, os.PathLike)):
        model = Detector(model, conf=config.detection_conf, **kw)
    elif kw:
        raise DfineError(f"{', '.join(kw)} are Detector options; pass them to Detector(...) instead")
    if not isinstance(tracker, TrackerConfig):
        config = _starting_conf(config, model, changes, given is None)
    named = str(source)
    if not isinstance(source, FrameSource):
        from ..video import source_kind
        source = open_source(source, timeout)  # its rate set before the tracker is made for it
        if fps is not None:
            if not fps > 0:
                raise DfineError(f"fps= must be a number of frames per second > 0, got {fps!r}")
            source.fps = float(fps)
        elif source_kind(named) == "folder":  # as dfine track says it (a notebook walk's tracks differed unsaid)
            print("note: a folder of frames has no frame rate: 30 fps assumed for the tracker and the video "
                  "(fps=N: the rate the frames were taken at)", file=sys.stderr)
    return Tracking(source, model, tracker=config, classes=classes, timeout=timeout, model_name=given,
                    source_name=named)


def _starting_conf(config: TrackerConfig, model: Any, changes: Mapping[str, Any], own_detector: bool) -> TrackerConfig:
    """``config`` with the score tracks start at when ``conf=`` was not given: the model's recommended one, or
    the ``conf=`` of a Detector passed in when lower than the tracker's (a walk's ``Detector(conf=0.1)`` was
    tracked at 0.5: no track); then ByteTrack's ``low_conf`` half of it where the default would sit above it
    (its second stage off), said, as ``dfine track`` does (a walk's Python run found 59 tracks, the command 116)."""
    from dataclasses import replace
    recommended = getattr(model, "recommended_conf", None)
    if "conf" not in changes and recommended is not None:
        config = replace(config, conf=round(recommended, 4))
        print(python_words("note: " + carried_conf_note(config.conf, "the model")), file=sys.stderr)
    elif "conf" not in changes and own_detector and getattr(model, "conf", 1.0) < config.conf:
        config = replace(config, conf=float(model.conf))
        print(f"note: conf={config.conf:g}: tracks start at the conf= of the Detector given (conf= to change it)",
              file=sys.stderr)
    if config.name == "bytetrack" and "low_conf" not in changes:
        low, note = halved_low_conf(config.conf)
        if low is not None:
            config = replace(config, low_conf=low)
            print(python_words(note), file=sys.stderr)
    return config


def carried_conf_note(conf: float, whose: str) -> str:
    """The line saying tracks start at the ``conf`` a model (``whose``) carries, in ``dfine track``'s words."""
    return (f"--conf {conf:g}: tracks start at the threshold with the best F1 on the val set of its training run, "
            f"which {whose} carries (give --conf to change it)")


def halved_low_conf(conf: float) -> Tuple[Optional[float], Optional[str]]:
    """ByteTrack's ``low_conf`` for tracks started at ``conf`` when its default would sit at or above it (its
    second stage off), and the note that says so in ``dfine track``'s words; ``(None, None)`` otherwise."""
    default = TrackerConfig().low_conf
    if conf > default:
        return None, None
    low = round(conf / 2, 4)
    return low, (f"note: --low-conf {low:g}, half of --conf {conf:g} (the default {default:g} would sit above it and "
                 f"turn off ByteTrack's second stage, which keeps tracks through occlusions)")


def python_words(note: str) -> str:
    """A note in ``dfine track``'s words as :func:`track`'s arguments name them (``--conf 0.1`` -> ``conf=0.1``)."""
    return (note.replace("give --conf to change it", "conf= to change it").replace("--low-conf ", "low_conf=")
            .replace("--conf ", "conf="))


# ---- outputs ------------------------------------------------------------------------------------

@dataclass
class TrackStats:
    """One track over the video: frames are 1-based, ``length`` counts the frames it was seen in."""

    id: int
    first_frame: int
    last_frame: int
    length: int = 0
    name: str = ""  # its class as last shown (the class the tracker settled on)
    category_id: Any = None  # and that class's dataset id

    def as_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "class": self.name, "first_frame": self.first_frame,
                "last_frame": self.last_frame, "length": self.length}


class TrackLog:
    """MOT-challenge text (``frame,id,x,y,w,h,score,class,-1,-1`` per line, frames 1-based, ``class`` the
    dataset's category id) streamed to ``NAME.partial.txt`` (flushed every frame), and a JSON summary; :meth:`close`
    renames the text into place and writes the summary atomically, so a run that crashes or is killed
    never leaves half a file under the final names, and its ``.partial.txt`` holds every frame done."""

    def __init__(self, mot_path: Path, json_path: Path, info: Dict[str, Any]):
        self.mot_path, self.json_path, self.info = Path(mot_path), Path(json_path), dict(info)
        self.partial = self.mot_path.with_name(f"{self.mot_path.stem}.partial{self.mot_path.suffix}")
        self._file = self.partial.open("w")
        self.tracks: Dict[int, TrackStats] = {}
        self.frames = 0

    def add(self, frame: int, tracks: Any) -> None:
        """Record the ``tracks`` (supervision.Detections with tracker_id) of 1-based ``frame``."""
        self.frames = max(self.frames, frame)
        names = tracks.data.get("class_name", [str(c) for c in tracks.class_id])
        # the dataset's category id, as predictions.json and Detections.category_ids give it (the model's 0-based
        # label read one class off against the dataset's categories when its ids start at 1)
        ids = tracks.data.get("category_id", tracks.class_id)
        lines = []
        for (x0, y0, x1, y1), tid, score, cid, name in zip(tracks.xyxy.tolist(), tracks.tracker_id.tolist(),
                                                            tracks.confidence.tolist(), np.asarray(ids).tolist(), names):
            lines.append(f"{frame},{tid},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},{score:.4f},{cid},-1,-1\n")
            stats = self.tracks.setdefault(tid, TrackStats(tid, frame, frame))
            stats.last_frame, stats.length = frame, stats.length + 1
            stats.name, stats.category_id = str(name), cid
        self._file.writelines(lines)
        self._file.flush()

    def summary(self) -> Dict[str, Any]:
        tracks = [t.as_dict() for t in sorted(self.tracks.values(), key=lambda t: t.id)]
        classes = Counter(t["class"] for t in tracks)
        return {**self.info, "frames": self.frames, "num_tracks": len(tracks),
                "classes": dict(sorted(classes.items())), "tracks": tracks}

    def close(self, interrupted: bool = False) -> None:
        """The text under its final name, each row's class the track's last (as the JSON says: a track
        whose shown class changed once counted as two objects of the text's (id, class) pairs), and the JSON,
        which says whether the run was ``interrupted`` (Ctrl-C) before the source ended."""
        from ..data.objects365 import write_json_atomic
        self.info["interrupted"] = interrupted
        self._file.close()
        final = {t.id: t.category_id for t in self.tracks.values()}
        steady = self.partial.with_name(f"{self.partial.name}.steady")
        with self.partial.open() as rows, steady.open("w") as out:
            for row in rows:
                cells = row.split(",")
                cells[7] = str(final.get(int(cells[1]), cells[7]))
                out.write(",".join(cells))
        os.replace(steady, self.mot_path)
        self.partial.unlink()
        write_json_atomic(self.summary(), self.json_path)

    def abandon(self) -> None:
        """The run failed: leave what was written as ``NAME.partial.txt``."""
        self._file.close()



@dataclass
class TrackFiles:
    """What a tracking run wrote (``dfine track``, :meth:`Tracking.save`): ``video`` (``NAME.mp4``, None
    without one), ``mot`` (``NAME.txt``) and ``json`` (``NAME.json``); ``frames`` tracked, ``tracks``
    (ids given) and whether Ctrl-C ``interrupted`` the run before the source ended."""

    video: Optional[Path]
    mot: Path
    json: Path
    frames: int
    tracks: int
    interrupted: bool = False

    def __repr__(self) -> str:
        return f"TrackFiles({self.said()})"

    def said(self) -> str:
        """``24 frames, 2 tracks -> out/two.mp4, out/two.txt, out/two.json``."""
        written = ", ".join(str(p) for p in (self.video, self.mot, self.json) if p is not None)
        return f"{counted(self.frames, 'frame')}, {counted(self.tracks, 'track')} -> {written}"


def track_output_dir(output: Optional[Union[str, os.PathLike]], name: str, source: Union[str, int, os.PathLike],
                     option: str = "-o") -> Tuple[Path, List[Path]]:
    """The folder a tracking run of the source ``source`` writes ``name``'s files to: ``output``, or
    ``runs/track`` (``runs/track2``, ... after an earlier run); created, and the folders created returned
    (to remove if the run fails before writing). A note on stderr names the files of an earlier run it
    replaces; one that would replace the source is a one-line error naming ``option``."""
    from ..outputs import check_outputs, numbered_run_dir, prepare_output_dir
    out = Path(output).expanduser() if output is not None else numbered_run_dir(Path("runs/track"))
    writes = [out / f"{name}{suffix}" for suffix in (".mp4", ".partial.mp4", ".txt", ".json")]
    source_file = Path(str(source))
    note = check_outputs(out, writes, [source_file] if source_file.is_file() else [], option=option,
                         default="runs/track")
    created = prepare_output_dir(out, option)
    if note:
        print(note, file=sys.stderr)
    return out, created


def write_tracks(run: Tracking, out: Path, *, video: bool = True, trail: int = 30, progress: bool = True,
                 labels: Any = "auto", python: bool = False) -> TrackFiles:
    """Track every frame of ``run`` and write ``NAME.txt``, ``NAME.json`` and (``video``) ``NAME.mp4``
    in the folder ``out``, as ``dfine track`` does; prints the notes and the summary line (``python``: in
    :meth:`Tracking.save`'s words). Ctrl-C ends the run with the files written (``interrupted``); an error
    leaves ``NAME.partial.*`` and is raised."""
    import dataclasses
    name = run.source.name
    log = TrackLog(out / f"{name}.txt", out / f"{name}.json",
                   {"source": run.given[0], "model": run.given[1], "tracker": run.config.name,
                    "tracker_config": dataclasses.asdict(run.config), "fps": run.source.fps,
                    "only_classes": run.class_names})
    drawn = _VideoOut(out / f"{name}.mp4", run.source.fps, trail, labels) if video else None
    interrupted = False
    try:
        _loop(run, log, drawn, progress)
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        log.abandon()
        if drawn is not None:
            drawn.close(complete=False)  # what was drawn stays readable as NAME.partial.mp4
        raise
    log.close(interrupted=interrupted)
    if drawn is not None:
        drawn.close()
    from ..video import truncation_note
    for note in (truncation_note(run.source), drawn.writer.size_note() if drawn is not None else None):
        if note:
            print(note, file=sys.stderr)
    files = TrackFiles(drawn.path if drawn is not None else None, log.mot_path, log.json_path, run.frames,
                       len(log.tracks), interrupted)
    print(f"{'interrupted: ' if interrupted else ''}{files.said().replace(' ->', f' ({run.config.name}) ->', 1)}")
    note = no_track_note(run, files)
    if note:
        print(python_words(note) if python else note, file=sys.stderr)
    return files


def no_track_note(run: Tracking, files: TrackFiles) -> Optional[str]:
    """The note for a run that started no track: no box of the kept classes at any score, or none above the
    tracker's ``conf`` (the highest score seen and a ``--conf`` that would start one); None otherwise."""
    if files.tracks:
        return None
    from ..video import source_kind
    chosen = run.class_names
    source = "the frames" if source_kind(run.given[0]) == "folder" else "the video"  # a folder's (a walk)
    best, where = run.best_score, source if chosen is None else f"{source} for {', '.join(chosen)}"
    sliced_run = getattr(run.detector, "slice", None) is not None  # its best score is not followed
    if chosen and best is None and run.frames and not sliced_run:
        return (f"note: no track: the model gave no {' or '.join(chosen)} box in {source}, at any score: no --conf "
                f"would start one")
    if best is None or best <= run.config.conf:
        from ..commands.predict import nothing_found_note  # an empty .txt and a bare video, with no clue (a walk)
        return nothing_found_note(run.config.conf, best, where).replace("note: no detection", "note: no track: "
                                                                        "no detection", 1)
    if run.frames > 1:  # a walk's --conf 0.06, as the note above advised: one frame above it, no track, no word
        conf = run.config.conf
        return (f"note: no track: detections above --conf {conf:g} in {where} (the best {best:.3f}) were not found "
                f"again in the frames after them, which a track needs; try a lower --conf (e.g. --conf {conf / 2:g})")
    return None


def _loop(run: Tracking, log: TrackLog, video: Optional["_VideoOut"], progress: bool = True) -> None:
    from ..text import progress_bar
    # as predict's: into a log or pipe too (tqdm's disable=None showed no bar off a terminal)
    with progress_bar(total=run.source.total or None, unit="frame", disable=not progress) as bar:
        for frame, tracks in run:
            log.add(run.frames, tracks)
            if video is not None:
                video.write(frame, tracks)
            bar.update(1)


class _VideoOut:
    """The annotated video (:class:`dfine.video.VideoWriter`: ``NAME.partial.mp4`` while it is written,
    playable up to its last second if the run is killed; renamed to ``NAME.mp4`` at the end)."""

    def __init__(self, path: Path, fps: float, trail: int, labels: Any = "auto"):
        from .supervision import TrackAnnotator
        from ..video import VideoWriter
        self.writer = VideoWriter(path, fps, draw=TrackAnnotator(trail=trail, labels=labels))  # in the writer thread
        self.path: Optional[Path] = None

    @property
    def written(self) -> int:
        return self.writer.frames

    def write(self, frame: np.ndarray, tracks: Any) -> None:
        self.writer.write(frame, tracks)

    def close(self, complete: bool = True) -> None:
        self.path = self.writer.close(complete=complete)
