"""Reading and writing FLAME motion in the DualTalk npz layout (docs/data.md §3).

DualTalk npz: ``exp (T, 50)`` FLAME expression, ``pose (T, 6)`` = ``[head axis-angle 3 |
jaw axis-angle 3]`` in radians, at 25 fps, float32 (plus ``shape``, ``tex``, ``cam``,
``light`` that the motion model does not use). The model's 56-D target orders the same
numbers ``[exp 0:50 | jaw 50:53 | head 53:56]``.

Physical ranges (:func:`check_motion_ranges`, defined once here and used by npz loading, the
streaming generator's inputs and outputs, and the ROS message conversions): every value
finite, each head and jaw axis-angle component within ``±MAX_ROTATION_RAD`` (pi radians),
each expression coefficient within ``±MAX_EXPRESSION`` (100; FLAME's coefficients are in
units of the PCA standard deviation, real tracks stay within about ±5). Values outside them
are not a face but a broken source (a wrong unit, a scale factor) and turn the model's
output into NaN.
"""

from __future__ import annotations

import os
import zipfile
import tempfile
from typing import Dict, Optional

import numpy as np

from rsatalker_core.config import EXP_DIM, EXP_SLICE, HEAD_SLICE, JAW_SLICE, MOTION_DIM
from rsatalker_core.errors import MotionFileError

REQUIRED_KEYS = ("exp", "pose")

#: Largest accepted |component| of a head or jaw axis-angle rotation, radians.
MAX_ROTATION_RAD: float = float(np.pi)
#: Largest accepted |FLAME expression coefficient| (units of the PCA standard deviation).
MAX_EXPRESSION: float = 100.0


def motion_range_problem(motion: np.ndarray) -> Optional[str]:
    """What is wrong with motion ``[..., 56]`` ``[exp | jaw | head]``, or ``None`` if nothing.

    Checks: finite values, ``|exp| <= MAX_EXPRESSION`` (100), ``|jaw|, |head| <=
    MAX_ROTATION_RAD`` (pi rad) per axis-angle component.
    """
    m = np.asarray(motion)
    if m.size == 0:
        return None
    finite = np.isfinite(m)
    if not finite.all():
        return f"holds {int((~finite).sum())} NaN/Inf values"
    exp = np.abs(m[..., EXP_SLICE])
    if exp.max() > MAX_EXPRESSION:
        return (f"has expression coefficients beyond ±{MAX_EXPRESSION:g} (largest |value| "
                f"{float(exp.max()):.3g})")
    rot = np.abs(np.concatenate([m[..., JAW_SLICE], m[..., HEAD_SLICE]], axis=-1))
    if rot.max() > MAX_ROTATION_RAD:
        return (f"has head/jaw rotations beyond ±pi rad (largest |value| {float(rot.max()):.3g}; "
                "degrees instead of radians?)")
    return None


def check_motion_ranges(motion: np.ndarray, what: str = "motion", error: type = MotionFileError) -> np.ndarray:
    """Raise ``error`` naming ``what`` unless motion ``[..., 56]`` is finite and within the
    physical ranges (:func:`motion_range_problem`); returns ``motion`` unchanged.

    Raises:
        MotionFileError (or ``error``): NaN/Inf, |expression| > 100, |rotation| > pi rad.
    """
    problem = motion_range_problem(motion)
    if problem is not None:
        raise error(f"{what} {problem}")
    return motion


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
        mismatched lengths, non-finite values or values outside the physical ranges
        (:func:`check_motion_ranges`); the message names the file.
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
    return check_motion_ranges(motion, f"{path}: motion")


def save_motion_npz(path: str, motion: np.ndarray, extra: Optional[Dict[str, np.ndarray]] = None) -> None:
    """Write motion ``[T, 56]`` as a DualTalk npz (``exp (T, 50)``, ``pose (T, 6)``, float32).

    The file is written to a hidden temporary name in the same directory and renamed, so a
    crash never leaves half a file; on any failure the temporary is removed.

    Raises:
        MotionFileError: the motion is non-finite or outside the physical ranges
            (:func:`check_motion_ranges`): such motion is never written.
        ValueError: ``motion`` is not ``[T, 56]``.
        OSError: the file cannot be written.
    """
    arrays = motion_to_dualtalk(motion)
    check_motion_ranges(np.asarray(motion), f"motion to write to {path}")
    arrays.update(extra or {})
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp.npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
