"""Sliding-window live inference over incoming audio and partner motion.

Audio arrives in chunks (any sample rate, resampled to the encoder's rate). Frame ``k``
covers self-audio samples ``[k·S, (k+1)·S)`` with ``S = sample_rate / 25`` (640 at 16 kHz).
Frame ``k`` is emitted once the self audio reaches the end of frame ``k + lookahead``:
the algorithmic latency is bounded by ``(1 + lookahead_frames) / 25`` s plus compute.

Each :meth:`StreamingMotionGenerator.step` encodes one window of at most
``window_frames`` frames ending at the newest complete frame, runs the generator on it
(full attention inside the window) and emits the frames not emitted before. The self and
partner windows are encoded together, as one ``[2, S]`` batch (one speech-encoder call
per step; each row gets the features it would get alone).

Speech window and training. A Whisper feature depends on the window it is encoded in
(:mod:`rsatalker_core.speech.whisper`, "Context dependence"), so the motion model must be
trained on features of windows encoded like these: ``window_frames`` frames of audio
encoded on their own (``data.window_frames`` equal to ``streaming.window_frames``, same
``speech.whisper_pad_to_30s``; :mod:`rsatalker_core.data.feature_cache` encodes each
training window from its own audio). The presets (config/default.yaml, ``streaming``):
low latency (the default for live use) ``window_frames 25, lookahead_frames 1,
hop_frames 1``, i.e. 1-s windows, one frame per step, at most 80 ms of algorithmic latency;
quality ``50, 4, 5`` (2-s windows, what the shipped default_motion.pt was trained on).

Alignment across streams uses the message stamps: the partner's audio and motion are
looked up at the *time* of the self-audio window, so the two microphones need not start
together. Missing partner audio is silence; missing partner motion is the neutral pose.

Bounded buffers and checked values. Each audio stream keeps at most
``MAX_BUFFER_SECONDS`` (plus one window) of samples and the partner motion at most
``4 * window_frames`` frames; beyond that the oldest input is dropped and counted
(:attr:`StreamingMotionGenerator.dropped`), and frames whose audio was dropped are skipped
rather than generated late, so a stall upstream never builds an unbounded backlog. Audio
must be finite and within ``±MAX_AMPLITUDE`` (:func:`rsatalker_core.speech.audio.check_amplitude`),
partner motion within the physical FLAME ranges
(:func:`rsatalker_core.io.motion_npz.check_motion_ranges`); a generated frame outside those
ranges (never expected) is replaced by the previous frame and counted, so nothing
non-finite is ever emitted.
"""

from __future__ import annotations

import bisect
import logging
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from rsatalker_core.speech.audio import check_amplitude, resample, validate_sample_rate
from rsatalker_core.config import FPS, MOTION_DIM, RsatalkerConfig
from rsatalker_core.errors import AudioError, MotionValueError
from rsatalker_core.io.motion_npz import check_motion_ranges, motion_range_problem
from rsatalker_core.metrics.conversation import frame_energy_db
from rsatalker_core.model.motion_model import MotionModel
from rsatalker_core.relationship import Relationship, relationship_tensors

log = logging.getLogger(__name__)

#: Most audio kept per stream beyond one window, seconds; older samples are dropped.
MAX_BUFFER_SECONDS: float = 10.0


@dataclass
class MotionFrame:
    """One generated frame of the avatar.

    Attributes:
        index: frame number since the stream started (25 fps).
        motion: ``[56]`` float32 ``[exp | jaw | head]`` (radians).
        source_stamp_ns: time stamp of the self audio at the frame's first sample, ns.
        relationship: canonical relationship name the frame was generated under.
    """

    index: int
    motion: np.ndarray
    source_stamp_ns: int
    relationship: str


