"""benchmarks/ort_callgrind.py: ONNX Runtime under valgrind's callgrind runs its AVX2 kernels (no
AVX-512 on valgrind's virtual CPU), one inference is counted alone, and the count is attributed to
the ONNX Runtime kernels that ran it, named from the stripped library's vtables."""

from __future__ import annotations

import importlib.util
import io
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
import torch.nn as nn

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
if not all(shutil.which(t) for t in ("valgrind", "callgrind_annotate", "gcc")):
    pytest.skip("needs valgrind and gcc", allow_module_level=True)

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ort_callgrind.py"


def _script():
    spec = importlib.util.spec_from_file_location("ort_callgrind", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Toy(nn.Module):
    """D-FINE's inputs, two convolutions (ONNX Runtime's NCHWc kernels) and a Linear (Gemm)."""

    def __init__(self, width: int):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(3, 8, 3, 4, 1), nn.ReLU(), nn.Conv2d(8, width, 3, 2, 1), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(width, 4)

    def forward(self, images, orig_target_sizes):
        return self.fc(self.convs(images)) * orig_target_sizes.float().sum()


def _export(width: int, path: Path) -> Path:
    torch.manual_seed(0)
    torch.onnx.export(_Toy(width).eval(), (torch.rand(1, 3, 640, 640), torch.tensor([[640, 480]])), str(path),
                      input_names=["images", "orig_target_sizes"], dynamo=False)
    return path


def test_counts_one_inference_on_avx2_kernels_per_kernel(tmp_path):
    oc = _script()
    helper = oc._helper(tmp_path)
    profiles, infos = {}, {}
    for who, width in (("ours", 16), ("published", 64)):
        profiles[who], infos[who] = oc._count(_export(width, tmp_path / f"{who}.onnx"), helper,
                                              tmp_path / f"{who}.callgrind.out", warmup=True)
    for info in infos.values():
        assert info["valgrind"] == 1
        assert {"AVX2", "FMA3"} <= set(info["isa"]) and "AVX512F" not in info["isa"]
    out = io.StringIO()
    with redirect_stdout(out):
        ratio = oc._compare("toy", profiles, oc.ort_library(), 8)
    text = out.getvalue()
    # the second convolution is 4x wider in 'published': fewer instructions in ours
    assert 0.2 < ratio < 0.9
    kernels = text.split("per ONNX Runtime kernel")[1].split("per function")[0]
    assert "contrib::NchwcConv" in kernels and "Gemm<float>" in kernels
    nchwc = next(line for line in kernels.splitlines() if "contrib::NchwcConv" in line).split()
    assert float(nchwc[-1]) < 0  # the convolutions' difference is where it is
    # the convolution kernels that ran are the 256-bit FMA ones
    assert " ymm FMA in contrib::NchwcConv" in text
    # the counted (second) run alone: the first one, with its allocations, is counted apart
    assert infos["ours"]["first"] > 0


def test_counts_one_openvino_inference_on_avx2_code_per_object_file(tmp_path):
    """``--runtime openvino``: OpenVINO under valgrind sees the same CPU (AVX2, no AVX-512); the
    counted inference is split by object file, its generated kernels under ``???``."""
    pytest.importorskip("openvino")
    oc = _script()
    helper = oc._helper(tmp_path)
    profiles, infos = {}, {}
    for who, width in (("ours", 16), ("published", 64)):
        profiles[who], infos[who] = oc._count(_export(width, tmp_path / f"{who}.onnx"), helper,
                                              tmp_path / f"{who}.openvino.callgrind.out", warmup=False,
                                              runtime="openvino")
    for info in infos.values():
        assert info["valgrind"] == 1
        assert {"AVX2", "FMA3"} <= set(info["isa"]) and "AVX512F" not in info["isa"]
    out = io.StringIO()
    with redirect_stdout(out):
        ratio = oc._compare_objects("toy", profiles, 8)
    assert 0.2 < ratio < 1.0  # the 4x wider convolution costs 'published' more
    objects = {oc.parse_callgrind(p, per="ob").get("???", 0) for p in profiles.values()}
    assert min(objects) > 0  # OpenVINO's JIT kernels ran, as generated code
    assert "per object file" in out.getvalue() and "???" in out.getvalue()


_TOY_EAGER = '''
import torch
import torch.nn as nn


def build(width):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 4, 1), nn.ReLU(), nn.Conv2d(8, width, 3, 2, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 256), nn.Linear(256, 4)).eval()
'''


def test_counts_one_eager_forward_on_avx2_kernels_per_kind_of_code(tmp_path):
    """``--runtime torch``: eager PyTorch under valgrind runs its AVX2 kernels (ATen at AVX2, oneDNN's
    generated convolutions, MKL's products); one forward pass is counted, split by kind of code."""
    oc = _script()
    helper = oc._helper(tmp_path)
    (tmp_path / "toy.py").write_text(_TOY_EAGER)
    def count(who, width):  # the two processes side by side (valgrind runs one thread each)
        spec = f'["{tmp_path / "toy.py"}", "build", [{width}]]'
        return oc._count(spec, helper, tmp_path / f"{who}.torch.callgrind.out", warmup=True, runtime="torch")
    with ThreadPoolExecutor(2) as pool:
        done = {who: pool.submit(count, who, width) for who, width in (("ours", 16), ("published", 64))}
    profiles = {who: job.result()[0] for who, job in done.items()}
    infos = {who: job.result()[1] for who, job in done.items()}
    for info in infos.values():
        assert info["valgrind"] == 1 and info["torch_kernels"] == "AVX2"
        assert "AVX512F" not in info["isa"]
    out = io.StringIO()
    with redirect_stdout(out):
        ratio = oc._compare_eager("toy", profiles, 8)
    assert 0.2 < ratio < 0.9  # the 4x wider convolution and product cost 'published' more
    kinds = out.getvalue().split("per kind of code")[1].split("per function")[0]
    rows = {line[:66].strip(): float(line.split()[-3]) for line in kinds.splitlines()[1:] if line.strip()}
    assert rows["generated at run time (oneDNN JIT kernels)"] > 0  # the convolutions
    assert rows["MKL (matrix products)"] > 0  # the Linear layers
    assert infos["ours"]["first"] > 0


def test_eager_groups():
    oc = _script()
    assert oc.eager_group("0x00000000e3948000") == "generated at run time (oneDNN JIT kernels)"
    assert oc.eager_group("mkl_blas_avx2_sgemm_kernel_0") == "MKL (matrix products)"
    assert oc.eager_group("dnnl::impl::cpu::x64::brgemm_convolution_fwd_t<(dnnl::impl::cpu::x64::cpu_isa_t)") \
        == "oneDNN (compiled)"
    assert oc.eager_group("at::native::(anonymous namespace)::cat_serial_kernel(at::Tensor const&)").startswith("ATen")
    assert oc.eager_group("Sleef_expf8_u10avx2").startswith("ATen")
    assert oc.eager_group("_PyEval_EvalFrameDefault'2").startswith("other")
