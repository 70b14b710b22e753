#!/usr/bin/env python3
"""One command for a CUDA machine: parity, benchmarks and short training runs on the GPU.

    python scripts/gpu_check.py [--out benchmarks/results_gpu.md] [--dry-run]   (make gpu-check)

Steps, each a subprocess run from the repository root (a failed step is recorded and the
next one still runs):

1. ``parity``: ``test/test_gsplat_parity.py``, gsplat vs the torch backend (images within
   1e-4: gsplat's kernels use fast math; gradients within 1e-2 relative);
2. ``render-bench``: ``benchmarks/bench_render.py --device cuda``: ms/frame at 256² and 512²
   rendering a clip one gsplat call per frame vs batched (``rasterize_frames``);
3. ``motion-bench``: ``benchmarks/bench_pipeline.py`` (motion generation offline and the
   streaming step, CPU and CUDA rows);
4. ``train-data``: a tiny DualTalk-layout clip for the training runs: the first 2 s of the
   real DualTalk sample (``../shared/data/dualtalk_sample``; silent zero motion when absent)
   with the speaker's video rendered from the default avatar on the GPU;
5. ``train-stage2`` / 6. ``train-stage3``: ``rsatalker train --stage 2|3`` with the tiny
   test presets on ``device=cuda``, ``render.backend=gsplat``, a few steps each.

The results (device name, torch / CUDA / gsplat versions, git commit, then per step its
status, seconds, command and output or table) are written to ``--out``. Without a CUDA
device the script prints one line saying so and exits 0, writing nothing; ``--dry-run``
lists the steps without running them. Exit status: 0 when every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join("benchmarks", "results_gpu.md")
SAMPLE = os.path.join(os.path.dirname(REPO), "shared", "data", "dualtalk_sample")
CLIP_FRAMES = 50  # 2 s at 25 fps: 50 stage-2 windows of 1 frame, 5 stage-3 windows of 10
CLIP_SIZE = 64  # the stage-2 test preset's image size (stage 3 resizes to its 32x32)
STEP_TIMEOUT_S = 600  # gsplat's first use may JIT-build its CUDA extension (minutes)
TAIL_LINES = 25


@dataclass
class Step:
    """One check: a command (argv, run from the repository root) and what it shows."""

    name: str
    what: str
    argv: List[str]
    table_file: Optional[str] = None  # a markdown file the command writes, shown in full


@dataclass
class StepResult:
    step: Step
    rc: int
    seconds: float
    output: str
    table: str = ""
    status: str = field(init=False)

    def __post_init__(self) -> None:
        skipped = self.rc == 0 and " skipped" in self.output and " passed" not in self.output
        self.status = "skipped" if skipped else ("ok" if self.rc == 0 else f"FAILED (exit {self.rc})")


def steps(work: str, python: str = sys.executable, device: str = "cuda", backend: str = "gsplat") -> List[Step]:
    """The checks, with their scratch files under ``work``.

    ``device`` / ``backend`` are the GPU's (cuda / gsplat); others only serve to check the
    data and training steps' commands on a machine without CUDA (test/test_gpu_check.py).
    """
    data = os.path.join(work, "clip")
    train = [python, "-m", "rsatalker_core.cli", "train"]
    common = ["--set", f"device={device}", "--set", f"render.backend={backend}", "--set", f"data.root={data}",
              "--set", "data.split=", "--set", "train.progress=false"]
    return [
        Step("parity", "gsplat vs torch backend on CUDA (images 1e-4, gradients 1e-2 relative)",
             [python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "test/test_gsplat_parity.py"]),
        Step("render-bench", "ms/frame, one gsplat call per frame vs batched, 256² and 512²",
             [python, "benchmarks/bench_render.py", "--device", "cuda", "--sizes", "256", "512", "--repeats", "5",
              "--frames", "64", "--out", os.path.join(work, "render.md")],
             table_file=os.path.join(work, "render.md")),
        Step("motion-bench", "motion generation offline and streaming step, CPU and CUDA",
             [python, "benchmarks/bench_pipeline.py", "--seconds", "10", "--repeats", "3"]),
        Step("train-data", f"tiny training clip ({CLIP_FRAMES} frames, {CLIP_SIZE}² video rendered on the GPU)",
             [python, os.path.join("scripts", "gpu_check.py"), "--make-clip", data, "--clip-device", device]),
        Step("train-stage2", "rsatalker train --stage 2, test preset, 10 steps on CUDA with gsplat",
             train + ["--stage", "2", "--config", "config/train_stage2_test.yaml", *common,
                      "--set", f"train.out_dir={os.path.join(work, 'stage2')}", "--set", "train.max_steps=10",
                      "--set", "train.val_every=5", "--set", "train.checkpoint_every=5"]),
        Step("train-stage3", "rsatalker train --stage 3, test preset, 5 steps on CUDA with gsplat",
             train + ["--stage", "3", "--config", "config/train_stage3_test.yaml", *common,
                      "--set", f"train.out_dir={os.path.join(work, 'stage3')}", "--set", "train.max_steps=5"]),
    ]


def run_step(step: Step, timeout_s: float = STEP_TIMEOUT_S) -> StepResult:
    """Run one step from the repository root; never raises for the command's failure."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(step.argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout_s)
        rc, out = p.returncode, p.stdout
    except subprocess.TimeoutExpired as exc:
        rc, out = 124, (exc.stdout or "") if isinstance(exc.stdout, str) else ""
        out += f"\n(timed out after {timeout_s:.0f} s)"
    except OSError as exc:
        rc, out = 127, f"{type(exc).__name__}: {exc}"
    table = ""
    if rc == 0 and step.table_file and os.path.isfile(step.table_file):
        with open(step.table_file) as f:
            table = f.read()
    return StepResult(step, rc, time.perf_counter() - t0, out, table)


