"""The CPU line printed beside every CPU timing."""

from __future__ import annotations

import pytest
import torch

from dfine.engine.precision import cpu_features
from dfine.export.benchmark import _mkl_isa_from, cpu_line, mkl_isa


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
