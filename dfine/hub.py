"""The download cache for published weights.

Files land in ``$DFINE_HOME/weights`` (``DFINE_HOME`` defaults to ``~/.cache/dfine``).
A download is written to ``<file>.part``, flushed, fsynced and renamed into place, so a
file in the cache is always whole; an interrupted download is resumed with an HTTP
``Range`` request. The first download records the file's sha256 in ``<file>.sha256``
(``sha256sum`` format) and every later load checks the file against it, or against the
published digest when one is known. Only the standard library talks to the network.

Nothing in this module runs at import time, and no model constructor calls it: ask for
weights explicitly with :func:`fetch_weights` or :func:`download`.

Why not a library's downloader. ``torch.hub.download_url_to_file`` writes a temporary file and
renames it, but starts again from byte 0 after any interruption (no ``Range`` resume; the X and
Objects365 files are hundreds of MB on the links our users have), checks only a hash prefix given
up front (nothing records or re-checks a digest later), and lets two processes (DDP ranks) download
the same file at once. ``pooch.retrieve`` records hashes and renames atomically, but its HTTP
downloader also restarts every transfer from the beginning (one plain ``GET`` into a file opened
``"w+b"``), takes no lock, and brings ``requests`` and ``platformdirs`` as new dependencies. What
is kept here is what those lack: resume, a per-file lock, and a recorded digest re-checked on load.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Tuple, Union

from tqdm import tqdm

from dfine import zoo
from dfine.errors import DfineError

try:  # POSIX: serialise concurrent downloads of one file; elsewhere go without.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ChecksumError",
    "DownloadError",
    "cache_dir",
    "download",
    "fetch_weights",
    "sha256_file",
    "weights_dir",
]

HOME_ENV = "DFINE_HOME"
_CHUNK = 1 << 20
_USER_AGENT = "dfine (+https://pypi.org/project/dfine)"
# Failures of the connection itself, as opposed to an answer from the server.
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)

PathLike = Union[str, os.PathLike]


class DownloadError(DfineError):
    """A file could not be downloaded; the message says where to fetch it by hand and where to put it."""


class ChecksumError(DfineError):
    """A file's sha256 differs from the one published or recorded for it."""


class _Interrupted(Exception):
    """The transfer stopped part-way; what arrived is in the ``.part`` file."""


def cache_dir() -> Path:
    """The dfine cache folder: ``$DFINE_HOME``, or ``~/.cache/dfine`` when unset."""
    return Path(os.environ.get(HOME_ENV) or "~/.cache/dfine").expanduser()


def weights_dir() -> Path:
    """Where downloaded weights go: ``cache_dir() / "weights"``."""
    return cache_dir() / "weights"


def sha256_file(path: PathLike) -> str:
    """The hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        _hash_into(digest, f)
    return digest.hexdigest()


def fetch_weights(name: str, dest_dir: Optional[PathLike] = None, progress: bool = True) -> Path:
    """The local path of the zoo entry ``name``'s weights, downloading them on first use."""
    entry = zoo.get(name)
    return download(entry.url, dest_dir=dest_dir, sha256=entry.sha256, progress=progress)


