"""The one place a checkpoint is read, written, converted, remapped or turned into a model.

One schema for every file dfine writes and reads (``torch.save`` of a plain dict, readable with
``weights_only=True``):

=====================  ===========================================================================
``model``              state dict of the model (the published key)
``ema``                ``{"module": state dict, "updates": int}``, the EMA copy (published key);
                       a checkpoint is *used* through ``ema.module`` when present, else ``model``
``model_config``       the resolved :class:`~dfine.models.config.DFINEConfig` as a dict
``class_names``        ``[num_classes]`` name of each model label
``category_ids``       ``[num_classes]`` dataset category id of each model label
``input_size``         ``[height, width]`` the model was evaluated at
``recommended_conf``   the score threshold with the best F1 on the training run's val set, measured
                       on the weights this file holds (``dfine predict``'s default; absent or None
                       when the run measured none)
``tiles``              ``{"size": [height, width], "overlap": f}``: the tiles of ``dfine data tile``
                       the model was trained on (absent otherwise): used unsliced on larger images,
                       predict and eval say so
training state         training checkpoints only: ``config`` (the whole training recipe), ``optimizer``,
                       ``scaler``, the schedulers, ``last_epoch``, ``step``, ``best``, ``rng`` ...
=====================  ===========================================================================

A published checkpoint has ``model`` (and ``ema``) only; the architecture is then recognised from the
weights' shapes (:func:`infer_model_name`) and 80-class models get the COCO names and ids. Older
checkpoints of ours (the training recipe under ``config``, or the model config under ``config``)
are read too. A ``source`` is a path or a zoo name (downloaded once into the cache by
:mod:`dfine.hub`).
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .errors import DfineError
from .text import counted, first_few
from .models.config import (MODEL_NAMES, DFINEConfig, DFINETransformerConfig, HGNetv2Config,
                            HybridEncoderConfig, apply_overrides, preset, resolve)

__all__ = ["DERIVED", "OBJ365_TO_COCO", "LoadedModel", "RUN_FILE_STAGES", "deploy_metadata", "extract_ema", "head_names",
           "infer_model_name", "load_checkpoint", "load_model", "load_state", "load_tuning", "model_state",
           "parse_imgsz", "read_checkpoint", "remove_stale_temporaries", "resolve_source", "save_atomic",
           "tuning_state"]

PathLike = Union[str, os.PathLike]
DEFAULT_INPUT_SIZE = (640, 640)
# Buffers that are a pure function of the model's input size: recomputed, never a reason to fail.
DERIVED = ("decoder.anchors", "decoder.valid_mask")
# Training-only weights: a model built without denoising ignores them, and a model with denoising
# keeps its initial embedding when a checkpoint has none (e.g. one saved from a deploy-form model).
_OPTIONAL = DERIVED + ("decoder.denoising_class_embed.weight",)
# Objects365 class (0-based, without the background row) of each of the 80 COCO labels: the
# published Objects365 -> COCO correspondence used to carry classification heads across.
OBJ365_TO_COCO: Tuple[int, ...] = (
    0, 46, 5, 58, 114, 55, 116, 65, 21, 40, 176, 127, 249, 24, 56, 139, 92, 78, 99, 96,
    144, 295, 178, 180, 38, 39, 13, 43, 120, 219, 148, 173, 165, 154, 137, 113, 145, 146, 204, 8,
    35, 10, 88, 84, 93, 26, 112, 82, 265, 104, 141, 152, 234, 143, 150, 97, 2, 50, 25, 75,
    98, 153, 37, 73, 115, 132, 106, 61, 163, 134, 277, 81, 133, 18, 94, 30, 169, 70, 328, 226,
)


# ---- reading and writing files ----------------------------------------------------------------

def resolve_source(source: PathLike) -> Tuple[Path, Optional[Any]]:
    """A checkpoint path for ``source`` and its zoo entry: an existing file (entry ``None``), or
    a zoo detector name, downloaded and cached by :func:`dfine.hub.fetch_weights`."""
    path = Path(source)
    if path.is_file():
        return path, None
    if path.is_dir():  # a run's folder: its best weights to export or evaluate, its last to resume (a walk)
        best = run_best_weights(path)
        hint = (f"e.g. {path / 'last.pth'}" if best is None else
                f"{best} (the run's best weights, and its last, to resume)" if best.name == "last.pth" else
                f"{best} (the run's best weights) or {path / 'last.pth'} (its last, to resume)")
        raise DfineError(f"checkpoint {source} is a folder; give a .pth file in it: {hint}")
    from . import hub, zoo
    if path.suffix or os.sep in str(source):
        from .text import missing_model_note
        zoo_name = path.stem if path.suffix.lower() == ".pth" and path.stem in zoo.names() else None
        if zoo_name and path.parent == Path("."):  # the published file name given for the zoo's (a walk's -t)
            cached = hub.weights_dir() / path.name
            where = f"read from {cached}" if cached.is_file() else f"downloaded once into {hub.weights_dir()}"
            raise DfineError(f"checkpoint {source} not found here{missing_model_note(path)}; the zoo's weights are "
                             f"named without .pth: {zoo_name} ({where})")
        raise DfineError(f"checkpoint {source} not found{missing_model_note(path)}")
    entry = zoo.get(str(source))
    if entry.kind != "detector":
        raise DfineError(f"zoo entry {entry.name} is a {entry.kind}, not a detector")
    return hub.fetch_weights(entry.name), entry


def _unsafe_pickle(path: Path, error: BaseException) -> DfineError:
    """The one-line refusal of a file whose unpickling would run code."""
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    what = f" ({found.group(1)})" if found else ""
    return DfineError(
        f"{path} holds Python code objects{what}, not only weights; dfine will not run them. If you trust the file, "
        f"re-save it as plain weights: python -c \"import torch; c = torch.load('{path}', weights_only=False); "
        f"m = c.get('model', c) if isinstance(c, dict) else c; "
        f"torch.save({{'model': m.state_dict() if hasattr(m, 'state_dict') else m}}, '{path.with_suffix('')}_plain.pth')\"")


def read_checkpoint(source: PathLike) -> Dict[str, Any]:
    """The dict in checkpoint ``source`` (a path or a zoo name), read with ``weights_only=True``.

    A missing, truncated or foreign file, or one holding code objects, is a one-line
    :class:`DfineError` naming it."""
    path = resolve_source(source)[0]
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "GLOBAL " in str(e):
            raise _unsafe_pickle(path, e) from None
        raise _unreadable(path, e) from None
    except Exception as e:  # the unpickler raises many kinds on foreign bytes
        raise _unreadable(path, e) from None
    if not isinstance(obj, dict):
        raise DfineError(f"{path} is not a checkpoint: it holds a {type(obj).__name__}, not a dict of weights")
    return obj


def _peek(path: PathLike) -> Dict[str, Any]:
    """The checkpoint at ``path``, its tensors mapped, not read (a large model's file stays on disk); ``{}``
    when there is none, or a foreign or cut-short one (nothing to say about it here: its user is told)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any unreadable file is no run to speak of
        return {}
    return state if isinstance(state, dict) else {}


def _last_state(folder: PathLike) -> Dict[str, Any]:
    """:func:`_peek` of the ``last.pth`` in ``folder``."""
    return _peek(Path(folder) / "last.pth")


def run_best_file(folder: PathLike) -> Optional[str]:
    """The name of the best weights of the run whose ``last.pth`` is in ``folder``, as its end names them:
    the ``best_stg*.pth`` saved with the best AP, or ``last.pth`` when no evaluation scored above AP 0; None
    when no readable ``last.pth`` records it."""
    progress = _last_state(folder).get("progress")
    if not isinstance(progress, dict) or not isinstance(progress.get("best_ap"), (int, float)):
        return None
    if progress["best_ap"] <= 0:
        return "last.pth"
    best = progress.get("best_file")
    return best if isinstance(best, str) else None


def run_best_weights(folder: PathLike) -> Optional[Path]:
    """The best weights of the run in ``folder``: the file its ``last.pth`` records (:func:`run_best_file`), else
    ``best_stg2.pth`` or ``best_stg1.pth`` by name; None when none of them is there."""
    folder = Path(folder)
    recorded = run_best_file(folder)
    names = ((recorded,) if recorded else ()) + ("best_stg2.pth", "best_stg1.pth")
    return next((folder / n for n in names if (folder / n).is_file()), None)


def recorded_recipe(path: PathLike) -> Optional[str]:
    """The recipe file name (``dfine_hgnetv2_s_obj2custom.yml``) a ``--data`` run's checkpoint at ``path``
    records it was built from; None when it records none (a recipe's run, an older dfine) or is unreadable."""
    recipe = _peek(path).get("recipe")
    return recipe if isinstance(recipe, str) else None


def class_head_rows(path: PathLike) -> Optional[int]:
    """The number of classes the detector weights at ``path`` score (rows of ``decoder.enc_score_head.weight``;
    366 for the published Objects365 models), read without loading the file's tensors; None when it is
    unreadable or no D-FINE detector (the trainer says so)."""
    try:
        head = model_state(_peek(path), str(path)).get("decoder.enc_score_head.weight")
    except DfineError:  # no model weights in it: the trainer says so
        return None
    return int(head.shape[0]) if isinstance(head, torch.Tensor) and head.ndim == 2 else None


def stopped_run(folder: PathLike) -> Optional[Tuple[int, int]]:
    """``(epochs done, epochs asked)`` of the run whose ``last.pth`` is in ``folder`` when it stopped
    before its last epoch (Ctrl-C, a kill); ``None`` when it finished, or there is no readable
    ``last.pth`` with its config."""
    try:
        state = _last_state(folder)
        done, asked = int(state["last_epoch"]) + 1, int(state["config"]["epochs"])
    except (KeyError, TypeError, ValueError):
        return None
    return (done, asked) if 0 <= done < asked else None


def run_data(folder: PathLike) -> Optional[str]:
    """The ``--data`` folder (absolute) the run whose ``last.pth`` is in ``folder`` trained on, as the
    checkpoint records it; None when it records none (a recipe's run, an older dfine) or is unreadable."""
    data = _last_state(folder).get("data")
    return data if isinstance(data, str) else None


def _unreadable(path: Path, error: BaseException) -> DfineError:
    """The one line for a file torch cannot read, saying what it looks like: empty, cut short (a zip
    archive without its end: an incomplete download or copy), text (an HTML page saved in place of a
    download, a note) or other bytes, with torch's reason last."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
        size = path.stat().st_size
    except OSError:
        head, size = b"", -1
    if size == 0:
        return DfineError(f"{path} is empty (0 bytes): save or download the checkpoint again")
    if head.startswith(b"PK\x03\x04"):  # torch's zip format, unreadable: its end (the directory) is missing
        others = _run_files_beside(path)
        if others:  # a run's own checkpoint (written atomically, so damaged after): fetching it again cannot help
            return DfineError(f"{path} is cut short ({size} bytes; its archive has no end), damaged after the run wrote "
                              f"it (a full or failing disk, a copy cut short); resume from another checkpoint of the "
                              f"run ({', '.join(others)}) with -r, or move it away to start over")
        return DfineError(f"{path} is cut short ({size} bytes; its archive has no end): an incomplete download or "
                          f"copy? Fetch or copy it again")
    if path.suffix.lower() in (".onnx", ".xml", ".bin", ".engine"):  # a re-walk's -r last.onnx read torch's error
        return DfineError(f"{path} is an export, not a PyTorch checkpoint: give the .pth checkpoint it was exported "
                          f"from; an export is evaluated with dfine eval -m {path} --data DIR")
    image = _image_kind(head)
    if image:  # a photo given as the model (a walk's -r x.jpg read torch's weights_only text, cut mid-sentence)
        return DfineError(f"{path} is {image} image, not a PyTorch checkpoint: give the model's .pth file (an image "
                          f"is predicted on with dfine predict IMAGE -m MODEL)")
    if head and all(b >= 32 or b in b"\t\n\r" for b in head):
        try:
            text = head.decode("utf-8").strip()
        except UnicodeDecodeError:
            text = ""
        if text:
            first = text.splitlines()[0][:40]
            return DfineError(f"{path} is a text file, not a PyTorch checkpoint (it starts {first!r}; an error page "
                              f"saved in place of a download?)")
    return DfineError(f"{path} is not a readable PyTorch checkpoint ({_first_line(error)})")


def _run_files_beside(path: Path) -> List[str]:
    """The other checkpoints a training run wrote beside ``path``, when ``path`` is one of a run's
    (``last.pth``, ``best_stg*.pth``, ``checkpointNNNN.pth``); newest first."""
    from .engine.lock import earlier_run_files

    names = earlier_run_files(path.parent)
    if path.name not in names:
        return []
    others = [path.parent / n for n in names if n != path.name]
    return [p.name for p in sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)]


def _image_kind(head: bytes) -> str:
    """``"a JPEG"``, ``"a PNG"``, ... when the file's first bytes ``head`` are an image's signature; ``""``."""
    signatures = ((b"\xff\xd8\xff", "a JPEG"), (b"\x89PNG\r\n\x1a\n", "a PNG"), (b"GIF8", "a GIF"), (b"BM", "a BMP"),
                  (b"II*\x00", "a TIFF"), (b"MM\x00*", "a TIFF"))
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP"
    return next((kind for sig, kind in signatures if head.startswith(sig)), "")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:160]


def save_atomic(obj: object, dst: PathLike) -> Path:
    """``torch.save(obj, dst)`` through a temporary file in the same folder, fsynced and renamed
    over ``dst``: a crash (or a full disk) leaves the old file or the new one, never half a file.
    Returns ``dst``; a write error is a one-line :class:`DfineError`."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; a saved file gets the usual permissions
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) or (isinstance(e, RuntimeError) and "write" in str(e).lower()):
            raise DfineError(f"could not write {dst} ({_first_line(e)}); "
                             f"{'the previous file is intact' if dst.exists() else 'nothing was written'}") from None
        raise
    return dst


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: PathLike) -> List[Path]:
    """Delete the temporary files that an interrupted :func:`save_atomic` (``kill -9``, power
    loss) left in ``folder``: only files of its own naming, ``.NAME.pth.<random>.tmp``. Returns
    them. Training calls it at start-up; nothing ever reads such a file as a checkpoint."""
    stale = [p for p in Path(folder).glob(".*.pth.*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


# ---- the schema --------------------------------------------------------------------------------

def model_state(ckpt: Mapping[str, Any], name: str = "checkpoint") -> Mapping[str, torch.Tensor]:
    """The weights a checkpoint is used through: ``ema.module`` when present, else ``model``, else the
    dict itself when it is a plain state dict."""
    ema = ckpt.get("ema")
    if isinstance(ema, Mapping) and isinstance(ema.get("module"), Mapping):
        return ema["module"]
    if isinstance(ckpt.get("model"), Mapping):
        return ckpt["model"]
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt
    inner = [k for k, v in ckpt.items() if isinstance(v, Mapping) and ("model" in v or "ema" in v)]
    hint = (f"; its '{inner[0]}' entry is a checkpoint: save that alone (torch.save(torch.load(FILE)['{inner[0]}'], "
            f"NEW.pth))" if inner else "")
    raise DfineError(f"{name} has no model weights (expected a 'model' or 'ema.module' entry; "
                     f"found keys: {first_few(ckpt, 8)}){hint}")


# the weights files a training run writes, by the key of their evaluation in its ``progress["conf"]``
# (the checkpoints of every N epochs hold the latest evaluation's weights, as last.pth does)
RUN_FILE_STAGES = {"best_stg1.pth": "stg1", "best_stg2.pth": "stg2", "last.pth": "last"}


def recommended_conf(ckpt: Mapping[str, Any], name: str) -> Optional[float]:
    """The ``recommended_conf`` a checkpoint carries (None when it has none). Files written before
    that entry existed name it through their training progress, by the file's own name
    (:data:`RUN_FILE_STAGES`); a renamed one then has none. A value that is not a score in 0..1 is
    a one-line error naming the file."""
    if "recommended_conf" in ckpt:
        value = ckpt["recommended_conf"]
    else:
        picks = (ckpt.get("progress") or {}).get("conf") if isinstance(ckpt.get("progress"), Mapping) else None
        stage = RUN_FILE_STAGES.get(Path(name).name, "last" if re.fullmatch(r"checkpoint\d+\.pth", Path(name).name)
                                    else None)
        pick = picks.get(stage) if isinstance(picks, Mapping) and stage and not ckpt.get("pending_eval") else None
        value = pick.get("conf") if isinstance(pick, Mapping) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise DfineError(f"{name}: 'recommended_conf' is {value!r}, not a score in 0..1; give --conf (or remove "
                         f"the entry)")
    return float(value)


def config_to_dict(cfg: DFINEConfig) -> Dict[str, Any]:
    """A model config as plain nested dicts, lists and numbers (the ``model_config`` entry)."""
    def plain(value):
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value
    out = {f.name: plain(getattr(cfg, f.name)) for f in fields(cfg) if f.name not in ("backbone", "encoder", "decoder")}
    for section in ("backbone", "encoder", "decoder"):
        part = getattr(cfg, section)
        out[section] = {f.name: plain(getattr(part, f.name)) for f in fields(part)}
    return out


def deploy_metadata(cfg: DFINEConfig, class_names: Sequence[str], category_ids: Sequence[int],
                    conf: Optional[float] = None) -> Dict[str, Any]:
    """The entries that make a file enough to predict with: ``model_config``, ``class_names``,
    ``category_ids``, ``input_size`` and ``recommended_conf`` (``conf``; None: none measured).
    Names and ids need one entry per class."""
    if len(class_names) != cfg.num_classes or len(category_ids) != cfg.num_classes:
        raise ValueError(f"{counted(len(class_names), 'class name')} and {counted(len(category_ids), 'category id')} "
                         f"for a model of {counted(cfg.num_classes, 'class', 'classes')}")
    return {"model_config": config_to_dict(cfg), "class_names": [str(n) for n in class_names],
            "category_ids": [int(i) for i in category_ids],
            "input_size": list(cfg.eval_spatial_size or DEFAULT_INPUT_SIZE),
            "recommended_conf": None if conf is None else float(conf)}


# Where each model-config section lives: our ``model_config`` / older ``config`` (model config) use
# ``backbone``/``encoder``/``decoder``; a training recipe uses the published section names.
_SECTION_KEYS = {"backbone": (HGNetv2Config, ("backbone", "HGNetv2")),
                 "encoder": (HybridEncoderConfig, ("encoder", "HybridEncoder")),
                 "decoder": (DFINETransformerConfig, ("decoder", "DFINETransformer"))}


def _config_from_dict(data: Mapping[str, Any], name: str) -> DFINEConfig:
    """A resolved :class:`DFINEConfig` from a ``model_config`` dict or a training recipe dict."""
    parts = {}
    for section, (cls, keys) in _SECTION_KEYS.items():
        value = next((data[k] for k in keys if isinstance(data.get(k), Mapping)), None)
        if value is None:
            raise DfineError(f"{name}: its model config has no {' or '.join(keys)} section; "
                             f"pass the model config with -c CONFIG or --size")
        names = {f.name for f in fields(cls)}
        parts[section] = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items() if k in names})
    if data.get("num_classes") is None:
        raise DfineError(f"{name}: its model config has no num_classes")
    size = data.get("eval_spatial_size")
    cfg = DFINEConfig(**parts, num_classes=int(data["num_classes"]), eval_spatial_size=tuple(size) if size else None)
    try:
        return resolve(cfg)
    except ValueError as e:
        raise DfineError(f"{name}: its model config is invalid ({e})") from None


