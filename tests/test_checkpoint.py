"""Loading checkpoints: published layout, and a one-line error for each kind of bad file."""

import pytest
import torch

import dfine
from dfine.checkpoint import read_checkpoint
from tests.conftest import load_golden


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_missing_file(tmp_path):
    with pytest.raises(dfine.DfineError, match="not found") as e:
        dfine.load_checkpoint(dfine.build_model("dfine_n"), tmp_path / "nope.pth")
    assert "nope.pth" in _one_line(e)
    with pytest.raises(dfine.DfineError, match="is a folder; give a .pth file in it") as e:
        read_checkpoint(tmp_path)
    assert str(tmp_path / "last.pth") in _one_line(e)
    (tmp_path / "best_stg2.pth").write_bytes(b"")  # a run's folder: its best weights first (a walk's export)
    with pytest.raises(dfine.DfineError) as e:
        read_checkpoint(tmp_path)
    assert _one_line(e).endswith(f"give a .pth file in it: {tmp_path / 'best_stg2.pth'} (the run's best weights) or "
                                 f"{tmp_path / 'last.pth'} (its last, to resume)")
    # the weights the run's last.pth records as best (a re-walk: a run that ended naming last.pth, no evaluation
    # above AP 0, was said to have best_stg1.pth as its best weights)
    (tmp_path / "best_stg1.pth").write_bytes(b"")
    for best_ap, best_file, named in ((0.0, "best_stg1.pth", "last.pth"), (0.4, "best_stg1.pth", "best_stg1.pth")):
        torch.save({"progress": {"best_ap": best_ap, "best_file": best_file}}, tmp_path / "last.pth")
        with pytest.raises(dfine.DfineError) as e:
            read_checkpoint(tmp_path)
        assert _one_line(e).split("give a .pth file in it: ")[1].startswith(f"{tmp_path / named} (the run's best")
    assert _one_line(e).endswith("(the run's best weights) or " f"{tmp_path / 'last.pth'} (its last, to resume)")
    torch.save({"progress": {"best_ap": 0.0, "best_file": None}}, tmp_path / "last.pth")
    with pytest.raises(dfine.DfineError) as e:
        read_checkpoint(tmp_path)
    assert _one_line(e).endswith(f": {tmp_path / 'last.pth'} (the run's best weights, and its last, to resume)")


@pytest.mark.parametrize("content, said", [
    (b"hello, not a checkpoint", "is a text file, not a PyTorch checkpoint (it starts 'hello, not a checkpoint'"),
    (b"<!DOCTYPE html>\n<html>", "is a text file, not a PyTorch checkpoint (it starts '<!DOCTYPE html>'; an error page"),
    (b"PK\x03\x04broken zip", "is cut short (14 bytes; its archive has no end): an incomplete download or copy? "
                             "Fetch or copy it again"),
    (b"", "is empty (0 bytes): save or download the checkpoint again"),
    (b"\x80\x02\x00\x01binary", "is not a readable PyTorch checkpoint ("),
])
def test_not_a_checkpoint(tmp_path, content, said):
    """A walk's truncated download read 'not a readable PyTorch checkpoint (PytorchStreamReader failed ... This
    is an internal miniz error. If you are seeing this error, there is a high)' and a text file '(101)'."""
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(dfine.DfineError) as e:
        read_checkpoint(path)
    assert _one_line(e).startswith(f"{path} {said}"), _one_line(e)


def test_an_export_given_as_a_checkpoint_says_what_it_is(tmp_path):
    """A re-walk's `dfine train --data D -r last.onnx` read torch's cut-off 'Weights only load failed. In PyTorch
    2.6, we changed ... Re-running `torch.'; the file is named as an export, with what takes it."""
    path = tmp_path / "last.onnx"
    path.write_bytes(b"\x08\x07\x12\x07pytorch")
    with pytest.raises(dfine.DfineError) as e:
        read_checkpoint(path)
    assert _one_line(e) == (f"{path} is an export, not a PyTorch checkpoint: give the .pth checkpoint it was exported "
                            f"from; an export is evaluated with dfine eval -m {path} --data DIR")


@pytest.mark.parametrize("suffix,fmt", [(".jpg", "JPEG"), (".pth", "PNG")])
def test_an_image_given_as_a_checkpoint_says_so(tmp_path, suffix, fmt):
    """A walk's `dfine export -r photo.jpg` read torch's weights_only text, cut mid-sentence ('Re-running `torch.')."""
    from PIL import Image
    path = tmp_path / f"photo{suffix}"
    Image.new("RGB", (8, 8)).save(path, format=fmt)
    with pytest.raises(dfine.DfineError) as e:
        read_checkpoint(path)
    assert _one_line(e) == (f"{path} is a {fmt} image, not a PyTorch checkpoint: give the model's .pth file (an image "
                            f"is predicted on with dfine predict IMAGE -m MODEL)")


