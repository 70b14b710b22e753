"""Acceptance of a motion model against real conversational motion (issue 9, item 4).

The checks, each a row ``target / measured / pass`` (:class:`Check`), are computed on the
real DualTalk sample (docs/data.md; self = speaker 2, whose tracked FLAME motion is the
ground truth, partner = speaker 1's speech, partner motion absent) and on held-out
synthetic dialogues (relationship recovery):

=====================  =====================================================================
check                  definition
=====================  =====================================================================
head std               per-axis std of head rotation (axis-angle x/y/z, radians) of the
                       generated motion within :data:`HEAD_STD_RANGE_RAD`
speaking / listening   mean head speed while the avatar's own voice is active over the speed
                       while it is silent (:func:`~rsatalker_core.metrics.conversation.speaking_listening_speed`,
                       voice activity from the own wav) >= :data:`SPEAK_LISTEN_MIN_RATIO`
lip-sync               correlation of own speech energy (dB per 40-ms frame) with jaw opening
                       (jaw axis-angle x, radians), best lag within ±:data:`LIPSYNC_MAX_LAG`
                       frames (:func:`~rsatalker_core.metrics.conversation.energy_jaw_correlation`)
                       >= :data:`LIPSYNC_MIN_R`, for offline generation and for the streaming
                       path, whose value must be >= :data:`STREAMING_MIN_RATIO` of the offline
                       one (issue 8)
FD-JAW                 Fréchet distance of the jaw (:func:`~rsatalker_core.metrics.motion.frechet_distance`)
                       to the real jaw, below both zero motion and the mean pose
centred FD-POSE        FD of head pose after removing each sequence's own mean
                       (:func:`centred_frechet_distance`), below zero motion and the mean pose
                       (both are constant, so both centre to zero and score ``tr(Σ_gt)``)
blinks                 blinks per minute in the stand-in eyelid channel ``exp[:, 12]``
                       (:data:`~rsatalker_core.head.standin.EYELID_EXPR_INDEX`) within
                       :data:`BLINKS_PER_MIN_RANGE`
relationship           leave-clips-out accuracy of a logistic regression recovering the
                       relationship from mean-removed per-sequence features
                       (:func:`sequence_features`) >= :data:`RELATIONSHIP_MIN_ACCURACY`
                       (chance 25%)
=====================  =====================================================================

The literature behind the targets is in ``benchmarks/motion_reference.md`` (written by
``scripts/motion_reference.py``). ``scripts/accept_motion.py`` runs everything and writes
``benchmarks/results_motion_acceptance.{md,json}``. Arithmetic is float64.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rsatalker_core.config import EXP_SLICE, FPS, HEAD_SLICE, JAW_SLICE, MOTION_DIM
from rsatalker_core.errors import DatasetError, MetricError
from rsatalker_core.head.standin import EYELID_EXPR_INDEX
from rsatalker_core.metrics import conversation as cv
from rsatalker_core.metrics.motion import frechet_distance

__all__ = [
    "BLINKS_PER_MIN_RANGE", "HEAD_STD_RANGE_RAD", "LIPSYNC_MAX_LAG", "LIPSYNC_MIN_R",
    "RELATIONSHIP_MIN_ACCURACY", "SPEAK_LISTEN_MIN_RATIO", "STREAMING_MIN_RATIO",
    "Check", "DualTalkSample", "centred_frechet_distance", "checks_to_markdown", "fd_terms",
    "find_dualtalk_sample", "generate_live", "generate_live_batched", "generate_offline_windows", "logistic_cv",
    "motion_checks", "relationship_check", "sequence_features", "sliding_window_features",
]

#: Head rotation std per axis, radians (issue 9; real DualTalk speakers: 0.025-0.12).
HEAD_STD_RANGE_RAD: Tuple[float, float] = (0.02, 0.12)
#: Head speed while speaking over the speed while listening (real speaker: 1.96).
SPEAK_LISTEN_MIN_RATIO: float = 1.2
#: Own speech energy vs jaw opening correlation (a real speaker reaches about 0.6).
LIPSYNC_MIN_R: float = 0.35
#: Lags (frames, ±) searched for the best energy-jaw correlation (the reference's).
LIPSYNC_MAX_LAG: int = 10
#: Streaming lip-sync over offline lip-sync (issue 8).
STREAMING_MIN_RATIO: float = 0.9
#: Blinks per minute over a dialogue (Bentivoglio et al. 1997: ~17 at rest, ~26 talking).
BLINKS_PER_MIN_RANGE: Tuple[float, float] = (10.0, 35.0)
#: Relationship recovery accuracy (4 classes, chance 0.25).
RELATIONSHIP_MIN_ACCURACY: float = 0.60


@dataclass
class Check:
    """One acceptance row.

    Attributes:
        key: short identifier (JSON key); name: what is measured; target: the target as
            text; measured: the value(s) as text; passed: the verdict; values: the raw
            numbers (JSON).
    """

    key: str
    name: str
    target: str
    measured: str
    passed: bool
    values: Dict[str, object]


def checks_to_markdown(checks: Sequence[Check]) -> str:
    """The rows as a markdown table ``| check | target | measured | pass |``."""
    lines = ["| check | target | measured | pass |", "|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c.name} | {c.target} | {c.measured} | {'yes' if c.passed else '**no**'} |")
    return "\n".join(lines) + "\n"


def checks_to_json(checks: Sequence[Check]) -> List[dict]:
    """The rows as JSON-ready dicts."""
    return [asdict(c) for c in checks]


# ------------------------------------------------------------------------------ data
@dataclass
class DualTalkSample:
    """The real DualTalk clip: ``self_wav``/``partner_wav`` ``[S]`` float32 at
    ``sample_rate``; ``motion`` ``[T, 56]`` the self speaker's tracked FLAME motion."""

    clip: str
    self_wav: np.ndarray
    partner_wav: np.ndarray
    sample_rate: int
    motion: np.ndarray
    paths: Dict[str, str]


