"""Sliced inference for small objects in large images (drone, satellite, 4K frames).

The image is cut into overlapping tiles (by default at the model's input size, so tiles are not
resized and a 10 px object stays 10 px instead of shrinking to 2 px in a downscaled whole image);
every tile, plus optionally the whole image downscaled, goes through the backend in batches; boxes
are moved back to image pixels and merged per class across tiles.

Our own, not supervision's ``InferenceSlicer``. Not for speed: the backend dominates, and
``benchmarks/slicing.py --supervision`` times both within noise of each other on the same tiles
(supervision's slicer also batches). But ``dfine predict --slice`` then needs no optional package, the
tiles go to the backend as ``[B, 3, H, W]`` batches without a round trip through
``supervision.Detections`` per tile, and the merge knows which boxes a tile edge cut and on which side
(:func:`cut_sides`): the pieces of an object that no tile saw whole are joined into one box
(:func:`join_cut_pieces`); then with NMS a whole box wins over a cut piece of the same object and
pieces mostly inside a whole box are dropped, where plain NMS keeps a sliver whose IoU with the whole
box is small. Merging is torchvision's C++ ``batched_nms`` (a dependency already) or a short greedy
non-maximum merge. The tiling follows supervision's rule (stride = tile - overlap, the last tile flush
with the edge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DfineError, keyword_hints

MERGES = ("nms", "nmm")


@keyword_hints(name="dfine.slicing.SliceConfig", aliases={"size": "tile"})  # TileConfig's word for it
@dataclass(frozen=True)
class SliceConfig:
    """How to slice.

    ``tile``: tile (height, width) in image pixels, None for the model's input size. ``overlap``:
    fraction of a tile shared with its neighbour (0 <= overlap < 1); objects up to about
    ``overlap * tile`` pixels are seen whole in at least one tile. ``merge``: ``nms`` keeps the best
    box of each group of same-class boxes overlapping by IoU >= ``iou``; ``nmm`` merges each group
    (grouped by intersection over the smaller box >= ``iou``) into the box around all of them, which
    joins the pieces of an object cut by a tile edge. ``full``: also detect in the whole image
    downscaled to the model's size (for objects larger than a tile)."""

    tile: Optional[Tuple[int, int]] = None
    overlap: float = 0.2
    merge: str = "nms"
    iou: float = 0.5
    full: bool = False

    def __post_init__(self):
        if not 0 <= self.overlap < 1:
            raise DfineError(f"slice overlap must be in 0..1 (a fraction of the tile), got {self.overlap}")
        if self.merge not in MERGES:
            raise DfineError(f"unknown merge {self.merge!r}; choose one of {', '.join(MERGES)}")
        if not 0 < self.iou <= 1:
            raise DfineError(f"slice iou must be in 0..1, got {self.iou}")
        if self.tile is not None and (len(self.tile) != 2 or min(self.tile) < 32):
            raise DfineError(f"slice tile must be (height, width) of at least 32 px, got {self.tile}")


def slice_config(value: Union[None, bool, int, Sequence[int], SliceConfig], **options) -> Optional[SliceConfig]:
    """A :class:`SliceConfig` from ``Detector(slice=...)``: None/False (off), True (model size),
    an int (square tile), ``(height, width)`` or a SliceConfig; ``options`` fill its other fields."""
    if value is None or value is False:
        return None
    if isinstance(value, SliceConfig):
        return value
    return SliceConfig(tile=slice_tile(value), **options)


def slice_tile(value: Union[bool, int, Sequence[int]]) -> Optional[Tuple[int, int]]:
    """The tile (height, width) in pixels of a ``slice=`` value: None for True (the model's input size),
    ``(N, N)`` for an int N, ``(height, width)`` for one or two ints; anything else is a one-line error."""
    if value is True:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    try:  # slice="big" read 'invalid literal for int() with base 10: 'b'' (a walk)
        tile = tuple(int(v) for v in value) if not isinstance(value, str) else ()  # type: ignore[union-attr]
    except (TypeError, ValueError):
        tile = ()
    if len(tile) not in (1, 2) or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in value):
        # 'slice='640': True (tiles ...), ...' said what it takes with no verb (a walk)
        raise DfineError(f"slice={value!r} is no tile size; slice= takes True (tiles of the model's input size), "
                         f"a tile size N or (height, width) in pixels")
    return (tile * 2)[:2]  # type: ignore[return-value]


