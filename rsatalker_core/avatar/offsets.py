"""The relationship's Gaussian position offsets ``c`` (RSATalker §3.3, the Gaussian offsetnet).

The paper's socially-aware module has two branches reading the same relationship query
``q``: the *motion socialnet* (motion side, :mod:`rsatalker_core.model.social`) and the
*Gaussian offsetnet*, a 2-layer MLP mapping ``(q, t)`` to a position correction ``c`` of
every anchor Gaussian (one per FLAME triangle). The offsets change pixels only, so they
belong to the avatar: :class:`RelationshipOffsets` is an optional part of
:class:`~rsatalker_core.avatar.gaussians.GaussianAvatar` and is saved in the avatar
checkpoint. Everything that renders (the CLI, the ROS render node, bag re-rendering,
evaluation, training stages 2 and 3) then applies the same offsets for the same
relationship and frame, whichever motion model produced the motion.

**Embeddings.** The module holds its own copy of the two embedding sets (blood /
non-blood, equal / non-equal; two learnable embeddings each, initialised orthogonal) and
fuses the selected pair into ``q`` exactly as
:meth:`~rsatalker_core.model.social.SociallyAwareModule.query` does (sum). Stage 2 copies
the motion model's embeddings in (:func:`initial_offsets`) and keeps them frozen; stage 3 *ties* them (:meth:`RelationshipOffsets.tie_embeddings`: the
same ``nn.Parameter`` objects) so that both MLPs read one ``q``, as in the paper, and the
image loss trains the shared embeddings. The saved avatar keeps its copy, so it renders
without the motion model.

**Formula.** ``c(q, t) = max_offset * tanh(MLP([q ; PE(t)]))``, ``PE`` the sinusoidal
encoding of the time ``t`` (seconds since the stream / clip started, ``frame_index / 25``),
``c`` in metres, ``[F, 3]`` per frame. The MLP's last layer starts at zero, so an untrained
module gives ``c = 0``.
"""

from __future__ import annotations

from dataclasses import asdict
import logging
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from rsatalker_core.config import FPS, SocialConfig, resolve_asset
from rsatalker_core.errors import CheckpointError, RelationshipError
from rsatalker_core.model.social import sinusoidal_encoding
from rsatalker_core.relationship import Relationship, relationship_tensors

#: State-dict prefix of the Gaussian offsetnet in motion checkpoints written before the
#: offsets moved to the avatar (:meth:`rsatalker_core.model.motion_model.MotionModel.load`
#: skips these keys; :meth:`RelationshipOffsets.from_legacy_motion_state` reads them).
LEGACY_OFFSETNET_PREFIX = "social.gaussian_offsetnet."

if TYPE_CHECKING:
    from rsatalker_core.config import RsatalkerConfig

log = logging.getLogger("rsatalker.avatar")

#: Relationship per frame: one for all frames, one per frame, ``None`` / ``""`` = unknown.
RelationshipLike = Union[None, str, Relationship]


def window_times(start: Tensor, num_frames: int) -> Tensor:
    """Time of each frame of windows that start at frame ``start [B]``: ``[B, T]`` seconds
    (``(start + i) / 25``), the ``t`` the offsets are computed at."""
    i = torch.arange(num_frames, device=start.device, dtype=torch.float32)
    return (start.to(torch.float32)[:, None] + i[None]) / FPS


