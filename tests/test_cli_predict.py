"""``dfine predict``: coco128 folder -> 128 annotated images + a COCO results JSON that
faster-coco-eval accepts; a generated video round-trips; bad inputs end in one line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

import dfine
from dfine.cli import main
from dfine.errors import DfineError
from dfine.data.mscoco import MSCOCO_CATEGORY_IDS, MSCOCO_NAMES
from dfine.checkpoint import load_model

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Random dfine_n at 320x320, saved the way our trainer saves (config, names, category ids)."""
    torch.manual_seed(0)
    model = dfine.build_model("dfine_n", eval_spatial_size=(320, 320))
    path = tmp_path_factory.mktemp("model") / "rand_n.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config),
                "class_names": list(MSCOCO_NAMES), "category_ids": list(MSCOCO_CATEGORY_IDS)}, path)
    return path


@pytest.fixture(scope="module")
def onnx_model(checkpoint):
    """The checkpoint exported with ``dfine export`` (ONNX Runtime keeps the 128-image run fast)."""
    out = checkpoint.with_suffix(".onnx")
    assert main(["export", "-r", str(checkpoint), "--no-simplify", "-o", str(out)]) == 0
    return out


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_predict_coco128_writes_images_and_coco_json(coco128, onnx_model, tmp_path):
    from faster_coco_eval import COCO, COCOeval_faster
    out = tmp_path / "pred"
    assert main(["predict", str(coco128 / "train2017"), "--model", str(onnx_model), "--conf", "0.0",
                 "-b", "8", "-o", str(out)]) == 0
    images = sorted(p.name for p in out.glob("*.jpg"))
    assert images == sorted(p.name for p in (coco128 / "train2017").glob("*.jpg")) and len(images) == 128
    assert Image.open(out / images[0]).size == Image.open(coco128 / "train2017" / images[0]).size
    results = json.loads((out / "predictions.json").read_text())
    assert len(results) == 128 * 300
    assert {r["category_id"] for r in results} <= set(MSCOCO_CATEGORY_IDS)
    gt = COCO(str(coco128 / "annotations" / "instances_train2017.json"))
    dt = gt.loadRes(str(out / "predictions.json"))
    assert set(dt.getImgIds()) == set(gt.getImgIds())
    ev = COCOeval_faster(gt, dt, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert 0.0 <= ev.stats[0] < 0.05  # random weights: evaluated, and near zero


def test_predict_video_round_trips(onnx_model, tmp_path):
    cv2 = pytest.importorskip("cv2")
    src = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for i in range(30):  # 3 seconds at 10 fps
        frame = np.zeros((64, 96, 3), np.uint8)
        frame[:, : 3 * i] = 200
        writer.write(frame)
    writer.release()
    out = tmp_path / "pred"
    assert main(["predict", str(src), "--model", str(onnx_model), "--conf", "0.0", "-o", str(out)]) == 0
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (96, 64)
    cap.release()
    results = json.loads((out / "predictions.json").read_text())
    assert {r["image_id"] for r in results} == set(range(30))
    assert all("file_name" not in r and r["category_name"] in MSCOCO_NAMES for r in results)  # frames: no file


def test_predict_single_image_with_checkpoint(coco128, checkpoint, tmp_path):
    """The PyTorch path, one image: an annotated copy and its detections."""
    image = coco128 / "train2017" / "000000000009.jpg"
    out = tmp_path / "pred"
    assert main(["predict", str(image), "--model", str(checkpoint), "--conf", "0.0", "-o", str(out)]) == 0
    results = json.loads((out / "predictions.json").read_text())
    assert len(results) == 300 and {r["image_id"] for r in results} == {9}
    assert (out / image.name).is_file()
    # each entry names its file and class beside the ids (an id from a position says nothing)
    names = dict(zip(MSCOCO_CATEGORY_IDS, MSCOCO_NAMES))
    assert all(r["file_name"] == image.name and r["category_name"] == names[r["category_id"]] for r in results)
    assert list(results[0]) == ["image_id", "file_name", "category_id", "category_name", "bbox", "score"]


def test_folder_with_a_corrupt_image_processes_the_rest(onnx_model, tmp_path, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(src / f"{i}.jpg")
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "pred"
    assert main(["predict", str(src), "--model", str(onnx_model), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.jpg")) == ["0.jpg", "1.jpg", "2.jpg"]
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "Traceback" not in err


def test_several_sources_at_once(onnx_model, tmp_path, capsys):
    """``dfine predict a.jpg b/ "c/*.png"``: the images of every source, in the order given, each
    once; a video goes alone, and two images of one name are refused (their annotated copies would
    overwrite each other)."""
    for name in ("a/0.jpg", "a/1.jpg", "b/2.png", "b/3.png", "c.jpg", "d/0.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((48, 64, 3), 60, np.uint8)).save(tmp_path / name)
    out = tmp_path / "pred"
    argv = ["predict", str(tmp_path / "c.jpg"), str(tmp_path / "a"), str(tmp_path / "b" / "*.png"),
            str(tmp_path / "a" / "1.jpg"), "-m", str(onnx_model), "--conf", "0", "-o", str(out)]
    assert main(argv) == 0
    assert f"5 images -> {out} (" in capsys.readouterr().out  # a/1.jpg named twice: once
    results = json.loads((out / "predictions.json").read_text())
    assert list(dict.fromkeys(r["file_name"] for r in results)) == ["c.jpg", "0.jpg", "1.jpg", "2.png", "3.png"]
    assert sorted(p.name for p in out.iterdir()) == ["0.jpg", "1.jpg", "2.png", "3.png", "c.jpg", "predictions.json"]
    err = _one_line_error(capsys, ["predict", str(tmp_path / "a"), str(tmp_path / "d"), "-m", str(onnx_model),
                                   "-o", str(tmp_path / "o2")])
    assert f"{tmp_path / 'a' / '0.jpg'} and {tmp_path / 'd' / '0.jpg'} have the same file name" in err
    (tmp_path / "clip.mp4").write_bytes(b"")
    err = _one_line_error(capsys, ["predict", str(tmp_path / "c.jpg"), str(tmp_path / "clip.mp4"), "-m",
                                   str(onnx_model), "-o", str(tmp_path / "o3")])
    assert "clip.mp4 is a video: predict a video alone" in err


def test_bad_inputs_are_one_line_errors(onnx_model, checkpoint, tmp_path, capsys):
    bad_image = tmp_path / "bad.jpg"
    bad_image.write_bytes(b"garbage")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    good = tmp_path / "ok.png"
    Image.new("RGB", (64, 48)).save(good)
    wrong = tmp_path / "model.onnx"
    wrong.write_bytes(b"this is not onnx")
    cases = {
        "cannot read image": [str(bad_image), "--model", str(onnx_model)],
        "unsupported file type .txt": [str(text), "--model", str(onnx_model)],
        "holds no images": [str(empty), "--model", str(onnx_model)],
        "not found": [str(tmp_path / "missing.jpg"), "--model", str(onnx_model)],
        "not a readable ONNX model (": [str(good), "--model", str(wrong)],
        "a copy cut short or another file? Export it again (dfine export -r CHECKPOINT)": [str(good), "--model", str(wrong)],
        "unsupported model file": [str(good), "--model", str(text)],
        # the input given as the model (a walk's Detector("street.avi")): what to do with it
        f"{good} is an image, not a model (a .pth checkpoint, a zoo name, .onnx, OpenVINO .xml or TensorRT .engine): "
        f"give it to one: dfine predict {good} -m MODEL, or in Python dfine.Detector(MODEL)({str(good)!r})": [
            str(good), "--model", str(good)],
        f"{tmp_path / 'clip.AVI'} is a video, not a model": [str(good), "--model", str(tmp_path / "clip.AVI")],
        "is a text file, not a PyTorch checkpoint": [str(good), "--model", str(wrong.with_name("fake.pth"))],
        "was exported for 320x320": [str(good), "--model", str(onnx_model), "--imgsz", "640"],
        # a run's folder (two walks): the model files in it, the best weights first
        f"model {empty} is a folder, not a model file": [str(good), "--model", str(empty)],
        f"model {tmp_path} is a folder; give a model file in it, such as {tmp_path / 'fake.pth'} (it holds fake.pth, "
        f"model.onnx)": [str(good), "--model", str(tmp_path)],
    }
    wrong.with_name("fake.pth").write_bytes(b"nope")
    for expected, argv in cases.items():
        err = _one_line_error(capsys, ["predict", *argv, "-o", str(tmp_path / "out")])
        assert expected in err, (expected, err)


def test_unwritable_output_folder_fails_before_the_model(tmp_path, capsys, monkeypatch):
    """A folder that cannot be created (through a file, under /proc) or written is one line, and the
    model is never loaded."""
    import os

    def no_model(*a, **k):
        raise AssertionError("the model must not be loaded")
    monkeypatch.setattr("dfine.inference.Detector", no_model)
    good = tmp_path / "ok.png"
    Image.new("RGB", (64, 48)).save(good)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    outs = {str(blocker / "out"): "cannot be created", str(blocker): "cannot be created"}
    if os.path.isdir("/proc/self"):
        outs["/proc/x"] = "cannot be created"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        outs[str(locked)] = "cannot be created or written (Permission denied)"
    for out, expected in outs.items():
        err = _one_line_error(capsys, ["predict", str(good), "--model", "any.pth", "-o", out])
        assert expected in err and out in err and err.endswith("choose another with -o"), (out, err)


def test_a_model_that_fails_to_load_leaves_no_empty_output_folder(tmp_path, capsys, monkeypatch):
    """runs/predict was made before the model was loaded, and stayed behind, empty, when the model
    was not found; a folder of the user's stays."""
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "ok.png"
    Image.new("RGB", (64, 48)).save(good)
    assert "nothere.onnx not found" in _one_line_error(capsys, ["predict", str(good), "-m", "nothere.onnx"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]
    (tmp_path / "mine").mkdir()
    _one_line_error(capsys, ["predict", str(good), "-m", "nothere.onnx", "-o", "mine"])
    assert (tmp_path / "mine").is_dir()


def test_input_too_small_for_the_queries_is_one_line(tmp_path, capsys):
    """Issue 14 item 5: --imgsz too small for num_queries fails in one line, before any image runs."""
    import dataclasses
    import torch
    from tests.models.tiny import tiny_model
    model = tiny_model(num_classes=2)  # 20 queries; a 32x32 input gives a handful of tokens
    path = tmp_path / "tiny.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config)}, path)
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "-m", str(path), "--imgsz", "32", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "input size 32x32 gives" in err and "fewer than the model's 20 queries" in err


@pytest.mark.parametrize("side, lo, hi", [(192, 11, 18), (2048, 34, 50)])
def test_labels_grow_with_the_image(side, lo, hi):
    """The label (its filled band, rows of the class colour above the box) is ~1/60 of the image's
    longer side tall, at least 11 px text: readable on a 2048 px photo, not huge on a small one."""
    from dfine.drawing import draw
    from dfine.inference import Detections
    box = np.array([[side * 0.3, side * 0.5, side * 0.6, side * 0.8]], np.float32)
    dets = Detections(boxes=box, scores=np.array([0.9], np.float32), labels=np.array([0]), names=["person"],
                      category_ids=np.array([1]), image_size=(side, side))
    out = np.asarray(draw(Image.new("RGB", (side, side), (0, 0, 0)), dets))
    column = out[: int(box[0, 1]), int(box[0, 0]) + 1]  # the band's left edge, above the box
    band = int((column == (255, 56, 56)).all(axis=1).sum())
    assert lo <= band <= hi, band


def test_labels_at_the_top_right_corner_leave_the_box_visible_and_stay_in_the_picture():
    """A small box at the top border of a small image (the CVAT street photos are 173 px): its label
    went inside the box and hid it, and a label starting near the right border was cut off."""
    from dfine.drawing import draw
    from dfine.inference import Detections
    box = np.array([[150, 0, 170, 12]], np.float32)
    dets = Detections(boxes=box, scores=np.array([0.9], np.float32), labels=np.array([0]), names=["person"],
                      category_ids=np.array([1]), image_size=(173, 173))
    out = np.asarray(draw(Image.new("RGB", (173, 173), (0, 0, 0)), dets))
    red = (out == (255, 56, 56)).all(axis=2)
    assert not red[3:10, 153:168].any()  # inside the box: not covered by a label
    assert red[14:20, 172].all()  # the label band, below the box, reaches the right border
    rows = np.nonzero(red[:, 172])[0]
    assert rows.min() >= 12  # and starts below the box


@pytest.mark.parametrize("sliced", [False, True])
def test_nothing_above_conf_says_the_highest_score_and_a_conf_that_shows_it(onnx_model, tmp_path, capsys, sliced):
    """No detection above --conf: one line with the highest score seen and a --conf that keeps it
    (the output was an empty predictions.json and bare images, without a word); that --conf then
    finds it. What passes is what the detector itself keeps at that threshold. Sliced too: the
    highest score of any tile (a walk was told to halve --conf, again and again)."""
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(src / f"{i}.png")
    opts = ["--slice", "64"] if sliced else []
    assert main(["predict", str(src), "-m", str(onnx_model), "--conf", "0.99", "-o", str(tmp_path / "a"), *opts]) == 0
    assert json.loads((tmp_path / "a" / "predictions.json").read_text()) == []
    # the picture says so in its corner (a bare copy of the image read as a tool that did nothing); the rest is the image
    drawn, source = np.asarray(Image.open(tmp_path / "a" / "0.png")), np.asarray(Image.open(src / "0.png"))
    band = int((drawn[:, 1] == (64, 64, 64)).all(axis=1).sum())  # the caption's lines (wrapped on a narrow image)
    assert (drawn[:8, :40] == (64, 64, 64)).all(axis=2).mean() > 0.5 and band < 0.7 * drawn.shape[0]
    assert np.array_equal(drawn[band + 1:], source[band + 1:])
    note = capsys.readouterr().err.strip().splitlines()[-1]
    at = dict(slice=64) if sliced else {}
    best = max(float(d.scores.max()) for d in dfine.Detector(onnx_model, conf=0.0, **at)([src / "0.png", src / "1.png"]))
    assert note.startswith(f"note: no detection scored above --conf 0.99 in 2 images (highest score {best:.2f}); "
                           f"try --conf "), note
    lower = note.rsplit("--conf ", 1)[1].split()[0]
    assert float(lower) < best
    assert main(["predict", str(src), "-m", str(onnx_model), "--conf", lower, "-o", str(tmp_path / "b"), *opts]) == 0
    results = json.loads((tmp_path / "b" / "predictions.json").read_text())
    assert results and "no detection" not in capsys.readouterr().err
    expected = dfine.Detector(onnx_model, conf=float(lower), **at)([src / "0.png", src / "1.png"])
    assert sorted(r["score"] for r in results) == sorted(round(float(s), 5) for d in expected for s in d.scores)


def test_nothing_found_note_without_scores():
    from dfine.commands.predict import nothing_found_note
    assert nothing_found_note(0.5, 0.004, "1 image") == (
        "note: no detection scored above --conf 0.5 in 1 image (highest score 0.004): the model sees nothing it "
        "knows here: it has trained too little (see its val mAP), or on other kinds of images")
    assert nothing_found_note(0.5, 0.3, "1 image").endswith("(highest score 0.30); try --conf 0.29 to see it")
    # not 'highest score 0.76; try --conf 0.76' for 0.764 (seen on the battery data)
    assert nothing_found_note(0.9, 0.76435, "1 image").endswith("(highest score 0.76); try --conf 0.75 to see it")
    assert nothing_found_note(0.9, 0.7797, "1 image").endswith("(highest score 0.78); try --conf 0.77 to see it")
    assert nothing_found_note(0.5, 0.07, "6 images") == (  # a walk: 'to see it' gave 351 boxes on 6 images
        "note: no detection scored above --conf 0.5 in 6 images (highest score 0.07); try --conf 0.06 to see its best "
        "guesses: scores this low are a model that has learned little yet (or not of these images), and many boxes "
        "come near them")
    assert nothing_found_note(0.5, None, "1 video") == (
        "note: no detection scored above --conf 0.5 in 1 video; try a lower --conf (e.g. --conf 0.25)")


def test_a_duplicate_box_does_not_hide_the_better_label():
    """Two boxes in one place (a duplicate, common early in training): the better one's label is drawn
    last, on top; the lower score's label covered it (a 0.78 box read as 0.64 on the battery data)."""
    from dfine.drawing import draw
    from dfine.inference import Detections
    box = np.array([[40, 60, 120, 140], [40, 60, 120, 140]], np.float32)
    dets = Detections(boxes=box, scores=np.array([0.9, 0.6], np.float32), labels=np.array([0, 1]),
                      names=["bicycle", "person"], category_ids=np.array([1, 2]), image_size=(192, 192))
    out = np.asarray(draw(Image.new("RGB", (192, 192), (0, 0, 0)), dets))
    above = out[:60, 40:120]  # the label band, above the box
    red, green = ((above == colour).all(axis=2).sum() for colour in ((255, 56, 56), (72, 249, 10)))
    assert red > 100 and green == 0, (red, green)  # the 0.9 bicycle's colour, none of the 0.6 person's


def test_threads_reach_torch_for_a_checkpoint(checkpoint, onnx_model, coco128, tmp_path, monkeypatch, capsys):
    """``--threads N`` of predict (and of eval on a COCO file) with a checkpoint sets torch's threads:
    Detector gives the number to ONNX Runtime and OpenVINO only, so a .pth ran on every core; an
    export leaves torch alone. Fewer than one thread is a one-line error."""
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    image = coco128 / "train2017" / "000000000009.jpg"
    assert main(["predict", str(image), "-m", str(checkpoint), "--threads", "1", "-o", str(tmp_path / "a")]) == 0
    assert calls == [1]
    assert main(["predict", str(image), "-m", str(onnx_model), "--threads", "1", "-o", str(tmp_path / "b")]) == 0
    assert calls == [1]  # ONNX Runtime got it; torch untouched
    ann = tmp_path / "one.json"
    full = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    full["images"] = [im for im in full["images"] if im["id"] == 9]
    full["annotations"] = [a for a in full["annotations"] if a["image_id"] == 9]
    ann.write_text(json.dumps(full))
    assert main(["eval", "-r", str(checkpoint), "--ann-file", str(ann), "--images", str(coco128 / "train2017"),
                 "--threads", "2", "--no-progress", "-o", str(tmp_path / "e")]) == 0
    assert calls == [1, 2]
    capsys.readouterr()
    err = _one_line_error(capsys, ["predict", str(image), "-m", str(checkpoint), "--threads", "0", "-o",
                                   str(tmp_path / "c")])
    assert err == "error: --threads must be at least 1, got 0"


def test_phone_formats_not_read_are_said(tmp_path, capsys):
    """A folder of phone photos with HEIC files among the JPEGs: predict said '2 images' and left the
    HEIC ones out without a word; a folder of HEIC only said 'holds no images (.jpg, ...)'. Now the
    files left out are named with what to do, in a note or in the one-line error."""
    from dfine.commands.predict import collect_sources
    from dfine.errors import DfineError
    folder = tmp_path / "phone"
    folder.mkdir()
    for name in ("a.jpg", "b.JPG"):
        Image.new("RGB", (64, 48)).save(folder / name, format="JPEG")
    (folder / "IMG_0003.HEIC").write_bytes(b"....ftypheic")
    (folder / "notes.txt").write_text("not an image: not worth a note")
    kind, paths = collect_sources([str(folder)])
    assert kind == "images" and [p.name for p in paths] == ["a.jpg", "b.JPG"]
    err = capsys.readouterr().err
    assert "IMG_0003.HEIC" in err and "JPEG or PNG" in err and "notes.txt" not in err, err
    kind, paths = collect_sources([str(folder / "*")])
    assert len(paths) == 2 and "IMG_0003.HEIC" in capsys.readouterr().err
    only = tmp_path / "only"
    only.mkdir()
    (only / "IMG_0004.heic").write_bytes(b"....ftypheic")
    with pytest.raises(DfineError, match=r"IMG_0004.heic.*JPEG or PNG"):
        collect_sources([str(only)])


def test_videos_in_a_folder_of_images_are_said_and_how_to_predict_them(tmp_path, capsys):
    """A walk's folder of a.avi, b.mp4 and c.jpg gave '1 image -> ...' without a word of the videos; a folder of
    the two videos alone said 'holds no images'. Both now name the videos and the command for one."""
    from dfine.commands.predict import collect_sources
    from dfine.errors import DfineError
    folder = tmp_path / "clips"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "c.jpg", format="JPEG")
    for name in ("a.avi", "b.mp4"):
        (folder / name).write_bytes(b"not decoded here")
    kind, paths = collect_sources([str(folder)])
    assert kind == "images" and [p.name for p in paths] == ["c.jpg"]
    assert capsys.readouterr().err.strip() == (f"note: {folder}: left out 2 videos (a.avi, b.mp4): a video is predicted "
                                               f"alone, e.g. dfine predict {folder / 'a.avi'}")
    (folder / "c.jpg").unlink()
    with pytest.raises(DfineError) as err:
        collect_sources([str(folder)])
    assert str(err.value).endswith(f"; 2 videos (a.avi, b.mp4): a video is predicted alone, e.g. dfine predict "
                                   f"{folder / 'a.avi'}")
    with pytest.raises(DfineError, match=r"^no images match .*\*; 2 videos"):
        collect_sources([str(folder / "*")])


def _label_pixels(name):
    import types
    from dfine.drawing import draw
    dets = types.SimpleNamespace(boxes=np.array([[100.0, 100.0, 300.0, 300.0]]), names=[name],
                                 scores=np.array([0.9]), labels=np.array([0]))
    return np.asarray(draw(Image.new("RGB", (640, 480)), dets))[60:100, 100:200]


def test_labels_draw_the_names_own_letters(capsys):
    """Pillow's default font draws ASCII only: a Turkish 'ayakkabı', a German 'Straße' or a Russian 'Жук'
    came out as boxes (the font's 'notdef' glyph) in every picture. A font that has them is used now
    (DejaVu Sans, from the system or matplotlib); ASCII names keep the default font."""
    from dfine.drawing import _draws, _font_files, label_font
    from PIL import ImageFont
    if not any(_draws(ImageFont.truetype(str(p), 14), "ıßЖ") for p in _font_files()):
        pytest.skip("no font here draws 'ıßЖ'")
    notdef = _label_pixels("\U0010fffd")
    capsys.readouterr()  # its note: no font draws U+10FFFD
    for letter in "ıßЖ":
        assert not np.array_equal(_label_pixels(letter), notdef), letter
    assert not capsys.readouterr().err
    assert label_font(14, "abc") is label_font(14, "abc") and _draws(label_font(14, "abc"), "abc")


def test_letters_no_font_draws_are_said_once(monkeypatch, capsys):
    from dfine import drawing
    monkeypatch.setattr(drawing, "_font_files", lambda: ())
    drawing.label_font.cache_clear()
    try:
        _label_pixels("鞋底")
        _label_pixels("鞋底")
    finally:
        drawing.label_font.cache_clear()
    err = capsys.readouterr().err
    assert err.count("note: no font here draws the characters") == 1 and "底鞋" in err and "predictions.json" in err


def test_progress_bar_into_a_file_ends_once(tmp_path, capsys):
    """``dfine predict DIR > log 2>&1``: the bar's last state was written twice into the file (tqdm
    draws the bar again when it closes, which a terminal overwrites and a file keeps); now once."""
    import time

    from dfine.commands.predict import predict_images
    from dfine.inference import Detections

    class Slow:  # each batch takes longer than the bar's refresh interval: every update is drawn
        batch_size, conf, slice = 1, 0.5, None

        def predict_pil(self, images, paths=None, conf=None):
            time.sleep(0.15)
            return [Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), [],
                               np.zeros(0, np.int64), im.size) for im in images]

    src, out = tmp_path / "imgs", tmp_path / "pred"
    src.mkdir(), out.mkdir()
    paths = []
    for i in range(3):
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(src / f"{i}.jpg")
        paths.append(src / f"{i}.jpg")
    predict_images(Slow(), paths, out)
    err = capsys.readouterr().err
    assert err.count("3/3") == 1 and err.endswith("\n"), repr(err)


def test_a_dataset_folder_given_for_its_images_folder_names_the_subfolders(tmp_path, capsys):
    """``dfine predict raccoon`` (the dataset folder; its images in raccoon/images) said only
    'holds no images'; it now names the subfolders that hold them and the two commands, and the
    glob it gives finds every image."""
    from dfine.commands.predict import collect_sources

    root = tmp_path / "set"
    for rel in ("images/a.png", "images/deep/b.png", "valid/c.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(root / rel)
    (root / "annotations").mkdir()
    (root / "annotations" / "a.xml").write_text("<annotation/>")
    err = _one_line_error(capsys, ["predict", str(root), "-m", "any.pth"])
    assert err.endswith(f"; its subfolders hold images (images/ 2, valid/ 1): predict one (dfine predict "
                        f"{root / 'images'}) or all (dfine predict '{root}/**/*.png')"), err
    kind, found = collect_sources(f"{root}/**/*.png")
    assert kind == "images" and sorted(p.name for p in found) == ["a.png", "b.png", "c.png"]
    (root / "empty").mkdir()
    assert "subfolders" not in _one_line_error(capsys, ["predict", str(root / "empty"), "-m", "any.pth"])
    split = tmp_path / "dataset_split"  # split folders of images/ + labels/: it named test/, which holds no image
    for rel in ("test/images/d.jpg", "test/images/e.jpg", "train/images/f.jpg"):
        (split / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(split / rel)
    (split / "test" / "labels").mkdir()
    err = _one_line_error(capsys, ["predict", str(split), "-m", "any.pth"])
    assert f"predict one (dfine predict {split / 'test' / 'images'})" in err, err


def test_predict_never_writes_over_its_inputs_nor_mixes_two_runs(onnx_model, tmp_path, capsys, monkeypatch):
    """``dfine predict photos -o photos`` wrote the annotated copies over the user's photos (a walk:
    the originals were gone); now it is one line before anything is read or written. A second run with
    the default output goes to runs/predict2 (it replaced the first run's predictions.json and left its
    pictures beside the new ones); an -o folder holding an earlier run's files gets a note naming them."""
    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 48), (40 * i, 90, 160)).save(photos / f"{i}.jpg")
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    err = _one_line_error(capsys, ["predict", "photos", "-m", str(onnx_model), "-o", "photos"])
    assert err == ("error: -o photos would overwrite the input photos/0.jpg (the output keeps the input's file name); "
                   "choose an output folder that holds no input (default: runs/predict)")
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before  # nothing written, nothing replaced
    monkeypatch.chdir(photos)  # from inside the folder, with -o .
    _one_line_error(capsys, ["predict", "1.jpg", "-m", str(onnx_model), "-o", "."])
    monkeypatch.chdir(tmp_path)
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before

    for expected in ("runs/predict", "runs/predict2", "runs/predict3"):
        assert main(["predict", "photos", "-m", str(onnx_model), "--conf", "0"]) == 0
        assert f"2 images -> {expected} (" in capsys.readouterr().out
        assert sorted(p.name for p in (tmp_path / expected).iterdir()) == ["0.jpg", "1.jpg", "predictions.json"]
    (tmp_path / "runs/predict/old.jpg").write_bytes(b"x")
    assert main(["predict", "photos/0.jpg", "-m", str(onnx_model), "-o", "runs/predict"]) == 0
    assert capsys.readouterr().err.splitlines()[0] == (
        "note: runs/predict holds files of an earlier run; 2 files of the same names are replaced (0.jpg, "
        "predictions.json), 2 others stay (1.jpg, old.jpg)")


def test_track_never_writes_over_its_video(tmp_path, capsys, monkeypatch):
    """``dfine track clip.mp4 -o .`` from the video's folder would write clip.mp4 over the video."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clip.mp4").write_bytes(b"not decoded: the check comes first")
    err = _one_line_error(capsys, ["track", "clip.mp4", "-m", "model.onnx", "-o", "."])
    assert err.startswith("error: -o . would overwrite the input clip.mp4 (the output keeps the input's file name)")
    assert (tmp_path / "clip.mp4").read_bytes() == b"not decoded: the check comes first"


def test_predictions_of_a_roboflow_split_carry_its_image_ids(onnx_model, tmp_path, capsys):
    """A Roboflow COCO split (images + _annotations.coco.json): predictions.json gave each image predict's
    own running index, so scoring it against the split's file matched the wrong images (a walk). The
    split's own ids are used now, and said; a folder without such a file keeps the old ids."""
    import json
    split = tmp_path / "valid"
    split.mkdir()
    names = ["egg_b.jpg", "egg_a.jpg"]
    for name in names:
        Image.new("RGB", (64, 48), (90, 120, 40)).save(split / name)
    (split / "_annotations.coco.json").write_text(json.dumps(
        {"images": [{"id": 7, "file_name": "egg_b.jpg", "width": 64, "height": 48},
                    {"id": 3, "file_name": "egg_a.jpg", "width": 64, "height": 48}],
         "annotations": [], "categories": [{"id": 1, "name": "egg"}]}))
    assert main(["predict", str(split), "-m", str(onnx_model), "--conf", "0", "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert f"image ids of predictions.json from {split / '_annotations.coco.json'}, so it scores against that file" in err
    results = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert {(r["file_name"], r["image_id"]) for r in results} == {("egg_b.jpg", 7), ("egg_a.jpg", 3)}
    (split / "_annotations.coco.json").unlink()
    assert main(["predict", str(split), "-m", str(onnx_model), "--conf", "0", "-o", str(tmp_path / "plain")]) == 0
    results = json.loads((tmp_path / "plain" / "predictions.json").read_text())
    assert {(r["file_name"], r["image_id"]) for r in results} == {("egg_a.jpg", 0), ("egg_b.jpg", 1)}


def test_predictions_of_a_roboflow_split_with_an_images_folder_carry_its_image_ids(onnx_model, tmp_path, capsys):
    """PrahasHegde/ToyDetection: valid/_annotations.coco.json above valid/images/ (which data check and
    train read): predict of valid/images gave 379 of 386 detections another image's id, without a word."""
    import json
    split = tmp_path / "valid"
    (split / "images").mkdir(parents=True)
    for name in ("pig.jpg", "bull.jpg"):
        Image.new("RGB", (64, 48), (90, 120, 40)).save(split / "images" / name)
    (split / "_annotations.coco.json").write_text(json.dumps(
        {"images": [{"id": 70, "file_name": "pig.jpg", "width": 64, "height": 48},
                    {"id": 2, "file_name": "bull.jpg", "width": 64, "height": 48}],
         "annotations": [], "categories": [{"id": 1, "name": "pig"}]}))
    assert main(["predict", str(split / "images"), "-m", str(onnx_model), "--conf", "0", "-o", str(tmp_path / "out")]) == 0
    assert f"image ids of predictions.json from {split / '_annotations.coco.json'}" in capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert {(r["file_name"], r["image_id"]) for r in results} == {("pig.jpg", 70), ("bull.jpg", 2)}
    # the published folder also holds images the file does not list: every image got its position as its id,
    # clashing with the listed ones' (81 of 82 detections on another image's id, without a word)
    Image.new("RGB", (64, 48), (90, 120, 40)).save(split / "images" / "img0.jpg")
    assert main(["predict", str(split / "images"), "-m", str(onnx_model), "--conf", "0", "-o", str(tmp_path / "o2")]) == 0
    assert "1 image it does not list got ids from 71 up" in capsys.readouterr().err
    results = json.loads((tmp_path / "o2" / "predictions.json").read_text())
    assert {(r["file_name"], r["image_id"]) for r in results} == {("pig.jpg", 70), ("bull.jpg", 2), ("img0.jpg", 71)}


def test_predictions_take_the_image_ids_of_the_ann_file_given(onnx_model, tmp_path, capsys):
    """The published COCO layout (images/val, annotations/instances_val.json two folders away): predict
    numbered the images by position, 170 of 171 ids another image's (walk Z); --ann-file gives its ids."""
    import json
    root = tmp_path / "facemask"
    (root / "images" / "val").mkdir(parents=True)
    (root / "annotations").mkdir()
    for name in ("b.png", "a.png", "extra.png"):
        Image.new("RGB", (64, 48), (90, 120, 40)).save(root / "images" / "val" / name)
    ann = root / "annotations" / "instances_val.json"
    ann.write_text(json.dumps({"images": [{"id": 0, "file_name": "val/b.png", "width": 64, "height": 48},
                                          {"id": 5, "file_name": "val/a.png", "width": 64, "height": 48}],
                               "annotations": [], "categories": [{"id": 0, "name": "with_mask"}]}))
    args = ["predict", str(root / "images" / "val"), "-m", str(onnx_model), "--conf", "0"]
    assert main([*args, "--ann-file", str(ann), "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert f"image ids of predictions.json from {ann}, so it scores against that file; 1 image it does not list got " \
           f"ids from 6 up" in err
    results = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert {(r["file_name"], r["image_id"]) for r in results} == {("b.png", 0), ("a.png", 5), ("extra.png", 6)}
    # without --ann-file: the published layout's file, found by the folder's name (walk AB: 0 of 1141 ids right)
    (root / "annotations" / "instances_train.json").write_text(json.dumps({"images": [], "annotations": []}))
    assert main([*args, "-o", str(tmp_path / "found")]) == 0
    assert f"image ids of predictions.json from {ann}, so it scores against that file" in capsys.readouterr().err
    results = json.loads((tmp_path / "found" / "predictions.json").read_text())
    assert {(r["file_name"], r["image_id"]) for r in results} == {("b.png", 0), ("a.png", 5), ("extra.png", 6)}
    for bad, said in ((root / "annotations" / "instances_vall.json", "--ann-file "),
                      (root / "images" / "val" / "a.png", "not a COCO file with an 'images' list")):
        err = _one_line_error(capsys, [*args, "--ann-file", str(bad), "-o", str(tmp_path / "bad")])
        assert said in err and str(bad) in err
    assert f"did you mean {root / 'annotations' / 'instances_val.json'}?" in _one_line_error(
        capsys, [*args, "--ann-file", str(root / "annotations" / "instances_vall.json")])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"images": [{"id": 1, "file_name": "zebra.jpg"}], "annotations": [], "categories": []}))
    err = _one_line_error(capsys, [*args, "--ann-file", str(other), "-o", str(tmp_path / "none")])
    assert "lists none of the 3 images given (e.g. " in err and "it lists zebra.jpg" in err
    # DETR tutorials' names: annotations/custom_val.json for val2017/ (a walk's ids were the images' positions)
    (root / "images" / "val").rename(root / "val2017")
    ann.rename(root / "annotations" / "custom_val.json")
    (root / "annotations" / "instances_train.json").rename(root / "annotations" / "custom_train.json")
    assert main(["predict", str(root / "val2017"), "-m", str(onnx_model), "--conf", "0", "-o", str(tmp_path / "dt")]) == 0
    assert f"image ids of predictions.json from {root / 'annotations' / 'custom_val.json'}" in capsys.readouterr().err
    results = json.loads((tmp_path / "dt" / "predictions.json").read_text())
    assert {(r["file_name"], r["image_id"]) for r in results} == {("b.png", 0), ("a.png", 5), ("extra.png", 6)}


def test_labels_of_boxes_side_by_side_do_not_cover_each_other():
    """Three boxes in a row (squares of a shapes image at --conf 0.05): each label went above its box
    and the later ones covered the earlier ones. A label whose place is taken goes below its box, or
    inside it, wherever it covers none placed before it (the better scores placed first)."""
    from dfine.drawing import draw, place_label
    from dfine.inference import Detections
    boxes = np.array([[20, 100, 40, 120], [44, 100, 64, 120], [68, 100, 88, 120]], np.float32)
    placed = []
    for box in boxes.tolist():
        placed.append(place_label(box, (70, 15), (192, 192), placed))
    assert placed[0] == (20, 85, 90, 100)  # above its box, as a lone label goes
    assert placed[1] == (44, 120, 114, 135)  # above was taken: below
    assert all(not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
               for i, a in enumerate(placed) for b in placed[:i])
    dets = Detections(boxes=boxes, scores=np.array([0.9, 0.8, 0.7], np.float32), labels=np.array([0, 1, 2]),
                      names=["square", "square", "square"], category_ids=np.array([1, 2, 3]), image_size=(192, 192))
    out = np.asarray(draw(Image.new("RGB", (192, 192), (0, 0, 0)), dets))
    assert (out[80:100] == (255, 56, 56)).all(axis=2).sum() > 100  # the best's label above its box, whole
    assert (out[121:141] == (72, 249, 10)).all(axis=2).sum() > 100  # the second's below its box
    assert not (out[80:100] == (72, 249, 10)).all(axis=2).any()


def test_labels_larger_than_the_boxes_of_a_dense_row_do_not_hide_them():
    """A row of small vehicles (a walk's 20 px tanks under 80 px labels on a 4800 px image): a label
    covering half or more of another box goes elsewhere, or is left out; every box's outline shows."""
    from dfine.drawing import draw, place_label
    from dfine.inference import Detections
    neighbour = np.array([[60, 40, 70, 50]], np.float64)  # just above the box: where its label would go
    assert place_label([60, 52, 70, 62], (40, 12), (192, 192), [], neighbour) == (60, 62, 100, 74)  # below instead
    n = 8
    boxes = np.array([[40 + 14 * i, 90, 50 + 14 * i, 100] for i in range(n)], np.float32)  # 10 px boxes, 4 px apart
    for row in (boxes, boxes + np.array([0, 12, 0, 12], np.float32)):  # and a second row just below
        boxes = np.concatenate([boxes, row]) if row is not boxes else boxes
    dets = Detections(boxes=boxes, scores=np.linspace(0.9, 0.5, len(boxes)).astype(np.float32),
                      labels=np.zeros(len(boxes), np.int64), names=["tank"] * len(boxes),
                      category_ids=np.ones(len(boxes), np.int64), image_size=(192, 192))
    out = np.asarray(draw(Image.new("RGB", (192, 192), (0, 0, 0)), dets))
    red = (out == (255, 56, 56)).all(axis=2)
    for x0, y0, x1, y1 in boxes.astype(int).tolist():  # the inside of each box (its outline is 2 px): mostly free
        assert red[y0 + 2:y1 - 1, x0 + 2:x1 - 1].mean() < 0.6, (x0, y0)
    assert red.sum() > 16 * 30  # the boxes are drawn


def test_a_flood_of_detections_draws_the_best_thousand_and_says_so(monkeypatch):
    """A walk's 50112 detections at --conf 0.001 on a 4800 px image drew a solid red picture (15 px lines
    on 20 px boxes, a label on each) after six minutes: the best 1000 are drawn, with a caption, their
    lines no wider than an eighth of the box."""
    from PIL import ImageDraw

    from dfine.drawing import MAX_DRAWN, draw
    from dfine.inference import Detections
    rng = np.random.default_rng(0)
    n = 1500
    xy = rng.uniform(0, 4700, (n, 2))
    boxes = np.concatenate([xy, xy + 20], axis=1).astype(np.float32)
    dets = Detections(boxes=boxes, scores=rng.uniform(0, 1, n).astype(np.float32), labels=np.zeros(n, np.int64),
                      names=["tank"] * n, category_ids=np.ones(n, np.int64), image_size=(4800, 4800))
    outlines, texts = [], []
    real_rect, real_text = ImageDraw.ImageDraw.rectangle, ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "rectangle", lambda self, xy, **kw: (
        outlines.append((tuple(xy), kw["width"])) if "outline" in kw else None) or real_rect(self, xy, **kw))
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda self, xy, text, **kw: texts.append(text)
                        or real_text(self, xy, text, **kw))
    draw(Image.new("RGB", (4800, 4800)), dets)
    best = set(np.argsort(-dets.scores)[:MAX_DRAWN].tolist())
    assert len(outlines) == MAX_DRAWN == 1000
    assert {tuple(boxes[i].tolist()) for i in best} == {box for box, _ in outlines}
    assert {w for _, w in outlines} == {2}  # 20 px boxes: lines of 2 px, not the image's 15
    assert texts[-1] == "the best 1000 of 1500 detections drawn"


def test_a_class_named_by_a_number_is_told_from_its_score():
    """LabelMe mahjong tiles named '3', '0.5': the label read '3 0.04', two bare numbers (a walk)."""
    from types import SimpleNamespace

    from dfine.drawing import _text
    dets = SimpleNamespace(names=["3", "0.5", "cat"], scores=np.array([0.04, 0.9, 0.5]))
    assert [_text(dets, i, True) for i in range(3)] == ["3: 0.04", "0.5: 0.90", "cat 0.50"]
    assert _text(dets, 0, False) == "3"


def test_a_large_box_at_the_top_border_has_its_label_inside_its_top():
    """datitran/raccoon_dataset's raccoon-75: a box from the top border to 3/4 down had its label below its
    bottom edge, where it read as the label of the ground under it (a walk). A small box keeps it below."""
    from dfine.drawing import label_corner
    assert label_corner((10, 0, 300, 220), (60, 15), (320, 300)) == (10, 0)  # large: inside, at its top
    assert label_corner((150, 0, 170, 12), (60, 15), (173, 173)) == (113, 12)  # small: below, not hiding it
    assert label_corner((10, 40, 300, 220), (60, 15), (320, 300)) == (10, 25)  # room above: above


def test_a_checkpoint_run_at_another_size_than_it_was_trained_says_so(checkpoint, tmp_path, capsys):
    """A walk's 320 px model predicted at --imgsz 640 found nothing, and its 640 export scored AP 7.3
    against 10.7, without a word (dfine eval said the trained size; predict and export did not)."""
    picture = tmp_path / "a.png"
    Image.new("RGB", (64, 48)).save(picture)
    note = f"note: {checkpoint.name} was trained at 320x320; run at 640x640 it sees objects at another scale"
    assert main(["predict", str(picture), "-m", str(checkpoint), "--imgsz", "640", "-o", str(tmp_path / "p")]) == 0
    assert note in capsys.readouterr().err
    assert main(["export", "-r", str(checkpoint), "--imgsz", "640", "--no-simplify", "-o", str(tmp_path / "m.onnx")]) == 0
    assert note in capsys.readouterr().err
    assert main(["predict", str(picture), "-m", str(checkpoint), "-o", str(tmp_path / "q")]) == 0
    assert "was trained at" not in capsys.readouterr().err


def test_a_picture_crowded_with_guesses_is_said(onnx_model, tmp_path, capsys):
    """Walks followed 'try --conf 0.02' with a young model to pictures walled with 300 boxes each, said
    nowhere; predict now says so and what to do."""
    picture = tmp_path / "a.png"
    Image.new("RGB", (64, 48), (90, 120, 40)).save(picture)
    assert main(["predict", str(picture), "-m", str(onnx_model), "--conf", "0", "-o", str(tmp_path / "low")]) == 0
    err = capsys.readouterr().err
    assert "detections per image at --conf 0: most are guesses" in err and "a higher --conf keeps the sure ones" in err
    assert "got all" not in err  # --conf 0 keeps everything by definition: not a limit reached
    assert main(["predict", str(picture), "-m", str(onnx_model), "--conf", "0.99", "-o", str(tmp_path / "high")]) == 0
    err = capsys.readouterr().err
    assert "most are guesses" not in err and "got all" not in err
    # guesses at a --conf given that low: said as such, not as a limit of the model
    assert main(["predict", str(picture), "-m", str(onnx_model), "--conf", "1e-9", "-o", str(tmp_path / "all")]) == 0
    err = capsys.readouterr().err
    assert "most are guesses" in err and "got all" not in err
    # at the --conf its run measured best (dense scenes: a walk's 140 cells an image), the detections are its best
    import onnx
    dense = onnx.load(str(onnx_model))
    onnx.helper.set_model_props(dense, {**{p.key: p.value for p in dense.metadata_props}, "recommended_conf": "1e-9"})
    onnx.save(dense, str(tmp_path / "dense.onnx"))
    assert main(["predict", str(picture), "-m", str(tmp_path / "dense.onnx"), "-o", str(tmp_path / "dense")]) == 0
    err = capsys.readouterr().err
    assert "--conf 0.00: the threshold with the best F1" in err and "most are guesses" not in err
    # there, every detection the model gives is above it: the model's limit, not the objects' count, is said
    # (a dense walk's 326 cells came back as 300, nothing said)
    assert ("note: 1 image (a.png) got all 300 detections the model gives an image, each above --conf 1e-09: there may "
            "be more objects than it can report; --slice (tiles), or a model trained with more queries") in err


def test_save_dataset_writes_prelabels_that_train_reads_from_the_originals(coco128, onnx_model, tmp_path, capsys):
    """``--save-dataset``: the images and their detections as a COCO dataset beside the annotated copies;
    checking it and training on it read the original images (info.images_folder), never the copies
    with boxes drawn on them, which carry the same names."""
    from dfine.data.check import default_images
    from dfine.data.convert import uncorrected_prelabels
    from dfine.data.convert.coco import convert_coco
    photos = tmp_path / "photos"
    photos.mkdir()
    names = sorted(p.name for p in (coco128 / "train2017").glob("*.jpg"))[:3]
    for name in names:
        (photos / name).write_bytes((coco128 / "train2017" / name).read_bytes())
    out = tmp_path / "pred"
    assert main(["predict", str(photos), "--model", str(onnx_model), "--conf", "0.02", "-o", str(out),
                 "--save-dataset"]) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "annotations.json").read_text())
    results = json.loads((out / "predictions.json").read_text())
    assert f"pre-labels: {out / 'annotations.json'} (3 images, {len(results)} boxes above --conf 0.02" in printed
    assert sorted(im["file_name"] for im in data["images"]) == names
    first = next(im for im in data["images"] if im["file_name"] == names[0])
    assert (first["width"], first["height"]) == Image.open(photos / names[0]).size
    assert len(data["annotations"]) == len(results) > 0
    assert [(a["image_id"], a["category_id"]) for a in data["annotations"]] == [(r["image_id"], r["category_id"])
                                                                             for r in results]
    assert [c["name"] for c in data["categories"]] == list(MSCOCO_NAMES)
    assert (out / names[0]).is_file()  # the annotated copy, under the same name
    assert default_images(out / "annotations.json") == photos
    assert main(["data", "check", str(out / "annotations.json")]) == 0
    converted = convert_coco(out, tmp_path / "split")
    for split_file in (tmp_path / "split" / "annotations").glob("instances_*.json"):
        assert json.loads(split_file.read_text())["info"]["images_folder"] == str(photos)
    # uncorrected (every box keeps its score): said, and each split still says so (a re-walk's -t model scored
    # AP 100% on its own pre-labels); a box without its score is a corrected file
    made = f"dfine predict -m {onnx_model} --conf 0.02"
    assert any(note.startswith(f"annotations.json holds the pre-labels of {made}, not corrected yet (every box keeps "
                               f"its score; a labelling tool's export drops the scores, and so does deleting them "
                               f"from boxes corrected by hand)") for note in converted.notes)
    assert uncorrected_prelabels(tmp_path / "split/annotations/instances_val.json") == made
    assert uncorrected_prelabels(out / "annotations.json") == made
    edited = {**data, "annotations": [{k: v for k, v in a.items() if k != "score"} for a in data["annotations"][:1]]}
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    assert uncorrected_prelabels(tmp_path / "edited.json") is None
    assert uncorrected_prelabels(coco128 / "annotations/instances_train2017.json") is None
    # the photos moved away (a walk; or runs/predict copied elsewhere): one line, not the annotated copies taken
    photos.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["data", "check", str(out / "annotations.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {out / 'annotations.json'} names its images folder {photos}, which is not there")
    assert "annotated copies" in err and "\n" not in err
    with pytest.raises(DfineError, match="which is not there"):
        convert_coco(out, tmp_path / "split2")
    # corrected in a labelling tool and saved back without info.images_folder (tools rewrite info): a walk's check
    # read the annotated copies beside it as the photos; one line instead
    (tmp_path / "moved").rename(photos)
    tool = {k: v for k, v in data.items() if k != "info"}
    (out / "corrected.json").write_text(json.dumps(tool))
    assert main(["data", "check", str(out / "corrected.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {out / 'corrected.json'} names no images folder (info.images_folder, which dfine "
                          f"predict --save-dataset writes, is gone: a labelling tool's export?), and its folder {out} "
                          f"is dfine predict's output, whose images are annotated copies") and "\n" not in err, err


def test_save_dataset_without_a_box_says_so_and_points_to_a_lower_conf(coco128, onnx_model, tmp_path, capsys):
    """Pre-labels with no box above --conf said "dfine train --data ... trains on it" (a walk), and
    training then had nothing to learn from."""
    photos = tmp_path / "photos"
    photos.mkdir()
    name = sorted(p.name for p in (coco128 / "train2017").glob("*.jpg"))[0]
    (photos / name).write_bytes((coco128 / "train2017" / name).read_bytes())
    out = tmp_path / "pred"
    assert main(["predict", str(photos), "-m", str(onnx_model), "--conf", "1", "-o", str(out), "--save-dataset"]) == 0
    captured = capsys.readouterr()
    line = next(x for x in captured.out.splitlines() if x.startswith("pre-labels: "))
    assert line.endswith("(1 image, 0 boxes above --conf 1; COCO, as labelling tools import it): no box to correct or "
                         "train on: a lower --conf writes the model's best guesses (the note below names one)"), line
    assert "trains on it" not in captured.out
    assert "note: no detection scored above --conf 1 in 1 image (highest score" in captured.err


def test_save_dataset_of_a_video_is_one_line(onnx_model, tmp_path, capsys):
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    err = _one_line_error(capsys, ["predict", str(tmp_path / "clip.mp4"), "-m", str(onnx_model), "--save-dataset",
                                   "-o", str(tmp_path / "out")])
    assert "--save-dataset writes images with their boxes" in err and not (tmp_path / "out").exists()


def test_predict_pictures_leave_out_labels_without_a_free_place(monkeypatch):
    """The same crowd in dfine predict's pictures: a label whose every place covers a placed one is
    left out (it was drawn over, half hidden), the best's drawn; every box is drawn."""
    from PIL import ImageDraw

    from dfine.drawing import draw, place_label
    from dfine.inference import Detections
    taken = [(0, 0, 192, 192)]
    assert place_label([60, 60, 120, 120], (40, 12), (192, 192), taken) is None
    # near the foot: its own place and the two inside it taken, below it past the image: left out, not put
    # over the label at its own place (a walk's blood-cell grid showed 'rb rbc 0.38' there)
    foot = [(60, 138, 100, 150), (60, 150, 100, 162), (60, 173, 100, 185)]
    assert place_label([60, 150, 120, 185], (40, 12), (192, 192), foot) is None
    assert place_label([60, 60, 120, 120], (40, 12), (192, 192), []) == (60, 48, 100, 60)
    n = 12
    boxes = np.array([[60 + i, 60 + i, 120 + i, 120 + i] for i in range(n)], np.float32)
    dets = Detections(boxes=boxes, scores=np.linspace(0.9, 0.4, n).astype(np.float32), labels=np.zeros(n, np.int64),
                      names=["rbc"] * n, category_ids=np.ones(n, np.int64), image_size=(192, 192))
    calls = {"text": [], "rectangle": 0}
    real_text, real_rect = ImageDraw.ImageDraw.text, ImageDraw.ImageDraw.rectangle
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda self, xy, text, **kw: calls["text"].append(text)
                        or real_text(self, xy, text, **kw))
    monkeypatch.setattr(ImageDraw.ImageDraw, "rectangle", lambda self, xy, **kw: calls.__setitem__(
        "rectangle", calls["rectangle"] + 1) or real_rect(self, xy, **kw))
    draw(Image.new("RGB", (192, 192), (0, 0, 0)), dets)
    assert "rbc 0.90" in calls["text"] and 1 < len(calls["text"]) < n, calls["text"]
    assert calls["rectangle"] == n + len(calls["text"])  # every box, and a band under each drawn label


def test_the_empty_pictures_caption_is_larger_than_a_label():
    """A walk read the 11 px 'no detection above --conf 0.9' of a 640 px picture with a magnifier."""
    from types import SimpleNamespace

    from PIL import Image

    from dfine.drawing import draw
    none = SimpleNamespace(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32),
                           labels=np.zeros(0, np.int64), names=[])
    out = np.asarray(draw(Image.new("RGB", (640, 480), (200, 200, 200)), none, empty="no detection above --conf 0.9"))
    band = out[:, 1]
    rows = int((band == (64, 64, 64)).all(axis=1).sum())
    assert 20 <= rows <= 40, rows  # 18 px text and its margins; a label's band is ~15 px at 640
    assert (out[:, 320:] == 200).all()  # a caption, not a cover: the picture's right half untouched
    # a 192 px picture (the demo's): the caption in two lines that fit, not cut before its number (a walk)
    small = np.asarray(draw(Image.new("RGB", (192, 192), (200, 200, 200)), none, empty="no detection above --conf 0.5"))
    assert int((small[:, 1] == (64, 64, 64)).all(axis=1).sum()) >= 32  # two lines of 16 px text
    from PIL import ImageDraw

    from dfine.drawing import label_font, wrapped
    pen = ImageDraw.Draw(Image.new("RGB", (192, 192)))
    font = label_font(16, "abcdefghijklmnopqrstuvwxyz-.0123456789 ")
    lines = wrapped(pen, "no detection above --conf 0.5", font, 192 - 4)
    assert lines == ["no detection above", "--conf 0.5"]  # an option with its value
    assert all(pen.textlength(line, font=font) <= 188 for line in lines)


def test_predict_into_a_folder_beside_a_dataset_file_is_refused(onnx_model, tmp_path, capsys):
    """``dfine predict DATA/val2017 -o DATA/annotations`` (a walk) wrote the annotated copies under the photos'
    names beside custom_val.json, which then took them for its images: training read the drawn-on copies."""
    import json
    photos = tmp_path / "val2017"
    photos.mkdir()
    Image.new("RGB", (64, 48)).save(photos / "a.jpg")
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "custom_val.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}], "annotations": [],
         "categories": [{"id": 1, "name": "x"}]}))
    err = _one_line_error(capsys, ["predict", str(photos), "-m", str(onnx_model), "-o", str(tmp_path / "annotations")])
    assert err == (f"error: -o {tmp_path / 'annotations'} holds the dataset file custom_val.json, which names images "
                   f"as predict writes its annotated copies (a.jpg): they would be taken for its images; choose a "
                   f"folder of its own (default: runs/predict)")
    assert sorted(p.name for p in (tmp_path / "annotations").iterdir()) == ["custom_val.json"]
    # predict's own files there (a second run into its folder) are no dataset
    assert main(["predict", str(photos), "-m", str(onnx_model), "-o", str(tmp_path / "out"), "--save-dataset"]) == 0
    assert main(["predict", str(photos), "-m", str(onnx_model), "-o", str(tmp_path / "out"), "--save-dataset"]) == 0


