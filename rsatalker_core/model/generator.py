"""Speaker–listener motion generator (RSATalker §3.2, Fig. 2).

Data flow for one window of ``T`` frames at 25 fps::

    a_A = proj_A(speech_A)                      # [B, T, D]   partner speech
    a_B = proj_B(speech_B)                      # [B, T, D]   avatar's own speech
    m_A = MotionEncoder(motion_A)               # [B, T, D]   partner FLAME motion
    f_A = CrossAttn(Q=a_A, K=V=m_A)             # [B, T, D]
    e   = TransformerEncoder(Fuse([f_A; a_B]))  # [B, T, D]
    s   = socialnet(q(relationship))            # [B, D]
    z   = CrossAttn(Q=s + PE(t), K=V=e)         # [B, T, D]
    M_B = MotionDecoder(z, memory=e) -> head    # [B, T, 56]

Choices the paper leaves open, made here and documented:

* ``[f_A; a_B]`` is concatenated along the feature axis and projected back to ``D`` by
  a linear layer, so every encoder token stays aligned with one video frame.
* The single social feature ``s`` becomes a per-frame query by broadcasting it over the
  ``T`` frames and adding the same sinusoidal time encoding the keys carry.
* Every attention block is a pre-norm residual block (``x + Attn(LN(x))`` then a
  feed-forward), the standard Transformer arrangement.
* Missing partner motion (inference without a partner tracker) falls back to the neutral
  FLAME motion, all zeros: expression 0, jaw closed, head frontal.
* The output is de-normalised with buffers ``motion_mean`` / ``motion_std`` ``[56]``
  (identity until training sets them from data).
* Ablation switch (evaluation only): inside ``with generator.social_bypassed():`` the
  social feature is ``s = 0``, so the social cross-attention queries with ``PE(t)`` alone
  and the relationship has no effect ("w/o socially-aware module", ``rsatalker evaluate``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import Tensor, nn

from rsatalker_core.config import MOTION_DIM, MotionConfig, SocialConfig
from rsatalker_core.model.social import SociallyAwareModule, sinusoidal_encoding


class CrossAttentionBlock(nn.Module):
    """Pre-norm residual cross-attention + feed-forward: ``q + Attn(LN(q), LN(kv))``."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.norm_q = nn.LayerNorm(d_model)
        self.norm_kv = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )

    def forward(self, q: Tensor, kv: Tensor) -> Tensor:
        """``q [B, Tq, D]``, ``kv [B, Tk, D]`` -> ``[B, Tq, D]``."""
        kvn = self.norm_kv(kv)
        x = q + self.attn(self.norm_q(q), kvn, kvn, need_weights=False)[0]
        return x + self.ff(self.norm_ff(x))


