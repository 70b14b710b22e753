"""Two-person dialogues arranged from real single-speaker recordings.

No public two-person recording ships in a Debian package, but single-speaker recordings
of different people do (codec2-examples: ``speech_orig_16k.wav``, ``ve9qrp.wav``). This
module cuts each recording into phrases at its pauses and interleaves the phrases into
alternating turns, giving one track per speaker: while one speaks, the other's track is
silent (with a short natural gap between turns, and an optional small overlap).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from rsatalker_core.speech.audio import load_audio
from rsatalker_core.errors import AudioError

#: Real human speech from the Debian package codec2-examples (two different speakers).
#: (``vk2tpm_004.wav`` from the same package is a modem signal with a flat envelope, not
#: speech, so the second speaker is the amateur-radio recording ``ve9qrp.wav``.)
DEBIAN_SPEECH = (
    "/usr/share/codec2/raw/speech_orig_16k.wav",
    "/usr/share/codec2/wav/ve9qrp.wav",
)


@dataclass
class Turn:
    """One turn: ``speaker`` (0 or 1) speaks from ``start`` to ``end`` seconds."""

    speaker: int
    start: float
    end: float


def split_phrases(
    wav: np.ndarray,  # [S]
    sample_rate: int,
    min_pause: float = 0.2,
    min_phrase: float = 0.6,
    max_phrase: float = 4.0,
    threshold_db: float = -35.0,
) -> List[Tuple[int, int]]:
    """Cut speech at pauses.

    A 20 ms frame is voiced when its RMS level (dB re the loudest frame) exceeds both
    ``threshold_db`` and an adaptive threshold 35% of the way from the noise floor (10th
    percentile) to the speech level (95th percentile), so noisy radio recordings split too.
    Pauses of at least ``min_pause`` s separate phrases; phrases shorter than ``min_phrase``
    s are merged into their neighbour; phrases longer than ``max_phrase`` s are cut at
    their quietest 20 ms frame.

    Returns:
        ``[(start_sample, end_sample), ...]`` in order.
    """
    hop = max(1, int(0.02 * sample_rate))
    n = len(wav) // hop
    if n == 0:
        return []
    rms = np.sqrt(np.mean(wav[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms / rms.max())
    floor, level = np.percentile(db, [10, 95])
    voiced = db > max(threshold_db, floor + 0.35 * (level - floor))
    phrases: List[List[int]] = []
    gap = int(round(min_pause / 0.02))
    i = 0
    while i < n:
        if not voiced[i]:
            i += 1
            continue
        j = i
        silent = 0
        while j < n and silent < gap:
            silent = silent + 1 if not voiced[j] else 0
            j += 1
        end = j - silent
        phrases.append([i, end])
        i = j
    merged: List[List[int]] = []
    for p in phrases:
        if merged and (p[1] - p[0]) * 0.02 < min_phrase:
            merged[-1][1] = p[1]
        elif merged and (merged[-1][1] - merged[-1][0]) * 0.02 < min_phrase:
            merged[-1][1] = p[1]
        else:
            merged.append(p)
    longest = int(round(max_phrase / 0.02))
    cut: List[List[int]] = []
    for a, b in merged:
        while b - a > longest:
            lo = a + longest // 3
            m = lo + int(np.argmin(db[lo : a + longest]))
            cut.append([a, m])
            a = m
        cut.append([a, b])
    merged = cut
    pad = int(0.05 * sample_rate)
    return [(max(0, a * hop - pad), min(len(wav), b * hop + pad)) for a, b in merged]


def make_dialogue(
    recordings: Sequence[np.ndarray],  # two [S] tracks at sample_rate
    sample_rate: int,
    duration: float = 20.0,
    phrases_per_turn: Tuple[int, int] = (1, 2),
    gap: Tuple[float, float] = (0.2, 0.6),
    seed: int = 0,
) -> Tuple[np.ndarray, np.ndarray, List[Turn]]:
    """Arrange two speakers' recordings into alternating turns.

    Args:
        recordings: speaker 0's and speaker 1's speech, mono, at ``sample_rate``.
        duration: length of the dialogue, seconds (phrases are reused cyclically).
        phrases_per_turn: inclusive range of phrases a speaker says per turn.
        gap: range of silence between turns, seconds.
        seed: RNG seed (turn lengths and gaps).

    Returns:
        ``(track0 [S], track1 [S], turns)``; both tracks have ``duration`` seconds.
    """
    if len(recordings) != 2:
        raise ValueError("make_dialogue needs exactly two recordings")
    rng = np.random.default_rng(seed)
    total = int(round(duration * sample_rate))
    tracks = [np.zeros(total, dtype=np.float32) for _ in range(2)]
    phrases = [split_phrases(r, sample_rate) or [(0, len(r))] for r in recordings]
    cursor = [0, 0]
    turns: List[Turn] = []
    pos = int(0.3 * sample_rate)
    speaker = 0
    while pos < total:
        for _ in range(int(rng.integers(phrases_per_turn[0], phrases_per_turn[1] + 1))):
            a, b = phrases[speaker][cursor[speaker] % len(phrases[speaker])]
            cursor[speaker] += 1
            seg = recordings[speaker][a:b]
            seg = seg[: max(0, total - pos)]
            if len(seg) == 0:
                break
            tracks[speaker][pos : pos + len(seg)] = seg
            turns.append(Turn(speaker, pos / sample_rate, (pos + len(seg)) / sample_rate))
            pos += len(seg) + int(0.1 * sample_rate)
        pos += int(rng.uniform(*gap) * sample_rate)
        speaker = 1 - speaker
    return tracks[0], tracks[1], turns


def debian_dialogue(
    sample_rate: int = 16000, duration: float = 20.0, seed: int = 0, paths: Optional[Sequence[str]] = None
) -> Tuple[np.ndarray, np.ndarray, List[Turn]]:
    """A dialogue of the two two real speakers of Debian's codec2-examples (see :data:`DEBIAN_SPEECH`).

    Raises:
        AudioError: a recording is missing (install the Debian package codec2-examples).
    """
    paths = list(paths or DEBIAN_SPEECH)
    recs = []
    for p in paths:
        if not os.path.isfile(p):
            raise AudioError(f"{p}: not found; install the Debian package codec2-examples")
        wav, _ = load_audio(p, sample_rate)
        recs.append(wav / max(1e-6, float(np.abs(wav).max())) * 0.5)
    return make_dialogue(recs, sample_rate, duration=duration, seed=seed)
