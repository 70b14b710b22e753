#!/usr/bin/env python3
"""Latency of a live session, measured from its recording, printed as a markdown table.

    python benchmarks/bench_session.py [--seconds 8] [--config config/test_small.yaml ...]
        [--device cpu] [--keep DIR]

For each config: the composed ROS 2 graph (``rsatalker_ros.bringup``, one process, real
rclpy, file input at real-time pace) plays a real two-speaker dialogue (Debian's
codec2-examples recordings, as ``make demo``) and its recorder writes an MCAP bag
(``--bag``); the bag is then evaluated with :mod:`rsatalker_core.evaluation.bag` (what
``rsatalker evaluate-bag`` reports): FLAME cadence and jitter, audio chunk -> FLAME and
audio chunk -> image latency (p50 / p95), dropped frames. Each graph runs in its own ROS
domain with localhost-only discovery. Results are committed in benchmarks/results_session.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from rsatalker_core.speech.dialogue import debian_dialogue  # noqa: E402
from rsatalker_core.evaluation.bag import evaluate_session, read_session  # noqa: E402

SR = 16000


def run_session(config: str, seconds: float, device: str, work: Path, domain: int) -> dict:
    """Run the graph on ``seconds`` of dialogue with ``config``; return the bag's report."""
    a, b, _ = debian_dialogue(SR, duration=seconds)
    work.mkdir(parents=True, exist_ok=True)
    self_wav, partner_wav = work / "self.wav", work / "partner.wav"
    sf.write(self_wav, a, SR)
    sf.write(partner_wav, b, SR)
    bag = work / "session"
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "rsatalker_ros.bringup", "--self-audio", str(self_wav),
           "--partner-audio", str(partner_wav), "--relationship", "couple", "--config", config,
           "--device", device, "--bag", str(bag)]
    t = time.perf_counter()
    with open(work / "bringup.log", "wb") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    if rc != 0:
        raise SystemExit(f"bringup failed ({rc}); see {work / 'bringup.log'}")
    report = evaluate_session(read_session(str(bag), load_images=False))
    report["wall_s"] = time.perf_counter() - t
    return report


def row(config: str, device: str, r: dict) -> str:
    f, lf, li = r["flame"], r["latency_ms"]["flame"], r["latency_ms"]["image"]

    def ms(d: dict, key: str) -> str:
        return f"{d[key]:.0f}" if key in d else "-"

    return (f"| {Path(config).name} | {device} | {f['frames']} | {f['fps_mean']:.2f} | {f['jitter_ms']:.1f} | "
            f"{ms(lf, 'p50')} / {ms(lf, 'p95')} | {ms(li, 'p50')} / {ms(li, 'p95')} | "
            f"{r['images']['count']} | {r['dropped']['count']} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=8.0, help="dialogue length, s")
    p.add_argument("--config", action="append",
                   help="rsatalker config YAML (repeatable; default: test_small and default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--keep", help="keep the bags and logs in this directory")
    args = p.parse_args()
    configs = args.config or [str(REPO / "config" / "test_small.yaml"), str(REPO / "config" / "default.yaml")]

    lines = [
        "# rsatalker session latency (from recorded bags)",
        "",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.seconds:.0f} s dialogue per config",
        "",
        "| config | device | FLAME frames | cadence (fps) | jitter (ms) | audio->FLAME p50 / p95 (ms) "
        "| audio->image p50 / p95 (ms) | images | dropped |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        for i, config in enumerate(configs):
            r = run_session(config, args.seconds, args.device, root / f"run{i}_{Path(config).stem}", 180 + i)
            lines.append(row(config, args.device, r))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