def test_the_published_file_name_of_a_zoo_model_names_the_zoo_name(tmp_path, monkeypatch):
    """A walk's `-t dfine_n_coco.pth` (the published README's file name) with no such file in the working folder
    was told 'not found' alone: the zoo name to give instead, and where its file is, said; nothing is read."""
    from dfine.checkpoint import resolve_source
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DFINE_HOME", str(tmp_path / "home"))
    with pytest.raises(dfine.DfineError) as e:
        resolve_source("dfine_n_coco.pth")
    assert _one_line(e) == (f"checkpoint dfine_n_coco.pth not found here; the zoo's weights are named without .pth: "
                            f"dfine_n_coco (downloaded once into {tmp_path / 'home' / 'weights'})")
    (tmp_path / "home" / "weights").mkdir(parents=True)
    (tmp_path / "home" / "weights" / "dfine_n_coco.pth").write_bytes(b"x")
    with pytest.raises(dfine.DfineError) as e:
        resolve_source("dfine_n_coco.pth")
    assert _one_line(e).endswith(f"dfine_n_coco (read from {tmp_path / 'home' / 'weights' / 'dfine_n_coco.pth'})")
    with pytest.raises(dfine.DfineError) as e:  # a path of the user's: not found alone
        resolve_source("weights/dfine_n_coco.pth")
    assert _one_line(e) == "checkpoint weights/dfine_n_coco.pth not found"


def test_a_checkpoint_cut_short_says_so(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"model": {"w": torch.zeros(20000)}}, path)
    path.write_bytes(path.read_bytes()[:50000])
    with pytest.raises(dfine.DfineError, match=r"cut\.pth is cut short \(50000 bytes; its archive has no end\)"):
        read_checkpoint(path)


def test_a_runs_own_checkpoint_cut_short_points_to_the_others_beside_it(tmp_path):
    """A walk's damaged last.pth under --auto-resume said 'an incomplete download or copy? Fetch or copy it
    again': advice a restart loop can never follow. A run's own file names the run's other checkpoints."""
    import os
    for i, name in enumerate(("checkpoint0003.pth", "best_stg1.pth", "last.pth")):
        torch.save({"model": {"w": torch.zeros(20000)}}, tmp_path / name)
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    last = tmp_path / "last.pth"
    last.write_bytes(last.read_bytes()[:50000])
    with pytest.raises(dfine.DfineError) as e:
        read_checkpoint(last)
    assert _one_line(e) == (f"{last} is cut short (50000 bytes; its archive has no end), damaged after the run wrote "
                            f"it (a full or failing disk, a copy cut short); resume from another checkpoint of the run "
                            f"(best_stg1.pth, checkpoint0003.pth) with -r, or move it away to start over")


def test_checkpoint_of_something_else(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(dfine.DfineError, match="holds a list"):
        read_checkpoint(path)
    path = tmp_path / "other.pth"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, path)
    with pytest.raises(dfine.DfineError, match="no model weights") as e:
        dfine.load_checkpoint(dfine.build_model("dfine_n"), path)
    assert "epoch" in _one_line(e)


def test_other_size_names_the_file_and_first_keys(tmp_path):
    path = tmp_path / "s.pth"
    torch.save(load_golden("s")["checkpoint"], path)
    with pytest.raises(dfine.DfineError, match="shape mismatches") as e:
        dfine.load_checkpoint(dfine.build_model("dfine_n"), path)
    msg = _one_line(e)
    assert "s.pth" in msg and "(768, 256) vs model (384, 128)" in msg


def test_other_class_count():
    ckpt = load_golden("n")["checkpoint"]
    with pytest.raises(dfine.DfineError) as e:
        dfine.load_checkpoint(dfine.build_model("dfine_n", num_classes=3), ckpt)
    assert _one_line(e) == ("checkpoint was trained for 80 classes and this model has 3: use it with data of its own "
                            "80 classes, or fine-tune it into these with -t (dfine train) or dfine.checkpoint.load_tuning")


def test_missing_and_unexpected_keys():
    state = dict(load_golden("n")["checkpoint"]["ema"]["module"])
    state.pop("decoder.enc_output.proj.weight")
    state["decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(dfine.DfineError, match="1 missing keys, first: decoder.enc_output.proj.weight; "
                                              "1 unexpected keys, first: decoder.extra.weight"):
        dfine.load_checkpoint(dfine.build_model("dfine_n"), {"model": state})


