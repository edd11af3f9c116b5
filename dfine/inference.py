"""``dfine.Detector``: batched detection from a checkpoint, a zoo name, an ONNX file or a TensorRT engine.

>>> det = Detector("dfine_n_coco", conf=0.5)            # doctest: +SKIP
>>> [d] = det("street.jpg")                              # doctest: +SKIP
>>> d.boxes, d.scores, d.labels, d.names                 # doctest: +SKIP

The backend follows the model file: ``.pth``/``.pt``/zoo name -> PyTorch, ``.onnx`` -> ONNX
Runtime (or OpenVINO with ``backend="openvino"``), ``.xml`` -> OpenVINO, ``.engine``/``.trt``
-> TensorRT. Images are resized to the model's input size with PIL bilinear, as published.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DfineError, keyword_hints
from .slicing import hw_words, trained_tile
from .text import CHECKPOINT_SUFFIXES, counted, first_few, score_below

__all__ = ["BACKENDS", "PRECISIONS", "Detections", "Detector", "detect", "load_image", "preprocess"]

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("f32", "bf16")  # OpenVINO inference precision
DEFAULT_CONF = 0.5  # the score threshold of a model whose training run recommends none
ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]
PathLike = Union[str, os.PathLike]
# (images [B,3,H,W] float32 0..1, sizes [B,2] int64 (w,h)) -> (labels [B,K], boxes [B,K,4], scores [B,K])
RunFn = Callable[[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class Detections:
    """Detections of one image, above the confidence threshold, best first.

    ``boxes [K, 4]`` float32 xyxy in pixels of the original image, within it (``Detector(clip=False)``:
    as the model gave them, edges past the border included), ``scores [K]`` float32,
    ``labels [K]`` int64 model labels, ``names`` their class names, ``category_ids [K]`` the
    dataset's category ids; ``image_size`` is the original ``(width, height)``. ``conf``: the score
    threshold they were kept above, and ``top_below`` the best score of a box left out under it (None
    when none was, or for detections a :class:`Detector` did not make): with no detection, it says how
    near the model came (the picture and the one-line form say so too)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: List[str]
    category_ids: np.ndarray
    image_size: Tuple[int, int]
    path: Optional[str] = None
    conf: Optional[float] = None
    top_below: Optional[float] = None

    def __len__(self) -> int:
        return int(len(self.scores))

    def __repr__(self) -> str:
        """One line: where from, how many, and the first few as ``name score [x0, y0, x1, y1]``
        (the arrays themselves are in the fields)."""
        w, h = self.image_size
        head = [f"{name} {score:.2f} [{', '.join(f'{v:.0f}' for v in box)}]"
                for name, score, box in zip(self.names[:3], self.scores[:3].tolist(), self.boxes[:3].tolist())]
        more = f", ... {len(self) - 3} more" if len(self) > 3 else ""
        where = f"{self.path}, " if self.path else ""
        return f"Detections({where}{w}x{h}: {len(self)} found{': ' if head else ''}{', '.join(head)}{more}" \
               f"{'; ' + self.none_found() if not head and self.conf is not None else ''})"

    def none_found(self) -> str:
        """``no detection above conf 0.5 (the best score 0.12)``: what the picture of no detection says."""
        best = f" (the best score {score_below(self.top_below, self.conf)})" if self.top_below is not None else ""
        return f"no detection above conf {self.conf:g}{best}"

    def above(self, conf: float) -> "Detections":
        """The detections scoring above ``conf`` (``score > conf``, as :class:`Detector` keeps them)."""
        keep = self.scores > conf
        below = [v for v in (self.top_below, *self.scores[~keep].tolist()) if v is not None and v <= conf]
        return replace(self, boxes=self.boxes[keep], scores=self.scores[keep], labels=self.labels[keep],
                       names=[n for n, k in zip(self.names, keep.tolist()) if k], category_ids=self.category_ids[keep],
                       conf=float(conf), top_below=float(max(below)) if below else None)

    def of_labels(self, labels: Optional[np.ndarray]) -> "Detections":
        """The detections of these model ``labels`` (:func:`class_filter`; None: all of them)."""
        if labels is None:
            return self
        keep = np.isin(self.labels, labels)
        return replace(self, boxes=self.boxes[keep], scores=self.scores[keep], labels=self.labels[keep],
                       names=[n for n, k in zip(self.names, keep.tolist()) if k], category_ids=self.category_ids[keep])

    def to_coco(self, image_id: Any) -> List[Dict[str, Any]]:
        """COCO results entries: ``image_id``, ``category_id``, ``bbox`` (x, y, w, h), ``score``."""
        out = []
        for (x0, y0, x1, y1), score, cat in zip(self.boxes.tolist(), self.scores.tolist(), self.category_ids.tolist()):
            out.append({"image_id": image_id, "category_id": int(cat),
                        "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                        "score": round(float(score), 5)})
        return out

    def plot(self, image: Optional[ImageLike] = None, bgr: bool = False,
             labels: Union[str, int, bool] = "auto") -> Image.Image:
        """A new RGB PIL image: the picture with these detections drawn as ``dfine predict`` draws
        them (a colour per class, ``"name score"`` labels). ``image``: the picture they were found in
        (default: the file at ``path``; an OpenCV array with ``bgr=True``). ``labels``: ``"auto"`` (sized
        to the image, smaller for small boxes), ``"none"`` or ``False`` (boxes alone), or the text's
        height in px (:func:`dfine.drawing.label_px`). A notebook shows it as a cell's value;
        ``.save("out.jpg")`` writes it."""
        from .drawing import draw

        if image is None:
            if self.path is None:
                raise DfineError("these detections were found in an array or a PIL image, not a file: pass it, "
                                 "detections.plot(image)")
            image = self.path
        picture = load_image(_from_bgr(image) if bgr else image)
        if picture.size != tuple(self.image_size):
            raise DfineError(f"the image given is {picture.size[0]}x{picture.size[1]} px and these detections are of "
                             f"a {self.image_size[0]}x{self.image_size[1]} one: pass the image they were found in")
        return draw(picture, self, empty=self.none_found() if self.conf is not None else None, labels=labels)

    def to_supervision(self) -> Any:
        """These detections as ``supervision.Detections`` (``data['class_name']`` the names,
        ``data['category_id']`` the dataset's ids), for supervision's annotators, zones and counters.
        Needs ``pip install dfine[track]``."""
        from .integrations.supervision import to_supervision
        return to_supervision(self)


def _best_left_out(scores: np.ndarray, keep: np.ndarray) -> Optional[float]:
    """The best of ``scores`` that ``keep`` (a mask of the same shape) leaves out; None when it keeps all."""
    return float(scores[~keep].max()) if (~keep).any() else None


def _from_bgr(image: ImageLike) -> ImageLike:
    """An OpenCV ``H x W x 3`` BGR (or ``x 4`` BGRA) array as RGB; anything else as it is (a PIL image
    carries its own order; a wrong shape is :func:`load_image`'s error)."""
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[..., 2::-1])
    return image


def load_image(image: ImageLike) -> Image.Image:
    """An 8-bit RGB PIL image from a path, a PIL image or an ``H x W x 3`` RGB uint8 array (``x 4``: RGBA,
    its alpha dropped as for an RGBA PIL image; a gray ``H x W`` one), as a
    photo viewer shows it: the EXIF orientation applied (boxes then come back in the displayed
    image), 16-bit, 32-bit and float images scaled to 8 bits by their type's range (not clipped)."""
    from .data.image_io import exif_orientation, open_image, to_rgb8
    if isinstance(image, Image.Image):
        if exif_orientation(image) != 1:
            image = ImageOps.exif_transpose(image)
        return to_rgb8(image)
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8 and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1)):
            return Image.fromarray(image.reshape(image.shape[:2]), "L").convert("RGB")  # gray, as a gray file is read
        if image.ndim == 3 and image.shape[2] == 4 and image.dtype == np.uint8:  # np.asarray of a PNG (a walk)
            return Image.fromarray(image, "RGBA").convert("RGB")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DfineError(f"an image array must be H x W x 3 uint8 (RGB; OpenCV's BGR with bgr=True), H x W x 4 "
                             f"(RGBA) or H x W uint8 (gray), got shape {image.shape} {image.dtype}")
        return Image.fromarray(image, "RGB")
    if type(image).__module__.split(".")[0] == "torch":
        raise DfineError("Detector takes image files, PIL images and H x W x 3 uint8 arrays, not torch tensors: "
                         "a 3 x H x W float tensor in 0..1 is tensor.permute(1, 2, 0).mul(255).byte().numpy(); "
                         "a batch already resized for the model goes to the model itself (dfine.build_model)")
    if not isinstance(image, (str, os.PathLike)):
        raise DfineError(f"an image must be a file path, a PIL image or an H x W x 3 uint8 array, got "
                         f"{type(image).__name__}")
    path = Path(image)
    if path.is_dir():
        from .video import IMAGE_SUFFIXES
        held = sorted({p.suffix.lower() for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES})
        pattern = f"*{held[0]}" if len(held) == 1 else "*"  # the kind it holds: '*.jpg' found nothing among PNGs
        raise DfineError(f"image {path} is a folder: Detector takes image files (detector(sorted(Path('{path}')"
                         f".glob('{pattern}'))), or dfine predict {path} for every image in it)")
    if not path.is_file() and any(c in path.name for c in "*?[") and path.parent.is_dir():
        raise DfineError(f"image {path} not found: Detector takes files, not patterns (detector(sorted(Path("
                         f"'{path.parent}').glob('{path.name}'))), or dfine predict '{path}')")  # a walk's 'dir/*.jpg'
    if not path.is_file():
        raise DfineError(f"image {path} not found")
    try:
        return open_image(path, exif=True)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DfineError(f"cannot read image {path}: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}") from None


