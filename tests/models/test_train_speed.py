"""The CPU training fast paths give what the plain modules give: channels-last batch norm with
accurate statistics, and the stem's max-pool."""

import copy

import pytest
import torch
import torch.nn as nn

from dfine.models.hgnetv2 import ConvBNAct, StemBlock
from dfine.models.layers import _channels_last_stats, batch_norm_train

CL = torch.channels_last


def test_channels_last_statistics_are_accurate():
    x = (torch.randn(4, 16, 160, 96) * 0.3 + 0.6).contiguous(memory_format=CL)
    var, mean = torch.var_mean(x.double(), dim=(0, 2, 3), unbiased=False)
    got_mean, got_var = _channels_last_stats(x)
    assert ((got_mean - mean).abs() / var.sqrt()).max() < 1e-6
    assert ((got_var - var).abs() / var).max() < 1e-6


@pytest.mark.parametrize("momentum", [0.1, None])
def test_channels_last_batch_norm_matches_nn_batch_norm(momentum):
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(8, momentum=momentum)
    nn.init.uniform_(ref.weight, 0.5, 1.5)
    nn.init.uniform_(ref.bias, -0.5, 0.5)
    ours = nn.BatchNorm2d(8, momentum=momentum)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 8, 24, 20) * 2 + 1
    x_ref, x_cl = x.clone().requires_grad_(True), x.contiguous(memory_format=CL).requires_grad_(True)
    grad = torch.randn_like(x)
    for _ in range(2):  # the running statistics follow over two steps
        y_ref, y = ref(x_ref), batch_norm_train(ours, x_cl)
        y_ref.backward(grad)
        y.backward(grad)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    assert y.is_contiguous(memory_format=CL)
    torch.testing.assert_close(x_cl.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=1e-5, atol=1e-6)


def test_batch_norm_train_leaves_other_cases_to_the_module():
    bn = nn.BatchNorm2d(4).eval()
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=CL)
    torch.testing.assert_close(batch_norm_train(bn, x), bn(x))
    bn.train()
    x = torch.randn(2, 4, 6, 6)  # NCHW: the module itself
    torch.testing.assert_close(batch_norm_train(bn, x), nn.BatchNorm2d(4).train()(x))


def test_stem_pool_matches_max_pool_values_and_gradients():
    stem = StemBlock(3, 8, 16).train()
    x = torch.randn(2, 8, 17, 13)
    x[0, :, :4, :4] = 1.0  # ties: the gradient goes to the first maximum of the window
    for fmt in (torch.contiguous_format, CL):
        a = x.clone().requires_grad_(True)
        b = x.clone(memory_format=fmt).requires_grad_(True)
        grad = torch.randn(2, 8, 16, 12)
        nn.MaxPool2d(2, 1)(a).backward(grad)
        y = stem._pool(b)
        y.backward(grad)
        assert torch.equal(y, nn.MaxPool2d(2, 1)(x))
        assert torch.equal(b.grad, a.grad)


@pytest.mark.parametrize("scale", [0.8, -0.6])
def test_fused_conv_bn_relu_affine_matches_the_modules(scale):
    torch.manual_seed(0)
    block = ConvBNAct(6, 8, 3, use_lab=True).train()
    with torch.no_grad():
        block.lab.scale.fill_(scale)
        block.lab.bias.fill_(0.3)
    ref = copy.deepcopy(block)
    x = torch.randn(2, 6, 12, 10)
    grad = torch.randn(2, 8, 12, 10)
    y = block(x.contiguous(memory_format=CL))  # the fused channels-last path
    y_ref = ref.lab(ref.act(ref.bn(ref.conv(x))))
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    y.backward(grad)
    y_ref.backward(grad)
    for (name, p), p_ref in zip(block.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-4, msg=name)
    torch.testing.assert_close(block.bn.running_var, ref.bn.running_var)


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_train_step_benchmark_times_each_phase(clock):
    import sys
    from pathlib import Path

    from dfine.loss import build_criterion
    from tests.models.tiny import tiny_model

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        from train_step import Stepper
    finally:
        sys.path.pop(0)
    stepper = Stepper(tiny_model(), build_criterion("dfine_n", num_classes=5, reg_max=8), lambda record: None, clock)
    batch = {"images": torch.rand(2, 3, 128, 128),
             "targets": [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.2]])}] * 2}
    result = stepper.step(batch)
    assert set(result) == {"step", "forward", "loss", "matcher", "backward", "optimizer", "losses"}
    assert result["step"] >= result["forward"] >= 0 and result["losses"]
