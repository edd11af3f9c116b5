"""Tracking: ``dfine.track`` and ``dfine track`` through video files, folders of frames and an HTTP stream,
with a fake detector (bright squares found by thresholding) where the test is about plumbing and a tiny
random-weight checkpoint for the real model path; truncated videos, Ctrl-C, bad sources and outputs."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dfine
from dfine.cli import main
from dfine.errors import DfineError
from dfine.export.benchmark import cpu_line
from dfine.inference import Detections
from dfine.integrations.tracking import TrackerConfig

sv = pytest.importorskip("supervision")
pytest.importorskip("trackers")
cv2 = pytest.importorskip("cv2")
from scipy import ndimage  # noqa: E402

W, H, N = 160, 120, 24
NAMES = ("square", "bar")
CATEGORY_ID = 7  # the fake detector's dataset id of its label 0


def _frame(t: int) -> np.ndarray:
    """Two bright squares moving in opposite directions on separate rows (RGB uint8)."""
    f = np.full((H, W, 3), 20, np.uint8)
    x0 = 10 + 4 * t
    f[20:44, x0:x0 + 24] = (250, 60, 60)
    x1 = W - 34 - 4 * t
    f[70:94, x1:x1 + 24] = (60, 250, 60)
    return f


def _write_video(path: Path, frames: int = N, fps: float = 10) -> Path:
    """An MJPG AVI (readable while cut short, and streamable without seeking)."""
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    for t in range(frames):
        out.write(cv2.cvtColor(_frame(t), cv2.COLOR_RGB2BGR))
    out.release()
    return path


class FakeDetector:
    """Finds bright blobs (connected components above grey 128) and reports them as class 0,
    score 0.9: a deterministic stand-in where the model's accuracy is not what is tested."""

    class_names = NAMES
    batch_size = 4

    def __init__(self, interrupt_after: int = 0):
        self.calls, self.interrupt_after = 0, interrupt_after

    def predict_pil(self, images, paths=None, conf=None):
        self.calls += 1
        if self.interrupt_after and self.calls > self.interrupt_after:
            raise KeyboardInterrupt
        out = []
        for im in images:
            mask = np.asarray(im).max(axis=2) > 128
            labels, n = ndimage.label(mask)
            boxes = [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in ndimage.find_objects(labels)]
            boxes = np.array(boxes, np.float32).reshape(-1, 4)
            out.append(Detections(boxes=boxes, scores=np.full(n, 0.9, np.float32), labels=np.zeros(n, np.int64),
                                  names=[NAMES[0]] * n, category_ids=np.full(n, CATEGORY_ID, np.int64),
                                  image_size=im.size))
        return out


def _ids_per_object(pairs):
    """For each square (top row / bottom row) the set of track ids it got, and frames seen."""
    ids = {0: set(), 1: set()}
    for _, tracks in pairs:
        for (x0, y0, x1, y1), tid in zip(tracks.xyxy, tracks.tracker_id):
            ids[0 if y0 < 60 else 1].add(int(tid))
    return ids


@pytest.mark.parametrize("tracker", ["bytetrack", "sort", "ocsort"])
def test_track_keeps_one_id_per_object(tmp_path, tracker):
    video = _write_video(tmp_path / "two.avi")
    pairs = list(dfine.track(video, model=FakeDetector(), tracker=tracker, conf=0.5))
    assert len(pairs) == N
    frame, tracks = pairs[-1]
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    assert isinstance(tracks, sv.Detections) and list(tracks.data["class_name"]) == ["square"] * len(tracks)
    ids = _ids_per_object(pairs)
    assert len(ids[0]) == 1 and len(ids[1]) == 1 and ids[0] != ids[1]
    assert min(ids[0] | ids[1]) == 1  # MOT-challenge ids count from 1
    # every frame after the tracker's confirmation delay holds both tracks
    assert all(len(t) == 2 for _, t in pairs[3:])