def find_dualtalk_sample(data_dir: str, sample_rate: int = 16000, self_speaker: int = 2) -> Optional[DualTalkSample]:
    """Load ``<clip>_speaker{1,2}.wav`` and ``<clip>_speaker<self>.npz`` from a flat folder.

    Returns:
        the sample, or ``None`` when the folder or one of the three files is absent.

    Raises:
        AudioError, MotionFileError: a file exists but cannot be read.
    """
    from rsatalker_core.io.motion_npz import load_motion_npz
    from rsatalker_core.speech.audio import load_audio

    npz = sorted(glob.glob(os.path.join(data_dir, f"*_speaker{self_speaker}.npz")))
    if not npz:
        return None
    base = npz[0][: -len(f"_speaker{self_speaker}.npz")]
    other = 3 - self_speaker
    paths = {"self_wav": f"{base}_speaker{self_speaker}.wav", "partner_wav": f"{base}_speaker{other}.wav",
             "self_npz": npz[0]}
    if not all(os.path.isfile(p) for p in paths.values()):
        return None
    motion = load_motion_npz(npz[0])
    return DualTalkSample(
        os.path.basename(base), load_audio(paths["self_wav"], sample_rate)[0],
        load_audio(paths["partner_wav"], sample_rate)[0], sample_rate, motion, paths,
    )


# ------------------------------------------------------------------------------ generation
# The batched live path lives with the streaming generator it reproduces
# (rsatalker_core/model/streaming.py); the names are kept here for the acceptance script.
from rsatalker_core.model.streaming import (  # noqa: E402
    generate_from_window_features as generate_live_batched,
    sliding_window_features,
)

def generate_offline_windows(model, self_wav: np.ndarray, partner_wav: np.ndarray, sample_rate: int,
                             num_frames: int, relationship, partner_motion: Optional[np.ndarray] = None) -> np.ndarray:
    """The offline reference without a latency bound: consecutive windows of
    ``streaming.window_frames`` (the window the model was trained on,
    :meth:`~rsatalker_core.model.motion_model.MotionModel.generate_in_windows`), so each frame
    sees the rest of its window (up to 1 s of future speech instead of the live path's 40 ms),
    plus the same residual motion. Returns ``[T, 56]``."""
    out = model.generate_in_windows(self_wav, partner_wav, sample_rate, relationship, partner_motion,
                                    num_frames=num_frames)
    return out + model.residual_motion(self_wav, sample_rate, num_frames, relationship).astype(np.float32)


