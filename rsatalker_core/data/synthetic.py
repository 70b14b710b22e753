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

**Motion** (:func:`synthesize_motion`, 25 fps, ``[exp 50 | jaw 3 | head 3]``; version
synthetic-v4, calibrated to the real conversational motion in
``benchmarks/motion_reference.md``, measured by ``scripts/motion_reference.py`` with
:mod:`rsatalker_core.metrics.conversation`). Axes as in FLAME (y up, face toward +z): jaw
``x`` > 0 opens the mouth; head ``x`` > 0 tilts the chin down (a nod), ``y`` turns, ``z``
rolls. Expression indices follow the stand-in head's hand-made directions
(:mod:`rsatalker_core.head.standin`: 0 lips part, 1 smile, 3 brow raise, 8 upper-lip raise,
10 lower-lip depress, 12 eyelids close); every npz says so (key ``expression_space`` =
:data:`EXPRESSION_SPACE`): on official FLAME these are PCA components with other meanings.
Per frame, from the speaker's own track:

* ``loud`` = frame RMS in dB re the voice's 95th-percentile level, mapped -40..0 dB -> 0..1;
  ``pitch_z`` = autocorrelation F0 in octaves re the voice's median; ``bright`` = share of
  spectral energy above 2 kHz (:func:`prosody_tracks`).
