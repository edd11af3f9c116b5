"""CPU latency of D-FINE N and S at batch 1, 640x640, 2 threads: ONNX Runtime (graph optimisation
ALL, onnxsim) and OpenVINO when installed, each checked against PyTorch, against the published
CPU figures. Usage: ``python benchmarks/cpu_latency.py [--sizes n s] [--runs 30] [--threads 2]``."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from dfine.export.benchmark import time_call
from dfine.export.loading import LoadedModel
from dfine.export.onnx import export_onnx
from dfine.inference import Detector
from dfine.models.dfine import build_model
from dfine.models.postprocess import PostProcessor

# published CPU latency (ms) at bs1 640: ONNX Runtime range, OpenVINO
BASELINES = {"n": {"onnxruntime": (55.0, 60.0), "openvino": (51.0, 51.0)},
             "s": {"onnxruntime": (159.0, 179.0), "openvino": (106.0, 106.0)}}
GOALS = {"n": 40.0, "s": 90.0}


def _model(size: str) -> LoadedModel:
    torch.manual_seed(0)
    model = build_model(f"dfine_{size}", eval_spatial_size=(640, 640)).deploy()
    return LoadedModel(model, PostProcessor(80).deploy(), model.config, (), (), f"random dfine_{size}")


def _max_diff(loaded: LoadedModel, run, images, sizes) -> float:
    """Largest score difference against PyTorch (scores sorted, so near-tie reorderings do not count)."""
    with torch.inference_mode():
        ref = loaded.postprocessor(loaded.model(torch.from_numpy(images)), torch.from_numpy(sizes))
    got = run(images, sizes)
    return float(np.abs(np.sort(got[2], -1) - np.sort(ref[2].numpy(), -1)).max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["n", "s"])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    images = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    sizes = np.array([[640, 480]], dtype=np.int64)
    for size in a.sizes:
        loaded = _model(size)
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(loaded, Path(tmp) / "m.onnx")
            for backend in ("onnxruntime", "openvino"):
                try:
                    det = Detector(str(path), backend=backend, threads=a.threads)
                except Exception as e:  # openvino missing
                    print(f"dfine_{size} {backend:11} skipped: {e}")
                    continue
                diff = _max_diff(loaded, det._engine.run, images, sizes)
                ms = time_call(lambda: det._engine.run(images, sizes), runs=a.runs)["median_ms"]
                lo, hi = BASELINES[size][backend]
                print(f"dfine_{size} {backend:11} {ms:7.1f} ms  published {lo:g}-{hi:g} ms  ratio {ms / lo:.2f}"
                      f"  goal {GOALS[size]:g} ms {'met' if ms <= GOALS[size] else 'not met'}  max score diff vs torch {diff:.1e}")


if __name__ == "__main__":
    main()
