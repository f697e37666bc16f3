"""Discriminators, the loss terms and the GAN step: shapes, raw logits, per-sample D, every term finite and
answering to its weight, KL annealing, the step on plain (non-DeepSpeed) engines. CPU, seconds."""

from __future__ import annotations

import pytest
import torch

from vidpred.config import Config, LossConfig, ModelConfig
from vidpred.model import (
    as_floats,
    Discriminators,
    FrameDiscriminator,
    Generator,
    d_loss,
    discriminator_loss,
    feature_matching,
    g_adv_loss,
    generator_loss,
    kl_weight,
    split_real_fake,
)
from vidpred.model.discriminators import ClipDiscriminator
from vidpred.train.engines import local_engines
from vidpred.train.step import gan_step

SMALL = ModelConfig(channels=8, z_channels=4, levels=2, d_channels=8)
WEIGHTS = ("w_rec", "w_kl", "w_adv", "w_feat", "w_cycle")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see test_model.py
    yield
    torch.set_num_threads(threads)


def clip(b=2, t=5, h=16, w=16) -> torch.Tensor:
    return torch.rand(b, t, 3, h, w) * 2 - 1


def test_frame_discriminator_raw_logits_and_features():
    d = FrameDiscriminator(SMALL)
    torch.nn.init.normal_(d.head.weight, std=1.0)
    logits, feats = d(clip(b=4, t=1, h=32, w=32).flatten(0, 1) * 5)
    assert logits.shape == (4, 1, 4, 4)
    assert (logits < 0).any() or (logits > 1).any()  # no sigmoid
    assert len(feats) == 4 and all(f.shape[0] == 4 for f in feats)
    with pytest.raises(ValueError):
        d(clip())  # 5-D input


def test_clip_discriminator_shapes():
    logits, feats = ClipDiscriminator(SMALL)(clip(b=3, t=8, h=64, w=64))
    assert logits.shape == (3, 1, 4, 8, 8) and len(feats) == 3
    with pytest.raises(ValueError):
        ClipDiscriminator(SMALL)(clip().flatten(0, 1))


@pytest.mark.parametrize("sn", [False, True])
def test_discriminators_are_per_sample(sn):
    # One forward on cat([real, fake]) must equal two separate forwards (no batch statistics).
    d = Discriminators(SMALL.model_copy(update={"spectral_norm": sn})).eval()  # eval: SN power iteration frozen
    real, fake = clip(b=2, t=4), clip(b=3, t=4)
    both, _ = d(torch.cat([real, fake]), context=2)
    alone = d(real, context=2)[0], d(fake, context=2)[0]
    assert d.names == ("frame", "clip") and len(both) == 2
    for i in range(2):
        n_real = alone[0][i].shape[0]
        torch.testing.assert_close(both[i][:n_real], alone[0][i])
        torch.testing.assert_close(both[i][n_real:], alone[1][i])


def test_discriminators_without_clip_and_real_fake_split():
    d = Discriminators(SMALL.model_copy(update={"clip_discriminator": False}))
    logits, feats = d(clip(b=4, t=5), context=3)
    assert d.names == ("frame",) and len(logits) == 1 and logits[0].shape[0] == 4 * 2
    real, fake = split_real_fake(logits)
    assert real[0].shape == fake[0].shape == (4, 1, 2, 2)


def test_gan_losses_known_values():
    real = torch.tensor([1.0, 3.0])
    fake = torch.tensor([-1.0, 0.5])
    assert d_loss(real, fake, "lsgan").item() == pytest.approx((0 + 4) / 2 + (1 + 0.25) / 2)
    assert d_loss(real, fake, "hinge").item() == pytest.approx((0 + 0) / 2 + (0 + 1.5) / 2)
    assert g_adv_loss(fake, "lsgan").item() == pytest.approx((4 + 0.25) / 2)
    assert g_adv_loss(fake, "hinge").item() == pytest.approx(-(-1 + 0.5) / 2)
    with pytest.raises(ValueError, match="allowed"):
        d_loss(real, fake, "vanilla")
    total, logs = discriminator_loss([real, real], [fake, fake], "lsgan")
    logs = as_floats(logs)
    assert logs["d_frame"] == logs["d_clip"] == pytest.approx(total.item() / 2) and logs["d_loss"] == total.item()


