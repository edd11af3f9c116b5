"""Small building blocks shared by the encoder and the decoder."""

from __future__ import annotations

import math
import warnings
import weakref
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "swish": nn.SiLU, "gelu": nn.GELU,
                "leaky_relu": nn.LeakyReLU, "hardsigmoid": nn.Hardsigmoid}


def activation(name: Optional[str]) -> nn.Module:
    """``nn.Module`` for an activation name (``None`` -> identity)."""
    if name is None:
        return nn.Identity()
    try:
        return _ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(_ACTIVATIONS)}") from None


def prior_logit(prob: float) -> float:
    """The logit whose sigmoid is ``prob`` (bias init for focal-loss classifiers)."""
    return float(-math.log((1 - prob) / prob))


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``log(x / (1 - x))`` with ``x`` clipped to [0, 1] and both terms to >= ``eps``."""
    x = x.clip(min=0.0, max=1.0)
    return torch.log(x.clip(min=eps) / (1 - x).clip(min=eps))


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation between them (none after the last)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, act: str = "relu"):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, self.act if i < last else None)
        return x


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """A single conv (with bias) equal to ``bn(conv(x))`` for a frozen or eval-mode batch norm."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(bias)
    return fused


def fast_inference() -> bool:
    """True when no gradient is needed, so eval-mode layers may use folded, cached weights."""
    return not torch.is_grad_enabled()


def version(t: Tensor) -> int:
    """``t``'s in-place update counter, -1 for an inference tensor (which has none; it cannot be
    updated in place outside inference mode, and the caches here then key on its identity)."""
    return -1 if t.is_inference() else t._version


def map_tokens(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, H * W, C]``, a view when ``x`` is channels last (as the CPU inference
    path leaves it), else a transposed view."""
    if x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).flatten(1, 2)
    return x.flatten(2).permute(0, 2, 1)


def folded_conv_bn(owner: nn.Module, conv: nn.Conv2d, bn: nn.Module,
                   affine: Optional[Tuple[Tensor, Tensor]] = None) -> Tuple[Tensor, Tensor]:
    """``(weight, bias)`` of one conv equal to ``bn(conv(x))`` with ``bn`` in eval mode, channels-last;
    with ``affine=(s, t)`` (one-element tensors) the conv equals ``s * bn(conv(x)) + t`` instead.

    Cached on ``owner`` and recomputed whenever any of the tensors involved changed (in-place
    updates bump their version; loading or replacing them changes their storage), or inference mode
    was entered or left.
    """
    tensors = (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var) + tuple(affine or ())
    # and the mode: weights folded under torch.inference_mode are inference tensors, which an export traced
    # after it (dfine benchmark: eager timing, then the ONNX export) cannot use ("cannot be saved for backward")
    key = tuple((version(t), t.data_ptr()) for t in tensors) + (torch.is_inference_mode_enabled(),)
    cached = owner.__dict__.get("_folded")
    if cached is None or cached[0] != key:
        with torch.no_grad():
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            bias = bn.bias - bn.running_mean * scale
            if affine is not None:
                scale, bias = scale * affine[0], bias * affine[0] + affine[1]
            weight = (conv.weight * scale.reshape(-1, 1, 1, 1)).contiguous(memory_format=torch.channels_last)
        cached = owner.__dict__["_folded"] = (key, weight, bias)
    return cached[1], cached[2]


# activations oneDNN can apply inside its convolution ("hardtanh" is a clamp to [lo, hi])
_ONEDNN_UNARY = {nn.ReLU: "relu", nn.SiLU: "swish", nn.Identity: "none"}


_ONEDNN_FUSION = {"works": True}  # set False, with one warning, when this PyTorch build's oneDNN refuses


def _onednn_eligible(x: Tensor, weight: Tensor) -> bool:
    """True for eager CPU float32 work without autocast (not traced, exported, compiled or seen by a
    dispatch mode such as ``FlopCounterMode``, which should see the plain ops), with or without
    gradients."""
    return (_ONEDNN_FUSION["works"] and x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and x.numel() > 0 and not torch.is_autocast_enabled("cpu")
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
                     or torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() > 0))


def onednn_inference(x: Tensor, weight: Tensor) -> bool:
    """:func:`_onednn_eligible` without gradients, for a convolution's ``[B, C, H, W]`` input."""
    return x.dim() == 4 and not torch.is_grad_enabled() and _onednn_eligible(x, weight)


