"""``python tools/benchmark/get_info.py [-c CONFIG] [--size n] [-r CHECKPOINT]``: params and GFLOPs
(a shim over ``dfine benchmark`` without latency runs)."""

import argparse
import sys

from dfine.cli import main

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("-c", "--config", default=None)
    p.add_argument("-r", "--resume", default=None)
    p.add_argument("--size", default=None)
    a = p.parse_args()
    argv = ["benchmark", "--backends", ""] + (["-c", a.config] if a.config else [])
    argv += (["-m", a.resume] if a.resume else []) + (["--size", a.size] if a.size else [])
    sys.exit(main(argv))
