"""The socially-aware module's motion side (RSATalker §3.3): relationship embeddings and
the motion socialnet.

:class:`SociallyAwareModule` holds two embedding sets (blood / non-blood and equal /
non-equal), each with two learnable embeddings initialised orthogonal to each other. The
two selected embeddings are fused into a query ``q`` (see :meth:`SociallyAwareModule.query`)
and the *motion socialnet* (2-layer MLP) maps ``q`` to the social feature ``s`` that the
motion generator attends with. The *Gaussian offsetnet*, which maps ``(q, t)`` to per-anchor
position corrections for the avatar, belongs to the avatar
(:class:`rsatalker_core.avatar.offsets.RelationshipOffsets`); it fuses the same kind of
embeddings into ``q`` and, in joint training (stage 3), shares these very Parameters.
The relationship value type is :class:`rsatalker_core.relationship.Relationship`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rsatalker_core.config import SocialConfig


def sinusoidal_encoding(t: Tensor, dim: int, max_period: float = 100.0) -> Tensor:
    """Sinusoidal encoding of continuous values (Vaswani et al. 2017, §3.5).

    Args:
        t: ``[...]`` values (here: time in seconds).
        dim: even output width.
        max_period: longest period encoded, in the units of ``t``.

    Returns:
        ``[..., dim]``.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    ang = t.to(torch.float32)[..., None] * freqs * (2 * math.pi)
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


class SociallyAwareModule(nn.Module):
    """Relationship embeddings and the motion socialnet (RSATalker §3.3).

    Fusion choice (the paper says only that the two embeddings are fused): ``q`` is the
    sum of the selected blood-axis and equality-axis embeddings. Because each set's two
    embeddings start orthogonal (and :meth:`orthogonality_loss` can keep them so), the
    four sums are distinct and the two axes stay separable.

    Args:
        cfg: :class:`SocialConfig` (``embed_dim``, ``hidden_dim``).
        d_model: width of the social feature ``s`` (the motion generator's width).
    """

    def __init__(self, cfg: SocialConfig, d_model: int):
        super().__init__()
        self.cfg = cfg
        self.blood_embeddings = nn.Parameter(torch.empty(2, cfg.embed_dim))
        self.equal_embeddings = nn.Parameter(torch.empty(2, cfg.embed_dim))
        nn.init.orthogonal_(self.blood_embeddings)
        nn.init.orthogonal_(self.equal_embeddings)
        self.motion_socialnet = nn.Sequential(
            nn.Linear(cfg.embed_dim, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, d_model)
        )

    def query(self, blood: Tensor, equal: Tensor) -> Tensor:
        """Fused relationship query.

        Args:
            blood: ``[B]`` long, 1 = blood relation.
            equal: ``[B]`` long, 1 = equal status.

        Returns:
            q: ``[B, E]``.
        """
        return self.blood_embeddings[blood] + self.equal_embeddings[equal]

    def social_feature(self, q: Tensor) -> Tensor:
        """Motion socialnet: ``q [B, E] -> s [B, d_model]``."""
        return self.motion_socialnet(q)

    def orthogonality_loss(self) -> Tensor:
        """Squared cosine similarity within each embedding set (0 when orthogonal)."""
        loss = 0.0
        for emb in (self.blood_embeddings, self.equal_embeddings):
            e = nn.functional.normalize(emb, dim=-1)
            loss = loss + (e[0] @ e[1]) ** 2
        return loss
