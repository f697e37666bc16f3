"""The train room: the GAN under DeepSpeed inside Ray Train.

``engines`` (DeepSpeed config and one engine each for G and D), ``step`` (one GAN step, top to bottom),
``loop`` (the per-worker loop: shard → steps → report → checkpoint), ``checkpoint`` (save / restore /
the consolidated generator), ``resume`` (``--resume RUN`` and the data order a restored worker continues),
``faults`` (data position, the non-finite policy, test-only fault hooks), ``launch`` (Ray, TorchTrainer, the
run's outputs), ``monitor`` (validation against copy-last during training), ``tensorboard`` (rank 0's event
files), ``plan`` (the memory planner), ``export`` and ``selfcheck`` (the GAN step on N gloo ranks without Ray,
for the stage proofs and the ZeRO benchmark). Model code stays free of Ray and DeepSpeed; only this room
touches them.
"""
