"""Frame sources for ``predict`` and ``track``: video files, folders of frames, webcams and streams.

:func:`open_source` opens any of them as a :class:`FrameSource` (RGB uint8 frames, fps, frame count);
:class:`FrameReader` decodes in a background thread into a small bounded queue, so decoding overlaps
inference and memory stays flat however long the video. Videos are read with OpenCV (FFmpeg inside,
which also reads ``rtsp://`` / ``http(s)://`` streams and webcams), else PyAV for files.
:class:`VideoWriter` writes annotated videos so that a killed run still leaves a playable file.
"""

from __future__ import annotations

import itertools
import os
import queue
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DfineError
from .text import counted, first_few

#: Image file suffixes (lower case) every part of dfine picks up: predict, frame folders, calibration,
#: dataset conversion and checks. Only formats PIL decodes in full (MPO: multi-picture JPEG, PFM: float
#: maps); in the order a search by stem tries them.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".mpo", ".pfm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_INSTALL_VIDEO = "video needs OpenCV or PyAV: pip install \"dfine[video]\" (or av)"
STREAM_TIMEOUT = 30.0  # seconds a stream may take to open, or to send its next frame, before it counts as ended


@dataclass
class FrameSource:
    """An open source of frames.

    ``frames`` yields ``H x W x 3`` RGB uint8 arrays; ``fps`` is the source's rate (30 when it does not
    say); ``total`` the frame count, 0 when unknown (streams, webcams); ``live`` is true for webcams and
    streams (no end known in advance); ``name`` names output files; ``truncated`` is set once the frames
    ran out before ``total`` (a cut-off file), with ``read`` frames delivered; ``stalled`` once a stream
    sent nothing for ``timeout`` seconds (its end, as far as we can tell)."""

    frames: Iterator[np.ndarray]
    fps: float
    total: int
    name: str
    live: bool = False
    truncated: bool = False
    read: int = 0
    stalled: bool = False
    timeout: float = STREAM_TIMEOUT


def natural_key(path: Path) -> Tuple[Union[str, int], ...]:
    """Sort key ordering ``2.jpg`` before ``10.jpg`` (digit runs compared as numbers)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name))


def source_kind(source: Union[str, int, os.PathLike]) -> str:
    """``webcam``, ``stream``, ``folder`` or ``video`` for a track/predict source; one line otherwise."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit() and not Path(source).exists()):
        return "webcam"  # a file or folder named "0" is read as such
    text = str(source)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in STREAM_SCHEMES:
            raise DfineError(f"unsupported stream {text}: use one of {', '.join(s + '://' for s in STREAM_SCHEMES)}")
        return "stream"
    path = Path(text)
    if path.is_dir():
        return "folder"
    if path.is_file():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return "video"
        raise DfineError(f"{path} is not a video ({' '.join(VIDEO_SUFFIXES)}), a folder of frames, a webcam "
                         f"index or a stream URL")
    from dfine.text import did_you_mean
    what = " (a video file, a folder of frames, a webcam index or a stream URL)"
    raise DfineError(f"source {text} not found{did_you_mean(text) or what}")


def open_source(source: Union[str, int, os.PathLike], timeout: float = STREAM_TIMEOUT) -> FrameSource:
    """Open a video file, a folder of frames (natural order), a webcam index (``0``: the first camera,
    ``/dev/video0`` on Linux) or a stream URL (``rtsp://``, ``http://``...: FFmpeg inside OpenCV, which
    gives up on a stream that takes over ``timeout`` seconds to open or to send its next frame)."""
    kind = source_kind(source)
    if kind == "folder":
        return _open_folder(Path(source))
    if kind == "video":
        return _open_video(Path(source))
    return _open_capture(int(source) if kind == "webcam" else str(source), kind, timeout)


