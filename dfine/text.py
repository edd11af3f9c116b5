"""Words for the terminal: counts with the right plural (``1 image``, ``2 images``)."""

from __future__ import annotations

from typing import Optional

__all__ = ["counted"]


def counted(n: int, word: str, many: Optional[str] = None) -> str:
    """``n`` and ``word``, plural unless ``n`` is 1: ``counted(1, "epoch")`` -> ``"1 epoch"``,
    ``counted(0, "box", "boxes")`` -> ``"0 boxes"``, ``counted(3, "category", "categories")``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
