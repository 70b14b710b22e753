#!/usr/bin/env python3
"""CPU render speed: the differentiable torch rasterizer vs the numba inference rasterizer.

    python benchmarks/bench_render.py [--repeats 10] [--sizes 256 512] [--out FILE]

On the default avatar (its Gaussians bound to the FLAME stand-in, or FLAME when configured),
one thread (``torch.set_num_threads(1)``; the numba kernels are single-threaded), both
backends measured in the same run and interleaved frame by frame, so their ratio is
meaningful even on a noisy machine. Rows per image size:

* ``rasterize``: :func:`rsatalker_core.render.rasterize` alone on posed Gaussians;
* ``AvatarRenderer.render``: FLAME + binding + rasterizer + uint8 conversion, one frame.

Times are medians of per-frame CPU time of this thread (``time.thread_time``), which a
busy machine distorts less than wall time; a wall-time column is given too. The parity
columns compare the two backends' images of the same frames. Results are committed in
benchmarks/results_render.md.

``--device cuda`` (``make gpu-check``, benchmarks/results_gpu.md) measures the gsplat path
instead: wall ms/frame (``torch.cuda.synchronize`` before each clock read) of a clip of
``--frames`` frames rendered one frame per call vs batched
(:func:`~rsatalker_core.render.rasterize_frames`, ``batch_frames`` frames per gsplat call),
for the rasterizer alone and for ``AvatarRenderer.render`` (uint8 frames back on the host),
with the largest uint8 difference between the batched and the per-frame frames and the
largest float difference of gsplat from the torch backend on the same frame.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rsatalker_core.config import RsatalkerConfig  # noqa: E402
from rsatalker_core.render import rasterize, rasterize_frames, warmup_backend  # noqa: E402
from rsatalker_core.render.renderer import AvatarRenderer  # noqa: E402

BACKENDS = ("torch", "numba")


def _motion(frames: int) -> np.ndarray:
    """A deterministic talking-like motion ``[frames, 56]`` (expression, jaw, head; radians)."""
    t = np.arange(frames, dtype=np.float32)[:, None] / 25.0
    m = np.zeros((frames, 56), np.float32)
    m[:, :10] = 0.8 * np.sin(2 * np.pi * (0.7 + 0.13 * np.arange(10)) * t)
    m[:, 50] = 0.15 + 0.1 * np.sin(2 * np.pi * 3.0 * t[:, 0])  # jaw
    m[:, 53:56] = 0.08 * np.sin(2 * np.pi * np.array([0.3, 0.5, 0.2]) * t)  # head
    return m


def _interleaved(fns: Dict[str, Callable[[int], object]], frames: int, repeats: int) -> Dict[str, Tuple[float, float]]:
    """Median (thread-CPU ms, wall ms) per call of each function, alternating between them."""
    for fn in fns.values():
        fn(0)  # warm-up (numba: JIT or cache load)
    cpu: Dict[str, List[float]] = {k: [] for k in fns}
    wall: Dict[str, List[float]] = {k: [] for k in fns}
    for i in range(repeats):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.thread_time()
            fn(i % frames)
            cpu[name].append((time.thread_time() - c0) * 1e3)
            wall[name].append((time.perf_counter() - w0) * 1e3)
    return {k: (statistics.median(cpu[k]), statistics.median(wall[k])) for k in fns}


def _cuda_timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    """Median wall ms of ``fn()`` (``sync()`` before each clock read), after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def cuda_rows(sizes: List[int], frames: int, repeats: int, batch_frames: int,
              device: str, backend: str = "gsplat") -> List[str]:
    """The CUDA table: per-frame vs batched gsplat calls (see the module docstring).

    ``device`` / ``backend`` other than cuda / gsplat only serve to check this function's
    structure on a machine without CUDA (the table then measures that backend's loop).
    """
    on_cuda = device == "cuda"
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    rows = []
    motion = _motion(frames)
    for size in sizes:
        cfg = RsatalkerConfig()
        cfg.device = device
        cfg.render.width = cfg.render.height = size
        cfg.render.backend = backend
        r = AvatarRenderer(cfg, batch_frames=batch_frames)
        with torch.inference_mode():
            m = torch.as_tensor(motion, device=r.device)
            g = r.avatar(r.flame.forward_motion(m), r.flame.faces, None)
            bg = r.background.reshape(1, -1)
            n = len(g["opacities"])

            def one(i: int, backend: str = backend) -> torch.Tensor:
                return rasterize(g["means"][i], g["quats"][i], g["scales"][i], g["opacities"], g["colors"],
                                 r.viewmat, r.K, size, size, backgrounds=bg, backend=backend)[0]

            def per_frame_raster() -> None:
                for i in range(frames):
                    one(i)

            def batched_raster() -> None:
                rasterize_frames(g["means"], g["quats"], g["scales"], g["opacities"], g["colors"], r.viewmat,
                                 r.K, size, size, bg, backend=backend, batch_frames=batch_frames)

            t_pf = _cuda_timed(per_frame_raster, repeats, sync) / frames
            t_b = _cuda_timed(batched_raster, repeats, sync) / frames
            vs_torch = max((one(i) - one(i, "torch")).abs().max().item() for i in range(min(frames, 4)))
        u8_pf = np.stack([r.render(motion[i]) for i in range(frames)])
        u8_b = r.render(motion)
        max_u8 = int(np.abs(u8_b.astype(np.int16) - u8_pf.astype(np.int16)).max())
        t_full_pf = _cuda_timed(lambda: [r.render(motion[i]) for i in range(frames)], repeats, sync) / frames
        t_full_b = _cuda_timed(lambda: r.render(motion), repeats, sync) / frames
        for what, pf, b in (("rasterize", t_pf, t_b), ("AvatarRenderer.render", t_full_pf, t_full_b)):
            rows.append(f"| {size}x{size} | {what} | per frame | {pf:.2f} | {1e3 / pf:.0f} | 1.00x | | {vs_torch:.1e} |")
            rows.append(f"| {size}x{size} | {what} | batched ({batch_frames}/call) | {b:.2f} | {1e3 / b:.0f} "
                        f"| {pf / b:.2f}x | {max_u8} | |")
    dev = torch.cuda.get_device_name(0) if on_cuda else f"{platform.machine()} CPU ({backend})"
    try:
        import gsplat

        gs = gsplat.__version__
    except Exception:  # noqa: BLE001 (report, do not fail the table)
        gs = "?"
    return [
        f"# CUDA render: {backend}, one call per frame vs batched",
        "",
        f"device: {dev}, torch {torch.__version__} (CUDA {torch.version.cuda}), gsplat {gs}, {n} Gaussians "
        f"(default avatar), clip of {frames} frames, medians of {repeats} runs, wall time",
        "",
        "| size | what | calls | ms/frame (wall) | fps | speed-up | max uint8 diff vs per frame "
        "| max abs diff vs torch backend |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10, help="frames timed per row and backend")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="square image sizes, pixels")
    ap.add_argument("--out", default=None, help="also write the markdown to this file")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cpu: torch vs numba (default); cuda: gsplat per frame vs batched")
    ap.add_argument("--frames", type=int, default=64, help="(cuda) frames in the timed clip")
    ap.add_argument("--batch-frames", type=int, default=32, help="(cuda) frames per batched gsplat call")
    args = ap.parse_args()

    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("bench_render: no CUDA device available to torch; use --device cpu")
            return
        warnings.simplefilter("ignore")  # the FLAME stand-in notice
        text = "\n".join(cuda_rows(args.sizes, args.frames, args.repeats, args.batch_frames, args.device)) + "\n"
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
        return

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # the FLAME stand-in notice
    warmup_backend("numba", "cpu")
    frames = 8
    motion = _motion(frames)
    rows = []
    for size in args.sizes:
        renderers = {}
        for b in BACKENDS:
            cfg = RsatalkerConfig()
            cfg.device = "cpu"
            cfg.render.width = cfg.render.height = size
            cfg.render.backend = b
            renderers[b] = AvatarRenderer(cfg)
        r = renderers["torch"]
        with torch.inference_mode():
            m = torch.as_tensor(motion)
            g = r.avatar(r.flame.forward_motion(m), r.flame.faces, None)
            bg = r.background.reshape(1, -1)

            def raster(b: str) -> Callable[[int], torch.Tensor]:
                return lambda i: rasterize(
                    g["means"][i], g["quats"][i], g["scales"][i], g["opacities"], g["colors"],
                    r.viewmat, r.K, size, size, backgrounds=bg, backend=b,
                )[0]

            n = len(g["opacities"])
            t_raster = _interleaved({b: raster(b) for b in BACKENDS}, frames, args.repeats)
            diffs = [(raster("numba")(i) - raster("torch")(i)).abs() for i in range(frames)]
            max_abs = max(d.max().item() for d in diffs)
            u8 = [renderers[b].render(motion) for b in BACKENDS]
            max_u8 = int(np.abs(u8[0].astype(np.int16) - u8[1].astype(np.int16)).max())
        t_full = _interleaved({b: (lambda i, b=b: renderers[b].render(motion[i])) for b in BACKENDS}, frames, args.repeats)
        for what, t in (("rasterize", t_raster), ("AvatarRenderer.render", t_full)):
            base = t["torch"][0]
            for b in BACKENDS:
                cpu_ms, wall_ms = t[b]
                parity = f"{max_abs:.1e} / {max_u8}" if b == "numba" else ""
                rows.append(
                    f"| {size}x{size} | {what} | {b} | {cpu_ms:.1f} | {1e3 / cpu_ms:.1f} | {wall_ms:.1f} "
                    f"| {base / cpu_ms:.2f}x | {parity} |"
                )

    lines = [
        "# CPU render: torch vs numba rasterizer",
        "",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"one thread, {n} Gaussians (default avatar), {args.repeats} frames per row, medians",
        "",
        "| size | what | backend | ms/frame (CPU) | fps | ms/frame (wall) | speed-up | max abs diff / uint8 levels vs torch |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
