"""FLAME motion → pixels: the one path every caller renders through.

:func:`render_motion` is the differentiable function (FLAME layer → Gaussians bound to the
posed triangles, plus the relationship's offsets ``c`` → rasterizer, batched over frames);
training stages 2 and 3 call it with gradients. :class:`AvatarRenderer` wraps it for
inference (the CLI's ``generate``, the ROS render node, bag re-rendering, evaluation): it
loads FLAME and the avatar from a config and ALWAYS applies the relationship's offsets when
the avatar carries them (:class:`~rsatalker_core.avatar.offsets.RelationshipOffsets`), so
the same motion, relationship and frame index give the same pixels everywhere.

On CUDA with the gsplat backend the frames of a clip are rendered in batched gsplat calls
(:func:`~rsatalker_core.render.rasterize_frames`, ``batch_frames`` frames per call); on CPU
(numba / torch backends) one frame at a time (docs/architecture.md, render backends).
"""

from __future__ import annotations

import time
from typing import Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from rsatalker_core.avatar.gaussians import GaussianAvatar
from rsatalker_core.avatar.offsets import RelationshipLike
from rsatalker_core.config import MOTION_DIM, RsatalkerConfig, resolve_asset
from rsatalker_core.device import resolve_device
from rsatalker_core.head.flame import FlameModel
from rsatalker_core.render import DEFAULT_BATCH_FRAMES, rasterize_frames, resolve_backend
from rsatalker_core.render.camera import default_camera
from rsatalker_core.errors import RelationshipError, RenderError
from rsatalker_core.relationship import Relationship


def render_motion(
    flame: FlameModel,
    avatar: GaussianAvatar,
    motion: Tensor,  # [N, 56]
    viewmats: Tensor,  # [N, 4, 4] or [1, 4, 4]
    Ks: Tensor,  # [N, 3, 3] or [1, 3, 3]
    width: int,
    height: int,
    background: Optional[Tensor] = None,  # [3]
    offsets: Optional[Tensor] = None,  # [N, F, 3]
    backend: str = "auto",
    batch_frames: int = DEFAULT_BATCH_FRAMES,
    eye_pose: Optional[Tensor] = None,  # [N, 6]
) -> Tensor:
    """Render ``N`` frames of FLAME motion, one camera each (differentiable).

    FLAME (:meth:`FlameModel.forward_motion`) → posed vertices → the avatar's Gaussians on
    their triangles, each anchor moved by its ``c`` (RSATalker §3.3) → rasterizer
    (:func:`rsatalker_core.render.rasterize_frames`: on the gsplat backend, batched gsplat
    calls of ``batch_frames`` frames; on the numba / torch backends, one call per frame).
    Gradients flow into ``motion``, ``offsets`` and the avatar's parameters.

    Args:
        flame: the FLAME layer the avatar is bound to.
        avatar: the Gaussian avatar (``num_triangles == flame.faces.shape[0]``).
        motion: ``[exp 50 | jaw 3 | head 3]`` per frame (radians for the rotations). [N, 56]
        viewmats, Ks: world-to-camera matrices and intrinsics, per frame or one for all.
            [N or 1, 4, 4], [N or 1, 3, 3]
        width, height: image size, pixels.
        background: RGB in [0, 1] behind the head; ``None`` = black. [3]
        offsets: per-anchor offsets ``c``, metres (:class:`RelationshipOffsets`); ``None``
            = none. [N, F, 3]
        backend: rasterizer backend (``render.backend``).
        batch_frames: most frames per gsplat call (GPU memory bound; CPU backends ignore it).
        eye_pose: gaze per frame, left | right eye axis-angle (radians); ``None`` = eyes at
            rest (the motion model predicts no gaze; the face tracker does). [N, 6]

    Returns:
        ``rgb [N, H, W, 3]`` in [0, 1] up to rounding (not clamped: gradients pass everywhere).

    Raises:
        RenderError: shapes that do not fit (see :func:`rsatalker_core.render.rasterize` and
            :meth:`GaussianAvatar.forward`); non-float32 Gaussians on the gsplat backend.
        ValueError: ``motion`` is not ``[N, 56]``.
    """
    if motion.dim() != 2 or motion.shape[-1] != MOTION_DIM:
        raise ValueError(f"motion must be [N, {MOTION_DIM}], got {list(motion.shape)}")
    verts = flame.forward_motion(motion, eye_pose=eye_pose).to(avatar.means_local.dtype)  # [N, V, 3]
    g = avatar(verts, flame.faces, offsets)
    bg = None if background is None else background.to(verts)[None]
    if motion.shape[0] == 0:
        return motion.new_zeros(0, height, width, 3)
    rgb, _ = rasterize_frames(
        g["means"], g["quats"], g["scales"], g["opacities"], g["colors"], viewmats, Ks,
        width, height, backgrounds=bg, backend=backend, batch_frames=batch_frames,
    )
    return rgb


