"""Cost and latency measurements shared by ``dfine benchmark`` and ``benchmarks/cpu_latency.py``."""

from __future__ import annotations

import functools
import os
import re
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .timing import isa_env, time_call, time_export

__all__ = ["NodeTime", "count_flops", "count_params", "cpu_line", "isa_env", "mkl_isa", "model_part", "op_counts",
           "openvino_profile", "ort_optimized_session", "profile_summary", "profile_table", "time_call", "time_export"]

# torch's own kernels; oneDNN in torch and OpenVINO; MKL in torch (honoured on Intel CPUs, not on AMD's)
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def cpu_line() -> str:
    """One line to print beside CPU timings: the CPU's name, family and model, its vector extensions,
    the instruction-set caps in force (which ONNX Runtime ignores), the extensions CPUID hides from
    every library (``benchmarks/avx2_only.py`` sets ``DFINE_CPUID_HIDES``), the instruction sets
    torch's kernels and MKL run at (:func:`mkl_isa`), the cores and the load average."""
    from ..engine.precision import cpu_features, cpu_model
    text = f"CPU: {cpu_model()}: {', '.join(cpu_features()) or 'no avx2/avx512/amx'}"
    caps = [f"{k}={os.environ[k]}" for k in ISA_CAPS if os.environ.get(k)]
    if caps:
        text += f" (capped: {', '.join(caps)}; ONNX Runtime ignores these)"
    if os.environ.get("DFINE_CPUID_HIDES"):
        text += f" (CPUID hides {os.environ['DFINE_CPUID_HIDES']} from every library: benchmarks/avx2_only.py)"
    text += f"; torch kernels {torch.backends.cpu.get_cpu_capability()}, MKL {mkl_isa()}"
    return text + f"; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}"


@functools.lru_cache(maxsize=None)
def mkl_isa() -> str:
    """The instruction set MKL runs torch's matrix products with in this environment (``AVX2``,
    ``AVX-512``, ...), as MKL itself reports it (``MKL_VERBOSE`` in a child process: MKL honours
    ``MKL_ENABLE_INSTRUCTIONS`` on Intel CPUs only); ``"unnamed (non-Intel CPU)"`` where MKL reports
    only "Intel(R) Architecture processors" (what it prints on AMD CPUs); ``"unknown"`` where torch
    has no MKL or MKL says nothing."""
    if not torch.backends.mkl.is_available():
        return "unknown"
    code = "import torch; torch.mm(torch.ones(64, 256), torch.ones(256, 256))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MKL_VERBOSE": "1"})
    return _mkl_isa_from(out.stdout + out.stderr)


def _mkl_isa_from(verbose: str) -> str:
    """The instruction set named in MKL's ``MKL_VERBOSE`` version line (``unknown`` if none)."""
    match = re.search(r"architecture .*?\(Intel\(R\) ([^)]+)\)", verbose)
    if match:
        return match.group(1)
    return "unnamed (non-Intel CPU)" if "Intel(R) Architecture processors" in verbose else "unknown"


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


# Model parts for a profile, first match wins: the head's parts as ``--keep-float`` names them
# (dfine.export.int8.SCOPE_GROUPS), then the rest of the decoder, the backbone, the encoder.
_PART_PREFIXES = (("backbone", r"/model/backbone/"), ("encoder", r"/model/encoder/"),
                  ("decoder-other", r"/model/decoder/"), ("postprocessor", r"/postprocessor/"))


@dataclass
class NodeTime:
    """One node OpenVINO's CPU plugin ran (after its fusions), with its median time per inference."""

    name: str  # the runtime node's name (a fused node is named after one of its layers)
    type: str  # OpenVINO's node type: Convolution, FullyConnected, Multiply, Reorder, ...
    exec_type: str  # the kernel: brgconv_avx512_1x1_I8, jit_avx512_f32, ref_any_f32, ...
    part: str  # model_part of the layers it runs
    ms: float  # median over the profiled inferences
    min_ms: float = float("nan")  # the fastest of them: what the node takes undisturbed (steady under load)
    index: int = -1  # its place in the execution order (the same for the same file and settings; names the
    # plugin makes up, such as Multiply_1234, are numbered on from the last model compiled in the process)

    @property
    def int8(self) -> bool:
        """Whether the kernel ran on 8-bit integers (its name ends in i8 / u8)."""
        return self.exec_type.rsplit("_", 1)[-1].lower() in ("i8", "u8")


