"""``python tools/inference/onnx_inf.py --onnx MODEL.onnx --input IMAGE_OR_VIDEO`` (published arguments)."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _shim import predict  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--onnx", required=True)
    p.add_argument("--input", required=True)
    a = p.parse_args()
    predict(a.input, a.onnx)
