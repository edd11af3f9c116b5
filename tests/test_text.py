"""Counts printed with the right plural (``dfine.text.counted``)."""

from dfine.text import counted


def test_counted_is_singular_only_for_one():
    assert [counted(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert counted(1, "box", "boxes") == "1 box" and counted(3, "box", "boxes") == "3 boxes"
    assert counted(1, "category", "categories") == "1 category" and counted(0, "class", "classes") == "0 classes"
