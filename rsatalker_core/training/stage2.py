"""Training stage 2: the Gaussian head avatar renderer (RSATalker §3.4; docs/method.md §5, §7).

**What is trained.** The Gaussians bound to FLAME triangles (:class:`GaussianAvatar`: local
means, log-scales, rotations, opacities, colours) and, with ``train.stage2.train_offsetnet``,
the avatar's Gaussian offsetnet (:class:`~rsatalker_core.avatar.offsets.RelationshipOffsets`),
which maps (relationship query ``q``, time ``t``) to per-anchor offsets ``c``. Its relationship
embeddings are copied from the motion model's socially-aware module (``motion.checkpoint``,
when set; else the seeded orthogonal initialisation) and stay frozen, so ``q`` is the query
the motion generator was trained with. A starting avatar that already carries offsets keeps
them (and trains them further). A legacy ``motion.checkpoint`` holding a trained
``social.gaussian_offsetnet`` seeds the avatar's offsetnet with it. FLAME is fixed and the
motion comes from the data (tracked FLAME parameters), so no speech is needed.

**Loss** (:func:`renderer_loss`): ``L = L_image + lambda_pos L_pos + lambda_offset L_offset``
with ``L_image = 0.8 L1 + 0.2 D-SSIM`` and the hinge regularisers of
:mod:`rsatalker_core.training.losses` (``eps = 1``), weights from ``train.stage2``.

**Densification** (:class:`~rsatalker_core.training.densify.BindingStrategy`, settings
``train.stage2.densify``): clone / split / prune with binding inheritance and face-local
thresholds. The project's :class:`~rsatalker_core.training.trainer.Trainer` owns the
optimiser, so the stage runs the strategy from a ``torch.optim`` step post-hook that acts
only on the optimiser holding this avatar's parameters: right after every optimiser step,
with the step's gradients still in place (the gradient statistic) — gsplat's
``step_post_backward`` point. Under data parallelism (docs/training.md) the gradient
statistic is averaged over the ranks before each refinement, so every rank makes the same
decisions, and rank 0's new Gaussians are then broadcast
(:func:`~rsatalker_core.training.densify.synchronize_avatar`, which also checks that the
Gaussian count and binding agree). Each Gaussian attribute is its own parameter group (its own
learning rate, as GaussianAvatars), which is what gsplat's ops need to extend and prune the
Adam moments.

**Resume.** The checkpoint holds the avatar at its current size (the avatar adopts a
checkpoint's number of Gaussians on load, ``GaussianAvatar.resize_on_load``, keeping its
Parameter objects so the optimiser built before loading stays valid), the optimiser
moments of every Gaussian, and the strategy's running state and step (:meth:`state_dict`),
so a resumed run continues bit for bit on the CPU.

**Rendering.** :func:`~rsatalker_core.render.renderer.render_motion`, the one motion ->
pixels path (inference renders through it too). Items with a DualTalk weak-perspective
``cam`` are rendered through :func:`~rsatalker_core.data.triplets.weak_perspective_camera`,
others through the fixed default camera (``render.*``;
:func:`~rsatalker_core.render.renderer.batch_cameras`).

**Validation.** Frames of ``train.val_split`` (the first ``train.val_max_samples`` items, 0 =
all) rendered in eval mode: mean ``PSNR`` (dB), ``SSIM``, ``L1``, ``num_gaussians``, and the
first ``train.stage2.val_images`` frames as ``prediction | target`` images (TensorBoard).

**Output.** A completed run writes ``<out_dir>/avatar_stage2.pt``: a :class:`GaussianAvatar`
checkpoint for ``avatar.checkpoint`` carrying the relationship offsets when they were used
(the motion model is not changed by this stage).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import weakref
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import Dataset

from rsatalker_core.avatar.gaussians import GaussianAvatar
from rsatalker_core.avatar.offsets import initial_offsets, window_times
from rsatalker_core.config import MOTION_DIM, RsatalkerConfig, resolve_asset
from rsatalker_core.data.dualtalk import collate_windows
from rsatalker_core.data.triplets import TripletDataset
from rsatalker_core.device import resolve_device
from rsatalker_core.errors import ConfigError, DatasetError
from rsatalker_core.head.flame import FlameModel
from rsatalker_core.metrics.image import bhwc_to_bchw, image_metrics
from rsatalker_core.render.camera import default_camera
from rsatalker_core.render.renderer import batch_cameras
from rsatalker_core.training.densify import (
    AVATAR_LR_FIELDS, BindingStrategy, avatar_param_groups, synchronize_avatar,
)
from rsatalker_core.training.losses import renderer_loss
from rsatalker_core.training.trainer import Stage

log = logging.getLogger("rsatalker.train")

FINAL_AVATAR = "avatar_stage2.pt"


def _initial_avatar(cfg: RsatalkerConfig, flame: FlameModel) -> GaussianAvatar:
    init = cfg.train.stage2.init_avatar
    faces = flame.faces.long()
    if init == "anchors":
        with torch.no_grad():
            verts = flame.forward_motion(torch.zeros(1, MOTION_DIM, device=faces.device))[0]
        return GaussianAvatar.from_mesh(verts.float().cpu(), faces.cpu())
    return GaussianAvatar.load(resolve_asset(init or cfg.avatar.checkpoint), num_triangles=int(faces.shape[0]))


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
        if avatar.offsets is None:
            offsets = initial_offsets(cfg, int(self.faces.shape[0]))
            if s2.train_offsetnet or not offsets.is_zero():  # c = 0 and frozen: leave it out
                avatar.attach_offsets(offsets)
        if avatar.offsets is not None:
            for p in avatar.offsets.parameters():  # embeddings frozen: the motion model's q
                p.requires_grad_(False)
            for p in avatar.offsets.offsetnet.parameters():
                p.requires_grad_(bool(s2.train_offsetnet))
        #: What the Trainer checkpoints: the avatar (with its offsets module, if any).
        self.model = avatar.to(self.device)
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
        return self.model

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
        groups = avatar_param_groups(self.avatar, self.cfg.train.stage2)
        off = [] if self.avatar.offsets is None else [p for p in self.avatar.offsets.parameters() if p.requires_grad]
        if off:
            groups.append({"params": off, "lr": float(self.cfg.train.lr)})
        return groups

    def _prepare(self, batch: Dict[str, Any]) -> Dict[str, Tensor]:
        """Motion, offsets, cameras and targets of the real frames of ``batch``."""
        dev = self.device
        motion = batch["self_motion"].to(dev)  # [B, T, 56]
        B, T = motion.shape[:2]
        frames = batch["frames"].to(dev)
        W, H = self.cfg.render.width, self.cfg.render.height
        if tuple(frames.shape[2:]) != (H, W, 3):
            raise DatasetError(f"frames are {tuple(frames.shape[2:])}, the render size is ({H}, {W}, 3)")
        mask = batch.get("frame_mask")
        keep = (mask.to(dev) if mask is not None else torch.ones(B, T, dtype=torch.bool, device=dev)).reshape(-1)
        view, K = batch_cameras(batch.get("cam"), batch.get("cam_valid"), self.viewmat, self.K, T, W, H)
        offsets = None
        if self.avatar.offsets is not None:
            start = torch.as_tensor(batch.get("start", torch.zeros(B, dtype=torch.long))).to(dev)
            times = window_times(start, T).reshape(-1)[keep]  # [N] seconds
            rep = lambda x: x.to(dev).repeat_interleave(T)[keep]  # noqa: E731 per window -> per frame
            offsets = self.avatar.offsets(rep(batch["blood"]), rep(batch["equal"]), times)  # [N, F, 3]
        return {
            "motion": motion.reshape(B * T, -1)[keep], "target": frames.reshape(B * T, H, W, 3)[keep],
            "viewmats": view.to(dev)[keep], "Ks": K.to(dev)[keep], "offsets": offsets,
        }

    def compute(self, batch: Dict[str, Any]) -> Tuple[Tensor, Dict[str, Tensor], Tensor, Tensor]:
        """``(loss, terms, rgb [N, H, W, 3], target [N, H, W, 3])`` of a collated batch."""
        s2 = self.cfg.train.stage2
        x = self._prepare(batch)
        loss, terms, rgb = renderer_loss(
            self.flame, self.avatar, x["motion"], x["target"], x["viewmats"], x["Ks"], self.background,
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
            synchronize_avatar(self.avatar)  # data parallel: same Gaussians on every rank
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
        """Write ``avatar_stage2.pt`` (with the relationship offsets, when used) into
        ``out_dir``; returns its path."""
        trained = {"stage": 2, "step": int(step), "seed": int(self.cfg.seed), "data_root": self.cfg.data.root,
                   "densify": dict(self.densify_totals)}
        path = os.path.join(out_dir, FINAL_AVATAR)
        self.avatar.save(path, extra={"trained": trained})
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