def _open_folder(folder: Path) -> FrameSource:
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    if not files:
        videos = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if videos:  # 'holds no frames' of a folder of videos (a walk)
            raise DfineError(f"folder {folder} holds no frames ({' '.join(IMAGE_SUFFIXES)}) but "
                             f"{counted(len(videos), 'video')} ({first_few(videos, 3)}): give one of them")
        raise DfineError(f"folder {folder} holds no frames ({' '.join(IMAGE_SUFFIXES)})")

    def frames() -> Iterator[np.ndarray]:
        from .inference import load_image
        skipped = 0
        for path in files:
            try:
                image = load_image(path)
            except DfineError as e:  # one truncated frame ended a walk's run, the frames after it never tracked
                skipped += 1
                print(f"warning: skipped an unreadable frame ({e}); the frames after it are counted "
                      f"{counted(skipped, 'frame')} lower", file=sys.stderr)
                continue
            yield np.asarray(image)
    return FrameSource(frames(), 30.0, len(files), folder.name or "frames")


def _cv2():
    """OpenCV with its own and FFmpeg's log lines silenced (our errors say what went wrong; a missing
    webcam otherwise prints five lines of OpenCV internals first), or None. A user's own
    ``OPENCV_LOG_LEVEL`` / ``OPENCV_FFMPEG_LOGLEVEL`` win."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    quiet = "OPENCV_LOG_LEVEL" not in os.environ
    if quiet:
        os.environ["OPENCV_LOG_LEVEL"] = "SILENT"
    try:
        import cv2
    except ImportError:
        return None
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if quiet and logging is not None:  # cv2 imported before the variable was set
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    return cv2


def _open_capture(target: Union[str, int], kind: str, timeout: float = STREAM_TIMEOUT) -> FrameSource:
    """A webcam (OpenCV's default camera backend) or a stream (OpenCV's FFmpeg backend, with open and
    read timeouts)."""
    cv2 = _cv2()
    if cv2 is None:
        raise DfineError(f"{kind}s need OpenCV: pip install \"dfine[video]\"")
    import time
    start = time.monotonic()
    if kind == "webcam":
        cap = cv2.VideoCapture(target)
    else:
        ms = int(timeout * 1000)
        cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG,
                               [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    if not cap.isOpened():
        cap.release()
        if kind == "webcam":
            raise DfineError(f"cannot open webcam {target}: no camera at index {target} (on Linux /dev/video{target}), "
                             f"or another program is using it")
        why = (f"no answer within {timeout:g} s" if time.monotonic() - start >= 0.9 * timeout
               else "refused, or not a video")
        raise DfineError(f"cannot open stream {target}: {why} (check the URL, that the server is reachable and "
                         f"that it sends video)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or 30.0
    src = FrameSource(iter(()), fps, 0, f"webcam{target}" if kind == "webcam" else _stream_name(str(target)),
                      live=True, timeout=timeout)
    src.frames = _capture_frames(cap, cv2, src)
    return src


def _stream_name(url: str) -> str:
    stem = Path(url.split("?", 1)[0].rstrip("/")).stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "stream"


def _capture_frames(cap, cv2, src: FrameSource, first: Sequence[np.ndarray] = ()) -> Iterator[np.ndarray]:
    """The frames of ``cap`` as RGB, ``first`` (BGR frames read already) before them, counted in ``src.read``."""
    import time
    try:
        for frame in first:
            src.read += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        waited = 0.0
        while True:
            start = time.monotonic()
            ok, frame = cap.read()
            took = time.monotonic() - start
            if not ok:  # a live source that hit the read timeout (in this read or the one before) stalled
                src.stalled = src.live and max(took, waited) >= 0.9 * src.timeout
                break
            waited = took
            src.read += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    src.truncated = bool(src.total) and src.read < src.total


def _open_video(path: Path) -> FrameSource:
    """A video file with OpenCV, else PyAV. A file cut short yields the frames it has."""
    if path.stat().st_size == 0:  # before a decoder is looked for: no install makes it readable (a re-walk)
        raise DfineError(_unreadable(path))
    cv2 = _cv2()
    if cv2 is None:
        return _open_video_av(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise DfineError(_unreadable(path))
    first, times = [], []
    while len(first) < _TIMED:  # the first frames' times: the rate they are shown at
        ok, frame = cap.read()
        if not ok:
            break
        first.append(frame)
        times.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)
    fps, total = shown_rate(times, float(cap.get(cv2.CAP_PROP_FPS) or 0) or 30.0,
                            max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0))
    src = FrameSource(iter(()), fps, total, path.stem)
    src.frames = _capture_frames(cap, cv2, src, first)
    return src


_TIMED = 6  # frames whose times :func:`shown_rate` compares


def shown_rate(times: Sequence[float], fps: float, total: int) -> Tuple[float, int]:
    """``(fps, total)`` of a video file whose header says ``fps`` and ``total`` frames, given the times
    (seconds) of its first frames: the rate those frames are shown at when it is steady and differs from the
    header's by more than a tenth, the frame count scaled with it. An AVI that counts every other frame as an
    empty one (a walk's H.264 'vtest.avi': 50 fps and 682 frames in its header, 341 frames 40 ms apart) made
    the output video play twice as fast and the progress bar stop at half, said as a file cut short."""
    steps = sorted(b - a for a, b in zip(times, times[1:]))
    step = steps[len(steps) // 2] if steps else 0.0  # the median: a decoder's first frames may skip a time
    if len(steps) < _TIMED - 1 or step <= 0 or sum(abs(s - step) <= 0.02 * step for s in steps) * 2 <= len(steps):
        return fps, total
    shown = 1 / step
    if abs(shown - fps) <= 0.1 * fps:
        return fps, total
    return round(shown, 3), round(total * shown / fps) if total else 0


def _open_video_av(path: Path) -> FrameSource:
    try:
        import av
    except ImportError:
        raise DfineError(_INSTALL_VIDEO) from None
    try:
        container = av.open(str(path))
        stream = container.streams.video[0]
    except Exception as e:  # PyAV raises its own error types
        raise DfineError(_unreadable(path, str(e)[:120])) from None
    decoded = container.decode(stream)
    first = []
    try:
        first = list(itertools.islice(decoded, _TIMED))  # their times: the rate they are shown at
    except Exception:  # a damaged packet: the frames before it
        pass
    fps, total = shown_rate([float(f.time) for f in first if f.time is not None],
                            float(stream.average_rate or 30), int(stream.frames or 0))
    src = FrameSource(iter(()), fps, total, path.stem)

    def frames() -> Iterator[np.ndarray]:
        try:
            for frame in itertools.chain(first, decoded):
                src.read += 1
                yield frame.to_ndarray(format="rgb24")
        except Exception:  # a damaged packet ends the video like a cut-off file
            pass
        finally:
            container.close()
        src.truncated = bool(src.total) and src.read < src.total
    src.frames = frames()
    return src


def _unreadable(path: Path, why: str = "") -> str:
    """The one line for a video file no decoder opens; an MP4/MOV cut off before its index is named."""
    if path.is_file() and path.stat().st_size == 0:  # 'not a video, or a codec OpenCV lacks' (a walk's empty.mp4)
        return f"cannot open video {path}: it is empty (0 bytes): copy or record it again"
    if mp4_without_index(path):
        return (f"cannot read video {path}: it is an MP4/MOV without its index ('moov' box), the usual state of "
                f"a recording cut off before it was finished, and no decoder can read one; record to a "
                f"fragmented MP4, MKV or AVI to keep what was written")
    return f"cannot open video {path} ({why or 'not a video, or a codec OpenCV lacks'})"


def mp4_without_index(path: Path) -> bool:
    """Whether ``path`` is an ISO media file (MP4, MOV, M4V: first box ``ftyp``) whose top-level boxes
    hold no ``moov``, the index every frame's position is read from (written last by most recorders)."""
    import struct
    try:
        with open(path, "rb") as f:
            size, end, seen = 0, os.fstat(f.fileno()).st_size, []
            while f.tell() + 8 <= end and len(seen) < 10000:
                start = f.tell()
                size, kind = struct.unpack(">I4s", f.read(8))
                if size == 1:
                    size = struct.unpack(">Q", f.read(8))[0] if f.tell() + 8 <= end else 0
                seen.append(kind)
                if size < 8:  # 0: the box runs to the end of the file
                    break
                f.seek(start + size)
    except OSError:
        return False
    return bool(seen) and seen[0] == b"ftyp" and b"moov" not in seen


def truncation_note(src: FrameSource) -> Optional[str]:
    """The one line to print when a file ended before its announced frame count, or a stream stalled."""
    if src.truncated:
        return f"warning: {src.name} ended after {src.read} of {src.total} frames (file cut short?); kept those"
    if src.stalled:
        return f"warning: {src.name} sent no frame for {src.timeout:g} s; stopped after {counted(src.read, 'frame')}"
    return None


class FrameReader:
    """Decodes ``source.frames`` in a daemon thread into a queue of at most ``buffer`` frames.

    :meth:`batches` yields lists of up to ``batch_size`` frames: for files it waits for full batches
    (throughput); for live sources it takes what is ready (latency). :meth:`close` stops the thread.
    An error in the reader thread is raised again in the consumer."""

    _END = object()

    def __init__(self, source: FrameSource, buffer: int = 16):
        self.source = source
        self._queue: "queue.Queue[object]" = queue.Queue(maxsize=max(buffer, 1))
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._work, name="dfine-frame-reader", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for frame in self.source.frames:
                if not self._put(frame):
                    break
        except BaseException as e:  # handed to the consumer
            self._error = e
        finally:
            self._put(self._END)

    def batches(self, batch_size: int) -> Iterator[List[np.ndarray]]:
        done = False
        while not done:
            batch: List[np.ndarray] = []
            item = self._queue.get()
            while item is not self._END:
                batch.append(item)  # type: ignore[arg-type]
                if len(batch) >= batch_size:
                    break
                if self.source.live:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                else:
                    item = self._queue.get()
            done = item is self._END
            if self._error is not None:
                raise self._error
            if batch:
                yield batch

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        close: Optional[Callable[[], None]] = getattr(self.source.frames, "close", None)
        if close is not None and not self._thread.is_alive():
            close()

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()



def _letterbox(frame: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``frame [h, w, 3]`` scaled (aspect kept) and centred on a black ``[H, W, 3]``, ``size = (H, W)``."""
    from PIL import Image
    (H, W), (h, w) = size, frame.shape[:2]
    scale = min(W / w, H / h)
    nw, nh = max(1, min(W, round(w * scale))), max(1, min(H, round(h * scale)))
    out = np.zeros((H, W, 3), np.uint8)
    y, x = (H - nh) // 2, (W - nw) // 2
    out[y:y + nh, x:x + nw] = np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize((nw, nh), Image.BILINEAR))
    return out


class VideoWriter:
    """An annotated MP4 written frame by frame as ``NAME.partial.mp4`` beside ``path``, renamed to
    ``path`` by :meth:`close`.

    With PyAV (installed by ``dfine[video]`` and ``dfine[track]``): H.264 (x264 ``veryfast``,
    ``zerolatency``: no frames held back in the encoder) in a *fragmented* MP4, a keyframe and a fragment
    every second, each flushed to disk when made, so a run killed outright (SIGKILL, power cut) leaves
    ``NAME.partial.mp4`` playable up to its last second; a plain MP4 keeps its index at the end and is
    unreadable until closed. Without PyAV, OpenCV's MPEG-4 (``mp4v``) in a
    plain MP4. Frames are ``[H, W, 3]`` RGB uint8; the first sets the video's size, and a later frame
    of another size (a folder of photos) is scaled to fit it with black borders, its aspect kept
    (counted in :attr:`letterboxed`; :meth:`size_note` says so in one line). An odd side is padded
    by one pixel (H.264's 4:2:0 needs even sides).

    Drawing (``draw(frame, *args)``, when given) and encoding run in a writer thread, so the caller's
    next frame is decoded and detected meanwhile; :meth:`write` hands a frame over through a queue of
    ``queue_size`` frames (it waits when the queue is full: memory stays bounded) and an error of the
    writer thread is raised by the next :meth:`write` or by :meth:`close`. A kill loses at most the
    queued frames besides the last second."""

    def __init__(self, path: Union[str, os.PathLike], fps: float,
                 draw: Optional[Callable[..., np.ndarray]] = None, queue_size: int = 8):
        self.path = Path(path)
        self.partial = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        self.fps = float(fps) or 30.0
        self.frames = 0  # frames handed to write()
        self.letterboxed = 0  # frames of another size than the first, scaled to fit with borders
        self._size: Optional[Tuple[int, int]] = None  # (H, W) of the first frame
        self.draw = draw
        self._av: Any = None
        self._cv: Any = None
        self._queue: "queue.Queue[Optional[tuple]]" = queue.Queue(maxsize=max(queue_size, 1))
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def _open(self, width: int, height: int) -> None:
        from fractions import Fraction
        try:
            import av
        except ImportError:
            av = None
        try:
            if av is not None:
                self._av = av.open(str(self.partial), "w", options={
                    "movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"})
                codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
                stream = self._av.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001),
                                             options={"preset": "veryfast", "tune": "zerolatency"} if codec == "libx264" else {})
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.gop_size = max(int(round(self.fps)), 1)
                return
        except Exception as e:  # PyAV raises its own error types
            raise DfineError(f"cannot write video {self.partial}: {e}") from None
        cv2 = _cv2()
        if cv2 is None:
            raise DfineError("writing a video needs PyAV or OpenCV: pip install \"dfine[video]\"")
        self._cv = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
        if not self._cv.isOpened():
            raise DfineError(f"cannot write video {self.partial} (OpenCV could not open an MPEG-4 writer)")

    def write(self, frame: Any, *args: Any) -> None:
        """Append one ``[H, W, 3]`` RGB uint8 frame (with ``draw``: the frame ``draw(frame, *args)``
        returns). The frame must not be changed afterwards (it is encoded later, in the writer thread)."""
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dfine-video-writer", daemon=True)
            self._thread.start()
        self._queue.put((frame, args))
        self.frames += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    frame, args = item
                    self._encode(self.draw(frame, *args) if self.draw is not None else frame)
                except BaseException as e:  # raised in the caller's thread by write() or close()
                    self._error = e

    def _encode(self, frame: np.ndarray) -> None:
        if self._size is None:
            self._size = frame.shape[:2]
        elif frame.shape[:2] != self._size:
            frame = _letterbox(frame, self._size)
            self.letterboxed += 1
        h, w = frame.shape[:2]
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if self._av is None and self._cv is None:
            self._open(frame.shape[1], frame.shape[0])
        if self._av is not None:
            import av
            stream = self._av.streams.video[0]
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                self._av.mux(packet)
        else:
            self._cv.write(np.ascontiguousarray(frame[..., ::-1]))

    def _finish(self) -> None:
        if self._av is not None:
            for packet in self._av.streams.video[0].encode():
                self._av.mux(packet)
            self._av.close()
        elif self._cv is not None:
            self._cv.release()
        self._av = self._cv = None

    def size_note(self) -> Optional[str]:
        """One line when frames were letterboxed (read it after :meth:`close`), else None."""
        if not self.letterboxed:
            return None
        h, w = self._size
        return (f"note: {self.letterboxed} of {self.frames} frames differ in size from the first ({w}x{h}); "
                f"{self.path.name} shows them scaled to fit with black borders (boxes in the text and JSON "
                f"files are in each frame's own pixels)")

    def close(self, complete: bool = True) -> Optional[Path]:
        """Finish the file. ``complete``: rename it to ``path`` (returned); else (the run failed) leave
        it, readable, as ``NAME.partial.mp4`` (returned). None when no frame was written. The frames
        still queued are written first; a writer thread's error is raised here when ``complete``."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        had = self._av is not None or self._cv is not None
        self._finish()
        if self._error is not None and complete:
            raise self._error
        if not had:
            return None
        if complete:
            self.partial.replace(self.path)
            return self.path
        return self.partial
