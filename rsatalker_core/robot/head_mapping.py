"""FLAME frame -> named channels -> joint targets (the linear maps of the head driver).

A FLAME frame is the model's motion vector ``[56]`` = ``[expression 50 | jaw 3 | head 3]``
plus the eyes ``[6]`` (left then right), rotations as axis-angle vectors in radians in
FLAME's frames (right-handed, y up, z out of the face; docs/data.md §4; the message is
``msg/FlameParams.msg``).

Rotations become Euler angles, intrinsic Y-X-Z (``R = Ry(yaw) Rx(pitch) Rz(roll)``):
yaw about +y (up; positive turns the face, +z, towards +x), pitch about +x (positive
tilts the face down), roll about +z (out of the face). The channels:

==========================================  ===============================================
channel                                     value
==========================================  ===============================================
``head.yaw`` ``head.pitch`` ``head.roll``   global head rotation, radians
``jaw.pitch`` ``jaw.yaw`` ``jaw.roll``      jaw rotation, radians (``jaw.pitch`` > 0: open)
``eyes.yaw`` ``eyes.pitch``                 mean of both eyes' rotations, radians
``eye_left.yaw`` ... ``eye_right.pitch``    each eye, radians
``expression.K`` (K = 0 .. 49)              FLAME expression coefficient K (unitless)
==========================================  ===============================================

A joint's target is ``offset + sum(gain * channel)`` over its ``map``
(:class:`rsatalker_core.robot.head_config.JointConfig`).
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from rsatalker_core.config import EXP_DIM, EXP_SLICE, HEAD_SLICE, JAW_SLICE, MOTION_DIM
from rsatalker_core.errors import ConfigError

__all__ = ["ROTATION_CHANNELS", "CHANNEL_DOC", "check_channel", "rotvec_to_euler_yxz", "flame_channels",
           "LinearHeadMap"]

_ROTATIONS = {"head": HEAD_SLICE, "jaw": JAW_SLICE, "eye_left": slice(0, 3), "eye_right": slice(3, 6)}
_AXES = ("yaw", "pitch", "roll")
#: Every rotation channel name.
ROTATION_CHANNELS = tuple(f"{part}.{axis}" for part in ("head", "jaw", "eye_left", "eye_right", "eyes")
                          for axis in _AXES)
#: One line per channel family (for error messages).
CHANNEL_DOC = ("head.{yaw,pitch,roll}, jaw.{yaw,pitch,roll}, eyes.{yaw,pitch,roll}, "
               "eye_left.{...}, eye_right.{...}, expression.0 .. expression.49")


def check_channel(name: str, where: str = "") -> None:
    """Raise :class:`ConfigError` unless ``name`` is a known channel."""
    if name in ROTATION_CHANNELS:
        return
    if name.startswith("expression."):
        k = name.split(".", 1)[1]
        if k.isdigit() and 0 <= int(k) < EXP_DIM:
            return
    raise ConfigError(f"head driver: unknown channel '{name}' in '{where}' (channels: {CHANNEL_DOC})")


def rotvec_to_euler_yxz(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle ``[..., 3]`` (radians) -> intrinsic Y-X-Z Euler angles ``[..., 3]`` =
    ``(yaw, pitch, roll)``, radians; yaw and roll in (-pi, pi], pitch in [-pi/2, pi/2].

    Rodrigues' formula, then ``R = Ry(yaw) Rx(pitch) Rz(roll)`` decomposed:
    ``pitch = asin(-R[1, 2])``, ``yaw = atan2(R[0, 2], R[2, 2])``,
    ``roll = atan2(R[1, 0], R[1, 1])``.
    """
    v = np.asarray(rotvec, dtype=np.float64)
    theta = np.linalg.norm(v, axis=-1, keepdims=True)
    small = theta < 1e-12
    k = np.where(small, 0.0, v / np.where(small, 1.0, theta))
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    K = np.stack([np.stack([zero, -kz, ky], -1), np.stack([kz, zero, -kx], -1),
                  np.stack([-ky, kx, zero], -1)], -2)
    R = np.eye(3) + s * K + (1.0 - c) * (K @ K)
    pitch = np.arcsin(np.clip(-R[..., 1, 2], -1.0, 1.0))
    yaw = np.arctan2(R[..., 0, 2], R[..., 2, 2])
    roll = np.arctan2(R[..., 1, 0], R[..., 1, 1])
    return np.stack([yaw, pitch, roll], -1)


def flame_channels(motion: np.ndarray, eye_pose: np.ndarray) -> Dict[str, float]:
    """Named channels (module docstring) of one frame.

    Args:
        motion: ``[56]`` ``[exp 50 | jaw 3 | head 3]``, finite (radians for rotations).
        eye_pose: ``[6]`` left then right eye, axis-angle radians.

    Returns:
        channel name -> value.
    """
    out: Dict[str, float] = {}
    eyes = np.asarray(eye_pose, np.float64)
    for part, sl in _ROTATIONS.items():
        src = motion if part in ("head", "jaw") else eyes
        for axis, value in zip(_AXES, rotvec_to_euler_yxz(np.asarray(src[sl], np.float64))):
            out[f"{part}.{axis}"] = float(value)
    for axis in _AXES:
        out[f"eyes.{axis}"] = 0.5 * (out[f"eye_left.{axis}"] + out[f"eye_right.{axis}"])
    for k, value in enumerate(np.asarray(motion[EXP_SLICE], np.float64)):
        out[f"expression.{k}"] = float(value)
    return out


class LinearHeadMap:
    """Joint targets as affine maps of the channels: ``target = offset + G @ channels``.

    Args:
        joints: the joints (``name``, ``map``, ``offset``), in output order.

    Raises:
        ConfigError: a map names an unknown channel.
    """

    def __init__(self, joints: Sequence):
        self.names: List[str] = [j.name for j in joints]
        used = sorted({ch for j in joints for ch in j.map})
        for ch in used:
            check_channel(ch)
        self.channels = used
        self.gain = np.zeros((len(joints), len(used)), np.float64)
        for i, j in enumerate(joints):
            for ch, g in j.map.items():
                self.gain[i, used.index(ch)] = float(g)
        self.offset = np.array([float(j.offset) for j in joints], np.float64)

    def __call__(self, motion: np.ndarray, eye_pose: np.ndarray) -> np.ndarray:
        """Targets ``[J]`` (joint units) for one frame (``motion [56]``, ``eye_pose [6]``)."""
        assert motion.shape == (MOTION_DIM,) and eye_pose.shape == (6,)
        ch = flame_channels(motion, eye_pose)
        x = np.array([ch[c] for c in self.channels], np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            return self.offset + self.gain @ x
