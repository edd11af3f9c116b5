"""Instructions ONNX Runtime (or OpenVINO) executes for one inference of our export and of the published export
of the same weights, on AVX2 kernels, counted exactly by valgrind's callgrind.

Valgrind's virtual CPU reports AVX2 and FMA and no AVX-512 (valgrind does not implement AVX-512,
so an AVX-512 instruction would stop the run), so ONNX Runtime's MLAS picks and runs the kernels it
runs on an AVX2-only CPU (NCHWc blocks of 8, FMA3 GEMM and convolution kernels). Callgrind counts
the instructions executed, the same from run to run whatever the machine's load: a proxy for the
work done, not a timing (memory stalls are not counted; the run is ~200x slower than native).

For dfine N and S (random weights, seed 0, exported as ``cpu_latency.py`` and ``ort_graph.py`` do,
the published one by a local checkout of the published code given with ``--ref``), each file is
loaded by ONNX Runtime (``ORT_ENABLE_ALL``, CPU provider, 1 thread, sequential, no spinning) in a
process of its own under callgrind and run twice, each run counted apart between callgrind client
requests (a tiny C helper compiled here with gcc against valgrind's ``callgrind.h``): the first
(warm-up) run only as a total, the second compared (``--no-warmup``: one run, compared; half the
time; N's first run counted 0.2% more than its second). Printed: total instructions ours /
published; per ONNX Runtime kernel (the ``Compute`` each node runs, named from the C++ vtables of
ONNX Runtime's stripped library; callgrind keeps 12 callers of each function) the instructions
inside it, everything it calls included; per function and kernel (addresses in that library, with
the widest vector registers in the function's code: ``ymm FMA`` for MLAS's AVX2 kernels) the
largest differences.

``--runtime openvino`` counts OpenVINO instead (each file compiled as ``Detector`` compiles it:
batch 1, latency hint, float32, here 1 thread). Valgrind's CPUID is what OpenVINO asks too, so it runs
the kernels of an AVX2-only CPU throughout: oneDNN's and its own JIT kernels alike, where
``ONEDNN_MAX_CPU_ISA=AVX2`` caps only oneDNN's (its own, such as ReduceSum, TopK and MVN, stay on
AVX-512). Its kernels are generated at run time and have no names, so the table is per object file
(``???``: generated code). Compiling N under valgrind takes ~10 minutes; the inference is counted alone.

``--runtime torch`` counts one eager PyTorch forward pass instead, of the models
``benchmarks/latency.py`` times (random weights; ``--form`` eval or deploy), 1 thread. Valgrind's
CPUID is what PyTorch asks as well: its ATen kernels run at AVX2, oneDNN generates its AVX2
kernels, and MKL, which on this AMD CPU ignores ``ONEDNN_MAX_CPU_ISA``-style caps, runs its
``mkl_blas_avx2`` kernels: the counted run is the work of an AVX2-only CPU, where the capped timings
of ``latency.py`` are an approximation. The table is per kind of code (oneDNN's generated kernels,
MKL, ATen, the rest) and per function. N takes ~7 min a model, S ~25.

Needs valgrind, gcc and valgrind's headers (Debian: ``apt-get install valgrind gcc``). One N
inference takes 4-5 min under callgrind (~1.1 G instructions), S about 3.5x that.

    python benchmarks/ort_callgrind.py --ref DIR [--sizes n s] [--weights CKPT] [--keep DIR] [--reuse]
                                       [--no-warmup] [--top 12] [--runtime openvino|torch] [--form deploy]
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Counter, Dict, Optional, Sequence, Tuple

import numpy as np

_HELPER_C = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; CALLGRIND_TOGGLE_COLLECT; }
void cg_stop(void) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS; CALLGRIND_STOP_INSTRUMENTATION; }
int cg_on_valgrind(void) { return (int)RUNNING_ON_VALGRIND; }
"""


def _fail(msg: str) -> None:
    sys.exit(f"ort_callgrind: {msg}")


