"""Residual motion: what speech cannot predict, sampled from a model fitted to the residuals.

The motion generator is trained with a regression loss (L_mesh, docs/method.md), so it
predicts the *conditional mean* of the avatar's motion given speech, partner and
relationship. Motion that speech does not determine — slow posture drift, the random part of
head sway, most blinks — averages out of that mean: a regression model alone is far stiller
than a person (docs/motion.md has the numbers). This module adds that part back as a
stochastic process whose parameters are *fitted to the training residuals*
``target - prediction`` of the trained generator (:func:`fit_residual_motion`), per
relationship and per conversational state (speaking / listening), and stored in the motion
checkpoint (``residual_motion``):

* **Head rotation** (3 axes): a critically damped two-pole low-pass of white noise,
  ``y_k = a y_{k-1} + (1 - a) x_k`` applied twice, whose pole ``a`` is chosen so that the
  ratio of mean speed to standard deviation matches the residuals', and whose innovation is
  scaled so that the stationary standard deviation is the residuals' (radians). The state
  switches with own voice activity, so speaking and listening keep their own amplitude and
  speed.
* **Blinks** (the eyelid expression channel): a renewal process at the residuals' blink rate
  per state (per minute) whose inter-blink intervals are gamma distributed with shape
  :data:`BLINK_IBI_SHAPE` (coefficient of variation 0.58: spontaneous inter-blink intervals are
  right-skewed and more regular than a Poisson process's exponential ones) and at least
  :data:`BLINK_MIN_IBI_S`; each adds a blink of the residuals' median amplitude (fast close,
  slower opening, 0.24 s).

One sampler serves the offline CLI and live streaming: :class:`ResidualMotionSampler` is
stepped once per 25-fps frame with that frame's own-speech energy (dB), and
:class:`CausalVoiceActivity` decides speaking/listening from past frames only, so a live
stream and an offline run of the same audio with the same seed give the same motion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from rsatalker_core.config import FPS, HEAD_SLICE, MOTION_DIM
from rsatalker_core.errors import CheckpointError, MetricError
from rsatalker_core.relationship import Relationship

#: Conversational states, in the order of the parameter arrays' second axis.
STATES = ("listening", "speaking")
#: Blink shape per frame at 25 fps (fast close, slower opening; peak 1).
BLINK_SHAPE = np.array([0.45, 1.0, 0.8, 0.5, 0.25, 0.1], dtype=np.float64)
#: Shape of the gamma distribution of the intervals between sampled blinks.
BLINK_IBI_SHAPE = 3.0
#: Shortest interval between two sampled blinks, seconds.
BLINK_MIN_IBI_S = 0.5
#: Candidate poles of the two-pole head filter (per 25-fps frame).
_POLES = np.linspace(0.5, 0.995, 200)


def _impulse(a: float, n: int = 2000) -> np.ndarray:
    """Impulse response of two cascaded one-pole low-passes ``(1 - a) / (1 - a z^-1)``."""
    k = np.arange(n, dtype=np.float64)
    return (1.0 - a) ** 2 * (k + 1.0) * a ** k


def _speed_ratio(a: float) -> float:
    """Stationary ``E|dy/dt| / std(y)`` of the filtered white noise (Gaussian: E|v| = sqrt(2/pi) std v)."""
    h = _impulse(a)
    dh = np.diff(np.concatenate([[0.0], h]))
    return float(np.sqrt(2.0 / np.pi) * np.sqrt(np.sum(dh ** 2) / np.sum(h ** 2)) * FPS)


_RATIOS = np.array([_speed_ratio(a) for a in _POLES])  # decreasing in a


def pole_for_speed_ratio(ratio: float) -> float:
    """The pole whose filtered noise has ``mean |speed| / std = ratio`` (1/s), clipped to
    the candidate range 0.5..0.995."""
    i = int(np.argmin(np.abs(_RATIOS - ratio)))
    return float(_POLES[i])


@dataclass
class ResidualMotionParams:
    """Fitted residual-motion parameters (arrays as nested lists for the checkpoint).

    Attributes:
        head_std: ``[4, 2, 3]`` radians, per relationship (``Relationship.names()`` order),
            state (:data:`STATES`) and head axis.
        head_pole: ``[4, 2, 3]`` two-pole filter coefficient per 25-fps frame.
        blink_per_min: ``[4, 2]`` blinks per minute.
        blink_amp: ``[4]`` blink amplitude, eyelid-channel units.
        eyelid_index: index of the eyelid channel in the 56-D motion (``-1``: no blinks).
        fitted_on: free text: corpus and checkpoint the parameters were fitted on.
    """

    head_std: List
    head_pole: List
    blink_per_min: List
    blink_amp: List
    eyelid_index: int = -1
    fitted_on: str = ""

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict, path: str = "checkpoint") -> "ResidualMotionParams":
        """Raises:
            CheckpointError: missing keys or wrong shapes."""
        try:
            p = cls(**d)
            shapes = {"head_std": (4, 2, 3), "head_pole": (4, 2, 3), "blink_per_min": (4, 2), "blink_amp": (4,)}
            for k, s in shapes.items():
                a = np.asarray(getattr(p, k), dtype=np.float64)
                if a.shape != s or not np.all(np.isfinite(a)):
                    raise ValueError(f"{k} has shape {a.shape}, expected {s} finite")
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: malformed residual_motion entry: {e}") from None
        return p


class CausalVoiceActivity:
    """Own-voice activity from past frames only: a frame is *speaking* when its energy is
    within ``rel_db`` of a peak tracker (instant attack, ``decay_db_per_s`` release), with a
    ``hangover_s`` hold that bridges short pauses.

    Args:
        rel_db: threshold under the tracked peak, dB (negative).
        decay_db_per_s: release of the peak tracker, dB per second.
        hangover_s: speaking is held this long after the last active frame, seconds.
        floor_db: frames quieter than this are never speech, dB re full scale.

    The defaults (release 1 dB/s, hold 0.2 s) were chosen against a non-causal reference
    (:func:`~rsatalker_core.metrics.conversation.voice_activity`) on the real DualTalk sample's
    speaker 2: with 2 dB/s and 0.3 s, 63 of its 119 listening frames were called speaking (the
    hold runs past every phrase end and the fast release lowers the threshold in pauses), so
    listening got the speaking state's head motion; with these, 31. On synthetic dialogues with
    known turns both agree with the turns in 97% of frames.
    """

    def __init__(self, rel_db: float = -20.0, decay_db_per_s: float = 1.0, hangover_s: float = 0.2,
                 floor_db: float = -60.0):
        self.rel_db, self.decay = rel_db, decay_db_per_s / FPS
        self.hang = int(round(hangover_s * FPS))
        self.floor = floor_db
        self.reset()

    def reset(self) -> None:
        self.peak = -30.0
        self.held = 0

    def step(self, energy_db: float) -> bool:
        """One frame: ``energy_db`` (dB re full scale) -> speaking?"""
        e = float(energy_db)
        self.peak = max(e, self.peak - self.decay)
        if e > self.floor and e > self.peak + self.rel_db:
            self.held = self.hang + 1
        self.held = max(0, self.held - 1)
        return self.held > 0

    def run(self, energy_db: Sequence[float]) -> np.ndarray:
        """``[T]`` dB -> ``[T]`` bool, from a fresh state."""
        self.reset()
        return np.array([self.step(e) for e in energy_db], dtype=bool)


class ResidualMotionSampler:
    """Samples residual motion frame by frame (module doc); deterministic given ``seed``.

    Args:
        params: fitted :class:`ResidualMotionParams`.
        relationship: initial relationship (switch live with :meth:`set_relationship`).
        seed: random seed.
    """

    def __init__(self, params: ResidualMotionParams, relationship: Union[str, Relationship] = "couple",
                 seed: int = 0):
        self.p = params
        self.std = np.asarray(params.head_std, dtype=np.float64)
        self.pole = np.asarray(params.head_pole, dtype=np.float64)
        self.blink_rate = np.asarray(params.blink_per_min, dtype=np.float64) / 60.0  # per second
        self.blink_amp = np.asarray(params.blink_amp, dtype=np.float64)
        # Innovation gain so that the stationary std of the filtered noise is 1.
        self.gain = 1.0 / np.sqrt(np.vectorize(lambda a: np.sum(_impulse(a) ** 2))(self.pole))
        self.vad = CausalVoiceActivity()
        self.rng = np.random.default_rng(seed)
        self.rel = Relationship.parse(relationship).index
        self.y1 = np.zeros(3)
        self.y2 = np.zeros(3)
        self.blink_pos = len(BLINK_SHAPE)
        self.until_blink: Optional[float] = None  # frames to the next blink (drawn at the first step)

    def set_relationship(self, relationship: Union[str, Relationship]) -> None:
        self.rel = Relationship.parse(relationship).index

    def _blink_interval(self, r: int, s: int) -> float:
        """Frames to the next blink: gamma distributed with the state's mean interval."""
        rate = self.blink_rate[r, s]
        if rate <= 0:
            return float("inf")
        mean = FPS / rate
        return max(BLINK_MIN_IBI_S * FPS, self.rng.gamma(BLINK_IBI_SHAPE, mean / BLINK_IBI_SHAPE))

    def step(self, energy_db: float) -> np.ndarray:
        """One 25-fps frame: own-speech energy (dB) -> residual ``[56]`` (head radians,
        eyelid units; zero elsewhere)."""
        s = int(self.vad.step(energy_db))
        r = self.rel
        a = self.pole[r, s]
        x = self.rng.standard_normal(3) * self.gain[r, s] * self.std[r, s]
        self.y1 = a * self.y1 + (1.0 - a) * x
        self.y2 = a * self.y2 + (1.0 - a) * self.y1
        out = np.zeros(MOTION_DIM, dtype=np.float64)
        out[HEAD_SLICE] = self.y2
        if self.p.eyelid_index >= 0:
            if self.until_blink is None:  # random phase within the first interval
                self.until_blink = self.rng.random() * self._blink_interval(r, s)
            self.until_blink -= 1
            if self.until_blink <= 0 and self.blink_pos >= len(BLINK_SHAPE):
                self.blink_pos = 0
                self.until_blink = self._blink_interval(r, s)
            if self.blink_pos < len(BLINK_SHAPE):
                out[self.p.eyelid_index] = self.blink_amp[r] * BLINK_SHAPE[self.blink_pos]
                self.blink_pos += 1
        return out.astype(np.float32)

    def run(self, energy_db: Sequence[float]) -> np.ndarray:
        """``[T]`` dB -> ``[T, 56]`` residual, continuing from the current state."""
        return np.stack([self.step(e) for e in energy_db]) if len(energy_db) else np.zeros((0, MOTION_DIM), np.float32)


