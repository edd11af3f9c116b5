"""``dfine data tile``: a dataset of large images cut into tiles of the model's input, boxes with them."""

from __future__ import annotations

import json
import re
import types
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import PIL.Image
import pytest

from dfine.cli import main
from dfine.data.tile import TileConfig, tile_dataset, tiles_info
from dfine.errors import DfineError
from dfine.slicing import tile_windows
from tests.data.datasets import load, yolo_labels

SIZE = (1000, 700)  # width, height of every source image
# (class, x0, y0, x1, y1) in source pixels, per image: small cars and people, one box astride the
# 320 px tiles' seam, and one larger than a tile
BOXES: Dict[str, List[Tuple[int, int, int, int, int]]] = {
    "a": [(0, 20, 30, 34, 40), (1, 400, 300, 410, 318), (0, 700, 600, 716, 610)],
    "b": [(0, 100, 100, 110, 108), (0, 560, 200, 600, 260), (1, 500, 100, 990, 690)],
    "c": [(1, 50, 600, 60, 620), (0, 900, 20, 915, 30)],
}


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)


def yolo_set(root: Path, named: bool = True) -> Path:
    """A YOLO folder: images a, b in train, c in val (PNG: tiles are compared pixel for pixel); its
    data.yaml names the classes car and person (``named``), else none (``--names car,person``)."""
    for i, (stem, boxes) in enumerate(BOXES.items()):
        split = "val" if stem == "c" else "train"
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(noise(i)).save(root / "images" / split / f"{stem}.png")
        w, h = SIZE
        yolo_labels(root / "labels" / split / f"{stem}.txt",
                    [f"{c} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
                     for c, x0, y0, x1, y1 in boxes])
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n"
                                    + ("names: [car, person]\n" if named else ""))
    return root


def train_one_step(data: str) -> List[str]:
    """``dfine train --data DATA`` for one step of a small dfine_n at 320 px into ``run/``."""
    return ["train", "--data", data, "--model", "dfine_n", "--epochs", "1", "--batch", "2", "--imgsz", "320",
            "--max-steps", "1", "-d", "cpu", "--no-progress", "-o", "run", "-u", "HGNetv2.pretrained=False",
            "DFINETransformer.num_queries=30", "DFINEPostProcessor.num_top_queries=30",
            "train_dataloader.num_workers=0", "val_dataloader.num_workers=0"]


@pytest.fixture()
def tiled(tmp_path):
    src = yolo_set(tmp_path / "drone")
    said: List[str] = []
    done = tile_dataset(src, tmp_path / "tiles", TileConfig(size=(320, 320)), progress=False, say=said.append)
    return src, tmp_path / "tiles", done, said


def test_every_tile_is_its_window_of_the_source_with_the_boxes_inside_it(tiled):
    src, out, done, said = tiled
    assert [d.split for d in done] == ["train", "val"]
    for split, stems in (("train", "ab"), ("val", "c")):
        data = load(out / "annotations" / f"instances_{split}.json")
        assert {im["source"]["file_name"] for im in data["images"]} == {f"{split}/{s}.png" for s in stems}  # split kept
        windows = tile_windows(*SIZE, (320, 320), 0.2)
        assert len(data["images"]) == len(stems) * len(windows)  # every window, none empty dropped by default
        tiles = {im["id"]: im for im in data["images"]}
        for im in data["images"]:
            x0, y0, x1, y1 = im["source"]["window"]
            source = noise("abc".index(im["source"]["file_name"][-5]))
            cut = np.asarray(PIL.Image.open(out / "images" / split / im["file_name"]))
            assert cut.shape == (320, 320, 3) == (im["height"], im["width"], 3)
            assert np.array_equal(cut, source[y0:y1, x0:x1])
        for a in data["annotations"]:
            tile = tiles[a["image_id"]]
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= tile["width"] + 1e-6 and y + h <= tile["height"] + 1e-6
    train = load(out / "annotations" / "instances_train.json")
    names = {c["id"]: c["name"] for c in train["categories"]}
    # the first car of a.png lies whole in the first tile, at its own pixels
    first = next(im for im in train["images"] if im["source"]["file_name"] == "train/a.png" and im["source"]["window"] == [0, 0, 320, 320])
    kept = [(names[a["category_id"]], a["bbox"]) for a in train["annotations"]
            if a["image_id"] == first["id"] and not a["iscrowd"]]
    assert kept == [("car", pytest.approx([20, 30, 14, 10], abs=0.02))]
    assert done[0].summary(TileConfig(size=(320, 320))).startswith("train: 2 images -> 24 tiles; 6 boxes -> ")
    assert said[-1].startswith(f"wrote {out} (tiles of 320x320, overlap 0.2); train on the tiles: dfine train --data ")


