"""What a training run prints before its first step and after its last: the data as read (images,
boxes, background images, classes and what was dropped), the model, device, precision, schedule
and output folder; then the best and last AP, the time, where the best weights are and the exact
commands to evaluate, export and predict with them."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from dfine.text import counted

__all__ = ["dataset_line", "classes_line", "parameters_line", "images_folder", "next_commands", "duration",
           "user_overrides", "evaluation_key", "unmeasured_line", "DataCommand"]


def dataset_line(ds: Any) -> str:
    """``"120 images, 830 boxes, 4 background images (ann.json)"``."""
    counts = ds.boxes_per_image()
    return (f"{counted(len(ds), 'image')}, {counted(int(counts.sum()), 'box', 'boxes')}, "
            f"{counted(int((counts == 0).sum()), 'background image')} ({ds.ann_file})")


def classes_line(ds: Any, show: int = 10) -> str:
    """The classes, how category ids became labels, and the declared categories left out."""
    lm = ds.label_map
    # names that read as numbers (a digits dataset: category 1 named '0') or hold a comma are quoted
    quote = any(n.strip().lstrip("-").isdigit() or "," in n for n in lm.names)
    shown = [repr(n) if quote else n for n in lm.names[:show] if n]
    names = ", ".join(shown) + (f", ... (+{len(lm.names) - show})" if len(lm.names) > show else "")
    ids = [i for i in lm.category_ids if i >= 0]
    if lm.mode == "mscoco":
        how = "the 80 COCO categories, ids 1..90 -> labels 0..79 (remap_mscoco_category)"
    elif lm.mode == "category_id":
        how = f"category ids used as labels (0..{len(lm.category_ids) - 1})"
    else:
        how = f"category ids {_ids(ids)} -> labels 0..{len(ids) - 1} in id order"
    declared = getattr(ds, "declared_categories", {})
    dropped = [f"'{name}' (id {cid})" for cid, name in sorted(declared.items()) if cid not in lm.category_ids]
    line = f"{counted(lm.num_classes, 'class', 'classes')}: {names}; {how}"
    if dropped:
        unused = counted(len(dropped), "declared but unused category", "declared but unused categories")
        line += (f"; left out {unused} "
                 f"{', '.join(dropped[:5])} (a placeholder: supercategory of the others)")
    return line


def unmeasured_line(train: Any, val: Any) -> Optional[str]:
    """A line naming the classes with boxes in ``train`` and none in ``val`` (their AP cannot be
    measured, and the run's AP averages the others), one naming those with val boxes and none in
    ``train`` (the model cannot learn them) and one naming those with a box in neither (named only:
    the evaluation's table listed 18 classes not in the val set after the start named 17, a walk);
    ``None`` when every class has boxes in both (:func:`~dfine.text.class_coverage_notes`). When no class has
    boxes in both, one warning instead (:func:`~dfine.text.no_class_in_common`: a walk's val classes renamed in
    its export, trained to AP 0 after two notes)."""
    from dfine.text import class_coverage_notes, no_class_in_common
    counts = (train.label_map.names, train.boxes_per_class(), val.boxes_per_class())
    disjoint = no_class_in_common(*counts)
    return f"warning: {disjoint}" if disjoint else "\n".join(class_coverage_notes(*counts)) or None


def _ids(ids: Sequence[int]) -> str:
    if ids and list(ids) == list(range(ids[0], ids[0] + len(ids))):
        return f"{ids[0]}..{ids[-1]}"
    return ", ".join(map(str, ids[:8])) + (" ..." if len(ids) > 8 else "")


def parameters_line(model: torch.nn.Module) -> str:
    """``"3.76 M parameters (3.70 M trainable)"``."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{total / 1e6:.2f} M parameters ({trainable / 1e6:.2f} M trainable)"


def duration(seconds: float) -> str:
    """``"1h02m"``, ``"3m12s"`` or ``"45s"``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def user_overrides(cfg: Any, leave_out: Sequence[str] = ("resume", "tuning", "output_dir", "summary_dir",
                                                         "epochs")) -> List[str]:
    """The ``key=value`` items the command line gave (``-u`` and options), in order, without
    the keys of ``leave_out``."""
    seen: List[str] = []
    for _, label in cfg.key_sources:
        if label.startswith("command line '") and label.endswith("'"):
            item = label[len("command line '"):-1]
            if item not in seen and item.split("=", 1)[0].split(".")[0] not in leave_out:
                seen.append(item)
    return seen


# the keys an evaluation of the weights needs from the training command line
_EVAL_KEYS = ("val_dataloader", "eval_spatial_size", "num_classes", "remap_mscoco_category", "category_ids_as_labels",
              "use_focal_loss", "HGNetv2", "HybridEncoder", "DFINETransformer", "DFINEPostProcessor", "device")


def evaluation_key(item: str) -> bool:
    """Whether the ``key=value`` override ``item`` changes what an evaluation of the weights builds
    or reads (model, input size, classes, val set, device) rather than only how they were trained
    (the backbone's ImageNet start, ``HGNetv2.pretrained``, is of no use to weights that exist)."""
    key = item.split("=", 1)[0].strip()
    return key.split(".")[0] in _EVAL_KEYS and key not in ("HGNetv2.pretrained", "HGNetv2.local_model_dir")


def images_folder(ds: Any, train: Any = None) -> str:
    """What ``dfine predict`` is pointed at for the dataset ``ds``'s images (a YOLO conversion's
    ``img_folder`` is the parent of ``train/`` and ``val/``; predict wants the val one): see
    :func:`dfine.data.convert.predict_target` (``train``: the training set, whose images the model
    has seen)."""
    from dfine.data.convert import predict_target

    others = [Path(train.image_path(i)) for i in range(len(train))] if train is not None else []
    return str(predict_target([Path(ds.image_path(i)) for i in range(len(ds))], Path(ds.img_folder), others))


def eval_file_name(split: str = "val") -> str:
    """The name of an evaluation's metrics file: ``eval.json``, ``eval_test.json`` for the test split
    (beside a checkpoint; an export's is this name after the model file's, ``model.onnx.eval.json``)."""
    return "eval.json" if split == "val" else f"eval_{split}.json"


@dataclasses.dataclass(frozen=True)
class DataCommand:
    """A ``dfine train --data`` run in its user's own options: the resume and evaluation hints are
    written with them instead of the recipe and the dozen ``-u`` keys ``--data`` stands for.

    ``data``: the dataset folder or file (absolute); ``options``: the run's other options but its
    weights, output folder and ``-u`` items (``-r``, ``-t``, ``--auto-resume``, ``-o``); ``updates``:
    its ``-u`` items; ``eval_options``: what an evaluation of its weights needs (``--names``,
    ``--imgsz``, ``-d`` and the ``-u`` items of model, input size and val set); ``split``: what an
    evaluation runs on; ``python``: a :func:`dfine.train` call's, whose resume hint is that call again.
    """

    data: str
    options: Tuple[str, ...] = ()
    updates: Tuple[str, ...] = ()
    eval_options: Tuple[str, ...] = ()
    split: str = "val"  # the split an evaluation (dfine eval --split) runs on
    python: bool = False  # dfine.train(...): resumed by calling it again (a notebook walk was given a command line)

    @property
    def eval_file(self) -> str:
        """The name of an evaluation's metrics file (:func:`eval_file_name` of its split)."""
        return eval_file_name(self.split)

    def resume(self, output_dir: Path) -> str:
        """``dfine train --data DATA ... -o OUTPUT_DIR -u ... -r OUTPUT_DIR/last.pth``, paths absolute."""
        out = Path(output_dir).resolve()
        if self.python:
            return f"the same dfine.train(...) call with resume={str(out / 'last.pth')!r}"
        updates = ["-u", *self.updates] if self.updates else []
        return shlex.join(["dfine", "train", "--data", self.data, *self.options, "-o", str(out), *updates,
                           "-r", str(out / "last.pth")])

    def evaluate(self, weights: Path) -> str:
        """``dfine eval -r WEIGHTS --data DATA ...``: its ``eval.json`` goes beside the weights."""
        return shlex.join(["dfine", "eval", "-r", os.path.abspath(weights), "--data", self.data, *self.eval_options])


def data_command(data: Any, model: str, options: Sequence[Tuple[str, Any]] = (), flags: Sequence[str] = (),
                 updates: Sequence[str] = (), split: str = "val") -> DataCommand:
    """The :class:`DataCommand` of a ``--data`` run: ``options``, ``(flag, value)`` pairs of what was
    given (a value of None: not given; a list: comma-joined, as ``--names`` takes it; ``--imgsz``'s
    ``[H, W]``: two words), ``flags`` the
    switches given (``--use-amp``), ``updates`` the ``-u`` items. An evaluation keeps ``--names``,
    ``--imgsz``, ``-d`` and the ``-u`` items that change the model, input size or val set."""
    given = [(flag, _option_words(flag, value)) for flag, value in options if value is not None]
    evaluation = [token for flag, words in given if flag in ("--names", "--imgsz", "-d") for token in (flag, *words)]
    if any(map(evaluation_key, updates)):
        evaluation += ["-u", *[u for u in updates if evaluation_key(u)]]
    return DataCommand(str(Path(data).expanduser().resolve()),
                       ("--model", model, *[token for flag, words in given for token in (flag, *words)], *flags),
                       tuple(updates), tuple(evaluation), split)


def _option_words(flag: str, value: Any) -> List[str]:
    """An option's value as command-line words: ``--imgsz [H, W]`` two of them, another list one,
    comma-joined (``--names a,b``)."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value] if flag == "--imgsz" else [",".join(map(str, value))]
    return [str(value)]


def tiled_commands(commands: Dict[str, str], weights: Path, tiles: Mapping[str, Any],
                   conf: Optional[float] = None) -> Dict[str, str]:
    """:func:`next_commands` of a run trained on tiles (``tiles``: the ``info.tiles`` of its val file,
    :func:`dfine.data.tile.tiles_info`): predict on the source's val images with ``--slice`` at the
    tiles' size, and ``whole`` evaluates the weights on the source's whole images so (with the
    ``--names`` the tiling was given, for a source that names no classes)."""
    w = shlex.quote(os.path.abspath(weights))
    size = [int(v) for v in tiles.get("size", ())]
    sliced = "--slice" + "".join(f" {v}" for v in (size[:1] if len(set(size)) == 1 else size))
    if tiles.get("overlap", 0.2) != 0.2:  # predict's default otherwise
        sliced += f" --overlap {tiles['overlap']:g}"
    images = shlex.quote(str(tiles["images"])) if tiles.get("images") else "IMAGES"
    threshold = f" --conf {conf:.2f}" if conf is not None else ""
    out = dict(commands)
    out["predict"] = f"dfine predict -m {w} {images} {sliced}{threshold}"
    if tiles.get("source"):
        names = tiles.get("names")
        named = f" --names {shlex.quote(','.join(map(str, names)))}" if isinstance(names, list) and names else ""
        out["whole"] = f"dfine eval -r {w} --data {shlex.quote(str(tiles['source']))} {sliced}{named}"
    return out


def python_calls(commands: Dict[str, str], weights: Path, command: DataCommand, conf: Optional[float] = None,
                 tiles: Optional[Mapping[str, Any]] = None) -> Dict[str, str]:
    """:func:`next_commands` (and :func:`tiled_commands`) of a :func:`dfine.train` call as the Python calls that
    do the same (a notebook walk was given command lines): ``dfine.evaluate(...)``, ``dfine.export_model(...)``,
    ``dfine.Detector(...)``; a command whose options the call cannot take (``-u`` items, a non-square
    ``--imgsz``) stays a command line."""
    w = os.path.abspath(weights)
    tile = [int(v) for v in (tiles or {}).get("size", ())]
    sliced = (f", slice={tile[0] if len(set(tile)) == 1 else tuple(tile)!r}") if tile else ""
    out = dict(commands)
    options, words = {}, list(command.eval_options)
    while words and words[0] in ("--names", "--imgsz", "-d") and len(words) > 1 and not words[1].startswith("-"):
        flag, value = words.pop(0), words.pop(0)
        options[{"--names": "names", "--imgsz": "imgsz", "-d": "device"}[flag]] = int(value) if flag == "--imgsz" \
            else value
    if not words:  # every option one of dfine.evaluate's
        split = ", split='test'" if command.split == "test" else ""
        given = "".join(f", {k}={v!r}" for k, v in options.items())
        out["eval"] = f"dfine.evaluate({w!r}, {command.data!r}{given}{split})"
    out["export"] = f"dfine.export_model({w!r}, 'onnx')"
    threshold = f", conf={conf:.2f}" if conf is not None else ""
    out["predict"] = f"dfine.Detector({w!r}{threshold}{sliced})(IMAGE)[0].plot()"
    if "whole" in out and tiles and tiles.get("source"):
        names = tiles.get("names")
        named = f", names={','.join(map(str, names))!r}" if isinstance(names, list) and names else ""
        out["whole"] = f"dfine.evaluate({w!r}, {str(tiles['source'])!r}{sliced}{named})"
    return out


def next_commands(cfg: Any, weights: Path, images: Optional[str],
                  command: Optional[DataCommand] = None, conf: Optional[float] = None) -> Dict[str, str]:
    """The commands to evaluate, export and predict with ``weights``. Every path in them is
    absolute (the recipe, the weights, the val set's annotation file and images), so they work
    as printed from any folder; the evaluation writes its ``eval.json`` beside the weights. A run
    of ``dfine train --data`` (``command``) is evaluated with ``dfine eval --data`` in its own options;
    ``conf``: the score threshold to predict with (the best F1 on val), else predict's default."""
    w = shlex.quote(os.path.abspath(weights))
    pictures = shlex.quote(os.path.abspath(images)) if images else "IMAGES"
    threshold = f" --conf {conf:.2f}" if conf is not None else ""
    rest = {"export": f"dfine export -r {w} --format onnx", "predict": f"dfine predict -m {w} {pictures}{threshold}"}
    if command is not None:
        return {"eval": command.evaluate(weights), **rest}
    val = cfg.val_dataloader.dataset
    data = [f"val_dataloader.dataset.{key}={json.dumps(os.path.abspath(value))}"
            for key, value in (("ann_file", val.ann_file), ("img_folder", val.img_folder)) if value]
    keys = {o.split("=", 1)[0] for o in data}
    overrides = [o for o in user_overrides(cfg) if evaluation_key(o)
                 and o.split("=", 1)[0] not in keys] + data
    # -o: eval.json beside the weights, not in ./output/RECIPE of whatever folder it is run from
    ev = (f"dfine eval -c {shlex.quote(os.path.abspath(cfg.config_file))} -r {w} "
          f"-o {shlex.quote(os.path.dirname(os.path.abspath(weights)))}")
    if overrides:
        ev += " -u " + " ".join(shlex.quote(o) for o in overrides)
    return {"eval": ev, **rest}
