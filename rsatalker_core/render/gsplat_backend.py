"""gsplat's CUDA rasterizer behind rsatalker's interface (the GPU backend).

A thin mapping onto ``gsplat.rasterization(..., rasterize_mode="classic", packed=False)``
with the same conventions as :mod:`rsatalker_core.render.torch_backend`. gsplat 1.5.3 has no
CPU path (docs/method.md §6), so this backend needs CUDA tensors and a usable gsplat CUDA
extension; :func:`gsplat_available` says whether it has one.

Importing gsplat's CUDA backend JIT-compiles the extension on a machine with ``nvcc`` and no
prebuilt one. The build cache goes to ``$TORCH_EXTENSIONS_DIR`` (default here:
``~/.cache/rsatalker/torch_extensions``, or under ``$XDG_CACHE_HOME``) so it is reused across
runs and never written into the package; the import happens lazily, on first use.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import torch
from torch import Tensor

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
    """
    _set_extension_cache()
    from gsplat.rendering import rasterization  # lazy: keeps CPU imports light

    rgb, alpha, _meta = rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, int(width), int(height),
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
        sh_degree=None, packed=False, backgrounds=backgrounds,
        render_mode="RGB", rasterize_mode="classic",
    )
    return rgb, alpha
