"""``python tools/benchmark/trt_benchmark.py --size s [-m CHECKPOINT] [-b 1]``: TensorRT fp16 latency
(a shim over ``dfine benchmark --backends tensorrt --device cuda``)."""

import argparse
import sys

from dfine.cli import main

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("-m", "--model", default=None)
    p.add_argument("--size", default="n")
    p.add_argument("-b", "--batch-size", type=int, default=1)
    a = p.parse_args()
    argv = ["benchmark", "--backends", "tensorrt", "--device", "cuda", "--size", a.size, "-b", str(a.batch_size)]
    sys.exit(main(argv + (["-m", a.model] if a.model else [])))
