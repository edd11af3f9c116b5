"""Objects365 preparation: the published train/val re-split and the resize to a 640 longer side.

Layout expected under ``base_dir`` (as Objects365 v2 unpacks)::

    base_dir/train/zhiyuan_objv2_train.json   base_dir/train/images/v1/patch0/*.jpg ...
    base_dir/val/zhiyuan_objv2_val.json       base_dir/val/images/v1/patch0/*.jpg ...

:func:`split_val` keeps the first ``new_val_size`` val images (JSON order) as the new val
set and moves the rest into train, their ``file_name`` re-rooted from ``images/...`` to
``images_from_val/...`` (so the val images must be reachable there: copy or link
``val/images`` to ``train/images_from_val``, see :func:`link_val_images`). It writes
``val/{prefix}_zhiyuan_objv2_val.json`` and ``train/{prefix}_zhiyuan_objv2_train.json``.

:func:`resize_split` reads ``{subset}/{prefix}_zhiyuan_objv2_{subset}.json``, writes each image
whose longer side exceeds ``max_size`` pixels as ``<stem>_resized<ext>`` next to it (LANCZOS),
and writes ``{subset}/{prefix}_zhiyuan_objv2_{subset}_resized.json`` with those file names,
the new ``width``/``height`` and boxes/areas scaled to the new pixels. Images that cannot be
read are left out of the new JSON, with their annotations, and listed in the summary. These
are the file names that ``configs/dataset/obj365_detection.yml`` expects.

Every output (JSON or image) is written to a temporary file in the same folder and renamed into
place, so a crash never leaves a half-written file; a re-run skips the images already resized.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from PIL import Image
from tqdm import tqdm

from dfine.data.cocojson import DatasetError, read_coco_json
from dfine.text import counted

__all__ = ["SplitSummary", "ResizeSummary", "ann_path", "split_val", "link_val_images", "resized_size",
           "scale_annotation", "resized_name", "resize_image", "resize_split", "write_json_atomic"]

VAL_PREFIX = "images_from_val"  # train-relative folder of the val images moved into train


def ann_path(base_dir: Path, subset: str, prefix: str = "", suffix: str = "") -> Path:
    """``base_dir/{subset}/{prefix}zhiyuan_objv2_{subset}{suffix}.json``."""
    return Path(base_dir) / subset / f"{prefix}zhiyuan_objv2_{subset}{suffix}.json"


def _check_base_dir(base_dir: Path) -> Path:
    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        raise DatasetError(f"Objects365 base dir {base_dir} not found; pass the folder holding train/ and val/ "
                           f"(e.g. /data/Objects365/data)")
    return base_dir


def write_json_atomic(data: Any, path: Path) -> Path:
    """Write ``data`` as compact JSON to ``path`` via a temporary file renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read(path: Path, hint: str) -> Dict[str, Any]:
    """The COCO JSON at ``path``; ``DatasetError`` with ``hint`` when it does not exist."""
    if not path.is_file():
        raise DatasetError(f"annotation file {path} not found; {hint}")
    return read_coco_json(path)


# ---- split ----------------------------------------------------------------------------------

@dataclass
class SplitSummary:
    """What :func:`split_val` wrote (counts of images / annotations)."""

    val_file: Path
    train_file: Path
    val_images: int = 0
    val_annotations: int = 0
    train_images: int = 0
    train_annotations: int = 0
    moved_images: int = 0
    skipped: bool = False

    def __str__(self) -> str:
        if self.skipped:
            return f"already split: {self.val_file} and {self.train_file} exist (--force to redo)"
        return (f"new val: {counted(self.val_images, 'image')}, {counted(self.val_annotations, 'annotation')} -> "
                f"{self.val_file}\nnew train: {counted(self.train_images, 'image')} ({self.moved_images} from val), "
                f"{counted(self.train_annotations, 'annotation')} -> {self.train_file}")


def _reroot(file_name: str, prefix: str = VAL_PREFIX) -> str:
    """``images/v1/patch0/a.jpg`` -> ``images_from_val/v1/patch0/a.jpg`` (first folder replaced)."""
    parts = file_name.replace("\\", "/").split("/")
    return "/".join([prefix, *parts[1:]])


def _select(data: Mapping[str, Any], image_ids: set, progress: bool, what: str) -> Tuple[List[dict], List[dict]]:
    """The images and annotations of ``data`` whose (image) id is in ``image_ids``, in file order."""
    images = [im for im in data["images"] if im["id"] in image_ids]
    anns = [a for a in tqdm(data["annotations"], desc=what, unit="ann", disable=not progress, leave=False)
            if a["image_id"] in image_ids]
    return images, anns


def _coco(source: Mapping[str, Any], images: List[dict], annotations: List[dict]) -> Dict[str, Any]:
    """A COCO dict with ``images``/``annotations`` replaced and the other keys of ``source`` kept."""
    out = {k: v for k, v in source.items() if k not in ("images", "annotations")}
    out["images"], out["annotations"] = images, annotations
    return out