def batch_cameras(
    cam: Optional[Tensor],  # [B, T, 3]
    cam_valid: Optional[Tensor],  # [B] bool
    default_viewmat: Tensor,  # [1, 4, 4]
    default_K: Tensor,  # [1, 3, 3]
    num_frames: int,
    width: int,
    height: int,
) -> Tuple[Tensor, Tensor]:
    """Per-frame cameras of a training batch: DualTalk's weak-perspective ``cam``
    (:func:`~rsatalker_core.data.triplets.weak_perspective_camera`) where ``cam_valid``,
    else the default camera.

    Returns:
        ``(viewmats [B * T, 4, 4], Ks [B * T, 3, 3])``, frames in batch-major order.
    """
    if cam is None or cam_valid is None:
        B = 1 if cam is None else cam.shape[0]
        n = B * num_frames
        return default_viewmat.expand(n, 4, 4), default_K.expand(n, 3, 3)
    from rsatalker_core.data.triplets import weak_perspective_camera  # data -> cv2: only when needed

    B = cam.shape[0]
    view, K = weak_perspective_camera(cam.to(default_viewmat), width, height)  # [B, T, ...]
    valid = cam_valid.to(default_viewmat.device).bool()[:, None, None, None]
    view = torch.where(valid, view, default_viewmat[None].expand(B, num_frames, 4, 4))
    K = torch.where(valid, K, default_K[None].expand(B, num_frames, 3, 3))
    return view.reshape(-1, 4, 4), K.reshape(-1, 3, 3)


