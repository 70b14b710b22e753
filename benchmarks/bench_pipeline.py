#!/usr/bin/env python3
"""Speed of the main stages, printed as a markdown table.

    python benchmarks/bench_pipeline.py [--device cpu] [--seconds 20] [--repeats 5]

Rows:
* motion generation real-time factor (speech encoding + generator, offline, default
  config), and the per-step cost of live streaming inference;
* render time per frame at 256² and 512² with the default avatar's Gaussian count, on the
  pure-PyTorch CPU rasterizer and, when CUDA is available, on gsplat.

All rows of one run come from the same process; compare ratios within a run, since these
machines are noisy. Results are committed in benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rsatalker_core.config import FPS, load_config  # noqa: E402
from rsatalker_core.speech.dialogue import debian_dialogue  # noqa: E402
from rsatalker_core.model.motion_model import MotionModel  # noqa: E402
from rsatalker_core.render.renderer import AvatarRenderer  # noqa: E402
from rsatalker_core.model.streaming import StreamingMotionGenerator, generate_offline  # noqa: E402


def _time(fn, repeats: int, sync=None) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        if sync:
            sync()
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_motion(device: str, seconds: float, repeats: int) -> list:
    cfg = load_config(None, {"device": device})
    model = MotionModel(cfg)
    sr = cfg.speech.sample_rate
    a, b, _ = debian_dialogue(sr, duration=seconds)
    T = int(seconds * FPS)

    def run():  # the path of `rsatalker generate`: the live windows, batched, with residual motion
        generate_offline(model, a, b, sr, "couple", num_frames=T)

    t = _time(run, repeats)
    rows = [(f"motion generation, offline {seconds:.0f} s clip ({cfg.speech.encoder}, generate_offline)", device,
             f"{t:.3f} s", f"RTF {t / seconds:.3f} ({seconds / t:.1f}x real time)")]
    gen = StreamingMotionGenerator(cfg, model=model)
    chunk = int(cfg.streaming.chunk_seconds * sr)
    steps = []
    for i in range(0, len(a), chunk):
        gen.push_audio("self", a[i : i + chunk], sr, int(i * 1e9 / sr))
        gen.push_audio("partner", b[i : i + chunk], sr, int(i * 1e9 / sr))
        t0 = time.perf_counter()
        out = gen.step()
        if out:
            steps.append((time.perf_counter() - t0, len(out)))
    per_step = statistics.median([s for s, _ in steps])
    frames = sum(n for _, n in steps)
    busy = sum(s for s, _ in steps)
    rows.append((f"motion streaming step (window {cfg.streaming.window_frames}, hop {cfg.streaming.hop_frames}, "
                 f"lookahead {cfg.streaming.lookahead_frames})", device, f"{per_step * 1000:.1f} ms/step",
                 f"RTF {busy / (frames / FPS):.3f}"))
    return rows


def bench_render(device: str, size: int, repeats: int) -> tuple:
    cfg = load_config(None, {"device": device, "render.width": size, "render.height": size})
    r = AvatarRenderer(cfg)
    motion = np.zeros(56, np.float32)
    motion[50] = 0.2
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    t = _time(lambda: r.render(motion), repeats, sync)
    n = int(r.avatar.binding.shape[0])
    backend = "gsplat" if device.startswith("cuda") else "numba (CPU inference, render.backend auto)"
    return (f"render {size}x{size}, {n} Gaussians, {backend}", device, f"{t * 1000:.1f} ms/frame", f"{1 / t:.1f} fps")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    from rsatalker_core.runtime import tune_process

    tune_process()  # as the rsatalker CLI and the nodes do at start-up
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        rows += bench_motion(dev, args.seconds, args.repeats)
        for size in (256, 512):
            rows.append(bench_render(dev, size, args.repeats))
    if not torch.cuda.is_available():
        rows.append(("CUDA rows", "cuda", "n/a", "no CUDA device on this machine"))
    print(f"# rsatalker benchmarks\n\nmachine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}\n")
    print("| stage | device | time | rate |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