def split_val(base_dir: Path, new_val_size: int = 5000, prefix: str = "new", force: bool = False,
              progress: bool = True) -> SplitSummary:
    """Re-split Objects365: keep the first ``new_val_size`` val images as val, move the rest to train.

    Writes ``val/{prefix}_zhiyuan_objv2_val.json`` and ``train/{prefix}_zhiyuan_objv2_train.json``
    (the moved val images first, then the original train ones; train's categories). Skips the
    work when both outputs exist, unless ``force``. ``DatasetError`` for a missing base dir or
    annotation file, invalid JSON, or JSON that is not COCO format."""
    if new_val_size < 0:
        raise DatasetError(f"new_val_size must be >= 0, got {new_val_size}")
    base_dir = _check_base_dir(base_dir)
    val_out, train_out = ann_path(base_dir, "val", f"{prefix}_"), ann_path(base_dir, "train", f"{prefix}_")
    summary = SplitSummary(val_out, train_out)
    if val_out.is_file() and train_out.is_file() and not force:
        summary.skipped = True
        return summary
    hint = "unpack Objects365 v2 so that train/ and val/ hold their zhiyuan_objv2 JSON files"
    val, train = _read(ann_path(base_dir, "val"), hint), _read(ann_path(base_dir, "train"), hint)
    val_ids = [im["id"] for im in val["images"]]
    keep, move = set(val_ids[:new_val_size]), set(val_ids[new_val_size:])

    val_images, val_anns = _select(val, keep, progress, "new val")
    write_json_atomic(_coco(val, val_images, val_anns), val_out)

    moved_images, moved_anns = _select(val, move, progress, "val -> train")
    moved_images = [{**im, "file_name": _reroot(im["file_name"])} for im in moved_images]
    clashes = move & {im["id"] for im in train["images"]}
    if clashes:
        print(f"warning: {len(clashes)} val image ids also name train images (e.g. {min(clashes)})", file=sys.stderr)
    train_images, train_anns = moved_images + train["images"], moved_anns + train["annotations"]
    write_json_atomic(_coco(train, train_images, train_anns), train_out)

    summary.val_images, summary.val_annotations = len(val_images), len(val_anns)
    summary.train_images, summary.train_annotations = len(train_images), len(train_anns)
    summary.moved_images = len(moved_images)
    return summary


def link_val_images(base_dir: Path) -> Optional[Path]:
    """Make ``train/images_from_val`` a symlink to ``../val/images`` (instead of copying the val
    images). Returns the link, or ``None`` when ``train/images_from_val`` already exists."""
    base_dir = _check_base_dir(base_dir)
    link, target = base_dir / "train" / VAL_PREFIX, base_dir / "val" / "images"
    if link.exists() or link.is_symlink():
        return None
    if not target.is_dir():
        raise DatasetError(f"val images folder {target} not found; unpack the Objects365 val images there")
    link.symlink_to(Path("..") / "val" / "images", target_is_directory=True)
    return link


# ---- resize ---------------------------------------------------------------------------------

