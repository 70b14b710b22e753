"""`rsatalker generate` end to end: wall time, real-time factor and peak memory.

Each case runs ``rsatalker generate`` in a fresh child process WITHOUT any tuning
environment variables (no ``MALLOC_*``, no ``OMP_NUM_THREADS``): the program tunes itself
(rsatalker_core/runtime.py). The child reports its own peak RSS (``ru_maxrss``) and CPU
time (user + system; on a machine shared with other jobs, the CPU time shows what the
run needs when the wall time is inflated by waiting for a core), and ffmpeg's CPU time; the
ffmpeg encoder it pipes frames into is a separate process (libx264 at these sizes: tens of
MB, not included). Speech: the real DualTalk sample
(``../shared/data/dualtalk_sample``, both speakers; ``--data``), tiled to each clip length; without it
the codec2-examples speech in ``/usr/share/codec2/raw``; neither: the benchmark skips.

    .venv/bin/python benchmarks/bench_generate.py [--long-seconds 600] [--small-video]
        [--untuned-seconds 5] | tee benchmarks/results_generate.md

Cases: 30 s with video at the default render size; ``--long-seconds`` with ``--no-video``;
with ``--small-video`` the long clip also with video at 64x64; with ``--untuned-seconds``
a short clip with video and the process tuning switched off (``runtime.tune_allocator:
false``, two torch threads, Python's switch interval), the behaviour before the tuning.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUALTALK = os.path.join(REPO, "..", "shared", "data", "dualtalk_sample")
CODEC2 = "/usr/share/codec2/raw"
SR = 16000


def speech_pair(dualtalk=DUALTALK):
    """(self, partner) float32 mono at 16 kHz and a description, or None."""
    wavs = sorted(glob.glob(os.path.join(dualtalk, "*_speaker1.wav")))
    if wavs:
        a, sa = sf.read(wavs[0], dtype="float32")
        b, sb = sf.read(wavs[0].replace("_speaker1.wav", "_speaker2.wav"), dtype="float32")
        if sa == sb == SR:
            return b, a, f"DualTalk sample {os.path.basename(wavs[0])[:-13]} ({len(b) / SR:.1f} s)"
    raws = sorted(glob.glob(os.path.join(CODEC2, "*.raw")))
    if len(raws) >= 2:
        from scipy.signal import resample_poly

        x = [resample_poly(np.fromfile(p, "<i2").astype(np.float32) / 32768.0, 2, 1) for p in raws[:2]]
        return x[0], x[1], "codec2-examples speech (8 kHz, resampled)"
    return None


def tile(x, seconds):
    n = int(round(seconds * SR))
    return np.resize(x, n).astype(np.float32)


CHILD = r"""
import json, resource, sys, time
t = time.perf_counter()
from rsatalker_core.cli import main
rc = main(sys.argv[1:])
wall = time.perf_counter() - t
print("BENCH " + json.dumps({"rc": rc, "wall": wall,
      "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      "cpu": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
      "ffmpeg_cpu": sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])}))
"""


def run_case(tmp, name, seconds, self_wav, partner_wav, video, config_text):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    s, p = os.path.join(d, "self.wav"), os.path.join(d, "partner.wav")
    sf.write(s, tile(self_wav, seconds), SR, subtype="FLOAT")
    sf.write(p, tile(partner_wav, seconds), SR, subtype="FLOAT")
    cfg = os.path.join(d, "cfg.yaml")
    with open(cfg, "w") as fh:
        fh.write(config_text)
    args = ["generate", "--self-audio", s, "--partner-audio", p, "--relationship", "couple",
            "--out-motion", os.path.join(d, "out.npz"), "--config", cfg]
    args += ["--out-video", os.path.join(d, "out.mp4")] if video else ["--no-video"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "OMP_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", CHILD] + args, cwd=REPO, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(lines[-1][6:])
    summary = [ln for ln in proc.stdout.splitlines() if ln.startswith("wrote ")]
    r.update(name=name, seconds=seconds, video=video, summary=summary[-1] if summary else "",
             mp4_mb=os.path.getsize(os.path.join(d, "out.mp4")) / 1e6 if video else 0.0)
    for f in os.listdir(d):  # free the disk early (a 10-minute case writes ~1 GB of wav)
        os.remove(os.path.join(d, f))
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="the clip with video at the default size")
    ap.add_argument("--long-seconds", type=float, default=600.0, help="the long --no-video clip (0 = skip)")
    ap.add_argument("--small-video", action="store_true", help="the long clip also with video at 64x64")
    ap.add_argument("--untuned-seconds", type=float, default=0.0, help="a short clip without tuning (0 = skip)")
    ap.add_argument("--config", default="", help="base config YAML (default: the embedded default)")
    ap.add_argument("--data", default=DUALTALK, help="DualTalk sample directory (default: ../shared/data/dualtalk_sample)")
    args = ap.parse_args()
    pair = speech_pair(args.data)
    if pair is None:
        print("bench_generate: skipped (no DualTalk sample, no codec2-examples speech)")
        return 0
    self_wav, partner_wav, source = pair
    base = open(args.config).read() if args.config else ""
    untuned = base + "\nruntime:\n  torch_threads: 2\n  tune_allocator: false\n  gil_switch_interval: 0.0\n"
    small = base + "\nrender:\n  width: 64\n  height: 64\n"
    cases = [("video", args.seconds, True, base)]
    if args.long_seconds > 0:
        cases.append(("no-video", args.long_seconds, False, base))
        if args.small_video:
            cases.append(("video-64x64", args.long_seconds, True, small))
    if args.untuned_seconds > 0:
        cases.append(("video-untuned", args.untuned_seconds, True, untuned))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, seconds, video, cfg in cases:
            r = run_case(tmp, name, seconds, self_wav, partner_wav, video, cfg)
            results.append(r)
            print(f"# done {name}: {r['wall']:.1f} s", file=sys.stderr, flush=True)

    import torch

    print("# `rsatalker generate`: wall time and peak memory\n")
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}. Speech: {source}, tiled to each "
          "clip length. Each case: a fresh process, no MALLOC_* / OMP_NUM_THREADS in the environment.\n")
    print("| case | clip s | video | wall s | x real time | CPU s rsatalker | CPU s ffmpeg | peak RSS MB | mp4 MB |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['name']} | {r['seconds']:.0f} | {'yes' if r['video'] else 'no'} | {r['wall']:.1f} | "
              f"{r['wall'] / r['seconds']:.2f} | {r['cpu']:.1f} | {r['ffmpeg_cpu']:.1f} | {r['rss_kb'] / 1024:.0f} | "
              f"{r['mp4_mb']:.2f} |")
    print()
    for r in results:
        print(f"- {r['name']}: {r['summary']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
