"""Drawing detections on an image: boxes in a colour per class, labels ``"name score"`` placed so that
none is cut at an edge, in a font that has the class names' characters. ``dfine predict``,
``dfine track``, :meth:`dfine.inference.Detections.plot` and the demo's pictures draw with it."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from .errors import DfineError
from .text import no_font_note

__all__ = ["draw", "label_corner", "label_font", "label_px", "place_label"]

_PALETTE = [(255, 56, 56), (72, 249, 10), (0, 194, 255), (255, 157, 151), (146, 204, 23), (52, 69, 147),
            (255, 112, 31), (207, 210, 49), (100, 115, 255), (255, 55, 199), (26, 147, 52), (61, 219, 134)]


def draw(image: Image.Image, dets, scores: bool = True, empty: Optional[str] = None,
         labels: Union[str, int, bool] = "auto") -> Image.Image:
    """A copy of ``image`` with boxes labelled ``"name score"`` (``"name"`` without ``scores``: boxes
    of an annotation file); the text (11 px at 640 px, ~1/60 of
    the longer side) and the lines (2 px at 640 px) grow with the image, so labels stay readable on a
    2048 px photo; boxes much smaller than that text (40x20 px cars on a 4000 px drone image) get labels
    that follow them, down to :data:`MIN_LABEL_PX` (:func:`label_px`; ``labels``: ``"auto"``, ``"none"``
    or ``False`` for boxes alone, or the text's height in px). Labels are placed from the best score down,
    each where it covers no label placed before it and no more than :data:`COVER_SHARE` of another box
    (:func:`place_label`), and drawn over all the boxes, the best last: of two boxes in one place (a
    duplicate) the best's label is the one seen; a label with no free place near its box is left out (its
    box is drawn; ``predictions.json`` has every detection).
    ``empty``: a caption written in the top-left corner when there is no detection (``dfine predict``'s
    ``no detection above --conf 0.5``: a bare picture beside the others read as a tool that did nothing).
    Of more than :data:`MAX_DRAWN` detections the best are drawn, and a caption says so; the labels of
    the best :data:`MAX_LABELLED` are placed."""
    image = image.copy()
    pen = ImageDraw.Draw(image)
    side = max(image.size)
    width = max(2, round(side / 320))
    count = len(dets.scores)
    order = np.argsort(dets.scores, kind="stable").tolist()  # the best last, so its label is on top of a duplicate's
    order = order[-MAX_DRAWN:]
    boxes = np.asarray(dets.boxes, dtype=np.float64).reshape(-1, 4)
    drawn = boxes[order]
    size = label_px(labels, image.size, drawn[-MAX_LABELLED:])
    font = label_font(size or MIN_LABEL_PX, "".join(sorted(set("".join(dets.names) + (empty or "")))))
    pad = max(1, min(width // 2, (size or MIN_LABEL_PX) // 10))  # 3 px at 2048 px; 1 px around labels shrunk to 11 px
    # captions half again as large as labels: an 11 px 'no detection above --conf 0.9' on a 640 px picture was read
    # with a magnifier, its '--' as one dash (a walk)
    caption = label_font(max(16, round(side / 36)), "".join(sorted(set(empty or "the best of detections drawn0123"))))
    if empty and not count:
        _caption(pen, empty, caption, max(1, width // 2))
        return image
    spots: Dict[int, Tuple[float, float, float, float]] = {}
    labelled = order[-MAX_LABELLED:] if size else []  # (no labels: none)
    for rank, i in enumerate(reversed(labelled)):  # the best first: its label keeps the place above its box
        left, top, right, bottom = pen.textbbox((0, 0), _text(dets, i, scores), font=font)
        spot = place_label(dets.boxes[i].tolist(), (right + 2 * pad, bottom + 2 * pad), image.size,
                           list(spots.values()), np.delete(drawn, len(order) - 1 - rank, axis=0), COVER_SHARE)
        if spot is not None:  # none in a crowd without a free place: the box alone
            spots[i] = spot
    for i in order:  # a line no wider than an eighth of the box's shorter side: 20 px boxes were solid at 15 px
        box, color = dets.boxes[i].tolist(), _PALETTE[int(dets.labels[i]) % len(_PALETTE)]
        short = min(box[2] - box[0], box[3] - box[1])
        pen.rectangle(box, outline=color, width=max(1, min(width, round(short / 8))))
    for i in (i for i in order if i in spots):  # labels over every box: a box drawn later no longer crosses one
        x, y, x1, y1 = spots[i]
        pen.rectangle((x, y, x1, y1), fill=_PALETTE[int(dets.labels[i]) % len(_PALETTE)])
        pen.text((x + pad, y + pad), _text(dets, i, scores), fill=(255, 255, 255), font=font)
    if count > MAX_DRAWN:
        _caption(pen, f"the best {MAX_DRAWN} of {count} detections drawn", caption, max(1, width // 2))
    return image


#: The smallest label text, px, that ``labels="auto"`` shrinks to for small boxes (smaller was read with a magnifier)
MIN_LABEL_PX = 11
#: The most of another box a label may cover (a share of its area): a row of 40x20 px cars under labels
#: covering 45% of each looked like a row of labels (a walk)
COVER_SHARE = 0.25
#: What ``labels`` takes, besides a text height in px: label size following the image and the boxes, or no labels
LABEL_CHOICES = ("auto", "none")


def label_px(labels: Union[str, int, bool, None], image_size: Tuple[int, int], boxes: np.ndarray) -> Optional[int]:
    """The labels' text height in px of a picture of ``image_size`` (width, height px) showing ``boxes [N, 4]``
    (x0, y0, x1, y1 px), or None for no labels. ``labels``: ``"auto"`` (or True): ~1/60 of the picture's longer
    side, at least 11 px, and no taller than 3/5 of the median box's height where the boxes are that small, down
    to :data:`MIN_LABEL_PX` (ordinary photos keep the image's size: their boxes are taller than 5/3 of a label);
    ``"none"``, ``False`` or ``None``: no labels; a number (or its text, ``"14"``): that height."""
    if labels is None or labels is False or (isinstance(labels, str) and labels.strip().lower() == "none"):
        return None
    if isinstance(labels, str) and labels.strip().lower() != "auto":
        try:
            labels = int(labels)
        except ValueError:
            raise DfineError(f"labels: {', '.join(LABEL_CHOICES)} or a text height in px, got {labels!r}") from None
    if not isinstance(labels, (str, bool)):
        if int(labels) < 1:
            raise DfineError(f"labels: a text height in px is 1 or more, got {labels}")
        return int(labels)
    size = max(MIN_LABEL_PX, round(max(image_size) / 60))
    heights = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    heights = heights[:, 3] - heights[:, 1]
    if len(heights):
        size = min(size, max(MIN_LABEL_PX, round(0.6 * float(np.median(heights)))))
    return size


#: The most boxes a picture draws (the best; a walk's 50112 detections at --conf 0.001 drew a solid red image)
MAX_DRAWN = 1000
#: The most boxes whose labels are placed (the best): the placement looks at every drawn box for each label
MAX_LABELLED = 300


def _caption(pen: Any, text: str, font: Any, pad: int) -> None:
    """``text`` in white on a grey band in the picture's top-left corner, in lines that fit its width (a
    walk's 192 px pictures cut 'no detection above --conf 0.5' before its number)."""
    lines = wrapped(pen, text, font, pen.im.size[0] - 4 * pad)
    measure, write = (pen.textbbox, pen.text) if len(lines) == 1 else (pen.multiline_textbbox, pen.multiline_text)
    _, _, right, bottom = measure((0, 0), "\n".join(lines), font=font)
    pen.rectangle((0, 0, right + 4 * pad, bottom + 4 * pad), fill=(64, 64, 64))
    write((2 * pad, 2 * pad), "\n".join(lines), fill=(255, 255, 255), font=font)


def wrapped(pen: Any, text: str, font: Any, width: float) -> List[str]:
    """``text`` in lines of whole words, each no wider than ``width`` pixels in ``font`` where a word allows;
    an option stays with its value (``--conf 0.5``)."""
    words: List[str] = []
    for word in text.split(" "):
        if words and words[-1].startswith("--") and " " not in words[-1]:
            words[-1] = f"{words[-1]} {word}"
        else:
            words.append(word)
    lines: List[str] = []
    for word in words:
        if lines and pen.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _text(dets, i: int, scores: bool) -> str:
    name = str(dets.names[i])
    if not scores:
        return name
    number = name.replace(".", "", 1).lstrip("-").isdigit()  # class '3' at 0.04 read '3 0.04': two bare numbers
    return f"{name}: {float(dets.scores[i]):.2f}" if number else f"{name} {float(dets.scores[i]):.2f}"


def _overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _hides(rect: Sequence[float], boxes: Optional[np.ndarray], share: float = 0.5) -> bool:
    """Whether ``rect`` covers ``share`` or more of the area of any of ``boxes [M, 4]`` (x0, y0, x1, y1 px)."""
    if boxes is None or not len(boxes):
        return False
    iw = np.clip(np.minimum(rect[2], boxes[:, 2]) - np.maximum(rect[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(rect[3], boxes[:, 3]) - np.maximum(rect[1], boxes[:, 1]), 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return bool((iw * ih >= share * np.maximum(area, 1e-9)).any())


def place_label(box: Sequence[float], label_size: Tuple[float, float], image_size: Tuple[float, float],
                taken: Sequence[Sequence[float]] = (), others: Optional[np.ndarray] = None, share: float = 0.5
                ) -> Optional[Tuple[float, float, float, float]]:
    """Where the label of ``box`` goes, ``(x0, y0, x1, y1)`` px: :func:`label_corner`'s place unless it
    covers a label placed already (``taken``) or ``share`` (half) or more of another box (``others [M, 4]``), then
    the first free of below the box, inside its top and inside its bottom (given ``others``: inside only
    when that hides less than half of the box itself; a crowd of boxes hid each
    other's labels); None when none is free: the label is left out, its box drawn (in a crowd a
    half-covered label read as another score, 'rbc 0.40' over 'rbc 0.388' as 'rbc 0.40837'; in a row
    of small vehicles the labels hid the boxes themselves: walks)."""
    x0, y0, x1, y1 = box
    w, h = label_size
    width, height = image_size
    x = max(0, min(x0, width - w))
    first = label_corner(box, label_size, image_size)
    places = [first, (x, y1), (x, y0), (x, y1 - h)]
    itself = np.array([box], dtype=np.float64)  # inside a box smaller than the label: it would hide the box itself
    free = [(px, py, px + w, py + h) for k, (px, py) in enumerate(places)
            if not any(_overlap((px, py, px + w, py + h), t) for t in taken)
            and not _hides((px, py, px + w, py + h), others, share)
            and not (k >= 2 and others is not None and _hides((px, py, px + w, py + h), itself))]
    inside = [rect for rect in free if 0 <= rect[1] and rect[3] <= height]
    if inside:
        return inside[0]
    own = (first[0], first[1], first[0] + w, first[1] + h)  # label_corner's place, when free, even past a border
    return own if own in free else None


# Fonts that draw more than Pillow's default (which draws ASCII only: 'ß', 'ı', '鞋' came out as boxes):
# file names looked for in the folders below, the first that draws every character of the names wins.
_FONT_FILES = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf",
               "NotoSansCJK-Regular.otf", "wqy-microhei.ttc", "wqy-zenhei.ttc", "arialuni.ttf", "Arial Unicode.ttf",
               "msyh.ttc", "simhei.ttf", "malgun.ttf", "meiryo.ttc", "arial.ttf", "PingFang.ttc", "Hiragino Sans GB.ttc",
               "AppleSDGothicNeo.ttc", "Arial.ttf")
_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts", "/System/Library/Fonts",
              "/Library/Fonts", "C:/Windows/Fonts")
_NAMES_NOT_DRAWN: set = set()


@functools.lru_cache(maxsize=None)
def _font_files() -> Tuple[Path, ...]:
    """The fonts of :data:`_FONT_FILES` on this machine (and matplotlib's DejaVu Sans), in that order."""
    import importlib.util
    import os
    found: Dict[str, Path] = {}
    spec = importlib.util.find_spec("matplotlib")
    dirs = [Path(d).expanduser() for d in _FONT_DIRS]
    if spec is not None and spec.submodule_search_locations:
        dirs.append(Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf")
    for folder in dirs:
        for root, _, files in os.walk(folder):
            for name in files:
                if name in _FONT_FILES:
                    found.setdefault(name, Path(root) / name)
    return tuple(found[n] for n in _FONT_FILES if n in found)


def _draws(font, chars: str) -> bool:
    """Whether ``font`` has a glyph for each of ``chars`` (a missing one draws as the font's 'notdef' box)."""
    def glyph(c: str):
        mask = font.getmask(c)
        return mask.size, bytes(mask)
    missing = glyph("\U0010fffd")
    return all(c.isspace() or glyph(c) != missing for c in chars)


@functools.lru_cache(maxsize=64)
def label_font(size: int, chars: str):
    """A font of ``size`` px that draws ``chars`` (the class names' characters): Pillow's default when it
    can, else the first of :func:`_font_files` that can; else the default, with one note naming what it
    leaves as boxes."""
    from PIL import ImageFont
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()
    text = chars + "0123456789."
    if _draws(font, text):
        return font
    best, lost = font, [c for c in text if not _draws(font, c)]
    for path in _font_files():
        try:
            other = ImageFont.truetype(str(path), size)
        except OSError:
            continue
        missing = [c for c in text if not _draws(other, c)]
        if not missing:
            return other
        if len(missing) < len(lost):
            best, lost = other, missing
    if chars not in _NAMES_NOT_DRAWN:
        _NAMES_NOT_DRAWN.add(chars)
        print(no_font_note("characters", "".join(lost), "the pictures' labels (predictions.json has the names "
                           "right) show"), file=sys.stderr)
    return best


def label_corner(box: Sequence[float], label_size: Tuple[float, float], image_size: Tuple[float, float]
                 ) -> Tuple[float, float]:
    """Top-left corner ``(x, y)`` of the label (``label_size``: width, height) of ``box`` (x0, y0, x1, y1)
    in an image of ``image_size`` (width, height), all in image pixels, y down, so the whole label is
    in the picture: above the box; at the top border inside its top when the box is large (three
    labels tall or more: below it, the label read as another object's), else below it, so a small
    box is not hidden under its label; else inside it; never past the left or right border. Shared by
    :func:`draw` and the demo's prediction grid."""
    x0, y0, x1, y1 = box
    w, h = label_size
    width, height = image_size
    if y0 - h >= 0:
        y = y0 - h
    elif y1 - y0 >= 3 * h or y1 + h > height:
        y = max(0, min(y0, height - h))
    else:
        y = y1
    return max(0, min(x0, width - w)), y
