"""Audio input: reading files, resampling and the audio-to-frame clock.

Every speech signal in rsatalker is mono float32 in [-1, 1]. Files are read with
soundfile (libsndfile), because the real DualTalk WAVs are IEEE float32 (WAVE format tag 3)
and Python's ``wave`` module rejects them (docs/data.md §2). Resampling is polyphase filtering
with libsoxr (the ``soxr`` package, "HQ" quality), whose cost per sample is bounded for
any pair of rates (an odd rate such as 44099 Hz costs what 44100 Hz does; a rational
polyphase filter would need ``up = 16000`` phases there); nothing is ever cropped to make
lengths fit.

Amplitude. Samples must be finite and within ``±MAX_AMPLITUDE`` (1e3, i.e. 60 dB above
full scale) after loading and after every resampling: larger values are not speech but a
broken source (a wrong sample format, a scale factor), and they overflow the speech
features to NaN (:func:`check_amplitude`).

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
from typing import Optional, Tuple, Union

import numpy as np
import soundfile as sf
import soxr
import torch

from rsatalker_core.config import FPS
from rsatalker_core.errors import AudioError, ConfigError

#: Sample rates outside this range (Hz) are rejected as absurd.
MIN_SAMPLE_RATE: int = 4000
MAX_SAMPLE_RATE: int = 384000
#: Largest accepted |sample| (full scale is 1.0): finite audio beyond it is rejected.
MAX_AMPLITUDE: float = 1e3

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


def check_amplitude(wav: ArrayLike, what: str = "audio") -> None:
    """Check that every sample is finite and ``|x| <= MAX_AMPLITUDE`` (1e3; full scale 1.0).

    Args:
        wav: ``[..., S]`` numpy array or torch tensor.
        what: how the message names the signal (e.g. the file).

    Raises:
        AudioError: NaN/Inf samples, or samples beyond ``±MAX_AMPLITUDE`` (the message gives
            the count and the largest magnitude).
    """
    x = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    if x.size == 0:
        return
    finite = np.isfinite(x)
    if not finite.all():
        raise AudioError(f"{what} holds {int((~finite).sum())} NaN/Inf samples")
    peak = float(np.max(np.abs(x)))
    if peak > MAX_AMPLITUDE:
        bad = int((np.abs(x) > MAX_AMPLITUDE).sum())
        raise AudioError(
            f"{what} holds {bad} samples beyond ±{MAX_AMPLITUDE:g} (peak {peak:.3g}; full scale is 1.0): "
            "not usable speech (wrong sample format or scale?)"
        )


def _soxr_2d(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """``[N, S]`` float64 -> ``[N, ceil(S * sr_out / sr_in)]`` float64 via libsoxr."""
    n_out = -(-x.shape[-1] * sr_out // sr_in)
    if x.shape[-1] == 0:
        return np.zeros((x.shape[0], 0))
    y = soxr.resample(np.ascontiguousarray(x.T), sr_in, sr_out, quality="HQ")  # [S', N]
    y = y.reshape(-1, x.shape[0]).T
    if y.shape[-1] < n_out:
        y = np.pad(y, ((0, 0), (0, n_out - y.shape[-1])))
    return y[:, :n_out]


def resample(wav: ArrayLike, sr_in: int, sr_out: int) -> ArrayLike:
    """Resample along the last axis with libsoxr's band-limited resampler ("HQ").

    The cost per sample is bounded whatever the rates (44099 Hz costs what 44100 Hz does).
    The output has ``ceil(S * sr_out / sr_in)`` samples: nothing is cropped. The output is
    checked like the input (:func:`check_amplitude`), so a resampler overshoot can never
    pass a non-finite or absurd sample on.

    Args:
        wav: ``[..., S]`` numpy array or torch tensor (a tensor is processed on the CPU and
            returned on its original device and dtype; no gradient flows through).
        sr_in: input rate, Hz.
        sr_out: output rate, Hz.

    Returns:
        ``[..., S']`` of the same kind; float32 for numpy input, unchanged when
        ``sr_in == sr_out``.

    Raises:
        AudioError: an unusable sample rate, or samples that are non-finite or beyond
            ``±MAX_AMPLITUDE`` (before or after resampling).
    """
    sr_in = validate_sample_rate(sr_in, "input sample rate")
    sr_out = validate_sample_rate(sr_out, "output sample rate")
    if sr_in == sr_out:
        return wav
    is_tensor = isinstance(wav, torch.Tensor)
    x = wav.detach().to("cpu", torch.float64).numpy() if is_tensor else np.asarray(wav, dtype=np.float64)
    check_amplitude(x, "audio to resample")
    lead = x.shape[:-1]
    y = _soxr_2d(x.reshape(-1, x.shape[-1]), sr_in, sr_out).reshape(*lead, -1)
    check_amplitude(y, f"audio resampled {sr_in} -> {sr_out} Hz")
    if is_tensor:
        return torch.from_numpy(np.ascontiguousarray(y)).to(device=wav.device, dtype=wav.dtype)
    return y.astype(np.float32)


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
            truncated, holds NaN/Inf samples or samples beyond ``±MAX_AMPLITUDE``, or has
            an unusable sample rate.
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
    check_amplitude(wav, f"audio file {path}")
    if target_sr is not None and target_sr != sr:
        try:
            wav = resample(wav, sr, target_sr)
        except AudioError as exc:
            raise AudioError(f"audio file {path}: {exc}") from exc
        sr = target_sr
    return np.ascontiguousarray(wav, dtype=np.float32), sr