* mouth: jaw ``x = jaw_rad * loud``; exp0 ``= lips * loud``, exp10 ``= 0.4 * lips * loud``,
  exp8 ``= 0.3 * lips * bright * loud`` (own speech energy vs jaw r > 0.9; the expected
  real value is ~0.6, the reference's clip is unusable for lip-sync).
* head, everyone: posture drift (Gaussian low-pass noise, sigma 0.5 s, std ``drift_rad``
  x (1, 1.2, 0.8) per axis), scaled by ``listen_calm`` while listening: most power below
  0.5 Hz as in the real reference (about 85% there, 10-15% in 0.5-2 Hz).
* head, speaking: prosody-coupled sway (band-pass noise, ~0.3-1.5 Hz, std ``sway_rad``,
  modulated by the loudness envelope), pitch rises raise the chin (``head_prosody_rad``),
  loudness peaks give short stress nods (``stress_nod_rad``), roll follows slow pitch;
  brows rise with pitch. Speaking head speed is 2.5-3.2x the listening speed (v4, 24 held-out dialogues; real: 2.0x).
* anticipation: 0.5 s before each own turn the chin rises (``anticipation_rad``) and the
  jaw parts by 0.03 rad (an in-breath).
* listening: backchannel nods (``nod_rad``, 0.45-0.8 s) after a partner phrase end with
  probability ``p_backchannel`` (0.15-0.45 s later) and during partner speech at
  ``bc_per_min``, each with a smile bump (exp1 ``smile_bc``), only when the listener stays
  silent for the whole nod; exp1 also holds a constant ``smile_base``.
* gaze (``eye_pose (T, 6)`` in the npz: FLAME's left | right eye axis-angle, both eyes alike,
  0 = at the partner): alternating "at the partner" / "away" (0.4-1.6 s) dwells, at the
  partner ``gaze_listen`` of the time while listening and ``gaze_speak`` while speaking
  (Kendon 1967; Argyle and Cook 1976), a forced aversion (up and sideways, 0.6-1.4 s) at
  each own turn start, saccades ~40 ms. The 56-D motion target carries no eye pose
  (``MOTION_DIM`` is unchanged); the head follows gaze by ``head_follows_gaze`` (eye-head
  coordination), so gaze shifts are in the target through head yaw and pitch, and
  ``eye_pose`` is there for renderers, evaluation and a later gaze output.
* blinks (exp 12, the stand-in's eyelid direction, 0..1, ~0.2 s, fast close and slower
  opening): after own phrase ends and gaze shifts (about 60% of the blinks) plus random
  ones, at ``blink_per_min`` (20/min, 30/min in non-equal pairs; real conversation ~26/min, Bentivoglio et al. 1997),
  0.5 s refractory.
* mimicry (:func:`synthesize_clip`): each speaker's head adds ``mimicry`` x the partner's
  head motion (its motion without mimicry, mean removed) 0.6 s later.
* every channel is smoothed and clipped to human ranges (jaw 0..0.4 rad, head ±0.3 rad,
  eyes ±0.4 rad).

**Relationship rules** (:data:`RULES`; RSATalker's two axes, docs/method.md §3). In a
non-equal clip speaker 1 has the higher-status role (parent, superior) and speaker 2 the
lower (child, subordinate); in an equal clip both are peers. The rules change dynamics,
not only offsets: amplitudes, nod rates, blink rates, gaze shares and mimicry. The motion
model's input is the pair's relationship only, not which role the avatar has (docs/method.md
§3), so since synthetic-v4 every effect that reaches the 56-D motion target is the same for
both roles of a non-equal pair (formality: restrained heads, fewer smiles, more blinks); the
roles differ only in gaze (``eye_pose``, not a motion target). In v3 the roles moved their
heads in opposite directions (x1.15 vs x0.7), which a role-blind model can only average:
held-out recovery of the relationship from the rules' own motion was 58-60% with v3 and 87%
with v4 (``scripts/accept_motion.py``, "rule targets").

==================  =============================================================
condition           effect on the base values
==================  =============================================================
blood               familiar and warm: ``head_gain`` x1.2, ``nod_rad`` x1.3,
                    ``smile_base`` +0.3, ``smile_bc`` x2, ``p_backchannel`` +0.5,
                    ``bc_per_min`` x4, ``mimicry`` x2.5, ``gaze_listen`` +0.1
non-equal, both     formal: ``head_gain`` x0.6, smiles x0.5, ``brow`` x0.6,
                    ``blink_per_min`` x1.5 (20 -> 30 per minute)
non-equal, higher   ``gaze_speak`` +0.2 (looks while speaking: visual dominance)
non-equal, lower    ``gaze_listen`` +0.1, ``gaze_speak`` -0.15
==================  =============================================================

Random draws come from one stream per seed, speaker and component (drift, sway,
backchannels, gaze, blinks), independent of the relationship, so the same clip under two
relationships differs only by the rules. Deterministic given the seed.
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
from typing import Dict, List, Optional, Sequence, Tuple

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
from rsatalker_core.head.standin import EYELID_EXPR_INDEX
from rsatalker_core.io.motion_npz import save_motion_npz
from rsatalker_core.relationship import Relationship

#: Written into every npz (key ``synthetic_note``), the README and the metadata.
SYNTHETIC_NOTE = (
    "SYNTHETIC SUPERVISION: rule-based FLAME motion targets generated by "
    "rsatalker_core.data.synthetic from real recorded speech; not tracked from video"
)
GENERATOR_VERSION = "synthetic-v4"
#: Written into every npz (key ``expression_space``): which head model's basis ``exp`` is in.
EXPRESSION_SPACE = "rsatalker-standin"

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
        # mouth
        "jaw_rad": 0.30, "lips": 2.0, "brow": 0.8,
        # head (radians; the first five are scaled by head_gain)
        "head_gain": 1.0, "drift_rad": 0.045, "sway_rad": 0.05, "head_prosody_rad": 0.08,
        "stress_nod_rad": 0.04, "anticipation_rad": 0.03, "nod_rad": 0.07, "listen_calm": 0.6,
        # listening: backchannel nods after partner phrase ends, and during long partner turns
        "p_backchannel": 0.3, "bc_per_min": 3.0, "smile_base": 0.0, "smile_bc": 0.8,
        # eyes: blinks per minute, gaze at the partner (share of time), aversion (rad)
        "blink_per_min": 20.0, "gaze_listen": 0.75, "gaze_speak": 0.4, "gaze_rad": 0.25,
        "head_follows_gaze": 0.3,
        # mimicry: gain on the partner's head motion, 0.6 s later
        "mimicry": 0.15,
    },
    # Familiar, warm: expressive heads, frequent backchannel nods with smiles, mimicry.
    "blood": {"head_gain*": 1.2, "nod_rad*": 1.3, "smile_base+": 0.3, "smile_bc*": 2.0, "p_backchannel+": 0.5,
              "bc_per_min*": 4.0, "mimicry*": 2.5, "gaze_listen+": 0.1},
    # Formal (both roles alike, see the module docstring): restrained heads, smiles and brows,
    # more blinks; the roles differ only in gaze.
    "non_equal_higher": {"head_gain*": 0.6, "smile_base*": 0.5, "smile_bc*": 0.5, "brow*": 0.6,
                         "blink_per_min*": 1.5, "gaze_speak+": 0.2},
    "non_equal_lower": {"head_gain*": 0.6, "smile_base*": 0.5, "smile_bc*": 0.5, "brow*": 0.6,
                        "blink_per_min*": 1.5, "gaze_listen+": 0.1, "gaze_speak-": 0.15},
}
JAW_RANGE = (0.0, 0.4)
#: Each speaker talks at least this share of a clip's speech time (dialogues are redrawn,
#: up to _DIALOGUE_TRIES times, keeping the most balanced).
_MIN_TALK_SHARE = 0.3
_DIALOGUE_TRIES = 20
HEAD_LIMIT = 0.3
#: Eye rotation limit, radians.
GAZE_LIMIT = 0.4
#: Expression index that carries blinks (the stand-in head's eyelid direction, 1 = shut).
BLINK_EXPR = EYELID_EXPR_INDEX
#: Blink closure profile, one value per 40-ms frame (fast close, slower opening: ~0.2 s).
_BLINK_SHAPE = np.array([0.45, 1.0, 0.75, 0.4, 0.15])
#: Minimum time between blinks, seconds.
_BLINK_REFRACTORY_S = 0.5
#: Mimicry lag, frames (0.6 s).
_MIMICRY_LAG = 15


