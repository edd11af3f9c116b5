"""dfine train --data DIR: a YOLO folder and a VOC folder converted into the output folder and trained
one short epoch; detection of COCO layouts; dfine.train() from Python."""

from __future__ import annotations

import json

import pytest

from dfine.cli import main
from dfine.errors import DfineError
from dfine.recipes import data_run, detect_format, find_coco_splits, model_size
from tests.data.datasets import image, voc_xml, yolo_labels

TINY = ["--imgsz", "160", "--batch", "2", "--epochs", "1", "--max-steps", "1", "-d", "cpu", "--no-progress",
        "--model", "dfine_n", "-u", "HGNetv2.pretrained=false", "train_dataloader.num_workers=0",
        "val_dataloader.num_workers=0", "use_amp=false", "DFINETransformer.num_queries=50",
        "DFINEPostProcessor.num_top_queries=50"]


def _yolo(root):
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            image(root / f"images/{split}/{i}.jpg", (96, 64))
            yolo_labels(root / f"labels/{split}/{i}.txt", ["0 0.5 0.5 0.5 0.5", "1 0.2 0.3 0.2 0.2"])
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [apple, pear]\n")
    return root


def _voc(root):
    for i in range(3):
        image(root / f"JPEGImages/{i}.jpg", (96, 64))
        voc_xml(root / f"Annotations/{i}.xml", f"{i}.jpg", (96, 64), [("boat", (10, 10, 60, 50), 0)])
    return root


def _trained(out, capsys):
    """Checks the run's files and printed next steps; returns what it wrote to stderr."""
    printed = capsys.readouterr()
    assert (out / "last.pth").is_file()
    assert f"best weights: {out}" in printed.out and f"dfine predict -m {out}" in printed.out
    return printed.err


def test_train_from_a_yolo_folder(tmp_path, capsys):
    src, out = _yolo(tmp_path / "fruit"), tmp_path / "run"
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    assert main(["train", "--data", str(src), "--output-dir", str(out), *TINY]) == 0
    _trained(out, capsys)
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before  # the source untouched
    train = json.loads((out / "data/annotations/instances_train.json").read_text())
    assert [c["name"] for c in train["categories"]] == ["apple", "pear"]
    from dfine.checkpoint import read_checkpoint
    ckpt = read_checkpoint(out / "last.pth")
    assert list(ckpt["class_names"]) == ["apple", "pear"]


def test_train_from_a_voc_folder(tmp_path, capsys):
    src, out = _voc(tmp_path / "VOC"), tmp_path / "run"
    assert main(["train", "--data", str(src), "--output-dir", str(out), *TINY]) == 0
    assert "no ImageSets/Main split files: 1 of 3 images became val" in _trained(out, capsys)
    assert (out / "data/annotations/instances_val.json").is_file() and not (src / "annotations").exists()


def test_detects_formats_and_coco_layouts(tmp_path):
    assert detect_format(_yolo(tmp_path / "y")) == "yolo"
    assert detect_format(_voc(tmp_path / "v")) == "voc"
    rf = tmp_path / "rf"
    for split in ("train", "valid"):
        (rf / split).mkdir(parents=True)
        (rf / split / "_annotations.coco.json").write_text("{}")
    assert detect_format(rf) == "coco"
    assert find_coco_splits(rf) == {"train": (rf / "train/_annotations.coco.json", rf / "train"),
                                    "val": (rf / "valid/_annotations.coco.json", rf / "valid")}
    image(rf / "train/images/0.jpg", (32, 32))  # a split folder without images of its own: images/ inside it
    image(rf / "valid/0.jpg", (32, 32))
    (rf / "valid/images").mkdir()
    assert find_coco_splits(rf)["train"][1] == rf / "train/images"
    assert find_coco_splits(rf)["val"][1] == rf / "valid"
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "train2017").mkdir()
    (coco / "annotations/instances_train2017.json").write_text("{}")
    assert find_coco_splits(coco) == {"train": (coco / "annotations/instances_train2017.json", coco / "train2017")}
    with pytest.raises(DfineError, match="no validation annotations"):
        data_run(coco)
    # a split folder, an annotation file, an images folder: the dataset folder above is named
    for wrong in (rf / "train", rf / "train/_annotations.coco.json", tmp_path / "v/JPEGImages"):
        with pytest.raises(DfineError) as err:
            detect_format(wrong)
        assert str(err.value) == (f"--data {wrong}: not a COCO, YOLO or VOC dataset folder; give the dataset "
                                  f"folder: --data {wrong.parents[1] if wrong.is_file() else wrong.parent}")
    nowhere = tmp_path / "a/b/c"
    nowhere.mkdir(parents=True)
    with pytest.raises(DfineError, match=r"not a COCO, YOLO or VOC dataset folder \(annotations/instances_\*.json"):
        detect_format(nowhere)


