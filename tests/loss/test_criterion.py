"""DFINECriterion on hand-made outputs: names, purity, empty targets, autocast, DDP counts, options."""

import copy

import pytest
import torch

import dfine.loss.criterion as criterion_module
from dfine.loss import HungarianMatcher, build_criterion
from tests.loss.fakes import expected_keys, fake_outputs


def _criterion(**overrides):
    return build_criterion("dfine_n", num_classes=4, reg_max=8, **overrides)


def _values(losses):
    return {k: v.item() for k, v in losses.items()}


def test_loss_names_follow_the_published_layout():
    outputs, targets, _ = fake_outputs([3, 1], num_layers=3, dn_groups=2)
    losses = _criterion()(outputs, targets)
    assert set(losses) == expected_keys(3, dn=True)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    # the last denoising layer is its own teacher: no distillation
    assert losses["loss_ddf_dn_2"].item() == 0.0
    assert losses["loss_ddf_aux_0"].item() > 0.0
    outputs, targets, _ = fake_outputs([3, 1], num_layers=2, dn_groups=0)
    assert set(_criterion()(outputs, targets)) == expected_keys(2, dn=False)


def test_losses_are_weighted():
    outputs, targets, _ = fake_outputs([3, 2])
    base = _values(_criterion()(outputs, targets))
    heavier = _values(_criterion(weight_dict={"loss_fgl": 0.3, "loss_bbox": 1.0})(outputs, targets))
    for key, value in base.items():
        factor = 2.0 if key.startswith("loss_fgl") else 0.2 if key.startswith("loss_bbox") else 1.0
        assert heavier[key] == pytest.approx(value * factor, rel=1e-6), key


def test_no_state_between_calls():
    outputs, targets, _ = fake_outputs([3, 2], seed=0)
    other_outputs, other_targets, _ = fake_outputs([1, 4], seed=1)
    crit = _criterion()
    first = _values(crit(outputs, targets))
    crit(other_outputs, other_targets)
    assert _values(crit(outputs, targets)) == first
    assert _values(_criterion()(outputs, targets)) == first
    assert not any(isinstance(v, torch.Tensor) for v in vars(crit).values())
    assert not list(crit.buffers()) and not list(crit.parameters())


def test_outputs_are_not_modified():
    outputs, targets, _ = fake_outputs([2, 1])
    before = {k: (set(v) if isinstance(v, dict) else [set(d) for d in v] if isinstance(v, list) else v)
              for k, v in outputs.items()}
    targets_before = copy.deepcopy(targets)
    _criterion()(outputs, targets)
    after = {k: (set(v) if isinstance(v, dict) else [set(d) for d in v] if isinstance(v, list) else v)
             for k, v in outputs.items()}
    assert after.keys() == before.keys()
    assert all(after[k] == before[k] for k in ("aux_outputs", "dn_outputs", "pre_outputs"))
    for t, u in zip(targets, targets_before):
        assert torch.equal(t["labels"], u["labels"]) and torch.equal(t["boxes"], u["boxes"])


def _total_and_grads(outputs, targets, leaves, crit=None):
    losses = (crit or _criterion())(outputs, targets)
    total = sum(losses.values())
    grads = torch.autograd.grad(total, leaves, allow_unused=True)
    return losses, total, grads


def test_image_without_objects_trains():
    outputs, targets, leaves = fake_outputs([0, 3, 0])
    losses, total, grads = _total_and_grads(outputs, targets, leaves)
    assert set(losses) == expected_keys(3, dn=True)
    assert torch.isfinite(total)
    assert all(g is None or torch.isfinite(g).all() for g in grads)


def test_batch_without_any_object_trains():
    outputs, targets, leaves = fake_outputs([0, 0], dn_groups=2)
    losses, total, grads = _total_and_grads(outputs, targets, leaves)
    assert torch.isfinite(total)
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(losses[k].item() == 0.0 for k in losses if k.startswith(("loss_bbox", "loss_giou", "loss_fgl")))
    assert losses["loss_vfl"].item() > 0.0  # every query is pushed towards background
    assert all(g is None or torch.isfinite(g).all() for g in grads)


def test_batch_without_any_object_and_no_denoising_queries():
    """What the model gives when denoising is on but no image has a target: 0 dn queries, no positives."""
    outputs, targets, leaves = fake_outputs([0, 0], dn_groups=1)
    empty = lambda t: t[:, :0]  # noqa: E731
    outputs["dn_outputs"] = [{k: empty(v) for k, v in d.items()} for d in outputs["dn_outputs"]]
    last = outputs["dn_outputs"][-1]
    for d in outputs["dn_outputs"]:
        d["teacher_corners"], d["teacher_logits"] = last["pred_corners"], last["pred_logits"]
    outputs["dn_pre_outputs"] = {k: empty(v) for k, v in outputs["dn_pre_outputs"].items()}
    outputs["dn_meta"] = {"dn_positive_idx": None, "dn_num_group": 0, "dn_num_split": [0, 12]}
    losses, total, grads = _total_and_grads(outputs, targets, leaves)
    assert all(losses[k].item() == 0.0 for k in losses if "_dn_" in k)
    assert torch.isfinite(total) and all(g is None or torch.isfinite(g).all() for g in grads)


