#!/usr/bin/env python3
"""Build rsatalker_core/assets/default_avatar.pt: Gaussians on the FLAME stand-in head,
fitted to a public-domain portrait (rsatalker_core.avatar.fit; docs/assets.md §5).

Usage (from the repository root, in the project venv):

    python scripts/build_default_avatar.py                       # the shipped asset
    python scripts/build_default_avatar.py --portrait grace_hopper --out out/gh.pt
    python scripts/build_default_avatar.py --preview-dir /tmp    # also write PNG renders
    python scripts/build_default_avatar.py --flame-model generic_model.pkl \
        --mesh-landmarks P_L P_R M_L M_R NOSE --out out/flame_avatar.pt  # on the official FLAME

Needs scikit-image (portrait "astronaut", the default) or matplotlib ("grace_hopper") and
the project's SSIM (rsatalker_core.metrics.image). Seeded and deterministic on one machine; about 3 minutes on 2 CPU cores.
Prints the masked PSNR of the frontal fit at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

import numpy as np
import torch
from tqdm import tqdm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from rsatalker_core.avatar.fit import AvatarFitConfig, fit_avatar  # noqa: E402
from rsatalker_core.config import FlameConfig, RenderConfig  # noqa: E402
from rsatalker_core.errors import ConfigError, RsatalkerError  # noqa: E402
from rsatalker_core.head.flame import FlameModel  # noqa: E402
from rsatalker_core.render import rasterize  # noqa: E402
from rsatalker_core.render.camera import default_camera  # noqa: E402

DEFAULT_OUT = os.path.join(REPO, "rsatalker_core", "assets", "default_avatar.pt")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--portrait", default="astronaut", help="astronaut | grace_hopper | path to an image")
    p.add_argument("--landmarks", type=float, nargs=10, metavar="XY",
                   help="for an image path: x y of pupil_left, pupil_right, mouth_corner_left, "
                        "mouth_corner_right, nose_tip (left = the subject's left, image right)")
    p.add_argument("--portrait-jaw", type=float, default=None,
                   help="jaw opening the photo shows, radians (default: the built-in portrait's own, else 0)")
    p.add_argument("--portrait-expression", type=float, nargs="+", default=None, metavar="C",
                   help="the photo's first expression coefficients (default: the built-in portrait's own)")
    p.add_argument("--flame-model", default="",
                   help="FLAME model file (.pkl / .npz) to fit on (default: the stand-in head; then give --out, "
                        "the packaged asset is the stand-in's)")
    p.add_argument("--mesh-landmarks", type=int, nargs=5, metavar="V", default=None,
                   help="with --flame-model: vertex ids of pupil_left, pupil_right, mouth_corner_left, "
                        "mouth_corner_right, nose_tip on its mesh")
    p.add_argument("--out", default=DEFAULT_OUT, help="output .pt (default: the packaged asset)")
    p.add_argument("--iterations", type=int, default=AvatarFitConfig.iterations)
    p.add_argument("--max-gaussians", type=int, default=AvatarFitConfig.max_gaussians)
    p.add_argument("--size", type=int, default=RenderConfig.width, help="fit resolution (square), pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--preview-dir", default="", help="write neutral / jaw-open / head-turned PNGs here")
    return p.parse_args(argv)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def write_previews(avatar, flame, render_cfg: RenderConfig, target, out_dir: str) -> None:
    """Neutral, jaw open (0.35 rad) and head turned (0.5 rad about y) renders, plus the
    aligned portrait, as PNG files in ``out_dir``."""
    import cv2

    os.makedirs(out_dir, exist_ok=True)
    view, K = default_camera(render_cfg)
    motion = torch.zeros(3, 56)
    motion[1, 50] = 0.35  # jaw
    motion[2, 54] = 0.5  # head yaw
    names = ["neutral", "jaw_open", "head_turned"]
    with torch.no_grad():
        verts = flame.forward_motion(motion)
        g = avatar(verts, flame.faces)
        for i, name in enumerate(names):
            rgb, _ = rasterize(g["means"][i], g["quats"][i], g["scales"][i], g["opacities"], g["colors"],
                               view, K, render_cfg.width, render_cfg.height, torch.ones(1, 3), backend="torch")
            img = (rgb[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
            cv2.imwrite(os.path.join(out_dir, f"default_avatar_{name}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    tgt = (target.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    cv2.imwrite(os.path.join(out_dir, "default_avatar_target.png"), cv2.cvtColor(tgt, cv2.COLOR_RGB2BGR))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.flame_model and os.path.abspath(args.out) == os.path.abspath(DEFAULT_OUT):
        raise SystemExit("error: --flame-model needs --out (the packaged default avatar is the stand-in's)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    render_cfg = RenderConfig(width=args.size, height=args.size)
    cfg = AvatarFitConfig(
        portrait=args.portrait,
        landmarks=[[args.landmarks[i], args.landmarks[i + 1]] for i in range(0, 10, 2)] if args.landmarks else [],
        portrait_jaw=args.portrait_jaw,
        portrait_expression=args.portrait_expression,
        mesh_landmarks=list(args.mesh_landmarks or []),
        render=render_cfg,
        iterations=args.iterations,
        max_gaussians=args.max_gaussians,
        seed=args.seed,
    )
    try:
        flame = FlameModel(FlameConfig(model_path=args.flame_model))
    except RsatalkerError as exc:  # a missing or unreadable FLAME file
        raise SystemExit(f"error: {exc}") from exc
    bar = tqdm(total=cfg.iterations, desc="fit", unit="step")

    def progress(step: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")

    try:
        result = fit_avatar(flame, cfg, progress)
    except ConfigError as exc:  # e.g. an official FLAME without --mesh-landmarks
        raise SystemExit(f"error: {exc}") from exc
    finally:
        bar.close()
    info = dict(result.info, seed=args.seed, builder="scripts/build_default_avatar.py")
    result.avatar.save(args.out, extra=info)
    if args.preview_dir:
        write_previews(result.avatar, flame, render_cfg, result.target, args.preview_dir)
    size_mb = os.path.getsize(args.out) / 2**20
    print(
        f"wrote {args.out} ({size_mb:.2f} MB): {info['num_gaussians']} Gaussians on {info['mesh']}, "
        f"portrait {info['portrait']}; {info['iterations']} steps in {info['seconds']:.0f} s; "
        f"PSNR (face mask) {info['psnr_init_db']:.2f} dB -> {info['psnr_db']:.2f} dB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
