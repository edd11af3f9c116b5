"""dfine: the D-FINE real-time object detector, numerically identical to the published one."""

from .checkpoint import load_checkpoint
from .errors import DfineError
from .models.dfine import DFINE, build_model
from .models.postprocess import PostProcessor

__all__ = ["DFINE", "DfineError", "PostProcessor", "build_model", "load_checkpoint"]
__version__ = "0.1.0"
