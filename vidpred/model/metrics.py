"""Frame-quality metrics: PSNR and SSIM per future step, best-of-K, and the copy-last-frame baseline.

Plain torch, so training (validation) and ``vidpred eval`` share one implementation without a new
dependency; the tests check both against scikit-image.

* Images are ``[..., 3, H, W]`` floats in ``[0, 1]`` (``data_range`` 1); model-space frames in [-1, 1]
  are mapped with ``(x + 1) / 2`` by :func:`score_clips`.
* **PSNR** per image: ``10 log10(data_range^2 / MSE)`` over all channels and pixels, capped at
  :data:`PSNR_CAP` dB: identical images give exactly ``PSNR_CAP`` instead of inf, so means stay finite.
* **SSIM** per image: Wang et al. 2004 with the usual settings (11x11 Gaussian window, sigma 1.5,
  K1 0.01, K2 0.03, population covariances), per channel, averaged over channels and the "valid"
  region (windows fully inside the image), exactly as ``skimage.metrics.structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=...)``.
  Needs H and W of at least 11.
* **Best of K** (SAVP's protocol): of K samples per clip, the one with the best mean over the future
  steps, chosen per metric.
* **Copy last frame**: the last context frame repeated for every future step, scored on the same clips.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

PSNR_CAP = 100.0
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
METRICS = ("psnr", "ssim")


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR in dB per image over the last three dims (capped at PSNR_CAP); returns shape ``pred.shape[:-3]``."""
    mse = (pred.double() - target.double()).pow(2).flatten(-3).mean(-1)
    floor = data_range ** 2 * 10 ** (-PSNR_CAP / 10)  # the MSE at which PSNR reaches the cap
    return (10 * torch.log10(data_range ** 2 / mse.clamp_min(floor))).float()


def _gaussian_window(device: torch.device) -> Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - SSIM_WINDOW // 2
    g = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return g / g.sum()


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean SSIM per image ``[..., C, H, W]`` -> ``[...]`` (see the module docstring for the settings)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    lead, (c, h, w) = pred.shape[:-3], pred.shape[-3:]
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}; got {h}x{w}")
    x = pred.double().reshape(-1, 1, h, w)
    y = target.double().reshape(-1, 1, h, w)
    g = _gaussian_window(x.device)

    def blur(img: Tensor) -> Tensor:  # separable Gaussian, "valid" region only
        return F.conv2d(F.conv2d(img, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1).reshape(*lead, c).mean(-1).float()


def sharpness_ratio(pred: Tensor, truth: Tensor) -> float:
    """How sharp the predictions are next to the truth: the RMS of the spatial gradients (horizontal and
    vertical neighbour differences) of ``pred`` over that of ``truth``, any ``[..., H, W]``. 1: as sharp as
    real frames; below 1 blur, above 1 noise or artefacts. RMS, not the mean absolute gradient: blurring a
    step edge spreads it over more pixels with the same total |difference|, but lowers the squared ones."""
    def rms_gradient(x: Tensor) -> Tensor:
        x = x.double()
        return ((x.diff(dim=-1).pow(2).mean() + x.diff(dim=-2).pow(2).mean()) / 2).sqrt()

    return float(rms_gradient(pred) / rms_gradient(truth).clamp_min(1e-12))


def frame_scores(pred: Tensor, truth: Tensor) -> dict[str, Tensor]:
    """``[..., 3, H, W]`` in [0, 1] -> {"psnr": [...], "ssim": [...]} per image."""
    return {"psnr": psnr(pred, truth), "ssim": ssim(pred, truth)}


def best_of_k(scores: Tensor) -> Tensor:
    """[K, B, F] per-sample scores -> [B, F]: per clip, the sample with the highest mean over steps."""
    best = scores.mean(-1).argmax(0)  # [B]
    return scores.gather(0, best.view(1, -1, 1).expand(1, *scores.shape[1:]))[0]


def copy_last(context: Tensor, future: int) -> Tensor:
    """The baseline: [B, C, 3, H, W] context -> its last frame repeated ``future`` times, [B, future, 3, H, W]."""
    return context[:, -1:].expand(-1, future, *context.shape[2:])


def score_clips(samples: Tensor, context: Tensor, truth: Tensor) -> dict[str, Tensor]:
    """Model (best of K) and copy-last scores of a batch of clips, all in model space [-1, 1].

    samples [K, B, F, 3, H, W], context [B, C, 3, H, W], truth [B, F, 3, H, W] -> {"model_psnr",
    "model_ssim", "copy_last_psnr", "copy_last_ssim"}: [B, F] each.
    """
    def unit(x: Tensor) -> Tensor:
        return ((x.float() + 1) / 2).clamp(0, 1)

    target = unit(truth)
    model = frame_scores(unit(samples), target.expand_as(samples))
    baseline = frame_scores(unit(copy_last(context, truth.shape[1])), target)
    out = {f"model_{m}": best_of_k(model[m]) for m in METRICS}
    out.update({f"copy_last_{m}": baseline[m] for m in METRICS})
    return out


def summarize(scores: dict[str, Tensor]) -> dict[str, dict]:
    """Concatenated [N, F] scores -> {"model": {"psnr": {"per_step": [...F], "mean": x}, ...}, "copy_last": ...}."""
    out: dict[str, dict] = {}
    for key, value in scores.items():
        who, metric = key.rsplit("_", 1)
        per_step = value.float().mean(0).tolist()
        out.setdefault(who, {})[metric] = {"per_step": per_step, "mean": float(value.float().mean())}
    if any(math.isnan(v["mean"]) for m in out.values() for v in m.values()):
        raise ValueError("a metric is NaN: check the inputs")
    return out
