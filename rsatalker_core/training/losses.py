"""Training losses of RSATalker (§3.4; docs/method.md §7): the renderer's (stages 2 and 3) and
the motion's ``L_mesh`` (stages 1 and 3, :func:`masked_mse`).

Stage 2 (renderer) minimises ``L_image + lambda_pos L_pos + lambda_offset L_offset`` and
stage 3 (joint) ``L_mesh + 0.5 L_image + 0.01 L_pos + 0.01 L_offset``, with

* ``L_image = 0.8 L1 + 0.2 D-SSIM`` (:func:`image_loss`), D-SSIM = (1 - SSIM) / 2 with the
  project's one SSIM (:mod:`rsatalker_core.metrics.image`);
* ``L_pos = ||max(mu_c, eps)||_2`` (:func:`position_loss`) on the face-local Gaussian means;
* ``L_offset = ||max(c, eps)||_2`` (:func:`offset_loss`) on the social offsets, ``eps = 1``.

Reading of the two regularisers. docs/method.md §7 writes them as in the paper, following
GaussianAvatars (Qian et al., CVPR 2024, §3.3 "position loss with a threshold
eps_position = 1 that tolerates small errors"): the loss is the norm of each vector,
clamped from below at ``eps``. Taken element-wise, ``max(x, eps)`` would leave large
*negative* coordinates unpenalised, which is not the intent, so both are implemented as the
hinge on the Euclidean norm, averaged over the vectors:

    ``L = mean_i max(||x_i||_2 - eps, 0)``

This has the same gradient as ``mean_i max(||x_i||_2, eps)`` (the constant ``eps`` is
subtracted so that a loss of 0 means "every vector lies inside the tolerance ball"). It
is zero and gradient-free for ``||x_i|| <= eps`` and grows linearly outside.

Units. ``mu_c`` is in units of the triangle size ``k`` (``mu = k R mu_c + T + c``,
docs/method.md §4), so ``eps = 1`` lets a Gaussian drift one triangle size from its triangle's
centroid before it is pulled back. ``c`` is in metres; with ``eps = 1`` m and offsets bounded
by ``SocialConfig.max_offset`` (a tanh bound of centimetres) the offset term is a
safety net that is inactive in normal training, exactly as the paper's ``eps = 1`` implies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Tuple

import torch
from torch import Tensor

from rsatalker_core.errors import TrainingError
from rsatalker_core.metrics.image import bhwc_to_bchw, dssim, l1

if TYPE_CHECKING:  # the renderer imports FLAME and the avatar; only renderer_loss needs them
    from rsatalker_core.avatar.gaussians import GaussianAvatar
    from rsatalker_core.head.flame import FlameModel

__all__ = [
    "L1_WEIGHT",
    "DSSIM_WEIGHT",
    "POSITION_EPS",
    "OFFSET_EPS",
    "image_loss",
    "image_loss_terms",
    "position_loss",
    "offset_loss",
]

#: Weights of L1 and D-SSIM in ``L_image`` (RSATalker §3.4, docs/method.md §7).
L1_WEIGHT: float = 0.8
DSSIM_WEIGHT: float = 0.2
#: Tolerance ``eps`` of ``L_pos`` (units of triangle size ``k``) and of ``L_offset``
#: (metres); the paper sets ``eps = 1`` (docs/method.md §7).
POSITION_EPS: float = 1.0
OFFSET_EPS: float = 1.0


def image_loss_terms(pred: Tensor, target: Tensor) -> Dict[str, Tensor]:
    """``L_image`` and its two terms (for logging).

    Args:
        pred: rendered images in [0, 1], renderer layout ``[B, H, W, 3]`` or ``[B, 3, H, W]``
            or one ``[H, W, 3]`` image; H, W >= 11 (the SSIM window).
        target: ground-truth images, the same shape.

    Returns:
        ``{"l1", "dssim", "image"}`` scalar tensors, ``image = 0.8 l1 + 0.2 dssim``,
        differentiable with respect to ``pred``.

    Raises:
        MetricError: shapes differ, or images smaller than 11x11.
    """
    if pred.ndim == 4 and pred.shape[-1] == 3 and pred.shape[1] != 3:
        pred, target = bhwc_to_bchw(pred), bhwc_to_bchw(target)
    t_l1 = l1(pred, target)
    t_ds = dssim(pred, target)
    return {"l1": t_l1, "dssim": t_ds, "image": L1_WEIGHT * t_l1 + DSSIM_WEIGHT * t_ds}


def image_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Photometric loss ``L_image = 0.8 L1 + 0.2 D-SSIM`` (RSATalker §3.4, docs/method.md §7).

    Args:
        pred: rendered images in [0, 1]; ``[B, H, W, 3]`` (renderer layout), ``[B, 3, H, W]``
            or ``[H, W, 3]``; H, W >= 11.
        target: ground truth, same shape and layout.

    Returns:
        Scalar tensor (mean over the batch), differentiable.

    Raises:
        MetricError: shapes differ, or images smaller than 11x11.

    Example:
        >>> x = torch.rand(1, 32, 32, 3)
        >>> float(image_loss(x, x))
        0.0
    """
    return image_loss_terms(pred, target)["image"]


