"""Words for the terminal: counts with the right plural (``1 image``, ``2 images``), notes, progress bars."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

__all__ = ["ap_text", "counted", "did_you_mean", "first_few", "first_process", "missing_model_note",
           "no_class_in_common", "no_font_note", "one_line_warnings", "progress_bar"]

# the files a model can be given as: checkpoints, and exports (ONNX, OpenVINO IR, TensorRT engines)
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt")
MODEL_SUFFIXES = CHECKPOINT_SUFFIXES + (".onnx", ".xml", ".engine", ".trt")


def first_process() -> bool:
    """Whether this is the process that speaks for a run: rank 0 of a ``torchrun`` launch (its ``RANK``
    variable, there before the process group is joined) or a process ``torchrun`` did not start. The
    others stay quiet (a walk under ``torchrun --nproc_per_node=2`` read each dataset note twice)."""
    return os.environ.get("RANK", "0").strip() in ("0", "")


def counted(n: int, word: str, many: Optional[str] = None) -> str:
    """``n`` and ``word``, plural unless ``n`` is 1: ``counted(1, "epoch")`` -> ``"1 epoch"``,
    ``counted(0, "box", "boxes")`` -> ``"0 boxes"``, ``counted(3, "category", "categories")``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def ap_text(ap: float) -> str:
    """AP (0..1) in percent with one decimal and a ``%`` sign (walks read ``AP 0.002`` under the COCO
    table's fractions as a fraction), or one significant digit when that would read 0.0 for an AP
    above 0 (``0.0004`` -> ``"0.04%"``: the run's best weights are then ``best_stg1.pth``, which an AP
    shown as 0.0 would contradict)."""
    v = 100 * ap
    if v <= 0 or v >= 0.05:
        return f"{v:.1f}%"
    if v < 0.0001:  # '7e-06' (the 1-significant-digit form) read as a code, not a figure (a walk)
        return "<0.0001%"
    return f"{v:.{-math.floor(math.log10(v))}f}%"  # one significant digit, in decimals


def score_below(score: float, conf: float) -> str:
    """``score`` (at or under the threshold ``conf``) with two decimals, or more where two would show it at
    ``conf`` or above it: a walk read 'no detection above conf 0.15 (the best score 0.15)'."""
    for digits in (2, 3, 4):
        text = f"{score:.{digits}f}"
        if float(text) < conf:
            return text
    return f"{score:.5f}"


def first_few(items: Iterable[Any], n: int) -> str:
    """The first ``n`` of ``items``, comma-separated, ``", ..."`` after them when there are more:
    ``first_few(["a", "b", "c", "d"], 3)`` -> ``"a, b, c, ..."``."""
    items = list(items)
    return ", ".join(map(str, items[:n])) + (", ..." if len(items) > n else "")


def no_font_note(word: str, letters: str, shown: str, whose: str = "of the class names") -> str:
    """The one note for letters that no font here draws: ``word`` names them ("letters",
    "characters"), ``whose`` says whose they are, ``shown`` where boxes appear instead ("the
    pictures show")."""
    return (f"note: no font here draws the {word} {letters} {whose}, so {shown} boxes for them; "
            f"install a font that has them, e.g. Noto Sans CJK (Debian/Ubuntu: apt install fonts-noto-cjk)")


#: Seconds between a progress bar's frames written into a file or pipe (a terminal gets tqdm's 0.1 s)
LOG_FRAME_SECONDS = 30.0


