"""Opening images the way a photo viewer shows them: EXIF orientation applied, any bit depth as 8-bit RGB.

PIL's ``convert("RGB")`` clips 16-bit and 32-bit pixels to 255 (a 16-bit PNG becomes almost
white). :func:`to_rgb8` scales them instead, by the range of their type: 16-bit by 255/65535,
32-bit integers by the 16-bit range when every value fits in it (16-bit PNGs that PIL reads as
``I``) and by 255/(2**31-1) otherwise, floats from 0..1 (or 0..255 / 0..65535 when their values
go beyond it). The scale depends on the type, not on each image's contents, so brightness is
the same for every image of a dataset.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
import PIL.Image
import PIL.ImageOps

__all__ = ["open_image", "open_image_sized", "ImageHeader", "read_header", "tail_complete", "to_rgb8",
           "exif_orientation", "oriented_size", "HIGH_DEPTH_MODES", "is_high_depth", "same_bytes"]

#: PIL modes with more than 8 bits per channel.
HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

_EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = frozenset({5, 6, 7, 8})  # transposed orientations: width and height exchange


def is_high_depth(mode: str) -> bool:
    """Whether PIL ``mode`` holds more than 8 bits per channel (``I;16``, ``I``, ``F``)."""
    return mode in HIGH_DEPTH_MODES


def to_rgb8(image: PIL.Image.Image) -> PIL.Image.Image:
    """``image`` as 8-bit RGB; 16-bit, 32-bit and float images scaled by their type's range
    (see the module docstring), every other mode through PIL's ``convert``."""
    if not is_high_depth(image.mode):
        return image if image.mode == "RGB" else image.convert("RGB")
    values = np.asarray(image, dtype=np.float64)
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    elif image.mode == "I":
        scale = 255.0 / 65535.0 if top <= 65535 else 255.0 / (2 ** 31 - 1)
    else:  # "F"
        scale = 255.0 if top <= 1.0 else 1.0 if top <= 255.0 else 255.0 / 65535.0
    grey = np.clip(np.rint(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8)
    return PIL.Image.fromarray(grey, mode="L").convert("RGB")


def exif_orientation(image: PIL.Image.Image) -> int:
    """The EXIF orientation tag of an opened image (1..8; 1 when absent or unreadable).
    Reads the header only."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # PIL would decode the whole PNG looking for an eXIf chunk after the pixels
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block: the image is shown as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def oriented_size(size: Tuple[int, int], orientation: int) -> Tuple[int, int]:
    """``(width, height)`` of an image stored as ``size`` once ``orientation`` is applied."""
    return (size[1], size[0]) if orientation in _SWAPS_SIDES else (size[0], size[1])


def open_image(path: os.PathLike | str, exif: bool = True) -> PIL.Image.Image:
    """The image at ``path`` as 8-bit RGB, with its EXIF orientation applied when ``exif``.

    Raises what ``PIL.Image.open`` raises (``FileNotFoundError``, ``PIL.UnidentifiedImageError``,
    ``OSError`` for truncated files); callers turn these into one-line errors naming the file.
    """
    with PIL.Image.open(path) as f:
        return _decoded(f, exif and exif_orientation(f) != 1)


def open_image_sized(path: os.PathLike | str, size: Tuple[int, int],
                     short_side: Optional[int] = None) -> Tuple[PIL.Image.Image, bool, Tuple[int, int]]:
    """The image at ``path`` as 8-bit RGB in the orientation whose ``(width, height)`` is ``size``
    (the size an annotation file gives): EXIF applied when that matches ``size`` (or when neither
    orientation does, as a viewer shows it), as stored when only that matches. ``short_side``: an
    image whose short side is longer is returned shrunk to it (bilinear; a JPEG decoded at a
    reduced scale first, which is several times faster). Returns the image, whether ``size``
    matched one of the two orientations, and the image's full ``(width, height)`` in that orientation."""
    with PIL.Image.open(path) as f:
        orientation = exif_orientation(f)
        shown = oriented_size(f.size, orientation)
        exif = orientation != 1 and (shown == tuple(size) or f.size != tuple(size))
        full = shown if exif else f.size
        matched = tuple(size) in (shown, f.size)
        if short_side and min(f.size) > short_side:
            scale = short_side / min(f.size)
            f.draft(f.mode, (math.ceil(f.size[0] * scale), math.ceil(f.size[1] * scale)))  # JPEG only; else no-op
        image = _decoded(f, exif)
    if short_side and min(image.size) > short_side:  # the target from the full size: a draft read is smaller
        scale = short_side / min(full)
        image = image.resize((max(1, round(full[0] * scale)), max(1, round(full[1] * scale))), PIL.Image.BILINEAR)
    return image, matched, tuple(full)


def _decoded(f: PIL.Image.Image, exif: bool) -> PIL.Image.Image:
    f.load()
    image = PIL.ImageOps.exif_transpose(f) if exif else f
    return to_rgb8(image) if image is not f or f.mode != "RGB" else f.copy()


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, without decoding pixels."""

    width: int  # as stored
    height: int
    orientation: int  # EXIF 1..8 (1: as stored)
    mode: str  # PIL mode (RGB, L, P, RGBA, CMYK, I;16, ...)
    format: str  # PIL format name (JPEG, PNG, ...)

    @property
    def shown_size(self) -> Tuple[int, int]:
        """``(width, height)`` with the EXIF orientation applied."""
        return oriented_size((self.width, self.height), self.orientation)


def tail_complete(path: os.PathLike | str, fmt: str) -> bool:
    """Whether a JPEG ends with its EOI marker and a PNG with its IEND chunk (other formats: True); a
    file cut short (a copy or download stopped) fails, which its header alone does not show. Zero bytes
    after the end are padding (a walk's complete JPEG had 1,188 of them after its EOI and was left out as
    cut short); a JPEG may carry up to 1 KB of other bytes after its EOI (a camera's trailer)."""
    if fmt not in ("JPEG", "PNG"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(-min(_TAIL, os.path.getsize(path)), os.SEEK_END)
            tail = f.read().rstrip(b"\0")
    except OSError:
        return False
    return (b"\xff\xd9" in tail[-1024:]) if fmt == "JPEG" else (b"IEND" in tail[-32:])


_TAIL = 1 << 16  # bytes read from the end of an image to find its end marker, zero padding included


def read_header(path: os.PathLike | str) -> ImageHeader:
    """The header of the image at ``path`` (raises what ``PIL.Image.open`` raises)."""
    with PIL.Image.open(path) as f:
        return ImageHeader(f.width, f.height, exif_orientation(f), f.mode, f.format or "")


def same_bytes(files: Mapping[Any, os.PathLike | str], sizes: Optional[Mapping[Any, int]] = None) -> List[List[Any]]:
    """Groups of two or more keys of ``files`` (``{key: path}``) whose files hold the same bytes (a photo saved
    twice under two names), each group in ``files``' order. Only files whose size another one shares are read
    (``sizes``: ``{key: bytes}`` when known, else each file's own), hashed with BLAKE2b: their first 4 KiB, then
    the whole of those alike, so a folder of distinct images costs little reading; a file that cannot be read is
    in no group."""
    import hashlib

    def digest(key: Any, limit: Optional[int]) -> Optional[bytes]:
        hashed = hashlib.blake2b(digest_size=16)
        try:
            with open(files[key], "rb") as f:
                for chunk in iter(lambda: f.read(limit or 1 << 20), b""):
                    hashed.update(chunk)
                    if limit is not None:
                        break
        except OSError:
            return None
        return hashed.digest()

    def grouped(candidates: Iterable[List[Any]], limit: Optional[int]) -> List[List[Any]]:
        out = []
        for keys in candidates:
            same: Dict[Optional[bytes], List[Any]] = {}
            for key in keys:
                same.setdefault(digest(key, limit), []).append(key)
            out += [g for found, g in same.items() if found is not None and len(g) > 1]
        return out

    by_size: Dict[int, List[Any]] = {}
    for key, path in files.items():
        try:
            by_size.setdefault(sizes[key] if sizes is not None else os.stat(path).st_size, []).append(key)
        except OSError:  # not there: in no group
            continue
    # the first 4 KiB tell most files of one size apart (COCO's 118k photos share sizes by the thousand, and
    # their pixel data begins within it); then all of it
    groups = grouped(grouped((keys for keys in by_size.values() if len(keys) > 1), 1 << 12), None)
    order = {key: i for i, key in enumerate(files)}
    return sorted((sorted(g, key=order.__getitem__) for g in groups), key=lambda g: order[g[0]])
