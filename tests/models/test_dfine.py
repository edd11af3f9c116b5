"""The whole detector against the published implementation (golden fixtures) and its published sizes."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import dfine
from tests.compare import assert_detections_close, assert_query_sets_close
from tests.conftest import load_golden

# train form / deploy form parameter counts (80 classes) and GFLOPs at 640 of the published models
PUBLISHED = {
    "dfine_n": (3_782_693, 3_753_799, 7.3),
    "dfine_s": (10_321_877, 10_237_491, 25.5),
    "dfine_m": (19_590_064, 19_248_189, 57.0),
    "dfine_l": (31_244_152, 30_724_195, 91.6),
    "dfine_x": (62_621_560, 61_601_635, 203.1),
}


def _golden_model(size: str, **overrides):
    g = load_golden(size)
    model = dfine.build_model(f"dfine_{size}", **overrides)
    dfine.load_checkpoint(model, g["checkpoint"])
    return model.eval(), g


@pytest.mark.parametrize("size", ["n", "s"])
def test_eval_outputs_match_published(size):
    model, g = _golden_model(size)
    with torch.no_grad():
        out = model(g["images_uint8"].float() / 255)
    for b in range(2):
        ours = torch.cat([out["pred_logits"][b], out["pred_boxes"][b]], -1)
        gold = torch.cat([g["eval"]["pred_logits"][b], g["eval"]["pred_boxes"][b]], -1)
        assert_query_sets_close(ours, gold, atol=2e-3)


@pytest.mark.parametrize("size", ["n", "s"])
def test_deploy_detections_match_published(size):
    model, g = _golden_model(size)
    model.deploy()
    post = dfine.PostProcessor(num_classes=80, num_top_queries=300)
    with torch.no_grad():
        dets = post(model(g["images_uint8"].float() / 255), g["orig_sizes"].float())
    for b, det in enumerate(dets):
        gold = {k: v[b] for k, v in g["deploy"].items()}
        assert_detections_close(det["labels"], det["boxes"], det["scores"], gold)


def test_ema_weights_are_the_ones_used():
    """The N fixture's 'model' entry holds other weights: loading must pick 'ema.module'."""
    g = load_golden("n")
    model = dfine.build_model("dfine_n")
    dfine.load_checkpoint(model, g["checkpoint"])
    ema = g["checkpoint"]["ema"]["module"]
    name = "decoder.dec_score_head.2.weight"
    assert torch.equal(model.state_dict()[name], ema[name])
    assert not torch.equal(ema[name], g["checkpoint"]["model"][name])


@pytest.mark.parametrize("size", ["n", "s"])
def test_param_count_without_denoising_matches_fixture(size):
    model = dfine.build_model(f"dfine_{size}", num_denoising=0)
    assert sum(p.numel() for p in model.parameters()) == load_golden(size)["num_params"]


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_param_counts_and_gflops(name):
    train_params, deploy_params, gflops = PUBLISHED[name]
    model = dfine.build_model(name)
    assert sum(p.numel() for p in model.parameters()) == train_params
    model.deploy()
    assert sum(p.numel() for p in model.parameters()) == deploy_params
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, 640, 640))
    # torch's counter counts matmuls and convolutions only; the published figure (calflops) also
    # counts element-wise ops, which add 0.4-3.5 % depending on the size.
    ours = counter.get_total_flops() / 1e9
    assert 0.96 * gflops <= ours <= gflops, ours


@pytest.mark.parametrize("hw", [(320, 320), (480, 640), (640, 416), (416, 224)])
def test_any_multiple_of_32_works(hw):
    model = dfine.build_model("dfine_n").eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *hw))
    assert out["pred_logits"].shape == (2, 300, 80)
    assert out["pred_boxes"].shape == (2, 300, 4)
    assert torch.isfinite(out["pred_boxes"]).all()


def test_too_small_input_is_a_clear_error(capsys):
    """A user error, so a DfineError: `dfine benchmark --imgsz 160` ended in a ValueError traceback (a walk)."""
    from dfine.cli import main
    from dfine.errors import DfineError
    model = dfine.build_model("dfine_n").eval()
    with pytest.raises(DfineError, match="fewer than the model's 300 queries: a larger input size"):
        model(torch.rand(1, 3, 96, 160))
    assert main(["benchmark", "--imgsz", "160", "--runs", "1", "--backends", "torch"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: the input gives 125 encoder tokens")


def test_non_default_eval_size_gives_the_same_outputs_at_that_size():
    """Anchors come from the input size, so eval_spatial_size only pre-computes; results agree."""
    a = dfine.build_model("dfine_n").eval()
    b = dfine.build_model("dfine_n", eval_spatial_size=(320, 480)).eval()
    sd = {k: v for k, v in a.state_dict().items() if k not in ("decoder.anchors", "decoder.valid_mask")}
    b.load_state_dict(sd, strict=False)
    x = torch.rand(1, 3, 320, 480)
    with torch.no_grad():
        oa, ob = a(x), b(x)
    torch.testing.assert_close(oa["pred_logits"], ob["pred_logits"])


@pytest.mark.parametrize("bad, match", [
    (torch.rand(1, 3, 100, 128), "multiples of 32"),
    (torch.rand(3, 128, 128), r"\[B, 3, H, W\]"),
    (torch.rand(1, 1, 128, 128), r"\[B, 3, H, W\]"),
    ((torch.rand(1, 3, 128, 128) * 255).to(torch.uint8), "float"),
    (torch.rand(1, 3, 128, 128) * 255, "0..255"),
])
def test_bad_images_are_one_line_errors(bad, match):
    model = dfine.build_model("dfine_n").eval()
    with pytest.raises(ValueError, match=match) as e:
        model(bad)
    assert "\n" not in str(e.value)


def test_bad_builder_arguments():
    with pytest.raises(ValueError, match="dfine_n, dfine_s"):
        dfine.build_model("dfine_q")
    with pytest.raises(ValueError, match="num_classes"):
        dfine.build_model("dfine_n", num_classes=0)
    with pytest.raises(TypeError, match="num_querys"):
        dfine.build_model("dfine_n", num_querys=100)
    with pytest.raises(TypeError, match="exists in encoder and decoder"):
        dfine.build_model("dfine_n", hidden_dim=64)


def test_overrides_reach_the_config():
    model = dfine.build_model("dfine_n", num_classes=3, num_denoising=0, num_queries=50)
    assert model.config.decoder.num_queries == 50
    assert not hasattr(model.decoder, "denoising_class_embed")
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 3, 128, 128))
    assert out["pred_logits"].shape == (1, 50, 3)


def test_zoo_names_build_their_size_and_class_count():
    model = dfine.build_model("dfine_s_obj365")
    assert model.config.backbone.name == "B0" and model.config.num_classes == 366
    with pytest.raises(ValueError, match="pretrained weights come with a zoo name"):
        dfine.build_model("dfine_n", pretrained=True)
    with pytest.raises(ValueError, match="fine-tune"):
        dfine.build_model("dfine_n_coco", num_classes=3, pretrained=True)


def test_pretrained_zoo_model_loads_from_the_cache(tmp_path, monkeypatch):
    """A weights file already in the cache is used as is (no network)."""
    monkeypatch.setenv("DFINE_HOME", str(tmp_path))
    (tmp_path / "weights").mkdir()
    g = load_golden("n")
    torch.save(g["checkpoint"], tmp_path / "weights" / "dfine_n_coco.pth")
    model = dfine.build_model("dfine_n_coco", pretrained=True)
    name = "decoder.enc_score_head.weight"
    assert torch.equal(model.state_dict()[name], g["checkpoint"]["ema"]["module"][name])
