"""The CPU line printed beside every CPU timing."""

from __future__ import annotations

import torch

from dfine.engine.precision import cpu_features
from dfine.export.benchmark import cpu_line


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
