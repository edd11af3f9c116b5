"""``python tools/dataset/remap_obj365.py --base_dir DIR [--new_val_size 5000] [--output_suffix new]``
(published arguments): runs ``dfine obj365 split``."""

import argparse
import sys

from dfine.cli import main

if __name__ == "__main__":
    p = argparse.ArgumentParser(description="Move Objects365 val images beyond the first N into train.")
    p.add_argument("--base_dir", required=True, help="e.g. /data/Objects365/data")
    p.add_argument("--new_val_size", type=int, default=5000)
    p.add_argument("--output_suffix", default="new", help="name prefix of the new annotation files")
    a = p.parse_args()
    sys.exit(main(["obj365", "split", "--base-dir", a.base_dir, "--new-val-size", str(a.new_val_size),
                   "--prefix", a.output_suffix]))
