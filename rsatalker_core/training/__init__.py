"""Three-stage training (docs/method.md §7): a generic loop and the stages.

* :mod:`.trainer` — :class:`Trainer` (seeding, tqdm, TensorBoard, validation, atomic
  checkpoints, exact resume, Ctrl-C / SIGTERM handling) and the :class:`Stage` interface.
* :mod:`.stage1` — :class:`MotionStage`: the speaker–listener motion generator with
  ``L_mesh`` (the speech encoder frozen).
* :mod:`.stage2` — :class:`RendererStage`: the Gaussian avatar (and the Gaussian offsetnet)
  with ``L_image + L_pos + L_offset`` and densification (:mod:`.densify`, :mod:`.losses`).
* :mod:`.stage3` — :class:`JointStage`: generator and avatar end to end with
  ``L_mesh + 0.5 L_image + 0.01 L_pos + 0.01 L_offset`` through FLAME and the rasterizer.
* :mod:`.cli` — the ``rsatalker train`` subcommand.

Example:
    >>> cfg = load_config("config/train_stage1.yaml", {"data.root": "data/dualtalk"})
    >>> result = Trainer(build_stage(1, cfg), cfg.train, seed=cfg.seed).fit()
    >>> result.final_weights      # set motion.checkpoint to this to generate with it
    'runs/stage1/motion_stage1.pt'
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from rsatalker_core.config import RsatalkerConfig
from rsatalker_core.errors import ConfigError
from rsatalker_core.training.trainer import (
    TRAIN_CKPT_FORMAT,
    ResumableBatchSampler,
    Stage,
    Trainer,
    TrainResult,
    lr_factor,
    read_log,
    seed_everything,
    seed_worker,
)

#: Training stages of the paper: number -> what it trains.
STAGES = {1: "motion generator", 2: "renderer", 3: "joint"}


def build_stage(
    stage: int, cfg: RsatalkerConfig, device: Optional[Union[str, torch.device]] = None
) -> Stage:
    """The :class:`Stage` object of training stage ``stage`` (1, 2 or 3) for ``cfg``.

    Raises:
        ConfigError: an unknown stage.
        RsatalkerError: what the stage's constructor raises (data, checkpoints, config).
    """
    if stage not in STAGES:
        raise ConfigError(f"unknown training stage {stage!r}: choose 1, 2 or 3")
    if stage == 2:
        from rsatalker_core.training.stage2 import RendererStage

        return RendererStage(cfg, device)
    if stage == 3:
        from rsatalker_core.training.stage3 import JointStage

        return JointStage(cfg, device)
    from rsatalker_core.training.stage1 import MotionStage

    return MotionStage(cfg, device)


__all__ = [
    "STAGES",
    "TRAIN_CKPT_FORMAT",
    "ResumableBatchSampler",
    "Stage",
    "TrainResult",
    "Trainer",
    "build_stage",
    "lr_factor",
    "read_log",
    "seed_everything",
    "seed_worker",
]
