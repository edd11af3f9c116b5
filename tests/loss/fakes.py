"""Hand-made train-mode output dicts with the published layout, for criterion tests without a model."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch


def random_targets(sizes: Sequence[int], num_classes: int, generator: torch.Generator) -> List[dict]:
    """One dict per image: ``labels [K] int64``, ``boxes [K, 4]`` normalised cx, cy, w, h."""
    targets = []
    for k in sizes:
        centre = torch.rand(k, 2, generator=generator) * 0.6 + 0.2
        size = torch.rand(k, 2, generator=generator) * 0.3 + 0.05
        targets.append({"labels": torch.randint(0, num_classes, (k,), generator=generator),
                        "boxes": torch.cat([centre, size], dim=1)})
    return targets


def fake_outputs(sizes: Sequence[int], *, num_queries: int = 12, num_classes: int = 4, reg_max: int = 8,
                 num_layers: int = 3, dn_groups: int = 2, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> Tuple[Dict, List[dict], List[torch.Tensor]]:
    """Outputs as the model builds them in train mode, for images with ``sizes[i]`` targets.

    Returns ``(outputs, targets, leaves)``: ``leaves`` are the tensors requiring grad (logits,
    boxes, corners of every layer). ``dn_groups=0`` leaves out the denoising entries.
    """
    g = torch.Generator().manual_seed(seed)
    b, q, bins = len(sizes), num_queries, reg_max + 1
    targets = random_targets(sizes, num_classes, g)
    leaves: List[torch.Tensor] = []

    def leaf(t: torch.Tensor) -> torch.Tensor:
        t = t.to(dtype).requires_grad_(True)
        leaves.append(t)
        return t

    def boxes(n: int) -> torch.Tensor:
        return torch.cat([torch.rand(b, n, 2, generator=g) * 0.8 + 0.1,
                          torch.rand(b, n, 2, generator=g) * 0.4 + 0.02], dim=-1)

    def head(n: int, corners: bool) -> dict:
        d = {"pred_logits": leaf(torch.randn(b, n, num_classes, generator=g)), "pred_boxes": leaf(boxes(n))}
        if corners:
            d["pred_corners"] = leaf(torch.randn(b, n, 4 * bins, generator=g))
        return d

    def decoder(n: int) -> List[dict]:
        ref = boxes(n).to(dtype)
        layers = [dict(head(n, True), ref_points=ref) for _ in range(num_layers)]
        last = layers[-1]
        return [dict(d, teacher_corners=last["pred_corners"], teacher_logits=last["pred_logits"]) for d in layers]

    layers = decoder(q)
    out = {k: v for k, v in layers[-1].items() if not k.startswith("teacher")}
    out.update(up=torch.tensor([0.5]), reg_scale=torch.tensor([4.0]), aux_outputs=layers[:-1],
               pre_outputs=head(q, False), enc_aux_outputs=[head(q, False)], enc_meta={"class_agnostic": False})
    if dn_groups:
        per_group = 2 * max(max(sizes, default=0), 1)  # a positive and a negative query per target
        n_dn = per_group * dn_groups
        positive = tuple(torch.cat([torch.arange(k) + grp * per_group for grp in range(dn_groups)])
                         for k in sizes)
        out.update(dn_outputs=decoder(n_dn), dn_pre_outputs=head(n_dn, False),
                   dn_meta={"dn_positive_idx": positive, "dn_num_group": dn_groups, "dn_num_split": [n_dn, q]})
    return out, targets, leaves


def expected_keys(num_layers: int, dn: bool) -> set:
    """The published loss names for ``num_layers`` decoder layers (no ``loss_ddf`` on the last one)."""
    keys = {"loss_vfl", "loss_bbox", "loss_giou", "loss_fgl"}
    for i in range(num_layers - 1):
        keys |= {f"{k}_aux_{i}" for k in ("loss_vfl", "loss_bbox", "loss_giou", "loss_fgl", "loss_ddf")}
    keys |= {f"{k}{s}" for k in ("loss_vfl", "loss_bbox", "loss_giou") for s in ("_pre", "_enc_0")}
    if dn:
        for i in range(num_layers):
            keys |= {f"{k}_dn_{i}" for k in ("loss_vfl", "loss_bbox", "loss_giou", "loss_fgl", "loss_ddf")}
        keys |= {f"{k}_dn_pre" for k in ("loss_vfl", "loss_bbox", "loss_giou")}
    return keys
