"""CPU latency of the model alone: batch 1, 640x640, eager, eval mode (and deploy form), 2 threads.

Prints the CPU's vector extensions (and any ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` cap,
e.g. ``=avx2`` / ``=AVX2`` to stand in for an AVX2 CPU), then per size the best of ``--rounds``
medians over warm runs, params and GFLOPs, and with ``--ref DIR`` (a local checkout of the
published D-FINE, never committed) the published model timed in the same rounds, taking turns,
and the ratio ours / published.

    python benchmarks/latency.py --ref /path/to/D-FINE
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/latency.py --ref /path/to/D-FINE
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_ms(fn, x: torch.Tensor, warmup: int, runs: int) -> float:
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9


_REF = r"""
import sys, json, types, torch
sys.modules.setdefault("calflops", types.SimpleNamespace(calculate_flops=None))  # its import pulls in transformers
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from benchmarks.latency import median_ms
from src.core import YAMLConfig
torch.set_num_threads(int(sys.argv[4]))
cfg = YAMLConfig(f"{sys.argv[1]}/configs/dfine/dfine_hgnetv2_{sys.argv[3]}_coco.yml", HGNetv2={"pretrained": False})
model = cfg.model.eval()
x = torch.rand(1, 3, 640, 640)
res = {"eval": median_ms(model, x, int(sys.argv[5]), int(sys.argv[6]))}
model.deploy()
res["deploy"] = median_ms(model, x, int(sys.argv[5]), int(sys.argv[6]))
print(json.dumps(res))
"""


def reference_ms(ref: Path, size: str, threads: int, warmup: int, runs: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _REF, str(ref), str(ROOT), size, str(threads), str(warmup), str(runs)],
                         check=True, capture_output=True, text=True, cwd=ref)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import dfine
    from dfine.export.benchmark import cpu_line

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["n", "s"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="rounds, ours and the published taking turns")
    parser.add_argument("--ref", type=Path, help="local checkout of the published D-FINE, timed in the same run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_line()} at start; best of {args.rounds} interleaved rounds, each the median of {args.runs} runs")
    x = torch.rand(1, 3, 640, 640)
    for size in args.sizes:
        model = dfine.build_model(f"dfine_{size}").eval()
        deployed = dfine.build_model(f"dfine_{size}").eval().deploy()
        row = {"model": f"dfine_{size}", "params": sum(p.numel() for p in model.parameters()),
               "gflops": round(gflops(deployed, x), 2)}
        times = {k: [] for k in ("eval", "deploy", "published_eval", "published_deploy")}
        for _ in range(args.rounds):
            times["eval"].append(median_ms(model, x, args.warmup, args.runs))
            times["deploy"].append(median_ms(deployed, x, args.warmup, args.runs))
            if args.ref:
                ref = reference_ms(args.ref.resolve(), size, args.threads, args.warmup, args.runs)
                times["published_eval"].append(ref["eval"])
                times["published_deploy"].append(ref["deploy"])
        for key, values in times.items():
            if values:
                row[f"{key}_ms"] = round(min(values), 1)
        if args.ref:
            row["ratio_eval"] = round(min(times["eval"]) / min(times["published_eval"]), 3)
            row["ratio_deploy"] = round(min(times["deploy"]) / min(times["published_deploy"]), 3)
            row["ratio_deploy_per_round"] = [round(a / b, 3) for a, b in zip(times["deploy"], times["published_deploy"])]
        print(json.dumps(row))
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
