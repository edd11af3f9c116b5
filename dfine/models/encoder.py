"""Hybrid encoder: AIFI (a transformer layer on the coarsest map) + CCFF (top-down and
bottom-up fusion with RepNCSPELAN blocks and SCDown downsampling).

Input: backbone maps ``[B, C_i, H / s_i, W / s_i]``; output: the same number of maps, all with
``hidden_dim`` channels, at the same strides.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .layers import (ConvNorm, ConvNormPlain, Linear, RepVGGBlock, activation, map_tokens,
                     onednn_inference, self_attention, sincos_position_embedding)


class AIFILayer(nn.Module):
    """Post-norm transformer encoder layer (self-attention + FFN) on flattened tokens."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.0,
                 act: str = "gelu"):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout, batch_first=True)
        self.linear1 = Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = activation(act)

    def forward(self, src: Tensor, pos_embed: Tensor) -> Tensor:
        """src: ``[B, N, C]`` tokens; pos_embed: ``[1, N, C]``."""
        attn = self_attention(self.self_attn, src + pos_embed, src)
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout(self.linear1(src, self.activation)))
        return self.norm2(src + self.dropout2(ffn))


class AIFIEncoder(nn.Module):
    """A stack of :class:`AIFILayer` (state-dict name ``layers``)."""

    def __init__(self, num_layers: int, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(AIFILayer(**layer_kwargs) for _ in range(num_layers))

    def forward(self, src: Tensor, pos_embed: Tensor) -> Tensor:
        for layer in self.layers:
            src = layer(src, pos_embed)
        return src


class CSPRepLayer(nn.Module):
    """CSP layer: ``conv1 -> RepVGG blocks`` plus a ``conv2`` shortcut, summed (``conv3`` is identity
    because hidden and output channels are equal in every published size)."""

    def __init__(self, in_ch: int, out_ch: int, num_blocks: int, act: str = "silu"):
        super().__init__()
        self.conv1 = ConvNorm(in_ch, out_ch, 1, act=act)
        self.conv2 = ConvNorm(in_ch, out_ch, 1, act=act)
        self.bottlenecks = nn.Sequential(*[RepVGGBlock(out_ch, out_ch, act=act) for _ in range(num_blocks)])
        self.conv3 = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class RepNCSPELAN4(nn.Module):
    """GELAN block: split ``cv1(x)`` in two halves, chain ``cv2`` and ``cv3`` on the second, concat
    all four parts and project with ``cv4``.

    Args: c1 input channels, c2 output channels, c3 width of ``cv1``, c4 width of the branches,
    n RepVGG blocks per branch.
    """

    def __init__(self, c1: int, c2: int, c3: int, c4: int, n: int = 3, act: str = "silu"):
        super().__init__()
        self.c = c3 // 2
        self.cv1 = ConvNorm(c1, c3, 1, act=act)
        self.cv2 = nn.Sequential(CSPRepLayer(c3 // 2, c4, n, act=act), ConvNorm(c4, c4, 3, act=act))
        self.cv3 = nn.Sequential(CSPRepLayer(c4, c4, n, act=act), ConvNorm(c4, c4, 3, act=act))
        self.cv4 = ConvNorm(c3 + 2 * c4, c2, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return self._branches(self.cv1(x))

    def forward_upsampled(self, low: Tensor, high: Tensor) -> Tensor:
        """``self(cat([upsample(low), high], 1))`` with 2x nearest upsampling, the concatenation
        folded into ``cv1`` (see :meth:`ConvNorm.forward_upsampled`)."""
        return self._branches(self.cv1.forward_upsampled(low, high))

    def _branches(self, y: Tensor) -> Tensor:
        a, b = y.split((self.c, self.c), dim=1)
        if onednn_inference(b, b):
            # a channel slice of a channels-last map is strided: copy it once here, not once in
            # each of the two 1x1 convs of cv2's CSP layer that read it
            b = b.contiguous(memory_format=torch.channels_last)
        c = self.cv2(b)
        d = self.cv3(c)
        return self.cv4(torch.cat([a, b, c, d], dim=1))


class SCDown(nn.Module):
    """Spatial-channel decoupled downsampling: 1x1 conv, then a depthwise ``k x k`` stride-``s`` conv."""

    def __init__(self, c1: int, c2: int, k: int, s: int):
        super().__init__()
        self.cv1 = ConvNorm(c1, c2, 1)
        self.cv2 = ConvNorm(c2, c2, k, s, groups=c2)

    def forward(self, x: Tensor) -> Tensor:
        return self.cv2(self.cv1(x))


class HybridEncoder(nn.Module):
    """AIFI on the maps in ``use_encoder_idx``, then CCFF fusion (FPN top-down, PAN bottom-up).

    Args:
        in_channels: channels of the backbone maps (fine to coarse).
        feat_strides: their strides.
        hidden_dim: channels of every output map.
        expansion, depth_mult: width and depth of the RepNCSPELAN blocks.
    """

    def __init__(self, in_channels: Sequence[int], feat_strides: Sequence[int], hidden_dim: int = 256,
                 nhead: int = 8, dim_feedforward: int = 1024, dropout: float = 0.0, enc_act: str = "gelu",
                 use_encoder_idx: Sequence[int] = (2,), num_encoder_layers: int = 1,
                 pe_temperature: float = 10000.0, expansion: float = 1.0, depth_mult: float = 1.0,
                 act: str = "silu"):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = tuple(use_encoder_idx)
        self.num_encoder_layers = num_encoder_layers
        self.pe_temperature = pe_temperature
        self.out_channels = [hidden_dim] * len(in_channels)
        self.out_strides = list(feat_strides)
        self._pos_cache: Dict[Tuple[int, int, str], Tensor] = {}

        self.input_proj = nn.ModuleList(ConvNormPlain(c, hidden_dim, 1) for c in in_channels)
        self.encoder = nn.ModuleList(
            AIFIEncoder(num_encoder_layers, d_model=hidden_dim, nhead=nhead, dim_feedforward=dim_feedforward,
                        dropout=dropout, act=enc_act)
            for _ in self.use_encoder_idx
        )
        width = round(expansion * hidden_dim // 2)
        depth = round(3 * depth_mult)
        n = len(in_channels)
        self.lateral_convs = nn.ModuleList(ConvNorm(hidden_dim, hidden_dim, 1) for _ in range(n - 1))
        self.fpn_blocks = nn.ModuleList(
            RepNCSPELAN4(hidden_dim * 2, hidden_dim, hidden_dim * 2, width, depth, act=act) for _ in range(n - 1))
        self.downsample_convs = nn.ModuleList(
            nn.Sequential(SCDown(hidden_dim, hidden_dim, 3, 2)) for _ in range(n - 1))
        self.pan_blocks = nn.ModuleList(
            RepNCSPELAN4(hidden_dim * 2, hidden_dim, hidden_dim * 2, width, depth, act=act) for _ in range(n - 1))

    def position_embedding(self, h: int, w: int, device: torch.device) -> Tensor:
        """``[1, h * w, hidden_dim]`` sine-cosine embedding, cached per size and device.

        ``h``/``w`` are read as plain ints, so under the ONNX exporter's tracer every op of the
        table has constant inputs and constant folding stores it as one initializer (no
        Range/Sin/Cos nodes; ``tests/export/test_onnx.py`` checks). No tracer state is touched."""
        h, w = int(h), int(w)
        key = (h, w, str(device))
        pos = self._pos_cache.get(key)
        if pos is None:
            pos = sincos_position_embedding(h, w, self.hidden_dim, self.pe_temperature).to(device)
            self._pos_cache[key] = pos
        return pos

    def forward(self, feats: List[Tensor]) -> List[Tensor]:
        """feats: backbone maps, fine to coarse -> fused maps ``[B, hidden_dim, H_i, W_i]``."""
        proj = [p(f) for p, f in zip(self.input_proj, feats)]
        if self.num_encoder_layers > 0:
            for enc, idx in zip(self.encoder, self.use_encoder_idx):
                b, c, h, w = proj[idx].shape
                tokens = map_tokens(proj[idx])
                pos = self.position_embedding(h, w, tokens.device).to(tokens.dtype)
                # back to the map's own layout (a view when it is channels-last, as in CPU inference)
                layout = (torch.channels_last if proj[idx].is_contiguous(memory_format=torch.channels_last)
                          else torch.contiguous_format)
                proj[idx] = enc(tokens, pos).permute(0, 2, 1).reshape(b, c, h, w).contiguous(memory_format=layout)

        # top-down: from the coarsest map, upsample and fuse with the next finer one
        n = len(proj)
        inner = [proj[-1]]
        for k, idx in enumerate(range(n - 1, 0, -1)):
            top = self.lateral_convs[k](inner[0])
            inner[0] = top
            inner.insert(0, self.fpn_blocks[k].forward_upsampled(top, proj[idx - 1]))  # fpn(cat([up(top), proj]))

        # bottom-up: downsample and fuse with the next coarser top-down map
        outs = [inner[0]]
        for k in range(n - 1):
            down = self.downsample_convs[k](outs[-1])
            outs.append(self.pan_blocks[k](torch.cat([down, inner[k + 1]], dim=1)))
        return outs
