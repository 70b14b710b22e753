"""Device selection. The CPU and CUDA paths share one interface; the device is chosen by
configuration, never assumed, and checked against what this torch build and machine have."""

from __future__ import annotations

from typing import List, Optional, Union

import torch

from rsatalker_core.errors import ConfigError

#: Device types the models run on (other torch device types, e.g. ``meta``, hold no data).
SUPPORTED_TYPES = ("cpu", "cuda", "mps", "xpu")


def available_devices() -> List[str]:
    """Names of the devices usable here: ``["cpu", "cuda:0", ..., "mps", "xpu:0", ...]``."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        out += [f"xpu:{i}" for i in range(xpu.device_count())]
    return out


def resolve_device(name: Optional[Union[str, torch.device]] = None) -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"xpu"``, ``"auto"`` or ``None``
    into a device that exists on this machine.

    ``"auto"`` / ``None`` picks CUDA when available, else CPU.

    Raises:
        ConfigError: the name is not a device, names a device type the models cannot run on
            (e.g. ``meta``), names a backend this machine lacks (``cuda`` without CUDA,
            ``mps``, ``xpu``) or an index past the device count; the message lists the
            available devices.
    """
    if isinstance(name, torch.device):
        dev = name
    elif name in (None, "", "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    else:
        try:
            dev = torch.device(str(name).strip())
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"unknown device '{name}': use auto or one of {', '.join(available_devices())}"
            ) from exc
    avail = available_devices()
    if dev.type not in SUPPORTED_TYPES:
        raise ConfigError(f"device '{name}' cannot run the models; available: {', '.join(avail)}")
    if dev.type == "cpu":
        return dev
    if not any(a.split(":")[0] == dev.type for a in avail):
        raise ConfigError(
            f"device '{name}' requested but {dev.type.upper()} is not available on this machine; "
            f"available: {', '.join(avail)}"
        )
    if dev.index is not None and dev.type != "mps" and f"{dev.type}:{dev.index}" not in avail:
        raise ConfigError(f"device '{name}': no such {dev.type} device; available: {', '.join(avail)}")
    return dev