def role_of(speaker: int, relationship: Relationship) -> str:
    """``"equal"``, or in a non-equal clip ``"higher"`` for speaker 1 and ``"lower"`` for 2."""
    if relationship.equal:
        return "equal"
    return "higher" if speaker == 1 else "lower"


def motion_params(relationship: Relationship, speaker: int) -> Dict[str, float]:
    """Base amounts of :data:`RULES` with the relationship's rules applied (``+`` adds,
    ``-`` subtracts, ``*`` multiplies), for ``speaker`` 1 or 2; probabilities and gaze
    shares are clipped to 0.05..0.95, ``mimicry`` to 0..0.4."""
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
            p[name] = p[name] + v if op == "+" else p[name] - v if op == "-" else p[name] * v
    for k in ("p_backchannel", "gaze_listen", "gaze_speak"):
        p[k] = float(np.clip(p[k], 0.05, 0.95))
    p["mimicry"] = float(np.clip(p["mimicry"], 0.0, 0.4))
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


def _stream(seed: int, speaker: int, part: int) -> np.random.Generator:
    """One random stream per (seed, speaker, component): the draws never depend on the
    relationship, so one clip under two relationships differs only by the rules."""
    return np.random.default_rng([int(seed), int(speaker), int(part)])


def _unit_noise(rng: np.random.Generator, T: int, sigma: float, sigma_hi: float = 0.0) -> np.ndarray:
    """[T, 3] Gaussian low-pass (or band-pass, minus a wider low-pass) noise, unit std per axis."""
    pad = int(4 * max(sigma, sigma_hi)) + 1
    n = rng.standard_normal((T + 2 * pad, 3))
    x = gaussian_filter1d(n, sigma, axis=0)
    if sigma_hi > 0:
        x = x - gaussian_filter1d(n, sigma_hi, axis=0)
    x = x[pad:-pad]
    return x / np.maximum(x.std(0), 1e-9)


def _speaking_mask(turns: Sequence[Turn], speaker: int, T: int) -> np.ndarray:
    out = np.zeros(T, dtype=bool)
    for t in turns:
        if t.speaker == speaker - 1:
            out[int(t.start * FPS) : int(np.ceil(t.end * FPS))] = True
    return out


def _turn_starts(turns: Sequence[Turn], speaker: int) -> List[float]:
    """Start times (s) of the speaker's turns: phrases that follow the partner's or open the clip."""
    out, prev = [], None
    for t in sorted(turns, key=lambda t: t.start):
        if t.speaker == speaker - 1 and prev != t.speaker:
            out.append(t.start)
        prev = t.speaker
    return out


