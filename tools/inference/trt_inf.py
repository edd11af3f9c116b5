"""``python tools/inference/trt_inf.py --trt MODEL.engine -i INPUT [-d cuda:0]`` (published arguments)."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _shim import predict  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("-trt", "--trt", required=True)
    p.add_argument("-i", "--input", required=True)
    p.add_argument("-d", "--device", default="cuda:0")
    a = p.parse_args()
    predict(a.input, a.trt, a.device)
