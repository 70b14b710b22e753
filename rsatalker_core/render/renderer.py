"""FLAME motion → RGB: the FLAME layer, the Gaussian avatar bound to it, one rasterizer."""

from __future__ import annotations

from typing import Iterable, Optional, Union

import numpy as np
import torch

from rsatalker_core.avatar.gaussians import GaussianAvatar
from rsatalker_core.config import FPS, MOTION_DIM, RsatalkerConfig, resolve_asset
from rsatalker_core.device import resolve_device
from rsatalker_core.errors import CheckpointError
from rsatalker_core.head.flame import FlameModel
from rsatalker_core.render import rasterize
from rsatalker_core.render.camera import default_camera
from rsatalker_core.relationship import Relationship, relationship_tensors


class AvatarRenderer:
    """FLAME motion → image: FLAME layer, Gaussian avatar bound to it, one rasterizer.

    Args:
        cfg: full config (``flame``, ``avatar``, ``render`` sections are used).
        device: overrides ``cfg.device``.
        social: the motion model's socially-aware module; when given, its Gaussian
            offsetnet adds the relationship's per-anchor corrections ``c`` (§3.3).

    Raises:
        CheckpointError: the avatar file is missing/corrupt or bound to another mesh.
        FlameModelError: ``flame.model_path`` names an unusable FLAME file.
    """

    def __init__(self, cfg: RsatalkerConfig, device=None, social=None):
        self.cfg = cfg
        self.device = resolve_device(cfg.device if device is None else device)
        self.flame = FlameModel(cfg.flame).to(self.device).eval()
        self.avatar = GaussianAvatar.load(resolve_asset(cfg.avatar.checkpoint), map_location=self.device)
        self.avatar.to(self.device).eval()
        n_faces = int(self.flame.faces.shape[0])
        if int(self.avatar.binding.max()) >= n_faces:
            raise CheckpointError(
                f"{cfg.avatar.checkpoint}: avatar is bound to triangles beyond the FLAME mesh's {n_faces}"
            )
        self.viewmat, self.K = default_camera(cfg.render, self.device)
        self.background = torch.tensor(cfg.render.background, dtype=torch.float32, device=self.device)[None]
        self.social = social

    @property
    def size(self) -> tuple:
        return (self.cfg.render.height, self.cfg.render.width)

    @torch.no_grad()
    def render(
        self,
        motion: np.ndarray,  # [56] or [T, 56]
        relationship: Optional[Union[str, Relationship]] = None,
        frame_index: Optional[int] = None,
    ) -> np.ndarray:
        """Render FLAME motion to RGB.

        Args:
            motion: ``[56]`` or ``[T, 56]`` ``[exp | jaw | head]`` (radians).
            relationship: with a ``social`` module, selects the Gaussian offsets.
            frame_index: index of the first frame (time ``t = index / 25`` s for offsets).

        Returns:
            ``[H, W, 3]`` or ``[T, H, W, 3]`` uint8 RGB.
        """
        m = np.asarray(motion, dtype=np.float32)
        single = m.ndim == 1
        m = torch.as_tensor(m.reshape(-1, MOTION_DIM), device=self.device)
        verts = self.flame.forward_motion(m)  # [T, V, 3]
        offsets = None
        if self.social is not None and relationship is not None:
            blood, equal = relationship_tensors([relationship], self.device)
            t0 = 0 if frame_index is None else frame_index
            t = (torch.arange(len(m), device=self.device, dtype=torch.float32) + t0) / FPS
            q = self.social.query(blood, equal).expand(len(m), -1)
            offsets = self.social.gaussian_offsets(q, t)  # [T, F, 3]
        g = self.avatar(verts, self.flame.faces, offsets)
        frames = []
        for i in range(len(m)):
            rgb, _ = rasterize(
                g["means"][i], g["quats"][i], g["scales"][i], g["opacities"], g["colors"],
                self.viewmat, self.K, self.cfg.render.width, self.cfg.render.height,
                backgrounds=self.background, backend=self.cfg.render.backend,
            )
            frames.append((rgb[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy())
        out = np.stack(frames)
        return out[0] if single else out

    def render_iter(self, motion: np.ndarray, relationship=None, batch: int = 8) -> Iterable[np.ndarray]:
        """Yield ``[H, W, 3]`` frames of ``motion [T, 56]`` a few at a time (for progress bars)."""
        for s in range(0, len(motion), batch):
            for frame in self.render(motion[s : s + batch], relationship, frame_index=s):
                yield frame