def test_a_box_astride_a_seam_is_kept_where_most_of_it_is_and_a_sliver_is_a_crowd_region(tiled):
    """b.png's 40x60 car at x 560..600 lies whole in the tile from x 512 and 16 px of it in the tile
    from x 256 (..576): kept there at its own size, a crowd region (ignored) here."""
    _, out, _, said = tiled
    data = load(out / "annotations" / "instances_train.json")
    b = {im["id"]: im["source"]["window"] for im in data["images"] if im["source"]["file_name"] == "train/b.png"}
    at = {tuple(b[a["image_id"]]): (a["bbox"], a["iscrowd"]) for a in data["annotations"]
          if a["image_id"] in b and a["category_id"] == 1 and abs(a["bbox"][1] - 200) < 0.05}
    assert at == {(512, 0, 832, 320): (pytest.approx([48, 200, 40, 60], abs=0.05), 0),
                  (256, 0, 576, 320): (pytest.approx([304, 200, 16, 60], abs=0.05), 1)}
    # the 490x590 box is larger than any tile holds half of: said with its image, never dropped unsaid
    assert any(line.startswith("note: 1 box of train is larger than any tile holds 50% of (train/b.png (490x590 box))")
               for line in said)


def test_empty_tiles_are_left_out_by_a_seeded_fraction_and_counted(tmp_path):
    src = yolo_set(tmp_path / "drone")
    keep_all = tile_dataset(src, tmp_path / "all", TileConfig(size=(320, 320)), progress=False, say=lambda s: None)
    none = tile_dataset(src, tmp_path / "none", TileConfig(size=(320, 320), empty=0.0), progress=False,
                        say=lambda s: None)
    assert keep_all[0].empty_kept > 0 and none[0].empty_kept == 0
    assert none[0].empty_left == keep_all[0].empty_kept
    assert none[0].tiles == keep_all[0].tiles - keep_all[0].empty_kept
    data = load(tmp_path / "none" / "annotations" / "instances_train.json")
    with_box = {a["image_id"] for a in data["annotations"] if not a["iscrowd"]}
    assert with_box == {im["id"] for im in data["images"]}
    assert "left out (--empty 0)" in none[0].summary(TileConfig(size=(320, 320), empty=0.0))
    # val keeps every tile (scored as sliced inference sees the images), and its file says so
    assert (none[1].split, none[1].empty_left, none[1].tiles) == ("val", 0, keep_all[1].tiles)
    assert load(tmp_path / "none" / "annotations" / "instances_val.json")["info"]["tiles"]["empty"] == 1.0
    assert data["info"]["tiles"]["empty"] == 0.0
    # the source folder, not the temporary COCO file a YOLO source was converted into (deleted at once)
    assert data["info"]["description"] == f"tiles of {src.resolve()} (train), made by dfine data tile"


