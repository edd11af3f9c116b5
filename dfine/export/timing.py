"""Latency of a call and of an exported file, each file timed in a fresh process.

This module does not import torch: the child process that times an ONNX or OpenVINO file imports
only the runtime (torch's import alone took 12 s a process on a 16-core Intel host)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, Optional

__all__ = ["isa_env", "time_call", "time_export"]


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
    code = "import json, sys; from dfine.export.timing import _time_here; print(json.dumps(_time_here(*json.loads(sys.argv[1]))))"
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
    det = Detector(path, backend=backend, threads=threads, precision=precision)
    if "torch" in sys.modules:  # a checkpoint: torch's own threads (an export leaves torch unimported)
        import torch
        torch.set_num_threads(threads)
    images = np.random.default_rng(0).random((1, 3, *det.imgsz), dtype=np.float32)
    sizes = np.array([[det.imgsz[1], det.imgsz[0]]], dtype=np.int64)
    run = det._engine.run
    for _ in range(warmup):
        run(images, sizes)
    cpu = time.process_time()  # all threads of the process, user + system, not rounded to clock ticks
    result = time_call(lambda: run(images, sizes), warmup=0, runs=runs)
    result["cpu_ms"] = (time.process_time() - cpu) * 1e3 / runs
    return result