def generate_live(model, self_wav: np.ndarray, partner_wav: np.ndarray, sample_rate: int, num_frames: int,
                  relationship, partner_motion: Optional[np.ndarray] = None) -> np.ndarray:
    """The live path: :func:`rsatalker_core.model.streaming.generate_offline`, i.e. a
    :class:`~rsatalker_core.model.streaming.StreamingMotionGenerator` (``streaming.*``
    window / lookahead / hop) fed both tracks one 40-ms frame at a time, as the motion node
    is, with the checkpoint's residual motion; what ``rsatalker generate`` and ``rsatalker
    evaluate`` produce. Returns ``[T, 56]``."""
    from rsatalker_core.model.streaming import generate_offline

    return generate_offline(model, self_wav, partner_wav, sample_rate, relationship, partner_motion, num_frames)


# ------------------------------------------------------------------------------ FD terms
def centred_frechet_distance(pred, gt) -> float:
    """FD (:func:`~rsatalker_core.metrics.motion.frechet_distance`) after removing each
    sequence's own mean per channel: only the covariances count (``[T, D]`` each)."""
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    return frechet_distance(p - p.mean(0), g - g.mean(0))


def fd_terms(pred, gt) -> Dict[str, float]:
    """Split a Fréchet distance into its two terms (FD = offset + centred):

    * ``offset = |μ_pred - μ_gt|²``, the constant-offset term;
    * ``centred = tr Σ_p + tr Σ_g - 2 tr (Σ_p Σ_g)^½``, the dynamics term
      (:func:`centred_frechet_distance`).

    Returns:
        ``{"fd", "offset", "centred"}`` (squared input units).
    """
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    n = min(len(p), len(g))
    p, g = p[:n], g[:n]
    d = p.mean(0) - g.mean(0)
    return {"fd": frechet_distance(p, g), "offset": float(d @ d), "centred": centred_frechet_distance(p, g)}


# ------------------------------------------------------------------------------ checks
def _fmt3(v: Sequence[float]) -> str:
    return " / ".join(f"{x:.3f}" for x in v)


