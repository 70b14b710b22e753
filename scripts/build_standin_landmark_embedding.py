"""Build the stand-in head's MediaPipe landmark embedding (docs/ros.md "Face tracker").

Renders the default avatar at rest from several head poses, runs MediaPipe FaceMesh on the
renders and casts each landmark's pixel ray onto the posed stand-in mesh
(rsatalker_core.tracking.embedding.build_embedding_from_renders). Writes
rsatalker_core/assets/standin_mediapipe_embedding.npz in FLAME's embedding layout.

    python scripts/build_standin_landmark_embedding.py [--size 512] [--out PATH]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from rsatalker_core.config import load_config, package_root
from rsatalker_core.render.renderer import AvatarRenderer
from rsatalker_core.tracking.embedding import STANDIN_EMBEDDING_ASSET, build_embedding_from_renders, save_embedding
from rsatalker_core.tracking.landmarks import FaceLandmarker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512, help="render size, pixels")
    ap.add_argument("--out", default=os.path.join(package_root(), "assets", STANDIN_EMBEDDING_ASSET))
    args = ap.parse_args()
    cfg = load_config(None, {"device": "cpu"})
    cfg.render.width = cfg.render.height = args.size
    renderer = AvatarRenderer(cfg)
    if not renderer.flame.is_standin:
        raise SystemExit("error: the config's FLAME is not the stand-in; use FLAME's own embedding file")
    with FaceLandmarker(video=False, min_detection_confidence=0.3) as lm:
        emb, info = build_embedding_from_renders(renderer, lm)
    spread = info["spread"]
    save_embedding(args.out, emb, note=np.array(
        "MediaPipe FaceMesh landmarks on the rsatalker stand-in head, from renders of the default "
        "avatar (scripts/build_standin_landmark_embedding.py)"))
    kept = np.isin(np.arange(len(spread)), emb.landmark_indices)
    print(f"wrote {args.out}: {len(emb)} of 478 landmarks; median hit spread of kept "
          f"{1000 * np.nanmedian(spread[kept]):.2f} mm, max {1000 * np.nanmax(spread[kept]):.2f} mm")


if __name__ == "__main__":
    main()