def test_a_run_folder_given_as_the_model_names_the_weights_its_run_named_best(tmp_path, capsys):
    """A walk's run ended 'best weights: last.pth' (no evaluation above AP 0), and ``-m`` of its folder offered
    best_stg1.pth; the hint now names the weights the run's last.pth records as best."""
    import torch

    run = tmp_path / "run"
    run.mkdir()
    for name in ("best_stg1.pth", "best_stg2.pth"):
        torch.save({"model": {}}, run / name)
    image = tmp_path / "a.jpg"
    Image.new("RGB", (64, 48)).save(image)

    def named() -> str:
        err = _one_line_error(capsys, ["predict", str(image), "-m", str(run), "-o", str(tmp_path / "out")])
        assert err.endswith("(it holds best_stg1.pth, best_stg2.pth, last.pth)"), err
        return err.split("such as ")[1].split(" (")[0]

    def ended(best_ap, best_file):
        torch.save({"progress": {"best_ap": best_ap, "best_file": best_file}}, run / "last.pth")
        return named()

    assert ended(0.0, "best_stg1.pth") == str(run / "last.pth")
    assert ended(0.31, "best_stg1.pth") == str(run / "best_stg1.pth")  # stage 1 beat stage 2
    assert ended(0.31, "best_stg2.pth") == str(run / "best_stg2.pth")
    (run / "last.pth").write_bytes(b"cut")  # unreadable: the best weights by name
    assert named() == str(run / "best_stg2.pth")
    from dfine.text import folder_model_error  # without torch (an install for exports): by name
    assert folder_model_error(run).split("such as ")[1].startswith(str(run / "best_stg2.pth"))


