"""One rasterizer interface over three backends: gsplat's CUDA kernels, a differentiable
pure-PyTorch one, and a fused numba loop for CPU inference (no gradients).

All backends follow gsplat's 'classic' conventions (docs/method.md §6): pixel centres at +0.5,
``eps2d = 0.3`` added to projected covariances, an opacity-aware box of at most 3.33 sigma,
alpha clamped to 0.999, alpha below 1/255 skipped, compositing stopped at transmittance
1e-4, near/far planes at 0.01 / 1e10 metres.

:func:`rasterize` splats one set of Gaussians into C cameras; :func:`rasterize_frames`
renders the frames of a clip (per-frame Gaussians and cameras): in batched gsplat calls on
CUDA, one :func:`rasterize` per frame on CPU (docs/architecture.md, render backends).

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
from rsatalker_core.render.gsplat_backend import rasterize_gsplat, rasterize_gsplat_frames
from rsatalker_core.render.torch_backend import rasterize_torch

BACKENDS = ("auto", "torch", "gsplat", "numba")

#: Frames per batched gsplat call in :func:`rasterize_frames` (bounds GPU memory: gsplat's
#: unpacked intermediates are ``[B, N, ...]``, about 60 bytes per frame and Gaussian, plus
#: the ``[B, H, W, 3]`` images).
DEFAULT_BATCH_FRAMES = 32

__all__ = [
    "rasterize", "rasterize_frames", "resolve_backend", "warmup_backend", "RenderError", "BACKENDS",
    "DEFAULT_BATCH_FRAMES", "gsplat_available", "numba_available",
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


def rasterize_frames(
    means: Tensor,  # [B, N, 3]
    quats: Tensor,  # [B, N, 4]
    scales: Tensor,  # [B, N, 3]
    opacities: Tensor,  # [N] or [B, N]
    colors: Tensor,  # [N, D] or [B, N, D]
    viewmats: Tensor,  # [B, 4, 4] or [1, 4, 4]
    Ks: Tensor,  # [B, 3, 3] or [1, 3, 3]
    width: int,
    height: int,
    backgrounds: Optional[Tensor] = None,  # [B, D] or [1, D]
    backend: str = "auto",
    batch_frames: int = DEFAULT_BATCH_FRAMES,
) -> Tuple[Tensor, Tensor]:
    """Render B frames, each its own Gaussians through its own camera (differentiable).

    The frames of a clip: frame ``b`` is ``rasterize(means[b], ..., viewmats[b:b+1], ...)``.
    With the gsplat backend (CUDA) the frames go to gsplat in batched calls of
    ``batch_frames`` frames each (one ``rasterization()`` call per chunk, instead of one per
    frame); the numba and torch backends (CPU) keep their loop of one :func:`rasterize`
    call per frame, so their pixels are exactly those of :func:`rasterize`.

    Args:
        means, quats, scales: per-frame Gaussians, as :func:`rasterize` (metres, wxyz).
            [B, N, 3], [B, N, 4], [B, N, 3]
        opacities, colors: shared by all frames or per frame. [N] or [B, N]; [N, D] or [B, N, D]
        viewmats, Ks: one camera per frame, or one for all. [B or 1, 4, 4], [B or 1, 3, 3]
        width, height: image size, pixels.
        backgrounds: colour behind the Gaussians, per frame or one for all; ``None`` = black.
            [B or 1, D]
        backend: as :func:`rasterize`.
        batch_frames: most frames per gsplat call (memory bound; >= 1).

    Returns:
        ``(rgb [B, H, W, D], alpha [B, H, W, 1])``.

    Raises:
        RenderError: shapes that do not fit (named), ``batch_frames < 1``, the backend errors
            of :func:`rasterize`, or non-float32 inputs on the gsplat backend.
    """
    if not isinstance(means, Tensor) or means.dim() != 3 or means.shape[-1] != 3:
        got = list(means.shape) if isinstance(means, Tensor) else type(means).__name__
        raise RenderError(f"rasterize_frames: means must be [B, N, 3], got {got}")
    if int(batch_frames) < 1:
        raise RenderError(f"rasterize_frames: batch_frames must be >= 1, got {batch_frames}")
    B = means.shape[0]
    per_frame = {"quats": quats, "scales": scales}
    shared_or_frame = {"opacities": (opacities, 1), "colors": (colors, 2)}
    for name, t in per_frame.items():
        if not isinstance(t, Tensor) or t.dim() != 3 or t.shape[0] != B:
            got = list(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise RenderError(f"rasterize_frames: {name} must be [B={B}, N, ...] like means, got {got}")
    for name, (t, dims) in shared_or_frame.items():
        if not isinstance(t, Tensor) or t.dim() not in (dims, dims + 1) or (t.dim() == dims + 1 and t.shape[0] != B):
            got = list(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise RenderError(f"rasterize_frames: {name} must be shared or per frame (B={B}), got {got}")
    for name, t in (("viewmats", viewmats), ("Ks", Ks), ("backgrounds", backgrounds)):
        if t is None and name == "backgrounds":
            continue
        if not isinstance(t, Tensor) or t.dim() < 2 or t.shape[0] not in (1, B):
            got = list(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise RenderError(f"rasterize_frames: {name} must have 1 or B={B} rows, got {got}")

    def frame(t: Optional[Tensor], i: int, dims: int) -> Optional[Tensor]:
        return t if t is None or t.dim() == dims else t[i]

    def cam(t: Optional[Tensor], i: int) -> Optional[Tensor]:
        return t if t is None or t.shape[0] == 1 else t[i : i + 1]

    if B == 0:
        D = colors.shape[-1]
        return means.new_zeros(0, height, width, D), means.new_zeros(0, height, width, 1)
    # Frame 0 through rasterize's checks: dtypes, devices, N, camera and background shapes.
    _validate(means[0], quats[0], scales[0], frame(opacities, 0, 1), frame(colors, 0, 2),
              cam(viewmats, 0), cam(Ks, 0), width, height, cam(backgrounds, 0))
    inputs = (means, quats, scales, opacities, colors, viewmats, Ks, backgrounds)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    which = resolve_backend(backend, means.device, needs_grad)
    if which != "gsplat":
        rgbs, alphas = [], []
        for i in range(B):
            rgb, alpha = rasterize(
                means[i], quats[i], scales[i], frame(opacities, i, 1), frame(colors, i, 2),
                cam(viewmats, i), cam(Ks, i), width, height, cam(backgrounds, i), backend=which,
            )
            rgbs.append(rgb[0])
            alphas.append(alpha[0])
        return torch.stack(rgbs), torch.stack(alphas)

    def batched(t: Optional[Tensor], dims: int) -> Optional[Tensor]:
        """[B, ...] view of a tensor shared by all frames (``dims`` dims, or a leading 1)
        or given per frame (gsplat makes its inputs contiguous)."""
        if t is None:
            return None
        if t.dim() == dims:
            t = t[None]
        return t.expand(B, *t.shape[1:])

    opacities_b, colors_b = batched(opacities, 1), batched(colors, 2)
    viewmats_b, Ks_b, bg_b = batched(viewmats, 2), batched(Ks, 2), batched(backgrounds, 1)
    step = int(batch_frames)
    rgbs, alphas = [], []
    for s in range(0, B, step):
        c = slice(s, s + step)
        rgb, alpha = rasterize_gsplat_frames(
            means[c], quats[c], scales[c], opacities_b[c], colors_b[c], viewmats_b[c], Ks_b[c],
            width, height, None if bg_b is None else bg_b[c],
        )
        rgbs.append(rgb)
        alphas.append(alpha)
    return torch.cat(rgbs), torch.cat(alphas)


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
