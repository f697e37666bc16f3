"""Model room tests: shapes, ranges, losses, gradient plumbing, a tiny overfit. CPU, a few seconds."""

from __future__ import annotations

import math

import subprocess
import sys

import pytest
import torch

from vidpred.config import MODEL_SIZES, LossConfig, ModelConfig
from vidpred.model import (
    Discriminators,
    FrameDiscriminator,
    Generator,
    count_parameters,
    generator_loss,
    to_model_space,
    to_uint8,
)
from vidpred.model.blocks import gaussian_kl
from vidpred.model.metrics import copy_last, psnr

SMALL = ModelConfig(channels=8, z_channels=4, levels=2, d_channels=8)


@pytest.fixture(autouse=True)
def _seed():
    """Seed, and one intra-op thread: small convs on a busy 2-core box run ~20x slower with two (spin-waits)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def clip(b=2, t=5, h=16, w=16) -> torch.Tensor:
    return torch.rand(b, t, 3, h, w) * 2 - 1


def perturb_heads(g: Generator) -> None:
    """The Gaussian heads start at zero (prior == posterior) and the decoder's head at copy-last-frame;
    give them random weights."""
    for head in (g.prior[-1], g.posterior[-1], g.decoder.out):
        torch.nn.init.normal_(head.weight, std=0.05)


def test_untrained_generator_starts_near_copy_last():
    g = Generator(SMALL)
    x = clip(t=4)
    pred = g.predict(x[:, :2], future=2)
    copy = copy_last(x[:, :2], 2)
    assert (pred - copy).abs().max() < 1.0 and (pred - copy).abs().mean() < 0.1


def test_default_generator_is_small():
    assert ModelConfig().size == "tiny"
    assert count_parameters(Generator(ModelConfig())) < 1_000_000
    assert count_parameters(FrameDiscriminator(ModelConfig())) < 1_000_000
    assert count_parameters(Discriminators(ModelConfig())) < 1_000_000


@pytest.mark.parametrize("size, low, high", [("tiny", 0, 1e6), ("base", 20e6, 30e6), ("large", 300e6, 400e6)])
def test_size_presets_parameter_counts(size, low, high):
    cfg = ModelConfig(size=size)
    with torch.device("meta"):  # counts without allocating (large is 335 M parameters)
        g, d = Generator(cfg), Discriminators(cfg)
    assert low <= count_parameters(g) < high
    assert count_parameters(d) < count_parameters(g)


def test_size_preset_fills_only_what_is_not_given():
    cfg = ModelConfig(size="base", channels=32)
    assert cfg.channels == 32 and cfg.rnn == MODEL_SIZES["base"]["rnn"] and cfg.blocks == MODEL_SIZES["base"]["blocks"]


@pytest.mark.parametrize("size, device, hw", [("tiny", "cpu", 32), ("base", "cpu", 32), ("large", "meta", 256)])
def test_output_shapes_for_each_size(size, device, hw):
    """Real forwards for tiny and base; large runs on the meta device (shapes only, no 335 M allocation)."""
    cfg = ModelConfig(size=size)
    with torch.device(device):
        g, d = Generator(cfg), Discriminators(cfg)
        x = torch.rand(1, 5, 3, hw, hw, device=device) * 2 - 1
        out = g(x, context=3)
        pred = g.predict(x[:, :3], future=2, samples=2)
        logits, feats = d(torch.cat([x, x]), context=3)
    assert out.pred.shape == (1, 2, 3, hw, hw) and out.kl.shape == ()
    assert pred.shape == (2, 1, 2, 3, hw, hw)
    assert [t.shape[0] for t in logits] == [2 * 2, 2] and len(feats) == 2


def test_train_path_shapes_range_and_kl():
    g = Generator(SMALL)
    perturb_heads(g)
    out = g(clip(t=5), context=3)
    assert out.pred.shape == (2, 2, 3, 16, 16)
    assert out.pred.min() >= -1 and out.pred.max() <= 1
    assert out.kl.ndim == 0 and torch.isfinite(out.kl) and out.kl > 0


@pytest.mark.parametrize("rnn, layers, blocks", [("gru", 1, 1), ("lstm", 2, 2)])
def test_every_generator_parameter_gets_a_gradient_on_the_train_path(rnn, layers, blocks):
    # ZeRO / DDP dislike parameters that a step never touches.
    g = Generator(ModelConfig(channels=8, z_channels=4, levels=2, rnn=rnn, rnn_layers=layers, blocks=blocks))
    perturb_heads(g)
    out = g(clip(t=3), context=1)
    (out.pred.square().mean() + out.kl).backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None]
    assert not missing


def test_retrodict_runs_time_backwards_from_the_prediction():
    g = Generator(SMALL)
    x = clip(t=5)
    pred = x[:, 3:].clone().requires_grad_(True)
    back = g.retrodict(x[:, :3], pred)
    assert back.shape == x[:, :3].shape
    back.abs().mean().backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0  # the cycle term reaches the prediction


def test_predict_shapes_and_samples_differ():
    g = Generator(SMALL)
    perturb_heads(g)
    ctx = clip(t=3)
    one = g.predict(ctx, future=4)
    assert one.shape == (2, 4, 3, 16, 16) and not one.requires_grad
    many = g.predict(ctx, future=4, samples=3)
    assert many.shape == (3, 2, 4, 3, 16, 16)
    assert many.min() >= -1 and many.max() <= 1
    assert not torch.allclose(many[0], many[1])  # z drawn from the prior differs per sample


def test_inference_path_reads_only_the_context():
    g = Generator(SMALL)
    x = clip(t=5)
    y = x.clone()
    y[:, 3:] = 0.5  # different "future" ground truth
    torch.manual_seed(1)
    a = g(x, context=3, teacher_forcing=False).pred
    torch.manual_seed(1)
    b = g(y, context=3, teacher_forcing=False).pred
    assert torch.equal(a, b)
    assert g(x[:, :3], context=3, teacher_forcing=False, future=2).pred.shape == (2, 2, 3, 16, 16)


def test_bad_inputs_raise():
    g = Generator(SMALL)  # levels=2: multiples of 4
    with pytest.raises(ValueError, match="multiples of 4"):
        g(clip(h=18, w=16), context=3)
    with pytest.raises(ValueError, match="multiples of 4"):
        g.predict(clip(t=2, h=16, w=10), future=2)
    with pytest.raises(ValueError, match="teacher_forcing=True"):
        g(clip(t=4), context=2, future=3)  # T != context + future on the training path
    with pytest.raises(ValueError):
        g(clip(t=5), context=0)


def test_uint8_round_trip():
    u = torch.randint(0, 256, (2, 3, 8, 12, 3), dtype=torch.uint8)
    x = to_model_space(u)
    assert x.shape == (2, 3, 3, 8, 12) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(to_uint8(x), u)
    assert to_model_space(torch.full((1, 1, 2, 2, 3), 255, dtype=torch.uint8)).eq(1).all()
    with pytest.raises(ValueError):
        to_model_space(x)  # float input


def test_gaussian_kl_known_values():
    z = torch.zeros(2, 3, 4, 4)
    assert gaussian_kl(z, z, z, z).item() == 0
    # KL(N(1, 1) || N(0, 1)) = 0.5 per dimension; 48 dims per sample.
    assert gaussian_kl(z + 1, z, z, z).item() == pytest.approx(0.5 * 48)


def test_gaussian_kl_known_values_with_unequal_variances():
    """KL(q || p) with var_q = 4, var_p = 1, means 0 and 1: 0.5 * (ln(1/4) + 4 + 1 - 1) per dimension. The
    swapped KL(p || q) is 0.5 * (ln 4 + (1 + 1) / 4 - 1): a KL with its arguments the wrong way round fails."""
    z = torch.zeros(2, 3, 4, 4)
    logvar_q = torch.full_like(z, math.log(4.0))
    per_dim = 0.5 * (math.log(1 / 4) + 4 + 1 - 1)
    assert gaussian_kl(z, logvar_q, z + 1, z).item() == pytest.approx(per_dim * 48)
    assert gaussian_kl(z + 1, z, z, logvar_q).item() == pytest.approx(0.5 * (math.log(4) + 2 / 4 - 1) * 48)


def moving_square(t=6, size=32, side=8, step=3) -> torch.Tensor:
    x = -torch.ones(1, t, 3, size, size)
    for i in range(t):
        r, c = 4 + i * step // 2, 2 + i * step
        x[0, i, :, r:r + side, c:c + side] = 1.0
    return x


def test_tiny_model_overfits_one_clip_beating_copy_last():
    """The tiny preset learns one moving-square clip: open loop (prior z, own predictions fed back), its
    PSNR on the clip ends well above the copy-last-frame baseline's."""
    g = Generator(ModelConfig(size="tiny"))
    opt = torch.optim.Adam(g.parameters(), lr=2e-3)
    x = moving_square()
    w = LossConfig(w_rec=1.0, w_kl=0.0, w_adv=0.0, w_feat=0.0)
    losses = []
    for _ in range(120):
        out = g(x, context=2)
        total, logs = generator_loss(out.pred, x[:, 2:], out.kl, None, None, None, w, "lsgan")
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(logs["rec"].item())
    assert sum(losses[-10:]) / 10 < 0.1 * losses[0], (losses[0], losses[-10:])

    def unit(t):
        return (t + 1) / 2

    model_psnr = psnr(unit(g.predict(x[:, :2], future=4)), unit(x[:, 2:])).mean().item()
    copy_psnr = psnr(unit(copy_last(x[:, :2], 4)), unit(x[:, 2:])).mean().item()
    assert model_psnr > copy_psnr + 6, (model_psnr, copy_psnr)


def test_model_room_imports_no_ray_or_deepspeed():
    code = ("import sys, vidpred.model; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'deepspeed')); "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("warp_from", ["previous", "context_and_previous"])
def test_decoder_warps_the_last_context_frame_at_every_future_step(warp_from):
    """With its mask all on one source and flow 0, the decoder copies that source: the frame before
    (teacher forced: the true frame t-1) or, with context_and_previous, the last context frame at every step,
    however far into the future."""
    cfg = SMALL.model_copy(update={"warp_from": warp_from})
    g = Generator(cfg)
    x = clip(t=5)
    with torch.no_grad():
        bias = g.decoder.out.bias
        bias.zero_()
        if warp_from == "previous":
            bias[-1] = 30.0  # sigmoid: all previous
        else:
            bias[-3:] = torch.tensor([-30.0, 30.0, -30.0])  # softmax: all context
        pred = g(x, context=2).pred
    expected = x[:, 1:4] if warp_from == "previous" else x[:, 1:2].expand(-1, 3, -1, -1, -1)
    torch.testing.assert_close(pred, expected, atol=1e-4, rtol=0)
