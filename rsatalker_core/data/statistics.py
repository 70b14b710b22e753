"""Per-channel statistics of the training motion (DualTalk-layout data).

Used to set the motion generator's ``motion_mean`` / ``motion_std`` buffers (stage 1 and,
without a motion checkpoint, stage 3; see :mod:`rsatalker_core.training.stage1`) and by the
mean-pose baseline of ``rsatalker evaluate`` (:mod:`rsatalker_core.evaluation.baselines`).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from torch import Tensor

from rsatalker_core.config import MOTION_DIM
from rsatalker_core.data.dualtalk import DualTalkDataset
from rsatalker_core.errors import DatasetError
from rsatalker_core.io.motion_npz import load_motion_npz

#: Smallest per-channel std set from data (FLAME coefficients / radians): a channel that
#: never moves in the data is then predicted as its mean instead of dividing by ~0.
STD_FLOOR = 1e-3


def motion_statistics(dataset: DualTalkDataset) -> Tuple[Tensor, Tensor]:
    """Per-channel mean and std of the training motion (mean and population std over every frame).

    Every supervised track (``<clip>_speaker{1,2}.npz``) of ``dataset.clips`` counts once
    over its usable ``num_frames`` frames; float64 sums.

    Returns:
        ``(mean [56], std [56])`` float32; std floored at :data:`STD_FLOOR`.

    Raises:
        DatasetError: the dataset holds no motion frames.
        MotionFileError: an unreadable npz (named).
    """
    total = np.zeros(MOTION_DIM, np.float64)
    total_sq = np.zeros(MOTION_DIM, np.float64)
    count = 0
    for info in dataset.clips:
        for spk in sorted(info.npz):
            m = load_motion_npz(info.npz[spk])[: info.num_frames].astype(np.float64)
            total += m.sum(0)
            total_sq += (m * m).sum(0)
            count += len(m)
    if count == 0:
        raise DatasetError(f"no motion frames in {dataset.directory} to compute statistics from")
    mean = total / count
    var = np.maximum(total_sq / count - mean * mean, 0.0)
    std = np.maximum(np.sqrt(var), STD_FLOOR)
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))
