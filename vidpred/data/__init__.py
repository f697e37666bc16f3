"""The data room: video in object storage → uint8 clips for the trainer (see docs/data.md).

``sources`` (URI → listing and readable files, local or ``s3://``, retries), ``decode`` (PyAV: rotation, fps by
timestamps, resize/crop → uint8), ``clips`` (frames → windows of ``context + future``), ``probe`` (one file's
health check), ``report`` (a dataset's account: usable files, skips with reasons), ``pipeline`` (the Ray Data
dataset), ``prepared`` / ``prepare`` (the prepared-clip cache and the job that writes it), ``upload`` and
``inspect`` (tools), ``commands`` (the ``vidpred data`` subcommands), ``synth`` (procedural dashcam clips).
Reads only ``config``.
"""
