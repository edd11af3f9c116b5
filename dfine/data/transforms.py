"""Detection transforms on ``torchvision.transforms.v2``, named as in the published recipes.

A pipeline maps ``(PIL image, target)`` to ``(image, target)`` where ``target["boxes"]`` is a
``tv_tensors.BoundingBoxes`` (absolute XYXY pixels) until ``ConvertBoxes`` turns it into a
plain ``[K, 4]`` tensor (normalised cx, cy, w, h with the published
``{fmt: cxcywh, normalize: true}``), and ``target["labels"]`` ``[K]`` int64 follows the
boxes that ``SanitizeBoundingBoxes`` keeps.

The published training pipeline (``configs/dfine/include/dataloader.yml``), in order:
RandomPhotometricDistort(p=0.5), RandomZoomOut(fill=0), RandomIoUCrop(p=0.8),
SanitizeBoundingBoxes(min_size=1), RandomHorizontalFlip, Resize(640x640),
SanitizeBoundingBoxes(min_size=1), ConvertPILImage(float32, scale), ConvertBoxes(cxcywh,
normalised). Its ``stop_epoch`` policy skips the first three from the stop epoch on.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import math
from types import MappingProxyType
from typing import (TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Iterator, List, Mapping, Optional, Sequence,
                    Tuple)

import PIL.Image
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from torch import nn
from torchvision import tv_tensors
from torchvision.ops import box_convert
from torchvision.transforms.v2._utils import query_size

if TYPE_CHECKING:  # pragma: no cover
    from dfine.config import TransformsConfig

__all__ = ["OPS", "STRONG_AUGMENTATIONS", "RandomIoUCrop", "ConvertPILImage", "ConvertBoxes", "DetectionTransform",
           "check_op", "build_op", "build_transforms"]

# The ops the published stop-epoch policy turns off.
STRONG_AUGMENTATIONS = ("RandomPhotometricDistort", "RandomZoomOut", "RandomIoUCrop")


class RandomIoUCrop(T.RandomIoUCrop):
    """torchvision's SSD-style IoU crop, applied with probability ``p`` (must be followed by
    ``SanitizeBoundingBoxes``)."""

    def __init__(self, min_scale: float = 0.3, max_scale: float = 1.0, min_aspect_ratio: float = 0.5,
                 max_aspect_ratio: float = 2.0, sampler_options: Optional[Sequence[float]] = None,
                 trials: int = 40, p: float = 1.0) -> None:
        super().__init__(min_scale, max_scale, min_aspect_ratio, max_aspect_ratio,
                         list(sampler_options) if sampler_options is not None else None, trials)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, *inputs: Any) -> Any:
        if torch.rand(1) >= self.p:
            return inputs if len(inputs) > 1 else inputs[0]
        with _any_canvas_size():
            return super().forward(*inputs)

    def make_params(self, flat_inputs: List[Any]) -> Dict[str, Any]:
        """torchvision's crop, or none (``{}``: the image as it is) for an image so small that a crop
        side rounds to 0 px (under ``1 / min_scale`` px: torchvision divided by it, and a 1x1 image in
        a dataset stopped a run with ZeroDivisionError)."""
        height, width = query_size(flat_inputs)
        if min(height, width) * self.min_scale < 1:
            return {}
        return super().make_params(flat_inputs)


@contextlib.contextmanager
def _any_canvas_size() -> Iterator[None]:
    """PIL's decompression-bomb guard off while a crop of a zoomed-out canvas is taken: the canvas is
    ours (RandomZoomOut makes a 12 MP phone photo up to 195 MP), not a file; PIL warned of an attack
    above 89 MP and raised above 179 MP, stopping a run on phone photos (a walk)."""
    limit = PIL.Image.MAX_IMAGE_PIXELS
    PIL.Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        PIL.Image.MAX_IMAGE_PIXELS = limit


class ConvertPILImage(T.Transform):
    """PIL image -> ``tv_tensors.Image`` ``[3, H, W]``; ``float32`` and ``scale``: values / 255."""

    _transformed_types = (PIL.Image.Image,)

    def __init__(self, dtype: str = "float32", scale: bool = True) -> None:
        super().__init__()
        if dtype not in ("float32", "uint8"):
            raise ValueError(f"dtype must be 'float32' or 'uint8', got {dtype!r}")
        if scale and dtype != "float32":
            raise ValueError("scale: true needs dtype: float32")
        self.dtype = dtype
        self.scale = scale

    def transform(self, inpt: Any, params: Dict[str, Any]) -> Any:
        image = F.pil_to_tensor(inpt)
        if self.dtype == "float32":
            image = image.float()
        if self.scale:
            image = image / 255.0
        return tv_tensors.Image(image)


class ConvertBoxes(T.Transform):
    """Boxes to format ``fmt`` (``xyxy``, ``xywh``, ``cxcywh``; empty: keep) and, with
    ``normalize``, divided by the image (w, h, w, h) into a plain tensor."""

    _transformed_types = (tv_tensors.BoundingBoxes,)

    def __init__(self, fmt: str = "", normalize: bool = False) -> None:
        super().__init__()
        if fmt and fmt.lower() not in ("xyxy", "xywh", "cxcywh"):
            raise ValueError(f"fmt must be 'xyxy', 'xywh' or 'cxcywh', got {fmt!r}")
        self.fmt = fmt.lower()
        self.normalize = normalize

    def transform(self, inpt: Any, params: Dict[str, Any]) -> Any:
        return convert_boxes(inpt, self.fmt, self.normalize)


def convert_boxes(boxes: tv_tensors.BoundingBoxes, fmt: str, normalize: bool) -> torch.Tensor:
    """``[K, 4]`` boxes to ``fmt`` (empty: keep), normalised by the canvas when ``normalize``."""
    height, width = boxes.canvas_size
    if fmt:
        data = box_convert(boxes.as_subclass(torch.Tensor), boxes.format.value.lower(), fmt)
        boxes = tv_tensors.BoundingBoxes(data, format=fmt.upper(), canvas_size=(height, width))
    if normalize:
        scale = torch.tensor([width, height, width, height], dtype=boxes.dtype)
        return boxes.as_subclass(torch.Tensor) / scale
    return boxes


# Every op a recipe may name, by its published name.
OPS: Mapping[str, Callable[..., nn.Module]] = MappingProxyType({
    "RandomPhotometricDistort": T.RandomPhotometricDistort,
    "RandomZoomOut": T.RandomZoomOut,
    "RandomIoUCrop": RandomIoUCrop,
    "RandomHorizontalFlip": T.RandomHorizontalFlip,
    "RandomCrop": T.RandomCrop,
    "Resize": T.Resize,
    "SanitizeBoundingBoxes": T.SanitizeBoundingBoxes,
    "Normalize": T.Normalize,
    "ConvertPILImage": ConvertPILImage,
    "ConvertBoxes": ConvertBoxes,
})


def build_op(name: str, args: Mapping[str, Any]) -> nn.Module:
    """The transform ``name`` built with ``args``; ``ValueError`` (one line) if either is wrong."""
    check_op(name, args)
    return _make(name, args)


def check_op(name: str, args: Optional[Mapping[str, Any]]) -> None:
    """Raise ``ValueError`` naming the problem when ``name(**args)`` is not a valid op
    (``args`` ``None``: only whether ``name`` exists). This is how :func:`dfine.config.load_config`
    checks recipes (see :func:`dfine.config.set_op_check`)."""
    if name not in OPS:
        close = difflib.get_close_matches(name, list(OPS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known ops: {', '.join(OPS)}"
        raise ValueError(f"unknown transform '{name}'; {hint}")
    if args is None:
        return
    params = [p for p in inspect.signature(OPS[name]).parameters if p not in ("self", "labels_getter")]
    for key in args:
        if key not in params:
            close = difflib.get_close_matches(key, params, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"its arguments: {', '.join(params)}"
            raise ValueError(f"{name} has no argument '{key}'; {hint}")
    _make(name, args)


def _make(name: str, args: Mapping[str, Any]) -> nn.Module:
    try:
        return OPS[name](**_thaw(dict(args)))
    except (TypeError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())}): {message}") from None


def _thaw(args: Dict[str, Any]) -> Dict[str, Any]:
    """Tuples from the frozen config back to lists where torchvision wants sequences."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}


