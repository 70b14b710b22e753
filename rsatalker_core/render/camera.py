"""Pinhole cameras in gsplat's convention.

Conventions (the same as gsplat's ``rasterization()``):

* ``viewmat [4, 4]`` is world-to-camera, OpenCV axes: x right, y down, z forward (into the
  scene). A point ``p`` maps to camera space as ``R @ p + t`` with ``R = viewmat[:3, :3]``,
  ``t = viewmat[:3, 3]``.
* ``K [3, 3]`` maps camera space to pixels: ``u = fx * x / z + cx``, ``v = fy * y / z + cy``,
  with pixel ``(i, j)`` covering ``[j, j + 1) x [i, i + 1)`` (its centre at ``+0.5``).

The FLAME head faces +z with y up (docs/assets.md §1), so the default camera sits on +z and looks
back at the head.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from rsatalker_core.config import RenderConfig
from rsatalker_core.errors import ConfigError

#: Point the default camera looks at, metres, in FLAME's frame: the middle of the face
#: (between the eyes and the mouth) of both the official FLAME template and the stand-in head.
HEAD_CENTRE: Tuple[float, float, float] = (0.0, 0.0, 0.0)

_VecLike = Union[Tensor, Sequence[float]]


def intrinsics_from_fov(
    fov_deg: float,
    width: int,
    height: int,
    device: Optional[Union[str, torch.device]] = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Pinhole intrinsics from a vertical field of view, square pixels, centred principal point.

    ``fy = fx = (height / 2) / tan(fov / 2)``, ``cx = width / 2``, ``cy = height / 2``.

    Args:
        fov_deg: vertical field of view, degrees, in (0, 180).
        width, height: image size, pixels (> 0).

    Returns:
        ``K [3, 3]``.

    Raises:
        ConfigError: a field of view outside (0, 180) degrees or a non-positive image size.
    """
    if not 0.0 < float(fov_deg) < 180.0:
        raise ConfigError(f"render.fov_deg must be in (0, 180) degrees, got {fov_deg!r}")
    if int(width) <= 0 or int(height) <= 0:
        raise ConfigError(f"render image size must be positive, got {width}x{height}")
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2.0)
    return torch.tensor(
        [[f, 0.0, 0.5 * width], [0.0, f, 0.5 * height], [0.0, 0.0, 1.0]], dtype=dtype, device=device
    )


def look_at(
    eye: _VecLike,  # [3]
    target: _VecLike,  # [3]
    up: _VecLike = (0.0, 1.0, 0.0),  # [3]
) -> Tensor:
    """World-to-camera matrix of a camera at ``eye`` looking at ``target`` (OpenCV axes).

    The camera's z axis points from ``eye`` to ``target``, its x axis to the right of the
    view (``z x up``) and its y axis down (``z x x``), so world ``up`` maps to image up.

    Args:
        eye: camera position, metres. ``[3]``
        target: point at the image centre, metres. ``[3]``
        up: world direction that appears upward in the image. ``[3]``

    Returns:
        ``viewmat [4, 4]`` (world-to-camera), on ``eye``'s device when it is a tensor.

    Raises:
        ConfigError: ``eye == target`` or ``up`` parallel to the viewing direction.
    """
    ref = eye if isinstance(eye, Tensor) else None
    dev = ref.device if ref is not None else None
    dt = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    e, c, u = (torch.as_tensor(v, dtype=dt, device=dev).reshape(3) for v in (eye, target, up))
    fwd = c - e
    if float(fwd.norm()) < 1e-12:
        raise ConfigError(f"look_at: eye {e.tolist()} and target {c.tolist()} coincide")
    fwd = fwd / fwd.norm()
    right = torch.linalg.cross(fwd, u)
    if float(right.norm()) < 1e-9 * max(float(u.norm()), 1e-12):
        raise ConfigError(f"look_at: up {u.tolist()} is parallel to the viewing direction")
    right = right / right.norm()
    down = torch.linalg.cross(fwd, right)
    R = torch.stack([right, down, fwd], dim=0)  # rows: camera axes in world coordinates
    view = torch.eye(4, dtype=dt, device=dev)
    view[:3, :3] = R
    view[:3, 3] = -R @ e
    return view


def default_camera(
    cfg: RenderConfig, device: Optional[Union[str, torch.device]] = None, yaw_deg: float = 0.0
) -> Tuple[Tensor, Tensor]:
    """The avatar camera: on +z at ``cfg.camera_distance`` metres from :data:`HEAD_CENTRE`,
    looking at it with y up, vertical field of view ``cfg.fov_deg``; ``yaw_deg`` orbits it
    about the head's vertical axis (degrees, positive toward +x), e.g. for other views.

    Returns:
        ``(viewmats [1, 4, 4], Ks [1, 3, 3])``, float32 on ``device``.

    Raises:
        ConfigError: non-positive camera distance or image size, or a bad field of view.
    """
    if not float(cfg.camera_distance) > 0.0:
        raise ConfigError(f"render.camera_distance must be > 0 metres, got {cfg.camera_distance!r}")
    centre = torch.tensor(HEAD_CENTRE, dtype=torch.float32)
    d, a = float(cfg.camera_distance), math.radians(float(yaw_deg))
    eye = centre + torch.tensor([d * math.sin(a), 0.0, d * math.cos(a)])
    view = look_at(eye, centre, (0.0, 1.0, 0.0)).to(device)
    K = intrinsics_from_fov(cfg.fov_deg, cfg.width, cfg.height, device=device)
    return view[None], K[None]
