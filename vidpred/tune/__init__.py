"""The tune room: Ray Tune over the four loss weights, each trial its own distributed training run.

``experiment`` (the YAML schema, validated at the door), ``objective`` (what every trial reports; the default
objective), ``trial`` (the function trainable: a TorchTrainer per trial, PBT intervals and weight schedules),
``run`` (the driver: concurrency, schedulers, searchers, new or restored Tuner), ``report`` and ``plot``
(table, best config, schedules, PNG), ``commands`` (``vidpred tune``). Arrows: tune → train → config.
"""
