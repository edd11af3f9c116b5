"""The CPU line printed beside every CPU timing."""

from __future__ import annotations

import pytest
import torch

from dfine.engine.precision import cpu_features
from dfine.export.benchmark import ISA_CAPS, _mkl_isa_from, cpu_line, mkl_isa


def test_cpu_line_names_extensions_caps_and_torch_kernels(monkeypatch):
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    line = cpu_line()
    assert line.startswith("CPU: ") and "\n" not in line
    assert all(f in line for f in cpu_features())
    assert "capped: ONEDNN_MAX_CPU_ISA=AVX2; ONNX Runtime ignores these" in line
    assert f"torch kernels {torch.backends.cpu.get_cpu_capability()}" in line and "load average" in line
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert "capped" not in cpu_line()


def test_cpu_line_names_the_cpu_with_family_and_model():
    """Zen 4 and Zen 5 EPYCs both call themselves "AMD EPYC": the family and model tell them apart."""
    from dfine.engine.precision import cpu_model
    info = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
            "flags\t\t: fpu avx2\n\nprocessor\t: 1\ncpu family\t: 99\nmodel name\t: other\n")
    assert cpu_model(info) == "AMD EPYC (family 26, model 2)"
    assert cpu_model("") != ""
    assert cpu_line().startswith(f"CPU: {cpu_model()}: ")


def test_mkl_isa_read_from_mkl_verbose_lines():
    """The version lines MKL 2024.0 printed on an Intel Xeon (family 6, model 207), uncapped and with
    ``MKL_ENABLE_INSTRUCTIONS=AVX2``."""
    native = ("MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) "
              "Advanced Vector Extensions 512 (Intel(R) AVX-512) with support for INT8, BF16, and FP16 (limited) "
              "instructions, Lnx 2.30GHz lp64 gnu_thread")
    capped = ("MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) "
              "Advanced Vector Extensions 2 (Intel(R) AVX2) enabled processors, Lnx 2.30GHz lp64 gnu_thread")
    assert _mkl_isa_from(native) == "AVX-512"
    assert _mkl_isa_from(capped) == "AVX2"
    assert _mkl_isa_from("no verbose output") == "unknown"


def test_mkl_isa_on_an_amd_cpu_says_mkl_names_none():
    """The version line MKL 2024.0 printed on an AMD EPYC (family 25, model 17, AVX-512): no ISA in it."""
    amd = ("MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) "
           "Architecture processors, Lnx 2.60GHz lp64 gnu_thread")
    assert _mkl_isa_from(amd) == "unnamed (non-Intel CPU)"


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="torch built without MKL")
def test_cpu_line_says_what_mkl_runs(monkeypatch):
    assert f"MKL {mkl_isa()}" in cpu_line()
    assert mkl_isa() != "unknown"  # this torch's MKL prints its version line
    from dfine.engine.precision import _read_cpuinfo
    assert (mkl_isa() == "unnamed (non-Intel CPU)") == ("GenuineIntel" not in _read_cpuinfo())
    if "GenuineIntel" in _read_cpuinfo() and "avx512f" in cpu_features():
        monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")  # honoured on Intel CPUs only
        assert mkl_isa.__wrapped__() == "AVX2"
        monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS")
        assert mkl_isa.__wrapped__() == "AVX-512"