class RelationshipOffsets(nn.Module):
    """Relationship embeddings + Gaussian offsetnet: per-anchor offsets ``c`` (RSATalker §3.3).

    Args:
        cfg: :class:`SocialConfig` (``embed_dim``, ``hidden_dim``, ``time_dim``,
            ``max_offset`` in metres).
        num_anchors: anchor Gaussians corrected, = triangles the avatar is bound to (9976
            for FLAME).

    Raises:
        CheckpointError: non-positive sizes or ``max_offset`` (bad checkpoint metadata).
    """

    def __init__(self, cfg: SocialConfig, num_anchors: int):
        super().__init__()
        if min(cfg.embed_dim, cfg.hidden_dim, cfg.time_dim, num_anchors) < 1 or not cfg.max_offset > 0:
            raise CheckpointError(f"RelationshipOffsets: bad sizes {asdict(cfg)}, num_anchors={num_anchors}")
        self.cfg = cfg
        self.num_anchors = int(num_anchors)
        self.blood_embeddings = nn.Parameter(torch.empty(2, cfg.embed_dim))
        self.equal_embeddings = nn.Parameter(torch.empty(2, cfg.embed_dim))
        nn.init.orthogonal_(self.blood_embeddings)
        nn.init.orthogonal_(self.equal_embeddings)
        self.offsetnet = nn.Sequential(
            nn.Linear(cfg.embed_dim + cfg.time_dim, cfg.hidden_dim), nn.GELU(),
            nn.Linear(cfg.hidden_dim, self.num_anchors * 3),
        )
        # Start with no correction: c = 0 until trained (stages 2/3).
        nn.init.zeros_(self.offsetnet[-1].weight)
        nn.init.zeros_(self.offsetnet[-1].bias)

    # ------------------------------------------------------------------ embeddings
    def tie_embeddings(self, social: nn.Module) -> None:
        """Share the motion model's embedding Parameters (both MLPs then read one ``q``).

        Raises:
            CheckpointError: the embedding widths differ.
        """
        for name in ("blood_embeddings", "equal_embeddings"):
            src = getattr(social, name)
            if src.shape != getattr(self, name).shape:
                raise CheckpointError(
                    f"{name}: motion model's {list(src.shape)} vs avatar's {list(getattr(self, name).shape)}"
                )
            setattr(self, name, src)

    def query(self, blood: Tensor, equal: Tensor) -> Tensor:
        """Fused query ``q = e_blood[blood] + e_equal[equal]``: ``[B]`` long x2 -> ``[B, E]``."""
        return self.blood_embeddings[blood] + self.equal_embeddings[equal]

    # ------------------------------------------------------------------ offsets
    def forward(self, blood: Tensor, equal: Tensor, t: Tensor) -> Tensor:
        """Offsets of ``N`` frames, each with its own relationship and time (differentiable).

        Args:
            blood: ``[N]`` long, 1 = blood relation.
            equal: ``[N]`` long, 1 = equal status.
            t: ``[N]`` time of each frame, seconds.

        Returns:
            c: ``[N, num_anchors, 3]``, metres, each value in ``(-max_offset, max_offset)``.
        """
        enc = sinusoidal_encoding(t, self.cfg.time_dim).to(self.blood_embeddings.dtype)
        out = self.offsetnet(torch.cat([self.query(blood, equal), enc], dim=-1))
        return (torch.tanh(out) * self.cfg.max_offset).reshape(t.shape[0], self.num_anchors, 3)

    def for_frames(
        self,
        relationship: Union[RelationshipLike, Sequence[RelationshipLike]],
        frame_index: Union[int, Sequence[int], Tensor],
        num_frames: int,
    ) -> Tensor:
        """Offsets ``[T, F, 3]`` (metres) of ``T`` frames at ``t = frame_index / 25`` s.

        Args:
            relationship: one relationship for all frames or one per frame (name, axis
                form or :class:`Relationship`); ``None`` / ``""`` (unknown, e.g. tracked
                motion) gives ``c = 0`` for that frame.
            frame_index: index of the first frame (the others follow it), or ``[T]``
                indices (frames since the stream / clip started, 25 fps).
            num_frames: ``T``.

        Raises:
            RelationshipError: an unknown relationship, or a per-frame list / index list
                whose length is not ``T``.
        """
        dev = self.blood_embeddings.device
        if isinstance(relationship, (str, Relationship)) or relationship is None:
            rels = [relationship] * num_frames
        else:
            rels = list(relationship)
        if len(rels) != num_frames:
            raise RelationshipError(f"{len(rels)} relationships for {num_frames} frames")
        if not isinstance(frame_index, Tensor) and np.ndim(frame_index) == 0:
            idx = torch.arange(num_frames, device=dev, dtype=torch.float32) + float(frame_index)
        else:
            idx = torch.as_tensor(frame_index, device=dev).to(torch.float32).reshape(-1)
            if idx.numel() != num_frames:
                raise RelationshipError(f"{idx.numel()} frame indices for {num_frames} frames")
        known = [i for i, r in enumerate(rels) if r is not None and r != ""]
        c = torch.zeros(num_frames, self.num_anchors, 3, device=dev, dtype=self.blood_embeddings.dtype)
        if known:
            blood, equal = relationship_tensors([rels[i] for i in known], dev)
            sel = torch.tensor(known, device=dev)
            c[sel] = self(blood, equal, idx[sel] / FPS)
        return c

    def is_zero(self) -> bool:
        """True when the offsetnet's last layer is all zero (untrained: ``c = 0`` everywhere)."""
        last = self.offsetnet[-1]
        return bool(last.weight.abs().max() == 0 and last.bias.abs().max() == 0)

    # ------------------------------------------------------------------ files
    def to_checkpoint(self) -> Dict[str, Any]:
        """``{"social": asdict(cfg), "num_anchors", "state_dict"}`` (CPU tensors) for the avatar file."""
        return {
            "social": asdict(self.cfg),
            "num_anchors": self.num_anchors,
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()},
        }

    @classmethod
    def from_checkpoint(cls, data: Dict[str, Any], where: str = "checkpoint") -> "RelationshipOffsets":
        """Inverse of :meth:`to_checkpoint`.

        Raises:
            CheckpointError: missing keys or tensors that do not fit (``where`` is named).
        """
        try:
            mod = cls(SocialConfig(**data["social"]), int(data["num_anchors"]))
            mod.load_state_dict(data["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{where}: malformed relationship offsets ({type(exc).__name__}: {exc})") from exc
        return mod

    @classmethod
    def from_legacy_motion_state(
        cls, state: Dict[str, Tensor], cfg: SocialConfig, num_anchors: int
    ) -> Optional["RelationshipOffsets"]:
        """The offsets held by an old motion checkpoint (keys ``social.gaussian_offsetnet.*``
        and ``social.{blood,equal}_embeddings``), or ``None`` when it holds none.

        Raises:
            CheckpointError: the keys are there but do not fit ``cfg`` / ``num_anchors``.
        """
        prefix = LEGACY_OFFSETNET_PREFIX
        net = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not net:
            return None
        mod = cls(cfg, num_anchors)
        sub = {f"offsetnet.{k}": v for k, v in net.items()}
        for name in ("blood_embeddings", "equal_embeddings"):
            if f"social.{name}" in state:
                sub[name] = state[f"social.{name}"]
        try:
            missing, unexpected = mod.load_state_dict(sub, strict=False)
        except RuntimeError as exc:
            raise CheckpointError(f"legacy Gaussian offsetnet does not fit ({exc})") from exc
        if unexpected or any(k.startswith("offsetnet.") for k in missing):
            raise CheckpointError(f"legacy Gaussian offsetnet is incomplete (missing {missing}, unexpected {unexpected})")
        return mod


def initial_offsets(cfg: "RsatalkerConfig", num_anchors: int) -> RelationshipOffsets:
    """The relationship offsets a stage starts from when the avatar carries none.

    A new (seeded, ``c = 0``) :class:`RelationshipOffsets` whose embeddings are the motion
    model's (``social.{blood,equal}_embeddings`` of ``motion.checkpoint``, when set), so its
    ``q`` is the generator's; a legacy motion checkpoint that still holds a
    ``social.gaussian_offsetnet`` gives that offsetnet instead.

    Raises:
        CheckpointError: ``motion.checkpoint`` is unreadable or its embeddings do not fit
            ``cfg.social``.
    """
    from rsatalker_core.io.checkpoint import load_checkpoint
    from rsatalker_core.model.motion_model import MOTION_CKPT_FORMAT  # builds speech encoders: import late

    torch.manual_seed(cfg.seed)
    offsets = RelationshipOffsets(cfg.social, num_anchors)
    if not cfg.motion.checkpoint:
        return offsets
    path = resolve_asset(cfg.motion.checkpoint)
    state = load_checkpoint(path, MOTION_CKPT_FORMAT)["state_dict"]
    legacy = RelationshipOffsets.from_legacy_motion_state(state, cfg.social, num_anchors)
    if legacy is not None:
        log.info("%s: starting from its legacy Gaussian offsetnet", path)
        return legacy
    with torch.no_grad():
        for name in ("blood_embeddings", "equal_embeddings"):
            src = state.get(f"social.{name}")
            dst = getattr(offsets, name)
            if src is None or tuple(src.shape) != tuple(dst.shape):
                raise CheckpointError(f"{path}: social.{name} missing or not {list(dst.shape)} (social config)")
            dst.copy_(src)
    return offsets
