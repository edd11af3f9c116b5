"""Evaluation speed: images per second of ``--test-only`` (model, post-processing and COCO AP) on
coco128 with the N recipe, ours against the published evaluation of the same weights in the same
run.

The weights are the published-layout checkpoint of ``../shared/golden/dfine_n_golden.pth``. Each
side runs in its own process (built and loaded before the clock starts; only the evaluation over
the loader is timed), the two taking turns round by round so both see the same load on the
machine; the ratio ours / published of the seconds is printed (lower is faster; the aim is <= 0.8)
with both APs (they must agree) and the CPU's vector extensions. ``--ref DIR`` is a local checkout
of the published D-FINE, never committed; without it only ours is timed.

    nice python benchmarks/eval_speed.py --ref /path/to/D-FINE --images 32 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
COCO128 = SHARED / "data" / "coco128"
RECIPE = "configs/dfine/dfine_hgnetv2_n_coco.yml"

# Ours: build the evaluation as `dfine eval` does, then time the evaluation alone.
_OURS = r"""
import json, sys, time
from dfine.config import load_config
from dfine.engine.trainer import Trainer
recipe, weights, ann, images, batch, out = sys.argv[1:7]
cfg = load_config(recipe, [f"resume={weights}", "device=cpu", f"val_dataloader.dataset.img_folder={images}",
                           f"val_dataloader.dataset.ann_file={ann}", f"val_dataloader.total_batch_size={batch}",
                           "val_dataloader.num_workers=0", "HGNetv2.pretrained=False", f"output_dir={out}"])
trainer = Trainer(cfg, test_only=True, progress=False)
t = time.perf_counter()
metrics = trainer.evaluate()
print(json.dumps({"seconds": time.perf_counter() - t, "images": len(trainer.val_set), "AP": metrics.ap}))
"""

# Published: the solver as its train.py --test-only builds it, then its evaluate() alone.
_PUBLISHED = r"""
import importlib.util, io, contextlib, json, sys, time, types
ref, recipe, weights, ann, images, batch, out = sys.argv[1:8]
sys.path.insert(0, ref)
if importlib.util.find_spec("tensorboard") is None:
    sys.modules["torch.utils.tensorboard"] = types.SimpleNamespace(SummaryWriter=object)
if importlib.util.find_spec("calflops") is None or importlib.util.find_spec("transformers") is None:
    sys.modules["calflops"] = types.SimpleNamespace(calculate_flops=None)
if importlib.util.find_spec("loguru") is None:  # its validator logs with loguru; no part of the timing
    class _Quiet:
        def __getattr__(self, name):
            return lambda *a, **k: None
    sys.modules["loguru"] = types.SimpleNamespace(logger=_Quiet())
from src.core import YAMLConfig
from src.misc import dist_utils
from src.solver import TASKS
from src.solver.det_engine import evaluate
with contextlib.redirect_stdout(io.StringIO()):
    dist_utils.setup_distributed(0, "builtin", seed=0)
    cfg = YAMLConfig(f"{ref}/{recipe}", resume=weights, device="cpu", test_only=True, output_dir=out,
                     HGNetv2={"pretrained": False},
                     val_dataloader={"dataset": {"img_folder": images, "ann_file": ann},
                                     "total_batch_size": int(batch), "num_workers": 0})
    solver = TASKS[cfg.yaml_cfg["task"]](cfg)
    solver.eval()
    module = solver.ema.module if solver.ema else solver.model
    t = time.perf_counter()
    stats, _ = evaluate(module, solver.criterion, solver.postprocessor, solver.val_dataloader, solver.evaluator,
                        solver.device, epoch=-1, use_wandb=False)
    seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "images": len(solver.val_dataloader.dataset), "AP": stats["coco_eval_bbox"][0]}))
"""


def write_inputs(tmp: Path, n_images: int) -> Dict[str, str]:
    """The weights as a published-layout file and a COCO file of the first ``n_images`` images."""
    import torch

    golden = torch.load(SHARED / "golden" / "dfine_n_golden.pth", weights_only=True)
    weights = tmp / "dfine_n.pth"
    torch.save(golden["checkpoint"], weights)
    data = json.loads((COCO128 / "annotations" / "instances_train2017.json").read_text())
    keep = {im["id"] for im in sorted(data["images"], key=lambda i: i["id"])[:n_images]}
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    ann = tmp / "val.json"
    ann.write_text(json.dumps(data))
    return {"weights": str(weights), "ann": str(ann), "images": str(COCO128 / "train2017")}


def run(code: str, args: List[str], cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"evaluation failed in {cwd}:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", type=Path, help="local checkout of the published D-FINE, timed in the same run")
    parser.add_argument("--images", type=int, default=128, help="first N coco128 images (default all 128)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="evaluations of each side, taking turns")
    args = parser.parse_args()
    import torch

    from dfine.engine.precision import cpu_features

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {' '.join(cpu_features())}; "
          f"N at 640 px, {args.images} coco128 images, batch {args.batch}, no workers")
    results: Dict[str, List[dict]] = {"ours": [], "published": []}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = write_inputs(Path(tmp), args.images)
        common = [inputs["weights"], inputs["ann"], inputs["images"], str(args.batch)]
        for r in range(args.rounds):
            order = ["ours", "published"] if r % 2 == 0 else ["published", "ours"]
            for side in order:
                if side == "ours":
                    results[side].append(run(_OURS, [RECIPE, *common, f"{tmp}/ours"], ROOT))
                elif args.ref:
                    results[side].append(run(_PUBLISHED, [str(args.ref.resolve()), RECIPE, *common,
                                                          f"{tmp}/published"], args.ref))
                else:
                    continue
                last = results[side][-1]
                print(f"round {r + 1} {side:9s} {last['seconds']:7.2f} s  {last['images'] / last['seconds']:6.2f} "
                      f"images/s  AP {100 * last['AP']:.2f}", flush=True)
    summary = {}
    for side, rs in results.items():
        if rs:
            seconds = statistics.median(x["seconds"] for x in rs)
            summary[side] = {"seconds": round(seconds, 2), "images_per_s": round(rs[0]["images"] / seconds, 3),
                             "AP": round(rs[0]["AP"], 4)}
    if "published" in summary:
        ratio = summary["ours"]["seconds"] / summary["published"]["seconds"]
        summary["ratio_ours_over_published"] = round(ratio, 3)
        print(f"ours / published seconds: {ratio:.3f} (aim <= 0.8); AP ours {100 * summary['ours']['AP']:.2f} vs "
              f"published {100 * summary['published']['AP']:.2f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
