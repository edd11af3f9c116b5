"""Time one training step of D-FINE-N on CPU: forward, matcher + losses, backward, AdamW step.

Batches of 4 real COCO128 images (simply resized to S x S, with their annotations) at 640 and 320
px; the median over a few steps after a warm-up. Our step runs in float32 and in bfloat16 autocast
(as ``use_amp`` does on a CPU), the two taking turns step by step, and the ratio bf16 / float32 is
printed beside the CPU's vector extensions (bf16 pays only with AVX512-BF16 or AMX). With ``--ref DIR`` (a local checkout of the
published D-FINE, never committed) the published model and criterion run on the same batches
in a worker subprocess, taking turns step by step with ours so that both see the same load on
the machine, and the ratio ours / published is printed. On a machine shared with other jobs,
``--clock cpu`` times each phase in process CPU seconds (both threads together; run with
``OMP_WAIT_POLICY=PASSIVE`` so that waiting threads do not spin), which the other jobs disturb far
less than wall-clock seconds.

    python benchmarks/train_step.py --ref /path/to/D-FINE
    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_step.py --ref /path/to/D-FINE --clock cpu

On a GPU (``--device cuda``) every phase is timed to its end (``torch.cuda.synchronize``), the
second run of ours is float16 autocast with a gradient scaler (what ``use_amp`` means there), the
published runs both ways too, and the GPU's name is printed beside the figures:

    python benchmarks/train_step.py --ref /path/to/D-FINE --device cuda --sizes 640 --batch 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COCO128 = ROOT.parent / "shared" / "data" / "coco128"
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def load_batches(size: int, batch: int, count: int) -> List[dict]:
    """``count`` batches of ``batch`` COCO128 images resized to ``size`` x ``size`` (PIL bilinear).

    Each batch: ``images [B, 3, S, S]`` float in [0, 1] and ``targets`` (labels contiguous in sorted
    category-id order, boxes normalised cx, cy, w, h; crowd boxes left out).
    """
    from PIL import Image

    ann = json.loads((COCO128 / "annotations" / "instances_train2017.json").read_text())
    label_of = {cid: i for i, cid in enumerate(sorted(c["id"] for c in ann["categories"]))}
    by_image: Dict[int, list] = {}
    for a in ann["annotations"]:
        if not a.get("iscrowd", 0):
            by_image.setdefault(a["image_id"], []).append(a)
    infos = sorted(ann["images"], key=lambda i: i["id"])
    infos = [infos[i % len(infos)] for i in range(batch * count)]  # round again where COCO128 runs out
    batches = []
    for start in range(0, len(infos), batch):
        images, targets = [], []
        for info in infos[start:start + batch]:
            img = Image.open(COCO128 / "train2017" / info["file_name"]).convert("RGB").resize((size, size), Image.BILINEAR)
            images.append(torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1))
            w, h = info["width"], info["height"]
            objs = by_image.get(info["id"], [])
            boxes = torch.tensor([[(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h] for x, y, bw, bh in
                                  (o["bbox"] for o in objs)], dtype=torch.float32).reshape(-1, 4)
            labels = torch.tensor([label_of[o["category_id"]] for o in objs], dtype=torch.int64)
            targets.append({"labels": labels, "boxes": boxes})
        batches.append({"images": torch.stack(images).float() / 255, "targets": targets})
    return batches


class Stepper:
    """One AdamW training step at a time on a model and criterion, timed by phase.

    ``wrap_matcher(record)`` installs a timer around the criterion's matcher that calls
    ``record(seconds)``; ``clock`` is a key of :data:`CLOCKS`.
    """

    def __init__(self, model, criterion, wrap_matcher: Callable, clock: str = "wall", amp=None, device: str = "cpu"):
        self.device = torch.device(device)
        self.model, self.criterion, self.amp = model.train().to(self.device), criterion.to(self.device), amp
        self.clock = _synced(CLOCKS[clock], self.device)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
        # on a GPU, float16 autocast goes with a gradient scaler, as the trainer's use_amp does
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and amp == torch.float16)
        self.matcher_time: List[float] = []
        wrap_matcher(self.matcher_time.append)

    def step(self, batch: dict) -> dict:
        """Seconds of each phase (``step`` = all of them) and the loss values of this step."""
        self.matcher_time.clear()
        clock = self.clock
        t0 = clock()
        kind = self.device.type
        with torch.autocast(kind, dtype=self.amp, enabled=self.amp is not None):
            outputs = self.model(batch["images"], batch["targets"])
        t1 = clock()
        with torch.autocast(kind, enabled=False):
            losses = self.criterion(outputs, batch["targets"])
        total = sum(losses.values())
        t2 = clock()
        self.optimizer.zero_grad()
        self.scaler.scale(total).backward()
        t3 = clock()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        t4 = clock()
        return {"step": t4 - t0, "forward": t1 - t0, "loss": t2 - t1, "matcher": sum(self.matcher_time),
                "backward": t3 - t2, "optimizer": t4 - t3,
                "losses": {k: round(v.item(), 5) for k, v in losses.items()}}


def _synced(tick: Callable, device: torch.device) -> Callable:
    """``tick`` that first waits for the GPU's queued work (on a CPU: ``tick`` itself)."""
    if device.type != "cuda":
        return tick

    def synced():
        torch.cuda.synchronize(device)
        return tick()
    return synced


