"""The criterion on the real model: golden losses and gradients, denoising, empty targets, bf16."""

import pytest
import torch

import dfine
from dfine.loss import build_criterion
from tests.conftest import load_golden
from tests.loss.fakes import expected_keys
from tests.models.tiny import tiny_model


def _golden_train_model(size="n", num_denoising=None):
    g = load_golden(size)
    overrides = {} if num_denoising is None else {"num_denoising": num_denoising}
    model = dfine.build_model(f"dfine_{size}", **overrides)
    ckpt = g["checkpoint"]
    state = ckpt["ema"]["module"] if "ema" in ckpt else ckpt["model"]  # the weights the fixture used
    if num_denoising == 0:  # the denoising label embedding has no place in a model without denoising
        state = {k: v for k, v in state.items() if not k.startswith("decoder.denoising_class_embed.")}
    dfine.load_checkpoint(model, {"model": state})
    return model.train(), g


def _grad_norm(model, prefix):
    grads = [p.grad.flatten() for n, p in model.named_parameters() if n.startswith(prefix) and p.grad is not None]
    return torch.cat(grads).norm().item()


@pytest.mark.parametrize("size", ["n", "s"])
def test_golden_losses_and_gradients(size):
    model, g = _golden_train_model(size, num_denoising=0)
    outputs = model(g["images_uint8"].float() / 255, g["targets"])
    losses = build_criterion(f"dfine_{size}")(outputs, g["targets"])
    assert set(losses) == set(g["train_losses"])
    for key, gold in g["train_losses"].items():
        assert losses[key].item() == pytest.approx(gold, rel=1e-4, abs=1e-6), key
    total = sum(losses.values())
    assert total.item() == pytest.approx(g["train_total_loss"], rel=1e-4)
    total.backward()
    for prefix, rel in (("backbone", 1e-2), ("encoder", 1e-3), ("decoder", 1e-3)):
        assert _grad_norm(model, prefix) == pytest.approx(g["train_grad_norms"][prefix], rel=rel), prefix


def test_denoising_losses_present_and_finite():
    model, g = _golden_train_model()  # published default: 100 denoising queries
    outputs = model(g["images_uint8"].float() / 255, g["targets"])
    losses = build_criterion("dfine_n")(outputs, g["targets"])
    assert set(losses) == expected_keys(3, dn=True)
    assert all(torch.isfinite(v) for v in losses.values())
    # the matched-query terms do not depend on the denoising queries (the attention mask keeps
    # them apart): the same as without denoising
    for key in ("loss_vfl", "loss_bbox", "loss_giou", "loss_vfl_enc_0"):
        assert losses[key].item() == pytest.approx(g["train_losses"][key], rel=1e-3), key
    assert losses["loss_ddf_dn_2"].item() == 0.0 and losses["loss_ddf_dn_0"].item() > 0


def _tiny_batch(sizes):
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(len(sizes), 3, 128, 128, generator=gen)
    targets = [{"labels": torch.randint(0, 5, (k,), generator=gen),
                "boxes": torch.rand(k, 4, generator=gen) * 0.3 + 0.2} for k in sizes]
    return images, targets


@pytest.mark.parametrize("sizes", [[2, 0], [0, 0]])
@pytest.mark.parametrize("autocast", [False, True])
def test_tiny_model_trains_with_empty_images_and_under_bf16(sizes, autocast):
    model = tiny_model().train()
    criterion = build_criterion("dfine_n", num_classes=5, reg_max=8)
    images, targets = _tiny_batch(sizes)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        losses = criterion(model(images, targets), targets)
    assert set(losses) == expected_keys(2, dn=True)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
