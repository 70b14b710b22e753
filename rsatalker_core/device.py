"""Device selection. The CPU and CUDA paths share one interface; the device is chosen by
configuration, never assumed."""

from __future__ import annotations

from typing import Optional, Union

import torch

from rsatalker_core.errors import ConfigError


def resolve_device(name: Optional[Union[str, torch.device]] = None) -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or ``None`` into a device.

    ``"auto"`` / ``None`` picks CUDA when available, else CPU.

    Raises:
        ConfigError: the name is not a device, or it names CUDA on a machine without it.
    """
    if isinstance(name, torch.device):
        dev = name
    elif name in (None, "", "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            dev = torch.device(name)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"unknown device '{name}': use cpu, cuda, cuda:N or auto") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available on this machine")
    return dev
