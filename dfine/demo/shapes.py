"""A deterministic synthetic detection dataset: coloured shapes on textured backgrounds.

Nothing is downloaded; the same seed gives the same pixels and the same annotations.

Three layers, each usable alone:

* :func:`render` draws a frame from a list of :class:`Shape` (class, box, colour) on a
  background and returns the image with each shape's visible box. Boxes may reach outside the
  frame (the shape is cut by the border); a video is a loop over frames with moving boxes.
* :func:`random_background` and :func:`random_shapes` draw a random scene (textures; several
  objects of varied sizes, some overlapping, some at the border, some small; or none).
* :func:`make_shapes_dataset` writes a COCO-format train/val split of such scenes to disk.

Box convention everywhere: ``(x0, y0, x1, y1)`` in pixels, floats, x to the right, y down.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CLASSES", "Shape", "ShapesSpec", "ShapesDataset", "render", "random_background", "random_shapes",
           "random_color", "make_shapes_dataset"]

# Class names, in label order; a dataset of K classes uses the first K.
CLASSES: Tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")

Box = Tuple[float, float, float, float]
_SUPERSAMPLE = 4  # shapes are drawn at 4x and averaged down: smooth (anti-aliased) edges


@dataclass(frozen=True)
class Shape:
    """One object to draw: ``label`` indexes :data:`CLASSES`, ``box`` is the extent of the whole
    shape ``(x0, y0, x1, y1)`` in pixels (it may reach outside the frame), ``color`` RGB 0..255."""

    label: int
    box: Box
    color: Tuple[int, int, int]


def _outline(label: int) -> List[Tuple[float, float]]:
    """The polygon of a class in the unit square, touching all four sides (so the shape's
    extent is exactly its box). Circles are drawn as ellipses instead."""
    name = CLASSES[label]
    if name == "square":
        return [(0, 0), (1, 0), (1, 1), (0, 1)]
    if name == "triangle":
        return [(0.5, 0), (1, 1), (0, 1)]
    if name == "cross":
        a, b = 0.34, 0.66
        return [(a, 0), (b, 0), (b, a), (1, a), (1, b), (b, b), (b, 1), (a, 1), (a, b), (0, b), (0, a), (a, a)]
    if name == "star":
        pts = [(math.cos(math.pi / 2 + k * math.pi / 5) * (1.0 if k % 2 == 0 else 0.45),
                -math.sin(math.pi / 2 + k * math.pi / 5) * (1.0 if k % 2 == 0 else 0.45)) for k in range(10)]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return [((x - min(xs)) / (max(xs) - min(xs)), (y - min(ys)) / (max(ys) - min(ys))) for x, y in pts]
    raise ValueError(f"no outline for class {name!r}")


def _mask(shape: Shape, region: Tuple[int, int, int, int]) -> Image.Image:
    """Coverage (``L`` image, 0..255) of ``shape`` over the integer pixel ``region``."""
    rx0, ry0, rx1, ry1 = region
    s = _SUPERSAMPLE
    big = Image.new("L", ((rx1 - rx0) * s, (ry1 - ry0) * s), 0)
    draw = ImageDraw.Draw(big)
    x0, y0, x1, y1 = shape.box
    ox, oy, w, h = (x0 - rx0) * s, (y0 - ry0) * s, (x1 - x0) * s, (y1 - y0) * s
    if CLASSES[shape.label] == "circle":
        draw.ellipse([ox, oy, ox + w - 1, oy + h - 1], fill=255)
    else:
        draw.polygon([(ox + u * (w - 1), oy + v * (h - 1)) for u, v in _outline(shape.label)], fill=255)
    return big.resize((rx1 - rx0, ry1 - ry0), Image.BOX)


def render(shapes: Sequence[Shape], background: np.ndarray) -> Tuple[Image.Image, List[Optional[Box]]]:
    """Draw ``shapes`` in order (later ones on top) on ``background`` (``[H, W, 3]`` uint8).

    Returns the RGB image and, per shape, its visible box ``(x0, y0, x1, y1)``: the extent of
    the shape's own pixels inside the frame (cut by the border, not by other shapes), or
    ``None`` when nothing of it is in the frame.
    """
    if background.ndim != 3 or background.shape[2] != 3 or background.dtype != np.uint8:
        raise ValueError(f"background must be [H, W, 3] uint8, got {background.shape} {background.dtype}")
    height, width = background.shape[:2]
    image = Image.fromarray(background, "RGB")
    boxes: List[Optional[Box]] = []
    for shape in shapes:
        x0, y0, x1, y1 = shape.box
        region = (max(0, math.floor(x0)), max(0, math.floor(y0)), min(width, math.ceil(x1)), min(height, math.ceil(y1)))
        if region[2] <= region[0] or region[3] <= region[1] or x1 - x0 < 1 or y1 - y0 < 1:
            boxes.append(None)
            continue
        mask = _mask(shape, region)
        image.paste(tuple(shape.color), region, mask)
        cover = np.asarray(mask) >= 128  # a pixel belongs to the shape when at least half covered
        ys, xs = np.nonzero(cover.any(axis=1))[0], np.nonzero(cover.any(axis=0))[0]
        if len(xs) == 0:
            boxes.append(None)
            continue
        boxes.append((float(region[0] + xs[0]), float(region[1] + ys[0]),
                      float(region[0] + xs[-1] + 1), float(region[1] + ys[-1] + 1)))
    return image, boxes


def random_color(rng: np.random.Generator) -> Tuple[int, int, int]:
    """A saturated, bright RGB colour (objects; backgrounds are duller)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """``[H, W]`` float in 0..1: random values on a grid of ``cell`` pixels, bicubic-upsampled."""
    gh, gw = max(2, int(height / cell) + 2), max(2, int(width / cell) + 2)
    grid = Image.fromarray((rng.random((gh, gw)) * 255).astype(np.uint8), "L")
    return np.asarray(grid.resize((width, height), Image.BICUBIC), dtype=np.float32) / 255.0