def stored_config(ckpt: Mapping[str, Any], name: str = "checkpoint") -> Optional[DFINEConfig]:
    """The model config a checkpoint carries (``model_config``, or an older ``config`` entry: a
    model config or the training recipe), or ``None`` (published checkpoints)."""
    for key in ("model_config", "config"):
        if isinstance(ckpt.get(key), Mapping):
            return _config_from_dict(ckpt[key], name)
    return None


def _signature(name: str, num_classes: int, num_denoising: bool) -> Dict[str, Tuple[int, ...]]:
    """Parameter names and shapes of ``name`` built on the meta device (no memory, no time)."""
    from .models.dfine import build_from_config
    cfg = apply_overrides(preset(name), num_classes=num_classes, eval_spatial_size=None)
    if not num_denoising:
        cfg = apply_overrides(cfg, num_denoising=0)
    with torch.device("meta"):
        model = build_from_config(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in DERIVED}


def infer_model_name(state_dict: Mapping[str, torch.Tensor], name: str = "these weights") -> Tuple[str, int]:
    """Recognise a published architecture from its weights: ``(model name, num_classes)``.

    The class count is the row count of ``decoder.enc_score_head.weight``; the size is the
    preset whose parameter names and shapes all match. A one-line :class:`DfineError` if none do.
    """
    head = state_dict.get("decoder.enc_score_head.weight")
    if head is None:
        raise DfineError(f"{name}: not a D-FINE detector (no decoder.enc_score_head.weight)")
    num_classes = int(head.shape[0])
    denoising = "decoder.denoising_class_embed.weight" in state_dict
    shapes = {k: tuple(v.shape) for k, v in state_dict.items() if k not in DERIVED}
    for model_name in MODEL_NAMES:
        if _signature(model_name, num_classes, denoising) == shapes:
            return model_name, num_classes
    raise DfineError(f"{name}: the weights match none of the D-FINE sizes n, s, m, l, x; "
                     f"pass the model config with -c CONFIG")


