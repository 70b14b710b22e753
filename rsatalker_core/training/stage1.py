"""Training stage 1: the speaker–listener motion generator (docs/method.md §7, RSATalker §3.4).

**Loss.** ``L_mesh`` is the squared L2 error of the 56-D FLAME motion ``[exp 50 | jaw 3 |
head 3]`` (paper: ``L_mesh = ||M - M_gt||_2``), averaged over the 56 channels and over the
real frames of each window (:func:`~rsatalker_core.training.losses.masked_mse`; padded frames, ``frame_mask == False``, do
not count). ``train.velocity_weight > 0`` adds DualTalk's velocity term, the same masked
MSE of frame-to-frame differences (:func:`~rsatalker_core.training.losses.velocity`), over pairs of real frames. The loss is
in raw motion units (FLAME coefficients, radians), as DualTalk trains.

**Frozen speech encoder.** The encoder built from ``cfg.speech`` stays frozen (the paper
freezes it in every stage); the dataset computes per-window features through
:class:`~rsatalker_core.data.FeatureCache`, cached on disk when ``data.feature_cache`` is
set. With DataLoader workers the cache is filled first in this process (the encoder may be
on CUDA, which forked workers cannot use); under several processes it is filled once,
sharded by rank (:func:`fill_feature_cache`).

**Motion statistics.** Before training, the generator's ``motion_mean`` / ``motion_std``
buffers (its output de-normalisation and partner-motion normalisation) are set from the
training data (:func:`~rsatalker_core.data.statistics.motion_statistics`): per-channel mean and population standard
deviation over every frame of every supervised track of the training split (each frame
once, however many windows overlap it), std floored at ``STD_FLOOR``. They are saved in
the weights. When ``motion.checkpoint`` names trained weights, training fine-tunes them and
keeps that checkpoint's statistics.

**Partner motion.** Samples without the partner's npz (the real sample has speaker 2's only)
carry all-zero partner motion, which is the generator's own neutral fallback, so they train
the same path inference uses without a partner tracker. ``train.partner_motion_dropout =
p`` replaces each training sample's partner motion by that fallback with probability ``p``
(drawn from torch's global generator, so resume stays exact), for corpora where every clip
has both tracks but the model must also run without a partner tracker (the live demo).

**Trained parameters.** Every generator parameter, the socially-aware module's relationship
embeddings and motion socialnet included. (The Gaussian offsetnet belongs to the avatar,
:mod:`rsatalker_core.avatar.offsets`, and is trained with the renderer in stages 2 and 3.)

**Validation.** Whole clips of ``train.val_split`` (one window per clip and avatar speaker,
the first ``train.val_max_samples``), generated through :meth:`MotionModel.generate` — the
inference path — and scored with the DualTalk motion metrics
(:func:`rsatalker_core.metrics.motion.motion_metrics`: FD, P-FD, MSE, SID, rPCC, STS per
EXP / JAW / POSE), averaged over clips, plus ``loss`` (raw 56-D MSE). P-FD and rPCC average
over the samples that have partner motion.

**Output.** A completed run writes ``<out_dir>/motion_stage1.pt`` in
:class:`~rsatalker_core.motion_model.MotionModel`'s checkpoint format; set
``motion.checkpoint`` to it to generate with the trained weights.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from rsatalker_core.config import (
    EXP_SLICE, HEAD_SLICE, JAW_SLICE, RsatalkerConfig,
)
from rsatalker_core.data import DualTalkDataset, collate_windows
from rsatalker_core.data.statistics import STD_FLOOR, motion_statistics  # noqa: F401 (re-exported)
from rsatalker_core.device import resolve_device
from rsatalker_core.errors import ConfigError
from rsatalker_core.metrics.motion import motion_metrics
from rsatalker_core.model.motion_model import frozen_speech_motion_model
from rsatalker_core.training import distributed
from rsatalker_core.training.losses import masked_mse, velocity
from rsatalker_core.training.trainer import Stage

log = logging.getLogger("rsatalker.train")

#: Name of the final weights a completed stage-1 run writes into ``train.out_dir``.
FINAL_WEIGHTS = "motion_stage1.pt"
_GROUPS = {"exp": EXP_SLICE, "jaw": JAW_SLICE, "pose": HEAD_SLICE}


def _mean_by_key(per_sample: Sequence[Dict[str, float]]) -> Dict[str, float]:
    keys: List[str] = []
    for d in per_sample:
        keys += [k for k in d if k not in keys]
    return {k: float(np.mean([d[k] for d in per_sample if k in d])) for k in keys}


def fill_feature_cache(dataset: Any) -> Dict[str, int]:
    """Fill the on-disk speech-feature cache of ``dataset`` (a :class:`DualTalkDataset`
    with ``data.feature_cache`` set) before training.

    With one process every window is computed here (before DataLoader workers start).
    Under several processes the windows are sharded by rank (window ``i`` on rank
    ``i mod world_size``), every rank computing its share on its own device, and all wait
    at a barrier: the cache is built once, in parallel, then read by every rank (entries are
    written atomically, so two ranks writing the same entry is harmless).

    Returns:
        this rank's cache counters ``{"hits", "misses", "recomputed"}``.
    """
    with torch.no_grad():
        for i in range(distributed.rank(), len(dataset), distributed.world_size()):
            dataset[i]
    distributed.barrier()
    return dict(dataset.features.stats)


class MotionStage(Stage):
    """Stage 1: trains :class:`~rsatalker_core.model.generator.SpeakerListenerMotionGenerator`.

    Args:
        cfg: the whole :class:`~rsatalker_core.config.RsatalkerConfig` (``speech``,
            ``motion``, ``social``, ``data``, ``train``).
        device: overrides ``cfg.device``.

    Batches are :func:`~rsatalker_core.data.collate_windows` dicts: ``self_features`` /
    ``partner_features [B, T, D]``, ``self_motion`` / ``partner_motion [B, T, 56]``,
    ``blood`` / ``equal [B]``, ``frame_mask [B, T]``.

    Raises:
        DatasetError: no training data under ``data.root`` / ``data.split`` (or no
            validation split when ``train.val_every > 0``).
        ConfigError: DataLoader workers with an encoder on CUDA and no feature cache.
        CheckpointError, SpeechEncoderError: as :class:`MotionModel`.
    """

    name = "motion"

    def __init__(self, cfg: RsatalkerConfig, device: Optional[Union[str, torch.device]] = None):
        self.cfg = cfg
        self.device = resolve_device(cfg.device if device is None else device)
        self.motion_model = frozen_speech_motion_model(cfg, self.device)
        self.speech = self.motion_model.speech
        self.generator = self.motion_model.generator
        self.model = self.generator
        self.velocity_weight = float(cfg.train.velocity_weight)
        self.partner_motion_dropout = float(cfg.train.partner_motion_dropout)
        if not 0.0 <= self.partner_motion_dropout <= 1.0:
            raise ConfigError(
                f"train.partner_motion_dropout must be in [0, 1], got {self.partner_motion_dropout}"
            )
        self.train_data = DualTalkDataset(cfg.data, encoder=self.speech)
        self.val_data: Optional[DualTalkDataset] = None
        if cfg.train.val_every > 0:
            val_cfg = dataclasses.replace(cfg.data, split=cfg.train.val_split, window_frames=0)
            self.val_data = DualTalkDataset(val_cfg, encoder=self.speech)
        self._val_items: Optional[List[dict]] = None
        if cfg.motion.checkpoint:
            log.info("fine-tuning %s (keeping its motion statistics)", cfg.motion.checkpoint)
        else:
            mean, std = motion_statistics(self.train_data)
            self.generator.motion_mean.copy_(mean.to(self.device))
            self.generator.motion_std.copy_(std.to(self.device))
        if cfg.data.feature_cache and (cfg.train.num_workers > 0 or distributed.is_distributed()):
            log.info("speech feature cache filled: %s", fill_feature_cache(self.train_data))

    # ------------------------------------------------------------------ Stage API
    def train_dataset(self) -> DualTalkDataset:
        """Training windows of ``data.root`` / ``data.split`` with speech features."""
        return self.train_data

    @property
    def collate_fn(self):
        """:func:`~rsatalker_core.data.collate_windows` (pads windows, adds ``frame_mask``)."""
        return collate_windows

    def param_groups(self) -> List[Dict[str, Any]]:
        """All trainable generator parameters, at ``train.lr``."""
        return [{"params": [p for p in self.generator.parameters() if p.requires_grad]}]

    def predict(self, batch: Dict[str, Any]) -> Tensor:
        """Generator output ``[B, T, 56]`` for a collated batch (moved to :attr:`device`)."""
        dev = self.device
        return self.generator(
            batch["self_features"].to(dev), batch["partner_features"].to(dev),
            batch["blood"].to(dev), batch["equal"].to(dev), batch["partner_motion"].to(dev),
        )

    def loss(self, batch: Dict[str, Any]) -> Tuple[Tensor, Dict[str, Tensor]]:
        """``L_mesh (+ velocity_weight * L_vel)`` of one batch.

        Returns:
            ``(loss, {"mesh", "mse_exp", "mse_jaw", "mse_pose"[, "vel"]})``: the scalars
            are detached; the group MSEs split ``mesh`` by EXP (50) / JAW (3) / POSE (3).
        """
        gt = batch["self_motion"].to(self.device)
        mask = batch["frame_mask"].to(self.device)
        if self.partner_motion_dropout > 0 and self.generator.training:
            pm = batch["partner_motion"]
            keep = torch.rand(pm.shape[0]) >= self.partner_motion_dropout  # [B]
            batch = {**batch, "partner_motion": pm * keep[:, None, None].to(pm.dtype)}
        pred = self.predict(batch).float()  # the loss in float32 under train.amp
        l_mesh = masked_mse(pred, gt, mask)
        loss = l_mesh
        scalars: Dict[str, Tensor] = {"mesh": l_mesh.detach()}
        with torch.no_grad():
            for g, cols in _GROUPS.items():
                scalars[f"mse_{g}"] = masked_mse(pred[..., cols], gt[..., cols], mask)
        if self.velocity_weight > 0:
            vp, vm = velocity(pred, mask)
            vg, _ = velocity(gt)
            l_vel = masked_mse(vp, vg, vm)
            loss = loss + self.velocity_weight * l_vel
            scalars["vel"] = l_vel.detach()
        return loss, scalars

    def _validation_items(self) -> List[dict]:
        if self._val_items is None:
            assert self.val_data is not None
            n = len(self.val_data)
            if self.cfg.train.val_max_samples > 0:
                n = min(n, self.cfg.train.val_max_samples)
            self._val_items = [self.val_data[i] for i in range(n)]
        return self._val_items

    def validate(self) -> Dict[str, float]:
        """DualTalk motion metrics of whole validation clips, and their raw 56-D MSE
        (``loss``). Empty when ``train.val_every == 0``."""
        if self.val_data is None:
            return {}
        per_sample: List[Dict[str, float]] = []
        for item in self._validation_items():
            valid = bool(item["partner_motion_valid"])
            partner = item["partner_motion"].numpy() if valid else None
            pred = self.motion_model.generate(
                item["self_features"][None].to(self.device),
                item["partner_features"][None].to(self.device),
                item["relationship"], partner,
            )
            gt = item["self_motion"].numpy()
            m = motion_metrics(pred, gt, partner)
            m["loss"] = float(np.mean((pred.astype(np.float64) - gt) ** 2))
            per_sample.append(m)
        return _mean_by_key(per_sample)

    def finalize(self, out_dir: str, step: int) -> str:
        """Write ``<out_dir>/motion_stage1.pt`` (:meth:`MotionModel.save` format)."""
        path = os.path.join(out_dir, FINAL_WEIGHTS)
        self.motion_model.save(path, extra={"trained": {
            "stage": 1, "step": int(step), "seed": int(self.cfg.seed),
            "data_root": self.cfg.data.root, "data_split": self.cfg.data.split,
        }, "expression_space": self.train_data.expression_space})
        return path
