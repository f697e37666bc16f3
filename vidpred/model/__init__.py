"""The model room: VPGAN networks and losses, in plain PyTorch.

What belongs here: the generator (:mod:`.vpgan`), the discriminators (:mod:`.discriminators`), the
loss functions (:mod:`.losses`), and tensor conversions between the data pipeline's uint8 frames and
model space. Nothing here knows about Ray, DeepSpeed, data loading or checkpoints: this room must
never import ``ray`` or ``deepspeed`` (a test checks), so it runs and tests on a bare CPU box.
"""

from vidpred.model.discriminators import FrameDiscriminator
from vidpred.model.losses import d_loss, feature_matching, g_adv_loss, generator_loss
from vidpred.model.vpgan import GenOutput, Generator, count_parameters, to_model_space, to_uint8

__all__ = [
    "FrameDiscriminator",
    "GenOutput",
    "Generator",
    "count_parameters",
    "d_loss",
    "feature_matching",
    "g_adv_loss",
    "generator_loss",
    "to_model_space",
    "to_uint8",
]