#: How many times its training tile (on either side) an image must be for a model trained on tiles,
#: run on the whole of it, to be told of ``--slice``: its objects then shrink that much
UNSLICED_SHRINK = 1.5


def trained_tile(value: object) -> Optional[Tuple[int, int]]:
    """The tile (height, width) a model was trained on (``dfine data tile``), from the ``tiles`` entry
    of its checkpoint, ``{"size": [h, w], ...}``, or of its export's metadata (the same as JSON
    text); None when there is none or it is not such an entry."""
    if isinstance(value, str):
        import json
        try:
            value = json.loads(value)
        except ValueError:
            return None
    size = value.get("size") if isinstance(value, dict) else None
    if (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 32 for v in size)):
        return int(size[0]), int(size[1])
    return None


def slice_words(tile: Tuple[int, int]) -> str:
    """``--slice``'s words for the tile (height, width): ``320``, or ``480 640``."""
    return str(tile[0]) if tile[0] == tile[1] else f"{tile[0]} {tile[1]}"


def hw_words(size: Tuple[int, int]) -> str:
    """``"640x640"``, or ``"256x400 (height x width)"`` of a non-square (height, width) ``size``: the order
    ``--size``, ``--slice`` and the tiles' folder name take (a walk read '400x256 tiles' beside
    ``drone_tiles256x400``)."""
    h, w = size
    return f"{h}x{w}" + ("" if h == w else " (height x width)")


def shrink_past_tile(tile: Tuple[int, int], sizes: np.ndarray) -> np.ndarray:
    """``[N]`` how many times each image of ``sizes [N, 2]`` (width, height) is its trained ``tile``
    (height, width) on its larger side: what its objects shrink by, run whole at the tile's input."""
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    return np.maximum(sizes[:, 0] / tile[1], sizes[:, 1] / tile[0])


def unsliced_note(name: str, tile: Tuple[int, int], sizes: Any, *, val: bool = False) -> Optional[str]:
    """The note for a model trained on ``tile`` (height, width) tiles run unsliced on images of
    ``sizes`` (width, height; one pair, or ``[N, 2]``): None unless one is :data:`UNSLICED_SHRINK`
    times the tile or more. ``val``: the images are a val set being scored (says how many are
    larger, and the largest), not one image being predicted on."""
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    factor = shrink_past_tile(tile, sizes)
    large = factor >= UNSLICED_SHRINK
    if not large.any():
        return None
    w, h = (int(v) for v in sizes[int(np.argmax(factor))])
    said = f"note: {name} was trained on tiles of {hw_words(tile)} cut by dfine data tile; "
    if not val:
        arg = tile[0] if tile[0] == tile[1] else tile
        return (f"{said}this {w}x{h} image is shrunk {float(factor.max()):.1f}x to its input, its objects with it: "
                f"--slice {slice_words(tile)} (Detector(slice={arg})) runs it on tiles as trained")
    n = int(large.sum())
    which = f"the {n} val image{'s' if n > 1 else ''}" if large.all() else f"{n} of the {len(sizes)} val images"
    which += " is" if n == 1 else " are"
    it, its = ("it", "its") if n == 1 else ("them", "their")
    return (f"{said}{which} larger (up to {w}x{h}, shrunk {float(factor.max()):.1f}x to its input whole, {its} "
            f"objects with {it}): add --slice {slice_words(tile)} to score it on tiles, as it is used")


#: How many times the trained tile a --slice tile may be (or its inverse) before a note says so
OTHER_TILE = 1.25


