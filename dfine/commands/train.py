"""``dfine train`` and ``dfine eval``: the published ``train.py`` command line.

``dfine train -c configs/dfine/dfine_hgnetv2_n_coco.yml --use-amp --seed=0`` trains,
``-t model.pth`` fine-tunes from weights, ``-r checkpoint.pth`` resumes, ``--test-only -r
model.pth`` (or ``dfine eval -c ... -r model.pth``) evaluates; ``-u key=value ...`` overrides the
recipe. Under ``torchrun --nproc_per_node=K`` every process runs it (DDP).

``--auto-resume`` makes one command line serve the first run and every restart: when the output
directory holds ``last.pth`` the run resumes from it (and ignores ``-t``), else it starts as
asked. With ``torchrun --max-restarts=N ... --auto-resume`` a crashed run restarts by itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, List, Tuple

from dfine.export import evaluate as export_eval

__all__ = ["add_arguments", "add_parser", "overrides_from_args", "run"]


def add_arguments(p: argparse.ArgumentParser, config_required: bool = True) -> argparse.ArgumentParser:
    """The published ``train.py`` options (plus ``--max-nonfinite`` and ``--max-steps``)."""
    from .demo import _positive  # --epochs 0, --max-steps 0 (which meant no cap without a word): one line
    p.add_argument("-c", "--config", required=config_required,
                   help="recipe YAML, e.g. configs/dfine/dfine_hgnetv2_n_coco.yml")
    p.add_argument("--data", help="instead of -c: a COCO, YOLO, VOC, CVAT, LabelMe, CSV or CreateML dataset folder "
                                  "(the custom recipe of --model)")
    p.add_argument("--model", default=None, help="with --data: dfine_n, dfine_s, dfine_m, dfine_l or dfine_x (default: "
                                                  "the size of the -r/-t weights when given, else dfine_s); without -t "
                                                  "it starts from the ImageNet-pretrained backbone, downloaded once "
                                                  "(-u HGNetv2.pretrained=False: from nothing)")
    p.add_argument("--epochs", type=_positive, help="with --data: epochs to train (with -r last.pth, a larger number "
                                                    "trains a finished run longer)")
    p.add_argument("--batch", type=_positive, help="with --data: images per step (all processes)")
    p.add_argument("--names", help="with --data: class names, comma-separated, in class-id order, for a YOLO folder "
                                   "without a data.yaml, classes.txt or obj.names")
    p.add_argument("-r", "--resume", help="resume training from this checkpoint (or evaluate it with --test-only)")
    p.add_argument("-t", "--tuning", help="fine-tune from these weights: a zoo name (dfine_s_coco, downloaded once) or a "
                                          ".pth path (class heads adapted to the dataset)")
    p.add_argument("-d", "--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--seed", type=int, help="random seed of the training; a val split --data makes is seeded apart "
                                            "(0; dfine data convert --seed N --val-fraction F to choose)")
    p.add_argument("--use-amp", action="store_true", default=None, help="automatic mixed precision")
    p.add_argument("-o", "--output-dir", help="where checkpoints, logs and plots go")
    p.add_argument("--summary-dir", help="TensorBoard folder (default: OUTPUT_DIR/summary)")
    p.add_argument("--test-only", action="store_true", default=False, help="evaluate only")
    p.add_argument("--auto-resume", action="store_true",
                   help="resume from OUTPUT_DIR/last.pth when it exists (restarts after a crash), else start as asked")
    p.add_argument("-u", "--update", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override recipe keys (-u may be given more than once)")
    p.add_argument("--max-nonfinite", type=int, default=10,
                   help="stop after this many non-finite losses in a row (each skips its step; default 10)")
    p.add_argument("--max-steps", type=_positive, default=None,
                   help="at most this many training steps per epoch (quick runs; each evaluation still scores the "
                        "whole val set)")
    p.add_argument("--imgsz", type=int, nargs="+", default=None, metavar="N",
                   help="train and evaluate at N x N px, or H W (multiples of 32; H W: non-square tiles of dfine "
                        "data tile): the recipe's Resize ops, the multi-scale range around it and eval_spatial_size "
                        "follow (same as -u eval_spatial_size=[N,N])")
    p.add_argument("--patience", type=_positive, default=None, metavar="N",
                   help="early stopping: stop when val AP has not improved for N evaluations (the best is kept)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--print-method", default="builtin", help=argparse.SUPPRESS)
    p.add_argument("--print-rank", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--local-rank", "--local_rank", type=int, help=argparse.SUPPRESS)
    return p


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``eval``."""
    train = subparsers.add_parser("train", help="train or fine-tune a detector (published train.py options)",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(train, config_required=False).set_defaults(func=run)
    from .demo import _positive
    train.add_argument("--threads", type=_positive, default=None,
                       help="CPU threads of torch (default: one per core); data-loading workers are separate")
    ev = subparsers.add_parser("eval", help="COCO AP of a checkpoint or an exported model (.onnx, .xml)",
                               description="Always --test-only. An exported model (-m or -r model.onnx or .xml, "
                                           "int8 or not) or a checkpoint (-m or -r model.pth) is evaluated on the val "
                                           "set of -c RECIPE or of --data DIR (--ann-file / --images replace its file "
                                           "/ folder), or on --ann-file and --images. --model is a size (dfine_n ..), "
                                           "for a checkpoint of weights only.")
    add_arguments(ev, config_required=False).set_defaults(func=run, test_only_command=True)
    ev.add_argument("-m", dest="model_file", metavar="MODEL", default=None,
                    help="the model file to evaluate, as in dfine predict -m: the same as -r")
    ev.add_argument("--split", choices=("val", "test"), default="val", type=_split_word,
                    help="with --data: the split to evaluate on (default val; test: the dataset's test split, e.g. "
                         "a data.yaml's test: or Roboflow's test/ folder)")
    export_eval.add_arguments(ev)
    from .predict import add_slice_arguments
    add_slice_arguments(ev)  # a model trained on tiles (dfine data tile), scored on whole images as it is used
    for action in ev._actions:  # accepted (the published train.py --test-only takes them), but not listed
        if set(action.option_strings) & _TRAINING_ONLY:  # (a walk: eval's help listed every training option)
            action.help = argparse.SUPPRESS
        elif "--resume" in action.option_strings:
            action.help = "the checkpoint (.pth) or export (.onnx, .xml) to evaluate"
        elif "--batch" in action.option_strings:
            action.help = "with --data or -c: images per evaluation batch of a checkpoint"


# options of train that an evaluation has no use for: hidden from dfine eval --help
_TRAINING_ONLY = {"--epochs", "--patience", "--auto-resume", "--max-nonfinite", "--max-steps", "-t",
                  "--summary-dir", "--use-amp", "--test-only", "--seed"}


def _split_word(value: str) -> str:
    """``--split``'s value, Roboflow's folder name ``valid`` (and ``validation``) read as ``val`` (a walk)."""
    return {"valid": "val", "validation": "val"}.get(value.lower(), value.lower())


def overrides_from_args(args: argparse.Namespace) -> List[str]:
    """``-u`` items, then the options (which win, as published), as ``key=value`` overrides."""
    out = list(args.update or [])
    for key, attr in (("resume", "resume"), ("tuning", "tuning"), ("device", "device"), ("seed", "seed"),
                      ("use_amp", "use_amp"), ("output_dir", "output_dir"), ("summary_dir", "summary_dir")):
        value = getattr(args, attr, None)
        if value is not None:
            out.append(f"{key}={json.dumps(value)}")
    if getattr(args, "imgsz", None) is not None:
        h, w = image_hw(args.imgsz)
        out.append(f"eval_spatial_size=[{h}, {w}]")
    # dfine eval -r model.pth -c RECIPE (or --data DIR) --images DIR / --ann-file FILE: the val set's, not ignored
    for key, attr in (("ann_file", "ann_file"), ("img_folder", "images")):
        value = getattr(args, attr, None)
        if value is not None:
            out.append(f"val_dataloader.dataset.{key}={json.dumps(str(Path(value).expanduser().resolve()))}")
    return out


def imgsz_value(given: Any) -> Any:
    """``--imgsz`` as given (``[N]``, ``[H, W]``, an int) as the value a run keeps: ``N`` for a square,
    ``[H, W]`` otherwise; a one-line error for more than two numbers or a side that is not a positive
    multiple of 32."""
    from dfine.config import image_size
    from dfine.errors import DfineError
    if isinstance(given, (list, tuple)) and len(given) not in (1, 2):
        raise DfineError(f"--imgsz {' '.join(map(str, given))}: give N (square) or H W")
    h, w = image_size(given[0] if isinstance(given, (list, tuple)) and len(given) == 1 else given)
    return h if h == w else [h, w]


def image_hw(value: Any) -> Tuple[int, int]:
    """``(height, width)`` of an ``--imgsz`` value: ``N``, ``[N]`` as parsed, or ``[H, W]``."""
    return (int(value[0]), int(value[-1])) if isinstance(value, (list, tuple)) else (int(value), int(value))


def imgsz_words(value: Any) -> str:
    """``--imgsz``'s words for a kept value: ``320`` or ``256 384``."""
    from dfine.slicing import slice_words
    return slice_words(image_hw(value))


def run(args: argparse.Namespace) -> int:
    """Train (or evaluate); 0 on success. User errors raise :class:`~dfine.errors.DfineError`.
    Warnings print as one ``warning: ...`` line, without Python's file, line and source."""
    from dfine.text import one_line_warnings
    with one_line_warnings():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from dfine.errors import DfineError

    from dfine.recipes import recipe_path

    if getattr(args, "model_file", None):  # dfine eval -m MODEL, as dfine predict takes it
        if args.resume and args.resume != args.model_file:
            raise DfineError(f"-m {args.model_file} and -r {args.resume} name two models; give one")
        args.resume = args.model_file
    if args.config:
        args.config = str(recipe_path(args.config))
    test_only = bool(args.test_only or getattr(args, "test_only_command", False))
    if getattr(args, "split", "val") != "val" and not args.data:
        raise DfineError(f"--split {args.split} goes with --data DIR (a dataset folder and its {args.split} split)")
    # a checkpoint on a COCO file is evaluated as an export is: it carries its model, names, ids and input size
    on_files = (args.resume and not args.config and not args.data
                and (getattr(args, "ann_file", None) or getattr(args, "images", None)))
    from dfine.commands.predict import set_threads
    sliced = getattr(args, "slice", None) is not None  # dfine eval --slice: through the Detector, as predict slices
    if test_only and (export_eval.is_export(args.resume) or on_files or sliced):
        set_threads(getattr(args, "threads", None), args.resume, getattr(args, "backend", None))
        return export_eval.run(args)
    set_threads(getattr(args, "threads", None), None, "torch")  # train --threads; eval's of a checkpoint on a recipe
    if not args.config and not args.data:
        if test_only:  # it advised training, to someone evaluating
            raise DfineError(f"say what to evaluate {args.resume or 'the model'} on: --data DIR (a dataset folder: its "
                             f"val split), --ann-file FILE --images DIR, or -c RECIPE (its val set)"
                             f"{_trained_val_set(args.resume)}")
        raise DfineError("say what to train on: --data DIR --model dfine_n (your dataset folder: COCO, YOLO, VOC, ...; "
                         "a .zip as downloaded too) or -c RECIPE (a recipe yml, as the published train.py takes)")
    if args.config and args.data:
        raise DfineError("give a recipe (-c configs/...yml) or a dataset folder (--data DIR), not both")
    if args.data:  # a missing folder said before a checkpoint is read (3-10 s; a walk)
        from dfine.data.archive import require_path
        require_path(args.data)
    data_only = [f"--{k}" for k in ("model", "epochs", "batch", "names") if getattr(args, k, None) is not None]
    if args.config and data_only:  # a recipe's own keys say these; the options would be dropped without a word
        raise DfineError(f"{' '.join(data_only)} go with --data DIR; a recipe (-c) sets them in its keys: "
                         f"-u epochs=N train_dataloader.total_batch_size=N (the model is the recipe's)")
    if args.resume and args.tuning:
        raise DfineError("give -r (resume) or -t (fine-tune), not both")
    if test_only and not args.resume and not args.tuning:
        raise DfineError("evaluation needs weights: add -r model.pth")
    if args.auto_resume and args.resume:
        raise DfineError("give --auto-resume (resume from OUTPUT_DIR/last.pth when it exists) or -r, not both")
    if args.device:
        from dfine.device import resolve_device
        resolve_device(args.device)  # before a dataset is converted: a GPU command on a machine without one
    data = None
    # an evaluation converts a YOLO / VOC / CVAT folder into a temporary folder, not into a run folder of its own
    temporary = tempfile.TemporaryDirectory(prefix="dfine-eval-") if test_only and args.data else nullcontext()
    if getattr(args, "imgsz", None) is not None:
        args.imgsz = imgsz_value(args.imgsz)  # before --data converts the dataset into a new output folder
    if args.data:  # the -r/-t weights said before the dataset is converted into a run folder (walks: after it)
        from dfine.checkpoint import check_data_run_weights
        check_data_run_weights(args.resume, args.tuning, args.model, training=not test_only)
    with temporary as scratch:
        if args.data:
            from dfine.recipes import data_run
            model = _model_for_data(args)  # may set args.imgsz from the checkpoint: before the overrides are read
            # an evaluation writes eval.json beside the weights, as the eval command a training prints does
            weights = Path(args.resume or args.tuning) if test_only else None
            output_dir = args.output_dir
            if output_dir is None and weights is not None and weights.is_file():
                output_dir = str(weights.resolve().parent)
            if output_dir is None and args.resume and not test_only and Path(args.resume).is_file():
                output_dir = str(Path(args.resume).resolve().parent)  # the run goes on in its own folder
            from dfine.commands.data import split_names
            from dfine.data.convert.yolo import NoClassNames

            def run_on(names):
                return data_run(args.data, model, epochs=args.epochs, batch=args.batch, output_dir=output_dir,
                                names=names, device=args.device, given=overrides_from_args(args),
                                scratch=Path(scratch) if scratch else None,
                                run_folder="latest" if args.auto_resume else "new",
                                split=getattr(args, "split", "val"), tuning=args.tuning, resume=args.resume,
                                imgsz=image_hw(args.imgsz) if args.imgsz is not None else None)
            try:
                data = run_on(split_names(args.names))
            except NoClassNames:
                given = _weights_names(args.data, weights) if test_only and not args.names else None
                if given is None:
                    raise
                _say(args, given[1])
                data = run_on(given[0])
            for note in data.notes:
                _say(args, note)
        command = data_command(args, model) if args.data else None
        return _train_or_eval(args, data, test_only, command)


def _weights_names(data: str, weights: Any) -> Any:
    """:func:`dfine.recipes.names_of_the_model` of the checkpoint (or zoo name) ``weights``."""
    from dfine.checkpoint import read_checkpoint
    from dfine.recipes import names_of_the_model
    ckpt = read_checkpoint(weights)
    return names_of_the_model(data, ckpt.get("class_names"), ckpt.get("category_ids"))


def _say(args: argparse.Namespace, note: str) -> None:
    """Print ``note`` on stderr; in a :func:`dfine.evaluate` call's words when it runs the command
    (``args.python``: a walk's notebook was told ``--batch N`` and ``--model dfine_n``); under ``torchrun``
    by the first process only."""
    from dfine.text import first_process
    if not first_process():
        return
    if getattr(args, "python", False):
        from dfine.recipes import python_words
        note = python_words(note)
    print(note, file=sys.stderr)


def _trained_val_set(weights: Any) -> str:
    """``"; the val set its run trained with: --ann-file F --images D"`` for a checkpoint whose run's val
    files are still there (a walk's ``dfine eval -r best_stg2.pth`` was told only the options); ``""``
    otherwise."""
    import shlex

    from dfine.checkpoint import read_checkpoint
    if not weights or not Path(weights).is_file():
        return ""
    dataset = ((read_checkpoint(weights).get("config") or {}).get("val_dataloader") or {}).get("dataset") or {}
    ann, images = dataset.get("ann_file"), dataset.get("img_folder")
    if not (isinstance(ann, str) and isinstance(images, str) and Path(ann).is_file() and Path(images).is_dir()):
        return ""
    return f"; the val set its run trained with: --ann-file {shlex.quote(ann)} --images {shlex.quote(images)}"


def data_command(args: argparse.Namespace, model: str) -> Any:
    """The :class:`~dfine.engine.summary.DataCommand` of a ``dfine train --data`` command line:
    the options as given (``--model`` as resolved), the dataset path absolute."""
    from dfine.engine import summary

    options = [(flag, getattr(args, attr, None)) for flag, attr in (
        ("--epochs", "epochs"), ("--batch", "batch"), ("--names", "names"), ("--imgsz", "imgsz"), ("-d", "device"),
        ("--seed", "seed"), ("--summary-dir", "summary_dir"), ("--max-steps", "max_steps"),
        ("--patience", "patience"), ("--threads", "threads"))]
    if args.max_nonfinite != 10:
        options.append(("--max-nonfinite", args.max_nonfinite))
    flags = ["--use-amp"] * bool(args.use_amp) + ["--no-progress"] * bool(args.no_progress)
    command = summary.data_command(args.data, model, options, flags, list(args.update or []),
                                   split=getattr(args, "split", "val"))
    return dataclasses.replace(command, python=True) if getattr(args, "python", False) else command


def _train_or_eval(args: argparse.Namespace, data: Any, test_only: bool, command: Any = None) -> int:
    from dfine.config import load_config
    from dfine.engine import dist
    from dfine.recipes import RECIPES_DIR
    from dfine.engine.trainer import Trainer

    cfg = load_config(data.recipe if data else args.config, [*(data.overrides if data else ()), *overrides_from_args(args)],
                      recipes=RECIPES_DIR)
    if test_only and args.tuning and not args.resume:
        cfg = dataclasses.replace(cfg, resume=args.tuning, tuning=None)
    if data is None:
        cfg = _in_the_checkpoints_folder(cfg, args, test_only)
    if not test_only:
        cfg = _continue_or_warn(cfg, args.auto_resume)
    try:
        trainer = Trainer(cfg, test_only=test_only, max_nonfinite=args.max_nonfinite, max_steps=args.max_steps,
                          progress=not args.no_progress, patience=args.patience,
                          warmup_share=data.warmup_share if data else None, command=command)
        trainer.exit_on_second_signal = True  # a second Ctrl-C ends the command at once
        if test_only:
            trainer.val()
            return 0
        stopped = trainer.fit()["stopped"]  # the trainer prints the best weights and the next commands
    finally:
        dist.cleanup()
    return {"SIGINT": 130, "SIGTERM": 143}.get(stopped, 0)


def _model_for_data(args: argparse.Namespace) -> str:
    """``--model``; without it the size of the weights given with ``-r``/``-t`` (a dfine_n checkpoint
    evaluated or resumed on ``--data`` is a dfine_n, not the default dfine_s it would not fit); else
    ``dfine_s``. Without ``--imgsz``, a checkpoint given with ``-r`` also sets it to the size it was
    trained and evaluated at (a 320 px model evaluated at the recipe's 640 px read AP 3 instead of
    23), and its number of queries when not the recipe's 300 (a small --imgsz asks for fewer). What was
    taken from the weights is said in one line."""
    weights = args.resume or args.tuning
    model, said = args.model, []
    given = {o.split("=", 1)[0].strip() for o in getattr(args, "update", None) or ()}
    queries = ("DFINETransformer.num_queries", "DFINEPostProcessor.num_top_queries")
    if weights and Path(weights).is_file() and (not model or (args.resume and (args.imgsz is None
                                                                               or not given & set(queries)))):
        from dfine.checkpoint import infer_model_name, model_state, read_checkpoint, stored_config
        ckpt = read_checkpoint(weights)
        if not model:
            model, _ = infer_model_name(model_state(ckpt, weights), weights)
            said.append(f"--model {model}")
        cfg = stored_config(ckpt, weights) if args.resume else None
        size = cfg.eval_spatial_size if cfg is not None and args.imgsz is None else None
        if size and tuple(size) != (640, 640):
            args.imgsz = imgsz_value(list(size))
            said.append(f"--imgsz {imgsz_words(args.imgsz)}")
        # trained with fewer queries (a small --imgsz): the recipe's 300 would not fit the input it gives
        n = cfg.decoder.num_queries if cfg is not None and not given & set(queries) else None
        if n is not None and n != 300:
            args.update = [*(args.update or []), *(f"{key}={n}" for key in queries)]
            said.append("-u " + " ".join(f"{key}={n}" for key in queries))
    elif weights and not model and not Path(weights).is_file():
        from dfine import zoo
        try:
            entry = zoo.get(str(weights))
        except zoo.UnknownEntryError:
            entry = None  # the trainer says what is wrong with the weights
        if entry is not None and entry.kind == "detector":
            model = entry.model
            said.append(f"--model {model}")
    if said:
        _say(args, f"{' '.join(said)}: as {weights} was trained")
    return model or "dfine_s"


def _in_the_checkpoints_folder(cfg, args: argparse.Namespace, test_only: bool):
    """A recipe's run resumed (or evaluated) with ``-r CKPT`` and no folder of the user's (``-o``, ``-u
    output_dir=``) goes on in the checkpoint's own folder, as a ``--data`` run does, said when the recipe names
    another: a walk's resume of ``-o output/withO``'s run wrote into the recipe's ``output/..._custom``,
    over another run's checkpoints and logs."""
    given = {o.split("=", 1)[0].strip() for o in getattr(args, "update", None) or ()}
    if not args.resume or args.output_dir or "output_dir" in given or not Path(args.resume).is_file():
        return cfg
    folder = Path(args.resume).resolve().parent
    if Path(cfg.output_dir).resolve() == folder:
        return cfg
    what = "evaluation is written" if test_only else "run goes on"
    _say(args, f"note: the {what} in {folder}, the folder of -r {args.resume}, not the recipe's output_dir "
               f"{cfg.output_dir} (-o DIR to choose)")
    return dataclasses.replace(cfg, output_dir=str(folder))


def _continue_or_warn(cfg, auto_resume: bool):
    """With ``auto_resume``: resume from ``output_dir/last.pth`` when it exists. (Without, the
    trainer warns that a new run into a folder of an earlier run overwrites its files.)"""
    last = Path(cfg.output_dir) / "last.pth"
    if not last.is_file() or cfg.resume or not auto_resume:
        return cfg
    from dfine.text import first_process
    if first_process():
        print(f"resuming from {last} (--auto-resume)", file=sys.stderr)
    return dataclasses.replace(cfg, resume=str(last), tuning=None)
