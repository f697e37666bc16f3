"""The train room: the GAN under DeepSpeed inside Ray Train.

``engines`` (DeepSpeed config and one engine each for G and D), ``step`` (one GAN step, top to bottom),
``loop`` (the per-worker loop: shard → steps → report → checkpoint), ``checkpoint`` (save / restore /
the consolidated generator), ``launch`` (Ray, TorchTrainer, the run's outputs), ``monitor`` (validation
against copy-last during training) and ``tensorboard`` (rank 0's event files). Model code stays free of
Ray and DeepSpeed; only this room touches them.
"""
