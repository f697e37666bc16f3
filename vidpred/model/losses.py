"""VPGAN losses. Pure functions of tensors: no module calls, no in-place ops on inputs.

Conventions (both D losses are the sum of a real and a fake term):

* ``lsgan``: D = mean((D(real) - 1)^2) + mean(D(fake)^2);  G = mean((D(fake) - 1)^2)
* ``hinge``: D = mean(relu(1 - D(real))) + mean(relu(1 + D(fake)));  G = -mean(D(fake))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vidpred.config import LossConfig

GAN_KINDS = ("lsgan", "hinge")


def _check_kind(kind: str) -> None:
    if kind not in GAN_KINDS:
        raise ValueError(f"unknown GAN loss {kind!r}; allowed: {', '.join(GAN_KINDS)}")


def d_loss(real_logits: Tensor, fake_logits: Tensor, kind: str) -> Tensor:
    """Discriminator loss on raw logits (fake_logits should come from detached fakes)."""
    _check_kind(kind)
    if kind == "lsgan":
        return ((real_logits - 1) ** 2).mean() + (fake_logits ** 2).mean()
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def g_adv_loss(fake_logits: Tensor, kind: str) -> Tensor:
    """Generator side of the adversarial loss."""
    _check_kind(kind)
    if kind == "lsgan":
        return ((fake_logits - 1) ** 2).mean()
    return -fake_logits.mean()


def feature_matching(real_feats: list[Tensor], fake_feats: list[Tensor]) -> Tensor:
    """Mean over layers of the L1 distance between D's feature maps; real features are detached."""
    if len(real_feats) != len(fake_feats) or not real_feats:
        raise ValueError(f"need the same, non-zero number of feature maps; got {len(real_feats)} real, {len(fake_feats)} fake")
    return torch.stack([F.l1_loss(f, r.detach()) for r, f in zip(real_feats, fake_feats)]).mean()


def generator_loss(
    pred: Tensor,
    target: Tensor,
    kl: Tensor,
    fake_logits: Tensor | None,
    real_feats: list[Tensor] | None,
    fake_feats: list[Tensor] | None,
    w: LossConfig,
    kind: str,
) -> tuple[Tensor, dict[str, float]]:
    """total = w_rec * L1(pred, target) + w_kl * kl + w_adv * g_adv + w_feat * feature_matching.

    A term whose weight is 0 is left out of ``total`` entirely (so it contributes no gradient, not
    even NaN * 0). ``fake_logits`` may be None when w_adv == 0, and the feature lists None when
    w_feat == 0 (then the D forward can be skipped). The dict holds the unweighted terms and the
    weighted total as Python floats ("rec", "kl", "adv", "feat", "g_total"); a term not computed
    reads 0.0. One host sync for all of them.
    """
    _check_kind(kind)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    zero = pred.new_zeros(())
    terms = {"rec": F.l1_loss(pred, target), "kl": kl, "adv": zero, "feat": zero}
    if fake_logits is not None:
        terms["adv"] = g_adv_loss(fake_logits, kind)
    elif w.w_adv:
        raise ValueError("w_adv > 0 needs fake_logits")
    if real_feats is not None and fake_feats is not None:
        terms["feat"] = feature_matching(real_feats, fake_feats)
    elif w.w_feat:
        raise ValueError("w_feat > 0 needs real_feats and fake_feats")

    weights = {"rec": w.w_rec, "kl": w.w_kl, "adv": w.w_adv, "feat": w.w_feat}
    total = zero
    for name, weight in weights.items():
        if weight:
            total = total + weight * terms[name]
    values = torch.stack([terms[k].detach().float().reshape(()) for k in weights] + [total.detach().float()]).tolist()
    return total, dict(zip([*weights, "g_total"], values))