def other_tile_note(name: str, trained: Tuple[int, int], cut: Tuple[int, int]) -> Optional[str]:
    """The note for a model trained on ``trained`` (height, width) tiles sliced into ``cut`` ones:
    its objects reach the input that many times smaller (or larger) than in training, or, where the
    two sides scale apart, that many times as tall and as wide. None when each side is within
    :data:`OTHER_TILE` of the trained one."""
    tall, wide = trained[0] / cut[0], trained[1] / cut[1]  # an object's size at the input against in training
    if all(1 / OTHER_TILE < s < OTHER_TILE for s in (tall, wide)):
        return None
    if f"{tall:.1f}" == f"{wide:.1f}":
        scale = (f"{1 / tall:.1f}x smaller" if tall < 1 else f"{tall:.1f}x larger") + " than"
    else:  # a 320x320 tile into a 256x384 input was said to be '1.2x smaller' (a walk): it is squeezed, not shrunk
        scale = f"{tall:.1f}x as tall and {wide:.1f}x as wide as"
    return (f"note: {name} was trained on tiles of {hw_words(trained)} cut by dfine data tile; --slice "
            f"{slice_words(cut)} cuts tiles of {hw_words(cut)}, so its objects reach the input {scale} in "
            f"training: --slice {slice_words(trained)} cuts them as trained")


def tile_windows(width: int, height: int, tile: Tuple[int, int], overlap: float) -> np.ndarray:
    """Tile windows ``[N, 4]`` int xyxy covering a ``width x height`` image, row-major: stride
    ``tile * (1 - overlap)``, the last tile of a row/column flush with the edge, one tile spanning a
    side shorter than the tile."""
    def starts(size: int, length: int) -> np.ndarray:
        if size <= length:
            return np.array([0])
        stride = max(1, int(round(length * (1 - overlap))))
        s = list(range(0, size - length, stride))
        return np.array(s + [size - length])
    th, tw = tile
    xs, ys = starts(width, tw), starts(height, th)
    x0, y0 = np.meshgrid(xs, ys)
    x1, y1 = np.minimum(x0 + tw, width), np.minimum(y0 + th, height)
    return np.stack([x0, y0, x1, y1], axis=-1).reshape(-1, 4)


def cut_sides(boxes: np.ndarray, windows: np.ndarray, width: int, height: int, margin: float = 1.0) -> np.ndarray:
    """``[K, 4]`` bool (left, top, right, bottom): which sides of each box (image pixels) lie on an edge of
    its tile ``windows [K, 4]`` that is not an edge of the ``width x height`` image, i.e. where the tile
    cut the object."""
    inner = np.stack([windows[:, 0] > 0, windows[:, 1] > 0, windows[:, 2] < width, windows[:, 3] < height], 1)
    return inner & (np.abs(boxes - windows) <= margin)


