"""SAVP's full objective in the real GAN step (:func:`vidpred.train.step.gan_step`, on local engines): the
adversarial terms reach the prior path (the one inference and validation run) as well as the posterior
path, and the feature-matching targets come from the same D that judges the fakes (after D's update)."""

from __future__ import annotations

import pytest
import torch

from vidpred import config
from vidpred.model import Discriminators, Generator, feature_matching
from vidpred.train.engines import local_engines
from vidpred.train.step import gan_step

SMALL = ["data.height=16", "data.width=16", "data.context=2", "data.future=2", "data.batch_size=2",
         "model.channels=8", "model.z_channels=4", "model.levels=2", "model.d_channels=8", "train.grad_clip=0"]
ADVERSARIAL_ONLY = ["loss.w_rec=0", "loss.w_kl=0", "loss.w_feat=0", "loss.w_adv=1"]


def clips(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (2, 4, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def g_gradients(overrides: list[str]) -> dict[str, float]:
    """One GAN step; the gradient norm of each of G's heads (prior, posterior) at G's optimizer step."""
    cfg = config.load(overrides=SMALL + overrides)
    torch.manual_seed(0)
    g = Generator(cfg.model)
    # An untrained decoder head is all zeros (it starts as copy-last): nothing upstream of it gets a
    # gradient in the first step. Give it weights, as any step of training would.
    torch.nn.init.normal_(g.decoder.out.weight, std=0.1)
    g_eng, d_eng = local_engines(g, Discriminators(cfg.model), cfg)
    seen: dict[str, float] = {}
    step = g_eng.step

    def recorded():
        for head in ("prior", "posterior"):
            grads = [p.grad for p in getattr(g_eng.module, head).parameters()]
            seen[head] = sum(0.0 if g is None else g.norm().item() for g in grads)
        step()

    g_eng.step = recorded
    gan_step(g_eng, d_eng, clips(), cfg)
    return seen


def test_prior_path_receives_adversarial_gradient_and_posterior_path_still_does():
    both = g_gradients(ADVERSARIAL_ONLY + ["loss.gan_paths=both"])
    assert both["prior"] > 0 and both["posterior"] > 0
    # The VAE-GAN alone: with no KL weight nothing reaches the prior head (the check above can fail).
    posterior_only = g_gradients(ADVERSARIAL_ONLY + ["loss.gan_paths=posterior"])
    assert posterior_only["prior"] == 0 and posterior_only["posterior"] > 0


@pytest.mark.parametrize("paths", ["posterior", "both"])
def test_feature_matching_targets_come_from_the_d_that_judges_the_fakes(paths):
    cfg = config.load(overrides=SMALL + [f"loss.gan_paths={paths}", "loss.w_feat=1", "train.lr_d=0.05"])
    torch.manual_seed(0)
    g_eng, d_eng = local_engines(Generator(cfg.model), Discriminators(cfg.model), cfg)
    outputs = []
    g_eng.module.register_forward_hook(lambda module, args, out: outputs.append(out))
    batch = clips()
    logs = gan_step(g_eng, d_eng, batch, cfg)
    out = outputs[0]
    real = (batch.movedim(-1, -3).float() / 127.5 - 1)
    fakes = [torch.cat([real[:, :2], p], dim=1) for p in (out.pred, out.prior_pred) if p is not None]
    assert len(fakes) == (2 if paths == "both" else 1)
    with torch.no_grad():  # D after its step (G's step does not touch it); a big lr_d makes before and after differ
        _, real_feats = d_eng.module(real, 2)
        _, fake_feats = d_eng.module(torch.cat([f.detach() for f in fakes]), 2)
    expected = torch.stack([feature_matching(r, f) for r, f in zip(real_feats, fake_feats)]).mean()
    assert float(logs["feat"]) == pytest.approx(expected.item(), rel=1e-5)
