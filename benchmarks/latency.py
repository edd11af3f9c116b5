"""Latency of the model alone: batch 1, 640x640, eager, eval mode and deploy form, 2 CPU threads.

Prints the CPU's vector extensions (and any ``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` /
``MKL_ENABLE_INSTRUCTIONS`` cap, e.g. ``=avx2`` / ``=AVX2`` / ``=AVX2`` to stand in for an AVX2 CPU,
with the instruction sets torch's kernels and MKL then run: MKL honours its cap on Intel CPUs only),
then per size params, GFLOPs and the latency of each form. With ``--ref DIR`` (a local checkout of the published D-FINE, never
committed) the published model is built in the same process as ours (one size per process, as
its config system keeps global state) and the two take turns, one forward pass each, ``--pairs``
times: each pair gives one ratio ours / published, taken under the same load, and the median of
those ratios (with its quartiles) is the figure to read. A shared machine slows both alike, so
the paired ratio stays steady where separate timings do not. ``--keep-memory`` runs the process
as ``dfine.Detector`` runs its own (``dfine.allocator.keep_freed_memory``: freed tensor memory
stays in the heap instead of being faulted in again every pass); both models share that process.

On a GPU (``--device cuda``) each pass is timed to its end (``torch.cuda.synchronize``), the
GPU's name stands beside the figures, ``--batch`` sets the images per pass and ``--amp`` runs
both models under float16 autocast (as ``use_amp`` trains), TF32 left as torch sets it.

    python benchmarks/latency.py --ref /path/to/D-FINE
    python benchmarks/latency.py --ref /path/to/D-FINE --device cuda --sizes n s m l x --batch 1 32 --amp
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python benchmarks/latency.py --ref /path/to/D-FINE
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Dict, List

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FORMS = ("eval", "deploy")


def published_model(ref: Path, size: str, deploy: bool) -> torch.nn.Module:
    """The published D-FINE ``size`` model (random weights) from a local checkout."""
    sys.modules.setdefault("calflops", types.SimpleNamespace(calculate_flops=None))  # its import pulls in transformers
    sys.path.insert(0, str(ref))
    cwd = os.getcwd()
    os.chdir(ref)
    try:
        from src.core import YAMLConfig
        cfg = YAMLConfig(str(ref / f"configs/dfine/dfine_hgnetv2_{size}_coco.yml"), HGNetv2={"pretrained": False})
        model = cfg.model.eval()
    finally:
        os.chdir(cwd)
    return model.deploy() if deploy else model


def benchmark_model(who: str, size: str, form: str, ref: str | None = None) -> torch.nn.Module:
    """Ours (``who="ours"``) or the published (``"published"``, from the checkout ``ref``) ``size``
    model in ``form`` (eval or deploy), random weights (seed 0), as :func:`child` times them."""
    import dfine
    torch.manual_seed(0)
    if who == "published":
        return published_model(Path(ref).resolve(), size, form == "deploy")
    model = dfine.build_model(f"dfine_{size}").eval()
    return model.deploy() if form == "deploy" else model


def paired_times(models: Dict[str, torch.nn.Module], x: torch.Tensor, warmup: int, pairs: int,
                 amp: bool = False) -> Dict[str, List[float]]:
    """Wall times (ms) of one forward pass of each model, ``pairs`` rounds, the order rotating; on a
    GPU each pass is waited for (``amp``: under float16 autocast)."""
    names = list(models)
    times: Dict[str, List[float]] = {name: [] for name in names}
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.float16, enabled=amp):
        for _ in range(warmup):
            for model in models.values():
                model(x)
        for i in range(pairs):
            for name in names[i % len(names):] + names[: i % len(names)]:
                sync()
                t = time.perf_counter()
                models[name](x)
                sync()
                times[name].append((time.perf_counter() - t) * 1000)
    return times


def child(args: argparse.Namespace) -> None:
    """One size in this process: time ours (and the published) and print one JSON row."""
    from dfine.allocator import keep_freed_memory
    from dfine.export.benchmark import count_flops
    if args.keep_memory and not keep_freed_memory():
        raise SystemExit("--keep-memory: not in force here (not glibc, or DFINE_KEEP_MEMORY=0)")
    torch.set_num_threads(args.threads)
    size = args.child
    models = {form: benchmark_model("ours", size, form) for form in FORMS}
    row = {"model": f"dfine_{size}", "keep_memory": args.keep_memory, "device": args.device, "batch": args.batch,
           "amp": args.amp, "params": sum(p.numel() for p in models["eval"].parameters()),
           "gflops": round(count_flops(models["deploy"], (640, 640)) / 1e9, 2)}
    if args.ref:
        for form in FORMS:
            models[f"published_{form}"] = benchmark_model("published", size, form, args.ref)
    x = torch.rand(args.batch, 3, 640, 640, device=args.device)
    models = {name: model.to(args.device) for name, model in models.items()}
    times = paired_times(models, x, args.warmup, args.pairs, args.amp)
    for name, values in times.items():
        row[f"{name}_ms"] = {"min": round(min(values), 1), "median": round(statistics.median(values), 1)}
    if args.ref:
        for form in FORMS:
            ratios = [a / b for a, b in zip(times[form], times[f"published_{form}"])]
            q1, median, q3 = statistics.quantiles(ratios, n=4)
            row[f"ratio_{form}"] = {"median": round(median, 3), "quartiles": [round(q1, 3), round(q3, 3)],
                                    "of_mins": round(min(times[form]) / min(times[f"published_{form}"]), 3)}
    print(json.dumps(row))


def main() -> None:
    from dfine.export.benchmark import cpu_line

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["n", "s"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=30, help="rounds in which every model runs once, taking turns")
    parser.add_argument("--ref", type=Path, help="local checkout of the published D-FINE, timed in the same process")
    parser.add_argument("--keep-memory", action="store_true",
                        help="keep freed memory in the heap, as dfine.Detector does (both models share the process)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N (GPU figures)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="images per pass (each a row)")
    parser.add_argument("--amp", action="store_true", help="float16 autocast (GPU), both models")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.batch = args.batch[0]
        return child(args)
    if args.device != "cpu" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: this torch sees no CUDA GPU; run on a GPU machine or drop --device")
    if args.ref and not (args.ref / "src" / "core").is_dir():
        raise SystemExit(f"--ref {args.ref}: not a checkout of the published D-FINE (no src/core); "
                         f"pass the folder of a clone of github.com/Peterande/D-FINE")
    if args.device != "cpu":
        print(f"GPU: {torch.cuda.get_device_name(torch.device(args.device))}; torch {torch.version.cuda and 'CUDA ' + torch.version.cuda}; "
              f"TF32 convolutions {torch.backends.cudnn.allow_tf32}, matmuls {torch.backends.cuda.matmul.allow_tf32}")
    print(f"{cpu_line()} at start; {args.pairs} rounds, each model once per round, taking turns")
    for size in args.sizes:
        for batch in args.batch:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", size, "--threads", str(args.threads),
                   "--warmup", str(args.warmup), "--pairs", str(args.pairs), "--device", args.device,
                   "--batch", str(batch)]
            if args.ref:
                cmd += ["--ref", str(args.ref.resolve())]
            cmd += ["--keep-memory"] * args.keep_memory + ["--amp"] * args.amp
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            print(out.stdout.strip().splitlines()[-1], flush=True)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
