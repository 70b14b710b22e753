"""Face tracker accuracy in closed loop on renders of the default avatar (issue 10).

Renders the default avatar (256 px) with known motion and gaze from camera yaw 0 / +20 / -20 degrees,
tracks the renders with MediaPipe (video mode, as the face_tracker node) and the fit, and
prints a table against the targets (head rotation within 3 degrees, jaw within 0.05 rad,
expression correlation >= 0.8) for two motions: the test's (test/test_tracking.py) and a
validation motion on which the fit's settings were chosen
(rsatalker_core.tracking.closed_loop). Four fit variants: with the avatar's landmark
response and its read-outs, the response without the read-outs, without its noise directions
(nor read-outs), and no response. Also writes a plot of the truth against the tracked jaw,
smile, brows and head yaw, with and without the read-outs.

    python benchmarks/bench_tracker_accuracy.py [--plot benchmarks/results_tracker_accuracy.png] \\
        > benchmarks/results_tracker_accuracy.md
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
YAWS = (0.0, 20.0, -20.0)


def _plot(path: str, motion: np.ndarray, est: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rsatalker_core.config import EXP_SLICE, HEAD_SLICE
    from rsatalker_core.tracking.closed_loop import BROWS, JAW_OPEN, SMILE

    cols = [("jaw opening (rad)", JAW_OPEN, 1.0), ("smile", EXP_SLICE.start + SMILE, 1.0),
            ("brows", EXP_SLICE.start + BROWS, 1.0), ("head yaw (deg)", HEAD_SLICE.start + 1, np.degrees(1.0))]
    t = np.arange(len(motion)) / 25.0
    fig, axes = plt.subplots(len(YAWS), len(cols), figsize=(14, 2.6 * len(YAWS)), sharex=True)
    for i, yaw in enumerate(YAWS):
        for j, (name, c, s) in enumerate(cols):
            ax = axes[i, j]
            ax.plot(t, s * motion[:, c], "k-", lw=2, label="truth")
            ax.plot(t, s * est[yaw, "response"][:, c], "C0-", label="response")
            ax.plot(t, s * est[yaw, "no read-out"][:, c], "C1--", lw=1, label="without the read-outs")
            if i == 0:
                ax.set_title(name)
            if j == 0:
                ax.set_ylabel(f"camera yaw {yaw:+.0f} deg")
            if i == len(YAWS) - 1:
                ax.set_xlabel("s")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Default avatar tracked in closed loop (the test's motion): truth against the fit")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plot", default=str(REPO / "benchmarks" / "results_tracker_accuracy.png"))
    ap.add_argument("--avatar", default="", help="avatar checkpoint (default: the packaged default avatar)")
    ap.add_argument("--embedding", default="", help="landmark embedding npz (default: the stand-in's)")
    ap.add_argument("--response", default="avatar", help="landmark response npz (default: the default avatar's)")
    ap.add_argument("--flame-model", default="", help="FLAME model file (.pkl / .npz) the avatar is bound to "
                    "(default: the stand-in head); give --avatar, --embedding and --response for it too")
    args = ap.parse_args()
    torch.set_num_threads(2)
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        print("mediapipe is not installed", file=sys.stderr)
        return 1
    from rsatalker_core.render.renderer import AvatarRenderer
    from rsatalker_core.tracking.closed_loop import (
        BROWS, SMILE, TEST_MOTION, VALIDATION_MOTION, accuracy, known_motion, render_and_landmark, responses,
        tool_config, track,
    )
    from rsatalker_core.errors import RsatalkerError
    from rsatalker_core.tracking.embedding import embedding_for
    from rsatalker_core.tracking.response import load_response

    try:
        renderer = AvatarRenderer(tool_config(args.avatar, args.flame_model))
        emb = embedding_for(renderer.flame, args.embedding)
        variants = responses(load_response(args.response))
    except RsatalkerError as exc:  # a missing file, an embedding or avatar for another mesh
        print(f"error: {exc}", file=sys.stderr)
        return 2
    K = renderer.K[0].cpu().numpy()
    t0 = time.time()
    print("# Face tracker accuracy in closed loop (benchmarks/bench_tracker_accuracy.py)\n")
    name = f"Avatar `{Path(args.avatar).name}`" if args.avatar else "Default avatar"
    head = "stand-in head" if renderer.flame.is_standin else (
        f"FLAME `{Path(renderer.flame.source).name}` (smile and brows are the stand-in's names of expression "
        f"coefficients {SMILE} and {BROWS}, moved alike here)")
    print(f"{name} rendered at {renderer.cfg.render.width} px with known motion, seen from camera yaw "
          f"{' / '.join(f'{y:+.0f}' for y in YAWS)} degrees, tracked by MediaPipe (video mode) and the fit; "
          f"{platform.machine()}, {head}. Targets: head <= 3 deg, jaw <= 0.05 rad, expression r >= 0.8.\n")
    print("| motion | view | fit | head error, worst | jaw error, worst | jaw r / slope | brows r / slope | "
          "smile r / slope | gaze r yaw / pitch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, spec in (("test (2 s)", TEST_MOTION), ("validation (4 s)", VALIDATION_MOTION)):
        m, eye = known_motion(**spec)
        views = render_and_landmark(renderer, m, YAWS, eye_pose=eye)
        est = {}
        for yaw, (Rc, lms) in views.items():
            for name, r in variants.items():
                est[yaw, name], g = track(renderer.flame, emb, Rc, lms, K, response=r)
                a = accuracy(est[yaw, name], m, g, eye)
                mark = lambda ok: "" if ok else " ✗"
                print(f"| {label} | {yaw:+.0f}° | {name} | {a['head_deg']:.1f}°{mark(a['head_deg'] <= 3)} | "
                      f"{a['jaw_rad']:.3f} rad{mark(a['jaw_rad'] <= 0.05)} | {a['jaw_r']:.2f} / {a['jaw_slope']:.2f} | "
                      f"{a['brows_r']:.2f}{mark(a['brows_r'] >= 0.8)} / {a['brows_slope']:.2f} | "
                      f"{a['smile_r']:.2f}{mark(a['smile_r'] >= 0.8)} / {a['smile_slope']:.2f} | "
                      f"{a['gaze_yaw_r']:.2f}{mark(a['gaze_yaw_r'] >= 0.8)} / "
                      f"{a['gaze_pitch_r']:.2f}{mark(a['gaze_pitch_r'] >= 0.8)} |")
        if spec is TEST_MOTION:
            _plot(args.plot, m, est)
    print(f"\n✗: target missed. Slope: tracked per true unit (1 keeps the amplitude). Plot: "
          f"`{Path(args.plot).name}`. {time.time() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
