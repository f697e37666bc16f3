"""VPGAN losses. Pure functions of tensors: no module calls, no in-place ops on inputs.

Conventions (both D losses are the sum of a real and a fake term):

* ``lsgan``: D = mean((D(real) - 1)^2) + mean(D(fake)^2);  G = mean((D(fake) - 1)^2)
* ``hinge``: D = mean(relu(1 - D(real))) + mean(relu(1 + D(fake)));  G = -mean(D(fake))

With several discriminators (frame, clip) the adversarial terms add up and feature matching is their
mean; each discriminator's part is logged too (``adv_frame``, ``adv_clip``, ``feat_frame``, ...).

Default weights start from SAVP's published proportions (Lee et al. 2018, ``hparams/*/ours_savp``:
``l1_weight`` 100, ``kl_weight`` 0.1 on BAIR and 0.001 on KTH, video GAN 1 and VAE-GAN 1), divided by 100
so that ``w_rec`` is 1: ``w_kl`` 1e-3 (BAIR's). SAVP's runs use no feature matching; ``w_feat`` = 10 x
``w_adv`` is pix2pixHD's ratio (lambda_FM 10 to a GAN weight of 1). The adversarial pair is 100x below
SAVP's (``w_adv`` 1e-4, not 1e-2): in 30-minute runs of ``benchmarks/quality.py`` SAVP's strength and 10x
below it lost to copy-last-frame, 100x below beat it with both terms and both discriminators still training
(figures in docs/model.md); long runs may want them higher
(``vidpred tune`` searches 1e-5 to 1e-2). SAVP anneals the KL weight linearly from step 50k to 100k of
300k; here annealing is off unless asked for (``loss.kl_anneal``). Note the KL here sums over a latent
*map* (channels x pixels), SAVP's over an 8-d vector: per clip it weighs more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vidpred.config import LossConfig

GAN_KINDS = ("lsgan", "hinge")
TERMS = ("rec", "kl", "adv", "feat", "cycle", "rec_prior")  # the generator terms, in the order of their weights


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
    """Mean over layers of the L1 distance between D's feature maps; real features are detached.

    A fake map may hold k fakes per real sample, stacked along dim 0 (the posterior path's, then the prior
    path's: ``k`` = 2): each is matched to the same real features."""
    if len(real_feats) != len(fake_feats) or not real_feats:
        raise ValueError(f"need the same, non-zero number of feature maps; got {len(real_feats)} real, {len(fake_feats)} fake")
    return torch.stack([F.l1_loss(f, _repeated(r.detach(), f)) for r, f in zip(real_feats, fake_feats)]).mean()


def _repeated(real: Tensor, fake: Tensor) -> Tensor:
    """``real`` stacked k times along dim 0 to match ``fake`` (k fakes per real sample)."""
    k, left = divmod(fake.shape[0], real.shape[0])
    if left or real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"fake features {tuple(fake.shape)} are not k x real features {tuple(real.shape)}")
    return real if k == 1 else real.repeat(k, *[1] * (real.ndim - 1))


def _detached(named: dict[str, Tensor]) -> dict[str, Tensor]:
    """Scalars detached as fp32 0-d tensors, left on their device: logging them costs no host sync, so a
    training loop can add them up on the device and read them once per logging interval (:func:`as_floats`)."""
    return {k: v.detach().float().reshape(()) for k, v in named.items()}


def as_floats(named: dict[str, Tensor | float]) -> dict[str, float]:
    """Logged scalars (0-d tensors or numbers) as Python floats, with one host sync for all of them."""
    tensors = [k for k, v in named.items() if isinstance(v, Tensor)]
    values = dict(zip(tensors, torch.stack([named[k].float().reshape(()) for k in tensors]).tolist())) if tensors else {}
    return {k: values[k] if k in values else float(v) for k, v in named.items()}


def discriminator_loss(real_logits: list[Tensor], fake_logits: list[Tensor], kind: str,
                       names: tuple[str, ...] = ("frame", "clip")) -> tuple[Tensor, dict[str, Tensor]]:
    """Sum of every discriminator's D loss; logs ``d_<name>`` for each and ``d_loss`` for the sum (detached
    0-d tensors: :func:`as_floats` reads them)."""
    parts = {f"d_{n}": d_loss(r, f, kind) for n, r, f in zip(names, real_logits, fake_logits)}
    total = torch.stack(list(parts.values())).sum()
    return total, _detached({**parts, "d_loss": total})


