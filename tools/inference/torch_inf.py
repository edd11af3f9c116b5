"""``python tools/inference/torch_inf.py -c CONFIG -r CHECKPOINT -i INPUT [-d DEVICE]`` (published arguments)."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _shim import predict  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("-c", "--config", default=None)
    p.add_argument("-r", "--resume", required=True)
    p.add_argument("-i", "--input", required=True)
    p.add_argument("-d", "--device", default="cpu")
    a = p.parse_args()
    predict(a.input, a.resume, a.device, ["-c", a.config] if a.config else [])
