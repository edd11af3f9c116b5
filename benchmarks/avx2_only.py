"""Run a command as on an AVX2-only CPU, on a CPU with AVX-512: every library then picks the kernels it
picks on an AVX2-only CPU (Zen 2/3 EPYCs, most Intel desktop and laptop CPUs) and runs them at this
machine's own speed.

``ATEN_CPU_CAPABILITY`` / ``ONEDNN_MAX_CPU_ISA`` / ``MKL_ENABLE_INSTRUCTIONS`` cap only torch's and
oneDNN's kernels (MKL's on Intel CPUs alone), and ONNX Runtime has no cap at all. This hides the
AVX-512, AVX-VNNI, AVX-IFMA, AVX10 and AMX bits of CPUID itself from the command and its children
(``benchmarks/avx2_only.c``, built here with ``cc`` and loaded with ``LD_PRELOAD``; Linux's CPUID
faulting, the ``cpuid_fault`` flag of ``/proc/cpuinfo``, makes it possible), and glibc's own string
functions are kept to their AVX2 forms (``GLIBC_TUNABLES``). What stays this machine's is its
caches, memory and execution units, so read the ratio of two programs run alike (ours against the
published), not absolute times. The benchmarks' CPU line then says ``CPUID hides ...`` and
``torch kernels AVX2``.

    python benchmarks/avx2_only.py python benchmarks/cpu_latency.py --ref /path/to/D-FINE
    python benchmarks/avx2_only.py python benchmarks/latency.py --ref /path/to/D-FINE
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping

SOURCE = Path(__file__).with_suffix(".c")
HIDDEN = "AVX-512, AVX-VNNI, AVX-IFMA, AVX10, AMX"
# glibc's hardware-capability names: its memcpy/strlen and friends then take their AVX2 forms
GLIBC_HIDE = "glibc.cpu.hwcaps=-AVX512F,-AVX512BW,-AVX512CD,-AVX512DQ,-AVX512VL,-AVX512_VNNI,-AVX_VNNI"


class Unavailable(RuntimeError):
    """This machine cannot hide its AVX-512 this way; the message says why."""


def build(cache: Path) -> Path:
    """The shared library built from :data:`SOURCE` into ``cache`` (named by the source's hash, so a
    changed source is rebuilt; written under a temporary name, then renamed)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise Unavailable("no C compiler (cc or gcc, or CC=...) to build benchmarks/avx2_only.c: "
                          "install one (apt install gcc)")
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    library = cache / f"avx2_only-{digest}.so"
    if library.is_file():
        return library
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        built = Path(tmp) / library.name
        result = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(built), str(SOURCE), "-ldl"],
                                capture_output=True, text=True)
        if result.returncode:
            raise Unavailable(f"{compiler} could not build {SOURCE}: {result.stderr.strip()}")
        os.replace(built, library)
    return library


def check_machine(cpuinfo: str) -> None:
    """Raise :class:`Unavailable` unless this is x86-64 Linux whose kernel offers CPUID faulting."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    if not flags:
        raise Unavailable("no CPU flags in /proc/cpuinfo: this runs on x86-64 Linux only")
    if "cpuid_fault" not in flags:
        raise Unavailable("this kernel or hypervisor offers no CPUID faulting (no cpuid_fault flag in "
                          "/proc/cpuinfo), so CPUID cannot be answered for the command")


def environment(library: Path, base: Mapping[str, str]) -> Dict[str, str]:
    """``base`` with ``library`` preloaded first, glibc kept to AVX2 and ``DFINE_CPUID_HIDES`` set
    (the benchmarks' CPU line prints it)."""
    env = dict(base)
    env["LD_PRELOAD"] = " ".join(p for p in (str(library), base.get("LD_PRELOAD", "")) if p)
    env["GLIBC_TUNABLES"] = ":".join(p for p in (base.get("GLIBC_TUNABLES", ""), GLIBC_HIDE) if p)
    env["DFINE_CPUID_HIDES"] = HIDDEN
    return env


def main(argv: List[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    try:
        check_machine(Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else "")
        library = build(Path(os.environ.get("DFINE_HOME", Path.home() / ".cache" / "dfine")) / "avx2_only")
    except Unavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    env = environment(library, os.environ)
    print(f"avx2_only: CPUID hides {HIDDEN} from {argv[0]} and what it starts", file=sys.stderr, flush=True)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        print(f"error: cannot run {argv[0]}: {e.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
