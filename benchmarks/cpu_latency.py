"""CPU latency of D-FINE N and S at batch 1, 640x640, 2 threads: ONNX Runtime and OpenVINO on our
ONNX export, each checked against PyTorch, beside the published CPU figures and, with ``--ref DIR``
(a local checkout of the published D-FINE, never committed), the published export of the same
weights timed in the same run.

Each (file, runtime) is timed in a process of its own, round after round, so that one runtime's
waiting threads never slow another's. ``best`` is the median of the fastest round (close to an idle
machine), ``typical`` the median over rounds (what a shared machine gives).

    python benchmarks/cpu_latency.py [--sizes n s] [--runs 20] [--rounds 3] [--threads 2] [--ref DIR] [--bf16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

from dfine.export.benchmark import cpu_line, time_export
from dfine.checkpoint import LoadedModel
from dfine.export.onnx import export_onnx
from dfine.inference import Detector
from dfine.models.dfine import build_model
from dfine.models.postprocess import PostProcessor

# published CPU latency (ms) at bs1 640: ONNX Runtime range, OpenVINO
BASELINES = {"n": {"onnxruntime": (55.0, 60.0), "openvino": (51.0, 51.0)},
             "s": {"onnxruntime": (159.0, 179.0), "openvino": (106.0, 106.0)}}
GOALS = {"n": 40.0, "s": 90.0}
RunFn = Callable[[np.ndarray, np.ndarray], Tuple[np.ndarray, ...]]

# Run in a fresh process with the published checkout as working directory: builds its model,
# loads our (train-form) weights, exports model + post-processor the way its export script does.
_REF_EXPORT = r"""
import sys, types, warnings, torch, torch.nn as nn
ref, size, state, out = sys.argv[1:5]
sys.path.insert(0, ref)
sys.modules.setdefault("calflops", types.SimpleNamespace(calculate_flops=None))  # its import pulls in transformers
from src.core import YAMLConfig
cfg = YAMLConfig(f"{ref}/configs/dfine/dfine_hgnetv2_{size}_coco.yml", HGNetv2={"pretrained": False})
missing, unexpected = cfg.model.load_state_dict(torch.load(state, weights_only=True), strict=False)
print(f"published dfine_{size}: {len(missing)} missing, {len(unexpected)} unexpected weights", file=sys.stderr)
class Deploy(nn.Module):
    def __init__(self):
        super().__init__()
        self.model, self.post = cfg.model.deploy(), cfg.postprocessor.deploy()
    def forward(self, images, sizes):
        return self.post(self.model(images), sizes)
model = Deploy().eval()
x, s = torch.rand(2, 3, 640, 640), torch.tensor([[640, 640]] * 2)
with torch.no_grad(), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model(x, s)
    torch.onnx.export(model, (x, s), out, input_names=["images", "orig_target_sizes"],
                      output_names=["labels", "boxes", "scores"], opset_version=16, do_constant_folding=True,
                      dynamic_axes={"images": {0: "N"}, "orig_target_sizes": {0: "N"}}, dynamo=False)
try:  # simplified when onnxsim is installed, as our export is
    import onnx, onnxsim
except ImportError:
    sys.exit(0)
simple, ok = onnxsim.simplify(out)
if ok:
    onnx.save(simple, out)
"""


def _model(size: str) -> Tuple[LoadedModel, Dict[str, torch.Tensor]]:
    """Deploy-form random ``dfine_{size}`` (seed 0) and its train-form state dict."""
    torch.manual_seed(0)
    model = build_model(f"dfine_{size}", eval_spatial_size=(640, 640))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.deploy()
    return LoadedModel(model, PostProcessor(80).deploy(), model.config, (), (), f"random dfine_{size}"), state


def _export_ref(ref: Path, size: str, state: Dict[str, torch.Tensor], folder: Path) -> Path:
    """The published implementation's ONNX export of ``state`` (its own process), in ``folder``."""
    torch.save(state, folder / "state.pth")
    out = folder / f"published_{size}.onnx"
    subprocess.run([sys.executable, "-c", _REF_EXPORT, str(ref.resolve()), size, str(folder / "state.pth"), str(out)],
                   check=True, cwd=ref, stdout=subprocess.DEVNULL)
    return out