class _AudioStream:
    """Mono samples with absolute indexing and stamp anchors (sample index -> time).

    Holds at most ``max_samples``; :meth:`append` drops the oldest beyond that and counts
    them in :attr:`dropped` (samples).
    """

    def __init__(self, sample_rate: int, max_samples: Optional[int] = None):
        self.sr = sample_rate
        self.max_samples = max_samples
        self.dropped = 0
        self.base = 0  # absolute index of samples[0]
        self.samples = np.zeros(0, dtype=np.float32)
        self.anchors: List[Tuple[int, int]] = []  # (absolute sample index, stamp ns)

    @property
    def end(self) -> int:
        return self.base + len(self.samples)

    def append(self, samples: np.ndarray, stamp_ns: int) -> None:
        self.anchors.append((self.end, int(stamp_ns)))
        self.samples = np.concatenate([self.samples, samples])
        if self.max_samples is not None and len(self.samples) > self.max_samples:
            over = len(self.samples) - self.max_samples
            self.dropped += over
            self.trim(self.base + over)

    def stamp_at(self, index: int) -> Optional[int]:
        """Time (ns) of absolute sample ``index``, extrapolated from the last anchor before it."""
        if not self.anchors:
            return None
        i = max(0, bisect.bisect_right(self.anchors, (index, 1 << 62)) - 1)
        a_idx, a_ns = self.anchors[i]
        return a_ns + int(round((index - a_idx) * 1e9 / self.sr))

    def index_at(self, stamp_ns: int) -> Optional[int]:
        """Absolute sample index at time ``stamp_ns`` (inverse of :meth:`stamp_at`)."""
        if not self.anchors:
            return None
        times = [a[1] for a in self.anchors]
        i = max(0, bisect.bisect_right(times, stamp_ns) - 1)
        a_idx, a_ns = self.anchors[i]
        return a_idx + int(round((stamp_ns - a_ns) * self.sr / 1e9))

    def read(self, start: int, length: int) -> np.ndarray:
        """Samples ``[start, start+length)``; zeros where nothing was received (silence)."""
        out = np.zeros(length, dtype=np.float32)
        lo, hi = max(start, self.base), min(start + length, self.end)
        if hi > lo:
            out[lo - start : hi - start] = self.samples[lo - self.base : hi - self.base]
        return out

    def trim(self, keep_from: int) -> None:
        cut = min(max(0, keep_from - self.base), len(self.samples))
        if cut:
            self.samples = self.samples[cut:]
            self.base += cut
        # Keep the last anchor at or before the new base so stamps stay defined.
        while len(self.anchors) > 1 and self.anchors[1][0] <= self.base:
            self.anchors.pop(0)


