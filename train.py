"""The published entry point: ``python train.py -c configs/dfine/dfine_hgnetv2_n_coco.yml ...``.

A thin shim over ``dfine train`` (see :mod:`dfine.commands.train`); works under ``torchrun``.
"""

import sys

from dfine.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
