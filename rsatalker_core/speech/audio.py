"""Audio input: reading files, resampling and the audio-to-frame clock.

Every speech signal in rsatalker is mono float32 in [-1, 1]. Files are read with
soundfile (libsndfile), because the real DualTalk WAVs are IEEE float32 (WAVE format tag 3)
and Python's ``wave`` module rejects them (docs/data.md §2). Resampling is polyphase filtering
with :func:`scipy.signal.resample_poly`; nothing is ever cropped to make lengths fit.

The frame clock (docs/data.md §5, 25 fps): video frame ``j`` covers the audio interval
``[j / fps, (j + 1) / fps)`` seconds. :func:`num_frames_for` counts the *complete* frames a
clip spans, so a trailing partial frame (shorter than 40 ms) is not counted.

Example:
    >>> wav, sr = load_audio("clip_speaker1.wav")          # [S] float32 at 16 kHz
    >>> num_frames_for(len(wav), sr)                        # 23.488 s -> 587 frames
    587
"""

from __future__ import annotations

import os
import re
from math import gcd
from typing import Optional, Tuple, Union

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from rsatalker_core.config import FPS
from rsatalker_core.errors import AudioError, ConfigError

#: Sample rates outside this range (Hz) are rejected as absurd.
MIN_SAMPLE_RATE: int = 4000
MAX_SAMPLE_RATE: int = 384000

ArrayLike = Union[np.ndarray, torch.Tensor]

# libsndfile's parse log reports a data chunk that is shorter than its header declares as
# "data : <declared> (should be <present>)". Streamed WAVs declare 0 or 0xFFFFFFFF on
# purpose; those are not truncation.
_DATA_SHORT = re.compile(r"^data\s*:\s*(\d+)\s*\(should be\s+(\d+)\)", re.MULTILINE)
_STREAMED_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)


def validate_sample_rate(sample_rate: int, what: str = "sample rate") -> int:
    """Check that ``sample_rate`` (Hz) is a usable integer rate.

    Args:
        sample_rate: Hz; must be an integer in [4000, 384000].
        what: name used in the error message (e.g. the file it came from).

    Returns:
        ``sample_rate`` as a Python ``int``.

    Raises:
        AudioError: not an integer, non-positive, below 4 kHz or above 384 kHz.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        if isinstance(sample_rate, (float, np.floating)) and float(sample_rate).is_integer():
            sample_rate = int(sample_rate)
        else:
            raise AudioError(f"{what} must be an integer number of Hz, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{what} {sample_rate} Hz is not usable "
            f"(expected {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz)"
        )
    return sample_rate


def num_frames_for(num_samples: int, sample_rate: int, fps: int = FPS) -> int:
    """Number of complete video frames that ``num_samples`` of audio span.

    ``floor(num_samples * fps / sample_rate)``, computed in exact integer arithmetic. Frame
    ``j`` covers ``[j / fps, (j + 1) / fps)`` s, so a trailing partial frame is not counted
    (the DualTalk clip of 375808 samples at 16 kHz = 23.488 s spans 587.2 -> 587 frames,
    matching its 587-frame FLAME track; docs/data.md §5).

    Args:
        num_samples: audio length in samples (>= 0).
        sample_rate: Hz.
        fps: video frame rate, Hz (default :data:`rsatalker_core.config.FPS` = 25).

    Raises:
        AudioError: negative ``num_samples`` or an unusable sample rate.
        ConfigError: ``fps`` is not a positive integer.
    """
    sample_rate = validate_sample_rate(sample_rate)
    if isinstance(fps, bool) or not isinstance(fps, (int, np.integer)) or fps <= 0:
        raise ConfigError(f"fps must be a positive integer, got {fps!r}")
    num_samples = int(num_samples)
    if num_samples < 0:
        raise AudioError(f"number of samples must be >= 0, got {num_samples}")
    return (num_samples * int(fps)) // sample_rate


def resample(wav: ArrayLike, sr_in: int, sr_out: int) -> ArrayLike:
    """Resample along the last axis with a polyphase anti-aliasing filter.

    Uses :func:`scipy.signal.resample_poly` with ``up/down = sr_out/sr_in`` reduced by their
    gcd (Kaiser-window FIR, scipy's default). The output has ``ceil(S * sr_out / sr_in)``
    samples: nothing is cropped.

    Args:
        wav: ``[..., S]`` numpy array or torch tensor (a tensor is processed on the CPU and
            returned on its original device and dtype; no gradient flows through).
        sr_in: input rate, Hz.
        sr_out: output rate, Hz.

    Returns:
        ``[..., S']`` of the same kind; float32 for numpy input, unchanged when
        ``sr_in == sr_out``.

    Raises:
        AudioError: an unusable sample rate.
    """
    sr_in = validate_sample_rate(sr_in, "input sample rate")
    sr_out = validate_sample_rate(sr_out, "output sample rate")
    if sr_in == sr_out:
        return wav
    g = gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    if isinstance(wav, torch.Tensor):
        x = wav.detach().to("cpu", torch.float64).numpy()
        y = resample_poly(x, up, down, axis=-1)
        return torch.from_numpy(np.ascontiguousarray(y)).to(device=wav.device, dtype=wav.dtype)
    x = np.asarray(wav, dtype=np.float64)
    return resample_poly(x, up, down, axis=-1).astype(np.float32)


def check_not_truncated(path: str, handle: sf.SoundFile) -> None:
    for declared, present in _DATA_SHORT.findall(handle.extra_info or ""):
        declared, present = int(declared), int(present)
        if declared > present and declared not in _STREAMED_SIZES:
            raise AudioError(
                f"audio file {path} is truncated: its header declares {declared} bytes of "
                f"audio data but only {present} are present"
            )


def load_audio(path: Union[str, os.PathLike], target_sr: Optional[int] = 16000) -> Tuple[np.ndarray, int]:
    """Read an audio file as mono float32, resampled to ``target_sr``.

    Any format libsndfile reads (WAV incl. IEEE float, FLAC, OGG, ...). Multi-channel audio
    is down-mixed to mono by averaging the channels.

    Args:
        path: audio file.
        target_sr: output rate, Hz; ``None`` keeps the file's rate.

    Returns:
        ``(wav, sample_rate)``: ``wav`` is ``[S]`` float32, ``sample_rate`` in Hz.

    Raises:
        AudioError: (naming the file) the file is missing, is not audio, is empty or
            truncated, holds NaN/Inf samples, or has an unusable sample rate.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"audio file not found: {path}")
    if target_sr is not None:
        target_sr = validate_sample_rate(target_sr, "target sample rate")
    try:
        with sf.SoundFile(path) as handle:
            check_not_truncated(path, handle)
            sr = validate_sample_rate(handle.samplerate, f"sample rate of {path}")
            data = handle.read(dtype="float32", always_2d=True)  # [S, C]
    except sf.SoundFileError as exc:
        raise AudioError(f"not a readable audio file: {path} ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"audio file {path} holds no samples")
    wav = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wav).all():
        bad = int((~np.isfinite(wav)).sum())
        raise AudioError(f"audio file {path} holds {bad} NaN/Inf samples")
    if target_sr is not None and target_sr != sr:
        wav = resample(wav, sr, target_sr)
        sr = target_sr
    return np.ascontiguousarray(wav, dtype=np.float32), sr