def _loss_inputs():
    """pred, target, kl, per-D fake logits, per-D real and fake features, cycle: all leaves with gradients."""
    def leaf(*shape):
        return torch.randn(*shape, requires_grad=True)

    feats = [[leaf(4, 8, 4, 4), leaf(4, 16, 2, 2)], [leaf(2, 8, 2, 4, 4)]]
    return dict(pred=leaf(2, 2, 3, 8, 8), target=torch.rand(2, 2, 3, 8, 8), kl=torch.tensor(1.5, requires_grad=True),
                fake_logits=[leaf(4, 1, 2, 2), leaf(2, 1, 1, 2, 2)], real_feats=feats,
                fake_feats=[[leaf(*f.shape) for f in fs] for fs in feats], cycle=torch.tensor(0.7, requires_grad=True))


def _loss(x, w, kind="lsgan", step=0):
    return generator_loss(x["pred"], x["target"], x["kl"], x["fake_logits"], x["real_feats"], x["fake_feats"],
                          w, kind, step=step, cycle=x["cycle"])


@pytest.mark.parametrize("kind", ["lsgan", "hinge"])
def test_generator_loss_terms_and_total(kind):
    x = _loss_inputs()
    w = LossConfig(w_rec=1.0, w_kl=0.1, w_adv=0.01, w_feat=0.5, w_cycle=0.2)
    total, logs = _loss(x, w, kind)
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 and not v.requires_grad
               for k, v in logs.items() if k != "w_kl")  # detached, on the device: no host sync per step
    logs = as_floats(logs)
    assert set(logs) == {"rec", "kl", "adv", "feat", "cycle", "rec_prior", "adv_frame", "adv_clip", "feat_frame", "feat_clip",
                         "g_total", "w_kl"}
    assert all(isinstance(v, float) and torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert logs["rec"] == pytest.approx((x["pred"] - x["target"]).abs().mean().item())
    assert logs["kl"] == pytest.approx(1.5) and logs["cycle"] == pytest.approx(0.7)
    assert logs["adv"] == pytest.approx(sum(g_adv_loss(f, kind).item() for f in x["fake_logits"]))
    assert logs["feat_frame"] == pytest.approx(feature_matching(x["real_feats"][0], x["fake_feats"][0]).item())
    assert logs["feat"] == pytest.approx((logs["feat_frame"] + logs["feat_clip"]) / 2)
    expected = logs["rec"] + 0.1 * logs["kl"] + 0.01 * logs["adv"] + 0.5 * logs["feat"] + 0.2 * logs["cycle"]
    assert total.item() == pytest.approx(expected) and logs["g_total"] == pytest.approx(expected)
    total.backward()
    assert all(f.grad is None for fs in x["real_feats"] for f in fs)  # real features are detached


INPUTS_OF = {"w_rec": ["pred"], "w_kl": ["kl"], "w_adv": ["fake_logits"], "w_feat": ["fake_feats"], "w_cycle": ["cycle"]}


def _leaves(x, names):
    out = []
    for name in names:
        v = x[name]
        out += [v] if isinstance(v, torch.Tensor) else [t for item in v for t in (item if isinstance(item, list) else [item])]
    return out


@pytest.mark.parametrize("zeroed", WEIGHTS)
def test_zero_weight_gives_no_gradient_from_that_term(zeroed):
    x = _loss_inputs()
    w = LossConfig(**{name: (0.0 if name == zeroed else 1.0) for name in WEIGHTS})
    total, _ = _loss(x, w)
    total.backward()
    assert all(t.grad is None for t in _leaves(x, INPUTS_OF[zeroed]))
    others = [n for z, names in INPUTS_OF.items() if z != zeroed for n in names]
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in _leaves(x, others))