def _helper(folder: Path) -> Path:
    """The client-request helper library, compiled into ``folder``."""
    for tool in ("valgrind", "callgrind_annotate", "gcc"):
        if shutil.which(tool) is None:
            _fail(f"{tool} not found: apt-get install valgrind gcc")
    src, lib = folder / "cgreq.c", folder / "cgreq.so"
    src.write_text(_HELPER_C)
    out = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], capture_output=True, text=True)
    if out.returncode:
        _fail(f"could not compile the callgrind helper ({out.stderr.strip().splitlines()[-1]}); "
              "valgrind's headers (valgrind/callgrind.h) come with Debian's valgrind package")
    return lib


def _ort_run(path: str):
    """One-image ONNX Runtime inference of ``path``: 1 thread, sequential, no spinning, all graph
    optimizations (as ``Detector`` loads it, at one thread)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(None, feed)


def _openvino_run(path: str):
    """One-image OpenVINO inference of ``path`` compiled as ``Detector`` compiles it (batch fixed to
    1, latency hint, float32), at 1 thread."""
    import openvino as ov
    core = ov.Core()
    net = core.read_model(path)
    if net.input("images").get_partial_shape()[0].is_dynamic:
        net.reshape({"images": [1, 3, 640, 640], "orig_target_sizes": [1, 2]})
    compiled = core.compile_model(net, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                               "INFERENCE_NUM_THREADS": 1})
    request = compiled.create_infer_request()
    return lambda feed: request.infer(feed)


def _torch_run(spec: str):
    """One eager PyTorch forward pass, 1 thread, of the model that ``spec`` builds: a JSON list
    ``[python file, function, arguments]`` (the model is ``function(*arguments)`` of that file)."""
    import importlib.util
    import torch
    file, function, arguments = json.loads(spec)
    module_spec = importlib.util.spec_from_file_location(Path(file).stem, file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    torch.set_num_threads(1)
    model = getattr(module, function)(*arguments)

    def run(feed):
        with torch.inference_mode():
            return model(torch.from_numpy(feed["images"]))
    return run


RUNTIMES = {"onnxruntime": _ort_run, "openvino": _openvino_run, "torch": _torch_run}


def eager_spec(who: str, size: str, form: str, ref: Optional[Path]) -> str:
    """The ``--runtime torch`` spec of ``benchmarks/latency.py``'s model ``who`` (ours or published)."""
    latency = Path(__file__).resolve().parent / "latency.py"
    return json.dumps([str(latency), "benchmark_model", [who, size, form, None if ref is None else str(ref)]])


def _child(path: str, helper: str, warmup: bool, runtime: str = "onnxruntime") -> Dict:
    """Under callgrind: load ``path`` in ``runtime``, run it (once uncounted when ``warmup``), then
    once counted; the vector extensions the runtime's CPUID check sees here (numpy's, the same
    instruction)."""
    cg = ctypes.CDLL(helper)
    run = RUNTIMES[runtime](path)
    feed = {"images": np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32),
            "orig_target_sizes": np.array([[640, 480]], dtype=np.int64)}
    for _ in range(2 if warmup else 1):  # one profile dumped per run: the last is the counted one
        cg.cg_start()
        run(feed)
        cg.cg_stop()
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__ as feats
    isa = [f for f in ("AVX2", "FMA3", "AVX512F", "AVX512_SKX") if feats.get(f)]
    info = {"isa": isa, "valgrind": cg.cg_on_valgrind()}
    if runtime == "torch":
        import torch
        info["torch_kernels"] = torch.backends.cpu.get_cpu_capability()
    return info


def _count(path: Path, helper: Path, out: Path, warmup: bool, runtime: str = "onnxruntime") -> Tuple[Path, Dict]:
    """Run :func:`_child` on ``path`` under callgrind; (its profile of the counted run, its report)."""
    pattern = out.with_suffix(".%p")
    cmd = ["nice", "-n", "19", "valgrind", "--tool=callgrind", "--separate-callers=12", "--collect-atstart=no",
           "--instr-atstart=no", f"--callgrind-out-file={pattern}", sys.executable, __file__, "--child",
           json.dumps([str(path), str(helper), warmup, runtime])]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if res.returncode:
        _fail(f"valgrind run of {path} failed:\n{res.stderr[-2000:]}")
    dumps = sorted(out.parent.glob(out.with_suffix("").name + ".*.[12]"))
    if len(dumps) != (2 if warmup else 1):
        _fail(f"expected {2 if warmup else 1} callgrind dumps for {path}, found {len(dumps)}")
    info = json.loads(res.stdout.strip().splitlines()[-1])
    info["first"] = sum(parse_callgrind(dumps[0]).values())
    return dumps[-1], info


