"""``dfine benchmark``: parameters, GFLOPs and latency (PyTorch eager, ONNX Runtime, TensorRT) here."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DfineError

EXPORTED = (".onnx", ".xml", ".engine", ".trt")  # model files timed as they are


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("benchmark", help="params, GFLOPs and latency on this machine",
                              description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", default=None,
                   help="checkpoint or zoo name (default: random weights of --size); an exported .onnx, .xml or "
                        ".engine is timed as it is (no params or GFLOPs: those need the checkpoint)")
    p.add_argument("--size", choices=("n", "s", "m", "l", "x"), default=None, help="model size (default n)")
    p.add_argument("-c", "--config", help="model recipe yml")
    p.add_argument("--imgsz", type=int, nargs="+", default=None, metavar="N", help="640 or height width")
    p.add_argument("-b", "--batch-size", type=int, default=1)
    p.add_argument("-d", "--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch and ONNX Runtime)")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--backends", default="torch,onnxruntime,openvino,tensorrt",
                   help="comma-separated; those not installed are skipped (and said)")
    p.add_argument("--video", default=None, metavar="SOURCE",
                   help="also time -m MODEL on this video: detector-only fps beside end-to-end fps "
                        "(decode in a reader thread + detect + ByteTrack, as dfine track runs)")
    p.add_argument("--video-backend", default=None, choices=("torch", "onnxruntime", "openvino", "tensorrt"),
                   help="backend for --video (default: from the model file)")
    p.set_defaults(func=run)


def _loaded(args):
    from ..checkpoint import LoadedModel, load_model, parse_imgsz
    if args.model:
        return load_model(args.model, size=args.size, config=args.config, imgsz=args.imgsz, device=args.device)
    import torch
    from ..models.dfine import build_model
    from ..models.postprocess import PostProcessor
    imgsz = parse_imgsz(args.imgsz)
    model = build_model(f"dfine_{args.size or 'n'}", eval_spatial_size=imgsz).deploy().to(args.device)
    return LoadedModel(model, PostProcessor(80).deploy().to(args.device), model.config, (), (), "random")


def run(args: argparse.Namespace) -> int:
    import torch
    if args.video and not args.model:
        raise DfineError("--video needs -m MODEL (a checkpoint, zoo name or exported file)")
    if args.video:  # a wrong --video said before a minute of latency timing (a walk), not after it
        from ..video import open_source
        close = getattr(open_source(args.video).frames, "close", None)
        if close is not None:
            close()
    from ..device import resolve_device
    resolve_device(args.device)  # -d cuda on a machine without one: one line, not a CUDA traceback
    from ..export.benchmark import count_flops, count_params
    if args.threads:
        torch.set_num_threads(args.threads)
    print(_machine_line(args.device))
    if args.model and Path(args.model).suffix.lower() in EXPORTED:
        return _run_exported(args)
    loaded = _loaded(args)
    h, w = loaded.imgsz
    print(f"model {loaded.source} {loaded.config.backbone.name} {h}x{w} batch {args.batch_size}")
    print(f"params        {count_params(loaded.model) / 1e6:.2f} M")
    flops = count_flops(loaded.model, (h, w))
    print(f"GFLOPs        {flops / 1e9:.2f} (multiply-adds: {flops / 2e9:.2f} G) at batch 1")
    images = np.random.rand(args.batch_size, 3, h, w).astype(np.float32)
    sizes = np.array([[w, h]] * args.batch_size, dtype=np.int64)
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        try:
            result = _latency(backend, loaded, args, images, sizes)
        except DfineError as e:
            print(f"{backend:13} skipped: {e}")
            continue
        print(f"{backend:13} {result['median_ms']:.2f} ms median ({result['min_ms']:.2f} min) per batch")
    if args.video:
        video_fps(args)
    return 0


def _machine_line(device: str) -> str:
    """What the timings below ran on: the GPU, or the CPU line (name, vector extensions, cores, load)
    with a note when other jobs keep the cores busy (two-thread timings then inflate many times)."""
    import torch
    from ..export.benchmark import cpu_line
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(torch.device(device))}"
    from ..device import busy_cpu_note
    note = busy_cpu_note("the timings below")
    return cpu_line() + (f"\n{note}" if note else "")


def _run_exported(args: argparse.Namespace) -> int:
    """Latency of an exported model file on its own backend, and ``--video`` fps."""
    from ..export.benchmark import time_call
    from ..inference import Detector
    det = Detector(args.model, device=args.device, backend=args.video_backend, batch_size=args.batch_size,
                   threads=args.threads, imgsz=args.imgsz)
    h, w = det.imgsz
    print(f"model {args.model} (exported: params and GFLOPs need the checkpoint) {h}x{w} batch {args.batch_size}")
    images = np.random.rand(args.batch_size, 3, h, w).astype(np.float32)
    sizes = np.array([[w, h]] * args.batch_size, dtype=np.int64)
    result = time_call(lambda: det._run(images, sizes), runs=args.runs)
    print(f"{det.backend:13} {result['median_ms']:.2f} ms median ({result['min_ms']:.2f} min) per batch")
    if args.video:
        video_fps(args)
    return 0


def video_fps(args: argparse.Namespace, max_frames: int = 300) -> None:
    """Frames per second on ``args.video`` (its first ``max_frames``): the detector alone on decoded
    frames, and end to end (decoding in the reader thread, detection, ByteTrack) as ``dfine track``."""
    import itertools
    import time
    from PIL import Image
    from ..inference import Detector
    from ..integrations.tracking import Tracking
    from ..video import open_source
    det = Detector(args.model, device=args.device, backend=args.video_backend, batch_size=max(args.batch_size, 4),
                   size=args.size, config=args.config, threads=args.threads, imgsz=args.imgsz)
    frames = [Image.fromarray(f) for f in itertools.islice(open_source(args.video).frames, max_frames)]
    det.predict_pil(frames[:det.batch_size])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(frames), det.batch_size):
        det.predict_pil(frames[i:i + det.batch_size])
    alone = len(frames) / (time.perf_counter() - start)
    source = open_source(args.video)
    source.frames = itertools.islice(source.frames, max_frames)
    run = Tracking(source, det, tracker="bytetrack")  # imports supervision and trackers (seconds) before the clock
    start = time.perf_counter()
    done = sum(1 for _ in run)
    e2e = done / (time.perf_counter() - start)
    print(f"video ({det.backend}, batches of {det.batch_size}, {len(frames)} frames): detector only {alone:.1f} fps, "
          f"end to end {e2e:.1f} fps (decode + detect + track)")


def _latency(backend: str, loaded, args, images, sizes):
    import torch
    from ..export.benchmark import time_call
    if backend == "torch":
        x, s = torch.from_numpy(images).to(args.device), torch.from_numpy(sizes).to(args.device)
        sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)

        def fn():
            with torch.inference_mode():
                loaded.postprocessor(loaded.model(x), s)
        return time_call(fn, runs=args.runs, sync=sync)
    if backend not in ("onnxruntime", "openvino", "tensorrt"):
        raise DfineError(f"unknown backend {backend}")
    from ..export.onnx import export_onnx
    from ..inference import Detector
    if backend == "tensorrt":
        from ..export.tensorrt import _import_trt
        _import_trt()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(loaded, Path(tmp) / "model.onnx")
        if backend == "tensorrt":
            from ..export.tensorrt import build_engine
            path = build_engine(path, Path(tmp) / "model.engine", max_batch=max(args.batch_size, 1))
        det = Detector(str(path), device=args.device, backend=backend, threads=args.threads)
        return time_call(lambda: det._engine.run(images, sizes), runs=args.runs)
