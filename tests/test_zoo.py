"""The model zoo: complete, consistent, and matching the published tables."""

from __future__ import annotations

import dataclasses
import urllib.parse

import pytest

from dfine import zoo
from dfine.errors import DfineError
from dfine.models.config import MODEL_NAMES

SIZES = ("n", "s", "m", "l", "x")
EXPECTED = {
    *(f"dfine_{s}_coco" for s in SIZES),
    *(f"dfine_{s}_obj365" for s in "smlx"),
    *(f"dfine_{s}_obj2coco" for s in "smlx"),
    "dfine_l_obj365_e25",
    "dfine_l_obj2coco_e25",
    *(f"PPHGNetV2_{b}_stage1" for b in ("B0", "B2", "B4", "B5")),
}
# Published COCO val2017 AP, params (M) and GFLOPs per COCO checkpoint.
COCO_TABLE = {
    "n": (42.8, 4, 7), "s": (48.5, 10, 25), "m": (52.3, 19, 57),
    "l": (54.0, 31, 91), "x": (55.8, 62, 202),
}  # fmt: skip
OBJ2COCO_AP = {"s": 50.7, "m": 55.1, "l": 57.3, "x": 59.3}


def test_every_published_entry_is_present() -> None:
    assert set(zoo.names()) == EXPECTED
    assert len(zoo.names()) == len(EXPECTED) == len(zoo.list_entries())


def test_every_size_has_coco_obj365_and_obj2coco_weights() -> None:
    for dataset, sizes in (("coco", SIZES), ("obj365", "smlx"), ("obj2coco", "smlx")):
        got = {e.model for e in zoo.list_entries(kind="detector", dataset=dataset)}
        assert got == {f"dfine_{s}" for s in sizes}, dataset


def test_urls_are_well_formed() -> None:
    for entry in zoo.list_entries():
        url = urllib.parse.urlparse(entry.url)
        assert (url.scheme, url.netloc) == ("https", "github.com")
        assert url.path == f"/Peterande/storage/releases/download/dfinev1.0/{entry.file_name}"
        assert entry.file_name.endswith(".pth") and "/" not in entry.file_name
        assert entry.sha256 is None or len(entry.sha256) == 64


def test_file_names_follow_the_published_storage() -> None:
    assert zoo.get("dfine_l_obj365").file_name == "dfine_l_obj365.pth"
    assert zoo.get("dfine_l_obj365_e25").file_name == "dfine_l_obj365_e25.pth"
    # The only published L Objects365+COCO checkpoint is the E25 one.
    assert zoo.get("dfine_l_obj2coco").file_name == "dfine_l_obj2coco_e25.pth"
    assert zoo.get("dfine_l_obj2coco_e25").file_name == "dfine_l_obj2coco_e25.pth"
    assert zoo.get("dfine_x_obj2coco").file_name == "dfine_x_obj2coco.pth"


def test_class_names_have_the_right_length() -> None:
    assert len(zoo.COCO_CLASSES) == len(set(zoo.COCO_CLASSES)) == 80
    assert len(zoo.OBJ365_CLASSES) == len(set(zoo.OBJ365_CLASSES)) == 365
    for name in zoo.COCO_CLASSES + zoo.OBJ365_CLASSES:
        assert name and name == name.strip()
    for entry in zoo.list_entries(kind="detector"):
        expected = 365 if entry.dataset == "obj365" else 80
        assert len(entry.class_names) == expected, entry.name
        assert entry.num_classes == expected + entry.label_offset, entry.name


def test_class_name_follows_the_label_offset() -> None:
    coco = zoo.get("dfine_s_coco")
    assert (coco.class_name(0), coco.class_name(79)) == ("person", "toothbrush")
    obj365 = zoo.get("dfine_s_obj365")
    assert (obj365.class_name(1), obj365.class_name(365)) == ("Person", "Table Tennis")
    for entry, label in ((coco, 80), (obj365, 0), (zoo.get("PPHGNetV2_B0_stage1"), 0)):
        with pytest.raises(DfineError):
            entry.class_name(label)


def test_published_numbers() -> None:
    for size, (ap, params, gflops) in COCO_TABLE.items():
        entry = zoo.get(f"dfine_{size}_coco")
        assert (entry.coco_ap, entry.params_m, entry.gflops) == (ap, params, gflops)
    for size, ap in OBJ2COCO_AP.items():
        assert zoo.get(f"dfine_{size}_obj2coco").coco_ap == ap
    assert zoo.get("dfine_x_obj365").obj365_ap == 49.5
    assert zoo.get("dfine_l_obj365").obj365_ap is None  # published only on the first 5000 images
    for entry in zoo.list_entries(dataset="obj365"):
        assert entry.coco_ap is None and entry.obj365_ap5000 is not None


def test_backbones_serve_every_size() -> None:
    backbones = zoo.list_entries(kind="backbone")
    assert {e.backbone: e.sizes for e in backbones} == {
        "B0": ("dfine_n", "dfine_s"), "B2": ("dfine_m",), "B4": ("dfine_l",), "B5": ("dfine_x",),
    }  # fmt: skip
    serving = {size: e.backbone for e in backbones for size in e.sizes}
    for entry in zoo.list_entries(kind="detector"):
        assert serving[entry.model] == entry.backbone, entry.name
    for entry in backbones:
        assert entry.dataset == "imagenet" and entry.num_classes is None and not entry.class_names


def test_sizes_are_model_names() -> None:
    for entry in zoo.list_entries():
        assert set(entry.sizes) <= set(MODEL_NAMES)


def test_get_is_case_insensitive() -> None:
    assert zoo.get("DFINE_L_COCO") is zoo.get("dfine_l_coco")
    assert zoo.get("pphgnetv2_b4_stage1").name == "PPHGNetV2_B4_stage1"


def test_unknown_name_is_a_one_line_error_with_a_suggestion() -> None:
    with pytest.raises(zoo.UnknownEntryError) as exc:
        zoo.get("dfine_l_cocoo")
    message = str(exc.value)
    assert "\n" not in message
    assert "did you mean 'dfine_l_coco'" in message
    assert all(name in message for name in EXPECTED)
    assert isinstance(exc.value, DfineError) and isinstance(exc.value, LookupError)
    with pytest.raises(zoo.UnknownEntryError, match="valid names"):
        zoo.get("zzz")


def test_entries_are_frozen_and_validated() -> None:
    entry = zoo.get("dfine_m_coco")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.url = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        dataclasses.replace(entry, file_name="other.pth")
    with pytest.raises(ValueError):
        dataclasses.replace(entry, sha256="not-a-digest")
    with pytest.raises(ValueError):
        dataclasses.replace(entry, num_classes=81)
    assert "Table Tennis" not in repr(zoo.get("dfine_x_obj365"))  # class names stay out of repr