def model_part(names: Sequence[str]) -> str:
    """The part of the model (``backbone``, ``encoder``, a part of the head as ``--keep-float``
    names it, ``decoder-other``, ``postprocessor``, else ``other``) most of the ONNX node names
    ``names`` belong to."""
    import re
    from .int8 import SCOPE_GROUPS
    parts = [(g, pats) for g, pats in SCOPE_GROUPS.items() if g not in ("head", "postprocessor")]
    parts += [(g, (prefix + ".*",)) for g, prefix in _PART_PREFIXES]
    votes: Counter = Counter()
    for name in names:
        votes[next((g for g, pats in parts if any(re.fullmatch(p, name) for p in pats)), "other")] += 1
    return votes.most_common(1)[0][0] if votes else "other"


def openvino_profile(path: str, threads: int = 2, runs: int = 50, precision: str = "f32") -> List[NodeTime]:
    """Per-node times of an OpenVINO model (IR or ONNX) compiled exactly as :class:`dfine.Detector`
    compiles it (latency hint, ``threads`` threads, ``precision``, batch 1), with the CPU plugin's
    performance counters on (``PERF_COUNT``), over ``runs`` inferences on random input; slowest first."""
    import numpy as np
    from ..inference import Detector
    runner = Detector(path, backend="openvino", threads=threads, precision=precision)._engine.run
    runner.props = {**runner.props, "PERF_COUNT": True}
    compiled, request = runner._compiled(1)
    layers = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        names = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
        layers[op.get_friendly_name()] = [n for n in names.split(",") if n] or [op.get_friendly_name()]
    h, w = runner.imgsz
    feed = {"images": np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32),
            "orig_target_sizes": np.array([[w, h]], dtype=np.int64)}
    for _ in range(3):
        request.infer(feed)
    times: Dict[Tuple[str, str, str], List[float]] = {}
    for _ in range(runs):
        request.infer(feed)
        for p in request.profiling_info:
            if p.status == p.Status.EXECUTED:
                times.setdefault((p.node_name, p.node_type, p.exec_type), []).append(p.real_time.total_seconds() * 1e3)
    nodes = [NodeTime(name, kind, exec_type, model_part(layers.get(name, [name])), statistics.median(t), min(t), i)
             for i, ((name, kind, exec_type), t) in enumerate(times.items())]
    return sorted(nodes, key=lambda n: -n.ms)


def profile_summary(nodes: Sequence[NodeTime], key: Callable[[NodeTime], str], stat: str = "ms"
                    ) -> Dict[str, Dict[str, float]]:
    """Per ``key(node)``: ``ms`` (sum of the nodes' ``stat``: ``ms``, the medians, or ``min_ms``),
    ``int8_ms`` (of that on int8 kernels), ``nodes``."""
    out: Dict[str, Dict[str, float]] = {}
    for n in nodes:
        row = out.setdefault(key(n), {"ms": 0.0, "int8_ms": 0.0, "nodes": 0})
        row["ms"] += getattr(n, stat)
        row["int8_ms"] += getattr(n, stat) if n.int8 else 0.0
        row["nodes"] += 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["ms"]))


def profile_table(profiles: Dict[str, Sequence[NodeTime]], key: Callable[[NodeTime], str], title: str,
                  limit: Optional[int] = None, stat: str = "ms") -> List[str]:
    """Markdown table of several models' profiles side by side, rows grouped by ``key(node)``
    (e.g. the part, or the node type and precision): per model the ms (sums of each node's
    ``stat``: ``ms`` or ``min_ms``), the share of its total and the ms on int8 kernels; the slowest
    rows first, at most ``limit`` rows."""
    sums = {label: profile_summary(nodes, key, stat) for label, nodes in profiles.items()}
    totals = {label: sum(getattr(n, stat) for n in nodes) or 1.0 for label, nodes in profiles.items()}
    rows = list(dict.fromkeys(k for label in sums for k in sums[label]))
    rows.sort(key=lambda k: -max(s.get(k, {"ms": 0.0})["ms"] for s in sums.values()))
    head = "| " + title + " | " + " | ".join(f"{label}: ms (share, on int8 kernels)" for label in profiles) + " |"
    lines = [head, "|---" * (len(profiles) + 1) + "|"]
    for k in rows[:limit]:
        cells = []
        for label, s in sums.items():
            r = s.get(k, {"ms": 0.0, "int8_ms": 0.0, "nodes": 0})
            cells.append(f"{r['ms']:.2f} ({100 * r['ms'] / totals[label]:.0f}%, {r['int8_ms']:.2f}) x{r['nodes']}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("| total | " + " | ".join(f"{sum(getattr(n, stat) for n in nodes):.2f} x{len(nodes)}"
                                          for nodes in profiles.values()) + " |")
    return lines
