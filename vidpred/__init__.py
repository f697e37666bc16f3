"""vidpred: dashcam video prediction (VPGAN) trained with Ray Data, Ray Train + DeepSpeed ZeRO, Ray Tune.

Rooms follow the data path: ``data`` → ``model`` → ``train`` → ``tune``; ``eval`` judges a checkpoint;
``config`` is the typed config tree every room reads; ``cli`` is the ``vidpred`` command.
"""

__version__ = "0.1.0"
