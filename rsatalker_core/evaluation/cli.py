"""``rsatalker evaluate``: the DualTalk motion protocol over a split, with ablations and
baselines, written as Table 1-style tables, plots and a report.

    rsatalker evaluate --data DIR --split test [--checkpoint motion.pt] [--out DIR] \\
        [--config config/default.yaml] [--device cpu|cuda] [--max-clips N] [--side-by-side N]

``--side-by-side N`` also renders the first ``N`` samples as side-by-side mp4s (ground truth
| this model, on the config's avatar, with the avatar speaker's audio;
:mod:`rsatalker_core.evaluation.side_by_side`) into the output directory.

Bad input (missing data directory, unknown or empty split, malformed npz or wav, unusable
checkpoint or device, an ``--out`` that cannot be written, checked before the evaluation)
raises an :class:`~rsatalker_core.errors.RsatalkerError`, which the ``rsatalker``
CLI prints as one ``error:`` line with exit status 2.
"""

from __future__ import annotations

import argparse
import os


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand on ``subparsers`` (the ``rsatalker`` CLI)."""
    p = subparsers.add_parser(
        "evaluate", help="motion metrics (FD, P-FD, MSE, ...) of the model, ablations and baselines on a split",
        description="Evaluate the motion model on a DualTalk-layout split: Table 1-style "
        "markdown/CSV tables, bar charts, jaw/head-pose curves and report.md.",
    )
    p.add_argument("--data", required=True, help="dataset directory holding train/ test/ ood/")
    p.add_argument("--split", default="test", help="split to evaluate: train | test | ood (default: test)")
    p.add_argument("--checkpoint", help="motion weights (MotionModel checkpoint; default: config's motion.checkpoint)")
    p.add_argument("--out", help="output directory (default: out/evaluate_<split>)")
    p.add_argument("--config", help="YAML config (default: the embedded default)")
    p.add_argument("--device", help="cpu | cuda | cuda:N | auto (default: the config's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                   help="override a config value (dotted key, YAML value; as rsatalker train); repeatable")
    p.add_argument("--max-clips", type=int, help="evaluate only the first N clips (sorted by id)")
    p.add_argument("--curves", type=int, default=3, help="samples with jaw/head-pose curve plots (default 3)")
    p.add_argument("--side-by-side", type=int, default=0, metavar="N",
                   help="render the first N samples as side-by-side videos, ground truth | model, "
                   "with the speaker's audio (default 0: none)")
    p.set_defaults(func=cmd_evaluate)
    return p


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Run ``rsatalker evaluate``; returns 0.

    Raises:
        RsatalkerError: bad data, config or checkpoint (printed as one ``error:`` line).
    """
    from rsatalker_core.config import load_config, parse_overrides
    from rsatalker_core.errors import CheckpointError, ConfigError, DatasetError
    from rsatalker_core.evaluation.report import write_report
    from rsatalker_core.evaluation.runner import evaluate_split, open_split
    from rsatalker_core.model.motion_model import MotionModel

    overrides = parse_overrides(getattr(args, "overrides", None))
    if args.device:
        overrides["device"] = args.device
    if args.checkpoint:
        if not os.path.isfile(args.checkpoint):
            raise CheckpointError(f"motion checkpoint not found: {args.checkpoint}")
        overrides["motion.checkpoint"] = args.checkpoint
    if not os.path.isdir(args.data):
        raise DatasetError(f"data directory not found: {args.data}")
    from rsatalker_core.device import resolve_device
    from rsatalker_core.io.outputs import check_writable

    out = args.out or os.path.join("out", f"evaluate_{args.split}")
    check_writable(out, "dir", "--out")  # before the evaluation, not after it
    cfg = load_config(args.config, overrides)
    resolve_device(cfg.device)
    if args.side_by_side < 0:
        raise ConfigError(f"--side-by-side must be >= 0, got {args.side_by_side}")
    open_split(cfg, args.data, args.split, args.max_clips)  # fail on bad data before loading the model
    model = MotionModel(cfg)
    keep = max(0, args.curves, args.side_by_side)
    result = evaluate_split(model, args.data, args.split, args.max_clips, keep_motion=keep)
    videos = write_sample_videos(cfg, result, args.data, args.split, out, args.side_by_side)
    paths = write_report(result, out, curves=max(0, args.curves), videos=videos)
    info = result.info
    for v in videos:
        print(f"side-by-side video: {v}", flush=True)
    print(
        f"evaluated {info['samples']} samples of {info['clips']} clips ({args.split}) in "
        f"{info['seconds_total']:.1f} s on {info['device']}; report: {paths['report']}",
        flush=True,
    )
    return 0


def write_sample_videos(cfg, result, data_root: str, split: str, out_dir: str, count: int) -> list:
    """Side-by-side mp4s (ground truth | model) of the first ``count`` samples with kept
    motion, into ``out_dir/side_by_side_<clip>_speaker<N>.mp4``; returns their paths.

    The ground truth's expression space is read from its npz (real DualTalk: FLAME, shown
    as jaw and head pose on the stand-in head); the model's motion is taken to be in the
    rendering head's space (:mod:`rsatalker_core.evaluation.side_by_side`).

    Raises:
        CheckpointError: the avatar cannot be loaded; AudioError: unreadable wav;
        VideoError: encoding failed.
    """
    if count <= 0:
        return []
    from rsatalker_core.evaluation.side_by_side import head_space, npz_expression_space, write_side_by_side
    from rsatalker_core.render.renderer import AvatarRenderer
    from rsatalker_core.speech.audio import load_audio

    renderer = AvatarRenderer(cfg)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for s in [s for s in result.samples if "model" in s.motion][:count]:
        base = os.path.join(data_root, split, f"{s.clip}_speaker{s.self_speaker}")
        wav, sr = load_audio(base + ".wav", cfg.speech.sample_rate)
        path = os.path.join(out_dir, f"side_by_side_{s.name}.mp4")
        write_side_by_side(path, renderer, s.motion["gt"], s.motion["model"], s.relationship, wav, sr,
                           labels=("ground truth", f"model ({s.relationship})"),
                           spaces=(npz_expression_space(base + ".npz"), head_space(renderer)))
        paths.append(path)
    return paths
