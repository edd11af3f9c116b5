"""Shared by the published inference scripts: run ``dfine predict`` on one input."""

import sys
from typing import List, Optional

from dfine.cli import main


def predict(source: str, model: str, device: str = "cpu", extra: Optional[List[str]] = None) -> None:
    """``dfine predict SOURCE --model MODEL`` writing to ``./results`` (annotated image or video + JSON)."""
    sys.exit(main(["predict", source, "--model", model, "--device", device, "-o", "results", *(extra or [])]))