def _gaze(T: int, speaking: np.ndarray, starts: Sequence[float], p: Dict[str, float], rng) -> Tuple[np.ndarray, List[int]]:
    """Gaze ``[T, 2]`` (eye pitch, yaw; radians, 0 = at the partner) and the shift frames.

    An alternating renewal process: "at the partner" and "away" dwells, away 0.4-1.6 s,
    at-partner dwells drawn so the share of time at the partner is ``gaze_listen`` while
    listening and ``gaze_speak`` while speaking (Kendon 1967; Argyle and Cook 1976); each
    own turn start forces an aversion (look away 0-0.2 s after it, for 0.6-1.4 s).
    """
    gaze = np.zeros((T, 2))
    shifts: List[int] = []
    forced = {int(round(s * FPS)) + int(rng.integers(0, 6)): int(rng.integers(15, 36)) for s in starts}
    t, away = 0, False
    while t < T:
        share = p["gaze_speak"] if speaking[min(t, T - 1)] else p["gaze_listen"]
        u = rng.uniform(size=4)
        if away:
            n = int(10 + 30 * u[0])
        else:
            mean_at = 25.0 * share / (1.0 - share)  # away dwells average 1 s
            n = max(4, int(-mean_at * np.log(1.0 - u[0])))
            f = next((k for k in sorted(forced) if t <= k < t + n), None)
            if f is not None:  # a turn start interrupts the look at the partner
                n = max(f - t, 1)
        end = min(T, t + n)
        if away:
            gaze[t:end] = gaze_dir
        t = end
        if t < T:
            shifts.append(t)
            away = not away
            if away:
                forced_len = forced.pop(t, None)
                side = 1.0 if u[1] < 0.5 else -1.0
                gaze_dir = (p["gaze_rad"] * (0.3 * u[2] - 0.15), side * p["gaze_rad"] * (0.6 + 0.4 * u[3]))
                if forced_len is not None:  # aversion at a turn start: up and to the side
                    gaze_dir = (-0.4 * p["gaze_rad"], side * p["gaze_rad"])
                    gaze[t : t + forced_len] = gaze_dir
                    t = min(T, t + forced_len)
                    if t < T:
                        shifts.append(t)
                    away = False
    return np.clip(gaussian_filter1d(gaze, 0.7, axis=0), -GAZE_LIMIT, GAZE_LIMIT), shifts


def _blinks(T: int, events: Sequence[int], p: Dict[str, float], rng) -> np.ndarray:
    """Eyelid closure ``[T]`` (1 = shut): a blink after most own phrase ends and gaze shifts
    (``events``: each kept with a probability that makes them about 60% of the blinks, at
    most 0.5) plus random ones, for a rate of ``blink_per_min`` with a 0.5-s refractory
    time (Bentivoglio et al. 1997)."""
    n_target = p["blink_per_min"] * T / (60.0 * FPS)
    keep = min(0.5, 0.6 * n_target / max(len(events), 1))  # events carry about 60% of the blinks
    u_ev = rng.uniform(size=len(events))
    cand = [e + 1 + int(3 * u) for e, u in zip(events, u_ev) if u < keep]
    n_rand = rng.poisson(max(1.1 * n_target - len(cand), 0.0))  # +10%: the refractory time drops some
    cand = sorted(cand + list(rng.integers(0, T, size=n_rand)))
    out = np.zeros(T)
    last = -10**9
    amp = 0.85 + 0.15 * rng.uniform(size=len(cand))
    for c, a in zip(cand, amp):
        if c - last < _BLINK_REFRACTORY_S * FPS or c >= T:
            continue
        last = c
        n = min(len(_BLINK_SHAPE), T - c)
        out[c : c + n] = np.maximum(out[c : c + n], a * _BLINK_SHAPE[:n])
    return out


