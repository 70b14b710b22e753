"""Face tracker speed at 640x480 on ONE CPU core (issue 10): MediaPipe landmarks, the fit,
the whole tracker, and the face_tracker node's callback path (sensor_msgs/Image ->
FaceTracker -> FlameParams, i.e. camera-to-partner/flame_params latency without DDS
transport). Frames: a GRID clip (CC-BY 4.0, ../shared/data/grid_sample) scaled to 640x480.

    python benchmarks/bench_tracker.py [--frames 150] > benchmarks/results_tracker.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GRID = REPO.parent / "shared" / "data" / "grid_sample"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=150)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    clips = sorted(GRID.glob("*.mpg"))
    if not clips:
        print(f"GRID sample not found under {GRID}", file=sys.stderr)
        return 1
    from rsatalker_core.head.flame import FlameModel
    from rsatalker_core.tracking.tracker import FaceTracker

    frames = []
    for clip in clips:
        cap = cv2.VideoCapture(str(clip))
        while len(frames) < args.frames:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(bgr, (640, 480))[:, :, ::-1].copy())
        cap.release()
        if len(frames) >= args.frames:
            break
    flame = FlameModel()
    tracker = FaceTracker(flame)
    lm_ms, fit_ms, total_ms, iters = [], [], [], []
    for i, rgb in enumerate(frames):
        t0 = time.perf_counter()
        lm = tracker.landmarker(rgb)
        t1 = time.perf_counter()
        if lm is not None:
            iters.append(tracker.fitter.fit(lm.points, tracker.intrinsics(640, 480)).iterations)
        t2 = time.perf_counter()
        if i >= 5:
            lm_ms.append(1e3 * (t1 - t0))
            fit_ms.append(1e3 * (t2 - t1))
    # the same landmarks through variants of the fit (same run, so the ratios hold)
    lms = [tracker.landmarker(rgb) for rgb in frames]
    K = tracker.intrinsics(640, 480)

    def time_fit(fitter):
        fitter.reset()
        out = []
        for i, lm in enumerate(lms):
            t1 = time.perf_counter()
            if lm is not None:
                fitter.fit(lm.points, K)
            if i >= 5:
                out.append(1e3 * (time.perf_counter() - t1))
        return out

    tracker.fitter.rel_tol = 0.0
    fixed_ms = time_fit(tracker.fitter)  # without the early stop: 3 iterations per warm frame
    from rsatalker_core.tracking.fit import LandmarkFitter
    from rsatalker_core.tracking.response import load_response

    flat_ms = time_fit(LandmarkFitter(flame, tracker.embedding, depth_weight=0.0))
    resp_ms = time_fit(LandmarkFitter(flame, tracker.embedding, response=load_response("avatar")))
    tracker.close()
    tracker = FaceTracker(FlameModel())
    for i, rgb in enumerate(frames):
        t0 = time.perf_counter()
        tracker.track(rgb, i / 25)
        if i >= 5:
            total_ms.append(1e3 * (time.perf_counter() - t0))
    node_ms = []
    try:
        from rsatalker_ros.conversions import array_to_flame_params, array_to_image, camera_image_to_array

        msgs = [array_to_image(f, encoding="bgr8") for f in frames]
        tracker.reset()
        for i, m in enumerate(msgs):
            t0 = time.perf_counter()
            r = tracker.track(camera_image_to_array(m), i / 25)
            if r.has_face:
                array_to_flame_params(r.motion, stamp_ns=i * 40_000_000, eye_pose=r.eye_pose)
            if i >= 5:
                node_ms.append(1e3 * (time.perf_counter() - t0))
    except ImportError:
        pass
    q = lambda x: f"{np.percentile(x, 50):.1f} / {np.percentile(x, 95):.1f}"
    print("# Face tracker benchmark (benchmarks/bench_tracker.py)\n")
    print(f"{len(frames)} GRID frames scaled to 640x480, one CPU core (torch, OpenCV and OMP threads = 1), "
          f"{platform.processor() or platform.machine()}, stand-in head, 50 expressions + jaw + head + gaze.\n")
    print("| stage | p50 / p95 ms per frame |\n|---|---|")
    print(f"| MediaPipe FaceMesh + iris (478 landmarks) | {q(lm_ms)} |")
    print(f"| fit (Levenberg-Marquardt, warm start, {np.mean(iters[1:]):.2f} iterations per frame) | {q(fit_ms)} |")
    print(f"| fit without the early stop (3 iterations per warm frame) | {q(fixed_ms)} |")
    print(f"| fit on image positions only (no depth term, depth_weight = 0) | {q(flat_ms)} |")
    print(f"| fit with the default avatar's landmark response (tracking renders of it) | {q(resp_ms)} |")
    print(f"| FaceTracker.track (landmarks + fit + One-Euro) | {q(total_ms)} |")
    if node_ms:
        print(f"| node callback: Image msg -> FlameParams msg (latency without DDS) | {q(node_ms)} |")
    print(f"\nTracker throughput: {1e3 / np.mean(total_ms):.1f} fps (goal >= 25 fps).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