def parse_callgrind(path: Path, per: str = "fn") -> Dict[str, int]:
    """Own instructions from a callgrind profile with one event (Ir): ``per="fn"`` per function
    context (``f'caller'caller's caller...``, as ``--separate-callers`` names them), ``per="ob"`` per
    object file (its file name; ``???`` for code generated at run time, such as OpenVINO's kernels)."""
    names: Dict[str, Dict[str, str]] = {"fn": {}, "ob": {}}
    own: Dict[str, int] = collections.defaultdict(int)
    current, in_call = {"fn": "", "ob": "???"}, False
    with open(path) as f:
        for line in f:
            named = re.match(r"(c?)(fn|ob)=(.*)", line)  # the called one (cfn, cob) or the current one
            if named:
                called, kind, spec = named.group(1), named.group(2), named.group(3).strip()
                m = re.match(r"\((\d+)\)(?: (.*))?", spec)  # "(id) name" defines an id, "(id)" refers to one
                if m and m.group(2) is not None:
                    names[kind][m.group(1)] = m.group(2)
                if not called:
                    current[kind] = names[kind][m.group(1)] if m else spec
            elif line.startswith("calls="):
                in_call = True  # the next cost line is the call's (callees included): not own
            elif line[:1] in "0123456789+-*":
                if in_call:
                    in_call = False
                else:
                    own[current["fn"] if per == "fn" else Path(current["ob"]).name] += int(line.split()[-1])
    return dict(own)


def _compare_objects(size: str, profiles: Dict[str, Path], top: int) -> float:
    """Print the totals and the instructions per object file (OpenVINO: its CPU plugin, oneDNN's
    and its own JIT code as ``???``); return ours/published."""
    parsed = {who: parse_callgrind(path, per="ob") for who, path in profiles.items()}
    total = {who: sum(c.values()) for who, c in parsed.items()}
    ratio = total["ours"] / total["published"]
    print(f"\n== dfine_{size}: instructions per inference, ours {total['ours'] / 1e6:,.1f} M, published "
          f"{total['published'] / 1e6:,.1f} M: ours/published {ratio:.3f}")
    print(f"  {'per object file (own instructions; ??? = code generated at run time), M':64}"
          f"{'ours':>9}{'published':>11}{'ours-pub':>10}")
    rows = sorted(set(parsed["ours"]) | set(parsed["published"]),
                  key=lambda k: -abs(parsed["ours"].get(k, 0) - parsed["published"].get(k, 0)))
    for k in rows[:top]:
        a, b = parsed["ours"].get(k, 0) / 1e6, parsed["published"].get(k, 0) / 1e6
        print(f"  {k[:64]:64}{a:9.2f}{b:11.2f}{a - b:+10.2f}")
    return ratio


def eager_group(function: str) -> str:
    """Where an eager PyTorch function's instructions belong: code generated at run time (oneDNN's
    JIT kernels: convolutions, and linear layers where oneDNN runs them), MKL (matrix products),
    oneDNN's compiled code, ATen's kernels (element-wise, copies, attention, SLEEF maths), or the
    rest (Python, the allocator, dispatch)."""
    if function.startswith("0x") or function.startswith("???"):
        return "generated at run time (oneDNN JIT kernels)"
    if function.startswith("mkl_"):
        return "MKL (matrix products)"
    if "dnnl::" in function or function.startswith("dnnl_"):
        return "oneDNN (compiled)"
    if "at::native" in function or function.startswith("Sleef_") or "at::vec" in function:
        return "ATen kernels (element-wise, copies, attention, SLEEF)"
    return "other (Python, allocator, dispatch)"