def _hinge_norm(x: Tensor, eps: float, mask: Optional[Tensor], name: str) -> Tensor:
    if x.ndim < 1 or x.shape[-1] != 3:
        raise TrainingError(f"{name}: expected vectors [..., 3], got {list(x.shape)}")
    if eps < 0:
        raise TrainingError(f"{name}: eps must be >= 0, got {eps}")
    per = (x.norm(dim=-1) - eps).clamp_min(0.0)  # [...]
    if mask is not None:
        mask = torch.as_tensor(mask, device=x.device).bool()
        if mask.shape != per.shape:
            raise TrainingError(f"{name}: mask shape {list(mask.shape)} does not fit {list(per.shape)}")
        per = per[mask]
    if per.numel() == 0:
        return x.sum() * 0.0
    return per.mean()


def position_loss(
    means_local: Tensor,  # [N, 3]
    eps: float = POSITION_EPS,
    mask: Optional[Tensor] = None,  # [N] bool
) -> Tensor:
    """Position regulariser ``L_pos = ||max(mu_c, eps)||_2`` (RSATalker §3.4; GaussianAvatars §3.3).

    Implemented as ``mean_i max(||mu_c,i||_2 - eps, 0)`` (see the module docstring for
    why the norm is clamped rather than each coordinate): it keeps every Gaussian near
    its triangle, within ``eps`` triangle sizes of the centroid.

    Args:
        means_local: face-local Gaussian means ``mu_c`` (``GaussianAvatar.means_local``),
            in units of the triangle size ``k``. [N, 3] (or any [..., 3])
        eps: tolerance, triangle sizes (paper: 1).
        mask: optional Gaussians to include (e.g. those visible in the frame), the shape
            of ``means_local`` without its last axis. [N] bool

    Returns:
        Scalar tensor >= 0 (0 when every ``||mu_c|| <= eps`` or nothing is selected).

    Raises:
        TrainingError: not ``[..., 3]`` vectors, negative ``eps``, or a mask that does not fit.
    """
    return _hinge_norm(means_local, eps, mask, "position_loss")


def offset_loss(
    offsets: Tensor,  # [B, F, 3] or [B, T, F, 3]
    eps: float = OFFSET_EPS,
) -> Tensor:
    """Social offset regulariser ``L_offset = ||max(c, eps)||_2`` with ``eps = 1`` (RSATalker §3.4).

    Implemented as ``mean max(||c||_2 - eps, 0)`` over all anchors and frames (module
    docstring): it penalises only offsets longer than ``eps``.

    Args:
        offsets: per-anchor social position corrections ``c`` from the Gaussian offsetnet
            (:class:`~rsatalker_core.avatar.offsets.RelationshipOffsets`), metres. [B, F, 3] or [B, T, F, 3]
        eps: tolerance, metres (paper: 1).

    Returns:
        Scalar tensor >= 0.

    Raises:
        TrainingError: not ``[..., 3]`` vectors or negative ``eps``.
    """
    return _hinge_norm(offsets, eps, None, "offset_loss")


