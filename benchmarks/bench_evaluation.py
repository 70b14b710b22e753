#!/usr/bin/env python3
"""Speed of ``rsatalker evaluate``, printed as a markdown table.

    python benchmarks/bench_evaluation.py [--data DIR] [--device cpu] [--repeats 3]

The split is built in a temporary directory from the real DualTalk sample clip (default:
``../shared/data/dualtalk_sample`` next to the repository; ``--data`` names another flat
directory of ``<clip>_speaker{1,2}.{wav,npz}``). Speaker 2's npz is also copied as speaker
1's, so the clip gives two samples and every row is computed (the model, both ablations,
mean pose and partner mirroring). Rows: ``config/test_small.yaml`` (log-mel encoder, small
generator) and the default config (whisper-tiny, 128-wide generator), untrained.

Columns: ``evaluate`` is :func:`~rsatalker_core.evaluation.runner.evaluate_split` (speech
encoding, three generator passes per sample, all metrics), the median of ``--repeats`` runs
after one warm-up; ``clips/s`` and ``samples/s`` follow from it; ``report`` is
:func:`~rsatalker_core.evaluation.report.write_report` (tables and matplotlib PNGs), once.
Results are committed in benchmarks/results_evaluation.md.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from rsatalker_core.config import load_config  # noqa: E402
from rsatalker_core.evaluation.report import write_report  # noqa: E402
from rsatalker_core.evaluation.runner import evaluate_split  # noqa: E402
from rsatalker_core.model.motion_model import MotionModel  # noqa: E402
from rsatalker_core.runtime import tune_process  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "dualtalk_sample")


def build_split(src: str, root: str) -> int:
    """Copy the clips of flat directory ``src`` into ``root/test``; give every clip with one
    npz a partner npz (a copy). Returns the number of clips."""
    test = os.path.join(root, "test")
    os.makedirs(test)
    for path in glob.glob(os.path.join(src, "*_speaker[12].*")):
        shutil.copy(path, test)
    clips = {os.path.basename(p).rsplit("_speaker", 1)[0] for p in glob.glob(os.path.join(test, "*.wav"))}
    for clip in clips:
        npz = {s: os.path.join(test, f"{clip}_speaker{s}.npz") for s in (1, 2)}
        have = [s for s in (1, 2) if os.path.isfile(npz[s])]
        if len(have) == 1:
            shutil.copy(npz[have[0]], npz[3 - have[0]])
    return len(clips)


def bench(name: str, config, data: str, device: str, repeats: int, out: str) -> str:
    cfg = load_config(config, {"device": device})
    model = MotionModel(cfg)
    evaluate_split(model, data, "test", progress=False)  # warm-up
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = evaluate_split(model, data, "test", progress=False)
        times.append(time.perf_counter() - t)
    t_eval = statistics.median(times)
    t = time.perf_counter()
    write_report(result, os.path.join(out, name.replace(" ", "_")))
    t_report = time.perf_counter() - t
    clips, samples = result.info["clips"], result.info["samples"]
    return (
        f"| {name} ({cfg.speech.encoder}, d_model {cfg.motion.d_model}) | {device} | {clips} | {samples} "
        f"| {t_eval:.2f} s | {clips / t_eval:.2f} | {samples / t_eval:.2f} | {t_report:.2f} s |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="flat directory of <clip>_speaker{1,2}.{wav,npz}")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tune_process()  # as the rsatalker CLI does at start-up
    if not glob.glob(os.path.join(args.data, "*_speaker[12].npz")):
        print(f"no <clip>_speaker{{1,2}}.npz under {args.data}: pass --data", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        n = build_split(args.data, data)
        frames = sum(1 for _ in glob.glob(os.path.join(data, "test", "*.npz")))
        rows = [
            bench("test_small", os.path.join(REPO, "config", "test_small.yaml"), data, args.device, args.repeats, tmp),
            bench("default", None, data, args.device, args.repeats, tmp),
        ]
    print("# rsatalker evaluation speed\n")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}\n")
    print("| config | device | clips | samples | evaluate | clips/s | samples/s | report (tables + PNGs) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)
    print(
        f"\nSplit: {n} real DualTalk clip(s) of 23.5 s ({frames} npz tracks: speaker 2's and its copy "
        "as speaker 1), so each clip gives 2 samples and all five rows. Per sample: three generator "
        "passes (model, w/o social module, w/o partner inputs), speech encoding of both speakers "
        "and of silence (shared within a clip), and FD/P-FD/MSE/SID/rPCC/STS for every row. "
        f"`evaluate` is the median of {args.repeats} runs after a warm-up; untrained weights."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
