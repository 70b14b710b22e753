"""Mixed precision of the training forward pass (``train.amp``; docs/training.md).

``bf16`` runs the stage's loss under ``torch.autocast(dtype=torch.bfloat16)``: matrix
products and convolutions of the motion transformer and the offsetnet in bfloat16, with
autocast's float32 list (softmax, norms, losses) kept in float32. bfloat16 has float32's
exponent range, so no gradient scaler is needed. What is not safe in reduced precision
stays float32 explicitly: the rasterizer and the image losses
(:func:`rsatalker_core.training.losses.renderer_loss` runs in :func:`float32_region`) and
the motion losses (the stages cast the prediction to float32 first). Parameters, gradients
and optimiser state stay float32 (autocast casts on the fly).

``auto`` chooses bf16 on a CUDA device that supports it (compute capability >= 8.0,
``torch.cuda.is_bf16_supported()``) and off elsewhere; on the CPU mixed precision is off.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Optional, Union

import torch

from rsatalker_core.errors import ConfigError

AMP_MODES = ("auto", "off", "bf16")


def autocast_dtype(amp: str, device: Union[str, torch.device]) -> Optional[torch.dtype]:
    """The autocast dtype ``train.amp`` means on ``device`` (``None`` = full float32).

    Raises:
        ConfigError: an unknown mode, or ``bf16`` on a device without bfloat16 training
            support (the CPU, or a CUDA GPU older than compute capability 8.0).
    """
    dev = torch.device(device)
    if amp not in AMP_MODES:
        raise ConfigError(f"train.amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    cuda_bf16 = dev.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if amp == "off" or (amp == "auto" and not cuda_bf16):
        return None
    if not cuda_bf16:
        raise ConfigError(
            f"train.amp=bf16 needs a CUDA device with bfloat16 support; device is {dev} "
            "(use train.amp=auto or off)"
        )
    return torch.bfloat16


def autocast(dtype: Optional[torch.dtype], device: Union[str, torch.device]) -> ContextManager:
    """``torch.autocast`` for ``dtype`` on ``device``'s type; a no-op context for ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def float32_region(device: Union[str, torch.device]) -> ContextManager:
    """Disable autocast inside (for the rasterizer and image losses); inputs must be cast
    to float32 by the caller."""
    try:
        return torch.autocast(torch.device(device).type, enabled=False)
    except RuntimeError:  # a device type autocast does not know: nothing to disable
        return contextlib.nullcontext()