def preprocess(images: Sequence[Image.Image], imgsz: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Resize to ``imgsz`` (height, width) with PIL bilinear -> ``images [B, 3, H, W]`` float32 0..1
    and ``sizes [B, 2]`` int64 original (width, height)."""
    h, w = imgsz
    batch = np.stack([np.asarray(im.resize((w, h), Image.BILINEAR), dtype=np.float32) for im in images])
    sizes = np.array([im.size for im in images], dtype=np.int64)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2) / np.float32(255)), sizes


@dataclass
class _Engine:
    """A loaded backend: its run function and what it knows about the model."""

    run: RunFn
    backend: str
    imgsz: Tuple[int, int]
    class_names: Tuple[str, ...] = ()
    category_ids: Tuple[int, ...] = ()
    extra: Dict[str, Any] = field(default_factory=dict)
    fixed_batch: Optional[int] = None  # the batch size of a static-batch export
    conf: Optional[float] = None  # the score threshold the model's training run recommends
    quantized: str = ""  # "int8" for an int8 export (its metadata's quantization record), else ""
    tiles: Optional[Tuple[int, int]] = None  # the (height, width) tiles it was trained on (dfine data tile)


def _check_conf(conf: Any) -> None:
    """A one-line error for a ``conf`` that is not a score in 0..1 (None passes: the default)."""
    if conf is not None and (isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0 <= conf <= 1):
        percent = not isinstance(conf, bool) and isinstance(conf, (int, float)) and 1 < conf <= 100
        raise DfineError(f"conf must be a number in 0..1, got {conf!r}"
                         + (f" (a percentage? {conf / 100:g} is {conf:g}%)" if percent else ""))


class Detector:
    """Object detector over any backend.

    ``model``: a checkpoint (``.pth``), a zoo name (``dfine_s_coco``), an ``.onnx`` file, an
    OpenVINO ``.xml`` or a TensorRT ``.engine``. ``device``: ``cpu`` / ``cuda[:i]`` (PyTorch,
    TensorRT, ONNX Runtime's CUDA provider when available). ``conf``: score threshold, 0..1; ``None`` (the
    default): the one the model's training run recommends (best F1 on its val set; checkpoints and
    exports of a dfine run carry it, :attr:`recommended_conf`), else 0.5.
    ``imgsz``: input (height, width) or one int; for exported files it is the file's own size.
    ``size``/``config``: the model size or recipe for a published checkpoint (otherwise recognised).
    ``threads``: CPU threads for ONNX Runtime / OpenVINO (default: the runtime's own choice).
    ``precision``: OpenVINO's inference precision, ``f32`` (default: outputs equal PyTorch's) or
    ``bf16`` (faster on CPUs with AVX512-BF16 or AMX; scores move by about 1e-2).
    ``slice``: sliced inference for small objects in large images (:mod:`dfine.slicing`): ``True``
    (tiles at the model's input size), a tile size (``640`` or ``(height, width)``) or a
    :class:`~dfine.slicing.SliceConfig` (overlap, ``nms``/``nmm`` merge, whole image too).
    ``clip``: boxes clipped to the image (default). COCO evaluation (``dfine eval`` of an export)
    turns it off, so its AP is that of the model's own boxes, as the published evaluator scores them.
    """

    slice: Any = None  # a SliceConfig when slicing (a class default: from_run builds without __init__)
    clip: bool = True  # boxes clipped to the image (a class default too)
    name: str = "the model"  # the model file's name, in notes
    _tiles_said: bool = False  # the note that a model trained on tiles runs unsliced: said once
    tiles_run: int = 0  # sliced: the tiles (and whole images, slice.full) run through the model so far

    @keyword_hints
    def __init__(self, model: PathLike, device: str = "cpu", conf: Optional[float] = None,
                 imgsz: Union[int, Sequence[int], None] = None, backend: Optional[str] = None,
                 batch_size: int = 8, size: Optional[str] = None, config: Optional[PathLike] = None,
                 threads: Optional[int] = None, precision: str = "f32", slice: Any = None, clip: bool = True):
        if backend is not None and backend not in BACKENDS:
            raise DfineError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        _check_conf(conf)
        if batch_size < 1:
            raise DfineError(f"batch size (batch_size=, the command line's -b) must be >= 1, got {batch_size}")
        if precision not in PRECISIONS:
            raise DfineError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        from .slicing import slice_config
        self.slice = slice_config(slice)
        self.batch_size, self.device, self.clip = int(batch_size), str(device), bool(clip)
        self._engine = _open(str(model), backend, device, imgsz, size, config, threads, precision)
        self.name = Path(str(model)).name
        recommended = self._engine.conf
        self.conf = float(conf if conf is not None else recommended if recommended is not None else DEFAULT_CONF)
        self._say_other_tile()

    @property
    def recommended_conf(self) -> Optional[float]:
        """The score threshold the model's training run recommends (best F1 on its val set), as its
        checkpoint or export carries it; None when it carries none (a published checkpoint)."""
        return self._engine.conf

    @property
    def backend(self) -> str:
        return self._engine.backend

    @property
    def imgsz(self) -> Tuple[int, int]:
        """Model input (height, width)."""
        return self._engine.imgsz

    @property
    def class_names(self) -> Tuple[str, ...]:
        return self._engine.class_names

    @property
    def trained_tile(self) -> Optional[Tuple[int, int]]:
        """The tile (height, width) the model was trained on (``dfine data tile``), as its checkpoint
        or export records it; None for a model trained on whole images. Such a model is meant to run
        with ``slice`` at that size on images larger than it."""
        return self._engine.tiles

    def __repr__(self) -> str:
        """``Detector(onnxruntime, input 320x320, conf 0.5, 13 classes: bishop, black-bishop, black-king, ...)``
        (``openvino int8`` for an int8 export; ``, trained on 320x320 tiles`` and ``, sliced 320x320``
        when so)."""
        names = self.class_names
        h, w = self.imgsz
        kind = f"{self.backend} {self._engine.quantized}".strip()
        extra = ""
        if self.trained_tile is not None:
            extra += f", trained on tiles of {hw_words(self.trained_tile)}"
        if self.slice is not None:
            th, tw = self.slice.tile or self.imgsz
            extra += f", sliced {tw}x{th}"
        return (f"Detector({kind}, input {h}x{w}, conf {self.conf:g}, "
                f"{counted(len(names), 'class', 'classes')}: {first_few(names, 3)}{extra})")

    @classmethod
    def from_run(cls, run: RunFn, imgsz: Tuple[int, int], class_names: Sequence[str], category_ids: Sequence[int],
                 conf: float = 0.5, batch_size: int = 1, backend: str = "custom") -> "Detector":
        """A detector over any :data:`RunFn` (e.g. a model a quantization tool holds in memory),
        with the pre- and post-processing of every other backend."""
        det = cls.__new__(cls)
        det.conf, det.batch_size, det.device, det.slice = float(conf), int(batch_size), "cpu", None
        det._engine = _Engine(run, backend, tuple(imgsz), tuple(class_names), tuple(int(i) for i in category_ids))
        return det

    @keyword_hints(name="dfine.Detector(...)")  # det(image, confidence=0.3) was a bare TypeError (a walk)
    def __call__(self, images: Union[ImageLike, Sequence[ImageLike]], bgr: bool = False,
                 conf: Optional[float] = None) -> List[Detections]:
        """Detect in one image or a list of them; one :class:`Detections` per image. Images are paths,
        PIL images or uint8 arrays: ``H x W x 3`` in RGB order, ``H x W x 4`` RGBA (its alpha dropped) or
        ``H x W`` gray; with ``bgr=True`` the 3- and 4-channel arrays are in OpenCV's BGR(A) order
        (``cv2.imread``, ``VideoCapture`` frames); paths and PIL images carry their own order. ``conf``:
        this call's score threshold (0..1) instead of the detector's."""
        _check_conf(conf)  # conf= here: a walk's det(image, conf=0.1) was a TypeError
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)) or not hasattr(images, "__len__"):
            images = [images]  # anything else that is no list is one image, which load_image names if it is none
        out: List[Detections] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            paths = [str(im) if isinstance(im, (str, os.PathLike)) else None for im in chunk]
            pil = [load_image(_from_bgr(im) if bgr else im) for im in chunk]
            out.extend(self.predict_pil(pil, paths, conf))
        return out

    def predict_pil(self, images: Sequence[Image.Image], paths: Optional[Sequence[Optional[str]]] = None,
                    conf: Optional[float] = None) -> List[Detections]:
        """Detect in already-decoded RGB PIL images, as one batch (sliced: one image at a time, its
        tiles batched); ``conf`` overrides the threshold."""
        conf = self.conf if conf is None else conf
        paths = paths or [None] * len(images)
        if self.slice is not None:
            return [self._predict_sliced(im, path, conf)[0] for im, path in zip(images, paths)]
        self._say_unsliced(images)
        batch, sizes = preprocess(images, self.imgsz)
        labels, boxes, scores = self._run(batch, sizes)
        return [self._detections(labels[i], boxes[i], scores[i], tuple(sizes[i]), paths[i], conf)
                for i in range(len(images))]

    def _say_other_tile(self) -> None:
        """A model trained on tiles, sliced into tiles of another size, says so (a walk sliced a
        320 px model at 640: its objects half their trained size, and no word why it found less)."""
        tile = self._engine.tiles
        if self.slice is None or tile is None:
            return
        from .slicing import other_tile_note
        note = other_tile_note(self.name, tile, tuple(self.slice.tile or self.imgsz))
        if note:
            print(note, file=sys.stderr)

    def _say_unsliced(self, images: Sequence[Image.Image]) -> None:
        """Once a detector: a model trained on tiles, run whole on an image much larger than them,
        names ``--slice`` (a walk's 4000 px photo gave nothing, and no word why)."""
        tile = self._engine.tiles
        if tile is None or self._tiles_said:
            return
        from .slicing import unsliced_note
        for image in images:
            note = unsliced_note(self.name, tile, image.size)
            if note:
                from tqdm import tqdm
                tqdm.write(note, file=sys.stderr)  # on a line of its own under a progress bar (predict's, eval's)
                self._tiles_said = True
                return

    def _predict_sliced(self, image: Image.Image, path: Optional[str], conf: float
                        ) -> Tuple[Detections, Optional[float]]:
        """Tiles of ``image`` (and the whole of it when ``slice.full``) through the engine in batches,
        boxes moved to image pixels, pieces of objects cut by tile edges joined, then merged per class;
        and the highest score of any tile's box, below ``conf`` too (None when no tile has a box)."""
        from .slicing import cut_sides, join_cut_pieces, merge_detections, tile_windows
        cfg = self.slice
        windows = tile_windows(image.width, image.height, cfg.tile or self.imgsz, cfg.overlap)
        crops = [image.crop(tuple(w)) for w in windows.tolist()]
        if cfg.full:
            crops.append(image)
            windows = np.concatenate([windows, [[0, 0, image.width, image.height]]])
        self.tiles_run += len(crops)
        found = []
        for start in range(0, len(crops), self.batch_size):
            batch, sizes = preprocess(crops[start:start + self.batch_size], self.imgsz)
            found.append(self._run(batch, sizes))
        labels, boxes, scores = (np.concatenate(parts) for parts in zip(*found))
        best = float(scores.max()) if scores.size else None
        keep = scores > conf  # [tiles, K]
        top_below = _best_left_out(scores, keep)  # of every tile's boxes
        shift = np.tile(windows[:, None, :2], (1, keep.shape[1], 2)).astype(np.float32)
        boxes = (boxes + shift)[keep].astype(np.float32)
        tiles = np.repeat(windows[:, None], keep.shape[1], axis=1)[keep]
        boxes, scores, labels, cut = join_cut_pieces(boxes, scores[keep].astype(np.float32), labels[keep].astype(np.int64),
                                                     cut_sides(boxes, tiles, *image.size))
        boxes, scores, labels = merge_detections(boxes, scores, labels, cfg.merge, cfg.iou, cut)
        return replace(self._detections(labels, boxes, scores, image.size, path, conf), top_below=top_below), best

    def _run(self, batch: np.ndarray, sizes: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The engine on ``batch [B, 3, H, W]``, in steps of a static-batch model's own batch size."""
        step = self._engine.fixed_batch or len(batch)
        if len(batch) % step:
            raise DfineError(f"this model was exported for batches of exactly {step} images; "
                             f"export it with a dynamic batch (without --static)")
        outs = [self._engine.run(batch[i:i + step], sizes[i:i + step]) for i in range(0, len(batch), step)]
        return tuple(np.concatenate(parts) for parts in zip(*outs))  # type: ignore[return-value]

    def _detections(self, labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                    image_size: Tuple[int, int], path: Optional[str], conf: float) -> Detections:
        keep = scores > conf
        top_below = _best_left_out(scores, keep)
        labels, boxes, scores = labels[keep].astype(np.int64), boxes[keep].astype(np.float32), scores[keep].astype(np.float32)
        if self.clip:  # a copy already (boolean indexing): the model's edges past the border, cut at it
            np.clip(boxes[:, 0::2], 0, image_size[0], out=boxes[:, 0::2])
            np.clip(boxes[:, 1::2], 0, image_size[1], out=boxes[:, 1::2])
        names, ids = self._engine.class_names, self._engine.category_ids
        return Detections(boxes=boxes, scores=scores, labels=labels,
                          names=[names[i] if 0 <= i < len(names) else str(i) for i in labels.tolist()],
                          category_ids=np.array([ids[i] if 0 <= i < len(ids) else i for i in labels.tolist()], dtype=np.int64),
                          image_size=(int(image_size[0]), int(image_size[1])), path=path, conf=float(conf),
                          top_below=top_below)


# ---- backends -------------------------------------------------------------------------------

def class_filter(classes: Optional[Sequence[Union[str, int]]], names: Sequence[str]) -> Optional[np.ndarray]:
    """Model labels for ``classes`` (class names, or label numbers), None for all classes."""
    if not classes:
        return None
    labels = []
    for c in classes:
        if isinstance(c, int) or (isinstance(c, str) and c.isdigit() and c not in names):
            if not 0 <= int(c) < len(names):
                raise DfineError(f"class {c} out of range: the model has {counted(len(names), 'class', 'classes')} "
                                 f"(0..{len(names) - 1})")
            labels.append(int(c))
        elif c in names:
            labels.append(list(names).index(c))
        else:  # 'persn' was told the class list alone (a walk)
            import difflib
            close = difflib.get_close_matches(str(c), [str(n) for n in names], 1, 0.75)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DfineError(f"unknown class {c!r}; {hint}the model's classes are: {first_few(names, 12)}")
    return np.array(sorted(set(labels)), dtype=np.int64)


def detect(det: Any, images: Sequence[Image.Image], paths: Optional[Sequence[Optional[str]]] = None,
           conf: Optional[float] = None, full: Optional[List[int]] = None,
           labels: Optional[np.ndarray] = None) -> Tuple[List[Detections], Optional[float]]:
    """``det.predict_pil(images, paths)`` (the detections above ``conf``, default ``det.conf``) and the
    highest score of any box, below ``conf`` too (None for an empty batch; sliced: of any tile's box,
    before the tiles' boxes are merged). One pass: the model
    runs at conf 0 and its detections are filtered here, as the detector does (``score > conf``).
    ``full`` (a list): the positions of the images whose every detection was kept, appended (the
    model can report no more there; not at conf 0, which keeps everything by definition). ``labels``: the highest
    score is of boxes of these labels only (``dfine track --classes``)."""
    conf = det.conf if conf is None else conf
    if getattr(det, "slice", None) is not None and images:
        paths = paths or [None] * len(images)
        found, best = zip(*(det._predict_sliced(im, path, conf) for im, path in zip(images, paths)))
        seen = [b for b in best if b is not None]
        return list(found), max(seen) if seen else None
    found = det.predict_pil(images, paths, conf=0.0)
    chosen = [d.scores if labels is None else d.scores[np.isin(d.labels, labels)] for d in found]
    scores = [float(c.max()) for c in chosen if len(c)]
    kept = [d.above(conf) for d in found]
    if full is not None and conf > 0:
        full += [i for i, (k, d) in enumerate(zip(kept, found)) if len(d) and len(k) == len(d)]
    return kept, max(scores) if scores else None


def _open(model: str, backend: Optional[str], device: str, imgsz, size, config, threads, precision: str = "f32"
          ) -> _Engine:
    """Pick and load the backend for ``model``."""
    suffix = Path(model).suffix.lower()
    kind = _backend_for(model, suffix, backend)
    if precision != "f32" and kind != "openvino":
        raise DfineError(f"precision {precision} is an OpenVINO setting; add --backend openvino or drop it")
    if kind != "torch" and not Path(model).is_file():
        from .text import missing_model_note
        raise DfineError(f"model file {model} not found{missing_model_note(model)}")
    if kind == "torch":
        return _torch_engine(model, device, imgsz, size, config)
    if kind == "openvino":
        if device != "cpu":
            raise DfineError(f"OpenVINO runs {Path(model).name} on the CPU; drop -d {device} (on a GPU, export ONNX "
                             f"or a TensorRT engine)")
        engine = _openvino_engine(model, threads, precision)
    else:
        engine = {"onnxruntime": _ort_engine, "tensorrt": _trt_engine}[kind](model, device, threads)
    if imgsz is not None:
        from .checkpoint import parse_imgsz
        if parse_imgsz(imgsz) != engine.imgsz:
            raise DfineError(f"{model} was exported for {engine.imgsz[0]}x{engine.imgsz[1]} input; "
                             f"drop --imgsz or export again at that size")
    return engine


def _not_a_model(model: str, suffix: str) -> str:
    """The error for a model file of no model format; an image or a video (a walk's ``Detector("street.avi")``)
    is one to give to a model, which is said."""
    from .video import IMAGE_SUFFIXES, VIDEO_SUFFIXES
    kinds = "a .pth checkpoint, a zoo name, .onnx, OpenVINO .xml or TensorRT .engine"
    if suffix in IMAGE_SUFFIXES:
        return (f"{model} is an image, not a model ({kinds}): give it to one: dfine predict {model} -m MODEL, or in "
                f"Python dfine.Detector(MODEL)({str(model)!r})")
    if suffix in VIDEO_SUFFIXES:
        return (f"{model} is a video, not a model ({kinds}): give it to one: dfine predict {model} -m MODEL (dfine "
                f"track to follow objects), or in Python dfine.track({str(model)!r}, dfine.Detector(MODEL))")
    return f"unsupported model file {model}: expected {kinds}"


def _backend_for(model: str, suffix: str, backend: Optional[str]) -> str:
    """The backend a model file needs; a one-line error when ``backend`` cannot read it."""
    if Path(model).is_dir():  # a run's folder (a walk's Detector(result.output_dir)): its weights named
        from .text import folder_model_error
        try:  # the weights the run's last.pth records as best (torch reads it; an install for exports has none)
            from .checkpoint import run_best_weights
            best = run_best_weights(model)
        except ImportError:
            best = None
        raise DfineError(folder_model_error(model, best.name if best is not None else None))
    natural = {".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt", ".trt": "tensorrt"}
    if suffix in CHECKPOINT_SUFFIXES or (not suffix and not Path(model).exists()):
        kind = "torch"
    elif suffix in natural:
        kind = natural[suffix]
    else:
        raise DfineError(_not_a_model(model, suffix))
    if backend is None or backend == kind or (backend == "openvino" and suffix == ".onnx"):
        return backend or kind
    raise DfineError(f"backend {backend!r} cannot run {model}; it needs the {kind} backend")


def _metadata(props: Dict[str, str]) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    """Class names and category ids from export metadata (COCO defaults for 80 classes)."""
    names = tuple(json.loads(props["class_names"])) if "class_names" in props else ()
    ids = tuple(json.loads(props["category_ids"])) if "category_ids" in props else ()
    if not names:
        from .data.mscoco import MSCOCO_CATEGORY_IDS, MSCOCO_NAMES
        names, ids = tuple(MSCOCO_NAMES), tuple(MSCOCO_CATEGORY_IDS)
    return names, ids or tuple(range(len(names)))


def _recommended_conf(props: Dict[str, str], model: str) -> Optional[float]:
    """The ``recommended_conf`` export metadata holds (None when absent; an export written before it
    existed has none)."""
    text = props.get("recommended_conf")
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise DfineError(f"{model}: its metadata 'recommended_conf' is {text!r}, not a score in 0..1; export it "
                         f"again (dfine export -r CHECKPOINT)")
    return float(value)


def _quantized(props: Dict[str, str]) -> str:
    """``"int8"`` when export metadata records an int8 quantization (``dfine export --int8``), else ``""``."""
    try:
        record = json.loads(props.get("quantization") or "{}")
    except ValueError:
        return ""
    return "int8" if isinstance(record, dict) and record.get("precision") == "int8" else ""


def _torch_engine(model: str, device: str, imgsz, size, config) -> _Engine:
    import torch
    from .checkpoint import load_model
    from .device import resolve_device
    dev = resolve_device(device)
    loaded = load_model(model, size=size, config=config, imgsz=imgsz, device=dev)
    if dev.type == "cpu":
        from .allocator import keep_freed_memory
        keep_freed_memory()  # no page faults on every pass (see dfine/allocator.py)

    def run(images: np.ndarray, sizes: np.ndarray):
        with torch.inference_mode():
            x = torch.from_numpy(images).to(dev)
            out = loaded.postprocessor(loaded.model(x), torch.from_numpy(sizes).to(dev))
        return tuple(t.cpu().numpy() for t in out)

    return _Engine(run, "torch", loaded.imgsz, loaded.class_names, loaded.category_ids, conf=loaded.conf,
                   tiles=loaded.tiles)


def _onnx_imgsz(shape: Sequence[Any], model: str) -> Tuple[int, int]:
    """(H, W) from an ``images`` input shape ``[N, 3, H, W]``; fixed sizes are required."""
    h, w = shape[2], shape[3]
    if not (isinstance(h, int) and isinstance(w, int)):
        raise DfineError(f"{model} has a dynamic image size; export it with a fixed --imgsz")
    return h, w


def _ort_engine(model: str, device: str, threads: Optional[int]) -> _Engine:
    try:
        import onnxruntime as ort
    except ImportError:
        raise DfineError("ONNX models need onnxruntime: pip install \"dfine[onnx]\" (or onnxruntime)") from None
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    from .device import waits_passively
    if waits_passively():
        # the switch torch's OpenMP threads follow: waiting threads sleep instead of spinning (faster on
        # a busy machine, slower on an idle one; README, "Deploy")
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            print(f"warning: device {device} asked for, but this onnxruntime has no CUDA provider (pip install "
                  f"onnxruntime-gpu); {Path(model).name} runs on the CPU", file=sys.stderr)
    try:
        session = ort.InferenceSession(model, opts, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types
        raise DfineError(f"{model} is not a readable ONNX model ({str(e).splitlines()[0][:160]}); a copy cut short or "
                         f"another file? Export it again (dfine export -r CHECKPOINT)") from None
    names = [i.name for i in session.get_inputs()]
    if names != ["images", "orig_target_sizes"]:
        raise DfineError(f"{model} is not a D-FINE export: inputs {names}, expected images, orig_target_sizes")
    imgsz = _onnx_imgsz(session.get_inputs()[0].shape, model)
    meta = session.get_modelmeta().custom_metadata_map
    class_names, ids = _metadata(meta)

    def run(images: np.ndarray, sizes: np.ndarray):
        return tuple(session.run(["labels", "boxes", "scores"], {"images": images, "orig_target_sizes": sizes}))

    batch = session.get_inputs()[0].shape[0]
    return _Engine(run, "onnxruntime", imgsz, class_names, ids, {"session": session},
                   batch if isinstance(batch, int) else None, _recommended_conf(meta, model), _quantized(meta),
                   trained_tile(meta.get("tiles")))


def _openvino_engine(model: str, threads: Optional[int], precision: str = "f32") -> _Engine:
    """OpenVINO on the CPU, latency hint (one stream), ``threads`` inference threads."""
    try:
        import openvino as ov
    except ImportError:
        raise DfineError("backend openvino needs OpenVINO: pip install \"dfine[openvino]\" (or openvino)") from None
    if model.lower().endswith(".xml"):
        _check_ir(model)
    core = ov.Core()
    try:
        net = core.read_model(model)
    except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own
        lines = [line for line in str(e).splitlines() if line.strip()]  # the reason is its last line
        raise DfineError(f"{model} is not a readable model for OpenVINO ({(lines or ['?'])[-1][:160]})") from None
    imgsz = _onnx_imgsz([d.get_length() if d.is_static else None for d in net.input("images").get_partial_shape()], model)
    props = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    if threads:
        props["INFERENCE_NUM_THREADS"] = int(threads)
    if model.lower().endswith(".onnx"):
        meta = _onnx_metadata(model)
    else:
        from .export.openvino import ir_metadata
        meta = ir_metadata(net)
    class_names, ids = _metadata(meta)
    runner = _OpenVinoRunner(core, net, props, imgsz)
    batch = None if runner.dynamic else net.input("images").get_partial_shape()[0].get_length()
    return _Engine(runner, "openvino", imgsz, class_names, ids, fixed_batch=batch, conf=_recommended_conf(meta, model),
                   quantized=_quantized(meta), tiles=trained_tile(meta.get("tiles")))


def _check_ir(xml: str) -> None:
    """A clear error unless ``xml`` is an OpenVINO IR file (root element ``<net>``) with its weights
    file beside it. Checked before OpenVINO reads it: given something else, OpenVINO tries its other
    front ends too (TensorFlow's prints parse errors of its own to the terminal) and reports only the
    last one's failure."""
    import xml.etree.ElementTree as ET
    hint = "give the .xml that dfine export --format openvino wrote, with its .bin beside it"
    try:
        root = next(ET.iterparse(xml, events=("start",)))[1]  # the first element; the file may be large
    except (ET.ParseError, StopIteration) as e:
        raise DfineError(f"{xml} is not an OpenVINO IR: not an XML file ({e}); {hint}") from None
    if root.tag != "net":
        raise DfineError(f"{xml} is not an OpenVINO IR: its root element is <{root.tag}>, not <net>; {hint}")
    weights = Path(xml).with_suffix(".bin")
    if not weights.is_file():
        raise DfineError(f"{xml}: its weights file {weights.name} is not beside it; {hint}")


class _OpenVinoRunner:
    """Runs an OpenVINO model compiled for each batch size it meets.

    A dynamic batch axis is fixed to the batch at hand before compiling (one compile per new
    size, about half a second): the CPU plugin runs static shapes about 10% faster."""

    def __init__(self, core: Any, net: Any, props: Dict[str, Any], imgsz: Tuple[int, int]):
        self.core, self.net, self.props, self.imgsz = core, net, props, imgsz
        self.dynamic = net.input("images").get_partial_shape()[0].is_dynamic
        self.compiled: Dict[int, Tuple[Any, Any]] = {}

    def _compiled(self, batch: int) -> Tuple[Any, Any]:
        """(compiled model, infer request) for ``batch`` images."""
        key = batch if self.dynamic else 0
        if key not in self.compiled:
            net = self.net
            if self.dynamic:
                net = net.clone()
                net.reshape({"images": [batch, 3, *self.imgsz], "orig_target_sizes": [batch, 2]})
            compiled = self.core.compile_model(net, "CPU", self.props)
            self.compiled[key] = compiled, compiled.create_infer_request()
        return self.compiled[key]

    def __call__(self, images: np.ndarray, sizes: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        compiled, request = self._compiled(len(images))
        # share_inputs: OpenVINO reads the arrays in place instead of copying them first (a copy of a
        # 640x640 batch of one costs about as much as the model's first convolution); it still copies
        # an array it cannot read in place (another dtype, not C-contiguous)
        res = request.infer({"images": images, "orig_target_sizes": sizes}, share_inputs=True)
        return tuple(np.asarray(res[compiled.output(n)]) for n in ("labels", "boxes", "scores"))  # type: ignore[return-value]


def _onnx_metadata(path: str) -> Dict[str, str]:
    """The ``metadata_props`` of an ONNX file (without loading its weights)."""
    try:
        import onnx
        m = onnx.load(path, load_external_data=False)
        return {p.key: p.value for p in m.metadata_props}
    except Exception:  # metadata is optional
        return {}


def _trt_engine(model: str, device: str, threads: Optional[int]) -> _Engine:
    from .export.tensorrt import TensorRTRunner
    runner = TensorRTRunner(model, device="cuda:0" if device == "cpu" else device)
    class_names, ids = _metadata(runner.metadata)
    return _Engine(runner, "tensorrt", runner.imgsz, class_names, ids, conf=_recommended_conf(runner.metadata, model),
                   tiles=trained_tile(runner.metadata.get("tiles")))
