"""Read-outs of the tracked motion for one avatar appearance (docs/ros.md "Face tracker").

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
on renders it was not calibrated on.

The expression is read differently. Seen 35-40 degrees from the side, MediaPipe's landmarks
move with a smile by about as much as its own errors, and the fit spreads the smile and the
brows over other coefficients; corrections of the fitted coefficients did not carry over from
the calibration's random expressions. An :class:`ExpressionReadout` instead reads the
expression coefficients straight from MediaPipe's landmarks, a discriminative linear model
like the landmark regressors of face trackers:

    ``psi = ([a, a f_x, a f_y, s(f)] / scale) @ W + psi_0``

with ``a`` the ``[478 x 3]`` landmarks similarity-aligned (rotation, scale, translation;
Procrustes on :data:`STABLE_LANDMARKS`, which hardly move with the expression) to a template
and flattened, minus their mean, and ``f`` the template's forward axis in the image frame
from that alignment. ``W`` is a ridge regression of the true expression coefficients on
these features over all calibration renders (it does not use the fit, so no folds are
needed). It replaces the fitted expression; the fit's own coefficients still drive its warm
start and the pose read-out.

Like the response they describe one avatar: use them for renders of that avatar only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from rsatalker_core.config import EXP_SLICE, HEAD_SLICE, MOTION_DIM
from rsatalker_core.tracking.landmarks import TrackingError

__all__ = ["view_terms", "readout_features", "PoseReadout", "fit_readout", "N_VIEW", "N_CORRECTED", "GAZE_COLUMNS",
           "STABLE_LANDMARKS", "align_landmarks", "ExpressionReadout", "fit_expression_readout"]

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


def view_terms(f: np.ndarray) -> np.ndarray:
    """``[B, 6]`` view terms ``s(f) = [1, f_x, f_y, f_x^2, f_y^2, f_x f_y]`` of forward axes
    ``f [B, >=2]`` (the face's, in the camera or image frame; module docstring)."""
    fx, fy = f[:, 0], f[:, 1]
    return np.stack([np.ones_like(fx), fx, fy, fx * fx, fy * fy, fx * fy], 1)


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
    s = view_terms(_forward_axes(m[:, HEAD_SLICE], camera_rotation))  # [B, 6]
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


#: MediaPipe FaceMesh landmarks that hardly move with the expression (forehead, nose bridge
#: and tip, eye corners, temples, upper brow roots): the :func:`align_landmarks` basis.
STABLE_LANDMARKS = [10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 33, 133, 362, 263, 234, 454, 127, 356, 70, 300, 107, 336]


def _centred(points: np.ndarray) -> np.ndarray:
    """``[B, 478, 3]`` landmarks moved and scaled so that :data:`STABLE_LANDMARKS` have zero
    mean and unit RMS distance from it."""
    x = points - points[:, STABLE_LANDMARKS].mean(1, keepdims=True)
    return x / np.sqrt((x[:, STABLE_LANDMARKS] ** 2).sum(2).mean(1))[:, None, None]


def align_landmarks(points: np.ndarray, template: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Similarity-align MediaPipe landmarks to a template (Procrustes on :data:`STABLE_LANDMARKS`).

    Args:
        points: ``[B, 478, 3]`` x, y (pixels) and relative depth (pixels).
        template: ``[478, 3]`` landmarks in the aligned frame (centred and unit-scaled as
            the result).

    Returns:
        ``(aligned [B, 478, 3], rotations [B, 3, 3])``: ``aligned = centred(points) @ R``.
    """
    x = _centred(np.asarray(points, dtype=np.float64))
    u, _, vt = np.linalg.svd(np.einsum("bli,lj->bij", x[:, STABLE_LANDMARKS], template[STABLE_LANDMARKS]))
    d = np.ones((len(x), 3))
    d[:, 2] = np.sign(np.linalg.det(u @ vt))  # a rotation, not a reflection
    R = np.einsum("bij,bj,bjk->bik", u, d, vt)
    return np.einsum("bli,bij->blj", x, R), R


def _expression_features(aligned: np.ndarray, R: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``[B, 3 * 1434 + 6]`` features ``[a, a f_x, a f_y, s(f)]`` (module docstring)."""
    a = aligned.reshape(len(aligned), -1) - mean
    s = view_terms(R[:, :, 2])  # the template's forward axis in the image frame
    return np.concatenate([a, a * s[:, 1:2], a * s[:, 2:3], s], 1)


@dataclass
class ExpressionReadout:
    """Expression coefficients read from aligned MediaPipe landmarks (module docstring).

    Attributes:
        template: ``[478, 3]`` the alignment's template.
        mean: ``[1434]`` the aligned landmarks' mean over the calibration.
        scale: ``[4308]`` each feature's standard deviation over the calibration.
        weights: ``[4308, E]`` coefficients per scaled feature.
        offset: ``[E]`` the calibration's mean expression.
    """

    template: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    offset: np.ndarray

    def __post_init__(self):
        self.template = np.asarray(self.template, dtype=np.float64)
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        self.scale = np.asarray(self.scale, dtype=np.float64).reshape(-1)
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.offset = np.asarray(self.offset, dtype=np.float64).reshape(-1)
        n = 3 * self.template.size + N_VIEW
        ok = (self.template.shape == (478, 3) and self.mean.shape == (self.template.size,)
              and self.scale.shape == (n,) and (self.scale > 0).all() and self.weights.ndim == 2
              and self.weights.shape[0] == n and self.offset.shape == (self.weights.shape[1],)
              and all(np.isfinite(a).all() for a in (self.template, self.mean, self.scale, self.weights, self.offset)))
        if not ok:
            raise TrackingError(f"expression read-out: need finite template [478, 3], mean [1434], positive scale "
                                f"[{n}], weights [{n}, E] and offset [E]; got {self.template.shape}, "
                                f"{self.mean.shape}, {self.scale.shape}, {self.weights.shape}, {self.offset.shape}")

    @property
    def n_exp(self) -> int:
        """Expression coefficients it reads."""
        return int(self.weights.shape[1])

    def predict(self, points: np.ndarray) -> np.ndarray:
        """``[B, E]`` expression coefficients of landmarks ``points [B, 478, 3]`` (pixels, with
        MediaPipe's relative depth) or ``[E]`` for one ``[478, 3]`` frame."""
        p = np.asarray(points, dtype=np.float64)
        one = p.ndim == 2
        aligned, R = align_landmarks(p[None] if one else p, self.template)
        out = (_expression_features(aligned, R, self.mean) / self.scale) @ self.weights + self.offset
        return out[0] if one else out


def fit_expression_readout(
    points: np.ndarray, expression: np.ndarray, ridge: float = 1e-5, chunk: int = 2000
) -> Tuple[ExpressionReadout, dict]:
    """Ridge regression of expression coefficients on aligned landmarks (module docstring).

    Args:
        points: ``[N, 478, 3]`` MediaPipe landmarks of renders with known expression.
        expression: ``[N, E]`` their true expression coefficients.
        ridge: ridge weight on the unit-scaled features, relative to ``N``.
        chunk: samples per block of the normal equations (bounds the memory).

    Returns:
        ``(readout, {"samples", "r_min", "r_median"})``: the in-sample correlation of the read
        coefficients with the truth (smallest and median over the coefficients).

    Raises:
        TrackingError: points not ``[N, 478, 3]``, or fewer samples than 100.
    """
    pts = np.asarray(points, dtype=np.float64)
    y = np.asarray(expression, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (478, 3) or len(y) != len(pts) or len(pts) < 100:
        raise TrackingError(f"expression read-out: need points [N >= 100, 478, 3] and expression [N, E], got "
                            f"{pts.shape} and {y.shape}")

    def blocks(template):  # the aligned landmarks, a chunk at a time
        for i in range(0, len(pts), chunk):
            yield i, align_landmarks(pts[i : i + chunk], template)

    template = _centred(pts[:1])[0]
    for _ in range(2):  # the mean aligned shape, from the first frame's
        template = _centred((sum(a.sum(0) for _, (a, _) in blocks(template)) / len(pts))[None])[0]
    mean = sum(a.reshape(len(a), -1).sum(0) for _, (a, _) in blocks(template)) / len(pts)
    n = 3 * template.size + N_VIEW
    scale = np.sqrt(sum((_expression_features(a, R, mean) ** 2).sum(0) for _, (a, R) in blocks(template)) / len(pts))
    scale[scale == 0] = 1.0
    FtF, Fty, y0 = np.zeros((n, n)), np.zeros((n, y.shape[1])), y.mean(0)
    for i, (a, R) in blocks(template):
        F = _expression_features(a, R, mean) / scale
        FtF += F.T @ F
        Fty += F.T @ (y[i : i + chunk] - y0)
    W = np.linalg.solve(FtF + ridge * len(pts) * np.eye(n), Fty)
    readout = ExpressionReadout(template, mean, scale, W, y0)
    pred = np.concatenate([readout.predict(pts[i : i + chunk]) for i in range(0, len(pts), chunk)])
    r = [np.corrcoef(pred[:, k], y[:, k])[0, 1] for k in range(y.shape[1]) if y[:, k].std() > 0]
    return readout, {"samples": float(len(pts)), "r_min": float(np.min(r)), "r_median": float(np.median(r))}
