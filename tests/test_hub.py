"""The download cache against a real HTTP server on 127.0.0.1 (never anything else)."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

from dfine import hub, zoo
from dfine.errors import DfineError

PAYLOAD = bytes(range(256)) * 1200 + b"tail"  # ~300 kB: several chunks of progress
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
TIMEOUT = 5.0


@dataclass
class Server:
    """What the test server serves and what it was asked."""

    url: str
    mode: str = "range"  # range | no-range | drop-once | drop-always
    ranges: List[Optional[str]] = field(default_factory=list)  # the Range header of each GET


class _Handler(BaseHTTPRequestHandler):
    """Serves ``PAYLOAD`` at ``/weights.pth``, honouring ``Range`` as ``server.state.mode`` says."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        state: Server = self.server.state  # type: ignore[attr-defined]
        asked = self.headers.get("Range")
        state.ranges.append(asked)
        if self.path != "/weights.pth":
            self.send_error(404, "Not Found")
            return
        start = _range_start(asked) if state.mode != "no-range" else None
        if start is not None and start >= len(PAYLOAD):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = PAYLOAD[start or 0:]
        self.send_response(200 if start is None else 206)
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.mode == "drop-always" or (state.mode == "drop-once" and len(state.ranges) == 1):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass


def _range_start(header: Optional[str]) -> Optional[int]:
    match = re.fullmatch(r"bytes=(\d+)-", header or "")
    return int(match.group(1)) if match else None


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    state = Server(url=f"http://127.0.0.1:{httpd.server_address[1]}/weights.pth")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$DFINE_HOME`` in a fresh temporary folder."""
    monkeypatch.setenv("DFINE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _get(server: Server, **kwargs) -> Path:
    kwargs.setdefault("progress", False)
    return hub.download(server.url, timeout=TIMEOUT, **kwargs)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.strip() == message
    return message


def test_fresh_download_lands_in_dfine_home(server: Server, home: Path) -> None:
    path = _get(server)
    assert path == home / "weights" / "weights.pth"
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == [None]
    assert not path.with_name("weights.pth.part").exists()
    assert path.with_name("weights.pth.sha256").read_text() == f"{PAYLOAD_SHA}  weights.pth\n"


def test_default_home_is_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DFINE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub.cache_dir() == tmp_path / ".cache" / "dfine"
    assert hub.weights_dir() == tmp_path / ".cache" / "dfine" / "weights"


def test_dest_dir_overrides_cache(server: Server, home: Path, tmp_path: Path) -> None:
    path = _get(server, dest_dir=tmp_path / "elsewhere", file_name="renamed.pth")
    assert path == tmp_path / "elsewhere" / "renamed.pth"
    assert path.read_bytes() == PAYLOAD and not home.exists()


def test_progress_bar_on_and_off(server: Server, home: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    _get(server, progress=False)
    assert capsys.readouterr().err == ""
    _get(server, dest_dir=tmp_path / "other", progress=True)
    err = capsys.readouterr().err
    assert "weights.pth" in err and "100%" in err


def test_cached_file_is_used_without_network(server: Server, home: Path) -> None:
    first = _get(server)
    assert _get(server) == first
    assert server.ranges == [None]


def test_partial_download_is_resumed_with_range(server: Server, home: Path) -> None:
    part = home / "weights" / "weights.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:100_000])
    path = _get(server)
    assert server.ranges == ["bytes=100000-"]
    assert path.read_bytes() == PAYLOAD
    assert hub.sha256_file(path) == PAYLOAD_SHA and not part.exists()


def test_server_ignoring_range_restarts_cleanly(server: Server, home: Path) -> None:
    server.mode = "no-range"
    part = home / "weights" / "weights.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 5000)  # wrong bytes: appending to them would corrupt the file
    path = _get(server)
    assert server.ranges == ["bytes=5000-"]
    assert path.read_bytes() == PAYLOAD


def test_unsatisfiable_range_restarts_cleanly(server: Server, home: Path) -> None:
    part = home / "weights" / "weights.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"y" * (len(PAYLOAD) + 10))  # longer than the file: the server answers 416
    path = _get(server)
    assert server.ranges == [f"bytes={len(PAYLOAD) + 10}-", None]
    assert path.read_bytes() == PAYLOAD


def test_dropped_connection_is_resumed(server: Server, home: Path) -> None:
    server.mode = "drop-once"
    path = _get(server)
    assert server.ranges == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert path.read_bytes() == PAYLOAD


def test_dropped_connection_keeps_part_for_the_next_run(server: Server, home: Path) -> None:
    server.mode = "drop-always"
    with pytest.raises(hub.DownloadError) as exc:
        _get(server, attempts=2)
    message = _one_line(exc)
    assert server.url in message and "resume" in message
    assert str(home / "weights" / "weights.pth") in message
    assert len(server.ranges) == 2 and server.ranges[1] is not None
    part = home / "weights" / "weights.pth.part"
    have = part.stat().st_size
    assert len(PAYLOAD) // 2 < have < len(PAYLOAD) and PAYLOAD.startswith(part.read_bytes())
    assert not (home / "weights" / "weights.pth").exists()

    server.mode = "range"
    assert _get(server).read_bytes() == PAYLOAD
    assert server.ranges[-1] == f"bytes={have}-"


def test_recorded_sha256_is_verified_on_later_loads(server: Server, home: Path) -> None:
    path = _get(server)
    data = bytearray(path.read_bytes())
    data[1234] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(hub.ChecksumError) as exc:
        _get(server)
    message = _one_line(exc)
    assert str(path) in message and "delete" in message and PAYLOAD_SHA in message
    assert len(server.ranges) == 1  # a corrupt cache is reported, not silently re-fetched
    # a walk replaced a hand-placed file and was told to download it afresh, offline: the way out is said
    assert f"changed since its sha256 was recorded in {path}.sha256" in message
    assert "if you replaced it on purpose, delete weights.pth.sha256" in message
    path.with_name("weights.pth.sha256").unlink()  # done as said: the new file is recorded
    assert _get(server) == path and hub.sha256_file(path) != PAYLOAD_SHA and len(server.ranges) == 1


def test_known_sha256_is_accepted(server: Server, home: Path) -> None:
    assert _get(server, sha256=PAYLOAD_SHA.upper()).read_bytes() == PAYLOAD


def test_wrong_known_sha256_fails_and_leaves_nothing(server: Server, home: Path) -> None:
    with pytest.raises(hub.ChecksumError) as exc:
        _get(server, sha256="0" * 64)
    message = _one_line(exc)
    assert server.url in message and PAYLOAD_SHA in message
    left = {p.name for p in (home / "weights").iterdir()}
    assert left <= {"weights.pth.lock"}  # no file, no .part, no .sha256


def test_file_placed_by_hand_is_checked_and_recorded(home: Path) -> None:
    dest = home / "weights" / "weights.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(PAYLOAD)
    url = "http://127.0.0.1:9/weights.pth"  # never contacted: the file is there
    with pytest.raises(hub.ChecksumError):
        hub.download(url, sha256="1" * 64, progress=False)
    assert hub.download(url, progress=False) == dest
    assert dest.with_name("weights.pth.sha256").read_text().split()[0] == PAYLOAD_SHA


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_offline_names_the_url_and_the_destination(home: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/dfine_l_coco.pth"
    with pytest.raises(hub.DownloadError) as exc:
        hub.download(url, progress=False, timeout=TIMEOUT)
    message = _one_line(exc)
    assert url in message
    assert str(home / "weights" / "dfine_l_coco.pth") in message
    assert isinstance(exc.value, DfineError)
    assert not (home / "weights" / "dfine_l_coco.pth").exists()


def test_http_error_names_the_url_and_the_destination(server: Server, home: Path) -> None:
    url = server.url.replace("weights.pth", "missing.pth")
    with pytest.raises(hub.DownloadError) as exc:
        hub.download(url, progress=False, timeout=TIMEOUT)
    message = _one_line(exc)
    assert "404" in message and url in message and str(home / "weights" / "missing.pth") in message


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x.pth", "http://127.0.0.1/"])
def test_unusable_url_is_refused(url: str, home: Path) -> None:
    with pytest.raises(hub.DownloadError):
        hub.download(url, progress=False)


def test_bad_sha256_argument(home: Path) -> None:
    with pytest.raises(DfineError, match="64 hex digits"):
        hub.download("http://127.0.0.1:9/w.pth", sha256="abc", progress=False)


def test_fetch_weights_uses_the_zoo_and_the_cache(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("the network must not be used")

    monkeypatch.setattr(hub, "_request", no_network)
    entry = zoo.get("dfine_n_coco")
    cached = home / "weights" / entry.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    assert hub.fetch_weights("dfine_n_coco", progress=False) == cached
    with pytest.raises(zoo.UnknownEntryError):
        hub.fetch_weights("dfine_q_coco")


def test_fetch_weights_offline_message(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise hub.urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(hub, "_request", offline)
    with pytest.raises(hub.DownloadError) as exc:
        hub.fetch_weights("dfine_x_obj2coco", progress=False)
    message = _one_line(exc)
    assert zoo.get("dfine_x_obj2coco").url in message
    assert str(home / "weights" / "dfine_x_obj2coco.pth") in message
