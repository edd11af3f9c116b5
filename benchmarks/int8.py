"""Int8 against float32 on a trained model and its val set (default: the ``dfine demo`` model):
COCO AP / AP50 of every export (``dfine eval``'s code path) and latency at batch 1, 2 threads,
OpenVINO and ONNX Runtime, each file timed in a process of its own, rounds interleaved.

Bar (issue 17): int8 AP at most 1.0 point under float32, int8 latency at most 0.6x float32 OpenVINO.

    python benchmarks/int8.py [--demo runs/demo] [--calib-size 300] [--rounds 3] [--runs 20]
                              [--max-drop 0.5] [--compare head] [--scope-study]
                              [--latency-imgsz 640] [--isa native AVX2] [--profile]
                              [--scheme head-matmuls] [--save DIR] [--exports DIR]

``--demo DIR`` reads ``DIR/last.pth``, ``DIR/data/val.json`` + ``DIR/data/val/`` (evaluation) and
``DIR/data/train/`` (calibration); ``--model``, ``--val-ann``, ``--val-images``, ``--calib`` point
elsewhere. ``--compare PART ...`` adds an IR per part kept in float32 (e.g. ``head``, the whole DETR head),
``--max-drop`` the accuracy-aware IR, ``--scope-study`` one IR per named part of the head
(``dfine.export.int8.SCOPE_GROUPS``) kept in float with all else int8: what each float part costs
in latency and saves in AP. ``--latency-imgsz 640`` also times the same weights exported at
640x640 (latency only: the model was trained at the demo's size). ``--isa native AVX2`` measures
every file (AP and latency, rounds interleaved) once uncapped and once with OpenVINO's oneDNN
kernels capped at AVX2 (``ONEDNN_MAX_CPU_ISA``: no AVX-512, no VNNI), each in processes of their
own, as on an AVX2-only CPU; each ISA's int8 is compared with its own float32. ``--scheme head-matmuls``
adds the default IR quantized with that scheme (``dfine.export.int8.SCHEMES``). ``--profile``
also prints where each OpenVINO file spends its time: the CPU plugin's per-node performance
counters (``PERF_COUNT``, compiled as ``Detector`` compiles it), the median of each node over
``--runs`` inferences and then over the rounds (files interleaved), summed by model part and by node
type and precision (the kernel's: int8 or float), and the int8 IR's slowest float nodes, at
``--profile-threads`` (1 is steadier on a shared machine); the fastest of each node's runs is what
it takes undisturbed.

``--save DIR`` keeps the exports (and ``rows.json``, what each file is) in ``DIR``; ``--exports DIR``
measures such a folder instead of exporting, so files quantized on one machine (with NNCF and torch's
exporter) are measured on another that has only the OpenVINO runtime, as a deployment target would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import json
import subprocess

from dfine.export.benchmark import NodeTime, cpu_line, isa_env, openvino_profile, profile_table, time_export
from dfine.export.evaluate import evaluate_export, load_eval_set
from dfine.export.int8 import (FLOAT_SCOPES, SCHEMES, SCOPE_GROUPS, calibration_images, quantize_onnx,
                               quantize_openvino, resolve_scopes)
from dfine.checkpoint import load_model
from dfine.export.onnx import export_onnx
from dfine.export.openvino import export_openvino

Row = Tuple[str, Path, str]  # label, file, backend
NATIVE = "native"  # --isa word for no cap


def _exports(args: argparse.Namespace, folder: Path, imgsz: Optional[int], val) -> List[Row]:
    """Float32 and int8 exports of ``args.model`` (at ``imgsz`` when given) in ``folder``."""
    loaded = load_model(args.model, imgsz=(imgsz, imgsz) if imgsz else None)
    onnx = export_onnx(loaded, folder / "float32.onnx")
    calib = calibration_images(args.calib, args.calib_size)
    rows: List[Row] = [("float32", export_openvino(onnx, folder / "float32.xml"), "openvino")]
    for i, (label, scopes) in enumerate(_variants(args)):
        rows.append((label, quantize_openvino(onnx, folder / f"int8_{i}.xml", calib, float_scopes=scopes)[0],
                     "openvino"))
    for scheme in args.scheme or []:
        rows.append((f"int8 (scheme {scheme})", quantize_openvino(onnx, folder / f"int8_{scheme}.xml", calib,
                                                                  scheme=scheme)[0], "openvino"))
    if args.max_drop is not None and val is not None:
        out, info = quantize_openvino(onnx, folder / "int8_acc.xml", calib, max_drop=args.max_drop, val=val)
        rows.append((f"int8 (max drop {args.max_drop:g})", out, "openvino"))
    if not args.no_onnxruntime:
        rows.append(("float32", onnx, "onnxruntime"))
        rows.append(("int8 QDQ (default)", quantize_onnx(onnx, folder / "int8_qdq.onnx", calib)[0], "onnxruntime"))
    return rows


def _save_rows(rows: List[Row], folder: Path) -> None:
    """``folder/rows.json``: each export's label, file name (inside ``folder``) and backend."""
    (folder / "rows.json").write_text(json.dumps([[label, path.name, backend] for label, path, backend in rows]))


