"""dfine: the D-FINE real-time object detector, numerically identical to the published one."""

from .checkpoint import load_checkpoint
from .errors import DfineError
from .models.dfine import DFINE, build_model
from .models.postprocess import PostProcessor
from .loss import build_criterion
from . import config as _config


def _check_op(name, args):
    """Recipes' transform ops are checked by the data layer; the config schema never imports it."""
    from .data.transforms import check_op
    check_op(name, args)


_config.set_op_check(_check_op)


def __getattr__(name: str):
    if name == "Detector":  # imported on first use: it pulls in the image and runtime libraries
        from .inference import Detector
        return Detector
    if name == "track":  # needs the optional supervision and trackers packages, imported when called
        from .integrations.tracking import track
        return track
    raise AttributeError(f"module 'dfine' has no attribute {name!r}")


__all__ = ["DFINE", "Detector", "DfineError", "track", "PostProcessor", "build_criterion", "build_model", "load_checkpoint"]
__version__ = "0.1.0"