def _default_names(num_classes: int, entry: Optional[Any]) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    """Class names and category ids when the checkpoint does not carry them."""
    from .data.mscoco import MSCOCO_CATEGORY_IDS, MSCOCO_NAMES
    if entry is not None and entry.dataset == "obj365":
        return ("__unused__",) + tuple(entry.class_names), tuple(range(num_classes))
    if num_classes == len(MSCOCO_NAMES):
        return tuple(MSCOCO_NAMES), tuple(MSCOCO_CATEGORY_IDS)
    return tuple(f"class{i}" for i in range(num_classes)), tuple(range(num_classes))


def _labels(ckpt: Mapping[str, Any], num_classes: int, entry: Optional[Any], name: str
            ) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
    """The checkpoint's class names and category ids (defaults where it has none), checked."""
    names, ids = _default_names(num_classes, entry)
    if ckpt.get("class_names") is not None:
        names = tuple(str(n) for n in ckpt["class_names"])
    if ckpt.get("category_ids") is not None:
        ids = tuple(int(i) for i in ckpt["category_ids"])
    if len(names) != num_classes or len(ids) != num_classes:
        raise DfineError(f"{name}: {counted(len(names), 'class name')} and {counted(len(ids), 'category id')} for a "
                         f"model of {counted(num_classes, 'class', 'classes')}; the file is inconsistent")
    return names, ids


