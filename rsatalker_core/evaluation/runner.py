"""Run the motion model, its ablations and the baselines over a DualTalk split.

**Samples.** A split ``<data>/<split>/<clip>_speaker{1,2}.{wav,npz}`` is read with
:class:`~rsatalker_core.data.DualTalkDataset` (``window_frames = 0``: one whole clip per
sample). Each clip gives one sample per speaker whose npz exists, that speaker being the
avatar (self) and the other the partner; the real DualTalk sample, with speaker 2's npz
only, gives one sample. Relationships come from ``data.relationship_index`` of the config
(unlabelled clips: ``data.unlabelled`` / ``data.default_relationship``).

**Rows** (:data:`ROWS`), all scored against the self speaker's ground truth with
:func:`rsatalker_core.metrics.motion.motion_metrics` (FD, P-FD, MSE, SID, rPCC, STS on
EXP / JAW / POSE):

``model``
    the live path (:func:`rsatalker_core.model.streaming.generate_offline`: every frame from
    its own ``streaming.window_frames`` window, plus the residual motion, as ``rsatalker
    generate`` and the motion node produce it) on both speakers' speech and the partner's
    ground-truth motion (the generator's neutral fallback — all zeros — when the partner npz
    is missing, as in training).
``no_social``
    the same inputs inside :meth:`SpeakerListenerMotionGenerator.social_bypassed`: the social
    feature ``s`` is zero (an inference-time knock-out of the trained model; the paper's
    ablation retrains without the module).
``no_partner``
    the partner's audio silenced (zeros through the speech encoder) and no partner motion
    (the generator's neutral fallback).
``mean_pose``, ``mirror``
    :mod:`.baselines`; ``mirror`` only on samples whose partner npz exists.

**Speech features are encoded once per clip.** At ``streaming.hop_frames`` 1 every row
needs the per-frame window features of the self track, of the partner track (or of silence),
and a clip's two samples swap the two tracks: :class:`_ClipFeatures` encodes each track of a
clip once (:func:`~rsatalker_core.model.streaming.sliding_window_features`) and every row and
sample of the clip reuses them (:func:`~rsatalker_core.model.streaming.generate_from_window_features`;
the same motion as :func:`~rsatalker_core.model.streaming.generate_offline` up to float
round-off). Clips longer than :data:`MAX_CACHED_FRAMES` frames, or another hop, go through
:func:`~rsatalker_core.model.streaming.generate_offline` row by row (memory flat in length).

**Averaging.** Each metric is the unweighted mean over the samples that have it
(:func:`rsatalker_core.metrics.motion.aggregate`); P-FD and rPCC need the partner's ground
truth, so they average over the samples with a partner npz and are missing (``None``) when
there is none.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from rsatalker_core.config import RsatalkerConfig
from rsatalker_core.data import DualTalkDataset
from rsatalker_core.data.dualtalk import SPLITS
from rsatalker_core.errors import DatasetError
from rsatalker_core.evaluation.acceptance import fd_terms
from rsatalker_core.evaluation.baselines import mean_pose, mean_pose_prediction, mirror_prediction
from rsatalker_core.metrics.motion import GROUPS, aggregate, motion_metrics
from rsatalker_core.model.streaming import (
    generate_from_window_features,
    generate_offline,
    sliding_window_features,
)

log = logging.getLogger("rsatalker.evaluate")

#: Row key -> label in the tables and plots, in table order.
ROWS: Dict[str, str] = {
    "model": "RSATalker (this model)",
    "no_social": "(a) w/o socially-aware module",
    "no_partner": "(b) w/o partner inputs",
    "mean_pose": "mean pose",
    "mirror": "partner mirroring",
}
#: Metric names, in table order (each over :data:`GROUPS` EXP / JAW / POSE).
METRICS: Tuple[str, ...] = ("FD", "P-FD", "MSE", "SID", "rPCC", "STS")
#: Every metric key ``"<metric>-<group>"`` in table order.
METRIC_KEYS: Tuple[str, ...] = tuple(f"{m}-{g}" for m in METRICS for g in GROUPS)
#: Groups whose FD is split into offset and centred terms (rotations, same on every head).
FD_TERM_GROUPS: Tuple[str, ...] = ("JAW", "POSE")


@dataclass
class SampleResult:
    """One (clip, avatar speaker) sample.

    Attributes:
        clip: clip id; self_speaker: 1 or 2 (the avatar); relationship: canonical name.
        num_frames: T at 25 fps; has_partner: the partner npz exists.
        metrics: ``row -> {metric key -> value}`` (unscaled; rows absent when skipped).
        fd_terms: ``row -> {"JAW" | "POSE" -> {"fd", "offset", "centred"}}``: each FD split
            into the constant-offset term and the mean-centred (dynamics) term
            (:func:`rsatalker_core.evaluation.acceptance.fd_terms`).
        motion: ``"gt"``, ``"partner_gt"`` and row keys -> ``[T, 56]`` (kept for the first
            few samples only, for the curve plots; empty otherwise).
    """

    clip: str
    self_speaker: int
    relationship: str
    num_frames: int
    has_partner: bool
    metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)
    motion: Dict[str, np.ndarray] = field(default_factory=dict)
    fd_terms: Dict[str, Dict[str, Dict[str, float]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.clip}_speaker{self.self_speaker}"


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate_split` measured.

    Attributes:
        rows: ``row -> {metric key -> mean over samples, or None when no sample has it}``.
        counts: ``row -> (samples scored, samples with a partner npz among them)``.
        skipped: ``row -> reason`` for rows with no sample at all (e.g. mirroring without
            any partner npz).
        samples: per-sample results.
        info: provenance (data dir, split, checkpoint, device, mean-pose source, timing).
        fd_terms: ``row -> {"JAW" | "POSE" -> {"fd", "offset", "centred"}}`` means over the
            samples (:data:`FD_TERM_GROUPS`): FD = offset + centred.
    """

    rows: Dict[str, Dict[str, Optional[float]]]
    counts: Dict[str, Tuple[int, int]]
    skipped: Dict[str, str]
    samples: List[SampleResult]
    info: Dict[str, object]
    fd_terms: Dict[str, Dict[str, Dict[str, float]]] = field(default_factory=dict)


