"""Typed model configuration: one frozen dataclass per part, and the published presets N/S/M/L/X.

Field names are the published YAML keys (sections ``HGNetv2``, ``HybridEncoder``,
``DFINETransformer``), so a published recipe maps onto these classes key for key.
Values that the published YAML repeats between sections (the encoder's input channels,
the decoder's feature channels and strides) default to ``None`` and are derived from
the other sections by :func:`resolve`; when given they must agree.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional, Tuple

MODEL_NAMES = ("dfine_n", "dfine_s", "dfine_m", "dfine_l", "dfine_x")


@dataclass(frozen=True)
class HGNetv2Config:
    """HGNetv2 backbone (published section ``HGNetv2``)."""

    name: str = "B4"
    use_lab: bool = False
    return_idx: Tuple[int, ...] = (1, 2, 3)
    freeze_stem_only: bool = True
    freeze_at: int = 0
    freeze_norm: bool = True
    pretrained: bool = False
    local_model_dir: str = "weight/hgnetv2/"


@dataclass(frozen=True)
class HybridEncoderConfig:
    """Hybrid encoder, AIFI + CCFF (published section ``HybridEncoder``)."""

    in_channels: Optional[Tuple[int, ...]] = None  # derived from the backbone
    feat_strides: Optional[Tuple[int, ...]] = None  # derived from the backbone
    hidden_dim: int = 256
    nhead: int = 8
    dim_feedforward: int = 1024
    dropout: float = 0.0
    enc_act: str = "gelu"
    use_encoder_idx: Tuple[int, ...] = (2,)
    num_encoder_layers: int = 1
    pe_temperature: float = 10000.0
    expansion: float = 1.0
    depth_mult: float = 1.0
    act: str = "silu"


@dataclass(frozen=True)
class DFINETransformerConfig:
    """D-FINE decoder (published section ``DFINETransformer``)."""

    feat_channels: Optional[Tuple[int, ...]] = None  # derived from the encoder
    feat_strides: Optional[Tuple[int, ...]] = None  # derived from the encoder
    hidden_dim: int = 256
    num_queries: int = 300
    num_levels: int = 3
    num_points: Tuple[int, ...] = (3, 6, 3)
    nhead: int = 8
    num_layers: int = 6
    dim_feedforward: int = 1024
    dropout: float = 0.0
    activation: str = "relu"
    num_denoising: int = 100
    label_noise_ratio: float = 0.5
    box_noise_scale: float = 1.0
    learn_query_content: bool = False
    eval_idx: int = -1
    eps: float = 1e-2
    aux_loss: bool = True
    cross_attn_method: str = "default"
    query_select_method: str = "default"
    reg_max: int = 32
    reg_scale: float = 4.0
    layer_scale: float = 1.0


@dataclass(frozen=True)
class DFINEConfig:
    """The whole detector: backbone + encoder + decoder, and what they share."""

    backbone: HGNetv2Config = field(default_factory=HGNetv2Config)
    encoder: HybridEncoderConfig = field(default_factory=HybridEncoderConfig)
    decoder: DFINETransformerConfig = field(default_factory=DFINETransformerConfig)
    num_classes: int = 80
    eval_spatial_size: Optional[Tuple[int, int]] = (640, 640)  # (height, width)


# HGNetv2 variants: stem (in, mid, out) and per stage
# (in, mid, out, num_blocks, downsample, light_block, kernel_size, layer_num).
@dataclass(frozen=True)
class StageSpec:
    in_channels: int
    mid_channels: int
    out_channels: int
    num_blocks: int
    downsample: bool
    light_block: bool
    kernel_size: int
    layer_num: int


@dataclass(frozen=True)
class HGNetv2Arch:
    stem_channels: Tuple[int, int, int]
    stages: Tuple[StageSpec, StageSpec, StageSpec, StageSpec]


def _arch(stem, *stages) -> HGNetv2Arch:
    return HGNetv2Arch(tuple(stem), tuple(StageSpec(*s) for s in stages))


HGNETV2_ARCHS = {
    "B0": _arch((3, 16, 16), (16, 16, 64, 1, False, False, 3, 3), (64, 32, 256, 1, True, False, 3, 3),
                (256, 64, 512, 2, True, True, 5, 3), (512, 128, 1024, 1, True, True, 5, 3)),
    "B1": _arch((3, 24, 32), (32, 32, 64, 1, False, False, 3, 3), (64, 48, 256, 1, True, False, 3, 3),
                (256, 96, 512, 2, True, True, 5, 3), (512, 192, 1024, 1, True, True, 5, 3)),
    "B2": _arch((3, 24, 32), (32, 32, 96, 1, False, False, 3, 4), (96, 64, 384, 1, True, False, 3, 4),
                (384, 128, 768, 3, True, True, 5, 4), (768, 256, 1536, 1, True, True, 5, 4)),
    "B3": _arch((3, 24, 32), (32, 32, 128, 1, False, False, 3, 5), (128, 64, 512, 1, True, False, 3, 5),
                (512, 128, 1024, 3, True, True, 5, 5), (1024, 256, 2048, 1, True, True, 5, 5)),
    "B4": _arch((3, 32, 48), (48, 48, 128, 1, False, False, 3, 6), (128, 96, 512, 1, True, False, 3, 6),
                (512, 192, 1024, 3, True, True, 5, 6), (1024, 384, 2048, 1, True, True, 5, 6)),
    "B5": _arch((3, 32, 64), (64, 64, 128, 1, False, False, 3, 6), (128, 128, 512, 2, True, False, 3, 6),
                (512, 256, 1024, 5, True, True, 5, 6), (1024, 512, 2048, 2, True, True, 5, 6)),
    "B6": _arch((3, 48, 96), (96, 96, 192, 2, False, False, 3, 6), (192, 192, 512, 3, True, False, 3, 6),
                (512, 384, 1024, 6, True, True, 5, 6), (1024, 768, 2048, 3, True, True, 5, 6)),
}
BACKBONE_STRIDES = (4, 8, 16, 32)


def encoder_tokens(cfg: DFINEConfig, hw: Tuple[int, int]) -> int:
    """Encoder tokens the decoder of ``cfg`` sees for an input of ``hw`` pixels (each feature level of
    stride ``s`` gives ``H/s * W/s``; extra levels halve the last one); its queries are picked among them."""
    sizes = [(math.ceil(hw[0] / s), math.ceil(hw[1] / s)) for s in cfg.decoder.feat_strides]
    while len(sizes) < cfg.decoder.num_levels:
        sizes.append((math.ceil(sizes[-1][0] / 2), math.ceil(sizes[-1][1] / 2)))
    return sum(h * w for h, w in sizes)


def preset(name: str) -> DFINEConfig:
    """The published architecture of ``dfine_{n,s,m,l,x}`` (80 classes, 640x640)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    size = name[-1]
    if size == "n":
        return DFINEConfig(
            backbone=HGNetv2Config(name="B0", use_lab=True, return_idx=(2, 3), freeze_at=-1, freeze_norm=False),
            encoder=HybridEncoderConfig(hidden_dim=128, use_encoder_idx=(1,), dim_feedforward=512,
                                        expansion=0.34, depth_mult=0.5),
            decoder=DFINETransformerConfig(hidden_dim=128, dim_feedforward=512, num_levels=2, num_layers=3,
                                           num_points=(6, 6)),
        )
    if size == "s":
        return DFINEConfig(
            backbone=HGNetv2Config(name="B0", use_lab=True, freeze_at=-1, freeze_norm=False),
            encoder=HybridEncoderConfig(depth_mult=0.34, expansion=0.5),
            decoder=DFINETransformerConfig(num_layers=3),
        )
    if size == "m":
        return DFINEConfig(
            backbone=HGNetv2Config(name="B2", use_lab=True, freeze_at=-1, freeze_norm=False),
            encoder=HybridEncoderConfig(depth_mult=0.67),
            decoder=DFINETransformerConfig(num_layers=4),
        )
    if size == "l":
        return DFINEConfig(backbone=HGNetv2Config(name="B4"))
    return DFINEConfig(
        backbone=HGNetv2Config(name="B5"),
        encoder=HybridEncoderConfig(hidden_dim=384, dim_feedforward=2048),
        decoder=DFINETransformerConfig(reg_scale=8.0),
    )