def motion_checks(
    generated: np.ndarray,
    gt: np.ndarray,
    own_energy_db: np.ndarray,
    mean_pose: np.ndarray,
    streaming: Optional[np.ndarray] = None,
    fps: float = FPS,
    path_names: Tuple[str, str] = ("offline", "streaming"),
) -> List[Check]:
    """The acceptance rows that compare one generated clip with the real one.

    Args:
        generated: ``[T, 56]`` offline motion ``[exp | jaw | head]`` (radians).
        gt: ``[T, 56]`` the real tracked motion of the same speaker.
        own_energy_db: ``[T]`` the speaker's own speech energy
            (:func:`~rsatalker_core.metrics.conversation.frame_energy_db`).
        mean_pose: ``[56]`` the model's mean pose (``motion_mean``).
        streaming: optional ``[T', 56]`` streaming motion (``T' <= T``, the first frames).
        path_names: how the rows name the ``generated`` and the ``streaming`` motion.

    Returns:
        rows ``head_std``, ``speak_listen``, ``lipsync_offline`` (and ``lipsync_streaming``,
        ``lipsync_ratio``), ``fd_jaw``, ``fd_pose_centred``, ``blinks``.

    Raises:
        MetricError: shapes disagree, too few frames, non-finite values, or an own voice
            that is always or never active.
    """
    g = np.asarray(generated, np.float64)
    r = np.asarray(gt, np.float64)
    e = np.asarray(own_energy_db, np.float64)
    if g.ndim != 2 or g.shape[1] != MOTION_DIM or r.shape != g.shape or e.shape != (len(g),):
        raise MetricError(f"generated {g.shape}, gt {r.shape} and energy {e.shape} must be [T, 56], [T, 56], [T]")
    mean = np.asarray(mean_pose, np.float64).reshape(-1)
    if mean.shape != (MOTION_DIM,):
        raise MetricError(f"mean_pose must be [56], got {mean.shape}")
    T = len(g)
    checks: List[Check] = []

    head = g[:, HEAD_SLICE]
    std = head.std(0)
    lo, hi = HEAD_STD_RANGE_RAD
    checks.append(Check("head_std", "head rotation std per axis x/y/z (rad)", f"{lo} .. {hi} each", _fmt3(std),
                        bool(((std >= lo) & (std <= hi)).all()),
                        {"std_rad": std.tolist(), "gt_std_rad": r[:, HEAD_SLICE].std(0).tolist()}))

    speaking = cv.voice_activity(e, fps)
    slv = cv.speaking_listening_speed(head, speaking, fps)
    checks.append(Check("speak_listen", "head speed speaking / listening", f">= {SPEAK_LISTEN_MIN_RATIO}x",
                        f"{slv['ratio']:.2f}x ({slv['speaking_rad_s']:.3f} / {slv['listening_rad_s']:.3f} rad/s)",
                        bool(slv["ratio"] >= SPEAK_LISTEN_MIN_RATIO), slv))

    off = cv.energy_jaw_correlation(e, g[:, JAW_SLICE][:, 0], fps, LIPSYNC_MAX_LAG)
    checks.append(Check("lipsync_offline", f"own speech energy vs jaw opening r, {path_names[0]}",
                        f">= {LIPSYNC_MIN_R}", f"{off['best_r']:.3f} (lag {off['best_lag_frames']:+d} frames; "
                        f"lag 0: {off['r0']:.3f})", bool(off["best_r"] >= LIPSYNC_MIN_R), off))
    if streaming is not None:
        s = np.asarray(streaming, np.float64)
        n = len(s)
        if s.ndim != 2 or s.shape[1] != MOTION_DIM or not 3 <= n <= T:
            raise MetricError(f"streaming motion must be [T' <= {T}, 56], got {s.shape}")
        st = cv.energy_jaw_correlation(e[:n], s[:, JAW_SLICE][:, 0], fps, LIPSYNC_MAX_LAG)
        ref = cv.energy_jaw_correlation(e[:n], g[:n, JAW_SLICE][:, 0], fps, LIPSYNC_MAX_LAG)
        ratio = st["best_r"] / ref["best_r"] if ref["best_r"] > 0 else float("nan")
        checks.append(Check("lipsync_streaming", f"own speech energy vs jaw opening r, {path_names[1]}",
                            f">= {LIPSYNC_MIN_R}", f"{st['best_r']:.3f} (lag {st['best_lag_frames']:+d} frames; "
                            f"lag 0: {st['r0']:.3f})", bool(st["best_r"] >= LIPSYNC_MIN_R), {**st, "frames": n}))
        checks.append(Check("lipsync_ratio", f"{path_names[1]} / {path_names[0]} lip-sync r (same frames)",
                            f">= {STREAMING_MIN_RATIO:.0%}", f"{ratio:.0%} ({st['best_r']:.3f} / {ref['best_r']:.3f})",
                            bool(ratio >= STREAMING_MIN_RATIO), {"ratio": ratio, "offline_same_frames": ref}))

    zero = np.zeros_like(r)
    const = np.repeat(mean[None], T, axis=0)
    fj = {k: fd_terms(m[:, JAW_SLICE], r[:, JAW_SLICE]) for k, m in (("model", g), ("zero", zero), ("mean_pose", const))}
    checks.append(Check("fd_jaw", "FD-JAW (x10^3) vs real", "< zero motion and < mean pose",
                        f"{1e3 * fj['model']['fd']:.2f} (zero {1e3 * fj['zero']['fd']:.2f}, mean pose "
                        f"{1e3 * fj['mean_pose']['fd']:.2f})",
                        bool(fj["model"]["fd"] < min(fj["zero"]["fd"], fj["mean_pose"]["fd"])), fj))
    fp = {k: centred_frechet_distance(m[:, HEAD_SLICE], r[:, HEAD_SLICE])
          for k, m in (("model", g), ("zero", zero), ("mean_pose", const))}
    checks.append(Check("fd_pose_centred", "mean-centred FD-POSE (x10^2) vs real", "< zero motion and < mean pose",
                        f"{1e2 * fp['model']:.3f} (zero {1e2 * fp['zero']:.3f}, mean pose {1e2 * fp['mean_pose']:.3f})",
                        bool(fp["model"] < min(fp["zero"], fp["mean_pose"])), fp))

    bpm = cv.blinks_per_minute(g[:, EYELID_EXPR_INDEX], fps)
    lo, hi = BLINKS_PER_MIN_RANGE
    checks.append(Check("blinks", f"blinks per minute (exp[:, {EYELID_EXPR_INDEX}])", f"{lo:g} .. {hi:g}",
                        f"{bpm:.1f}", bool(lo <= bpm <= hi), {"blinks_per_minute": bpm, "seconds": T / fps}))
    return checks


