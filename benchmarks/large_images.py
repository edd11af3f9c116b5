"""Training-time reading of photos larger than the model can use: shrunk first, against as they are.

Builds the train dataset of the custom recipe (``dfine train --data``'s) at ``--imgsz`` over
generated phone-sized JPEGs (default 4032 x 3024, camera-like noise so they decode as slowly as
photos do) and times ``dataset[i]`` (decode, augmentations, resize to the input) two ways in the same
process, interleaved: as training reads them (shrunk to
:meth:`~dfine.data.transforms.DetectionTransform.source_short_side` first) and the baseline, the
published way (the whole image through the augmentations). Prints ms per image of each and their
ratio, beside the CPU's vector extensions. Each item is seeded the same way in both, so both run the
same augmentations.

    python benchmarks/large_images.py [--imgsz 320] [--size 4032x3024] [--images 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_photos(root: Path, n: int, size: tuple) -> Path:
    """``n`` noisy JPEGs of ``size`` with two boxes each, and their COCO file; returns the file."""
    import numpy as np
    import PIL.Image

    rng = np.random.default_rng(0)
    w, h = size
    (root / "images").mkdir(parents=True)
    base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    images, anns = [], []
    for i in range(n):
        smooth = PIL.Image.fromarray(np.roll(base, i * 7, axis=1)).resize((w, h), PIL.Image.BILINEAR)
        noisy = np.asarray(smooth, dtype=np.int16) + rng.integers(-12, 12, (h, w, 3), dtype=np.int16)
        PIL.Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{i}.jpg", quality=90)
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": w, "height": h})
        for k, (x, y) in enumerate(((0.2, 0.3), (0.6, 0.5))):
            anns.append({"id": 2 * i + k + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [x * w, y * h, 0.2 * w, 0.25 * h], "area": 0.05 * w * h})
    ann = root / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "qr"}]}))
    return ann


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--size", default="4032x3024", help="photo size WxH (default 4032x3024, 12 MP)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    from dfine.config import load_config
    from dfine.data.loader import build_dataset
    from dfine.export.benchmark import cpu_line
    from dfine.recipes import RECIPES_DIR

    torch.set_num_threads(1)  # one loader worker's view
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="dfine-large-") as tmp:
        ann = make_photos(Path(tmp), args.images, size)
        recipe = RECIPES_DIR / "dfine" / "custom" / "dfine_hgnetv2_n_custom.yml"
        cfg = load_config(recipe, [f"train_dataloader.dataset.ann_file={ann}",
                                   f"train_dataloader.dataset.img_folder={Path(tmp) / 'images'}",
                                   f"eval_spatial_size=[{args.imgsz}, {args.imgsz}]", "num_classes=null"])
        ds = build_dataset(cfg, "train", seed=0)
        side = ds.transforms.source_short_side()
        print(f"{cpu_line()}")
        print(f"{args.images} JPEGs of {size[0]}x{size[1]}, input {args.imgsz}: read at {side} px on the short side "
              f"(baseline: whole), 1 thread, {args.rounds} rounds")
        shrunk, whole = [], []
        for _ in range(args.rounds):
            for times, limit in ((shrunk, side), (whole, None)):
                ds.transforms.source_short_side = lambda limit=limit: limit  # noqa: E731 - the baseline's switch
                start = time.perf_counter()
                for i in range(len(ds)):
                    ds[i]
                times.append(1000 * (time.perf_counter() - start) / len(ds))
        a, b = statistics.median(shrunk), statistics.median(whole)
        print(f"shrunk first: {a:.0f} ms per image; whole (baseline): {b:.0f} ms per image; ratio {a / b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
