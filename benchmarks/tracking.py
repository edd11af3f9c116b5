"""Tracking accuracy on a generated video: MOTA, IDF1 and id switches per tracker (ByteTrack, SORT, OC-SORT).

A video is drawn with the demo's shape generator (``dfine.demo.shapes.render``) on one textured
background: shapes of the model's classes move at constant speed, bounce off the borders, cross and
occlude one another (a fixed drawing order: later shapes pass in front). Ground truth is each shape's
visible box (cut by the frame border) in every frame; a shape hidden for more than 75% of its box by
shapes in front of it is marked "ignore" in that frame (conf 0 in the MOT file: neither a miss nor a
hit). An occlusion event is a run of frames in which one shape hides at least 30% of another's box.

The detector runs once over all frames (at the lowest threshold any tracker uses); each tracker
then gets the same detections, and ``trackers.eval`` (TrackEval's matching, IoU 0.5) scores it.
Bar (issue 16): IDF1 >= 0.8 and id switches <= occlusion events. The end-to-end rate of
``dfine.track`` on the video file (reader thread + detector + tracker) is printed beside the
detector's own rate. Timings on a shared machine are disturbed by other jobs.

    python benchmarks/tracking.py --model runs/demo/best_stg2.pth
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

Box = Tuple[float, float, float, float]


def make_sequence(num_classes: int, frames: int, width: int, height: int, objects: int, seed: int):
    """(RGB frames, per frame list of (object id, label, visible box or None, visibility 0..1))."""
    from dfine.demo.shapes import Shape, random_background, random_color, render
    rng = np.random.default_rng(seed)
    background = random_background(rng, width, height)
    size = rng.uniform(0.14, 0.24, objects) * min(width, height)
    cols = math.ceil(math.sqrt(objects))  # start apart, on a jittered grid; they meet later
    cell = np.array([width / cols, height / math.ceil(objects / cols)])
    grid = np.array([(i % cols, i // cols) for i in range(objects)], float)
    pos = np.clip((grid + rng.uniform(0.1, 0.4, (objects, 2))) * cell, 0, np.array([width, height]) - size[:, None])
    angle = rng.uniform(0, 2 * math.pi, objects)
    speed = rng.uniform(2.0, 4.0, objects)
    vel = np.stack([np.cos(angle), np.sin(angle)], 1) * speed[:, None]
    labels = rng.integers(0, num_classes, objects)
    colors = [random_color(rng) for _ in range(objects)]
    video, truth = [], []
    for _ in range(frames):
        shapes = [Shape(int(labels[i]), (pos[i, 0], pos[i, 1], pos[i, 0] + size[i], pos[i, 1] + size[i]), colors[i])
                  for i in range(objects)]
        image, boxes = render(shapes, background)
        video.append(np.asarray(image))
        truth.append([(i, int(labels[i]), boxes[i], _visibility(i, boxes)) for i in range(objects)])
        pos += vel
        for axis, limit in ((0, width), (1, height)):  # bounce
            out = (pos[:, axis] < 0) | (pos[:, axis] + size > limit)
            vel[out, axis] *= -1
            pos[:, axis] = np.clip(pos[:, axis], 0, limit - size)
    return video, truth


def _covered(lower: Box, upper: Box) -> float:
    ix = max(0.0, min(lower[2], upper[2]) - max(lower[0], upper[0]))
    iy = max(0.0, min(lower[3], upper[3]) - max(lower[1], upper[1]))
    return ix * iy / max((lower[2] - lower[0]) * (lower[3] - lower[1]), 1e-9)


def _visibility(i: int, boxes: List[Optional[Box]]) -> float:
    """1 - the largest share of box i hidden by one shape drawn after it (an approximation that
    ignores two shapes hiding it together)."""
    if boxes[i] is None:
        return 0.0
    hidden = [_covered(boxes[i], b) for b in boxes[i + 1:] if b is not None]
    return 1.0 - max(hidden, default=0.0)


def occlusion_events(truth, threshold: float = 0.3) -> int:
    """Runs of frames in which one shape hides at least ``threshold`` of another's box."""
    events, active = 0, set()
    for frame in truth:
        now = set()
        boxes = [b for _, _, b, _ in frame]
        for i, bi in enumerate(boxes):
            for j in range(i + 1, len(boxes)):
                if bi is not None and boxes[j] is not None and _covered(bi, boxes[j]) >= threshold:
                    now.add((i, j))
        events += len(now - active)
        active = now
    return events