def test_plain_state_dict_and_denoising_embedding_are_optional():
    state = load_golden("n")["checkpoint"]["ema"]["module"]
    model = dfine.build_model("dfine_n", num_denoising=0)
    dfine.load_checkpoint(model, state)  # a bare state dict; its denoising embedding is ignored
    name = "decoder.enc_score_head.weight"
    assert torch.equal(model.state_dict()[name], state[name])


# ---- one schema: what training writes deploys; conversion keeps the metadata -----------------------

NAMES, IDS = ["pawn", "rook", "knight", "bishop", "queen"], [3, 5, 7, 11, 13]


def _tiny_training_checkpoint(old: bool = False) -> dict:
    """A checkpoint laid out as the trainer writes it (tiny model, 5 classes). ``old``: as written
    before the model config had its own entry (only the whole recipe under ``config``, issue 11)."""
    from dfine.checkpoint import config_to_dict, deploy_metadata
    from tests.models.tiny import tiny_model
    model, ema = tiny_model(), tiny_model()
    recipe = {"HGNetv2" if k == "backbone" else "HybridEncoder" if k == "encoder" else
              "DFINETransformer" if k == "decoder" else k: v for k, v in config_to_dict(model.config).items()}
    recipe.update(epochs=3, output_dir="out", train_dataloader={"total_batch_size": 2})
    ckpt = {"model": model.state_dict(), "ema": {"module": ema.state_dict(), "updates": 7},
            "optimizer": {"state": {}, "param_groups": []}, "last_epoch": 2, "config": recipe}
    if old:
        ckpt.update(class_names=NAMES, category_ids=IDS)
    else:
        ckpt.update(deploy_metadata(model.config, NAMES, IDS))
    return ckpt


@pytest.mark.parametrize("old", [False, True])
def test_training_checkpoint_deploys_with_its_names(tmp_path, old):
    from dfine.checkpoint import load_model
    ckpt = _tiny_training_checkpoint(old)
    torch.save(ckpt, tmp_path / "last.pth")
    loaded = load_model(tmp_path / "last.pth")
    assert loaded.class_names == tuple(NAMES) and loaded.category_ids == tuple(IDS)
    assert loaded.imgsz == (128, 128) and loaded.config.decoder.reg_max == 8
    key = "decoder.enc_score_head.weight"
    assert torch.equal(loaded.model.state_dict()[key], ckpt["ema"]["module"][key])


def test_a_run_with_more_detections_an_image_deploys_with_them(tmp_path):
    """A dense walk trained with -u DFINETransformer.num_queries=500 DFINEPostProcessor.num_top_queries=500:
    predict and the ONNX export of its checkpoint gave 300 detections an image (the default), not 500."""
    import numpy as np
    from dfine.checkpoint import load_model
    ckpt = _tiny_training_checkpoint()
    ckpt["config"]["DFINEPostProcessor"] = {"num_top_queries": 7}
    torch.save(ckpt, tmp_path / "last.pth")
    assert load_model(tmp_path / "last.pth").postprocessor.num_top_queries == 7
    [found] = dfine.Detector(str(tmp_path / "last.pth"), conf=0.0)(np.zeros((128, 128, 3), np.uint8))
    assert len(found) == 7
    del ckpt["config"]["DFINEPostProcessor"]  # none recorded: the model's queries (tiny: 20), not 300
    torch.save(ckpt, tmp_path / "plain.pth")
    assert load_model(tmp_path / "plain.pth").postprocessor.num_top_queries == 20
    assert load_model(tmp_path / "plain.pth", num_top_queries=5).postprocessor.num_top_queries == 5


def test_convert_weights_keeps_names_ids_and_config(tmp_path):
    from dfine.checkpoint import extract_ema, load_model
    ckpt = _tiny_training_checkpoint()
    torch.save(ckpt, tmp_path / "best_stg1.pth")
    out = torch.load(extract_ema(tmp_path / "best_stg1.pth"), weights_only=True)
    assert set(out) == {"model", "model_config", "class_names", "category_ids", "input_size", "recommended_conf"}
    assert out["recommended_conf"] is None  # its run measured none
    assert out["class_names"] == NAMES and out["category_ids"] == IDS and out["input_size"] == [128, 128]
    loaded = load_model(tmp_path / "best_stg1_converted.pth", imgsz=160)
    assert loaded.class_names == tuple(NAMES) and loaded.category_ids == tuple(IDS) and loaded.imgsz == (160, 160)


