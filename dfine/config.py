"""Typed, frozen training configuration, loaded from YAML recipes.

A recipe is a YAML file whose keys are the published D-FINE keys. ``__include__`` lists other
YAML files (paths relative to the including file), read first and in order; later files and
then the including file override earlier values, dictionaries merging key by key and every
other value (lists included) being replaced. Command-line overrides (``epochs=2``,
``train_dataloader.total_batch_size=8``) come last.

The merged tree becomes a :class:`Config` of frozen dataclasses. Every key is checked: an
unknown key names the file it came from and the closest valid key; a wrong type names the
expected one. The model and criterion sections are the dataclasses of
:mod:`dfine.models.config` and :mod:`dfine.loss.config`, whose field names are the YAML keys.

Some settings are written in several places by the published recipes (``reg_max`` in the
decoder and the criterion, the stop epoch in the augmentation policy and the collate function,
``num_classes`` and friends in sections). Each is accepted wherever users write it but kept
once: the value from the latest source wins, and two different values from the same source
are an error naming both.

This module is the schema and depends on nothing of ours above it (models and loss configs
only). The data layer reads it, never the reverse: transform ops are checked by a function the
data layer provides (:func:`set_op_check`, wired once in ``dfine/__init__.py``, or
``load_config(..., check_op=...)``), and :func:`resolve_num_classes` takes anything with the
:class:`ClassList` attributes.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import (Any, Callable, Dict, Iterable, List, Literal, Mapping, Optional, Protocol, Sequence,
                    Tuple, Union, get_args, get_origin, get_type_hints)

import yaml

from dfine.errors import DfineError
from dfine.loss.config import CriterionConfig
from dfine.models.config import (DFINEConfig, DFINETransformerConfig, HGNetv2Config,
                                 HybridEncoderConfig, resolve)

__all__ = [
    "ConfigError", "Config", "DFINESection", "PostProcessorConfig", "EvaluatorConfig", "ParamGroup",
    "OptimizerConfig", "LrSchedulerConfig", "LrWarmupConfig", "EmaConfig", "ScalerConfig",
    "TransformOp", "PolicyConfig", "TransformsConfig", "DatasetConfig", "CollateConfig",
    "DataloaderConfig", "load_config", "parse_overrides", "model_config", "criterion_config",
    "resolve_num_classes", "source_of", "from_command_line", "with_image_size", "OpCheck", "set_op_check", "ClassList",
    "queries_override",
]

INCLUDE_KEY = "__include__"


class ConfigError(DfineError, ValueError):
    """A configuration problem; the message is one line naming the file and key."""


#: ``check(name, args)`` raises ``ValueError`` (one line) when the transform op ``name`` does not
#: exist or ``args`` (``None``: the name only) are not valid for it.
OpCheck = Callable[[str, Optional[Mapping[str, Any]]], None]

_op_check: Optional[OpCheck] = None


def set_op_check(check: Optional[OpCheck]) -> None:
    """Use ``check`` to validate transform ops in every :func:`load_config` that is not given one
    (the data layer's :func:`dfine.data.transforms.check_op`; ``None``: names are not checked)."""
    global _op_check
    _op_check = check


class ClassList(Protocol):
    """What :func:`resolve_num_classes` needs of a label map (:class:`dfine.data.coco.LabelMap`)."""

    ann_file: str

    @property
    def num_classes(self) -> int: ...

    def describe(self) -> str: ...


# --------------------------------------------------------------------------------------------
# Schema: one frozen dataclass per published section. Field names are the YAML keys.
# --------------------------------------------------------------------------------------------

def _internal(default: Any) -> Any:
    """A field that is not a YAML key (filled by the loader)."""
    return field(default=default, repr=False, compare=False, metadata={"yaml": False})


@dataclass(frozen=True)
class DFINESection:
    """Published ``DFINE``: which parts make the detector (only these are implemented)."""

    backbone: Literal["HGNetv2"] = "HGNetv2"
    encoder: Literal["HybridEncoder"] = "HybridEncoder"
    decoder: Literal["DFINETransformer"] = "DFINETransformer"


@dataclass(frozen=True)
class PostProcessorConfig:
    """Published ``DFINEPostProcessor``. ``num_classes``, ``use_focal_loss`` and
    ``remap_mscoco_category`` are the top-level settings."""

    num_top_queries: int = 300


@dataclass(frozen=True)
class EvaluatorConfig:
    """Published ``evaluator``: COCO box AP. ``max_dets``: the detections of an image AP and AR
    count; None: COCO's 100, or all the model gives when an evaluated image holds more than 100
    boxes (a dense set); the COCO and Objects365 recipes say 100, as the published evaluation counts."""

    type: Literal["CocoEvaluator"] = "CocoEvaluator"
    iou_types: Tuple[Literal["bbox"], ...] = ("bbox",)
    max_dets: Optional[int] = None

    def __post_init__(self) -> None:
        if self.max_dets is not None and (isinstance(self.max_dets, bool) or self.max_dets < 1):
            raise ConfigError(f"evaluator.max_dets {self.max_dets!r} must be a whole number of detections of 1 or "
                              f"more (or null: COCO's 100, all of them on a dense set)")


@dataclass(frozen=True)
class ParamGroup:
    """One optimiser parameter group: parameters whose name matches the regex ``params``
    (``re.search``) get these ``lr`` / ``weight_decay`` instead of the optimiser's."""

    params: str
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    betas: Optional[Tuple[float, float]] = None


@dataclass(frozen=True)
class OptimizerConfig:
    """Published ``optimizer``; parameters matched by no group use the top-level values."""

    type: Literal["AdamW", "Adam", "SGD"] = "AdamW"
    params: Tuple[ParamGroup, ...] = ()
    lr: float = 0.001
    betas: Tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    momentum: float = 0.0  # SGD only


@dataclass(frozen=True)
class LrSchedulerConfig:
    """Published ``lr_scheduler`` (stepped once per epoch once warm-up is over)."""

    type: Literal["MultiStepLR", "CosineAnnealingLR"] = "MultiStepLR"
    milestones: Tuple[int, ...] = ()  # MultiStepLR, epochs
    gamma: float = 0.1  # MultiStepLR
    T_max: Optional[int] = None  # CosineAnnealingLR, epochs
    eta_min: float = 0.0  # CosineAnnealingLR


@dataclass(frozen=True)
class LrWarmupConfig:
    """Published ``lr_warmup_scheduler``: linear ramp over ``warmup_duration`` iterations."""

    type: Literal["LinearWarmup"] = "LinearWarmup"
    warmup_duration: int = 0


@dataclass(frozen=True)
class EmaConfig:
    """Published ``ema``: decay ramps as ``decay * (1 - exp(-updates / warmups))``
    (constant when ``warmups`` is 0); the first ``start`` updates are skipped."""

    type: Literal["ModelEMA"] = "ModelEMA"
    decay: float = 0.9999
    warmups: int = 1000
    start: int = 0


@dataclass(frozen=True)
class ScalerConfig:
    """Published ``scaler``: the AMP gradient scaler (used when ``use_amp``)."""

    type: Literal["GradScaler"] = "GradScaler"
    enabled: bool = True


@dataclass(frozen=True)
class TransformOp:
    """One transform: YAML ``{type: Resize, size: [640, 640]}`` is
    ``TransformOp("Resize", (("size", (640, 640)),))``. See :mod:`dfine.data.transforms`."""

    type: str
    args: Tuple[Tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> Dict[str, Any]:
        """The arguments as keyword arguments."""
        return dict(self.args)


@dataclass(frozen=True)
class PolicyConfig:
    """Published ``transforms.policy``. ``stop_epoch``: the ops named in ``ops`` are skipped
    from the loader's stop epoch on (``collate_fn.stop_epoch``; the YAML ``policy.epoch`` is
    the same setting)."""

    name: Literal["default", "stop_epoch"] = "default"
    ops: Tuple[str, ...] = ()


@dataclass(frozen=True)
class TransformsConfig:
    """Published ``dataset.transforms``: ops applied in order; ``None`` means none."""

    type: Literal["Compose"] = "Compose"
    ops: Optional[Tuple[TransformOp, ...]] = None
    policy: PolicyConfig = field(default_factory=PolicyConfig)


@dataclass(frozen=True)
class DatasetConfig:
    """Published ``dataset``: a COCO-format images folder and annotation file."""

    type: Literal["CocoDetection", "VOCDetection"] = "CocoDetection"
    img_folder: str = ""
    ann_file: str = ""
    return_masks: bool = False
    transforms: TransformsConfig = field(default_factory=TransformsConfig)
    root: Optional[str] = None  # VOCDetection only (not supported for training)
    label_file: Optional[str] = None  # VOCDetection only


@dataclass(frozen=True)
class CollateConfig:
    """Published ``collate_fn``: stacks images and, before ``stop_epoch``, resizes each batch
    to a random size around ``base_size`` (the base size ``base_size_repeat`` times in the
    list; ``None``: no multi-scale). ``stop_epoch`` is also where the strong augmentations of
    the policy stop and the EMA restarts with ``ema_restart_decay``. ``min_size`` (not in the
    published recipes): multi-scale sizes under it are left out; the trainer sets it when the
    smallest would give fewer encoder tokens than there are queries."""

    type: Literal["BatchImageCollateFunction"] = "BatchImageCollateFunction"
    base_size: int = 640
    base_size_repeat: Optional[int] = None
    stop_epoch: Optional[int] = None
    ema_restart_decay: float = 0.9999
    min_size: Optional[int] = None


@dataclass(frozen=True)
class DataloaderConfig:
    """Published ``train_dataloader`` / ``val_dataloader``. Give ``total_batch_size`` (over
    all processes) or ``batch_size`` (per process)."""

    type: Literal["DataLoader"] = "DataLoader"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    shuffle: bool = False
    num_workers: int = 0
    drop_last: bool = False
    collate_fn: CollateConfig = field(default_factory=CollateConfig)
    total_batch_size: Optional[int] = None
    batch_size: Optional[int] = None
    pin_memory: bool = False

    def batch_size_per_rank(self, world_size: int = 1) -> int:
        """Images per process and step."""
        if self.batch_size is not None:
            return self.batch_size
        if self.total_batch_size is None:
            raise ConfigError("no batch size: set total_batch_size (all processes) or batch_size (per process) "
                              "in the dataloader section")
        if self.total_batch_size % world_size:
            raise ConfigError(f"total_batch_size={self.total_batch_size} is not divisible by the "
                              f"{world_size} processes; pick a multiple of {world_size}")
        return self.total_batch_size // world_size


@dataclass(frozen=True)
class Config:
    """A whole recipe. Field names are the published top-level YAML keys."""

    # what to build (published registry names; only these exist)
    task: Literal["detection"] = "detection"
    model: Literal["DFINE"] = "DFINE"
    criterion: Literal["DFINECriterion"] = "DFINECriterion"
    postprocessor: Literal["DFINEPostProcessor"] = "DFINEPostProcessor"
    # shared by model, criterion, post-processor and data
    num_classes: Optional[int] = None  # None: from the training annotations
    use_focal_loss: bool = True
    eval_spatial_size: Optional[Tuple[int, int]] = (640, 640)  # (height, width)
    remap_mscoco_category: bool = False
    category_ids_as_labels: bool = False
    # model and loss
    DFINE: DFINESection = field(default_factory=DFINESection)
    HGNetv2: HGNetv2Config = field(default_factory=HGNetv2Config)
    HybridEncoder: HybridEncoderConfig = field(default_factory=HybridEncoderConfig)
    DFINETransformer: DFINETransformerConfig = field(default_factory=DFINETransformerConfig)
    DFINECriterion: CriterionConfig = field(default_factory=CriterionConfig)
    DFINEPostProcessor: PostProcessorConfig = field(default_factory=PostProcessorConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    # optimisation
    epochs: Optional[int] = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_scheduler: Optional[LrSchedulerConfig] = None
    lr_warmup_scheduler: Optional[LrWarmupConfig] = None
    lrsheduler: Optional[Literal["flatcosine"]] = None  # flat-cosine schedule (sic, published key)
    lr_gamma: Optional[float] = None
    warmup_iter: Optional[int] = None
    flat_epoch: Optional[int] = None
    no_aug_epoch: Optional[int] = None  # epochs - no_aug_epoch is the stop epoch
    clip_max_norm: float = 0.0
    use_amp: bool = False
    scaler: ScalerConfig = field(default_factory=ScalerConfig)
    use_ema: bool = False
    ema: EmaConfig = field(default_factory=EmaConfig)
    # data
    train_dataloader: DataloaderConfig = field(default_factory=DataloaderConfig)
    val_dataloader: DataloaderConfig = field(default_factory=DataloaderConfig)
    # runtime
    seed: Optional[int] = None
    device: str = ""
    sync_bn: bool = False
    find_unused_parameters: bool = False
    print_freq: int = 10
    checkpoint_freq: int = 1
    output_dir: str = "./output"
    summary_dir: Optional[str] = None
    resume: Optional[str] = None
    tuning: Optional[str] = None
    # fine-tuning an Objects365 model into COCO: the Objects365 class (0-based) of each COCO label
    obj365_ids: Optional[Tuple[int, ...]] = None  # None: the published correspondence
    use_wandb: bool = False
    project_name: str = "D-FINE"
    exp_name: str = "baseline"
    # filled by the loader
    config_file: str = _internal("")
    key_sources: Tuple[Tuple[str, str], ...] = _internal(())

    @property
    def stop_epoch(self) -> Optional[int]:
        """Epoch from which strong augmentation and multi-scale stop (``None``: never)."""
        return self.train_dataloader.collate_fn.stop_epoch


# --------------------------------------------------------------------------------------------
# Reading YAML with includes, remembering which source set which key.
# --------------------------------------------------------------------------------------------

Path_ = Tuple[Union[str, int], ...]


@dataclass(frozen=True)
class _Source:
    label: str  # a file path, or "command line 'key=value'"
    rank: int  # later sources override earlier ones


@dataclass
class _Tree:
    """The merged YAML tree and, for every key path, the source that set it last."""

    data: Dict[str, Any] = field(default_factory=dict)
    origins: Dict[Path_, _Source] = field(default_factory=dict)
    rank: int = 0

    def merge(self, mapping: Mapping[str, Any], label: str, same_rank: bool = False) -> None:
        """Merge ``mapping`` over the tree; ``same_rank``: as recent as the previous merge."""
        self.rank += 0 if same_rank else 1
        _merge_into(self.data, mapping, (), _Source(label, self.rank), self.origins)

    def source(self, path: Path_, default: str) -> str:
        for end in range(len(path), 0, -1):
            if path[:end] in self.origins:
                return self.origins[path[:end]].label
        return default


def _merge_into(dst: Dict[str, Any], src: Mapping[str, Any], prefix: Path_, source: _Source,
                origins: Dict[Path_, _Source]) -> None:
    for key, value in src.items():
        if not isinstance(key, str):
            raise ConfigError(f"{source.label}: key {key!r} under '{_dotted(prefix) or 'top level'}' "
                              f"must be a string")
        path = prefix + (key,)
        origins[path] = source
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge_into(dst[key], value, path, source, origins)
        else:
            dst[key] = copy.deepcopy(value)
            _mark(value, path, source, origins)


def _mark(value: Any, path: Path_, source: _Source, origins: Dict[Path_, _Source]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            origins[path + (key,)] = source
            _mark(sub, path + (key,), source, origins)


def _display(path: Path) -> str:
    return os.path.normpath(str(path))


def _read_file(path: Path, tree: _Tree, stack: Tuple[Path, ...] = (), recipes: Optional[Path] = None) -> None:
    """Merge ``path`` into ``tree``: its includes first, in order, then its own keys (``recipes``: see
    :func:`load_config`)."""
    name = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {name} not found") from None
    except OSError as exc:
        raise ConfigError(f"config file {name} cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{name}: not valid YAML{where}: {problem}") from None
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: a config file must be a mapping of keys, got {type(data).__name__}")
    includes = data.pop(INCLUDE_KEY, None) or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{name}: {INCLUDE_KEY} must be a list of file paths, got {includes!r}")
    targets = [_include_path(path, include) for include in includes]
    missing = [(include, target) for include, target in zip(includes, targets) if not target.is_file()]
    if missing:
        raise ConfigError(_missing_includes(name, missing, recipes))
    for include, target in zip(includes, targets):
        if target.resolve() in stack:
            raise ConfigError(f"{name}: {INCLUDE_KEY} '{include}' includes itself (cycle)")
        _read_file(target, tree, stack + (path.resolve(),), recipes)
    tree.merge(data, name)


def _include_path(path: Path, include: str) -> Path:
    """Where ``include`` of the file at ``path`` is: relative to that file's folder unless absolute."""
    target = Path(os.path.expanduser(include))
    return target if target.is_absolute() else path.parent / target


def _missing_includes(name: str, missing: List[Tuple[str, Path]], recipes: Optional[Path]) -> str:
    """One line for the includes of ``name`` not found, naming the published files they most likely
    meant (a published recipe copied elsewhere keeps its relative includes)."""
    said = ", ".join(f"'{include}'" for include, _ in missing)
    where = ", ".join(_display(target) for _, target in missing)
    text = f"{name}: {INCLUDE_KEY} {said} not found (looked for {where})"
    twins = [_published_twin(include, recipes) for include, _ in missing]
    if all(twins):
        paths = ", ".join(str(t) for t in twins)
        text += (f"; the published {'file is' if len(twins) == 1 else 'files are'} {paths}: give "
                 f"{'that path' if len(twins) == 1 else 'those paths'} (or copy them beside yours)")
    return text


def _published_twin(include: str, recipes: Optional[Path]) -> Optional[Path]:
    """The one file under ``recipes`` whose path ends as ``include`` does after its leading ``..``
    (``../../dataset/custom_detection.yml`` -> ``RECIPES/dataset/custom_detection.yml``); ``None``
    when there is none or more than one."""
    parts = tuple(p for p in Path(include).parts if p not in ("..", "."))
    if recipes is None or not parts or not recipes.is_dir():
        return None
    found = [f for f in recipes.rglob(parts[-1]) if f.is_file() and f.parts[-len(parts):] == parts]
    return found[0] if len(found) == 1 else None


def parse_overrides(overrides: Iterable[str]) -> List[Tuple[str, Dict[str, Any]]]:
    """``["a.b=1", "c=[1, 2]"]`` -> ``[("a.b=1", {"a": {"b": 1}}), ...]``; values are YAML."""
    parsed = []
    for item in overrides:
        text = item.strip()
        key, sep, raw = text.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"command line override '{item}' must look like key.subkey=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"command line override '{item}': value is not valid YAML") from None
        for part in reversed(parts):
            value = {part: value}
        parsed.append((text, value))
    return parsed


# --------------------------------------------------------------------------------------------
# Settings the published recipes write in several places: one canonical key, accepted aliases.
# --------------------------------------------------------------------------------------------

def _same_setting() -> Tuple[Tuple[Path_, Tuple[Path_, ...]], ...]:
    stop = tuple(((split, "collate_fn", "stop_epoch"),
                  ((split, "dataset", "transforms", "policy", "epoch"),))
                 for split in ("train_dataloader", "val_dataloader"))
    return (
        (("DFINETransformer", "reg_max"), (("DFINECriterion", "reg_max"),)),
        (("num_classes",), (("DFINETransformer", "num_classes"), ("DFINECriterion", "num_classes"),
                            ("DFINEPostProcessor", "num_classes"))),
        (("eval_spatial_size",), (("HybridEncoder", "eval_spatial_size"),
                                  ("DFINETransformer", "eval_spatial_size"))),
        (("use_focal_loss",), (("DFINEPostProcessor", "use_focal_loss"),
                               ("DFINECriterion", "matcher", "use_focal_loss"))),
        (("remap_mscoco_category",), (("DFINEPostProcessor", "remap_mscoco_category"),
                                      ("train_dataloader", "dataset", "remap_mscoco_category"),
                                      ("val_dataloader", "dataset", "remap_mscoco_category"))),
    ) + stop


SAME_SETTING = _same_setting()


def _lookup(data: Any, path: Path_) -> Tuple[bool, Any]:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False, None
        data = data[key]
    return True, data


def _unify(tree: _Tree, canonical: Path_, aliases: Tuple[Path_, ...]) -> None:
    """Keep one value for a setting written under several keys (see module doc)."""
    present = []
    for path in (canonical,) + aliases:
        found, value = _lookup(tree.data, path)
        if found:
            present.append((path, value, tree.origins[path]))
    if not present:
        return
    latest = max(src.rank for _, _, src in present)
    winners = [p for p in present if p[2].rank == latest]
    first_path, first_value, first_src = winners[0]
    for path, value, src in winners[1:]:
        if value != first_value:
            a, b = f"{_dotted(first_path)}={first_value!r}", f"{_dotted(path)}={value!r}"
            both = f"{src.label}: {a} and {b}" if src.label == first_src.label else \
                f"{a} ({first_src.label}) and {b} ({src.label})"
            raise ConfigError(f"{both} are one setting and disagree; set {_dotted(canonical)} only")
    for path in aliases:
        found, _ = _lookup(tree.data, path)
        if found:
            del _lookup(tree.data, path[:-1])[1][path[-1]]
    parent = tree.data
    for key in canonical[:-1]:
        if not isinstance(parent.get(key), dict):
            parent[key] = {}
        parent = parent[key]
    parent[canonical[-1]] = first_value
    tree.origins[canonical] = first_src


def _alias_names(prefix: Path_) -> List[str]:
    return [a[-1] for _, aliases in SAME_SETTING for a in aliases if a[:-1] == prefix]


# --------------------------------------------------------------------------------------------
# Typed conversion of the merged tree.
# --------------------------------------------------------------------------------------------

_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclass(frozen=True)
class _Ctx:
    tree: _Tree
    default_source: str
    check_op: Optional[OpCheck] = None

    def fail(self, path: Path_, message: str) -> ConfigError:
        error = ConfigError(f"{self.tree.source(path, self.default_source)}: {message}")
        error.key = path
        return error


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_PLURAL = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return "any value"
    if origin is Union:
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, Tuple):
        item = _PLURAL.get(args[0]) or f"items ({_type_name(args[0])})"
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {item}"
        return f"a list of {len(args)} {item}"
    if origin in (dict, Dict):
        return f"a mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping of keys"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, path: Path_, ctx: _Ctx) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists -> tuples)."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return _freeze(value)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path, ctx)
            except ConfigError as exc:
                if getattr(exc, "key", None) != path:  # a problem inside the value: report it
                    raise
        raise _type_error(tp, value, path, ctx)
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise _type_error(tp, value, path, ctx)
    if dataclasses.is_dataclass(tp):
        if tp is TransformOp:
            return _build_op(value, path, ctx)
        if not isinstance(value, dict):
            raise _type_error(tp, value, path, ctx)
        return _build(tp, value, path, ctx)
    if origin in (tuple, Tuple):
        return _convert_tuple(tp, args, value, path, ctx)
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise _type_error(tp, value, path, ctx)
        return {_convert(args[0], k, path, ctx): _convert(args[1], v, path + (k,), ctx) for k, v in value.items()}
    return _convert_scalar(tp, value, path, ctx)


def _convert_tuple(tp: Any, args: tuple, value: Any, path: Path_, ctx: _Ctx) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise _type_error(tp, value, path, ctx)
    if len(args) == 2 and args[1] is Ellipsis:
        item_types = [args[0]] * len(value)
    elif len(args) == len(value):
        item_types = list(args)
    else:
        raise _type_error(tp, value, path, ctx)
    return tuple(_convert(t, v, path + (i,), ctx) for i, (t, v) in enumerate(zip(item_types, value)))


def _convert_scalar(tp: Any, value: Any, path: Path_, ctx: _Ctx) -> Any:
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
    if tp is str and isinstance(value, str):
        return value
    raise _type_error(tp, value, path, ctx)


def _type_error(tp: Any, value: Any, path: Path_, ctx: _Ctx) -> ConfigError:
    return ctx.fail(path, f"{_dotted(path)} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _build(cls: type, data: Dict[str, Any], path: Path_, ctx: _Ctx) -> Any:
    """Build dataclass ``cls`` from the YAML mapping ``data`` found at ``path``."""
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.init and f.metadata.get("yaml", True)}
    for key in data:
        if key not in known:
            raise _unknown_key(key, list(known) + _alias_names(path), path, ctx)
    kwargs = {key: _convert(hints[key], value, path + (key,), ctx) for key, value in data.items()}
    missing = [f.name for f in known.values() if f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ctx.fail(path, f"{_dotted(path + (missing[0],))} is required")
    return cls(**kwargs)


def _unknown_key(key: str, valid: Sequence[str], path: Path_, ctx: _Ctx) -> ConfigError:
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    hint = f"did you mean '{_dotted(path + (close[0],))}'?" if close else f"valid keys here: {', '.join(sorted(valid))}"
    return ctx.fail(path + (key,), f"unknown key '{_dotted(path + (key,))}'; {hint}")


def _build_op(value: Any, path: Path_, ctx: _Ctx) -> TransformOp:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ctx.fail(path, f"{_dotted(path)} must be a mapping with a 'type' (e.g. {{type: Resize, size: [640, 640]}}),"
                             f" got {value!r}")
    args = tuple((k, _freeze(v)) for k, v in value.items() if k != "type")
    if ctx.check_op is not None:
        try:
            ctx.check_op(value["type"], dict(args))
        except ValueError as exc:
            raise ctx.fail(path, f"{_dotted(path)}: {exc}") from None
    return TransformOp(value["type"], args)


# --------------------------------------------------------------------------------------------
# Checks across sections and derived values.
# --------------------------------------------------------------------------------------------

def _check(cfg: Config, ctx: _Ctx) -> Config:
    cfg = replace(cfg, DFINECriterion=replace(
        cfg.DFINECriterion, matcher=replace(cfg.DFINECriterion.matcher, use_focal_loss=cfg.use_focal_loss)))
    cfg = _derive_stop_epoch(cfg, ctx)
    if cfg.remap_mscoco_category and cfg.category_ids_as_labels:
        raise ctx.fail(("category_ids_as_labels",), "remap_mscoco_category and category_ids_as_labels cannot both "
                                                    "be true; pick the label space of your checkpoint")
    for split in ("train_dataloader", "val_dataloader"):
        loader: DataloaderConfig = getattr(cfg, split)
        _check_loader(loader, split, ctx)
    for i, group in enumerate(cfg.optimizer.params):
        try:
            re.compile(group.params)
        except re.error as exc:
            raise ctx.fail(("optimizer", "params", i), f"optimizer.params[{i}].params is not a valid regex "
                                                       f"({exc}): {group.params!r}") from None
    return cfg


def _check_loader(loader: DataloaderConfig, split: str, ctx: _Ctx) -> None:
    if loader.total_batch_size is not None and loader.batch_size is not None:
        raise ctx.fail((split, "batch_size"), f"{split} sets both total_batch_size and batch_size; keep one")
    if loader.dataset.return_masks:
        raise ctx.fail((split, "dataset", "return_masks"), f"{split}.dataset.return_masks: true is not supported "
                                                           f"(D-FINE detects boxes); set it to false")
    if ctx.check_op is None:
        return
    for name in loader.dataset.transforms.policy.ops:
        try:
            ctx.check_op(name, None)
        except ValueError as exc:
            hint = str(exc).partition("; ")[2]
            raise ctx.fail((split, "dataset", "transforms", "policy", "ops"),
                           f"{split}.dataset.transforms.policy.ops names unknown op '{name}'; {hint}") from None


def _derive_stop_epoch(cfg: Config, ctx: _Ctx) -> Config:
    """``no_aug_epoch`` (flat-cosine recipes) is ``epochs - stop_epoch``: derive or check."""
    if cfg.no_aug_epoch is None:
        return cfg
    if cfg.epochs is None:
        raise ctx.fail(("no_aug_epoch",), "no_aug_epoch needs epochs to be set")
    derived = cfg.epochs - cfg.no_aug_epoch
    stop = cfg.train_dataloader.collate_fn.stop_epoch
    if stop is None:
        collate = replace(cfg.train_dataloader.collate_fn, stop_epoch=derived)
        return replace(cfg, train_dataloader=replace(cfg.train_dataloader, collate_fn=collate))
    if stop != derived:
        where = ctx.tree.source(("train_dataloader", "collate_fn", "stop_epoch"), ctx.default_source)
        raise ctx.fail(("no_aug_epoch",), f"epochs - no_aug_epoch = {cfg.epochs} - {cfg.no_aug_epoch} = {derived} "
                                          f"disagrees with train_dataloader.collate_fn.stop_epoch={stop} ({where}); "
                                          f"they are one setting, set one of them")
    return cfg


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def queries_override(n: Union[int, str] = "N") -> str:
    """The ``-u`` items that give the model ``n`` queries and keep as many detections an image (dense
    scenes: images holding more boxes than the published 300)."""
    return f"-u DFINETransformer.num_queries={n} DFINEPostProcessor.num_top_queries={n}"


def load_config(path: Union[str, os.PathLike], overrides: Sequence[str] = (), *,
                check_op: Optional[OpCheck] = None, recipes: Optional[Path] = None) -> Config:
    """Load the recipe at ``path`` (with its ``__include__`` files) and apply ``overrides``
    (``["epochs=2", "train_dataloader.total_batch_size=8"]``, values read as YAML). Transform
    ops are checked with ``check_op`` (default: the one given to :func:`set_op_check`).
    ``recipes``: the published recipes' folder; an include not found then names the published file
    it most likely meant (a published recipe copied elsewhere keeps its relative includes).

    Raises :class:`ConfigError` (one line naming the file and key) on any unknown key, wrong
    type, missing include or contradictory repeated setting.
    """
    tree = _Tree()
    top = Path(path)
    _read_file(top, tree, recipes=recipes)
    for i, (label, mapping) in enumerate(parse_overrides(overrides)):
        tree.merge(mapping, f"command line '{label}'", same_rank=i > 0)
    for canonical, aliases in SAME_SETTING:
        _unify(tree, canonical, aliases)
    ctx = _Ctx(tree, _display(top), check_op if check_op is not None else _op_check)
    cfg = _check(_build(Config, tree.data, (), ctx), ctx)
    sources = tuple(sorted((_dotted(p), s.label) for p, s in tree.origins.items()))
    cfg = replace(cfg, config_file=_display(top), key_sources=sources)
    if cfg.eval_spatial_size is not None and from_command_line(cfg, "eval_spatial_size"):
        cfg = with_image_size(cfg, cfg.eval_spatial_size)  # -u eval_spatial_size=... / --imgsz: train at it too
    return cfg


def image_size(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """``(height, width)`` of ``size`` (an int, or two); a :class:`ConfigError` when a side is not a
    positive multiple of 32 (the model's largest stride)."""
    hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(hw) != 2 or any(s < 32 or s % 32 for s in hw):
        from dfine.text import multiples_of_32_near
        raise ConfigError(f"image size {size} (--imgsz or eval_spatial_size): each side must be a positive multiple of "
                          f"32 (e.g. {multiples_of_32_near(hw)})")
    return hw  # type: ignore[return-value]


def with_image_size(cfg: Config, size: Union[int, Sequence[int]]) -> Config:
    """``cfg`` training and evaluating at ``size`` (an int, or ``(height, width)``): the size of
    every ``Resize`` of the train and val pipelines, the multi-scale ``base_size`` (so the range
    0.75x..1.25x around it follows) and ``eval_spatial_size``. A :class:`ConfigError` when a side
    is not a positive multiple of 32 (the model's largest stride). ``--imgsz`` and ``-u
    eval_spatial_size=...`` go through here, so the recipe's transform list needs no rewriting."""
    hw = image_size(size)

    def resized(loader: DataloaderConfig) -> DataloaderConfig:
        tf = loader.dataset.transforms
        ops = None if tf.ops is None else tuple(
            replace(op, args=tuple((k, hw if k == "size" else v) for k, v in op.args)) if op.type == "Resize" else op
            for op in tf.ops)
        dataset = replace(loader.dataset, transforms=replace(tf, ops=ops))
        return replace(loader, dataset=dataset, collate_fn=replace(loader.collate_fn, base_size=max(hw)))

    return replace(cfg, eval_spatial_size=hw, train_dataloader=resized(cfg.train_dataloader),
                   val_dataloader=resized(cfg.val_dataloader))


def source_of(cfg: Config, key: str) -> str:
    """The file (or command line) that set the dotted ``key``; the config file if unset."""
    for name, label in cfg.key_sources:
        if name == key:
            return label
    return cfg.config_file or "config"


def from_command_line(cfg: Config, key: str) -> bool:
    """Whether the dotted ``key`` was set on the command line (``-u``, ``--imgsz``, ``--data``'s own
    settings), not by a recipe file: a setting the user chose, which notes about the recipe leave alone."""
    return source_of(cfg, key).startswith("command line")


def model_config(cfg: Config) -> DFINEConfig:
    """The detector's :class:`DFINEConfig`, resolved and checked by
    :func:`dfine.models.config.resolve`. ``num_classes`` must be known (see
    :func:`resolve_num_classes`)."""
    if cfg.num_classes is None:
        raise ConfigError(f"{cfg.config_file or 'config'}: num_classes is not set; set it, or build the training "
                          f"dataset and call dfine.config.resolve_num_classes(cfg, dataset.label_map)")
    model = DFINEConfig(backbone=cfg.HGNetv2, encoder=cfg.HybridEncoder, decoder=cfg.DFINETransformer,
                        num_classes=cfg.num_classes, eval_spatial_size=cfg.eval_spatial_size)
    try:
        return resolve(model)
    except ValueError as exc:
        raise ConfigError(f"{cfg.config_file or 'config'}: {exc}") from None


def criterion_config(cfg: Config) -> CriterionConfig:
    """The loss settings. ``reg_max`` is ``model_config(cfg).decoder.reg_max`` and the class
    count ``cfg.num_classes``; the matcher's ``use_focal_loss`` is ``cfg.use_focal_loss``."""
    return cfg.DFINECriterion


def resolve_num_classes(cfg: Config, label_map: ClassList, left_out: Optional[Mapping[int, str]] = None) -> Config:
    """``cfg`` with ``num_classes`` taken from the training annotations when unset; a
    :class:`ConfigError` with both numbers when the config says otherwise. ``left_out``: declared
    categories not made classes (``{id: name}``, a Roboflow placeholder), named in that error (the
    published code counts them: its num_classes is one more)."""
    found = label_map.num_classes
    if cfg.num_classes is None:
        return replace(cfg, num_classes=found)
    if cfg.num_classes != found and label_map.mode == "mscoco":  # a walk was told 'set num_classes: 80' and
        # trained its hockey goals as COCO's 'person'
        raise ConfigError(f"{source_of(cfg, 'num_classes')}: num_classes={cfg.num_classes}, but "
                          f"remap_mscoco_category: true ({source_of(cfg, 'remap_mscoco_category')}) makes COCO's 80 "
                          f"categories the classes of {label_map.ann_file}; for a dataset of your own categories set "
                          f"remap_mscoco_category: false (num_classes then counts its categories)")
    if cfg.num_classes != found:
        dropped = "".join(f", not the declared but unused {name!r} (id {cid}), a placeholder left out"
                          for cid, name in sorted((left_out or {}).items()))
        background = (" (D-FINE has no background class: count your categories only)"
                      if cfg.num_classes == found + 1 and not left_out else "")
        raise ConfigError(f"{source_of(cfg, 'num_classes')}: num_classes={cfg.num_classes} but {label_map.ann_file} "
                          f"has {found} {'class' if found == 1 else 'classes'} ({label_map.describe()}{dropped}); "
                          f"set num_classes: {found}{background} or remove it to take it from the annotations")
    return cfg

