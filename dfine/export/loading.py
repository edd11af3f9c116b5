"""Turning a checkpoint (ours, published, or a zoo name) into a ready deploy-mode detector.

Our trainer's checkpoints carry ``config`` (the resolved model config as a dict),
``class_names`` and ``category_ids``; published checkpoints carry only weights, so the
model size comes from ``size``, a ``config`` file, or is recognised from the weights
(:func:`infer_model_name`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..checkpoint import load_state, model_state, read_checkpoint
from ..errors import DfineError
from ..models.config import (MODEL_NAMES, DFINEConfig, DFINETransformerConfig, HGNetv2Config,
                             HybridEncoderConfig, apply_overrides, preset)
from ..models.dfine import DFINE, build_from_config
from ..models.postprocess import PostProcessor

__all__ = ["LoadedModel", "infer_model_name", "load_model", "parse_imgsz"]

PathLike = Union[str, os.PathLike]
_IGNORED = ("decoder.anchors", "decoder.valid_mask")


@dataclass
class LoadedModel:
    """A deploy-mode detector and what is needed to read its outputs.

    ``class_names[label]`` names the model's label; ``category_ids[label]`` is the dataset's
    category id (COCO ids for COCO-trained models)."""

    model: DFINE
    postprocessor: PostProcessor
    config: DFINEConfig
    class_names: Tuple[str, ...]
    category_ids: Tuple[int, ...]
    source: str

    @property
    def imgsz(self) -> Tuple[int, int]:
        """The input size ``(height, width)`` the model was built for."""
        return tuple(self.config.eval_spatial_size or (640, 640))  # type: ignore[return-value]


def parse_imgsz(imgsz: Union[int, Sequence[int], None], default: Tuple[int, int] = (640, 640)) -> Tuple[int, int]:
    """``640`` -> ``(640, 640)``; ``(480, 640)`` -> ``(480, 640)`` as (height, width), multiples of 32."""
    if imgsz is None:
        return default
    if isinstance(imgsz, int):
        imgsz = (imgsz, imgsz)
    imgsz = tuple(int(v) for v in imgsz)
    if len(imgsz) == 1:
        imgsz = imgsz * 2
    if len(imgsz) != 2 or any(v <= 0 or v % 32 for v in imgsz):
        raise DfineError(f"--imgsz must be one or two positive multiples of 32 (height width), got {list(imgsz)}")
    return imgsz  # type: ignore[return-value]


def _signature(name: str, num_classes: int, num_denoising: bool) -> Dict[str, Tuple[int, ...]]:
    """Parameter names and shapes of ``name`` built on the meta device (no memory, no time)."""
    cfg = apply_overrides(preset(name), num_classes=num_classes, eval_spatial_size=None)
    if not num_denoising:
        cfg = apply_overrides(cfg, num_denoising=0)
    with torch.device("meta"):
        model = build_from_config(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in _IGNORED}


def infer_model_name(state_dict: Mapping[str, torch.Tensor]) -> Tuple[str, int]:
    """Recognise a published architecture from its weights: ``(model name, num_classes)``.

    The class count is the row count of ``decoder.enc_score_head.weight``; the size is the
    preset whose parameter names and shapes all match. A one-line :class:`DfineError` if none do.
    """
    head = state_dict.get("decoder.enc_score_head.weight")
    if head is None:
        raise DfineError("these weights are not a D-FINE detector (no decoder.enc_score_head.weight)")
    num_classes = int(head.shape[0])
    denoising = "decoder.denoising_class_embed.weight" in state_dict
    shapes = {k: tuple(v.shape) for k, v in state_dict.items() if k not in _IGNORED}
    for name in MODEL_NAMES:
        if _signature(name, num_classes, denoising) == shapes:
            return name, num_classes
    raise DfineError("the weights match none of the D-FINE sizes n, s, m, l, x; "
                     "pass the model config with -c CONFIG")


def _config_from_dict(data: Mapping[str, Any]) -> DFINEConfig:
    """A :class:`DFINEConfig` from its ``dataclasses.asdict`` form (lists read as tuples)."""
    def section(cls, value):
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in dict(value).items() if k in names})
    size = data.get("eval_spatial_size")
    return DFINEConfig(backbone=section(HGNetv2Config, data["backbone"]),
                       encoder=section(HybridEncoderConfig, data["encoder"]),
                       decoder=section(DFINETransformerConfig, data["decoder"]),
                       num_classes=int(data["num_classes"]), eval_spatial_size=tuple(size) if size else None)


def _config_from_file(path: PathLike) -> DFINEConfig:
    """The model section of a training recipe (``dfine.config.load_config``)."""
    try:
        from ..config import load_config, model_config
    except ImportError:  # pragma: no cover - config loader not available
        raise DfineError("reading -c CONFIG needs dfine.config; pass --size n|s|m|l|x instead") from None
    return model_config(load_config(path))


def _resolve_source(source: PathLike) -> Tuple[Path, Optional[Any]]:
    """A checkpoint path for ``source``: a file, or a zoo entry name (downloaded and cached)."""
    path = Path(source)
    if path.is_file():
        return path, None
    if path.suffix or os.sep in str(source):
        raise DfineError(f"model file {source} not found")
    from .. import hub, zoo
    entry = zoo.get(str(source))
    if entry.kind != "detector":
        raise DfineError(f"zoo entry {entry.name} is a {entry.kind}, not a detector")
    return hub.fetch_weights(entry.name), entry


def _default_names(num_classes: int, entry: Optional[Any]) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    """Class names and category ids when the checkpoint does not carry them."""
    from ..data.mscoco import MSCOCO_CATEGORY_IDS, MSCOCO_NAMES
    if entry is not None and entry.dataset == "obj365":
        return ("__unused__",) + tuple(entry.class_names), tuple(range(num_classes))
    if num_classes == len(MSCOCO_NAMES):
        return tuple(MSCOCO_NAMES), tuple(MSCOCO_CATEGORY_IDS)
    return tuple(f"class{i}" for i in range(num_classes)), tuple(range(num_classes))


def load_model(source: PathLike, *, size: Optional[str] = None, config: Optional[PathLike] = None,
               imgsz: Union[int, Sequence[int], None] = None, device: Union[str, torch.device] = "cpu",
               num_top_queries: int = 300) -> LoadedModel:
    """Load a checkpoint (path or zoo name) into a deploy-mode model and post-processor.

    The architecture comes from, in order: ``config`` (a recipe yml), ``size`` (``n``..``x``
    or ``dfine_n``..), the checkpoint's own ``config`` entry, the weights' shapes.
    ``imgsz`` (height, width) sets the size whose anchors are precomputed (default: the
    config's ``eval_spatial_size``, else 640x640).
    """
    path, entry = _resolve_source(source)
    ckpt = read_checkpoint(path)
    state = model_state(ckpt, str(path))
    if config is not None:
        cfg = _config_from_file(config)
    elif size is not None:
        name = size if str(size).startswith("dfine_") else f"dfine_{size}"
        if name not in MODEL_NAMES:
            raise DfineError(f"unknown model size {size!r}; choose one of n, s, m, l, x")
        head = state.get("decoder.enc_score_head.weight")
        cfg = apply_overrides(preset(name), num_classes=int(head.shape[0]) if head is not None else 80)
    elif isinstance(ckpt.get("config"), Mapping):
        cfg = _config_from_dict(ckpt["config"])
    else:
        name, num_classes = infer_model_name(state)
        cfg = apply_overrides(preset(name), num_classes=num_classes)
    if "decoder.denoising_class_embed.weight" not in state and cfg.decoder.num_denoising:
        cfg = apply_overrides(cfg, num_denoising=0)
    cfg = apply_overrides(cfg, eval_spatial_size=parse_imgsz(imgsz, tuple(cfg.eval_spatial_size or (640, 640))))
    model = build_from_config(cfg)
    load_state(model, state, str(path))
    model.deploy().to(device)
    names, ids = _default_names(cfg.num_classes, entry)
    if ckpt.get("class_names") is not None:
        names = tuple(str(n) for n in ckpt["class_names"])
    if ckpt.get("category_ids") is not None:
        ids = tuple(int(i) for i in ckpt["category_ids"])
    post = PostProcessor(cfg.num_classes, num_top_queries=num_top_queries).deploy().to(device)
    return LoadedModel(model, post, cfg, names, ids, str(source))
