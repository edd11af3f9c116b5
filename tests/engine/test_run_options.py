"""Run options of the trainer that need no training: precision policy and ``--imgsz``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from dfine.commands.train import add_arguments, overrides_from_args
from dfine.config import ConfigError, load_config
from dfine.data.collate import multiscale_sizes
from dfine.engine.precision import choose_precision, cpu_features, int8_dot, native_bf16

REPO = Path(__file__).resolve().parents[2]
S_RECIPE = REPO / "configs" / "dfine" / "dfine_hgnetv2_s_coco.yml"
AVX2 = ["avx2"]
BF16 = ["avx2", "avx512f", "avx512_bf16"]


def test_cpu_features_from_cpuinfo_flags():
    text = "processor : 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
    assert cpu_features(text) == ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"]
    assert native_bf16(["avx2", "amx_bf16"]) and not native_bf16(AVX2)
    alder_lake = "flags\t\t: fpu sse avx2 avx_vnni\n"
    assert cpu_features(alder_lake) == ["avx2", "avx_vnni"] and int8_dot(cpu_features(alder_lake))
    assert not int8_dot(AVX2) and int8_dot(["avx2", "avx512f", "avx512_vnni"])


def test_recipe_amp_is_bf16_only_where_native():
    cfg = load_config(S_RECIPE)
    assert cfg.use_amp  # the published recipes ask for it
    slow = choose_precision(cfg, torch.device("cpu"), AVX2)
    assert not slow.amp and slow.dtype is None
    assert "float32" in slow.note and "use_amp=True" in slow.note and "avx2" in slow.note
    fast = choose_precision(cfg, torch.device("cpu"), BF16)
    assert fast.amp and fast.dtype == torch.bfloat16 and not fast.note
    assert choose_precision(cfg, torch.device("cuda"), AVX2).dtype == torch.float16


@pytest.mark.parametrize("override", [["use_amp=True"], ["use_amp=true"]])
def test_command_line_use_amp_forces_bf16(override):
    forced = choose_precision(load_config(S_RECIPE, override), torch.device("cpu"), AVX2)
    assert forced.amp and forced.dtype == torch.bfloat16 and "forced" in forced.name
    off = choose_precision(load_config(S_RECIPE, ["use_amp=False"]), torch.device("cpu"), BF16)
    assert not off.amp


def test_imgsz_sets_crop_multiscale_and_eval_size():
    args = add_arguments(argparse.ArgumentParser()).parse_args(["-c", str(S_RECIPE), "--imgsz", "320"])
    cfg = load_config(S_RECIPE, overrides_from_args(args))
    assert cfg.eval_spatial_size == (320, 320)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        sizes = [op.kwargs["size"] for op in loader.dataset.transforms.ops if op.type == "Resize"]
        assert sizes == [(320, 320)]
    collate = cfg.train_dataloader.collate_fn
    assert collate.base_size == 320
    sizes = multiscale_sizes(collate.base_size, collate.base_size_repeat)
    assert min(sizes) == 224 and max(sizes) == 384
    # the other ops of the recipe are kept, in order
    before = [op.type for op in load_config(S_RECIPE).train_dataloader.dataset.transforms.ops]
    assert [op.type for op in cfg.train_dataloader.dataset.transforms.ops] == before


def test_eval_spatial_size_on_the_command_line_does_the_same():
    cfg = load_config(S_RECIPE, ["eval_spatial_size=[256, 256]"])
    assert cfg.train_dataloader.collate_fn.base_size == 256
    assert [op.kwargs["size"] for op in cfg.val_dataloader.dataset.transforms.ops if op.type == "Resize"] == [(256, 256)]


def test_imgsz_not_a_multiple_of_32():
    """The multiples on either side: 'about 300' may mean 320 (it suggested 288 alone)."""
    with pytest.raises(ConfigError, match=r"multiple of 32 \(e.g. 288 or 320\)"):
        load_config(S_RECIPE, ["eval_spatial_size=[300, 300]"])
    with pytest.raises(ConfigError, match=r"multiple of 32 \(e.g. 32\)"):
        load_config(S_RECIPE, ["eval_spatial_size=[20, 20]"])
    from dfine.checkpoint import parse_imgsz
    from dfine.errors import DfineError
    # as given, in words for the option and the argument (Detector(imgsz=300) was told '--imgsz ... [300, 300]')
    with pytest.raises(DfineError, match=r"^image size 300 \(--imgsz, imgsz=\) must be one or two positive multiples "
                                         r"of 32 \(height width\) \(e.g. 288 or 320\)$"):
        parse_imgsz(300)


N_RECIPE = REPO / "configs" / "dfine" / "dfine_hgnetv2_n_coco.yml"


def test_multiscale_range_is_clipped_where_n_has_too_few_tokens():
    from dfine.data.collate import BatchCollate
    from dfine.engine.trainer import check_input_size

    # N (two levels, 300 queries) with multi-scale on at 320: 224 px gives 14*14 + 7*7 = 245 tokens
    cfg = load_config(N_RECIPE, ["eval_spatial_size=[320, 320]", "train_dataloader.collate_fn.base_size_repeat=3"])
    fitted, note = check_input_size(cfg)
    collate = fitted.train_dataloader.collate_fn
    assert collate.min_size == 256
    assert note == ("multi-scale training sizes 256..384 px (not from 224): smaller ones give fewer encoder "
                    "tokens (245 at 224) than the 300 queries")
    sizes = BatchCollate(collate.base_size, collate.base_size_repeat, min_size=collate.min_size).sizes
    assert sizes == (256, 288) + (320,) * 3 + (384, 352, 320)  # 224 left out, the rest as published
    # nothing to clip: no note, the config unchanged
    roomy = load_config(N_RECIPE, ["eval_spatial_size=[352, 352]", "train_dataloader.collate_fn.base_size_repeat=3"])
    assert check_input_size(roomy) == (roomy, "")
    # evaluation only: the multi-scale range does not matter
    assert check_input_size(cfg, train=False) == (cfg, "")


def test_output_folder_takes_o_like_the_other_commands():
    parser = add_arguments(argparse.ArgumentParser(), config_required=False)
    assert parser.parse_args(["--data", "d", "-o", "runs/x"]).output_dir == "runs/x"
    assert parser.parse_args(["--data", "d", "--output-dir", "runs/x"]).output_dir == "runs/x"


def test_epoch_bar_into_a_log_file_ends_once(capsys):
    """``dfine train ... > train.log 2>&1``: each epoch's bar wrote its last line twice into the log
    (tqdm draws the bar again as it closes; a terminal overwrites it, a file keeps both); now once."""
    import time
    from types import SimpleNamespace

    from dfine.engine.trainer import Trainer

    bar = Trainer._bar(SimpleNamespace(progress=True), 2, "epoch 1/1")
    for _ in range(2):
        time.sleep(0.15)  # slower than the bar's refresh: every step is drawn, as in a real run
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert err.count("2/2") == 1 and err.endswith("\n"), repr(err)


def test_schedule_line_says_what_drop_last_leaves_out():
    """11 train images with batch 8: one step per epoch and 3 images out of each, which the startup
    summary did not say (the training loader drops the last, partial batch, as published)."""
    from types import SimpleNamespace

    from torch.utils.data import DataLoader, DistributedSampler

    from dfine.engine.trainer import Trainer

    def note(images: int, batch: int, shuffle: bool = True, steps=None) -> str:
        sampler = DistributedSampler(range(images), num_replicas=1, rank=0, shuffle=shuffle)
        loader = DataLoader(range(images), batch_size=batch, sampler=sampler, drop_last=True)
        return Trainer._left_out_note(SimpleNamespace(train_loader=loader), len(loader) if steps is None else steps)

    assert note(11, 8) == ("; 3 of 11 images sit out each epoch (the last, partial batch is dropped; shuffled, "
                           "so another 3 each epoch)")
    assert note(11, 8, shuffle=False).endswith("the same ones every epoch)")
    assert note(16, 8) == ""  # the batch divides them
    assert note(20, 8, steps=1) == ""  # --max-steps ends the epoch first
