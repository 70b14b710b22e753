"""Simple reference predictors for ``rsatalker evaluate``: mean pose and partner mirroring.

Both are the usual floor of listener / talking-head motion tables (DualTalk and "Learning to
Listen" report such rows): a method that does not beat them has learned nothing about the
speech or the partner.

**Mean pose.** Every frame is predicted as one constant 56-D motion vector
``[exp 50 | jaw 3 | head 3]``. Which vector, by one rule (:func:`mean_pose`):

1. If the data directory has a ``train/`` split, the per-channel mean over every frame of
   every supervised track there (each npz frame once;
   :func:`rsatalker_core.data.statistics.motion_statistics`, the statistics stage-1 training
   sets). An existing ``train/`` that cannot be read is an error, never silently skipped.
2. Otherwise the motion model's ``motion_mean`` buffer (the training-split mean saved with
   trained weights; all zeros — FLAME's neutral face — for an untrained model).

**Partner mirroring.** The prediction is the partner's ground-truth motion, frame by frame
(the avatar copies its partner). Only samples whose partner npz exists get it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Tuple

import numpy as np

from rsatalker_core.config import MOTION_DIM, DataConfig
from rsatalker_core.errors import MetricError

log = logging.getLogger("rsatalker.evaluate")

#: ``mean_pose`` source labels (written to the report).
SOURCE_TRAIN = "train split"
SOURCE_CHECKPOINT = "model motion_mean"


def mean_pose(data_root: str, data_cfg: DataConfig, motion_mean: np.ndarray) -> Tuple[np.ndarray, str]:
    """The constant motion of the mean-pose baseline, by the rule in the module docstring.

    Args:
        data_root: the evaluated data directory (holding ``train/``, ``test/``, ``ood/``).
        data_cfg: data options used to read ``train/`` (length tolerance, relationship
            index, sample rate); ``root`` / ``split`` / ``window_frames`` are replaced.
        motion_mean: ``[56]`` the motion model's ``motion_mean`` buffer (fallback).

    Returns:
        ``(mean [56] float32, source)`` where source is ``"train split (<dir>)"`` or
        ``"model motion_mean"``.

    Raises:
        DatasetError, MotionFileError, AudioError: ``train/`` exists but cannot be read.
        MetricError: ``motion_mean`` is not ``[56]`` or not finite.
    """
    train_dir = os.path.join(data_root, "train")
    if os.path.isdir(train_dir):
        from rsatalker_core.data import DualTalkDataset
        from rsatalker_core.data.statistics import motion_statistics

        cfg = dataclasses.replace(data_cfg, root=data_root, split="train", window_frames=0, feature_cache="")
        mean, _ = motion_statistics(DualTalkDataset(cfg))
        return mean.numpy().astype(np.float32), f"{SOURCE_TRAIN} ({train_dir})"
    fallback = np.asarray(motion_mean, dtype=np.float32).reshape(-1)
    if fallback.shape != (MOTION_DIM,) or not np.isfinite(fallback).all():
        raise MetricError(f"model motion_mean must be a finite [{MOTION_DIM}] vector, got {fallback.shape}")
    log.info("no train/ split in %s: mean-pose baseline uses the model's motion_mean", data_root)
    return fallback, SOURCE_CHECKPOINT


def mean_pose_prediction(mean: np.ndarray, num_frames: int) -> np.ndarray:
    """``mean [56]`` repeated over ``num_frames`` frames -> ``[T, 56]`` float32."""
    return np.repeat(np.asarray(mean, np.float32).reshape(1, MOTION_DIM), int(num_frames), axis=0)


def mirror_prediction(partner_gt: np.ndarray) -> np.ndarray:
    """Partner mirroring: the partner's ground-truth motion ``[T, 56]`` as the prediction."""
    return np.array(partner_gt, dtype=np.float32, copy=True)
