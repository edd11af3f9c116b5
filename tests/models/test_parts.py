"""Each part on the tiny configuration: shapes, train outputs, deploy and the fast eval path."""

import copy

import pytest
import torch

from tests.models.tiny import tiny_model


def test_backbone_encoder_shapes():
    model = tiny_model().eval()
    x = torch.rand(2, 3, 128, 96)
    with torch.no_grad():
        feats = model.backbone(x)
        assert [f.shape[1:] for f in feats] == [(512, 8, 6), (1024, 4, 3)]
        fused = model.encoder(feats)
    assert [f.shape[1:] for f in fused] == [(32, 8, 6), (32, 4, 3)]


def test_train_outputs_have_what_the_criterion_reads():
    model = tiny_model().train()
    targets = [{"labels": torch.tensor([0, 3]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.2, 0.3, 0.1, 0.1]])},
               {"labels": torch.tensor([4]), "boxes": torch.tensor([[0.6, 0.4, 0.3, 0.3]])}]
    out = model(torch.rand(2, 3, 128, 128), targets)
    q, c, bins = 20, 5, 4 * 9
    assert out["pred_logits"].shape == (2, q, c) and out["pred_corners"].shape == (2, q, bins)
    assert len(out["aux_outputs"]) == 1 and len(out["dn_outputs"]) == 2
    assert out["enc_aux_outputs"][0]["pred_logits"].shape == (2, q, c)
    num_dn = out["dn_meta"]["dn_num_split"][0]
    assert out["dn_outputs"][0]["pred_boxes"].shape == (2, num_dn, 4)
    assert out["pre_outputs"]["pred_boxes"].shape == (2, q, 4)
    loss = sum(o["pred_boxes"].sum() + o["pred_logits"].sum() for o in out["aux_outputs"] + out["dn_outputs"])
    loss.backward()
    assert model.decoder.dec_bbox_head[0].layers[0].weight.grad is not None


def test_training_without_targets_is_a_clear_error():
    with pytest.raises(ValueError, match="needs targets"):
        tiny_model().train()(torch.rand(1, 3, 128, 128))


