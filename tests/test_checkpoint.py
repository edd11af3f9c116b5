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


@pytest.mark.parametrize("content", [b"hello, not a checkpoint", b"PK\x03\x04broken zip", b""])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(dfine.DfineError, match="not a readable PyTorch checkpoint") as e:
        read_checkpoint(path)
    assert str(path) in _one_line(e)


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
    with pytest.raises(dfine.DfineError, match="class count") as e:
        dfine.load_checkpoint(dfine.build_model("dfine_n", num_classes=3), ckpt)
    assert "enc_score_head" in _one_line(e) or "score_head" in str(e.value)


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