def _mean_over_samples(per_sample: List[Dict[str, float]]) -> Dict[str, Optional[float]]:
    out: Dict[str, Optional[float]] = {}
    for key in METRIC_KEYS:
        vals = [{key: m[key]} for m in per_sample if key in m]
        out[key] = aggregate(vals)[key] if vals else None
    return out


def open_split(cfg: RsatalkerConfig, data_root: str, split: str, max_clips: Optional[int] = None) -> DualTalkDataset:
    """The whole-clip dataset of ``<data_root>/<split>``, optionally its first ``max_clips`` clips.

    Raises:
        DatasetError: unknown split name, missing directory, no supervisable clip,
            ``max_clips < 1``.
        AudioError, MotionFileError, RelationshipError: unreadable files (named).
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split '{split}': use one of {', '.join(SPLITS)}")
    if max_clips is not None and max_clips < 1:
        raise DatasetError(f"--max-clips must be >= 1, got {max_clips}")
    data_cfg = dataclasses.replace(
        cfg.data, root=data_root, split=split, window_frames=0, feature_cache="",
        sample_rate=cfg.speech.sample_rate,
    )
    ds = DualTalkDataset(data_cfg)
    if max_clips is not None:
        ds.windows = [w for w in ds.windows if w[0] < max_clips]
    return ds


#: Longest clip (frames) whose window features are kept for reuse across rows and samples:
#: about 38 KB per frame and track with Whisper tiny (25 x 384 float32), so 3 tracks of a
#: 3-minute clip hold about 0.5 GB.
MAX_CACHED_FRAMES = 4500


class _ClipFeatures:
    """Per-frame window features of the tracks of the current clip (module docstring),
    encoded on first use; a new clip drops the previous clip's."""

    def __init__(self, model, sample_rate: int):
        self.model, self.sr = model, sample_rate
        s_cfg = model.cfg.streaming
        self.enabled = max(1, s_cfg.hop_frames) == 1
        self.window = min(s_cfg.window_frames, model.cfg.motion.max_frames)
        self.lookahead = s_cfg.lookahead_frames
        self.clip: Optional[str] = None
        self.feats: Dict[Tuple[str, int], list] = {}

    def get(self, clip: str, track: str, wav: np.ndarray, num_frames: int) -> list:
        """Features of ``track`` (``"speaker1"``, ``"speaker2"`` or ``"silence"``) of ``clip``."""
        if clip != self.clip:
            self.clip, self.feats = clip, {}
        key = (track, num_frames)
        if key not in self.feats:
            self.feats[key] = sliding_window_features(self.model, wav, self.sr, num_frames, self.window,
                                                      self.lookahead)
        return self.feats[key]


def _generate_rows(model, cache: _ClipFeatures, clip: str, spk: int, own: np.ndarray, other_wav: np.ndarray,
                   sr: int, rel, partner: Optional[np.ndarray], T: int) -> Dict[str, np.ndarray]:
    """The ``model``, ``no_social`` and ``no_partner`` rows of one sample, each ``[T, 56]``."""
    silence = np.zeros_like(other_wav)
    if not cache.enabled or T > MAX_CACHED_FRAMES:
        preds = {"model": generate_offline(model, own, other_wav, sr, rel, partner, T)}
        with model.generator.social_bypassed():
            preds["no_social"] = generate_offline(model, own, other_wav, sr, rel, partner, T)
        preds["no_partner"] = generate_offline(model, own, silence, sr, rel, None, T)
        return preds
    fs = cache.get(clip, f"speaker{spk}", own, T)
    fp = cache.get(clip, f"speaker{3 - spk}", other_wav, T)
    preds = {"model": generate_from_window_features(model, own, fs, fp, sr, T, rel, partner)}
    with model.generator.social_bypassed():
        preds["no_social"] = generate_from_window_features(model, own, fs, fp, sr, T, rel, partner)
    f0 = cache.get(clip, "silence", silence, T)
    preds["no_partner"] = generate_from_window_features(model, own, fs, f0, sr, T, rel, None)
    return preds


