#!/usr/bin/env python3
"""Export stage-1 motion weights as the shipped asset ``rsatalker_core/assets/default_motion.pt``.

Stage 1 never trains the socially-aware module's Gaussian offsetnet (it corrects Gaussian
positions and is trained with the renderer, stages 2-3; rsatalker_core/training/stage1.py),
and its last layer starts at zero, so its output is ``c = 0`` whatever the rest holds. Its
output layer is ``hidden x 3·9976`` floats (15 MB at the default size), three quarters of
the file. This script checks that the offsetnet is still untrained (last layer all zero)
and leaves its weights out; :class:`rsatalker_core.motion_model.MotionModel` keeps its own
(seeded) initialisation for keys a checkpoint omits under ``"omitted_untrained"``. Every
other tensor is copied unchanged (float32).

    python scripts/export_default_motion.py runs/default_motion/motion_stage1.pt \\
        rsatalker_core/assets/default_motion.pt
"""

from __future__ import annotations

import argparse
import os
import sys

try:
    import rsatalker_core  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rsatalker_core.io.checkpoint import atomic_save, load_checkpoint  # noqa: E402
from rsatalker_core.errors import CheckpointError  # noqa: E402
from rsatalker_core.model.motion_model import MOTION_CKPT_FORMAT, OFFSETNET_PREFIX  # noqa: E402


def export(src: str, dst: str) -> dict:
    """Copy ``src`` to ``dst`` without the untrained offsetnet; returns the written dict.

    Raises:
        CheckpointError: ``src`` is not a motion checkpoint, or its offsetnet was trained.
    """
    data = load_checkpoint(src, MOTION_CKPT_FORMAT)
    state = data["state_dict"]
    off = {k: v for k, v in state.items() if k.startswith(OFFSETNET_PREFIX)}
    last = [k for k in off if k.startswith(OFFSETNET_PREFIX + "2.")]
    if not last or any(bool(off[k].abs().max() > 0) for k in last):
        raise CheckpointError(f"{src}: the Gaussian offsetnet is trained (or absent); refusing to drop it")
    out = dict(data)
    out["state_dict"] = {k: v.clone() for k, v in state.items() if k not in off}
    out["omitted_untrained"] = sorted(off)
    out["exported_from"] = os.path.basename(src)
    atomic_save(out, dst)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="stage-1 weights (<train.out_dir>/motion_stage1.pt)")
    ap.add_argument("dst", help="output file, e.g. rsatalker_core/assets/default_motion.pt")
    args = ap.parse_args(argv)
    try:
        out = export(args.src, args.dst)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = sum(v.numel() for v in out["state_dict"].values())
    print(f"wrote {args.dst}: {n} values, {os.path.getsize(args.dst) / 1e6:.1f} MB "
          f"(left out untrained: {', '.join(out['omitted_untrained'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
