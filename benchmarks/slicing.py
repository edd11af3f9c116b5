"""Small objects in large images: recall at IoU 0.5 with sliced inference against the plain
(whole image downscaled to the model's input) prediction, and the time of each.

Images of at least 2560x1440 are drawn with the demo's shape generator: a textured background and
shapes of 8-24 px of the model's classes, apart from each other. The plain prediction sees the
whole image at the model's size (192 px for the demo model: a 16 px shape becomes about 1-2 px);
the sliced one runs tiles (default: the model's size, 20% overlap) batched through the backend,
merged per class. Recall counts a shape found when a box of its class overlaps it with IoU >= 0.5.
The two modes take turns image by image so that both see the same load on a shared machine.

    python benchmarks/slicing.py --model runs/demo/best_stg2.pth
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dfine.export.benchmark import cpu_line  # noqa: E402


def make_image(rng, width: int, height: int, count: int, num_classes: int, sizes=(8, 24)):
    """(RGB image, boxes [N, 4] xyxy, labels [N]) with ``count`` shapes that do not touch."""
    from dfine.demo.shapes import Shape, random_background, random_color, render
    shapes, taken = [], []
    while len(shapes) < count:
        s = float(rng.uniform(*sizes))
        x, y = rng.uniform(0, width - s), rng.uniform(0, height - s)
        box = (x, y, x + s, y + s)
        if any(x < b[2] + 4 and b[0] < x + s + 4 and y < b[3] + 4 and b[1] < y + s + 4 for b in taken):
            continue
        taken.append(box)
        shapes.append(Shape(int(rng.integers(num_classes)), box, random_color(rng)))
    image, boxes = render(shapes, random_background(rng, width, height))
    keep = [i for i, b in enumerate(boxes) if b is not None]
    return image, np.array([boxes[i] for i in keep], np.float32), np.array([shapes[i].label for i in keep])


def recall(dets, boxes: np.ndarray, labels: np.ndarray, iou: float = 0.5) -> int:
    """Shapes matched one-to-one (greedy, best IoU first) by a same-class box with IoU >= ``iou``."""
    import torch
    from torchvision.ops import box_iou
    if len(dets) == 0:
        return 0
    m = box_iou(torch.from_numpy(boxes), torch.from_numpy(dets.boxes)).numpy()
    m[labels[:, None] != dets.labels[None, :]] = 0
    found = 0
    while m.size and m.max() >= iou:
        i, j = np.unravel_index(m.argmax(), m.shape)
        found += 1
        m[i, :] = 0
        m[:, j] = 0
    return found


class _SvResult:
    """supervision.Detections seen through the attributes ``recall`` reads."""

    def __init__(self, d):
        self.boxes, self.labels = d.xyxy.astype(np.float32), d.class_id

    def __len__(self):
        return len(self.boxes)


def _supervision_slicer(plain, sliced, args):
    """supervision's InferenceSlicer over the same detector, tiles and overlap: a callable like a Detector."""
    import supervision as sv
    from PIL import Image
    th, tw = sliced.slice.tile
    overlap = (int(round(tw * args.overlap)), int(round(th * args.overlap)))

    def callback(tiles):
        return [d.to_supervision() for d in plain.predict_pil([Image.fromarray(t) for t in tiles])]
    slicer = sv.InferenceSlicer(callback=callback, slice_wh=(tw, th), overlap_wh=overlap, iou_threshold=0.5,
                                batch_size=args.batch_size)
    return lambda image: [_SvResult(slicer(np.asarray(image)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="the demo model (checkpoint or .onnx)")
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--size", type=int, nargs=2, default=(2560, 1440), metavar=("W", "H"))
    p.add_argument("--objects", type=int, default=60, help="shapes per image")
    p.add_argument("--tile", type=int, nargs="+", default=None,
                   help="tile sides in image pixels, one sliced row each (default: the model's size)")
    p.add_argument("--overlap", type=float, default=0.2)
    p.add_argument("--merge", choices=("nms", "nmm"), default="nms")
    p.add_argument("--conf", type=float, default=0.3)
    p.add_argument("-b", "--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--supervision", action="store_true",
                   help="also run supervision's InferenceSlicer (batched callback, same tiles, NMS) for comparison")
    args = p.parse_args()
    import dfine
    from dfine.slicing import SliceConfig, tile_windows

    plain = dfine.Detector(args.model, conf=args.conf, batch_size=args.batch_size)
    modes = {"plain": plain}
    for t in args.tile or [None]:
        tile = (t, t) if t else plain.imgsz
        modes[f"sliced {tile[0]}"] = dfine.Detector(args.model, conf=args.conf, batch_size=args.batch_size,
                                                  slice=SliceConfig(tile=tile, overlap=args.overlap, merge=args.merge))
    if args.supervision:
        modes["supervision slicer"] = _supervision_slicer(plain, modes[next(m for m in modes if m != "plain")], args)
    print(f"{args.images} images {args.size[0]}x{args.size[1]}, {args.objects} shapes of 8-24 px each; model "
          f"{args.model} ({plain.backend}, input {plain.imgsz[0]}x{plain.imgsz[1]}); tiles overlap {args.overlap}, "
          f"{args.merge}, batches of {args.batch_size}")
    rng = np.random.default_rng(args.seed)
    total, hits, times = 0, {m: 0 for m in modes}, {m: [] for m in modes}
    for det in modes.values():  # warm-up
        det(np.zeros((256, 256, 3), np.uint8))
    for _ in range(args.images):
        image, boxes, labels = make_image(rng, *args.size, args.objects, len(plain.class_names))
        total += len(boxes)
        for name, det in modes.items():  # taking turns image by image
            t0 = time.perf_counter()
            [d] = det(image)
            times[name].append(time.perf_counter() - t0)
            hits[name] += recall(d, boxes, labels)
    for name, det in modes.items():
        tiles = "" if getattr(det, "slice", None) is None else f" ({len(tile_windows(*args.size, det.slice.tile, args.overlap))} tiles)"
        ratio = statistics.median(s / p for s, p in zip(times[name], times["plain"]))
        print(f"{name + tiles:22} recall@0.5 {hits[name] / total:.3f} ({hits[name]}/{total})  "
              f"{statistics.median(times[name]):6.2f} s per image (median), {ratio:5.1f}x plain's time")
    print(f"{cpu_line()} (ratios are medians of per-image ratios)")


if __name__ == "__main__":
    main()