def evaluate_split(
    model,
    data_root: str,
    split: str,
    max_clips: Optional[int] = None,
    keep_motion: int = 3,
    progress: bool = True,
) -> EvaluationResult:
    """Score the model, its ablations and the baselines on one split (module docstring).

    Args:
        model: a :class:`~rsatalker_core.motion_model.MotionModel` (its ``cfg`` gives the
            data options and the speech sample rate).
        data_root: directory holding ``train/`` / ``test/`` / ``ood/``.
        split: ``"train"``, ``"test"`` or ``"ood"``.
        max_clips: evaluate only the first N clips (sorted by id); ``None`` = all.
        keep_motion: keep the motion of the first N samples for curve plots.
        progress: show a tqdm bar on stderr.

    Returns:
        :class:`EvaluationResult`.

    Raises:
        DatasetError, AudioError, MotionFileError, RelationshipError: bad data (named).
        MetricError: a clip shorter than 2 frames or a non-finite prediction.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    ds = open_split(model.cfg, data_root, split, max_clips)
    sr = ds.sample_rate
    mean, mean_source = mean_pose(data_root, ds.cfg, model.generator.motion_mean.detach().cpu().numpy())
    samples: List[SampleResult] = []
    cache = _ClipFeatures(model, sr)
    t_model = 0.0
    for i in tqdm(range(len(ds)), desc="evaluate", unit="sample", disable=not progress):
        item = ds[i]
        clip, spk = item["clip"], item["self_speaker"]
        T = int(item["num_frames"])
        t1 = time.perf_counter()
        gt = item["self_motion"].numpy()
        has_partner = bool(item["partner_motion_valid"])
        partner = item["partner_motion"].numpy() if has_partner else None
        rel = item["relationship"]
        own, other_wav = item["self_audio"].numpy(), item["partner_audio"].numpy()
        # Generated as the live graph generates it (windows, lookahead, residual motion).
        preds = _generate_rows(model, cache, clip, spk, own, other_wav, sr, rel, partner, T)
        t_model += time.perf_counter() - t1
        preds["mean_pose"] = mean_pose_prediction(mean, T)
        if partner is not None:
            preds["mirror"] = mirror_prediction(partner)
        res = SampleResult(clip, spk, rel, T, has_partner)
        for row, pred in preds.items():
            res.metrics[row] = motion_metrics(pred, gt, partner)
            res.fd_terms[row] = {g: fd_terms(pred[:, GROUPS[g]], gt[:, GROUPS[g]]) for g in FD_TERM_GROUPS}
        if len(samples) < keep_motion:
            res.motion = {"gt": gt, **preds}
            if partner is not None:
                res.motion["partner_gt"] = partner
        samples.append(res)

    rows: Dict[str, Dict[str, Optional[float]]] = {}
    counts: Dict[str, Tuple[int, int]] = {}
    skipped: Dict[str, str] = {}
    terms: Dict[str, Dict[str, Dict[str, float]]] = {}
    for row in ROWS:
        scored = [s for s in samples if row in s.metrics]
        counts[row] = (len(scored), sum(s.has_partner for s in scored))
        if not scored:
            skipped[row] = "no sample has the partner's npz" if row == "mirror" else "no sample"
            continue
        rows[row] = _mean_over_samples([s.metrics[row] for s in scored])
        terms[row] = {g: {k: float(np.mean([s.fd_terms[row][g][k] for s in scored])) for k in ("fd", "offset", "centred")}
                      for g in FD_TERM_GROUPS}
    elapsed = time.perf_counter() - t0
    n_clips = len({s.clip for s in samples})
    info: Dict[str, object] = {
        "data_root": data_root,
        "split": split,
        "checkpoint": model.cfg.motion.checkpoint or "",
        "speech_encoder": model.cfg.speech.encoder,
        "device": str(model.device),
        "seed": model.cfg.seed,
        "clips": n_clips,
        "samples": len(samples),
        "samples_with_partner": sum(s.has_partner for s in samples),
        "mean_pose_source": mean_source,
        "seconds_total": elapsed,
        "seconds_model": t_model,
        "clips_per_second": n_clips / elapsed if elapsed > 0 else float("inf"),
    }
    return EvaluationResult(rows, counts, skipped, samples, info, terms)
