"""Read-out of a fit's jaw, head rotation and gaze for one avatar appearance (docs/ros.md "Face tracker").

The :class:`~rsatalker_core.tracking.response.LandmarkResponse` models how MediaPipe reads an
avatar's painted face, but not all of it: what it leaves biases the fit in ways that depend
on the view and on the expression (on the default avatar the fit reads about three quarters of
the jaw's opening, and its head rotation drifts by up to 3 degrees when the face is turned
35-40 degrees from the camera). A :class:`PoseReadout` corrects the fitted jaw opening, head
rotation and gaze by a linear map, learned from the fit's own estimates on renders of the
avatar with known motion (:func:`~rsatalker_core.tracking.response.calibrate_response`,
``readout_folds``):

    ``[dj, d_head, d_gaze] = readout_features(theta, f) @ W``

where ``theta`` is the fit's estimate, ``f`` the face's forward axis in camera coordinates and
:func:`readout_features` the products ``s(f) (x) b(theta)`` of the view terms
``s(f) = [1, f_x, f_y, f_x^2, f_y^2, f_x f_y]`` (as in the response's ``phi``) with
``b(theta) = [1, psi, j, head rotation, gaze]``: a correction whose dependence on the fit's
expression, jaw, pose and gaze changes smoothly with the view. ``W`` is a ridge regression of
the true minus the fitted values, on estimates that the fit makes *out of fold* (with a
response calibrated without the clips it tracks), so the read-out learns the bias the fit has
on renders it was not calibrated on. Expression coefficients are left as fitted: learned
read-outs of them did not carry over from the random calibration motion to the closed-loop
motions (docs/ros.md "Face tracker").

Like the response it describes one avatar: use it for renders of that avatar only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from rsatalker_core.config import EXP_SLICE, HEAD_SLICE, MOTION_DIM
from rsatalker_core.tracking.landmarks import TrackingError

__all__ = ["readout_features", "PoseReadout", "fit_readout", "N_VIEW", "N_CORRECTED", "GAZE_COLUMNS"]

#: View terms ``s(f)`` per feature block (module docstring).
N_VIEW = 6
#: Corrected values: jaw opening (FLAME jaw axis-angle x), head rotation (3), gaze pitch and
#: yaw of the left and the right eye (4); radians.
N_CORRECTED = 8
#: Columns of ``eye_pose [6]`` (left 3 | right 3, axis-angle) that hold pitch and yaw.
GAZE_COLUMNS = [0, 1, 3, 4]
_JAW_OPEN = 50


def _forward_axes(head: np.ndarray, camera_rotation: np.ndarray) -> np.ndarray:
    """``[B, 3]`` the face's forward axes in camera coordinates for head rotations
    ``head [B, 3]`` (axis-angle, radians) and camera rotations ``[3, 3]`` or ``[B, 3, 3]``."""
    import torch

    from rsatalker_core.head.flame import batch_rodrigues

    Rh = batch_rodrigues(torch.as_tensor(head, dtype=torch.float64)).numpy()  # [B, 3, 3]
    Rc = np.asarray(camera_rotation, dtype=np.float64)
    Rc = np.broadcast_to(Rc, (len(head), 3, 3)) if Rc.ndim == 2 else Rc
    return np.einsum("bij,bj->bi", Rc, Rh[:, :, 2])


def readout_features(motion: np.ndarray, eye_pose: np.ndarray, camera_rotation: np.ndarray, n_exp: int) -> np.ndarray:
    """``[B, 6 (n_exp + 9)]`` read-out features ``s(f) (x) b(theta)`` (module docstring).

    Args:
        motion: ``[B, 56]`` fitted ``[exp 50 | jaw 3 | head 3]`` (radians); the first ``n_exp``
            expression coefficients are used.
        eye_pose: ``[B, 6]`` fitted gaze, left | right eye axis-angle (radians).
        camera_rotation: ``[3, 3]`` or ``[B, 3, 3]`` world-to-camera rotation.
        n_exp: expression coefficients in the features.
    """
    m = np.asarray(motion, dtype=np.float64).reshape(-1, MOTION_DIM)
    g = np.asarray(eye_pose, dtype=np.float64).reshape(-1, 6)
    f = _forward_axes(m[:, HEAD_SLICE], camera_rotation)
    fx, fy = f[:, 0], f[:, 1]
    s = np.stack([np.ones_like(fx), fx, fy, fx * fx, fy * fy, fx * fy], 1)  # [B, 6]
    b = np.concatenate([np.ones((len(m), 1)), m[:, EXP_SLICE][:, : int(n_exp)], m[:, _JAW_OPEN : _JAW_OPEN + 1],
                        m[:, HEAD_SLICE], g[:, GAZE_COLUMNS]], 1)  # [B, n_exp + 9]
    return (s[:, :, None] * b[:, None, :]).reshape(len(m), -1)


@dataclass
class PoseReadout:
    """A linear correction of a fit's jaw opening, head rotation and gaze (module docstring).

    Attributes:
        weights: ``[6 (n_exp + 9), 8]`` radians per feature: the corrections of the jaw
            opening, the head rotation (axis-angle x, y, z) and the gaze (left pitch, yaw,
            right pitch, yaw).
        n_exp: expression coefficients in the features.
    """

    weights: np.ndarray
    n_exp: int

    def __post_init__(self):
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.n_exp = int(self.n_exp)
        if self.weights.shape != (N_VIEW * (self.n_exp + 9), N_CORRECTED) or not np.isfinite(self.weights).all():
            raise TrackingError(f"read-out weights must be finite [{N_VIEW * (self.n_exp + 9)}, {N_CORRECTED}] for "
                                f"n_exp {self.n_exp}, got {self.weights.shape}")

    def apply(self, motion: np.ndarray, eye_pose: np.ndarray, camera_rotation: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Corrected copies ``(motion [B, 56] or [56], eye_pose [B, 6] or [6])`` (float32) of
        fitted values, seen with ``camera_rotation [3, 3]`` or ``[B, 3, 3]``; expression
        coefficients and the jaw's other axes are kept."""
        m = np.array(motion, dtype=np.float32, copy=True)
        g = np.array(eye_pose, dtype=np.float32, copy=True)
        mm, gg = m.reshape(-1, MOTION_DIM), g.reshape(-1, 6)
        d = readout_features(mm, gg, camera_rotation, self.n_exp) @ self.weights  # [B, 8]
        mm[:, _JAW_OPEN] += d[:, 0]
        mm[:, HEAD_SLICE] += d[:, 1:4]
        gg[:, GAZE_COLUMNS] += d[:, 4:]
        return m, g


