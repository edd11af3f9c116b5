"""Cut a dataset of large images into tiles: ``dfine data tile SRC -o OUT --size 640``.

Training resizes each image to the model's input (``--imgsz``, 640): a 4000 px drone photo shrinks
6x and a 12 px car becomes 2 px, smaller than anything the model can find. Cut into tiles of the
input size, the images keep their pixels, and the trained model is used the same way, on tiles
(``dfine predict --slice``, ``dfine eval --slice``).

The tiles are those :func:`dfine.slicing.tile_windows` gives sliced inference (stride ``tile * (1 -
overlap)``, the last tile flush with the edge), so training sees what prediction will. Each split of
the source (found as ``dfine train --data`` finds it: any format it reads, a val split made when
there is none) is tiled on its own, so no image has tiles on both sides of the split. A box is
kept in a tile, clipped to it, when at least ``min_visible`` of its area is inside; a smaller piece
of it becomes a crowd region (``iscrowd: 1``): training skips it and COCO evaluation ignores what is
found there, so a cut-off sliver is neither a target nor a false positive. Tiles holding no box are
kept (background), or a seeded ``empty`` fraction of them.

Written: ``OUT/images/{split}/`` (each tile named after its image and position,
``DJI_0012_x1024_y512.jpg``, in the image's own sub-folder; JPEG sources as JPEG at quality 95,
others as PNG) and ``OUT/annotations/instances_{split}.json``, whose ``info.tiles`` records the
source and the settings and each image its ``source`` file and ``window`` (x0, y0, x1, y1 in source
pixels). ``--data OUT`` trains on it as on any COCO folder.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from dfine.data.cocojson import DatasetError, read_coco_json, unsafe_file_name
from dfine.errors import DfineError, keyword_hints
from dfine.text import counted
from dfine.slicing import hw_words, slice_words

__all__ = ["TileConfig", "TiledSplit", "default_out", "tile_dataset", "tiles_info", "tiny_boxes_note", "MARKER",
           "TINY_SIDE"]

PathLike = Union[str, os.PathLike]

#: The file that marks a folder as a tiling of ours (written first: a run stopped half-way is one too).
MARKER = ".dfine-tiles.json"

_JPEG = (".jpg", ".jpeg")


#: A box under this side (px, the square root of its area) at the model's input is too small to learn:
#: one cell of D-FINE's finest feature map (stride 8)
TINY_SIDE = 8
#: The share of boxes under :data:`TINY_SIDE` that :func:`tiny_boxes_note` speaks of
TINY_SHARE = 0.25


def tiny_boxes_note(sides: np.ndarray, shrink: np.ndarray, size: Tuple[int, int], data: Optional[str] = None,
                    what: str = "boxes") -> Optional[str]:
    """A note when at least :data:`TINY_SHARE` of the boxes are under :data:`TINY_SIDE` px at the
    model's ``size`` (height, width) input: ``sides [M]`` each box's side there, ``shrink [M]`` how many
    times its image is shrunk to fit. Shrunk (1.5x or more): the tiling of ``data`` (the dataset
    folder; a placeholder when None) that keeps their pixels; else a larger ``--imgsz``. None when
    too few boxes are that small (or fewer than 10 boxes)."""
    tiny = sides < TINY_SIDE
    if len(sides) < 10 or tiny.mean() < TINY_SHARE:
        return None
    factor = float(np.median(shrink[tiny]))
    head = (f"note: {tiny.mean():.0%} of the {what} are under {TINY_SIDE} px at the model's {size[1]}x{size[0]} "
            f"input (median {float(np.median(sides)):.1f} px), too small to learn or find")
    if factor < 1.5:
        return f"{head}; they are that small in the images: a larger --imgsz enlarges them (slower steps)"
    source = shlex.quote(str(data)) if data is not None else "DATASET"
    tiles = shlex.quote(str(default_out(Path(data), (size[1], size[1])))) if data is not None else "TILES"
    return (f"{head}, because their images are shrunk {factor:.1f}x to fit: train on tiles that keep their pixels "
            f"(dfine data tile {source} --size {size[1]}, then --data {tiles}; predict with --slice)")


@keyword_hints(name="dfine.data.tile.TileConfig", aliases={"tile": "size"})  # SliceConfig's word for it
@dataclass(frozen=True)
class TileConfig:
    """How to tile. ``size``: tile (height, width) in source pixels; ``overlap``: the fraction of a
    tile shared with its neighbour (0..1, as ``--slice``'s); ``min_visible``: the fraction of a box's
    area a tile must hold for the box to be kept in it (0..1]; ``empty``: the fraction of tiles without
    a box that are kept (0..1, seeded by ``seed``)."""

    size: Tuple[int, int] = (640, 640)
    overlap: float = 0.2
    min_visible: float = 0.5
    empty: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if len(self.size) != 2 or min(self.size) < 32:
            raise DfineError(f"--size {' '.join(map(str, self.size))}: a tile needs at least 32 px a side (N or H W)")
        if not 0 <= self.overlap < 1:
            raise DfineError(f"--overlap {self.overlap}: a fraction of the tile, 0 or more and below 1")
        if not 0 < self.min_visible <= 1:
            raise DfineError(f"--min-visible {self.min_visible}: the fraction of a box a tile must hold, above 0 "
                             f"and at most 1")
        if not 0 <= self.empty <= 1:
            raise DfineError(f"--empty {self.empty}: the fraction of tiles without a box to keep, 0..1")

    def said(self) -> str:
        """``"tiles of 640x640, overlap 0.2"``; non-square ``"tiles of 256x400 (height x width), ..."``."""
        return f"tiles of {hw_words(self.size)}, overlap {self.overlap:g}"


@dataclass
class TiledSplit:
    """What tiling one split gave: counts for its summary line and the file written."""

    split: str
    ann_file: Path
    images: int = 0
    tiles: int = 0
    boxes: int = 0  # source boxes (crowd regions not counted)
    kept: int = 0  # box-in-tile annotations
    pieces: int = 0  # pieces under min_visible, written as crowd regions
    empty_kept: int = 0
    empty_left: int = 0
    whole: int = 0  # images not larger than a tile: one tile, the whole image
    unseen: List[str] = field(default_factory=list)  # boxes no tile holds min_visible of: "file.jpg (WxH box)"

    def summary(self, config: TileConfig) -> str:
        empty = (f"{counted(self.empty_kept, 'tile')} without a box kept"
                 + (f", {self.empty_left} left out (--empty {config.empty:g})" if self.empty_left else ""))
        whole = f"; {counted(self.whole, 'image')} no larger than a tile kept whole" if self.whole else ""
        pieces = (f"; {counted(self.pieces, 'piece')} under {config.min_visible:.0%} of a box marked crowd (ignored)"
                  if self.pieces else "")
        return (f"{self.split}: {counted(self.images, 'image')} -> {counted(self.tiles, 'tile')}; "
                f"{counted(self.boxes, 'box', 'boxes')} -> {self.kept} in the tiles (a box in two overlapping tiles "
                f"counts twice){pieces}; {empty}{whole}")


def tiles_info(ann_file: PathLike) -> Optional[Dict[str, Any]]:
    """The ``info.tiles`` block of a file :func:`tile_dataset` wrote (None for any other file or on
    any error); the file's head is read first, so a large COCO file of another kind is not parsed."""
    path = Path(ann_file)
    try:
        with path.open("rb") as f:
            if b'"tiles"' not in f.read(4096):
                return None
        info = json.loads(path.read_text(encoding="utf-8")).get("info")
    except (OSError, ValueError, AttributeError):
        return None
    tiles = info.get("tiles") if isinstance(info, dict) else None
    return tiles if isinstance(tiles, dict) else None


def tile_dataset(src: PathLike, out: Optional[PathLike] = None, config: TileConfig = TileConfig(), *,
                 names: Optional[Sequence[str]] = None, workers: Optional[int] = None,
                 progress: bool = True, say=print) -> List[TiledSplit]:
    """Tile every split of the dataset at ``src`` into ``out`` (default ``SRC_tiles{W}`` beside it);
    ``names``: class names of a YOLO folder that names none. Returns each split's counts; ``say``
    prints the notes and summary lines."""
    from dfine.data.archive import dataset_folder, require_path
    from dfine.data.convert import predict_target
    from dfine.recipes import dataset_splits, detect_format

    root = dataset_folder(require_path(src, "dfine data tile"))
    fmt = detect_format(root, option="SRC")
    target = Path(out).expanduser() if out is not None else default_out(root, config.size)
    _check_out(target, root)
    with tempfile.TemporaryDirectory(prefix="dfine-tile-") as tmp:
        splits, notes = dataset_splits(root, fmt, Path(tmp), names=names, temporary="tiling")
        for note in notes:
            say(note)
        _start(target, root, config, say)
        order = [s for s in ("train", "val", "test") if s in splits]
        data = {s: read_coco_json(Path(splits[s][0])) for s in order}
        paths = {s: [(Path(splits[s][1]) / str(im.get("file_name", ""))).resolve() for im in _by_id(data[s]["images"])]
                 for s in order}
        done = []
        again = _command(root, target, config, names)
        for split in order:
            ann, folder = splits[split]
            others = [p for s in order if s != split for p in paths[s]]
            images = predict_target(paths[split], Path(folder).resolve(), others)
            done.append(_tile_split(split, Path(ann), data[split], Path(folder), images, target, root, config,
                                    workers, progress, names))
            say(done[-1].summary(config))
            for line in [*_unseen_note(done[-1], config), *_background_note(done[-1], config, again)]:
                say(line)
    # the input size is a multiple of 32: tiles of another side are trained at the one above (a walk's --size 400 250
    # was printed --imgsz 400 250, which training refused)
    imgsz = tuple(-(-v // 32) * 32 for v in config.size)
    grown = (f"; --imgsz {slice_words(imgsz)}: the model's input takes multiples of 32, the tiles are enlarged to it"
             if imgsz != tuple(config.size) else "")
    say(f"wrote {target} ({config.said()}); train on the tiles: dfine train --data {shlex.quote(str(target))} "
        f"--imgsz {slice_words(imgsz)} --model dfine_n, then use the model on whole images with --slice "
        f"(dfine predict, dfine eval){grown}")
    return done


def default_out(root: Path, size: Tuple[int, int]) -> Path:
    """Where the tiles of ``size`` (height, width) of the dataset at ``root`` (a folder, or a file in
    it) go without ``-o``: ``NAME_tiles640`` beside its folder, ``NAME_tiles256x384`` (height x width,
    as ``--size`` takes them) for non-square ones, apart from the square tiles of either side (a walk's
    256x384 tiling replaced its 384x384 one)."""
    base = root.with_suffix("") if root.suffix.lower() == ".zip" else root.parent if root.is_file() else root
    h, w = size
    return base.parent / f"{base.name}_tiles{w if h == w else f'{h}x{w}'}"


def _check_out(out: Path, root: Path) -> None:
    """``out`` must be new, empty, or a tiling of ours, and apart from the dataset folder."""
    base = (root.parent if root.is_file() else root).resolve()
    full = out.resolve()
    if full == base or base in full.parents:
        raise DfineError(f"-o {out} is inside the dataset folder {base}: its tiles would be read as part of the "
                         f"dataset next time; choose a folder outside it")
    if full in base.parents:
        raise DfineError(f"-o {out} holds the dataset folder {base}; choose a new folder beside it")
    if out.exists() and not out.is_dir():
        raise DfineError(f"-o {out} is a file; give a folder for the tiles")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise DfineError(f"-o {out} already holds files that are not tiles of dfine's; give a new or empty folder")


def _start(out: Path, root: Path, config: TileConfig, say=print) -> None:
    """Mark ``out`` as ours, then clear what an earlier tiling into it wrote (said, naming its source
    and settings)."""
    from dfine.data.convert import write_json_atomic
    if (out / MARKER).is_file() and any((out / sub).is_dir() for sub in ("images", "annotations")):
        try:
            was = json.loads((out / MARKER).read_text())
            what = f" (tiles of {hw_words(tuple(was['size']))} of {was['source']})"
        except (OSError, ValueError, KeyError, TypeError):
            what = ""
        say(f"note: replacing the earlier tiling in {out}{what}")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / MARKER, {"source": str(root.resolve()), **_settings(config)})
    for sub in ("images", "annotations"):
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)


def _settings(config: TileConfig) -> Dict[str, Any]:
    return {"size": list(config.size), "overlap": config.overlap, "min_visible": config.min_visible,
            "empty": config.empty, "seed": config.seed}


def _tile_split(split: str, ann_file: Path, data: Mapping[str, Any], folder: Path, where: Path, out: Path,
                root: Path, config: TileConfig, workers: Optional[int], progress: bool,
                names: Optional[Sequence[str]] = None) -> TiledSplit:
    """Tile one split's images (``data``: its COCO file ``ann_file``, read; ``where``: the folder or
    image ``dfine predict`` is pointed at, :func:`~dfine.data.convert.predict_target`); the ``--empty``
    fraction thins the train split alone (val and test keep every tile); its COCO file is written last
    (atomically). ``names``: the ``--names`` the source needed, recorded so that a command reading
    the source again gives them."""
    from tqdm import tqdm

    from dfine.data.convert import write_json_atomic

    if split != "train":  # scored as sliced inference sees the images: every background tile
        config = replace(config, empty=1.0)
    result = TiledSplit(split, out / "annotations" / f"instances_{split}.json")
    boxes = _boxes_by_image(data, ann_file)
    images = _by_id(data["images"])
    jobs = [(i, im, boxes.get(im["id"], np.zeros((0, 6)))) for i, im in enumerate(images)]
    threads = max(1, min(workers or (os.cpu_count() or 1), 8))
    tiles_out, anns_out = [], []
    bar = tqdm(total=len(jobs), desc=f"tiling {split}", unit="img", disable=not progress, leave=False)
    with ThreadPoolExecutor(threads) as pool:
        for made in pool.map(lambda job: _tile_image(*job, folder, out / "images" / split, config), jobs):
            _count(result, made, config)
            for tile, anns in made["tiles"]:
                tile["id"] = len(tiles_out) + 1
                tiles_out.append(tile)
                for ann in anns:
                    anns_out.append({**ann, "id": len(anns_out) + 1, "image_id": tile["id"]})
            bar.update()
    bar.close()
    info = {"description": f"tiles of {root.resolve()} ({split}), made by dfine data tile",
            "images_folder": os.path.join("..", "images", split),
            "tiles": {"source": str(root.resolve()), "split": split, "images": str(where),
                      **_settings(config), **({"names": [str(n) for n in names]} if names else {})}}
    write_json_atomic(result.ann_file, {"info": info, "images": tiles_out, "annotations": anns_out,
                                        "categories": data["categories"]})
    return result


def _by_id(images: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    return sorted(images, key=lambda im: im["id"])


def _count(result: TiledSplit, made: Mapping[str, Any], config: TileConfig) -> None:
    result.images += 1
    result.tiles += len(made["tiles"])
    result.boxes += made["boxes"]
    result.kept += made["kept"]
    result.pieces += made["pieces"]
    result.empty_kept += made["empty_kept"]
    result.empty_left += made["empty_left"]
    result.whole += made["whole"]
    result.unseen += made["unseen"]


def _boxes_by_image(data: Mapping[str, Any], ann_file: Path) -> Dict[Any, np.ndarray]:
    """``{image id: [K, 6]}`` rows ``x0, y0, x1, y1, category id, iscrowd`` (source pixels)."""
    rows: Dict[Any, List[List[float]]] = {}
    for ann in data["annotations"]:
        box = ann.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise DatasetError(f"annotation file {ann_file}: annotation {ann.get('id')} has no [x, y, w, h] bbox; "
                               f"dfine data check {ann_file} lists every such problem")
        x, y, w, h = map(float, box)
        rows.setdefault(ann.get("image_id"), []).append([x, y, x + w, y + h, ann.get("category_id", -1),
                                                         1 if ann.get("iscrowd", 0) else 0])
    return {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}


def _tile_image(index: int, image: Mapping[str, Any], boxes: np.ndarray, folder: Path, out: Path,
                config: TileConfig) -> Dict[str, Any]:
    """Cut one image into its tiles; returns the tiles' image entries and annotations and counts."""
    from dfine.data.image_io import open_image_sized
    from dfine.slicing import tile_windows

    name = image.get("file_name")
    why = unsafe_file_name(name)
    if why is not None:
        raise DatasetError(f"image {image.get('id')} file_name {name!r} {why}")
    path = folder / name
    size = (int(image.get("width") or 0), int(image.get("height") or 0))
    try:
        picture, matched, (width, height) = open_image_sized(path, size)
    except FileNotFoundError:
        raise DatasetError(f"image {path} not found (file_name {name!r} of image {image.get('id')})") from None
    except OSError as exc:
        raise DatasetError(f"image {path} cannot be read ({exc}); dfine data check lists every such image") from None
    if all(size) and not matched:
        raise DatasetError(f"image {path} is {width}x{height}, its annotation says {size[0]}x{size[1]}: the boxes "
                           f"would be cut in the wrong places; dfine data check --fix writes the sizes right")
    real = boxes[boxes[:, 5] == 0] if len(boxes) else boxes
    windows = tile_windows(width, height, config.size, config.overlap)
    rng = np.random.default_rng([config.seed, index])
    made: Dict[str, Any] = {"tiles": [], "boxes": len(real), "kept": 0, "pieces": 0, "empty_kept": 0,
                            "empty_left": 0, "whole": int(len(windows) == 1 and width <= config.size[1]
                                                          and height <= config.size[0]), "unseen": []}
    best = np.zeros(len(boxes))  # the most of each box's area any tile holds
    stem, suffix = os.path.splitext(_without_split(name))
    suffix = suffix if suffix.lower() in _JPEG else ".png"
    for x0, y0, x1, y1 in windows.tolist():
        anns, seen = _in_window(boxes, (x0, y0, x1, y1), config.min_visible)
        best = np.maximum(best, seen)
        if not any(not a["iscrowd"] for a in anns):
            if config.empty < 1 and rng.random() >= config.empty:
                made["empty_left"] += 1
                continue
            made["empty_kept"] += 1
        file_name = f"{stem}{suffix}" if made["whole"] else f"{stem}_x{x0}_y{y0}{suffix}"
        target = out / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        crop = picture.crop((x0, y0, x1, y1))
        crop.save(target, **({"quality": 95} if suffix.lower() in _JPEG else {}))
        pieces = [a.pop("piece") for a in anns]
        made["pieces"] += sum(pieces)
        made["kept"] += sum(1 for a in anns if not a["iscrowd"])
        made["tiles"].append(({"file_name": file_name, "width": x1 - x0, "height": y1 - y0,
                               "source": {"file_name": name, "id": image.get("id"), "window": [x0, y0, x1, y1]}},
                              anns))
    for k in np.nonzero((best < config.min_visible) & (boxes[:, 5] == 0))[0] if len(boxes) else []:
        x0, y0, x1, y1 = boxes[k, :4]
        made["unseen"].append(f"{name} ({x1 - x0:.0f}x{y1 - y0:.0f} box)")
    return made


def _without_split(name: str) -> str:
    """``name`` without a first folder named after a split (``train/a.jpg`` -> ``a.jpg``: the tiles of
    each split have their own folder already)."""
    from dfine.data.convert import SPLIT_NAMES
    head, _, rest = name.replace("\\", "/").partition("/")
    return rest if rest and head.lower() in SPLIT_NAMES else name


def _in_window(boxes: np.ndarray, window: Tuple[int, int, int, int], min_visible: float
               ) -> Tuple[List[Dict[str, Any]], np.ndarray]:
    """The annotations of the tile ``window`` (boxes relative to it) and, per box, the fraction of
    its area inside the window. A box with ``min_visible`` of it inside is kept clipped; a smaller
    piece becomes a crowd region (``piece``: True); a crowd region of the source stays one."""
    if not len(boxes):
        return [], np.zeros(0)
    x0, y0, x1, y1 = window
    cx0, cy0 = np.maximum(boxes[:, 0], x0), np.maximum(boxes[:, 1], y0)
    cx1, cy1 = np.minimum(boxes[:, 2], x1), np.minimum(boxes[:, 3], y1)
    inside = np.clip(cx1 - cx0, 0, None) * np.clip(cy1 - cy0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    seen = np.where(area > 0, inside / np.maximum(area, 1e-12), 0.0)
    anns = []
    for k in np.nonzero(inside > 0)[0]:
        crowd = bool(boxes[k, 5])
        piece = not crowd and bool(seen[k] < min_visible)  # a plain int count: TiledSplit showed np.int64(112)
        w, h = float(cx1[k] - cx0[k]), float(cy1[k] - cy0[k])
        anns.append({"category_id": int(boxes[k, 4]), "bbox": [float(cx0[k] - x0), float(cy0[k] - y0), w, h],
                     "area": w * h, "iscrowd": int(crowd or piece), "piece": piece})
    return anns, seen


#: The share of a train split's tiles without a box past which :func:`_background_note` speaks
BACKGROUND_SHARE = 0.5


def _command(root: Path, out: Path, config: TileConfig, names: Optional[Sequence[str]]) -> List[str]:
    """The ``dfine data tile`` command of this tiling, its options as given (defaults left out)."""
    words = ["dfine", "data", "tile", str(root)]
    if out != default_out(root, config.size):
        words += ["-o", str(out)]
    words += ["--size", *slice_words(config.size).split()]
    for flag, value, default in (("--overlap", config.overlap, 0.2), ("--min-visible", config.min_visible, 0.5),
                                 ("--seed", config.seed, 0)):
        if value != default:
            words += [flag, f"{value:g}"]
    return words + (["--names", ",".join(map(str, names))] if names else [])


def _background_note(done: TiledSplit, config: TileConfig, again: Sequence[str] = ()) -> Iterator[str]:
    """When most train tiles hold no box and all are kept: the epoch they make longer and the
    ``--empty`` that keeps about as many as there are tiles with boxes, in the tiling command
    ``again`` (a walk: 92% of its tiles, an epoch 12x the tiles with objects, said nowhere)."""
    with_boxes = done.tiles - done.empty_kept
    if done.split != "train" or config.empty < 1 or done.empty_kept <= BACKGROUND_SHARE * max(done.tiles, 1):
        return
    fraction = max(0.01, round(with_boxes / done.empty_kept, 2))
    yield (f"note: {done.empty_kept} of the {done.tiles} train tiles ({done.empty_kept / done.tiles:.0%}) hold no box, "
           f"all kept (--empty 1): an epoch is {done.tiles / max(with_boxes, 1):.0f}x the steps of the tiles with "
           f"boxes; --empty {fraction:g} keeps about as many background tiles as those, seeded (val keeps every tile)"
           + (f": {shlex.join([*again, '--empty', f'{fraction:g}'])}" if again else ""))


def _unseen_note(done: TiledSplit, config: TileConfig) -> Iterator[str]:
    """Boxes no tile holds ``min_visible`` of (objects larger than a tile): said, never dropped unsaid."""
    if done.unseen:
        shown = ", ".join(done.unseen[:3]) + (", ..." if len(done.unseen) > 3 else "")
        yield (f"note: {counted(len(done.unseen), 'box', 'boxes')} of {done.split} {'is' if len(done.unseen) == 1 else 'are'} "
               f"larger than any tile holds {config.min_visible:.0%} of ({shown}), only in crowd pieces: a larger "
               f"--size, or a lower --min-visible, keeps {'it' if len(done.unseen) == 1 else 'them'}")
