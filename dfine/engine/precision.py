"""Which precision a training run uses, and why.

The published recipes set ``use_amp: true``, which on a CUDA device means float16 autocast with a
gradient scaler and on a CPU bfloat16 autocast. bfloat16 only pays on a CPU that computes it
natively (AVX512-BF16 or AMX); on an AVX2 CPU it is emulated and a training step runs 2-3x
slower than in float32. So on a CPU a recipe's ``use_amp`` is honoured only where bf16 is native;
``use_amp=True`` given on the command line (``-u use_amp=True`` or ``--use-amp``) forces it.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch

from dfine.config import Config, from_command_line

__all__ = ["Precision", "cpu_features", "native_bf16", "int8_dot", "choose_precision"]

# /proc/cpuinfo flags worth printing beside a timing, most important last
_FLAGS = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


@functools.lru_cache(maxsize=1)
def _read_cpuinfo() -> str:
    """The text of ``/proc/cpuinfo`` (read once per process), empty where there is none."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_features(cpuinfo: Optional[str] = None) -> List[str]:
    """The vector extensions of this CPU among avx2 / avx_vnni / avx512f / avx512_vnni / avx512_bf16 /
    amx_tile / amx_int8 / amx_bf16, read from ``/proc/cpuinfo`` (``cpuinfo``: its text, for tests), less
    those ``benchmarks/avx2_only.py`` hides from CPUID (``DFINE_CPUID_HIDES`` set), so that dfine's own
    choices (bf16 autocast, the int8 note) follow what the libraries see; where
    that file is absent, torch's own detection (``torch.cpu._is_*_supported``)."""
    cpuinfo = _read_cpuinfo() if cpuinfo is None else cpuinfo
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags") and ":" in line:
            flags = set(line.split(":", 1)[1].split())
            break
    if flags:
        if os.environ.get("DFINE_CPUID_HIDES"):  # benchmarks/avx2_only.py: the libraries see no AVX-512, VNNI or AMX
            flags = {f for f in flags if not f.startswith(("avx512", "avx_vnni", "amx"))}
        return [f for f in _FLAGS if f in flags]
    probes = {"avx2": "_is_avx2_supported", "avx512f": "_is_avx512_supported", "avx512_vnni": "_is_vnni_supported",
              "avx512_bf16": "_is_avx512_bf16_supported", "amx_tile": "_is_amx_tile_supported"}
    return [f for f, name in probes.items() if getattr(torch.cpu, name, lambda: False)()]


def cpu_model(cpuinfo: Optional[str] = None) -> str:
    """This CPU's name with its family and model numbers (``AMD EPYC (family 26, model 2)``: Zen 5
    and Zen 4 EPYCs share the name), from ``/proc/cpuinfo`` (``cpuinfo``: its text, for tests);
    where that file is absent, ``platform.processor()``."""
    cpuinfo = _read_cpuinfo() if cpuinfo is None else cpuinfo
    fields: dict = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    numbers = [f"{label} {fields[key]}" for key, label in (("cpu family", "family"), ("model", "model")) if key in fields]
    return f"{name} ({', '.join(numbers)})" if numbers else name


def native_bf16(features: Optional[List[str]] = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    features = cpu_features() if features is None else features
    return any(f in features for f in ("avx512_bf16", "amx_bf16", "amx_tile"))


def int8_dot(features: Optional[List[str]] = None) -> bool:
    """Whether the CPU has int8 dot-product instructions (VNNI, AVX512 or AVX2 form, or AMX),
    without which int8 convolutions gain little over float32."""
    features = cpu_features() if features is None else features
    return any(f in features for f in ("avx512_vnni", "avx_vnni", "amx_int8", "amx_tile"))


@dataclass(frozen=True)
class Precision:
    """``amp``: autocast on; ``dtype``: its dtype (``None`` in float32); ``name``: what the
    start-up summary prints; ``note``: why, when the recipe was overruled (else empty)."""

    amp: bool
    dtype: Optional[torch.dtype]
    name: str
    note: str = ""


def choose_precision(cfg: Config, device: torch.device, features: Optional[List[str]] = None) -> Precision:
    """The precision of a run of ``cfg`` on ``device`` (see module doc)."""
    if not cfg.use_amp:
        return Precision(False, None, "float32")
    if device.type == "cuda":
        return Precision(True, torch.float16, "float16 autocast (use_amp)")
    if device.type != "cpu":
        return Precision(True, torch.bfloat16, f"bfloat16 autocast on {device.type} (use_amp)")
    forced = from_command_line(cfg, "use_amp")
    features = cpu_features() if features is None else features
    if forced or native_bf16(features):
        why = "forced by use_amp=True on the command line" if forced else "native on this CPU"
        return Precision(True, torch.bfloat16, f"bfloat16 autocast ({why})")
    note = (f"precision: float32 (the recipe's use_amp means bfloat16 on CPU, which this CPU "
            f"[{' '.join(features) or 'no AVX2'}] has no native support for and runs 2-3x slower; "
            f"-u use_amp=True forces it)")
    return Precision(False, None, "float32 (no native bf16 on this CPU)", note)
