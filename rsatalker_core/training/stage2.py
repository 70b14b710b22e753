"""Training stage 2: the Gaussian head avatar renderer (RSATalker §3.4; docs/method.md §5, §7).

**What is trained.** The Gaussians bound to FLAME triangles (:class:`GaussianAvatar`: local
means, log-scales, rotations, opacities, colours) and, with ``train.stage2.train_offsetnet``,
the socially-aware module's Gaussian offsetnet, which maps (relationship query ``q``, time
``t``) to per-anchor offsets ``c``. The relationship embeddings and the motion socialnet
stay as stage 1 left them (loaded from ``motion.checkpoint`` when set); FLAME is fixed and
the motion comes from the data (tracked FLAME parameters), so no speech is needed.

**Loss** (:func:`renderer_loss`): ``L = L_image + lambda_pos L_pos + lambda_offset L_offset``
with ``L_image = 0.8 L1 + 0.2 D-SSIM`` and the hinge regularisers of
:mod:`rsatalker_core.training.losses` (``eps = 1``), weights from ``train.stage2``.

**Densification** (:class:`~rsatalker_core.training.densify.BindingStrategy`, settings
``train.stage2.densify``): clone / split / prune with binding inheritance and face-local
thresholds. The project's :class:`~rsatalker_core.training.trainer.Trainer` owns the
optimiser, so the stage runs the strategy from a ``torch.optim`` step post-hook that acts
only on the optimiser holding this avatar's parameters: right after every optimiser step,
with the step's gradients still in place (the gradient statistic) — gsplat's
``step_post_backward`` point. Each Gaussian attribute is its own parameter group (its own
learning rate, as GaussianAvatars), which is what gsplat's ops need to extend and prune the
Adam moments.

**Resume.** The checkpoint holds the avatar at its current size (the avatar adopts a
checkpoint's number of Gaussians on load, ``GaussianAvatar.resize_on_load``, keeping its
Parameter objects so the optimiser built before loading stays valid), the optimiser
moments of every Gaussian, and the strategy's running state and step (:meth:`state_dict`),
so a resumed run continues bit for bit on the CPU.

**Cameras.** Items with a DualTalk weak-perspective ``cam`` are rendered through
:func:`~rsatalker_core.data.triplets.weak_perspective_camera`, others through the fixed
default camera (``render.*``).

**Validation.** Frames of ``train.val_split`` (the first ``train.val_max_samples`` items, 0 =
all) rendered in eval mode: mean ``PSNR`` (dB), ``SSIM``, ``L1``, ``num_gaussians``, and the
first ``train.stage2.val_images`` frames as ``prediction | target`` images (TensorBoard).

**Output.** A completed run writes ``<out_dir>/avatar_stage2.pt`` (a
:class:`GaussianAvatar` checkpoint for ``avatar.checkpoint``), ``social_stage2.pt`` (the
socially-aware module's state) and, when ``motion.checkpoint`` was set, ``motion_stage2.pt``
(that motion checkpoint with the trained offsetnet, for ``motion.checkpoint``).

Reusable pieces for stage 3: :func:`render_frames`, :func:`renderer_loss`,
:func:`batch_cameras` and :func:`frame_times`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import weakref
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import Dataset

from rsatalker_core.avatar.gaussians import GaussianAvatar
from rsatalker_core.io.checkpoint import atomic_save, load_checkpoint
from rsatalker_core.config import FPS, MOTION_DIM, RsatalkerConfig, resolve_asset
from rsatalker_core.data.dualtalk import collate_windows
from rsatalker_core.data.triplets import TripletDataset, weak_perspective_camera
from rsatalker_core.device import resolve_device
from rsatalker_core.errors import CheckpointError, ConfigError, DatasetError
from rsatalker_core.head.flame import FlameModel
from rsatalker_core.metrics.image import bhwc_to_bchw, image_metrics
from rsatalker_core.model.motion_model import MOTION_CKPT_FORMAT as _MOTION_CKPT_FORMAT
from rsatalker_core.render import rasterize
from rsatalker_core.render.camera import default_camera
from rsatalker_core.model.social import SociallyAwareModule
from rsatalker_core.training.densify import BindingStrategy
from rsatalker_core.training.losses import image_loss_terms, offset_loss, position_loss
from rsatalker_core.training.trainer import Stage

log = logging.getLogger("rsatalker.train")

FINAL_AVATAR = "avatar_stage2.pt"
FINAL_SOCIAL = "social_stage2.pt"
FINAL_MOTION = "motion_stage2.pt"
#: ``format`` tag of ``social_stage2.pt``.
SOCIAL_CKPT_FORMAT = "rsatalker.social_module"

#: Avatar attribute -> ``train.stage2`` learning-rate field.
AVATAR_LR_FIELDS = {
    "means_local": "lr_means",
    "log_scales": "lr_scales",
    "quats_local": "lr_quats",
    "opacity_logits": "lr_opacity",
    "colors_logit": "lr_colors",
}


# --------------------------------------------------------------------------- reusable pieces
def frame_times(start: Tensor, num_frames: int) -> Tensor:
    """Time of each frame of windows starting at frame ``start [B]``: ``[B, T]`` seconds (25 fps)."""
    t = torch.arange(num_frames, device=start.device, dtype=torch.float32)
    return (start.to(torch.float32)[:, None] + t[None]) / FPS


def batch_cameras(
    cam: Optional[Tensor],  # [B, T, 3]
    cam_valid: Optional[Tensor],  # [B] bool
    default_viewmat: Tensor,  # [1, 4, 4]
    default_K: Tensor,  # [1, 3, 3]
    num_frames: int,
    width: int,
    height: int,
) -> Tuple[Tensor, Tensor]:
    """Per-frame cameras of a batch: weak-perspective where ``cam_valid``, else the default.

    Returns:
        ``(viewmats [B * T, 4, 4], Ks [B * T, 3, 3])``, frames in batch-major order.
    """
    if cam is None or cam_valid is None:
        B = 1 if cam is None else cam.shape[0]
        n = B * num_frames
        return default_viewmat.expand(n, 4, 4), default_K.expand(n, 3, 3)
    B = cam.shape[0]
    view, K = weak_perspective_camera(cam.to(default_viewmat), width, height)  # [B, T, ...]
    valid = cam_valid.to(default_viewmat.device).bool()[:, None, None, None]
    view = torch.where(valid, view, default_viewmat[None].expand(B, num_frames, 4, 4))
    K = torch.where(valid, K, default_K[None].expand(B, num_frames, 3, 3))
    return view.reshape(-1, 4, 4), K.reshape(-1, 3, 3)


def render_frames(
    avatar: GaussianAvatar,
    verts: Tensor,  # [N, V, 3]
    faces: Tensor,  # [F, 3]
    viewmats: Tensor,  # [N, 4, 4]
    Ks: Tensor,  # [N, 3, 3]
    width: int,
    height: int,
    background: Optional[Tensor] = None,  # [3]
    offsets: Optional[Tensor] = None,  # [N, F, 3]
    backend: str = "auto",
) -> Tensor:
    """Render the avatar on ``N`` posed meshes, one camera each (differentiable).

    Args:
        avatar: the Gaussian avatar bound to ``faces``.
        verts: posed FLAME vertices, metres (e.g. ``FlameModel.forward_motion``). [N, V, 3]
        faces: FLAME triangles. [F, 3]
        viewmats, Ks: per-frame world-to-camera matrices and intrinsics. [N, 4, 4], [N, 3, 3]
        width, height: image size, pixels.
        background: RGB in [0, 1] behind the head; ``None`` = black. [3]
        offsets: per-anchor social offsets ``c``, metres; ``None`` = none. [N, F, 3]
        backend: rasterizer backend (``render.backend``).

    Returns:
        ``rgb [N, H, W, 3]`` in [0, 1] (not clamped: gradients pass everywhere).

    Raises:
        RenderError: shapes that do not fit (see :func:`rsatalker_core.render.rasterize`).
    """
    g = avatar(verts, faces, offsets)
    bg = None if background is None else background.to(verts)[None]
    out = []
    for i in range(verts.shape[0]):
        rgb, _ = rasterize(
            g["means"][i], g["quats"][i], g["scales"][i], g["opacities"], g["colors"],
            viewmats[i : i + 1], Ks[i : i + 1], width, height, backgrounds=bg, backend=backend,
        )
        out.append(rgb[0])
    return torch.stack(out)


def renderer_loss(
    avatar: GaussianAvatar,
    verts: Tensor,  # [N, V, 3]
    faces: Tensor,  # [F, 3]
    target: Tensor,  # [N, H, W, 3]
    viewmats: Tensor,  # [N, 4, 4]
    Ks: Tensor,  # [N, 3, 3]
    background: Optional[Tensor] = None,  # [3]
    offsets: Optional[Tensor] = None,  # [N, F, 3]
    lambda_pos: float = 0.01,
    lambda_offset: float = 0.01,
    pos_eps: float = 1.0,
    offset_eps: float = 1.0,
    backend: str = "auto",
) -> Tuple[Tensor, Dict[str, Tensor], Tensor]:
    """Render and score: ``L_image + lambda_pos L_pos + lambda_offset L_offset`` (RSATalker §3.4).

    Stage 3 weights the same terms ``0.5 / 0.01 / 0.01`` and adds ``L_mesh``: call this
    with ``lambda_*`` and scale ``terms["image"]`` as needed (gradients flow into ``verts``
    and ``offsets`` as well as the avatar).

    Args:
        avatar, verts, faces, viewmats, Ks, background, offsets, backend: as
            :func:`render_frames`.
        target: ground-truth frames in [0, 1], H, W >= 11. [N, H, W, 3]
        lambda_pos, lambda_offset: weights of ``L_pos`` / ``L_offset``.
        pos_eps, offset_eps: their tolerances (triangle sizes / metres; paper: 1).

    Returns:
        ``(loss, terms, rgb)``: the scalar loss; detached scalars ``{"image", "l1", "dssim",
        "pos", "offset", "psnr"}``; the rendered ``rgb [N, H, W, 3]``.
    """
    H, W = target.shape[1:3]
    rgb = render_frames(avatar, verts, faces, viewmats, Ks, W, H, background, offsets, backend)
    terms = image_loss_terms(rgb, target)
    l_pos = position_loss(avatar.means_local, pos_eps)
    l_off = offset_loss(offsets, offset_eps) if offsets is not None else rgb.new_zeros(())
    loss = terms["image"] + lambda_pos * l_pos + lambda_offset * l_off
    with torch.no_grad():
        mse = (rgb.clamp(0, 1) - target).pow(2).flatten(1).mean(1).clamp_min(1e-12)
        out = {k: v.detach() for k, v in terms.items()}
        out.update(pos=l_pos.detach(), offset=l_off.detach(), psnr=(-10.0 * torch.log10(mse)).mean())
    return loss, out, rgb


# --------------------------------------------------------------------------- the stage
class RendererModel(nn.Module):
    """What stage 2 checkpoints: the ``avatar`` and the socially-aware module ``social``."""

    def __init__(self, avatar: GaussianAvatar, social: SociallyAwareModule):
        super().__init__()
        self.avatar = avatar
        self.social = social


def _initial_avatar(cfg: RsatalkerConfig, flame: FlameModel) -> GaussianAvatar:
    init = cfg.train.stage2.init_avatar
    faces = flame.faces.long()
    if init == "anchors":
        with torch.no_grad():
            verts = flame.forward_motion(torch.zeros(1, MOTION_DIM, device=faces.device))[0]
        return GaussianAvatar.from_mesh(verts.float().cpu(), faces.cpu())
    return load_bound_avatar(resolve_asset(init or cfg.avatar.checkpoint), faces)


def load_bound_avatar(path: str, faces: Tensor) -> GaussianAvatar:
    """Load an avatar checkpoint and check it is bound to this FLAME mesh.

    Args:
        path: avatar checkpoint (:meth:`GaussianAvatar.save`).
        faces: the FLAME mesh's triangles ``[F, 3]``.

    Raises:
        CheckpointError: unreadable checkpoint, or bound to another number of triangles.
    """
    avatar = GaussianAvatar.load(path)
    if avatar.num_triangles != faces.shape[0]:
        raise CheckpointError(
            f"{path}: avatar is bound to {avatar.num_triangles} triangles, the FLAME mesh has {faces.shape[0]}"
        )
    return avatar


def load_social_weights(social: SociallyAwareModule, path: str) -> None:
    """Load the ``social.*`` weights of a MotionModel checkpoint (stage 1) into ``social``.

    Raises:
        CheckpointError: unreadable checkpoint or weights that do not fit (named).
    """
    data = load_checkpoint(path, _MOTION_CKPT_FORMAT)
    state = {k[len("social."):]: v for k, v in data["state_dict"].items() if k.startswith("social.")}
    # A stage-1 export may leave out the untrained Gaussian offsetnet ("omitted_untrained",
    # scripts/export_default_motion.py): it keeps its initialisation, which stage 2 trains.
    own = social.state_dict()
    for key in data.get("omitted_untrained", []):
        sub = key[len("social."):] if key.startswith("social.") else None
        if sub is not None and sub.startswith("gaussian_offsetnet.") and sub in own:
            state.setdefault(sub, own[sub])
    try:
        social.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: socially-aware module does not match the config ({exc})") from exc


class RendererStage(Stage):
    """Stage 2: trains the Gaussian avatar (and the Gaussian offsetnet); see the module doc.

    Args:
        cfg: the whole configuration (``flame``, ``avatar``, ``render``, ``social``,
            ``motion``, ``data``, ``train`` with ``train.stage2``).
        device: overrides ``cfg.device``.
        train_data: a dataset to train on instead of :class:`TripletDataset` over
            ``data.root`` / ``data.split`` (items as TripletDataset's: ``self_motion [T, 56]``,
            ``frames [T, H, W, 3]``, ``cam [T, 3]``, ``cam_valid``, ``blood``, ``equal``,
            ``start``, ``num_frames``).
        val_data: likewise for validation (default: ``train.val_split`` of ``data.root``).

    Batches: :func:`~rsatalker_core.data.dualtalk.collate_windows` of those items.

    Raises:
        DatasetError: no training frames with video; frames of another size than ``render``.
        CheckpointError: the starting avatar / ``motion.checkpoint`` is unusable.
        ConfigError, TrainingError: bad ``train.stage2`` values.
    """

    name = "renderer"

    def __init__(
        self,
        cfg: RsatalkerConfig,
        device: Optional[Union[str, torch.device]] = None,
        train_data: Optional[Dataset] = None,
        val_data: Optional[Dataset] = None,
    ):
        self.cfg = cfg
        s2 = cfg.train.stage2
        for name in ("lambda_pos", "lambda_offset", "pos_eps", "offset_eps", *AVATAR_LR_FIELDS.values()):
            if not getattr(s2, name) >= 0:
                raise ConfigError(f"train.stage2.{name} must be >= 0, got {getattr(s2, name)!r}")
        self.device = resolve_device(cfg.device if device is None else device)
        self.flame = FlameModel(cfg.flame).to(self.device).eval()
        self.faces = self.flame.faces.long()
        avatar = _initial_avatar(cfg, self.flame)
        avatar.resize_on_load = True
        torch.manual_seed(cfg.seed)
        social = SociallyAwareModule(cfg.social, cfg.motion.d_model, num_anchors=int(self.faces.shape[0]))
        if cfg.motion.checkpoint:
            load_social_weights(social, resolve_asset(cfg.motion.checkpoint))
        for p in social.parameters():
            p.requires_grad_(False)
        if s2.train_offsetnet:
            for p in social.gaussian_offsetnet.parameters():
                p.requires_grad_(True)
        self.model = RendererModel(avatar, social).to(self.device)
        W, H = cfg.render.width, cfg.render.height
        self.viewmat, self.K = default_camera(cfg.render, self.device)
        self.background = torch.tensor(cfg.render.background, dtype=torch.float32, device=self.device)
        self.train_data = train_data if train_data is not None else TripletDataset(cfg.data, W, H, s2.video_ext)
        self.val_data: Optional[Dataset] = None
        if cfg.train.val_every > 0:
            if val_data is not None:
                self.val_data = val_data
            else:
                val_cfg = dataclasses.replace(cfg.data, split=cfg.train.val_split)
                self.val_data = TripletDataset(val_cfg, W, H, s2.video_ext)
        d = s2.densify
        self.strategy: Optional[BindingStrategy] = None
        self.strategy_state: Dict[str, Any] = {}
        if d.enabled:
            fields = {f.name: getattr(d, f.name) for f in dataclasses.fields(d) if f.name != "enabled"}
            self.strategy = BindingStrategy(**fields)
            self.strategy_state = self.strategy.initialize_state(int(self.faces.shape[0]))
        self.densify_step = 0
        self.densify_totals = {"cloned": 0, "split": 0, "pruned": 0}
        self._hook = _register_densify_hook(self)

    @property
    def avatar(self) -> GaussianAvatar:
        return self.model.avatar

    @property
    def social(self) -> SociallyAwareModule:
        return self.model.social

    def close(self) -> None:
        """Remove the optimiser hook (the stage cannot densify afterwards)."""
        self._hook.remove()

    # ------------------------------------------------------------------ Stage API
    def train_dataset(self) -> Dataset:
        return self.train_data

    @property
    def collate_fn(self):
        return collate_windows

    def param_groups(self) -> List[Dict[str, Any]]:
        """One group per Gaussian attribute (``train.stage2.lr_*``; gsplat's ops need each
        alone in its group), plus the offsetnet at ``train.lr`` when trained."""
        s2 = self.cfg.train.stage2
        groups = [
            {"params": [getattr(self.avatar, attr)], "lr": float(getattr(s2, f)), "weight_decay": 0.0}
            for attr, f in AVATAR_LR_FIELDS.items()
        ]
        off = [p for p in self.social.gaussian_offsetnet.parameters() if p.requires_grad]
        if off:
            groups.append({"params": off, "lr": float(self.cfg.train.lr)})
        return groups

    def _prepare(self, batch: Dict[str, Any]) -> Dict[str, Tensor]:
        """Posed vertices, offsets, cameras and targets of the real frames of ``batch``."""
        dev = self.device
        motion = batch["self_motion"].to(dev)  # [B, T, 56]
        B, T = motion.shape[:2]
        frames = batch["frames"].to(dev)
        W, H = self.cfg.render.width, self.cfg.render.height
        if tuple(frames.shape[2:]) != (H, W, 3):
            raise DatasetError(f"frames are {tuple(frames.shape[2:])}, the render size is ({H}, {W}, 3)")
        mask = batch.get("frame_mask")
        keep = (mask.to(dev) if mask is not None else torch.ones(B, T, dtype=torch.bool, device=dev)).reshape(-1)
        with torch.no_grad():
            verts = self.flame.forward_motion(motion).reshape(B * T, -1, 3).float()
        view, K = batch_cameras(batch.get("cam"), batch.get("cam_valid"), self.viewmat, self.K, T, W, H)
        offsets = None
        if self.cfg.train.stage2.train_offsetnet or self.cfg.motion.checkpoint:
            q = self.social.query(batch["blood"].to(dev), batch["equal"].to(dev))
            start = torch.as_tensor(batch.get("start", torch.zeros(B, dtype=torch.long))).to(dev)
            offsets = self.social.gaussian_offsets(q, frame_times(start, T)).reshape(B * T, -1, 3)
            offsets = offsets[keep]
        return {
            "verts": verts[keep], "target": frames.reshape(B * T, H, W, 3)[keep],
            "viewmats": view.to(dev)[keep], "Ks": K.to(dev)[keep], "offsets": offsets,
        }

    def compute(self, batch: Dict[str, Any]) -> Tuple[Tensor, Dict[str, Tensor], Tensor, Tensor]:
        """``(loss, terms, rgb [N, H, W, 3], target [N, H, W, 3])`` of a collated batch."""
        s2 = self.cfg.train.stage2
        x = self._prepare(batch)
        loss, terms, rgb = renderer_loss(
            self.avatar, x["verts"], self.faces, x["target"], x["viewmats"], x["Ks"], self.background,
            x["offsets"], s2.lambda_pos, s2.lambda_offset, s2.pos_eps, s2.offset_eps, self.cfg.render.backend,
        )
        return loss, terms, rgb, x["target"]

    def loss(self, batch: Dict[str, Any]) -> Tuple[Tensor, Dict[str, Any]]:
        """Stage-2 loss of one batch; scalars: the loss terms, ``psnr`` and ``num_gaussians``."""
        loss, terms, _, _ = self.compute(batch)
        terms["num_gaussians"] = float(self.avatar.num_gaussians)
        return loss, terms

    def validate(self) -> Dict[str, Union[float, Tensor]]:
        """Image metrics of the validation frames and ``prediction | target`` images."""
        if self.val_data is None:
            return {}
        n = len(self.val_data)
        if self.cfg.train.val_max_samples > 0:
            n = min(n, self.cfg.train.val_max_samples)
        sums: Dict[str, float] = {}
        count = 0
        out: Dict[str, Union[float, Tensor]] = {}
        n_img = 0
        for i in range(n):
            batch = collate_windows([self.val_data[i]])
            _, _, rgb, target = self.compute(batch)
            rgb = rgb.clamp(0, 1)
            for j in range(rgb.shape[0]):
                m = image_metrics(bhwc_to_bchw(rgb[j : j + 1]), bhwc_to_bchw(target[j : j + 1]))
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                if n_img < self.cfg.train.stage2.val_images:
                    out[f"frame{n_img}"] = torch.cat([rgb[j], target[j]], dim=1).permute(2, 0, 1).cpu()
                    n_img += 1
        out.update({k: v / max(count, 1) for k, v in sums.items()})
        out["num_gaussians"] = float(self.avatar.num_gaussians)
        return out

    def after_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Densification after an optimiser step over this avatar (called by the hook)."""
        self.densify_step += 1
        if self.strategy is None:
            return
        out = self.strategy.step_post_backward_avatar(self.avatar, optimizer, self.strategy_state, self.densify_step)
        for k in self.densify_totals:
            self.densify_totals[k] += out[k]
        if out["cloned"] or out["split"] or out["pruned"]:
            log.info("step %d: densify %s -> %d Gaussians", self.densify_step, out, self.avatar.num_gaussians)

    def state_dict(self) -> Dict[str, Any]:
        st = {k: (v.detach().cpu().clone() if isinstance(v, Tensor) else v) for k, v in self.strategy_state.items()}
        return {"densify_step": self.densify_step, "strategy_state": st, "densify_totals": dict(self.densify_totals)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.densify_step = int(state.get("densify_step", 0))
        self.densify_totals = dict(state.get("densify_totals", self.densify_totals))
        if self.strategy is not None and state.get("strategy_state"):
            self.strategy_state = {
                k: (v.to(self.device) if isinstance(v, Tensor) else v) for k, v in state["strategy_state"].items()
            }

    def finalize(self, out_dir: str, step: int) -> str:
        """Write ``avatar_stage2.pt``, ``social_stage2.pt`` and (with ``motion.checkpoint``)
        ``motion_stage2.pt`` into ``out_dir``; returns the avatar's path."""
        trained = {"stage": 2, "step": int(step), "seed": int(self.cfg.seed), "data_root": self.cfg.data.root,
                   "densify": dict(self.densify_totals)}
        path = os.path.join(out_dir, FINAL_AVATAR)
        self.avatar.save(path, extra={"trained": trained})
        social_state = {k: v.detach().cpu() for k, v in self.social.state_dict().items()}
        atomic_save({"format": SOCIAL_CKPT_FORMAT, "version": 1, "social": dataclasses.asdict(self.cfg.social),
                     "state_dict": social_state, "trained": trained}, os.path.join(out_dir, FINAL_SOCIAL))
        if self.cfg.motion.checkpoint:
            src = resolve_asset(self.cfg.motion.checkpoint)
            data = load_checkpoint(src, _MOTION_CKPT_FORMAT)
            data["state_dict"].update({f"social.{k}": v for k, v in social_state.items()})
            data["trained_stage2"] = trained
            atomic_save(data, os.path.join(out_dir, FINAL_MOTION))
        return path


def _register_densify_hook(stage: RendererStage):
    """A global ``torch.optim`` step post-hook that calls ``stage.after_optimizer_step`` for
    the optimiser whose parameters include the stage's avatar (others are ignored)."""
    ref = weakref.ref(stage)

    def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        st = ref()
        if st is None:
            return
        target = st.avatar.means_local
        if any(p is target for g in optimizer.param_groups for p in g["params"]):
            st.after_optimizer_step(optimizer)

    return register_optimizer_step_post_hook(hook)
