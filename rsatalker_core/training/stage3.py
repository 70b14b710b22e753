"""Training stage 3: joint end-to-end training (RSATalker §3.4; docs/method.md §7).

**Loss.** ``L = lambda_mesh L_mesh + lambda_image L_image + lambda_pos L_pos +
lambda_offset L_offset`` with the paper's weights ``1, 0.5, 0.01, 0.01`` by default
(``train.stage3``):

* ``L_mesh``: stage 1's masked MSE of the generated 56-D FLAME motion against the tracked
  motion (:func:`~rsatalker_core.training.losses.masked_mse`);
* ``L_image = 0.8 L1 + 0.2 D-SSIM``, ``L_pos``, ``L_offset``:
  :func:`~rsatalker_core.training.losses.renderer_loss` (as stage 2; the hinge regularisers,
  ``eps = 1``) on images rendered from the **generated** motion.

**Gradient path.** speech features (frozen encoder) -> speaker–listener motion generator ->
motion ``[B, T, 56]`` -> :func:`~rsatalker_core.render.renderer.render_motion` (the one
motion -> pixels path: FLAME, differentiable linear blend skinning -> Gaussians bound to the
posed triangles + the avatar's relationship offsets ``c`` -> rasterizer, gsplat on CUDA, the
pure-PyTorch tile rasterizer on CPU) -> ``L_image``. The avatar's offsets module
(:class:`~rsatalker_core.avatar.offsets.RelationshipOffsets`) is tied to the generator's
relationship embeddings (the same Parameters), so its offsetnet and the motion socialnet read
one query ``q`` as in the paper. So the image loss trains the generator (embeddings and
motion socialnet included), the offsetnet and the avatar; only the speech encoder stays
frozen (outside the checkpointed model).

**Frames rendered.** Rendering every frame of a window costs too much on a CPU, so each
step renders ``train.stage3.render_frames`` real (unpadded) frames of every window, drawn
without replacement from torch's global generator (seeded by the Trainer and saved in its
checkpoints, so a resumed run draws the same frames); 0 renders them all. ``L_mesh`` always
covers the whole window.

**What is trained.** Every generator parameter and the avatar's offsetnet at ``train.lr``,
and each Gaussian attribute
of the avatar in its own parameter group at ``train.stage2.lr_* x train.stage3.avatar_lr_scale``
(a fine-tuning scale: the avatar comes from stage 2). The set of Gaussians is fixed (no
densification in the joint stage).

**Start.** ``motion.checkpoint`` (stage 1's ``motion_stage1.pt``) and the avatar
``train.stage3.init_avatar`` (default ``avatar.checkpoint``; set it to stage 2's
``avatar_stage2.pt``, which carries the trained offsets; an avatar without them gets new
ones, :func:`~rsatalker_core.avatar.offsets.initial_offsets`). Without ``motion.checkpoint`` the generator is untrained and its
motion statistics are computed from the training data, as stage 1 does.

**Data.** :class:`~rsatalker_core.data.triplets.TripletDataset` over ``data.root`` /
``data.split`` with speech features (video frames ``<clip>_speaker{1,2}.<train.stage2.video_ext>``
and DualTalk's weak-perspective ``cam`` where present, else the default camera), or any
dataset with the same item keys (``train_data=``).

**Validation.** On ``train.val_split`` (the first ``train.val_max_samples`` windows): the
same loss terms in eval mode (``loss``, ``mesh``, ``image``, ``l1``, ``dssim``, ``psnr``).

**Output.** A completed run writes ``<out_dir>/motion_stage3.pt`` (a MotionModel checkpoint
for ``motion.checkpoint``) and ``<out_dir>/avatar_stage3.pt`` (for ``avatar.checkpoint``, with
the trained relationship offsets).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from rsatalker_core.avatar.gaussians import GaussianAvatar
from rsatalker_core.avatar.offsets import initial_offsets, window_times
from rsatalker_core.config import RsatalkerConfig, resolve_asset
from rsatalker_core.data.dualtalk import collate_windows
from rsatalker_core.data.statistics import motion_statistics
from rsatalker_core.data.triplets import TripletDataset
from rsatalker_core.device import resolve_device
from rsatalker_core.errors import ConfigError
from rsatalker_core.head.flame import FlameModel
from rsatalker_core.model.motion_model import frozen_speech_motion_model
from rsatalker_core.render.camera import default_camera
from rsatalker_core.render.renderer import batch_cameras
from rsatalker_core.training import distributed
from rsatalker_core.training.densify import avatar_param_groups
from rsatalker_core.training.losses import masked_mse, offset_loss, position_loss, renderer_loss
from rsatalker_core.training.stage1 import fill_feature_cache
from rsatalker_core.training.trainer import Stage

log = logging.getLogger("rsatalker.train")

FINAL_MOTION = "motion_stage3.pt"
FINAL_AVATAR = "avatar_stage3.pt"
_WEIGHTS = ("lambda_mesh", "lambda_image", "lambda_pos", "lambda_offset", "pos_eps", "offset_eps", "avatar_lr_scale")


class JointModel(nn.Module):
    """What stage 3 trains and checkpoints: the motion ``generator`` (with its socially-aware
    module) and the Gaussian ``avatar``."""

    def __init__(self, generator: nn.Module, avatar: GaussianAvatar):
        super().__init__()
        self.generator = generator
        self.avatar = avatar


def select_frames(mask: Tensor, per_window: int) -> Tensor:  # [B, T] bool -> [N] long
    """Flat indices ``b * T + t`` of up to ``per_window`` real frames of each window,
    drawn without replacement from torch's global generator (sorted); ``per_window = 0``
    selects every real frame."""
    B, T = mask.shape
    out: List[Tensor] = []
    for b in range(B):
        real = mask[b].nonzero().flatten().cpu()
        if 0 < per_window < real.numel():
            real = real[torch.randperm(real.numel())[:per_window]].sort().values
        out.append(real + b * T)
    return torch.cat(out).to(mask.device)


class JointStage(Stage):
    """Stage 3: the generator and the avatar trained together (see the module docstring).

    Args:
        cfg: the whole configuration (``speech``, ``motion``, ``social``, ``flame``,
            ``avatar``, ``render``, ``data``, ``train`` with ``train.stage2`` learning rates
            and ``train.stage3``).
        device: overrides ``cfg.device``.
        train_data: a dataset to train on instead of :class:`TripletDataset` over
            ``data.root``; items need ``self_features`` / ``partner_features [T, D]``,
            ``self_motion`` / ``partner_motion [T, 56]``, ``blood``, ``equal``, ``start``,
            ``num_frames``, ``frames [T, H, W, 3]`` in [0, 1], ``cam [T, 3]``, ``cam_valid``.
        val_data: likewise for validation (default: ``train.val_split`` of ``data.root``
            when ``train.val_every > 0``).

    Batches: :func:`~rsatalker_core.data.dualtalk.collate_windows` of those items.

    Raises:
        ConfigError: a negative ``train.stage3`` weight, ``render_frames < 0``, or DataLoader
            workers with the speech encoder on CUDA and no ``data.feature_cache``.
        DatasetError: no training sample with video (the message names what is missing).
        CheckpointError: ``motion.checkpoint`` or the avatar is unusable, or the avatar is
            bound to another mesh.
    """

    name = "joint"

    def __init__(
        self,
        cfg: RsatalkerConfig,
        device: Optional[Union[str, torch.device]] = None,
        train_data: Optional[Dataset] = None,
        val_data: Optional[Dataset] = None,
    ):
        self.cfg = cfg
        s3 = cfg.train.stage3
        for name in _WEIGHTS:
            if not getattr(s3, name) >= 0:
                raise ConfigError(f"train.stage3.{name} must be >= 0, got {getattr(s3, name)!r}")
        if s3.render_frames < 0:
            raise ConfigError(f"train.stage3.render_frames must be >= 0 (0 = all), got {s3.render_frames}")
        self.device = resolve_device(cfg.device if device is None else device)
        self.motion_model = frozen_speech_motion_model(cfg, self.device)
        self.speech = self.motion_model.speech
        self.generator = self.motion_model.generator
        self.flame = FlameModel(cfg.flame).to(self.device).eval()
        self.faces = self.flame.faces.long()
        n_tri = int(self.faces.shape[0])
        avatar = GaussianAvatar.load(resolve_asset(s3.init_avatar or cfg.avatar.checkpoint), num_triangles=n_tri)
        if avatar.offsets is None:
            avatar.attach_offsets(initial_offsets(cfg, n_tri))
        avatar.to(self.device)
        # Both MLPs read one q (paper §3.3): the avatar's embeddings ARE the generator's.
        avatar.offsets.tie_embeddings(self.generator.social)
        for p in avatar.offsets.parameters():
            p.requires_grad_(True)
        self.model = JointModel(self.generator, avatar).to(self.device)
        W, H = cfg.render.width, cfg.render.height
        self.viewmat, self.K = default_camera(cfg.render, self.device)
        self.background = torch.tensor(cfg.render.background, dtype=torch.float32, device=self.device)
        video_ext = cfg.train.stage2.video_ext
        self.train_data = train_data if train_data is not None else TripletDataset(
            cfg.data, W, H, video_ext, encoder=self.speech)
        self.val_data: Optional[Dataset] = None
        if cfg.train.val_every > 0:
            if val_data is not None:
                self.val_data = val_data
            else:
                val_cfg = dataclasses.replace(cfg.data, split=cfg.train.val_split)
                self.val_data = TripletDataset(val_cfg, W, H, video_ext, encoder=self.speech)
        windows = getattr(self.train_data, "base", self.train_data)  # TripletDataset -> its DualTalk windows
        if (cfg.data.feature_cache and (cfg.train.num_workers > 0 or distributed.is_distributed())
                and getattr(windows, "features", None) is not None):
            log.info("speech feature cache filled: %s", fill_feature_cache(windows))
        if not cfg.motion.checkpoint:
            if hasattr(windows, "clips") and hasattr(windows, "directory"):
                mean, std = motion_statistics(windows)
                self.generator.motion_mean.copy_(mean.to(self.device))
                self.generator.motion_std.copy_(std.to(self.device))
            else:
                log.warning("stage 3 without motion.checkpoint and a dataset without clips: motion statistics left at 0 / 1")

    @property
    def avatar(self) -> GaussianAvatar:
        return self.model.avatar

    # ------------------------------------------------------------------ Stage API
    def train_dataset(self) -> Dataset:
        """Training windows with speech features, video frames and cameras."""
        return self.train_data

    @property
    def collate_fn(self):
        """:func:`~rsatalker_core.data.dualtalk.collate_windows` (pads windows and frames)."""
        return collate_windows

    def param_groups(self) -> List[Dict[str, Any]]:
        """The generator and the avatar's offsetnet at ``train.lr`` (the tied embeddings
        once, with the generator); each Gaussian attribute alone in a group at
        ``train.stage2.lr_* x train.stage3.avatar_lr_scale``, without weight decay."""
        gen = [p for p in self.generator.parameters() if p.requires_grad]
        seen = {id(p) for p in gen}
        off = [p for p in self.avatar.offsets.parameters() if p.requires_grad and id(p) not in seen]
        groups = [{"params": gen + off}]
        groups += avatar_param_groups(self.avatar, self.cfg.train.stage2, self.cfg.train.stage3.avatar_lr_scale)
        return groups

    def compute(self, batch: Dict[str, Any]) -> Tuple[Tensor, Dict[str, Tensor], Tensor, Tensor]:
        """The stage-3 loss of a collated batch.

        Returns:
            ``(loss, terms, rgb [N, H, W, 3], target [N, H, W, 3])``: the scalar loss,
            detached terms ``{"mesh", "image", "l1", "dssim", "pos", "offset", "psnr"}``
            (``image`` etc. only with ``lambda_image > 0``), and the ``N`` rendered
            frames and their targets (``N = 0`` without ``lambda_image``).
        """
        s3, dev = self.cfg.train.stage3, self.device
        gt = batch["self_motion"].to(dev)  # [B, T, 56]
        B, T = gt.shape[:2]
        mask = batch["frame_mask"].to(dev)
        blood, equal = batch["blood"].to(dev), batch["equal"].to(dev)
        pred = self.generator(
            batch["self_features"].to(dev), batch["partner_features"].to(dev), blood, equal,
            batch["partner_motion"].to(dev),
        ).float()  # [B, T, 56]; float32 for the losses and the rasterizer under train.amp
        l_mesh = masked_mse(pred, gt, mask)
        terms: Dict[str, Tensor] = {"mesh": l_mesh.detach()}
        sel = select_frames(mask, int(s3.render_frames))  # [N]
        b_idx = torch.div(sel, T, rounding_mode="floor")
        start = torch.as_tensor(batch.get("start", torch.zeros(B, dtype=torch.long))).to(dev)
        times = window_times(start, T).reshape(-1)[sel]  # [N] seconds
        offsets = self.avatar.offsets(blood[b_idx], equal[b_idx], times)  # [N, F, 3]
        W, H = self.cfg.render.width, self.cfg.render.height
        if s3.lambda_image > 0:
            view, K = batch_cameras(batch.get("cam"), batch.get("cam_valid"), self.viewmat, self.K, T, W, H)
            target = batch["frames"].to(dev).reshape(B * T, H, W, 3)[sel]
            # renderer_loss = L_image + (lambda_pos / lambda_image) L_pos + ...; scaled by lambda_image
            l_render, rterms, rgb = renderer_loss(
                self.flame, self.avatar, pred.reshape(B * T, -1)[sel], target, view.to(dev)[sel], K.to(dev)[sel],
                self.background,
                offsets, s3.lambda_pos / s3.lambda_image, s3.lambda_offset / s3.lambda_image,
                s3.pos_eps, s3.offset_eps, self.cfg.render.backend,
            )
            loss = s3.lambda_mesh * l_mesh + s3.lambda_image * l_render
            terms.update(rterms)
        else:
            l_pos = position_loss(self.avatar.means_local, s3.pos_eps)
            l_off = offset_loss(offsets, s3.offset_eps)
            loss = s3.lambda_mesh * l_mesh + s3.lambda_pos * l_pos + s3.lambda_offset * l_off
            terms.update(pos=l_pos.detach(), offset=l_off.detach())
            rgb = target = gt.new_zeros(0, H, W, 3)
        return loss, terms, rgb, target

    def loss(self, batch: Dict[str, Any]) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Stage-3 loss of one batch; scalars: its terms (logged as ``train/<term>``)."""
        loss, terms, _, _ = self.compute(batch)
        return loss, terms

    def validate(self) -> Dict[str, float]:
        """Mean loss terms of the validation windows (one window per batch), and ``loss``."""
        if self.val_data is None:
            return {}
        n = len(self.val_data)
        if self.cfg.train.val_max_samples > 0:
            n = min(n, self.cfg.train.val_max_samples)
        sums: Dict[str, float] = {}
        for i in range(n):
            loss, terms, _, _ = self.compute(collate_windows([self.val_data[i]]))
            for k, v in {"loss": loss, **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        return {k: v / max(n, 1) for k, v in sums.items()}

    def finalize(self, out_dir: str, step: int) -> str:
        """Write ``motion_stage3.pt`` (MotionModel format) and ``avatar_stage3.pt`` into
        ``out_dir``; returns the motion weights' path."""
        trained = {"stage": 3, "step": int(step), "seed": int(self.cfg.seed), "data_root": self.cfg.data.root}
        path = os.path.join(out_dir, FINAL_MOTION)
        self.motion_model.save(path, extra={"trained": trained})
        avatar_path = os.path.join(out_dir, FINAL_AVATAR)
        self.avatar.save(avatar_path, extra={"trained": trained})
        log.info("stage 3 weights: %s (motion.checkpoint), %s (avatar.checkpoint)", path, avatar_path)
        return path