def test_classes_keeps_only_those_in_pictures_predictions_and_prelabels(coco128, onnx_model, tmp_path, capsys):
    """A walk pre-labelled its photos with a COCO model to train a few classes: annotations.json declared all 80,
    and training made an 80-class model. ``--classes`` keeps only those: the detections, predictions.json, and
    the categories of --save-dataset's file; an unknown name is one line naming the model's classes."""
    from collections import Counter
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((coco128 / "train2017").glob("*.jpg"))[:3]:
        (photos / p.name).symlink_to(p)
    everything = tmp_path / "all"
    assert main(["predict", str(photos), "-m", str(onnx_model), "--conf", "0.0", "-o", str(everything)]) == 0
    every = json.loads((everything / "predictions.json").read_text())
    found = Counter(r["category_id"] for r in every)  # this random model's: one class or a few
    a = found.most_common(1)[0][0]
    b = next(c for c in MSCOCO_CATEGORY_IDS if c not in found)  # and one it does not find
    first, second = sorted((a, b))
    name = dict(zip(MSCOCO_CATEGORY_IDS, MSCOCO_NAMES))
    number = list(MSCOCO_CATEGORY_IDS).index(second)  # the second by its label number
    out = tmp_path / "pre"
    capsys.readouterr()
    assert main(["predict", str(photos), "-m", str(onnx_model), "--conf", "0.0", "--classes", name[first], str(number),
                 "--save-dataset", "-o", str(out)]) == 0
    assert (f"--classes: {name[first]}, {name[second]} kept, the model's 78 other classes left out (and out of "
            f"annotations.json's categories)") in capsys.readouterr().err
    results = json.loads((out / "predictions.json").read_text())
    assert sorted(map(json.dumps, results)) == sorted(map(json.dumps, (r for r in every if r["category_id"] in (a, b))))
    data = json.loads((out / "annotations.json").read_text())
    assert data["categories"] == [{"id": first, "name": name[first], "supercategory": ""},
                                  {"id": second, "name": name[second], "supercategory": ""}]
    assert len(data["annotations"]) == len(results)
    assert f"--classes {name[first]} {number}" in data["info"]["description"]
    err = _one_line_error(capsys, ["predict", str(photos), "-m", str(onnx_model), "--classes", "persn", "-o",
                                   str(tmp_path / "x")])
    assert err.startswith("error: unknown class 'persn'; did you mean 'person'? the model's classes are: person, "
                          "bicycle, car")  # the one meant (a walk was given the list alone)


