"""The data room: video in object storage → uint8 clips for the trainer.

``sources`` (URI → listing and readable files, local or ``s3://``), ``decode`` (PyAV: fps by timestamps,
resize/crop → uint8), ``clips`` (frames → windows of ``context + future``), ``pipeline`` (the Ray Data
dataset, bad files skipped and reported), ``synth`` (procedural dashcam clips). Reads only ``config``.
"""
