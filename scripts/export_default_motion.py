#!/usr/bin/env python3
"""Export stage-1 motion weights as the shipped asset ``rsatalker_core/assets/default_motion.pt``.

The motion checkpoint holds the speech-to-motion generator only: the Gaussian offsetnet
belongs to the avatar (rsatalker_core/avatar/offsets.py). Stage-1 runs from before that
move still hold an untrained ``social.gaussian_offsetnet`` (last layer all zero, so
``c = 0``; 15 MB at the default size); this script drops it (refusing a trained one, which
belongs in an avatar checkpoint: ``RelationshipOffsets.from_legacy_motion_state``) and
copies every other tensor unchanged (float32). :class:`rsatalker_core.model.motion_model.MotionModel`
reads both layouts, so the shipped file (written with ``omitted_untrained`` by the earlier
version of this script) needs no conversion.

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
from rsatalker_core.avatar.offsets import LEGACY_OFFSETNET_PREFIX  # noqa: E402
from rsatalker_core.model.motion_model import MOTION_CKPT_FORMAT  # noqa: E402


def export(src: str, dst: str) -> dict:
    """Copy ``src`` to ``dst`` without a legacy untrained offsetnet; returns the written dict.

    Raises:
        CheckpointError: ``src`` is not a motion checkpoint, or it holds a trained offsetnet.
    """
    data = load_checkpoint(src, MOTION_CKPT_FORMAT)
    state = data["state_dict"]
    off = {k: v for k, v in state.items() if k.startswith(LEGACY_OFFSETNET_PREFIX)}
    last = [k for k in off if k.startswith(LEGACY_OFFSETNET_PREFIX + "2.")]
    if any(bool(off[k].abs().max() > 0) for k in last):
        raise CheckpointError(f"{src}: holds a trained Gaussian offsetnet; it belongs in the avatar checkpoint")
    out = {k: v for k, v in data.items() if k != "omitted_untrained"}
    out["state_dict"] = {k: v.clone() for k, v in state.items() if k not in off}
    out["exported_from"] = os.path.basename(src)
    atomic_save(out, dst)
    out["dropped"] = sorted(off)
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
          f"(dropped legacy untrained offsetnet: {', '.join(out['dropped']) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
