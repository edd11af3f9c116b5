"""Frame sources and the video writer (dfine/video.py): webcam indices and stream URLs routed to the
right OpenCV backend, one line when they cannot be opened, a stalled stream ending with the frames it
sent, an MP4 without its index named as such, and our own video staying playable after a kill -9."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dfine.errors import DfineError
from dfine.video import VideoWriter, mp4_without_index, open_source, truncation_note

cv2 = pytest.importorskip("cv2")
ROOT = Path(__file__).resolve().parents[1]


def _frames(n: int, w: int = 64, h: int = 48):
    for t in range(n):
        f = np.full((h, w, 3), 30, np.uint8)
        f[10:30, (2 * t) % (w - 20):(2 * t) % (w - 20) + 20] = (240, 80, 40)
        yield f


def _avi(path: Path, n: int) -> bytes:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for f in _frames(n):
        out.write(f[..., ::-1])
    out.release()
    return path.read_bytes()


def _count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened() and cap.read()[0]:
        n += 1
    cap.release()
    return n


class _Recorder:
    """Stands in for cv2.VideoCapture: records how it was called, opens nothing."""

    calls: list = []

    def __init__(self, *args):
        _Recorder.calls.append(args)

    def isOpened(self):
        return False

    def release(self):
        pass


def test_webcam_index_and_rtsp_url_are_routed(monkeypatch):
    _Recorder.calls = []
    monkeypatch.setattr(cv2, "VideoCapture", _Recorder)
    with pytest.raises(DfineError, match="cannot open webcam 0: no camera at index 0"):
        open_source("0")
    with pytest.raises(DfineError, match=r"cannot open stream rtsp://cam\.local/live: refused"):
        open_source("rtsp://cam.local/live", timeout=5)
    webcam, rtsp = _Recorder.calls
    assert webcam == (0,)  # the device index, not a file named "0"
    url, api, params = rtsp  # FFmpeg, with open and read timeouts in ms
    assert (url, api) == ("rtsp://cam.local/live", cv2.CAP_FFMPEG)
    assert params == [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]


def test_missing_webcam_and_refused_rtsp_are_one_quiet_line(capfd):
    """The real OpenCV: no camera (skipped where one exists) and an RTSP port nobody listens on."""
    if not Path("/dev/video0").exists():
        with pytest.raises(DfineError, match="cannot open webcam 0"):
            open_source("0")
    with pytest.raises(DfineError, match="cannot open stream rtsp://127.0.0.1:9/x"):
        open_source("rtsp://127.0.0.1:9/x", timeout=2)
    err = capfd.readouterr().err
    assert "OpenCV" not in err and "WARN" not in err and "ERROR" not in err  # OpenCV's own log lines silenced


@pytest.fixture
def stalling_server(tmp_path):
    """Serves /clip.avi (40 frames) by sending its first half and then nothing for 20 s."""
    data = _avi(tmp_path / "clip.avi", 40)

    class Stall(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            time.sleep(20)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stall)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/clip.avi"
    server.shutdown()


def test_stalled_stream_ends_with_the_frames_it_sent(stalling_server):
    start = time.monotonic()
    src = open_source(stalling_server, timeout=1)
    frames = list(src.frames)
    assert 5 < len(frames) < 40 and time.monotonic() - start < 10
    note = truncation_note(src)
    assert note == f"warning: clip sent no frame for 1 s; stopped after {len(frames)} frames"


def test_mp4_cut_before_its_index_is_named(tmp_path):
    full = tmp_path / "full.mp4"
    out = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))  # index written at the end
    for f in _frames(30):
        out.write(f)
    out.release()
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert not mp4_without_index(full) and mp4_without_index(cut)
    assert not mp4_without_index(tmp_path / "nope.mp4")
    with pytest.raises(DfineError) as e:
        open_source(cut)
    assert "without its index ('moov' box)" in str(e.value) and str(cut) in str(e.value)
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(DfineError, match="cannot open video .*junk.mp4"):
        open_source(tmp_path / "junk.mp4")


def test_an_empty_video_and_a_misspelt_one_are_said_so(tmp_path, monkeypatch):
    """A walk's 0-byte .mp4 was 'not a video, or a codec OpenCV lacks'; its misspelt video name got no 'did you
    mean' from dfine track, which dfine predict gives."""
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DfineError) as e:
        open_source(tmp_path / "empty.mp4")
    assert str(e.value) == f"cannot open video {tmp_path / 'empty.mp4'}: it is empty (0 bytes): copy or record it again"
    import dfine.video
    monkeypatch.setattr(dfine.video, "_cv2", lambda: None)  # no OpenCV: said empty, not 'pip install dfine[video]'
    monkeypatch.setattr(dfine.video, "_open_video_av", lambda path: pytest.fail("a decoder was looked for"))
    with pytest.raises(DfineError, match="it is empty"):
        open_source(tmp_path / "empty.mp4")
    monkeypatch.undo()
    (tmp_path / "solidWhiteRight.mp4").write_bytes(b"x")
    with pytest.raises(DfineError) as e:
        open_source(tmp_path / "solidWhiteRigth.mp4")
    assert str(e.value) == (f"source {tmp_path / 'solidWhiteRigth.mp4'} not found; did you mean "
                            f"{tmp_path / 'solidWhiteRight.mp4'}?")
    with pytest.raises(DfineError, match=r"not found \(a video file, a folder of frames, a webcam index or a stream"):
        open_source(tmp_path / "other.avi")


