"""Frame sources for ``predict`` and ``track``: video files, folders of frames, webcams and streams.

:func:`open_source` opens any of them as a :class:`FrameSource` (RGB uint8 frames, fps, frame count);
:class:`FrameReader` decodes in a background thread into a small bounded queue, so decoding overlaps
inference and memory stays flat however long the video. Videos are read with OpenCV (FFmpeg inside,
which also reads ``rtsp://`` / ``http(s)://`` streams and webcams), else PyAV for files.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

import numpy as np

from .errors import DfineError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_INSTALL_VIDEO = "video needs OpenCV or PyAV: pip install dfine[video] (or av)"


@dataclass
class FrameSource:
    """An open source of frames.

    ``frames`` yields ``H x W x 3`` RGB uint8 arrays; ``fps`` is the source's rate (30 when it does not
    say); ``total`` the frame count, 0 when unknown (streams, webcams); ``live`` is true for webcams and
    streams (no end known in advance); ``name`` names output files; ``truncated`` is set once the frames
    ran out before ``total`` (a cut-off file), with ``read`` frames delivered."""

    frames: Iterator[np.ndarray]
    fps: float
    total: int
    name: str
    live: bool = False
    truncated: bool = False
    read: int = 0


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
    raise DfineError(f"source {text} not found (a video file, a folder of frames, a webcam index or a stream URL)")


def open_source(source: Union[str, int, os.PathLike]) -> FrameSource:
    """Open a video file, a folder of frames (natural order), a webcam index or a stream URL."""
    kind = source_kind(source)
    if kind == "folder":
        return _open_folder(Path(source))
    if kind == "video":
        return _open_video(Path(source))
    return _open_capture(int(source) if kind == "webcam" else str(source), kind)


def _open_folder(folder: Path) -> FrameSource:
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    if not files:
        raise DfineError(f"folder {folder} holds no frames ({' '.join(IMAGE_SUFFIXES)})")

    def frames() -> Iterator[np.ndarray]:
        from .inference import load_image
        for path in files:
            yield np.asarray(load_image(path))
    return FrameSource(frames(), 30.0, len(files), folder.name or "frames")


def _cv2():
    """OpenCV with FFmpeg's own log lines silenced (our errors say what went wrong), or None."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _open_capture(target: Union[str, int], kind: str) -> FrameSource:
    """A webcam or a stream through OpenCV."""
    cv2 = _cv2()
    if cv2 is None:
        raise DfineError(f"{kind}s need OpenCV: pip install dfine[video]")
    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        what = f"webcam {target}" if kind == "webcam" else f"stream {target}"
        raise DfineError(f"cannot open {what} (check that it exists and is reachable)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or 30.0
    src = FrameSource(iter(()), fps, 0, f"webcam{target}" if kind == "webcam" else _stream_name(str(target)), live=True)
    src.frames = _capture_frames(cap, cv2, src)
    return src


def _stream_name(url: str) -> str:
    stem = Path(url.split("?", 1)[0].rstrip("/")).stem
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "stream"


def _capture_frames(cap, cv2, src: FrameSource) -> Iterator[np.ndarray]:
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            src.read += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    src.truncated = bool(src.total) and src.read < src.total


def _open_video(path: Path) -> FrameSource:
    """A video file with OpenCV, else PyAV. A file cut short yields the frames it has."""
    cv2 = _cv2()
    if cv2 is None:
        return _open_video_av(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise DfineError(f"cannot open video {path} (not a video, or cut short before its index)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or 30.0
    src = FrameSource(iter(()), fps, max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0), path.stem)
    src.frames = _capture_frames(cap, cv2, src)
    return src


def _open_video_av(path: Path) -> FrameSource:
    try:
        import av
    except ImportError:
        raise DfineError(_INSTALL_VIDEO) from None
    try:
        container = av.open(str(path))
        stream = container.streams.video[0]
    except Exception as e:  # PyAV raises its own error types
        raise DfineError(f"cannot open video {path}: {str(e)[:120]}") from None
    src = FrameSource(iter(()), float(stream.average_rate or 30), int(stream.frames or 0), path.stem)

    def frames() -> Iterator[np.ndarray]:
        try:
            for frame in container.decode(stream):
                src.read += 1
                yield frame.to_ndarray(format="rgb24")
        except Exception:  # a damaged packet ends the video like a cut-off file
            pass
        finally:
            container.close()
        src.truncated = bool(src.total) and src.read < src.total
    src.frames = frames()
    return src


def truncation_note(src: FrameSource) -> Optional[str]:
    """The one line to print when a file ended before its announced frame count."""
    if src.truncated:
        return f"warning: {src.name} ended after {src.read} of {src.total} frames (file cut short?); kept those"
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

