"""Fit of the loaded head model's parameters to face landmarks (docs/ros.md "Face tracker").

:class:`LandmarkFitter` solves, per frame, for the parameters of the FLAME layer the rest of
rsatalker uses (:class:`~rsatalker_core.head.flame.FlameModel`, stand-in or official), so
tracked motion, the motion model and the renderer share one parameter space:

* head rotation (FLAME's global rotation, axis-angle, radians) and translation (camera
  frame, metres),
* jaw rotation (axis-angle, radians),
* the first ``n_exp`` expression coefficients (50: the motion target's),
* eye gaze: pitch and yaw of each eyeball (radians; roll stays 0) from the iris centres.

Model: the landmark points of :class:`~rsatalker_core.tracking.embedding.LandmarkEmbedding`
on the posed mesh (FLAME Eq. 1-4 as in :func:`rsatalker_core.head.flame.lbs`, evaluated on
one virtual vertex per landmark that blends its triangle's attributes), seen by a pinhole camera
``p_cam = R_cam p + t``, ``u = fx x / z + cx``, ``v = fy y / z + cy`` (OpenCV axes,
:mod:`rsatalker_core.render.camera`). ``R_cam`` is fixed (default: a camera in front of the
face, ``diag(1, -1, -1)``, the avatar camera's rotation); ``t`` is fitted.

Depth: MediaPipe also gives each landmark a relative depth (pixels, like x, about the
face's centre). It is what tells a pitch of the head from a vertical shift: from image
positions alone the fit read a pure +-20-degree pitch of the avatar as about -9 / +12
degrees, with depth within 2.6 degrees (docs/ros.md "Face tracker"). The model's counterpart is each
landmark's camera depth, moved by the embedding's depth offset
(:attr:`~rsatalker_core.tracking.embedding.LandmarkEmbedding.depth_offset`) along the
head's backward axis, about the mean depth, in pixels at the mean depth
(``fx (z_i - z_mean) / z_mean``); MediaPipe's depth unit is scaled by a fitted factor
(``1 + s``, ``s`` pulled toward 0). Landmarks given as two columns, or with a constant
third one, are fitted on their image positions only.

Appearance: an optional :class:`~rsatalker_core.tracking.response.LandmarkResponse` moves
the landmark points by how MediaPipe reads one avatar's painted surface (for tracking
renders of that avatar, never real people). Its noise directions add ``K`` latent
coefficients ``z`` (rest-frame offsets ``noise @ z``, prior weight
``noise_prior (noise_floor / face size)^2``): a factor-analysis model of MediaPipe's errors,
which are correlated across landmarks (a lip contour slides as a whole), so that such a slide
is explained as noise rather than read as jaw or expression. A response's read-outs
(:mod:`~rsatalker_core.tracking.readout`) then correct each result: its
:class:`~rsatalker_core.tracking.readout.PoseReadout` the jaw opening, head rotation and gaze
for the bias the fit keeps on that avatar, its
:class:`~rsatalker_core.tracking.readout.ExpressionReadout` the expression, read straight from
the landmarks (only when they carry MediaPipe's depth). The warm start stays the fit's own
solution.

Solver: Levenberg-Marquardt (Gauss-Newton with a damping term) on residuals in percent of
the face's size; Jacobians analytic for translation, expression, the depth scale and the
response's noise coefficients, by forward differences (one batched evaluation) for the
rotations; priors pull expression, jaw and gaze toward zero, and a temporal prior toward the
previous frame's solution (the warm start).
A few iterations per frame when warm, more after a (re)acquisition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from rsatalker_core.config import EXP_SLICE, HEAD_SLICE, JAW_SLICE, MOTION_DIM
from rsatalker_core.head.flame import batch_rodrigues
from rsatalker_core.tracking.embedding import LandmarkEmbedding
from rsatalker_core.tracking.landmarks import FACE_OVAL, IRIS_CENTRES, NUM_LANDMARKS, TrackingError
from rsatalker_core.tracking.response import N_STATIC, LandmarkResponse, static_features

__all__ = ["FitResult", "LandmarkFitter", "CAMERA_FACING_FACE", "default_intrinsics"]

#: Rotation of a camera in front of the face (world y up, face toward +z) in OpenCV axes.
CAMERA_FACING_FACE = np.diag([1.0, -1.0, -1.0])


def default_intrinsics(width: int, height: int, hfov_deg: float = 60.0) -> np.ndarray:
    """``K [3, 3]`` for a camera without calibration: square pixels, centred principal
    point, horizontal field of view ``hfov_deg`` degrees (webcams: 55-70)."""
    f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])


@dataclass
class FitResult:
    """One frame's fit.

    Attributes:
        motion: ``[56]`` float32 ``[exp 50 | jaw 3 | head 3]`` (radians; config.EXP_SLICE...).
        eye_pose: ``[6]`` float32 left eye 3 | right eye 3, axis-angle radians (FLAME order).
        translation: ``[3]`` float32 head translation in the camera frame, metres.
        rms_px: root-mean-square landmark residual, pixels.
        rms_rel: the same in percent of the face size.
        iterations: solver iterations run.
        params: ``[P]`` the solver's parameter vector (the warm start; before a response's
            read-out, which only ``motion`` and ``eye_pose`` carry).
    """

    motion: np.ndarray
    eye_pose: np.ndarray
    translation: np.ndarray
    rms_px: float
    rms_rel: float
    iterations: int
    params: np.ndarray = field(repr=False, default=None)


class LandmarkFitter:
    """Fits FLAME parameters to the landmarks of one face, frame after frame (module docstring).

    Args:
        flame: the loaded :class:`~rsatalker_core.head.flame.FlameModel`.
        embedding: landmark embedding for that mesh
            (:func:`~rsatalker_core.tracking.embedding.embedding_for`).
        n_exp: expression coefficients fitted (<= ``flame.n_expr``; 50 = the motion's).
        shape: ``[<= n_shape]`` identity coefficients of the tracked person (None: zeros).
        camera_rotation: ``[3, 3]`` world-to-camera rotation (default :data:`CAMERA_FACING_FACE`).
        exp_prior, jaw_prior, eye_prior: weights of the zero priors (per coefficient /
            per radian, in squared residual units). ``exp_prior`` None: 0.5, or 0.1 with a
            ``response`` that has noise directions (they explain MediaPipe's slides, so the
            expression needs less pull toward 0: at 0.5 the tracked avatar's brows kept
            about a third of their amplitude; docs/ros.md "Face tracker").
        temporal_prior: weight of the pull toward the previous frame (per parameter).
        oval_weight: weight of face-oval landmarks (silhouette points) relative to 1.
        response: a :class:`~rsatalker_core.tracking.response.LandmarkResponse` (tracking
            renders of the avatar it was calibrated on) or None (real faces).
        depth_weight: weight of MediaPipe's relative-depth residuals (the landmarks' third
            column) relative to the image ones; 0 fits the 2D positions only. The depth is
            what tells head pitch from a vertical shift (module docstring, "Depth").
        depth_scale_prior: weight of the pull of the fitted depth scale toward 1.
        noise_prior: scale of the prior on the response's noise coefficients (module
            docstring, "Appearance"; 1 is the calibrated factor-analysis model, larger holds
            them nearer 0; 30 was best on a validation motion, docs/ros.md "Face tracker").
        iters_warm, iters_cold: solver iterations per frame with / without a warm start
            (at most).
        rel_tol: a warm fit stops once an iteration lowers the cost by less than this
            fraction of it (the frame has converged; saves the remaining iterations).

    Raises:
        TrackingError: ``n_exp`` larger than the FLAME layer's, an embedding for another mesh,
            or a response whose read-outs were learned for another ``n_exp``.
    """

    def __init__(
        self,
        flame,
        embedding: LandmarkEmbedding,
        n_exp: int = 50,
        shape: Optional[np.ndarray] = None,
        camera_rotation: Optional[np.ndarray] = None,
        exp_prior: Optional[float] = None,
        jaw_prior: float = 1.0,
        eye_prior: float = 1.0,
        temporal_prior: float = 0.0,
        oval_weight: float = 0.3,
        depth_weight: float = 1.0,
        depth_scale_prior: float = 1.0,
        response: Optional[LandmarkResponse] = None,
        noise_prior: float = 30.0,
        iters_warm: int = 3,
        iters_cold: int = 25,
        rel_tol: float = 1e-3,
    ):
        if not 0 < int(n_exp) <= flame.n_expr:
            raise TrackingError(f"n_exp must be in 1..{flame.n_expr} (flame.n_expr), got {n_exp}")
        dt = torch.float64
        self.n_exp = E = int(n_exp)
        faces = flame.faces.cpu().numpy()
        vid = embedding.vertex_ids(faces)  # [L, 3]
        self.embedding = embedding
        self.landmark_ids = torch.as_tensor(embedding.landmark_indices)
        vt = flame.v_template.to(dt)
        sd = flame.shapedirs.to(dt)
        ns = flame.n_shape
        if shape is not None:
            s = torch.as_tensor(np.asarray(shape, dtype=np.float64).reshape(-1))
            if s.numel() > ns:
                raise TrackingError(f"shape has {s.numel()} coefficients, the FLAME layer keeps {ns}")
            vt = vt + (sd[:, :, : s.numel()] @ s.to(vt))
        sde = sd[:, :, ns : ns + E]  # [V, 3, E]
        jr = flame.J_regressor.to(dt)  # [5, V]
        # Reduced model: one "virtual vertex" per landmark whose template, blendshapes, pose
        # correctives and skinning weights are the barycentric blend of its triangle's (exact
        # for everything but the skinning, which differs by the weights' variation across one
        # triangle: well under a millimetre); joints from the full mesh (J_regressor).
        bary = torch.as_tensor(embedding.bary, dtype=dt)  # [L, 3]
        vids = torch.as_tensor(vid)
        blend = lambda x: (x[vids] * bary.view(*bary.shape, *([1] * (x.dim() - 1)))).sum(1)
        self._vt = blend(vt)  # [L, 3]
        self._sd = blend(sde)  # [L, 3, E]
        self._pd = blend(flame.posedirs.to(dt).view(36, -1, 3).permute(1, 0, 2))  # [L, 36, 3]
        self._w = blend(flame.lbs_weights.to(dt))  # [L, 5]
        self._J0 = jr @ vt  # [5, 3]
        self._Jd = torch.einsum("jv,vce->jce", jr, sde)  # [5, 3, E]
        self._parents = flame.parents.tolist()
        L = self._vt.shape[0]
        # An appearance's response (rest-frame landmark offsets that depend on jaw,
        # expression and view; none by default): :mod:`rsatalker_core.tracking.response`.
        self.response = response
        self._pose_readout = response.pose_readout if response is not None else None
        self._exp_readout = response.expression_readout if response is not None else None
        for ro in (self._pose_readout, self._exp_readout):
            if ro is not None and ro.n_exp != E:
                raise TrackingError(f"the response's read-outs were learned for n_exp {ro.n_exp}, not {E}: fit with "
                                    f"n_exp={ro.n_exp} or use response.without_readout()")
        self._rs = self._rje = None
        self.n_noise = K = 0
        if response is not None:
            rs, re, rje, rn = response.aligned(embedding.landmark_indices, E)
            # latent coefficients along the response's noise directions (factor analysis of
            # MediaPipe's correlated errors; module docstring, "Appearance")
            self.n_noise = K = rn.shape[2]
            self._nb = torch.as_tensor(rn, dtype=dt)  # [L, 3, K]
            self._nb_flat = self._nb.reshape(L * 3, K).T.contiguous()  # [K, 3L]
            self._rs = torch.as_tensor(rs, dtype=dt).reshape(N_STATIC, L * 3)  # [S, 3L]
            self._sd = self._sd + torch.as_tensor(re, dtype=dt)
            self._rje = torch.as_tensor(rje, dtype=dt)  # [L, 3, E]
            self._rje_flat = self._rje.reshape(L * 3, E).T.contiguous()  # [E, 3L]
        self._sd_flat = self._sd.reshape(L * 3, E).T.contiguous()  # [E, 3L]
        self._Jd_flat = self._Jd.reshape(15, E).T.contiguous()  # [E, 15]
        self._pd_flat = self._pd.permute(1, 0, 2).reshape(36, L * 3).contiguous()  # [36, 3L]
        self._eye3 = torch.eye(3, dtype=dt)
        Rc = CAMERA_FACING_FACE if camera_rotation is None else np.asarray(camera_rotation, dtype=np.float64)
        self._Rc = torch.as_tensor(Rc, dtype=dt)
        lw = np.ones(len(embedding))
        lw[np.isin(embedding.landmark_indices, FACE_OVAL)] = oval_weight
        lw[np.isin(embedding.landmark_indices, IRIS_CENTRES)] = 2.0
        self._lw = torch.as_tensor(np.repeat(np.sqrt(lw), 2))  # per residual (x, y)
        self.depth_weight = float(depth_weight)
        self._dz = torch.as_tensor(embedding.depth_offset, dtype=dt)  # [L] metres
        self._lwz = torch.as_tensor(np.sqrt(lw * self.depth_weight))  # per depth residual
        # Parameter layout: rotation 3 | translation 3 | jaw 3 | expression E | eyes 4 |
        # depth scale 1 (MediaPipe's depth unit relative to its x unit, minus 1) | noise K.
        self.P = 9 + E + 4 + 1 + K
        self._rot, self._tr, self._jaw = slice(0, 3), slice(3, 6), slice(6, 9)
        self._exp, self._eye = slice(9, 9 + E), slice(9 + E, 13 + E)
        self._zs = 13 + E
        self._nz = slice(14 + E, 14 + E + K)
        self._rest_pts = self._forward(torch.zeros(1, self.P, dtype=dt))[0][0]  # [L, 3] world
        prior = np.zeros(self.P)
        if exp_prior is None:
            exp_prior = 0.1 if K else 0.5
        prior[self._exp] = exp_prior
        prior[self._jaw] = [jaw_prior, 20 * jaw_prior, 20 * jaw_prior]  # the jaw mostly opens (x)
        prior[self._eye] = eye_prior
        prior[self._zs] = depth_scale_prior
        if K:
            # z ~ N(0, I) against residuals of sd noise_floor: in the fit's units (percent of
            # the face's size) the prior weight is (noise_floor / size)^2
            rest = self._rest_pts @ self._Rc.T
            size = float((rest[:, :2].max(0).values - rest[:, :2].min(0).values).norm()) / 100.0
            prior[self._nz] = float(noise_prior) * (response.noise_floor / size) ** 2
        self._prior = torch.as_tensor(prior)
        self._prior_diag = torch.diag(self._prior)
        self.temporal_prior = float(temporal_prior)
        self._temporal_eye = self.temporal_prior * torch.eye(self.P, dtype=dt)
        self._pose_mask = torch.zeros(self.P, dtype=torch.bool)
        self._pose_mask[self._rot] = self._pose_mask[self._tr] = True
        self._pose_mask[self._zs] = True
        self.rel_tol = float(rel_tol)
        self.iters_warm, self.iters_cold = int(iters_warm), int(iters_cold)
        self._nonlinear = torch.as_tensor(list(range(0, 3)) + list(range(6, 9)) + list(range(9 + E, 13 + E)))
        self.reset()

    def reset(self) -> None:
        """Forget the warm start (the face was lost)."""
        self._prev: Optional[Tensor] = None

    @property
    def camera_rotation(self) -> np.ndarray:
        """``[3, 3]`` world-to-camera rotation the landmarks are seen with (settable)."""
        return self._Rc.numpy().copy()

    @camera_rotation.setter
    def camera_rotation(self, R: np.ndarray) -> None:
        self._Rc = torch.as_tensor(np.asarray(R, dtype=np.float64).reshape(3, 3))

    @torch.no_grad()
    def model_landmarks(
        self, motion: np.ndarray, translation: np.ndarray, K: np.ndarray, eye_pose: Optional[np.ndarray] = None
    ) -> Tuple[np.ndarray, ...]:
        """The model's landmarks for known parameters (depth scale 1).

        Args:
            motion: ``[56]`` ``[exp 50 | jaw 3 | head 3]`` (radians; the first ``n_exp``
                expression coefficients are used).
            translation: ``[3]`` head translation in the camera frame, metres.
            K: ``[3, 3]`` intrinsics, pixels.
            eye_pose: ``[6]`` gaze, left | right eye axis-angle (radians; the x and y
                components, pitch and yaw, are used); None: eyes at rest.

        Returns:
            ``(points [L, 3] camera metres, pixels [L, 2], depth [L] MediaPipe-style pixels,
            skinning rotations [L, 3, 3])``.
        """
        m = np.asarray(motion, dtype=np.float64)
        th = torch.zeros(1, self.P, dtype=torch.float64)
        th[0, self._rot] = torch.as_tensor(m[HEAD_SLICE])
        th[0, self._tr] = torch.as_tensor(np.asarray(translation, dtype=np.float64))
        th[0, self._jaw] = torch.as_tensor(m[JAW_SLICE])
        th[0, self._exp] = torch.as_tensor(m[EXP_SLICE][: self.n_exp])
        if eye_pose is not None:
            e = np.asarray(eye_pose, dtype=np.float64).reshape(6)
            th[0, self._eye] = torch.as_tensor(e[[0, 1, 3, 4]])
        Kt = torch.as_tensor(np.asarray(K, dtype=np.float64))
        pts, Rv = self._forward(th)
        q = self._camera(th, pts)
        return (q[0].numpy(), self._pixels(q, Kt)[0].numpy(), self._depth(q, Rv, Kt)[0].numpy(), Rv[0].numpy())

    # ---- model --------------------------------------------------------------------------
    def _forward(self, th: Tensor, same_exp: bool = False) -> Tuple[Tensor, Tensor]:
        """``(points [B, L, 3] world metres, rotations [B, L, 3, 3])`` for ``th [B, P]``:
        FLAME Eq. 1-4 (:func:`rsatalker_core.head.flame.lbs`) on the landmark points;
        ``rotations`` is each point's blended skinning rotation (for the Jacobian).
        ``same_exp``: all rows share row 0's expression (the Jacobian's batch): the shape
        blend and joints are computed once."""
        B = th.shape[0]
        exp = th[:1, self._exp] if same_exp else th[:, self._exp]
        pose = th.new_zeros(B, 5, 3)
        pose[:, 0] = th[:, self._rot]
        pose[:, 2] = th[:, self._jaw]
        pose[:, 3, :2] = th[:, self._eye][:, :2]
        pose[:, 4, :2] = th[:, self._eye][:, 2:]
        L = self._vt.shape[0]
        # matmuls on flattened blendshapes (the einsums of flame.lbs, cheaper at this size)
        v = self._vt + (exp @ self._sd_flat).view(-1, L, 3)  # [B or 1, L, 3]
        if self.n_noise:  # the response's noise directions
            v = v + (th[:, self._nz] @ self._nb_flat).view(B, L, 3)
        J = (self._J0 + (exp @ self._Jd_flat).view(-1, 5, 3)).expand(B, 5, 3)  # [B, 5, 3]
        rot = batch_rodrigues(pose.reshape(-1, 3)).view(B, 5, 3, 3)
        if self._rs is not None:  # the appearance's response
            jx = th[:, 6]  # jaw opening
            f = rot[:, 0, :, 2] @ self._Rc.T  # [B, 3] the face's forward axis, camera frame
            v = v + (static_features(jx, f) @ self._rs).view(B, L, 3)
            v = v + jx[:, None, None] * (exp @ self._rje_flat).view(-1, L, 3)
        feat = (rot[:, 1:] - self._eye3).reshape(B, 36)
        v = v + (feat @ self._pd_flat).view(B, L, 3)
        Rw, tw = [rot[:, 0]], [J[:, 0]]
        for j in range(1, 5):
            p = self._parents[j]
            Rw.append(Rw[p] @ rot[:, j])
            tw.append(Rw[p] @ (J[:, j] - J[:, p])[..., None] + tw[p][..., None])
            tw[-1] = tw[-1][..., 0]
        Rw, tw = torch.stack(Rw, 1), torch.stack(tw, 1)  # [B, 5, 3, 3], [B, 5, 3]
        off = tw - (Rw @ J[..., None])[..., 0]
        Rv = (self._w @ Rw.reshape(B, 5, 9)).view(B, L, 3, 3)  # [B, L, 3, 3]
        tv = self._w @ off  # [B, L, 3]
        return (Rv @ v[..., None])[..., 0] + tv, Rv

    def _camera(self, th: Tensor, pts: Tensor) -> Tensor:
        return pts @ self._Rc.T + th[:, None, self._tr]

    @staticmethod
    def _pixels(q: Tensor, K: Tensor) -> Tensor:
        z = q[..., 2].clamp_min(1e-3)
        return torch.stack([K[0, 0] * q[..., 0] / z + K[0, 2], K[1, 1] * q[..., 1] / z + K[1, 2]], -1)

    def _depth(self, q: Tensor, Rv: Tensor, K: Tensor) -> Tensor:
        """MediaPipe-style relative depth ``[B, L]`` of the landmarks at camera points
        ``q [B, L, 3]`` with skinning rotations ``Rv [B, L, 3, 3]``: each point moved by its
        embedding's depth offset along the head's backward axis, its depth about the mean
        depth, in pixels at that depth (``fx dz / z_mean``)."""
        z = self._offset_depth(q, Rv)
        zm = z.mean(-1, keepdim=True).clamp_min(1e-3)
        return K[0, 0] * (z / zm - 1.0)

    def _offset_depth(self, q: Tensor, Rv: Tensor) -> Tensor:
        """Camera depth ``[B, L]`` (metres) of the landmark points ``q [B, L, 3]`` moved by
        the embedding's depth offsets along the head's backward axis (skinning ``Rv``)."""
        return q[..., 2] - self._dz * (Rv[..., :, 2] * self._Rc[2]).sum(-1)

    def _project(self, th: Tensor, K: Tensor) -> Tensor:
        """Pixels ``[B, L, 2]`` of the landmarks for parameters ``th [B, P]``."""
        return self._pixels(self._camera(th, self._forward(th)[0]), K)

    def _residuals(self, th: Tensor, K: Tensor, obs: Tensor, scale: Tensor, zw: float) -> Tensor:
        """Weighted residuals ``[B, 3L]`` in percent of the face size: ``2L`` image
        residuals, then ``L`` depth residuals (times ``zw``: 0 without depth)."""
        pts, Rv = self._forward(th)
        return self._weighted_residuals(th, self._camera(th, pts), Rv, K, obs, scale, zw)

    def _weighted_residuals(self, th: Tensor, q: Tensor, Rv: Tensor, K: Tensor, obs: Tensor, scale: Tensor,
                            zw: float) -> Tensor:
        """:meth:`_residuals` of camera points ``q [B, L, 3]`` with skinning ``Rv``."""
        r2 = ((self._pixels(q, K) - obs[:, :2]) * (self._lw / scale).view(-1, 2)).flatten(1)  # [B, 2L]
        rz = ((1.0 + th[:, self._zs, None]) * obs[:, 2] - self._depth(q, Rv, K)) * (self._lwz * zw / scale)  # [B, L]
        return torch.cat([r2, rz], 1)

    def _residual_fn(self, th: Tensor, K: Tensor, obs: Tensor, scale: Tensor, zw: float) -> Tensor:
        return self._residuals(th[None], K, obs, scale, zw)[0]

    def _jacobian(self, th: Tensor, K: Tensor, obs: Tensor, scale: Tensor, zw: float) -> Tuple[Tensor, Tensor]:
        """``(r [M], J [M, P])``: rotations (head, jaw, eyes) by forward differences in one
        batched evaluation; translation, expression and depth scale analytically (the
        expression's small effect on the joint positions is left out of the Jacobian, not
        out of the model)."""
        eps = 1e-6
        nl = self._nonlinear
        batch = th[None].repeat(len(nl) + 1, 1)
        batch[torch.arange(1, len(nl) + 1), nl] += eps
        pts, Rv = self._forward(batch, same_exp=True)
        q = self._camera(batch, pts)
        r = self._weighted_residuals(batch, q, Rv, K, obs, scale, zw)  # [B, M]
        w = (self._lw / scale).view(-1, 2)  # [L, 2]
        wz = self._lwz * zw / scale  # [L]
        Jm = r.new_zeros(r.shape[1], self.P)
        Jm[:, nl] = ((r[1:] - r[0]) / eps).T
        q0 = q[0]
        z = q0[:, 2].clamp_min(1e-3)
        L = len(z)
        dq = q0.new_zeros(L, 2, 3)  # d pixel / d camera point
        dq[:, 0, 0] = K[0, 0] / z
        dq[:, 0, 2] = -K[0, 0] * q0[:, 0] / z**2
        dq[:, 1, 1] = K[1, 1] / z
        dq[:, 1, 2] = -K[1, 1] * q0[:, 1] / z**2
        dq = dq * w[..., None]
        Jm[: 2 * L, self._tr] = dq.reshape(-1, 3)
        # depth (of the offset points, self._depth): d(fx (z_i / zm - 1)) = fx (dz_i - (z_i / zm) mean(dz)) / zm
        z = self._offset_depth(q0, Rv[0])
        zm = z.mean()
        Jm[2 * L :, 5] = -wz * K[0, 0] * (1.0 - z / zm) / zm
        RcRv = self._Rc @ Rv[0]  # [L, 3, 3]
        dpx = dq @ RcRv  # [L, 2, 3] d pixel / d rest-frame offset
        dzw = -(wz * K[0, 0] / zm)[:, None]  # [L, 1]

        def rest_offsets(basis: Tensor) -> Tuple[Tensor, Tensor]:
            """Image and depth rows ``[2L, C]``, ``[L, C]`` of parameters that move the
            landmarks by rest-frame offsets ``basis [L, 3, C]`` (expression, noise)."""
            dz = torch.bmm(RcRv[:, 2:], basis)[:, 0]  # [L, C]
            return torch.bmm(dpx, basis).reshape(2 * L, -1), dzw * (dz - (z / zm)[:, None] * dz.mean(0))

        sd = self._sd if self._rje is None else self._sd + th[6] * self._rje
        Jm[: 2 * L, self._exp], Jm[2 * L :, self._exp] = rest_offsets(sd)
        Jm[2 * L :, self._zs] = wz * obs[:, 2]
        if self.n_noise:
            Jm[: 2 * L, self._nz], Jm[2 * L :, self._nz] = rest_offsets(self._nb)
        return r[0], Jm

    # ---- fitting ------------------------------------------------------------------------
    def _initial(self, obs: Tensor, K: Tensor) -> Tensor:
        """Rotation 0; translation from the landmarks' centroid and spread (pinhole)."""
        th = torch.zeros(self.P, dtype=obs.dtype)
        rest = self._rest_pts @ self._Rc.T
        c3, c2 = rest.mean(0), obs.mean(0)
        s3 = (rest[:, :2] - c3[:2]).norm(dim=1).mean()
        s2 = (obs - c2).norm(dim=1).mean()
        z = K[0, 0] * s3 / s2
        x = (c2[0] - K[0, 2]) * z / K[0, 0] - c3[0]
        y = (c2[1] - K[1, 2]) * z / K[1, 1] - c3[1]
        th[self._tr] = torch.stack([x, y, z - c3[2]])
        return th

    @torch.inference_mode()
    def fit(self, points_px: np.ndarray, K: np.ndarray, iterations: Optional[int] = None) -> FitResult:
        """Fit one frame.

        Args:
            points_px: ``[478, >=2]`` MediaPipe landmarks: x, y in pixels and, when given,
                the relative depth (pixels; :class:`~rsatalker_core.tracking.landmarks.FaceLandmarks.points`).
            K: ``[3, 3]`` camera intrinsics, pixels.
            iterations: solver iterations at most (default: ``iters_warm`` after a fitted
                frame, ``iters_cold`` after :meth:`reset`); a warm fit stops early once an
                iteration lowers the cost by less than ``rel_tol`` of it.

        Returns:
            :class:`FitResult`; the solution becomes the next frame's warm start.

        Raises:
            TrackingError: landmarks of the wrong shape or not finite (depth included).
        """
        pts = np.asarray(points_px, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[0] < int(self.embedding.landmark_indices.max()) + 1 or pts.shape[1] < 2:
            raise TrackingError(f"landmarks must be [478, >=2] pixels, got {pts.shape}")
        if not np.isfinite(pts[:, :3]).all():
            raise TrackingError("landmarks hold NaN or Inf")
        sel = pts[self.embedding.landmark_indices]
        obs = torch.zeros(len(sel), 3, dtype=torch.float64)
        obs[:, :2] = torch.from_numpy(np.ascontiguousarray(sel[:, :2]))
        has_depth = sel.shape[1] >= 3 and np.ptp(sel[:, 2]) > 0
        zw = 1.0 if has_depth else 0.0  # 2D landmarks (or all-zero depth): image residuals only
        if has_depth:
            obs[:, 2] = torch.from_numpy(sel[:, 2] - sel[:, 2].mean())
        Kt = torch.as_tensor(np.asarray(K, dtype=np.float64))
        span = obs[:, :2].max(0).values - obs[:, :2].min(0).values
        scale = span.norm() / 100.0  # residuals in percent of the face size
        cold = self._prev is None
        th = self._initial(obs[:, :2], Kt) if cold else self._prev.clone()
        n_it = iterations if iterations is not None else (self.iters_cold if cold else self.iters_warm)
        prev = None if cold else self._prev
        prior = self._prior
        temporal = prev is not None and self.temporal_prior > 0
        lam = 1e-3
        r = cost = None
        done = 0
        for it in range(n_it):
            r0, J = self._jacobian(th, Kt, obs, scale, zw)  # [M], [M, P]; r0 at th
            if r is None:
                r, cost = r0, self._cost(r0, th, prior, prev)
            H = J.T @ J + self._prior_diag
            g = J.T @ r + prior * th
            if temporal:
                H = H + self._temporal_eye
                g = g + self.temporal_prior * (th - prev)
            pose_only = cold and it < 4  # pose first: expression, jaw and gaze held at 0
            if pose_only:
                Hm, gm = H[self._pose_mask][:, self._pose_mask], g[self._pose_mask]
            else:
                Hm, gm = H, g
            damp = torch.diag(Hm.diagonal() + 1e-9)
            done = it + 1
            accepted = False
            for _ in range(6):
                delta = torch.linalg.solve(Hm + lam * damp, -gm)
                if pose_only:
                    cand = th.clone()
                    cand[self._pose_mask] += delta
                else:
                    cand = th + delta
                rc = self._residual_fn(cand, Kt, obs, scale, zw)
                cc = self._cost(rc, cand, prior, prev)
                if cc <= cost:
                    gain = cost - cc
                    th, r, cost = cand, rc, cc
                    lam = max(lam / 3, 1e-6)
                    accepted = True
                    break
                lam *= 4
            if not cold and (not accepted or gain <= self.rel_tol * cost):
                break
        if r is None:  # iterations == 0
            r = self._residual_fn(th, Kt, obs, scale, zw)
        self._prev = th.detach().clone()
        L = obs.shape[0]
        err = (r[: 2 * L].view(-1, 2) * scale / self._lw.view(-1, 2)).norm(dim=1)  # pixels
        rms_px = float(err.pow(2).mean().sqrt())
        return self._result(th, rms_px, rms_px / float(scale), done, pts[:, :3] if has_depth else None)

    def _cost(self, r: Tensor, th: Tensor, prior: Tensor, prev: Optional[Tensor]) -> float:
        c = float(r @ r + (prior * th * th).sum())
        if prev is not None and self.temporal_prior > 0:
            c += self.temporal_prior * float(((th - prev) ** 2).sum())
        return c

    def _result(self, th: Tensor, rms_px: float, rms_rel: float, iters: int,
                points: Optional[np.ndarray] = None) -> FitResult:
        t = th.detach().numpy()
        motion = np.zeros(MOTION_DIM, np.float32)
        motion[EXP_SLICE.start : EXP_SLICE.start + self.n_exp] = t[self._exp]
        motion[JAW_SLICE] = t[self._jaw]
        motion[HEAD_SLICE] = t[self._rot]
        e = t[self._eye]
        eye = np.array([e[0], e[1], 0.0, e[2], e[3], 0.0], np.float32)
        # the response's read-outs (module docstring, "Appearance"); the pose's reads the fit's expression
        if self._pose_readout is not None:
            motion, eye = self._pose_readout.apply(motion, eye, self._Rc.numpy())
        if self._exp_readout is not None and points is not None and points.shape[0] == NUM_LANDMARKS:
            motion[EXP_SLICE.start : EXP_SLICE.start + self.n_exp] = self._exp_readout.predict(points)
        return FitResult(motion, eye, t[self._tr].astype(np.float32), rms_px, rms_rel, iters, params=t.copy())

    @torch.no_grad()
    def mouth_opening(self, result: FitResult) -> float:
        """Distance between the fitted mesh points of MediaPipe's inner-lip landmarks 13
        (upper) and 14 (lower), metres; NaN when the embedding lacks them."""
        ids = self.embedding.landmark_indices.tolist()
        if 13 not in ids or 14 not in ids:
            return float("nan")
        th = torch.as_tensor(result.params, dtype=torch.float64)[None]
        p = self._forward(th)[0][0]
        return float((p[ids.index(13)] - p[ids.index(14)]).norm())

    @torch.no_grad()
    def project(self, result: FitResult, K: np.ndarray) -> np.ndarray:
        """``[L, 2]`` pixels of the embedding's landmarks under a fit (for overlays and tests)."""
        th = torch.as_tensor(result.params, dtype=torch.float64)
        return self._project(th[None], torch.as_tensor(np.asarray(K, dtype=np.float64)))[0].numpy()
