#!/usr/bin/env python3
"""Live streaming step time, and lip sync of streamed vs offline motion.

    python benchmarks/bench_streaming.py [--rounds 3] [--steps 60] [--threads 1]

Part 1, step time. The real DualTalk sample (``../shared/data/dualtalk_sample``; self =
speaker 2, partner = speaker 1) is fed in 40-ms chunks to
:class:`~rsatalker_core.model.streaming.StreamingMotionGenerator` at hop 1 (one frame per
step, lookahead 1) with the default config's motion model and Whisper tiny.en, and every
``step()`` that emits a frame is timed once its window is full. Variants, each adding one
change to the previous:

  (a) old path: two speech-encoder calls per step (self, partner), PyTorch, 2-s window;
  (b) one encoder call for both streams (batch of 2);
  (c) + ONNX Runtime for the Whisper encoder (``speech.runtime: onnx``);
  (d) + 1-s window (``streaming.window_frames: 25``, the low-latency preset).

Variants run round-robin (``--rounds`` rounds of ``--steps`` steps each) in one process,
so they share the machine's load; ratios are to (a). Besides wall time, the step's CPU time
(``time.thread_time``: with one torch thread and one ONNX Runtime intra-op thread all the
work runs on the calling thread) is what a step costs on an otherwise idle core.

Part 2, lip sync. Pearson correlation, over frames, between the self speech's energy (dB of
the mean square per 40-ms frame) and jaw opening (norm of the jaw axis-angle,
``motion[:, 50:53]``), for offline generation (:meth:`MotionModel.generate` on whole-clip
features, the CLI's path; and per window, with each window's features encoded on their own
as in training) and for streaming with the quality and the low-latency preset, all with the
configured motion checkpoint. Results: benchmarks/results_streaming.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rsatalker_core.config import FPS, JAW_SLICE, load_config  # noqa: E402
from rsatalker_core.io.motion_npz import load_motion_npz  # noqa: E402
from rsatalker_core.model.motion_model import MotionModel  # noqa: E402
from rsatalker_core.model.streaming import StreamingMotionGenerator  # noqa: E402
from rsatalker_core.speech.audio import load_audio  # noqa: E402

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                      "data", "dualtalk_sample")
SR = 16000
CHUNK = SR // FPS  # 40 ms
SAMPLE_SELF = ""  # set by load_sample()


class TwoCallStreaming(StreamingMotionGenerator):
    """The path before batching: the self and partner windows in two encoder calls."""

    def _encode_pair(self, self_audio, partner_audio, n):
        return (self.model.encode(self_audio, self.sample_rate, n),
                self.model.encode(partner_audio, self.sample_rate, n))


def load_sample():
    wavs = sorted(f for f in os.listdir(SAMPLE) if f.endswith("_speaker1.wav")) if os.path.isdir(SAMPLE) else []
    if not wavs:
        sys.exit(f"real DualTalk sample not found under {os.path.normpath(SAMPLE)}")
    global SAMPLE_SELF
    p1 = os.path.join(SAMPLE, wavs[0])
    SAMPLE_SELF = p1.replace("_speaker1.wav", "_speaker2.wav")
    partner, _ = load_audio(p1, SR)
    own, _ = load_audio(SAMPLE_SELF, SR)
    n = min(len(own), len(partner)) // CHUNK * CHUNK
    return own[:n].astype(np.float32), partner[:n].astype(np.float32)


class Runner:
    """One streaming variant fed chunk by chunk; :meth:`run` times ``steps`` full-window steps."""

    def __init__(self, gen: StreamingMotionGenerator, own: np.ndarray, partner: np.ndarray):
        self.gen, self.own, self.partner = gen, own, partner
        self.pos = 0
        self.times: List[float] = []
        self.cpu: List[float] = []

    def _push(self) -> None:
        if self.pos + CHUNK > len(self.own):  # loop the clip with a fresh stream
            self.gen.reset()
            self.pos = 0
        stamp = int(self.pos * 1e9 / SR)
        self.gen.push_audio("self", self.own[self.pos:self.pos + CHUNK], SR, stamp)
        self.gen.push_audio("partner", self.partner[self.pos:self.pos + CHUNK], SR, stamp)
        self.pos += CHUNK

    def run(self, steps: int) -> None:
        done = 0
        while done < steps:
            self._push()
            t, c = time.perf_counter(), time.thread_time()
            frames = self.gen.step()
            dt, dc = time.perf_counter() - t, time.thread_time() - c
            if frames and frames[0].index >= self.gen.window_frames:  # full window only
                self.times.append(dt)
                self.cpu.append(dc)
                done += 1


def stream_all(gen: StreamingMotionGenerator, own: np.ndarray, partner: np.ndarray) -> np.ndarray:
    gen.reset()
    frames = []
    for i in range(0, len(own), CHUNK):
        gen.push_audio("self", own[i:i + CHUNK], SR, int(i * 1e9 / SR))
        gen.push_audio("partner", partner[i:i + CHUNK], SR, int(i * 1e9 / SR))
        frames += gen.step()
    return np.stack([f.motion for f in frames])


def windowed_offline(model: MotionModel, own: np.ndarray, partner: np.ndarray, T: int, w: int) -> np.ndarray:
    """Offline generation on consecutive ``w``-frame windows, each encoded on its own."""
    out = []
    for s in range(0, T, w):
        n = min(w, T - s)
        seg = slice(s * CHUNK, (s + n) * CHUNK)
        fs = model.encode(own[seg], SR, n)
        fp = model.encode(partner[seg], SR, n)
        out.append(model.generate(fs, fp, model.cfg.relationship))
    return np.concatenate(out)


def energy_db(wav: np.ndarray, T: int) -> np.ndarray:
    x = wav[: T * CHUNK].reshape(T, CHUNK).astype(np.float64)
    return 10.0 * np.log10(np.mean(x * x, axis=1) + 1e-10)


def lipsync_corr(motion: np.ndarray, db: np.ndarray) -> float:
    n = min(len(motion), len(db))
    jaw = np.linalg.norm(motion[:n, JAW_SLICE], axis=1)
    return float(np.corrcoef(db[:n], jaw)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60, help="timed steps per variant and round")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the bringup uses 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    own, partner = load_sample()
    load0 = os.getloadavg()[0]

    base = {"device": "cpu", "streaming.hop_frames": 1, "streaming.lookahead_frames": 1}
    quality = {**base, "streaming.window_frames": 50}
    low = {**base, "streaming.window_frames": 25}
    m_torch = MotionModel(load_config(None, {**quality, "speech.runtime": "torch"}))
    m_onnx = MotionModel(load_config(None, {**quality, "speech.runtime": "onnx"}))
    variants = {
        "(a) two encoder calls, torch, 2-s window": TwoCallStreaming(m_torch.cfg, model=m_torch),
        "(b) one encoder call, torch, 2-s window": StreamingMotionGenerator(m_torch.cfg, model=m_torch),
        "(c) one call, ONNX Runtime, 2-s window": StreamingMotionGenerator(m_onnx.cfg, model=m_onnx),
        "(d) one call, ONNX Runtime, 1-s window": StreamingMotionGenerator(
            load_config(None, {**low, "speech.runtime": "onnx"}), model=m_onnx),
    }
    runners: Dict[str, Runner] = {k: Runner(g, own, partner) for k, g in variants.items()}
    for r in runners.values():  # warm-up: fill the window once
        r.run(3)
        r.times.clear()
        r.cpu.clear()
    for _ in range(args.rounds):
        for r in runners.values():
            r.run(args.steps)

    with torch.no_grad():
        ort_threads = m_onnx.speech.onnx_runtime().intra_op_threads
    print(f"## Streaming step time at hop 1 ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} torch thread(s), "
          f"ONNX Runtime intra-op threads {ort_threads})\n")
    print("| variant | wall p50 ms | wall p95 ms | p50 vs (a) | p95 vs (a) | CPU p50 ms | CPU p95 ms | CPU p50 vs (a) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ref = None
    for name, r in runners.items():
        t, c = np.array(r.times) * 1e3, np.array(r.cpu) * 1e3
        p50, p95, c50, c95 = (np.percentile(t, 50), np.percentile(t, 95),
                              np.percentile(c, 50), np.percentile(c, 95))
        ref = ref or (p50, p95, c50)
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {p50 / ref[0]:.2f}x | {p95 / ref[1]:.2f}x | "
              f"{c50:.1f} | {c95:.1f} | {c50 / ref[2]:.2f}x |")
    print(f"\n{len(runners[name].times)} timed steps per variant; budget at hop 1: 40 ms per step; "
          f"1-min load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after (other processes "
          f"on the machine inflate the tails).\n")

    # Part 2: lip sync.
    T = len(own) // CHUNK
    db = energy_db(own, T)
    fs = m_onnx.encode(own, SR, T)
    fp = m_onnx.encode(partner, SR, T)
    rel = m_onnx.cfg.relationship
    offline = m_onnx.generate(fs, fp, rel)
    rows = [("offline, MotionModel.generate (whole-clip features)", offline)]
    for w in (50, 25):
        rows.append((f"offline, generate per {w}-frame window (features encoded per window, as in training)",
                     windowed_offline(m_onnx, own, partner, T, w)))
    q = load_config(None, {"device": "cpu", "streaming.window_frames": 50,
                           "streaming.lookahead_frames": 4, "streaming.hop_frames": 5})
    rows.append(("streaming, quality preset (window 50, lookahead 4, hop 5)",
                 stream_all(StreamingMotionGenerator(q, model=m_onnx), own, partner)))
    ll = load_config(None, {"device": "cpu"})
    s = ll.streaming
    rows.append((f"streaming, default low-latency preset (window {s.window_frames}, lookahead "
                 f"{s.lookahead_frames}, hop {s.hop_frames})",
                 stream_all(StreamingMotionGenerator(ll, model=m_onnx), own, partner)))
    print(f"## Lip sync: corr(own speech energy dB, jaw opening), {T} frames, checkpoint "
          f"{m_onnx.cfg.motion.checkpoint or '(untrained)'}\n")
    print("| generation | frames | corr | vs offline |")
    print("|---|---:|---:|---:|")
    c0 = lipsync_corr(offline, db)
    npz = os.path.join(SAMPLE, os.path.basename(SAMPLE_SELF).replace(".wav", ".npz"))
    if os.path.isfile(npz):  # reference: the recorded speaker's own jaw
        rows.append(("reference: recorded jaw of speaker 2 (DualTalk npz)", load_motion_npz(npz)))
    for name, m in rows:
        c = lipsync_corr(m, db)
        print(f"| {name} | {len(m)} | {c:.3f} | {c / c0:.0%} |")


if __name__ == "__main__":
    main()