class StreamingMotionGenerator:
    """Live sliding-window wrapper around :class:`MotionModel`. Thread-safe.

    Args:
        cfg: full config; ``streaming.window_frames``, ``streaming.lookahead_frames`` and
            ``streaming.hop_frames`` shape the windows.
        device: overrides ``cfg.device``.
        model: an already-built :class:`MotionModel` to share.
    """

    def __init__(
        self,
        cfg: RsatalkerConfig,
        device: Optional[Union[str, torch.device]] = None,
        model: Optional[MotionModel] = None,
    ):
        self.cfg = cfg
        self.model = model or MotionModel(cfg, device)
        self.sample_rate = cfg.speech.sample_rate
        self.spf = self.sample_rate // FPS
        s = cfg.streaming
        if s.window_frames <= s.lookahead_frames:
            raise ValueError("streaming.window_frames must exceed streaming.lookahead_frames")
        self.window_frames = min(s.window_frames, cfg.motion.max_frames)
        self.lookahead = s.lookahead_frames
        self.hop = max(1, s.hop_frames)
        self._lock = threading.Lock()
        self._relationship = Relationship.parse(cfg.relationship)
        self._max_samples = int((MAX_BUFFER_SECONDS * FPS + self.window_frames) * self.spf)
        self.reset()

    @property
    def relationship(self) -> Relationship:
        return self._relationship

    def reset(self) -> None:
        """Forget all buffered input; the next frame is frame 0."""
        with getattr(self, "_lock", threading.Lock()):
            self._streams = {r: _AudioStream(self.sample_rate, self._max_samples) for r in ("self", "partner")}
            self._partner_motion: List[Tuple[int, np.ndarray]] = []
            self._next = 0
            self._last_good = np.zeros(MOTION_DIM, dtype=np.float32)
            self.dropped = {"audio_samples": 0, "partner_frames": 0, "frames_skipped": 0, "frames_held": 0}
            self._residual = self.model.residual_sampler(self._relationship)

    def set_relationship(self, rel: Union[str, Relationship]) -> None:
        """Switch the relationship for frames generated from now on.

        Raises:
            RelationshipError: unknown name.
        """
        parsed = Relationship.parse(rel)
        with self._lock:
            self._relationship = parsed

    def push_audio(self, role: str, samples: np.ndarray, sample_rate: int, stamp_ns: int) -> None:
        """Append an audio chunk.

        Args:
            role: ``"self"`` (the avatar's speech) or ``"partner"``.
            samples: ``[S]`` mono float32 in [-1, 1].
            sample_rate: Hz; resampled to ``speech.sample_rate`` when different.
            stamp_ns: capture time of the chunk's first sample, ns.

        Raises:
            AudioError: unknown role, bad sample rate, non-mono samples, or samples that are
                non-finite or beyond ``±MAX_AMPLITUDE`` (before or after resampling).
        """
        if role not in ("self", "partner"):
            raise AudioError(f"unknown audio role '{role}' (use 'self' or 'partner')")
        validate_sample_rate(sample_rate)
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise AudioError(f"audio chunk must be mono [S], got shape {x.shape}")
        check_amplitude(x, f"{role} audio chunk")
        if sample_rate != self.sample_rate:
            x = resample(x, sample_rate, self.sample_rate).astype(np.float32)  # checks its output
        with self._lock:
            stream = self._streams[role]
            before = stream.dropped
            stream.append(x, stamp_ns)
            if stream.dropped > before:
                self.dropped["audio_samples"] += stream.dropped - before
                log.warning("%s audio buffer over %.0f s: dropped the oldest %d samples",
                            role, self._max_samples / self.sample_rate, stream.dropped - before)

    def push_partner_motion(self, motion: np.ndarray, stamp_ns: int) -> None:
        """Append one partner FLAME frame ``[56]`` stamped at ``stamp_ns``.

        Raises:
            MotionValueError (a ValueError): wrong shape, non-finite values or values outside
                the physical FLAME ranges (|expression| <= 100, |rotation| <= pi rad).
        """
        m = np.asarray(motion, dtype=np.float32)
        if m.shape != (MOTION_DIM,):
            raise MotionValueError(f"partner motion must be [56], got {m.shape}")
        check_motion_ranges(m, "partner motion", MotionValueError)
        with self._lock:
            self._partner_motion.append((int(stamp_ns), m))
            self._partner_motion.sort(key=lambda x: x[0])
            if len(self._partner_motion) > 4 * self.window_frames:
                self.dropped["partner_frames"] += len(self._partner_motion) - 4 * self.window_frames
                del self._partner_motion[: -4 * self.window_frames]

    def _partner_motion_at(self, stamps: List[Optional[int]]) -> Optional[np.ndarray]:
        if not self._partner_motion:
            return None
        times = [t for t, _ in self._partner_motion]
        out = np.zeros((len(stamps), MOTION_DIM), dtype=np.float32)
        for i, t in enumerate(stamps):
            j = bisect.bisect_right(times, t) - 1 if t is not None else -1
            if j >= 0:
                out[i] = self._partner_motion[j][1]  # sample-and-hold; neutral before the first
        return out

    def step(self) -> List[MotionFrame]:
        """Generate every frame whose lookahead audio has arrived (in hops of ``hop_frames``)."""
        frames: List[MotionFrame] = []
        with self._lock:
            oldest = -(-self._streams["self"].base // self.spf)  # first frame whose audio is kept
            if self._next < oldest:  # its audio was dropped: skip rather than generate late
                self.dropped["frames_skipped"] += oldest - self._next
                log.warning("skipped %d frames whose audio was dropped", oldest - self._next)
                self._next = oldest
            while True:
                complete = self._streams["self"].end // self.spf
                ready = complete - self.lookahead  # frames [next, ready) can be emitted
                if ready - self._next < self.hop:
                    break
                emit_end = min(ready, self._next + self.window_frames - self.lookahead)
                frames.extend(self._run_window(emit_end))
        return frames

    def _encode_pair(self, self_audio: np.ndarray, partner_audio: np.ndarray, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Speech features of both windows in one encoder call: ``[S]`` each (same length, at
        ``speech.sample_rate``) -> ``([1, n, D], [1, n, D])``."""
        model = self.model
        wav = torch.as_tensor(np.stack([self_audio, partner_audio]), device=model.device)
        feats = model.speech(wav, self.sample_rate, num_frames=n)
        return feats[0:1], feats[1:2]

    def _run_window(self, emit_end: int) -> List[MotionFrame]:
        win_end = emit_end + self.lookahead
        win_start = max(0, win_end - self.window_frames)
        win_start = min(win_start, self._next)
        n = win_end - win_start
        selfs = self._streams["self"]
        s0 = win_start * self.spf
        self_audio = selfs.read(s0, n * self.spf)
        t0 = selfs.stamp_at(s0)
        partner = self._streams["partner"]
        p0 = partner.index_at(t0) if t0 is not None else None
        partner_audio = partner.read(p0, n * self.spf) if p0 is not None else np.zeros_like(self_audio)
        frame_stamps = [selfs.stamp_at((win_start + i) * self.spf) for i in range(n)]
        pm = self._partner_motion_at(frame_stamps)
        model = self.model
        with torch.no_grad():
            fs, fp = self._encode_pair(self_audio, partner_audio, n)
            blood, equal = relationship_tensors([self._relationship], model.device)
            pmt = None if pm is None else torch.as_tensor(pm, device=model.device)[None]
            motion = model.generator(fs, fp, blood, equal, pmt)[0].float().cpu().numpy()
        out = []
        for k in range(self._next, emit_end):
            m = motion[k - win_start].copy()
            if self._residual is not None:
                # Residual motion (model/residual.py), driven by this frame's own-speech energy.
                i = (k - win_start) * self.spf
                self._residual.set_relationship(self._relationship)
                m += self._residual.step(frame_energy_db(self_audio[i : i + self.spf], self.sample_rate, 1)[0])
            if motion_range_problem(m) is not None:  # never emit non-finite motion
                self.dropped["frames_held"] += 1
                log.warning("frame %d: generated motion %s; holding the previous frame", k, motion_range_problem(m))
                m = self._last_good.copy()
            self._last_good = m
            out.append(MotionFrame(k, m, int(frame_stamps[k - win_start] or 0), self._relationship.name))
        self._next = emit_end
        keep = max(0, (self._next - self.window_frames) * self.spf)
        selfs.trim(keep)
        if t0 is not None:
            p_keep = partner.index_at(selfs.stamp_at(keep))
            if p_keep is not None:
                partner.trim(p_keep)
        return out


def window_bounds(T: int, window: int, lookahead: int) -> List[Tuple[int, int, int]]:
    """``(frame k, win_start, win_end)`` of the streaming generator at hop 1 for frames
    ``0..T-1``: frame ``k`` comes from the window ending at frame ``k + lookahead``
    (inclusive), at most ``window`` frames long."""
    return [(k, max(0, k + 1 + lookahead - window), k + 1 + lookahead) for k in range(T)]


def _padded(wav: np.ndarray, sample_rate: int, num_frames: int, lookahead: int) -> np.ndarray:
    """``wav`` cut or zero-padded to ``num_frames + lookahead`` frames (silence after the
    clip, as :func:`generate_offline` feeds the live generator)."""
    spf = sample_rate // FPS
    x = np.zeros((num_frames + lookahead) * spf, np.float32)
    seg = np.asarray(wav, np.float32)[: num_frames * spf]
    x[: len(seg)] = seg
    return x


def _window_batches(wins: Sequence[Tuple[int, int, int]], batch: int) -> List[List[int]]:
    """Indices into ``wins`` grouped by window length, in batches of at most ``batch``."""
    groups: Dict[int, List[int]] = {}
    for i, (_, s, e) in enumerate(wins):
        groups.setdefault(e - s, []).append(i)
    return [idx[b : b + batch] for idx in groups.values() for b in range(0, len(idx), batch)]


def _encode_windows(model: MotionModel, tracks: Sequence[np.ndarray], sample_rate: int, wins,
                    part: List[int]) -> torch.Tensor:
    """Features of the equally long windows ``wins[part]`` of each padded track, in one
    encoder call: ``[len(tracks) * len(part), n, D]``, track-major."""
    spf = sample_rate // FPS
    audio = np.stack([x[wins[i][1] * spf : wins[i][2] * spf] for x in tracks for i in part])
    n = wins[part[0]][2] - wins[part[0]][1]
    return model.speech(torch.as_tensor(audio, device=model.device), sample_rate, num_frames=n)


def _partner_track(partner_motion: Optional[np.ndarray], num_frames: int, lookahead: int, device) -> Optional[torch.Tensor]:
    """Partner motion ``[T + lookahead, 56]``, the last frame held after the track ends."""
    if partner_motion is None:
        return None
    pm = np.zeros((num_frames + lookahead, MOTION_DIM), np.float32)
    n = min(len(partner_motion), num_frames)
    pm[:n] = np.asarray(partner_motion, np.float32)[:n]
    pm[n:] = pm[n - 1] if n else 0.0
    return torch.as_tensor(pm, device=device)


def _generate_part(model: MotionModel, fs: torch.Tensor, fp: torch.Tensor, wins, part: List[int],
                   relationship, pm_all: Optional[torch.Tensor], out: np.ndarray) -> None:
    """Run the generator on the windows ``wins[part]`` (features ``fs``/``fp``) and write each
    window's frame into ``out [T, 56]``."""
    blood, equal = relationship_tensors([relationship], model.device)
    B = len(part)
    pmb = None if pm_all is None else torch.stack([pm_all[wins[i][1] : wins[i][2]] for i in part])
    m = model.generator(fs, fp, blood.expand(B), equal.expand(B), pmb).float().cpu().numpy()
    for j, i in enumerate(part):
        k, s, _ = wins[i]
        out[k] = m[j, k - s]


def _check_hop(model: MotionModel) -> Tuple[int, int]:
    s_cfg = model.cfg.streaming
    if max(1, s_cfg.hop_frames) != 1:
        raise ValueError(f"batched live generation needs streaming.hop_frames 1, got {s_cfg.hop_frames}")
    return min(s_cfg.window_frames, model.cfg.motion.max_frames), s_cfg.lookahead_frames


def sliding_window_features(model, wav: np.ndarray, sample_rate: int, num_frames: int, window: int,
                            lookahead: int, batch: int = 64) -> List["object"]:
    """Speech features of every window of :func:`window_bounds`, each window encoded from its
    own audio (as the streaming generator does at hop 1; silence after the clip's end, as
    :func:`generate_offline` pads it), in batches. Returns one ``[1, n, D]`` tensor per
    frame; for reuse across relationships (held in memory: for long clips prefer
    :func:`generate_offline`, which keeps one batch at a time)."""
    x = _padded(wav, sample_rate, num_frames, lookahead)
    wins = window_bounds(num_frames, window, lookahead)
    feats: List[object] = [None] * len(wins)
    with torch.no_grad():
        for part in _window_batches(wins, batch):
            f = _encode_windows(model, [x], sample_rate, wins, part)
            for j, i in enumerate(part):
                feats[i] = f[j : j + 1]
    return feats


def generate_from_window_features(model, self_wav: np.ndarray, self_feats: List[object], partner_feats: List[object],
                                  sample_rate: int, num_frames: int, relationship,
                                  partner_motion: Optional[np.ndarray] = None, batch: int = 64,
                                  seed: Optional[int] = None) -> np.ndarray:
    """:func:`generate_offline` at ``streaming.hop_frames`` 1 from precomputed per-window
    features (:func:`sliding_window_features`, computed once and reused for every
    relationship), plus the checkpoint's residual motion (seeded with ``seed``, default
    ``motion.residual_seed``). Returns ``[T, 56]``.

    Raises:
        ValueError: ``streaming.hop_frames`` is not 1.
    """
    window, lookahead = _check_hop(model)
    wins = window_bounds(num_frames, window, lookahead)
    out = np.zeros((len(wins), MOTION_DIM), np.float32)
    pm_all = _partner_track(partner_motion, num_frames, lookahead, model.device)
    with torch.no_grad():
        for part in _window_batches(wins, batch):
            fs = torch.cat([self_feats[i] for i in part])
            fp = torch.cat([partner_feats[i] for i in part])
            _generate_part(model, fs, fp, wins, part, relationship, pm_all, out)
    return out + model.residual_motion(self_wav, sample_rate, num_frames, relationship, seed).astype(np.float32)


def _generate_batched(model: MotionModel, self_wav: np.ndarray, partner_wav: np.ndarray, sample_rate: int,
                      num_frames: int, relationship, partner_motion: Optional[np.ndarray],
                      progress=None, batch: int = 64) -> np.ndarray:
    """The live path at hop 1 with the windows encoded and generated ``batch`` at a time:
    memory stays flat in the clip length (one batch of features at a time)."""
    window, lookahead = _check_hop(model)
    wins = window_bounds(num_frames, window, lookahead)
    xs = _padded(self_wav, sample_rate, num_frames, lookahead)
    xp = _padded(partner_wav, sample_rate, num_frames, lookahead)
    out = np.zeros((num_frames, MOTION_DIM), np.float32)
    pm_all = _partner_track(partner_motion, num_frames, lookahead, model.device)
    done = 0
    with torch.no_grad():
        for part in _window_batches(wins, batch):
            # both speakers' windows in one encoder call, as the live step does
            f = _encode_windows(model, [xs, xp], sample_rate, wins, part)
            _generate_part(model, f[: len(part)], f[len(part):], wins, part, relationship, pm_all, out)
            done += len(part)
            if progress is not None:
                progress(done)
    return out + model.residual_motion(self_wav, sample_rate, num_frames, relationship).astype(np.float32)


def generate_offline(
    model: MotionModel,
    self_wav: np.ndarray,  # [S]
    partner_wav: np.ndarray,  # [S']
    sample_rate: int,
    relationship: Union[str, Relationship],
    partner_motion: Optional[np.ndarray] = None,  # [T, 56]
    num_frames: Optional[int] = None,
    progress=None,
    batched: Optional[bool] = None,
) -> np.ndarray:
    """A whole clip's motion ``[T, 56]``, generated exactly as the live graph would.

    The clip is fed to a :class:`StreamingMotionGenerator` frame by frame (windows,
    lookahead and hop from ``streaming.*``; the residual motion of the checkpoint included),
    so ``rsatalker generate``, evaluation and the live nodes give the same motion for the
    same audio. After the last frame, ``lookahead_frames`` frames of silence let the final
    frames be emitted (what the live graph sees when the speaker stops).

    Args:
        model: the motion model.
        self_wav, partner_wav: mono speech of the avatar and of the partner, ``sample_rate`` Hz.
        relationship: the relationship for the whole clip.
        partner_motion: the partner's FLAME motion at 25 fps (``None``: neutral fallback).
        num_frames: frames to generate (default: the length of ``self_wav``).
        progress: called with the number of frames done.
        batched: ``None``: batched when ``streaming.hop_frames`` is 1 (the windows of all
            frames encoded and generated in batches; same numbers up to float round-off),
            else frame by frame; ``False``: always step a :class:`StreamingMotionGenerator`.

    Raises:
        AudioError: bad sample rate, non-finite or out-of-range audio; MotionValueError (a
        ValueError): partner motion of the wrong shape or outside the physical ranges.
    """
    s_cfg = model.cfg.streaming
    if batched is None:
        batched = max(1, s_cfg.hop_frames) == 1
    if batched:
        # Hop 1: every frame's window is known up front, so the windows are encoded and
        # generated in batches (the same numbers as stepping the generator frame by frame;
        # test/test_acceptance.py checks it), much faster offline.
        wav_s = resample(np.asarray(self_wav, np.float32), sample_rate, model.cfg.speech.sample_rate)
        wav_p = resample(np.asarray(partner_wav, np.float32), sample_rate, model.cfg.speech.sample_rate)
        check_amplitude(wav_s, "self audio")
        check_amplitude(wav_p, "partner audio")
        if partner_motion is not None:
            check_motion_ranges(np.asarray(partner_motion, np.float32), "partner motion")
        sr = model.cfg.speech.sample_rate
        T = int(len(wav_s) // (sr // FPS)) if num_frames is None else int(num_frames)
        return _generate_batched(model, wav_s, wav_p, sr, T, relationship, partner_motion, progress)
    gen = StreamingMotionGenerator(model.cfg, model=model)
    gen.set_relationship(relationship)
    spf_in = sample_rate / FPS
    T = int(len(self_wav) // spf_in) if num_frames is None else int(num_frames)
    n_in = int(round(spf_in))
    pad = np.zeros(n_in, np.float32)
    frames: List[MotionFrame] = []
    for k in range(T + gen.lookahead):
        stamp = int(round(k * 1e9 / FPS))
        a, b = int(round(k * spf_in)), int(round((k + 1) * spf_in))
        own = np.asarray(self_wav[a:b], dtype=np.float32) if k < T else pad
        oth = np.asarray(partner_wav[a:b], dtype=np.float32) if k < T else pad
        own = np.pad(own, (0, max(0, b - a - len(own))))
        oth = np.pad(oth, (0, max(0, b - a - len(oth))))
        if partner_motion is not None and k < min(T, len(partner_motion)):
            gen.push_partner_motion(partner_motion[k], stamp)
        gen.push_audio("partner", oth, sample_rate, stamp)
        gen.push_audio("self", own, sample_rate, stamp)
        frames += gen.step()
        if progress is not None:
            progress(min(len(frames), T))
    out = np.stack([f.motion for f in frames[:T]]) if frames else np.zeros((0, MOTION_DIM), np.float32)
    return out.astype(np.float32)