def random_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A textured ``[H, W, 3]`` uint8 background: a dull two-colour blend driven by smooth
    noise, stripes, a checkerboard or a gradient, plus fine grain."""
    import colorsys

    def dull() -> np.ndarray:
        rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.45), rng.uniform(0.15, 0.9))
        return np.array(rgb, dtype=np.float32) * 255

    a = dull()
    b = a + rng.uniform(0.3, 0.6) * (dull() - a)  # textured, but fainter than the shapes on it
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.integers(4)
    if kind == 0:
        t = _smooth_noise(rng, height, width, rng.uniform(8, 48))
    elif kind == 1:  # stripes at a random angle
        angle, period = rng.uniform(0, math.pi), rng.uniform(6, 30)
        t = 0.5 + 0.5 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
    elif kind == 2:  # checkerboard
        cell = rng.uniform(6, 32)
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32) * rng.uniform(0.3, 1.0)
    else:  # gradient
        angle = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    image = a + t[..., None] * (b - a)
    image += rng.normal(0, rng.uniform(2, 10), (height, width, 1)).astype(np.float32)  # grain
    return np.clip(image, 0, 255).astype(np.uint8)


def _iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return inter / (area(a) + area(b) - inter)


def _covered(lower: Box, upper: Box) -> float:
    """Fraction of ``lower``'s box area under ``upper``'s box."""
    iw = max(0.0, min(lower[2], upper[2]) - max(lower[0], upper[0]))
    ih = max(0.0, min(lower[3], upper[3]) - max(lower[1], upper[1]))
    return iw * ih / ((lower[2] - lower[0]) * (lower[3] - lower[1]))


def random_shapes(rng: np.random.Generator, width: int, height: int, *, num_classes: int = 3,
                  count: Tuple[int, int] = (1, 6), size: Tuple[float, float] = (10.0, 80.0),
                  empty_prob: float = 0.08, border_prob: float = 0.15, max_cover: float = 0.4,
                  tries: int = 30) -> List[Shape]:
    """A random scene: ``count[0]..count[1]`` shapes (none with probability ``empty_prob``) of
    the first ``num_classes`` classes, sides log-uniform in ``size`` pixels (aspect 0.75..1.33).

    A shape crosses the frame border with probability ``border_prob`` (up to a third of it
    outside); overlaps are allowed as long as no shape has more than ``max_cover`` of its box
    under a later one (so every object stays recognisable).
    """
    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be 1..{len(CLASSES)}, got {num_classes}")
    if rng.random() < empty_prob:
        return []
    shapes: List[Shape] = []
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        for _ in range(tries):
            side = math.exp(rng.uniform(math.log(size[0]), math.log(size[1])))
            aspect = math.exp(rng.uniform(math.log(0.75), math.log(4 / 3)))
            w, h = side * math.sqrt(aspect), side / math.sqrt(aspect)
            if w >= width or h >= height:
                continue
            if rng.random() < border_prob:  # up to a third outside the frame
                x0, y0 = rng.uniform(-w / 3, width - 2 * w / 3), rng.uniform(-h / 3, height - 2 * h / 3)
            else:
                x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
            box = (x0, y0, x0 + w, y0 + h)
            if all(_covered(s.box, box) <= max_cover and _iou(s.box, box) <= max_cover for s in shapes):
                shapes.append(Shape(int(rng.integers(num_classes)), box, random_color(rng)))
                break
    return shapes


@dataclass(frozen=True)
class ShapesSpec:
    """What :func:`make_shapes_dataset` generates; the same spec gives the same files.

    ``size``: object side range as fractions of the image side (bigger objects train faster).
    """

    num_train: int = 400
    num_val: int = 100
    image_size: int = 192
    num_classes: int = 3
    count: Tuple[int, int] = (1, 5)
    size: Tuple[float, float] = (0.1, 0.45)
    empty_prob: float = 0.08
    border_prob: float = 0.15
    seed: int = 0


@dataclass(frozen=True)
class ShapesDataset:
    """Paths of a generated dataset (COCO format: ``{split}/*.png`` and ``{split}.json``)."""

    root: Path
    class_names: Tuple[str, ...]
    spec: ShapesSpec = field(default_factory=ShapesSpec)

    def images(self, split: str) -> Path:
        return self.root / split

    def ann_file(self, split: str) -> Path:
        return self.root / f"{split}.json"


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _make_split(root: Path, split: str, spec: ShapesSpec, first: int, number: int, progress: bool) -> Dict[str, Any]:
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    side = spec.image_size
    sizes = (spec.size[0] * side, spec.size[1] * side)
    indices = range(first, first + number)
    if progress:
        from ..text import progress_bar
        indices = progress_bar(iterable=indices, desc=f"shapes {split}", unit="img", leave=False, dynamic_ncols=True)
    for index in indices:
        rng = np.random.default_rng([spec.seed, index])  # each image on its own: independent of the counts
        shapes = random_shapes(rng, side, side, num_classes=spec.num_classes, count=spec.count, size=sizes,
                               empty_prob=spec.empty_prob, border_prob=spec.border_prob)
        image, boxes = render(shapes, random_background(rng, side, side))
        name = f"{index:06d}.png"
        tmp = folder / f".{name}.tmp.png"
        image.save(tmp, compress_level=1)  # grainy textures hardly compress: favour speed
        os.replace(tmp, folder / name)
        image_id = index + 1
        images.append({"id": image_id, "file_name": name, "width": side, "height": side})
        for shape, box in zip(shapes, boxes):
            if box is None:
                continue
            x0, y0, x1, y1 = box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": shape.label + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES[:spec.num_classes])]
    return {"images": images, "annotations": annotations, "categories": categories}


def make_shapes_dataset(root: os.PathLike | str, spec: ShapesSpec = ShapesSpec(), progress: bool = False
                        ) -> ShapesDataset:
    """Write (or reuse, when ``root/spec.json`` says the same spec) a COCO-format dataset:
    ``root/train/*.png`` + ``root/train.json`` and ``root/val/*.png`` + ``root/val.json``.
    Category ids are 1..K with the class names of :data:`CLASSES`; image ids 1..N."""
    root = Path(root)
    done = ShapesDataset(root, CLASSES[:spec.num_classes], spec)
    marker = root / "spec.json"
    wanted = json.loads(json.dumps(asdict(spec)))
    if marker.is_file() and json.loads(marker.read_text()) == wanted and all(
            done.ann_file(s).is_file() for s in ("train", "val")):
        return done
    root.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for split, first, number in (("train", 0, spec.num_train), ("val", spec.num_train, spec.num_val)):
        for old in (root / split).glob("*.png") if (root / split).is_dir() else ():
            old.unlink()
        _write_json(done.ann_file(split), _make_split(root, split, spec, first, number, progress))
    _write_json(marker, wanted)
    return done