def _compare_eager(size: str, profiles: Dict[str, Path], top: int) -> float:
    """Print the totals, the instructions per :func:`eager_group` and the functions that differ
    most (names without their arguments); return ours/published."""
    parsed = {}
    for who, path in profiles.items():
        parsed[who] = collections.Counter()
        for function, n in parse_callgrind(path).items():
            parsed[who][function.split("'")[0]] += n
    total = {who: sum(c.values()) for who, c in parsed.items()}
    ratio = total["ours"] / total["published"]
    print(f"\n== dfine_{size}: instructions per forward pass, ours {total['ours'] / 1e6:,.1f} M, published "
          f"{total['published'] / 1e6:,.1f} M: ours/published {ratio:.3f}")
    print(f"  {'M instructions':64}{'ours':>9}{'published':>11}{'ours-pub':>10}")
    difference_table(parsed, "per kind of code", eager_group, str, top)
    difference_table(parsed, "per function (own instructions)",
                     lambda f: "generated at run time" if f.startswith("0x")
                     else re.sub(r"\(.*", "", f.replace("(anonymous namespace)::", "")),
                     lambda k: k[-64:], top)
    return ratio


def difference_table(cost: Dict[str, Counter], title: str, key, label, top: int) -> None:
    """Print ``cost`` (per ``ours`` / ``published``: instructions per item) summed by ``key(item)``,
    in millions, the ``top`` largest differences first, each row named ``label(key)``."""
    sums = {who: collections.Counter() for who in cost}
    for who, c in cost.items():
        for k, n in c.items():
            sums[who][key(k)] += n
    rows = sorted(set(sums["ours"]) | set(sums["published"]),
                  key=lambda k: -abs(sums["ours"][k] - sums["published"][k]))
    print(f"{title}, M instructions, largest differences first:")
    for k in rows[:top]:
        a, b = sums["ours"][k] / 1e6, sums["published"][k] / 1e6
        print(f"  {label(k)[:64]:64}{a:9.2f}{b:11.2f}{a - b:+10.2f}")


def vtable_functions(library: Path) -> Dict[int, Tuple[str, int]]:
    """Per function address in a stripped C++ shared library: (its class's mangled name, its
    slot in the vtable), read from the vtables (``R_X86_64_RELATIVE`` relocations: ``[0][typeinfo]
    [virtual functions...]``) and the typeinfo objects' name strings."""
    data = library.read_bytes()
    phoff, = struct.unpack_from("<Q", data, 0x20)
    shoff, = struct.unpack_from("<Q", data, 0x28)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    loads = []
    for i in range(phnum):
        kind, _, offset, vaddr, _, filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if kind == 1:  # PT_LOAD
            loads.append((vaddr, offset, filesz))

    def at(vaddr: int) -> Optional[int]:
        return next((o + vaddr - v for v, o, n in loads if v <= vaddr < v + n), None)

    rel: Dict[int, int] = {}
    for i in range(shnum):
        _, kind, _, _, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        if kind == 4:  # SHT_RELA
            for r in range(offset, offset + size, 24):
                where, info, addend = struct.unpack_from("<QQq", data, r)
                if info & 0xFFFFFFFF == 8:  # R_X86_64_RELATIVE
                    rel[where] = addend

    def typename(typeinfo: int) -> Optional[str]:
        o = at(rel[typeinfo + 8]) if typeinfo + 8 in rel else None
        if o is None:
            return None
        raw = data[o:data.find(b"\0", o, o + 400)]
        return raw.decode() if re.fullmatch(rb"N?\d+[A-Za-z_][\w]*", raw) else None

    types = {t: typename(t) for t in set(rel.values())}
    funcs: Dict[int, Tuple[str, int]] = {}
    for slot, typeinfo in rel.items():
        cls, top = types.get(typeinfo), at(slot - 8)
        if not cls or top is None or struct.unpack_from("<q", data, top)[0] != 0:
            continue
        i = 1
        while slot + 8 * i in rel and not types.get(rel[slot + 8 * i]):
            funcs.setdefault(rel[slot + 8 * i], (cls, i - 1))
            i += 1
    return funcs


def _demangle(names: Sequence[str]) -> Dict[str, str]:
    try:
        out = subprocess.run(["c++filt", "-t"], input="\n".join(names), capture_output=True, text=True).stdout
    except OSError:
        return {n: n for n in names}
    return dict(zip(names, out.splitlines()))