def test_bf16_autocast_is_finite_and_close_to_float32():
    ref_outputs, targets, _ = fake_outputs([3, 2], seed=3)
    reference = _values(_criterion()(ref_outputs, targets))
    outputs, targets, leaves = fake_outputs([3, 2], seed=3, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses, total, grads = _total_and_grads(outputs, targets, leaves)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    for k, v in losses.items():
        assert v.item() == pytest.approx(reference[k], rel=0.05, abs=1e-3), k


_PER_IMAGE = ("pred_logits", "pred_boxes", "pred_corners", "ref_points", "teacher_corners", "teacher_logits")


def _image_slice(outputs, i):
    """Outputs of image ``i`` alone (what a DDP rank with that one image computes)."""
    if isinstance(outputs, list):
        return [_image_slice(o, i) for o in outputs]
    return {k: v[i:i + 1] if k in _PER_IMAGE else _image_slice(v, i) if isinstance(v, (list, dict)) else v
            for k, v in outputs.items()}


def _ranks(monkeypatch, outputs, targets, crit):
    """Losses of two simulated DDP ranks holding image 0 and image 1: each rank's all-reduce
    adds what the other rank contributes to the same call."""
    monkeypatch.setattr(criterion_module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(criterion_module.dist, "get_world_size", lambda: 2)
    sent = {0: [], 1: []}

    def record(rank):
        return lambda t: sent[rank].append(t.clone())

    for rank in (0, 1):  # the counts a rank sends do not depend on what it receives
        monkeypatch.setattr(criterion_module.dist, "all_reduce", record(rank))
        crit(_image_slice(outputs, rank), targets[rank:rank + 1])
    results = []
    for rank in (0, 1):
        received = iter(sent[1 - rank])
        monkeypatch.setattr(criterion_module.dist, "all_reduce", lambda t: t.add_(next(received)))
        results.append(_values(crit(_image_slice(outputs, rank), targets[rank:rank + 1])))
    return results


def test_mean_over_ranks_is_the_whole_batch_loss(monkeypatch):
    """DDP averages the ranks' gradients, so the ranks' mean loss must be the loss of the whole batch:
    counts (boxes, matches, DDF edges and images) are averaged over ranks before dividing."""
    outputs, targets, _ = fake_outputs([3, 1], dn_groups=0)
    crit = _criterion()
    whole = _values(crit(outputs, targets))
    rank0, rank1 = _ranks(monkeypatch, outputs, targets, crit)
    assert set(rank0) == set(whole) and any(k.startswith("loss_ddf") for k in whole)
    for k, value in whole.items():
        assert (rank0[k] + rank1[k]) / 2 == pytest.approx(value, rel=1e-5, abs=1e-7), k
    assert rank0["loss_ddf_aux_0"] != pytest.approx(rank1["loss_ddf_aux_0"], rel=1e-3)  # not trivially equal


def test_counts_are_clamped_to_one():
    assert criterion_module.mean_count(0, torch.device("cpu")) == 1.0
    assert criterion_module.mean_count(7, torch.device("cpu")) == 7.0


class _CountingMatcher(HungarianMatcher):
    def __init__(self):
        super().__init__()
        self.layers_matched = 0

    def match_many(self, layers, targets):
        self.layers_matched += len(layers)
        return super().match_many(layers, targets)


def test_share_matched_indices_matches_the_last_layer_only():
    outputs, targets, _ = fake_outputs([3, 2], num_layers=3, dn_groups=0)
    counts = {}
    for share in (False, True):
        crit = _criterion(share_matched_indices=share)
        crit.matcher = _CountingMatcher()
        losses = crit(outputs, targets)
        counts[share] = crit.matcher.layers_matched
        assert set(losses) == expected_keys(3, dn=False)
    assert counts == {False: 5, True: 2}  # main + 2 aux + pre + enc, or main + enc


def test_boxes_weight_format():
    outputs, targets, _ = fake_outputs([3, 2], dn_groups=0)
    plain = _values(_criterion()(outputs, targets))
    by_iou = _values(_criterion(boxes_weight_format="iou")(outputs, targets))
    by_giou = _values(_criterion(boxes_weight_format="giou")(outputs, targets))
    # IoU in [0, 1) shrinks the GIoU term; the VFL target is the IoU either way
    assert by_iou["loss_giou"] < plain["loss_giou"]
    assert by_iou["loss_vfl"] == pytest.approx(plain["loss_vfl"], rel=1e-6)
    assert by_iou["loss_bbox"] == pytest.approx(plain["loss_bbox"], rel=1e-6)
    assert by_giou["loss_vfl"] != pytest.approx(plain["loss_vfl"], rel=1e-3)


def test_class_agnostic_encoder_head():
    outputs, targets, leaves = fake_outputs([3, 2], dn_groups=0)
    enc = outputs["enc_aux_outputs"][0]
    enc["pred_logits"] = enc["pred_logits"][..., :1].detach().requires_grad_(True)
    outputs["enc_meta"] = {"class_agnostic": True}
    losses = _criterion()(outputs, targets)
    assert set(losses) == expected_keys(3, dn=False)
    assert torch.isfinite(losses["loss_vfl_enc_0"]) and losses["loss_vfl_enc_0"].item() > 0


def test_focal_loss_option():
    outputs, targets, _ = fake_outputs([3, 2], dn_groups=0)
    losses = _criterion(losses=["focal", "boxes"], weight_dict={"loss_focal": 1.0})(outputs, targets)
    assert "loss_focal" in losses and "loss_vfl" not in losses and "loss_fgl" not in losses
    assert "loss_focal_aux_1" in losses and "loss_focal_enc_0" in losses


@pytest.mark.parametrize("targets, match", [
    ("boxes", "list of dicts"),
    ([{"labels": torch.tensor([1])}] * 2, "'labels'"),
    ([{"labels": torch.tensor([1.0]), "boxes": torch.rand(1, 4)}] * 2, "int64"),
    ([{"labels": torch.tensor([1]), "boxes": torch.rand(1, 5)}] * 2, r"\[1, 4\]"),
    ([{"labels": torch.tensor([9]), "boxes": torch.rand(1, 4)}] * 2, "0..3"),
    ([{"labels": torch.tensor([1]), "boxes": torch.rand(1, 4)}], "1 targets for a batch of 2"),
])
def test_bad_targets_are_one_line_errors(targets, match):
    outputs, _, _ = fake_outputs([1, 1], dn_groups=0)
    with pytest.raises((ValueError, TypeError), match=match) as info:
        _criterion()(outputs, targets)
    assert "\n" not in str(info.value)


def test_mismatched_model_is_a_clear_error():
    outputs, targets, _ = fake_outputs([1, 1], dn_groups=0)
    with pytest.raises(ValueError, match="num_classes=80"):
        build_criterion("dfine_n", reg_max=8)(outputs, targets)
    with pytest.raises(ValueError, match="reg_max"):
        build_criterion("dfine_n", num_classes=4)(outputs, targets)


def test_denoising_pairs_and_normalisation():
    """Denoising layers use the known pairs of dn_meta, normalised by num_boxes * dn_num_group."""
    outputs, targets, _ = fake_outputs([3, 2], dn_groups=3)
    losses = _criterion()(outputs, targets)
    meta, layer = outputs["dn_meta"], outputs["dn_outputs"][1]
    l1 = 0.0
    for i, t in enumerate(targets):
        k = t["boxes"].shape[0]
        src = layer["pred_boxes"][i, meta["dn_positive_idx"][i]]
        l1 += (src - t["boxes"].repeat(3, 1)).abs().sum().item()
        assert len(meta["dn_positive_idx"][i]) == 3 * k
    assert losses["loss_bbox_dn_1"].item() == pytest.approx(5.0 * l1 / (5 * 3), rel=1e-5)


def test_matches_gathered_from_indices_on_different_devices():
    """On a GPU an image without targets gives empty pairs on the CPU beside the other images'
    denoising pairs on the GPU (training crashed at the first such batch: 'Expected all tensors to be
    on the same device'). The meta device stands in for the GPU."""
    from dfine.loss.criterion import gather_matches
    empty = torch.zeros(0, dtype=torch.int64)
    indices = [(empty, empty.clone()), (torch.tensor([3, 5], device="meta"), torch.tensor([1, 0]))]
    targets = [{"labels": empty.clone(), "boxes": torch.zeros(0, 4)},
               {"labels": torch.tensor([7, 9]), "boxes": torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]])}]
    meta = gather_matches(indices, targets, 2.0, torch.device("meta"))
    assert meta.batch.device.type == meta.query.device.type == meta.labels.device.type == "meta"
    assert meta.count == 2
    cpu = gather_matches([(empty, empty.clone()), (torch.tensor([3, 5]), torch.tensor([1, 0]))], targets, 2.0,
                         torch.device("cpu"))
    assert cpu.batch.tolist() == [1, 1] and cpu.query.tolist() == [3, 5] and cpu.labels.tolist() == [9, 7]
