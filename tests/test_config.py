"""Typed configs: every published recipe loads with its published values; one-line errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from dfine.config import (Config, ConfigError, TransformOp, criterion_config, load_config, model_config,
                          resolve_num_classes, source_of)
from dfine.models.config import preset, resolve

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL_FILES = sorted(CONFIGS.rglob("*.yml"))
SIZES = "nslmx"

PUBLISHED = (
    ["runtime.yml"]
    + [f"dataset/{d}_detection.yml" for d in ("coco", "obj365", "crowdhuman", "custom", "voc")]
    + [f"dfine/include/{f}.yml" for f in ("dataloader", "dfine_hgnetv2", "optimizer")]
    + [f"dfine/dfine_hgnetv2_{s}_coco.yml" for s in SIZES]
    + [f"dfine/objects365/dfine_hgnetv2_{s}_{d}.yml" for s in SIZES for d in ("obj365", "obj2coco")]
    + [f"dfine/custom/dfine_hgnetv2_{s}_custom.yml" for s in SIZES]
    + [f"dfine/custom/objects365/dfine_hgnetv2_{s}_obj2custom.yml" for s in "smlx"]
    + [f"dfine/crowdhuman/dfine_hgnetv2_{s}_ch.yml" for s in SIZES]
)


def test_every_published_file_is_there():
    assert sorted(str(p.relative_to(CONFIGS)) for p in ALL_FILES) == sorted(PUBLISHED)


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.config_file.endswith(str(path.relative_to(CONFIGS)))


# ---------------------------------------------------------------- published values

# recipe: epochs, stop epoch, train / val batch, base_size_repeat, lr, per-group lr, EMA restart decay
RECIPES = {
    "dfine/dfine_hgnetv2_n_coco.yml": (160, 148, 128, 256, None, 0.0008, (0.0004, 0.0004, None), 0.9999),
    "dfine/dfine_hgnetv2_s_coco.yml": (132, 120, 32, 64, 20, 0.0002, (0.0001, 0.0001, None), 0.9999),
    "dfine/dfine_hgnetv2_m_coco.yml": (132, 120, 32, 64, 6, 0.0002, (0.00002, 0.00002, None), 0.9999),
    "dfine/dfine_hgnetv2_l_coco.yml": (80, 72, 32, 64, 4, 0.00025, (0.0000125, None), 0.9999),
    "dfine/dfine_hgnetv2_x_coco.yml": (80, 72, 32, 64, 3, 0.00025, (0.0000025, None), 0.9998),
    "dfine/objects365/dfine_hgnetv2_l_obj365.yml": (24, 500, 32, 64, 4, 0.00025, (0.0000125, None), 0.9999),
    "dfine/objects365/dfine_hgnetv2_n_obj365.yml": (48, 500, 128, 256, None, 0.0008, (0.0004, 0.0004, None), 0.9999),
    "dfine/objects365/dfine_hgnetv2_m_obj2coco.yml": (56, 48, 32, 64, 6, 0.00025, (0.000025, 0.000025, None), 0.9999),
    "dfine/objects365/dfine_hgnetv2_s_obj2coco.yml": (64, 56, 32, 64, 10, 0.00025, (0.000125, 0.000125, None), 0.9999),
    "dfine/objects365/dfine_hgnetv2_x_obj2coco.yml": (36, 30, 32, 64, 3, 0.00025, (0.0000025, None), 0.9999),
    "dfine/custom/dfine_hgnetv2_s_custom.yml": (220, 200, 64, 128, 20, 0.0004, (0.0002, 0.0002, None), 0.9999),
    "dfine/custom/objects365/dfine_hgnetv2_l_obj2custom.yml": (36, 30, 32, 64, 4, 0.00025, (0.0000125, None), 0.9999),
    "dfine/crowdhuman/dfine_hgnetv2_m_ch.yml": (220, 200, 32, 64, 6, 0.00025, (0.000025, 0.000025, None), 0.9999),
    "dfine/crowdhuman/dfine_hgnetv2_x_ch.yml": (140, 120, 32, 64, 3, 0.00025, (0.0000025, None), 0.9998),
}


@pytest.mark.parametrize("name", RECIPES)
def test_published_recipe_values(name):
    epochs, stop, train_bs, val_bs, repeat, lr, group_lrs, restart = RECIPES[name]
    cfg = load_config(CONFIGS / name)
    assert cfg.epochs == epochs
    assert cfg.stop_epoch == stop == cfg.train_dataloader.collate_fn.stop_epoch
    assert cfg.train_dataloader.total_batch_size == train_bs and cfg.val_dataloader.total_batch_size == val_bs
    assert cfg.train_dataloader.collate_fn.base_size == 640
    assert cfg.train_dataloader.collate_fn.base_size_repeat == repeat
    assert cfg.train_dataloader.collate_fn.ema_restart_decay == restart
    assert cfg.optimizer.type == "AdamW" and cfg.optimizer.lr == lr and cfg.optimizer.betas == (0.9, 0.999)
    assert tuple(g.lr for g in cfg.optimizer.params) == group_lrs
    assert cfg.optimizer.params[-1].weight_decay == 0.0
    assert cfg.use_amp and cfg.use_ema and cfg.clip_max_norm == 0.1
    assert cfg.ema.type == "ModelEMA" and cfg.ema.decay == 0.9999 and cfg.ema.start == 0
    warm = 0 if "obj2" in name else 500
    assert cfg.ema.warmups == (0 if "obj2" in name else 1000)
    assert cfg.lr_warmup_scheduler.type == "LinearWarmup" and cfg.lr_warmup_scheduler.warmup_duration == warm
    assert cfg.lr_scheduler.type == "MultiStepLR" and cfg.lr_scheduler.milestones == (500,)
    assert cfg.lr_scheduler.gamma == 0.1
    policy = cfg.train_dataloader.dataset.transforms.policy
    assert policy.name == "stop_epoch" and policy.ops == ("RandomPhotometricDistort", "RandomZoomOut", "RandomIoUCrop")
    assert cfg.train_dataloader.shuffle and cfg.train_dataloader.drop_last and not cfg.val_dataloader.shuffle
    assert cfg.DFINETransformer.reg_max == 32 and cfg.eval_spatial_size == (640, 640)


def test_published_train_pipeline_in_order():
    cfg = load_config(CONFIGS / "dfine/dfine_hgnetv2_l_coco.yml")
    ops = cfg.train_dataloader.dataset.transforms.ops
    assert ops == (
        TransformOp("RandomPhotometricDistort", (("p", 0.5),)),
        TransformOp("RandomZoomOut", (("fill", 0),)),
        TransformOp("RandomIoUCrop", (("p", 0.8),)),
        TransformOp("SanitizeBoundingBoxes", (("min_size", 1),)),
        TransformOp("RandomHorizontalFlip"),
        TransformOp("Resize", (("size", (640, 640)),)),
        TransformOp("SanitizeBoundingBoxes", (("min_size", 1),)),
        TransformOp("ConvertPILImage", (("dtype", "float32"), ("scale", True))),
        TransformOp("ConvertBoxes", (("fmt", "cxcywh"), ("normalize", True))),
    )
    assert [op.type for op in cfg.val_dataloader.dataset.transforms.ops] == ["Resize", "ConvertPILImage"]


def test_runtime_and_dataset_values():
    cfg = load_config(CONFIGS / "dfine/dfine_hgnetv2_l_coco.yml")
    assert (cfg.print_freq, cfg.checkpoint_freq, cfg.sync_bn, cfg.find_unused_parameters) == (100, 12, True, False)
    assert cfg.output_dir == "./output/dfine_hgnetv2_l_coco"
    assert cfg.num_classes == 80 and cfg.remap_mscoco_category and not cfg.category_ids_as_labels
    assert cfg.train_dataloader.dataset.img_folder == "/data/COCO2017/train2017/"
    assert cfg.val_dataloader.dataset.ann_file == "/data/COCO2017/annotations/instances_val2017.json"
    assert cfg.HGNetv2.name == "B4" and cfg.HGNetv2.pretrained and cfg.HGNetv2.freeze_norm
    obj = load_config(CONFIGS / "dfine/objects365/dfine_hgnetv2_l_obj365.yml")
    assert obj.num_classes == 366 and obj.category_ids_as_labels and not obj.remap_mscoco_category
    assert (obj.checkpoint_freq, obj.print_freq) == (1, 1000)
    assert load_config(CONFIGS / "dfine/crowdhuman/dfine_hgnetv2_l_ch.yml").num_classes == 1
    assert not load_config(CONFIGS / "dfine/custom/objects365/dfine_hgnetv2_s_obj2custom.yml").HGNetv2.pretrained


@pytest.mark.parametrize("size", SIZES)
def test_model_config_is_the_published_architecture(size):
    cfg = load_config(CONFIGS / f"dfine/dfine_hgnetv2_{size}_coco.yml")
    expected = preset(f"dfine_{size}")
    expected = dataclasses.replace(expected, backbone=dataclasses.replace(expected.backbone, pretrained=True))
    assert model_config(cfg) == resolve(expected)


def test_criterion_config():
    cfg = load_config(CONFIGS / "dfine/dfine_hgnetv2_s_coco.yml")
    crit = criterion_config(cfg)
    assert crit.weight_dict == {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0, "loss_fgl": 0.15, "loss_ddf": 1.5}
    assert crit.losses == ("vfl", "boxes", "local") and (crit.alpha, crit.gamma) == (0.75, 2.0)
    assert crit.matcher.weight_dict == {"cost_class": 2.0, "cost_bbox": 5.0, "cost_giou": 2.0}
    assert (crit.matcher.alpha, crit.matcher.gamma, crit.matcher.use_focal_loss) == (0.25, 2.0, True)
    off = load_config(CONFIGS / "dfine/dfine_hgnetv2_s_coco.yml", ["use_focal_loss=false"])
    assert criterion_config(off).matcher.use_focal_loss is False


def _merged(path: Path) -> dict:
    """An independent reading of a recipe: includes first, deep dict merge, own keys last."""
    own = yaml.safe_load(path.read_text()) or {}
    out: dict = {}
    for inc in own.pop("__include__", []):
        _deep(out, _merged(path.parent / inc))
    return _deep(out, own)


def _deep(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep(dst[k], v)
        else:
            dst[k] = v
    return dst


def _leaves(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


MOVED = {("DFINECriterion", "reg_max"): ("DFINETransformer", "reg_max"),
         ("train_dataloader", "dataset", "transforms", "policy", "epoch"): ("train_dataloader", "collate_fn", "stop_epoch")}


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, TransformOp):
        return {"type": value.type, **{k: _plain(v) for k, v in value.args}}
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in vars(value).items() if v is not None}
    return value


@pytest.mark.parametrize("path", [p for p in ALL_FILES if p.parent.name != "include"],
                         ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_yaml_value_reaches_the_typed_config(path):
    cfg = load_config(path)
    for keys, value in _leaves(_merged(path)):
        obj = cfg
        for key in MOVED.get(keys, keys):
            obj = obj[key] if isinstance(obj, dict) else getattr(obj, key)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            value = [{k: v for k, v in item.items() if v is not None} for item in value]
        assert _plain(obj) == value, keys


# ---------------------------------------------------------------- includes and merging

def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_includes_are_relative_recursive_and_overridden(tmp_path):
    _write(tmp_path / "base/deeper.yml", "epochs: 1\noptimizer: {lr: 0.1, betas: [0.1, 0.2]}\n")
    _write(tmp_path / "base/base.yml", "__include__: [deeper.yml]\nepochs: 2\nprint_freq: 5\n")
    _write(tmp_path / "other.yml", "print_freq: 7\noptimizer: {weight_decay: 0.5}\n")
    top = _write(tmp_path / "exp/top.yml", "__include__: [../base/base.yml, ../other.yml]\nepochs: 3\n")
    cfg = load_config(top)
    assert cfg.epochs == 3  # own keys last
    assert cfg.print_freq == 7  # later include over earlier
    assert (cfg.optimizer.lr, cfg.optimizer.betas, cfg.optimizer.weight_decay) == (0.1, (0.1, 0.2), 0.5)  # dict merge
    assert source_of(cfg, "print_freq").endswith("other.yml")


def test_user_file_over_a_published_recipe(tmp_path):
    recipe = CONFIGS / "dfine/dfine_hgnetv2_s_coco.yml"
    mine = _write(tmp_path / "mine.yml", f"__include__: ['{recipe}']\nepochs: 12\n"
                                         "train_dataloader:\n  collate_fn: {stop_epoch: 10}\n")
    cfg = load_config(mine)
    assert cfg.epochs == 12 and cfg.stop_epoch == 10  # the policy's epoch goes with it: one setting
    assert cfg.train_dataloader.collate_fn.base_size_repeat == 20


def test_config_is_frozen():
    cfg = load_config(CONFIGS / "dfine/dfine_hgnetv2_s_coco.yml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train_dataloader.collate_fn.stop_epoch = 3


# ---------------------------------------------------------------- command-line overrides

def test_published_style_overrides():
    cfg = load_config(CONFIGS / "dfine/dfine_hgnetv2_s_coco.yml", [
        "train_dataloader.total_batch_size=8", "epochs=2", "HGNetv2.pretrained=False",
        "train_dataloader.dataset.img_folder=/my/images", "optimizer.lr=1e-4", "eval_spatial_size=[320, 320]",
        "lr_warmup_scheduler=null", "seed=0"])
    assert cfg.train_dataloader.total_batch_size == 8 and cfg.epochs == 2 and cfg.HGNetv2.pretrained is False
    assert cfg.train_dataloader.dataset.img_folder == "/my/images" and cfg.optimizer.lr == 1e-4
    assert cfg.eval_spatial_size == (320, 320) and cfg.lr_warmup_scheduler is None and cfg.seed == 0
    assert source_of(cfg, "epochs") == "command line 'epochs=2'"


def test_override_of_one_spelling_of_a_repeated_setting_wins():
    cfg = load_config(CONFIGS / "dfine/dfine_hgnetv2_s_coco.yml", ["DFINECriterion.reg_max=16"])
    assert cfg.DFINETransformer.reg_max == 16 and model_config(dataclasses.replace(cfg)).decoder.reg_max == 16
    cfg = load_config(CONFIGS / "dfine/dfine_hgnetv2_s_coco.yml", ["train_dataloader.dataset.transforms.policy.epoch=7"])
    assert cfg.stop_epoch == 7


# ---------------------------------------------------------------- one-line errors

def _error(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_misspelled_key_names_file_key_and_suggestion(tmp_path):
    base = _write(tmp_path / "base.yml", "train_dataloader:\n  collate_fn:\n    base_size_repat: 3\n")
    top = _write(tmp_path / "top.yml", "__include__: [base.yml]\nepochs: 3\n")
    msg = _error(top)
    assert str(base) in msg
    assert "unknown key 'train_dataloader.collate_fn.base_size_repat'" in msg
    assert "did you mean 'train_dataloader.collate_fn.base_size_repeat'?" in msg


@pytest.mark.parametrize("override, suggestion", [("epoch=3", "epochs"), ("HGNetv2.nam=B0", "HGNetv2.name"),
                                                  ("DFINETransformer.num_querys=100", "DFINETransformer.num_queries"),
                                                  ("DFINECriterion.reg_mx=16", "DFINECriterion.reg_max")])
def test_misspelled_override(override, suggestion):
    msg = _error(CONFIGS / "dfine/dfine_hgnetv2_s_coco.yml", [override])
    assert f"command line '{override}'" in msg and f"did you mean '{suggestion}'?" in msg


def test_missing_include(tmp_path):
    top = _write(tmp_path / "top.yml", "__include__: [../nowhere/base.yml]\n")
    msg = _error(top)
    assert str(top) in msg and "'../nowhere/base.yml' not found" in msg


def test_include_cycle(tmp_path):
    _write(tmp_path / "a.yml", "__include__: [b.yml]\n")
    _write(tmp_path / "b.yml", "__include__: [a.yml]\n")
    assert "cycle" in _error(tmp_path / "a.yml")


def test_missing_config_file(tmp_path):
    assert f"config file {tmp_path / 'nope.yml'} not found" in _error(tmp_path / "nope.yml")


@pytest.mark.parametrize("text, expected", [
    ("epochs: many\n", "epochs must be an integer or null, got 'many' (str)"),
    ("use_amp: 1\n", "use_amp must be true/false, got 1 (int)"),
    ("eval_spatial_size: [640]\n", "eval_spatial_size must be a list of 2 integers or null, got [640]"),
    ("optimizer: {lr: fast}\n", "optimizer.lr must be a number, got 'fast' (str)"),
    ("optimizer: 0.1\n", "optimizer must be a mapping of keys, got 0.1 (float)"),
    ("DFINE: {backbone: ResNet}\n", "DFINE.backbone must be one of 'HGNetv2', got 'ResNet'"),
    ("HybridEncoder: {in_channels: 512}\n", "HybridEncoder.in_channels must be a list of integers or null, got 512"),
    ("train_dataloader: {dataset: {transforms: {ops: [{type: Resise}]}}}\n",
     "train_dataloader.dataset.transforms.ops[0]: unknown transform 'Resise'; did you mean 'Resize'?"),
])
def test_wrong_type_names_the_expected_one(tmp_path, text, expected):
    path = _write(tmp_path / "cfg.yml", text)
    msg = _error(path)
    assert msg.startswith(f"{path}: ") and expected in msg


def test_invalid_yaml(tmp_path):
    path = _write(tmp_path / "cfg.yml", "epochs: [1, 2\n")
    msg = _error(path)
    assert str(path) in msg and "not valid YAML (line" in msg


def test_repeated_setting_disagreeing_in_one_file(tmp_path):
    path = _write(tmp_path / "cfg.yml", "DFINETransformer: {reg_max: 32}\nDFINECriterion: {reg_max: 16}\n")
    msg = _error(path)
    assert str(path) in msg and "DFINETransformer.reg_max=32" in msg and "DFINECriterion.reg_max=16" in msg


def test_stop_epochs_disagreeing_in_one_file(tmp_path):
    path = _write(tmp_path / "cfg.yml", "train_dataloader:\n  dataset: {transforms: {policy: {epoch: 72}}}\n"
                                        "  collate_fn: {stop_epoch: 120}\n")
    msg = _error(path)
    assert str(path) in msg and "stop_epoch=120" in msg and "policy.epoch=72" in msg


def test_no_aug_epoch_derives_or_checks_the_stop_epoch(tmp_path):
    path = _write(tmp_path / "cfg.yml", "epochs: 132\nno_aug_epoch: 12\n")
    assert load_config(path).stop_epoch == 120
    msg = _error(path, ["train_dataloader.collate_fn.stop_epoch=100"])
    assert "132 - 12 = 120" in msg and "stop_epoch=100" in msg


def test_two_label_spaces_at_once():
    msg = _error(CONFIGS / "dfine/dfine_hgnetv2_s_coco.yml", ["category_ids_as_labels=true"])
    assert "remap_mscoco_category and category_ids_as_labels cannot both be true" in msg


def test_bad_override_syntax():
    assert "must look like key.subkey=value" in _error(CONFIGS / "runtime.yml", ["epochs"])


def test_model_config_errors_name_the_file():
    cfg = load_config(CONFIGS / "dfine/custom/dfine_hgnetv2_s_custom.yml")
    assert cfg.num_classes is None
    with pytest.raises(ConfigError, match="num_classes is not set.*resolve_num_classes"):
        model_config(cfg)
    bad = load_config(CONFIGS / "dfine/dfine_hgnetv2_s_coco.yml", ["DFINETransformer.num_points=[4, 4]"])
    with pytest.raises(ConfigError, match=r"dfine_hgnetv2_s_coco\.yml: DFINETransformer\.num_points"):
        model_config(bad)


def test_resolve_num_classes_without_dataset_objects():
    from dfine.data.coco import LabelMap

    cfg = load_config(CONFIGS / "dfine/custom/dfine_hgnetv2_s_custom.yml")
    lm = LabelMap((1, 2), ("cat", "dog"), ann_file="train.json")
    assert resolve_num_classes(cfg, lm).num_classes == 2
    with pytest.raises(ConfigError, match=r"command line 'num_classes=5': num_classes=5 but train.json has 2 classes"):
        resolve_num_classes(load_config(cfg.config_file, ["num_classes=5"]), lm)
    one = LabelMap((1,), ("cat",), ann_file="train.json")
    with pytest.raises(ConfigError, match=r"num_classes=5 but train.json has 1 class \("):  # was '1 classes'
        resolve_num_classes(load_config(cfg.config_file, ["num_classes=5"]), one)
    # one more than the categories: the "+1 for background" habit of other detectors, said as such
    with pytest.raises(ConfigError, match=r"set num_classes: 2 \(D-FINE has no background class: count your "
                                          r"categories only\) or remove it"):
        resolve_num_classes(load_config(cfg.config_file, ["num_classes=3"]), lm)
    with pytest.raises(ConfigError) as five:
        resolve_num_classes(load_config(cfg.config_file, ["num_classes=5"]), lm)
    assert "background" not in str(five.value)
    # remap_mscoco_category left true on a custom set (a walk's 'goal', id 1): it was told 'set num_classes: 80' and
    # trained its goals as COCO's 'person'; the setting is named instead
    from dfine.data.mscoco import MSCOCO_CATEGORY_IDS, MSCOCO_NAMES
    coco = LabelMap(MSCOCO_CATEGORY_IDS, MSCOCO_NAMES, "mscoco", ann_file="goals.json")
    with pytest.raises(ConfigError) as err:
        resolve_num_classes(load_config(cfg.config_file, ["num_classes=1", "remap_mscoco_category=true"]), coco)
    assert str(err.value) == ("command line 'num_classes=1': num_classes=1, but remap_mscoco_category: true "
                              "(command line 'remap_mscoco_category=true') makes COCO's 80 categories the classes of "
                              "goals.json; for a dataset of your own categories set remap_mscoco_category: false "
                              "(num_classes then counts its categories)")


def test_obj365_ids_is_a_config_key():
    path = CONFIGS / "dfine/objects365/dfine_hgnetv2_s_obj2coco.yml"
    assert load_config(path).obj365_ids is None  # the published correspondence
    cfg = load_config(path, ["obj365_ids=[3, 1, 2]"])
    assert cfg.obj365_ids == (3, 1, 2)


def test_config_schema_imports_nothing_above_it():
    """The schema depends on models/loss configs, errors and the wording helpers of dfine.text (a leaf:
    it imports nothing of ours) only; the data layer reads it, never the reverse."""
    import ast

    import dfine.config as module

    tree = ast.parse(Path(module.__file__).read_text())
    ours = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dfine"):
            ours.add(node.module)
        elif isinstance(node, ast.Import):
            ours.update(a.name for a in node.names if a.name.startswith("dfine"))
    assert ours == {"dfine.errors", "dfine.loss.config", "dfine.models.config", "dfine.text"}
    text = ast.parse((Path(module.__file__).parent / "text.py").read_text())
    assert not [n for n in ast.walk(text) if isinstance(n, (ast.Import, ast.ImportFrom))
                and "dfine" in (getattr(n, "module", None) or "") + "".join(a.name for a in n.names)]


def test_load_config_asks_the_op_check_it_is_given(tmp_path):
    path = _write(tmp_path / "cfg.yml", "train_dataloader: {dataset: {transforms: {ops: [{type: Mine, k: 1}]}}}\n")
    seen = []

    def check(name, args):
        seen.append((name, args))

    cfg = load_config(path, check_op=check)
    assert seen == [("Mine", {"k": 1})] and cfg.train_dataloader.dataset.transforms.ops[0].type == "Mine"
    with pytest.raises(ConfigError, match="unknown transform 'Mine'"):
        load_config(path)  # the data layer's check, wired in dfine/__init__.py


def test_copied_recipe_names_the_published_files_its_includes_meant(tmp_path, capsys, monkeypatch):
    """A published recipe copied into the user's own folder keeps its relative includes: the one-line
    error names every include not found and the published file each meant, with the paths to give."""
    from dfine.cli import main
    from dfine.recipes import RECIPES_DIR
    mine = tmp_path / "myconf" / "dfine_hgnetv2_n_custom.yml"
    mine.parent.mkdir()
    mine.write_text((CONFIGS / "dfine/custom/dfine_hgnetv2_n_custom.yml").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["train", "-c", "myconf/dfine_hgnetv2_n_custom.yml"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for include, published in (("../../dataset/custom_detection.yml", "dataset/custom_detection.yml"),
                               ("../../runtime.yml", "runtime.yml"),
                               ("../include/dataloader.yml", "dfine/include/dataloader.yml")):
        assert f"'{include}'" in err and str(RECIPES_DIR / published) in err
    assert "give those paths" in err
    # an include with no published twin is named without a guess
    other = _write(tmp_path / "other.yml", "__include__: [../nowhere/base.yml]\n")
    msg = _error(other)
    assert "'../nowhere/base.yml' not found" in msg and "published" not in msg


def test_include_paths_given_as_the_error_says_load(tmp_path):
    """Following the error (absolute paths of the published files) gives a recipe that loads."""
    from dfine.recipes import RECIPES_DIR
    text = (CONFIGS / "dfine/custom/dfine_hgnetv2_n_custom.yml").read_text()
    for rel, published in (("../../dataset/custom_detection.yml", "dataset/custom_detection.yml"),
                           ("../../runtime.yml", "runtime.yml"),
                           ("../include/dataloader.yml", "dfine/include/dataloader.yml"),
                           ("../include/optimizer.yml", "dfine/include/optimizer.yml"),
                           ("../include/dfine_hgnetv2.yml", "dfine/include/dfine_hgnetv2.yml")):
        text = text.replace(rel, str(RECIPES_DIR / published))
    cfg = load_config(_write(tmp_path / "mine.yml", text))
    published = load_config(CONFIGS / "dfine/custom/dfine_hgnetv2_n_custom.yml")
    strip = dict(config_file="", key_sources=())
    assert dataclasses.replace(cfg, **strip) == dataclasses.replace(published, **strip)


def test_published_sets_are_scored_with_coco_100_detections_and_custom_ones_choose():
    """Objects365 val images can hold more than 100 boxes: the dense rule would have scored them with
    300 detections while the published numbers count 100. The COCO and Objects365 recipes say 100;
    custom (and CrowdHuman) recipes leave it to the set; a wrong value is one line."""
    for name in ("dfine/dfine_hgnetv2_s_coco.yml", "dfine/objects365/dfine_hgnetv2_l_obj365.yml",
                 "dfine/objects365/dfine_hgnetv2_m_obj2coco.yml"):
        assert load_config(CONFIGS / name).evaluator.max_dets == 100, name
    for name in ("dfine/custom/dfine_hgnetv2_n_custom.yml", "dfine/crowdhuman/dfine_hgnetv2_l_ch.yml"):
        assert load_config(CONFIGS / name).evaluator.max_dets is None, name
    custom = CONFIGS / "dfine/custom/dfine_hgnetv2_n_custom.yml"
    assert load_config(custom, ["evaluator.max_dets=500"]).evaluator.max_dets == 500
    with pytest.raises(ConfigError, match="evaluator.max_dets 0 must be a whole number of detections of 1 or more"):
        load_config(custom, ["evaluator.max_dets=0"])
