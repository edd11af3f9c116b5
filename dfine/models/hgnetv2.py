"""HGNetv2 backbone: stem, four stages of HG blocks, learnable affine blocks, light blocks.

Input ``[B, 3, H, W]`` (H, W multiples of 32); stage ``i`` outputs stride ``4 * 2**i``
(4, 8, 16, 32). The variant (B0..B6) is a named :class:`~dfine.models.config.HGNetv2Arch`.
"""

from __future__ import annotations

import math
import warnings
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import FrozenBatchNorm2d

from .config import HGNETV2_ARCHS, HGNetv2Arch, StageSpec
from .layers import (activate, batch_norm_train, conv_act, conv_bn, fast_inference, folded_conv_bn,
                     uses_channels_last_bn, version)


class LearnableAffineBlock(nn.Module):
    """``scale * x + bias`` with two learnable scalars."""

    def __init__(self, scale: float = 1.0, bias: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([scale]))
        self.bias = nn.Parameter(torch.tensor([bias]))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x + self.bias


class _ClampAtBound(torch.autograd.Function):
    """``max(z, b)`` (``min(z, b)`` when ``upper``) for ``z`` that already contains ``+ b``: the
    gradient of ``b`` is that of ``y`` summed (``z``'s own ``b`` must be detached). The backward
    reads only the output (a ReLU's backward, shifted by ``b``)."""

    @staticmethod
    def forward(ctx, z: Tensor, bound: Tensor, upper: bool) -> Tensor:
        value = float(bound)
        y = z.clamp_max(value) if upper else z.clamp_min(value)
        ctx.value, ctx.upper = value, upper
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (y,) = ctx.saved_tensors
        if ctx.upper:
            grad_z = torch.where(y < ctx.value, grad, 0.0)
        else:
            grad_z = torch.ops.aten.threshold_backward(grad, y, ctx.value)  # grad where y > b
        # y moves one for one with b on both sides of the clamp when b also shifts z (as in
        # ConvBNAct._bn_relu_affine, where that path is detached): all of its gradient is here
        grad_bound = grad.sum().reshape(1) if ctx.needs_input_grad[1] else None
        return grad_z, grad_bound, None


class ConvBNAct(nn.Module):
    """Conv (no bias) + BatchNorm + optional ReLU + optional learnable affine block."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 use_act: bool = True, use_lab: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=(kernel_size - 1) // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU() if use_act else nn.Identity()
        self.lab = LearnableAffineBlock() if use_act and use_lab else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.lab, LearnableAffineBlock) and self.training:
            y = self.conv(x)
            if isinstance(self.act, nn.ReLU) and uses_channels_last_bn(self.bn, y):
                return self._bn_relu_affine(y)
            return self.lab(self.act(batch_norm_train(self.bn, y)))
        if (isinstance(self.lab, LearnableAffineBlock) and isinstance(self.act, nn.ReLU) and not self.bn.training
                and (fast_inference() or torch.jit.is_tracing())):
            return self._folded_relu_affine(x)
        return self.lab(conv_bn(self, self.conv, self.bn, x, self.act))

    def _folded_relu_affine(self, x: Tensor) -> Tensor:
        """Inference ``lab(relu(bn(conv(x))))`` as one conv and one clamp: ``s * relu(z) + b`` is
        ``max(s * z + b, b)`` (``min`` when ``s < 0``), with ``s`` and ``b`` folded into the conv."""
        weight, bias = folded_conv_bn(self, self.conv, self.bn, affine=(self.lab.scale, self.lab.bias))
        return conv_act(x, weight, bias, self.conv, self.act, clamp=self._clamp_bounds())

    def _clamp_bounds(self) -> Tuple[float, float]:
        """``(b, inf)`` for the learnable affine block ``s * relu(z) + b`` with ``s >= 0``, else ``(-inf, b)``."""
        s, b = self.lab.scale, self.lab.bias
        key = (version(s), s.data_ptr(), version(b), b.data_ptr())
        cached = self.__dict__.get("_clamp")
        if cached is None or cached[0] != key:
            with warnings.catch_warnings():  # constants of the graph when traced for export
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                lo, scale = float(b.detach()), float(s.detach())
            cached = self.__dict__["_clamp"] = (key, (lo, math.inf) if scale >= 0 else (-math.inf, lo))
        return cached[1]

    def forward_parts(self, parts: Sequence[Tensor]) -> Tensor:
        """``self(torch.cat(parts, 1))`` in eval mode as one conv per part, summed before the
        activation: the export form, with no Concat (OpenVINO ran the stem's on a reference kernel,
        N at 640 capped at AVX2: 0.5 ms, more than the convolution after it)."""
        lab = isinstance(self.lab, LearnableAffineBlock) and isinstance(self.act, nn.ReLU)
        weight, bias = folded_conv_bn(self, self.conv, self.bn, affine=(self.lab.scale, self.lab.bias) if lab else None)
        c = self.conv
        y = None
        for part, w in zip(parts, weight.split([p.shape[1] for p in parts], dim=1)):
            z = F.conv2d(part, w, bias if y is None else None, c.stride, c.padding, c.dilation, c.groups)
            y = z if y is None else y + z
        if lab:
            return activate(y, self.act, self._clamp_bounds())
        return self.lab(self.act(y))

    def _bn_relu_affine(self, y: Tensor) -> Tensor:
        """``lab(relu(bn(y)))`` in two passes over memory: ``s * relu(z) + b = max(s * z + b, b)``
        (``min`` when ``s < 0``), with ``s`` folded into the batch norm's affine terms."""
        s, b = self.lab.scale, self.lab.bias
        z = batch_norm_train(self.bn, y, self.bn.weight * s, self.bn.bias * s + b.detach())
        return _ClampAtBound.apply(z, b, bool(s.detach() < 0))


