"""Fitting a Gaussian avatar's appearance to one frontal portrait (builds the default avatar).

rsatalker ships a default avatar so that everything renders a face out of the box. No
multi-view capture of a person can ship, so the default is fitted to a public-domain
portrait a Python package carries (docs/assets.md §5): scikit-image's ``data.astronaut()``
(NASA, Eileen Collins) or matplotlib's ``grace_hopper.jpg`` (US Navy).

Steps (:func:`fit_avatar`):

1. Pose the FLAME layer (the stand-in head unless an official model is configured) as the
   photo's face is posed (:func:`portrait_motion`: the jaw opening and expression the photo
   shows, e.g. a smile with the teeth apart; neutral unless given) and view it with the
   default camera (:func:`default_camera`). The Gaussians are bound to the triangles, so the
   photo's lips are painted onto the lips and its teeth into the mouth, and the avatar at
   rest has a closed, neutral mouth.
2. Align the photo to the head: a similarity transform (scale, rotation, shift) maps the
   photo's pupils, mouth corners and nose tip onto the projections of the mesh's
   landmark vertices (least squares, OpenCV ``estimateAffinePartial2D``).
3. Allocate Gaussians: visible triangles get about one Gaussian per
   ``px_per_gaussian`` pixels of their projected area (capped), hidden ones one each, so
   the face gets detail within ``max_gaussians``.
4. Initialise colours by projecting each visible Gaussian into the aligned photo; hidden
   Gaussians (sides, back of the head) take the mean colour of the 4 nearest visible ones,
   and those that only an open jaw reveals (the mouth interior) a dark mouth colour.
5. Refine the visible Gaussians' colours, scales and local positions with Adam through the
   differentiable rasterizer, loss ``(1 - w) L1 + w (1 - SSIM)`` inside the head's
   silhouette (RSATalker stage 2 uses 0.8 L1 + 0.2 D-SSIM), plus a pull of the local means
   back to their start. Hidden Gaussians keep their initial colours.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import Tensor

from rsatalker_core.metrics.image import ssim
from rsatalker_core.avatar.gaussians import GaussianAvatar
from rsatalker_core.config import EXP_SLICE, JAW_SLICE, MOTION_DIM, RenderConfig
from rsatalker_core.errors import ConfigError
from rsatalker_core.render import rasterize
from rsatalker_core.render.camera import default_camera

#: Landmarks used for the alignment, in this order. "left" is the head's left (+x), which
#: appears on the image's right.
LANDMARK_NAMES = ("pupil_left", "pupil_right", "mouth_corner_left", "mouth_corner_right", "nose_tip")

#: Built-in portraits: loader and hand-placed landmark pixels (x, y) in the original image.
_PORTRAITS: Dict[str, Dict] = {
    "astronaut": {
        "landmarks": [[247.0, 103.5], [206.5, 101.0], [246.0, 141.0], [202.5, 140.5], [225.0, 125.0]],
        "source": "scikit-image data.astronaut() (NASA, public domain)",
        # The photo's pose: a smile (stand-in expression 1) with the teeth apart. Chosen among
        # jaw 0.06 / 0.08 / 0.1 rad by the tracker's closed loop on the validation motion
        # (docs/assets.md §5).
        "jaw": 0.06,
        "expression": [0.0, 1.0],
    },
    "grace_hopper": {
        "landmarks": [[303.5, 186.0], [221.5, 189.0], [287.0, 278.0], [223.0, 277.0], [266.0, 238.0]],
        "source": "matplotlib sample_data/grace_hopper.jpg (US Navy, public domain)",
    },
}


#: Colour logits stay within +-this (sigmoid 0.011 .. 0.989).
COLOR_LOGIT_MAX = 4.5


@dataclass
class AvatarFitConfig:
    # "astronaut" (scikit-image), "grace_hopper" (matplotlib) or a path to an RGB image.
    portrait: str = "astronaut"
    # For a portrait given by path: pixel (x, y) of LANDMARK_NAMES, in that order.
    landmarks: List[List[float]] = field(default_factory=list)
    # The face's pose in the photo (portrait_motion): jaw opening (radians, FLAME jaw
    # axis-angle x) and the first expression coefficients. None: the built-in portrait's
    # own (_PORTRAITS), else neutral.
    portrait_jaw: Optional[float] = None
    portrait_expression: Optional[List[float]] = None
    # For an official FLAME model: vertex index of each of LANDMARK_NAMES (the stand-in
    # head knows its own).
    mesh_landmarks: List[int] = field(default_factory=list)
    # Fit resolution and camera (the default avatar uses RenderConfig's defaults).
    render: RenderConfig = field(default_factory=RenderConfig)
    # Upper bound on the number of Gaussians (CPU rendering cost grows with it).
    max_gaussians: int = 20000
    # Most Gaussians any one triangle gets.
    max_per_triangle: int = 8
    # In-plane standard deviation of a Gaussian as a fraction of its triangle's size k
    # (divided by sqrt(Gaussians on the triangle)). Rendering cost grows with its square.
    scale: float = 0.42
    # The refinement keeps each log-scale within +-this of its start.
    max_log_scale_change: float = 0.5
    # Adam steps of the appearance refinement.
    iterations: int = 150
    # Learning rates: colour logits, log-scales, local means (units of triangle size k).
    lr_color: float = 0.05
    lr_scale: float = 0.01
    lr_mean: float = 0.002
    # Weight of (1 - SSIM) in the image loss (RSATalker: 0.2).
    ssim_weight: float = 0.2
    # Weight of the pull of local means back to their initial positions.
    mean_reg: float = 0.01
    # Colour of the mouth interior (seen when the jaw opens), RGB in [0, 1].
    mouth_color: List[float] = field(default_factory=lambda: [0.35, 0.1, 0.1])
    seed: int = 0


def load_portrait(cfg: AvatarFitConfig) -> Tuple[np.ndarray, np.ndarray, str]:
    """The portrait as float32 RGB ``[H, W, 3]`` in [0, 1], its landmark pixels ``[5, 2]``
    (``LANDMARK_NAMES`` order) and a line naming its source.

    Raises:
        ConfigError: an unknown built-in name, a missing/unreadable image, a missing
            package for a built-in portrait, or a path given without 5 landmarks.
    """
    name = cfg.portrait
    if name == "astronaut":
        try:
            from skimage import data
        except ImportError as exc:
            raise ConfigError("portrait 'astronaut' needs scikit-image (pip install scikit-image)") from exc
        rgb = data.astronaut()
    elif name == "grace_hopper":
        try:
            from matplotlib import cbook
        except ImportError as exc:
            raise ConfigError("portrait 'grace_hopper' needs matplotlib (pip install matplotlib)") from exc
        bgr = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        bgr = cv2.imread(name, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ConfigError(f"portrait image not found or unreadable: {name}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if name in _PORTRAITS and not cfg.landmarks:
        lm, source = _PORTRAITS[name]["landmarks"], _PORTRAITS[name]["source"]
    else:
        lm, source = cfg.landmarks, name
    lm = np.asarray(lm, dtype=np.float64)
    if lm.shape != (len(LANDMARK_NAMES), 2):
        raise ConfigError(
            f"portrait {name}: landmarks must give (x, y) pixels of {', '.join(LANDMARK_NAMES)}, got shape {lm.shape}"
        )
    return rgb.astype(np.float32) / 255.0, lm, source


def portrait_motion(cfg: AvatarFitConfig, standin: bool = True) -> Tensor:
    """The motion ``[1, 56]`` the mesh takes to match the photo: jaw opening
    ``cfg.portrait_jaw`` (radians) and expression ``cfg.portrait_expression`` (the first
    coefficients), or the built-in portrait's own when those are None; zeros otherwise.
    A built-in portrait's expression is the stand-in head's (expression 1 is its smile), so
    it applies only when ``standin``; on an official FLAME give ``portrait_expression``.

    Raises:
        ConfigError: more expression coefficients than the motion has, or a non-finite value.
    """
    known = _PORTRAITS.get(cfg.portrait, {})
    jaw = cfg.portrait_jaw if cfg.portrait_jaw is not None else known.get("jaw", 0.0)
    exp = cfg.portrait_expression
    if exp is None:
        exp = known.get("expression", []) if standin else []
    n_exp = EXP_SLICE.stop - EXP_SLICE.start
    if len(exp) > n_exp:
        raise ConfigError(f"portrait_expression has {len(exp)} coefficients, the motion has {n_exp}")
    motion = torch.zeros(1, MOTION_DIM)
    motion[0, JAW_SLICE.start] = float(jaw)
    motion[0, EXP_SLICE.start:EXP_SLICE.start + len(exp)] = torch.as_tensor([float(e) for e in exp])
    if not torch.isfinite(motion).all():
        raise ConfigError(f"portrait pose must be finite: jaw {jaw}, expression {list(exp)}")
    return motion


def mesh_landmark_ids(flame, cfg: AvatarFitConfig) -> List[int]:
    """Vertex indices of ``LANDMARK_NAMES`` on the FLAME layer's mesh.

    Raises:
        ConfigError: an official FLAME model without ``cfg.mesh_landmarks``.
    """
    if cfg.mesh_landmarks:
        if len(cfg.mesh_landmarks) != len(LANDMARK_NAMES):
            raise ConfigError(
                f"mesh_landmarks must list {len(LANDMARK_NAMES)} vertex ids ({', '.join(LANDMARK_NAMES)})"
            )
        return [int(i) for i in cfg.mesh_landmarks]
    if not getattr(flame, "is_standin", False):
        raise ConfigError(
            f"{getattr(flame, 'source', 'FLAME')}: fitting to an official FLAME model needs mesh_landmarks "
            f"(vertex ids of {', '.join(LANDMARK_NAMES)})"
        )
    from rsatalker_core.head.standin import standin_landmarks

    lm = standin_landmarks()
    return [lm[n] for n in LANDMARK_NAMES]


def project(points: Tensor, viewmat: Tensor, K: Tensor) -> Tuple[Tensor, Tensor]:
    """Pixels ``[..., 2]`` and camera depth ``[...]`` of world ``points [..., 3]``."""
    pc = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    uv = pc @ K.T
    return uv[..., :2] / uv[..., 2:3], pc[..., 2]


def align_portrait(image: np.ndarray, src: np.ndarray, dst: np.ndarray, width: int, height: int) -> np.ndarray:
    """Warp ``image`` by the least-squares similarity taking ``src [L, 2]`` to ``dst [L, 2]``.

    Returns:
        ``[height, width, 3]`` float32; pixels from outside the photo repeat its border.
    """
    # RANSAC with an unbounded threshold keeps every point; OpenCV then refines the
    # similarity by Levenberg-Marquardt on all of them, i.e. least squares.
    M, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.RANSAC,
                                       ransacReprojThreshold=1e9, refineIters=50)
    if M is None:
        raise ConfigError("portrait landmarks are degenerate: no similarity transform fits them")
    # cv2 pixel centres are at integers, ours at +0.5: shift in and out.
    shift = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    M3 = np.linalg.inv(shift) @ np.vstack([M, [0, 0, 1]]) @ shift
    return cv2.warpAffine(image, M3[:2], (width, height), flags=cv2.INTER_AREA if M3[0, 0] < 1 else cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE).clip(0.0, 1.0)


def _render(avatar_out: Dict[str, Tensor], viewmat: Tensor, K: Tensor, W: int, H: int, colors: Optional[Tensor] = None,
            background: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    c = avatar_out["colors"] if colors is None else colors
    rgb, alpha = rasterize(avatar_out["means"][0], avatar_out["quats"][0], avatar_out["scales"][0],
                           avatar_out["opacities"], c, viewmat[None], K[None], W, H,
                           None if background is None else background[None], backend="torch")
    return rgb[0], alpha[0]


@torch.no_grad()
def _visibility(avatar: GaussianAvatar, verts: Tensor, faces: Tensor, viewmat: Tensor, K: Tensor, W: int, H: int,
                tol: float = 0.002) -> Tuple[Tensor, Tensor, Tensor]:
    """Per Gaussian: visible (unoccluded, in frame, facing the camera), its pixel and the
    rendered depth map ``[H, W]``."""
    out = avatar(verts, faces)
    uv, z = project(out["means"][0], viewmat, K)
    zcol = (out["means"][0] @ viewmat[2, :3] + viewmat[2, 3])[:, None]
    dsum, alpha = _render(out, viewmat, K, W, H, colors=zcol)
    depth = (dsum[..., 0] / alpha[..., 0].clamp_min(1e-6))
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    px = uv[:, 0].long().clamp(0, W - 1)
    py = uv[:, 1].long().clamp(0, H - 1)
    vis = inside & (alpha[py, px, 0] > 0.5) & (z <= depth[py, px] + tol)
    return vis, uv, depth


def allocate(flame_verts: Tensor, faces: Tensor, viewmat: Tensor, K: Tensor, W: int, H: int,
             max_gaussians: int, max_per_triangle: int) -> Tensor:
    """Gaussians per triangle ``[F]``: visible triangles in proportion to their projected
    area (one per ``a`` pixels, ``a`` chosen so the total is about ``max_gaussians``,
    at most ``max_per_triangle``), hidden ones one each."""
    n_faces = faces.shape[0]
    probe = GaussianAvatar.from_mesh(flame_verts[0], faces)
    vis, _, _ = _visibility(probe, flame_verts, faces, viewmat, K, W, H)
    uv, _ = project(flame_verts[0], viewmat, K)
    a, b, c = uv[faces[:, 0]], uv[faces[:, 1]], uv[faces[:, 2]]
    area = 0.5 * ((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]).abs()
    area = torch.where(vis, area, torch.zeros_like(area))
    budget = max_gaussians - n_faces
    if budget <= 0:
        return torch.ones(n_faces, dtype=torch.long)
    lo, hi = 1e-3, 1e4  # pixels per Gaussian: bisect so the total fits the budget
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        extra = (torch.floor(area / mid).clamp(0, max_per_triangle - 1)).sum()
        lo, hi = (mid, hi) if extra > budget else (lo, mid)
    return 1 + torch.floor(area / hi).clamp(0, max_per_triangle - 1).long()


def image_loss(render: Tensor, target: Tensor, mask: Tensor, ssim_weight: float) -> Tensor:
    """``(1 - w) L1 + w (1 - SSIM)`` of ``render`` vs ``target`` (``[H, W, 3]``) inside
    ``mask [H, W, 1]``: outside it the target is replaced by the render (no loss there)."""
    tgt = mask * target + (1.0 - mask) * render.detach()
    l1 = (render - tgt).abs().sum() / (3.0 * mask.sum().clamp_min(1.0))
    if ssim_weight <= 0:
        return l1

    s = ssim(render, tgt, data_range=1.0)  # the project's one SSIM (rsatalker_core.metrics.image)
    return (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - s)


def psnr(render: Tensor, target: Tensor, mask: Tensor) -> float:
    """PSNR in dB over the pixels of ``mask [H, W, 1]`` (images in [0, 1])."""
    mse = ((render - target) ** 2 * mask).sum() / (3.0 * mask.sum().clamp_min(1.0))
    return float(10.0 * torch.log10(1.0 / mse.clamp_min(1e-12)))


def fit_steps(avatar: GaussianAvatar, verts: Tensor, faces: Tensor, target: Tensor, mask: Tensor,
              viewmat: Tensor, K: Tensor, cfg: AvatarFitConfig, iterations: int,
              progress: Optional[Callable[[int, float], None]] = None,
              trainable: Optional[Tensor] = None) -> List[float]:
    """Adam on colours, log-scales and local means against ``target [H, W, 3]`` inside
    ``mask [H, W, 1]``.

    Args:
        trainable: ``[N]`` bool, the Gaussians allowed to change (default: all). Hidden
            Gaussians only touch the image through silhouette fringes; left free they drift
            to extreme colours that show once the head turns or the jaw opens.

    Returns:
        The loss of every step.
    """
    H, W = target.shape[:2]
    mean0 = avatar.means_local.detach().clone()
    scale0 = avatar.log_scales.detach().clone()
    hooks = []
    if trainable is not None:
        keep = trainable.to(avatar.means_local.dtype)[:, None]
        params = (avatar.colors_logit, avatar.log_scales, avatar.means_local)
        hooks = [p.register_hook(lambda g: g * keep) for p in params]
    opt = torch.optim.Adam([
        {"params": [avatar.colors_logit], "lr": cfg.lr_color},
        {"params": [avatar.log_scales], "lr": cfg.lr_scale},
        {"params": [avatar.means_local], "lr": cfg.lr_mean},
    ])
    bg = torch.ones(3, dtype=target.dtype, device=target.device)
    losses = []
    for it in range(iterations):
        opt.zero_grad(set_to_none=True)
        rgb, _ = _render(avatar(verts, faces), viewmat, K, W, H, background=bg)
        loss = image_loss(rgb, target, mask, cfg.ssim_weight)
        loss = loss + cfg.mean_reg * (avatar.means_local - mean0).square().sum(-1).mean()
        loss.backward()
        opt.step()
        with torch.no_grad():  # sizes near their start (cost, no blobs); colours not saturated
            d = cfg.max_log_scale_change
            avatar.log_scales.copy_(torch.maximum(torch.minimum(avatar.log_scales, scale0 + d), scale0 - d))
            avatar.colors_logit.clamp_(-COLOR_LOGIT_MAX, COLOR_LOGIT_MAX)
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(it, losses[-1])
    for h in hooks:
        h.remove()
    return losses


def _inner_mouth(avatar: GaussianAvatar, flame, faces: Tensor, hidden: Tensor, lm_xyz: Tensor, viewmat: Tensor,
                 K: Tensor, W: int, H: int, jaw: float = 0.35) -> Tensor:
    """Gaussians of the mouth interior: hidden in the neutral pose, visible with the jaw
    open by ``jaw`` radians, and between the mouth corners."""
    motion = torch.zeros(1, 56)
    motion[0, 50] = jaw  # JAW_SLICE: rotation about x opens the mouth
    with torch.no_grad():
        open_verts = flame.forward_motion(motion).float()
    vis_open, uv, _ = _visibility(avatar, open_verts, faces, viewmat, K, W, H)
    corners_uv, _ = project(lm_xyz[2:4], viewmat, K)
    x_lo, x_hi = corners_uv[:, 0].min(), corners_uv[:, 0].max()
    return hidden & vis_open & (uv[:, 0] > x_lo) & (uv[:, 0] < x_hi)


@dataclass
class FitResult:
    """What :func:`fit_avatar` produced."""

    avatar: GaussianAvatar
    # Plain-value summary (kept as checkpoint metadata): PSNR, counts, timings, source.
    info: Dict
    # The aligned portrait [H, W, 3] and the silhouette mask [H, W, 1] the loss used.
    target: Tensor
    mask: Tensor
    # Loss of every refinement step.
    losses: List[float]


def fit_avatar(flame, cfg: AvatarFitConfig, progress: Optional[Callable[[int, float], None]] = None) -> FitResult:
    """Build and fit an avatar to ``cfg.portrait`` on ``flame``'s neutral mesh (module doc).

    Args:
        flame: a :class:`rsatalker_core.flame.FlameModel` (on the CPU).
        cfg: the fitting knobs.
        progress: called as ``progress(step, loss)`` after every refinement step.

    Returns:
        :class:`FitResult`; ``info`` holds the masked PSNR (dB) before and after the
        refinement, the numbers of Gaussians, the timing and the source of the portrait.

    Raises:
        ConfigError: see :func:`load_portrait` and :func:`mesh_landmark_ids`.
    """
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    W, H = cfg.render.width, cfg.render.height
    viewmat, K = (t[0] for t in default_camera(cfg.render))
    pose = portrait_motion(cfg, standin=bool(getattr(flame, "is_standin", False)))
    with torch.no_grad():
        verts = flame.forward_motion(pose).float()
    faces = flame.faces.long()

    image, lm_px, source = load_portrait(cfg)
    ids = mesh_landmark_ids(flame, cfg)
    lm_xyz = verts[0, ids]
    dst, _ = project(lm_xyz, viewmat, K)
    target = torch.from_numpy(align_portrait(image, lm_px, dst.numpy().astype(np.float64), W, H))

    counts = allocate(verts, faces, viewmat, K, W, H, cfg.max_gaussians, cfg.max_per_triangle)
    avatar = GaussianAvatar.from_mesh(verts[0], faces, per_triangle=counts, scale=cfg.scale, opacity=0.95)
    vis, uv, _ = _visibility(avatar, verts, faces, viewmat, K, W, H)

    with torch.no_grad():
        means = avatar(verts, faces)["means"][0]
        grid = (uv / torch.tensor([W, H]) * 2.0 - 1.0)[None, None]  # [1, 1, N, 2]
        sampled = F.grid_sample(target.permute(2, 0, 1)[None], grid, align_corners=False,
                                padding_mode="border")[0, :, 0].T  # [N, 3]
        colors = sampled.clone()
        hidden = (~vis).nonzero().squeeze(1)
        if hidden.numel() and vis.any():
            tree = cKDTree(means[vis].numpy())
            _, nn_idx = tree.query(means[hidden].numpy(), k=4)
            colors[hidden] = sampled[vis][torch.from_numpy(nn_idx)].mean(1)
        mouth = _inner_mouth(avatar, flame, faces, ~vis, lm_xyz, viewmat, K, W, H)
        colors[mouth] = torch.tensor(cfg.mouth_color)
        avatar.colors_logit.copy_(torch.logit(colors.clamp(0.02, 0.98)))

    with torch.no_grad():
        _, alpha = _render(avatar(verts, faces), viewmat, K, W, H)
        mask = (alpha > 0.99).float()
        mask = torch.from_numpy(cv2.erode(mask[..., 0].numpy(), np.ones((3, 3), np.uint8)))[..., None]
        rgb0, _ = _render(avatar(verts, faces), viewmat, K, W, H, background=torch.ones(3))
        psnr0 = psnr(rgb0, target, mask)
    t_init = time.perf_counter() - t0

    losses = fit_steps(avatar, verts, faces, target, mask, viewmat, K, cfg, cfg.iterations, progress, trainable=vis)
    with torch.no_grad():
        rgb, _ = _render(avatar(verts, faces), viewmat, K, W, H, background=torch.ones(3))
    info = {
        "portrait": source,
        "mesh": getattr(flame, "source", "unknown"),
        "psnr_init_db": psnr0,
        "psnr_db": psnr(rgb, target, mask),
        "num_gaussians": avatar.num_gaussians,
        "visible_gaussians": int(vis.sum()),
        "iterations": cfg.iterations,
        "final_loss": losses[-1] if losses else float("nan"),
        "seconds": time.perf_counter() - t0,
        "seconds_init": t_init,
        "fit_size": [W, H],
        "portrait_jaw": float(pose[0, JAW_SLICE.start]),
        "portrait_expression": [float(v) for v in pose[0, EXP_SLICE][:10]],
    }
    return FitResult(avatar, info, target, mask, losses)