def synthesize_motion(
    own: np.ndarray,  # [S] this speaker's track
    turns: Sequence[Turn],
    speaker: int,
    relationship: Relationship,
    sample_rate: int,
    seed: int = 0,
    partner_head: Optional[np.ndarray] = None,  # [T, 3]
    return_eye_pose: bool = False,
):
    """Rule-based SYNTHETIC motion ``[T, 56]`` (radians, 25 fps) for one speaker of a dialogue.

    Args:
        own: the speaker's own audio track at ``sample_rate`` Hz.
        turns: the dialogue's phrases (:class:`~rsatalker_core.dialogue.Turn`, ``speaker``
            0 = speaker 1, 1 = speaker 2; times in seconds).
        speaker: 1 or 2 (decides the role in non-equal clips; see :func:`role_of`).
        relationship: the clip's relationship (rule table :data:`RULES`).
        seed: seeds every random draw (independent of ``relationship``).
        partner_head: optional ``[T', 3]`` head rotation of the partner (radians), mimicked
            with gain ``mimicry`` 0.6 s later; without it there is no mimicry.
        return_eye_pose: also return the gaze as FLAME ``eye_pose [T, 6]`` (left eye
            axis-angle 3 | right eye 3, radians; both eyes alike, 0 = at the partner).

    Returns:
        float32 ``[T, 56]`` ``[exp 50 | jaw 3 | head 3]``, ``T = floor(S * 25 / sample_rate)``
        (or ``(motion, eye_pose)``); jaw within 0..0.4 rad, head within ±0.3 rad, exp 12
        (blinks) within 0..1. Rules: module docstring.

    Raises:
        ConfigError: ``speaker`` not 1 or 2, or a ``partner_head`` that is not ``[T', 3]``.
        AudioError: ``own`` shorter than one frame, or an unusable sample rate.
    """
    if speaker not in (1, 2):
        raise ConfigError(f"speaker must be 1 or 2, got {speaker!r}")
    T = num_frames_for(len(own), sample_rate)
    if T < 1:
        raise AudioError(f"speech track of {len(own)} samples is shorter than one 40-ms frame")
    p = motion_params(relationship, speaker)
    pro = prosody_tracks(own, sample_rate, T)
    loud, pz = pro["loud"], gaussian_filter1d(pro["pitch_z"], 2.0)
    speaking = _speaking_mask(turns, speaker, T)
    starts = _turn_starts(turns, speaker)
    g = p["head_gain"]
    m = np.zeros((T, MOTION_DIM))
    # Mouth: jaw and lips follow the envelope.
    m[:, 50] = p["jaw_rad"] * loud
    m[:, 0] = p["lips"] * loud
    m[:, 10] = 0.4 * p["lips"] * loud
    m[:, 8] = 0.3 * p["lips"] * pro["bright"] * loud
    head = np.zeros((T, 3))
    # Posture drift for everyone (mostly below 0.5 Hz, like real heads).
    calm = gaussian_filter1d(np.where(speaking, 1.0, p["listen_calm"]), 6.0)  # slower while listening
    head += g * p["drift_rad"] * _unit_noise(_stream(seed, speaker, 1), T, 12.0) * np.array([1.0, 1.2, 0.8]) * calm[:, None]
    # Speaking: prosody-coupled sway (0.3-1.5 Hz, follows loudness), pitch rises raise the
    # chin, stressed syllables give short nods, roll follows slow pitch.
    env = gaussian_filter1d(loud * speaking, 4.0)
    sway = _unit_noise(_stream(seed, speaker, 2), T, 3.0, 12.0)
    head += g * p["sway_rad"] * sway * env[:, None] * np.array([0.8, 1.0, 0.6])
    head[:, 0] -= g * p["head_prosody_rad"] * pz * speaking
    head[:, 2] += 0.5 * g * p["head_prosody_rad"] * gaussian_filter1d(pz * speaking, 6.0)
    peaks, _ = find_peaks(loud * speaking, prominence=0.35, distance=8)
    for k in peaks:
        head[:, 0] += g * p["stress_nod_rad"] * _bump(T, k - 2, 8)
    m[:, 3] = p["brow"] * np.maximum(pz, 0.0) * speaking
    # Anticipation of own turns: chin up and an in-breath (jaw parts) 0.5 s before.
    for s in starts:
        f = s * FPS
        if f >= 10:
            head[:, 0] -= g * p["anticipation_rad"] * _bump(T, f - 14, 16)
            m[:, 50] += 0.03 * _bump(T, f - 8, 9)
    # Listening: backchannel nods (with a smile) after partner phrase ends, and during long
    # partner turns at bc_per_min; only when the listener stays silent for the whole nod.
    rng_bc = _stream(seed, speaker, 3)
    smile = np.full(T, p["smile_base"])
    partner_speaking = _speaking_mask(turns, 3 - speaker, T)
    nod_starts = []
    for t in turns:
        if t.speaker == speaker - 1:
            continue
        u, delay = rng_bc.uniform(), rng_bc.uniform(0.15, 0.45)
        if u < p["p_backchannel"]:
            nod_starts.append((t.end + delay) * FPS)
    for f, u in zip(np.arange(T), rng_bc.uniform(size=T)):
        if partner_speaking[f] and u < p["bc_per_min"] / (60.0 * FPS):
            nod_starts.append(float(f))
    rng_len = _stream(seed, speaker, 4)
    for start in sorted(nod_starts):
        length, amp = rng_len.uniform(0.45, 0.8) * FPS, rng_len.uniform(0.7, 1.2)
        if speaking[int(start) : int(np.ceil(start + length)) + 1].any() or start >= T:
            continue
        head[:, 0] += p["nod_rad"] * amp * _bump(T, start, length)
        smile += p["smile_bc"] * _bump(T, start - 0.1 * FPS, 1.2 * FPS)
    m[:, 1] = smile
    # Gaze (eye_pose), with the head following its yaw and pitch in part.
    gaze, shifts = _gaze(T, speaking, starts, p, _stream(seed, speaker, 5))
    head[:, 0] += p["head_follows_gaze"] * gaussian_filter1d(gaze[:, 0], 4.0)
    head[:, 1] += p["head_follows_gaze"] * gaussian_filter1d(gaze[:, 1], 4.0)
    # Mimicry of the partner's head motion.
    if partner_head is not None:
        ph = np.asarray(partner_head, dtype=np.float64)
        if ph.ndim != 2 or ph.shape[1] != 3:
            raise ConfigError(f"partner_head must be [T, 3] radians, got shape {ph.shape}")
        ph = ph[:T] - ph[:T].mean(0)
        lagged = np.zeros((T, 3))
        lagged[_MIMICRY_LAG : _MIMICRY_LAG + len(ph)] = ph[: max(T - _MIMICRY_LAG, 0)]
        head += p["mimicry"] * lagged
    # Blinks at own phrase ends and gaze shifts, plus random ones.
    ends = [int(t.end * FPS) for t in turns if t.speaker == speaker - 1]
    m[:, BLINK_EXPR] = _blinks(T, sorted(ends + shifts), p, _stream(seed, speaker, 6))
    # Smooth and clip to human ranges.
    m[:, 50] = np.clip(gaussian_filter1d(m[:, 50], 0.75), *JAW_RANGE)
    for c in (0, 8, 10):
        m[:, c] = gaussian_filter1d(m[:, c], 0.75)
    for c in (1, 3):
        m[:, c] = gaussian_filter1d(m[:, c], 2.0)
    m[:, 53:56] = np.clip(gaussian_filter1d(head, 1.5, axis=0), -HEAD_LIMIT, HEAD_LIMIT)
    motion = m.astype(np.float32)
    if not return_eye_pose:
        return motion
    eye = np.zeros((T, 6), dtype=np.float32)
    eye[:, [0, 3]] = gaze[:, :1]
    eye[:, [1, 4]] = gaze[:, 1:]
    return motion, eye


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
    #: ``(speaker 1, speaker 2)`` FLAME ``eye_pose [T, 6]`` (gaze, radians; 0 = at the partner).
    eye_pose: Optional[Tuple[np.ndarray, np.ndarray]] = None


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
    wavs = {1: a, 2: b}
    # Two passes: each speaker mimics the partner's motion without mimicry (no feedback loop).
    alone = {k: synthesize_motion(w, turns, k, rel, sample_rate, seed) for k, w in wavs.items()}
    out = {k: synthesize_motion(w, turns, k, rel, sample_rate, seed, partner_head=alone[3 - k][:, 53:56],
                                return_eye_pose=True) for k, w in wavs.items()}
    return SyntheticClip((a, b), (out[1][0], out[2][0]), turns, rel, tuple(voices), sample_rate,  # type: ignore[arg-type]
                         eye_pose=(out[1][1], out[2][1]))


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
                save_motion_npz(base + ".npz", clip.motion[spk - 1], extra={
                    "synthetic_note": np.array(SYNTHETIC_NOTE), "eye_pose": clip.eye_pose[spk - 1],
                    "expression_space": np.array(EXPRESSION_SPACE),
                })
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