def join_cut_pieces(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, sides: np.ndarray,
                    min_span_iou: float = 0.5) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Join the pieces of objects that no tile saw whole into one box each.

    Two boxes of one class are pieces of one object when one is cut on its right (bottom) side, the other
    on its left (top) side, they overlap along that axis (both saw the strip the two tiles share) and
    span the same extent across it (interval IoU >= ``min_span_iou``). Each connected group becomes the
    box around it with its best score, no longer marked cut. ``boxes [K, 4]``, ``scores [K]``,
    ``labels [K]``, ``sides [K, 4]`` from :func:`cut_sides` -> the same four, ``cut [K']`` bool last."""
    cut = sides.any(axis=1)
    if cut.sum() < 2:
        return boxes, scores, labels, cut
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    idx = np.nonzero(cut)[0]
    b, sd, lab = boxes[idx], sides[idx], labels[idx]
    same = lab[:, None] == lab[None, :]
    link = np.zeros((len(idx), len(idx)), bool)
    for axis in (0, 1):  # 0: a piece cut on its right meets one cut on its left; 1: bottom meets top
        lo, hi, across = b[:, axis], b[:, axis + 2], (b[:, 1 - axis], b[:, 3 - axis])
        meets = sd[:, axis + 2][:, None] & sd[:, axis][None, :] & (lo[None, :] < hi[:, None]) & (lo[:, None] < lo[None, :])
        inter = np.clip(np.minimum(across[1][:, None], across[1][None, :]) - np.maximum(across[0][:, None], across[0][None, :]), 0, None)
        union = np.maximum(across[1][:, None], across[1][None, :]) - np.minimum(across[0][:, None], across[0][None, :])
        link |= meets & same & (inter >= min_span_iou * np.maximum(union, 1e-9))
    if not link.any():
        return boxes, scores, labels, cut
    n, group = connected_components(coo_matrix(link), directed=False)
    out_b, out_s, out_l, out_c = [boxes[~cut]], [scores[~cut]], [labels[~cut]], [np.zeros((~cut).sum(), bool)]
    for g in range(n):
        members = np.nonzero(group == g)[0]
        m = b[members]
        out_b.append(np.array([[m[:, 0].min(), m[:, 1].min(), m[:, 2].max(), m[:, 3].max()]], boxes.dtype))
        out_s.append(scores[idx[members]].max(keepdims=True))
        out_l.append(lab[members[:1]])
        out_c.append(np.array([len(members) == 1]))
    return (np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_l), np.concatenate(out_c))


def merge_detections(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, merge: str = "nms",
                     iou: float = 0.5, cut: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge same-class duplicates: ``boxes [K, 4]`` xyxy, ``scores [K]``, ``labels [K]`` -> the kept
    (or merged) boxes, best score first. ``cut [K]`` marks boxes of objects cut by a tile edge
    (any side of :func:`cut_sides`): of overlapping boxes, a whole one is kept before a cut one."""
    if len(scores) == 0:
        return boxes.reshape(0, 4), scores, labels
    rank = scores - (2.0 * cut if cut is not None else 0.0)  # whole boxes first, by score
    if merge == "nms":
        import torch
        from torchvision.ops import batched_nms
        keep = batched_nms(torch.from_numpy(boxes).float(), torch.from_numpy(rank).float(),
                           torch.from_numpy(labels), iou).numpy()
        if cut is not None:  # a piece of an object mostly inside a whole box of its class goes too
            whole = keep[~cut[keep]]
            keep = np.array([k for k in keep if not cut[k] or not (
                _overlap_of_smaller(boxes[k], boxes[whole[labels[whole] == labels[k]]]) >= iou).any()], np.int64)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        return boxes[keep], scores[keep], labels[keep]
    return _non_max_merge(boxes, scores, labels, iou, rank)


def _overlap_of_smaller(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``[N]`` intersection of ``box [4]`` with each of ``boxes [N, 4]`` over the smaller one's area."""
    def area(b):
        return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    ix = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    return ix * iy / np.maximum(np.minimum(area(boxes), area(box)), 1e-9)


def _non_max_merge(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, threshold: float, rank: np.ndarray):
    """Greedy NMM: highest ``rank`` first, each group of unmerged same-class boxes whose intersection
    over the smaller box >= ``threshold`` becomes the box around them all, with the group's best score."""
    order = np.argsort(-rank, kind="stable")
    boxes, scores, labels = boxes[order], scores[order], labels[order]
    free = np.ones(len(scores), bool)
    out_boxes, out_scores, out_labels = [], [], []
    for i in range(len(scores)):
        if not free[i]:
            continue
        cand = np.nonzero(free & (labels == labels[i]))[0]
        group = cand[_overlap_of_smaller(boxes[i], boxes[cand]) >= threshold]
        free[group] = False
        b = boxes[group]
        out_boxes.append([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])
        out_scores.append(scores[group].max())
        out_labels.append(labels[i])
    best = np.argsort(-np.array(out_scores), kind="stable")
    return (np.array(out_boxes, boxes.dtype).reshape(-1, 4)[best], np.array(out_scores, scores.dtype)[best],
            np.array(out_labels, labels.dtype)[best])