def to_device(batches: List[dict], device: str) -> List[dict]:
    """The batches with images and targets on ``device``."""
    return [{"images": b["images"].to(device),
             "targets": [{k: v.to(device) for k, v in t.items()} for t in b["targets"]]} for b in batches]


def _timed(original: Callable, record: Callable, clock: str = "wall") -> Callable:
    tick = CLOCKS[clock]

    def timed(*args, **kwargs):
        t = tick()
        result = original(*args, **kwargs)
        record(tick() - t)
        return result
    return timed


def our_stepper(clock: str = "wall", amp=None, device: str = "cpu") -> Stepper:
    """Our N model and criterion (seed 0), stepping in float32 or under ``amp`` autocast."""
    import dfine
    from dfine.loss import build_criterion

    torch.manual_seed(0)
    criterion = build_criterion("dfine_n")
    matcher = criterion.matcher

    def wrap(record):
        matcher.match_many = _timed(matcher.match_many, record, clock)

    return Stepper(dfine.build_model("dfine_n"), criterion, wrap, clock, amp, device)


# The published side: a worker process with the published checkout on sys.path that runs one step
# per line read ("<batch index>") and answers one JSON line, so both sides can take turns and see
# the same load on the machine. Its logging / profiling dependencies (tensorboard, calflops) are
# stubbed when absent: they play no part in a step.
_REF_WORKER = r"""
import importlib.util, json, sys, types, torch
ref, bench_dir, batches_path, clock, device, amp = sys.argv[1:7]
sys.path.insert(0, ref)
sys.path.insert(0, bench_dir)
if importlib.util.find_spec("tensorboard") is None:
    sys.modules["torch.utils.tensorboard"] = types.SimpleNamespace(SummaryWriter=object)
if importlib.util.find_spec("calflops") is None or importlib.util.find_spec("transformers") is None:
    sys.modules["calflops"] = types.SimpleNamespace(calculate_flops=None)
from src.core import YAMLConfig
from train_step import Stepper, _timed, to_device
torch.manual_seed(0)
cfg = YAMLConfig(f"{ref}/configs/dfine/dfine_hgnetv2_n_coco.yml", HGNetv2={"pretrained": False})
criterion = cfg.criterion
def wrap(record):
    criterion.matcher.forward = _timed(criterion.matcher.forward, record, clock)
stepper = Stepper(cfg.model, criterion, wrap, clock, getattr(torch, amp, None), device)
batches = to_device(torch.load(batches_path, weights_only=True), device)
print("ready", flush=True)
for line in sys.stdin:
    print(json.dumps(stepper.step(batches[int(line)])), flush=True)
"""