def test_model_names_and_epoch_overrides(tmp_path):
    assert [model_size(m) for m in ("dfine_s", "D-FINE-L", "dfine-x", "n", "dfine_hgnetv2_m")] == list("slxnm")
    with pytest.raises(DfineError, match="--model 'yolo8'"):
        model_size("yolo8")
    run = data_run(_yolo(tmp_path / "y"), "dfine_m", epochs=22, batch=4, output_dir=tmp_path / "o")
    assert run.recipe.name == "dfine_hgnetv2_m_custom.yml"
    assert "epochs=22" in run.overrides and "train_dataloader.collate_fn.stop_epoch=20" in run.overrides
    assert "train_dataloader.total_batch_size=4" in run.overrides and "num_classes=null" in run.overrides


def test_dfine_train_from_python_returns_folder_and_metrics(tmp_path):
    import dfine

    src = _yolo(tmp_path / "fruit")
    result = dfine.train(data=src, model="dfine_n", epochs=1, batch=2, imgsz=160, output_dir=tmp_path / "run",
                         device="cpu", max_steps=1, progress=False,
                         overrides=["HGNetv2.pretrained=false", "train_dataloader.num_workers=0",
                                    "val_dataloader.num_workers=0", "use_amp=false", "DFINETransformer.num_queries=50",
                                    "DFINEPostProcessor.num_top_queries=50"])
    assert result.output_dir == tmp_path / "run" and result.best is not None and result.best.is_file()
    assert isinstance(result.metrics, dict) and result.metrics


def test_cpu_run_without_batch_gets_a_cpu_batch(tmp_path):
    src = _yolo(tmp_path / "fruit")
    cpu = data_run(src, "dfine_n", output_dir=tmp_path / "run", device="cpu")
    assert "train_dataloader.total_batch_size=8" in cpu.overrides
    assert any("CPU: batch 8" in note for note in cpu.notes)
    chosen = data_run(src, "dfine_n", batch=3, output_dir=tmp_path / "run", device="cpu")
    assert "train_dataloader.total_batch_size=3" in chosen.overrides
    assert not any("CPU: batch" in note for note in chosen.notes)
    gpu = data_run(src, "dfine_n", output_dir=tmp_path / "run", device="cuda")
    assert not any(o.startswith("train_dataloader.total_batch_size") for o in gpu.overrides)


def test_short_run_gets_a_warmup_of_a_tenth_of_its_steps(tmp_path):
    from dfine.recipes import RECIPES_DIR, short_run_warmup

    src = _yolo(tmp_path / "fruit")  # 2 train images
    run = data_run(src, "dfine_n", epochs=20, batch=1, output_dir=tmp_path / "run", device="cpu")
    assert "lr_warmup_scheduler.warmup_duration=4" in run.overrides  # 20 epochs x 2 steps = 40 steps
    assert ("lr warmup 4 steps, not the recipe's 500: this run has only 40 steps (2 images, batch 1, 20 epochs)"
            in run.notes)
    recipe = RECIPES_DIR / "dfine" / "custom" / "dfine_hgnetv2_n_custom.yml"
    assert short_run_warmup(recipe, 4000, 8, 20) is None  # 10,000 steps: the recipe's 500 is 5% of them
    assert short_run_warmup(recipe, 100, None, None) == (22, 500, 220, 128, 220)  # recipe batch and epochs: 1 step an epoch