def progress_bar(**kwargs: Any) -> Any:
    """A tqdm bar (``kwargs`` as tqdm's) whose last state is written once, ending its line, into a
    file or pipe: tqdm draws the bar again as it closes, which a terminal overwrites in place but a
    log (``dfine predict DIR > log 2>&1``, ``dfine train ... > log``) kept as a second, identical last
    line; and a bar that a terminal erases (``leave=False``) left a line of spaces in the log. Into a
    file or pipe it draws a frame every :data:`LOG_FRAME_SECONDS` at most (unless ``mininterval``)."""
    import sys

    from tqdm import tqdm

    out = kwargs.get("file") or sys.stderr
    if not getattr(out, "isatty", lambda: False)():
        # into a log, a frame every 0.1 s made one line of thousands of frames (predict of 171 images: 43)
        kwargs.setdefault("mininterval", LOG_FRAME_SECONDS)

    class Bar(tqdm):
        def close(self) -> None:
            if self.disable or getattr(self.fp, "isatty", lambda: False)():
                super().close()
                return
            if getattr(self, "last_print_n", None) != self.n:
                self.refresh()  # the final count, once
            self.disable = True  # tqdm's own close would draw the line again, or blank it
            self._decr_instances(self)
            self.fp.write("\n")
            self.fp.flush()

    return Bar(**kwargs)