class SpeakerListenerMotionGenerator(nn.Module):
    """Predicts the avatar's FLAME motion from both speakers' speech, the partner's
    motion and a social relationship.

    Args:
        cfg: :class:`MotionConfig` (widths, layers, heads).
        social_cfg: :class:`SocialConfig` for the socially-aware module.
        speech_dim: width ``D_s`` of the (frozen) speech encoder's features.
    """

    def __init__(self, cfg: MotionConfig, social_cfg: SocialConfig, speech_dim: int):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.speech_dim = speech_dim
        self.proj_partner_speech = nn.Linear(speech_dim, d)
        self.proj_self_speech = nn.Linear(speech_dim, d)
        self.motion_encoder = nn.Sequential(nn.Linear(MOTION_DIM, d), nn.GELU(), nn.Linear(d, d))
        self.partner_cross_attn = CrossAttentionBlock(d, cfg.n_heads, cfg.ff_dim, cfg.dropout)
        self.fuse = nn.Linear(2 * d, d)
        enc_layer = nn.TransformerEncoderLayer(
            d, cfg.n_heads, cfg.ff_dim, cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            enc_layer, cfg.n_encoder_layers, enable_nested_tensor=False
        )
        self.social = SociallyAwareModule(social_cfg, d)
        self.social_cross_attn = CrossAttentionBlock(d, cfg.n_heads, cfg.ff_dim, cfg.dropout)
        dec_layer = nn.TransformerDecoderLayer(
            d, cfg.n_heads, cfg.ff_dim, cfg.dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(dec_layer, cfg.n_decoder_layers)
        self.out_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, MOTION_DIM)
        # Small output at initialisation: an untrained model stays near the neutral face.
        nn.init.normal_(self.head.weight, std=0.005)
        nn.init.zeros_(self.head.bias)
        # Ablation switch; see social_bypassed(). Not a parameter or buffer.
        self.use_social = True
        self.register_buffer("motion_mean", torch.zeros(MOTION_DIM))
        self.register_buffer("motion_std", torch.ones(MOTION_DIM))
        self.register_buffer("time_enc", sinusoidal_encoding(
            torch.arange(cfg.max_frames, dtype=torch.float32), d, max_period=float(cfg.max_frames)
        ), persistent=False)

    @contextmanager
    def social_bypassed(self) -> Iterator["SpeakerListenerMotionGenerator"]:
        """Ablation "without the socially-aware module", for evaluation.

        Inside the block :meth:`forward` skips the social query path: the social feature
        ``s`` (motion socialnet of the relationship query) is replaced by zeros, so the
        social cross-attention queries the encoded features with the time encoding alone
        and the output no longer depends on ``blood`` / ``equal``. The weights are
        untouched; the previous state is restored on exit, also after an exception.
        """
        previous = self.use_social
        self.use_social = False
        try:
            yield self
        finally:
            self.use_social = previous

    def _time(self, T: int, offset: int = 0) -> Tensor:
        if offset + T > self.time_enc.shape[0]:
            raise ValueError(
                f"window of {T} frames at offset {offset} exceeds motion.max_frames="
                f"{self.time_enc.shape[0]}"
            )
        return self.time_enc[offset : offset + T]

    def forward(
        self,
        self_speech: Tensor,  # [B, T, D_s]
        partner_speech: Tensor,  # [B, T, D_s]
        blood: Tensor,  # [B] long
        equal: Tensor,  # [B] long
        partner_motion: Optional[Tensor] = None,  # [B, T, 56]
    ) -> Tensor:
        """Generate the avatar's motion for one window.

        Args:
            self_speech: ``[B, T, D_s]`` the avatar's own speech features at 25 fps.
            partner_speech: ``[B, T, D_s]`` the partner's speech features at 25 fps.
            blood: ``[B]`` long, 1 = blood relation.
            equal: ``[B]`` long, 1 = equal status.
            partner_motion: ``[B, T, 56]`` partner FLAME motion ``[exp|jaw|head]``
                (radians for rotations), or ``None`` for the neutral fallback.

        Returns:
            ``[B, T, 56]`` avatar motion ``[exp 50 | jaw 3 | head 3]``, rotations in
            axis-angle radians.

        Raises:
            ValueError: mismatched batch/frame sizes or a window longer than
            ``motion.max_frames``.
        """
        B, T, _ = self_speech.shape
        if partner_speech.shape[:2] != (B, T):
            raise ValueError(
                f"partner_speech {tuple(partner_speech.shape)} does not match self_speech "
                f"{tuple(self_speech.shape)}"
            )
        if partner_motion is None:
            partner_motion = self_speech.new_zeros(B, T, MOTION_DIM)
        elif partner_motion.shape != (B, T, MOTION_DIM):
            raise ValueError(f"partner_motion must be [{B}, {T}, 56], got {tuple(partner_motion.shape)}")
        pe = self._time(T)[None]  # [1, T, D]
        a_A = self.proj_partner_speech(partner_speech) + pe
        a_B = self.proj_self_speech(self_speech) + pe
        m_norm = (partner_motion - self.motion_mean) / self.motion_std
        m_A = self.motion_encoder(m_norm) + pe
        f_A = self.partner_cross_attn(a_A, m_A)  # [B, T, D]
        e = self.encoder(self.fuse(torch.cat([f_A, a_B], dim=-1)) + pe)  # [B, T, D]
        if self.use_social:
            s = self.social.social_feature(self.social.query(blood, equal))  # [B, D]
        else:  # ablation: social_bypassed()
            s = e.new_zeros(B, e.shape[-1])
        z = self.social_cross_attn(s[:, None, :] + pe, e)  # [B, T, D]
        h = self.decoder(z, e)
        out = self.head(self.out_norm(h))  # [B, T, 56]
        return out * self.motion_std + self.motion_mean
