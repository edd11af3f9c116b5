"""Cost and latency measurements shared by ``dfine benchmark`` and ``benchmarks/cpu_latency.py``."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ["count_flops", "count_params", "cpu_line", "isa_env", "op_counts", "ort_optimized_session", "time_call",
           "time_export"]

ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")  # torch's kernels; oneDNN in torch and OpenVINO


def cpu_line() -> str:
    """One line to print beside CPU timings: the vector extensions, the instruction-set caps in
    force (which ONNX Runtime ignores) with the one torch runs at, the cores and the load average."""
    from ..engine.precision import cpu_features
    text = f"CPU: {', '.join(cpu_features()) or 'no avx2/avx512/amx'}"
    caps = [f"{k}={os.environ[k]}" for k in ISA_CAPS if os.environ.get(k)]
    if caps:
        text += f" (capped: {', '.join(caps)}; ONNX Runtime ignores these)"
    text += f"; torch kernels {torch.backends.cpu.get_cpu_capability()}"
    return text + f"; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}"


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, imgsz: Tuple[int, int], batch: int = 1) -> float:
    """FLOPs of one forward pass on ``[batch, 3, H, W]`` (``torch.utils.flop_counter``; a
    multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.rand(batch, 3, *imgsz, device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return float(counter.get_total_flops())


def time_call(fn: Callable[[], object], warmup: int = 3, runs: int = 20, sync: Callable[[], None] = lambda: None
              ) -> Dict[str, float]:
    """Median, min and mean wall time of ``fn()`` in milliseconds after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "mean_ms": statistics.fmean(times)}


def time_export(path: str, backend: Optional[str] = None, threads: int = 2, precision: str = "f32",
                runs: int = 20, warmup: int = 3, isa: Optional[str] = None) -> Dict[str, float]:
    """Latency of an exported file at batch 1 on random input of its own size, timed in a fresh
    process (one runtime's idle threads never slow another's): :func:`time_call`'s figures plus
    ``cpu_ms``, the process CPU time per call (steadier than wall time on a shared machine).

    ``isa``: the process's ``ONEDNN_MAX_CPU_ISA`` (e.g. ``AVX2``: OpenVINO's and torch's oneDNN
    kernels capped there; ONNX Runtime ignores it); ``""`` runs uncapped, ``None`` inherits."""
    args = json.dumps([str(path), backend, int(threads), precision, int(runs), int(warmup)])
    code = "import json, sys; from dfine.export.benchmark import _time_here; print(json.dumps(_time_here(*json.loads(sys.argv[1]))))"
    out = subprocess.run([sys.executable, "-c", code, args], check=True, capture_output=True, text=True,
                         env=isa_env(isa))
    return json.loads(out.stdout.strip().splitlines()[-1])


def isa_env(isa: Optional[str]) -> Optional[Dict[str, str]]:
    """This process's environment with ``ONEDNN_MAX_CPU_ISA`` set to ``isa`` (``""``: removed), for a
    child process; ``None`` when ``isa`` is ``None`` (inherit)."""
    if isa is None:
        return None
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    return env


def _time_here(path: str, backend: Optional[str], threads: int, precision: str, runs: int, warmup: int
               ) -> Dict[str, float]:
    import numpy as np
    from ..inference import Detector
    torch.set_num_threads(threads)
    det = Detector(path, backend=backend, threads=threads, precision=precision)
    images = np.random.default_rng(0).random((1, 3, *det.imgsz), dtype=np.float32)
    sizes = np.array([[det.imgsz[1], det.imgsz[0]]], dtype=np.int64)
    run = det._engine.run
    for _ in range(warmup):
        run(images, sizes)
    cpu = os.times()
    result = time_call(lambda: run(images, sizes), warmup=0, runs=runs)
    end = os.times()
    result["cpu_ms"] = (end.user + end.system - cpu.user - cpu.system) * 1e3 / runs
    return result


def ort_optimized_session(path: str, optimized: str, threads: int = 2, profile_prefix: Optional[str] = None) -> Any:
    """An ONNX Runtime CPU session of the ONNX file ``path`` loaded as ``Detector`` loads it
    (``ORT_ENABLE_ALL``, ``threads`` threads), which saves the graph it will run, after ONNX
    Runtime's fusions, constant folding and NCHWc layout changes for this CPU, at ``optimized``;
    profiling on when ``profile_prefix`` is given."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(optimized)
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def op_counts(model: Any) -> Counter:
    """Nodes per op type of an ``onnx.ModelProto``; ops outside the standard domain are prefixed with
    theirs (``com.microsoft.nchwc::Conv``)."""
    return Counter(f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                   for n in model.graph.node)
