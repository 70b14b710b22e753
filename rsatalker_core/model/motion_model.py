"""Frozen speech encoder + speaker–listener motion generator, built from a config."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Callable, Optional, Union

import numpy as np
import torch

from rsatalker_core.avatar.offsets import LEGACY_OFFSETNET_PREFIX
from rsatalker_core.io.checkpoint import atomic_save, load_checkpoint
from rsatalker_core.config import FPS, MOTION_DIM, RsatalkerConfig, resolve_asset
from rsatalker_core.device import resolve_device
from rsatalker_core.errors import CheckpointError, ConfigError
from rsatalker_core.metrics.conversation import frame_energy_db
from rsatalker_core.model.generator import SpeakerListenerMotionGenerator
from rsatalker_core.model.residual import ResidualMotionParams, ResidualMotionSampler
from rsatalker_core.relationship import Relationship, relationship_tensors
from rsatalker_core.speech.audio import resample
from rsatalker_core.speech.factory import build_speech_encoder

log = logging.getLogger("rsatalker.motion")

MOTION_CKPT_FORMAT = "rsatalker-motion"
#: ``expression_space`` of an untrained model or a checkpoint that records none.
UNKNOWN_SPACE = "unknown"


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
        #: Fitted residual motion of the checkpoint (rsatalker_core/model/residual.py), or None.
        self.residual_params: Optional[ResidualMotionParams] = None
        #: Expression space of the generated motion (rsatalker_core.head.flame; set by load()).
        self.expression_space = UNKNOWN_SPACE
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
        """Load generator weights written by :meth:`save`.

        Checkpoints from before the Gaussian offsetnet moved to the avatar may hold
        ``social.gaussian_offsetnet.*`` keys: they are skipped with a log message (the
        offsets render from the avatar checkpoint; a trained legacy offsetnet can be moved
        there with :meth:`rsatalker_core.avatar.offsets.RelationshipOffsets.from_legacy_motion_state`).

        Raises:
            CheckpointError: missing/corrupt file, another speech encoder, or weights that
                do not fit the motion config.
        """
        data = load_checkpoint(path, MOTION_CKPT_FORMAT, self.device)
        if data.get("speech_encoder") != self.cfg.speech.encoder:
            raise CheckpointError(
                f"{path}: trained with speech encoder '{data.get('speech_encoder')}', "
                f"config uses '{self.cfg.speech.encoder}'"
            )
        state = strip_legacy_offsetnet(data["state_dict"], path)
        try:
            self.generator.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: does not match motion config ({exc})") from exc
        #: Expression space of the motion this checkpoint generates (the training data's).
        self.expression_space = str(data.get("expression_space", UNKNOWN_SPACE))
        res = data.get("residual_motion")
        self.residual_params = None if res is None else ResidualMotionParams.from_dict(res, path)

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

    def residual_sampler(self, relationship: Union[str, Relationship], seed: Optional[int] = None):
        """A :class:`~rsatalker_core.model.residual.ResidualMotionSampler` for this
        checkpoint's fitted residual motion, or ``None`` when the checkpoint carries none or
        ``motion.residual`` is off. ``seed`` defaults to ``motion.residual_seed``."""
        if self.residual_params is None or not self.cfg.motion.residual:
            return None
        return ResidualMotionSampler(
            self.residual_params, relationship, self.cfg.motion.residual_seed if seed is None else seed
        )

    def residual_motion(
        self, self_wav: np.ndarray, sample_rate: int, num_frames: int, relationship: Union[str, Relationship],
        seed: Optional[int] = None,
    ) -> np.ndarray:
        """Residual motion ``[num_frames, 56]`` to add to :meth:`generate`'s output (zeros
        without a fitted residual model), driven by the own speech ``self_wav [S]``
        (``sample_rate`` Hz, resampled to the encoder's rate) frame by frame exactly as the
        streaming generator drives it (rsatalker_core/model/residual.py)."""
        sampler = self.residual_sampler(relationship, seed)
        if sampler is None:
            return np.zeros((num_frames, MOTION_DIM), dtype=np.float32)
        wav = resample(np.asarray(self_wav, dtype=np.float32), sample_rate, self.cfg.speech.sample_rate)
        return sampler.run(frame_energy_db(wav, self.cfg.speech.sample_rate, num_frames))

    @torch.no_grad()
    def generate_in_windows(
        self,
        self_wav: np.ndarray,  # [S]
        partner_wav: np.ndarray,  # [S']
        sample_rate: int,
        relationship: Union[str, Relationship],
        partner_motion: Optional[np.ndarray] = None,  # [T, 56]
        window: Optional[int] = None,
        num_frames: Optional[int] = None,
    ) -> np.ndarray:
        """Generator output ``[T, 56]`` over consecutive windows of ``window`` frames
        (default ``streaming.window_frames``), each window's speech encoded from its own
        audio only, as the live generator and the default training preset see it. Both
        speakers' windows go through the encoder in one call. No residual motion is added.
        """
        window = window or self.cfg.streaming.window_frames
        spf = sample_rate // FPS
        T = len(self_wav) // spf if num_frames is None else int(num_frames)
        blood, equal = relationship_tensors([relationship], self.device)
        pm_all = None if partner_motion is None else _fit_length(partner_motion, T)
        out = []
        for s in range(0, T, window):
            n = min(window, T - s)
            seg = np.zeros((2, n * spf), np.float32)
            for row, wav in enumerate((self_wav, partner_wav)):
                part = np.asarray(wav[s * spf : (s + n) * spf], dtype=np.float32)
                seg[row, : len(part)] = part
            feats = self.speech(torch.as_tensor(seg, device=self.device), sample_rate, num_frames=n)
            pm = None if pm_all is None else torch.as_tensor(pm_all[s : s + n], device=self.device)[None]
            out.append(self.generator(feats[:1], feats[1:], blood, equal, pm)[0].float().cpu().numpy())
        return np.concatenate(out, axis=0) if out else np.zeros((0, MOTION_DIM), np.float32)

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


def strip_legacy_offsetnet(state: dict, path: str = "checkpoint") -> dict:
    """``state`` without the legacy ``social.gaussian_offsetnet.*`` keys (logged when present)."""
    legacy = [k for k in state if k.startswith(LEGACY_OFFSETNET_PREFIX)]
    if not legacy:
        return state
    log.info("%s: ignoring %d legacy Gaussian offsetnet tensors (the offsets live in the avatar checkpoint)",
             path, len(legacy))
    return {k: v for k, v in state.items() if not k.startswith(LEGACY_OFFSETNET_PREFIX)}


def frozen_speech_motion_model(cfg: RsatalkerConfig, device: torch.device) -> "MotionModel":
    """The :class:`MotionModel` a motion-training stage (1, 3) trains, its speech encoder
    frozen (the paper freezes it in every stage).

    Raises:
        ConfigError: DataLoader workers (``train.num_workers > 0``) with the encoder on a
            non-CPU device and no ``data.feature_cache`` (forked workers cannot use CUDA).
        CheckpointError, SpeechEncoderError: as :class:`MotionModel`.
    """
    if cfg.train.num_workers > 0 and device.type != "cpu" and not cfg.data.feature_cache:
        raise ConfigError(
            f"train.num_workers={cfg.train.num_workers} with the speech encoder on {device}: "
            "set data.feature_cache (features are then computed once, here) or num_workers 0"
        )
    model = MotionModel(cfg, device)
    model.speech.freeze()
    return model


def _fit_length(motion: np.ndarray, T: int) -> np.ndarray:
    """Crop or pad (with the last frame held) ``[T', 56]`` to ``[T, 56]``."""
    motion = np.asarray(motion, dtype=np.float32)
    if len(motion) >= T:
        return motion[:T]
    pad = np.repeat(motion[-1:], T - len(motion), axis=0) if len(motion) else np.zeros((T, MOTION_DIM), np.float32)
    return np.concatenate([motion, pad], axis=0)
