"""What a trial reports to Tune, and the default objective.

Training validates every ``train.val_every`` steps and at the last step on the first ``train.val_clips`` clips
of the held-out ``val`` split (``vidpred.train.monitor``). From those numbers every Tune result carries:

* ``val_psnr``, ``val_ssim`` and the copy-last-frame baseline's ``val_copy_last_psnr`` / ``val_copy_last_ssim``;
* ``val_psnr_gain``, ``val_ssim_gain``: the model minus copy-last (> 0: better than not predicting at all);
* ``val_sharpness``: the RMS spatial gradient of the predictions over the truth's, and ``val_sharpness_error`` = |ln of it|
  (0 when as sharp as real frames; blur and GAN noise both raise it);
* ``val_score`` (the default objective) = ``val_ssim_gain - sharpness_weight * val_sharpness_error``;
* every loss term (``rec``, ``kl``, ``adv``, ``feat``, ``g_total``, ``d_loss``, per discriminator...), averaged over
  the steps since the previous result (PBT: the last logging interval), and the weights ``w_*`` in force.

Training reports to Ray Train once per logging interval (and at checkpoints and validations), each report
carrying its interval's mean losses and ``interval_steps``; the averages here weigh each report by that.
"""

from __future__ import annotations

import math
from typing import Any

from ray.tune.integration.ray_train import TuneReportCallback

from vidpred.storage import as_uri
from vidpred.tune.experiment import LOSS_METRICS


def derived(metrics: dict[str, Any], sharpness_weight: float) -> dict[str, float]:
    """The gains over copy-last, the sharpness error and ``val_score``; empty when no validation ran."""
    if "val_psnr" not in metrics:
        return {}
    error = abs(math.log(max(float(metrics["val_sharpness"]), 1e-6)))
    ssim_gain = metrics["val_ssim"] - metrics["val_copy_last_ssim"]
    return {"val_psnr_gain": metrics["val_psnr"] - metrics["val_copy_last_psnr"], "val_ssim_gain": ssim_gain,
            "val_sharpness_error": error, "val_score": ssim_gain - sharpness_weight * error}


class ValidationReporter(TuneReportCallback):
    """Ray Train → Tune, one Tune result per validation: the validation metrics with what :func:`derived`
    adds, loss terms averaged since the previous result, the latest checkpoint's URI and ``extra`` (the
    trial's weights and schedule). Steps without validation are not sent: the objective would be missing."""

    def __init__(self, sharpness_weight: float, storage: str, extra: dict[str, Any]):
        super().__init__()
        self.sharpness_weight, self.storage, self.extra = sharpness_weight, storage, extra
        self.sums: dict[str, float] = {}
        self.count = 0
        self.checkpoint: str | None = None

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        rank0 = metrics[0]
        if checkpoint is not None:
            self.checkpoint = as_uri(self.storage, checkpoint.path)
        weight = float(rank0.get("interval_steps", 1))  # a report holds the means of that many steps
        self.count += weight
        for key in LOSS_METRICS:
            if key in rank0:
                self.sums[key] = self.sums.get(key, 0.0) + weight * float(rank0[key])
        if "val_psnr" not in rank0:
            return
        means = {key: total / self.count for key, total in self.sums.items()}
        self.sums, self.count = {}, 0
        result = {**rank0, **means, **derived(rank0, self.sharpness_weight), **self.extra}
        if self.checkpoint is not None:
            result["checkpoint_path"] = self.checkpoint
        super().after_report(run_context, [result], None)  # Tune's own hand-over, with our result
