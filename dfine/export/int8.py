"""Int8 post-training quantization of an ONNX export: OpenVINO IR with NNCF (optionally
accuracy-aware), or an ONNX file with QDQ nodes for ONNX Runtime.

Calibration needs only images (no labels): a few hundred from the training data, spread evenly
over a folder (searched recursively, so a COCO image folder, a YOLO dataset root or a VOC root
all work) or listed by a COCO JSON.

By default every convolution and Linear layer becomes int8, the DETR head's included
(:data:`FLOAT_SCOPES` is empty; which operations NNCF quantizes and which stay float: :data:`SCHEMES`).
That was measured, not assumed: the parts of the head said to be sensitive (deformable sampling
offsets and attention weights, the FDR box heads and their distribution integral, score heads and
LQE, the query-selection heads) were kept in float32 one at a time and together
(``benchmarks/int8.py --scope-study``, :data:`SCOPE_GROUPS`). On the final ``dfine demo`` model
none of them moved the AP by more than the noise (62.3-62.5 with any part in float, 62.4 with
none, float32 62.2), while each float part costs latency. Where a model does lose accuracy,
``--max-drop`` returns the most harmful layers to float on a val set, and ``--keep-float head``
(or any named part, or a node-name pattern) keeps parts in float32. The choice, its reason and
the calibration are recorded in the model's metadata under ``quantization`` (a JSON string).

The parts are found by node name: the export names every matrix product after its module
(:func:`dfine.export.onnx.restore_product_names`). Before that, onnxsim's rebuilt products
(``Gemm_12``) matched no part, so ``sampling`` and ``box-heads`` kept nothing in float and the
scope study's earlier figures measured less than they said.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DfineError

__all__ = ["FLOAT_SCOPES", "SCOPE_GROUPS", "QuantizeInfo", "attention_products", "calibration_images", "quantize_onnx",
           "quantize_openvino", "resolve_scopes"]

PathLike = Union[str, os.PathLike]

# The parts of the head that can be kept in float32, by name: node-name patterns (regular
# expressions over the ONNX export's node names, which OpenVINO keeps as friendly names).
SCOPE_GROUPS: Dict[str, Tuple[str, ...]] = {
    # deformable cross-attention: where each query samples the feature maps, and with what weight
    # (the sampling-offset and attention-weight projections are one product, named cross_attn/MatMul)
    "sampling": (r"/model/decoder/decoder/layers\.\d+/cross_attn/.*",),
    # the distribution integral: each edge's probabilities times the weighting function W(n) (fdr.integral)
    "integral": (r"/model/decoder/decoder/MatMul(_\d+)?",),
    # FDR box heads: the initial box and each layer's edge distributions
    "box-heads": (r"/model/decoder/decoder/(pre_bbox_head|dec_bbox_head\.\d+)/.*",),
    # class scores and the localization-quality estimate that rescales them
    "score-heads": (r"/model/decoder/decoder/(dec_score_head\.\d+|lqe_layers\.\d+)/.*",),
    # everything else in the decoder layers: self-attention, gate, feed-forward, query position head
    "decoder-rest": (r"/model/decoder/decoder/(layers\.\d+/(self_attn|gateway|linear1|linear2)|query_pos_head)/.*",),
    # query selection on the encoder output: projection, score and box heads
    "query-selection": (r"/model/decoder/enc_.*",),
    # top-k and box scaling (nothing NNCF quantizes; listed for completeness)
    "postprocessor": (r"/postprocessor/.*",),
    # the whole head: decoder layers, query selection, post-processor (the cautious choice)
    "head": (r"/model/decoder/decoder/.*", r"/model/decoder/enc_.*", r"/postprocessor/.*"),
}
FLOAT_SCOPES: Tuple[str, ...] = ()  # the default: nothing kept in float32 (why: the module docstring)

# How NNCF is asked to quantize (QuantizeInfo.scheme names the one used):
# - "transformer" (the default): NNCF's transformer scheme (ModelType.TRANSFORMER) with symmetric
#   activation ranges (preset PERFORMANCE) and without SmoothQuant, and the products of two
#   activations (self-attention's query-key and attention-value products: attention_products) and
#   max-pools left in float: convolutions and the Linear layers quantized, element-wise ops and
#   norms in float.
#   OpenVINO then runs the attention in one fused float kernel instead of int8 products with
#   transposes between them, and no per-channel SmoothQuant scaling or zero points sit in front of
#   the Linear layers. On the demo model the same AP as "smoothquant" (62.4 both; float32 62.2) at
#   0.59-0.63x float32 OpenVINO's time instead of 0.64-0.71x (benchmarks/RESULTS.md, "Int8").
# - "smoothquant": NNCF's transformer scheme with its own defaults (asymmetric activations,
#   SmoothQuant, the attention products int8 too); the default before the one above.
# - "head-matmuls": NNCF's convolutional scheme, in which the backbone's and the encoder's
#   element-wise ops (residual Adds, Concats, the AIFI layer's) and every layer norm take int8
#   inputs, so that their convolutions chain in int8 without float islands between them; in the
#   decoder and the post-processor only the operations in HEAD_INT8_TYPES. The head's element-wise
#   arithmetic (the sampling locations among it) and softmaxes stay float: quantized too, as the
#   convolutional scheme does everywhere, they cost 2.7 AP on the demo model. On the demo model it
#   has the default's AP (62.8); its speed against the default was not settled on the loaded machine
#   (CPU time 0.81x, 0.91x, 1.10x and 0.93x the default's in four interleaved runs: benchmarks/RESULTS.md, "Int8").
SCHEMES = ("transformer", "smoothquant", "head-matmuls")
DEFAULT_SCHEME = "transformer"
HEAD_PREFIXES = ("/model/decoder/", "/postprocessor/")  # node-name prefixes of the DETR head
# what "head-matmuls" quantizes there: the Linear layers and attention products, and the layer norms'
# inputs (MVN: the residual stream before each norm; on the demo model no AP lost)
HEAD_INT8_TYPES = ("MatMul", "Convolution", "GroupConvolution", "MVN")
DEFAULT_REASON = ("default: everything int8; on the dfine demo models keeping any part of the DETR head in float32 "
                  "saved no AP and cost latency (benchmarks/int8.py --scope-study)")
#: Why every int8 IR's weights use 7 of their 8 bits (NNCF's overflow fix on every layer, not only the first):
#: CPUs without VNNI (AVX2 only) multiply 8-bit values in pairs summed into 16 bits, which saturates with full
#: 8-bit weights. Measured on the demo model (float32 AP 49.9, 192 px): int8 read 50.7 AP with VNNI and 46.1
#: on AVX2 kernels (benchmarks/avx2_only.py) with the first layer alone fixed; 50.4 and 50.2 with every layer,
#: at the same speed on both.
WEIGHTS_7BIT = ("7-bit weights in every layer but grouped convolutions (NNCF overflow fix): an 8-bit product "
                "pair saturates on CPUs without VNNI, which lost 3.5 AP on a demo model (49.9 to 46.4)")
DEFAULT_CALIB_IMAGES = 300
MAX_RESTORE = 10     # accuracy-aware mode: at most this many groups of layers go back to float
RANKING_IMAGES = 20  # ... each ranked by its harm on the val images int8 hurts most, this many


@dataclass
class QuantizeInfo:
    """What was done, stored as JSON in the model's metadata (``quantization``)."""

    precision: str
    tool: str
    calibration_images: int
    calibration_source: str
    float_scopes: List[str]
    reason: str = ""  # why these float scopes
    scheme: str = DEFAULT_SCHEME  # how NNCF quantized (SCHEMES); "" for ONNX Runtime
    max_drop: Optional[float] = None
    val_ap_float: Optional[float] = None  # AP (percent) on the val set, accuracy-aware mode
    val_ap_int8: Optional[float] = None
    met_max_drop: Optional[bool] = None  # accuracy-aware mode: the drop is within max_drop
    restored_to_float: List[str] = field(default_factory=list)  # operations NNCF returned to float
    ranking_images: Optional[int] = None
    max_restore: Optional[int] = None
    weights: str = ""  # how the weights are stored (WEIGHTS_7BIT for an OpenVINO IR)

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@contextlib.contextmanager
def _no_cuda_notice() -> Iterator[None]:
    """Silence the line torch logs when NNCF, importing or quantizing, looks at torch's extension
    builder on a machine without CUDA ("No CUDA runtime is found, using CUDA_HOME=..."): it says
    nothing about int8 on a CPU."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def import_nncf() -> Any:
    """``import nncf`` (ImportError when it is not installed), quietly: :func:`_no_cuda_notice`."""
    with _no_cuda_notice():
        import nncf
    return nncf


def calibration_images(source: PathLike, limit: int = DEFAULT_CALIB_IMAGES) -> List[Path]:
    """Up to ``limit`` image paths from ``source`` (a folder, searched recursively, or a COCO JSON
    whose ``file_name`` entries are relative to its folder), spread evenly over the sorted list."""
    from ..commands.predict import IMAGE_SUFFIXES
    if limit < 1:
        raise DfineError(f"--calib-size must be at least 1, got {limit}")
    from ..data.archive import dataset_folder
    src = dataset_folder(source, "--calib")
    if src.is_dir():
        paths = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise DfineError(f"calibration folder {src} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    elif src.is_file() and src.suffix.lower() == ".json":
        from ..data.check import default_images
        from ..data.coco import DatasetError, read_coco_json
        try:  # where data check and eval find them (Roboflow's split/images/ beside split/_annotations.coco.json)
            folder = default_images(src)
        except DatasetError:
            folder = src.parent
        paths = sorted(folder / str(im["file_name"]) for im in read_coco_json(src)["images"])
        missing = [p for p in paths if not p.is_file()]
        if missing or not paths:
            raise DfineError(f"the images of {src} are not beside it (first missing: {missing[0] if missing else '-'}); "
                             f"give their folder to --calib instead")
    else:
        raise DfineError(f"--calib {src}: expected a folder of images (COCO, YOLO or VOC dataset folders work) "
                         f"or a COCO JSON file")
    if len(paths) > limit:
        paths = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, limit).round()]
    return paths


def _inputs(imgsz: Tuple[int, int]):
    """image path -> model inputs ``{"images": [1, 3, H, W], "orig_target_sizes": [1, 2]}``."""
    from ..inference import load_image, preprocess

    def transform(path: Path) -> Dict[str, np.ndarray]:
        images, sizes = preprocess([load_image(path)], imgsz)
        return {"images": images, "orig_target_sizes": sizes}

    return transform


def _onnx_info(onnx_path: PathLike) -> Tuple[Tuple[int, int], Dict[str, str]]:
    """Input size (H, W) and metadata of an ONNX export."""
    import onnx
    model = onnx.load(str(onnx_path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return (dims[2].dim_value, dims[3].dim_value), {p.key: p.value for p in model.metadata_props}


def resolve_scopes(items: Optional[Sequence[str]]) -> Tuple[str, ...]:
    """``--keep-float`` words -> node-name patterns: a name of :data:`SCOPE_GROUPS` stands for its
    patterns, ``none`` for nothing, anything else is a regular expression; ``None``: the default."""
    if items is None:
        return FLOAT_SCOPES
    out: List[str] = []
    for item in items:
        if item in SCOPE_GROUPS:
            out.extend(SCOPE_GROUPS[item])
        elif item != "none":
            try:
                re.compile(item)
            except re.error as e:
                raise DfineError(f"--keep-float {item!r} is neither a part ({', '.join(SCOPE_GROUPS)}, none) nor a "
                                 f"regular expression ({e})") from None
            out.append(item)
    return tuple(dict.fromkeys(out))


def cpu_note(keep_float: Optional[Sequence[str]], features: Sequence[str]) -> Optional[str]:
    """A line for an int8 export with the default parts on a CPU without int8 dot products, where
    the all-int8 IR measured slower than float32 (benchmarks/RESULTS.md, "Int8"); ``None`` otherwise."""
    from ..engine.precision import int8_dot
    if keep_float is not None or int8_dot(list(features)):
        return None
    return ("note: this CPU has no VNNI/AMX int8 instructions; on such a CPU (OpenVINO capped at AVX2) the default "
            "int8 IR took 0.94x float32's time and one with --keep-float head 0.78x: to deploy on CPUs like "
            "this one, add --keep-float head (or keep float32)")


def _reason(float_scopes: Sequence[str]) -> str:
    return DEFAULT_REASON if tuple(float_scopes) == FLOAT_SCOPES else "chosen with --keep-float"


def _matching(names: Sequence[str], patterns: Sequence[str]) -> List[str]:
    """The node ``names`` a pattern of ``patterns`` matches whole; a :class:`DfineError` for a pattern given
    with ``--keep-float`` (not a part's) that matches none: a walk's ``--keep-float heads`` kept nothing in
    float while the export and the IR's metadata said it did."""
    regex = [re.compile(p) for p in patterns]
    parts = {p for group in SCOPE_GROUPS.values() for p in group}
    for pattern, r in zip(patterns, regex):
        if pattern not in parts and not any(r.fullmatch(n) for n in names):
            import difflib
            close = difflib.get_close_matches(pattern, list(SCOPE_GROUPS), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise DfineError(f"--keep-float {pattern!r} matches no operation of the model: {hint}give a part "
                             f"({', '.join(SCOPE_GROUPS)}) or a regular expression matching node names whole (e.g. "
                             f"'/model/decoder/.*')")
    return [n for n in names if any(r.fullmatch(n) for r in regex)]


def _source_name(op: Any) -> str:
    """The ONNX node name of an OpenVINO operation: its own (``/model/...``), or, for one the
    converter made and named itself (``MVN_123`` from a LayerNormalization), its nearest named
    producer's."""
    seen, todo = set(), [op]
    while todo:
        node = todo.pop(0)
        if node.get_friendly_name().startswith("/"):
            return node.get_friendly_name()
        if id(node) not in seen:
            seen.add(id(node))
            todo += [i.get_source_output().get_node() for i in node.inputs()]
    return op.get_friendly_name()


def _nncf_scope(model: Any, float_scopes: Sequence[str], scheme: str) -> Dict[str, Any]:
    """NNCF's options (``model_type``, ``ignored_scope``, ``advanced_parameters`` with the overflow fix
    on every layer (:data:`WEIGHTS_7BIT`), and for the default scheme ``preset`` and SmoothQuant off) for
    ``scheme`` (:data:`SCHEMES`) with the node-name patterns ``float_scopes`` kept in float32."""
    nncf = import_nncf()
    if scheme not in SCHEMES:
        raise DfineError(f"int8 scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
    ops = model.get_ordered_ops()
    ignored = _matching([op.get_friendly_name() for op in ops], float_scopes)
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    options: Dict[str, Any] = {"model_type": None if scheme == "head-matmuls" else nncf.ModelType.TRANSFORMER,
                               "advanced_parameters": AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE)}
    if scheme == "head-matmuls":
        ignored += [op.get_friendly_name() for op in ops if op.get_type_name() not in HEAD_INT8_TYPES
                    and _source_name(op).startswith(HEAD_PREFIXES)]
    elif scheme == "transformer":
        from nncf.quantization.advanced_parameters import AdvancedSmoothQuantParameters
        ignored += attention_products(ops)
        # OpenVINO's 8-bit max-pool (the stem's 2x2 pool, 16 channels) took 3x its float time
        ignored += [op.get_friendly_name() for op in ops if op.get_type_name() == "MaxPool"]
        options["preset"] = nncf.QuantizationPreset.PERFORMANCE
        options["advanced_parameters"].smooth_quant_alphas = AdvancedSmoothQuantParameters(convolution=-1,
                                                                                           matmul=-1)  # -1: off
    options["ignored_scope"] = nncf.IgnoredScope(names=list(dict.fromkeys(ignored)), validate=False) if ignored else None
    return options


def attention_products(ops: Sequence[Any]) -> List[str]:
    """Names of the matrix products (``MatMul``) among the OpenVINO operations ``ops`` (in
    topological order) whose two inputs both depend on the model's inputs, neither a weight (nor
    a value computed from weights alone, as the distribution integral's bin positions in an
    unsimplified export): attention's query-key and attention-value products."""
    variable: Dict[int, bool] = {}  # id(op) -> depends on a model input
    for op in ops:
        sources = [i.get_source_output().get_node() for i in op.inputs()]
        variable[id(op)] = op.get_type_name() == "Parameter" or any(variable.get(id(n), False) for n in sources)
    return [op.get_friendly_name() for op in ops if op.get_type_name() == "MatMul"
            and all(variable.get(id(i.get_source_output().get_node()), False) for i in op.inputs())]


def quantize_openvino(onnx_path: PathLike, output: PathLike, calib: Sequence[Path], *, calib_source: str = "",
                      float_scopes: Sequence[str] = FLOAT_SCOPES, max_drop: Optional[float] = None,
                      val: Any = None, max_restore: int = MAX_RESTORE, ranking_images: int = RANKING_IMAGES,
                      scheme: str = DEFAULT_SCHEME) -> Tuple[Path, QuantizeInfo]:
    """Int8 OpenVINO IR of the ONNX export ``onnx_path`` at ``output`` (``.xml`` + ``.bin``).

    ``calib``: calibration image paths. ``float_scopes``: node-name patterns kept in float32.
    ``scheme``: which operations NNCF quantizes (:data:`SCHEMES`).
    ``max_drop`` (AP points) with ``val`` (a :class:`dfine.export.evaluate.EvalSet`): NNCF's
    accuracy-aware quantization, which returns groups of layers to float32, most harmful first,
    until the AP on ``val`` is within ``max_drop`` of the float model's, or ``max_restore`` groups
    are back (then the drop may be larger: :attr:`QuantizeInfo.met_max_drop` says). The harm of
    each group is ranked on the ``ranking_images`` val images that int8 hurts most."""
    try:
        nncf = import_nncf()
        import openvino as ov
    except ImportError:
        raise DfineError("--int8 needs NNCF and OpenVINO: pip install \"dfine[int8]\"") from None
    from .openvino import METADATA_KEY, convert_onnx
    nncf.set_log_level(logging.WARNING)  # not one INFO line per operation left in float
    imgsz, meta = _onnx_info(onnx_path)
    model = convert_onnx(onnx_path)
    dataset = nncf.Dataset(list(calib), _inputs(imgsz))
    common = dict(subset_size=len(calib), fast_bias_correction=True, **_nncf_scope(model, float_scopes, scheme))
    info = QuantizeInfo("int8", f"nncf {nncf.__version__}, openvino {ov.get_version().split('-')[0]}", len(calib),
                        calib_source, list(float_scopes), _reason(float_scopes), scheme, max_drop, weights=WEIGHTS_7BIT)
    if max_drop is None:
        with _no_cuda_notice():
            quantized = nncf.quantize(model, dataset, **common)
    else:
        quantized = _accuracy_aware(model, dataset, common, info, _APValidation(imgsz, meta, val) if val is not None else None,
                                    max_restore, ranking_images)
    for key, value in meta.items():
        quantized.set_rt_info(value, [METADATA_KEY, key])
    quantized.set_rt_info(info.to_json(), [METADATA_KEY, "quantization"])
    output = Path(output).with_suffix(".xml")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp.xml")
    ov.save_model(quantized, str(tmp), compress_to_fp16=False)
    os.replace(tmp.with_suffix(".bin"), output.with_suffix(".bin"))
    os.replace(tmp, output)
    return output, info


def _accuracy_aware(model: Any, dataset: Any, common: Dict[str, Any], info: QuantizeInfo, validate: Any,
                    max_restore: int, ranking_images: int) -> Any:
    """NNCF's accuracy-aware quantization of ``model``, bounded: groups are ranked on at most
    ``ranking_images`` val images and at most ``max_restore`` go back to float. Fills the AP and what
    was restored into ``info``; returns the quantized ``openvino.Model``."""
    nncf = import_nncf()
    if validate is None:
        raise DfineError("--max-drop needs a val set: --val-ann FILE --val-images DIR")
    if max_restore < 1 or ranking_images < 1:
        raise DfineError(f"--max-restore and the ranking images must be at least 1, got {max_restore}, "
                         f"{ranking_images}")
    images = validate.val.images
    ranking = min(ranking_images, len(images))
    print(f"accuracy-aware int8: AP on {len(images)} val images; each group of int8 layers is ranked by its harm "
          f"on the {ranking} images int8 hurts most (one model compiled per group: NNCF shows the progress), then "
          f"at most {max_restore} groups go back to float, one val pass each", file=sys.stderr)
    restorer = nncf.AdvancedAccuracyRestorerParameters(
        max_num_iterations=max_restore, ranking_subset_size=ranking,
        num_ranking_workers=1)  # parallel ranking copies the model per worker: no gain on a few cores
    common = dict(common)
    if "advanced_parameters" in common:  # the same options under another name here
        common["advanced_quantization_parameters"] = common.pop("advanced_parameters")
    dynamic = model.input("images").get_partial_shape()[0].is_dynamic
    model = _batch_of(model, 1)  # measured as Detector runs it (a fixed batch; int8 results differ under dynamic shapes)
    with _nncf_report() as report:
        with _no_cuda_notice():
            quantized = nncf.quantize_with_accuracy_control(
                model, dataset, nncf.Dataset(list(images)), validate, max_drop=info.max_drop / 100,
                drop_type=nncf.DropType.ABSOLUTE, advanced_accuracy_restorer_parameters=restorer, **common)
    if dynamic:
        quantized = _batch_of(quantized, -1)
    ap_float, ap_int8 = 100 * validate.full_set[0], 100 * validate.full_set_ap(quantized)
    info.val_ap_float, info.val_ap_int8 = round(ap_float, 2), round(ap_int8, 2)
    info.met_max_drop = ap_float - ap_int8 <= info.max_drop
    info.restored_to_float, info.ranking_images, info.max_restore = report.reverted, ranking, max_restore
    return quantized


class _NNCFReport(logging.Handler):
    """Collects the names of the operations NNCF's accuracy restorer returned to float (it says
    them only in its INFO messages), while NNCF's own console output stays at WARNING.

    Its closing report lists them, after any step back; when every group went back to float it
    has no list, so the operations each step reverted are kept too."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.final: Optional[List[str]] = None  # the closing report's list
        self.steps: List[str] = []  # what each step reverted, in order

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        names = [line.strip() for line in text.splitlines()[1:] if line.strip()]
        if "were reverted back to the floating-point precision" in text:
            self.final = names
        elif text.startswith("Reverted ") and "to the floating-point precision" in text:
            self.steps += [n for n in names if n not in self.steps]

    @property
    def reverted(self) -> List[str]:
        return self.final if self.final is not None else self.steps


class _nncf_report:
    """``with _nncf_report() as report:`` ... ``report.reverted``."""

    def __enter__(self) -> _NNCFReport:
        self.logger = logging.getLogger("nncf")
        self.level, self.handler = self.logger.level, _NNCFReport()
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)  # its stdout handler keeps WARNING
        return self.handler

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)


class _APValidation:
    """NNCF's validation function: ``(compiled OpenVINO model, [(image id, path), ...]) -> (AP, per-image
    APs)``, AP in 0..1.

    Returning the per-image APs from the same pass matters: given only the AP, NNCF runs the model
    once more per image to get them, for the float and the int8 model and after every step back. An
    image without ground truth scores 0 (COCO gives -1)."""

    def __init__(self, imgsz: Tuple[int, int], meta: Dict[str, str], val: Any):
        from ..inference import _metadata
        self.imgsz, self.val = imgsz, val
        self.names, self.ids = _metadata(meta)
        self.full_set: List[float] = []  # AP of each pass over the whole val set; NNCF's first is the float model
        self.say = True  # each pass over the whole val set said on stderr as it ends (not the final measure)

    def detector(self, compiled: Any) -> Any:
        from ..inference import Detector
        outputs = [compiled.output(n) for n in ("labels", "boxes", "scores")]

        def run(images: np.ndarray, sizes: np.ndarray):
            res = compiled({"images": images, "orig_target_sizes": sizes})
            return tuple(np.asarray(res[o]) for o in outputs)

        return Detector.from_run(run, self.imgsz, self.names, self.ids, conf=0.0, backend="openvino")

    def __call__(self, compiled: Any, items: Any) -> Tuple[float, List[float]]:
        from ..engine.evaluator import coco_metrics
        from .evaluate import coco_results
        items = list(items)
        dets = coco_results(self.detector(compiled), items)
        ap = max(0.0, coco_metrics(self.val.ann, dets, [i for i, _ in items]).ap)
        if len(items) == len(self.val.images) and self.say:
            what = ("float32" if not self.full_set else "int8" if len(self.full_set) == 1
                    else f"int8 after step {len(self.full_set) - 1} back to float")
            # NNCF's own bars reach a log only when done: the passes are said as they end (a walk saw 10 silent minutes)
            print(f"accuracy-aware int8: val AP {100 * ap:.2f} ({what})", file=sys.stderr, flush=True)
        if len(items) == len(self.val.images):
            self.full_set.append(ap)
        return ap, _per_image_ap(self.val.ann, dets, [i for i, _ in items])

    def full_set_ap(self, model: Any) -> float:
        """AP of an OpenVINO model on the whole val set, compiled as :class:`dfine.Detector` compiles
        it at batch 1 (float32 inference, the batch fixed: an int8 model compiled with a dynamic batch
        scored 10.2 AP where ``dfine eval`` of the saved file, at a fixed batch, read 9.9)."""
        import openvino as ov
        compiled = ov.Core().compile_model(_batch_of(model.clone(), 1), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.say = False
        return self(compiled, self.val.images)[0]


def _batch_of(model: Any, batch: int) -> Any:
    """``model`` (an ``openvino.Model``, changed in place) with its batch axis set to ``batch`` (-1:
    dynamic)."""
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        shape[0] = batch
        shapes[port.get_any_name()] = shape
    model.reshape(shapes)
    return model


def _per_image_ap(ann: Dict[str, Any], dets: Sequence[Dict[str, Any]], image_ids: Sequence[int]) -> List[float]:
    """COCO AP (0..1; 0 for an image without ground truth) of each image alone, each scored against
    an annotation file cut down to that image (so each costs little)."""
    from ..engine.evaluator import coco_metrics
    by_image: Dict[int, List[Dict[str, Any]]] = {i: [] for i in image_ids}
    for d in dets:
        by_image.setdefault(int(d["image_id"]), []).append(d)
    gt: Dict[int, List[Any]] = {i: [] for i in image_ids}
    for a in ann.get("annotations", []):
        if int(a["image_id"]) in gt:
            gt[int(a["image_id"])].append(a)
    images = {int(im["id"]): im for im in ann["images"]}
    out = []
    for i in image_ids:
        if not gt[i]:
            out.append(0.0)
            continue
        one = {"images": [images[i]], "annotations": gt[i], "categories": ann.get("categories", [])}
        out.append(max(0.0, coco_metrics(one, by_image[i], [i]).ap))
    return out


def quantize_onnx(onnx_path: PathLike, output: PathLike, calib: Sequence[Path], *, calib_source: str = "",
                  float_scopes: Sequence[str] = FLOAT_SCOPES) -> Tuple[Path, QuantizeInfo]:
    """ONNX file with int8 QDQ nodes (static quantization: per-channel int8 weights, uint8
    activations calibrated by min/max) for ONNX Runtime, at ``output``."""
    try:
        import onnx
        import onnxruntime
        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                              quantize_static)
    except ImportError:
        raise DfineError("--int8 for ONNX needs onnx and onnxruntime: pip install \"dfine[onnx]\"") from None
    imgsz, meta = _onnx_info(onnx_path)
    transform = _inputs(imgsz)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calib)

        def get_next(self):
            path = next(self.items, None)
            return None if path is None else transform(path)

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    prepared, tmp = (output.with_name(f".{output.stem}.{part}.onnx") for part in ("prep", "tmp"))
    try:
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        nodes = [n.name for n in onnx.load(str(prepared), load_external_data=False).graph.node]
        quantize_static(str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"], per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=_matching(nodes, float_scopes))
        info = QuantizeInfo("int8", f"onnxruntime {onnxruntime.__version__} (static QDQ)", len(calib),
                            calib_source, list(float_scopes), _reason(float_scopes), scheme="")
        model = onnx.load(str(tmp))
        del model.metadata_props[:]
        for key, value in {**meta, "quantization": info.to_json()}.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(tmp))
        os.replace(tmp, output)
    finally:
        prepared.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return output, info