class PublishedWorker:
    """The published model and criterion in a subprocess, stepped on request."""

    def __init__(self, ref: Path, batches: List[dict], tmp: Path, clock: str = "wall", device: str = "cpu",
                 amp: str = "none"):
        path = tmp / "batches.pth"
        torch.save(batches, path)
        self.proc = subprocess.Popen([sys.executable, "-c", _REF_WORKER, str(ref), str(Path(__file__).parent),
                                      str(path), clock, device, amp], cwd=ref, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the published worker in {ref} did not start (see its error above)")

    def step(self, index: int) -> dict:
        self.proc.stdin.write(f"{index}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the published worker stopped (see its error above)")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def summarise(records: List[dict]) -> dict:
    """Median of each phase, the fastest step, and the losses of the last step."""
    result = {k: statistics.median(r[k] for r in records) for k in records[0] if k != "losses"}
    result["step_min"] = min(r["step"] for r in records)
    result["losses_last_step"] = records[-1]["losses"]
    result["total_loss_last_step"] = round(sum(records[-1]["losses"].values()), 5)
    return result


def run(size: int, args, tmp: Path) -> dict:
    """Warm-up step, then ``args.steps`` timed steps; ours in float32, ours in bf16 (on a GPU:
    float16 with a gradient scaler; neither with ``--no-bf16``) and the published (on a GPU both
    ways) take turns, who goes first rotating each step."""
    batches = load_batches(size, args.batch, args.steps + 1)
    gpu = args.device != "cpu"
    ours = our_stepper(args.clock, device=args.device)
    bf16 = None if args.no_bf16 else our_stepper(args.clock, torch.float16 if gpu else torch.bfloat16, args.device)
    workers = {}
    if args.ref:
        workers["published"] = PublishedWorker(args.ref.resolve(), batches, tmp, args.clock, args.device)
        if gpu and bf16 is not None:
            workers["published_amp"] = PublishedWorker(args.ref.resolve(), batches, tmp, args.clock, args.device, "float16")
    on_device = to_device(batches, args.device)
    records: Dict[str, List[dict]] = {"ours": [], "bf16": [], "published": [], "published_amp": []}
    turns = [("ours", lambda i: ours.step(on_device[i]))]
    if bf16 is not None:
        turns.append(("bf16", lambda i: bf16.step(on_device[i])))
    turns += [(name, worker.step) for name, worker in workers.items()]
    try:
        for i in range(len(batches)):
            for k in range(len(turns)):
                name, step = turns[(i + k) % len(turns)]
                records[name].append(step(i))
    finally:
        for worker in workers.values():
            worker.close()
    return {name: summarise(r[1:]) if r else None for name, r in records.items()}


def _row(name: str, r: dict) -> str:
    return (f"{name:10s} step {r['step']:.3f} (min {r['step_min']:.3f})  forward {r['forward']:.3f}  loss {r['loss']:.4f} "
            f"(matcher {r['matcher']:.4f})  backward {r['backward']:.3f}  optimizer {r['optimizer']:.3f}  "
            f"total loss {r['total_loss_last_step']:.4f}")


def _compare(label: str, r: dict, base: dict | None, what: str, note: str, key: str) -> dict:
    """Print ``r``'s row and, against ``base``, its ratio line; the summary entries for ``key``."""
    print(_row(label, r))
    entry = {f"{key}_s": round(r["step"], 4)}
    if base is not None:
        ratio = r["step"] / base["step"]
        print(f"ratio {what}: median {ratio:.3f}, min {r['step_min'] / base['step_min']:.3f}{note}")
        entry[f"{key}_over_f32"] = round(ratio, 3)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", type=Path, help="local checkout of the published D-FINE, timed in the same run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 320])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    parser.add_argument("--show-losses", action="store_true", help="print every loss term of the last step")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall-clock seconds, or process CPU seconds (steadier on a shared machine)")
    parser.add_argument("--no-bf16", action="store_true",
                        help="time float32 only (no bfloat16 autocast run; on a GPU no float16 one)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N (GPU figures)")
    args = parser.parse_args()
    from dfine.engine.precision import cpu_features, native_bf16

    if args.device != "cpu" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: this torch sees no CUDA GPU; run on a GPU machine or drop --device")
    flags = cpu_features()
    features = " ".join(flags) or "no AVX2"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.clock} clock, "
          f"CPU: {features} (torch capability {torch.backends.cpu.get_cpu_capability()})")
    if args.device != "cpu":
        print(f"GPU: {torch.cuda.get_device_name(torch.device(args.device))}, CUDA {torch.version.cuda}; TF32 "
              f"convolutions {torch.backends.cudnn.allow_tf32}, matmuls {torch.backends.cuda.matmul.allow_tf32}")
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            result = run(size, args, Path(tmp))
            ours, bf16, published = result["ours"], result["bf16"], result["published"]
            published_amp = result["published_amp"]
            print(f"--- {size} px")
            print(_row("ours f32", ours))
            entry = {"ours_s": round(ours["step"], 4), "ours_matcher_s": round(ours["matcher"], 4)}
            if bf16:
                gpu = args.device != "cpu"
                name = "f16" if gpu else "bf16"
                what = ("float16 autocast" if gpu else "bf16") + " / float32"
                note = "" if gpu else f"  (CPU: {features}; bf16 {'native' if native_bf16(flags) else 'emulated'})"
                entry.update(_compare(f"ours {name}", bf16, ours, what, note, name))
            if args.show_losses:
                print("  ", json.dumps(ours["losses_last_step"]))
            if published:
                print(_row("published", published))
                ratio, ratio_min = ours["step"] / published["step"], ours["step_min"] / published["step_min"]
                print(f"ratio ours / published: median {ratio:.3f}, min {ratio_min:.3f}  "
                      f"(loss phase {ours['loss'] / published['loss']:.3f})")
                entry.update(published_s=round(published["step"], 4), ratio=round(ratio, 3),
                             ratio_min=round(ratio_min, 3), loss_phase_ratio=round(ours["loss"] / published["loss"], 3))
            if published_amp:
                entry.update(_compare("publ. f16", published_amp, None, "", "", "published_f16"))
                entry["f16_ratio"] = round(bf16["step"] / published_amp["step"], 3)
                print(f"ratio ours / published, both float16 autocast: median {entry['f16_ratio']:.3f}, "
                      f"min {bf16['step_min'] / published_amp['step_min']:.3f}")
            summary[size] = entry
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