def fit_residual_motion(
    residuals: Sequence[np.ndarray],
    energies_db: Sequence[np.ndarray],
    relationships: Sequence[Union[str, Relationship]],
    eyelid_index: int = -1,
    fitted_on: str = "",
    settle_s: float = 1.0,
) -> ResidualMotionParams:
    """Fit :class:`ResidualMotionParams` to residuals ``target - prediction``.

    Args:
        residuals: per sequence ``[T, 56]``.
        energies_db: per sequence ``[T]`` own-speech energy, dB (as the sampler sees it).
        relationships: per sequence.
        eyelid_index: eyelid channel for blinks (``-1``: none).
        settle_s: head statistics skip this long after each speaking/listening switch, s.

    Returns:
        The parameters; a (relationship, state) cell without frames takes the pooled value
        of that state.

    Raises:
        MetricError: no sequences, or lengths that disagree.
    """
    from rsatalker_core.metrics.conversation import detect_blinks

    if not residuals or not (len(residuals) == len(energies_db) == len(relationships)):
        raise MetricError("fit_residual_motion needs equally many residuals, energies and relationships (>= 1)")
    vad = CausalVoiceActivity()
    pos: Dict = {}  # (rel, state) -> list of head arrays (mean removed per sequence)
    vel: Dict = {}
    blinks = np.zeros((4, 2))
    frames = np.zeros((4, 2))
    amps: Dict[int, List[float]] = {i: [] for i in range(4)}
    for res, e, rel in zip(residuals, energies_db, relationships):
        res = np.asarray(res, dtype=np.float64)
        e = np.asarray(e, dtype=np.float64)
        if len(res) != len(e):
            raise MetricError(f"residual of {len(res)} frames vs energy of {len(e)}")
        r = Relationship.parse(rel).index
        st = vad.run(e).astype(int)
        head = res[:, HEAD_SLICE] - res[:, HEAD_SLICE].mean(axis=0)
        v = np.abs(np.diff(head, axis=0)) * FPS
        # Skip the first second after each state switch: motion there still carries the
        # previous state's amplitude (it would blur the two states' statistics).
        settled = np.ones(len(st), bool)
        for k in np.flatnonzero(np.diff(st)) + 1:
            settled[k : k + int(settle_s * FPS)] = False
        for s in (0, 1):
            m = (st == s) & settled
            pos.setdefault((r, s), []).append(head[m])
            vel.setdefault((r, s), []).append(v[m[1:]])
            frames[r, s] += (st == s).sum()
        if eyelid_index >= 0:
            lid = res[:, eyelid_index]
            peaks = detect_blinks(lid, min_amp=0.3)
            for k in peaks:
                blinks[r, st[k]] += 1  # blink counts use every frame (frames[] below too)
                amps[r].append(float(lid[k] - np.median(lid)))
    std = np.zeros((4, 2, 3))
    pole = np.zeros((4, 2, 3))
    for s in (0, 1):
        pooled_p = np.concatenate([np.concatenate(pos.get((r, s), [np.zeros((0, 3))])) for r in range(4)])
        pooled_v = np.concatenate([np.concatenate(vel.get((r, s), [np.zeros((0, 3))])) for r in range(4)])
        for r in range(4):
            p = np.concatenate(pos.get((r, s), [np.zeros((0, 3))]))
            v = np.concatenate(vel.get((r, s), [np.zeros((0, 3))]))
            if len(p) < 2 * FPS:
                p, v = pooled_p, pooled_v
            if len(p) < 2:
                continue
            sd = p.std(axis=0)
            std[r, s] = sd
            pole[r, s] = [pole_for_speed_ratio(float(v[:, i].mean() / max(sd[i], 1e-9))) for i in range(3)]
    minutes = np.maximum(frames, 1) / FPS / 60.0
    rate = np.where(frames > 0, blinks / minutes, 0.0)
    all_amps = [a for r in range(4) for a in amps[r]]
    amp = [float(np.median(amps[r])) if amps[r] else (float(np.median(all_amps)) if all_amps else 0.0)
           for r in range(4)]
    return ResidualMotionParams(
        head_std=std.tolist(), head_pole=pole.tolist(), blink_per_min=rate.tolist(), blink_amp=amp,
        eyelid_index=int(eyelid_index), fitted_on=fitted_on,
    )