def environment() -> List[str]:
    """Header lines: device, versions, commit, date."""
    import torch

    lines = [f"- device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device'}"]
    lines.append(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    try:
        import gsplat

        lines.append(f"- gsplat {gsplat.__version__}")
    except Exception as exc:  # noqa: BLE001 (reported, the parity step then says more)
        lines.append(f"- gsplat not importable ({type(exc).__name__}: {exc})")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    lines.append(f"- commit {commit or 'unknown'}, run {datetime.datetime.now().isoformat(timespec='seconds')}")
    return lines


def report(results: Sequence[StepResult], header: Sequence[str]) -> str:
    """The markdown written to ``--out``."""
    out = ["# GPU check (`make gpu-check`)", "", *header, "", "| step | status | seconds | what |", "|---|---|---|---|"]
    out += [f"| {r.step.name} | {r.status} | {r.seconds:.1f} | {r.step.what} |" for r in results]
    for r in results:
        out += ["", f"## {r.step.name}: {r.status}", "", "`" + " ".join(_rel(a) for a in r.step.argv) + "`", ""]
        if r.table:
            out += [r.table.rstrip()]
        else:
            tail = r.output.rstrip().splitlines()[-TAIL_LINES:]
            out += ["```", *tail, "```"]
    return "\n".join(out) + "\n"


def _rel(arg: str) -> str:
    """An argument as it reads in the results: scratch and interpreter paths shortened."""
    if arg == sys.executable:
        return "python"
    tmp = tempfile.gettempdir()
    if tmp in arg:
        head, _, rest = arg.partition(tmp)
        parts = rest.strip(os.sep).split(os.sep)
        return head + os.path.join("$WORK", *parts[1:])
    return arg


def run_all(step_list: Sequence[Step], out: str, header: Sequence[str],
            runner: Callable[[Step], StepResult] = run_step, echo: Callable[[str], None] = print) -> int:
    """Run every step, write the report to ``out`` after each (partial results survive a
    crash), return 0 when all passed (skips count as failures: the point is to run them)."""
    results = []
    for step in step_list:
        echo(f"gpu-check: {step.name}: {step.what} ...")
        results.append(runner(step))
        echo(f"gpu-check: {step.name}: {results[-1].status} in {results[-1].seconds:.1f} s")
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(report(results, header))
    echo(f"gpu-check: results in {out}")
    return 0 if all(r.status == "ok" for r in results) else 1


def make_clip(directory: str, device: str = "cuda") -> None:
    """Write the training clip (step ``train-data``): DualTalk layout, speaker 2's video
    rendered from the default avatar on ``device`` (CUDA: gsplat, batched) on the clip's motion."""
    import numpy as np
    import soundfile as sf
    import torch

    import cv2

    from rsatalker_core.config import RsatalkerConfig
    from rsatalker_core.io.motion_npz import dualtalk_to_motion
    from rsatalker_core.render.renderer import AvatarRenderer

    os.makedirs(directory, exist_ok=True)
    sr = 16000
    name = "gpucheck_clip"
    sample_npz = os.path.join(SAMPLE, "UbjUDM1MiGE_sub_video_72_speaker2.npz")
    if os.path.isfile(sample_npz):
        stem = sample_npz[: -len("_speaker2.npz")]
        with np.load(sample_npz) as m:
            arrays = {k: m[k][:CLIP_FRAMES] for k in m.files}
        for spk in (1, 2):
            x, rate = sf.read(f"{stem}_speaker{spk}.wav", dtype="float32")
            sf.write(os.path.join(directory, f"{name}_speaker{spk}.wav"), x[: CLIP_FRAMES * rate // 25], rate)
    else:
        arrays = {"exp": np.zeros((CLIP_FRAMES, 50), np.float32), "pose": np.zeros((CLIP_FRAMES, 6), np.float32)}
        for spk in (1, 2):
            sf.write(os.path.join(directory, f"{name}_speaker{spk}.wav"), np.zeros(CLIP_FRAMES * sr // 25, np.float32), sr)
    np.savez(os.path.join(directory, f"{name}_speaker2.npz"), **arrays)
    motion = dualtalk_to_motion(arrays["exp"], arrays["pose"])
    cfg = RsatalkerConfig()
    cfg.device = device
    cfg.render.backend = "auto"
    cfg.render.width = cfg.render.height = CLIP_SIZE
    frames = AvatarRenderer(cfg).render(motion.astype(np.float32))
    path = os.path.join(directory, f"{name}_speaker2.mp4")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (CLIP_SIZE, CLIP_SIZE))
    for f in frames:
        w.write(f[..., ::-1].copy())  # RGB -> BGR
    w.release()
    where = torch.cuda.get_device_name(0) if device.startswith("cuda") else device
    print(f"{path}: {len(frames)} frames {CLIP_SIZE}x{CLIP_SIZE} ({where})")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"results file (default {DEFAULT_OUT})")
    ap.add_argument("--dry-run", action="store_true", help="list the steps and their commands; run nothing")
    ap.add_argument("--make-clip", metavar="DIR", help=argparse.SUPPRESS)  # step train-data
    ap.add_argument("--clip-device", default="cuda", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.make_clip:
        make_clip(args.make_clip, args.clip_device)
        return 0
    if args.dry_run:
        for i, s in enumerate(steps(os.path.join(tempfile.gettempdir(), "rsatalker-gpu-check")), 1):
            print(f"{i}. {s.name}: {s.what}\n   {' '.join(_rel(a) for a in s.argv)}")
        print(f"results -> {args.out}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device available to torch {torch.__version__}; nothing run")
        return 0
    with tempfile.TemporaryDirectory(prefix="rsatalker-gpu-check-") as work:
        return run_all(steps(work), args.out, environment())


if __name__ == "__main__":
    sys.exit(main())
