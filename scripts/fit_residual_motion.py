"""Fit the residual-motion model of a trained motion checkpoint and store it in the checkpoint.

The regression generator predicts the conditional mean of the motion; what speech does not
determine (posture drift, random sway, most blinks) is fitted here from the residuals
``target - prediction`` on a training corpus, per relationship and speaking/listening state
(rsatalker_core/model/residual.py, docs/motion.md), and written into the checkpoint as
``residual_motion``. Predictions are made the way the live generator sees the audio:
consecutive windows of ``streaming.window_frames`` frames, each encoded from its own audio.

    python scripts/fit_residual_motion.py CHECKPOINT --corpus DIR [--clips 60]
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
import torch

try:
    import rsatalker_core  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rsatalker_core.config import FPS, load_config  # noqa: E402
from rsatalker_core.data.relationships import load_relationship_index  # noqa: E402
from rsatalker_core.head.standin import EYELID_EXPR_INDEX  # noqa: E402
from rsatalker_core.io.checkpoint import atomic_save  # noqa: E402
from rsatalker_core.io.motion_npz import load_motion_npz  # noqa: E402
from rsatalker_core.metrics.conversation import frame_energy_db  # noqa: E402
from rsatalker_core.model.motion_model import MotionModel  # noqa: E402
from rsatalker_core.model.residual import fit_residual_motion  # noqa: E402
from rsatalker_core.speech.audio import load_audio  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="motion checkpoint to fit and update in place")
    ap.add_argument("--corpus", required=True, help="DualTalk-layout corpus root (with relationships.csv)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--clips", type=int, default=60, help="clips used (both speakers of each)")
    ap.add_argument("--config", default=None)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    cfg = load_config(args.config, {"motion.checkpoint": os.path.abspath(args.checkpoint), "device": "cpu"})
    model = MotionModel(cfg)
    window = cfg.streaming.window_frames
    index = load_relationship_index(os.path.join(args.corpus, "relationships.csv"))
    clips = sorted({os.path.basename(p).rsplit("_speaker", 1)[0]
                    for p in glob.glob(os.path.join(args.corpus, args.split, "*_speaker1.npz"))})[: args.clips]
    if not clips:
        print(f"error: no clips in {os.path.join(args.corpus, args.split)}", file=sys.stderr)
        return 2
    residuals, energies, rels = [], [], []
    for n, clip in enumerate(clips):
        base = os.path.join(args.corpus, args.split, clip)
        wav = {s: load_audio(f"{base}_speaker{s}.wav", cfg.speech.sample_rate)[0] for s in (1, 2)}
        mot = {s: load_motion_npz(f"{base}_speaker{s}.npz") for s in (1, 2)}
        rel = index.get(clip)
        for s, p in ((1, 2), (2, 1)):
            T = min(len(mot[s]), len(wav[s]) * FPS // cfg.speech.sample_rate)
            pred = model.generate_in_windows(wav[s], wav[p], cfg.speech.sample_rate, rel, mot[p][:T], window, T)
            residuals.append(mot[s][:T] - pred)
            energies.append(frame_energy_db(wav[s], cfg.speech.sample_rate, T))
            rels.append(rel)
        print(f"\r{n + 1}/{len(clips)} clips", end="", flush=True)
    print()
    params = fit_residual_motion(
        residuals, energies, rels, eyelid_index=EYELID_EXPR_INDEX,
        fitted_on=f"{len(clips)} clips of {os.path.basename(os.path.normpath(args.corpus))}/{args.split}, "
                  f"{window}-frame windows",
    )
    data = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    data["residual_motion"] = params.to_dict()
    atomic_save(data, args.checkpoint)
    std = np.asarray(params.head_std)
    print("head std (rad) listening/speaking, mean over relationships:",
          np.round(std[:, 0].mean(0), 4), np.round(std[:, 1].mean(0), 4))
    print("blinks/min listening/speaking:", np.round(np.asarray(params.blink_per_min).mean(0), 1),
          "amplitude:", np.round(params.blink_amp, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
