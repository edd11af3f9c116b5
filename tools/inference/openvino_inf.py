"""``python tools/inference/openvino_inf.py --image IMAGE --ov_model MODEL.xml|.onnx`` (published arguments)."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _shim import predict  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("-image", "--image", required=True)
    p.add_argument("-ov_model", "--ov_model", required=True)
    a = p.parse_args()
    predict(a.image, a.ov_model, extra=["--backend", "openvino"])