def fit_readout(
    est: np.ndarray,
    eye_est: np.ndarray,
    motion: np.ndarray,
    eye_pose: np.ndarray,
    camera_rotation: np.ndarray,
    n_exp: int,
    ridge: float = 1e-2,
) -> Tuple[PoseReadout, dict]:
    """Ridge regression of the true minus the fitted jaw opening, head rotation and gaze on
    :func:`readout_features` of the fitted values (module docstring).

    Args:
        est, eye_est: ``[N, 56]``, ``[N, 6]`` fitted values (rows with NaN are left out).
        motion, eye_pose: ``[N, 56]``, ``[N, 6]`` the true ones.
        camera_rotation: ``[N, 3, 3]`` each sample's world-to-camera rotation.
        n_exp: expression coefficients in the features.
        ridge: weight of the ridge on the features scaled to unit RMS, relative to the
            number of samples (the constant is not shrunk).

    Returns:
        ``(readout, {"samples", "jaw_rms_before", "jaw_rms_after", "head_rms_deg_before",
        "head_rms_deg_after"})``: the RMS of the jaw-opening (radians) and head-rotation
        (degrees) errors over the samples, without and with the read-out.

    Raises:
        TrackingError: fewer usable samples than features.
    """
    ok = np.isfinite(est).all(1) & np.isfinite(eye_est).all(1)
    e, ge, m, g = est[ok], eye_est[ok], np.asarray(motion)[ok], np.asarray(eye_pose)[ok]
    F = readout_features(e, ge, np.asarray(camera_rotation)[ok], n_exp)
    if len(F) < F.shape[1]:
        raise TrackingError(f"read-out: {len(F)} usable samples for {F.shape[1]} features")
    T = np.concatenate([m[:, _JAW_OPEN : _JAW_OPEN + 1] - e[:, _JAW_OPEN : _JAW_OPEN + 1],
                        m[:, HEAD_SLICE] - e[:, HEAD_SLICE], g[:, GAZE_COLUMNS] - ge[:, GAZE_COLUMNS]], 1)
    sc = np.sqrt((F**2).mean(0))
    sc[sc == 0] = 1.0
    A = F / sc
    reg = ridge * np.eye(A.shape[1])
    reg[0, 0] = 0.0
    W = np.linalg.solve(A.T @ A + len(A) * reg, A.T @ T) / sc[:, None]
    left = T - F @ W
    rms = lambda a: float(np.sqrt((a**2).mean()))
    info = {"samples": float(len(F)), "jaw_rms_before": rms(T[:, 0]), "jaw_rms_after": rms(left[:, 0]),
            "head_rms_deg_before": float(np.degrees(rms(T[:, 1:4]))),
            "head_rms_deg_after": float(np.degrees(rms(left[:, 1:4])))}
    return PoseReadout(W, n_exp), info

