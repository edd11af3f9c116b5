"""``dfine data convert`` and ``dfine data check`` run without importing torch: checked in a
fresh interpreter that runs the commands on a small YOLO and a small VOC folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.data.datasets import image, voc_xml, yolo_labels

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import contextlib, io, json, sys
from dfine.cli import main
report = []
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(argv)
    report.append({"argv": argv, "code": code, "torch": sorted(m for m in ("torch", "torchvision") if m in sys.modules),
                   "out": out.getvalue()[-300:], "err": err.getvalue()[-300:]})
print(json.dumps(report))
"""


def test_data_convert_and_check_import_no_torch(tmp_path):
    yolo, voc = tmp_path / "yolo", tmp_path / "voc"
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            image(yolo / f"images/{split}/{i}.jpg", (64, 48))
            yolo_labels(yolo / f"labels/{split}/{i}.txt", ["0 0.5 0.5 0.5 0.5"])
    (yolo / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cup]\n")
    for i in range(3):
        image(voc / f"JPEGImages/{i}.jpg", (64, 48))
        voc_xml(voc / f"Annotations/{i}.xml", f"{i}.jpg", (64, 48), [("boat", (5, 5, 40, 30), 0)])
    ann = tmp_path / "out/annotations/instances_train.json"
    lines = [["data", "convert", "--from", "yolo", str(yolo), "-o", str(tmp_path / "out")],
             ["data", "convert", "--from", "voc", str(voc), "-o", str(tmp_path / "vout")],
             ["data", "check", str(ann), "--images", str(yolo / "images"), "--fix", str(tmp_path / "fixed.json")]]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(lines)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert [e["code"] for e in report] == [0, 0, 0], report
    for entry in report:
        assert entry["torch"] == [], f"dfine {' '.join(entry['argv'][:3])} imported {entry['torch']}"
    assert (tmp_path / "fixed.json").is_file() and ann.is_file()