@pytest.mark.parametrize("weight", WEIGHTS)
def test_each_term_answers_to_its_weight(weight):
    x = _loss_inputs()
    base = LossConfig(**{name: 1.0 for name in WEIGHTS})
    t1, logs = _loss(x, base)
    logs = as_floats(logs)
    t3, _ = _loss(x, base.model_copy(update={weight: 3.0}))
    term = {"w_rec": "rec", "w_kl": "kl", "w_adv": "adv", "w_feat": "feat", "w_cycle": "cycle"}[weight]
    assert (t3 - t1).item() == pytest.approx(2.0 * logs[term], rel=1e-5)


def test_kl_annealing_is_linear_between_start_and_end():
    w = LossConfig(w_kl=0.5, kl_anneal="linear", kl_anneal_start=10, kl_anneal_end=30)
    assert [kl_weight(w, s) for s in (0, 10, 20, 30, 99)] == pytest.approx([0, 0, 0.25, 0.5, 0.5])
    assert kl_weight(LossConfig(w_kl=0.5), 0) == 0.5
    x = _loss_inputs()
    total, logs = _loss(x, LossConfig(w_kl=0.5, w_cycle=1, kl_anneal="linear", kl_anneal_end=5), step=0)
    total.backward()
    assert logs["w_kl"] == 0 and x["kl"].grad is None  # weight 0 at step 0: no gradient


def test_missing_inputs_for_weighted_terms_raise():
    x = _loss_inputs()
    with pytest.raises(ValueError, match="w_adv"):
        generator_loss(x["pred"], x["target"], x["kl"], None, None, None, LossConfig(w_feat=0.0), "hinge")
    with pytest.raises(ValueError, match="w_cycle"):
        generator_loss(x["pred"], x["target"], x["kl"], None, None, None,
                       LossConfig(w_adv=0.0, w_feat=0.0, w_cycle=1.0), "hinge")


@pytest.mark.parametrize("kind, w_cycle", [("lsgan", 0.0), ("hinge", 0.5)])
def test_gan_step_on_plain_engines_logs_every_term_and_moves_both_nets(kind, w_cycle):
    """The training step itself (D on cat([real, fake.detach()]); G through D's raw module), on engines
    without DeepSpeed: every term finite, both optimizers move their own net, D ends unfrozen."""
    cfg = Config.model_validate({
        "data": {"height": 16, "width": 16, "context": 2, "future": 2},
        "model": {"channels": 8, "z_channels": 4, "levels": 2, "d_channels": 8, "gan_loss": kind},
        "loss": {"w_cycle": w_cycle}})
    g_eng, d_eng = local_engines(Generator(cfg.model), Discriminators(cfg.model), cfg)
    g0 = [p.detach().clone() for p in g_eng.module.parameters()]
    d0 = [p.detach().clone() for p in d_eng.module.parameters()]
    batch = torch.randint(0, 256, (2, 4, 16, 16, 3), dtype=torch.uint8)
    logs = as_floats(gan_step(g_eng, d_eng, batch, cfg, step=0))
    for key in ("rec", "kl", "adv", "feat", "cycle", "adv_frame", "adv_clip", "feat_frame", "feat_clip",
                "g_total", "w_kl", "d_frame", "d_clip", "d_loss"):
        assert key in logs and torch.isfinite(torch.tensor(logs[key])), (key, logs)
    assert (logs["cycle"] > 0) == bool(w_cycle)
    assert any(not torch.equal(a, b) for a, b in zip(g0, g_eng.module.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, d_eng.module.parameters()))
    assert all(p.requires_grad for p in d_eng.module.parameters())
