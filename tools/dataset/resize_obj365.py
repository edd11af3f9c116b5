"""``python tools/dataset/resize_obj365.py --base_dir DIR [--max_size 640] [--num_workers 4]``
(published arguments): runs ``dfine obj365 resize`` on train and val."""

import argparse
import sys

from dfine.cli import main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description="Resize Objects365 images to a longer side of max_size; rescale boxes.")
    p.add_argument("--base_dir", required=True, help="e.g. /data/Objects365/data")
    p.add_argument("--max_size", type=int, default=640)
    p.add_argument("--num_workers", type=int, default=4)
    a = p.parse_args()
    sys.exit(main(["obj365", "resize", "--base-dir", a.base_dir, "--max-size", str(a.max_size),
                   "--workers", str(a.num_workers)]))