# ------------------------------------------------------------------------------ relationship
#: Names of :func:`sequence_features`' entries (without partner motion: the first 13).
FEATURE_NAMES: Tuple[str, ...] = (
    "head_std_x", "head_std_y", "head_std_z", "head_speed_x", "head_speed_y", "head_speed_z",
    "jaw_std", "jaw_speed", "exp_std_rms", "exp_speed_rms", "eyelid_std", "nods_per_min", "blinks_per_min",
    "partner_head_xcorr_x", "partner_head_xcorr_y",
)
#: Lags (frames) searched for the partner-head cross-correlation (mimicry follows within 1 s).
XCORR_MAX_LAG: int = 25


def sequence_features(motion: np.ndarray, partner_motion: Optional[np.ndarray] = None, fps: float = FPS) -> np.ndarray:
    """Per-sequence motion features, all computed on the mean-removed motion so that a
    constant offset (e.g. a relationship-dependent smile) carries no information.

    Args:
        motion: ``[T, 56]``; partner_motion: optional ``[T, 56]`` partner motion (adds the
            best cross-correlation of own head pitch / yaw with the partner's, own head
            following by 0..:data:`XCORR_MAX_LAG` frames).

    Returns:
        ``[13]`` or ``[15]`` float64 (:data:`FEATURE_NAMES`): head std (rad) and mean
        speed (rad/s) per axis, jaw std and speed, RMS over the 50 expression channels of
        std and speed, eyelid std, nods and blinks per minute (+ the two cross-correlations).

    Raises:
        MetricError: not ``[T >= 4, 56]``, non-finite, or a partner of another length.
    """
    m = np.asarray(motion, np.float64)
    if m.ndim != 2 or m.shape[1] != MOTION_DIM or len(m) < 4 or not np.isfinite(m).all():
        raise MetricError(f"motion must be finite [T >= 4, 56], got {m.shape}")
    m = m - m.mean(0)
    head, jaw, exp = m[:, HEAD_SLICE], m[:, JAW_SLICE][:, 0], m[:, EXP_SLICE]
    speed = lambda x: np.abs(np.diff(x, axis=0)).mean(0) * fps  # noqa: E731
    f = [*head.std(0), *speed(head), jaw.std(), speed(jaw), np.sqrt((exp.std(0) ** 2).mean()),
         np.sqrt((speed(exp) ** 2).mean()), exp[:, EYELID_EXPR_INDEX].std(),
         cv.nods_per_minute(head[:, 0], fps), cv.blinks_per_minute(exp[:, EYELID_EXPR_INDEX], fps)]
    if partner_motion is not None:
        p = np.asarray(partner_motion, np.float64)
        if p.shape != (len(m), MOTION_DIM):
            raise MetricError(f"partner motion must be [{len(m)}, 56], got {p.shape}")
        ph = p[:, HEAD_SLICE] - p[:, HEAD_SLICE].mean(0)
        lag = min(XCORR_MAX_LAG, len(m) - 3)
        for k in range(2):
            lags, r = cv.lagged_correlation(ph[:, k], head[:, k], lag)
            f.append(float(r[lags >= 0].max()))
    return np.asarray(f, np.float64)