class DetectionTransform:
    """The ops of a recipe in order; the ``stop_ops`` are skipped when ``epoch >= stop_epoch``.

    Call with ``(image, target, epoch)``: ``image`` a PIL image, ``target`` a dict with
    ``boxes`` (``BoundingBoxes``) and ``labels``. Returns the transformed ``(image, target)``.
    """

    def __init__(self, ops: Sequence[Tuple[str, Callable[..., Any]]], stop_ops: FrozenSet[str] = frozenset(),
                 stop_epoch: Optional[int] = None) -> None:
        self.ops: Tuple[Tuple[str, Callable[..., Any]], ...] = tuple(ops)
        self.stop_ops = frozenset(stop_ops)
        self.stop_epoch = stop_epoch

    def active(self, epoch: int) -> List[str]:
        """Names of the ops applied at ``epoch``."""
        stopped = self.stop_epoch is not None and epoch >= self.stop_epoch
        return [name for name, _ in self.ops if not (stopped and name in self.stop_ops)]

    def resize_size(self) -> Optional[Tuple[int, int]]:
        """The ``(height, width)`` a ``Resize`` op gives every image (None without one, or when it
        keeps the aspect ratio)."""
        resize = next((op for name, op in self.ops if name == "Resize"), None)
        size = getattr(resize, "size", None)
        if not isinstance(size, (list, tuple)) or not size:
            return None
        return (int(size[0]), int(size[-1])) if len(size) in (1, 2) else None

    def source_short_side(self) -> Optional[int]:
        """The short side (px) above which an image holds more pixels than can reach the model, for
        ops that crop or zoom out (training): the ``Resize`` size over the smallest side share
        ``RandomIoUCrop`` keeps (a crop of 0.3 of a side is resized to the whole input), so an image
        shrunk to it beforehand gives the model the same picture; ``None`` without such ops or a
        ``Resize`` to a fixed size (evaluation reads images as they are)."""
        names = {name for name, _ in self.ops}
        resize = next((op for name, op in self.ops if name == "Resize"), None)
        size = getattr(resize, "size", None)
        if not names & {"RandomIoUCrop", "RandomZoomOut"} or not isinstance(size, (list, tuple)) or not size:
            return None
        crop = next((op for name, op in self.ops if name == "RandomIoUCrop"), None)
        smallest = min(1.0, max(float(getattr(crop, "min_scale", 1.0)), 0.05)) if crop is not None else 1.0
        return math.ceil(max(size) / smallest)

    def __call__(self, image: Any, target: Dict[str, Any], epoch: int) -> Tuple[Any, Dict[str, Any]]:
        stopped = self.stop_epoch is not None and epoch >= self.stop_epoch
        for name, op in self.ops:
            if stopped and name in self.stop_ops:
                continue
            image, target = op(image, target)
        return image, target

    def __repr__(self) -> str:
        names = ", ".join(name for name, _ in self.ops)
        return f"DetectionTransform([{names}], stop_ops={sorted(self.stop_ops)}, stop_epoch={self.stop_epoch})"


def build_transforms(cfg: "TransformsConfig", stop_epoch: Optional[int] = None) -> DetectionTransform:
    """The pipeline of a ``dataset.transforms`` section; ``stop_epoch`` is the loader's
    (``collate_fn.stop_epoch``), used when the policy is ``stop_epoch``."""
    ops = [(op.type, build_op(op.type, op.kwargs)) for op in cfg.ops or ()]
    if cfg.policy.name == "stop_epoch":
        return DetectionTransform(ops, frozenset(cfg.policy.ops), stop_epoch)
    return DetectionTransform(ops)
