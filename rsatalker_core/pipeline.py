"""The model stack assembled from a config: speech → motion → FLAME → Gaussians → pixels.

* :class:`MotionModel` (:mod:`rsatalker_core.motion_model`) — frozen speech encoder +
  speaker–listener motion generator.
* :class:`AvatarRenderer` (:mod:`rsatalker_core.renderer`) — FLAME layer + Gaussian avatar +
  one rasterizer.
"""

from rsatalker_core.motion_model import MOTION_CKPT_FORMAT, MotionModel
from rsatalker_core.renderer import AvatarRenderer

__all__ = ["MotionModel", "AvatarRenderer", "MOTION_CKPT_FORMAT"]