def resized_size(width: int, height: int, max_size: int = 640) -> Tuple[int, int]:
    """The ``(width, height)`` in pixels with the longer side ``max_size`` (aspect kept, shorter
    side rounded down); the size itself when the longer side is at most ``max_size``."""
    longer = max(width, height)
    if longer <= max_size:
        return width, height
    if width >= height:
        return max_size, max(1, height * max_size // width)
    return max(1, width * max_size // height), max_size


def scale_annotation(ann: Mapping[str, Any], sx: float, sy: float) -> Dict[str, Any]:
    """A copy of a COCO annotation with ``bbox`` ``[x, y, w, h]`` (pixels) scaled by ``sx`` along x
    and ``sy`` along y, and ``area`` (pixels²) by ``sx * sy``."""
    out = dict(ann)
    x, y, w, h = ann["bbox"]
    out["bbox"] = [x * sx, y * sy, w * sx, h * sy]
    if "area" in ann:
        out["area"] = ann["area"] * sx * sy
    return out


def resized_name(file_name: str) -> str:
    """``images/v1/a.jpg`` -> ``images/v1/a_resized.jpg``."""
    stem, ext = os.path.splitext(file_name)
    return f"{stem}_resized{ext}"


def resize_image(src: str, dst: str, max_size: int = 640) -> Tuple[int, int, int, int, bool]:
    """Resize the image ``src`` so its longer side is at most ``max_size`` pixels, writing it to
    ``dst`` (atomically) only when it had to shrink and ``dst`` does not already hold it.

    Returns ``(width, height, new_width, new_height, written)`` in pixels. Raises ``OSError``
    (or PIL's errors) for an unreadable image, ``DatasetError`` when ``dst`` cannot be written."""
    with Image.open(src) as im:
        w, h = im.size
        new_w, new_h = resized_size(w, h, max_size)
        if (new_w, new_h) == (w, h) or _holds(dst, (new_w, new_h)):
            return w, h, new_w, new_h, False
        fmt = im.format or Image.registered_extensions().get(os.path.splitext(dst)[1].lower(), "JPEG")
        small = im.resize((new_w, new_h), Image.Resampling.LANCZOS)
    head, tail = os.path.split(dst)
    tmp = os.path.join(head, f".{tail}.{os.getpid()}.tmp")
    try:
        small.save(tmp, format=fmt)
        os.replace(tmp, dst)
    except OSError as e:
        raise DatasetError(f"cannot write {dst}: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return w, h, new_w, new_h, True


def _holds(path: str, size: Tuple[int, int]) -> bool:
    """Whether ``path`` is a readable image of ``size`` (width, height)."""
    try:
        with Image.open(path) as im:
            return im.size == size
    except (OSError, ValueError, SyntaxError):
        return False


def _resize_task(task: Tuple[str, str, int]) -> Tuple[Optional[Tuple[int, int, int, int, bool]], str]:
    """Worker: :func:`resize_image` on ``(src, dst, max_size)`` -> ``(result, "")`` or ``(None, why)``."""
    try:
        return resize_image(*task), ""
    except DatasetError:
        raise  # a write failure (disk full, no permission) stops the run: no JSON without its images
    except Exception as e:  # noqa: BLE001 - any decode failure drops the image, reported in the summary
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"


@dataclass
class ResizeSummary:
    """What :func:`resize_split` did for one subset."""

    subset: str
    out_file: Path
    images: int = 0
    resized: int = 0
    reused: int = 0
    annotations: int = 0
    failed: List[Tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        line = (f"{self.subset}: {counted(self.images, 'image')} ({self.resized} resized now, {self.reused} already "
                f"resized), {counted(self.annotations, 'annotation')} -> {self.out_file}")
        if self.failed:
            path, why = self.failed[0]
            line += f"; {len(self.failed)} unreadable images left out (first: {path}: {why})"
        return line


def _map(tasks: Sequence[Tuple[str, str, int]], workers: int, progress: bool, desc: str) -> Iterator[Any]:
    """``_resize_task`` over ``tasks`` in order, in ``workers`` processes (0: this one), with a bar."""
    bar = tqdm(total=len(tasks), desc=desc, unit="img", disable=not progress)
    with bar:
        if workers <= 0:
            for r in map(_resize_task, tasks):
                bar.update()
                yield r
            return
        pool = ProcessPoolExecutor(max_workers=workers)
        try:
            chunk = max(1, min(64, len(tasks) // (workers * 8) or 1))
            for r in pool.map(_resize_task, tasks, chunksize=chunk):
                bar.update()
                yield r
        finally:  # on an error or Ctrl-C, drop the queued work instead of finishing it
            pool.shutdown(wait=True, cancel_futures=True)


def _check_image_folders(folder: Path, images: Sequence[Mapping[str, Any]], ann_file: Path) -> None:
    """``DatasetError`` naming the first top folder of the ``file_name``s missing under ``folder``."""
    names = (str(im["file_name"]).replace("\\", "/") for im in images)
    tops = {name.split("/")[0] for name in names if "/" in name}
    for top in sorted(tops):
        if not (folder / top).exists():
            hint = (f"copy val/images/* there or run `dfine obj365 split --link-val-images`" if top == VAL_PREFIX
                    else "check --base-dir")
            raise DatasetError(f"{folder / top} not found but {ann_file} lists images under it; {hint}")


def resize_split(base_dir: Path, subset: str, max_size: int = 640, workers: int = 4, prefix: str = "new",
                 progress: bool = True) -> ResizeSummary:
    """Resize the images of ``{subset}/{prefix}_zhiyuan_objv2_{subset}.json`` and write
    ``..._resized.json`` (see the module docstring). ``workers``: processes (0: none)."""
    if max_size < 1:
        raise DatasetError(f"max_size must be >= 1 pixel, got {max_size}")
    base_dir = _check_base_dir(base_dir)
    src = ann_path(base_dir, subset, f"{prefix}_")
    out_file = ann_path(base_dir, subset, f"{prefix}_", "_resized")
    data = _read(src, f"run `dfine obj365 split --base-dir {base_dir}` first")
    folder = base_dir / subset
    _check_image_folders(folder, data["images"], src)
    tasks = [(str(folder / im["file_name"]), str(folder / resized_name(im["file_name"])), max_size)
             for im in data["images"]]
    by_image: Dict[Any, List[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)

    summary = ResizeSummary(subset, out_file)
    images: List[dict] = []
    annotations: List[dict] = []
    for im, (result, why) in zip(data["images"], _map(tasks, workers, progress, subset)):
        if result is None:
            summary.failed.append((str(folder / im["file_name"]), why))
            continue
        w, h, new_w, new_h, written = result
        anns = by_image.get(im["id"], [])
        if (new_w, new_h) != (w, h):
            summary.resized += written
            summary.reused += not written
            anns = [scale_annotation(a, new_w / w, new_h / h) for a in anns]
            im = {**im, "file_name": resized_name(im["file_name"])}
        images.append({**im, "width": new_w, "height": new_h})
        annotations.extend(anns)
    if tasks and not images:
        path, why = summary.failed[0]
        raise DatasetError(f"none of the {counted(len(tasks), 'image')} of {src} could be read (first: {path}: {why})")
    write_json_atomic(_coco(data, images, annotations), out_file)
    summary.images, summary.annotations = len(images), len(annotations)
    return summary
