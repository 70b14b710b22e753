"""Reading and writing FLAME motion in the DualTalk npz layout (docs/data.md §3).

DualTalk npz: ``exp (T, 50)`` FLAME expression, ``pose (T, 6)`` = ``[head axis-angle 3 |
jaw axis-angle 3]`` in radians, at 25 fps, float32 (plus ``shape``, ``tex``, ``cam``,
``light`` that the motion model does not use). The model's 56-D target orders the same
numbers ``[exp 0:50 | jaw 50:53 | head 53:56]``.
"""

from __future__ import annotations

import os
import zipfile
from typing import Dict, Optional

import numpy as np

from rsatalker_core.config import EXP_DIM, EXP_SLICE, HEAD_SLICE, JAW_SLICE, MOTION_DIM
from rsatalker_core.errors import MotionFileError

REQUIRED_KEYS = ("exp", "pose")


def dualtalk_to_motion(exp: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """``exp [T, >=50]``, ``pose [T, 6]`` -> motion ``[T, 56]`` ``[exp | jaw | head]``."""
    T = min(len(exp), len(pose))
    out = np.zeros((T, MOTION_DIM), dtype=np.float32)
    out[:, EXP_SLICE] = exp[:T, :EXP_DIM]
    out[:, JAW_SLICE] = pose[:T, 3:6]
    out[:, HEAD_SLICE] = pose[:T, 0:3]
    return out


def motion_to_dualtalk(motion: np.ndarray) -> Dict[str, np.ndarray]:
    """motion ``[T, 56]`` -> ``{"exp": [T, 50], "pose": [T, 6]}`` (pose = ``[head | jaw]``)."""
    motion = np.asarray(motion, dtype=np.float32)
    if motion.ndim != 2 or motion.shape[1] != MOTION_DIM:
        raise ValueError(f"motion must be [T, 56], got {motion.shape}")
    pose = np.concatenate([motion[:, HEAD_SLICE], motion[:, JAW_SLICE]], axis=1)
    return {"exp": np.ascontiguousarray(motion[:, EXP_SLICE]), "pose": pose.astype(np.float32)}


def load_motion_npz(path: str) -> np.ndarray:
    """Load a DualTalk npz as motion ``[T, 56]`` float32 at 25 fps.

    Raises:
        MotionFileError: missing file, not an npz, missing ``exp``/``pose``, wrong shapes,
        mismatched lengths or non-finite values; the message names the file.
    """
    if not os.path.isfile(path):
        raise MotionFileError(f"{path}: no such motion file")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in REQUIRED_KEYS if k not in data.files]
            if missing:
                raise MotionFileError(
                    f"{path}: npz lacks key(s) {', '.join(missing)} (has: {', '.join(data.files) or 'none'})"
                )
            exp = np.asarray(data["exp"], dtype=np.float32)
            pose = np.asarray(data["pose"], dtype=np.float32)
    except MotionFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise MotionFileError(f"{path}: not a readable npz ({exc})") from exc
    if exp.ndim != 2 or exp.shape[1] < EXP_DIM:
        raise MotionFileError(f"{path}: 'exp' must be (T, >=50), got {exp.shape}")
    if pose.ndim != 2 or pose.shape[1] != 6:
        raise MotionFileError(f"{path}: 'pose' must be (T, 6), got {pose.shape}")
    if len(exp) != len(pose):
        raise MotionFileError(f"{path}: 'exp' has {len(exp)} frames but 'pose' has {len(pose)}")
    if len(exp) == 0:
        raise MotionFileError(f"{path}: motion has no frames")
    motion = dualtalk_to_motion(exp, pose)
    if not np.isfinite(motion).all():
        raise MotionFileError(f"{path}: motion holds NaN or Inf values")
    return motion


def save_motion_npz(path: str, motion: np.ndarray, extra: Optional[Dict[str, np.ndarray]] = None) -> None:
    """Write motion ``[T, 56]`` as a DualTalk npz (``exp (T, 50)``, ``pose (T, 6)``, float32).

    The file is written to a temporary name and renamed, so a crash never leaves half a file.
    """
    arrays = motion_to_dualtalk(motion)
    arrays.update(extra or {})
    tmp = f"{path}.tmp.npz"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
