"""How MediaPipe reads one appearance of a head model (docs/ros.md "Face tracker").

The landmark embedding (:mod:`.embedding`) says where each MediaPipe landmark lies on the
mesh of a *real-looking* face. An avatar's painted surface is read differently: on the
default avatar MediaPipe follows the lower lip but hardly the chin when the jaw opens, keeps
the open mouth rounder than the mesh, and slides its landmarks with the expression and with
the angle it sees the face from. A :class:`LandmarkResponse` models that for one
appearance: per landmark ``i`` a rest-frame offset of its mesh point (metres),

    ``delta_i = static_i @ s(j, f) + (exp_i + j * jaw_exp_i) @ psi``

with ``j`` the jaw's opening angle (FLAME jaw axis-angle x, radians), ``psi`` the
expression coefficients, ``f`` the face's forward axis in camera coordinates and
``s(j, f)`` the :func:`static_features` ``[1, j, j^2, phi(f), j phi(f)]``,
``phi(f) = [f_x, f_y, f_x^2, f_y^2, f_x f_y]`` (how far the face is turned from the camera).
:class:`~rsatalker_core.tracking.fit.LandmarkFitter` adds it to the landmark points before
skinning, so the fit stays in the head model's parameter space.

What the response leaves is not independent per landmark: MediaPipe slides whole contours
together. The response also keeps the principal directions of that residual (``noise``),
along which the fit solves for latent coefficients with a Gaussian prior (factor analysis;
:class:`LandmarkResponse`), so such a slide is not read as jaw or expression.

:func:`calibrate_response` measures it from renders of the avatar with known random motion
and camera views (ridge regression of the landmark offsets on the features). It describes
the *avatar's* appearance: use it to track videos of the avatar (the closed-loop test,
re-tracking rendered videos), never for real people, whom the plain embedding serves.
It can also learn the response's read-outs (:mod:`~rsatalker_core.tracking.readout`): a
:class:`~rsatalker_core.tracking.readout.PoseReadout` that corrects the fitted jaw, head
rotation and gaze for the bias the fit keeps on that avatar (``readout_folds``), and an
:class:`~rsatalker_core.tracking.readout.ExpressionReadout` that reads the expression
straight from the landmarks (``expression_readout``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from rsatalker_core.tracking.landmarks import NUM_LANDMARKS, TrackingError
from rsatalker_core.tracking.readout import ExpressionReadout, PoseReadout, fit_expression_readout, fit_readout

#: Number of static features (:func:`static_features`).
N_STATIC = 13

__all__ = ["static_features", "LandmarkResponse", "calibrate_response", "load_response", "save_response",
           "AVATAR_RESPONSE_ASSET", "N_STATIC"]

#: The default avatar's response, under ``rsatalker_core/assets/``
#: (``scripts/build_standin_landmark_embedding.py`` writes it).
AVATAR_RESPONSE_ASSET = "standin_avatar_landmark_response.npz"
#: Fields of an :class:`~rsatalker_core.tracking.readout.ExpressionReadout` in a response file.
_EXPRESSION_KEYS = ("template", "mean", "scale", "weights", "offset")


def static_features(j, f):
    """``[B, 13]`` features ``[1, j, j^2, phi(f), j phi(f)]`` (module docstring) of jaw
    openings ``j [B]`` (radians) and forward axes ``f [B, 3]`` (unit, camera coordinates,
    OpenCV axes: ``(0, 0, -1)`` faces the camera). numpy arrays or torch tensors."""
    if isinstance(j, np.ndarray):
        st, one = np.stack, np.ones_like(j)
    else:
        import torch

        st, one = torch.stack, torch.ones_like(j)
    fx, fy = f[:, 0], f[:, 1]
    phi = [fx, fy, fx * fx, fy * fy, fx * fy]
    return st([one, j, j * j] + phi + [j * p for p in phi], 1)


@dataclass
class LandmarkResponse:
    """Rest-frame landmark offsets of one appearance (module docstring).

    Attributes:
        landmark_indices: ``[L]`` int64 MediaPipe landmark ids.
        static: ``[13, L, 3]`` metres per static feature (:func:`static_features`).
        exp: ``[L, 3, E]`` metres per expression coefficient.
        jaw_exp: ``[L, 3, E]`` metres per expression coefficient and radian of jaw opening.
        noise: ``[L, 3, K]`` metres: the principal directions of what the response leaves
            unexplained, each scaled by its standard deviation (``K = 0``: none). MediaPipe's
            errors on one image are strongly correlated across landmarks (a whole lip contour
            slides together); :class:`~rsatalker_core.tracking.fit.LandmarkFitter` fits
            ``K`` latent coefficients ``z ~ N(0, I)`` along them, a factor-analysis noise
            model, so that such slides are not read as expression.
        noise_floor: metres, the RMS left after the ``K`` directions (the isotropic part).
        source: where it came from.
        pose_readout: the :class:`~rsatalker_core.tracking.readout.PoseReadout` learned with
            this response and the fit's default settings (None: the fit's jaw, head rotation
            and gaze are kept).
        expression_readout: the :class:`~rsatalker_core.tracking.readout.ExpressionReadout`
            of this appearance (None: the fit's expression is kept).
            :class:`~rsatalker_core.tracking.fit.LandmarkFitter` applies both to each result.
    """

    landmark_indices: np.ndarray
    static: np.ndarray
    exp: np.ndarray
    jaw_exp: np.ndarray
    noise: Optional[np.ndarray] = None
    noise_floor: float = 0.0
    source: str = ""
    pose_readout: Optional[PoseReadout] = None
    expression_readout: Optional[ExpressionReadout] = None

    def __post_init__(self):
        self.landmark_indices = np.asarray(self.landmark_indices, dtype=np.int64).reshape(-1)
        self.static = np.asarray(self.static, dtype=np.float32)
        self.exp = np.asarray(self.exp, dtype=np.float32)
        self.jaw_exp = np.asarray(self.jaw_exp, dtype=np.float32)
        L = len(self.landmark_indices)
        self.noise = np.zeros((L, 3, 0), np.float32) if self.noise is None else np.asarray(self.noise, dtype=np.float32)
        self.noise_floor = float(self.noise_floor)
        ok = (
            L > 0 and self.static.shape == (N_STATIC, L, 3)
            and self.exp.ndim == 3 and self.exp.shape[:2] == (L, 3) and self.jaw_exp.shape == self.exp.shape
            and self.landmark_indices.min() >= 0 and self.landmark_indices.max() < NUM_LANDMARKS
            and self.noise.ndim == 3 and self.noise.shape[:2] == (L, 3)
            and all(np.isfinite(a).all() for a in (self.static, self.exp, self.jaw_exp, self.noise))
            and (self.noise.shape[2] == 0 or (np.isfinite(self.noise_floor) and self.noise_floor > 0))
        )
        if not ok:
            raise TrackingError(
                f"landmark response {self.source!r}: need ids [L] in 0..{NUM_LANDMARKS - 1} and finite "
                f"static [{N_STATIC}, L, 3], exp and jaw_exp [L, 3, E], noise [L, 3, K] with a positive "
                f"noise_floor; got {self.landmark_indices.shape}, {self.static.shape}, {self.exp.shape}, "
                f"{self.jaw_exp.shape}, {self.noise.shape}, {self.noise_floor}"
            )

    def without_noise(self) -> "LandmarkResponse":
        """The same response without its noise directions (``K = 0``) and without the
        read-outs (learned for the fit with them)."""
        return LandmarkResponse(self.landmark_indices, self.static, self.exp, self.jaw_exp, source=self.source)

    def without_readout(self) -> "LandmarkResponse":
        """The same response without its read-outs (the fit's values kept)."""
        return LandmarkResponse(self.landmark_indices, self.static, self.exp, self.jaw_exp, noise=self.noise,
                                noise_floor=self.noise_floor, source=self.source)

    def aligned(self, landmark_indices: np.ndarray, n_exp: int) -> Tuple[np.ndarray, ...]:
        """``(static [13, L, 3], exp [L, 3, n_exp], jaw_exp [L, 3, n_exp], noise [L, 3, K])``
        for an embedding's landmark ids (zeros for landmarks or expression coefficients the
        response lacks)."""
        ids = np.asarray(landmark_indices).reshape(-1)
        row = {int(k): i for i, k in enumerate(self.landmark_indices)}
        static = np.zeros((N_STATIC, len(ids), 3))
        exp = np.zeros((len(ids), 3, n_exp))
        jexp = np.zeros((len(ids), 3, n_exp))
        noise = np.zeros((len(ids), 3, self.noise.shape[2]))
        E = min(n_exp, self.exp.shape[2])
        for i, k in enumerate(ids):
            r = row.get(int(k))
            if r is not None:
                static[:, i], exp[i, :, :E], jexp[i, :, :E] = self.static[:, r], self.exp[r, :, :E], self.jaw_exp[r, :, :E]
                noise[i] = self.noise[r]
        return static, exp, jexp, noise


def save_response(path: str, resp: LandmarkResponse, **extra) -> None:
    """Write ``resp`` as an npz (``landmark_indices``, ``static``, ``exp``, ``jaw_exp``,
    ``noise``, ``noise_floor`` and, with read-outs, ``pose_readout_weights``,
    ``pose_readout_n_exp`` and ``expression_readout_{template,mean,scale,weights,offset}``)."""
    if resp.pose_readout is not None:
        extra.update(pose_readout_weights=resp.pose_readout.weights,
                     pose_readout_n_exp=np.int64(resp.pose_readout.n_exp))
    if resp.expression_readout is not None:
        extra.update({f"expression_readout_{k}": getattr(resp.expression_readout, k).astype(np.float32)
                      for k in _EXPRESSION_KEYS})
    np.savez(path, landmark_indices=resp.landmark_indices, static=resp.static, exp=resp.exp,
             jaw_exp=resp.jaw_exp, noise=resp.noise, noise_floor=np.float64(resp.noise_floor), **extra)


def load_response(path: str) -> LandmarkResponse:
    """Read a response npz; ``"avatar"`` means the packaged :data:`AVATAR_RESPONSE_ASSET`.

    Raises:
        TrackingError: missing file, missing keys or inconsistent arrays (names the file).
    """
    if path == "avatar":
        from rsatalker_core.config import resolve_asset

        path = resolve_asset(AVATAR_RESPONSE_ASSET)
    if not os.path.isfile(path):
        raise TrackingError(f"{path}: no such landmark response file")
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in ("landmark_indices", "static", "exp", "jaw_exp") if k not in d.files]
            if missing:
                raise TrackingError(f"{path}: landmark response lacks {', '.join(missing)}")
            noise = d["noise"] if "noise" in d.files else None  # optional (older files lack it)
            floor = float(d["noise_floor"]) if "noise_floor" in d.files else 0.0
            pose = expression = None  # optional (older files lack them)
            try:
                if "pose_readout_weights" in d.files:
                    if "pose_readout_n_exp" not in d.files:
                        raise TrackingError("pose_readout_weights without pose_readout_n_exp")
                    pose = PoseReadout(d["pose_readout_weights"], int(d["pose_readout_n_exp"]))
                keys = [f"expression_readout_{k}" for k in _EXPRESSION_KEYS]
                if any(k in d.files for k in keys):
                    missing = [k for k in keys if k not in d.files]
                    if missing:
                        raise TrackingError(f"expression read-out lacks {', '.join(missing)}")
                    expression = ExpressionReadout(*(d[k] for k in keys))
            except TrackingError as exc:
                raise TrackingError(f"{path}: {exc}") from exc
            return LandmarkResponse(d["landmark_indices"], d["static"], d["exp"], d["jaw_exp"], noise=noise,
                                    noise_floor=floor, source=path, pose_readout=pose, expression_readout=expression)
    except (OSError, ValueError) as exc:
        raise TrackingError(f"{path}: not a readable landmark response npz ({exc})") from exc


def calibrate_response(
    renderer,
    landmarker,
    embedding,
    n_samples: int = 3000,
    seed: int = 0,
    head_deg: float = 20.0,
    camera_yaw_deg: float = 30.0,
    jaw_max: float = 0.3,
    n_exp: int = 50,
    ridge: float = 1e-2,
    n_noise: int = 80,
    sequence_length: int = 1,
    gaze_max: float = 0.0,
    readout_folds: int = 0,
    readout_ridge: float = 1e-2,
    expression_readout: bool = False,
    expression_ridge: float = 1e-5,
) -> Tuple[LandmarkResponse, Dict[str, float]]:
    """Measure an avatar's :class:`LandmarkResponse` from renders with known motion.

    Each sample renders the avatar with a random head rotation (each axis uniform in
    ``+-head_deg``), jaw opening (uniform in ``0..jaw_max`` radians), expression (every
    coefficient normal with sd 0.3, plus three uniform in -2..2), gaze (both eyes' pitch and
    yaw uniform in ``+-gaze_max`` radians; 0: eyes at rest) and camera (orbiting the head by
    a uniform yaw in ``+-camera_yaw_deg``). With ``sequence_length > 1`` the samples come
    in short clips instead, each a smooth (raised-cosine) move from one random motion to
    another under one camera, tracked from frame to frame by a video-mode ``landmarker``
    (:meth:`~rsatalker_core.tracking.landmarks.FaceLandmarker.reset` between clips): what the
    tracker node sees, whose MediaPipe follows the face region from the previous frame and
    reads the open jaw differently from a still image. MediaPipe's landmarks are compared with the
    embedding's points of the known pose: image offsets at each point's depth, depth offsets
    from MediaPipe's relative depth; each offset is taken back to the rest frame through the
    point's skinning rotation and regressed (ridge ``ridge``, relative to the sample count) on
    the features of the module docstring: ``static_features(j, f)``, ``psi`` and ``j psi``.
    The first ``n_noise`` principal components of what is left become the response's
    ``noise`` directions (:class:`LandmarkResponse`), the rest its ``noise_floor``.

    With ``readout_folds >= 2`` the samples' clips are split into that many folds; each fold's
    clips are tracked frame by frame (warm starts, the fit's default settings) with a response
    calibrated on the other folds, and the response's
    :class:`~rsatalker_core.tracking.readout.PoseReadout` is regressed on these out-of-fold
    estimates (:func:`~rsatalker_core.tracking.readout.fit_readout`, ridge ``readout_ridge``).
    With ``expression_readout`` the response's
    :class:`~rsatalker_core.tracking.readout.ExpressionReadout` is regressed on all samples'
    landmarks (:func:`~rsatalker_core.tracking.readout.fit_expression_readout`, ridge
    ``expression_ridge``; it reads 4308 features: the default avatar's is learned from 48000).

    Args:
        renderer: an :class:`~rsatalker_core.render.renderer.AvatarRenderer` (its
            ``viewmat`` is changed during the call, to its config's camera orbited by the
            sampled yaw, and restored).
        landmarker: a :class:`~rsatalker_core.tracking.landmarks.FaceLandmarker`:
            ``video=False`` for ``sequence_length=1``, else ``video=True``.
        embedding: the :class:`~rsatalker_core.tracking.embedding.LandmarkEmbedding` tracked with.

    Returns:
        ``(response, {"samples": used, "rms_before_mm", "rms_after_mm", "noise_floor_mm"})``:
        the landmark offsets' RMS without and with the response, over the samples, and what
        is left beside the noise directions; with a read-out also the RMS jaw-opening
        (radians) and head-rotation (degrees) errors of the out-of-fold fits without and
        with it (``readout_jaw_rms_before``, ``readout_jaw_rms_after``,
        ``readout_head_rms_deg_before``, ``readout_head_rms_deg_after``); with the expression
        read-out the in-sample correlation of its coefficients with the truth, smallest and
        median over the coefficients (``expression_r_min``, ``expression_r_median``).

    Raises:
        TrackingError: MediaPipe found a face in fewer than half the renders;
            ``sequence_length < 1``, clips with a still-image landmarker, ``readout_folds``
            negative, 1 or more than the clips, or too few samples for a read-out.
    """
    import torch

    from rsatalker_core.config import EXP_SLICE, HEAD_SLICE, MOTION_DIM
    from rsatalker_core.head.flame import batch_rodrigues
    from rsatalker_core.render.camera import default_camera
    from rsatalker_core.tracking.fit import LandmarkFitter

    if int(sequence_length) < 1:
        raise TrackingError(f"sequence_length must be >= 1, got {sequence_length}")
    n_seq = int(sequence_length)
    if n_seq > 1 and not getattr(landmarker, "video", True):
        raise TrackingError("clips (sequence_length > 1) need a video-mode landmarker (FaceLandmarker(video=True))")
    n_clips = -(-int(n_samples) // n_seq)
    if int(readout_folds) < 0 or int(readout_folds) == 1 or int(readout_folds) > n_clips:
        raise TrackingError(f"readout_folds must be 0 (no read-out) or 2..{n_clips} (the clips), got {readout_folds}")
    rng = np.random.default_rng(seed)

    def draw():  # [56] motion | [6] gaze
        m = np.zeros(MOTION_DIM + 6, np.float32)
        m[HEAD_SLICE] = np.radians(rng.uniform(-head_deg, head_deg, 3))
        m[50] = rng.uniform(0.0, jaw_max)
        psi = 0.3 * rng.standard_normal(n_exp)
        psi[rng.choice(n_exp, 3, replace=False)] = rng.uniform(-2.0, 2.0, 3)
        m[EXP_SLICE.start : EXP_SLICE.start + n_exp] = psi
        if gaze_max > 0:  # both eyes alike (pitch, yaw)
            m[MOTION_DIM : MOTION_DIM + 2] = m[MOTION_DIM + 3 : MOTION_DIM + 5] = rng.uniform(-gaze_max, gaze_max, 2)
        return m

    view0 = renderer.viewmat
    K = renderer.K[0].cpu().numpy().astype(np.float64)
    fit = LandmarkFitter(renderer.flame, embedding, n_exp=n_exp)
    ids = embedding.landmark_indices
    feats, deltas = [], []
    seen = []  # per used sample: (clip, frame in it, FaceLandmarks, camera rotation, motion [56], gaze [6])
    try:
        for k in range(int(n_samples)):
            if k % n_seq == 0:  # a new clip (every sample when n_seq == 1)
                m_a = draw()
                m_b = draw() if n_seq > 1 else m_a
                yaw = rng.uniform(-camera_yaw_deg, camera_yaw_deg)
                view = default_camera(renderer.cfg.render, view0.device, yaw_deg=yaw)[0][0]
                renderer.viewmat = view[None]
                v = view.cpu().numpy().astype(np.float64)
                Rc = v[:3, :3]
                fit.camera_rotation = Rc
                if n_seq > 1:
                    landmarker.reset()
            w = 0.5 - 0.5 * np.cos(np.pi * (k % n_seq) / (n_seq - 1)) if n_seq > 1 else 0.0
            m, eye = np.split(((1.0 - w) * m_a + w * m_b).astype(np.float32), [MOTION_DIM])
            psi = m[EXP_SLICE.start : EXP_SLICE.start + n_exp].astype(np.float64)
            lm = landmarker(renderer.render(m, eye_pose=eye if gaze_max > 0 else None))
            if lm is None:
                continue
            q, _, pz, Rv = fit.model_landmarks(m, v[:3, 3], K, eye_pose=eye)  # the known pose's landmark points
            obs = lm.points[ids].astype(np.float64)
            z = q[:, 2]
            d_cam = np.stack([  # MediaPipe's offsets from them, metres in the camera frame
                (obs[:, 0] - K[0, 2]) * z / K[0, 0] - q[:, 0],
                (obs[:, 1] - K[1, 2]) * z / K[1, 1] - q[:, 1],
                (obs[:, 2] - obs[:, 2].mean() - pz) * z.mean() / K[0, 0],
            ], 1)
            d_rest = np.einsum("lji,lj->li", Rv, d_cam @ Rc)  # Rv^T Rc^T d
            head = batch_rodrigues(torch.as_tensor(m[HEAD_SLICE], dtype=torch.float64)[None])[0].numpy()
            f = Rc @ head[:, 2]  # the face's forward axis, camera frame
            feats.append(np.concatenate([static_features(np.array([m[50]], np.float64), f[None])[0], psi, m[50] * psi]))
            deltas.append(d_rest.reshape(-1))
            seen.append((k // n_seq, k % n_seq, lm, Rc, m, eye))
    finally:
        renderer.viewmat = view0
    if len(feats) < max(1, n_samples // 2):
        raise TrackingError(f"MediaPipe found the avatar in {len(feats)} of {n_samples} renders")
    X, Y = np.stack(feats), np.stack(deltas)  # [N, 13 + 2E], [N, 3L]
    resp, res = _regress(X, Y, ids, n_exp, ridge, n_noise)
    rms = lambda a: float(1000 * np.sqrt((a**2).mean()))
    info = {"samples": float(len(X)), "rms_before_mm": rms(Y), "rms_after_mm": rms(res),
            "noise_floor_mm": 1000 * resp.noise_floor}
    if int(readout_folds) >= 2:
        resp.pose_readout, ro = _calibrate_readout(renderer.flame, embedding, X, Y, seen, K, n_exp, ridge, n_noise,
                                              int(readout_folds), readout_ridge)
        info.update({"readout_" + k: v for k, v in ro.items() if k != "samples"})
    if expression_readout:
        pts = np.stack([s[2].points for s in seen])
        psi = np.stack([s[4][EXP_SLICE][:n_exp] for s in seen])
        resp.expression_readout, eo = fit_expression_readout(pts, psi, ridge=expression_ridge)
        info.update(expression_r_min=eo["r_min"], expression_r_median=eo["r_median"])
    return resp, info


def _regress(X: np.ndarray, Y: np.ndarray, ids: np.ndarray, n_exp: int, ridge: float,
             n_noise: int) -> Tuple[LandmarkResponse, np.ndarray]:
    """The response regressed from features ``X [N, 13 + 2E]`` and rest-frame offsets
    ``Y [N, 3L]`` (:func:`calibrate_response`), and what it leaves ``[N, 3L]``."""
    reg = ridge * np.eye(X.shape[1])
    reg[0, 0] = 0.0  # the constant offset is not shrunk
    B = np.linalg.solve(X.T @ X + len(X) * reg, X.T @ Y)  # [13 + 2E, 3L]
    L, S, E = len(ids), N_STATIC, n_exp
    res = Y - X @ B  # [N, 3L] what the linear response leaves
    _, sv, vt = np.linalg.svd(res, full_matrices=False)  # principal directions of the residual
    nd = min(int(n_noise), len(sv) - 1)
    noise = (vt[:nd] * (sv[:nd, None] / np.sqrt(len(X)))).reshape(nd, L, 3).transpose(1, 2, 0)  # [L, 3, nd]
    floor = float(np.sqrt((sv[nd:] ** 2).sum() / res.size))
    B = B.reshape(-1, L, 3)
    resp = LandmarkResponse(ids, B[:S], B[S : S + E].transpose(1, 2, 0), B[S + E :].transpose(1, 2, 0),
                            noise=noise, noise_floor=floor, source="calibrated")
    return resp, res


def _calibrate_readout(flame, embedding, X, Y, seen, K, n_exp, ridge, n_noise, folds, readout_ridge):
    """Track each fold's clips (:func:`~rsatalker_core.tracking.closed_loop.track`) with a
    response regressed on the other folds and fit the read-out on these estimates
    (:func:`calibrate_response`, ``readout_folds``)."""
    from rsatalker_core.tracking.closed_loop import track

    clip = np.array([s[0] for s in seen])
    fold = clip % folds
    est = np.full((len(seen), 56), np.nan)
    eye_est = np.full((len(seen), 6), np.nan)
    for k in range(folds):
        held = np.flatnonzero(fold == k)
        if len(held) == 0 or len(held) == len(seen):
            raise TrackingError(f"read-out fold {k} holds {len(held)} of {len(seen)} samples")
        resp_k, _ = _regress(X[fold != k], Y[fold != k], embedding.landmark_indices, n_exp, ridge, n_noise)
        for c in np.unique(clip[held]):
            rows = np.flatnonzero(clip == c)
            frames = [None] * (seen[rows[-1]][1] + 1)  # None where MediaPipe missed the frame
            for i in rows:
                frames[seen[i][1]] = seen[i][2]
            e, g = track(flame, embedding, seen[rows[0]][3], frames, K, n_exp=n_exp, response=resp_k)
            at = [seen[i][1] for i in rows]
            est[rows], eye_est[rows] = e[at], g[at]
    motion, eye, Rcs = (np.stack([s[i] for s in seen]) for i in (4, 5, 3))
    return fit_readout(est, eye_est, motion, eye, Rcs, n_exp, readout_ridge)