class LightConvBNAct(nn.Module):
    """1x1 conv without activation followed by a depthwise ``k x k`` conv with activation."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, use_lab: bool = False):
        super().__init__()
        self.conv1 = ConvBNAct(in_ch, out_ch, 1, use_act=False, use_lab=use_lab)
        self.conv2 = ConvBNAct(out_ch, out_ch, kernel_size, groups=out_ch, use_lab=use_lab)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x))


class StemBlock(nn.Module):
    """Stride-4 stem: conv s2, a max-pool branch beside two 2x2 convs, conv s2, 1x1 conv."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, use_lab: bool = False):
        super().__init__()
        self.stem1 = ConvBNAct(in_ch, mid_ch, 3, stride=2, use_lab=use_lab)
        self.stem2a = ConvBNAct(mid_ch, mid_ch // 2, 2, use_lab=use_lab)
        self.stem2b = ConvBNAct(mid_ch // 2, mid_ch, 2, use_lab=use_lab)
        self.stem3 = ConvBNAct(mid_ch * 2, mid_ch, 3, stride=2, use_lab=use_lab)
        self.stem4 = ConvBNAct(mid_ch, out_ch, 1, use_lab=use_lab)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1)  # ceil_mode is moot at stride 1

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(self.stem1(x), (0, 1, 0, 1))
        branch = self.stem2b(F.pad(self.stem2a(x), (0, 1, 0, 1)))
        if torch.onnx.is_in_onnx_export() and not self.stem3.bn.training:
            return self.stem4(self.stem3.forward_parts([self._pool(x), branch]))
        x = torch.cat([self._pool(x), branch], dim=1)
        return self.stem4(self.stem3(x))


    def _pool(self, x: Tensor) -> Tensor:
        """2x2 stride-1 max-pool of ``[B, C, H + 1, W + 1]`` -> ``[B, C, H, W]`` in ``x``'s memory format.

        Without gradients: the maximum of row pairs, then of column pairs (two element-wise
        passes, fastest on CPU; the 2x2 maximum is separable). With gradients on CPU the
        pool runs channels-last (several times faster than on NCHW there; same values and the
        same gradient routing, to the first maximum of each window).
        """
        if self.training or not fast_inference():
            if x.device.type != "cpu" or x.is_contiguous(memory_format=torch.channels_last):
                return self.pool(x)
            return self.pool(x.contiguous(memory_format=torch.channels_last)).contiguous()
        rows = torch.maximum(x[..., :-1, :], x[..., 1:, :])
        return torch.maximum(rows[..., :-1], rows[..., 1:])


class EseModule(nn.Module):
    """Effective squeeze-excitation: ``x * sigmoid(conv1x1(mean_hw(x)))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.sigmoid(self.conv(x.mean((2, 3), keepdim=True)))


class HGBlock(nn.Module):
    """``layer_num`` convs whose outputs (and the input) are concatenated, then aggregated.

    The published backbone aggregates with two 1x1 ConvBNAct (squeeze to ``out/2``, excite
    to ``out``); a residual connection is added on every block but the first of a stage.
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, layer_num: int, kernel_size: int = 3,
                 residual: bool = False, light_block: bool = False, use_lab: bool = False):
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList()
        for i in range(layer_num):
            c_in = in_ch if i == 0 else mid_ch
            if light_block:
                self.layers.append(LightConvBNAct(c_in, mid_ch, kernel_size, use_lab=use_lab))
            else:
                self.layers.append(ConvBNAct(c_in, mid_ch, kernel_size, use_lab=use_lab))
        total = in_ch + layer_num * mid_ch
        self.aggregation = nn.Sequential(
            ConvBNAct(total, out_ch // 2, 1, use_lab=use_lab),
            ConvBNAct(out_ch // 2, out_ch, 1, use_lab=use_lab),
        )

    def forward(self, x: Tensor) -> Tensor:
        outputs = [x]
        y = x
        for layer in self.layers:
            y = layer(y)
            outputs.append(y)
        y = self.aggregation(torch.cat(outputs, dim=1))
        return y + x if self.residual else y


class HGStage(nn.Module):
    """Optional depthwise stride-2 downsample, then ``num_blocks`` HG blocks."""

    def __init__(self, spec: StageSpec, use_lab: bool = False):
        super().__init__()
        c_in = spec.in_channels
        self.downsample = (ConvBNAct(c_in, c_in, 3, stride=2, groups=c_in, use_act=False, use_lab=use_lab)
                           if spec.downsample else nn.Identity())
        self.blocks = nn.Sequential(*[
            HGBlock(c_in if i == 0 else spec.out_channels, spec.mid_channels, spec.out_channels,
                    spec.layer_num, spec.kernel_size, residual=i > 0, light_block=spec.light_block,
                    use_lab=use_lab)
            for i in range(spec.num_blocks)
        ])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


def _freeze_norms(module: nn.Module) -> None:
    """Replace every ``BatchNorm2d`` under ``module`` by a ``FrozenBatchNorm2d`` (buffers only)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child.num_features, eps=child.eps))
        else:
            _freeze_norms(child)


class HGNetv2(nn.Module):
    """HGNetv2 backbone returning the feature maps of the stages in ``return_idx``.

    Args:
        arch: the variant (stem channels and stage specs).
        use_lab: learnable affine blocks after activations.
        return_idx: stages whose outputs are returned (0..3, strides 4, 8, 16, 32).
        freeze_at: ``>= 0`` freezes the stem (and stages ``0..freeze_at`` unless ``freeze_stem_only``).
        freeze_norm: replace batch norms by frozen ones (their affine terms become buffers).
    """

    def __init__(self, arch: HGNetv2Arch, use_lab: bool = False, return_idx: Sequence[int] = (1, 2, 3),
                 freeze_stem_only: bool = True, freeze_at: int = 0, freeze_norm: bool = True):
        super().__init__()
        self.return_idx = tuple(return_idx)
        self.out_channels = [arch.stages[i].out_channels for i in self.return_idx]
        self.stem = StemBlock(*arch.stem_channels, use_lab=use_lab)
        self.stages = nn.ModuleList(HGStage(spec, use_lab) for spec in arch.stages)
        if freeze_at >= 0:
            self.stem.requires_grad_(False)
            if not freeze_stem_only:
                for stage in self.stages[: freeze_at + 1]:
                    stage.requires_grad_(False)
        if freeze_norm:
            _freeze_norms(self)

    @classmethod
    def from_name(cls, name: str, **kwargs) -> "HGNetv2":
        return cls(HGNETV2_ARCHS[name], **kwargs)

    def forward(self, x: Tensor) -> List[Tensor]:
        """``[B, 3, H, W]`` -> list of ``[B, C_i, H / s_i, W / s_i]`` for the returned stages."""
        x = self.stem(x)
        outs = []
        last = max(self.return_idx)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.return_idx:
                outs.append(x)
            if i == last:
                break
        return outs
