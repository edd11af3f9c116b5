"""``dfine track SOURCE -m MODEL``: multi-object tracking (ByteTrack, SORT, OC-SORT) through a video.

SOURCE is a video file, a folder of frames, a webcam index (``0``) or a stream URL (``rtsp://``,
``http://``...). Writes to ``-o OUTDIR`` (default ``runs/track``): ``NAME.mp4`` (boxes, ``#id class``
labels, short trails), ``NAME.txt`` (MOT-challenge ``frame,id,x,y,w,h,score,class,-1,-1``, frames from 1)
and ``NAME.json`` (every track: class, first and last frame, length). Ctrl-C stops and keeps what was
written so far. While running, the video and the text are ``NAME.partial.mp4`` / ``NAME.partial.txt``
(renamed at the end); a run that fails or is killed leaves them readable, the text to its last frame and
the video (a fragmented MP4) to its last second. Needs ``pip install dfine[track]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ..errors import DfineError

TRACKERS = ("bytetrack", "sort", "ocsort")  # dfine.integrations.tracking.TRACKERS (not imported: CLI start-up)
APPEARANCE = ("colour", "none")  # dfine.integrations.tracking.APPEARANCE


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("track", help="track objects through a video, folder of frames, webcam or stream",
                              description=__doc__.splitlines()[0])
    p.add_argument("source", help="video file, folder of frames, webcam index or rtsp/http URL")
    p.add_argument("-m", "--model", required=True, help="zoo name, checkpoint .pth, .onnx, OpenVINO .xml or .engine")
    p.add_argument("--tracker", choices=TRACKERS, default="bytetrack", help="default bytetrack")
    p.add_argument("--classes", nargs="+", default=None, metavar="NAME", help="track only these classes")
    g = p.add_argument_group("tracker settings (dfine.integrations.tracking.TrackerConfig)")
    g.add_argument("--conf", type=float, default=None,
                   help="score that starts a track (default: the one a dfine run's model carries, its best F1 on "
                        "val, as predict's; else 0.5)")
    g.add_argument("--low-conf", type=float, default=None,
                   help="bytetrack: detections down to this score continue a track, e.g. through occlusions "
                        "(default 0.1, or half of --conf when --conf is 0.1 or less)")
    g.add_argument("--match-iou", type=float, default=None, metavar="IOU",
                   help="IoU a detection needs with a track's predicted box to continue it "
                        "(default: the tracker's, 0.1 bytetrack, 0.3 sort/ocsort)")
    g.add_argument("--lost-frames", type=int, default=60, metavar="N",
                   help="frames (at 30 fps) a lost track waits to be found again before a new id (default 60)")
    g.add_argument("--min-frames", type=int, default=None, metavar="N",
                   help="frames in a row before a new track gets an id (default: the tracker's, 2 bytetrack, 3 sort/ocsort)")
    g.add_argument("--nms", type=float, default=0.7, metavar="IOU",
                   help="boxes overlapping a better one by this IoU are dropped, whatever their class, "
                        "before tracking (default 0.7; 0: off)")
    g.add_argument("--appearance", choices=APPEARANCE, default="colour",
                   help="colour (default): matching also compares the boxes' colour histograms, which keeps ids "
                        "through crossings and occlusions; none: motion alone, as the trackers by themselves")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "openvino", "tensorrt"), default=None,
                   help="default: from the model file's suffix")
    p.add_argument("-d", "--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("-b", "--batch-size", type=int, default=4, help="frames per detector batch (default 4)")
    p.add_argument("--imgsz", type=int, nargs="+", default=None, metavar="N", help="input size: 640 or height width")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch, ONNX Runtime, OpenVINO)")
    p.add_argument("--fps", type=float, default=None,
                   help="frames per second of the source, for the video written and the tracker's --lost-frames: a "
                        "folder of frames has none (30 assumed, said); a video's or stream's own otherwise")
    p.add_argument("--trail", type=int, default=30, help="frames of trail drawn behind each track (default 30)")
    p.add_argument("--no-video", action="store_true", help="write only the MOT text and JSON summary")
    from .predict import add_labels_argument, add_slice_arguments
    add_labels_argument(p)
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="a stream that takes longer to open or to send its next frame has ended (default 30)")
    p.add_argument("-o", "--output", default=None,
                   help="output folder (default runs/track, or runs/track2, ... when that holds an earlier run)")
    add_slice_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..integrations.tracking import track_output_dir
    from ..outputs import removed_if_left_empty
    out, created = track_output_dir(args.output, Path(str(args.source)).stem, args.source)
    with removed_if_left_empty(created):  # a bad source or model leaves no empty folder
        return _track(args, out)


def _track(args: argparse.Namespace, out: Path) -> int:
    from ..inference import Detector
    from ..integrations.tracking import TrackerConfig, Tracking, write_tracks
    from .predict import set_threads, slice_option
    set_threads(args.threads, args.model, args.backend)
    sliced = slice_option(args)
    config = tracker_config(args, TrackerConfig)
    from ..video import open_source, source_kind
    if args.timeout <= 0:
        raise DfineError(f"--timeout must be a number of seconds > 0, got {args.timeout}")
    if args.fps is not None and not args.fps > 0:
        raise DfineError(f"--fps must be a number of frames per second > 0, got {args.fps:g}")
    source = open_source(args.source, args.timeout)  # a bad source fails before the model is loaded
    if args.fps is not None:
        source.fps = args.fps
    elif source_kind(args.source) == "folder":  # a walk's frames, taken at 10 fps, played 3x too fast unsaid
        video = "" if args.no_video else f"{source.name}.mp4 and "  # no video written: not named (a walk)
        print(f"note: a folder of frames has no frame rate: 30 fps assumed for {video}the tracker "
              f"(--fps N: the rate the frames were taken at)", file=sys.stderr)
    det = Detector(args.model, device=args.device, conf=config.detection_conf,
                   imgsz=args.imgsz, backend=args.backend, batch_size=args.batch_size, threads=args.threads, slice=sliced)
    from .predict import say_busy_cpu
    say_busy_cpu(det, "the frames")
    recommended = getattr(det, "recommended_conf", None)
    if args.conf is None and recommended is not None:  # a user's model scores lower than 0.5 (as predict's --conf)
        from ..integrations.tracking import carried_conf_note
        print(carried_conf_note(round(recommended, 4), Path(args.model).name), file=sys.stderr)
        config = tracker_config(args, TrackerConfig, conf=round(recommended, 4))  # its --low-conf note after this line
    run_ = Tracking(source, det, tracker=config, classes=args.classes,
                    source_name=str(args.source), model_name=str(args.model))
    chosen = run_.class_names
    if chosen and any(c.isdigit() and c not in chosen for c in args.classes):  # '1' read from the .txt: bicycle
        print(f"--classes {' '.join(args.classes)}: {', '.join(chosen)} (numbers count the model's classes from 0; "
              f"the .txt and .json write category ids, not these)", file=sys.stderr)
    files = write_tracks(run_, out, video=not args.no_video, trail=args.trail, labels=args.labels)
    return 130 if files.interrupted else 0


def tracker_config(args: argparse.Namespace, config_class, conf: Optional[float] = None):
    """The TrackerConfig of the parsed options (``conf``: the model's when no --conf was given; else the
    tracker's default); a value out of range names its option in one line."""
    conf = args.conf if args.conf is not None else conf if conf is not None else config_class.conf
    for option, value, low, high in (("--conf", conf, 0, 1), ("--low-conf", args.low_conf, 0, 1),
                                     ("--match-iou", args.match_iou, 0, 1), ("--nms", args.nms, 0, 1),
                                     ("--lost-frames", args.lost_frames, 0, None), ("--min-frames", args.min_frames, 1, None)):
        if value is not None and not (low <= value and (high is None or value <= high)):
            allowed = f"{low}..{high}" if high is not None else f">= {low}"
            raise DfineError(f"{option} must be {allowed}, got {value}")
    low = args.low_conf
    if args.tracker == "bytetrack":
        if low is None:
            from ..integrations.tracking import halved_low_conf
            low, note = halved_low_conf(conf)
            if note:
                print(note, file=sys.stderr)
        elif low >= conf:
            print(f"note: --low-conf {low:g} is not below --conf {conf:g}: ByteTrack's second stage (detections "
                  f"scoring between the two continue tracks) is off; give a --low-conf below --conf to keep it",
                  file=sys.stderr)
    extra = {} if low is None else {"low_conf": low}
    return config_class(args.tracker, conf=conf, match_iou=args.match_iou, lost_frames=args.lost_frames,
                        min_frames=args.min_frames, nms=args.nms or None, appearance=args.appearance, **extra)