def _avx2_only():
    """``benchmarks/avx2_only.py`` imported as a module."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "avx2_only.py"
    spec = importlib.util.spec_from_file_location("avx2_only", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hide_avx512_or_skip(tmp_path):
    """The CPUID-hiding library built into ``tmp_path``, or a skip where this machine cannot use it."""
    from dfine.engine.precision import _read_cpuinfo
    avx2_only = _avx2_only()
    if "avx512f" not in cpu_features():
        pytest.skip("no AVX-512 on this CPU: nothing to hide")
    try:
        avx2_only.check_machine(_read_cpuinfo())
        return avx2_only, avx2_only.build(tmp_path)
    except avx2_only.Unavailable as e:
        pytest.skip(str(e))


def test_avx2_only_makes_every_library_see_an_avx2_cpu(tmp_path):
    """Under ``benchmarks/avx2_only.py`` torch's ATen dispatch and OpenVINO (which read CPUID, not
    the caps' environment variables) see AVX2 without AVX-512, in the process and its threads, and
    the CPU line says so; a real segmentation fault still reaches Python's faulthandler and kills."""
    import os
    import subprocess
    import sys
    avx2_only, library = _hide_avx512_or_skip(tmp_path)
    env = avx2_only.environment(library, {k: v for k, v in os.environ.items() if k not in ISA_CAPS})
    code = ("import threading, torch; from dfine.export.benchmark import cpu_line; seen = []; "
            "t = threading.Thread(target=lambda: seen.append(torch.backends.cpu.get_cpu_capability())); "
            "t.start(); t.join(); print(torch.backends.cpu.get_cpu_capability(), seen[0]); print(cpu_line())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    kernels, line = out.strip().splitlines()
    assert kernels == "AVX2 AVX2"
    assert "CPUID hides AVX-512" in line and "torch kernels AVX2" in line
    assert "avx512" not in line.split(" (CPUID")[0]  # dfine's own view follows (bf16 autocast, the int8 note)
    native = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert native.split()[0].startswith("AVX512")  # the same code without the library
    crash = subprocess.run([sys.executable, "-X", "faulthandler", "-c", "import ctypes; ctypes.string_at(0)"],
                           env=env, capture_output=True, text=True)
    assert crash.returncode == -11 and "Segmentation fault" in crash.stderr


def test_avx2_only_hides_avx512_from_openvino(tmp_path):
    pytest.importorskip("openvino")
    import os
    import subprocess
    import sys
    avx2_only, library = _hide_avx512_or_skip(tmp_path)
    code = "import openvino as ov; print(ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))"
    hidden = subprocess.run([sys.executable, "-c", code], env=avx2_only.environment(library, os.environ),
                            capture_output=True, text=True, check=True).stdout
    native = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "FP32" in hidden and "BF16" not in hidden
    if "avx512_bf16" in cpu_features():
        assert "BF16" in native


def test_avx2_only_says_what_is_missing(tmp_path, monkeypatch):
    avx2_only = _avx2_only()
    with pytest.raises(avx2_only.Unavailable, match="no CPUID faulting"):
        avx2_only.check_machine("flags\t\t: fpu avx2 avx512f\n")
    with pytest.raises(avx2_only.Unavailable, match="x86-64 Linux only"):
        avx2_only.check_machine("")
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(avx2_only.shutil, "which", lambda name: None)
    with pytest.raises(avx2_only.Unavailable, match="no C compiler"):
        avx2_only.build(tmp_path)
    env = avx2_only.environment(tmp_path / "x.so", {"LD_PRELOAD": "other.so", "GLIBC_TUNABLES": "glibc.malloc.arena_max=1"})
    assert env["LD_PRELOAD"] == f"{tmp_path / 'x.so'} other.so"
    assert env["GLIBC_TUNABLES"].startswith("glibc.malloc.arena_max=1:glibc.cpu.hwcaps=-AVX512F")


def test_cpu_features_leave_out_what_avx2_only_hides(monkeypatch):
    """A walk under benchmarks/avx2_only.py: the int8 export printed no note for a CPU without VNNI, and
    training said bf16 was native, as both read /proc/cpuinfo, which the CPUID trick leaves as it is."""
    from dfine.engine.precision import cpu_features as features
    info = "flags\t\t: fpu avx2 avx_vnni avx512f avx512_vnni avx512_bf16 amx_tile\n"
    monkeypatch.delenv("DFINE_CPUID_HIDES", raising=False)
    assert features(info) == ["avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"]
    monkeypatch.setenv("DFINE_CPUID_HIDES", "AVX-512, AVX-VNNI, AVX-IFMA, AVX10, AMX")
    assert features(info) == ["avx2"]


def test_time_export_times_an_onnx_file_in_a_child_without_torch(tmp_path):
    """The child that times an export imports its runtime only: torch's import took 12 s a process on
    a 16-core Intel host, and ``benchmarks/int8.py`` starts one child per file and round."""
    import dataclasses
    import json
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    from dfine.cli import main
    from dfine.export.timing import time_export
    from tests.models.tiny import tiny_model
    model = tiny_model()
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(model.config),
                "class_names": ["a", "b", "c", "d", "e"], "category_ids": [1, 2, 3, 4, 5]}, tmp_path / "m.pth")
    assert main(["export", "-r", str(tmp_path / "m.pth"), "--no-simplify"]) == 0
    result = time_export(str(tmp_path / "m.onnx"), "onnxruntime", threads=1, runs=3, warmup=1)
    assert 0 < result["min_ms"] <= result["median_ms"] and result["cpu_ms"] > 0
    code = ("import json, sys; from dfine.export.timing import _time_here; "
            "_time_here(sys.argv[1], 'onnxruntime', 1, 'f32', 2, 1); print(json.dumps('torch' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.onnx")], check=True, capture_output=True,
                         text=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False


def test_benchmark_times_torch_then_exports_for_onnx_runtime(capsys):
    """`dfine benchmark` timed the model eagerly under inference_mode, then exported it for ONNX Runtime: the
    conv weights folded (and cached) in inference mode were inference tensors, and the export traced with
    autograd on crashed ('Inference tensors cannot be saved for backward', a walk)."""
    pytest.importorskip("onnxruntime")
    from dfine.cli import main
    assert main(["benchmark", "--imgsz", "320", "--runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "torch " in out and "onnxruntime " in out and "ms median" in out.split("onnxruntime", 1)[1]
    # OpenVINO, the fastest runtime on a CPU, is one of the default backends (a walk found it left out unsaid)
    line = next(t for t in out.splitlines() if t.startswith("openvino "))
    assert "ms median" in line or "skipped" in line, line
    assert out.split("openvino", 1)[1].splitlines()[0].strip().endswith("per batch") or not _has("openvino")
    assert "tensorrt" in out


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None
