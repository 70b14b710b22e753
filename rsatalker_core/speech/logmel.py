"""Weight-free log-mel features with one STFT frame per 25-fps video frame.

Frame ``j`` is a Hann-windowed STFT of length ``2 * hop`` (80 ms at 25 fps) centred on the
middle of video frame ``j`` (hop = ``sample_rate / 25`` = 640 samples at 16 kHz), so the
spectrogram needs no resampling to the video clock. The mel filterbank is transformers'
``audio_utils.mel_filter_bank`` (Slaney scale and area normalisation, 0 Hz to Nyquist).
Output ``log10(max(mel_power, 1e-8)) / 4 + 1``: a fixed (not per-clip) scale, so the same
audio gives the same features in a short streaming window as in a whole clip; digital
silence maps to -1.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers.audio_utils import mel_filter_bank

from rsatalker_core.config import FPS, SpeechConfig, field_specs
from rsatalker_core.errors import ConfigError
from rsatalker_core.speech.encoder import SpeechEncoder

#: Power floor before the logarithm (digital silence).
POWER_FLOOR = 1e-8


class LogMelEncoder(SpeechEncoder):
    """Log-mel spectrogram at 25 fps, ``[B, S] -> [B, T, n_mels]``.

    Args:
        n_mels: number of mel bands (= :attr:`feature_dim`), in the range of the
            ``speech.n_mels`` config field (1..512).
        sample_rate: rate it consumes, Hz (a multiple of 25).
        fps: frame rate, Hz.

    Raises:
        ConfigError: ``n_mels`` out of range or a sample rate without whole samples/frame.
    """

    name = "logmel"

    def __init__(self, n_mels: int = 80, sample_rate: int = 16000, fps: int = FPS):
        super().__init__(sample_rate, fps)
        lo, hi = field_specs(SpeechConfig, "speech.")["speech.n_mels"].range
        if not lo <= int(n_mels) <= hi:
            raise ConfigError(f"speech.n_mels must be in {lo}..{hi}, got {n_mels}")
        self.feature_dim = int(n_mels)
        self.hop = self.samples_per_frame
        self.n_fft = 2 * self.hop
        fb = mel_filter_bank(
            num_frequency_bins=self.n_fft // 2 + 1,
            num_mel_filters=self.feature_dim,
            min_frequency=0.0,
            max_frequency=self.sample_rate / 2.0,
            sampling_rate=self.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("mel_filters", torch.as_tensor(fb, dtype=torch.float32), persistent=False)  # [F, M]
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)  # [n_fft]

    def encode_frames(self, wav: Tensor, num_frames: int) -> Tensor:  # [B, T*hop] -> [B, T, n_mels]
        """``wav [B, T * hop]`` -> log-mel ``[B, T, n_mels]`` (frame ``j`` centred on the
        middle of video frame ``j``; zero padding of ``hop / 2`` on each side)."""
        left = self.hop // 2
        x = torch.nn.functional.pad(wav, (left, self.n_fft - self.hop - left))
        spec = torch.stft(
            x, self.n_fft, hop_length=self.hop, window=self.window, center=False, return_complex=True
        )  # [B, F, T]
        power = spec.real.square() + spec.imag.square()
        mel = torch.einsum("bft,fm->btm", power, self.mel_filters)
        return torch.log10(mel.clamp_min(POWER_FLOOR)) / 4.0 + 1.0
