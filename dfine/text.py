"""Words for the terminal: counts with the right plural (``1 image``, ``2 images``)."""

from __future__ import annotations

from typing import Optional

__all__ = ["counted", "no_font_note"]


def counted(n: int, word: str, many: Optional[str] = None) -> str:
    """``n`` and ``word``, plural unless ``n`` is 1: ``counted(1, "epoch")`` -> ``"1 epoch"``,
    ``counted(0, "box", "boxes")`` -> ``"0 boxes"``, ``counted(3, "category", "categories")``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def no_font_note(word: str, letters: str, shown: str) -> str:
    """The one note for letters of the class names that no font here draws: ``word`` names them
    ("letters", "characters"), ``shown`` says where boxes appear instead ("the pictures show")."""
    return (f"note: no font here draws the {word} {letters} of the class names, so {shown} boxes for them; "
            f"install a font that has them, e.g. Noto Sans CJK (Debian/Ubuntu: apt install fonts-noto-cjk)")
