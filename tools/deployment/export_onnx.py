"""Published entry point kept working: ``python tools/deployment/export_onnx.py -c CONFIG -r CHECKPOINT
[--check] [--simplify]`` -> ``CHECKPOINT.onnx`` (a shim over ``dfine export``)."""

import argparse
import sys

from dfine.cli import main

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("-c", "--config", default=None)
    p.add_argument("-r", "--resume", required=True)
    p.add_argument("--check", action="store_true", default=True)
    p.add_argument("--simplify", action="store_true", default=True)
    p.add_argument("--imgsz", type=int, nargs="+", default=None)
    a = p.parse_args()
    argv = ["export", "-r", a.resume] + (["-c", a.config] if a.config else [])
    argv += ["--simplify" if a.simplify else "--no-simplify"] + ([] if a.check else ["--no-check"])
    argv += ["--imgsz", *map(str, a.imgsz)] if a.imgsz else []
    sys.exit(main(argv))