@pytest.mark.parametrize("grad", [False, True])
def test_fast_eval_path_and_deploy_give_the_same_outputs(grad):
    model = _randomised_tiny_model()
    model.eval()
    x = torch.rand(1, 3, 128, 160)
    with torch.set_grad_enabled(grad):
        ref = model(x)
    with torch.no_grad():
        fast = model(x)
        deployed = copy.deepcopy(model).deploy()(x)
    for out in (fast, deployed):
        torch.testing.assert_close(out["pred_logits"], ref["pred_logits"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out["pred_boxes"], ref["pred_boxes"], atol=1e-4, rtol=1e-4)


def _randomised_tiny_model():
    """Tiny model with non-trivial batch-norm statistics and learnable affine blocks (negative
    scales included), so that every folded form is exercised."""
    from dfine.models.hgnetv2 import LearnableAffineBlock
    model = tiny_model()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
            elif isinstance(m, LearnableAffineBlock):
                m.scale.uniform_(-1.5, 1.5, generator=gen)
                m.bias.uniform_(-0.5, 0.5, generator=gen)
    assert any(float(m.scale.detach()) < 0 for m in model.modules() if isinstance(m, LearnableAffineBlock))
    return model


def _plain_and_profiled(deploy: bool):
    """The randomised tiny model's outputs with oneDNN off (plain PyTorch ops) and on, and the
    profile of the second pass."""
    from torch.profiler import ProfilerActivity, profile
    model = _randomised_tiny_model().eval()
    if deploy:
        model.deploy()
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        with torch.backends.mkldnn.flags(enabled=False):
            plain = model(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            fast = model(x)
    return plain, fast, prof


@pytest.mark.parametrize("deploy", [False, True])
def test_cpu_inference_fuses_convolutions_with_their_activations(deploy):
    """Eager CPU inference runs every conv as one oneDNN call with its activation (or the folded
    ReLU + affine clamp) inside, and gives the outputs of the plain PyTorch ops."""
    plain, fused, prof = _plain_and_profiled(deploy)
    names = [e.name for e in prof.events()]
    assert "mkldnn::_convolution_pointwise" in names
    # activations on feature maps [B, C, H, W] all ran inside the convs
    separate = [e.name for e in prof.events() if e.name in ("aten::relu", "aten::silu", "aten::clamp_min",
                                                            "aten::clamp_max", "aten::clamp")
                and e.input_shapes and len(e.input_shapes[0]) == 4 and e.input_shapes[0][-1] > 1]
    assert separate == []
    assert names.count("aten::convolution") <= 1  # only the squeeze-excitation's 1x1 conv on pooled maps
    for key in ("pred_logits", "pred_boxes"):
        torch.testing.assert_close(fused[key], plain[key], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("deploy", [False, True])
def test_cpu_inference_runs_linear_layers_and_attention_projections_in_onednn(deploy):
    """Eager CPU inference runs every linear layer (decoder, heads, the attention projections of
    the encoder and the decoder) as a oneDNN call, not PyTorch's addmm, with the same outputs."""
    plain, fast, prof = _plain_and_profiled(deploy)
    names = [e.name for e in prof.events()]
    assert "aten::addmm" not in names
    # only the edge-distribution integral (probabilities times the bin positions, no bias) stays
    assert {tuple(e.input_shapes[1]) for e in prof.events() if e.name == "aten::linear"} <= {(9,)}
    assert names.count("mkldnn::_linear_pointwise") >= 20
    for key in ("pred_logits", "pred_boxes"):
        torch.testing.assert_close(fast[key], plain[key], atol=1e-4, rtol=1e-4)


def test_training_runs_linear_products_in_onednn_with_the_plain_gradients(monkeypatch):
    """A training step (denoising attention mask included) runs the linear layers' forward and
    backward products and the attention projections in oneDNN, not MKL's addmm/mm, and gives the
    loss and gradients of the plain ops (switched off: ``_onednn_eligible`` False)."""
    from torch.profiler import ProfilerActivity, profile
    from dfine.models import layers
    model = tiny_model().train()
    x = torch.rand(2, 3, 128, 160)
    targets = [{"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]])},
               {"labels": torch.tensor([0]), "boxes": torch.tensor([[0.4, 0.4, 0.3, 0.3]])}]

    def step():
        torch.manual_seed(1)  # the same denoising queries
        model.zero_grad()
        out = model(x, targets)
        loss = sum((v ** 2).mean() for v in out.values() if torch.is_tensor(v) and v.is_floating_point())
        loss.backward()
        return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        loss, grads = step()
    names = [e.name for e in prof.events()]
    assert names.count("mkldnn::_linear_pointwise") >= 60  # forward, input and weight gradients
    assert "aten::addmm" not in names
    assert {tuple(e.input_shapes[1]) for e in prof.events() if e.name == "aten::linear"} <= {(9,)}
    monkeypatch.setattr(layers, "_onednn_eligible", lambda *args: False)
    plain_loss, plain = step()
    torch.testing.assert_close(loss, plain_loss, atol=1e-5, rtol=1e-5)
    assert grads.keys() == plain.keys()
    flat, plain_flat = (torch.cat([g.flatten() for g in d.values()]) for d in (grads, plain))
    assert (flat - plain_flat).norm() <= 1e-5 * plain_flat.norm()
    for name, grad in plain.items():
        if name.startswith("decoder"):
            torch.testing.assert_close(grads[name], grad, atol=1e-5 * float(grad.abs().max()) + 1e-7, rtol=1e-4)


@pytest.mark.parametrize("act", ["relu", "gelu", "silu", None])
def test_mlp_and_self_attention_equal_the_plain_modules(act):
    """``MLP`` with its activation fused and ``self_attention`` (query and key projected in one
    oneDNN call) equal ``F.linear`` + activation and ``nn.MultiheadAttention``."""
    from dfine.models.layers import MLP, self_attention
    torch.manual_seed(0)
    mlp = MLP(24, 40, 8, 3, act=act or "relu") if act else MLP(24, 40, 8, 1)
    mha = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    torch.nn.init.normal_(mha.in_proj_bias)
    x, query, value = torch.randn(2, 7, 24), torch.randn(2, 11, 32), torch.randn(2, 11, 32)
    with torch.no_grad():
        plain_mlp, plain_attn = x, mha(query, query, value, need_weights=False)[0]
        for i, layer in enumerate(mlp.layers):
            plain_mlp = torch.nn.functional.linear(plain_mlp, layer.weight, layer.bias)
            plain_mlp = mlp.act(plain_mlp) if i < len(mlp.layers) - 1 else plain_mlp
        torch.testing.assert_close(mlp(x), plain_mlp, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(self_attention(mha, query, value), plain_attn, atol=1e-5, rtol=1e-5)


def test_a_pytorch_build_without_the_onednn_linear_falls_back_with_one_warning(monkeypatch):
    """Where oneDNN refuses the linear call: one warning, then ``F.linear``, same outputs."""
    from dfine.models import layers
    model = _randomised_tiny_model().eval()
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        plain = model(x)

    def refuse(*args):
        raise RuntimeError("mkldnn_linear_pointwise: unsupported\nmore detail")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", refuse)
    monkeypatch.setitem(layers._ONEDNN_FUSION, "works", True)
    with torch.no_grad(), pytest.warns(UserWarning, match="cannot run oneDNN.*unsupported\\); CPU") as caught:
        first, second = model(x), model(x)
    assert len([w for w in caught if "cannot run oneDNN" in str(w.message)]) == 1
    for out in (first, second):
        torch.testing.assert_close(out["pred_boxes"], plain["pred_boxes"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("act", ["silu", "relu", None])
@pytest.mark.parametrize("deploy", [False, True])
def test_conv_over_an_upsampled_concatenation_runs_the_upsampled_part_at_low_resolution(act, deploy):
    """``forward_upsampled`` equals the conv over ``cat([upsample(low), high])`` and, in CPU
    inference, builds neither the upsampled input nor the concatenation."""
    from torch.profiler import ProfilerActivity, profile
    from dfine.models.layers import ConvNorm
    layer = ConvNorm(24, 16, 1, act=act)
    with torch.no_grad():
        layer.norm.running_mean.uniform_(-1, 1)
        layer.norm.running_var.uniform_(0.5, 2)
    layer.eval()
    if deploy:
        layer.convert_to_deploy()
    low = torch.randn(2, 8, 5, 7).contiguous(memory_format=torch.channels_last)
    high = torch.randn(2, 16, 10, 14).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        plain = layer(torch.cat([torch.nn.functional.interpolate(low, scale_factor=2.0), high], 1))
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            fast = layer.forward_upsampled(low, high)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    names = [e.name for e in prof.events()]
    assert "aten::cat" not in names
    upsampled = [e.input_shapes[0] for e in prof.events() if e.name.startswith("aten::upsample_nearest2d")]
    assert upsampled == [[2, 16, 5, 7]]  # the conv's output at low resolution, not the 8-channel input


@pytest.mark.parametrize("use_lab,scale", [(True, 0.7), (True, -0.7), (False, 1.0)])
def test_conv_over_a_concatenation_equals_one_conv_per_part_summed(use_lab, scale):
    """``ConvBNAct.forward_parts`` (the export form of the stem's third conv) equals the conv over
    the concatenation, with the learnable affine block's clamp on either side."""
    from dfine.models.hgnetv2 import ConvBNAct
    torch.manual_seed(0)
    layer = ConvBNAct(12, 8, 3, stride=2, use_lab=use_lab)
    with torch.no_grad():
        layer.bn.running_mean.uniform_(-1, 1)
        layer.bn.running_var.uniform_(0.5, 2)
        layer.bn.bias.uniform_(-1, 1)
        if use_lab:
            layer.lab.scale.fill_(scale)
            layer.lab.bias.fill_(0.3)
    layer.eval()
    parts = [torch.randn(2, 5, 9, 11), torch.randn(2, 7, 9, 11)]
    with torch.no_grad():
        plain = layer(torch.cat(parts, 1))
        split = layer.forward_parts(parts)
    torch.testing.assert_close(split, plain, atol=1e-5, rtol=1e-5)
    assert (plain == 0.3).any() if use_lab else (plain == 0).any()  # the clamp / ReLU bound is reached


@pytest.mark.parametrize("act", ["silu", "relu", None])
def test_export_form_of_the_upsampled_concatenation_equals_the_plain_one(act):
    """``ConvNorm._forward_upsampled_export``: the low part convolved, upsampled, added to the high
    part's conv, then the activation, equals the conv over ``cat([upsample(low), high])``."""
    from dfine.models.layers import ConvNorm
    torch.manual_seed(0)
    layer = ConvNorm(24, 16, 1, act=act)
    with torch.no_grad():
        layer.norm.running_mean.uniform_(-1, 1)
        layer.norm.running_var.uniform_(0.5, 2)
        layer.norm.bias.uniform_(-1, 1)
    layer.eval().convert_to_deploy()
    low, high = torch.randn(2, 8, 5, 7), torch.randn(2, 16, 10, 14)
    with torch.no_grad():
        plain = layer(torch.cat([torch.nn.functional.interpolate(low, scale_factor=2.0), high], 1))
        split = layer._forward_upsampled_export(low, high)
    torch.testing.assert_close(split, plain, atol=1e-5, rtol=1e-5)


def test_a_pytorch_build_without_the_fused_convolution_falls_back_with_one_warning(monkeypatch):
    """Where oneDNN refuses the fused call (another platform's build), inference still works: one
    warning, then the plain ops, same outputs."""
    from dfine.models import layers
    model = _randomised_tiny_model().eval()
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        plain = model(x)

    class Refusing:
        calls = 0

        def __call__(self, *args):
            Refusing.calls += 1
            raise RuntimeError("mkldnn_convolution_pointwise: unsupported post-op\nmore detail")

    monkeypatch.setattr(torch.ops.mkldnn, "_convolution_pointwise", Refusing())
    monkeypatch.setitem(layers._ONEDNN_FUSION, "works", True)
    with torch.no_grad(), pytest.warns(UserWarning, match="cannot run oneDNN.*unsupported post-op\\); CPU") as caught:
        first = model(x)
        second = model(x)
    assert Refusing.calls == 1 and len([w for w in caught if "cannot run oneDNN" in str(w.message)]) == 1
    for out in (first, second):
        torch.testing.assert_close(out["pred_boxes"], plain["pred_boxes"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("deploy", [False, True])
def test_inference_mode_runs_every_form(deploy):
    """Under torch.inference_mode (as Detector and the benchmarks run) the cached folded weights are
    inference tensors without a version counter: the caches must not ask for one."""
    model = _randomised_tiny_model().eval()
    if deploy:
        model.deploy()
    fresh = copy.deepcopy(model)  # no cache filled yet: the first forward runs in inference mode
    x = torch.rand(1, 3, 128, 160)
    with torch.inference_mode():
        first, again = fresh(x), fresh(x)  # the second call reads the caches filled by the first
    with torch.no_grad():
        plain = model(x)
    for out in (first, again):
        torch.testing.assert_close(out["pred_boxes"], plain["pred_boxes"])


def test_folded_weights_follow_weight_changes():
    """The cached folded convs are recomputed when a weight is updated in place or loaded."""
    model = tiny_model().eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        before = model(x)["pred_logits"]
        state = copy.deepcopy(model.state_dict())
        model.backbone.stem.stem1.conv.weight.mul_(1.5)
        changed = model(x)["pred_logits"]
        model.load_state_dict(state)
        after = model(x)["pred_logits"]
    assert not torch.allclose(before, changed)
    torch.testing.assert_close(before, after)


def test_blocked_conv_weights_are_cached_per_input_shape_and_follow_weight_changes():
    """Eager CPU inference hands oneDNN each conv weight in its blocked layout, made once per
    weight and input shape: outputs equal the plain ops', an in-place weight update or another
    input size takes effect, and the model can still be deep-copied (as EMA does) and freed."""
    import gc
    from dfine.models import layers
    model = _randomised_tiny_model().eval().deploy()
    small, large = torch.rand(1, 3, 128, 160), torch.rand(1, 3, 160, 192)
    with torch.no_grad():
        with torch.backends.mkldnn.flags(enabled=False):
            plain_small, plain_large = model(small), model(large)
        first, again, other = model(small), model(small), model(large)
        entries = {k: v for k, v in layers._PACKED.items() if v[-1].is_mkldnn}
        assert len(entries) >= 10
        for fast, plain in ((first, plain_small), (again, plain_small), (other, plain_large)):
            torch.testing.assert_close(fast["pred_boxes"], plain["pred_boxes"], atol=1e-4, rtol=1e-4)
        last_fused = [m for m in model.encoder.modules() if id(getattr(m, "conv_bn_fused", None)) in entries][-1]
        last_fused.conv_bn_fused.weight.mul_(1.5)  # updated in place: same tensor, new version
        changed = model(large)  # the shape of the last call: only the update invalidates the cache
        with torch.backends.mkldnn.flags(enabled=False):
            plain_changed = model(large)
    torch.testing.assert_close(changed["pred_logits"], plain_changed["pred_logits"], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(changed["pred_logits"], other["pred_logits"])
    copy.deepcopy(model)
    del model, last_fused
    gc.collect()
    assert not set(entries) & set(layers._PACKED)  # freed with their convs


def test_deployed_model_refuses_training():
    model = tiny_model().deploy()
    with pytest.raises(RuntimeError, match="deployed"):
        model.train()


@pytest.mark.parametrize("batch", [1, 2])
def test_inference_paths_give_the_training_paths_outputs(batch):
    """Without gradients the CPU forward takes its own paths (fused convs, one copy of a split
    map, the decoder sampling the encoder tokens in place for one image, invalid anchor rows
    recomputed instead of masking all tokens); with gradients the plain ops. Same outputs."""
    model = _randomised_tiny_model().eval()
    x = torch.rand(batch, 3, 128, 160)
    with torch.no_grad():
        fast = model(x)
    with torch.enable_grad():
        plain = model(x)
    for key in ("pred_logits", "pred_boxes"):
        torch.testing.assert_close(fast[key], plain[key].detach(), atol=1e-4, rtol=1e-4)


def test_invalid_anchor_rows_are_recomputed_not_masked():
    """``_enc_output`` without gradients (no pass masking every token) equals enc_output of the
    masked tokens, exactly: a zero row gives the same values alone or among the others."""
    decoder = tiny_model().eval().decoder
    memory = torch.randn(2, 300, decoder.hidden_dim)
    valid = torch.rand(1, 300, 1) > 0.2
    with torch.enable_grad():
        masked = decoder.enc_output(valid.float() * memory).detach()
    with torch.no_grad():
        fast = decoder._enc_output(memory, valid)
    assert torch.equal(fast, masked)


def test_deformable_attention_as_exported_equals_its_eager_form(monkeypatch):
    """The export's form of the deformable attention (offsets projected coordinate-major, one
    sampling call on a canvas of all levels: ``canvas_export``) gives the eager form's values, for
    points inside, on and well beyond a level's edge, on levels of different heights and widths."""
    import dfine.models.decoder as decoder
    from dfine.models.decoder import MSDeformableAttention, canvas_layout, sampling_canvas
    torch.manual_seed(0)
    shapes, points = [[12, 12], [6, 6], [3, 5], [1, 4]], [6, 6, 4, 2]
    heads, dim, queries = 4, 32, 30
    attn = MSDeformableAttention(dim, heads, points).eval()
    with torch.no_grad():  # offsets of several box sizes: many points beyond their level
        attn.sampling_offsets.weight.normal_(0, 2.0)
        attn.attention_weights.weight.normal_(0, 0.5)
    values = [torch.randn(heads, dim // heads, h, w) for h, w in shapes]
    query = torch.randn(1, queries, dim)
    reference = torch.cat([torch.rand(1, queries, 1, 2), torch.rand(1, queries, 1, 2) * 0.5 + 0.05], dim=-1)
    canvas = sampling_canvas(values, shapes)
    height, width, lefts = canvas_layout(shapes)
    assert canvas.shape == (heads, dim // heads, height, width) == (heads, dim // heads, 14, 1 + 13 + 7 + 6 + 5)
    for value, (h, w), left in zip(values, shapes, lefts):  # each level in place, zeros around it
        assert torch.equal(canvas[..., 1:1 + h, left:left + w], value)
        assert not canvas[..., :, left - 1].any() and not canvas[..., :, left + w].any()
        assert not canvas[..., 0, :].any() and not canvas[..., 1 + h:, left:left + w].any()
    with torch.no_grad():
        expected = attn(query, reference, values, shapes)
        monkeypatch.setattr(decoder, "canvas_export", lambda method: method == "default")
        got = attn(query, reference, [canvas], shapes)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=0, atol=5e-6)


def test_canvas_sampling_clamps_each_point_to_just_beyond_its_level():
    """A point half a pixel or more beyond its level samples zero, and a point nearer blends with
    the zero border, exactly as the level's own zero padding; nothing of a neighbouring level leaks in."""
    import torch.nn.functional as F
    from dfine.models.decoder import canvas_grid, sampling_canvas
    shapes = [[4, 4], [2, 3]]
    values = [torch.ones(1, 1, 4, 4), torch.full((1, 1, 2, 3), 100.0)]
    canvas = sampling_canvas(values, shapes)
    x = torch.tensor([-2.0, -0.125, -0.1, 0.5, 1.1, 1.125, 3.0])  # level 0 (W 4): -0.125 and 1.125 are pixel centres -1 and 4
    locations = torch.stack([x, torch.full_like(x, 0.5)]).reshape(1, 1, 2, -1)  # [1, 1, 2, P]
    grid = canvas_grid(locations, shapes, [0] * len(x), canvas.shape[-2:]).permute(0, 1, 3, 2)  # [1, 1, P, 2]
    got = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False).flatten()
    own = F.grid_sample(values[0], (2 * locations - 1).permute(0, 1, 3, 2), mode="bilinear", padding_mode="zeros",
                        align_corners=False).flatten()
    torch.testing.assert_close(got, own, rtol=0, atol=1e-6)
    assert got[0] == got[1] == got[-1] == got[-2] == 0 and 0 < got[2] < 1 and got[3] == 1