def _onednn_call(op, *args) -> Optional[Tensor]:
    """``op(*args)`` for a oneDNN op with fused post-ops, or ``None`` where this build's oneDNN cannot
    run it; then one warning, and plain PyTorch ops for the rest of the process."""
    try:
        return op(*args)
    except (RuntimeError, NotImplementedError) as err:
        _ONEDNN_FUSION["works"] = False
        warnings.warn(f"this PyTorch build cannot run oneDNN's fused convolutions and linear layers "
                      f"({str(err).splitlines()[0]}); CPU work uses plain PyTorch ops (slower, same outputs)")
        return None


def _onednn_conv(*args) -> Optional[Tensor]:
    """``mkldnn::_convolution_pointwise(*args)`` (plain or binary form), see :func:`_onednn_call`."""
    return _onednn_call(torch.ops.mkldnn._convolution_pointwise, *args)


def _linear_attr(act: Optional[nn.Module]) -> Optional[Tuple[str, str]]:
    """oneDNN's name and algorithm for ``act`` fused into a linear layer, None if it has none."""
    if act is None or type(act) is nn.Identity:
        return "none", ""
    if type(act) is nn.GELU:
        return "gelu", act.approximate
    name = _ONEDNN_UNARY.get(type(act))
    return None if name is None else (name, "")


