"""Model room tests: shapes, ranges, losses, gradient plumbing, a tiny overfit. CPU, a few seconds."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from vidpred.config import LossConfig, ModelConfig
from vidpred.model import (
    FrameDiscriminator,
    Generator,
    count_parameters,
    d_loss,
    feature_matching,
    g_adv_loss,
    generator_loss,
    to_model_space,
    to_uint8,
)
from vidpred.model.vpgan import gaussian_kl

SMALL = ModelConfig(channels=8, z_channels=4, levels=2, d_channels=8)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def clip(b=2, t=5, h=16, w=16) -> torch.Tensor:
    return torch.rand(b, t, 3, h, w) * 2 - 1


def perturb_heads(g: Generator) -> None:
    """The Gaussian heads start at zero (prior == posterior); give them random weights."""
    for head in (g.prior, g.posterior):
        torch.nn.init.normal_(head[-1].weight, std=0.05)


def test_default_generator_is_small():
    assert count_parameters(Generator(ModelConfig())) < 1_000_000
    assert count_parameters(FrameDiscriminator(ModelConfig())) < 1_000_000


def test_train_path_shapes_range_and_kl():
    g = Generator(SMALL)
    perturb_heads(g)
    out = g(clip(t=5), context=3)
    assert out.pred.shape == (2, 2, 3, 16, 16)
    assert out.pred.min() >= -1 and out.pred.max() <= 1
    assert out.kl.ndim == 0 and torch.isfinite(out.kl) and out.kl > 0


def test_every_generator_parameter_gets_a_gradient_on_the_train_path():
    # ZeRO / DDP dislike parameters that a step never touches.
    g = Generator(SMALL)
    perturb_heads(g)
    out = g(clip(t=3), context=1)
    (out.pred.square().mean() + out.kl).backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None]
    assert not missing


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
    a = g(x, context=3, use_posterior=False).pred
    torch.manual_seed(1)
    b = g(y, context=3, use_posterior=False).pred
    assert torch.equal(a, b)
    assert g(x[:, :3], context=3, use_posterior=False, future=2).pred.shape == (2, 2, 3, 16, 16)


def test_bad_inputs_raise():
    g = Generator(SMALL)  # levels=2: multiples of 4
    with pytest.raises(ValueError, match="multiples of 4"):
        g(clip(h=18, w=16), context=3)
    with pytest.raises(ValueError, match="multiples of 4"):
        g.predict(clip(t=2, h=16, w=10), future=2)
    with pytest.raises(ValueError, match="use_posterior=True"):
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


def test_discriminator_raw_logits_and_features():
    d = FrameDiscriminator(SMALL)
    torch.nn.init.normal_(d.head.weight, std=1.0)
    logits, feats = d(clip(b=4, t=1, h=32, w=32).flatten(0, 1) * 5)
    assert logits.shape == (4, 1, 4, 4)
    assert (logits < 0).any() or (logits > 1).any()  # no sigmoid
    assert len(feats) == 4 and all(f.shape[0] == 4 for f in feats)
    with pytest.raises(ValueError):
        d(clip())  # 5-D input


def test_discriminator_is_per_sample():
    # One forward on cat([real, fake]) must equal two separate forwards (no batch statistics).
    d = FrameDiscriminator(SMALL)
    real, fake = torch.rand(2, 3, 16, 16), torch.rand(3, 3, 16, 16)
    both, _ = d(torch.cat([real, fake]))
    torch.testing.assert_close(both[:2], d(real)[0])
    torch.testing.assert_close(both[2:], d(fake)[0])


def test_gan_losses_known_values():
    real = torch.tensor([1.0, 3.0])
    fake = torch.tensor([-1.0, 0.5])
    assert d_loss(real, fake, "lsgan").item() == pytest.approx((0 + 4) / 2 + (1 + 0.25) / 2)
    assert d_loss(real, fake, "hinge").item() == pytest.approx((0 + 0) / 2 + (0 + 1.5) / 2)
    assert g_adv_loss(fake, "lsgan").item() == pytest.approx((4 + 0.25) / 2)
    assert g_adv_loss(fake, "hinge").item() == pytest.approx(-(-1 + 0.5) / 2)
    with pytest.raises(ValueError, match="allowed"):
        d_loss(real, fake, "vanilla")


def _loss_inputs():
    pred = torch.rand(2, 2, 3, 8, 8, requires_grad=True)
    kl = torch.tensor(1.5, requires_grad=True)
    fake_logits = torch.randn(4, 1, 2, 2, requires_grad=True)
    real_feats = [torch.randn(4, 8, 4, 4, requires_grad=True), torch.randn(4, 16, 2, 2, requires_grad=True)]
    fake_feats = [torch.randn(4, 8, 4, 4, requires_grad=True), torch.randn(4, 16, 2, 2, requires_grad=True)]
    return pred, torch.rand(2, 2, 3, 8, 8), kl, fake_logits, real_feats, fake_feats


@pytest.mark.parametrize("kind", ["lsgan", "hinge"])
def test_generator_loss_terms_and_total(kind):
    pred, target, kl, fl, rf, ff = _loss_inputs()
    w = LossConfig(w_rec=1.0, w_kl=0.1, w_adv=0.01, w_feat=0.5)
    total, logs = generator_loss(pred, target, kl, fl, rf, ff, w, kind)
    assert set(logs) == {"rec", "kl", "adv", "feat", "g_total"}
    assert all(isinstance(v, float) and torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert logs["rec"] == pytest.approx((pred - target).abs().mean().item())
    assert logs["kl"] == pytest.approx(1.5)
    assert logs["adv"] == pytest.approx(g_adv_loss(fl, kind).item())
    assert logs["feat"] == pytest.approx(feature_matching(rf, ff).item())
    expected = logs["rec"] + 0.1 * logs["kl"] + 0.01 * logs["adv"] + 0.5 * logs["feat"]
    assert total.item() == pytest.approx(expected) and logs["g_total"] == pytest.approx(expected)
    total.backward()
    assert all(f.grad is None for f in rf)  # real features are detached
    for t in (pred, kl, fl, *ff):
        assert t.grad is not None and t.grad.abs().sum() > 0


@pytest.mark.parametrize("zeroed, inputs", [("w_rec", "pred"), ("w_kl", "kl"), ("w_adv", "fl"), ("w_feat", "ff")])
def test_zero_weight_gives_no_gradient_from_that_term(zeroed, inputs):
    pred, target, kl, fl, rf, ff = _loss_inputs()
    w = LossConfig(w_rec=1.0, w_kl=1.0, w_adv=1.0, w_feat=1.0)
    setattr(w, zeroed, 0.0)
    total, _ = generator_loss(pred, target, kl, fl, rf, ff, w, "lsgan")
    total.backward()
    chosen = {"pred": [pred], "kl": [kl], "fl": [fl], "ff": ff}[inputs]
    others = [t for name, ts in {"pred": [pred], "kl": [kl], "fl": [fl], "ff": ff}.items() if name != inputs for t in ts]
    assert all(t.grad is None for t in chosen)
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in others)


def test_generator_loss_without_discriminator_outputs():
    pred, target, kl, *_ = _loss_inputs()
    w = LossConfig(w_adv=0.0, w_feat=0.0)
    total, logs = generator_loss(pred, target, kl, None, None, None, w, "hinge")
    assert logs["adv"] == 0.0 and logs["feat"] == 0.0 and torch.isfinite(total)
    with pytest.raises(ValueError, match="w_adv"):
        generator_loss(pred, target, kl, None, None, None, LossConfig(w_feat=0.0), "hinge")


@pytest.mark.parametrize("kind", ["lsgan", "hinge"])
def test_two_step_gan_pattern(kind):
    """The pattern the training code uses: D step on cat([real, fake.detach()]); G step through a frozen D."""
    g, d = Generator(SMALL), FrameDiscriminator(SMALL)
    perturb_heads(g)
    x = clip(t=4)
    out = g(x, context=2)
    real, fake = x[:, 2:].flatten(0, 1), out.pred.flatten(0, 1)

    logits, _ = d(torch.cat([real, fake.detach()]))
    real_logits, fake_logits = logits.split([real.shape[0], fake.shape[0]])
    loss_d = d_loss(real_logits, fake_logits, kind)
    loss_d.backward()
    assert torch.isfinite(loss_d)
    assert all(p.grad is None for p in g.parameters())
    assert all(p.grad is not None for p in d.parameters())

    d.zero_grad(set_to_none=True)
    d.requires_grad_(False)
    with torch.no_grad():
        _, real_feats = d(real)
    fake_logits, fake_feats = d(fake)
    total, logs = generator_loss(out.pred, x[:, 2:], out.kl, fake_logits, real_feats, fake_feats, LossConfig(), kind)
    total.backward()
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert all(p.grad is None for p in d.parameters())
    assert all(p.grad is not None for p in g.parameters())


def moving_square(t=6, size=32, side=8, step=3) -> torch.Tensor:
    x = -torch.ones(1, t, 3, size, size)
    for i in range(t):
        r, c = 4 + i * step // 2, 2 + i * step
        x[0, i, :, r:r + side, c:c + side] = 1.0
    return x


def test_overfit_one_clip():
    cfg = ModelConfig(channels=16, z_channels=4, levels=2, d_channels=8)
    g = Generator(cfg)
    opt = torch.optim.Adam(g.parameters(), lr=2e-3)
    x = moving_square()
    w = LossConfig(w_rec=1.0, w_kl=0.0, w_adv=0.0, w_feat=0.0)
    losses = []
    for _ in range(100):
        out = g(x, context=2)
        total, logs = generator_loss(out.pred, x[:, 2:], out.kl, None, None, None, w, "lsgan")
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(logs["rec"])
    assert sum(losses[-10:]) / 10 < 0.1 * losses[0], (losses[0], losses[-10:])
    # The open-loop path (prior z, own predictions fed back) has learned the clip too.
    open_loop = (g.predict(x[:, :2], future=4) - x[:, 2:]).abs().mean().item()
    assert open_loop < 0.25 * losses[0], (losses[0], open_loop)


def test_model_room_imports_no_ray_or_deepspeed():
    code = ("import sys, vidpred.model; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'deepspeed')); "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