def test_writer_renames_when_complete_and_pads_odd_sides(tmp_path):
    writer = VideoWriter(tmp_path / "out.mp4", fps=10)
    for f in _frames(12, w=63, h=47):
        writer.write(f)
    assert writer.partial.exists() and not (tmp_path / "out.mp4").exists()
    assert writer.close() == tmp_path / "out.mp4" and not writer.partial.exists()
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    ok, frame = cap.read()
    assert ok and frame.shape == (48, 64, 3) and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert VideoWriter(tmp_path / "none.mp4", fps=10).close() is None  # no frame, no file


def test_writer_draws_and_encodes_in_its_thread_in_order_and_raises_its_errors(tmp_path):
    """``draw`` runs in the writer thread (frames stay in order); an error there comes back to the
    caller on a later write() or on close(), and the file written so far stays as NAME.partial.mp4."""
    import threading
    threads = set()

    def draw(frame, t):
        threads.add(threading.current_thread().name)
        out = frame.copy()
        out[:, :] = (t * 20, 0, 0)  # the frame's number, as its red level
        return out

    writer = VideoWriter(tmp_path / "drawn.mp4", fps=10, draw=draw, queue_size=2)
    for t, f in enumerate(_frames(10)):
        writer.write(f, t)
    assert writer.frames == 10 and writer.close() == tmp_path / "drawn.mp4"
    assert threads == {"dfine-video-writer"}
    cap = cv2.VideoCapture(str(tmp_path / "drawn.mp4"))
    reds = [int(round(cap.read()[1][..., 2].mean() / 20)) for _ in range(10)]
    assert reds == list(range(10))

    def broken(frame, t):
        if t == 3:
            raise DfineError("cannot draw frame 3")
        return frame

    writer = VideoWriter(tmp_path / "broken.mp4", fps=10, draw=broken, queue_size=1)
    with pytest.raises(DfineError, match="cannot draw frame 3"):
        for t, f in enumerate(_frames(50)):
            writer.write(f, t)
    assert writer.close(complete=False) == writer.partial  # the failed run keeps what it wrote
    writer = VideoWriter(tmp_path / "late.mp4", fps=10, draw=broken)
    for t, f in enumerate(_frames(4)):
        writer.write(f, t)  # the error happens after the last write: close() raises it
    with pytest.raises(DfineError, match="cannot draw frame 3"):
        writer.close()
    assert not (tmp_path / "late.mp4").exists() and writer.partial.exists()


_KILLED_WRITER = """
import sys, numpy as np
from dfine.video import VideoWriter
w = VideoWriter(sys.argv[1], fps=10)
for t in range(100000):
    f = np.zeros((48, 64, 3), np.uint8); f[:, (t * 3) % 64] = 255
    w.write(f)
    if t == 45 + 9:  # frame 45 encoded: the queue holds 8 more, the writer thread one
        print("45", flush=True)
"""


