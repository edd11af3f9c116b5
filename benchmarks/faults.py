"""Kill -9 at any moment: a tiny training run killed with SIGKILL at N random moments, each time
resumed with ``--auto-resume``, must end with the weights of the uninterrupted run.

The run: the N recipe on 8 coco128 images (4 for validation) at a small size, 3 epochs of a few
steps, fixed seed, float32, no loader workers. First one uninterrupted run (the reference, also
timed); then N trials, each killed (SIGKILL, no chance to clean up) at a moment drawn uniformly
over the reference run's duration, so kills land in steps, evaluations and saves alike. After each
kill every ``.pth`` in the output folder must load (``weights_only=True``); the run is then resumed
with ``--auto-resume`` until it finishes, and its final ``last.pth`` (model, EMA, optimizer state)
compared tensor by tensor with the reference. Prints how many of N ended bit-identical, what the
run was doing when killed, and whether any ``.pth`` ever failed to load.

    nice python benchmarks/faults.py -n 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COCO128 = ROOT.parent / "shared" / "data" / "coco128"
RECIPE = ROOT / "configs" / "dfine" / "dfine_hgnetv2_n_coco.yml"


def write_data(folder: Path, n_train: int = 8, n_val: int = 4) -> Tuple[Path, Path]:
    """COCO files of the first ``n_train`` coco128 images with boxes and the next ``n_val``."""
    data = json.loads((COCO128 / "annotations" / "instances_train2017.json").read_text())
    anns = [a for a in data["annotations"] if not a.get("iscrowd")]
    with_boxes = sorted({a["image_id"] for a in anns})
    out = []
    for name, ids in (("train", with_boxes[:n_train]), ("val", with_boxes[n_train:n_train + n_val])):
        keep = set(ids)
        part = dict(data, images=[i for i in data["images"] if i["id"] in keep],
                    annotations=[a for a in anns if a["image_id"] in keep])
        path = folder / f"{name}.json"
        path.write_text(json.dumps(part))
        out.append(path)
    return out[0], out[1]


def command(out: Path, train: Path, val: Path, args: argparse.Namespace) -> List[str]:
    """The training command line (the same for the first start and every resume)."""
    images = COCO128 / "train2017"
    return [sys.executable, "-m", "dfine.cli", "train", "-c", str(RECIPE), "-d", "cpu", "--seed", "0",
            "--auto-resume", "--no-progress", "--output-dir", str(out), "--max-steps", str(args.steps),
            "--imgsz", str(args.imgsz), "-u", "use_amp=False", "HGNetv2.pretrained=False", f"epochs={args.epochs}",
            "checkpoint_freq=1", "print_freq=1", f"DFINETransformer.num_queries={args.queries}",
            f"DFINEPostProcessor.num_top_queries={args.queries}",
            f"train_dataloader.dataset.img_folder={images}", f"train_dataloader.dataset.ann_file={train}",
            f"val_dataloader.dataset.img_folder={images}", f"val_dataloader.dataset.ann_file={val}",
            "train_dataloader.total_batch_size=2", "val_dataloader.total_batch_size=4",
            "train_dataloader.num_workers=0", "val_dataloader.num_workers=0"]


def start(cmd: List[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("a"), stderr=subprocess.STDOUT, env=env)


def finish(cmd: List[str], log: Path) -> int:
    proc = start(cmd, log)
    return proc.wait()


def phase(log: Path) -> str:
    """What the run was doing at the kill, from the last line it printed."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if not lines or last.startswith(("train data", "val data", "classes", "model:", "device:", "schedule:",
                                     "output:", "resuming", "precision")):
        return "start-up"
    if " [" in last and last.startswith("epoch"):
        return "step or save"  # a step, or the evaluation/save after the last step printed
    if "Average" in last or last.startswith(("category", "epoch")) or "  " in last:
        return "after evaluation"
    return "other"


def load_all(folder: Path) -> List[str]:
    """Every ``.pth`` in ``folder`` that does not load with ``weights_only=True``."""
    import torch

    bad = []
    for p in sorted(folder.glob("*.pth")):
        try:
            torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure counts
            bad.append(f"{p.name}: {type(e).__name__}")
    return bad


def weights(path: Path) -> Dict[str, Any]:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {"model": ckpt["model"], "ema": ckpt["ema"]["module"], "optimizer": ckpt["optimizer"]["state"],
            "last_epoch": ckpt["last_epoch"], "step": ckpt["step"]}


def identical(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return a == b


def trial(i: int, seconds: float, cmd: List[str], out: Path, ref: Dict[str, Any]) -> Dict[str, Any]:
    log = out.parent / f"trial{i}.log"
    proc = start(cmd, log)
    try:
        proc.wait(timeout=seconds)
        killed = False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = True
    where = phase(log) if killed else "finished before the kill"
    temporaries = len(list(out.glob(".*.tmp")))
    bad = load_all(out) if out.is_dir() else []
    restarts = 0
    while True:
        rc = finish(cmd, log)
        restarts += 1
        if rc != 0 or restarts > 3:
            break
        if (out / "last.pth").is_file() and weights(out / "last.pth")["last_epoch"] == ref["last_epoch"]:
            break
    same = rc == 0 and identical(weights(out / "last.pth"), ref)
    return {"trial": i, "kill_at_s": round(seconds, 1), "where": where, "temporaries_left": temporaries,
            "unloadable": bad, "resume_rc": rc, "identical": same,
            "temporaries_after_resume": len(list(out.glob(".*.tmp")))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="number of kills (default 20)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="steps per epoch")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--queries", type=int, default=100, help="num_queries (small input, few tokens)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    args = parser.parse_args()
    from dfine.engine.precision import cpu_features

    print(f"CPU: {' '.join(cpu_features())}; {args.epochs} epochs x {args.steps} steps at {args.imgsz} px, float32")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        train, val = write_data(root)
        ref_out = root / "reference" / "out"
        t0 = time.time()
        rc = finish(command(ref_out, train, val, args), root / "reference.log")
        duration = time.time() - t0
        if rc != 0:
            sys.exit(f"the reference run failed (rc {rc}); see {root / 'reference.log'}")
        ref = weights(ref_out / "last.pth")
        print(f"reference run: {duration:.1f} s, {ref['step']} steps")
        rng = random.Random(args.seed)
        results = []
        for i in range(args.n):
            out = root / f"trial{i}" / "out"
            out.parent.mkdir(parents=True, exist_ok=True)
            r = trial(i, rng.uniform(1.0, duration), command(out, train, val, args), out, ref)
            results.append(r)
            print(json.dumps(r), flush=True)
        same = sum(r["identical"] for r in results)
        bad = [b for r in results for b in r["unloadable"]]
        print(f"{same} of {len(results)} killed runs ended bit-identical to the uninterrupted one "
              f"(model, EMA, optimizer state)")
        print(f"temporaries left by kills: {sum(r['temporaries_left'] for r in results)}, after resume: "
              f"{sum(r['temporaries_after_resume'] for r in results)}")
        print("every .pth loaded after every kill" if not bad else f"{len(bad)} .pth failed to load: {bad}")
        where: Dict[str, int] = {}
        for r in results:
            where[r["where"]] = where.get(r["where"], 0) + 1
        print("kills by phase:", json.dumps(where))


if __name__ == "__main__":
    main()
