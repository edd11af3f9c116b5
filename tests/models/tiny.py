"""A tiny D-FINE configuration for fast unit tests (few channels, one decoder layer)."""

import dfine


def tiny_model(**overrides):
    opts = dict(
        num_classes=5,
        encoder={"hidden_dim": 32, "dim_feedforward": 64, "expansion": 0.5, "depth_mult": 0.34, "nhead": 4},
        decoder={"hidden_dim": 32, "dim_feedforward": 64, "num_layers": 2, "num_queries": 20,
                 "num_denoising": 10, "nhead": 4, "reg_max": 8},
        eval_spatial_size=(128, 128),
    )
    opts.update(overrides)
    return dfine.build_model("dfine_n", **opts)