def kl_weight(w: LossConfig, step: int) -> float:
    """``w_kl``, or with ``kl_anneal: linear`` 0 until kl_anneal_start rising to w_kl at kl_anneal_end."""
    if w.kl_anneal == "none":
        return w.w_kl
    ramp = (step - w.kl_anneal_start) / (w.kl_anneal_end - w.kl_anneal_start)
    return w.w_kl * min(max(ramp, 0.0), 1.0)


def generator_loss(
    pred: Tensor,
    target: Tensor,
    kl: Tensor,
    fake_logits: list[Tensor] | None,
    real_feats: list[list[Tensor]] | None,
    fake_feats: list[list[Tensor]] | None,
    w: LossConfig,
    kind: str,
    *,
    step: int = 0,
    cycle: Tensor | None = None,
    prior_pred: Tensor | None = None,
    names: tuple[str, ...] = ("frame", "clip"),
) -> tuple[Tensor, dict[str, Tensor | float]]:
    """total = w_rec * L1(pred, target) + w_kl(step) * kl + w_adv * adv + w_feat * feat + w_cycle * cycle
    + w_rec_prior * L1(prior_pred, target).

    ``pred`` is the posterior path's prediction (teacher forced, z from the posterior), ``prior_pred`` the
    prior path's (free running, z from the prior; or None). ``fake_logits`` holds one logit tensor per
    discriminator, ``real_feats``/``fake_feats`` one list of feature maps per discriminator; the fakes of
    both paths may be stacked along dim 0 in them (then ``adv`` and ``feat`` are means over both paths'
    fakes). ``cycle`` is an already computed cycle L1 (or None). A term whose
    weight is 0 is left out of ``total`` entirely (so it contributes no gradient, not even NaN * 0);
    the logits may be None when w_adv == 0, the features when w_feat == 0, ``cycle`` when w_cycle == 0,
    ``prior_pred`` when w_rec_prior == 0.
    The dict holds every unweighted term ("rec", "kl", "adv", "feat", "cycle", "rec_prior" and per
    discriminator "adv_<name>", "feat_<name>"), the KL weight in force ("w_kl") and the weighted total ("g_total").
    A term not computed reads 0.0. The terms are detached 0-d tensors (no host sync; :func:`as_floats` reads
    them), ``w_kl`` a float. ``w.schedule`` applies at ``step``.
    """
    _check_kind(kind)
    w = w.at(step)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    zero = pred.new_zeros(())
    terms = {"rec": F.l1_loss(pred, target), "kl": kl, "adv": zero, "feat": zero, "cycle": zero, "rec_prior": zero}
    per_d: dict[str, Tensor] = {}
    if fake_logits is not None:
        per_d.update({f"adv_{n}": g_adv_loss(x, kind) for n, x in zip(names, fake_logits)})
        terms["adv"] = torch.stack([per_d[f"adv_{n}"] for n in names[:len(fake_logits)]]).sum()
    elif w.w_adv:
        raise ValueError("w_adv > 0 needs fake_logits")
    if real_feats is not None and fake_feats is not None:
        per_d.update({f"feat_{n}": feature_matching(r, f) for n, r, f in zip(names, real_feats, fake_feats)})
        terms["feat"] = torch.stack([per_d[f"feat_{n}"] for n in names[:len(fake_feats)]]).mean()
    elif w.w_feat:
        raise ValueError("w_feat > 0 needs real_feats and fake_feats")
    if cycle is not None:
        terms["cycle"] = cycle
    elif w.w_cycle:
        raise ValueError("w_cycle > 0 needs the cycle term")
    if prior_pred is not None:
        terms["rec_prior"] = F.l1_loss(prior_pred, target)
    elif w.w_rec_prior:
        raise ValueError("w_rec_prior > 0 needs prior_pred")

    weights = dict(zip(TERMS, (w.w_rec, kl_weight(w, step), w.w_adv, w.w_feat, w.w_cycle, w.w_rec_prior)))
    total = zero
    for name, weight in weights.items():
        if weight:
            total = total + weight * terms[name]
    logs = _detached({**terms, **per_d, "g_total": total})
    return total, {**logs, "w_kl": weights["kl"]}
