"""DFINE = HGNetv2 backbone + hybrid encoder + D-FINE decoder, and :func:`build_model`."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn
from torch import Tensor

from .config import DFINEConfig, MODEL_NAMES, apply_overrides, preset, resolve
from .decoder import DFINETransformer
from .encoder import HybridEncoder
from .hgnetv2 import HGNetv2


class DFINE(nn.Module):
    """The detector. ``model(images)`` with ``images [B, 3, H, W]`` float in 0..1 (H, W multiples
    of 32) returns ``pred_logits [B, Q, num_classes]`` and ``pred_boxes [B, Q, 4]`` (normalised
    cx, cy, w, h); in train mode ``model(images, targets)`` also returns the auxiliary, pre,
    encoder and denoising outputs the criterion reads."""

    def __init__(self, backbone: nn.Module, encoder: nn.Module, decoder: nn.Module,
                 config: Optional[DFINEConfig] = None):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.encoder = encoder
        self.config = config
        self.deployed = False

    def forward(self, images: Tensor, targets: Optional[List[Dict[str, Tensor]]] = None) -> Dict[str, Any]:
        check_images(images)
        if not self.training or images.device.type == "cpu":
            # convolutions run fastest channels-last (the folded weights are too); in CPU training the
            # batch norms keep NCHW-accurate statistics (layers.batch_norm_train)
            images = images.contiguous(memory_format=torch.channels_last)
        return self.decoder(self.encoder(self.backbone(images)), targets)

    def deploy(self) -> "DFINE":
        """Switch to the published deploy form: eval mode, batch norms folded into the encoder's convs,
        RepVGG blocks re-parameterised, only the eval decoder layer's heads kept. Irreversible."""
        self.eval()
        for m in self.modules():
            if m is not self and hasattr(m, "convert_to_deploy"):
                m.convert_to_deploy()
        self.to(memory_format=torch.channels_last)
        self.deployed = True
        return self

    def train(self, mode: bool = True) -> "DFINE":
        if mode and self.deployed:
            raise RuntimeError("a deployed model cannot be trained; build a new one")
        return super().train(mode)


def check_images(images: Tensor) -> None:
    """One-line ``ValueError`` for inputs the model cannot take (skipped while exporting/tracing)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return
    if not isinstance(images, Tensor):
        raise ValueError(f"images must be a torch.Tensor [B, 3, H, W], got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape [B, 3, H, W], got {list(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in 0..1, got dtype {images.dtype} (use images.float() / 255)")
    h, w = images.shape[-2:]
    if h % 32 or w % 32 or h == 0 or w == 0:
        raise ValueError(f"image height and width must be positive multiples of 32, got {h}x{w}")
    if images.numel():
        # amin/amax: 0.11 ms on a channels-last 640 px image where aminmax takes 0.49 (1 CPU thread)
        lo, hi = images.detach().amin(), images.detach().amax()
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"images must be in 0..1, got values in {lo.item():.3g}..{hi.item():.3g} "
                             f"(divide 0..255 images by 255; do not normalise by mean/std)")


def build_from_config(cfg: DFINEConfig) -> DFINE:
    """Build the detector described by ``cfg`` (derived fields are filled and checked)."""
    cfg = resolve(cfg)
    bb, enc, dec = cfg.backbone, cfg.encoder, cfg.decoder
    backbone = HGNetv2.from_name(bb.name, use_lab=bb.use_lab, return_idx=bb.return_idx,
                                 freeze_stem_only=bb.freeze_stem_only, freeze_at=bb.freeze_at,
                                 freeze_norm=bb.freeze_norm)
    encoder = HybridEncoder(enc.in_channels, enc.feat_strides, hidden_dim=enc.hidden_dim, nhead=enc.nhead,
                            dim_feedforward=enc.dim_feedforward, dropout=enc.dropout, enc_act=enc.enc_act,
                            use_encoder_idx=enc.use_encoder_idx, num_encoder_layers=enc.num_encoder_layers,
                            pe_temperature=enc.pe_temperature, expansion=enc.expansion,
                            depth_mult=enc.depth_mult, act=enc.act)
    decoder = DFINETransformer(
        num_classes=cfg.num_classes, hidden_dim=dec.hidden_dim, num_queries=dec.num_queries,
        feat_channels=dec.feat_channels, feat_strides=dec.feat_strides, num_levels=dec.num_levels,
        num_points=dec.num_points, nhead=dec.nhead, num_layers=dec.num_layers,
        dim_feedforward=dec.dim_feedforward, dropout=dec.dropout, activation=dec.activation,
        num_denoising=dec.num_denoising, label_noise_ratio=dec.label_noise_ratio,
        box_noise_scale=dec.box_noise_scale, learn_query_content=dec.learn_query_content,
        eval_spatial_size=cfg.eval_spatial_size, eval_idx=dec.eval_idx, eps=dec.eps, aux_loss=dec.aux_loss,
        cross_attn_method=dec.cross_attn_method, query_select_method=dec.query_select_method,
        reg_max=dec.reg_max, reg_scale=dec.reg_scale, layer_scale=dec.layer_scale)
    return DFINE(backbone, encoder, decoder, config=cfg)


def build_model(name: str, *, num_classes: Optional[int] = None, pretrained: bool = False,
                **overrides: Any) -> DFINE:
    """A D-FINE model by size (``dfine_n`` ... ``dfine_x``) or by model-zoo name (``dfine_s_coco``).

    A size gives the published architecture, randomly initialised, with ``num_classes`` (default 80).
    A zoo name gives that entry's size and class count; with ``pretrained=True`` its published
    weights are downloaded once into the cache (``$DFINE_HOME``, default ``~/.cache/dfine``) and
    loaded. ``overrides`` reach the typed config (:func:`dfine.models.config.apply_overrides`):
    ``num_denoising=0``, ``num_queries=100``, ``eval_spatial_size=(480, 640)``,
    ``decoder={"num_layers": 4}``... An unknown option is a ``TypeError`` naming it.
    """
    entry = None
    if name in MODEL_NAMES:
        arch = name
    else:
        from .. import zoo
        entry = next((e for e in zoo.list_entries(kind="detector") if e.name == name), None)
        if entry is None:
            raise ValueError(f"unknown model name {name!r}; choose a size ({', '.join(MODEL_NAMES)}) or a zoo "
                             f"model ({', '.join(e.name for e in zoo.list_entries(kind='detector'))})")
        arch = entry.model
    if pretrained and entry is None:
        raise ValueError(f"pretrained weights come with a zoo name such as {name}_coco, not a bare size {name!r}")
    if num_classes is None:
        num_classes = entry.num_classes if entry is not None else 80
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if pretrained and num_classes != entry.num_classes:
        raise ValueError(f"{name} has {entry.num_classes} classes, not {num_classes}: to train on other classes, "
                         f"fine-tune from it (train.py -t) instead")
    model = build_from_config(apply_overrides(preset(arch), num_classes=num_classes, **overrides))
    if pretrained:
        from ..checkpoint import load_checkpoint
        from ..hub import fetch_weights
        load_checkpoint(model, fetch_weights(name))
    return model
