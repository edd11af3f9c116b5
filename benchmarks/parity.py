"""Parity with the published implementation, for any size: build the published model from a local
checkout (``--ref DIR``, never committed), perturb its weights so that every branch contributes,
run both on real images and compare eval outputs (as query sets) and deploy detections.

    python benchmarks/parity.py --ref /path/to/D-FINE --sizes m l x
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_REF_SCRIPT = r"""
import sys, torch
sys.path.insert(0, sys.argv[1])
from src.core import YAMLConfig
size, out_path, images_path = sys.argv[2], sys.argv[3], sys.argv[4]
cfg = YAMLConfig(f"{sys.argv[1]}/configs/dfine/dfine_hgnetv2_{size}_coco.yml", HGNetv2={"pretrained": False})
model = cfg.model
torch.manual_seed(0)
with torch.no_grad():
    for name, t in model.state_dict().items():
        if not t.is_floating_point() or name.endswith(("anchors", "valid_mask", "num_points_scale")) \
                or name.split(".")[-1] in ("up", "reg_scale"):
            continue
        if name.endswith("running_var"):
            t.copy_(torch.rand_like(t) + 0.5)
        else:
            t.add_(torch.randn_like(t) * 0.02)
images = torch.load(images_path, weights_only=True)
model.eval()
with torch.no_grad():
    out = model(images)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    post = cfg.postprocessor.deploy()
    sizes = torch.tensor([[640, 480], [640, 427]], dtype=torch.float32)
    labels, boxes, scores = post(model.deploy()(images), sizes)
torch.save({"state": state, "eval": out, "deploy": {"labels": labels, "boxes": boxes, "scores": scores},
            "sizes": sizes}, out_path)
"""


def _load_images() -> torch.Tensor:
    golden = ROOT.parent / "shared" / "golden" / "dfine_n_golden.pth"
    if golden.exists():
        return torch.load(golden, weights_only=True)["images_uint8"].float() / 255
    torch.manual_seed(0)
    return torch.rand(2, 3, 640, 640)


def compare(size: str, ref: Path, tmp: Path) -> dict:
    import dfine
    from tests.compare import assert_detections_close, assert_query_sets_close

    images_path, out_path = tmp / "images.pth", tmp / f"ref_{size}.pth"
    torch.save(_load_images(), images_path)
    subprocess.run([sys.executable, "-c", _REF_SCRIPT, str(ref), size, str(out_path), str(images_path)],
                   check=True, cwd=ref)
    r = torch.load(out_path, weights_only=True)
    model = dfine.build_model(f"dfine_{size}")
    dfine.load_checkpoint(model, {"model": r["state"]})
    images = torch.load(images_path, weights_only=True)
    with torch.no_grad():
        out = model.eval()(images)
        dets = dfine.PostProcessor().deploy()(model.deploy()(images), r["sizes"])
    report = {"size": size, "max_abs_elementwise": max(
        (out[k] - r["eval"][k]).abs().max().item() for k in ("pred_logits", "pred_boxes"))}
    for b in range(images.shape[0]):
        ours = torch.cat([out["pred_logits"][b], out["pred_boxes"][b]], -1)
        gold = torch.cat([r["eval"]["pred_logits"][b], r["eval"]["pred_boxes"][b]], -1)
        assert_query_sets_close(ours, gold, atol=2e-3)
        assert_detections_close(dets[0][b], dets[1][b], dets[2][b], {k: v[b] for k, v in r["deploy"].items()})
    report["eval_sets_within_2e-3"] = True
    report["deploy_detections_match"] = True
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", type=Path, required=True, help="local checkout of the published D-FINE")
    parser.add_argument("--sizes", nargs="+", default=["n", "s", "m", "l", "x"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            print(json.dumps(compare(size, args.ref.resolve(), Path(tmp))))


if __name__ == "__main__":
    main()
