"""Speed of ``dfine data convert`` and ``dfine data check`` on a large generated dataset.

Generates N small images (default 20,000; a handful of encoded JPEGs written under many names,
with 1-4 YOLO boxes each, 10% of them in val) in the YOLO layout, converts it to COCO (the COCO
form), then checks the COCO form: image headers only, and with ``--deep`` every pixel decoded.
Each phase runs in a fresh process so its peak memory (max RSS) is its own. Beside each figure
it prints the rate of a baseline measured in the same run: reading the first 4 KiB of every
image file (what a header read costs in I/O), so the ratio says how close to "bound by file
reads" the tool is. The machine may be shared: repeat with ``--repeat`` and read the ratios.

    python benchmarks/data_tools.py [--images 20000] [--deep] [--repeat 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def generate(root: Path, n: int, seed: int = 0) -> None:
    """N images in ``root/images/{train,val}`` with labels in ``root/labels/...`` and a data.yaml."""
    import PIL.Image

    rng = random.Random(seed)
    blobs = []
    for i in range(16):
        size = (64 + 8 * (i % 4), 48 + 8 * (i // 4))
        buf = io.BytesIO()
        PIL.Image.new("RGB", size, (i * 15, 100, 200 - i * 10)).save(buf, "JPEG", quality=80)
        blobs.append(buf.getvalue())
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        split = "val" if i % 10 == 0 else "train"
        (root / "images" / split / f"{i:07d}.jpg").write_bytes(blobs[i % 16])
        rows = []
        for _ in range(rng.randint(1, 4)):
            w, h = rng.uniform(0.05, 0.5), rng.uniform(0.05, 0.5)
            rows.append(f"{rng.randrange(5)} {rng.uniform(w / 2, 1 - w / 2):.6f} {rng.uniform(h / 2, 1 - h / 2):.6f} "
                        f"{w:.6f} {h:.6f}")
        (root / "labels" / split / f"{i:07d}.txt").write_text("\n".join(rows) + "\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a, b, c, d, e]\n")


def phase(name: str, root: Path, workers: int) -> dict:
    """Run one phase in this process; returns seconds, images and memory (the package imported first,
    so import time is left out; ``import_mb`` is the RSS after the imports, ``peak_mb`` the peak)."""
    from dfine.data.check import check_dataset
    from dfine.data.convert.yolo import convert_yolo

    import_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if name == "read":  # the baseline: the first 4 KiB of every image file
        count = 0
        for folder in (root / "images" / "train", root / "images" / "val"):
            for entry in os.scandir(folder):
                with open(entry.path, "rb") as f:
                    f.read(4096)
                count += 1
    elif name == "convert":
        result = convert_yolo(root, root / "coco")
        count = sum(c.images for c in result.counts.values())
    else:
        report = check_dataset(root / "coco" / "annotations" / "instances_train.json",
                               root / "images", level="deep" if name == "deep" else "headers", workers=workers)
        assert report.ok, report.format()
        count = report.num_images
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"phase": name, "images": count, "seconds": seconds, "peak_mb": peak_mb, "import_mb": import_mb}


def run_phase(name: str, root: Path, workers: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, __file__, "--phase", name, "--root", str(root), "--workers", str(workers)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--deep", action="store_true", help="also time the check that decodes every pixel")
    p.add_argument("--repeat", type=int, default=1, help="rounds (phases interleaved with the baseline)")
    p.add_argument("--workers", type=int, default=8, help="threads of the check (default 8)")
    p.add_argument("--keep", help="generate into this folder and keep it (default: a temporary folder)")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, Path(args.root), args.workers)))
        return
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dfine_data_bench_"))
    try:
        from dfine.export.benchmark import cpu_line
        print(cpu_line())
        t0 = time.perf_counter()
        if not (root / "data.yaml").is_file():
            generate(root, args.images)
        print(f"generated {args.images} images ({args.images // 10} val) in {root} in {time.perf_counter() - t0:.1f} s")
        phases = ["read", "convert", "read", "check"] + (["read", "deep"] if args.deep else [])
        for r in range(args.repeat):
            base = None
            for name in phases:
                res = run_phase(name, root, args.workers)
                rate = res["images"] / res["seconds"]
                if name == "read":
                    base = rate
                    continue
                what = {"convert": "convert (YOLO -> COCO, all splits)", "check": "check (COCO train, headers)",
                        "deep": "check --deep (every pixel)"}[name]
                print(f"round {r + 1}: {what:<36} {res['images']:>7} images in {res['seconds']:6.2f} s = "
                      f"{rate:8.0f} images/s ({rate / base:.2f}x the 4 KiB-read baseline of {base:.0f}/s), "
                      f"peak RSS {res['peak_mb']:.0f} MB ({res['import_mb']:.0f} MB after importing dfine)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