def _address(fn: str) -> Optional[int]:
    m = re.match(r"0x([0-9a-f]+)", fn)
    return int(m.group(1), 16) if m else None


def _isa_tag(library: Path, address: int) -> str:
    """'zmm', 'ymm' or 'xmm': the widest vector registers in the first 2 KB of code at ``address``."""
    if shutil.which("objdump") is None:
        return ""
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={address:#x}",
                           f"--stop-address={address + 2048:#x}", str(library)], capture_output=True, text=True).stdout
    counts = collections.Counter(re.findall(r"%([xyz])mm", text))
    vfma = len(re.findall(r"\bvfmadd", text))
    for reg in "zyx":
        if counts[reg]:
            return f"{reg}mm" + (" FMA" if vfma else "")
    return ""


def _compare(size: str, profiles: Dict[str, Path], library: Path, top: int) -> float:
    """Print the totals, the per-kernel and the per-function tables; return ours/published."""
    vt = vtable_functions(library)
    computes = {f"0x{a:016x}": cls for a, (cls, slot) in vt.items() if slot == 2}  # OpKernel::Compute
    readable = _demangle(sorted(set(computes.values())))
    parsed = {who: parse_callgrind(path) for who, path in profiles.items()}
    # the executor's dispatch site: the caller of the most different virtual slot-2 functions
    # (OpKernel::Compute; allocators and others have a slot 2 too, called from elsewhere)
    callers: Dict[str, set] = collections.defaultdict(set)
    for own in parsed.values():
        for context in own:
            chain = context.split("'")
            for callee, caller in zip(chain, chain[1:]):
                if callee in computes:
                    callers[caller].add(callee)
    site = max(callers, key=lambda c: len(callers[c]), default="")
    # own instructions per (function, kernel whose Compute the dispatch site called above it)
    cost: Dict[str, Counter] = {}
    for who, own in parsed.items():
        cost[who] = collections.Counter()
        for context, n in own.items():
            chain = context.split("'")
            kernel = next((readable[computes[c]].replace("onnxruntime::", "") for c, up in zip(chain, chain[1:])
                           if up == site and c in computes), "(outside kernels, or more than 12 calls deep)")
            cost[who][(chain[0], kernel)] += n
    total = {who: sum(c.values()) for who, c in cost.items()}
    ratio = total["ours"] / total["published"]
    print(f"\n== dfine_{size}: instructions per inference, ours {total['ours'] / 1e6:,.1f} M, published "
          f"{total['published'] / 1e6:,.1f} M: ours/published {ratio:.3f}")

    print(f"  {'':64}{'ours':>9}{'published':>11}{'ours-pub':>10}")
    difference_table(cost, "per ONNX Runtime kernel (the Compute a node runs, callees included)", lambda k: k[1], str,
                     top)
    tags: Dict[str, str] = {}

    def function(k: Tuple[str, str]) -> str:
        fn, kernel = k
        address = _address(fn)
        if address is not None and fn not in tags:
            tags[fn] = _isa_tag(library, address)
        return f"{fn if address is None else f'0x{address:x}'} {tags.get(fn, '')} in {kernel}"
    difference_table(cost, "per function and kernel (own instructions; addresses in ONNX Runtime's library, the widest "
                     "vector registers in the function's code)", lambda k: k, function, top)
    return ratio


def ort_library() -> Path:
    """ONNX Runtime's Python extension, which holds its kernels (MLAS included), stripped."""
    import onnxruntime
    return next((Path(onnxruntime.__file__).parent / "capi").glob("onnxruntime_pybind11_state*.so"))