def _folds(groups: np.ndarray, folds: int) -> np.ndarray:
    uniq = np.unique(groups)
    fold_of = {g: i % folds for i, g in enumerate(uniq)}
    return np.array([fold_of[g] for g in groups])


def logistic_cv(X: np.ndarray, y: np.ndarray, groups: np.ndarray, speaker: Optional[np.ndarray] = None,
                folds: int = 6, l2: float = 1e-2, steps: int = 1500, lr: float = 0.5) -> float:
    """Leave-groups-out cross-validated accuracy of multinomial logistic regression.

    Features are standardised on each training fold; with ``speaker`` given, the features
    times a speaker-2 indicator are added (a speaker's role differs in non-equal
    relationships). Full-batch gradient descent on the mean cross-entropy + ``l2 |W|²/2``.

    Args:
        X: ``[N, F]`` features; y: ``[N]`` int labels 0..K-1; groups: ``[N]`` group ids
            (all sequences of a clip in one group; a group is never in train and test).
        folds: number of folds (groups assigned round-robin in sorted order).

    Returns:
        accuracy over all ``N`` held-out predictions (0..1).

    Raises:
        MetricError: shapes disagree, fewer groups than folds, or non-finite features.
    """
    X = np.asarray(X, np.float64)
    y = np.asarray(y, int)
    groups = np.asarray(groups)
    if X.ndim != 2 or len(y) != len(X) or len(groups) != len(X) or not np.isfinite(X).all():
        raise MetricError(f"X [N, F] finite with y, groups [N]: got {X.shape}, {y.shape}, {groups.shape}")
    if len(np.unique(groups)) < folds or folds < 2:
        raise MetricError(f"{len(np.unique(groups))} groups cannot make {folds} folds (need >= 2)")
    K = int(y.max()) + 1
    fid = _folds(groups, folds)
    s2 = np.zeros((len(X), 1)) if speaker is None else (np.asarray(speaker) == 2).astype(float)[:, None]
    correct = 0
    for f in range(folds):
        tr, te = fid != f, fid == f
        mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-9
        Z = (X - mu) / sd
        F = np.concatenate([Z, Z * s2, s2, np.ones_like(s2)] if speaker is not None else [Z, np.ones_like(s2)], axis=1)
        W = np.zeros((F.shape[1], K))
        Y = np.eye(K)[y[tr]]
        for _ in range(steps):
            logits = F[tr] @ W
            P = np.exp(logits - logits.max(1, keepdims=True))
            P /= P.sum(1, keepdims=True)
            W -= lr * (F[tr].T @ (P - Y) / tr.sum() + l2 * W)
        correct += int((np.argmax(F[te] @ W, axis=1) == y[te]).sum())
    return correct / len(y)