def download(url: str, dest_dir: Optional[PathLike] = None, sha256: Optional[str] = None,
             progress: bool = True, *, file_name: Optional[str] = None,
             timeout: float = 30.0, attempts: int = 3) -> Path:
    """Download ``url`` into the cache (or ``dest_dir``) unless it is there already; its path.

    ``sha256``: the expected digest, checked after download and on every later call;
    without it the digest recorded at the first download is checked instead.
    ``file_name`` defaults to the last part of the URL's path. ``timeout`` bounds every
    socket operation in seconds; a transfer cut off part-way is resumed up to
    ``attempts`` times in all. Raises :class:`DownloadError` when the file cannot be
    fetched and :class:`ChecksumError` when its digest is wrong.
    """
    dest = Path(dest_dir if dest_dir is not None else weights_dir()).expanduser()
    dest = dest / (file_name or _file_name(url))
    expected = _normalise_sha256(sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        if dest.exists():
            _verify_cached(dest, expected)
            return dest
        _sidecar(dest).unlink(missing_ok=True)
        digest = _fetch(url, dest, progress, timeout, max(1, attempts))
        if expected is not None and digest != expected:
            _part(dest).unlink(missing_ok=True)
            raise ChecksumError(f"{url} downloaded with sha256 {digest}, expected {expected}; "
                                f"nothing was kept; retry, or fetch it by hand and save it as {dest}")
        os.replace(_part(dest), dest)
        _write_sidecar(dest, digest)
        _fsync_dir(dest.parent)
    return dest


# --- the cache ------------------------------------------------------------------------


def _file_name(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise DownloadError(f"cannot download {url!r}: only http:// and https:// URLs are supported")
    name = urllib.parse.unquote(parsed.path.rsplit("/", 1)[-1])
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise DownloadError(f"cannot tell a file name from {url}; pass file_name=")
    return name


def _normalise_sha256(sha256: Optional[str]) -> Optional[str]:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise DfineError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return value


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _read_sidecar(dest: Path) -> Optional[str]:
    """The digest recorded next to ``dest``; ``None`` when there is none (or it is unreadable)."""
    try:
        words = _sidecar(dest).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    if words and re.fullmatch(r"[0-9a-f]{64}", words[0]):
        return words[0]
    return None


def _write_sidecar(dest: Path, digest: str) -> None:
    """Record ``digest`` next to ``dest`` (atomically, in ``sha256sum -c`` format)."""
    tmp = _sidecar(dest).with_name(_sidecar(dest).name + ".tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{digest}  {dest.name}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, _sidecar(dest))


def _verify_cached(dest: Path, expected: Optional[str]) -> None:
    """Check ``dest`` against ``expected`` or its recorded digest; record one if it has none."""
    actual = sha256_file(dest)
    recorded = _read_sidecar(dest)
    wanted = expected or recorded
    if wanted is not None and actual != wanted:
        if not expected:  # no published digest: the one recorded at first use, which a file put by hand changes
            raise ChecksumError(f"{dest} changed since its sha256 was recorded in {_sidecar(dest)} (now {actual}, "
                                f"then {wanted}): if you replaced it on purpose, delete {_sidecar(dest).name}; "
                                f"else delete both files and run again to download it afresh")
        raise ChecksumError(f"{dest} is corrupt or incomplete: its sha256 is {actual}, the published one "
                            f"is {wanted}; delete the file and run again to download it afresh (offline: fetch it "
                            f"by hand into the same path)")
    if recorded != actual:
        _write_sidecar(dest, actual)


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``dest`` against other processes (POSIX only)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(dest.with_name(dest.name + ".lock"), "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _hash_into(digest: "hashlib._Hash", f: BinaryIO) -> int:
    total = 0
    while chunk := f.read(_CHUNK):
        digest.update(chunk)
        total += len(chunk)
    return total


# --- the transfer ---------------------------------------------------------------------


def _fetch(url: str, dest: Path, progress: bool, timeout: float, attempts: int) -> str:
    """Bring ``url`` whole into ``dest``'s ``.part`` file; its sha256."""
    for attempt in range(1, attempts + 1):
        try:
            return _fetch_once(url, dest, progress, timeout)
        except _Interrupted as exc:
            if attempt == attempts:
                raise DownloadError(f"download of {url} broke off ({exc}); run again to resume it, "
                                    f"or fetch it by hand and save it as {dest}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _fetch_once(url: str, dest: Path, progress: bool, timeout: float) -> str:
    """One request: resume or restart the ``.part`` file and stream the body into it."""
    part = _part(dest)
    have = part.stat().st_size if part.exists() else 0
    try:
        response, offset, total = _open(url, have, timeout)
    except urllib.error.HTTPError as exc:
        raise _unreachable(url, dest, f"HTTP {exc.code} {exc.reason}", offline=False) from None
    except _NETWORK_ERRORS as exc:
        raise _unreachable(url, dest, _reason(exc), offline=True) from None
    with response:
        return _receive(response, part, offset, total, progress)


def _open(url: str, have: int, timeout: float) -> Tuple[http.client.HTTPResponse, int, Optional[int]]:
    """Ask for the bytes from ``have`` on; the response, where its body starts, and the full size.

    A server that ignores ``Range`` (200) is read from the start; one that refuses it
    (416), or answers another range, is asked again for the whole file.
    """
    if have:
        try:
            response = _request(url, have, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code != 416:
                raise
            exc.close()
        else:
            start, total = _content_range(response)
            if response.status == 206 and start == have:
                return response, have, total
            if response.status == 200:
                return response, 0, _content_length(response)
            response.close()
    response = _request(url, 0, timeout)
    return response, 0, _content_length(response)


def _request(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _content_length(response: http.client.HTTPResponse) -> Optional[int]:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _content_range(response: http.client.HTTPResponse) -> Tuple[Optional[int], Optional[int]]:
    """``(first byte, full size)`` from a ``Content-Range: bytes a-b/n`` header."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "").strip())
    if not match:
        return None, None
    size = match.group(2)
    return int(match.group(1)), (int(size) if size.isdigit() else None)


def _receive(response: http.client.HTTPResponse, part: Path, offset: int,
             total: Optional[int], progress: bool) -> str:
    """Write ``response``'s body into ``part`` from ``offset`` on; the whole file's sha256."""
    digest = hashlib.sha256()
    with open(part, "r+b" if offset else "wb") as f:
        if offset and _hash_into(digest, f) != offset:  # the .part changed under us
            raise _Interrupted("the partial file changed size")
        done = offset
        with tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=part.name[: -len(".part")], disable=not progress) as bar:
            try:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
            except (http.client.HTTPException, OSError) as exc:
                raise _Interrupted(f"{done} bytes received: {_reason(exc)}") from None
        f.flush()
        os.fsync(f.fileno())
    if total is not None and done != total:
        raise _Interrupted(f"{done} of {total} bytes received")
    return digest.hexdigest()


def _unreachable(url: str, dest: Path, reason: str, offline: bool) -> DownloadError:
    hint = "if you are offline, " if offline else ""
    return DownloadError(f"cannot download {url} ({reason}); {hint}fetch it by hand and save it as {dest}")


def _reason(exc: BaseException) -> str:
    """A one-line description of a network error."""
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, socket.timeout) or isinstance(exc, socket.timeout):
        text = "timed out"
    else:
        text = str(reason) or type(reason).__name__
    return " ".join(text.split())
