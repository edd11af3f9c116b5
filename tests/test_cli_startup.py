"""``dfine --help``, ``dfine COMMAND --help`` and argument errors answer at once: they import
neither torch nor any optional library (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "cv2", "matplotlib", "onnx", "onnxruntime", "openvino", "fiftyone", "supervision",
         "trackers", "nncf", "scipy", "faster_coco_eval", "tensorboard", "tensorrt")

# Runs each command line in turn in one interpreter; reports its exit code and the heavy
# modules that were imported by then.
_PROBE = """
import contextlib, io, json, sys
from dfine.cli import COMMANDS, main
lines = [["--help"], []] + [[name, "--help"] for name, _, _ in COMMANDS] + [["export"], ["no-such-command"]]
report = []
for argv in lines:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    heavy = sorted(m for m in HEAVY if m in sys.modules)
    report.append({"argv": argv, "code": code, "heavy": heavy, "stderr": err.getvalue()[-400:]})
print(json.dumps(report))
"""


def test_help_and_usage_errors_import_no_torch():
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = f"HEAVY = {HEAVY!r}\n{_PROBE}"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(report) >= 12  # --help, bare, every command's --help, two errors
    for entry in report:
        assert entry["heavy"] == [], f"dfine {' '.join(entry['argv'])} imported {entry['heavy']}"
    codes = {" ".join(e["argv"]): e["code"] for e in report}
    assert codes["--help"] == 0 and codes[""] == 2
    helps = {k: v for k, v in codes.items() if k.endswith(" --help")}
    assert len(helps) >= 10 and set(helps.values()) == {0}, helps
    assert codes["export"] == 2 and "required" in report[-2]["stderr"]
    assert codes["no-such-command"] == 2 and "invalid choice" in report[-1]["stderr"]


def test_every_command_is_listed_once_and_runs_its_own_parser():
    from dfine.cli import COMMANDS, build_parser

    names = [name for name, _, _ in COMMANDS]
    assert len(names) == len(set(names))
    full = build_parser()  # every module imported: each registers the commands the table names
    sub = next(a for a in full._actions if a.dest == "command")
    assert set(names) <= set(sub.choices)
    for name in names:
        actions = [a for a in sub.choices[name]._actions if a.dest != "help"]
        assert actions, f"{name}: its module registers no parser of its own (only the placeholder)"


def test_a_mistyped_option_is_one_line_naming_the_command_and_the_closest_option(capsys):
    """``dfine predict ... --cnof 0.3`` printed the top-level usage (``usage: dfine [-h] COMMAND ...``)
    and no hint, while a mistyped -u key gets one (a walk helper's finding); argparse's own errors
    came after a usage block of up to nine lines."""
    import pytest

    from dfine.cli import main

    cases = {("predict", "a.jpg", "-m", "m.onnx", "--cnof", "0.3"):
             "dfine predict: error: unrecognized arguments: --cnof 0.3; --cnof: did you mean --conf? "
             "(dfine predict --help lists the options)",
             ("data", "check", "set", "--imgszz", "320"):
             "dfine data check: error: unrecognized arguments: --imgszz 320; --imgszz: did you mean --imgsz? "
             "(dfine data check --help lists the options)",
             ("export", "-r", "x.pth", "--format", "tflite"):
             "dfine export: error: argument --format: invalid choice: 'tflite' (choose from 'onnx', 'openvino', "
             "'engine') (dfine export --help lists the options)",
             ("zoo", "extra"): "dfine zoo: error: unrecognized arguments: extra (dfine zoo --help lists the options)"}
    for argv, said in cases.items():
        with pytest.raises(SystemExit) as e:
            main(list(argv))
        assert e.value.code == 2
        captured = capsys.readouterr()
        assert captured.err == said + "\n" and captured.out == "", argv


def test_options_of_other_detectors_point_to_ours(capsys):
    """YOLOv5 / Ultralytics spellings a newcomer types: '--conf-thres' was told 'did you mean --threads?'
    (the closest spelling, another thing entirely). Each now names our option of the same meaning in
    that command, and an IoU threshold says why D-FINE has none."""
    import pytest

    from dfine.cli import main

    cases = {("predict", "a.jpg", "-m", "m.onnx", "--conf-thres", "0.3"): "--conf-thres: did you mean --conf?",
             ("predict", "a.jpg", "-m", "m.onnx", "--project", "out"): "--project: did you mean --output?",
             ("train", "--data", "d", "--project", "out"): "--project: did you mean --output-dir?",
             ("train", "--data", "d", "--batch-size", "8"): "--batch-size: did you mean --batch?",
             ("export", "-r", "m.pth", "--img-size", "640"): "--img-size: did you mean --imgsz?",
             ("predict", "a.jpg", "-m", "m.onnx", "--iou-thres", "0.5"):
             "--iou-thres: D-FINE needs no NMS (one box per object by design), so there is no IoU threshold to set",
             ("train", "--data", "d", "--weights", "y.pt"): "--weights: did you mean --tuning?",
             # a walk's --half read 'did you mean --help?'
             ("predict", "a.jpg", "-m", "m.onnx", "--half"): "--half: half precision is a TensorRT engine on a GPU "
             "(dfine export --format engine, fp16 by default); on a CPU: --precision bf16 (OpenVINO, CPUs with "
             "AVX512-BF16 or AMX) or an int8 export",
             # argparse's own error (a required option missing) comes first: the hint is added to it
             ("predict", "a.jpg", "--weights", "best.pt"): "--weights: did you mean --model?",
             ("train", "--data", "d", "epochs=3"): "epochs=3: options take dashes: --epochs 3",
             ("train", "--data", "d", "lr0=0.01"): "lr0=0.01: recipe keys go after -u (-u lr0=0.01)"}
    for argv, hint in cases.items():
        with pytest.raises(SystemExit):
            main(list(argv))
        err = capsys.readouterr().err
        assert f"; {hint} (dfine {argv[0]} --help lists the options)" in err, err


def test_version_is_printed(capsys):
    """dfine --version (the first thing a walk typed) said 'unrecognized arguments'."""
    import dfine
    from dfine.cli import main
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"dfine {dfine.__version__}"