def test_mostly_background_train_tiles_are_said_with_the_empty_fraction_that_evens_them(tmp_path):
    """All kept (the default) and most train tiles without a box: one note with the share, the
    epoch's length and an --empty that keeps about as many background tiles as tiles with boxes
    (a walk: 92% background, an epoch 12x longer, not a word); that --empty does so."""
    src = yolo_set(tmp_path / "drone")
    said: List[str] = []
    done = tile_dataset(src, tmp_path / "all", TileConfig(size=(160, 160)), progress=False, say=said.append)
    train = done[0]
    with_boxes = train.tiles - train.empty_kept
    assert train.empty_kept > 0.5 * train.tiles
    notes = [line for line in said if "hold no box" in line]
    assert notes == [f"note: {train.empty_kept} of the {train.tiles} train tiles "
                     f"({train.empty_kept / train.tiles:.0%}) hold no box, all kept (--empty 1): an epoch is "
                     f"{train.tiles / with_boxes:.0f}x the steps of the tiles with boxes; --empty "
                     f"{round(with_boxes / train.empty_kept, 2):g} keeps about as many background tiles as those, "
                     f"seeded (val keeps every tile): dfine data tile {src} -o {tmp_path / 'all'} --size 160 --empty "
                     f"{round(with_boxes / train.empty_kept, 2):g}"]
    fraction = float(notes[0].split("--empty ")[-1].split()[0])
    said.clear()
    thinned = tile_dataset(src, tmp_path / "thin", TileConfig(size=(160, 160), empty=fraction), progress=False,
                           say=said.append)[0]
    assert abs(thinned.empty_kept - with_boxes) <= 0.5 * with_boxes + 2 and thinned.tiles - thinned.empty_kept == with_boxes
    assert not [line for line in said if "hold no box" in line]
    # under half background: nothing said
    said.clear()
    done = tile_dataset(src, tmp_path / "big", TileConfig(size=(640, 640)), progress=False, say=said.append)
    assert done[0].empty_kept <= 0.5 * done[0].tiles and not [line for line in said if "hold no box" in line]


def test_the_tiles_folder_is_a_dataset_train_reads_and_records_its_source(tiled):
    from dfine.recipes import detect_format, find_coco_splits
    src, out, _, _ = tiled
    assert detect_format(out) == "coco"
    splits = find_coco_splits(out)
    assert {s: folder for s, (_, folder) in splits.items()} == {"train": (out / "images" / "train").resolve(),
                                                                  "val": (out / "images" / "val").resolve()}
    info = tiles_info(splits["val"][0])
    assert info["source"] == str(src.resolve()) and info["size"] == [320, 320] and info["split"] == "val"
    assert tiles_info(src / "data.yaml") is None