def multiples_of_32_near(sizes) -> str:
    """The multiples of 32 on either side of the largest of ``sizes`` (px), for an error about a size
    that is not one: ``300`` -> ``"288 or 320"``; ``"640"`` when none is given."""
    largest = max((int(v) for v in sizes), default=640)
    below = max(32, largest // 32 * 32)
    above = max(32, -(-largest // 32) * 32)
    return str(below) if below == above else f"{below} or {above}"


def missing_model_note(path: "os.PathLike[str] | str") -> str:
    """What to add to "model X not found": the model files in X's folder, when it has some
    (``"; output/run holds best_stg1.pth, last.pth"``), and why ``best_stg2`` can be missing (a
    walk copied the README's ``best_stg2.pth`` after a run that wrote none); ``""`` otherwise."""
    path = Path(path)
    held = _model_files(path.parent)
    if not held:
        return ""
    note = f"; {path.parent} holds {first_few(held, 6)}"
    weights = [n for n in held if Path(n).stem == path.stem and Path(n).suffix.lower() in CHECKPOINT_SUFFIXES]
    formats = {".onnx": "onnx", ".xml": "openvino", ".engine": "engine"}
    if weights and path.suffix.lower() in formats:  # the checkpoint is there, its export not made yet
        note += f": export it first (dfine export -r {path.parent / weights[0]} --format {formats[path.suffix.lower()]})"
    elif path.stem == "best_stg2":
        note += (" (a run writes best_stg2 only when an evaluation after its stage 1 beats stage 1's best AP; "
                 "the run's last lines name its best weights)")
    return note


def _model_files(folder: Path) -> "list[str]":
    """The names of the model files (checkpoints and exports) in ``folder``, sorted; none when it is not
    there or not readable."""
    try:
        return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in MODEL_SUFFIXES and p.is_file())
    except OSError:
        return []


def folder_model_error(folder: "os.PathLike[str] | str", best: "str | None" = None) -> str:
    """The one line for a folder given as a model (a run's output folder, ``result.output_dir``): the model
    files it holds, the run's best weights first (``best``: the file name its run recorded, else ``best_stg2``,
    ``best_stg1``, then the rest)."""
    folder = Path(folder)
    held = _model_files(folder)
    if not held:
        return f"model {folder} is a folder, not a model file (a .pth checkpoint, .onnx, OpenVINO .xml or .engine)"
    rank = {"best_stg2.pth": 0, "best_stg1.pth": 1, "last.pth": 2}
    pick = min(held, key=lambda n: (rank.get(n, 3), n))
    if best in held:  # the run's own choice (a walk was offered best_stg1.pth of a run that ended naming last.pth)
        pick = best
    return f"model {folder} is a folder; give a model file in it, such as {folder / pick} (it holds {first_few(held, 6)})"


def cut_middle(name: str, width: int = 36) -> str:
    """``name`` (a file name) in ``width`` characters, cut in the middle: its start sorts it and its end tells
    tiles of one photo apart (``b3b0024…_x512_y0.jpg``; cut at the end, two tiles read as one: a walk)."""
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return name[:width - 1 - tail] + "\u2026" + name[-tail:]


def _count(boxes: Any, k: int) -> int:
    """The box count of class ``k`` in ``boxes`` (a sequence by class index, which may be shorter)."""
    return int(boxes[k]) if k < len(boxes) else 0


def no_class_in_common(names: "list[str] | tuple[str, ...]", in_train: Any, in_val: Any) -> "str | None":
    """When train and val both have boxes and no class has boxes in both (a walk's export named its val classes
    MP1, MP2, MP3 and its train ones MicroPlastic, ...: the AP of every class would be 0 whatever the model
    learns; another's few images split so, an unreadable one taking a class away), the line that says so,
    naming each side's classes; None otherwise. Counts as for :func:`class_coverage_notes`."""
    train = [f"{names[k]} ({_count(in_train, k)})" for k in range(len(names)) if _count(in_train, k)]
    val = [f"{names[k]} ({_count(in_val, k)})" for k in range(len(names)) if _count(in_val, k)]
    if not train or not val or any(_count(in_train, k) and _count(in_val, k) for k in range(len(names))):
        return None
    return (f"train and val have no class in common: train's boxes are of {first_few(train, 5)}, val's of "
            f"{first_few(val, 5)}; the model would learn none of val's classes (every AP 0): name a class the same "
            f"in both splits where an export renamed it, else give each split images of every class")


def class_coverage_notes(names: "list[str] | tuple[str, ...]", in_train: Any, in_val: Any) -> "list[str]":
    """The notes on the classes ``names`` that a training will not both learn and measure, from their box
    counts in train and val (sequences by class index, the val one may be shorter): boxes in train and none
    in val (not measured by its AP), boxes in val and none in train (never learned), a box in neither."""
    absent = [f"{names[k]} ({_count(in_train, k)} in train)" for k in range(len(names))
              if _count(in_train, k) > 0 and _count(in_val, k) == 0]
    untaught = [f"{names[k]} ({_count(in_val, k)} in val)" for k in range(len(names))
                if _count(in_val, k) > 0 and _count(in_train, k) == 0]
    unused = [names[k] for k in range(len(names)) if _count(in_train, k) == 0 and _count(in_val, k) == 0]
    lines = []
    if absent:
        lines.append(f"note: {counted(len(absent), 'class', 'classes')} without a box in the val set, so not measured "
                     f"by its AP (the AP averages the others): {first_few(absent, 5)}")
    if untaught:  # a walk: a label typo and a case variant, all in val, trained 5 classes without a word
        lines.append(f"note: {counted(len(untaught), 'class', 'classes')} without a box in the train set, which the "
                     f"model cannot learn ({'its' if len(untaught) == 1 else 'their'} AP stays 0): "
                     f"{first_few(untaught, 5)}")
    if unused:
        lines.append(f"note: {counted(len(unused), 'class', 'classes')} without a box in train or val (named "
                     f"only: never learned nor measured): {first_few(unused, 5)}")
    return lines


def did_you_mean(path: "os.PathLike[str] | str") -> str:
    """For "X not found": ``"; did you mean DIR/NAME?"`` naming the entry of X's folder closest to X's
    name (a typo: ``dino_fixd`` for ``dino_fixed``, ``data.yml`` for ``data.yaml``), ``""`` when none is close."""
    import difflib
    path = Path(path)
    try:
        names = [p.name for p in path.parent.iterdir()]
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)  # 0.6: rcb for rbc (0.67)
    return f"; did you mean {path.parent / close[0] if str(path.parent) != '.' else close[0]}?" if close else ""


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within the block, warnings print as one ``warning: ...`` line, without Python's file, line and source
    line (a notebook walk's showed ``self._tuned_whole = not ckpt_io.load_tuning(model, state, ...``); under
    ``torchrun``, by the first process only (each process printed the class heads' warning)."""
    import warnings
    shown = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        yield
    finally:
        warnings.formatwarning = shown


def _one_line_warning(message: Any, category: Any, filename: str, lineno: int, line: "str | None" = None) -> str:
    return f"warning: {message}\n" if first_process() else ""
