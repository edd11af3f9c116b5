"""Counts printed with the right plural (``dfine.text.counted``) and progress bars in logs."""

import pytest

from dfine.text import counted


def test_counted_is_singular_only_for_one():
    assert [counted(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert counted(1, "box", "boxes") == "1 box" and counted(3, "box", "boxes") == "3 boxes"
    assert counted(1, "category", "categories") == "1 category" and counted(0, "class", "classes") == "0 classes"


@pytest.mark.parametrize("leave", [True, False])
def test_a_progress_bar_into_a_log_ends_its_line_once(leave):
    """Into a file or pipe a bar ends as one line with its final count: a bar a terminal erases
    (``leave=False``, the evaluation's) left '\\r' and a line of spaces in a training log (a walk)."""
    import io

    from dfine.text import progress_bar
    log = io.StringIO()
    for _ in progress_bar(iterable=range(3), desc="eval", leave=leave, file=log, mininterval=0):
        pass
    print("next line", file=log)
    text = log.getvalue()
    assert text.count("3/3") == 1, repr(text)
    last = text.split("\n")[-3].split("\r")[-1]
    assert last.startswith("eval: 100%") and "3/3" in last and text.endswith("\nnext line\n"), repr(text)
    assert "   \r" not in text and not last.endswith(" "), repr(text)
