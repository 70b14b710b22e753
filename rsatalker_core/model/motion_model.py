"""Frozen speech encoder + speaker–listener motion generator, built from a config."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Callable, Optional, Union

import numpy as np
import torch

from rsatalker_core.io.checkpoint import atomic_save, load_checkpoint
from rsatalker_core.config import MOTION_DIM, RsatalkerConfig, resolve_asset
from rsatalker_core.device import resolve_device
from rsatalker_core.errors import CheckpointError
from rsatalker_core.model.generator import SpeakerListenerMotionGenerator
from rsatalker_core.relationship import Relationship, relationship_tensors
from rsatalker_core.speech.factory import build_speech_encoder

log = logging.getLogger("rsatalker.motion")

MOTION_CKPT_FORMAT = "rsatalker-motion"
#: State-dict prefix of the socially-aware module's Gaussian offsetnet (trained in stages 2-3).
OFFSETNET_PREFIX = "social.gaussian_offsetnet."


class MotionModel:
    """Frozen speech encoder + motion generator, built from ``cfg``.

    The generator's random initialisation is seeded with ``cfg.seed``, so an untrained
    model is reproducible; ``cfg.motion.checkpoint`` loads trained weights.

    Raises:
        CheckpointError: the checkpoint is missing, corrupt, or was trained with another
            speech encoder or model size.
    """

    def __init__(self, cfg: RsatalkerConfig, device: Optional[Union[str, torch.device]] = None):
        self.cfg = cfg
        self.device = resolve_device(cfg.device if device is None else device)
        self.speech = build_speech_encoder(cfg.speech, self.device)
        torch.manual_seed(cfg.seed)
        self.generator = SpeakerListenerMotionGenerator(
            cfg.motion, cfg.social, self.speech.feature_dim
        ).to(self.device)
        if cfg.motion.checkpoint:
            self.load(resolve_asset(cfg.motion.checkpoint))
        else:
            log.warning("motion.checkpoint is empty: the motion generator is untrained (seed %d)", cfg.seed)
        self.generator.eval()

    def load(self, path: str) -> None:
        data = load_checkpoint(path, MOTION_CKPT_FORMAT, self.device)
        if data.get("speech_encoder") != self.cfg.speech.encoder:
            raise CheckpointError(
                f"{path}: trained with speech encoder '{data.get('speech_encoder')}', "
                f"config uses '{self.cfg.speech.encoder}'"
            )
        state = data["state_dict"]
        # Stage-1 exports may leave out the untrained offsetnet (scripts/export_default_motion.py):
        # those keys keep this model's seeded initialisation, whose zero last layer gives c = 0.
        omitted = [k for k in data.get("omitted_untrained", []) if k.startswith(OFFSETNET_PREFIX)]
        if omitted:
            own = self.generator.state_dict()
            state = {**{k: own[k] for k in omitted if k in own}, **state}
        try:
            self.generator.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: does not match motion config ({exc})") from exc

    def save(self, path: str, extra: Optional[dict] = None) -> None:
        """Atomically write the generator's weights with the config they need."""
        atomic_save(
            {
                "format": MOTION_CKPT_FORMAT,
                "version": 1,
                "speech_encoder": self.cfg.speech.encoder,
                "motion": asdict(self.cfg.motion),
                "social": asdict(self.cfg.social),
                "state_dict": self.generator.state_dict(),
                **(extra or {}),
            },
            path,
        )

    @torch.no_grad()
    def encode(self, wav: np.ndarray, sample_rate: int, num_frames: int) -> torch.Tensor:
        """Speech features ``[1, num_frames, D]`` at 25 fps for mono ``wav [S]``."""
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32), device=self.device)[None]
        return self.speech(x, sample_rate, num_frames=num_frames)

    @torch.no_grad()
    def generate(
        self,
        self_feats: torch.Tensor,  # [1, T, D]
        partner_feats: torch.Tensor,  # [1, T, D]
        relationship: Union[str, Relationship],
        partner_motion: Optional[np.ndarray] = None,  # [T, 56]
        progress: Optional[Callable[[int], None]] = None,
    ) -> np.ndarray:
        """Motion ``[T, 56]`` for a whole clip; ``progress(frames_done)`` is called per window.

        Clips longer than ``motion.max_frames`` are generated in half-overlapping windows
        blended with a linear cross-fade over each overlap.
        """
        T = self_feats.shape[1]
        blood, equal = relationship_tensors([relationship], self.device)
        pm = None
        if partner_motion is not None:
            pm = torch.as_tensor(_fit_length(partner_motion, T), device=self.device)[None]
        win = self.cfg.motion.max_frames
        hop = max(1, win // 2)
        out = np.zeros((T, MOTION_DIM), dtype=np.float32)
        weight = np.zeros((T, 1), dtype=np.float32)
        start = 0
        while True:
            end = min(T, start + win)
            m = self.generator(
                self_feats[:, start:end], partner_feats[:, start:end], blood, equal,
                None if pm is None else pm[:, start:end],
            )[0].float().cpu().numpy()
            w = np.ones((end - start, 1), dtype=np.float32)
            if start > 0:
                ramp = min(win - hop, end - start)
                w[:ramp, 0] = np.linspace(0.0, 1.0, ramp + 2, dtype=np.float32)[1:-1]
            out[start:end] += m * w
            weight[start:end] += w
            if progress:
                progress(end)
            if end >= T:
                break
            start += hop
        return out / np.maximum(weight, 1e-8)


def _fit_length(motion: np.ndarray, T: int) -> np.ndarray:
    """Crop or pad (with the last frame held) ``[T', 56]`` to ``[T, 56]``."""
    motion = np.asarray(motion, dtype=np.float32)
    if len(motion) >= T:
        return motion[:T]
    pad = np.repeat(motion[-1:], T - len(motion), axis=0) if len(motion) else np.zeros((T, MOTION_DIM), np.float32)
    return np.concatenate([motion, pad], axis=0)