def test_writer_output_survives_kill_9(tmp_path):
    pytest.importorskip("av")  # the fragmented MP4 needs PyAV; OpenCV's plain MP4 does not survive
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path / "run.mp4")],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "45"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run.mp4").exists()
    assert _count(tmp_path / "run.partial.mp4") >= 40  # all but the last second (fragments of 10 frames)


def test_writer_letterboxes_frames_of_another_size_and_says_so(tmp_path):
    """A folder of photos of several sizes: each later frame keeps its aspect in the first's size
    (black borders), instead of being stretched by the encoder, and one note says how many."""
    wide = np.full((48, 64, 3), 200, np.uint8)
    tall = np.full((48, 32, 3), 200, np.uint8)  # half as wide: fits at scale 1 between 16 px borders
    writer = VideoWriter(tmp_path / "mixed.mp4", fps=10)
    for f in (wide, tall, wide):
        writer.write(f)
    assert writer.close() == tmp_path / "mixed.mp4"
    assert writer.size_note().startswith("note: 1 of 3 frames differ in size from the first (64x48)")
    cap = cv2.VideoCapture(str(tmp_path / "mixed.mp4"))
    frames = [cap.read()[1] for _ in range(3)]
    assert all(f.shape == (48, 64, 3) for f in frames)
    assert frames[0][:, :12].mean() > 150  # the first frame fills the picture
    assert frames[1][:, :12].mean() < 40 and frames[1][:, -12:].mean() < 40  # borders, not stretched
    assert frames[1][:, 20:44].mean() > 150
    single = VideoWriter(tmp_path / "same.mp4", fps=10)
    single.write(wide)
    single.close()
    assert single.size_note() is None


def _every_other_frame_avi(path: Path, n: int) -> Path:
    """An AVI whose header counts 50 fps and about 2n frames, every other one empty: n frames shown 40 ms apart,
    as a walk's H.264 'vtest.avi' was (682 frames at 50 fps in its header, 341 frames 13.6 s long)."""
    av = pytest.importorskip("av")
    from fractions import Fraction
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=50)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 50)
        for t, rgb in enumerate(_frames(n)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = 2 * t, Fraction(1, 50)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize("decoder", ["opencv", "pyav"])
def test_a_video_whose_header_doubles_its_rate_is_read_at_the_rate_its_frames_are_shown(tmp_path, decoder,
                                                                                         monkeypatch):
    """The walk's video was read at its header's 50 fps: the annotated copy played twice as fast, the progress
    bar stopped at 341 of 682 and a warning called the whole file cut short. Both decoders now give 25 fps and
    the frames there are, and the copy written at that rate lasts as long as the source."""
    import dfine.video as video
    src_path = _every_other_frame_avi(tmp_path / "vtest.avi", 20)
    capture = cv2.VideoCapture(str(src_path))
    assert capture.get(cv2.CAP_PROP_FPS) == 50 and capture.get(cv2.CAP_PROP_FRAME_COUNT) > 30  # as the walk's
    capture.release()
    if decoder == "pyav":
        monkeypatch.setattr(video, "_cv2", lambda: None)
    src = open_source(src_path)
    frames = list(src.frames)
    assert (src.fps, src.total, len(frames), src.truncated) == (25, 20, 20, False)
    assert [int(f[20, 40, 0]) > 150 for f in frames] == [int(f[20, 40, 0]) > 150 for f in _frames(20)]
    assert video.shown_rate([0, 0.04, 0.08, 0.12, 0.16, 0.2], 25.0, 100) == (25.0, 100)  # a header that is right
    assert video.shown_rate([0.04, 0.12, 0.16, 0.2, 0.24, 0.28], 50.0, 682) == (25.0, 341)  # a skipped time first
    assert video.shown_rate([0, 0.03, 0.08, 0.1, 0.17, 0.2], 50.0, 90) == (50.0, 90)  # no steady rate: the header's