def write_gt(truth, path: Path, ignore_below: float = 0.25) -> None:
    lines = []
    for f, frame in enumerate(truth, start=1):
        for oid, _, box, vis in frame:
            if box is not None:
                x0, y0, x1, y1 = box
                lines.append(f"{f},{oid + 1},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},"
                             f"{0 if vis < ignore_below else 1},1,{vis:.3f}\n")
    path.write_text("".join(lines))


def write_video(frames, path: Path, fps: float) -> None:
    import cv2
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()


def run_tracker(config, dets, video, fps: float, path: Path) -> List[Tuple[int, int, Box]]:
    """Feed the cached detections to a fresh tracker; write its MOT file (class column 1); return
    (frame, track id, box) rows."""
    from dfine.integrations.tracking import tracker_input
    tracker = config.make(fps)
    lines, rows = [], []
    for f, (d, frame) in enumerate(zip(dets, video), start=1):
        s = d.to_supervision()
        tracks = tracker.update(tracker_input(s[s.confidence > config.detection_conf], None, config.nms), frame)
        tracks = tracks[tracks.tracker_id >= 0]
        for (x0, y0, x1, y1), tid, score in zip(tracks.xyxy, tracks.tracker_id, tracks.confidence):
            lines.append(f"{f},{tid},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},{score:.3f},1,-1,-1\n")
            rows.append((f, int(tid), (float(x0), float(y0), float(x1), float(y1))))
    path.write_text("".join(lines))
    return rows


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU ``[N, M]`` of xyxy boxes ``a [N, 4]`` and ``b [M, 4]``."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def _scored(frame) -> List[Tuple[int, Box]]:
    return [(oid, box) for oid, _, box, vis in frame if box is not None and vis >= 0.25]


def detector_recall(truth, dets, conf: float) -> Dict[str, Tuple[int, int]]:
    """(found, scored boxes) by visibility: a scored ground-truth box is found when a detection above
    ``conf`` overlaps it by IoU >= 0.5, whatever its class."""
    bins = {"visible >= 0.75": (0.75, 2.0), "0.5-0.75": (0.5, 0.75), "0.25-0.5": (0.25, 0.5)}
    out = {k: [0, 0] for k in bins}
    for frame, d in zip(truth, dets):
        boxes = d.boxes[d.scores > conf]
        for _, _, box, vis in frame:
            for k, (lo, hi) in bins.items():
                if box is not None and lo <= vis < hi:
                    out[k][1] += 1
                    out[k][0] += bool(len(boxes)) and _iou(np.array([box]), boxes).max() >= 0.5
    return {k: (v[0], v[1]) for k, v in out.items()}


def switch_kinds(rows, truth) -> Tuple[int, int]:
    """Id changes of ground-truth objects (each matched by IoU >= 0.5, Hungarian per frame), split into
    swaps (the object was matched in the frame before: the tracker gave its detection to another
    track) and re-identifications after a gap (the track was lost while the object went unmatched)."""
    from scipy.optimize import linear_sum_assignment
    by_frame: Dict[int, list] = {}
    for f, tid, box in rows:
        by_frame.setdefault(f, []).append((tid, box))
    last: Dict[int, Tuple[int, int]] = {}
    swaps = gaps = 0
    for f, frame in enumerate(truth, start=1):
        gt, tr = _scored(frame), by_frame.get(f, [])
        if not gt or not tr:
            continue
        m = _iou(np.array([b for _, b in gt]), np.array([b for _, b in tr]))
        for i, j in zip(*linear_sum_assignment(-m)):
            if m[i, j] < 0.5:
                continue
            oid, tid = gt[i][0], tr[j][0]
            if oid in last and last[oid][0] != tid:
                swaps += f - last[oid][1] <= 1
                gaps += f - last[oid][1] > 1
            last[oid] = (tid, f)
    return swaps, gaps


