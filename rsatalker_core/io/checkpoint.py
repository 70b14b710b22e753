"""Checkpoint files: atomic writes and validated loads.

Every checkpoint is a ``torch.save`` dict with a ``format`` tag and a ``version``; loads
check both and raise :class:`CheckpointError` naming the file on any mismatch, so a
truncated or foreign file never half-loads into a model.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

import torch

from rsatalker_core.errors import CheckpointError


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path.tmp`` then rename: an interrupted write loses nothing."""
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(
    path: str,
    expected_format: str,
    map_location: Optional[Union[str, torch.device]] = "cpu",
    required_keys: tuple = ("state_dict",),
) -> Dict[str, Any]:
    """Load and validate a checkpoint dict.

    Raises:
        CheckpointError: missing file, unreadable/corrupt file, wrong ``format`` tag or
        missing keys.
    """
    if not path or not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        data = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or data.get("format") != expected_format:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: expected a '{expected_format}' checkpoint, got '{got}'")
    missing = [k for k in required_keys if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return data
