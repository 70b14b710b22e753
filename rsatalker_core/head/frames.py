"""FLAME axes -> ROS REP 103 axes: the head pose and the render camera as ROS frames.

FLAME's frame (docs/assets.md §1): x to the avatar's left, y up, z out of the face (towards
the viewer). REP 103 body axes: x forward, y left, z up. So, with the same origin (the
FLAME model origin, which the ``avatar_base`` frame of docs/ros.md "Frames" is),

    x_rep = z_flame,  y_rep = x_flame,  z_rep = y_flame,  i.e.  v_rep = FLAME_TO_REP103 @ v_flame

a proper rotation (a cyclic permutation, determinant +1), so an axis-angle vector converts
like a vector: ``aa_rep = FLAME_TO_REP103 @ aa_flame`` and ``R_rep = M R_flame M^T``.
Signs that follow: a nod down (positive rotation about FLAME x, the face turning towards
-y) is a positive pitch about REP-103 y; a turn to the avatar's left (positive about FLAME
y) is a positive yaw about REP-103 z.

The render camera (:mod:`rsatalker_core.render.camera`) uses OpenCV axes, which are REP 103's
*optical* axes (z forward, x right, y down), so its optical frame is the camera-to-world
rotation carried into REP-103 base axes.

Quaternions are ``(x, y, z, w)``, the order of ``geometry_msgs/Quaternion``. Everything is
numpy float64 and ROS-free.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from rsatalker_core.errors import RsatalkerError

__all__ = [
    "FLAME_TO_REP103",
    "FrameError",
    "flame_vector_to_rep103",
    "axis_angle_to_matrix",
    "axis_angle_to_quaternion",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "head_rotation_rep103",
    "head_transform_rep103",
    "camera_optical_transform_rep103",
]

#: ``v_rep103 = FLAME_TO_REP103 @ v_flame`` (rows: REP-103 x, y, z in FLAME coordinates).
FLAME_TO_REP103 = np.array([[0.0, 0.0, 1.0],
                            [1.0, 0.0, 0.0],
                            [0.0, 1.0, 0.0]])


class FrameError(RsatalkerError, ValueError):
    """A pose, rotation or camera matrix that cannot be converted (shape, NaN/Inf, not a rotation)."""


def _vec3(v, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (3,):
        raise FrameError(f"{name} must have shape [3], got {a.shape}")
    if not np.isfinite(a).all():
        raise FrameError(f"{name} holds NaN/Inf: {a.tolist()}")
    return a


def flame_vector_to_rep103(v: Sequence[float]) -> np.ndarray:
    """A ``[3]`` FLAME-axes vector (a point in metres, or an axis-angle in radians) -> REP 103.

    Raises:
        FrameError: not ``[3]`` or not finite.
    """
    return FLAME_TO_REP103 @ _vec3(v, "vector")


def axis_angle_to_matrix(aa: Sequence[float]) -> np.ndarray:
    """Rodrigues: axis-angle ``[3]`` (radians, axis * angle) -> rotation ``[3, 3]``.

    Raises:
        FrameError: not ``[3]`` or not finite.
    """
    a = _vec3(aa, "axis-angle")
    theta = float(np.linalg.norm(a))
    if theta < 1e-12:
        return np.eye(3)
    k = a / theta
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(theta) * K + (1.0 - np.cos(theta)) * (K @ K)


def axis_angle_to_quaternion(aa: Sequence[float]) -> np.ndarray:
    """Axis-angle ``[3]`` (radians) -> unit quaternion ``[4]`` ``(x, y, z, w)`` with ``w >= 0``.

    Raises:
        FrameError: not ``[3]`` or not finite.
    """
    a = _vec3(aa, "axis-angle")
    theta = float(np.linalg.norm(a))
    if theta < 1e-12:
        q = np.array([0.5 * a[0], 0.5 * a[1], 0.5 * a[2], 1.0])
    else:
        q = np.concatenate([np.sin(0.5 * theta) * a / theta, [np.cos(0.5 * theta)]])
    q = q / np.linalg.norm(q)
    return q if q[3] >= 0 else -q


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation ``[3, 3]`` -> unit quaternion ``[4]`` ``(x, y, z, w)``, ``w >= 0``
    (Shepperd's method: the largest of the four squared components first).

    Raises:
        FrameError: not ``[3, 3]``, not finite, or not a rotation (``R R^T != I`` or det != +1,
            tolerance 1e-6).
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3) or not np.isfinite(R).all():
        raise FrameError(f"rotation must be a finite [3, 3] matrix, got shape {R.shape}")
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or abs(np.linalg.det(R) - 1.0) > 1e-6:
        raise FrameError("matrix is not a rotation (R R^T != I or det(R) != 1)")
    tr = np.trace(R)
    cands = [tr, R[0, 0], R[1, 1], R[2, 2]]
    i = int(np.argmax(cands))
    if i == 0:
        s = 2.0 * np.sqrt(1.0 + tr)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif i == 1:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif i == 2:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.asarray(q)
    q = q / np.linalg.norm(q)
    return q if q[3] >= 0 else -q


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Quaternion ``(x, y, z, w)`` (normalised here) -> rotation ``[3, 3]``.

    Raises:
        FrameError: not ``[4]``, not finite, or zero.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (4,) or not np.isfinite(q).all() or np.linalg.norm(q) < 1e-12:
        raise FrameError(f"quaternion must be a finite, non-zero [4] (x, y, z, w), got {q.tolist()}")
    x, y, z, w = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def head_rotation_rep103(head_pose: Sequence[float]) -> np.ndarray:
    """FLAME head pose (global rotation, axis-angle ``[3]`` radians, motion ``[53:56]``) ->
    REP-103 quaternion ``[4]`` ``(x, y, z, w)`` of the head frame in the base frame.

    Raises:
        FrameError: not ``[3]`` or not finite.
    """
    return axis_angle_to_quaternion(flame_vector_to_rep103(head_pose))


def head_transform_rep103(
    head_pose: Sequence[float], pivot_flame: Optional[Sequence[float]] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """The head frame in the base frame: ``(translation [3] metres, quaternion [4] (x, y, z, w))``.

    FLAME rotates the head about its root joint (``pivot_flame``, FLAME axes, metres; the
    origin when omitted), so the head frame sits at the pivot, rotated by the head pose.

    Raises:
        FrameError: a pose or pivot that is not a finite ``[3]``.
    """
    pivot = np.zeros(3) if pivot_flame is None else _vec3(pivot_flame, "pivot")
    return FLAME_TO_REP103 @ pivot, head_rotation_rep103(head_pose)


def camera_optical_transform_rep103(viewmat: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """A render camera's optical frame in the base frame (REP-103 axes, FLAME origin).

    Args:
        viewmat: ``[4, 4]`` world-to-camera in OpenCV axes (x right, y down, z forward), as
            :func:`rsatalker_core.render.camera.look_at` builds it; world = FLAME axes.

    Returns:
        ``(translation [3] metres, quaternion [4] (x, y, z, w))``: the camera position and the
        rotation taking optical-frame vectors to base-frame vectors.

    Raises:
        FrameError: not a finite ``[4, 4]`` rigid transform.
    """
    V = np.asarray(viewmat, dtype=np.float64)
    if V.shape != (4, 4) or not np.isfinite(V).all():
        raise FrameError(f"viewmat must be a finite [4, 4] matrix, got shape {V.shape}")
    R, t = V[:3, :3], V[:3, 3]
    eye = -R.T @ t  # camera centre in FLAME axes
    return FLAME_TO_REP103 @ eye, matrix_to_quaternion(FLAME_TO_REP103 @ R.T)