def _checkpoint(path: Path, size: str, folder: Path):
    """(deploy-form ``dfine_{size}`` with the weights of the checkpoint at ``path`` (or of the
    checkpoint inside a golden fixture of ../shared/golden), its train-form state dict for the
    published export)."""
    import torch
    from dfine.checkpoint import load_model, model_state, read_checkpoint
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(raw, dict) and "checkpoint" in raw and "about" in raw:
        path = folder / "weights.pth"
        torch.save(raw["checkpoint"], path)
    return load_model(path, size=size, imgsz=(640, 640)), model_state(read_checkpoint(path), str(path))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", type=Path, required=True, help="local checkout of the published D-FINE (never committed)")
    p.add_argument("--sizes", nargs="+", default=["n"], choices=("n", "s"))
    p.add_argument("--keep", type=Path, help="folder to keep the exports and callgrind profiles in")
    p.add_argument("--reuse", action="store_true", help="take the exports already in --keep (from an earlier run)")
    p.add_argument("--weights", type=Path, help="a checkpoint of that size to export both ways instead of random "
                   "weights (e.g. ../shared/golden/dfine_n_golden.pth: trained-like learnable affine blocks)")
    p.add_argument("--no-warmup", action="store_true", help="count the first inference (no uncounted warm-up run)")
    p.add_argument("--top", type=int, default=12, help="rows per table")
    p.add_argument("--runtime", choices=sorted(RUNTIMES), default="onnxruntime",
                   help="runtime to count (openvino: totals and per object file; its JIT kernels have no names; "
                   "torch: the eager models of benchmarks/latency.py, per kind of code and function)")
    p.add_argument("--form", choices=("eval", "deploy"), default="deploy",
                   help="--runtime torch: the model's form (as benchmarks/latency.py times both)")
    a = p.parse_args(argv)
    if not (a.ref / "src" / "core").is_dir():
        _fail(f"--ref {a.ref}: not a checkout of the published D-FINE (no src/core)")
    if a.runtime == "torch" and a.weights is not None:
        _fail("--weights: --runtime torch counts random weights, as benchmarks/latency.py times them")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cpu_latency import _export_ref, _model
    from dfine.export.benchmark import cpu_line
    from dfine.export.onnx import export_onnx
    library = None
    if a.runtime == "openvino":
        import openvino
        version = f"OpenVINO {openvino.__version__}"
    elif a.runtime == "torch":
        import torch
        version = f"PyTorch {torch.__version__} (eager, {a.form} form)"
    else:
        import onnxruntime
        version, library = f"ONNX Runtime {onnxruntime.__version__}", ort_library()
    print(f"{cpu_line()} at start (this machine; {version} runs on valgrind's virtual CPU)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = a.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        helper = _helper(Path(tmp))
        for size in a.sizes:
            src = {"ours": folder / f"ours_{size}.onnx", "published": folder / f"published_{size}.onnx"}
            if a.runtime == "torch":
                src = {who: eager_spec(who, size, a.form, a.ref.resolve()) for who in src}
            elif not (a.reuse and all(f.exists() for f in src.values())):
                loaded, state = _model(size) if a.weights is None else _checkpoint(a.weights, size, folder)
                src = {"ours": export_onnx(loaded, src["ours"]), "published": _export_ref(a.ref, size, state, folder)}
            profiles = {}
            for who, path in src.items():
                stem = f"{who}_{size}" + {"onnxruntime": "", "openvino": ".openvino", "torch": f".torch_{a.form}"}[a.runtime]
                for old in folder.glob(f"{stem}.callgrind.*"):
                    old.unlink()
                profiles[who], info = _count(path, helper, folder / f"{stem}.callgrind.out", not a.no_warmup,
                                             a.runtime)
                if not info["valgrind"]:
                    _fail("the counted run was not under valgrind")
                print(f"{who} dfine_{size}: {version} under valgrind saw {', '.join(info['isa'])}"
                      + ("" if "AVX512F" in info["isa"] else " (no AVX-512)")
                      + (f", torch kernels {info['torch_kernels']}" if "torch_kernels" in info else "")
                      + ("" if a.no_warmup else f"; first (warm-up) run {info['first'] / 1e6:,.1f} M instructions"),
                      flush=True)
            if a.runtime == "torch":
                _compare_eager(size, profiles, a.top)
            elif library is None:
                _compare_objects(size, profiles, a.top)
            else:
                _compare(size, profiles, library, a.top)
    print(f"load average at end {os.getloadavg()[0]:.2f} (instruction counts do not depend on it)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(_child(*json.loads(sys.argv[2]))))
    else:
        main()
