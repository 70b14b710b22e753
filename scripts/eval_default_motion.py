#!/usr/bin/env python3
"""Evaluate the default motion checkpoint on HELD-OUT synthetic dialogues; print markdown.

The held-out dialogues come from the project's SYNTHETIC-SUPERVISION generator
(:mod:`rsatalker_core.data.synthetic`) with another seed and split than the training corpus
(training: ``--seed 0``, split ``train``; here: ``--seed 1``, split ``test``), so no
arrangement of turns, clip seed or motion track was trained on. The voices are the same 13
recordings/voices (there are no others offline). The targets are rule-based, so the numbers
say how well the model learnt the rules, not how human-like it is.

Generation mirrors the live generator's context: every clip is cut into consecutive 2-s
windows (``streaming.window_frames`` frames), each window's Whisper features are encoded from
that window's audio alone, and the generator runs on each window (``--streaming-clips`` also
runs :class:`rsatalker_core.streaming.StreamingMotionGenerator` chunk by chunk on a few clips).

Reported:

1. MSE (56-D and per EXP 0:50 / JAW 50:53 / POSE 53:56; raw units, radians for rotations)
   of the model with all inputs, with partner audio but no partner motion (the neutral
   fallback, as in the live demo), without any partner input (partner audio silenced and
   partner motion absent), with a wrong relationship (mean over the three others), and of
   the mean pose (the training-set mean stored in the checkpoint, ``motion_mean``), and of
   a *rule oracle*: the synthetic rules run on the clip's own audio and turns, averaged over
   ``--oracle-draws`` other seeds of their random parts (idle drift, backchannel coin flips
   and delays) — about the best any model can do (plus ``1/draws`` of the random variance).
2. Relationship dependence: each held-out (clip, speaker) generated under each of the four
   relationships; per-sequence statistics (mean/std of smile exp1, brow exp3, jaw, head
   angles, expression energy) -> nearest-centroid classifier (standardised features,
   separate centroids for speaker 1 and 2, whose roles differ in non-equal relationships),
   leave-clips-out cross-validation; accuracy vs chance 25%. The same classifier on the
   rule-based targets synthesised under the four relationships gives the reachable ceiling.

    python scripts/eval_default_motion.py [--checkpoint PATH] [--heldout DIR] [--clips 24]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np

try:
    import rsatalker_core  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from rsatalker_core.speech.audio import load_audio  # noqa: E402
from rsatalker_core.config import EXP_SLICE, FPS, HEAD_SLICE, JAW_SLICE, load_config  # noqa: E402
from rsatalker_core.data.synthetic import (  # noqa: E402
    GENERATOR_VERSION, SyntheticCorpusConfig, make_synthetic_corpus, synthesize_motion,
)
from rsatalker_core.speech.dialogue import Turn  # noqa: E402
from rsatalker_core.io.motion_npz import load_motion_npz  # noqa: E402
from rsatalker_core.evaluation.acceptance import logistic_cv as acceptance_logistic_cv  # noqa: E402
from rsatalker_core.model.motion_model import MotionModel  # noqa: E402
from rsatalker_core.relationship import Relationship, relationship_tensors  # noqa: E402

GROUPS = {"56-D": slice(0, 56), "EXP": EXP_SLICE, "JAW": JAW_SLICE, "POSE": HEAD_SLICE}
RELS = Relationship.names()


# ---------------------------------------------------------------------------- generation
def encode_windows(model: MotionModel, wav: np.ndarray, sr: int, T: int, window: int) -> List[torch.Tensor]:
    """Features ``[1, n, D]`` of consecutive windows of ``window`` frames covering ``T`` frames,
    each encoded from its own audio only (as the live generator does)."""
    spf = sr // FPS
    out = []
    for s in range(0, T, window):
        n = min(window, T - s)
        seg = np.zeros(n * spf, np.float32)
        part = wav[s * spf : (s + n) * spf]
        seg[: len(part)] = part
        out.append(model.encode(seg, sr, n))
    return out


@torch.no_grad()
def generate_windows(
    model: MotionModel, fs: List[torch.Tensor], fp: List[torch.Tensor],
    relationship: str, partner_motion: Optional[np.ndarray], window: int,
) -> np.ndarray:
    """Generator output ``[T, 56]`` window by window (``partner_motion`` None: neutral fallback)."""
    blood, equal = relationship_tensors([relationship], model.device)
    out = []
    for k, (a, b) in enumerate(zip(fs, fp)):
        n = a.shape[1]
        pm = None
        if partner_motion is not None:
            pm = torch.as_tensor(partner_motion[k * window : k * window + n], device=model.device)[None]
        out.append(model.generator(a, b, blood, equal, pm)[0].float().cpu().numpy())
    return np.concatenate(out, axis=0)


def stream_clip(model: MotionModel, cfg, self_wav, partner_wav, sr, relationship, partner_motion) -> np.ndarray:
    """Run :class:`StreamingMotionGenerator` on 40-ms chunks of both tracks; ``[T, 56]``."""
    from rsatalker_core.model.streaming import StreamingMotionGenerator

    gen = StreamingMotionGenerator(cfg, model=model)
    gen.set_relationship(relationship)
    spf = sr // FPS
    T = len(self_wav) // spf
    frames = []
    for k in range(T):
        stamp = int(k * 1e9 / FPS)
        if partner_motion is not None:
            gen.push_partner_motion(partner_motion[k], stamp)
        gen.push_audio("partner", partner_wav[k * spf : (k + 1) * spf], sr, stamp)
        gen.push_audio("self", self_wav[k * spf : (k + 1) * spf], sr, stamp)
        frames += gen.step()
    out = np.stack([f.motion for f in frames])
    return out  # the last lookahead frames are never emitted (no audio after them)


# ---------------------------------------------------------------------------- metrics
def mse_by_group(preds: List[np.ndarray], gts: List[np.ndarray]) -> Dict[str, float]:
    """MSE over every frame of every sequence, per group (float64)."""
    out = {}
    for g, cols in GROUPS.items():
        se = sum(float(((p[: len(t), cols].astype(np.float64) - t[: len(p), cols]) ** 2).sum()) for p, t in zip(preds, gts))
        n = sum(min(len(p), len(t)) * (cols.stop - cols.start) for p, t in zip(preds, gts))
        out[g] = se / n
    return out


def sequence_stats(m: np.ndarray) -> np.ndarray:
    """Simple per-sequence motion statistics ``[11]`` of ``m [T, 56]``."""
    head = m[:, HEAD_SLICE]
    return np.array([
        m[:, 1].mean(), m[:, 1].std(), m[:, 3].mean(), m[:, 3].std(),
        m[:, 50].mean(), m[:, 50].std(), *head.std(0),
        np.abs(np.diff(head, axis=0)).mean(), float((m[:, EXP_SLICE] ** 2).sum(1).mean()),
    ])


def nearest_centroid_cv(X: np.ndarray, y: np.ndarray, speaker: np.ndarray, groups: np.ndarray, folds: int = 6) -> float:
    """Leave-clips-out CV accuracy of a nearest-centroid classifier on standardised ``X``.

    Clips (``groups``) are split into ``folds`` folds; a test sequence is compared with the
    class centroids of training sequences of the same speaker number.
    """
    fid = _folds(groups, folds)
    correct = 0
    for f in range(folds):
        tr, te = fid != f, fid == f
        mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-9
        Z = (X - mu) / sd
        for i in np.flatnonzero(te):
            same = tr & (speaker == speaker[i])
            cents = np.stack([Z[same & (y == c)].mean(0) for c in range(len(RELS))])
            correct += int(np.argmin(((cents - Z[i]) ** 2).sum(1)) == y[i])
    return correct / len(y)


def _folds(groups: np.ndarray, folds: int) -> np.ndarray:
    uniq = np.unique(groups)
    fold_of = {g: i % folds for i, g in enumerate(uniq)}
    return np.array([fold_of[g] for g in groups])


def logistic_cv(X: np.ndarray, y: np.ndarray, speaker: np.ndarray, groups: np.ndarray) -> float:
    """Leave-clips-out CV accuracy of multinomial logistic regression with a speaker-2
    interaction (:func:`rsatalker_core.evaluation.acceptance.logistic_cv`, 2000 steps)."""
    return acceptance_logistic_cv(X, y, groups, speaker, steps=2000)


# ---------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="", help="rsatalker config YAML (default: the embedded default)")
    ap.add_argument("--checkpoint", default="", help="motion checkpoint (default: the config's motion.checkpoint)")
    ap.add_argument("--heldout", default=os.path.join("cache", "default_motion", "heldout"),
                    help="held-out synthetic corpus dir (written when missing or of another generator version)")
    ap.add_argument("--clips", type=int, default=24, help="held-out dialogues (written when the corpus is made)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1, help="held-out corpus seed (the training corpus uses 0)")
    ap.add_argument("--max-clips", type=int, default=0, help="evaluate only the first N clips (0: all)")
    ap.add_argument("--streaming-clips", type=int, default=4, help="clips also run through the streaming generator")
    ap.add_argument("--oracle-draws", type=int, default=32,
                    help="random draws averaged for the rule oracle (0: skip it)")
    ap.add_argument("--json", default="", help="also write the numbers as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    # The regression output alone: MSE against rule targets is not the place for the sampled
    # residual motion (rsatalker_core/model/residual.py; scored in scripts/accept_motion.py).
    overrides = {"device": "cpu", "motion.residual": False}
    if args.checkpoint:
        overrides["motion.checkpoint"] = args.checkpoint
    cfg = load_config(args.config or None, overrides)
    if not cfg.motion.checkpoint:
        print("error: no motion checkpoint (set --checkpoint or motion.checkpoint)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    meta_path = os.path.join(args.heldout, "synthetic_corpus.json")
    if not os.path.isfile(meta_path) or json.load(open(meta_path, encoding="utf-8")).get("version") != GENERATOR_VERSION:
        make_synthetic_corpus(SyntheticCorpusConfig(
            root=args.heldout, train_clips=0, test_clips=args.clips, clip_seconds=args.seconds,
            seed=args.seed, voices="all", overwrite=True))
    with open(os.path.join(args.heldout, "synthetic_corpus.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    model = MotionModel(cfg)
    gen = model.generator.eval()
    mean_pose = gen.motion_mean.cpu().numpy()
    window = min(cfg.streaming.window_frames, cfg.motion.max_frames)
    sr = cfg.speech.sample_rate

    conds = ("full", "no_partner_motion", "no_partner", "wrong_relationship", "mean_pose", "oracle")
    preds: Dict[str, List[np.ndarray]] = {c: [] for c in conds}
    gts: List[np.ndarray] = []
    stats, labels, spks, groups, gt_stats = [], [], [], [], []
    stream_preds: Dict[str, List[np.ndarray]] = {"full": [], "no_partner_motion": []}
    stream_gts: List[np.ndarray] = []
    clips = [c for c in meta["clips"] if c["split"] == "test"]
    if args.max_clips > 0:
        clips = clips[: args.max_clips]
    for ci, clip in enumerate(clips):
        d = os.path.join(args.heldout, "test")
        wav = {s: load_audio(os.path.join(d, f"{clip['clip']}_speaker{s}.wav"), sr)[0] for s in (1, 2)}
        mot = {s: load_motion_npz(os.path.join(d, f"{clip['clip']}_speaker{s}.npz")) for s in (1, 2)}
        T = min(len(mot[1]), len(mot[2]))
        feats = {s: encode_windows(model, wav[s], sr, T, window) for s in (1, 2)}
        silent = encode_windows(model, np.zeros_like(wav[1]), sr, T, window)
        turns = [Turn(int(k) - 1, float(a), float(b)) for k, a, b in clip["turns"]]
        for s in (1, 2):
            p = 3 - s
            gt = mot[s][:T]
            rel = clip["relationship"]
            gts.append(gt)
            preds["full"].append(generate_windows(model, feats[s], feats[p], rel, mot[p][:T], window))
            preds["no_partner_motion"].append(generate_windows(model, feats[s], feats[p], rel, None, window))
            preds["no_partner"].append(generate_windows(model, feats[s], silent, rel, None, window))
            preds["mean_pose"].append(np.broadcast_to(mean_pose, gt.shape))
            by_rel = {r: generate_windows(model, feats[s], feats[p], r, mot[p][:T], window) for r in RELS}
            for r in RELS:
                if r != rel:  # scored against this sequence's target, once per wrong relationship
                    preds["wrong_relationship"].append(by_rel[r])
                stats.append(sequence_stats(by_rel[r]))
                labels.append(RELS.index(r))
                spks.append(s)
                groups.append(ci)
                gt_r = synthesize_motion(wav[s][: T * (sr // FPS)], turns, s, Relationship.parse(r), sr, clip["seed"])
                gt_stats.append(sequence_stats(gt_r[:T]))
            if args.oracle_draws > 0:
                # The rules' expectation given this clip's audio and turns: the mean over
                # random draws (idle drift, backchannel coin flips and delays) of other seeds.
                w = wav[s][: T * (sr // FPS)]
                rel_p = Relationship.parse(rel)
                preds["oracle"].append(np.mean([
                    synthesize_motion(w, turns, s, rel_p, sr, 10_000 + k)[:T] for k in range(args.oracle_draws)
                ], axis=0))
            if ci < args.streaming_clips:
                stream_gts.append(gt)
                stream_preds["full"].append(stream_clip(model, cfg, wav[s], wav[p], sr, rel, mot[p]))
                stream_preds["no_partner_motion"].append(stream_clip(model, cfg, wav[s], wav[p], sr, rel, None))
        print(f"clip {ci + 1}/{len(clips)} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    wrong_gts = [g for g in gts for _ in range(3)]
    results = {c: mse_by_group(preds[c], gts) for c in ("full", "no_partner_motion", "no_partner")}
    results["wrong_relationship"] = mse_by_group(preds["wrong_relationship"], wrong_gts)
    results["mean_pose"] = mse_by_group(preds["mean_pose"], gts)
    if preds["oracle"]:
        results["oracle"] = mse_by_group(preds["oracle"], gts)
    for c in stream_preds:
        if stream_preds[c]:
            results[f"streaming_{c}"] = mse_by_group(stream_preds[c], stream_gts)
    X, y, spk, grp = np.array(stats), np.array(labels), np.array(spks), np.array(groups)
    G = np.array(gt_stats)
    acc = {"nearest centroid": nearest_centroid_cv(X, y, spk, grp), "logistic regression": logistic_cv(X, y, spk, grp)}
    acc_gt = {"nearest centroid": nearest_centroid_cv(G, y, spk, grp), "logistic regression": logistic_cv(G, y, spk, grp)}
    spread = float(np.mean([np.abs(X[(grp == g) & (spk == s)] - X[(grp == g) & (spk == s)].mean(0)).mean()
                            for g in np.unique(grp) for s in (1, 2)]))

    n_seq = len(gts)
    lines = [
        f"Held-out SYNTHETIC dialogues: {len(clips)} clips x {args.seconds:g} s (seed {meta['config']['seed']}, "
        f"split test; training corpus: seed 0, split train), {n_seq} (clip, speaker) sequences, "
        f"{sum(len(g) for g in gts)} frames. Checkpoint: `{cfg.motion.checkpoint}`. Windows of {window} frames.",
        "",
        "| condition | MSE 56-D | MSE EXP | MSE JAW | MSE POSE |",
        "|---|---|---|---|---|",
    ]
    names = {
        "full": "trained model, all inputs",
        "no_partner_motion": "trained model, partner motion absent (neutral fallback)",
        "no_partner": "trained model, no partner (partner audio silenced, motion absent)",
        "wrong_relationship": "trained model, wrong relationship (mean of the 3 others)",
        "mean_pose": "mean pose (training-set mean)",
        "oracle": f"rule oracle: the rules' expectation given audio and turns ({args.oracle_draws} draws)",
        "streaming_full": f"streaming generator, all inputs ({args.streaming_clips} clips)",
        "streaming_no_partner_motion": f"streaming generator, no partner motion ({args.streaming_clips} clips)",
    }
    for c, r in results.items():
        lines.append(f"| {names[c]} | " + " | ".join(f"{r[g]:.3e}" for g in GROUPS) + " |")
    lines += [
        "",
        "| relationship classifier (6-fold leave-clips-out CV) | nearest centroid | logistic regression |",
        "|---|---|---|",
        f"| on generated motion ({len(y)} sequences: {n_seq} x 4 relationships) | "
        + " | ".join(f"{v:.1%}" for v in acc.values()) + " |",
        "| on the rule-based targets under the same 4 relationships (reachable ceiling) | "
        + " | ".join(f"{v:.1%}" for v in acc_gt.values()) + " |",
        "| chance | 25.0% | 25.0% |",
        "",
        f"Mean absolute deviation of the per-sequence statistics across the 4 relationships (same clip "
        f"and speaker): {spread:.3e}. Evaluation time {time.perf_counter() - t0:.0f} s.",
    ]
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"mse": results, "relationship_accuracy": acc, "relationship_accuracy_targets": acc_gt,
                       "clips": len(clips), "sequences": n_seq}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
