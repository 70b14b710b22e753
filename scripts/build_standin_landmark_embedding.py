"""Build the stand-in head's MediaPipe landmark embedding (docs/ros.md "Face tracker").

Renders the default avatar at rest from several head poses, runs MediaPipe FaceMesh on the
renders and casts each landmark's pixel ray onto the posed stand-in mesh
(rsatalker_core.tracking.embedding.build_embedding_from_renders), then calibrates where
MediaPipe's relative depth puts each landmark (calibrate_depth_offsets). Writes
rsatalker_core/assets/standin_mediapipe_embedding.npz in FLAME's embedding layout.

Then measures how MediaPipe reads the default avatar's painted face
(rsatalker_core.tracking.response.calibrate_response, 48000 renders at 256 px in clips of 10
frames, each a smooth move between random known motions and gaze under a random view,
tracked by MediaPipe in video mode), learns its read-outs (rsatalker_core.tracking.readout:
the fitted jaw, head rotation and gaze corrected from the fit's out-of-fold estimates on the
same clips, 5 folds; the expression read from the landmarks), and writes
rsatalker_core/assets/standin_avatar_landmark_response.npz, used to track renders of the
avatar (``--landmark-response avatar``). About 50 minutes on 2 CPU cores (the response
alone, with ``--embedding``: 45).

    python scripts/build_standin_landmark_embedding.py [--avatar CKPT] [--size 512] [--out PATH]
        [--response-samples 48000] [--response-clip 10] [--response-gaze 0.3] [--readout-folds 5]
        [--no-expression-readout] [--response-out PATH]

On the official FLAME (or any head model whose embedding exists) only the response is
calibrated, for an avatar fitted on that model (scripts/build_default_avatar.py --flame-model):

    python scripts/build_standin_landmark_embedding.py --flame-model generic_model.pkl \
        --embedding mediapipe_landmark_embedding.npz --avatar out/flame_avatar.pt \
        --response-out out/flame_avatar_response.npz
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from rsatalker_core.config import package_root
from rsatalker_core.errors import RsatalkerError
from rsatalker_core.render.renderer import AvatarRenderer
from rsatalker_core.tracking.closed_loop import tool_config
from rsatalker_core.tracking.embedding import (
    STANDIN_EMBEDDING_ASSET, build_embedding_from_renders, calibrate_depth_offsets, embedding_for, save_embedding,
)
from rsatalker_core.tracking.landmarks import FaceLandmarker
from rsatalker_core.tracking.response import AVATAR_RESPONSE_ASSET, calibrate_response, save_response


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--avatar", default="", help="Gaussian avatar checkpoint to render (default: the "
                    "config's avatar.checkpoint, the packaged default avatar)")
    ap.add_argument("--flame-model", default="", help="FLAME model file (.pkl / .npz) the avatar is bound to "
                    "(default: the config's, the stand-in head)")
    ap.add_argument("--embedding", default="", help="use this landmark embedding npz (e.g. FLAME's "
                    "mediapipe_landmark_embedding.npz) instead of building the stand-in's: only the response "
                    "is calibrated (needed with an official FLAME)")
    ap.add_argument("--size", type=int, default=512, help="render size, pixels")
    ap.add_argument("--out", default=os.path.join(package_root(), "assets", STANDIN_EMBEDDING_ASSET))
    ap.add_argument("--response-samples", type=int, default=48000,
                    help="renders for the avatar's landmark response (0: do not build it)")
    ap.add_argument("--response-size", type=int, default=256, help="their size, pixels")
    ap.add_argument("--response-clip", type=int, default=10,
                    help="frames per clip, tracked by MediaPipe in video mode as the tracker node does "
                         "(1: unrelated still images)")
    ap.add_argument("--response-gaze", type=float, default=0.3,
                    help="largest gaze pitch / yaw of the renders, radians (0: eyes at rest)")
    ap.add_argument("--readout-folds", type=int, default=5,
                    help="folds of the out-of-fold fits the response's pose read-out is learned from (0: none)")
    ap.add_argument("--expression-readout", action=argparse.BooleanOptionalAction, default=True,
                    help="learn the response's expression read-out from the landmarks (needs tens of thousands of samples)")
    ap.add_argument("--response-out", default=os.path.join(package_root(), "assets", AVATAR_RESPONSE_ASSET))
    args = ap.parse_args(argv)
    try:
        cfg = tool_config(args.avatar, args.flame_model)
        cfg.render.width = cfg.render.height = args.size
        renderer = AvatarRenderer(cfg) if not args.embedding else None
    except RsatalkerError as exc:  # a missing FLAME file or avatar checkpoint
        raise SystemExit(f"error: {exc}") from exc
    if args.embedding:
        embedding_path = args.embedding
    else:
        embedding_path = args.out
        if not renderer.flame.is_standin:
            raise SystemExit("error: the FLAME model is not the stand-in: give its own embedding file with "
                             "--embedding (FLAME publishes mediapipe_landmark_embedding.npz)")
        build_embedding(renderer, args.out)
    if args.response_samples > 0:
        cfg.render.width = cfg.render.height = args.response_size
        try:
            renderer = AvatarRenderer(cfg)
            embedding = embedding_for(renderer.flame, embedding_path)
        except RsatalkerError as exc:
            raise SystemExit(f"error: {exc}") from exc
        if not renderer.flame.is_standin and os.path.abspath(args.response_out) == os.path.abspath(
                ap.get_default("response_out")):
            raise SystemExit("error: give --response-out: the packaged response is the stand-in default avatar's")
        try:
            with FaceLandmarker(video=args.response_clip > 1, min_detection_confidence=0.3) as lm:
                resp, info = calibrate_response(renderer, lm, embedding, n_samples=args.response_samples,
                                                sequence_length=args.response_clip, gaze_max=args.response_gaze,
                                                readout_folds=args.readout_folds,
                                                expression_readout=args.expression_readout)
        except RsatalkerError as exc:  # e.g. --readout-folds beyond the clips
            raise SystemExit(f"error: {exc}") from exc
        save_response(args.response_out, resp, note=np.array(
            f"How MediaPipe reads the avatar {args.avatar or 'default'} on the head model "
            f"{renderer.flame.source} (scripts/build_standin_landmark_embedding.py)"))
        print(f"wrote {args.response_out}: {int(info['samples'])} renders; landmark offsets "
              f"{info['rms_before_mm']:.2f} mm RMS, {info['rms_after_mm']:.2f} mm after the response, "
              f"{info['noise_floor_mm']:.2f} mm beside its {resp.noise.shape[2]} noise directions")
        if resp.pose_readout is not None:
            print(f"pose read-out ({args.readout_folds} folds): out-of-fold jaw error {info['readout_jaw_rms_before']:.3f} -> "
                  f"{info['readout_jaw_rms_after']:.3f} rad RMS, head {info['readout_head_rms_deg_before']:.2f} -> "
                  f"{info['readout_head_rms_deg_after']:.2f} deg RMS")
        if resp.expression_readout is not None:
            print(f"expression read-out: in-sample r {info['expression_r_min']:.2f} .. median "
                  f"{info['expression_r_median']:.2f} over the {resp.expression_readout.n_exp} coefficients")


def build_embedding(renderer, out: str) -> None:
    """Build the stand-in's embedding from renders of ``renderer``'s avatar and write it to ``out``."""
    with FaceLandmarker(video=False, min_detection_confidence=0.3) as lm:
        emb, info = build_embedding_from_renders(renderer, lm)
        emb.depth_offset = calibrate_depth_offsets(renderer, lm, emb)
    spread = info["spread"]
    save_embedding(out, emb, note=np.array(
        "MediaPipe FaceMesh landmarks on the rsatalker stand-in head, from renders of the default "
        "avatar (scripts/build_standin_landmark_embedding.py)"))
    kept = np.isin(np.arange(len(spread)), emb.landmark_indices)
    print(f"wrote {out}: {len(emb)} of 478 landmarks; median hit spread of kept "
          f"{1000 * np.nanmedian(spread[kept]):.2f} mm, max {1000 * np.nanmax(spread[kept]):.2f} mm; "
          f"depth offsets median |.| {1000 * np.median(np.abs(emb.depth_offset)):.1f} mm")


if __name__ == "__main__":
    main()
