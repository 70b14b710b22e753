"""gsplat's CUDA rasterizer behind rsatalker's interface (the GPU backend).

A thin mapping onto ``gsplat.rasterization(..., rasterize_mode="classic", packed=False)``
with the same conventions as :mod:`rsatalker_core.render.torch_backend`. gsplat 1.5.3 has no
CPU path (docs/method.md §6), so this backend needs CUDA tensors and a usable gsplat CUDA
extension; :func:`gsplat_available` says whether it has one.

Importing gsplat's CUDA backend JIT-compiles the extension on a machine with ``nvcc`` and no
prebuilt one. The build cache goes to ``$TORCH_EXTENSIONS_DIR`` (default here:
``~/.cache/rsatalker/torch_extensions``, or under ``$XDG_CACHE_HOME``) so it is reused across
runs and never written into the package; the import happens lazily, on first use.

gsplat's kernels are float32-only: :func:`check_gsplat_inputs` refuses any other dtype with a
:class:`~rsatalker_core.errors.RenderError` before anything reaches CUDA.
:func:`rasterize_gsplat_frames` renders B frames (each its own Gaussians and camera) in one
batched ``rasterization()`` call, gsplat's leading batch dimension (docs/architecture.md,
render backends).
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import torch
from torch import Tensor

from rsatalker_core.errors import RenderError

_AVAILABLE: Optional[bool] = None
_REASON: str = ""


def _set_extension_cache() -> None:
    """Point torch's JIT extension cache at a per-user rsatalker directory (if unset)."""
    if "TORCH_EXTENSIONS_DIR" not in os.environ:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        os.environ["TORCH_EXTENSIONS_DIR"] = os.path.join(base, "rsatalker", "torch_extensions")


def gsplat_available() -> bool:
    """True when CUDA is available and gsplat's CUDA extension loads (built or JIT-built).

    The answer is cached for the process; :func:`gsplat_unavailable_reason` says why not.
    """
    global _AVAILABLE, _REASON
    if _AVAILABLE is None:
        if not torch.cuda.is_available():
            _AVAILABLE, _REASON = False, "CUDA is not available to torch"
        else:
            _set_extension_cache()
            try:
                from gsplat.cuda._backend import _C  # noqa: WPS433 (lazy: may JIT-compile)
            except Exception as exc:  # a failed build raises many types
                _AVAILABLE, _REASON = False, f"gsplat CUDA extension failed to load ({type(exc).__name__}: {exc})"
            else:
                _AVAILABLE = _C is not None
                _REASON = "" if _AVAILABLE else "gsplat found no CUDA toolkit and no prebuilt extension"
    return _AVAILABLE


def gsplat_unavailable_reason() -> str:
    """Why :func:`gsplat_available` is False ("" when it is True or not yet asked)."""
    return _REASON


def rasterize_gsplat(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    backgrounds: Optional[Tensor] = None,  # [C, D]
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> Tuple[Tensor, Tensor]:
    """Rasterize with ``gsplat.rasterization`` in classic mode, unpacked, post-activation colours.

    Arguments and conventions as :func:`rsatalker_core.render.torch_backend.rasterize_torch`
    (inputs assumed validated and on one CUDA device).

    Returns:
        ``(rgb [C, H, W, D], alpha [C, H, W, 1])``.

    Raises:
        RenderError: an input that is not float32 (:func:`check_gsplat_inputs`).
    """
    rasterization = _checked_rasterization(
        means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
        viewmats=viewmats, Ks=Ks, backgrounds=backgrounds,
    )

    rgb, alpha, _meta = rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, int(width), int(height),
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
        sh_degree=None, packed=False, backgrounds=backgrounds,
        render_mode="RGB", rasterize_mode="classic",
    )
    return rgb, alpha


def _checked_rasterization(**tensors: Optional[Tensor]):
    """``gsplat.rendering.rasterization`` once ``tensors`` passed :func:`check_gsplat_inputs`
    (imported lazily, with the extension cache set, so CPU imports stay light)."""
    check_gsplat_inputs(**tensors)
    _set_extension_cache()
    from gsplat.rendering import rasterization

    return rasterization


def check_gsplat_inputs(**tensors: Optional[Tensor]) -> None:
    """Refuse inputs gsplat's CUDA kernels cannot take, before any CUDA call.

    gsplat 1.5.3's projection and rasterization kernels are compiled for float32 only (a
    float64 or float16 tensor would fail deep inside the extension, or be silently cast by
    a caller), so every tensor must be ``torch.float32``. ``None`` entries (no background)
    are skipped. Runs without CUDA, so it is testable on any machine.

    Args:
        tensors: the rasterizer inputs by name (``means=..., quats=..., ...``).

    Raises:
        RenderError: naming the first tensor that is not float32 and its dtype.
    """
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise RenderError(f"gsplat backend: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != torch.float32:
            raise RenderError(
                f"gsplat backend: {name} is {t.dtype}, but gsplat's CUDA kernels take float32 only; "
                "convert with .float() or render with backend 'torch'"
            )


def rasterize_gsplat_frames(
    means: Tensor,  # [B, N, 3]
    quats: Tensor,  # [B, N, 4]
    scales: Tensor,  # [B, N, 3]
    opacities: Tensor,  # [B, N]
    colors: Tensor,  # [B, N, D]
    viewmats: Tensor,  # [B, 4, 4]
    Ks: Tensor,  # [B, 3, 3]
    width: int,
    height: int,
    backgrounds: Optional[Tensor] = None,  # [B, D]
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> Tuple[Tensor, Tensor]:
    """Render B frames, frame ``b``'s Gaussians through camera ``b``, in ONE gsplat call.

    Uses ``rasterization()``'s leading batch dimension (means ``[..., N, 3]`` with cameras
    ``[..., C, 4, 4]``, here ``C = 1`` per frame); each image is the one
    :func:`rasterize_gsplat` gives for that frame alone. Conventions as
    :func:`rasterize_gsplat`; inputs assumed shape-checked and on one CUDA device.

    Returns:
        ``(rgb [B, H, W, D], alpha [B, H, W, 1])``.

    Raises:
        RenderError: an input that is not float32 (:func:`check_gsplat_inputs`).
    """
    rasterization = _checked_rasterization(
        means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
        viewmats=viewmats, Ks=Ks, backgrounds=backgrounds,
    )

    rgb, alpha, _meta = rasterization(
        means, quats, scales, opacities, colors, viewmats[:, None], Ks[:, None], int(width), int(height),
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
        sh_degree=None, packed=False, backgrounds=None if backgrounds is None else backgrounds[:, None],
        render_mode="RGB", rasterize_mode="classic",
    )
    return rgb[:, 0], alpha[:, 0]