def _onednn_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], attr: str = "none",
                   algorithm: str = "") -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], algorithm)


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` whose forward and backward products run in oneDNN (CPU float32 training)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1])  # [M, N]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_linear(grad, weight.t(), None)  # [..., K]
        if ctx.needs_input_grad[1]:
            grad_w = _onednn_linear(rows.t(), x.reshape(-1, x.shape[-1]).t(), None)  # [N, K]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = rows.sum(0)
        return grad_x, grad_w, grad_b


def linear_act(x: Tensor, weight: Tensor, bias: Optional[Tensor], act: Optional[nn.Module] = None) -> Tensor:
    """``act(F.linear(x, weight, bias))`` (no activation when ``act`` is None): ``x [..., K]``,
    ``weight [N, K]`` -> ``[..., N]``.

    On the CPU in float32 the products run in oneDNN: in inference one call with the activation
    fused, in training the forward product and both backward products (gradients of input and
    weight). PyTorch's own ``addmm``/``mm`` go to MKL, which on AMD CPUs ran at half of oneDNN's
    speed (about 100 against 220 GFLOP/s per core on Zen 5; oneDNN was also 5-15% faster with both
    capped at AVX2). Elsewhere (CUDA, autocast, tracing/export) plain ``F.linear`` and the activation.
    """
    if _onednn_eligible(x, weight):
        if not torch.is_grad_enabled():
            attr = _linear_attr(act)
            y = None if attr is None else _onednn_call(_onednn_linear, x, weight, bias, *attr)
            if y is not None:
                return y
        elif x.dim() >= 2:
            y = _onednn_call(_OneDNNLinear.apply, x, weight, bias)
            if y is not None:
                return y if act is None else act(y)
    y = F.linear(x, weight, bias)
    return y if act is None else act(y)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict names) computed by :func:`linear_act`, with the
    activation ``act`` after it when given (fused where oneDNN can)."""

    def forward(self, x: Tensor, act: Optional[nn.Module] = None) -> Tensor:
        return linear_act(x, self.weight, self.bias, act)


def self_attention(mha: nn.MultiheadAttention, query: Tensor, value: Tensor,
                   attn_mask: Optional[Tensor] = None) -> Tensor:
    """``mha(query, query, value)[0]`` for a batch-first ``mha`` (query and key the same tensor):
    ``query``, ``value`` ``[B, N, C]`` -> ``[B, N, C]``; ``attn_mask`` ``[N, N]`` bool, True where
    attention is not allowed (as ``nn.MultiheadAttention`` reads it).

    On the CPU in float32 (inference and training without dropout) the projections run as oneDNN
    linear layers (:func:`linear_act`), query and key in one call; the attention itself is
    PyTorch's ``scaled_dot_product_attention``, as in ``nn.MultiheadAttention``. Elsewhere, and while
    exporting (explicit ``q.k^T`` product, as published: ONNX Runtime fuses its transposes into
    FusedMatMul, where the exported SDPA form leaves 5 Transposes and 2 Sqrt/Mul per layer), the
    module itself.
    """
    weight, bias = mha.in_proj_weight, mha.in_proj_bias
    if (not mha.batch_first or weight is None or bias is None or mha.bias_k is not None
            or (mha.training and mha.dropout > 0) or (attn_mask is not None and attn_mask.dtype != torch.bool)
            or not _onednn_eligible(query, weight)):
        return mha(query, query, value=value, attn_mask=attn_mask, need_weights=torch.onnx.is_in_onnx_export())[0]
    b, n, c = query.shape
    heads = mha.num_heads
    qk = linear_act(query, weight[: 2 * c], bias[: 2 * c]).view(b, n, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
    v = linear_act(value, weight[2 * c:], bias[2 * c:]).view(b, n, heads, c // heads).transpose(1, 2)
    allowed = None if attn_mask is None else ~attn_mask  # scaled_dot_product_attention: True = may attend
    out = F.scaled_dot_product_attention(qk[0], qk[1], v, attn_mask=allowed)  # [B, heads, N, C / heads]
    return linear_act(out.transpose(1, 2).reshape(b, n, c), mha.out_proj.weight, mha.out_proj.bias)


# conv module id -> (weight, (its version, input shape), oneDNN's blocked copy of the weight); kept
# outside the modules because the blocked copies (opaque tensors) cannot be deep-copied or saved
_PACKED: Dict[int, Tuple[Tensor, Tuple[int, Tuple[int, ...]], Tensor]] = {}


def _packed_weight(conv: nn.Module, weight: Tensor, x: Tensor, padding: List[int], stride: List[int],
                   dilation: List[int], groups: int) -> Tensor:
    """``weight`` in the blocked layout oneDNN's convolution wants for inputs shaped like ``x``,
    made once per (weight, version, input shape) and cached for ``conv``: given the plain weight,
    oneDNN reorders it on every call (2-4% of S's inference time at 640 on AVX-512, 1-2% with
    AVX2). The cache entry goes with ``conv``; a new weight, an in-place update of it or another
    input shape replaces it."""
    key, state = id(conv), (version(weight), tuple(x.shape))
    cached = _PACKED.get(key)
    if cached is None or cached[0] is not weight or cached[1] != state:
        if cached is None:
            weakref.finalize(conv, _PACKED.pop, key, None)
        try:
            packed = torch.ops.mkldnn._reorder_convolution_weight(weight, padding, stride, dilation, groups,
                                                                  list(x.shape))
        except (RuntimeError, NotImplementedError):  # a build without it: the plain weight works too
            packed = weight
        cached = _PACKED[key] = (weight, state, packed)
    return cached[2]


def conv_act(x: Tensor, weight: Tensor, bias: Optional[Tensor], conv: nn.Conv2d, act: nn.Module,
             clamp: Optional[Tuple[float, float]] = None) -> Tensor:
    """``act(conv2d(x, weight, bias))`` with ``conv``'s stride, padding, dilation and groups, or with
    ``clamp=(lo, hi)`` (``act`` ignored; either bound may be infinite) the conv output clamped.

    ``x [B, C_in, H, W]`` -> ``[B, C_out, H', W']``. In eager CPU float32 inference this is one
    oneDNN call with the activation fused (one pass over the output instead of two, and oneDNN
    also for the small and 1x1 convs PyTorch would send to its slower fallback); in training, on
    CUDA and while tracing/exporting, plain ``F.conv2d`` and the activation.
    """
    attr = "hardtanh" if clamp is not None else _ONEDNN_UNARY.get(type(act))
    if attr is not None and not isinstance(conv.padding, str) and onednn_inference(x, weight):
        geometry = list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups
        y = _onednn_conv(x, _packed_weight(conv, weight, x, *geometry), bias, *geometry,
                         attr, list(clamp) if clamp is not None else [], "")
        if y is not None:
            return y
    y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return activate(y, act, clamp)


def activate(y: Tensor, act: nn.Module, clamp: Optional[Tuple[float, float]] = None) -> Tensor:
    """``act(y)``, or with ``clamp=(lo, hi)`` (``act`` ignored; either bound may be infinite) ``y``
    clamped: the activation step of :func:`conv_act` in plain ops."""
    if clamp is None:
        return act(y)
    lo, hi = clamp
    if lo == 0.0 and hi == math.inf and torch.onnx.is_in_onnx_export():
        # exported as Relu, which ONNX Runtime's convolution kernels apply as they store; a fused
        # Clip(0, inf) runs as one more pass over each output block (N at 640 under callgrind, AVX2
        # kernels: 39 M more instructions, 3.6%; benchmarks/ort_callgrind.py)
        return F.relu(y)
    return y.clamp_min(lo) if hi == math.inf else y.clamp_max(hi) if lo == -math.inf else y.clamp(lo, hi)


def _channels_last_stats(x: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance of a channels-last ``[N, C, H, W]`` map, float64 ``[C]``.

    PyTorch's channels-last batch-norm statistics add up all ``N * H * W`` rows one after the other
    (relative error ~1e-5 on a 320 x 320 map, where the NCHW kernel is ~1e-7). Here the same kernel
    sees each image row as ``W * C`` channels (a view, one pass over memory), so it only adds
    ``N * H`` rows; the ``W`` partial results per channel are combined exactly in float64.
    """
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(n * h, w * c, 1, 1)
    part_mean, part_var = torch.batch_norm_update_stats(rows, None, None, 0.0)
    part_mean, part_var = part_mean.double().view(w, c), part_var.double().view(w, c)
    mean = part_mean.mean(0)
    return mean, part_var.mean(0) + (part_mean - mean).square().mean(0)


class _ChannelsLastBatchNorm(torch.autograd.Function):
    """Training-mode batch norm of a channels-last map with statistics from
    :func:`_channels_last_stats`; forward and backward use PyTorch's fused kernels."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor, eps: float) -> Tensor:
        invstd = (var + eps).rsqrt()
        ctx.eps = eps
        ctx.save_for_backward(x, weight, mean, invstd)
        return torch.batch_norm(x, weight, bias, mean, var, False, 0.0, eps, False)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight, mean, invstd = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(grad.contiguous(memory_format=torch.channels_last),
                                                               x, weight, None, None, mean, invstd, True,
                                                               ctx.eps, mask)
        return gx, gw, gb, None, None, None


def uses_channels_last_bn(bn: nn.Module, x: Tensor) -> bool:
    """Whether :func:`batch_norm_train` takes its channels-last path for ``bn`` on ``x``."""
    return (type(bn) is nn.BatchNorm2d and bn.training and bn.track_running_stats and bn.affine
            and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and x.shape[1] > 1
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            and x.numel() > x.shape[1])


def batch_norm_train(bn: nn.Module, x: Tensor, weight: Optional[Tensor] = None,
                     bias: Optional[Tensor] = None) -> Tensor:
    """``bn(x)``; in training on a channels-last CPU float32 map, with accurate statistics
    (:func:`_channels_last_stats`) and the running statistics updated as ``nn.BatchNorm2d`` does.

    ``weight``/``bias`` ``[C]`` replace ``bn``'s affine terms (a following per-channel affine map
    folded in; only on the channels-last path, see :func:`uses_channels_last_bn`).
    """
    if not uses_channels_last_bn(bn, x):
        if weight is not None or bias is not None:
            raise ValueError("batch_norm_train takes replacement affine terms only on its channels-last path")
        return bn(x)
    with torch.no_grad():
        mean, var = _channels_last_stats(x.detach())
        bn.num_batches_tracked.add_(1)
        factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        count = x.numel() // x.shape[1]
        bn.running_mean.mul_(1 - factor).add_(mean.to(bn.running_mean.dtype), alpha=factor)
        bn.running_var.mul_(1 - factor).add_((var * (count / max(count - 1, 1))).to(bn.running_var.dtype),
                                             alpha=factor)
    weight = bn.weight if weight is None else weight
    bias = bn.bias if bias is None else bias
    return _ChannelsLastBatchNorm.apply(x, weight, bias, mean.float(), var.float(), bn.eps)


def conv_bn(owner: nn.Module, conv: nn.Conv2d, bn: nn.Module, x: Tensor, act: Optional[nn.Module] = None) -> Tensor:
    """``act(bn(conv(x)))`` (no activation when ``act`` is None); without gradients and with ``bn``
    in eval mode, one folded conv with the activation fused (:func:`conv_act`)."""
    act = act if act is not None else nn.Identity()
    if bn.training or not fast_inference():
        return act(batch_norm_train(bn, conv(x)))
    weight, bias = folded_conv_bn(owner, conv, bn)
    return conv_act(x, weight, bias, conv, act)


class ConvNorm(nn.Module):
    """Conv (no bias) + BatchNorm + activation; :meth:`convert_to_deploy` folds the norm.

    State-dict names: ``conv``, ``norm`` (train form) or ``conv_bn_fused`` (deploy form).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 act: Optional[str] = None):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=(kernel_size - 1) // 2,
                              groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(out_ch)
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self, "conv_bn_fused"):
            fused = self.conv_bn_fused
            return conv_act(x, fused.weight, fused.bias, fused, self.act)
        return conv_bn(self, self.conv, self.norm, x, self.act)

    def forward_upsampled(self, low: Tensor, high: Tensor) -> Tensor:
        """``self(cat([upsample(low), high], 1))``, ``upsample`` being 2x nearest: ``low [B, C1, h, w]``,
        ``high [B, C2, 2h, 2w]``.

        For a 1x1 conv in eager CPU inference the part of the conv that reads the upsampled input
        runs on ``low`` before upsampling (a 1x1 conv commutes with nearest upsampling), a quarter
        of its multiply-adds, and the concatenation is never built: ``high``'s part adds the
        upsampled result in oneDNN. Elsewhere (training, export, CUDA) the plain ops.
        """
        deployed = hasattr(self, "conv_bn_fused")
        conv = self.conv_bn_fused if deployed else self.conv
        pointwise = conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1
        if deployed and pointwise and torch.onnx.is_in_onnx_export():
            return self._forward_upsampled_export(low, high)
        folded = deployed or (not self.norm.training and fast_inference())
        if not (pointwise and folded and onednn_inference(high, conv.weight)) or type(self.act) not in _ONEDNN_UNARY:
            return self._forward_upsampled_plain(low, high)
        weight, bias = (conv.weight, conv.bias) if deployed else folded_conv_bn(self, conv, self.norm)
        cached = self.__dict__.get("_split")
        if cached is None or cached[0] is not weight or cached[1] != version(weight):
            parts = weight.split([low.shape[1], high.shape[1]], dim=1)
            cached = self.__dict__["_split"] = (weight, version(weight),
                                                [p.contiguous(memory_format=torch.channels_last) for p in parts])
        w_low, w_high = cached[2]
        unit = [0, 0], [1, 1], [1, 1]
        y_low = _onednn_conv(low, w_low, bias, *unit, 1, "none", [], "")
        relu = isinstance(self.act, nn.ReLU)  # the only activation oneDNN's binary form takes
        # high's part accumulates into the upsampled map in place (oneDNN's sum post-op): the
        # out-of-place binary add read that map as a second input and took ~1.7x the conv alone
        # (1x1, 256 -> 512 channels at 80x80, S's FPN; 28 against 16 ms capped at AVX2, 20 against 10
        # on AVX-512, 1 thread); in place it costs what the conv alone costs
        y = None if y_low is None else _onednn_call(
            torch.ops.mkldnn._convolution_pointwise_.binary, F.interpolate(y_low, scale_factor=2.0, mode="nearest"),
            high, w_high, None, *unit, 1, "add", None, "relu" if relu else None, [], "")
        if y is None:
            return self._forward_upsampled_plain(low, high)
        return F.silu(y, inplace=True) if isinstance(self.act, nn.SiLU) else y

    def _forward_upsampled_export(self, low: Tensor, high: Tensor) -> Tensor:
        """The export form of :meth:`forward_upsampled` for a deployed 1x1 conv: ``low``'s part of the
        conv at low resolution, upsampled, plus ``high``'s part (Conv, Resize, Conv, Add, activation;
        no Concat and no upsampled input map). The exported graph does 5/8 of the plain form's
        multiply-adds in this conv when both inputs have the same channels."""
        fused = self.conv_bn_fused
        w_low, w_high = fused.weight.split([low.shape[1], high.shape[1]], dim=1)
        y_low = F.interpolate(F.conv2d(low, w_low, fused.bias), scale_factor=2.0, mode="nearest")
        return self.act(F.conv2d(high, w_high) + y_low)

    def _forward_upsampled_plain(self, low: Tensor, high: Tensor) -> Tensor:
        return self(torch.cat([F.interpolate(low, scale_factor=2.0, mode="nearest"), high], dim=1))

    def convert_to_deploy(self) -> None:
        if hasattr(self, "conv_bn_fused"):
            return
        self.conv_bn_fused = fuse_conv_bn(self.conv, self.norm)
        del self.conv, self.norm


class ConvNormPlain(nn.Module):
    """Conv (no bias) + BatchNorm, no activation; names ``conv``, ``norm`` (input projections and
    the two branches of :class:`RepVGGBlock`)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=False)
        self.norm = nn.BatchNorm2d(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return conv_bn(self, self.conv, self.norm, x)


class RepVGGBlock(nn.Module):
    """``act(bn(conv3x3(x)) + bn(conv1x1(x)))``; re-parameterised into one 3x3 conv for deploy.

    State-dict names: ``conv1`` (3x3 branch), ``conv2`` (1x1 branch) or ``conv`` (deploy form).
    """

    def __init__(self, in_ch: int, out_ch: int, act: str = "silu"):
        super().__init__()
        self.conv1 = ConvNormPlain(in_ch, out_ch, 3)
        self.conv2 = ConvNormPlain(in_ch, out_ch, 1)
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(self, "conv"):
            return conv_act(x, self.conv.weight, self.conv.bias, self.conv, self.act)
        if self.training or not fast_inference():
            return self.act(self.conv1(x) + self.conv2(x))
        return conv_act(x, *self._folded_weights(), self.conv1.conv, self.act)

    def _folded_weights(self) -> Tuple[Tensor, Tensor]:
        """The single 3x3 conv equal to both branches (cached like :func:`folded_conv_bn`)."""
        w3, b3 = folded_conv_bn(self.conv1, self.conv1.conv, self.conv1.norm)
        w1, b1 = folded_conv_bn(self.conv2, self.conv2.conv, self.conv2.norm)
        cached = self.__dict__.get("_merged")
        if cached is None or cached[0] is not w3 or cached[1] is not w1:
            weight = (w3 + F.pad(w1, [1, 1, 1, 1])).contiguous(memory_format=torch.channels_last)
            cached = self.__dict__["_merged"] = (w3, w1, weight, b3 + b1)
        return cached[2], cached[3]

    def convert_to_deploy(self) -> None:
        if hasattr(self, "conv"):
            return
        k3 = fuse_conv_bn(self.conv1.conv, self.conv1.norm)
        k1 = fuse_conv_bn(self.conv2.conv, self.conv2.norm)
        with torch.no_grad():
            k3.weight.add_(F.pad(k1.weight, [1, 1, 1, 1]))
            k3.bias.add_(k1.bias)
        self.conv = k3
        del self.conv1, self.conv2


def sincos_position_embedding(h: int, w: int, dim: int, temperature: float) -> Tensor:
    """2-D sine-cosine position embedding, ``[1, h * w, dim]`` float32.

    Matches the published layout exactly: the grid is built width-major (token ``k`` gets
    column ``k // h`` and row ``k % h``), so on non-square maps it is the published embedding.
    """
    if dim % 4:
        raise ValueError(f"hidden_dim must be divisible by 4 for the 2-D position embedding, got {dim}")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    gw, gh = torch.meshgrid(torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32),
                            indexing="ij")
    out_w = gw.flatten()[:, None] @ omega[None]
    out_h = gh.flatten()[:, None] @ omega[None]
    return torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)[None]


def split_sizes(shapes: List[List[int]]) -> List[int]:
    """Token counts ``h * w`` per level."""
    return [h * w for h, w in shapes]
