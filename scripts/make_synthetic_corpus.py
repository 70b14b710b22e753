#!/usr/bin/env python3
"""Write a SYNTHETIC-SUPERVISION dyadic corpus in the DualTalk layout.

Real recorded speech (Debian codec2-examples; espeak-ng voices when installed) arranged into
two-person conversations, with rule-based FLAME motion targets (see
rsatalker_core/data/synthetic.py for the rules). The output is marked as synthetic in its
file names, README.md and synthetic_corpus.json; train on it for default weights and tests,
never report motion-quality numbers on it.

Example:
    python scripts/make_synthetic_corpus.py --out data/synthetic --train-clips 8 --test-clips 2 --seconds 10
    # then: DataConfig(root="data/synthetic", split="train",
    #                  relationship_index="data/synthetic/relationships.csv")
"""

from __future__ import annotations

import argparse
import os
import sys
import time

try:
    import rsatalker_core  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rsatalker_core.errors import RsatalkerError  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (empty, or an earlier synthetic corpus)")
    ap.add_argument("--train-clips", type=int, default=8)
    ap.add_argument("--test-clips", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each clip, seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--voices", default="auto", choices=("auto", "codec2", "espeak", "all"))
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier synthetic corpus in --out")
    args = ap.parse_args(argv)

    from rsatalker_core.data.synthetic import SyntheticCorpusConfig, make_synthetic_corpus

    cfg = SyntheticCorpusConfig(
        root=args.out, train_clips=args.train_clips, test_clips=args.test_clips,
        clip_seconds=args.seconds, seed=args.seed, voices=args.voices, overwrite=args.overwrite,
    )
    t0 = time.perf_counter()
    try:
        meta = make_synthetic_corpus(cfg)
    except RsatalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote SYNTHETIC-SUPERVISION corpus: {len(meta['clips'])} clips x {args.seconds:g} s, "
        f"{len(meta['voices'])} voices, seed {args.seed} -> {args.out} ({time.perf_counter() - t0:.1f} s)"
    )
    print(f"relationship index: {os.path.join(args.out, 'relationships.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