def oracle_ids(truth, dets, conf: float, nms: Optional[float], path: Path) -> None:
    """A MOT file where each detection above ``conf`` (after the class-agnostic NMS) takes the id of the
    ground-truth box it overlaps by IoU >= 0.5 (Hungarian per frame) and the rest are dropped: what a
    tracker that never errs in association would score with these detections (its upper bound, as the
    trackers only report frames with a detection)."""
    from scipy.optimize import linear_sum_assignment
    from dfine.integrations.tracking import tracker_input
    lines = []
    for f, (frame, d) in enumerate(zip(truth, dets), start=1):
        s = d.to_supervision()
        s = tracker_input(s[s.confidence > conf], None, nms)
        gt = [(oid, box) for oid, _, box, _ in frame if box is not None]
        if not len(s) or not gt:
            continue
        m = _iou(np.array([b for _, b in gt]), s.xyxy)
        for i, j in zip(*linear_sum_assignment(-m)):
            if m[i, j] >= 0.5:
                x0, y0, x1, y1 = s.xyxy[j]
                lines.append(f"{f},{gt[i][0] + 1},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},1,1,-1,-1\n")
    path.write_text("".join(lines))


def main() -> None:
    from dfine.integrations.tracking import LOST_FRAMES
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the demo model (checkpoint or .onnx)")
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--size", type=int, nargs=2, default=(320, 320), metavar=("W", "H"),
                   help="frame size (default square, like the demo images the model learnt from)")
    p.add_argument("--objects", type=int, default=6)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--conf", type=float, default=0.5, help="score that starts a track")
    p.add_argument("--low-conf", type=float, default=0.1, help="ByteTrack's second-stage score floor")
    p.add_argument("--match-iou", type=float, default=None, help="default: each tracker's own")
    p.add_argument("--lost-frames", type=int, default=LOST_FRAMES)
    p.add_argument("--min-frames", type=int, default=None, help="default: each tracker's own")
    p.add_argument("--nms", type=float, default=0.7, help="class-agnostic NMS IoU before tracking (0: off)")
    p.add_argument("--appearance", nargs="+", default=["colour", "none"], choices=("colour", "none"),
                   help="appearance cues to compare, each tracker with each (default both)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1], help="one video per seed (default 1)")
    p.add_argument("--out", type=Path, default=Path("runs/bench_tracking"))
    args = p.parse_args()
    results: Dict[Tuple[int, str], dict] = {}
    from PIL import Image
    from trackers.eval import evaluate_mot_sequence
    import dfine
    from dfine.integrations.tracking import TRACKERS, TrackerConfig
    from dfine.export.benchmark import cpu_line

    args.out.mkdir(parents=True, exist_ok=True)
    configs = {name if cue == "colour" else f"{name}/{cue}":
               TrackerConfig(name, conf=args.conf, low_conf=args.low_conf, match_iou=args.match_iou,
                             lost_frames=args.lost_frames, min_frames=args.min_frames, nms=args.nms or None,
                             appearance=cue)
               for cue in args.appearance for name in TRACKERS}
    det = dfine.Detector(args.model, conf=min(c.detection_conf for c in configs.values()), batch_size=8)
    for seed in args.seeds:
        out = args.out / f"seed{seed}"
        out.mkdir(exist_ok=True)
        video, truth = make_sequence(len(det.class_names), args.frames, *args.size, args.objects, seed)
        events = occlusion_events(truth)
        write_gt(truth, out / "gt.txt")
        write_video(video, out / "shapes.avi", args.fps)
        Image.fromarray(np.concatenate([video[0], video[len(video) // 2]], axis=1)).save(out / "frames.png")
        images = [Image.fromarray(f) for f in video]
        t0 = time.perf_counter()
        dets = [d for i in range(0, len(images), 8) for d in det.predict_pil(images[i:i + 8])]
        detect_fps = len(images) / (time.perf_counter() - t0)
        scored = sum(len(_scored(f)) for f in truth)
        print(f"seed {seed}: {args.frames} frames {args.size[0]}x{args.size[1]}, {args.objects} shapes, {events} occlusion "
              f"events, {scored} scored boxes; model {args.model} ({det.backend}, {det.imgsz[0]}x{det.imgsz[1]})")
        for conf in sorted({c.detection_conf for c in configs.values()} | {args.conf}):
            recall = detector_recall(truth, dets, conf)
            print(f"  detector recall at score > {conf:g}, by visibility: " + ", ".join(
                f"{k} {a}/{b} = {a / max(b, 1):.2f}" for k, (a, b) in recall.items()))
        print(f"  {'tracker':14} {'MOTA':>6} {'IDF1':>6} {'IDSW':>5} {'swap':>5} {'gap':>5} {'FP':>5} {'FN':>5}  "
              f"bar (IDF1>=0.8, IDSW<={events})")
        for name, config in configs.items():
            rows = run_tracker(config, dets, video, args.fps, out / f"{name.replace('/', '-')}.txt")
            if not rows:
                print(f"  {name:14} no tracks at all (is --model the trained demo model? try a lower --conf)")
                continue
            r = evaluate_mot_sequence(out / "gt.txt", out / f"{name.replace('/', '-')}.txt", metrics=["CLEAR", "Identity"])
            ok = r.Identity.IDF1 >= 0.8 and r.CLEAR.IDSW <= events
            swaps, gaps = switch_kinds(rows, truth)
            results[(seed, name)] = {"MOTA": r.CLEAR.MOTA, "IDF1": r.Identity.IDF1, "IDSW": r.CLEAR.IDSW, "events": events}
            print(f"  {name:14} {r.CLEAR.MOTA:6.3f} {r.Identity.IDF1:6.3f} {r.CLEAR.IDSW:5d} {swaps:5d} {gaps:5d} "
                  f"{r.CLEAR.CLR_FP:5d} {r.CLEAR.CLR_FN:5d}  {'pass' if ok else 'FAIL'}")
        for conf in sorted({c.detection_conf for c in configs.values()}):
            oracle_ids(truth, dets, conf, args.nms or None, out / "oracle.txt")
            r = evaluate_mot_sequence(out / "gt.txt", out / "oracle.txt", metrics=["CLEAR", "Identity"])
            print(f"  {'oracle':14} {r.CLEAR.MOTA:6.3f} {r.Identity.IDF1:6.3f} {r.CLEAR.IDSW:5d} {'':5} {'':5} "
                  f"{r.CLEAR.CLR_FP:5d} {r.CLEAR.CLR_FN:5d}  (perfect association of the detections above {conf:g})")
    if len(args.seeds) > 1:
        print(f"mean over seeds {' '.join(map(str, args.seeds))}:")
        for name in configs:
            rs = [results[(s, name)] for s in args.seeds if (s, name) in results]
            if rs:
                print(f"  {name:14} MOTA {np.mean([r['MOTA'] for r in rs]):.3f} IDF1 {np.mean([r['IDF1'] for r in rs]):.3f} "
                      f"IDSW {sum(r['IDSW'] for r in rs)} (occlusion events {sum(r['events'] for r in rs)})")
    from dfine.integrations.tracking import _VideoOut
    config = next(iter(configs.values()))
    t0 = time.perf_counter()
    n = sum(1 for _ in dfine.track(out / "shapes.avi", model=det, tracker=config))
    e2e_fps = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    video_out = _VideoOut(out / "tracked.mp4", args.fps, trail=30)  # as dfine track writes it
    for frame, tracks in dfine.track(out / "shapes.avi", model=det, tracker=config):
        video_out.write(frame, tracks)
    video_out.close()
    video_fps = n / (time.perf_counter() - t0)
    print(f"speed: detector alone {detect_fps:.1f} fps (batches of 8, decoded frames); dfine.track end to end "
          f"{e2e_fps:.1f} fps (decode in a reader thread + detect + {next(iter(configs))}), {video_fps:.1f} fps "
          f"with the annotated video written as dfine track does ({video_out.path}); {cpu_line()}")


if __name__ == "__main__":
    main()
