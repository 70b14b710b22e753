"""SYNTHETIC SUPERVISION: a dyadic corpus of real recorded speech with rule-based motion.

No dyadic corpus with FLAME tracks ships offline (DualTalk is a download; docs/data.md §1, docs/assets.md §7),
yet default weights and tests need conversations to train on. This module builds them,
and everything it writes says that the motion is **synthetic supervision**, not tracked
from video: file names (``synthetic_<split>_<n>_speaker{1,2}.*``), a ``synthetic_note``
array in every npz, ``README.md`` and ``synthetic_corpus.json`` in the corpus root (the
loader marks items of such a root ``synthetic=True``).

**Audio.** Real recordings of different people from Debian packages (codec2-examples:
:data:`CODEC2_VOICES`) and, when ``espeak-ng`` is installed, synthesised voices
(:data:`ESPEAK_VOICES`) are cut at pauses and interleaved into turn-taking tracks by
:func:`rsatalker_core.dialogue.make_dialogue`. ``all.wav`` is left out: it concatenates
several of the other recordings, so a "dialogue" could pair a person with themself.
Written as 16 kHz float32 WAV, like DualTalk.

**Motion** (:func:`synthesize_motion`, 25 fps, ``[exp 50 | jaw 3 | head 3]``). Axes as in
FLAME (y up, face toward +z): jaw ``x`` > 0 opens the mouth; head ``x`` > 0 tilts the chin
down (a nod), ``y`` turns, ``z`` rolls. Expression indices follow the stand-in head's
hand-made directions (:mod:`rsatalker_core.head.standin`: 0 lips part, 1 smile, 3 brow
raise, 8 upper-lip raise, 10 lower-lip depress); on official FLAME these are PCA components
with other meanings. Per frame, from the speaker's own track:

* ``loud`` = frame RMS in dB re the voice's 95th-percentile level, mapped -40..0 dB -> 0..1
  (Gaussian-smoothed, sigma 0.75 frame); ``pitch_z`` = autocorrelation F0 in octaves re
  the voice's median, voiced frames only; ``bright`` = share of spectral energy above 2 kHz.
* jaw ``x = jaw_rad * loud``; exp0 ``= lips * loud``, exp10 ``= 0.4 * lips * loud``,
  exp8 ``= 0.3 * lips * bright * loud`` (the mouth follows the speech envelope).
* speaking head: pitch rises raise the chin (``x -= head_prosody_rad * pitch_z``), loudness
  peaks (stressed syllables) give short nods of ``stress_nod_rad``, roll follows slow pitch
  (``z = 0.5 * head_prosody_rad * pitch_z``), brows rise with pitch (exp3 = ``brow *
  relu(pitch_z)``).
* listening: after each partner phrase end, with probability ``p_backchannel``, a nod of
  ``nod_rad`` (raised cosine, 0.5 s) starting 0.15-0.45 s later — only when the listener
  stays silent for the whole nod (a backchannel, not a turn start) — and a smile bump (exp1
  ``smile_bc``, 1.2 s) with it; exp1 also holds a constant ``smile_base``.
* everyone: slow idle head drift (Gaussian low-pass noise, sigma 1 s, std ``idle_rad``).
  synthetic-v2 lowered ``idle_rad`` from 0.04 to 0.01 rad: at 0.04 the random drift was
  ~95% of the head-pose variance, so not even the rules' own expectation given audio and
  turns predicted head pose better than the mean pose (benchmarks/results_default_motion.md).
* the head-motion amounts (``head_prosody_rad``, ``stress_nod_rad``, ``nod_rad``,
  ``idle_rad``) are scaled by ``head_gain``; every channel is Gaussian-smoothed and clipped
  to human ranges (jaw 0..0.4 rad, head ±0.3 rad).

**Relationship rules** (:data:`RULES`; RSATalker's two axes, docs/method.md §3). In a
non-equal clip speaker 1 has the higher-status role (parent, superior) and speaker 2 the
lower (child, subordinate); in an equal clip both are peers.

==================  =============================================================
condition           effect on the base values
==================  =============================================================
blood               warmer: ``smile_base`` +0.3, ``smile_bc`` x1.5,
                    ``p_backchannel`` +0.15
non-equal, higher   dominant: ``head_gain`` x1.15, ``p_backchannel`` x0.5,
                    smiles x0.7
non-equal, lower    restrained: ``head_gain`` x0.6, ``jaw_rad`` x0.85, ``brow``
                    x0.7, smiles x0.8
==================  =============================================================

Random draws (idle drift, backchannel coin flips and delays) depend on the seed and the
speaker only, not on the relationship, so the same clip under two relationships differs
only by the rules. Deterministic given the seed.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import soundfile as sf
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from rsatalker_core.speech.audio import load_audio, num_frames_for
from rsatalker_core.config import FPS, MOTION_DIM
from rsatalker_core.data.dualtalk import SYNTHETIC_METADATA, DatasetError
from rsatalker_core.data.relationships import write_relationship_index
from rsatalker_core.speech.dialogue import Turn, make_dialogue, split_phrases
from rsatalker_core.errors import AudioError, ConfigError
from rsatalker_core.io.motion_npz import save_motion_npz
from rsatalker_core.relationship import Relationship

#: Written into every npz (key ``synthetic_note``), the README and the metadata.
SYNTHETIC_NOTE = (
    "SYNTHETIC SUPERVISION: rule-based FLAME motion targets generated by "
    "rsatalker_core.data.synthetic from real recorded speech; not tracked from video"
)
GENERATOR_VERSION = "synthetic-v2"

#: Real human speech in Debian's codec2-examples (one person per file).
CODEC2_VOICES: Dict[str, str] = {
    "codec2-speech_orig": "/usr/share/codec2/raw/speech_orig_16k.wav",
    "codec2-ve9qrp": "/usr/share/codec2/wav/ve9qrp.wav",
    "codec2-vk5qi": "/usr/share/codec2/wav/vk5qi.wav",
    "codec2-hts1a": "/usr/share/codec2/wav/hts1a.wav",
    "codec2-hts2a": "/usr/share/codec2/wav/hts2a.wav",
    "codec2-forig": "/usr/share/codec2/wav/forig.wav",
    "codec2-morig": "/usr/share/codec2/wav/morig.wav",
}
#: espeak-ng voices (voice+variant, words per minute, pitch 0-99).
ESPEAK_VOICES: Dict[str, Tuple[str, int, int]] = {
    "espeak-us-m3": ("en-us+m3", 165, 45),
    "espeak-us-f2": ("en-us+f2", 160, 60),
    "espeak-gb-m1": ("en-gb+m1", 150, 40),
    "espeak-gb-f4": ("en-gb+f4", 170, 55),
    "espeak-scot-m2": ("en-gb-scotland+m2", 155, 50),
    "espeak-029-f3": ("en-029+f3", 165, 65),
}
_LINES = (
    "Did you manage to finish the report before lunch?",
    "Not quite, I still have to check the last two tables.",
    "That sounds fine to me, we can look at it together tomorrow.",
    "I was thinking we could take the early train this time.",
    "Really? I thought you hated getting up before seven.",
    "Well, the view from the bridge is worth it in the morning.",
    "Have you heard back from the people at the garden centre?",
    "They called yesterday and said the plants will arrive on Friday.",
    "Good, then we have the whole weekend to put them in.",
    "Remember to bring the blue folder when you come over.",
    "I put it by the door so I will not forget it again.",
    "How was the concert last night, was it very crowded?",
    "It was packed, but the second half made up for everything.",
    "We should cook something simple tonight, maybe soup.",
    "Yes, and there is still some bread left from the market.",
    "Let me know when you are ready and I will call a taxi.",
)

#: Base motion amounts and the relationship rule table (see the module docstring).
RULES: Dict[str, Dict[str, float]] = {
    "base": {
        "jaw_rad": 0.30, "lips": 2.0, "brow": 0.8, "head_gain": 1.0,
        "head_prosody_rad": 0.08, "stress_nod_rad": 0.05, "nod_rad": 0.10, "idle_rad": 0.01,
        "smile_base": 0.0, "smile_bc": 0.8, "p_backchannel": 0.7,
    },
    "blood": {"smile_base+": 0.3, "smile_bc*": 1.5, "p_backchannel+": 0.15},
    "non_equal_higher": {"head_gain*": 1.15, "p_backchannel*": 0.5, "smile_base*": 0.7, "smile_bc*": 0.7},
    "non_equal_lower": {"head_gain*": 0.6, "jaw_rad*": 0.85, "brow*": 0.7, "smile_base*": 0.8, "smile_bc*": 0.8},
}
JAW_RANGE = (0.0, 0.4)
#: Each speaker talks at least this share of a clip's speech time (dialogues are redrawn,
#: up to _DIALOGUE_TRIES times, keeping the most balanced).
_MIN_TALK_SHARE = 0.3
_DIALOGUE_TRIES = 20
HEAD_LIMIT = 0.3


def role_of(speaker: int, relationship: Relationship) -> str:
    """``"equal"``, or in a non-equal clip ``"higher"`` for speaker 1 and ``"lower"`` for 2."""
    if relationship.equal:
        return "equal"
    return "higher" if speaker == 1 else "lower"


def motion_params(relationship: Relationship, speaker: int) -> Dict[str, float]:
    """Base amounts of :data:`RULES` with the relationship's rules applied (``+`` adds,
    ``*`` multiplies), for ``speaker`` 1 or 2."""
    p = dict(RULES["base"])
    rules = []
    if relationship.blood:
        rules.append(RULES["blood"])
    role = role_of(speaker, relationship)
    if role != "equal":
        rules.append(RULES[f"non_equal_{role}"])
    for rule in rules:
        for key, v in rule.items():
            name, op = key[:-1], key[-1]
            p[name] = p[name] + v if op == "+" else p[name] * v
    p["p_backchannel"] = float(np.clip(p["p_backchannel"], 0.0, 0.95))
    return p


def prosody_tracks(wav: np.ndarray, sample_rate: int, num_frames: int) -> Dict[str, np.ndarray]:  # wav [S]
    """Per-frame (25 fps) speech descriptors of one speaker's track.

    Returns:
        ``{"loud": [T] in 0..1, "pitch_z": [T] octaves re the median F0 (0 when unvoiced),
        "voiced": [T] bool, "bright": [T] share of energy above 2 kHz}``. ``loud`` maps frame
        RMS from -40 dB to 0 dB re the track's 95th-percentile non-silent level onto 0..1.
        F0: normalised autocorrelation of each 40-ms frame (Hann), peak in 70-400 Hz,
        voiced when the peak exceeds 0.45 and ``loud > 0.3`` (a simple estimator: enough
        for rule-based targets).
    """
    spf = sample_rate // FPS
    x = np.zeros(num_frames * spf, dtype=np.float64)
    seg = wav[: num_frames * spf]
    x[: len(seg)] = seg
    frames = x.reshape(num_frames, spf)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    active = rms > 1e-5
    ref = np.percentile(rms[active], 95) if active.any() else 1.0
    db = 20 * np.log10(np.maximum(rms, 1e-10) / max(ref, 1e-10))
    loud = gaussian_filter1d(np.clip((db + 40.0) / 40.0, 0.0, 1.0), 0.75)
    win = np.hanning(spf)
    spec = np.fft.rfft((frames - frames.mean(1, keepdims=True)) * win, n=2 * spf, axis=1)
    power = np.abs(spec) ** 2
    ac = np.fft.irfft(power, axis=1)[:, :spf]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    lo, hi = int(sample_rate / 400), int(sample_rate / 70)
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    peak = ac[np.arange(num_frames), lag]
    voiced = (peak > 0.45) & (loud > 0.3)
    f0 = sample_rate / lag
    pitch_z = np.zeros(num_frames)
    if voiced.any():
        pitch_z[voiced] = np.clip(np.log2(f0[voiced] / np.median(f0[voiced])), -1.0, 1.0)
    freqs = np.fft.rfftfreq(2 * spf, 1.0 / sample_rate)
    bright = power[:, freqs >= 2000].sum(1) / np.maximum(power.sum(1), 1e-12)
    return {"loud": loud, "pitch_z": pitch_z, "voiced": voiced, "bright": bright * active}


def _bump(num_frames: int, start: float, length: float) -> np.ndarray:
    """Raised cosine from ``start`` for ``length`` frames (peak 1 in the middle)."""
    t = np.arange(num_frames) - start
    out = 0.5 - 0.5 * np.cos(2 * np.pi * t / length)
    out[(t < 0) | (t > length)] = 0.0
    return out


def synthesize_motion(
    own: np.ndarray,  # [S] this speaker's track
    turns: Sequence[Turn],
    speaker: int,
    relationship: Relationship,
    sample_rate: int,
    seed: int = 0,
) -> np.ndarray:
    """Rule-based SYNTHETIC motion ``[T, 56]`` (radians, 25 fps) for one speaker of a dialogue.

    Args:
        own: the speaker's own audio track at ``sample_rate`` Hz.
        turns: the dialogue's phrases (:class:`~rsatalker_core.dialogue.Turn`, ``speaker``
            0 = speaker 1, 1 = speaker 2; times in seconds).
        speaker: 1 or 2 (decides the role in non-equal clips; see :func:`role_of`).
        relationship: the clip's relationship (rule table :data:`RULES`).
        seed: seeds idle drift and backchannel draws (independent of ``relationship``).

    Returns:
        float32 ``[T, 56]`` ``[exp 50 | jaw 3 | head 3]``, ``T = floor(S * 25 / sample_rate)``;
        jaw within 0..0.4 rad, head within ±0.3 rad. Rules: module docstring.

    Raises:
        ConfigError: ``speaker`` not 1 or 2.
        AudioError: ``own`` shorter than one frame, or an unusable sample rate.
    """
    if speaker not in (1, 2):
        raise ConfigError(f"speaker must be 1 or 2, got {speaker!r}")
    T = num_frames_for(len(own), sample_rate)
    if T < 1:
        raise AudioError(f"speech track of {len(own)} samples is shorter than one 40-ms frame")
    p = motion_params(relationship, speaker)
    rng = np.random.default_rng([int(seed), int(speaker)])
    pro = prosody_tracks(own, sample_rate, T)
    loud, pz = pro["loud"], gaussian_filter1d(pro["pitch_z"], 2.0)
    speaking = np.zeros(T, dtype=bool)
    for t in turns:
        if t.speaker == speaker - 1:
            speaking[int(t.start * FPS) : int(np.ceil(t.end * FPS))] = True
    g = p["head_gain"]
    m = np.zeros((T, MOTION_DIM))
    # Mouth: jaw and lips follow the envelope.
    m[:, 50] = p["jaw_rad"] * loud
    m[:, 0] = p["lips"] * loud
    m[:, 10] = 0.4 * p["lips"] * loud
    m[:, 8] = 0.3 * p["lips"] * pro["bright"] * loud
    # Speaking head and brows follow prosody.
    head = np.zeros((T, 3))
    head[:, 0] -= g * p["head_prosody_rad"] * pz * speaking
    head[:, 2] += 0.5 * g * p["head_prosody_rad"] * gaussian_filter1d(pz * speaking, 6.0)
    peaks, _ = find_peaks(loud * speaking, prominence=0.35, distance=8)
    for k in peaks:
        head[:, 0] += g * p["stress_nod_rad"] * _bump(T, k - 2, 8)
    m[:, 3] = p["brow"] * np.maximum(pz, 0.0) * speaking
    # Listening: nods and smiles after the partner's phrase ends.
    smile = np.full(T, p["smile_base"])
    for t in turns:
        if t.speaker == speaker - 1:
            continue
        u, delay = rng.uniform(), rng.uniform(0.15, 0.45)
        start = (t.end + delay) * FPS
        quiet = not speaking[int(start) : int(np.ceil(start + 0.5 * FPS)) + 1].any()
        if u < p["p_backchannel"] and quiet:
            head[:, 0] += g * p["nod_rad"] * _bump(T, start, 0.5 * FPS)
            smile += p["smile_bc"] * _bump(T, start - 0.1 * FPS, 1.2 * FPS)
    m[:, 1] = smile
    # Idle drift for everyone: low-pass noise normalised to idle_rad (std).
    drift = gaussian_filter1d(rng.standard_normal((T + 200, 3)), 25.0, axis=0)[100:-100]
    drift *= g * p["idle_rad"] / np.maximum(drift.std(0), 1e-9) * np.array([1.0, 1.0, 0.5])
    head += drift
    # Smooth and clip to human ranges.
    m[:, 50] = np.clip(gaussian_filter1d(m[:, 50], 0.75), *JAW_RANGE)
    for c in (0, 8, 10):
        m[:, c] = gaussian_filter1d(m[:, c], 0.75)
    for c in (1, 3):
        m[:, c] = gaussian_filter1d(m[:, c], 2.0)
    m[:, 53:56] = np.clip(gaussian_filter1d(head, 1.5, axis=0), -HEAD_LIMIT, HEAD_LIMIT)
    return m.astype(np.float32)


# ---------------------------------------------------------------------------- voices
def espeak_available() -> bool:
    """True when the ``espeak-ng`` program is on PATH (Debian package espeak-ng)."""
    return shutil.which("espeak-ng") is not None


@functools.lru_cache(maxsize=32)
def _voice_cached(name: str, sample_rate: int) -> np.ndarray:
    if name in CODEC2_VOICES:
        path = CODEC2_VOICES[name]
        if not os.path.isfile(path):
            raise AudioError(f"{path}: not found; install the Debian package codec2-examples")
        wav = load_audio(path, sample_rate)[0].astype(np.float64)
    elif name in ESPEAK_VOICES:
        if not espeak_available():
            raise AudioError("espeak-ng not found: install the Debian package espeak-ng")
        voice, wpm, pitch = ESPEAK_VOICES[name]
        parts = []
        with tempfile.TemporaryDirectory() as tmp:
            for i, line in enumerate(_LINES):
                out = os.path.join(tmp, f"{i}.wav")
                subprocess.run(
                    ["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", out, line],
                    check=True, capture_output=True, timeout=60,
                )
                parts += [load_audio(out, sample_rate)[0], np.zeros(int(0.4 * sample_rate))]
        wav = np.concatenate(parts).astype(np.float64)
    else:
        raise ConfigError(f"unknown voice '{name}' (known: {', '.join(list(CODEC2_VOICES) + list(ESPEAK_VOICES))})")
    hop = sample_rate // 50
    n = len(wav) // hop
    rms = np.sqrt(np.mean(wav[: n * hop].reshape(n, hop) ** 2, axis=1))
    level = np.percentile(rms[rms > 1e-5], 95)
    wav = np.clip(wav * (0.1 / max(level, 1e-6)), -0.99, 0.99)
    return wav.astype(np.float32)


def load_voice(name: str, sample_rate: int = 16000) -> np.ndarray:
    """One voice's speech ``[S]`` float32 at ``sample_rate`` Hz, level-normalised (95th
    percentile of 20-ms RMS = 0.1). Codec2 voices are read from the Debian files, espeak
    voices synthesised from fixed sentences (cached in-process).

    Raises:
        AudioError: the recording or espeak-ng is missing (names the Debian package).
        ConfigError: an unknown voice name.
    """
    return _voice_cached(name, int(sample_rate)).copy()


def available_voices(kind: str = "auto") -> List[str]:
    """Voice names for ``kind``: ``"codec2"``, ``"espeak"``, ``"all"``, or ``"auto"`` (all
    when espeak-ng is installed, else codec2) — only codec2 files that exist are listed.

    Raises:
        ConfigError: an unknown kind, or ``"espeak"``/``"all"`` without espeak-ng.
    """
    if kind not in ("auto", "codec2", "espeak", "all"):
        raise ConfigError(f"unknown voices '{kind}' (use auto, codec2, espeak or all)")
    codec2 = [n for n, p in CODEC2_VOICES.items() if os.path.isfile(p)]
    if kind in ("espeak", "all") and not espeak_available():
        raise ConfigError(f"voices '{kind}' need espeak-ng: install the Debian package espeak-ng")
    espeak = list(ESPEAK_VOICES) if (kind != "codec2" and espeak_available()) else []
    return {"codec2": codec2, "espeak": espeak}.get(kind, codec2 + espeak)


# ---------------------------------------------------------------------------- clips and corpus
@dataclass
class SyntheticClip:
    """One SYNTHETIC-SUPERVISION dyadic clip: ``audio``/``motion`` are ``(speaker 1, speaker 2)``
    (``[S]`` float32; ``[T, 56]`` float32), ``turns`` use speaker 0/1."""

    audio: Tuple[np.ndarray, np.ndarray]
    motion: Tuple[np.ndarray, np.ndarray]
    turns: List[Turn]
    relationship: Relationship
    voices: Tuple[str, str]
    sample_rate: int


def _rotate_at_pause(wav: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    phrases = split_phrases(wav, sample_rate)
    if len(phrases) < 2:
        return wav
    a = phrases[int(rng.integers(len(phrases)))][0]
    return np.concatenate([wav[a:], wav[:a]])


def synthesize_clip(
    voices: Tuple[str, str], relationship, seconds: float = 10.0, seed: int = 0, sample_rate: int = 16000
) -> SyntheticClip:
    """A SYNTHETIC-SUPERVISION dialogue of two voices with rule-based motion for both.

    Each voice's recording is rotated to start at a random phrase, then
    :func:`~rsatalker_core.dialogue.make_dialogue` arranges turns of 1-3 phrases (redrawn
    until each speaker has >= 30% of the speech time, at most 20 draws); the duration is rounded to
    whole 40-ms frames, so the wavs span exactly ``T = round(seconds * 25)`` frames.

    Raises:
        ConfigError: same voice twice, unknown voice, ``seconds`` < 1.
        AudioError: a voice's recording or espeak-ng is missing.
    """
    if voices[0] == voices[1]:
        raise ConfigError(f"a dialogue needs two different voices, got {voices[0]} twice")
    if seconds < 1.0:
        raise ConfigError(f"clip length must be >= 1 s, got {seconds}")
    rel = Relationship.parse(relationship)
    rng = np.random.default_rng([int(seed), 7])
    recs = [_rotate_at_pause(load_voice(v, sample_rate), sample_rate, rng) for v in voices]
    T = int(round(seconds * FPS))
    duration = T * (sample_rate // FPS) / sample_rate
    best = None
    for _ in range(_DIALOGUE_TRIES):  # long phrases can leave one speaker (almost) silent
        a, b, turns = make_dialogue(
            recs, sample_rate, duration=duration, phrases_per_turn=(1, 3), seed=int(rng.integers(2**31))
        )
        talk = [sum(t.end - t.start for t in turns if t.speaker == k) for k in (0, 1)]
        share = min(talk) / max(sum(talk), 1e-9)
        if best is None or share > best[0]:
            best = (share, a, b, turns)
        if share >= _MIN_TALK_SHARE:
            break
    _, a, b, turns = best
    motion = tuple(synthesize_motion(w, turns, spk, rel, sample_rate, seed) for spk, w in ((1, a), (2, b)))
    return SyntheticClip((a, b), motion, turns, rel, tuple(voices), sample_rate)  # type: ignore[arg-type]


@dataclass
class SyntheticCorpusConfig:
    # Output directory (created; must be empty or an earlier synthetic corpus).
    root: str = ""
    # Clips per split (relationships cycle siblings, parent_child, couple, superior_subordinate).
    train_clips: int = 8
    test_clips: int = 2
    # Length of each clip, seconds.
    clip_seconds: float = 10.0
    seed: int = 0
    # "auto" (codec2 + espeak-ng when installed), "codec2", "espeak" or "all".
    voices: str = "auto"
    sample_rate: int = 16000
    # Replace an earlier synthetic corpus in root (never anything else).
    overwrite: bool = False


def _prepare_root(cfg: SyntheticCorpusConfig) -> None:
    root = cfg.root
    if not root:
        raise ConfigError("synthetic corpus root is empty")
    if os.path.isdir(root) and os.listdir(root):
        if not os.path.isfile(os.path.join(root, SYNTHETIC_METADATA)):
            raise DatasetError(f"{root} is not empty and holds no {SYNTHETIC_METADATA}: refusing to write a synthetic corpus into it")
        if not cfg.overwrite:
            raise DatasetError(f"{root} already holds a synthetic corpus (use overwrite to replace it)")
        for split in ("train", "test"):
            d = os.path.join(root, split)
            for name in os.listdir(d) if os.path.isdir(d) else []:
                if name.startswith("synthetic_") and name.endswith((".wav", ".npz")):
                    os.remove(os.path.join(d, name))
    os.makedirs(root, exist_ok=True)


def _write_wav(path: str, wav: np.ndarray, sample_rate: int) -> None:
    tmp = f"{path}.tmp.wav"
    sf.write(tmp, wav.astype(np.float32), sample_rate, subtype="FLOAT")
    os.replace(tmp, path)


def make_synthetic_corpus(cfg: SyntheticCorpusConfig) -> dict:
    """Write a SYNTHETIC-SUPERVISION corpus in the DualTalk layout.

    Writes ``<root>/{train,test}/synthetic_<split>_<nnnn>_speaker{1,2}.{wav,npz}`` (float32
    16-kHz WAV; npz ``exp (T, 50)``, ``pose (T, 6)``, ``synthetic_note``),
    ``<root>/relationships.csv``, ``<root>/README.md`` and ``<root>/synthetic_corpus.json``
    (config, rules, roles, voices, per-clip turns). Readable by
    :class:`rsatalker_core.data.DualTalkDataset` with
    ``relationship_index=<root>/relationships.csv``.

    Returns:
        the metadata dict written to ``synthetic_corpus.json``.

    Raises:
        DatasetError: ``root`` holds something else than an earlier synthetic corpus, or
            one without ``overwrite``.
        ConfigError: bad counts, fewer than two voices available, unknown voices kind.
        AudioError: a voice's recording or espeak-ng is missing.
    """
    if cfg.train_clips < 0 or cfg.test_clips < 0 or cfg.train_clips + cfg.test_clips == 0:
        raise ConfigError(f"need >= 1 clip (train_clips={cfg.train_clips}, test_clips={cfg.test_clips})")
    voices = available_voices(cfg.voices)
    if len(voices) < 2:
        raise ConfigError(f"need >= 2 voices for dialogues, found {voices} (install codec2-examples / espeak-ng)")
    _prepare_root(cfg)
    names = Relationship.names()
    labels: Dict[str, str] = {}
    clips_meta = []
    for split_id, (split, n) in enumerate((("train", cfg.train_clips), ("test", cfg.test_clips))):
        if n:
            os.makedirs(os.path.join(cfg.root, split), exist_ok=True)
        for i in range(n):
            clip_seed = int(np.random.default_rng([cfg.seed, split_id, i]).integers(2**31))
            pick = np.random.default_rng(clip_seed).choice(len(voices), 2, replace=False)
            pair = (voices[pick[0]], voices[pick[1]])
            rel = names[i % len(names)]
            clip = synthesize_clip(pair, rel, cfg.clip_seconds, clip_seed, cfg.sample_rate)
            cid = f"synthetic_{split}_{i:04d}"
            for spk in (1, 2):
                base = os.path.join(cfg.root, split, f"{cid}_speaker{spk}")
                _write_wav(base + ".wav", clip.audio[spk - 1], cfg.sample_rate)
                save_motion_npz(base + ".npz", clip.motion[spk - 1], extra={"synthetic_note": np.array(SYNTHETIC_NOTE)})
            labels[cid] = rel
            clips_meta.append({
                "clip": cid, "split": split, "relationship": rel, "seed": clip_seed,
                "voices": {"speaker1": pair[0], "speaker2": pair[1]},
                "roles": {"speaker1": role_of(1, clip.relationship), "speaker2": role_of(2, clip.relationship)},
                "num_frames": int(len(clip.motion[0])),
                "turns": [[t.speaker + 1, round(t.start, 4), round(t.end, 4)] for t in clip.turns],
            })
    write_relationship_index(os.path.join(cfg.root, "relationships.csv"), labels)
    meta = {
        "synthetic_supervision": True, "note": SYNTHETIC_NOTE, "generator": "rsatalker_core.data.synthetic",
        "version": GENERATOR_VERSION, "config": asdict(cfg), "fps": FPS,
        "rules": copy.deepcopy(RULES), "roles": "non-equal clips: speaker1 higher status, speaker2 lower",
        "voices": {v: (CODEC2_VOICES.get(v) or "espeak-ng " + " ".join(map(str, ESPEAK_VOICES[v]))) for v in voices},
        "clips": clips_meta,
    }
    with open(os.path.join(cfg.root, SYNTHETIC_METADATA + ".tmp"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)
    os.replace(os.path.join(cfg.root, SYNTHETIC_METADATA + ".tmp"), os.path.join(cfg.root, SYNTHETIC_METADATA))
    with open(os.path.join(cfg.root, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(_readme(meta))
    return meta


def _readme(meta: dict) -> str:
    doc = re.sub(r":(?:data|func|mod|class):`", "`", (__doc__ or "").split("**Audio.**", 1)[1])
    return (
        "# SYNTHETIC SUPERVISION corpus\n\n"
        f"{SYNTHETIC_NOTE}.\n\nThe motion targets in these npz files are rule-based, not tracked "
        "from video: use them for default weights, smoke tests and pipeline checks, never to report "
        "motion-quality results.\n\n"
        f"Generator: {meta['generator']} ({meta['version']}), seed {meta['config']['seed']}, "
        f"{len(meta['clips'])} clips of {meta['config']['clip_seconds']} s. Labels: relationships.csv. "
        f"Per-clip voices, roles and turns: {SYNTHETIC_METADATA}.\n\n**Audio.**" + doc
    )
