"""The eval room: judge a checkpoint against copy-last-frame and draw what it predicts.

``evaluate`` (``vidpred eval``: clips → best-of-K metrics → JSON, markdown, grid, GIF, plot), ``pictures``
(grids and GIFs), ``plot`` (PSNR/SSIM per step, PIL only), ``preview`` (the end-of-run PNG), ``commands``
(the CLI registration). Reads checkpoints through the consolidated generator, so nothing here needs
DeepSpeed or Ray; the metrics themselves live in :mod:`vidpred.model.metrics`, shared with training.
"""
