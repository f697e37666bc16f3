"""PSNR / SSIM against scikit-image and known values; best-of-K; the copy-last baseline; summaries."""

from __future__ import annotations

import math

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vidpred.model.metrics import PSNR_CAP, best_of_k, copy_last, psnr, score_clips, ssim, summarize


def images(seed: int, n=3, h=32, w=40) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, h, w, generator=g)
    return torch.nn.functional.avg_pool2d(base, 3, 1, 1)  # some spatial structure, still in [0, 1]


def sk_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return structural_similarity(a.permute(1, 2, 0).double().numpy(), b.permute(1, 2, 0).double().numpy(),
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
                                 channel_axis=2)


def test_psnr_and_ssim_match_scikit_image():
    a = images(0)
    b = (a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    ours_p, ours_s = psnr(a, b), ssim(a, b)
    assert ours_p.shape == ours_s.shape == (3,)
    for i in range(3):
        assert ours_p[i].item() == pytest.approx(peak_signal_noise_ratio(b[i].numpy(), a[i].numpy(), data_range=1.0),
                                                 abs=1e-4)
        assert ours_s[i].item() == pytest.approx(sk_ssim(a[i], b[i]), abs=1e-5)


def test_identical_frames_give_ssim_one_and_the_capped_psnr():
    a = images(2)
    assert torch.allclose(ssim(a, a), torch.ones(3))
    assert torch.equal(psnr(a, a), torch.full((3,), PSNR_CAP))  # documented cap instead of inf


def test_known_gaussian_noise_gives_known_psnr():
    # Noise of standard deviation sigma has MSE sigma^2: PSNR = 10 log10(1 / sigma^2) = 20 dB at sigma = 0.1.
    target = torch.full((1, 3, 256, 256), 0.5)
    noise = 0.1 * torch.randn(target.shape, generator=torch.Generator().manual_seed(3))
    assert psnr(target + noise, target).item() == pytest.approx(20.0, abs=0.05)
    assert psnr(target + 0.5, target).item() == pytest.approx(-20 * math.log10(0.5))  # constant offset: exact


def test_ssim_of_unrelated_images_is_low_and_shape_checks():
    assert ssim(images(4), images(5)).max() < 0.3
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))


def test_best_of_k_picks_the_sample_with_the_best_mean_per_clip():
    scores = torch.tensor([[[10.0, 10.0], [30.0, 1.0]],     # sample 0: clip 0 mean 10, clip 1 mean 15.5
                           [[9.0, 20.0], [5.0, 5.0]]])       # sample 1: clip 0 mean 14.5, clip 1 mean 5
    assert torch.equal(best_of_k(scores), torch.tensor([[9.0, 20.0], [30.0, 1.0]]))


def test_copy_last_and_score_clips_on_model_space_frames():
    context = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    truth = context[:, -1:].repeat(1, 4, 1, 1, 1)  # a still scene: copy-last is perfect
    assert torch.equal(copy_last(context, 4), truth)
    samples = torch.stack([truth, truth.flip(-1)])  # sample 0 perfect, sample 1 mirrored
    scores = score_clips(samples, context, truth)
    assert set(scores) == {"model_psnr", "model_ssim", "copy_last_psnr", "copy_last_ssim"}
    assert all(v.shape == (2, 4) for v in scores.values())
    assert torch.equal(scores["model_psnr"], torch.full((2, 4), PSNR_CAP))  # best of K found the perfect one
    summary = summarize(scores)
    assert summary["copy_last"]["ssim"]["mean"] == pytest.approx(1.0)
    assert summary["model"]["psnr"]["per_step"] == [PSNR_CAP] * 4