def test_convert_weights_of_a_published_file_recognises_it(tmp_path):
    from dfine.checkpoint import extract_ema, load_model
    from dfine.data.mscoco import MSCOCO_CATEGORY_IDS
    torch.save(load_golden("s")["checkpoint"], tmp_path / "dfine_s_coco.pth")
    out = torch.load(extract_ema(tmp_path / "dfine_s_coco.pth"), weights_only=True)
    assert out["model_config"]["decoder"]["num_layers"] == 3 and out["model_config"]["backbone"]["name"] == "B0"
    assert out["category_ids"] == list(MSCOCO_CATEGORY_IDS) and out["class_names"][0] == "person"
    assert load_model(tmp_path / "dfine_s_coco_converted.pth").config.encoder.depth_mult == 0.34


def test_unsafe_pickle_is_refused_in_one_line(tmp_path):
    path = tmp_path / "pickled_model.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(dfine.DfineError) as e:
        read_checkpoint(path)
    msg = _one_line(e)
    assert "code objects" in msg and "will not run" in msg and "torch.nn.modules.linear.Linear" in msg
    assert "re-save it as plain weights" in msg and str(path) in msg
    assert "\x1b" not in msg and "add_safe_globals" not in msg and "PyTorch 2.6" not in msg


def test_zoo_name_reads_through_the_cache(tmp_path, monkeypatch):
    """``load_checkpoint`` and ``read_checkpoint`` take zoo names (the file is placed in the cache
    by hand: nothing is downloaded)."""
    from dfine import hub
    monkeypatch.setenv("DFINE_HOME", str(tmp_path))
    monkeypatch.setattr(hub, "_request", lambda *a, **k: pytest.fail("the network must not be used"))
    ckpt = load_golden("n")["checkpoint"]
    (tmp_path / "weights").mkdir()
    torch.save(ckpt, tmp_path / "weights" / "dfine_n_coco.pth")
    model = dfine.load_checkpoint(dfine.build_model("dfine_n"), "dfine_n_coco")
    key = "decoder.enc_score_head.weight"
    assert torch.equal(model.state_dict()[key], ckpt["ema"]["module"][key])
    with pytest.raises(dfine.DfineError, match="unknown zoo entry 'dfine_q_coco'"):
        read_checkpoint("dfine_q_coco")


def test_name_and_id_count_errors_use_the_singular():
    """A one-class model: the errors read '1 class', '1 category id' (they read '1 classes', '1 category ids')."""
    import dataclasses

    from dfine.checkpoint import _labels, deploy_metadata
    from dfine.errors import DfineError
    from tests.models.tiny import tiny_model

    one = dataclasses.replace(tiny_model().config, num_classes=1)
    with pytest.raises(ValueError, match=r"^2 class names and 1 category id for a model of 1 class$"):
        deploy_metadata(one, ["cat", "dog"], [1])
    with pytest.raises(DfineError, match=r"x.pth: 1 class name and 2 category ids for a model of 1 class; "):
        _labels({"class_names": ["cat"], "category_ids": [1, 2]}, 1, None, "x.pth")


def test_weights_of_no_published_size_are_named_by_their_file():
    """The error named the last size tried ('dfine_x: the weights match none ...'), not the file."""
    import pytest
    import torch

    from dfine.checkpoint import infer_model_name
    from dfine.errors import DfineError

    odd = {"decoder.enc_score_head.weight": torch.zeros(3, 7)}
    with pytest.raises(DfineError) as e:
        infer_model_name(odd, "mine.pth")
    assert str(e.value).startswith("mine.pth: the weights match none of the D-FINE sizes")


def test_a_file_holding_a_checkpoint_under_a_key_says_which(tmp_path):
    """A walk gave -t the golden fixture (its 'checkpoint' entry is one): the error listed 8 of its 11 keys
    without '...' and did not say which entry was the checkpoint."""
    path = tmp_path / "bundle.pth"
    torch.save({"about": "x", "checkpoint": {"model": {"w": torch.zeros(1)}}, **{f"k{i}": i for i in range(9)}}, path)
    with pytest.raises(dfine.DfineError) as e:
        dfine.load_checkpoint(dfine.build_model("dfine_n"), path)
    line = _one_line(e)
    assert "found keys: about, checkpoint, k0, k1, k2, k3, k4, k5, ...)" in line
    assert "its 'checkpoint' entry is a checkpoint: save that alone" in line
