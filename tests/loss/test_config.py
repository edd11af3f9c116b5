"""build_criterion: published defaults per size, overrides, one-line errors."""

import pytest

from dfine.loss import CriterionConfig, DFINECriterion, build_criterion
from dfine.models.config import preset

PUBLISHED_WEIGHTS = {"loss_vfl": 1, "loss_bbox": 5, "loss_giou": 2, "loss_fgl": 0.15, "loss_ddf": 1.5}


@pytest.mark.parametrize("name", ["dfine_n", "dfine_s", "dfine_m", "dfine_l", "dfine_x"])
def test_published_defaults(name):
    crit = build_criterion(name)
    assert isinstance(crit, DFINECriterion)
    assert crit.weight_dict == PUBLISHED_WEIGHTS
    assert crit.losses == ("vfl", "boxes", "local")
    assert (crit.alpha, crit.gamma, crit.num_classes) == (0.75, 2.0, 80)
    assert crit.reg_max == preset(name).decoder.reg_max == 32
    assert crit.boxes_weight_format is None and crit.share_matched_indices is False
    m = crit.matcher
    assert (m.cost_class, m.cost_bbox, m.cost_giou, m.alpha, m.gamma, m.use_focal_loss) == (2, 5, 2, 0.25, 2.0, True)


def test_overrides_merge_weights_and_matcher_options():
    crit = build_criterion("dfine_s", num_classes=3, weight_dict={"loss_ddf": 3.0}, alpha=0.5,
                           matcher={"alpha": 0.3, "weight_dict": {"cost_bbox": 1.0}}, reg_max=16)
    assert crit.weight_dict == {**PUBLISHED_WEIGHTS, "loss_ddf": 3.0}
    assert (crit.num_classes, crit.alpha, crit.reg_max) == (3, 0.5, 16)
    assert (crit.matcher.alpha, crit.matcher.cost_bbox, crit.matcher.cost_class) == (0.3, 1.0, 2.0)


@pytest.mark.parametrize("overrides, key", [
    ({"gama": 2.0}, "gama"),
    ({"matcher": {"cost": 1}}, "cost"),
    ({"weight_dict": {"loss_l1": 1.0}}, "loss_l1"),
    ({"matcher": {"weight_dict": {"cost_mask": 1.0}}}, "cost_mask"),
])
def test_unknown_override_is_a_type_error_naming_it(overrides, key):
    with pytest.raises(TypeError, match=key) as info:
        build_criterion("dfine_n", **overrides)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("overrides, match", [
    ({"losses": ["vfl", "mask"]}, "mask"),
    ({"boxes_weight_format": "l1"}, "boxes_weight_format"),
    ({"matcher": {"type": "SimOTA"}}, "HungarianMatcher"),
    ({"matcher": {"weight_dict": {"cost_class": 0, "cost_bbox": 0, "cost_giou": 0}}}, "cannot all be 0"),
    ({"weight_dict": {"loss_vfl": "one"}}, "number"),
])
def test_bad_values_are_value_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        build_criterion("dfine_n", **overrides)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="dfine_q"):
        build_criterion("dfine_q")


def test_from_config_matches_build_criterion():
    crit = DFINECriterion.from_config(CriterionConfig(), num_classes=80, reg_max=32)
    ref = build_criterion("dfine_l")
    assert (crit.weight_dict, crit.losses, crit.alpha, repr(crit.matcher)) == \
        (ref.weight_dict, ref.losses, ref.alpha, repr(ref.matcher))