_SECTIONS = ("backbone", "encoder", "decoder")


def _merge(section, value, where: str):
    """Apply a dict (or a ready dataclass) of overrides to one section dataclass."""
    if dataclasses.is_dataclass(value):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"{where} must be a dict of overrides or a {type(section).__name__}, got {type(value).__name__}")
    names = {f.name for f in fields(section)}
    for key in value:
        if key not in names:
            raise TypeError(f"unknown option {where}.{key}; valid options: {', '.join(sorted(names))}")
    return replace(section, **{k: _as_tuple(v) for k, v in value.items()})


def _as_tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def apply_overrides(cfg: DFINEConfig, **overrides: Any) -> DFINEConfig:
    """Return ``cfg`` with ``overrides`` applied.

    A key is a top-level field (``num_classes``, ``eval_spatial_size``), a section given as a
    dict (``decoder={"num_layers": 4}``), or a field name that exists in exactly one section
    (``num_denoising=0``). An unknown key is a ``TypeError`` naming it; a name that exists in
    several sections is a ``TypeError`` asking for the section form.
    """
    top = {}
    for key, value in overrides.items():
        if key in _SECTIONS:
            top[key] = _merge(getattr(cfg, key), value, key)
            continue
        if key in ("num_classes", "eval_spatial_size"):
            top[key] = _as_tuple(value)
            continue
        owners = [s for s in _SECTIONS if key in {f.name for f in fields(getattr(cfg, s))}]
        if not owners:
            valid = sorted({f.name for s in _SECTIONS for f in fields(getattr(cfg, s))} | {"num_classes", "eval_spatial_size"})
            raise TypeError(f"unknown model option {key!r}; valid options: {', '.join(valid)}")
        if len(owners) > 1:
            raise TypeError(f"model option {key!r} exists in {' and '.join(owners)}; "
                            f"pass it as {owners[0]}={{'{key}': ...}}")
        sec = owners[0]
        current = top.get(sec, getattr(cfg, sec))
        top[sec] = replace(current, **{key: _as_tuple(value)})
    return replace(cfg, **top)