def test_data_check_of_tiles_counts_the_boxes_at_the_tile_size(tiled, capsys):
    """The tiles are the model's input as they are (the printed train command's --imgsz): a walk's
    320 px tiles were counted at --imgsz 640, their boxes twice their size."""
    _, out, _, _ = tiled
    assert main(["data", "check", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "as the model sees them at --imgsz 320 (images resized to 320x320)" in printed and "--imgsz 640" not in printed
    assert main(["data", "check", str(out), "--imgsz", "640"]) == 0  # given: as given
    assert "as the model sees them at --imgsz 640" in capsys.readouterr().out


def test_tiling_again_replaces_its_own_folder_and_refuses_others(tmp_path, capsys):
    src = yolo_set(tmp_path / "drone")
    out = tmp_path / "tiles"
    assert main(["data", "tile", str(src), "-o", str(out), "--size", "320", "--no-progress"]) == 0
    assert "replacing" not in capsys.readouterr().out
    assert main(["data", "tile", str(src), "-o", str(out), "--size", "500", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert f"note: replacing the earlier tiling in {out} (tiles of 320x320 of {src.resolve()})" in said
    names = {p.name for p in (out / "images" / "train").iterdir()}
    assert names and all(n.split("_x")[1].split("_y")[0] in {"0", "400", "500"} for n in names)  # no 320 tile left
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.jpg").write_bytes(b"x")
    for argv, expected in (
            (["-o", str(other)], f"error: -o {other} already holds files that are not tiles of dfine's; give a new "
                                 f"or empty folder"),
            (["-o", str(src / "tiles")], f"error: -o {src / 'tiles'} is inside the dataset folder {src.resolve()}"),
            (["--size", "16"], "error: --size 16 16: a tile needs at least 32 px a side (N or H W)"),
            (["--size", "1", "2", "3"], "error: --size takes N or H W, got 1 2 3"),
            (["--overlap", "1"], "error: --overlap 1.0: a fraction of the tile, 0 or more and below 1"),
            (["--min-visible", "0"], "error: --min-visible 0.0: the fraction of a box a tile must hold")):
        capsys.readouterr()
        assert main(["data", "tile", str(src), *argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(expected) and len(err.strip().splitlines()) == 1
    assert (other / "keep.jpg").read_bytes() == b"x"
    assert not (src / "tiles").exists()


def test_default_folder_is_beside_the_dataset(tmp_path, capsys):
    src = yolo_set(tmp_path / "drone")
    assert main(["data", "tile", str(src), "--size", "400", "--no-progress"]) == 0
    assert (tmp_path / "drone_tiles400" / "annotations" / "instances_val.json").is_file()
    assert f"wrote {tmp_path / 'drone_tiles400'} (tiles of 400x400" in capsys.readouterr().out
    # non-square tiles apart from the square ones of either side (a walk's 256x384 tiling replaced its 384x384 one)
    assert main(["data", "tile", str(src), "--size", "256", "400", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert f"wrote {tmp_path / 'drone_tiles256x400'} (tiles of 256x400 (height x width), overlap" in said
    assert (tmp_path / "drone_tiles400" / "annotations" / "instances_val.json").is_file()


def test_tiny_boxes_at_the_input_size_are_said_with_the_tiling_command(tmp_path):
    """At 640 px a 4000 px photo's 20 px cars are 3 px: the start of training says so, with the
    tiling; on the tiles nothing is said (each box keeps its pixels)."""
    from dfine.data.coco import CocoDetection
    from dfine.data.transforms import DetectionTransform, build_op
    from dfine.engine.trainer import Trainer

    ann = tmp_path / "big.json"
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 4000, "height": 3000} for i in range(1, 4)]
    anns = [{"id": k, "image_id": 1 + k % 3, "category_id": 1, "bbox": [10 * k, 10, 20, 16], "area": 320, "iscrowd": 0}
            for k in range(1, 13)]
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "car"}]}))
    resize = DetectionTransform([("Resize", build_op("Resize", {"size": [640, 640]}))])

    def note(ds, data):
        command = types.SimpleNamespace(data=str(data)) if data else None
        return Trainer._tiny_boxes_note(types.SimpleNamespace(train_set=ds, command=command))

    big = CocoDetection(tmp_path, ann, transforms=resize)
    said = note(big, tmp_path / "drone")
    assert said == ("note: 100% of the train boxes are under 8 px at the model's 640x640 input (median 3.3 px), too "
                    "small to learn or find, because their images are shrunk 5.4x to fit: train on tiles that keep "
                    f"their pixels (dfine data tile {tmp_path / 'drone'} --size 640, then --data "
                    f"{tmp_path / 'drone_tiles640'}; predict with --slice)")
    for im in images:
        im["width"], im["height"] = 640, 480  # the same boxes in small images: tiles would not help
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "car"}]}))
    assert note(CocoDetection(tmp_path, ann, transforms=resize), None) is None
    for a in anns:
        a["bbox"][2:] = [4, 4]
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "car"}]}))
    assert note(CocoDetection(tmp_path, ann, transforms=resize), None).endswith(
        "they are that small in the images: a larger --imgsz enlarges them (slower steps)")