# --------------------------------------------------------------------------- motion (L_mesh)
def masked_mse(
    pred: Tensor,  # [B, T, C]
    target: Tensor,  # [B, T, C]
    mask: Optional[Tensor] = None,  # [B, T] bool
) -> Tensor:
    """Mean squared error over channels and the frames where ``mask`` is True.

    ``sum_{b,t} mask[b,t] * mean_c (pred - target)^2 / sum_{b,t} mask[b,t]``; with no mask
    (or all True) this is ``torch.nn.functional.mse_loss``. An all-False mask gives 0.

    Returns:
        scalar tensor.

    Raises:
        ValueError: shapes differ, or ``mask`` is not ``[B, T]``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    err = (pred - target).pow(2).mean(dim=-1)  # [B, T]
    if mask is None:
        return err.mean()
    if mask.shape != err.shape:
        raise ValueError(f"mask must be {tuple(err.shape)}, got {tuple(mask.shape)}")
    m = mask.to(err.dtype)
    return (err * m).sum() / m.sum().clamp_min(1.0)


def velocity(
    x: Tensor,  # [B, T, C]
    mask: Optional[Tensor] = None,  # [B, T] bool
) -> Tuple[Tensor, Optional[Tensor]]:
    """Frame-to-frame differences ``x[:, 1:] - x[:, :-1]`` (per frame at 25 fps) and their
    mask (both frames real): ``([B, T-1, C], [B, T-1] | None)``."""
    v = x[:, 1:] - x[:, :-1]
    return v, None if mask is None else (mask[:, 1:] & mask[:, :-1])


# --------------------------------------------------------------------------- renderer (stages 2, 3)
def renderer_loss(
    flame: FlameModel,
    avatar: GaussianAvatar,
    motion: Tensor,  # [N, 56]
    target: Tensor,  # [N, H, W, 3]
    viewmats: Tensor,  # [N, 4, 4]
    Ks: Tensor,  # [N, 3, 3]
    background: Optional[Tensor] = None,  # [3]
    offsets: Optional[Tensor] = None,  # [N, F, 3]
    lambda_pos: float = 0.01,
    lambda_offset: float = 0.01,
    pos_eps: float = 1.0,
    offset_eps: float = 1.0,
    backend: str = "auto",
) -> Tuple[Tensor, Dict[str, Tensor], Tensor]:
    """Render and score: ``L_image + lambda_pos L_pos + lambda_offset L_offset`` (RSATalker §3.4).

    Renders through :func:`rsatalker_core.render.renderer.render_motion` (the one motion ->
    pixels path). Stage 3 weights the same terms ``0.5 / 0.01 / 0.01`` and adds ``L_mesh``:
    it calls this with ``lambda_* / lambda_image`` and scales the result (gradients flow
    into ``motion`` and ``offsets`` as well as the avatar).

    Args:
        flame, avatar, motion, viewmats, Ks, background, offsets, backend: as
            :func:`~rsatalker_core.render.renderer.render_motion`.
        target: ground-truth frames in [0, 1], H, W >= 11. [N, H, W, 3]
        lambda_pos, lambda_offset: weights of ``L_pos`` / ``L_offset``.
        pos_eps, offset_eps: their tolerances (triangle sizes / metres; paper: 1).

    Returns:
        ``(loss, terms, rgb)``: the scalar loss; detached scalars ``{"image", "l1", "dssim",
        "pos", "offset", "psnr"}``; the rendered ``rgb [N, H, W, 3]``.

    Raises:
        RenderError, ValueError: as ``render_motion``; TrainingError: as the loss terms.
    """
    from rsatalker_core.render.renderer import render_motion
    from rsatalker_core.training.precision import float32_region

    H, W = target.shape[1:3]
    # The rasterizer and the image losses stay float32 under train.amp (training/precision.py).
    with float32_region(motion.device):
        offsets = offsets.float() if offsets is not None else None
        rgb = render_motion(flame, avatar, motion.float(), viewmats, Ks, W, H, background, offsets, backend)
        terms = image_loss_terms(rgb, target.float())
        l_pos = position_loss(avatar.means_local, pos_eps)
        l_off = offset_loss(offsets, offset_eps) if offsets is not None else rgb.new_zeros(())
        loss = terms["image"] + lambda_pos * l_pos + lambda_offset * l_off
    with torch.no_grad():
        mse = (rgb.clamp(0, 1) - target).pow(2).flatten(1).mean(1).clamp_min(1e-12)
        out = {k: v.detach() for k, v in terms.items()}
        out.update(pos=l_pos.detach(), offset=l_off.detach(), psnr=(-10.0 * torch.log10(mse)).mean())
    return loss, out, rgb
