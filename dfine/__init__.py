"""dfine: the D-FINE real-time object detector, numerically identical to the published one.

Quick start (each has its own ``help(dfine.X)``; the command line does the same: ``dfine --help``)::

    import dfine
    result = dfine.train(data="path/to/dataset", model="dfine_n", epochs=50)  # YOLO, VOC, COCO, ... folder
    det = dfine.Detector(result.best)              # a checkpoint, an export or a zoo name
    [found] = det("photo.jpg")                     # paths, PIL images or RGB arrays; found.plot() draws them
    metrics = dfine.evaluate(result.best, "path/to/dataset")    # COCO AP on its val split
    onnx = dfine.export_model(result.best, "onnx")               # or "openvino", "engine"
    for frame, tracks in dfine.track("street.mp4", det): ...     # needs dfine[track]
    dfine.track("street.mp4", det).save()                        # or: the files dfine track writes, in runs/track

``dfine data check DATASET`` (command line) checks a dataset before training. The public names are
imported on first use (PEP 562), so ``import dfine`` and the ``dfine`` command line start without
importing torch: ``dfine --help`` answers at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import DfineError
from . import config as _config

if TYPE_CHECKING:  # for type checkers and IDEs; at run time see __getattr__
    from .api import evaluate, export_model
    from .checkpoint import load_checkpoint
    from .inference import Detector
    from .integrations.tracking import track
    from .loss import build_criterion
    from .models.dfine import DFINE, build_model
    from .models.postprocess import PostProcessor

# public name -> the module that defines it
_LAZY = {"DFINE": ".models.dfine", "build_model": ".models.dfine", "load_checkpoint": ".checkpoint",
         "PostProcessor": ".models.postprocess", "build_criterion": ".loss", "Detector": ".inference",
         "track": ".integrations.tracking",  # track needs the optional supervision and trackers: imported when called
         "train": ".recipes",
         "evaluate": ".api", "export_model": ".api"}  # what dfine eval / dfine export do, returning the result  # dfine.train(data=..., model=..., epochs=...); the trainer is imported when called


def _check_op(name, args):
    """Recipes' transform ops are checked by the data layer; the config schema never imports it."""
    from .data.transforms import check_op
    check_op(name, args)


_config.set_op_check(_check_op)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'dfine' has no attribute {name!r}")


def __dir__() -> list:
    """The public names (tab completion in a notebook listed ``Any``, ``TYPE_CHECKING`` and ``importlib`` too)."""
    return sorted(set(__all__) | {"__version__"})


__all__ = ["DFINE", "Detector", "DfineError", "evaluate", "export_model", "track", "train", "PostProcessor", "build_criterion", "build_model", "load_checkpoint"]
__version__ = "0.1.0"