def _load_rows(folder: Path, onnxruntime: bool) -> List[Row]:
    """The rows :func:`_save_rows` wrote (without ONNX Runtime's when ``onnxruntime`` is false)."""
    manifest = folder / "rows.json"
    if not manifest.is_file():
        sys.exit(f"error: {manifest} not found; make the folder with `python benchmarks/int8.py --save {folder}`")
    rows = [(label, folder / name, backend) for label, name, backend in json.loads(manifest.read_text())]
    missing = [str(path) for _, path, _ in rows if not path.is_file()]
    if missing:
        sys.exit(f"error: {', '.join(missing)} listed in {manifest} but not there")
    return [r for r in rows if onnxruntime or r[2] != "onnxruntime"]


def _variants(args: argparse.Namespace) -> List[Tuple[str, Tuple[str, ...]]]:
    """(label, float scopes) of each int8 OpenVINO IR: the default, then one per ``--compare`` part
    (with ``--scope-study``: every named part, :data:`SCOPE_GROUPS`) kept in float32, all else int8."""
    parts = list(args.compare or [])
    if args.scope_study:
        parts += [name for name in SCOPE_GROUPS if name != "postprocessor" and name not in parts]
    return [("int8 (default)", FLOAT_SCOPES)] + [(f"int8, {part} float", resolve_scopes([part])) for part in parts]


def _key(label: str, backend: str, isa: str) -> str:
    return f"{label}|{backend}|{isa}"


def _isa(word: str) -> str:
    """``ONEDNN_MAX_CPU_ISA`` value for an ``--isa`` word (``native``: no cap)."""
    return "" if word == NATIVE else word


def _latencies(rows: List[Row], args: argparse.Namespace) -> Dict[str, Dict[str, List[float]]]:
    """Per row and ISA: median wall ms and CPU ms per call of each round (rounds interleave them)."""
    out: Dict[str, Dict[str, List[float]]] = {_key(r[0], r[2], i): {"wall": [], "cpu": [], "load": []}
                                              for r in rows for i in args.isa}
    for _ in range(args.rounds):
        for label, path, backend in rows:
            for isa in args.isa:
                t = time_export(str(path), backend, threads=args.threads, runs=args.runs,
                                isa=None if isa == "inherit" else _isa(isa))
                key = _key(label, backend, isa)
                out[key]["wall"].append(t["median_ms"])
                out[key]["cpu"].append(t["cpu_ms"])
                out[key]["load"].append(os.getloadavg()[0])
    return out


def _ap(path: Path, backend: str, val, args: argparse.Namespace, isa: str) -> Tuple[float, float]:
    """AP and AP50 (percent) of an export on the val set; under an ISA cap in a process of its own."""
    if isa == "inherit":
        m = evaluate_export(path, val, backend=backend, threads=args.threads)
        return 100 * m.stats[0], 100 * m.stats[1]
    code = ("import json, sys; from dfine.export.evaluate import evaluate_export, load_eval_set; "
            "a = json.loads(sys.argv[1]); m = evaluate_export(a[0], load_eval_set(a[1], a[2]), backend=a[3], "
            "threads=a[4]); print(json.dumps([100 * m.stats[0], 100 * m.stats[1]]))")
    arg = json.dumps([str(path), args.val_ann, args.val_images, backend, args.threads])
    out = subprocess.run([sys.executable, "-c", code, arg], check=True, capture_output=True, text=True,
                         env=isa_env(_isa(isa)))
    ap, ap50 = json.loads(out.stdout.strip().splitlines()[-1])
    return ap, ap50


