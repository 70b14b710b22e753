"""Image metrics and losses: L1, PSNR, SSIM, D-SSIM (pure PyTorch, device-agnostic).

Image layout: every function takes images in **[0, 1]** as either

- ``[B, 3, H, W]`` (channels first, a batch), or
- ``[H, W, 3]`` (channels last, one image, e.g. an OpenCV/imageio frame as float).

Renderer output ``[B, H, W, 3]`` converts with :func:`bhwc_to_bchw`. Both arguments must
have the same shape; results follow the inputs' device and floating dtype and are
differentiable (usable as training losses). ``reduction="mean"`` returns a scalar
tensor (the mean of per-image values), ``"none"`` returns ``[B]``.

SSIM is one implementation, kept for the whole project (docs/assets.md §4): Wang, Bovik,
Sheikh & Simoncelli, "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 2004, with an 11-tap Gaussian window of sigma 1.5, K1 = 0.01,
K2 = 0.03, population (not sample) covariances, per colour channel, averaged over the
"valid" window positions (no padding) and the channels. That is exactly scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1.0, channel_axis=-1)`` and pytorch-msssim's
``ssim``. (torchmetrics and kornia pad the borders and give different numbers.)

Example:
    >>> x = torch.rand(2, 3, 32, 32)
    >>> float(psnr(x, x.clamp(0, 0.9))) > 10
    True
    >>> float(ssim(x, x))
    1.0
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from rsatalker_core.metrics.motion import MetricError

__all__ = [
    "check_image_pair",
    "SSIM_WINDOW",
    "SSIM_SIGMA",
    "bhwc_to_bchw",
    "l1",
    "psnr",
    "ssim",
    "dssim",
    "image_metrics",
]

#: SSIM Gaussian window size (taps) and standard deviation (pixels), Wang et al. 2004.
SSIM_WINDOW: int = 11
SSIM_SIGMA: float = 1.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def bhwc_to_bchw(images: Tensor) -> Tensor:
    """Renderer layout ``[B, H, W, 3]`` -> ``[B, 3, H, W]`` (a view, no copy)."""
    if images.ndim != 4:
        raise MetricError(f"bhwc_to_bchw expects [B, H, W, C], got shape {tuple(images.shape)}")
    return images.permute(0, 3, 1, 2)


def check_image_pair(pred: Tensor, target: Tensor) -> Tuple[Tensor, Tensor]:
    """Check two images and bring both to ``[B, C, H, W]`` floating tensors.

    Accepts ``[B, C, H, W]`` (C = 1 or 3) or one ``[H, W, C]`` image; ``target`` follows
    ``pred``'s device and dtype.

    Raises:
        MetricError: different shapes, or not one of the two layouts.
    """
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise MetricError("image metrics take torch tensors")
    if pred.shape != target.shape:
        raise MetricError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.ndim == 3:
        if pred.shape[-1] not in (1, 3):
            raise MetricError(f"a single image must be [H, W, 3], got {tuple(pred.shape)}")
        pred, target = pred.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None]
    elif pred.ndim == 4:
        if pred.shape[1] not in (1, 3):
            raise MetricError(
                f"a batch must be [B, 3, H, W] (channels first), got {tuple(pred.shape)}; "
                "convert renderer output [B, H, W, 3] with bhwc_to_bchw()"
            )
    else:
        raise MetricError(f"images must be [B, 3, H, W] or [H, W, 3], got {tuple(pred.shape)}")
    if not pred.is_floating_point():
        pred = pred.float()
    if not target.is_floating_point():
        target = target.float()
    target = target.to(dtype=pred.dtype, device=pred.device)
    return pred, target


def _reduce(per_image: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_image.mean()
    if reduction == "none":
        return per_image
    raise MetricError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def l1(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean absolute error ``mean |pred - target|`` over channels and pixels.

    Args:
        pred: ``[B, 3, H, W]`` or ``[H, W, 3]`` in [0, 1].
        target: the same shape.
        reduction: ``"mean"`` (scalar) or ``"none"`` (``[B]``).

    Raises:
        MetricError: shapes differ or are not an image layout.
    """
    pred, target = check_image_pair(pred, target)
    return _reduce((pred - target).abs().flatten(1).mean(dim=1), reduction)


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0, reduction: str = "mean") -> Tensor:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range² / MSE)`` per image.

    With ``reduction="mean"`` the per-image PSNRs are averaged (the usual reporting).
    Identical images (MSE = 0) give ``+inf``.

    Args:
        pred: ``[B, 3, H, W]`` or ``[H, W, 3]`` in [0, data_range].
        target: the same shape.
        data_range: peak value (1.0 for images in [0, 1]).
        reduction: ``"mean"`` or ``"none"`` (``[B]``).
    """
    pred, target = check_image_pair(pred, target)
    if not data_range > 0:
        raise MetricError(f"data_range must be > 0, got {data_range}")
    err = (pred - target).pow(2).flatten(1).mean(dim=1)
    value = 10.0 * torch.log10(torch.as_tensor(data_range**2, dtype=err.dtype, device=err.device) / err)
    return _reduce(value, reduction)


def _gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian ``[size]``, centred (as scipy.ndimage's gaussian kernel)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur(x: Tensor, g: Tensor) -> Tensor:
    """Separable 'valid' Gaussian filter of each channel: ``[B, C, H, W]`` -> ``[B, C, H-10, W-10]``."""
    c = x.shape[1]
    kh = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0, reduction: str = "mean") -> Tensor:
    """Structural similarity (SSIM), Wang et al. 2004; see the module docstring for the variant.

    ``SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x² + mu_y² + C1)(sigma_x² + sigma_y² + C2))``
    with ``C1 = (0.01 L)²``, ``C2 = (0.03 L)²``, ``L = data_range``, local statistics under
    an 11x11 Gaussian window (sigma 1.5), averaged over valid positions and channels.

    Args:
        pred: ``[B, 3, H, W]`` or ``[H, W, 3]`` in [0, data_range], H, W >= 11.
        target: the same shape.
        data_range: dynamic range L of the images.
        reduction: ``"mean"`` or ``"none"`` (``[B]``).

    Raises:
        MetricError: an image side shorter than the 11-pixel window, bad shapes.
    """
    pred, target = check_image_pair(pred, target)
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise MetricError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got "
            f"{pred.shape[-2]}x{pred.shape[-1]}"
        )
    if not data_range > 0:
        raise MetricError(f"data_range must be > 0, got {data_range}")
    g = _gaussian_1d(SSIM_WINDOW, SSIM_SIGMA, pred.dtype, pred.device)
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _blur(pred, g), _blur(target, g)
    sxx = _blur(pred * pred, g) - mu_x * mu_x
    syy = _blur(target * target, g) - mu_y * mu_y
    sxy = _blur(pred * target, g) - mu_x * mu_y
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    return _reduce((num / den).flatten(1).mean(dim=1), reduction)


def dssim(pred: Tensor, target: Tensor, data_range: float = 1.0, reduction: str = "mean") -> Tensor:
    """Structural dissimilarity ``D-SSIM = (1 - SSIM) / 2``, in [0, 1]; the L_image term of
    the paper's renderer loss ``0.8 L1 + 0.2 D-SSIM`` (docs/method.md §7). Arguments as :func:`ssim`.
    """
    return (1.0 - ssim(pred, target, data_range, reduction)) / 2.0


def image_metrics(
    pred: Tensor,  # [B, 3, H, W] or [H, W, 3]
    target: Tensor,  # same shape
    lpips_model: Optional[torch.nn.Module] = None,
) -> Dict[str, float]:
    """The paper's image metrics of a batch: L1, PSNR (dB), SSIM and, given a model, LPIPS.

    Args:
        pred: rendered images ``[B, 3, H, W]`` or ``[H, W, 3]`` in [0, 1].
        target: ground-truth images, the same shape.
        lpips_model: an :class:`rsatalker_core.metrics.lpips.LPIPS` (e.g. from
            :func:`~rsatalker_core.metrics.lpips.load_lpips`); LPIPS is left out without it.

    Returns:
        ``{"L1", "PSNR", "SSIM"[, "LPIPS"]}`` -> mean over the batch, as floats. Average
        several batches with :func:`rsatalker_core.metrics.motion.aggregate`.

    Raises:
        MetricError: bad shapes, or NaN/Inf pixels.
    """
    p, t = check_image_pair(pred, target)
    if not (torch.isfinite(p).all() and torch.isfinite(t).all()):
        raise MetricError("image_metrics: pred or target holds NaN or Inf values")
    with torch.no_grad():
        out = {
            "L1": float(l1(pred, target)),
            "PSNR": float(psnr(pred, target)),
            "SSIM": float(ssim(pred, target)),
        }
        if lpips_model is not None:
            out["LPIPS"] = float(lpips_model(pred, target).mean())
    return out
