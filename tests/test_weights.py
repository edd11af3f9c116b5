"""extract_ema: a training checkpoint in, a weights file with only the EMA weights out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfine.errors import DfineError
from dfine.checkpoint import extract_ema


def _training_checkpoint() -> dict:
    model = {"layer.weight": torch.randn(4, 3), "layer.bias": torch.randn(4)}
    ema = {k: v + 1.0 for k, v in model.items()}
    return {
        "model": model,
        "ema": {"module": ema, "updates": 1200},
        "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-4}]},
        "last_epoch": 11,
    }


def test_extracts_only_the_ema_weights(tmp_path: Path) -> None:
    ckpt = _training_checkpoint()
    src = tmp_path / "last.pth"
    torch.save(ckpt, src)
    dst = extract_ema(src)
    assert dst == tmp_path / "last_converted.pth"
    out = torch.load(dst, weights_only=True)
    assert list(out) == ["model"]
    assert out["model"].keys() == ckpt["ema"]["module"].keys()
    for key, value in ckpt["ema"]["module"].items():
        assert torch.equal(out["model"][key], value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth", "last_converted.pth"]


def test_explicit_destination(tmp_path: Path) -> None:
    src = tmp_path / "best_stg2.pth"
    torch.save(_training_checkpoint(), src)
    dst = extract_ema(src, tmp_path / "out" / "dfine_s_custom.pth")
    assert dst == tmp_path / "out" / "dfine_s_custom.pth"
    assert torch.load(dst, weights_only=True)["model"]["layer.bias"].shape == (4,)


def _one_line_error(src: Path) -> str:
    with pytest.raises(DfineError) as exc:
        extract_ema(src)
    message = str(exc.value)
    assert "\n" not in message and str(src) in message
    return message


def test_checkpoint_without_ema(tmp_path: Path) -> None:
    src = tmp_path / "weights.pth"
    torch.save({"model": _training_checkpoint()["model"]}, src)
    assert "no EMA weights" in _one_line_error(src)
    assert not (tmp_path / "weights_converted.pth").exists()


def test_ema_without_module(tmp_path: Path) -> None:
    src = tmp_path / "odd.pth"
    torch.save({"ema": {"updates": 3}}, src)
    assert "'module'" in _one_line_error(src)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    src = tmp_path / "notes.pth"
    src.write_text("not a checkpoint at all\n")
    _one_line_error(src)
    _one_line_error(tmp_path / "missing.pth")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pth"]
