"""The model room: VPGAN networks, losses and metrics, in plain PyTorch.

What belongs here: the generator (:mod:`.vpgan`, built from :mod:`.blocks`), the discriminators
(:mod:`.discriminators`), the loss functions (:mod:`.losses`), the frame-quality metrics and the
copy-last-frame baseline (:mod:`.metrics`, shared by training's validation and ``vidpred eval``), and
tensor conversions between the data pipeline's uint8 frames and model space. Nothing here knows about
Ray, DeepSpeed, data loading or checkpoints: this room must never import ``ray`` or ``deepspeed`` (a
test checks), so it runs and tests on a bare CPU box.
"""

from vidpred.model.discriminators import Discriminators, FrameDiscriminator, split_real_fake
from vidpred.model.losses import (
    as_floats,
    d_loss,
    discriminator_loss,
    feature_matching,
    g_adv_loss,
    generator_loss,
    kl_weight,
)
from vidpred.model.vpgan import GenOutput, Generator, count_parameters, to_model_space, to_uint8

__all__ = [
    "as_floats",
    "Discriminators",
    "FrameDiscriminator",
    "GenOutput",
    "Generator",
    "count_parameters",
    "d_loss",
    "discriminator_loss",
    "feature_matching",
    "g_adv_loss",
    "generator_loss",
    "kl_weight",
    "split_real_fake",
    "to_model_space",
    "to_uint8",
]
