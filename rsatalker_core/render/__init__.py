"""One rasterizer interface over three backends: gsplat's CUDA kernels, a differentiable
pure-PyTorch one, and a fused numba loop for CPU inference (no gradients).

All backends follow gsplat's 'classic' conventions (docs/method.md §6): pixel centres at +0.5,
``eps2d = 0.3`` added to projected covariances, an opacity-aware box of at most 3.33 sigma,
alpha clamped to 0.999, alpha below 1/255 skipped, compositing stopped at transmittance
1e-4, near/far planes at 0.01 / 1e10 metres.

Example:
    >>> from rsatalker_core.render import rasterize
    >>> from rsatalker_core.render.camera import default_camera
    >>> from rsatalker_core.config import RenderConfig
    >>> viewmats, Ks = default_camera(RenderConfig(width=64, height=64))
    >>> means = torch.randn(100, 3) * 0.05
    >>> quats = torch.randn(100, 4)
    >>> scales = torch.full((100, 3), 0.01)
    >>> rgb, alpha = rasterize(means, quats, scales, torch.full((100,), 0.8),
    ...                        torch.rand(100, 3), viewmats, Ks, 64, 64)
    >>> rgb.shape, alpha.shape
    (torch.Size([1, 64, 64, 3]), torch.Size([1, 64, 64, 1]))
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from rsatalker_core.errors import RenderError
from rsatalker_core.render.gsplat_backend import gsplat_available, gsplat_unavailable_reason
from rsatalker_core.render.gsplat_backend import rasterize_gsplat
from rsatalker_core.render.torch_backend import rasterize_torch

BACKENDS = ("auto", "torch", "gsplat", "numba")

__all__ = [
    "rasterize", "resolve_backend", "warmup_backend", "RenderError", "BACKENDS",
    "gsplat_available", "numba_available",
]

_numba_error: Optional[str] = None
_numba_checked = False


def numba_available() -> bool:
    """Whether the numba CPU rasterizer imports here (checked once, on first call)."""
    global _numba_checked, _numba_error
    if not _numba_checked:
        try:
            import rsatalker_core.render.numba_backend  # noqa: F401  (numba is imported lazily)
        except Exception as exc:  # ImportError, or numba refusing this numpy
            _numba_error = f"{type(exc).__name__}: {exc}"
        _numba_checked = True
    return _numba_error is None


def resolve_backend(backend: str, device: torch.device, needs_grad: bool = True) -> str:
    """Map ``"auto"`` / ``"torch"`` / ``"gsplat"`` / ``"numba"`` to the backend that will run.

    ``"auto"`` picks gsplat for CUDA tensors when its CUDA extension is usable; for CPU
    tensors, the numba rasterizer when no gradient is needed (``needs_grad=False``) and numba
    imports, else the differentiable torch backend.

    Args:
        backend: ``render.backend``.
        device: where the Gaussians are.
        needs_grad: whether the caller needs gradients through the images.

    Raises:
        RenderError: an unknown backend; ``"gsplat"`` for non-CUDA tensors or without a
            usable gsplat CUDA extension; ``"numba"`` for non-CPU tensors, with gradients
            needed, or when numba does not import.
    """
    if backend not in BACKENDS:
        raise RenderError(f"render.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return "torch"
    on_cuda = device.type == "cuda"
    if backend == "numba":
        if device.type != "cpu":
            raise RenderError(f"render.backend 'numba' needs CPU tensors, got tensors on '{device}'")
        if needs_grad:
            raise RenderError(
                "render.backend 'numba' gives no gradients, but the inputs require grad with "
                "grad mode on; use backend 'torch' or 'auto' (or torch.no_grad())"
            )
        if not numba_available():
            raise RenderError(f"render.backend 'numba' is unusable: {_numba_error}")
        return "numba"
    if backend == "auto":
        if on_cuda and gsplat_available():
            return "gsplat"
        if device.type == "cpu" and not needs_grad and numba_available():
            return "numba"
        return "torch"
    if not on_cuda:
        raise RenderError(
            f"render.backend 'gsplat' needs CUDA tensors, got tensors on '{device}' "
            "(gsplat 1.5.3 has no CPU rasterizer); use backend 'torch' or 'auto'"
        )
    if not gsplat_available():
        raise RenderError(f"render.backend 'gsplat' is unusable: {gsplat_unavailable_reason()}")
    return "gsplat"


def warmup_backend(backend: str = "auto", device: Union[str, torch.device] = "cpu") -> str:
    """Compile or load the rasterizer that inference (no gradients) will use, on a tiny scene.

    Call at start-up (renderer construction, a render node) so the first frame does not pay
    numba's JIT (a few seconds the first time on a machine, ~0.5 s from its cache).

    Returns:
        the backend name ``resolve_backend(backend, device, needs_grad=False)`` gives.

    Raises:
        RenderError: as :func:`resolve_backend`.
    """
    which = resolve_backend(backend, torch.device(device), needs_grad=False)
    if which == "numba":
        from rsatalker_core.render.numba_backend import warmup

        warmup()
    return which


def rasterize(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    backgrounds: Optional[Tensor] = None,  # [C, 3]
    backend: str = "auto",
) -> Tuple[Tensor, Tensor]:
    """Splat N 3D Gaussians into C images (differentiable with torch and gsplat).

    Args:
        means: Gaussian centres, world frame, metres. [N, 3]
        quats: rotations as quaternions, wxyz; normalised internally. [N, 4]
        scales: standard deviations along the rotated axes, metres (> 0). [N, 3]
        opacities: in [0, 1]. [N]
        colors: post-activation colours (RGB in [0, 1]; any D channels work). [N, 3]
        viewmats: world-to-camera matrices, OpenCV axes (x right, y down, z forward). [C, 4, 4]
        Ks: pinhole intrinsics, pixels. [C, 3, 3]
        width, height: image size, pixels.
        backgrounds: colour seen where the Gaussians leave transmittance; ``None`` = black. [C, 3]
        backend: ``"auto"`` (gsplat on CUDA when usable; on CPU the numba rasterizer when no
            gradient is needed, else torch), ``"torch"``, ``"gsplat"`` or ``"numba"``.

    Returns:
        ``(rgb [C, H, W, 3], alpha [C, H, W, 1])``, with ``alpha = 1 - T_final``.

    Raises:
        RenderError: mismatched shapes, devices or dtypes, a non-positive image size, an
            unknown backend, ``backend="gsplat"`` with non-CUDA tensors / no gsplat CUDA, or
            ``backend="numba"`` with non-CPU tensors or inputs that need gradients.
    """
    _validate(means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds)
    inputs = (means, quats, scales, opacities, colors, viewmats, Ks, backgrounds)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    which = resolve_backend(backend, means.device, needs_grad)
    if which == "numba":
        from rsatalker_core.render.numba_backend import rasterize_numba

        return rasterize_numba(means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds)
    if which == "gsplat":
        return rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds
        )
    return rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width, height, backgrounds)


def _validate(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    backgrounds: Optional[Tensor],
) -> None:
    """Raise :class:`RenderError` naming the first argument that does not fit."""
    named = {
        "means": means, "quats": quats, "scales": scales, "opacities": opacities,
        "colors": colors, "viewmats": viewmats, "Ks": Ks,
    }
    if backgrounds is not None:
        named["backgrounds"] = backgrounds
    for name, t in named.items():
        if not isinstance(t, Tensor):
            raise RenderError(f"rasterize: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise RenderError(f"rasterize: {name} must be floating point, got {t.dtype}")
        if t.device != means.device:
            raise RenderError(f"rasterize: {name} is on {t.device} but means is on {means.device}")
        if t.dtype != means.dtype:
            raise RenderError(f"rasterize: {name} is {t.dtype} but means is {means.dtype}")
    if means.dim() != 2 or means.shape[-1] != 3:
        raise RenderError(f"rasterize: means must be [N, 3], got {list(means.shape)}")
    N = means.shape[0]
    expect = {"quats": (N, 4), "scales": (N, 3), "opacities": (N,)}
    for name, shape in expect.items():
        if tuple(named[name].shape) != shape:
            raise RenderError(f"rasterize: {name} must be {list(shape)}, got {list(named[name].shape)}")
    if colors.dim() != 2 or colors.shape[0] != N:
        raise RenderError(f"rasterize: colors must be [N={N}, D], got {list(colors.shape)}")
    if viewmats.dim() != 3 or tuple(viewmats.shape[1:]) != (4, 4):
        raise RenderError(f"rasterize: viewmats must be [C, 4, 4], got {list(viewmats.shape)}")
    C = viewmats.shape[0]
    if tuple(Ks.shape) != (C, 3, 3):
        raise RenderError(f"rasterize: Ks must be [C={C}, 3, 3], got {list(Ks.shape)}")
    if backgrounds is not None and tuple(backgrounds.shape) != (C, colors.shape[1]):
        raise RenderError(
            f"rasterize: backgrounds must be [C={C}, D={colors.shape[1]}], got {list(backgrounds.shape)}"
        )
    if int(width) <= 0 or int(height) <= 0 or int(width) != width or int(height) != height:
        raise RenderError(f"rasterize: image size must be positive integers, got {width}x{height}")
