"""``python tools/visualization/fiftyone_vis.py -c CONFIG -r CHECKPOINT`` (published arguments): runs
``dfine fiftyone`` on 100 images of the recipe's val_dataloader dataset, on the GPU when there is one.
More options (``--images``, ``--ann-file``, ``--no-launch``, ...): ``dfine fiftyone --help``."""

import argparse
import sys

from dfine.cli import main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description="Predictions vs ground truth in the FiftyOne app.")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("-r", "--resume", required=True)
    a, rest = p.parse_known_args()
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sys.exit(main(["fiftyone", "-c", a.config, "-r", a.resume, "-d", device, *rest]))