class AvatarRenderer:
    """FLAME motion (+ relationship) → RGB images, for inference (see the module docstring).

    On CPU (numba / torch backends) frames are posed and rasterized one at a time, so a
    frame's pixels do not depend on which frames it is rendered with (batched FLAME / MLP
    products round differently): the live render node, which gets one frame per message,
    and ``rsatalker generate`` give identical pixels. On CUDA with the gsplat backend,
    ``batch_frames`` frames are posed, offset (each with its own relationship and time) and
    rasterized together in one gsplat call; they can differ from a one-frame render by float
    rounding only (measured by ``make gpu-check``: benchmarks/results_gpu.md).

    Args:
        cfg: full config (``flame``, ``avatar``, ``render`` sections are used).
        device: overrides ``cfg.device``.
        batch_frames: frames per batched gsplat call on CUDA (GPU memory bound).

    Attributes:
        avatar: the loaded :class:`GaussianAvatar`; ``avatar.offsets`` is its relationship
            offsets module, or ``None`` (then ``c = 0`` for every relationship).

    Raises:
        CheckpointError: the avatar file is missing/corrupt or bound to another mesh.
        FlameModelError: ``flame.model_path`` names an unusable FLAME file.
        RenderError: ``batch_frames < 1``.
    """

    def __init__(self, cfg: RsatalkerConfig, device=None, batch_frames: int = DEFAULT_BATCH_FRAMES):
        if int(batch_frames) < 1:
            raise RenderError(f"AvatarRenderer: batch_frames must be >= 1, got {batch_frames}")
        self.batch_frames = int(batch_frames)
        self.cfg = cfg
        self.device = resolve_device(cfg.device if device is None else device)
        self.flame = FlameModel(cfg.flame).to(self.device).eval()
        self.avatar = GaussianAvatar.load(
            resolve_asset(cfg.avatar.checkpoint), map_location=self.device,
            num_triangles=int(self.flame.faces.shape[0]),
        )
        self.avatar.eval()
        self.viewmat, self.K = default_camera(cfg.render, self.device)
        self.background = torch.tensor(cfg.render.background, dtype=torch.float32, device=self.device)

    @property
    def size(self) -> tuple:
        """``(height, width)`` of the images, pixels."""
        return (self.cfg.render.height, self.cfg.render.width)

    def frames_per_call(self) -> int:
        """Frames posed and rasterized together: ``batch_frames`` when ``render.backend``
        resolves to gsplat (CUDA) for inference, else 1.

        Raises:
            RenderError: as :func:`~rsatalker_core.render.resolve_backend`.
        """
        which = resolve_backend(self.cfg.render.backend, self.device, needs_grad=False)
        return self.batch_frames if which == "gsplat" else 1

    def warmup(self) -> float:
        """Render one neutral frame and drop it, so that the first real frame does not pay
        one-off costs: numba compiling (or loading from its cache) the binding and rasterizer
        kernels, about 5 s on a machine's first run (or after an edit of those modules), far
        longer when a busy CPU shares it with other threads; ~0.5 s from the cache. Live
        callers (the ROS render node) call it before their stream starts.

        Returns:
            seconds it took (wall).

        Raises:
            RenderError: the configured backend cannot render on this device.
        """
        t0 = time.perf_counter()
        self.render(np.zeros(MOTION_DIM, np.float32))
        return time.perf_counter() - t0

    @torch.no_grad()
    def render(
        self,
        motion: np.ndarray,  # [56] or [T, 56]
        relationship: Union[RelationshipLike, Sequence[RelationshipLike]] = None,
        frame_index: Union[int, Sequence[int]] = 0,
        eye_pose: Optional[np.ndarray] = None,  # [6] or [T, 6]
    ) -> np.ndarray:
        """Render FLAME motion to RGB through :func:`render_motion`.

        Args:
            motion: ``[56]`` or ``[T, 56]`` ``[exp | jaw | head]`` (radians).
            relationship: the relationship the motion was generated under, one for all
                frames or one per frame (name, axis form or :class:`Relationship`);
                ``None`` / ``""`` = unknown (``c = 0``). With an avatar that carries
                offsets, they are always applied for it.
            frame_index: index of the first frame since the clip / stream started, or one
                index per frame; time ``t = index / 25`` s for the offsets.
            eye_pose: ``[6]`` or ``[T, 6]`` gaze, left | right eye axis-angle (radians);
                ``None`` = eyes at rest.

        Returns:
            ``[H, W, 3]`` or ``[T, H, W, 3]`` uint8 RGB.

        Raises:
            RelationshipError: an unknown relationship, or per-frame lists of another length.
            ValueError: ``motion`` is not ``[56]`` / ``[T, 56]``, or ``eye_pose`` not ``[6]`` /
                ``[T, 6]``.
        """
        m = np.asarray(motion, dtype=np.float32)
        single = m.ndim == 1
        if m.ndim not in (1, 2) or m.shape[-1] != MOTION_DIM:
            raise ValueError(f"motion must be [{MOTION_DIM}] or [T, {MOTION_DIM}], got {list(m.shape)}")
        m = torch.as_tensor(m.reshape(-1, MOTION_DIM), device=self.device)
        T = len(m)
        eye = None
        if eye_pose is not None:
            e = np.asarray(eye_pose, dtype=np.float32)
            if e.shape not in ((6,), (T, 6)) or not np.isfinite(e).all():
                raise ValueError(f"eye_pose must be finite [6] or [{T}, 6], got {list(e.shape)}")
            eye = torch.as_tensor(np.broadcast_to(e, (T, 6)).copy(), device=self.device)
        rels = list(relationship) if _is_per_frame(relationship) else [relationship] * T
        idx = (
            [int(frame_index) + i for i in range(T)] if np.ndim(frame_index) == 0 else [int(i) for i in frame_index]
        )
        if len(rels) != T or len(idx) != T:
            raise RelationshipError(f"{len(rels)} relationships and {len(idx)} frame indices for {T} frames")
        step = self.frames_per_call()  # 1 on CPU, batch_frames with gsplat: see the class docstring
        frames = []
        for s in range(0, T, step):
            n = min(step, T - s)
            offsets = None
            if self.avatar.offsets is not None:  # each frame its own relationship and time
                offsets = (
                    self.avatar.offsets.for_frames(rels[s], idx[s], 1) if n == 1
                    else self.avatar.offsets.for_frames(rels[s : s + n], idx[s : s + n], n)
                )
            rgb = render_motion(
                self.flame, self.avatar, m[s : s + n], self.viewmat, self.K, self.cfg.render.width,
                self.cfg.render.height, self.background, offsets, self.cfg.render.backend, batch_frames=step,
                eye_pose=None if eye is None else eye[s : s + n],
            )
            frames.append((rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy())
        out = np.concatenate(frames)
        return out[0] if single else out

    def render_iter(
        self,
        motion: np.ndarray,  # [T, 56]
        relationship: Union[RelationshipLike, Sequence[RelationshipLike]] = None,
        batch: Optional[int] = None,
        frame_index: int = 0,
    ) -> Iterable[np.ndarray]:
        """Yield the ``[H, W, 3]`` frames of :meth:`render` a few at a time (progress bars).

        ``relationship`` is one for all frames or one per frame; ``frame_index`` is the
        index of ``motion[0]``; ``batch`` frames are rendered per :meth:`render` call
        (``None``: ``batch_frames`` with gsplat on CUDA, so each chunk is one gsplat call;
        8 on CPU). Memory stays bounded by ``batch`` frames whatever the clip length.
        """
        if batch is None:
            step = self.frames_per_call()
            batch = step if step > 1 else 8
        per_frame = _is_per_frame(relationship)
        rels = list(relationship) if per_frame else None
        for s in range(0, len(motion), batch):
            rel = rels[s : s + batch] if per_frame else relationship
            for frame in self.render(motion[s : s + batch], rel, frame_index=frame_index + s):
                yield frame


def _is_per_frame(relationship) -> bool:
    """True for a sequence of per-frame relationships (not one name / Relationship / None)."""
    return not (relationship is None or isinstance(relationship, (str, Relationship)))