def test_ids_from_the_coco_file_named_after_the_folder_among_several(onnx_model, tmp_path, capsys):
    """The demo's data/ holds spec.json, train.json and val.json beside val/: ``dfine predict data/val`` (the
    README's own command) numbered 000120.png 120 where val.json says 121, unsaid: a folder of several .json
    files was passed over. The one that names the images is read now, the folder's namesake first."""
    data = tmp_path / "data"
    (data / "val").mkdir(parents=True)
    images = []
    for i, stem in enumerate(("000120", "000121")):
        Image.new("RGB", (64, 48), (i * 90, 30, 60)).save(data / "val" / f"{stem}.png")
        images.append({"id": 121 + i, "file_name": f"val/{stem}.png", "width": 64, "height": 48})
    coco = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    (data / "val.json").write_text(json.dumps(coco))
    (data / "train.json").write_text(json.dumps({**coco, "images": [{**images[0], "id": 7, "file_name": "x.png"}]}))
    (data / "spec.json").write_text(json.dumps({"seed": 0}))
    out = tmp_path / "out"
    assert main(["predict", str(data / "val"), "-m", str(onnx_model), "--conf", "0.0", "-o", str(out)]) == 0
    assert f"image ids of predictions.json from {data / 'val.json'}" in capsys.readouterr().err
    got = {(r["file_name"], r["image_id"]) for r in json.loads((out / "predictions.json").read_text())}
    assert got == {("000120.png", 121), ("000121.png", 122)}


