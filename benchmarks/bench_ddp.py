"""Data-parallel training speed: optimiser steps per second with 1 and 2 processes (issue 13).

Each case is one ``torchrun --nproc_per_node=K --standalone`` launch of this file (the
worker below) training stage 1 (config/train_stage1_test.yaml: log-mel features, a
32-wide motion transformer) on 50-frame windows of the real DualTalk sample
(``../shared/data/dualtalk_sample``; the benchmark exits when it is absent) with
``--batch`` windows per process and step, so K processes train a K times larger global
batch per step. The feature cache is filled before the timed run; the rate is
:attr:`TrainResult.steps_per_s` (loading batches and stepping; validation and
checkpoints excluded), averaged over the ranks. Reported: steps/s, windows/s and the
ratio to one process. On the CPU the processes use the gloo backend and one thread each
(``OMP_NUM_THREADS=1``); with ``--device cuda`` one GPU per process and NCCL.

    .venv/bin/python benchmarks/bench_ddp.py [--steps 40] [--batch 4] [--procs 1 2]
        [--device cpu] | tee benchmarks/results_ddp.md

The machine's load (``uptime``) before and after is printed: on a machine shared with
other jobs the 2-process rate says more about the free cores than about DDP.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUALTALK = os.path.join(REPO, "..", "shared", "data", "dualtalk_sample")
PRESET = os.path.join(REPO, "config", "train_stage1_test.yaml")


def _worker(args: argparse.Namespace) -> None:
    sys.path.insert(0, REPO)
    import torch

    from rsatalker_core.config import load_config
    from rsatalker_core.training import distributed
    from rsatalker_core.training.stage1 import MotionStage
    from rsatalker_core.training.trainer import Trainer

    device = distributed.init_distributed(args.device)
    if device.startswith("cpu"):
        torch.set_num_threads(1)
    cfg = load_config(PRESET, {
        "device": device, "data.root": DUALTALK, "data.window_frames": 50, "data.stride_frames": 25,
        "data.feature_cache": os.path.join(args.out, "features"), "train.batch_size": args.batch,
        "train.max_steps": args.steps, "train.val_every": 0, "train.checkpoint_every": 0,
        "train.log_every": 10, "train.out_dir": os.path.join(args.out, f"run{distributed.world_size()}"),
    })
    stage = MotionStage(cfg)  # fills the feature cache (sharded by rank) before timing
    result = Trainer(stage, cfg.train, seed=0).fit()
    if distributed.is_main():
        with open(os.path.join(args.out, f"result{distributed.world_size()}.json"), "w") as fh:
            json.dump({"steps_per_s": result.steps_per_s, "windows": len(stage.train_data),
                       "device": str(stage.device)}, fh)
    distributed.shutdown()


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=4, help="windows per process and step")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return
    if not os.path.isdir(DUALTALK):
        print(f"DualTalk sample not found at {DUALTALK}: nothing to measure")
        return
    rows = []
    before = _uptime()
    with tempfile.TemporaryDirectory() as out:
        for k in args.procs:
            env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
            cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={k}", "--standalone",
                   os.path.abspath(__file__), "--worker", "--out", out, "--steps", str(args.steps),
                   "--batch", str(args.batch), "--device", args.device]
            t0 = time.monotonic()
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
            wall = time.monotonic() - t0
            if proc.returncode != 0:
                sys.exit(f"{k} process(es) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            with open(os.path.join(out, f"result{k}.json")) as fh:
                r = json.load(fh)
            rows.append((k, r, wall))
    after = _uptime()
    base = rows[0][1]["steps_per_s"] * rows[0][0] * args.batch
    print("# Data-parallel training speed (benchmarks/bench_ddp.py)\n")
    print(f"Stage 1 (config/train_stage1_test.yaml), 50-frame windows of the real DualTalk sample "
          f"({rows[0][1]['windows']} windows), {args.batch} windows per process and step, "
          f"{args.steps} steps, device {rows[0][1]['device']} "
          f"({'gloo' if args.device == 'cpu' else 'nccl'}), one torch thread per process.\n")
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"torch threads 1 per process.\n")
    print(f"- load before: `{before}`\n- load after: `{after}`\n")
    print("| processes | global batch | steps/s | windows/s | windows/s vs 1 process | launch wall s |")
    print("|---|---|---|---|---|---|")
    for k, r, wall in rows:
        wps = r["steps_per_s"] * k * args.batch
        print(f"| {k} | {k * args.batch} | {r['steps_per_s']:.2f} | {wps:.1f} | {wps / base:.2f}x | {wall:.1f} |")


if __name__ == "__main__":
    main()