def resolve(cfg: DFINEConfig) -> DFINEConfig:
    """Fill the derived fields and check the sections agree; raise ``ValueError`` otherwise."""
    bb, enc, dec = cfg.backbone, cfg.encoder, cfg.decoder
    if bb.name not in HGNETV2_ARCHS:
        raise ValueError(f"unknown HGNetv2 name {bb.name!r}; choose one of {', '.join(HGNETV2_ARCHS)}")
    if not isinstance(cfg.num_classes, int) or cfg.num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {cfg.num_classes!r}")
    arch = HGNETV2_ARCHS[bb.name]
    if any(i not in range(4) for i in bb.return_idx):
        raise ValueError(f"HGNetv2.return_idx must pick stages among 0..3, got {list(bb.return_idx)}")
    bb_channels = tuple(arch.stages[i].out_channels for i in bb.return_idx)
    bb_strides = tuple(BACKBONE_STRIDES[i] for i in bb.return_idx)
    enc = replace(enc, in_channels=_check_derived(enc.in_channels, bb_channels, "HybridEncoder.in_channels"),
                  feat_strides=_check_derived(enc.feat_strides, bb_strides, "HybridEncoder.feat_strides"))
    dec = replace(dec,
                  feat_channels=_check_derived(dec.feat_channels, (enc.hidden_dim,) * len(bb_channels),
                                               "DFINETransformer.feat_channels"),
                  feat_strides=_check_derived(dec.feat_strides, bb_strides, "DFINETransformer.feat_strides"))
    if dec.num_levels < len(dec.feat_channels):
        raise ValueError(f"DFINETransformer.num_levels={dec.num_levels} is less than the "
                         f"{len(dec.feat_channels)} feature levels the encoder gives")
    if len(dec.num_points) != dec.num_levels:
        raise ValueError(f"DFINETransformer.num_points needs one entry per level ({dec.num_levels}), "
                         f"got {list(dec.num_points)}")
    if dec.reg_max < 4 or dec.reg_max % 2:
        raise ValueError(f"DFINETransformer.reg_max must be an even integer >= 4, got {dec.reg_max}")
    if cfg.eval_spatial_size is not None:
        h, w = cfg.eval_spatial_size
        if h % 32 or w % 32:
            raise ValueError(f"eval_spatial_size must be multiples of 32, got {list(cfg.eval_spatial_size)}")
    return replace(cfg, encoder=enc, decoder=dec)


def _check_derived(given, derived, name: str):
    if given is None:
        return derived
    if tuple(given) != tuple(derived):
        raise ValueError(f"{name}={list(given)} disagrees with the backbone/encoder, which give {list(derived)}; "
                         f"remove the key to derive it")
    return tuple(given)
