"""Words for the terminal: counts with the right plural (``1 image``, ``2 images``), notes, progress bars."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, List, Optional
from urllib.parse import unquote, urlparse

__all__ = ["counted", "first_few", "no_font_note", "pip_install", "progress_bar"]


def counted(n: int, word: str, many: Optional[str] = None) -> str:
    """``n`` and ``word``, plural unless ``n`` is 1: ``counted(1, "epoch")`` -> ``"1 epoch"``,
    ``counted(0, "box", "boxes")`` -> ``"0 boxes"``, ``counted(3, "category", "categories")``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def first_few(items: Iterable[Any], n: int) -> str:
    """The first ``n`` of ``items``, comma-separated, ``", ..."`` after them when there are more:
    ``first_few(["a", "b", "c", "d"], 3)`` -> ``"a, b, c, ..."``."""
    items = list(items)
    return ", ".join(map(str, items[:n])) + (", ..." if len(items) > n else "")


def no_font_note(word: str, letters: str, shown: str) -> str:
    """The one note for letters of the class names that no font here draws: ``word`` names them
    ("letters", "characters"), ``shown`` says where boxes appear instead ("the pictures show")."""
    return (f"note: no font here draws the {word} {letters} of the class names, so {shown} boxes for them; "
            f"install a font that has them, e.g. Noto Sans CJK (Debian/Ubuntu: apt install fonts-noto-cjk)")


def progress_bar(**kwargs: Any) -> Any:
    """A tqdm bar (``kwargs`` as tqdm's) whose last state is written once into a file or pipe:
    tqdm draws the bar again as it closes, which a terminal overwrites in place but a log
    (``dfine predict DIR > log 2>&1``, ``dfine train ... > log``) kept as a second, identical last line."""
    from tqdm import tqdm

    class Bar(tqdm):
        def close(self) -> None:
            shown = not self.disable and getattr(self, "last_print_n", None) == self.n
            if shown and self.leave and not getattr(self.fp, "isatty", lambda: False)():
                self.disable = True  # tqdm's own close would draw the same line again
                self._decr_instances(self)
                self.fp.write("\n")
                self.fp.flush()
                return
            super().close()

    return Bar(**kwargs)


def multiples_of_32_near(sizes) -> str:
    """The multiples of 32 on either side of the largest of ``sizes`` (px), for an error about a size
    that is not one: ``300`` -> ``"288 or 320"``; ``"640"`` when none is given."""
    largest = max((int(v) for v in sizes), default=640)
    below = max(32, largest // 32 * 32)
    above = max(32, -(-largest // 32) * 32)
    return str(below) if below == above else f"{below} or {above}"


def pip_install(extras: str) -> str:
    """The command that adds dfine's optional ``extras`` (``"onnx"``, ``"openvino,onnx"``) to this dfine,
    for an error about a missing package, in the form that works where this dfine came from:
    ``pip install -e "/path/to/checkout[onnx]"`` when this code runs from a checkout (an editable
    install); ``pip install "/path/to/checkout[onnx]"`` after a ``pip install`` of a local checkout or
    wheel that is still there (no index has dfine then, so ``dfine[onnx]`` would fail);
    ``pip install "dfine[onnx]"`` after an install from a package index; else the extras' own
    requirements (``pip install onnx onnxruntime onnxsim``), which any index has."""
    from importlib import metadata

    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file():
        return f'pip install -e "{root}[{extras}]"'
    try:
        dist = metadata.distribution("dfine")
        origin = json.loads(dist.read_text("direct_url.json") or "null")
    except (metadata.PackageNotFoundError, ValueError):
        return f'pip install "dfine[{extras}]"'
    if not isinstance(origin, dict):
        return f'pip install "dfine[{extras}]"'
    url = urlparse(str(origin.get("url", "")))
    if url.scheme == "file" and Path(unquote(url.path)).exists():
        return f'pip install "{Path(unquote(url.path))}[{extras}]"'
    needed = _extra_requirements(dist.requires or [], extras.split(","))
    return "pip install " + " ".join(f'"{r}"' if re.search(r"[<>=!~ ;\[]", r) else r for r in needed)


def _extra_requirements(requires: List[str], extras: List[str]) -> List[str]:
    """The requirement strings of ``requires`` (``Requires-Dist`` lines) that the ``extras`` add, each once:
    ``['onnx ; extra == "onnx"', 'av ; extra == "video"']``, ``["onnx"]`` -> ``["onnx"]``."""
    wanted = {e.strip() for e in extras}
    out: List[str] = []
    for line in requires:
        requirement, _, marker = line.partition(";")
        m = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if m and m.group(1) in wanted and requirement.strip() not in out:
            out.append(requirement.strip())
    return out