def _car_park(width: int, height: int, n: int = 30):
    """Rows of ``n`` 40x20 px cars, 8 px apart and rows 10 px apart (a drone's car park), on a black image."""
    from dfine.inference import Detections
    boxes = np.array([[1000 + 48 * (i % 10), 600 + 30 * (i // 10), 1040 + 48 * (i % 10), 620 + 30 * (i // 10)]
                      for i in range(n)], np.float32)
    dets = Detections(boxes=boxes, scores=np.linspace(0.95, 0.5, n).astype(np.float32), labels=np.zeros(n, np.int64),
                      names=["car"] * n, category_ids=np.ones(n, np.int64), image_size=(width, height))
    return Image.new("RGB", (width, height)), dets


@pytest.mark.parametrize("width, height", [(1920, 1080), (4000, 2250)])
def test_labels_of_small_boxes_follow_them_and_hide_no_car(width, height):
    """Drone images (a walk): 40x20 px cars under ~100x30 px labels (67 px text at 4000 px), each label covering
    half of the cars above it. Labels now follow boxes much smaller than them, down to 11 px text, and
    none covers a quarter of another car; ordinary pictures keep their size (test_labels_grow_with_the_image)."""
    from dfine.drawing import draw
    image, dets = _car_park(width, height)
    out = np.asarray(draw(image, dets))
    red = (out == (255, 56, 56)).all(axis=2)  # outlines (2 px) and label bands, in class 0's colour
    column = red[:600, 1001]  # the first car's label band, above it
    assert 0 < column.sum() <= 11 + 6, column.sum()  # 11 px text and its margins
    for x0, y0, x1, y1 in dets.boxes.astype(int).tolist():  # inside each car, past its 2 px outline
        assert red[y0 + 2:y1 - 2, x0 + 2:x1 - 2].mean() < 0.25, (x0, y0)
    labelled = red[560:600, 1000:1480].sum()  # the first row's labels are drawn, above it
    assert labelled > 300, labelled


def test_labels_can_be_left_off_or_sized():
    """Nothing let a user turn labels off or choose their size: draw(labels=...), Detections.plot(labels=...) and
    predict's and track's --labels auto|none|PX do now."""
    import argparse

    from dfine.commands.predict import labels_option
    from dfine.drawing import draw
    image, dets = _car_park(1920, 1080, n=10)
    bare = np.asarray(draw(image, dets, labels="none"))
    red = (bare == (255, 56, 56)).all(axis=2)
    assert not red[:598].any() and np.array_equal(bare, np.asarray(draw(image, dets, labels=False)))  # boxes alone
    sized = (np.asarray(draw(image, dets, labels=24)) == (255, 56, 56)).all(axis=2)
    assert sized[:600, 1001].sum() >= 24  # a 24 px text's band above the first car
    assert [labels_option(t) for t in ("auto", "none", "14", " NONE ")] == ["auto", "none", 14, "none"]
    for bad in ("big", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            labels_option(bad)
    for command in ("predict", "track"):
        from dfine.cli import build_parser
        args = build_parser().parse_args([command, "x.jpg", "-m", "m.onnx", "--labels", "none"])
        assert args.labels == "none"
    assert np.array_equal(np.asarray(dets.plot(image, labels="none")), bare)
    assert np.array_equal(np.asarray(dets.plot(image, labels=24)), np.asarray(draw(image, dets, labels=24)))
    with pytest.raises(DfineError, match="labels: auto, none or a text height in px, got 'big'"):
        dets.plot(image, labels="big")
