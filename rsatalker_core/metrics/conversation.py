"""Conversational-motion statistics that mean the same on every head model.

The DualTalk protocol (:mod:`rsatalker_core.metrics.motion`) compares a prediction with its
ground truth; these functions instead describe *how* a face moves in a conversation, so the
shipped motion, the synthetic corpus and real tracked motion can be compared on channels
that do not depend on the expression basis (FLAME or the stand-in):

* head rotation (axis-angle ``[T, 3]``, radians; FLAME axes: ``x`` pitch, chin down > 0,
  ``y`` yaw, ``z`` roll): per-axis std, mean absolute speed (rad/s) and the share of the
  motion's power in frequency bands (:func:`head_rotation_stats`);
* speaking vs listening: head speed while the face's own voice is active vs silent
  (:func:`speaking_listening_speed`; voice activity from the speaker's own wav energy,
  :func:`frame_energy_db` and :func:`voice_activity`);
* lip-sync: correlation of the own speech energy (dB per 40-ms frame) with jaw opening
  (jaw axis-angle ``x``, radians, > 0 opens) and the lag of its best value
  (:func:`energy_jaw_correlation`);
* nods: head-pitch excursions of at least ``min_amp`` radians lasting 0.3-1 s
  (:func:`detect_nods`);
* blinks: short closures in an eyelid channel (:func:`detect_blinks`).

The reference values from real conversations are in ``benchmarks/motion_reference.md``
(written by ``scripts/motion_reference.py``). Arithmetic is float64; every function raises
:class:`~rsatalker_core.errors.MetricError` on malformed input.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy.ndimage import binary_closing, binary_opening
from scipy.signal import find_peaks

from rsatalker_core.config import FPS
from rsatalker_core.errors import MetricError

__all__ = [
    "HEAD_BANDS_HZ",
    "band_power_shares",
    "blinks_per_minute",
    "conversation_stats",
    "detect_blinks",
    "detect_nods",
    "dominant_frequency",
    "energy_jaw_correlation",
    "frame_energy_db",
    "head_rotation_stats",
    "lagged_correlation",
    "nods_per_minute",
    "speaking_listening_speed",
    "voice_activity",
]

#: Frequency bands (Hz) of :func:`band_power_shares` for head rotation: slow posture
#: shifts, nods/prosody-coupled movement, fast jitter (and the rest up to Nyquist at 25 fps).
HEAD_BANDS_HZ: Tuple[Tuple[float, float], ...] = ((0.0, 0.5), (0.5, 2.0), (2.0, 5.0), (5.0, 12.5))
#: Floor of :func:`frame_energy_db` (silence), dB re full scale.
ENERGY_FLOOR_DB = -100.0


def _series(x, name: str, min_len: int = 2) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise MetricError(f"{name} must be one-dimensional [T], got shape {a.shape}")
    if len(a) < min_len:
        raise MetricError(f"{name} needs >= {min_len} frames, got {len(a)}")
    if not np.isfinite(a).all():
        raise MetricError(f"{name} holds NaN or Inf values")
    return a


def _head(head) -> np.ndarray:
    h = np.asarray(head, dtype=np.float64)
    if h.ndim != 2 or h.shape[1] != 3 or len(h) < 2:
        raise MetricError(f"head rotation must be [T >= 2, 3] axis-angle radians, got shape {h.shape}")
    if not np.isfinite(h).all():
        raise MetricError("head rotation holds NaN or Inf values")
    return h


def _fps(fps: float) -> float:
    if not fps > 0:
        raise MetricError(f"fps must be > 0, got {fps}")
    return float(fps)


# ------------------------------------------------------------------------------- speech
def frame_energy_db(wav, sample_rate: int, num_frames: Optional[int] = None, fps: float = FPS) -> np.ndarray:
    """Speech energy per motion frame: RMS of each ``1/fps``-s frame in dB re full scale.

    Args:
        wav: mono audio ``[S]`` (float, full scale 1.0) at ``sample_rate`` Hz.
        num_frames: frames to return (zero-padded past the end of ``wav``); default
            ``S * fps // sample_rate``.

    Returns:
        ``[T]`` float64 dB, floored at :data:`ENERGY_FLOOR_DB` (digital silence).

    Raises:
        MetricError: ``wav`` not 1-D, a sample rate that is not a multiple of ``fps``, or
            no whole frame.
    """
    w = np.asarray(wav, dtype=np.float64)
    if w.ndim != 1:
        raise MetricError(f"wav must be mono [S], got shape {w.shape}")
    spf = sample_rate / _fps(fps)
    if spf != int(spf) or spf < 1:
        raise MetricError(f"sample rate {sample_rate} Hz is not a whole multiple of {fps} fps")
    spf = int(spf)
    T = len(w) // spf if num_frames is None else int(num_frames)
    if T < 1:
        raise MetricError(f"wav of {len(w)} samples holds no {spf}-sample frame")
    x = np.zeros(T * spf)
    seg = w[: T * spf]
    x[: len(seg)] = seg
    rms2 = np.mean(x.reshape(T, spf) ** 2, axis=1)
    return np.maximum(10.0 * np.log10(np.maximum(rms2, 1e-30)), ENERGY_FLOOR_DB)


def voice_activity(
    energy_db, fps: float = FPS, rel_db: float = -20.0, bridge_s: float = 0.3, min_s: float = 0.2
) -> np.ndarray:
    """Own-voice activity from a speaker's own track: frames within ``rel_db`` of the
    track's 95th-percentile energy, pauses shorter than ``bridge_s`` bridged, bursts
    shorter than ``min_s`` dropped.

    Args:
        energy_db: ``[T]`` dB per frame (:func:`frame_energy_db`).
        rel_db: threshold re the 95th percentile, dB (negative).

    Returns:
        ``[T]`` bool, True while speaking.
    """
    e = _series(energy_db, "energy_db", 1)
    f = _fps(fps)
    active = e > np.percentile(e, 95) + rel_db
    nb, nm = int(round(bridge_s * f)), int(round(min_s * f))
    if nb > 0:
        pad = np.pad(active, nb)  # closing must not bridge to outside the track
        active = binary_closing(pad, np.ones(nb + 1, bool))[nb:-nb]
    if nm > 1:
        active = binary_opening(active, np.ones(nm, bool))
    return active


# ------------------------------------------------------------------------------- head
def band_power_shares(x, fps: float = FPS, bands: Sequence[Tuple[float, float]] = HEAD_BANDS_HZ) -> np.ndarray:
    """Share of a signal's power in each frequency band (Hann-windowed periodogram of the
    linearly detrended signal; DC excluded; a band is ``lo < f <= hi``).

    Returns:
        ``[len(bands)]`` shares (sum 1 when the bands cover ``(0, fps/2]``; zeros for a
        constant signal).
    """
    a = _series(x, "signal", 4)
    f = _fps(fps)
    t = np.arange(len(a))
    a = a - np.polyval(np.polyfit(t, a, 1), t)
    p = np.abs(np.fft.rfft(a * np.hanning(len(a)))) ** 2
    freqs = np.fft.rfftfreq(len(a), 1.0 / f)
    p[0] = 0.0
    total = p.sum()
    if total <= 0:
        return np.zeros(len(bands))
    return np.array([p[(freqs > lo) & (freqs <= hi)].sum() / total for lo, hi in bands])


def dominant_frequency(x, fps: float = FPS, min_hz: float = 0.1) -> float:
    """Frequency (Hz) of the periodogram peak above ``min_hz`` of the detrended signal."""
    a = _series(x, "signal", 4)
    f = _fps(fps)
    t = np.arange(len(a))
    a = a - np.polyval(np.polyfit(t, a, 1), t)
    p = np.abs(np.fft.rfft(a * np.hanning(len(a)))) ** 2
    freqs = np.fft.rfftfreq(len(a), 1.0 / f)
    ok = freqs >= min_hz
    if not ok.any():
        raise MetricError(f"a {len(a)}-frame signal resolves no frequency above {min_hz} Hz")
    return float(freqs[ok][np.argmax(p[ok])])


def head_rotation_stats(head, fps: float = FPS) -> Dict[str, list]:
    """Per-axis statistics of head rotation ``[T, 3]`` (axis-angle radians, x/y/z).

    Returns:
        ``{"std_rad": [3], "speed_rad_s": [3] mean |d/dt|, "band_shares": [3][4] shares of
        the power in :data:`HEAD_BANDS_HZ`, "dominant_hz": [3]}`` as plain lists.
    """
    h = _head(head)
    f = _fps(fps)
    return {
        "std_rad": h.std(0).tolist(),
        "speed_rad_s": (np.abs(np.diff(h, axis=0)).mean(0) * f).tolist(),
        "band_shares": [band_power_shares(h[:, k], f).tolist() for k in range(3)],
        "dominant_hz": [dominant_frequency(h[:, k], f) for k in range(3)] if len(h) >= 4 else [float("nan")] * 3,
    }


def speaking_listening_speed(head, speaking, fps: float = FPS) -> Dict[str, float]:
    """Mean angular head speed (rad/s, norm of the per-frame axis-angle change) while
    speaking and while listening, and their ratio (speaking / listening).

    Frame step ``t-1 -> t`` counts as speaking when ``speaking[t]``.

    Raises:
        MetricError: mismatched lengths, or no speaking or no listening step.
    """
    h = _head(head)
    s = np.asarray(speaking, dtype=bool)
    if s.shape != (len(h),):
        raise MetricError(f"speaking must be [T={len(h)}] bool, got shape {s.shape}")
    v = np.linalg.norm(np.diff(h, axis=0), axis=1) * _fps(fps)
    s = s[1:]
    if not s.any() or s.all():
        raise MetricError("speaking/listening speed needs both speaking and listening frames")
    sp, li = float(v[s].mean()), float(v[~s].mean())
    return {"speaking_rad_s": sp, "listening_rad_s": li, "ratio": sp / li if li > 0 else float("inf"),
            "speaking_share": float(s.mean())}


# ------------------------------------------------------------------------------- lip-sync
def lagged_correlation(x, y, max_lag: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of ``x[t]`` with ``y[t + lag]`` for ``lag = -max_lag..max_lag``
    (positive lag: ``y`` follows ``x``).

    Returns:
        ``(lags [2L+1] int, r [2L+1])``; r is 0 where either overlap is constant.

    Raises:
        MetricError: lengths differ, or ``max_lag`` leaves fewer than 3 overlapping frames.
    """
    a, b = _series(x, "x"), _series(y, "y")
    if len(a) != len(b):
        raise MetricError(f"x and y differ in length: {len(a)} vs {len(b)}")
    if max_lag < 0 or len(a) - max_lag < 3:
        raise MetricError(f"max_lag {max_lag} leaves < 3 overlapping frames of {len(a)}")
    lags = np.arange(-max_lag, max_lag + 1)
    r = np.zeros(len(lags))
    for i, lag in enumerate(lags):
        u, v = (a[: len(a) - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[: len(b) + lag])
        if u.std() > 0 and v.std() > 0:
            r[i] = np.corrcoef(u, v)[0, 1]
    return lags, r


def energy_jaw_correlation(
    energy_db, jaw_open, fps: float = FPS, max_lag: int = 10, dynamic_range_db: float = 50.0
) -> Dict[str, float]:
    """Correlation of speech energy (dB per frame) with jaw opening (rad), at lag 0 and at
    the best lag in ``±max_lag`` frames (positive: the jaw follows the audio).

    The energy is clipped to ``dynamic_range_db`` below its 95th percentile, so that
    digital silence does not dominate the correlation.

    Returns:
        ``{"r0", "best_r", "best_lag_frames", "best_lag_s"}``.
    """
    e = _series(energy_db, "energy_db")
    e = np.maximum(e, np.percentile(e, 95) - dynamic_range_db)
    lags, r = lagged_correlation(e, _series(jaw_open, "jaw_open"), max_lag)
    k = int(np.argmax(r))
    return {"r0": float(r[max_lag]), "best_r": float(r[k]), "best_lag_frames": int(lags[k]),
            "best_lag_s": float(lags[k] / _fps(fps))}


# ------------------------------------------------------------------------------- events
def detect_nods(
    pitch, fps: float = FPS, min_amp_rad: float = 0.02, duration_s: Tuple[float, float] = (0.3, 1.0)
) -> np.ndarray:
    """Nods: chin-down excursions of head pitch (axis-angle ``x`` > 0 down, radians).

    A nod is a peak of ``pitch`` whose prominence within a window of ``duration_s[1]`` is at
    least ``min_amp_rad`` and whose width at half prominence lies in ``duration_s / 2`` (a
    raised-cosine nod lasting ``D`` s is ``D/2`` s wide at half height), so slow posture
    drift and single-frame jitter are not counted.

    Returns:
        ``[N]`` frame indices of the nods' lowest-chin points.
    """
    x = _series(pitch, "pitch", 3)
    f = _fps(fps)
    lo, hi = duration_s
    if not 0 < lo < hi:
        raise MetricError(f"duration_s must be 0 < lo < hi, got {duration_s}")
    wlen = max(3, int(round(hi * f)) | 1)
    peaks, _ = find_peaks(x, prominence=min_amp_rad, wlen=wlen, width=(0.5 * lo * f, 0.5 * hi * f),
                          rel_height=0.5)
    return peaks


def nods_per_minute(pitch, fps: float = FPS, **kwargs) -> float:
    """Nod rate (per minute) of :func:`detect_nods` over the whole series."""
    x = _series(pitch, "pitch", 3)
    return float(len(detect_nods(x, fps, **kwargs)) * 60.0 * _fps(fps) / len(x))


def detect_blinks(eyelid, fps: float = FPS, min_amp: float = 0.5, max_duration_s: float = 0.5) -> np.ndarray:
    """Blinks in an eyelid-closure channel (larger = more closed; e.g. the stand-in head's
    eyelid expression coefficient, 1 = closed, or a tracker's eye-aspect-ratio negated).

    A blink is a peak of prominence >= ``min_amp`` (channel units) whose width at half
    prominence is at most ``max_duration_s / 2`` (real blinks last 0.1-0.4 s); a long
    closure (eyes shut) is not a blink.

    Returns:
        ``[N]`` frame indices of the blinks' most-closed frames.
    """
    x = _series(eyelid, "eyelid", 3)
    f = _fps(fps)
    peaks, _ = find_peaks(x, prominence=min_amp, width=(None, 0.5 * max_duration_s * f), rel_height=0.5)
    return peaks


def blinks_per_minute(eyelid, fps: float = FPS, **kwargs) -> float:
    """Blink rate (per minute) of :func:`detect_blinks` over the whole series."""
    x = _series(eyelid, "eyelid", 3)
    return float(len(detect_blinks(x, fps, **kwargs)) * 60.0 * _fps(fps) / len(x))


# ------------------------------------------------------------------------------- summary
def conversation_stats(
    head, jaw_open, own_energy_db, fps: float = FPS, partner_energy_db=None, eyelid=None,
    max_lag: int = 10, nod_amp_rad: float = 0.02,
) -> Dict[str, object]:
    """All statistics of this module for one face in one conversation.

    Args:
        head: ``[T, 3]`` head axis-angle, radians.
        jaw_open: ``[T]`` jaw axis-angle ``x``, radians.
        own_energy_db: ``[T]`` the face's own speech energy (:func:`frame_energy_db`);
            speaking = :func:`voice_activity` of it.
        partner_energy_db: optional ``[T]`` partner speech energy (jaw correlation with it
            is reported as a check that the jaw follows the right voice).
        eyelid: optional ``[T]`` eyelid closure channel for blink counting.

    Returns:
        a JSON-ready dict: ``head`` (:func:`head_rotation_stats`), ``speaking_vs_listening``
        (:func:`speaking_listening_speed`, or None when the face never or always speaks),
        ``jaw_vs_own_energy`` (and ``jaw_vs_partner_energy``), ``nods_per_minute``,
        ``blinks_per_minute`` (None without ``eyelid``), ``seconds``.

    Raises:
        MetricError: mismatched lengths or malformed input.
    """
    h = _head(head)
    T = len(h)
    jaw = _series(jaw_open, "jaw_open")
    own = _series(own_energy_db, "own_energy_db")
    for name, a in (("jaw_open", jaw), ("own_energy_db", own)):
        if len(a) != T:
            raise MetricError(f"{name} has {len(a)} frames, head has {T}")
    speaking = voice_activity(own, fps)
    try:
        slv = speaking_listening_speed(h, speaking, fps)
    except MetricError:
        slv = None
    out: Dict[str, object] = {
        "seconds": T / _fps(fps),
        "head": head_rotation_stats(h, fps),
        "speaking_vs_listening": slv,
        "jaw_vs_own_energy": energy_jaw_correlation(own, jaw, fps, max_lag),
        "nods_per_minute": nods_per_minute(h[:, 0], fps, min_amp_rad=nod_amp_rad),
        "blinks_per_minute": None if eyelid is None else blinks_per_minute(eyelid, fps),
    }
    if partner_energy_db is not None:
        partner = _series(partner_energy_db, "partner_energy_db")
        if len(partner) != T:
            raise MetricError(f"partner_energy_db has {len(partner)} frames, head has {T}")
        out["jaw_vs_partner_energy"] = energy_jaw_correlation(partner, jaw, fps, max_lag)
    return out