def test_tiles_train_and_the_printed_commands_use_the_model_on_whole_images(tmp_path, capsys, monkeypatch):
    """The path a drone user walks: tile -> train on the tiles -> the printed commands, run as printed:
    ``whole:`` scores the weights on the source's whole val images with --slice at the tiles' size
    (its own metrics file, beside the tiles' eval.json), and ``predict:`` slices the source's images.
    The source names no classes: the ``--names`` the tiling was given come back in ``whole:``."""
    import shlex
    src = yolo_set(tmp_path / "drone", named=False)
    monkeypatch.chdir(tmp_path)
    assert main(["data", "tile", "drone", "--size", "320", "--names", "car,person", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(train_one_step("drone_tiles320")) == 0
    printed = capsys.readouterr().out
    assert f"(trained on tiles of {src.resolve()}: predict slices whole images" in printed
    commands = {k: shlex.split(printed.split(f"  {k + ':':8s} ")[1].splitlines()[0]) for k in ("whole", "predict")}
    weights = Path(commands["whole"][3])
    assert commands["whole"] == ["dfine", "eval", "-r", str(weights), "--data", str(src.resolve()), "--slice", "320",
                                 "--names", "car,person"]
    assert commands["predict"][:5] == ["dfine", "predict", "-m", str(weights), str((src / "images" / "val").resolve())] \
        and commands["predict"][5:7] == ["--slice", "320"]
    assert main(commands["whole"][1:] + ["--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "on the YOLO val split of" in out and re.search(r"\(1 image, \d+ box(es)?, sliced: tiles of 320x320, overlap 0.2, nms\)", out)
    sliced = json.loads(weights.with_name(weights.name + ".eval_sliced.json").read_text())
    assert sliced["num_images"] == 1 and set(sliced["names"].values()) == {"car", "person"}
    # how the images were cut is in the file (two sliced evaluations compare only at the same settings)
    assert sliced["slice"] == {"tile": [320, 320], "overlap": 0.2, "merge": "nms", "iou": 0.5, "full": False}
    assert main(commands["predict"][1:] + ["-o", "pred"]) == 0
    assert isinstance(json.loads((tmp_path / "pred" / "predictions.json").read_text()), list)
    assert PIL.Image.open(tmp_path / "pred" / "c.png").size == SIZE  # the whole image, drawn
    assert "trained on" not in capsys.readouterr().err


def test_non_square_tiles_train_at_their_size_as_printed(tmp_path, capsys, monkeypatch):
    """dfine data tile --size 256 384 prints a train command with --imgsz 256 384 (it printed none, and
    training ran at 640x640: a walk); run as printed, the checkpoint is 256x384 and knows its tiles,
    and the printed whole: command slices at 256 384."""
    import shlex

    import torch
    yolo_set(tmp_path / "drone")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "tile", "drone", "--size", "256", "384", "--no-progress"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    train = shlex.split(printed.split("train on the tiles: ")[1].split(", then")[0])
    assert train == ["dfine", "train", "--data", "drone_tiles256x384", "--imgsz", "256", "384",
                     "--model", "dfine_n"]
    fast = [a for a in train_one_step("x") if a not in ("--imgsz", "320")][5:]  # train_one_step's options, not its size
    assert main(train[1:] + fast) == 0
    out = capsys.readouterr().out
    ckpt = torch.load(tmp_path / "run" / "last.pth", map_location="cpu", weights_only=False)
    assert list(ckpt["config"]["eval_spatial_size"]) == [256, 384] and ckpt["tiles"]["size"] == [256, 384]
    whole = shlex.split(out.split(f"  {'whole:':8s} ")[1].splitlines()[0])
    assert whole[-3:] == ["--slice", "256", "384"], whole
    tiles = shlex.split(out.split(f"  {'eval:':8s} ")[1].splitlines()[0])
    assert tiles[tiles.index("--imgsz"):tiles.index("--imgsz") + 3] == ["--imgsz", "256", "384"], tiles
    assert main(tiles[1:] + ["--no-progress"]) == 0 and "--imgsz" not in capsys.readouterr().err
    assert main(whole[1:] + ["--no-progress"]) == 0
    assert "sliced: tiles of 256x384 (height x width), overlap 0.2" in capsys.readouterr().out


def test_a_model_trained_on_tiles_says_so_when_used_on_whole_images_unsliced(tmp_path, capsys, monkeypatch):
    """A walk: the tile-trained model run on a 4000 px photo without --slice found nothing, and eval
    gave AP 0.3 (2.0 sliced), with no word why. The checkpoint, its export and its converted copy
    carry the tiles; predict, eval and Detector say once, when an image is 1.5x the tile or more,
    that --slice runs it as trained; sliced (or on tiles) they say nothing."""
    import dfine
    from dfine.checkpoint import extract_ema
    src = yolo_set(tmp_path / "drone")
    monkeypatch.chdir(tmp_path)
    tile_dataset(src, tmp_path / "tiles", TileConfig(size=(320, 320)), progress=False, say=lambda s: None)
    assert main(train_one_step("tiles")) == 0
    weights = tmp_path / "run" / "last.pth"
    capsys.readouterr()
    said = "was trained on tiles of 320x320 cut by dfine data tile"
    image = src / "images" / "val" / "c.png"  # 1000x700: shrunk 3.1x at the 320 px input
    assert main(["predict", "-m", str(weights), str(image), "-o", "pred"]) == 0
    err = capsys.readouterr().err
    assert (f"note: last.pth {said}; this 1000x700 image is shrunk 3.1x to its input, its objects with it: "
            f"--slice 320 (Detector(slice=320)) runs it on tiles as trained") in err
    assert main(["eval", "-r", str(weights), "--data", str(src), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert (f"note: last.pth {said}; the 1 val image is larger (up to 1000x700, shrunk 3.1x to its input whole, "
            f"its objects with it): add --slice 320 to score it on tiles, as it is used") in err
    assert main(["eval", "-r", str(weights), "--data", "tiles", "--no-progress"]) == 0  # on tiles: as trained
    assert said not in capsys.readouterr().err
    assert main(["export", "-r", str(weights), "--format", "onnx", "--no-simplify"]) == 0
    capsys.readouterr()
    # the export scored on the set: the set's note, as the checkpoint's (not the first large image's, CLI words)
    assert main(["eval", "-r", str(weights.with_suffix(".onnx")), "--data", str(src), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert (f"note: last.onnx {said}; the 1 val image is larger (up to 1000x700, shrunk 3.1x to its input whole, "
            f"its objects with it): add --slice 320 to score it on tiles, as it is used") in err
    assert err.count(said) == 1 and "Detector(" not in err
    for model in (weights.with_suffix(".onnx"), extract_ema(weights)):
        det = dfine.Detector(model)
        assert "trained on tiles of 320x320" in repr(det)
        det([image, image])
        assert capsys.readouterr().err.count(said) == 1  # once a detector
        sliced = dfine.Detector(model, slice=320)
        sliced(image)
        assert "sliced 320x320" in repr(sliced) and said not in capsys.readouterr().err
        dfine.Detector(model, slice=(320, 352))  # within 1.25x of the trained tile: nothing said
        assert said not in capsys.readouterr().err
    # sliced at another size: its objects reach the input at another scale than trained (a walk: --slice 640)
    assert main(["predict", "-m", str(weights), str(image), "-o", "pred2", "--slice", "640"]) == 0
    assert (f"note: last.pth {said}; --slice 640 cuts tiles of 640x640, so its objects reach the input 2.0x smaller "
            f"than in training: --slice 320 cuts them as trained") in capsys.readouterr().err
    dfine.Detector(weights, slice=(160, 224))  # the sides scale apart: said for each
    assert ("--slice 160 224 cuts tiles of 160x224 (height x width), so its objects reach the input 2.0x as tall "
            "and 1.4x as wide as in training: --slice 320 cuts them as trained") in capsys.readouterr().err


def test_tiles_of_sides_that_are_no_multiple_of_32_train_at_the_input_above(tmp_path, capsys, monkeypatch):
    """A walk's `dfine data tile --size 400 250` printed `dfine train ... --imgsz 400 250`, which training refuses
    (the input is a multiple of 32): the command names the multiples above, and it trains; the tiles are cut at
    the size asked, which the model records for --slice."""
    import shlex

    import torch
    yolo_set(tmp_path / "drone")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "tile", "drone", "--size", "250x400", "--no-progress"]) == 0  # as the folder writes it
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed.endswith("(dfine predict, dfine eval); --imgsz 256 416: the model's input takes multiples of 32, "
                            "the tiles are enlarged to it")
    train = shlex.split(printed.split("train on the tiles: ")[1].split(", then")[0])
    assert train == ["dfine", "train", "--data", "drone_tiles250x400", "--imgsz", "256", "416", "--model", "dfine_n"]
    fast = [a for a in train_one_step("x") if a not in ("--imgsz", "320")][5:]
    assert main(train[1:] + fast) == 0
    ckpt = torch.load(tmp_path / "run" / "last.pth", map_location="cpu", weights_only=False)
    assert list(ckpt["config"]["eval_spatial_size"]) == [256, 416] and ckpt["tiles"]["size"] == [250, 400]


def test_other_tile_note_names_each_side_when_they_scale_apart():
    """A walk's 256x384 model sliced at 320 was told its objects were '1.2x smaller': they are 0.8x as tall
    and 1.2x as wide. A tile within 1.25x on each side says nothing; one side beyond it does."""
    from dfine.slicing import other_tile_note
    assert other_tile_note("m", (256, 384), (320, 320)) == (
        "note: m was trained on tiles of 256x384 (height x width) cut by dfine data tile; "
        "--slice 320 cuts tiles of 320x320, so its objects reach the input 0.8x as tall and 1.2x as wide as in "
        "training: --slice 256 384 cuts them as trained")
    assert other_tile_note("m", (320, 320), (640, 640)).endswith("reach the input 2.0x smaller than in training: "
                                                                  "--slice 320 cuts them as trained")
    assert other_tile_note("m", (320, 320), (320, 352)) is None and other_tile_note("m", (320, 320), (300, 260)) is None
    assert "1.0x as tall and 0.8x as wide" in other_tile_note("m", (320, 320), (320, 400))


def test_data_check_names_the_tiling_when_the_boxes_are_tiny_at_its_imgsz(tmp_path, capsys):
    """The drone set's 10-16 px boxes in 1000x700 images are 4-6 px at --imgsz 320 (shrunk 2.6x):
    the check says so with the tiling command; at --imgsz 960 (1.2x) it says nothing of it."""
    src = tmp_path / "drone"
    yolo_set(src)
    w, h = SIZE
    for stem in "ab":  # more small boxes: a dozen in all
        yolo_labels(src / "labels" / "train" / f"{stem}.txt",
                    [f"0 {(50 + 60 * k) / w:.6f} {(50 + 40 * k) / h:.6f} {12 / w:.6f} {12 / h:.6f}" for k in range(8)])
    main(["data", "check", str(src), "--imgsz", "320"])
    out = capsys.readouterr().out
    train = out.split("\ntrain:")[1].split("\nval:")[0]
    assert (f"  note: 100% of the boxes are under 8 px at the model's 320x320 input (median 4.6 px), too small to "
            f"learn or find, because their images are shrunk 2.6x to fit: train on tiles that keep their pixels "
            f"(dfine data tile {src} --size 320, then --data {tmp_path / 'drone_tiles320'}; predict with --slice)"
            ) in train
    main(["data", "check", str(src), "--imgsz", "960"])
    assert "too small to learn" not in capsys.readouterr().out


def test_the_commands_after_training_on_tiles_carry_their_size_and_overlap():
    from dfine.engine.summary import tiled_commands
    tiles = {"source": "/d/drone", "images": "/d/drone/images/val", "size": [480, 640], "overlap": 0.3}
    out = tiled_commands({"eval": "E", "export": "X", "predict": "P"}, Path("/r/best.pth"), tiles, conf=0.31)
    assert out == {"eval": "E", "export": "X",
                   "predict": "dfine predict -m /r/best.pth /d/drone/images/val --slice 480 640 --overlap 0.3 --conf 0.31",
                   "whole": "dfine eval -r /r/best.pth --data /d/drone --slice 480 640 --overlap 0.3"}


def test_dfine_evaluate_slices_as_eval_does(tmp_path, monkeypatch):
    """``dfine.evaluate(slice=N)`` is ``dfine eval --slice N``: the sliced metrics file, returned."""
    import dfine
    src = yolo_set(tmp_path / "drone")
    monkeypatch.chdir(tmp_path)
    tile_dataset(src, tmp_path / "tiles", TileConfig(size=(320, 320)), progress=False, say=lambda s: None)
    assert main(train_one_step("tiles")) == 0
    result = dfine.evaluate(tmp_path / "run" / "last.pth", src, slice=320, progress=False)
    assert result["path"] == str(tmp_path / "run" / "last.pth.eval_sliced.json") and result["num_images"] == 1


@pytest.mark.parametrize("value, said", [
    ("640", "slice='640' is no tile size; slice= takes True (tiles of the model's input size), a tile size N or "
            "(height, width) in pixels"),
    (0, "slice tile must be (height, width) of at least 32 px, got (0, 0)")])
def test_dfine_evaluate_checks_slice_before_any_work(tmp_path, monkeypatch, capsys, value, said):
    """``slice=0`` converted the dataset (3 lines printed) before ``--slice 0`` was refused, and ``slice="640"``
    said what it takes with no verb (a walk): one line, nothing done before it."""
    import dfine
    src = yolo_set(tmp_path / "drone")
    model = tmp_path / "m.pth"
    model.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DfineError) as e:
        dfine.evaluate(model, src, slice=value)
    assert str(e.value) == said
    assert capsys.readouterr() == ("", "") and sorted(tmp_path.rglob("*")) == before


def test_a_folder_split_by_a_seed_points_predict_at_one_val_image(tmp_path):
    """One flat folder (images with their labels beside them, split 80/20 by a seed): the tiles'
    ``images`` (what the ``predict:`` hint after training names) is a val image, not the folder
    that the train images come from too. Its names file is a darknet ``aerial.names``."""
    src = tmp_path / "flat"
    w, h = SIZE
    for i in range(5):
        image = src / f"img{i}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(noise(i)).save(image)
        yolo_labels(src / f"img{i}.txt", [f"{i % 2} 0.5 0.5 {20 / w:.6f} {20 / h:.6f}"])
    (src / "aerial.names").write_text("car\nperson\n")
    said: List[str] = []
    done = tile_dataset(src, tmp_path / "tiles", TileConfig(size=(320, 320)), progress=False, say=said.append)
    val = next(d for d in done if d.split == "val")
    assert 1 <= val.images < 5
    info = tiles_info(val.ann_file)
    sources = {t["source"]["file_name"] for t in json.loads(val.ann_file.read_text())["images"]}
    assert Path(info["images"]).is_file() and Path(info["images"]).name in sources
    train = json.loads(next(d for d in done if d.split == "train").ann_file.read_text())
    assert [c["name"] for c in train["categories"]] == ["car", "person"]


def test_identical_tiles_of_different_photos_are_not_called_copies(tmp_path, capsys):
    """A walk's microscope photos shared a blank 320 px corner: their tiles there were byte for byte the same,
    and the tiles' check and training said 'photos in two splits' and '62 background images ... copies: remove
    them' of tiles dfine had cut. Identical regions make identical tiles; the source's own check is where
    copies of photos are looked for (it says nothing here: the photos differ)."""
    src = yolo_set(tmp_path / "drone")
    for split, stem in (("train", "b"), ("val", "c")):  # the same black corner; a box in b's, none in c's
        path = src / "images" / split / f"{stem}.png"
        pixels = np.asarray(PIL.Image.open(path)).copy()
        pixels[:320, :320] = 0
        PIL.Image.fromarray(pixels).save(path)
    tile_dataset(src, tmp_path / "tiles", TileConfig(size=(320, 320)), progress=False, say=lambda s: None)
    assert main(["data", "check", str(src)]) == 0
    source_said = capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "tiles")]) == 0
    said = capsys.readouterr().out
    assert "same bytes" not in said and "copy" not in said and "two splits" not in said, said
    assert "same bytes" not in source_said and "two splits" not in source_said


def test_a_missing_dataset_to_tile_is_named_without_an_option_it_has_not(tmp_path, capsys):
    """``dfine data tile nodrone`` said '--data nodrone not found' of a command that has no --data (a walk)."""
    assert main(["data", "tile", str(tmp_path / "nodrone")]) == 2
    assert capsys.readouterr().err.strip() == f"error: dataset {tmp_path / 'nodrone'} not found"


def test_a_wrong_tile_config_keyword_names_the_one_meant():
    """``TileConfig(tile=...)`` was a bare TypeError (a walk): ``SliceConfig`` calls the size ``tile``."""
    for given, said in (({"tile": (320, 320)}, "dfine.data.tile.TileConfig() takes no tile=; did you mean size=?"),
                        ({"min_visibl": 0.3}, "dfine.data.tile.TileConfig() takes no min_visibl=; did you mean "
                                              "min_visible=?")):
        with pytest.raises(DfineError) as e:
            TileConfig(**given)
        assert str(e.value) == said


def test_tiled_split_counts_are_plain_ints(tiled):
    """A ``TiledSplit``'s repr showed ``pieces=np.int64(112)`` (a walk): its counts are plain ints."""
    src, out, done, said = tiled
    assert any(d.pieces for d in done) and "np." not in repr(done)
    counts = ("images", "tiles", "boxes", "kept", "pieces", "empty_kept", "empty_left", "whole")
    assert all(type(getattr(d, k)) is int for d in done for k in counts)