def relationship_check(
    model, corpus_dir: str, with_partner_motion: bool = True, max_clips: int = 0,
    progress: Optional[Callable[[int, int], None]] = None, cache: Optional[dict] = None,
) -> Tuple[Check, Dict[str, object]]:
    """Relationship recovery on a held-out synthetic corpus (test split of
    :func:`~rsatalker_core.data.synthetic.make_synthetic_corpus`).

    Every (clip, speaker) is generated on the live path (:func:`generate_live_batched`:
    1-s streaming windows plus the residual motion) under each of the four relationships
    from the same audio (and, with ``with_partner_motion``, the same partner motion: the
    clip's partner track), so the label can only be recovered from what the model does with
    the relationship input. Features: :func:`sequence_features` (mean-removed); classifier:
    :func:`logistic_cv` with 6 leave-clips-out folds. The same classifier on the rule-based
    targets synthesised under the four relationships is reported for comparison. ``cache``
    (a dict) keeps the per-window speech features between calls on the same corpus.

    Returns:
        ``(check, details)``; details hold the accuracies, counts and per-class confusion.

    Raises:
        DatasetError: no ``synthetic_corpus.json`` / test clips in ``corpus_dir``.
    """
    from rsatalker_core.data.synthetic import synthesize_motion
    from rsatalker_core.io.motion_npz import load_motion_npz
    from rsatalker_core.relationship import Relationship
    from rsatalker_core.speech.audio import load_audio
    from rsatalker_core.speech.dialogue import Turn

    meta_path = os.path.join(corpus_dir, "synthetic_corpus.json")
    if not os.path.isfile(meta_path):
        raise DatasetError(f"{corpus_dir}: no synthetic_corpus.json (write it with scripts/make_synthetic_corpus.py)")
    with open(meta_path, encoding="utf-8") as fh:
        meta = json.load(fh)
    clips = [c for c in meta["clips"] if c["split"] == "test"]
    if max_clips > 0:
        clips = clips[:max_clips]
    if len(clips) < 6:
        raise DatasetError(f"{corpus_dir}: {len(clips)} test clips, need >= 6 for 6-fold CV")
    rels = Relationship.names()
    sr = model.cfg.speech.sample_rate
    spf = sr // FPS
    X, Xt, y, spk, grp = [], [], [], [], []
    for ci, clip in enumerate(clips):
        d = os.path.join(corpus_dir, "test")
        wav = {s: load_audio(os.path.join(d, f"{clip['clip']}_speaker{s}.wav"), sr)[0] for s in (1, 2)}
        mot = {s: load_motion_npz(os.path.join(d, f"{clip['clip']}_speaker{s}.npz")) for s in (1, 2)}
        T = min(len(mot[1]), len(mot[2]))
        window = min(model.cfg.streaming.window_frames, model.cfg.motion.max_frames)
        cache = {} if cache is None else cache  # per-window features, reusable across calls
        for s in (1, 2):
            if (clip["clip"], s) not in cache:
                cache[(clip["clip"], s)] = sliding_window_features(model, wav[s], sr, T, window,
                                                                   model.cfg.streaming.lookahead_frames)
        feats = {s: cache[(clip["clip"], s)] for s in (1, 2)}
        turns = [Turn(int(k) - 1, float(a), float(b)) for k, a, b in clip["turns"]]
        for s in (1, 2):
            p = 3 - s
            pm = mot[p][:T] if with_partner_motion else None
            for ri, r in enumerate(rels):
                # residual seed per (clip, speaker), the same under every relationship (as
                # the rules' random draws): one seed for all clips would give every clip the
                # same sway, differing only in the relationship's amplitude
                out = generate_live_batched(model, wav[s], feats[s], feats[p], sr, T, r, pm,
                                            seed=int(clip["seed"]) * 2 + s)
                X.append(sequence_features(out, pm))
                target = synthesize_motion(wav[s][: T * spf], turns, s, Relationship.parse(r), sr, clip["seed"],
                                           partner_head=mot[p][:T, HEAD_SLICE] if with_partner_motion else None)
                Xt.append(sequence_features(target[:T], pm))
                y.append(ri)
                spk.append(s)
                grp.append(ci)
        if progress:
            progress(ci + 1, len(clips))
    X, Xt, y, spk, grp = map(np.asarray, (X, Xt, y, spk, grp))
    acc = logistic_cv(X, y, grp, spk)
    acc_targets = logistic_cv(Xt, y, grp, spk)
    details = {
        "accuracy": acc, "accuracy_rule_targets": acc_targets, "chance": 1.0 / len(rels),
        "clips": len(clips), "sequences": int(len(y)), "with_partner_motion": with_partner_motion,
        "features": list(FEATURE_NAMES[: X.shape[1]]), "corpus": meta.get("version"),
        "corpus_seed": meta.get("config", {}).get("seed"),
        "feature_means_by_relationship": {r: X[y == i].mean(0).tolist() for i, r in enumerate(rels)},
    }
    cond = "partner motion given" if with_partner_motion else "partner motion absent"
    check = Check(
        "relationship" + ("" if with_partner_motion else "_no_partner_motion"),
        f"relationship recovered from mean-removed features ({cond})",
        f">= {RELATIONSHIP_MIN_ACCURACY:.0%} (chance 25%)",
        f"{acc:.1%} ({len(y)} sequences, {len(clips)} held-out clips; rule targets: {acc_targets:.1%})",
        bool(acc >= RELATIONSHIP_MIN_ACCURACY), details,
    )
    return check, details
