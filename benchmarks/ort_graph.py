"""ONNX Runtime's optimized graphs of our export and of the published export of the same weights,
compared node by node, with their per-node profiles summed per op type.

For dfine N and S (random weights, seed 0, exported as ``cpu_latency.py`` does, the published one
by a local checkout of the published code given with ``--ref``), each file is loaded by ONNX Runtime
at ``ORT_ENABLE_ALL``, CPU provider, ``--threads`` threads (as ``Detector`` and ``cpu_latency.py``
load it); the optimized graph it runs is saved (``optimized_model_filepath``) and profiled
(``enable_profiling``), each file in a process of its own, rounds interleaved. Printed:

- every op type whose count differs between the two optimized graphs;
- the heavy nodes (convolutions, NCHWc reorders and pools, matrix products): op, attributes and
  weights must be the same multiset in both graphs, whatever their names;
- the nodes of each graph with no twin in the other (same op, attributes, small constants and the
  tensor shapes it ran on), with the time they took: the whole cost of the graphs' differences;
- per op type, the summed per-node time (fastest run of each node, best round), beside the wall time.

``--emulate CPU`` runs the ONNX Runtime processes under ``qemu-x86_64 -cpu CPU`` (Debian package
``qemu-user``): e.g. ``Haswell`` has AVX2 and no AVX-512, so ONNX Runtime, which picks its kernels
from CPUID, optimizes and runs the graphs as on an AVX2-only CPU. The graph it saves is exact; its
timings are emulated (hundreds of times slower, not proportional to real cost): compare only the
two graphs' ratio, as a weak signal.

    python benchmarks/ort_graph.py --ref DIR [--sizes n s] [--runs 10] [--rounds 3] [--threads 2]
                                   [--emulate Haswell] [--keep DIR]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Counter, Dict, List, Sequence, Tuple

import numpy as np

# ops whose kernels do the arithmetic (ONNX Runtime's MLAS kernels, chosen by CPUID)
HEAVY = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "ReorderInput", "ReorderOutput", "Upsample",
         "Gemm", "MatMul", "FusedMatMul", "FusedConv"}


def _child(path: str, optimized: str, threads: int, runs: int) -> Dict:
    """In a process of its own: optimize ``path`` (saved to ``optimized``), run it ``runs`` times
    with profiling; per node its op, the shapes it ran on and its fastest time (us), and the
    median wall time (ms)."""
    import time
    from dfine.export.benchmark import ort_optimized_session
    session = ort_optimized_session(path, optimized, threads, profile_prefix=str(Path(optimized).with_suffix("")))
    feed = {"images": np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32),
            "orig_target_sizes": np.array([[640, 480]], dtype=np.int64)}
    session.run(None, feed)  # warm-up, left out below
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        walls.append((time.perf_counter() - start) * 1e3)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    times: Dict[str, List[float]] = collections.defaultdict(list)
    info: Dict[str, Tuple[str, str]] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name, args = e["name"][: -len("_kernel_time")], e["args"]
            times[name].append(e["dur"])
            info[name] = (args["op_name"], json.dumps([args.get("input_type_shape"), args.get("output_type_shape")]))
    # the fastest of the runs: the least disturbed by other jobs on a shared machine
    nodes = {n: [info[n][0], info[n][1], min(t[1:] or t)] for n, t in times.items()}
    try:  # the vector extensions ONNX Runtime sees here (CPUID, emulated or not)
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__ as feats
    isa = [f for f in ("AVX2", "FMA3", "AVX512F", "AVX512_SKX", "AVX512VNNI") if feats.get(f)]
    return {"nodes": nodes, "wall_ms": statistics.median(walls), "isa": isa}


def _run_child(path: Path, optimized: Path, threads: int, runs: int, emulate: str | None) -> Dict:
    prefix = ["qemu-x86_64", "-cpu", emulate] if emulate else []
    cmd = prefix + [sys.executable, __file__, "--child", json.dumps([str(path), str(optimized), threads, runs])]
    out = subprocess.run(["nice"] + cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _attrs(node) -> str:
    from onnx import helper, numpy_helper, TensorProto
    items = []
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, TensorProto):
            v = numpy_helper.to_array(v).tolist()
        items.append(f"{a.name}={v!r}")
    return ",".join(sorted(items))


def node_keys(model) -> Dict[str, Tuple[str, str]]:
    """Per node name: (its op, attributes and small constant inputs; a hash of its large constant
    inputs), the same for two nodes that compute the same thing from the same weights."""
    from onnx import numpy_helper
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    keys = {}
    for node in model.graph.node:
        consts, weights = [], hashlib.sha1()
        for name in node.input:
            if name in init:
                arr = init[name]
                consts.append(f"{list(arr.shape)}{arr.tolist() if arr.size <= 8 else ''}")
                if arr.size > 8:
                    weights.update(np.ascontiguousarray(arr).round(4).tobytes())  # float rounding apart
            else:
                consts.append("x" if name else "-")
        keys[node.name] = (f"{node.domain or 'ai.onnx'}::{node.op_type}[{_attrs(node)}]({','.join(consts)})",
                           weights.hexdigest()[:12])
    return keys


def _split_twins(keys: Dict, nodes: Dict, other_keys: Dict, other_nodes: Dict) -> Tuple[int, Dict[str, float], float]:
    """(number of nodes without a twin in the other graph, their time (us) per op, the time of the
    nodes with a twin); a twin: same op, attributes, small constants and run-time shapes."""
    sig = {n: (keys[n][0], v[1]) for n, v in nodes.items() if n in keys}
    extra = Counter(sig.values()) - Counter((other_keys[n][0], v[1]) for n, v in other_nodes.items() if n in other_keys)
    count = sum(extra.values())
    alone: Dict[str, float] = collections.defaultdict(float)
    twins = 0.0
    for n, s in sig.items():
        if extra.get(s, 0) > 0:
            extra[s] -= 1
            alone[s[0].split("[")[0]] += nodes[n][2]
        else:
            twins += nodes[n][2]
    return count, alone, twins


def _compare(size: str, files: Dict[str, Path], runs: Dict[str, List[Dict]]) -> None:
    import onnx
    from dfine.export.benchmark import op_counts
    models = {who: onnx.load(str(f)) for who, f in files.items()}
    hist = {who: op_counts(m) for who, m in models.items()}
    keys = {who: node_keys(m) for who, m in models.items()}
    best = {who: min(r, key=lambda x: x["wall_ms"]) for who, r in runs.items()}
    print(f"\n== dfine_{size}: optimized graph nodes ours {sum(hist['ours'].values())}, "
          f"published {sum(hist['published'].values())}; ONNX Runtime saw {', '.join(best['ours']['isa'])}")
    diff = [k for k in sorted(set(hist["ours"]) | set(hist["published"])) if hist["ours"][k] != hist["published"][k]]
    print("op types whose counts differ (ours / published): " +
          (", ".join(f"{k} {hist['ours'][k]}/{hist['published'][k]}" for k in diff) or "none"))
    heavy = {who: Counter(v for n, v in keys[who].items() if v[0].split("::")[1].split("[")[0] in HEAVY)
             for who in keys}
    print(f"heavy nodes (op, attributes, weights): {sum((heavy['ours'] & heavy['published']).values())} the same; "
          f"only ours {sum((heavy['ours'] - heavy['published']).values())}, "
          f"only published {sum((heavy['published'] - heavy['ours']).values())}")
    for who, other in (("ours", "published"), ("published", "ours")):
        for (k, _), c in sorted((heavy[who] - heavy[other]).items()):
            print(f"  only {who}: {c} x {k[:160]}")
    # nodes without a twin: op + attributes + small constants + the shapes they ran on. The time
    # of the nodes with a twin is the control: the same work in both, so its ratio is the noise.
    for who, other in (("ours", "published"), ("published", "ours")):
        rounds = [_split_twins(keys[who], r["nodes"], keys[other], o["nodes"]) for r, o in zip(runs[who], runs[other])]
        alone = min(rounds, key=lambda x: sum(x[1].values()))
        print(f"{who}: {alone[0]} nodes without a twin took {sum(alone[1].values()) / 1e3:.2f} ms (best round; "
              f"per round {' '.join(f'{sum(x[1].values()) / 1e3:.2f}' for x in rounds)}), nodes with a twin "
              f"{min(x[2] for x in rounds) / 1e3:.1f} ms: " +
              ", ".join(f"{k.split('::')[1]} {v / 1e3:.2f}" for k, v in sorted(alone[1].items(), key=lambda kv: -kv[1])))
    per = {who: [collections.defaultdict(float) for _ in r] for who, r in runs.items()}
    for who, rs in runs.items():
        for i, r in enumerate(rs):
            for op, _, us in r["nodes"].values():
                per[who][i][op] += us
    ops = sorted(set().union(*[set(d) for d in per["ours"] + per["published"]]),
                 key=lambda op: -min(d[op] for d in per["published"]))
    print(f"{'op type (sum of fastest node times, best round)':44}{'ours ms':>9}{'published':>10}{'ratio':>7}")
    for op in ops:
        a, b = (min(d.get(op, 0.0) for d in per[w]) / 1e3 for w in ("ours", "published"))
        if max(a, b) >= 0.05:
            print(f"  {op:42}{a:9.2f}{b:10.2f}{a / b if b else float('inf'):7.2f}")
    walls = {w: [r["wall_ms"] for r in rs] for w, rs in runs.items()}
    ratios = [a / b for a, b in zip(walls["ours"], walls["published"])]
    print(f"wall ms per round, ours {' '.join(f'{x:.1f}' for x in walls['ours'])}; published "
          f"{' '.join(f'{x:.1f}' for x in walls['published'])}; ratio per round "
          f"{' '.join(f'{x:.2f}' for x in ratios)}; best/best {min(walls['ours']) / min(walls['published']):.2f}")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", type=Path, required=True, help="local checkout of the published D-FINE (never committed)")
    p.add_argument("--sizes", nargs="+", default=["n", "s"], choices=("n", "s"))
    p.add_argument("--runs", type=int, default=10, help="profiled runs per process")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each running both files in fresh processes")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--emulate", metavar="CPU", help="run ONNX Runtime under qemu-x86_64 -cpu CPU (e.g. Haswell: AVX2)")
    p.add_argument("--keep", type=Path, help="folder to keep the exports and optimized graphs in")
    p.add_argument("--reuse", action="store_true", help="take the exports already in --keep (from an earlier run)")
    a = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cpu_latency import _export_ref, _model
    from dfine.export.benchmark import cpu_line
    from dfine.export.onnx import export_onnx
    print(f"{cpu_line()} at start" + (f"; ONNX Runtime under qemu-x86_64 -cpu {a.emulate} (emulated timings)"
                                      if a.emulate else ""))
    with tempfile.TemporaryDirectory() as tmp:
        folder = a.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for size in a.sizes:
            src = {"ours": folder / f"ours_{size}.onnx", "published": folder / f"published_{size}.onnx"}
            if not (a.reuse and all(f.exists() for f in src.values())):
                loaded, state = _model(size)
                src = {"ours": export_onnx(loaded, src["ours"]), "published": _export_ref(a.ref, size, state, folder)}
            tag = a.emulate or "native"
            opt = {w: folder / f"{w}_{size}.{tag}.optimized.onnx" for w in src}
            runs: Dict[str, List[Dict]] = {w: [] for w in src}
            for _ in range(a.rounds):
                for w in src:
                    runs[w].append(_run_child(src[w], opt[w], a.threads, a.runs, a.emulate))
            _compare(size, opt, runs)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(_child(*json.loads(sys.argv[2]))))
    else:
        main()
