"""Evaluation metrics of the paper (docs/method.md §8).

- :mod:`~rsatalker_core.metrics.motion`: the DualTalk motion protocol (FD, P-FD, MSE, SID,
  rPCC, STS on EXP / JAW / POSE), per-clip averaging and the paper's Table 1 scaling.
- :mod:`~rsatalker_core.metrics.image`: L1, PSNR, SSIM and D-SSIM in PyTorch.
- :mod:`~rsatalker_core.metrics.lpips`: LPIPS (AlexNet, v0.1) with offline weights.

Example:
    >>> from rsatalker_core.metrics import motion_metrics, aggregate, scale_for_table
    >>> table = scale_for_table(aggregate([motion_metrics(pred, gt, partner)]))  # doctest: +SKIP
"""

from rsatalker_core.metrics.image import bhwc_to_bchw, dssim, image_metrics, l1, psnr, ssim
from rsatalker_core.metrics.lpips import LPIPS, convert_lpips_weights, load_lpips
from rsatalker_core.metrics.motion import (
    GROUPS,
    MetricError,
    aggregate,
    frechet_distance,
    motion_metrics,
    paired_frechet_distance,
    rpcc,
    scale_for_table,
    shannon_index_diversity,
    sts,
)

__all__ = [
    "GROUPS",
    "LPIPS",
    "MetricError",
    "aggregate",
    "bhwc_to_bchw",
    "convert_lpips_weights",
    "dssim",
    "frechet_distance",
    "image_metrics",
    "l1",
    "load_lpips",
    "motion_metrics",
    "paired_frechet_distance",
    "psnr",
    "rpcc",
    "scale_for_table",
    "shannon_index_diversity",
    "ssim",
    "sts",
]
