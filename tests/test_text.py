"""Counts printed with the right plural (``dfine.text.counted``)."""

from dfine.text import counted


def test_counted_is_singular_only_for_one():
    assert [counted(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert counted(1, "box", "boxes") == "1 box" and counted(3, "box", "boxes") == "3 boxes"
    assert counted(1, "category", "categories") == "1 category" and counted(0, "class", "classes") == "0 classes"


def test_install_hint_from_a_checkout_installs_the_checkout_editable():
    """The tests run from a checkout: the hint reinstalls it editable with the extra (``dfine[onnx]``
    is on no index), quoted for shells that expand brackets."""
    from pathlib import Path

    import dfine
    from dfine.text import pip_install
    root = Path(dfine.__file__).resolve().parents[1]
    assert pip_install("onnx") == f'pip install -e "{root}[onnx]"'


def test_install_hint_requirements_come_from_the_extras_asked_for():
    from dfine.text import _extra_requirements
    requires = ['numpy', 'onnx ; extra == "onnx"', "onnxruntime>=1.16; extra == 'onnx'", 'onnx ; extra == "int8"',
                'nncf ; extra == "int8"', 'av ; extra == "video"', 'onnxsim ; python_version < "3.13" and extra == "onnx"']
    assert _extra_requirements(requires, ["onnx"]) == ["onnx", "onnxruntime>=1.16", "onnxsim"]
    assert _extra_requirements(requires, ["int8", "onnx"]) == ["onnx", "onnxruntime>=1.16", "nncf", "onnxsim"]
    assert _extra_requirements(requires, ["tensorrt"]) == []
