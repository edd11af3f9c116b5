"""What float32, TF32 and float16 do to D-FINE's outputs and AP on a CUDA GPU.

1. Golden fixtures (``../shared/golden``, or ``--golden DIR``): the published N / S outputs on two
   COCO128 images against ours on the GPU, as ``../shared/README.md`` compares them (queries
   paired one-to-one, the worst pair's largest difference): in strict float32 (TF32 off), with
   torch's default TF32 settings (convolutions may use TF32, matrix products not), under float16
   and bfloat16 autocast. A real mistake moves them by 5e-3 or more; rounding alone by 3e-4.
   Also the training loss of the fixture's batch in float32 on the GPU against the published one.
2. ``--demo RUN``: a trained run folder (``last.pth`` and ``data/val.json`` + ``data/val/``, as
   ``dfine demo`` writes it): COCO AP of the checkpoint on its val set through ``dfine.Detector``
   on the GPU in float32 and under float16 autocast, and on the CPU for the baseline.

Prints the GPU and the CPU line first; one JSON line per result.

    python benchmarks/gpu.py --demo runs/demo
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOLDEN = ROOT.parent / "shared" / "golden"
MODES = ("float32", "tf32_default", "float16_autocast", "bfloat16_autocast")


@contextmanager
def precision(mode: str):
    """Run the block in ``mode`` (one of :data:`MODES`); torch's TF32 flags are put back after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    strict = mode != "tf32_default"
    if strict:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    dtype = {"float16_autocast": torch.float16, "bfloat16_autocast": torch.bfloat16}.get(mode)
    try:
        with torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None):
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def worst_pair(ours: torch.Tensor, gold: torch.Tensor) -> float:
    """``[Q, D]`` rows: pair each golden row one-to-one with one of ours (minimising the largest
    coordinate difference) and return the worst pair's largest difference."""
    from scipy.optimize import linear_sum_assignment
    dist = torch.cdist(gold.double(), ours.double().cpu(), p=float("inf"))
    rows, cols = linear_sum_assignment(dist.numpy())
    return dist[rows, cols].max().item()


def golden_rows(size: str, golden: Path, device: str) -> list:
    """One dict per precision mode: worst paired eval difference against the fixture; in float32
    also the training loss against the fixture's."""
    import dfine
    from dfine.loss import build_criterion
    g = torch.load(golden / f"dfine_{size}_golden.pth", weights_only=True)
    x = (g["images_uint8"].float() / 255).to(device)
    model = dfine.build_model(f"dfine_{size}")
    dfine.load_checkpoint(model, g["checkpoint"])
    model.eval().to(device)
    gold = [torch.cat([g["eval"]["pred_logits"][b], g["eval"]["pred_boxes"][b]], -1) for b in range(2)]
    rows = []
    for mode in MODES:
        with torch.no_grad(), precision(mode):
            out = model(x)
        worst = max(worst_pair(torch.cat([out["pred_logits"][b], out["pred_boxes"][b]], -1).float(), gold[b])
                    for b in range(2))
        rows.append({"model": f"dfine_{size}", "mode": mode, "eval_worst_pair": float(f"{worst:.3g}")})
    ckpt = g["checkpoint"]
    state = ckpt["ema"]["module"] if "ema" in ckpt else ckpt["model"]
    state = {k: v for k, v in state.items() if not k.startswith("decoder.denoising_class_embed.")}
    train = dfine.build_model(f"dfine_{size}", num_denoising=0)
    dfine.load_checkpoint(train, {"model": state})
    train.train().to(device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in g["targets"]]
    with precision("float32"):
        losses = build_criterion(f"dfine_{size}")(train(x, targets), targets)
    total = sum(losses.values()).item()
    rows[0]["train_total_loss"] = round(total, 5)
    rows[0]["train_loss_rel_diff"] = float(f"{abs(total - g['train_total_loss']) / g['train_total_loss']:.3g}")
    return rows


def demo_rows(run: Path, device: str) -> list:
    """COCO AP of ``run/last.pth`` on ``run/data/val`` on the CPU, on the GPU and under float16 autocast."""
    import dfine
    from dfine.export.evaluate import evaluate_detector, load_eval_set
    data = load_eval_set(run / "data" / "val.json", run / "data" / "val")
    rows = []
    for dev, mode in (("cpu", "float32"), (device, "float32"), (device, "tf32_default"), (device, "float16_autocast")):
        det = dfine.Detector(str(run / "last.pth"), device=dev, conf=0.0, batch_size=8)
        t = time.perf_counter()
        with precision(mode) if dev != "cpu" else nullcontext():
            metrics = evaluate_detector(det, data)
        rows.append({"model": str(run / "last.pth"), "device": dev, "mode": mode, "AP": round(100 * metrics.stats[0], 2),
                     "AP50": round(100 * metrics.stats[1], 2), "images": len(data.images),
                     "seconds": round(time.perf_counter() - t, 1)})
    return rows


def main() -> None:
    from dfine.export.benchmark import cpu_line
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", nargs="+", default=["n", "s"], help="golden fixtures to compare (where present)")
    parser.add_argument("--golden", type=Path, default=GOLDEN, help="folder of dfine_{n,s}_golden.pth")
    parser.add_argument("--demo", type=Path, help="a trained run folder: last.pth, data/val.json, data/val/")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py: this torch sees no CUDA GPU; run it on a GPU machine")
    print(f"GPU: {torch.cuda.get_device_name(torch.device(args.device))}; torch {torch.__version__}, CUDA "
          f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}; torch's TF32 defaults: convolutions "
          f"{torch.backends.cudnn.allow_tf32}, matmuls {torch.backends.cuda.matmul.allow_tf32}")
    print(cpu_line(), flush=True)
    for size in args.sizes:
        if (args.golden / f"dfine_{size}_golden.pth").is_file():
            for row in golden_rows(size, args.golden, args.device):
                print(json.dumps(row), flush=True)
        else:
            print(f"(no {args.golden}/dfine_{size}_golden.pth: dfine_{size} left out)")
    if args.demo:
        for row in demo_rows(args.demo, args.device):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