# ---- weights into a model ----------------------------------------------------------------------

def _first(keys, n: int = 3) -> str:
    keys = list(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _size_of(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The published size (``dfine_n`` ...) the weights ``state`` are of, or ``None``."""
    try:
        return infer_model_name(state)[0]
    except DfineError:
        return None


def size_mismatch(state: Mapping[str, torch.Tensor], model_name: str, name: str, use: str = "fine-tune a") -> None:
    """A one-line error when the weights ``state`` (of the file ``name``) are of a published size other
    than ``model_name`` (``dfine_s``); nothing when they are of it or of no published size. ``use``: what to
    do with them, ``"continue it as a"`` for a run resumed."""
    size = _size_of(state)
    if size is not None and size != model_name:
        raise DfineError(f"{name} holds a {size} model, not this one: {use} {size} (--model {size}, or "
                         f"leave --model out to take the checkpoint's size; a {size} recipe with -c)")


def refuse_zoo_resume(name: PathLike) -> None:
    """A one-line error for a zoo name given to continue a training run (``-r dfine_n_coco``): published
    weights are no run; fine-tuning them is ``-t`` (a walk's ``-r`` of one trained on as if resumed)."""
    from . import zoo
    if Path(name).exists():
        return
    try:
        zoo.get(str(name))
    except zoo.UnknownEntryError:
        return
    raise DfineError(f"-r {name}: published weights (a zoo name), not a training run to continue (-r); fine-tune "
                     f"them with -t {name}")


def check_data_run_weights(resume: Optional[PathLike], tuning: Optional[PathLike], model: Optional[str],
                           training: bool = True) -> None:
    """The ``-r`` (``resume``) or ``-t`` (``tuning``) weights of a run on ``--data``, checked before the dataset
    is converted into a run folder (walks: a bad one left ``output/NAME/data`` behind): a zoo name given to
    continue a ``training`` (:func:`refuse_zoo_resume`); a zoo name downloaded, a folder or a file not there
    said (:func:`resolve_source`); a cut-short or foreign file, weights of another size than ``model`` (a size
    name, or ``None``), and for a training resumed a file of weights alone (published or converted ones: ``-r``
    went on in their folder, a ``~/Downloads``, and converted the data into it, a walk). One-line errors."""
    name = resume if resume is not None else tuning
    if name is None:
        return
    continued = resume is not None and training
    if continued:
        refuse_zoo_resume(name)
    path = Path(name) if Path(name).is_file() else resolve_source(name)[0]
    if model not in MODEL_NAMES and not continued:  # nothing more to check here (the run reads the file anyway)
        return
    ckpt = read_checkpoint(path)
    state = model_state(ckpt, str(path))  # a file of no model weights said first
    if model in MODEL_NAMES:
        size_mismatch(state, str(model), str(name), "continue it as a" if continued else "fine-tune a")
    if continued and not any(k in ckpt for k in ("optimizer", "last_epoch")):
        raise DfineError(f"{name} holds weights alone, not a training run's state (no optimiser, no epoch: "
                         f"published or converted weights?); resuming (-r) goes on with a run of dfine in its "
                         f"folder. To train from these weights, fine-tune them with -t {name}")


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], name: str = "checkpoint") -> None:
    """Strictly load ``state`` into ``model``; a mismatch is one :class:`DfineError` line naming
    the file and the first mismatched keys (and the shapes, for a size mismatch)."""
    own = model.state_dict()
    state = {k: v for k, v in state.items()
             if not (k in _OPTIONAL and k not in own) and not (k in DERIVED and own[k].shape != v.shape)}
    shape_errors = [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                    for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and k not in _OPTIONAL]
    unexpected = [k for k in state if k not in own]
    heads = set(head_names(own))
    head = "decoder.enc_score_head.weight"
    if shape_errors and head in state and all(k in heads for k, v in state.items()
                                              if k in own and own[k].shape != v.shape):
        theirs, ours = state[head].shape[0], own[head].shape[0]
        # dfine train's option, named so in an evaluation's error too (a walk's dfine eval was told '-t' alone)
        tune = f"dfine train -t {name}" if name != "checkpoint" else "-t (dfine train) or dfine.checkpoint.load_tuning"
        here = "this model has" if name == "checkpoint" else "the data here has"  # dfine.load_checkpoint: no data
        raise DfineError(f"{name} was trained for {counted(theirs, 'class', 'classes')} and {here} {ours}: "
                         f"use it with data of its own {counted(theirs, 'class', 'classes')}, or fine-tune it into "
                         f"these with {tune}")
    if shape_errors:
        size = _size_of(state)
        if size is not None:  # a published size: say which, rather than leave the shapes to be read
            raise DfineError(f"{name} holds a {size} model and this model is another size ({len(shape_errors)} shape "
                             f"mismatches, first: {_first(shape_errors, 1)}): build a {size} (a {size} recipe with -c, "
                             f"--model {size}, or dfine.build_model('{size}'))")
        raise DfineError(f"{name} does not fit this model (another size or class count?): "
                         f"{len(shape_errors)} shape mismatches, first: {_first(shape_errors, 2)}")
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, first: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, first: {_first(unexpected)}")
        raise DfineError(f"{name} does not fit this model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=False)


def load_checkpoint(model: nn.Module, checkpoint: Union[PathLike, Mapping[str, Any]]) -> nn.Module:
    """Load a checkpoint (a path, a zoo name or an already-read dict) into ``model``, strictly.

    Its ``ema.module`` weights are used when present, else ``model``. Returns ``model``.
    """
    if isinstance(checkpoint, Mapping):
        ckpt, name = checkpoint, "checkpoint"
    else:
        ckpt, name = read_checkpoint(checkpoint), str(checkpoint)
    load_state(model, model_state(ckpt, name), name)
    return model


# ---- fine-tuning: class heads carried across datasets ------------------------------------------

def head_names(state: Mapping[str, torch.Tensor]) -> List[str]:
    """The classification-head entries of a D-FINE state dict (their size is the class count)."""
    return [k for k in state if k.startswith(("decoder.enc_score_head.", "decoder.dec_score_head."))
            or k == "decoder.denoising_class_embed.weight"]


def _remap(own: torch.Tensor, theirs: torch.Tensor, name: str, ids: Sequence[int]) -> Optional[torch.Tensor]:
    """Carry a score head across the Objects365 <-> COCO correspondence, or ``None``."""
    if name.endswith("denoising_class_embed.weight") or len(ids) == 0 or own.shape[1:] != theirs.shape[1:]:
        return None
    out = own.detach().clone()
    if own.shape[0] == len(ids) and theirs.shape[0] > max(ids) + 1:  # Objects365 -> COCO
        out[:] = theirs[[i + 1 for i in ids]]
        return out
    if theirs.shape[0] == len(ids) and own.shape[0] > max(ids) + 1:  # COCO -> Objects365
        out[[i + 1 for i in ids]] = theirs
        return out
    return None


def class_names_of(ckpt: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> Optional[List[str]]:
    """The class names of a checkpoint's model by class index: its own ``class_names``, else those of a
    published model by its head's size (80: COCO; 366: ``""`` then the 365 Objects365 classes); None otherwise."""
    names = ckpt.get("class_names")
    if isinstance(names, (list, tuple)) and names:
        return [str(n) for n in names]
    head = state.get("decoder.enc_score_head.weight")
    rows = int(head.shape[0]) if isinstance(head, torch.Tensor) else None
    if rows == 80:
        from .data.mscoco import MSCOCO_NAMES
        return list(MSCOCO_NAMES)
    if rows == 366:
        from .zoo import OBJ365_CLASSES
        return ["", *OBJ365_CLASSES]
    return None


def head_rows_by_name(names: Sequence[str], theirs: Sequence[str]) -> List[Optional[int]]:
    """For each class of ``names``, the index of the class of the same name in ``theirs`` (case and spaces
    aside), or None."""
    index = {str(n).strip().lower(): i for i, n in reversed(list(enumerate(theirs))) if str(n).strip()}
    return [index.get(str(n).strip().lower()) for n in names]


def _by_name(own: torch.Tensor, theirs: torch.Tensor, key: str, rows: Sequence[Optional[int]]
             ) -> Optional[torch.Tensor]:
    """A class head (or the denoising class embedding: a row per class, then the padding row) whose rows of
    the classes found by name (``rows``: :func:`head_rows_by_name`) are ``theirs``, the others ``own`` (fresh)."""
    k = len(rows)
    denoising = key.endswith("denoising_class_embed.weight")
    if own.shape[1:] != theirs.shape[1:] or own.shape[0] != k + denoising or all(r is None for r in rows):
        return None
    out = own.detach().clone()
    for i, r in enumerate(rows):
        if r is not None and r < theirs.shape[0] - denoising:
            out[i] = theirs[r]
    if denoising:
        out[k] = theirs[-1]
    return out


def tuning_state(model: nn.Module, state: Mapping[str, torch.Tensor], name: str,
                 obj365_ids: Sequence[int] = OBJ365_TO_COCO, rows: Optional[Sequence[Optional[int]]] = None
                 ) -> Tuple[Dict[str, torch.Tensor], List[str], List[str]]:
    """What of ``state`` fine-tuning loads into ``model``: entries of the same shape, and the
    class heads remapped between Objects365 and COCO when their sizes are those two, or else carried by
    class name (``rows``: :func:`head_rows_by_name` of the model's classes in the checkpoint's; the classes
    not found start fresh). Returns ``(loadable, remapped, reinitialised)``; a checkpoint of another model
    size is an error. Anchors computed for another input size are left to the model (it recomputes them)."""
    own = model.state_dict()
    loadable, remapped, reinit = {}, [], []
    heads = set(head_names(own))
    for key, value in own.items():
        theirs = state.get(key)
        if key in DERIVED and (theirs is None or theirs.shape != value.shape):
            continue
        if theirs is not None and theirs.shape == value.shape:
            loadable[key] = theirs
        elif theirs is not None and key in heads:
            mapped = _remap(value, theirs, key, obj365_ids)
            if mapped is not None:
                loadable[key] = mapped
                remapped.append(key)
            else:
                reinit.append(key)
    if rows is not None and not remapped:  # by name, when the Objects365 <-> COCO correspondence did not apply
        for key in list(reinit):
            mapped = _by_name(own[key], state[key], key, rows)
            if mapped is not None:
                loadable[key] = mapped
                remapped.append(key)
                reinit.remove(key)
    mismatched = [k for k in own if k not in loadable and k not in reinit and k in state and k not in DERIVED]
    if mismatched or len(loadable) < len(own) // 2:
        own_size = _size_of(own)
        if own_size is not None:  # a published size: say which ("another size?" before)
            size_mismatch(state, own_size, name)
        missing = [k for k in own if k not in state]
        example = (mismatched or missing or reinit)[:1]
        raise DfineError(f"{name} does not fit this model (another size?): only {len(loadable)} of "
                         f"{counted(len(own), 'entry', 'entries')} load; "
                         f"{counted(len(mismatched), 'differs', 'differ')} in shape, "
                         f"{counted(len(missing), 'is', 'are')} missing and "
                         f"{counted(len(reinit), 'is a class head', 'are class heads')} of another class count"
                         + (f", e.g. {example[0]}" if example else ""))
    return loadable, remapped, reinit


def load_tuning(model: nn.Module, state: Mapping[str, torch.Tensor], name: str,
                obj365_ids: Sequence[int] = OBJ365_TO_COCO, names: Optional[Sequence[str]] = None,
                their_names: Optional[Sequence[str]] = None) -> List[str]:
    """Fine-tuning load (``-t``): everything that matches; class heads of another class count
    are remapped (Objects365 <-> COCO), carried by class name (``names``: the model's classes, given, and
    ``their_names``: the checkpoint's, :func:`class_names_of`), or left freshly initialised, with a
    warning naming them. Returns the re-initialised entries."""
    loadable, remapped, reinit = tuning_state(model, state, name, obj365_ids)
    rows = head_rows_by_name(names, their_names) if names and their_names and reinit and not remapped else None
    if rows is not None:
        loadable, remapped, reinit = tuning_state(model, state, name, obj365_ids, rows)
    model.load_state_dict(loadable, strict=False)
    if rows is not None and remapped:
        found = [n for n, r in zip(names, rows) if r is not None]
        fresh = [n for n, r in zip(names, rows) if r is None]
        warnings.warn(f"{name}: its class heads carried into this model's by class name: {first_few(found, 6)}"
                      + (f"; {first_few(fresh, 6)} (not among its classes) start fresh" if fresh else ""),
                      stacklevel=2)
    elif remapped:
        warnings.warn(f"{name}: class heads remapped Objects365 <-> COCO: {', '.join(remapped)}", stacklevel=2)
    if reinit:
        warnings.warn(_fresh_heads_note(name, reinit, state, model.state_dict()), stacklevel=2)
    return reinit


def _fresh_heads_note(name: str, reinit: Sequence[str], theirs: Mapping[str, torch.Tensor],
                      own: Mapping[str, torch.Tensor]) -> str:
    """One line for a fine-tuning load into another class count: both counts (from the encoder's
    score head, ``[classes, dim]``) and the heads that start fresh, by module."""
    head = "decoder.enc_score_head.weight"
    counts = (f" has {theirs[head].shape[0]} classes and this model {own[head].shape[0]}"
              if head in theirs and head in own else " has another number of classes")
    modules = list(dict.fromkeys(k.rsplit(".", 1)[0] for k in reinit))
    return f"{name}{counts}: its class heads start fresh ({', '.join(modules)}); every other weight is loaded"


# ---- conversion: a training checkpoint -> a weights file ---------------------------------------

def extract_ema(src: PathLike, dst: Optional[PathLike] = None) -> Path:
    """``dfine convert-weights``: write the weights ``src`` is used through (its EMA weights; a
    published-layout file without EMA: its model weights) to ``dst`` as ``{"model": ...}``, with
    the model config, class names, category ids and input size it carries (or recognises).

    ``dst`` defaults to ``<src stem>_converted<suffix>`` beside ``src``; it is written atomically.
    Returns ``dst``. A one-line :class:`DfineError` when ``src`` is not a checkpoint or holds no
    EMA weights and no D-FINE model weights.
    """
    src = Path(src)
    dst = Path(dst) if dst is not None else src.with_name(f"{src.stem}_converted{src.suffix}")
    if dst.exists() and src.exists() and os.path.samefile(src, dst):  # its optimiser and epoch lost (a walk)
        raise DfineError(f"the output file {dst} is the checkpoint converted; give another file, or leave it out "
                         f"to write {src.with_name(f'{src.stem}_converted{src.suffix}')}")
    ckpt = read_checkpoint(src)
    state = _ema_state(ckpt, src)
    out: Dict[str, Any] = {"model": dict(state)}
    try:
        cfg = stored_config(ckpt, str(src))
        if cfg is None:
            name, num_classes = infer_model_name(state, str(src))
            cfg = apply_overrides(preset(name), num_classes=num_classes)
    except DfineError:
        if "ema" not in ckpt:  # neither EMA weights nor a D-FINE model: nothing to convert
            raise DfineError(f"{src} holds no EMA weights (no 'ema' entry) and its 'model' weights are not a "
                             f"D-FINE detector; it is not a D-FINE training checkpoint") from None
        cfg = None
    if cfg is not None:
        out.update(deploy_metadata(cfg, *_labels(ckpt, cfg.num_classes, None, str(src)),
                                   conf=recommended_conf(ckpt, str(src))))
        if ckpt.get("input_size"):
            out["input_size"] = [int(v) for v in ckpt["input_size"]]
        if ckpt.get("tiles"):
            out["tiles"] = ckpt["tiles"]
    save_atomic(out, dst)
    return dst


def _ema_state(ckpt: Mapping, src: Path) -> Mapping[str, torch.Tensor]:
    """``ckpt["ema"]["module"]`` (else ``ckpt["model"]``), checked to be a state dict."""
    ema = ckpt.get("ema")
    if ema is None:
        if isinstance(ckpt.get("model"), Mapping) and ckpt["model"]:
            return ckpt["model"]
        keys = ", ".join(map(str, list(ckpt)[:8])) or "none"
        raise DfineError(f"{src} holds no EMA weights and no model weights (no 'ema' or 'model' entry; "
                         f"its keys: {keys})")
    module = ema.get("module") if isinstance(ema, Mapping) else None
    if not isinstance(module, Mapping) or not module:
        raise DfineError(f"{src} has an 'ema' entry without a 'module' state dict; "
                         f"it was not written by a D-FINE trainer")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in module.items()):
        raise DfineError(f"{src}: 'ema.module' is not a state dict (names to tensors)")
    return module


# ---- a checkpoint -> a ready deploy-mode detector ----------------------------------------------

@dataclass
class LoadedModel:
    """A deploy-mode detector and what is needed to read its outputs.

    ``class_names[label]`` names the model's label; ``category_ids[label]`` is the dataset's
    category id (COCO ids for COCO-trained models); ``conf`` the score threshold its training run
    recommends (None: none)."""

    model: nn.Module
    postprocessor: nn.Module
    config: DFINEConfig
    class_names: Tuple[str, ...]
    category_ids: Tuple[int, ...]
    source: str
    conf: Optional[float] = None
    tiles: Optional[Tuple[int, int]] = None  # the (height, width) tiles it was trained on (dfine data tile)

    @property
    def imgsz(self) -> Tuple[int, int]:
        """The input size ``(height, width)`` the model was built for."""
        return tuple(self.config.eval_spatial_size or DEFAULT_INPUT_SIZE)  # type: ignore[return-value]


def parse_imgsz(imgsz: Union[int, Sequence[int], None], default: Tuple[int, int] = DEFAULT_INPUT_SIZE
                ) -> Tuple[int, int]:
    """``640`` -> ``(640, 640)``; ``(480, 640)`` -> ``(480, 640)`` as (height, width), multiples of 32."""
    if imgsz is None:
        return default
    given = imgsz
    if isinstance(imgsz, int):
        imgsz = (imgsz, imgsz)
    imgsz = tuple(int(v) for v in imgsz)
    if len(imgsz) == 1:
        imgsz = imgsz * 2
    if len(imgsz) != 2 or any(v <= 0 or v % 32 for v in imgsz):
        from dfine.text import multiples_of_32_near
        # as given, in words for both callers: Detector(imgsz=300) was told '--imgsz ... got [300, 300]' (a walk)
        shown = " ".join(map(str, given)) if isinstance(given, (list, tuple)) else given
        raise DfineError(f"image size {shown} (--imgsz, imgsz=) must be one or two positive multiples of 32 (height "
                         f"width) (e.g. {multiples_of_32_near(imgsz)})")
    return imgsz  # type: ignore[return-value]


def _config_from_file(path: PathLike) -> DFINEConfig:
    """The model section of a training recipe (``dfine.config.load_config``)."""
    from .config import load_config, model_config
    from .recipes import RECIPES_DIR
    return model_config(load_config(path, recipes=RECIPES_DIR))


def _architecture(ckpt: Mapping[str, Any], state: Mapping[str, torch.Tensor], name: str,
                  size: Optional[str], config: Optional[PathLike]) -> DFINEConfig:
    """The model config: ``config`` file, else ``size``, else the checkpoint's, else recognised."""
    if config is not None:
        return _config_from_file(config)
    if size is not None:
        arch = size if str(size).startswith("dfine_") else f"dfine_{size}"
        if arch not in MODEL_NAMES:
            raise DfineError(f"unknown model size {size!r}; choose one of n, s, m, l, x")
        head = state.get("decoder.enc_score_head.weight")
        return apply_overrides(preset(arch), num_classes=int(head.shape[0]) if head is not None else 80)
    stored = stored_config(ckpt, name)
    if stored is not None:
        return stored
    arch, num_classes = infer_model_name(state, name)
    return apply_overrides(preset(arch), num_classes=num_classes)


def _say_other_size(ckpt: Mapping[str, Any], path: Path, size: Sequence[int]) -> None:
    """A note when ``size`` (height, width) is not the size a checkpoint of ours says it was trained at
    (published checkpoints do not say): the model then sees its objects at another scale, and a
    walk's 320 px model found nothing at 640 (AP 10.7 -> 7.3) without a word."""
    stored = stored_config(ckpt, str(path))
    trained = ckpt.get("input_size") or (stored.eval_spatial_size if stored is not None else None)
    if trained and tuple(int(v) for v in trained) != tuple(size):
        print(f"note: {path.name} was trained at {trained[0]}x{trained[1]}; run at {size[0]}x{size[1]} it sees "
              f"objects at another scale, and its AP can drop (compare with dfine eval --imgsz)", file=sys.stderr)


def _top_queries(ckpt: Mapping[str, Any], cfg: DFINEConfig) -> int:
    """The detections an image the checkpoint's training run kept (its recipe's
    ``DFINEPostProcessor.num_top_queries``: a dense run's 500 read back as 300, a walk), else its
    decoder's queries."""
    post = ckpt.get("config") if isinstance(ckpt.get("config"), Mapping) else {}
    post = post.get("DFINEPostProcessor") if isinstance(post.get("DFINEPostProcessor"), Mapping) else {}
    value = post.get("num_top_queries")
    return int(value) if isinstance(value, int) and value > 0 else int(cfg.decoder.num_queries)


def load_model(source: PathLike, *, size: Optional[str] = None, config: Optional[PathLike] = None,
               imgsz: Union[int, Sequence[int], None] = None, device: Union[str, torch.device] = "cpu",
               num_top_queries: Optional[int] = None) -> LoadedModel:
    """Load a checkpoint (path or zoo name) into a deploy-mode model and post-processor.

    The architecture comes from, in order: ``config`` (a recipe yml), ``size`` (``n``..``x``
    or ``dfine_n``..), the checkpoint's own model config, the weights' shapes. ``imgsz``
    (height, width) sets the size whose anchors are precomputed (default: the checkpoint's
    ``input_size``, else the config's ``eval_spatial_size``, else 640x640). ``num_top_queries``: the
    detections an image (default: its training run's ``DFINEPostProcessor.num_top_queries``, else
    the model's queries, 300 for the published ones).
    """
    from .models.dfine import build_from_config
    from .models.postprocess import PostProcessor
    path, entry = resolve_source(source)
    ckpt = read_checkpoint(path)
    state = model_state(ckpt, str(path))
    cfg = _architecture(ckpt, state, str(path), size, config)
    if "decoder.denoising_class_embed.weight" not in state and cfg.decoder.num_denoising:
        cfg = apply_overrides(cfg, num_denoising=0)
    stored_size = ckpt.get("input_size") or cfg.eval_spatial_size or DEFAULT_INPUT_SIZE
    cfg = apply_overrides(cfg, eval_spatial_size=parse_imgsz(imgsz, tuple(int(v) for v in stored_size)))
    model = build_from_config(cfg)
    load_state(model, state, str(path))
    decoder = model.decoder
    tokens = sum(h * w for h, w in decoder._level_shapes(tuple(cfg.eval_spatial_size)))
    if tokens < decoder.num_queries:
        h, w = cfg.eval_spatial_size
        raise DfineError(f"input size {h}x{w} gives {tokens} encoder tokens, fewer than the model's "
                         f"{decoder.num_queries} queries: use a larger --imgsz (e.g. the default)")
    _say_other_size(ckpt, path, cfg.eval_spatial_size)  # after the errors: a size the model cannot take is one line
    model.deploy().to(device)
    names, ids = _labels(ckpt, cfg.num_classes, entry, str(path))
    top = num_top_queries or _top_queries(ckpt, cfg)
    post = PostProcessor(cfg.num_classes, num_top_queries=top).deploy().to(device)
    from .slicing import trained_tile
    return LoadedModel(model, post, cfg, names, ids, str(source), recommended_conf(ckpt, str(path)),
                       trained_tile(ckpt.get("tiles")))