def _table(rows: List[Row], times, aps: Dict[str, Tuple[float, float]], title: str, isas: List[str]) -> List[str]:
    lines = [title, "| runtime | model | ISA | AP | AP50 | best ms | typical ms | x float32 OpenVINO (wall / CPU) | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for isa in isas:
        base = min(times[_key("float32", "openvino", isa)]["wall"])
        base_cpu = min(times[_key("float32", "openvino", isa)]["cpu"])
        for label, _, backend in rows:
            key = _key(label, backend, isa)
            t = times[key]
            ap, ap50 = aps.get(key, (float("nan"), float("nan")))
            lines.append(f"| {backend} | {label} | {isa} | {ap:.1f} | {ap50:.1f} | {min(t['wall']):.1f} | "
                         f"{statistics.median(t['wall']):.1f} | {min(t['wall']) / base:.2f} / "
                         f"{min(t['cpu']) / base_cpu:.2f} | {statistics.median(t['load']):.1f} |")
    return lines


def _verdict(rows: List[Row], times, aps, isas: List[str]) -> List[str]:
    out = []
    for isa in isas:
        f32 = aps[_key("float32", "openvino", isa)][0]
        base = min(times[_key("float32", "openvino", isa)]["wall"])
        for label, _, backend in rows:
            if label.startswith("int8"):
                key = _key(label, backend, isa)
                drop, ratio = f32 - aps[key][0] if key in aps else float("nan"), min(times[key]["wall"]) / base
                ok = drop <= 1.0 and ratio <= 0.6
                out.append(f"{backend} {label} ({isa}): AP drop {drop:.2f} (bar 1.0), latency {ratio:.2f}x float32 "
                           f"OpenVINO (bar 0.6): {'meets the bar' if ok else 'misses the bar'}")
    return out


def _profiles(rows: List[Row], args: argparse.Namespace) -> Dict[str, List[NodeTime]]:
    """Per OpenVINO row: its nodes, each node's time the median of its per-round medians (and the
    fastest of its runs), nodes matched over rounds by their place in the execution order."""
    rounds: Dict[str, List[List[NodeTime]]] = {label: [] for label, _, backend in rows if backend == "openvino"}
    for _ in range(args.rounds):
        for label, path, backend in rows:
            if backend == "openvino":
                rounds[label].append(openvino_profile(str(path), threads=args.profile_threads, runs=args.runs))
    out = {}
    for label, runs in rounds.items():
        by_node: Dict[Tuple[int, str, str], List[NodeTime]] = {}
        for nodes in runs:
            for n in nodes:
                by_node.setdefault((n.index, n.type, n.exec_type), []).append(n)
        merged = [NodeTime(same[0].name, same[0].type, same[0].exec_type, same[0].part,
                           statistics.median(n.ms for n in same), min(n.min_ms for n in same), same[0].index)
                  for same in by_node.values()]
        out[label] = sorted(merged, key=lambda n: -n.ms)
    return out


def _profile_lines(profiles: Dict[str, List[NodeTime]], args: argparse.Namespace) -> List[str]:
    title = (f"OpenVINO per-node profile (PERF_COUNT; {args.profile_threads} threads, {args.runs} runs x "
             f"{args.rounds} rounds; ms summed over nodes, so not the wall time)")
    lines = [title, "", "per node the fastest run (what it takes undisturbed: steady under load)", ""]
    lines += profile_table(profiles, lambda n: n.part, "model part", stat="min_ms") + [""]
    lines += ["per node the median run", ""] + profile_table(profiles, lambda n: n.part, "model part") + [""]
    lines += profile_table(profiles, lambda n: f"{n.type} ({'int8' if n.int8 else 'float'})", "node type (kernel)",
                           limit=25, stat="min_ms")
    for label, nodes in profiles.items():
        if label.startswith("int8"):
            slow = sorted((n for n in nodes if not n.int8), key=lambda n: -n.min_ms)[:12]
            lines += ["", f"{label}: slowest float nodes ({sum(n.min_ms for n in nodes if not n.int8):.2f} ms of "
                          f"{sum(n.min_ms for n in nodes):.2f} on float kernels, fastest runs)"]
            lines += [f"  {n.min_ms:.3f} ms {n.type} {n.exec_type} {n.part} {n.name}" for n in slow]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", type=Path, default=Path("runs/demo"), help="dfine demo output folder")
    p.add_argument("--model", help="checkpoint (default DEMO/last.pth)")
    p.add_argument("--val-ann", help="COCO JSON of the val set (default DEMO/data/val.json)")
    p.add_argument("--val-images", help="its images (default DEMO/data/val)")
    p.add_argument("--calib", help="calibration images (default DEMO/data/train)")
    p.add_argument("--calib-size", type=int, default=300)
    p.add_argument("--max-drop", type=float, default=None, help="also the accuracy-aware IR (AP points)")
    p.add_argument("--compare", nargs="+", metavar="PART",
                   help="also an IR with this part kept in float32 (dfine export --keep-float's words, e.g. head)")
    p.add_argument("--scope-study", action="store_true",
                   help="also IRs with everything int8 but one named part of the head (what each float part costs)")
    p.add_argument("--no-onnxruntime", action="store_true", help="OpenVINO only")
    p.add_argument("--latency-imgsz", type=int, default=None, help="also time the same weights at this size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20, help="timed runs per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scheme", nargs="+", choices=SCHEMES,
                   help="also the default int8 IR quantized with this NNCF scheme (dfine.export.int8.SCHEMES)")
    p.add_argument("--profile", action="store_true",
                   help="also OpenVINO's per-node profile of each file: time by model part, node type, int8 or float")
    p.add_argument("--profile-threads", type=int, default=None, help="threads for --profile (default --threads)")
    p.add_argument("--save", type=Path, help="keep the exports (and rows.json) in this folder")
    p.add_argument("--exports", type=Path, help="measure the exports a --save run kept here instead of exporting")
    p.add_argument("--isa", nargs="+", metavar="ISA",
                   help="measure each file under these oneDNN ISA caps (native: none; e.g. AVX2), interleaved; "
                        "default: as this process runs")
    a = p.parse_args()
    a.isa = a.isa or ["inherit"]
    a.profile_threads = a.profile_threads or a.threads
    a.model = a.model or str(a.demo / "last.pth")
    a.val_ann = a.val_ann or str(a.demo / "data" / "val.json")
    a.val_images = a.val_images or str(a.demo / "data" / "val")
    a.calib = a.calib or str(a.demo / "data" / "train")
    if a.exports is None and not Path(a.model).is_file():
        sys.exit(f"error: {a.model} not found; run `dfine demo` first or give --model")
    print(f"{cpu_line()} at start (a shared machine: compare ratios, not ms)")
    kept = _load_rows(a.exports, not a.no_onnxruntime) if a.exports is not None else None
    val = load_eval_set(a.val_ann, a.val_images)
    with tempfile.TemporaryDirectory() as tmp:
        if kept is not None:
            rows = kept
        else:
            folder = a.save or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            rows = _exports(a, folder, None, val)
            _save_rows(rows, folder)
        aps = {_key(label, backend, isa): _ap(path, backend, val, a, isa)
               for label, path, backend in rows for isa in a.isa}
        times = _latencies(rows, a)
        lines = _table(rows, times, aps, f"{a.exports or a.model} on {a.val_ann} ({len(val.images)} images), batch 1, "
                                         f"{a.threads} threads, {a.calib_size} calibration images", a.isa)
        print("\n".join(lines + _verdict(rows, times, aps, a.isa)))
        if a.profile:
            print("\n".join(_profile_lines(_profiles(rows, a), a)))
        if a.latency_imgsz and a.exports is None:
            big = Path(tmp) / "big"
            big.mkdir()
            rows = _exports(a, big, a.latency_imgsz, None)
            times = _latencies(rows, a)
            print("\n".join(_table(rows, times, {}, f"the same weights at {a.latency_imgsz}x{a.latency_imgsz} "
                                                    f"(latency only)", a.isa)))
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