def _diffs(loaded: LoadedModel, run: RunFn, images: np.ndarray, sizes: np.ndarray) -> Tuple[float, float]:
    """Largest score and box (px) differences against PyTorch.

    Scores are compared sorted (near-tie reorderings do not count); boxes where both orders give
    the same label and the query's score is at least 1e-4 away from its neighbours'."""
    with torch.inference_mode():
        ref = [t.numpy() for t in loaded.postprocessor(loaded.model(torch.from_numpy(images)), torch.from_numpy(sizes))]
    got = run(images, sizes)
    score = float(np.abs(np.sort(got[2], -1) - np.sort(ref[2], -1)).max())
    box = 0.0
    for i in range(len(images)):
        a, b = np.argsort(-ref[2][i], kind="stable"), np.argsort(-got[2][i], kind="stable")
        s = ref[2][i][a]
        gap = np.minimum(np.abs(np.diff(s, prepend=np.inf)), np.abs(np.diff(s, append=-np.inf)))
        same = (gap > 1e-4) & (ref[0][i][a] == got[0][i][b])
        if same.any():
            box = max(box, float(np.abs(ref[1][i][a][same] - got[1][i][b][same]).max()))
    return score, box


def _rows(size: str, ours: Path, ref: Path | None, bf16: bool) -> List[Tuple[str, Path, str, str]]:
    """(label, file, runtime, precision) for every line of the table."""
    rows = []
    for label, path in [("ours", ours)] + ([("published", ref)] if ref else []):
        for backend, precision in [("onnxruntime", "f32"), ("openvino", "f32")] + ([("openvino", "bf16")] if bf16 else []):
            rows.append((f"dfine_{size} {label:9} {backend:11} {precision:4}", path, backend, precision))
    return rows


def _report(size: str, label: str, backend: str, precision: str, medians: List[float], diff: Tuple[float, float],
            base: float | None) -> str:
    """One table line: best and typical ms, ratio to the same-run published export, published figure, goal."""
    best, typical = min(medians), statistics.median(medians)
    lo, hi = BASELINES[size][backend]
    text = f"{label}  best {best:6.1f} ms  typical {typical:6.1f} ms"
    if base is not None:
        text += f"  x{best / base:.2f} vs published same run"
    text += f"  (published figure {lo:g}-{hi:g} ms; goal {GOALS[size]:g} ms {'met' if best <= GOALS[size] else 'not met'})"
    return text + f"  max diff vs torch: scores {diff[0]:.1e}, boxes {diff[1]:.1e} px"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["n", "s"], choices=("n", "s"))
    p.add_argument("--runs", type=int, default=20, help="timed runs per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each timing every line in a fresh process")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ref", type=Path, help="local checkout of the published D-FINE, exported and timed in the same run")
    p.add_argument("--bf16", action="store_true", help="also time OpenVINO at bf16 precision (outputs change)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    images = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    sizes = np.array([[640, 480]], dtype=np.int64)
    print(f"{cpu_line()} at start")
    for size in a.sizes:
        loaded, state = _model(size)
        with tempfile.TemporaryDirectory() as tmp:
            ours = export_onnx(loaded, Path(tmp) / f"dfine_{size}.onnx")
            ref = _export_ref(a.ref, size, state, Path(tmp)) if a.ref else None
            rows = _rows(size, ours, ref, a.bf16)
            diffs = {r[0]: _diffs(loaded, Detector(str(r[1]), backend=r[2], threads=a.threads, precision=r[3])._engine.run,
                                  images, sizes) for r in rows}
            medians: Dict[str, List[float]] = {r[0]: [] for r in rows}
            for _ in range(a.rounds):
                for label, path, backend, precision in rows:
                    medians[label].append(time_export(str(path), backend, a.threads, precision, a.runs)["median_ms"])
        for label, _, backend, precision in rows:
            same = label.replace(f"dfine_{size} ours     ", f"dfine_{size} published")
            base = min(medians[same]) if ref and same in medians and same != label else None
            print(_report(size, label, backend, precision, medians[label], diffs[label], base))
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