def test_tracker_settings_reach_the_tracker_and_change_its_behaviour(tmp_path):
    """The top square vanishes for frames 8-11: kept under one id while the lost-track buffer lasts,
    a new id with no buffer; the settings land in the trackers object; bad values are one line."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(N):
        f = _frame(t)
        if 8 <= t < 12:
            f[20:44] = 20
        Image.fromarray(f).save(folder / f"{t}.png")
    kept = dfine.track(folder, model=FakeDetector(), tracker="sort", lost_frames=30, match_iou=0.2, min_frames=2)
    assert kept.tracker.minimum_iou_threshold == 0.2 and kept.tracker.minimum_consecutive_frames == 2
    assert kept.config.detection_conf == 0.5 and len(_ids_per_object(list(kept))[0]) == 1
    dropped = dfine.track(folder, model=FakeDetector(), tracker="sort", lost_frames=0, min_frames=2)
    assert len(_ids_per_object(list(dropped))[0]) == 2
    assert TrackerConfig("bytetrack", conf=0.6, low_conf=0.2).detection_conf == 0.2
    with pytest.raises(DfineError, match="tracker low_conf must be in 0..1, got 1.5"):
        TrackerConfig("bytetrack", low_conf=1.5)
    with pytest.raises(DfineError, match="unknown tracker 'deepsort'"):
        TrackerConfig("deepsort")


def test_a_wrong_keyword_of_track_names_track_and_the_one_meant(tmp_path):
    """``dfine.track(..., lost_frame=30)`` blamed ``dfine.Detector()`` and listed none of the tracker's keywords
    (a walk): the message names ``dfine.track()`` and the tracker's keyword meant, or the Detector's."""
    video = _write_video(tmp_path / "two.avi", frames=2)
    for given, said in (({"lost_frame": 30}, "dfine.track() takes no lost_frame=; did you mean lost_frames=?"),
                        ({"devce": "cpu"}, "dfine.track() takes no devce=; did you mean device=?"),
                        # other trackers' words (a re-walk's iou= was offered timeout=, max_age= nothing)
                        ({"iou": 0.3}, "dfine.track() takes no iou=; did you mean match_iou=?"),
                        ({"max_age": 30}, "dfine.track() takes no max_age=; did you mean lost_frames=?"),
                        ({"track_thresh": 0.4}, "dfine.track() takes no track_thresh=; did you mean conf=?")):
        with pytest.raises(DfineError) as e:
            dfine.track(video, model="model.onnx", **given)
        assert str(e.value) == said


def test_folder_of_frames_in_natural_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(12):
        Image.fromarray(_frame(t)).save(folder / f"{t}.png")  # 10.png sorts after 9.png
    pairs = list(dfine.track(folder, model=FakeDetector(), tracker="sort"))
    assert len(pairs) == 12
    for t, (frame, _) in enumerate(pairs):
        assert np.array_equal(frame, _frame(t))
    assert all(len(ids) == 1 for ids in _ids_per_object(pairs).values())


def test_an_unreadable_frame_of_a_folder_is_skipped_and_said(tmp_path, capsys):
    """A walk's truncated frame 30 of 60 ended `dfine track FOLDER` with an error, frames 31-60 never tracked."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(12):
        Image.fromarray(_frame(t)).save(folder / f"{t}.png")
    data = (folder / "5.png").read_bytes()
    (folder / "5.png").write_bytes(data[: len(data) // 2])
    pairs = list(dfine.track(folder, model=FakeDetector(), tracker="sort"))
    assert len(pairs) == 11 and np.array_equal(pairs[5][0], _frame(6))
    err = capsys.readouterr().err
    assert "warning: skipped an unreadable frame (" in err and "5.png" in err
    assert "the frames after it are counted 1 frame lower" in err


def test_class_filter(tmp_path):
    video = _write_video(tmp_path / "two.avi", frames=6)
    run = dfine.track(video, model=FakeDetector())  # next() as a for loop: a walk's next(dfine.track(...)) failed
    frame, tracks = next(run)
    assert frame.shape == (H, W, 3) and run.frames == 1 and iter(run) is run
    assert len(list(run)) == 5 and run.frames == 6  # the rest, each frame once
    assert all(len(t) == 0 for _, t in dfine.track(video, model=FakeDetector(), classes=["bar"]))
    assert any(len(t) for _, t in dfine.track(video, model=FakeDetector(), classes=["square"]))
    with pytest.raises(DfineError, match="unknown class 'cat'.*square, bar"):
        dfine.track(video, model=FakeDetector(), classes=["cat"])


@pytest.fixture
def http_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path``; yields its base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_tracks_a_video_served_over_http(tmp_path, http_server, monkeypatch):
    _write_video(tmp_path / "clip.avi")
    url = f"{http_server}/clip.avi"
    pairs = list(dfine.track(url, model=FakeDetector(), tracker="bytetrack"))
    assert len(pairs) == N
    assert all(len(ids) == 1 for ids in _ids_per_object(pairs).values())
    # the same through the command line (the fake detector stands in for the model)
    monkeypatch.setattr("dfine.inference.Detector", lambda *a, **k: FakeDetector())
    out = tmp_path / "out"
    assert main(["track", url, "-m", "unused.pth", "-o", str(out), "--no-video"]) == 0
    summary = json.loads((out / "clip.json").read_text())
    assert summary["frames"] == N and summary["num_tracks"] == 2
    with pytest.raises(DfineError, match="cannot open stream"):
        dfine.track(f"{http_server}/missing.avi", model=FakeDetector())


def _mot_rows(path: Path):
    return [line.split(",") for line in path.read_text().splitlines()]


def test_cli_writes_video_mot_and_summary(tmp_path, monkeypatch, capsys):
    video = _write_video(tmp_path / "two.avi")
    monkeypatch.setattr("dfine.inference.Detector", lambda *a, **k: FakeDetector())
    out = tmp_path / "out"
    assert main(["track", str(video), "-m", "unused.pth", "-o", str(out), "--tracker", "sort", "--appearance", "none"]) == 0
    assert "24 frames, 2 tracks (sort)" in capsys.readouterr().out
    rows = _mot_rows(out / "two.txt")
    assert {len(r) for r in rows} == {10}
    assert {r[7] for r in rows} == {str(CATEGORY_ID)}  # the dataset's id, as in predictions.json; not the label 0
    frames = [int(r[0]) for r in rows]
    assert frames == sorted(frames) and min(frames) >= 1 and max(frames) == N
    summary = json.loads((out / "two.json").read_text())
    assert summary["tracker_config"] == {"name": "sort", "conf": 0.5, "low_conf": 0.1, "match_iou": None,
                                         "lost_frames": 60, "min_frames": None, "nms": 0.7, "appearance": "none"}
    tracks = {t["id"]: t for t in summary["tracks"]}
    for tid, t in tracks.items():
        mine = [int(r[0]) for r in rows if int(r[1]) == tid]
        assert (t["first_frame"], t["last_frame"], t["length"], t["class"]) == (min(mine), max(mine), len(mine), "square")
    assert summary["classes"] == {"square": 2}
    cap = cv2.VideoCapture(str(out / "two.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == N
    ok, frame = cap.read()
    assert ok and frame.shape == (H, W, 3)
    assert not list(out.glob("*partial*")) and not list(out.glob(".*tmp*"))  # renamed into place


def _decoded(path: Path) -> list:
    cap = cv2.VideoCapture(str(path))
    frames = []
    ok, frame = cap.read()
    while ok:
        frames.append(frame)
        ok, frame = cap.read()
    return frames


def test_python_tracking_saves_what_the_cli_writes(tmp_path, monkeypatch, capsys):
    """``dfine.track(...)`` wrote nothing and printed as ``<...Tracking object at 0x...>`` (a walk), where
    ``dfine track`` writes a video, a MOT text and a JSON summary: ``.save()`` writes the same files by the
    same code, and the object says what it is and how to get them."""
    video = _write_video(tmp_path / "two.avi")
    monkeypatch.setattr("dfine.inference.Detector", lambda *a, **k: FakeDetector())
    monkeypatch.chdir(tmp_path)
    cli = tmp_path / "cli"
    argv = ["track", str(video), "-m", "unused.pth", "-o", str(cli), "--tracker", "sort", "--appearance", "none"]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"24 frames, 2 tracks (sort) -> {cli / 'two.mp4'}, {cli / 'two.txt'}, " \
                                      f"{cli / 'two.json'}\n"
    run = dfine.track(video, model="unused.pth", tracker="sort", appearance="none")
    assert repr(run) == (f"Tracking({video}, sort at conf 0.5: 0 frames read, 0 tracks; iterate for (frame, tracks), "
                         f"or .save() for the video, MOT text and JSON dfine track writes)")
    files = run.save(tmp_path / "py", progress=False)
    py = tmp_path / "py"
    assert (files.video, files.mot, files.json, files.frames, files.tracks, files.interrupted) == (
        py / "two.mp4", py / "two.txt", py / "two.json", 24, 2, False)
    assert repr(files) == f"TrackFiles(24 frames, 2 tracks -> {py / 'two.mp4'}, {py / 'two.txt'}, {py / 'two.json'})"
    assert capsys.readouterr().out == f"24 frames, 2 tracks (sort) -> {files.video}, {files.mot}, {files.json}\n"
    assert repr(run).startswith(f"Tracking({video}, sort at conf 0.5: 24 frames read, 2 tracks; ")
    assert (py / "two.txt").read_bytes() == (cli / "two.txt").read_bytes()
    assert json.loads((py / "two.json").read_text()) == json.loads((cli / "two.json").read_text())
    made, written = _decoded(py / "two.mp4"), _decoded(cli / "two.mp4")
    assert len(made) == len(written) == N and all(np.array_equal(a, b) for a, b in zip(made, written))
    assert sorted(p.name for p in py.iterdir()) == ["two.json", "two.mp4", "two.txt"]
    # the CLI's default folder, numbered after a run there; no video when told
    assert dfine.track(video, model="unused.pth").save(video=False, progress=False).mot == Path("runs/track/two.txt")
    assert dfine.track(video, model="unused.pth").save(video=False, progress=False).json == Path("runs/track2/two.json")
    assert not list(Path("runs").rglob("*.mp4"))
    iterated = dfine.track(video, model="unused.pth")
    next(iterated)
    with pytest.raises(DfineError) as e:
        iterated.save(tmp_path / "late")
    assert str(e.value) == ("save() tracks from the first frame and 1 frame were read already (by iterating, or an "
                            "earlier save()): call it on a new dfine.track(...)")
    # Ctrl-C keeps what was written, as dfine track does, and stops the script or notebook cell
    stopped = dfine.track(video, model=FakeDetector(interrupt_after=3))
    with pytest.raises(KeyboardInterrupt):
        stopped.save(tmp_path / "stopped", progress=False)
    summary = json.loads((tmp_path / "stopped" / "two.json").read_text())
    assert summary["interrupted"] is True and summary["frames"] == 12 and summary["model"] == "FakeDetector"


def test_python_tracking_starts_tracks_as_the_command_does(tmp_path, monkeypatch, capsys):
    """A walk's dfine.track(..., conf=0.1) kept ByteTrack's low_conf at 0.1 (its second stage off: 59 tracks where
    `dfine track --conf 0.1` found 116), a Detector(conf=0.1) given was tracked at 0.5 (no track, and save() said
    nothing of why), and a folder of frames was taken at 30 fps unsaid: each as the command does it, said."""
    from PIL import Image
    video = _write_video(tmp_path / "two.avi")
    monkeypatch.setattr("dfine.inference.Detector", lambda *a, **k: FakeDetector())
    monkeypatch.chdir(tmp_path)
    assert main(["track", str(video), "-m", "unused.pth", "--conf", "0.1", "--no-video", "-o", "cli"]) == 0
    cli = json.loads((tmp_path / "cli" / "two.json").read_text())["tracker_config"]
    capsys.readouterr()
    run = dfine.track(video, model="unused.pth", conf=0.1)
    assert (run.config.conf, run.config.low_conf) == (cli["conf"], cli["low_conf"]) == (0.1, 0.05)
    assert capsys.readouterr().err == ("note: low_conf=0.05, half of conf=0.1 (the default 0.1 would sit above it and "
                                       "turn off ByteTrack's second stage, which keeps tracks through occlusions)\n")
    detector = FakeDetector()
    files = dfine.track(video, model=detector, conf=0.95).save(tmp_path / "py", video=False, progress=False)
    err = capsys.readouterr().err  # above the fake's 0.9 scores: no track, and why, as the command says it
    assert files.tracks == 0 and "note: no track: no detection scored above conf=0.95 in the video" in err, err
    detector.conf = 0.2
    assert dfine.track(video, model=detector).config.conf == 0.2
    assert "note: conf=0.2: tracks start at the conf= of the Detector given (conf= to change it)" in \
        capsys.readouterr().err
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 48)).save(frames / f"{i:03d}.png")
    assert dfine.track(frames, model="unused.pth").source.fps == 30
    assert "note: a folder of frames has no frame rate: 30 fps assumed" in capsys.readouterr().err
    assert dfine.track(frames, model="unused.pth", fps=10).source.fps == 10
    with pytest.raises(DfineError, match="fps= must be a number of frames per second > 0, got 0"):
        dfine.track(frames, model="unused.pth", fps=0)
    with pytest.raises(DfineError, match=r"^Tracking.save\(\) takes no vidoe=; did you mean video=\?$"):
        dfine.track(frames, model="unused.pth").save(tmp_path / "s", vidoe=False)  # a bare TypeError (a walk)
    detector.recommended_conf = 0.42  # a model carrying its run's best-F1 conf: said, as dfine track says it
    assert dfine.track(video, model=detector).config.conf == 0.42
    assert "note: conf=0.42: tracks start at the threshold with the best F1 on the val set of its training run" in \
        capsys.readouterr().err


def test_no_track_from_detections_in_one_frame_says_so(tmp_path, monkeypatch, capsys):
    """A walk followed 'try --conf 0.06' to a run of 0 tracks and no word: one frame scored above it, and a track
    needs its object found again. Said, with a lower --conf to try."""

    class OneFrame(FakeDetector):
        def predict_pil(self, images, paths=None, conf=None):
            found = super().predict_pil(images, paths, conf)
            return [d if self.calls == 1 and i == 0 else d.above(1.0) for i, d in enumerate(found)]

    video = _write_video(tmp_path / "two.avi")
    monkeypatch.setattr("dfine.inference.Detector", lambda *a, **k: OneFrame())
    assert main(["track", str(video), "-m", "unused.pth", "-o", str(tmp_path / "out"), "--no-video"]) == 0
    assert json.loads((tmp_path / "out" / "two.json").read_text())["num_tracks"] == 0
    assert ("note: no track: detections above --conf 0.5 in the video (the best 0.900) were not found again in the "
            "frames after them, which a track needs; try a lower --conf (e.g. --conf 0.25)") in capsys.readouterr().err


def test_cli_truncated_video_ends_with_its_frames(tmp_path, monkeypatch, capsys):
    data = _write_video(tmp_path / "full.avi", frames=40).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr("dfine.inference.Detector", lambda *a, **k: FakeDetector())
    assert main(["track", str(cut), "-m", "unused.pth", "-o", str(tmp_path / "out"), "--no-video"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "cut" in line]
    assert len(notes) == 1 and "of 40 frames" in notes[0] and "Traceback" not in err
    summary = json.loads((tmp_path / "out" / "cut.json").read_text())
    assert 5 < summary["frames"] < 40


def test_cli_ctrl_c_keeps_what_was_written(tmp_path, monkeypatch, capsys):
    video = _write_video(tmp_path / "two.avi")
    monkeypatch.setattr("dfine.inference.Detector", lambda *a, **k: FakeDetector(interrupt_after=3))
    out = tmp_path / "out"
    assert main(["track", str(video), "-m", "unused.pth", "-o", str(out), "-b", "4"]) == 130
    assert "interrupted: 12 frames" in capsys.readouterr().out
    summary = json.loads((out / "two.json").read_text())
    assert summary["frames"] == 12 and summary["interrupted"] is True  # the JSON says so too (a walk: only the print)
    assert max(int(r[0]) for r in _mot_rows(out / "two.txt")) == 12
    cap = cv2.VideoCapture(str(out / "two.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12


class FailingDetector(FakeDetector):
    """Fails like a broken backend after 4 batches."""

    def predict_pil(self, images, paths=None, conf=None):
        if self.calls >= 4:
            raise RuntimeError("backend failed")
        return super().predict_pil(images, paths, conf)


def test_cli_failed_run_leaves_readable_partial_files(tmp_path, monkeypatch):
    video = _write_video(tmp_path / "two.avi", frames=N)
    monkeypatch.setattr("dfine.inference.Detector", lambda *a, **k: FailingDetector())
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="backend failed"):
        main(["track", str(video), "-m", "unused.pth", "-o", str(out), "-b", "4"])
    assert not (out / "two.mp4").exists() and not (out / "two.txt").exists() and not (out / "two.json").exists()
    assert max(int(r[0]) for r in _mot_rows(out / "two.partial.txt")) == 16  # every frame done
    cap = cv2.VideoCapture(str(out / "two.partial.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 16


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_cli_bad_inputs_fail_before_the_model(tmp_path, capsys, monkeypatch):
    def no_model(*a, **k):
        raise AssertionError("the model must not be loaded")
    monkeypatch.setattr("dfine.inference.Detector", no_model)
    monkeypatch.chdir(tmp_path)
    video = _write_video(tmp_path / "two.avi", frames=3)
    assert "not found" in _one_line_error(capsys, ["track", str(tmp_path / "nope.mp4"), "-m", "m.pth"])
    assert not (tmp_path / "runs").exists()  # runs/track was made for the output, then left empty: removed
    (tmp_path / "notes.txt").write_text("x")
    assert "is not a video" in _one_line_error(capsys, ["track", str(tmp_path / "notes.txt"), "-m", "m.pth"])
    assert "unsupported stream" in _one_line_error(capsys, ["track", "ftp://host/v.mp4", "-m", "m.pth"])
    blocked = tmp_path / "notes.txt" / "out"
    assert "cannot be created" in _one_line_error(capsys, ["track", str(video), "-m", "m.pth", "-o", str(blocked)])
    (tmp_path / "empty").mkdir()
    assert "holds no frames" in _one_line_error(capsys, ["track", str(tmp_path / "empty"), "-m", "m.pth"])
    _write_video(tmp_path / "empty" / "cam1.avi", frames=2)  # a folder of videos: which to give (a walk)
    assert _one_line_error(capsys, ["track", str(tmp_path / "empty"), "-m", "m.pth"]).endswith(
        "but 1 video (cam1.avi): give one of them")
    for option, value, allowed in (("--low-conf", "1.5", "0..1"), ("--match-iou", "-0.1", "0..1"),
                                   ("--lost-frames", "-1", ">= 0"), ("--min-frames", "0", ">= 1")):
        err = _one_line_error(capsys, ["track", str(video), "-m", "m.pth", option, value])
        assert err == f"error: {option} must be {allowed}, got {float(value) if '.' in value else int(value)}"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random-weight model at 128x128 saved with its config and two class names."""
    from tests.models.tiny import tiny_model
    torch.manual_seed(0)
    model = tiny_model(num_classes=2)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config),
                "class_names": list(NAMES), "category_ids": [1, 2]}, path)
    return path


def test_cli_with_a_real_checkpoint(tmp_path, tiny_checkpoint):
    """The real model path: Detector from a checkpoint, batched frames, every output consistent."""
    video = _write_video(tmp_path / "two.avi", frames=6)
    out = tmp_path / "out"
    assert main(["track", str(video), "-m", str(tiny_checkpoint), "-o", str(out), "--conf", "0.0", "-b", "3"]) == 0
    summary = json.loads((out / "two.json").read_text())
    assert summary["frames"] == 6 and summary["tracker"] == "bytetrack"
    assert set(summary["classes"]) <= set(NAMES)
    assert len(_mot_rows(out / "two.txt")) == sum(t["length"] for t in summary["tracks"])


def test_tracks_start_at_the_conf_the_model_carries(tmp_path, tiny_checkpoint, capsys):
    """predict used the --conf a trained run recommends (0.33 after a short run) and track started
    tracks at 0.5 whatever the model: a newcomer's model found objects in predict that track never
    followed. Without --conf, tracks start at the carried one, said; a given --conf wins."""
    state = torch.load(tiny_checkpoint, weights_only=False)
    model = tmp_path / "trained.pth"
    torch.save({**state, "recommended_conf": 0.33}, model)
    video = _write_video(tmp_path / "two.avi", frames=3)
    assert main(["track", str(video), "-m", str(model), "-o", str(tmp_path / "a"), "--no-video"]) == 0
    assert json.loads((tmp_path / "a" / "two.json").read_text())["tracker_config"]["conf"] == 0.33
    assert ("--conf 0.33: tracks start at the threshold with the best F1 on the val set of its training run, which "
            "trained.pth carries (give --conf to change it)") in capsys.readouterr().err
    assert main(["track", str(video), "-m", str(model), "-o", str(tmp_path / "b"), "--no-video", "--conf", "0.6"]) == 0
    assert json.loads((tmp_path / "b" / "two.json").read_text())["tracker_config"]["conf"] == 0.6
    assert "tracks start at" not in capsys.readouterr().err
    assert main(["track", str(video), "-m", str(tiny_checkpoint), "-o", str(tmp_path / "c"), "--no-video"]) == 0
    assert json.loads((tmp_path / "c" / "two.json").read_text())["tracker_config"]["conf"] == 0.5  # carries none
    # no track at all: the highest score seen and the --conf that would start one (a walk got an empty .txt)
    assert main(["track", str(video), "-m", str(model), "-o", str(tmp_path / "d"), "--no-video", "--conf", "0.99"]) == 0
    assert json.loads((tmp_path / "d" / "two.json").read_text())["num_tracks"] == 0
    assert "note: no track: no detection scored above --conf 0.99 in the video (highest score " in capsys.readouterr().err
    # the API: the same, ByteTrack's second stage kept below a low carried conf
    torch.save({**state, "recommended_conf": 0.08}, model)
    low = dfine.track(video, model=str(model))
    assert (low.config.conf, low.config.low_conf) == (0.08, 0.04)
    assert dfine.track(video, model=str(model), conf=0.4).config.conf == 0.4


def test_to_supervision_and_install_hint(tiny_checkpoint, monkeypatch):
    det = dfine.Detector(str(tiny_checkpoint), conf=0.0)
    [d] = det(_frame(0))
    s = d.to_supervision()
    assert isinstance(s, sv.Detections) and len(s) == len(d) > 0
    np.testing.assert_array_equal(s.xyxy, d.boxes)
    np.testing.assert_array_equal(s.class_id, d.labels)
    assert list(s.data["class_name"]) == d.names and set(d.names) <= set(NAMES)
    np.testing.assert_array_equal(s.data["category_id"], d.category_ids)
    monkeypatch.setitem(__import__("sys").modules, "supervision", None)
    with pytest.raises(DfineError, match=r"pip install \"dfine\[track\]\""):
        d.to_supervision()


def test_benchmark_reports_end_to_end_beside_detector_fps(tmp_path, tiny_checkpoint, capsys):
    video = _write_video(tmp_path / "two.avi", frames=8)
    assert main(["benchmark", "-m", str(tiny_checkpoint), "--backends", "torch", "--runs", "2",
                 "--video", str(video)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("video")]
    assert len(line) == 1 and "8 frames" in line[0] and "detector only" in line[0] and "end to end" in line[0]
    assert _one_line_error(capsys, ["benchmark", "--video", str(video)]).endswith("needs -m MODEL (a checkpoint, zoo name or exported file)")
    onnx = tmp_path / "tiny.onnx"  # an exported model is timed as it is, on its own backend
    assert main(["export", "-r", str(tiny_checkpoint), "--no-simplify", "-o", str(onnx)]) == 0
    capsys.readouterr()
    assert main(["benchmark", "-m", str(onnx), "--runs", "2", "--video", str(video)]) == 0
    out = [x for x in capsys.readouterr().out.splitlines() if not x.startswith("note: load average")]
    assert out[0].rsplit("; load average", 1)[0] == cpu_line().rsplit("; load average", 1)[0]  # what it ran on
    assert out[1].startswith(f"model {onnx} (exported") and out[2].startswith("onnxruntime")
    assert out[3].startswith("video (onnxruntime, batches of 4, 8 frames): detector only")
    (tmp_path / "notes.mp4").write_text("not a video")  # said at once, before the model is timed (a walk: after)
    assert main(["benchmark", "-m", str(onnx), "--runs", "2", "--video", str(tmp_path / "notes.mp4")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"error: cannot open video {tmp_path / 'notes.mp4'}")


def test_track_and_predict_of_a_video_say_when_other_jobs_load_the_cpu(tmp_path, monkeypatch, capsys):
    """A re-walk's video ran at 1.9 frames a second on a busy machine, 15.6 with --threads 1: training and
    benchmark said why (busy_cpu_note), predict and track did not."""
    video = _write_video(tmp_path / "two.avi", frames=4)
    monkeypatch.setattr("dfine.inference.Detector", lambda *a, **k: FakeDetector())
    monkeypatch.setattr("dfine.device.busy_cpu_note", lambda what, python=False: f"note: busy, {what} slow")
    assert main(["track", str(video), "-m", "unused.pth", "-o", str(tmp_path / "t"), "--no-video"]) == 0
    assert "note: busy, the frames (the detector) slow" in capsys.readouterr().err
    from types import SimpleNamespace

    from dfine.commands.predict import say_busy_cpu  # predict's, for a video or many images
    say_busy_cpu(SimpleNamespace(backend="onnxruntime", device="cpu"), "the images")
    say_busy_cpu(SimpleNamespace(backend="tensorrt", device="cuda"), "the images")  # the GPU's: no word
    assert capsys.readouterr().err == "note: busy, the images (the detector) slow\n"
    monkeypatch.setattr("dfine.device.busy_cpu_note", lambda what, python=False: None)  # an idle machine: no word
    assert main(["track", str(video), "-m", "unused.pth", "-o", str(tmp_path / "t2"), "--no-video"]) == 0
    assert "busy" not in capsys.readouterr().err


def test_benchmark_says_when_other_jobs_load_the_cpu(monkeypatch):
    import os
    from dfine.commands.benchmark import _machine_line
    cores = os.cpu_count() or 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1 * cores, 0.0, 0.0))
    assert _machine_line("cpu").startswith("CPU: ") and "note" not in _machine_line("cpu")
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0 * cores, 0.0, 0.0))
    monkeypatch.setattr("dfine.device.others_running", lambda: 2)  # the other jobs running now, whatever this machine does
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert _machine_line("cpu").splitlines()[1] == (
        f"note: load average {2.0 * cores:.1f} on {cores} cores: other jobs share this CPU, so the timings "
        "below run many times slower than on an idle machine; with OMP_WAIT_POLICY=PASSIVE in the environment (or "
        "fewer threads: --threads 1) waiting threads sleep instead of spinning, much faster on a busy machine "
        "(README, Deploy)")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # already set: nothing to advise
    assert "note" not in _machine_line("cpu")


class DoubleDetector(FakeDetector):
    """Reports every blob twice, under both classes with the same box (as D-FINE's top-k over
    (query, class) pairs can), plus a slightly shifted copy."""

    def predict_pil(self, images, paths=None, conf=None):
        out = []
        for d in super().predict_pil(images, paths, conf):
            n = len(d)
            shifted = d.boxes + np.array([1, 1, 1, 1], np.float32)
            out.append(Detections(boxes=np.concatenate([d.boxes, d.boxes, shifted]),
                                  scores=np.concatenate([d.scores, d.scores - 0.1, d.scores - 0.2]),
                                  labels=np.concatenate([d.labels, d.labels + 1, d.labels]),
                                  names=d.names + [NAMES[1]] * n + d.names,
                                  category_ids=np.zeros(3 * n, np.int64), image_size=d.image_size))
        return out


def test_duplicate_boxes_make_one_track(tmp_path):
    video = _write_video(tmp_path / "two.avi", frames=10)
    pairs = list(dfine.track(video, model=DoubleDetector(), tracker="sort", conf=0.5))
    assert all(len(ids) == 1 for ids in _ids_per_object(pairs).values())
    assert all(set(t.data["class_name"]) == {"square"} for _, t in pairs[3:])  # the best-scored class kept
    raw = list(dfine.track(video, model=DoubleDetector(), tracker="sort", conf=0.5, nms=None))
    assert len(set().union(*_ids_per_object(raw).values())) > 2  # without it, each copy is a track


def _bounce(t: int, turn: int = 12, speed: int = 5):
    """A red and a blue square (30 px, on a striped grey background) that run into each other, overlap
    (blue in front) and at frame ``turn`` go back the way they came: (frame [80, 200, 3], boxes [2, 4])."""
    k = t if t <= turn else 2 * turn - t
    xa, xb = 20 + speed * k, 200 - 50 - speed * k
    f = np.full((80, 200, 3), 90, np.uint8)
    f[::4] = 110
    f[25:55, xa:xa + 30] = (230, 40, 40)
    f[25:55, xb:xb + 30] = (40, 60, 230)
    return f, np.array([[xa, 25, xa + 30, 55], [xb, 25, xb + 30, 55]], np.float32)


@pytest.mark.parametrize("tracker", ["bytetrack", "sort", "ocsort"])
def test_colour_cue_keeps_ids_where_motion_alone_swaps_them(tracker):
    """Two objects that meet and turn back: the trackers' motion model expects them to go on, so by
    motion alone each track takes the other's box; with the colour cue (the default) each keeps its own."""
    def ids(appearance):
        tr = TrackerConfig(tracker, appearance=appearance).make(30.0)
        seen = {0: set(), 1: set()}
        for t in range(26):
            frame, boxes = _bounce(t)
            out = tr.update(sv.Detections(xyxy=boxes, confidence=np.full(2, 0.9, np.float32),
                                          class_id=np.zeros(2, int)), frame)
            for box, tid in zip(out.xyxy, out.tracker_id):
                if tid >= 0:
                    seen[int(np.abs(boxes[:, 0] - box[0]).argmin())].add(int(tid))
        return seen
    kept = ids("colour")
    assert len(kept[0]) == 1 and len(kept[1]) == 1 and kept[0] != kept[1]
    swapped = ids("none")
    assert swapped[0] == swapped[1] and len(swapped[0]) == 2  # the scene does defeat motion alone
    with pytest.raises(DfineError, match="unknown appearance cue 'reid'"):
        TrackerConfig(tracker, appearance="reid")


def test_colour_histograms():
    from dfine.integrations.appearance import colour_histograms
    frame, boxes = _bounce(0)
    h = colour_histograms(frame, np.concatenate([boxes, [[0, 0, 0, 0], [180, 60, 230, 100]]]))
    assert h.shape == (4, 512) and np.allclose(h[[0, 1, 3]].sum(1), 1) and h[2].sum() == 0  # empty box: 0; cut by the border: its part inside
    red, blue = h[0].argmax(), h[1].argmax()
    assert h[0, red] == 1 and h[1, blue] == 1 and red == (230 // 32 * 8 + 40 // 32) * 8 + 40 // 32 != blue


def _with_part(t: int):
    """A red square moving right, from frame 3 also boxed a second time by its left half (a partial
    box, as the detector adds for a half-hidden object), and from frame 3 a small blue square on its
    lower right corner (another object, half inside the red box): (frame [80, 200, 3], boxes [N, 4], scores)."""
    x = 20 + 4 * t
    f = np.full((80, 200, 3), 90, np.uint8)
    f[20:60, x:x + 40] = (230, 40, 40)
    boxes, scores = [[x, 20, x + 40, 60]], [0.9]
    if t >= 3:
        f[45:65, x + 30:x + 50] = (40, 60, 230)
        boxes += [[x, 20, x + 20, 60], [x + 30, 45, x + 50, 65]]
        scores += [0.7, 0.8]
    return f, np.array(boxes, np.float32), np.array(scores, np.float32)


@pytest.mark.parametrize("tracker", ["bytetrack", "sort", "ocsort"])
def test_no_second_track_on_a_tracked_object(tracker, monkeypatch):
    """A partial box of a tracked object does not start a track of its own (it would take the object's
    boxes in turns with the first); an object of another colour inside the same box does."""
    from dfine.integrations import appearance

    def ids():
        tr = TrackerConfig(tracker).make(30.0)
        seen = {"red": set(), "part": set(), "blue": set()}
        for t in range(14):
            frame, boxes, scores = _with_part(t)
            out = tr.update(sv.Detections(xyxy=boxes, confidence=scores, class_id=np.zeros(len(boxes), int)), frame)
            for box, tid in zip(out.xyxy, out.tracker_id):
                if tid >= 0:
                    seen[("red", "part", "blue")[int(np.abs(boxes - box).sum(1).argmin())]].add(int(tid))
        return seen
    gated = ids()
    assert len(gated["red"]) == 1 and not gated["part"] - gated["red"] and len(gated["blue"]) == 1
    assert gated["blue"] != gated["red"]
    monkeypatch.setattr(appearance, "BIRTH_OVERLAP", 2.0)  # the gate off: the partial box is a second track
    raw = ids()
    assert raw["part"] - raw["red"]


def test_no_match_to_a_box_of_another_tracks_colour(monkeypatch):
    """ByteTrack matches low-score boxes in a second round: a red square's track that lost its box
    (frames 6-9) must not take a low-score box whose colours are those of the blue square beside it
    (already matched in the first round); it waits and finds its own box again under the same id."""
    from dfine.integrations import appearance

    def run():
        tr = TrackerConfig("bytetrack").make(30.0)
        red_ids, taken = set(), set()
        for t in range(14):
            x = 20 + 3 * t
            f = np.full((80, 200, 3), 90, np.uint8)
            f[20:60, x:x + 40] = (230, 40, 40)
            f[20:60, x + 30:x + 70] = (40, 60, 230)  # blue in front, hiding a quarter of red
            boxes, scores = [[x + 30, 20, x + 70, 60]], [0.9]
            boxes, scores = (boxes + [[x + 20, 20, x + 60, 60]], scores + [0.3]) if 6 <= t < 10 else \
                (boxes + [[x, 20, x + 40, 60]], scores + [0.8])
            out = tr.update(sv.Detections(xyxy=np.array(boxes, np.float32), confidence=np.array(scores, np.float32),
                                          class_id=np.zeros(2, int)), f)
            for box, tid in zip(out.xyxy, out.tracker_id):
                if tid >= 0 and box[0] == x:
                    red_ids.add(int(tid))
                if tid >= 0 and box[0] == x + 20:
                    taken.add(int(tid))
        return red_ids, taken
    red_ids, taken = run()
    assert len(red_ids) == 1 and not taken & red_ids
    monkeypatch.setattr(appearance, "VETO_MARGIN", 2.0)  # the veto off: the red track takes the blue box
    red_ids, taken = run()
    assert taken & red_ids


@pytest.mark.parametrize("tracker", ["bytetrack", "sort", "ocsort"])
def test_lost_object_found_again_where_it_was_last_seen(tracker, monkeypatch):
    """A red square moves right, is not detected for 20 frames (it stopped behind something) and shows
    up where it was last seen: the motion model's prediction has run far ahead, but the colour cue
    also searches near the last box, so the track keeps its id."""
    from dfine.integrations import appearance

    def ids():
        tr = TrackerConfig(tracker).make(30.0)
        seen = set()
        for t in range(36):
            x = 10 + 6 * min(t, 8)
            f = np.full((80, 300, 3), 90, np.uint8)
            f[20:50, x:x + 30] = (230, 40, 40)
            boxes = np.array([[x, 20, x + 30, 50]], np.float32) if not 8 < t < 28 else np.zeros((0, 4), np.float32)
            out = tr.update(sv.Detections(xyxy=boxes, confidence=np.full(len(boxes), 0.9, np.float32),
                                          class_id=np.zeros(len(boxes), int)), f)
            seen |= {int(i) for i in out.tracker_id if i >= 0}
        return seen
    assert len(ids()) == 1
    monkeypatch.setattr(appearance.ColourCue, "_near", lambda self, tracks, predicted, boxes: appearance._near(predicted, boxes))
    # searched for only near its prediction: a new id (OC-SORT by itself also matches lost tracks by
    # their last observation, its "OCR" round)
    assert len(ids()) == (1 if tracker == "ocsort" else 2)


@pytest.mark.parametrize("appearance", ["colour", "none"])
def test_ocsort_reports_a_confirmed_track_as_soon_as_it_is_found_again(appearance, monkeypatch):
    """A square missed by the detector in frame 10 only: OC-SORT by itself hides its track for the two
    frames after (until 3 matches in a row again); dfine reports it in every frame it is detected."""
    from dfine.integrations.tracking import FrameTracker

    def frames_with_track():
        tr = TrackerConfig("ocsort", appearance=appearance).make(30.0)
        shown = {}
        for t in range(16):
            x = 10 + 4 * t
            f = np.full((80, 200, 3), 90, np.uint8)
            f[20:50, x:x + 30] = (230, 40, 40)
            boxes = np.zeros((0, 4), np.float32) if t == 10 else np.array([[x, 20, x + 30, 50]], np.float32)
            out = tr.update(sv.Detections(xyxy=boxes, confidence=np.full(len(boxes), 0.9, np.float32),
                                          class_id=np.zeros(len(boxes), int)), f)
            shown.update({t: int(i) for i in out.tracker_id if i >= 0})
        return shown
    shown = frames_with_track()
    assert sorted(shown) == [t for t in range(1, 16) if t != 10] and len(set(shown.values())) == 1
    monkeypatch.setattr(FrameTracker, "_keep_confirmed", lambda self, result: result)
    assert sorted(frames_with_track()) == [t for t in range(1, 16) if t not in (10, 11, 12)]


def test_track_shows_its_progress_in_a_log_too(capsys):
    """``dfine track video.mp4 > track.log 2>&1`` showed no progress at all (tqdm's disable=None turns
    the bar off where output is not a terminal); predict shows its bar there, ending once."""
    from types import SimpleNamespace

    from dfine.integrations.tracking import _loop

    class Run:
        source = SimpleNamespace(total=3)
        frames = 0

        def __iter__(self):
            for i in range(3):
                self.frames = i + 1
                yield None, []

    added = []
    _loop(Run(), SimpleNamespace(add=lambda frames, tracks: added.append(frames)), None)
    err = capsys.readouterr().err
    assert added == [1, 2, 3] and err.count("3/3") == 1 and "frame" in err, repr(err)


def test_a_low_conf_for_bytetrack_follows_a_low_conf(capsys):
    """predict's note after a short run says 'try --conf 0.08'; with that, ByteTrack's default second-stage
    score 0.1 sat above its first and turned that stage off without a word (a walk). Not given, it is now
    half of --conf, said in a note; given at or above --conf, a note says the stage is off."""
    from dfine.cli import build_parser
    from dfine.commands.track import tracker_config
    from dfine.integrations.tracking import TrackerConfig

    def config(*options):
        args = build_parser(["track"]).parse_args(["track", "v.mp4", "-m", "m.onnx", *options])
        return tracker_config(args, TrackerConfig), capsys.readouterr().err

    (cfg, said) = config("--conf", "0.08")
    assert cfg.low_conf == 0.04 and cfg.detection_conf == 0.04
    assert said.startswith("note: --low-conf 0.04, half of --conf 0.08 (the default 0.1 would sit above it")
    (cfg, said) = config("--conf", "0.08", "--low-conf", "0.2")
    assert cfg.low_conf == 0.2 and "ByteTrack's second stage (detections scoring between the two" in said
    (cfg, said) = config()
    assert cfg.low_conf == 0.1 and cfg.conf == 0.5 and said == ""
    (cfg, said) = config("--tracker", "sort", "--conf", "0.08")
    assert cfg.low_conf == 0.1 and said == ""  # SORT has no second stage


def test_a_track_at_the_top_border_keeps_its_label_in_the_frame():
    """A walk's overhead video showed no '#id class' on any car entering from the top: the label was
    drawn above its box, outside the frame (predict's pictures keep labels inside)."""
    from dfine.integrations.supervision import TrackAnnotator
    frame = np.zeros((432, 768, 3), np.uint8)
    tracks = sv.Detections(xyxy=np.array([[286, 0, 576, 378], [600, 200, 700, 300]], np.float32),
                           confidence=np.full(2, 0.9, np.float32), class_id=np.zeros(2, int),
                           tracker_id=np.array([1, 2]), data={"class_name": np.array(["car", "car"])})
    drawn = TrackAnnotator(trail=0)(frame, tracks)
    white = (drawn > 200).all(axis=2)  # the labels' text (anti-aliased)
    assert white[:30, 250:600].sum() > 30  # '#1 car', inside the frame at the top
    assert white[160:200, 580:720].sum() > 30  # '#2 car' above its box, as before


def test_a_track_keeps_the_class_it_was_detected_as_most_often():
    """A walk's MOT file had track 9 as car in 7 frames and person in 5 (the detection's class flips
    between like classes): counting (id, class) pairs counted the car twice, and the video's label
    flipped. Each track's class is the one it was detected as most often so far."""

    class Flipping(FakeDetector):
        def predict_pil(self, images, paths=None, conf=None):
            out = super().predict_pil(images, paths, conf)
            for d in out:
                if self.calls % 3 == 0:  # every third batch: everything read as the other class
                    d.labels[:] = 1
                    d.names[:] = [NAMES[1]] * len(d.names)
                    d.category_ids[:] = CATEGORY_ID + 1
            return out

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        pairs = list(dfine.track(_write_video(Path(tmp) / "two.avi"), model=Flipping(), tracker="bytetrack",
                                 conf=0.5))
    shown = [(int(t), str(n), int(c), int(k)) for _, tr in pairs
             for t, n, c, k in zip(tr.tracker_id, tr.data["class_name"], tr.data["category_id"], tr.class_id)]
    assert shown and {(n, c, k) for _, n, c, k in shown} == {(NAMES[0], CATEGORY_ID, 0)}


def test_the_text_gives_each_track_the_class_the_json_gives_it(tmp_path):
    """A re-walk: near a 50/50 vote a track's shown class still changed inside the MOT text (16 of 25
    tracks), and 11 ended there with another class than the JSON's. The text's rows carry the
    track's last class, the JSON's."""
    from dfine.integrations.tracking import TrackLog
    log = TrackLog(tmp_path / "v.txt", tmp_path / "v.json", {})
    for frame, (name, cid) in enumerate([("car", 3), ("person", 1), ("car", 3), ("person", 1)], start=1):
        log.add(frame, sv.Detections(xyxy=np.array([[0, 0, 10, 10]], np.float32), confidence=np.array([0.9], np.float32),
                                     class_id=np.array([0]), tracker_id=np.array([6]),
                                     data={"class_name": np.array([name]), "category_id": np.array([cid])}))
    log.close()
    rows = [line.split(",") for line in (tmp_path / "v.txt").read_text().splitlines()]
    assert [r[7] for r in rows] == ["1"] * 4 and [r[0] for r in rows] == ["1", "2", "3", "4"]
    summary = json.loads((tmp_path / "v.json").read_text())
    assert summary["tracks"][0]["class"] == "person" and summary["classes"] == {"person": 1}
    assert not (tmp_path / "v.partial.txt").exists()


def test_cli_a_folder_of_frames_says_its_assumed_rate_and_takes_fps(tmp_path, monkeypatch, capsys):
    """A folder of frames was tracked and written at 30 fps without a word (frames taken at 10 fps
    played 3x too fast); the note says so, and --fps gives the rate to the video and the tracker."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(6):
        Image.fromarray(_frame(t)).save(folder / f"{t}.png")
    monkeypatch.setattr("dfine.inference.Detector", lambda *a, **k: FakeDetector())
    assert main(["track", str(folder), "-m", "unused.pth", "-o", str(tmp_path / "a")]) == 0
    assert ("note: a folder of frames has no frame rate: 30 fps assumed for frames.mp4 and the tracker (--fps N: the "
            "rate the frames were taken at)") in capsys.readouterr().err
    assert json.loads((tmp_path / "a" / "frames.json").read_text())["fps"] == 30
    assert main(["track", str(folder), "-m", "unused.pth", "-o", str(tmp_path / "b"), "--fps", "10"]) == 0
    assert "no frame rate" not in capsys.readouterr().err
    assert json.loads((tmp_path / "b" / "frames.json").read_text())["fps"] == 10
    cap = cv2.VideoCapture(str(tmp_path / "b" / "frames.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10, abs=0.1)
    assert main(["track", str(folder), "-m", "unused.pth", "-o", str(tmp_path / "d"), "--no-video"]) == 0
    assert ("note: a folder of frames has no frame rate: 30 fps assumed for the tracker (--fps N: the rate the "
            "frames were taken at)") in capsys.readouterr().err  # no video named when none is written
    assert main(["track", str(folder), "-m", "unused.pth", "-o", str(tmp_path / "e"), "--classes", "bar"]) == 0
    assert "note: no track: the model gave no bar box in the frames, at any score" in capsys.readouterr().err
    assert main(["track", str(folder), "-m", "unused.pth", "-o", str(tmp_path / "c"), "--fps", "0"]) == 2
    assert "--fps must be a number of frames per second > 0, got 0" in capsys.readouterr().err


def test_cli_classes_by_number_are_named_recorded_and_an_empty_result_is_explained(tmp_path, monkeypatch, capsys):
    """A walk read class 1 (person's category id) in the .txt and gave --classes 1: bicycle, the model's label
    1, was tracked, 0 tracks and not a word; the JSON did not record the filter either."""
    video = _write_video(tmp_path / "two.avi", frames=6)
    monkeypatch.setattr("dfine.inference.Detector", lambda *a, **k: FakeDetector())
    out = tmp_path / "out"
    assert main(["track", str(video), "-m", "unused.pth", "-o", str(out), "--classes", "1", "--no-video"]) == 0
    err = capsys.readouterr().err
    assert ("--classes 1: bar (numbers count the model's classes from 0; the .txt and .json write category ids, "
            "not these)") in err
    # the fake model never gives a bar: no threshold would start a track (a re-walk was told 'try --conf 0.25')
    assert "note: no track: the model gave no bar box in the video, at any score: no --conf would start one" in err
    assert json.loads((out / "two.json").read_text())["only_classes"] == ["bar"]
    assert main(["track", str(video), "-m", "unused.pth", "-o", str(out), "--classes", "square", "--no-video"]) == 0
    err = capsys.readouterr().err
    assert "numbers count" not in err and "no track" not in err
    # above the chosen class's scores: their best is said (a re-walk's was not: 'try --conf 0.25' of scores 0.14)
    assert main(["track", str(video), "-m", "unused.pth", "-o", str(out), "--classes", "square", "--no-video",
                 "--conf", "0.95"]) == 0
    assert ("note: no track: no detection scored above --conf 0.95 in the video for square (highest score 0.90); "
            "try --conf 0.89 to see it") in capsys.readouterr().err

    class Faint(FakeDetector):  # scores under the tracker's detection threshold too: seen by the model alone
        def predict_pil(self, images, paths=None, conf=None):
            found = super().predict_pil(images, paths, conf)
            return [dataclasses.replace(d, scores=np.full(len(d), 0.05, np.float32)).above(conf or 0) for d in found]
    monkeypatch.setattr("dfine.inference.Detector", lambda *a, **k: Faint())
    assert main(["track", str(video), "-m", "unused.pth", "-o", str(out), "--classes", "square", "--no-video"]) == 0
    assert ("no detection scored above --conf 0.5 in the video for square (highest score 0.05); try --conf 0.04"
            in capsys.readouterr().err)
    assert json.loads((out / "two.json").read_text())["only_classes"] == ["square"]
    assert main(["track", str(video), "-m", "unused.pth", "-o", str(out), "--no-video"]) == 0
    assert json.loads((out / "two.json").read_text())["only_classes"] is None
    assert json.loads((out / "two.json").read_text())["interrupted"] is False


def test_track_labels_of_small_cars_follow_them_and_hide_none():
    """A walk's 1080p drone video: '#20 car' labels of ~100x30 px covered the 40x20 px cars and each other
    ('#20 car' half hidden under '#23 car'). Labels now follow boxes smaller than them (11 px text at least),
    each where it covers no other label nor a quarter of another car, or left out; --labels none: boxes alone."""
    from dfine.integrations.supervision import TrackAnnotator
    n = 30
    xyxy = np.array([[800 + 48 * (i % 10), 500 + 30 * (i // 10), 840 + 48 * (i % 10), 520 + 30 * (i // 10)]
                     for i in range(n)], np.float32)
    tracks = sv.Detections(xyxy=xyxy, confidence=np.linspace(0.9, 0.5, n).astype(np.float32),
                           class_id=np.zeros(n, int), tracker_id=np.arange(1, n + 1),
                           data={"class_name": np.array(["car"] * n)})
    frame = np.zeros((1080, 1920, 3), np.uint8)
    annotator = TrackAnnotator(trail=0)
    drawn = annotator(frame, tracks)
    label = (drawn != annotator._boxes.annotate(frame.copy(), tracks)).any(axis=2)  # what the labels drew
    assert label.sum() > 2000  # labels there are
    rows = np.nonzero(label.any(axis=1))[0]
    assert label[:500].any() and 500 - rows.min() <= 20, rows.min()  # the first row's, at most ~18 px tall above it
    for x0, y0, x1, y1 in xyxy.astype(int).tolist():  # inside each car, past its 2 px outline
        assert label[y0 + 2:y1 - 2, x0 + 2:x1 - 2].mean() < 0.25, (x0, y0)
    bare = TrackAnnotator(trail=0, labels="none")(frame, tracks)
    assert np.array_equal(bare, annotator._boxes.annotate(frame.copy(), tracks))  # --labels none: boxes alone
