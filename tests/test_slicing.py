"""Sliced inference: tile windows, NMS/NMM merging across tiles, and Detector(slice=...) / predict
--slice finding small objects that the downscaled whole image loses (with a blob-finding stand-in
engine that, like a real detector, misses objects under a few input pixels)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dfine.cli import main
from dfine.errors import DfineError
from dfine.inference import Detector
from dfine.slicing import SliceConfig, cut_sides, join_cut_pieces, merge_detections, tile_windows
from tests.blob_engine import patch_detector


def test_tile_windows_cover_the_image_with_the_overlap():
    w = tile_windows(1000, 300, (128, 256), 0.25)
    assert (w[:, 2] - w[:, 0] == 256).all() and (w[:, 3] - w[:, 1] == 128).all()
    xs, ys = sorted(set(w[:, 0])), sorted(set(w[:, 1]))
    assert xs[0] == 0 and xs[-1] == 1000 - 256 and ys[0] == 0 and ys[-1] == 300 - 128
    assert max(np.diff(xs)) == 192 and max(np.diff(ys)) == 96  # stride = tile * (1 - overlap)
    assert len(w) == len(xs) * len(ys)
    covered = np.zeros((300, 1000), bool)
    for x0, y0, x1, y1 in w:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    np.testing.assert_array_equal(tile_windows(100, 50, (128, 128), 0.2), [[0, 0, 100, 50]])


def test_merge_nms_and_nmm():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [20, 0, 40, 10], [30, 0, 40, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5], np.float32)
    labels = np.array([0, 0, 1, 0, 0])
    b, s, l = merge_detections(boxes, scores, labels, "nms", 0.5)
    # the shifted duplicate goes, the other class stays, and so does the half box (IoU 0.5 is not > 0.5)
    assert s.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5]) and l.tolist() == [0, 1, 0, 0]
    b, s, l = merge_detections(boxes, scores, labels, "nmm", 0.5)
    # the half box [30, 40] (cut by a tile edge) is joined to the whole one; the duplicates to one box
    assert s.tolist() == pytest.approx([0.9, 0.7, 0.6]) and l.tolist() == [0, 1, 0]
    np.testing.assert_array_equal(b, [[0, 0, 11, 11], [0, 0, 10, 10], [20, 0, 40, 10]])
    empty = merge_detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    assert [len(x) for x in empty] == [0, 0, 0]


def _small_objects(w=1024, h=768, size=10, step=90):
    """A large dark image with bright ``size`` px squares on a grid; their boxes."""
    image = np.full((h, w, 3), 15, np.uint8)
    boxes = []
    for y in range(20, h - size, step):
        for x in range(30, w - size, step):
            image[y:y + size, x:x + size] = 240
            boxes.append([x, y, x + size, y + size])
    return Image.fromarray(image), np.array(boxes, np.float32)


def _matched(found, truth, tol=1.5):
    return sum(bool((np.abs(found - t).max(axis=1) <= tol).any()) for t in truth) if len(found) else 0


@pytest.mark.parametrize("merge", ["nms", "nmm"])
def test_sliced_detector_finds_small_objects_the_whole_image_loses(monkeypatch, merge):
    engine = patch_detector(monkeypatch, imgsz=(128, 128), min_px=4)
    image, truth = _small_objects()
    [plain] = Detector("any.pth")(image)
    assert len(plain) == 0  # 10 px squares are 1.25 px at 128/1024: missed
    det = Detector("any.pth", batch_size=8, slice=SliceConfig(overlap=0.25, merge=merge))
    engine.run.calls.clear()
    [sliced] = det(image)
    assert sliced.image_size == image.size
    assert _matched(sliced.boxes, truth) == len(truth) == len(sliced)  # every square once, across tile edges
    tiles = len(tile_windows(1024, 768, (128, 128), 0.25))
    assert engine.run.calls == [8] * (tiles // 8) + ([tiles % 8] if tiles % 8 else [])  # tiles batched


@pytest.mark.parametrize("merge", ["nms", "nmm"])
def test_objects_no_tile_sees_whole_are_joined(monkeypatch, merge):
    """128 px tiles, stride 96: a 60 px bar across the strip x 192..224 is cut by both tiles that hold
    it, a 60 px square on a tile corner by four; each comes back as one box around the object."""
    patch_detector(monkeypatch, imgsz=(128, 128), min_px=4)
    image = np.full((768, 1024, 3), 15, np.uint8)
    truth = np.array([[180, 330, 240, 350], [470, 470, 530, 530]], np.float32)
    for x0, y0, x1, y1 in truth.astype(int):
        image[y0:y1, x0:x1] = 240
    [d] = Detector("any.pth", slice=SliceConfig(overlap=0.25, merge=merge))(Image.fromarray(image))
    assert len(d) == 2 and _matched(d.boxes, truth) == 2


def test_join_cut_pieces_joins_only_matching_pieces():
    windows = np.array([[0, 0, 100, 100], [80, 0, 180, 100], [0, 0, 100, 100], [80, 0, 180, 100]], np.float32)
    boxes = np.array([[60, 10, 100, 40], [80, 10, 130, 40],   # one object across the strip x 80..100
                      [70, 50, 100, 90], [80, 60, 120, 70]], np.float32)  # spans across differ: two objects
    sides = cut_sides(boxes, windows, 300, 100)
    assert sides.tolist() == [[False, False, True, False], [True, False, False, False]] * 2
    b, s, l, cut = join_cut_pieces(boxes, np.array([0.9, 0.6, 0.8, 0.7], np.float32), np.zeros(4, np.int64), sides)
    assert len(b) == 3 and b.tolist()[0] == [60, 10, 130, 40] and s[0] == pytest.approx(0.9) and not cut[0]
    assert cut[1:].all()  # unjoined pieces stay marked cut
    other = join_cut_pieces(boxes[:2], np.ones(2, np.float32), np.array([0, 1]), sides[:2])
    assert len(other[0]) == 2  # different classes are not joined


def test_full_image_pass_adds_large_objects(monkeypatch):
    patch_detector(monkeypatch, imgsz=(128, 128), min_px=4)
    image, truth = _small_objects()
    arr = np.asarray(image).copy()
    arr[300:700, 300:700] = 240  # larger than any tile: only the downscaled whole image sees it whole
    big = np.array([[300, 300, 700, 700]], np.float32)
    [with_full] = Detector("any.pth", slice=SliceConfig(tile=(128, 128), full=True, merge="nmm"))(Image.fromarray(arr))
    assert _matched(with_full.boxes, big, tol=16) == 1  # 1 model pixel is 8 image pixels


def test_predict_cli_slice(tmp_path, monkeypatch, capsys):
    patch_detector(monkeypatch, imgsz=(128, 128), min_px=4)
    image, truth = _small_objects()
    image.save(tmp_path / "big.png")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "big.png"), "-m", "any.pth", "-o", str(out), "--slice", "--overlap", "0.25"]) == 0
    results = json.loads((out / "predictions.json").read_text())
    found = np.array([[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]] for r in results])
    assert len(results) == len(truth) == _matched(found, truth)
    tiles = len(tile_windows(*image.size, (128, 128), 0.25))  # the summary says how many tiles the model ran on
    assert f"1 image -> {out} ({len(results)} detections, sliced into {tiles} tiles of 128x128, " in capsys.readouterr().out
    for argv, expected in [(["--slice", "1", "2", "3"], "tile size N or H W"), (["--slice", "--overlap", "1.5"], "overlap"),
                           (["--slice", "16"], "at least 32 px")]:
        assert main(["predict", str(tmp_path / "big.png"), "-m", "any.pth", "-o", str(out), *argv]) == 2
        assert expected in capsys.readouterr().err
    with pytest.raises(DfineError, match="unknown merge"):
        SliceConfig(merge="wbf")



@pytest.mark.parametrize("value", ["big", (1.5, 2), (320, 320, 320), 5.5, ()])
def test_a_slice_value_that_is_no_tile_is_one_line(value):
    """``Detector(..., slice="big")`` read "invalid literal for int() with base 10: 'b'" (a walk): the argument
    and what it takes are named."""
    from dfine.slicing import slice_config
    with pytest.raises(DfineError) as e:
        slice_config(value)
    assert str(e.value) == (f"slice={value!r} is no tile size; slice= takes True (tiles of the model's input size), "
                            f"a tile size N or (height, width) in pixels")
    assert slice_config((320,)) == slice_config(320) == SliceConfig(tile=(320, 320))


def test_a_wrong_slice_config_keyword_names_the_one_meant():
    """``SliceConfig(size=(320, 320))`` was a bare TypeError (a walk): ``TileConfig`` calls the tile ``size``."""
    for given, said in (({"size": (320, 320)}, "dfine.slicing.SliceConfig() takes no size=; did you mean tile=?"),
                        ({"overlp": 0.3}, "dfine.slicing.SliceConfig() takes no overlp=; did you mean overlap=?")):
        with pytest.raises(DfineError) as e:
            SliceConfig(**given)
        assert str(e.value) == said
    assert SliceConfig(tile=(320, 320)).tile == (320, 320)
