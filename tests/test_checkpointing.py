"""Activation checkpointing (train.activation_checkpointing) changes memory, not results: a GAN step's losses
and every gradient with ``step`` and ``block`` against ``off``, on CPU with a tiny model. The z noise drawn
inside checkpointed regions must be drawn again identically when backward recomputes them.

Tolerance, measured (torch 2.13 CPU, fp32, one thread): the losses are bitwise equal; gradients differ only
where checkpointing encodes the frames one by one instead of in one batched pass, which sums a weight's
gradient over the frames in another order: the largest gap was 1.7e-7 of the norm of G's whole gradient
(D's: 0). A recomputation that drew other noise is off by more than 1e-3 (test below)."""

from __future__ import annotations

import pytest
import torch

from vidpred.config import CHECKPOINTING, ModelConfig
from vidpred.model import Discriminators, Generator
from vidpred.model.discriminators import split_real_fake
from vidpred.model.losses import discriminator_loss

CFG = ModelConfig(channels=8, z_channels=4, levels=2, d_channels=8, rnn="lstm", rnn_layers=2, blocks=2)
GRAD_TOL = 1e-5  # a parameter's gradient difference / the norm of the whole gradient (worst_gap)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gan_losses(mode: str, cfg: ModelConfig = CFG) -> tuple[list[torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """One GAN step's losses (D's, then G's with the cycle term, which runs the free-running path) and the
    gradients they leave, with the same weights, clips and noise seed whatever the mode."""
    torch.manual_seed(0)
    g, d = Generator(cfg, mode), Discriminators(cfg, mode)
    for head in (g.prior[-1], g.posterior[-1], g.decoder.out):  # zero-initialised: give z and the flow a say
        torch.nn.init.normal_(head.weight, std=0.1)
    real = torch.rand(2, 6, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    torch.manual_seed(7)
    out = g(real, context=3)
    fake = torch.cat([real[:, :3], out.pred], dim=1)
    logits, _ = d(torch.cat([real, fake.detach()]), 3)
    loss_d, _ = discriminator_loss(*split_real_fake(logits), "lsgan", d.names)
    loss_d.backward()
    d.requires_grad_(False)
    fake_logits, fake_feats = d(fake, 3)
    cycle = (g.retrodict(real[:, :3], out.pred) - real[:, :3]).abs().mean()
    loss_g = (out.pred - real[:, 3:]).abs().mean() + 0.1 * out.kl + sum(x.mean() for x in fake_logits) \
        + sum(f.abs().mean() for f in fake_feats[0]) + cycle
    loss_g.backward()
    grads = {"g": {n: p.grad.clone() for n, p in g.named_parameters()},
             "d": {n: p.grad.clone() for n, p in d.named_parameters()}}
    return [loss_d.detach(), loss_g.detach(), out.kl.detach()], grads


def worst_gap(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> float:
    """The largest difference of one parameter's gradient, relative to the norm of the network's whole
    gradient (a per-tensor ratio would blow up on the biases before a GroupNorm, whose gradient is 0 up to
    rounding)."""
    assert got.keys() == want.keys()
    scale = torch.stack([g.norm() for g in want.values()]).norm()
    return max(float((got[n] - want[n]).norm() / scale) for n in want)


@pytest.fixture(scope="module")
def reference():
    return gan_losses("off")


@pytest.mark.parametrize("mode", ["step", "block"])
def test_losses_and_gradients_match_without_checkpointing(mode, reference):
    losses, grads = gan_losses(mode)
    want_losses, want_grads = reference
    assert all(torch.equal(a, b) for a, b in zip(losses, want_losses)), (losses, want_losses)
    assert want_losses[2] > 0  # the posterior's noise matters: KL is not zero
    for net in ("g", "d"):
        assert worst_gap(grads[net], want_grads[net]) <= GRAD_TOL, net


def test_recomputation_redraws_the_same_noise(reference, monkeypatch):
    """The tolerance above is tight enough to catch other noise: without torch's RNG stash, the same step
    is off by far more than GRAD_TOL."""
    import vidpred.model.blocks as blocks

    stashing = blocks.checkpoint
    monkeypatch.setattr(blocks, "checkpoint",
                        lambda fn, *args, **kwargs: stashing(fn, *args, **kwargs, preserve_rng_state=False))
    _, grads = gan_losses("step")
    assert worst_gap(grads["g"], reference[1]["g"]) > 100 * GRAD_TOL


def test_inference_is_the_same_in_every_mode():
    torch.manual_seed(0)
    state = Generator(CFG).state_dict()
    ctx = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    preds = []
    for mode in CHECKPOINTING:
        g = Generator(CFG, mode)
        g.load_state_dict(state)
        torch.manual_seed(5)
        preds.append(g.predict(ctx, future=3))
    assert all(torch.equal(p, preds[0]) for p in preds[1:])


def test_block_leaves_spectral_norm_layers_alone():
    """Spectral norm's power iteration updates its vectors on every forward: recomputing would normalise
    with another weight, so those layers are never recomputed."""
    d = Discriminators(ModelConfig(spectral_norm=True), "block")
    assert not d.frame.recompute_layers and not d.clip.recompute_layers
    assert Discriminators(ModelConfig(), "block").frame.recompute_layers


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="allowed: off, step, block"):
        Generator(CFG, "layer")
