"""``rsatalker`` command line: the offline jobs.

    rsatalker generate --self-audio B.wav --partner-audio A.wav --relationship couple \\
        --out-motion out.npz (--out-video out.mp4 | --no-video) [--partner-motion A.npz] [--device cpu]
    rsatalker track VIDEO --out OUT.npz [--overlay OUT.mp4]   (face video -> FLAME npz + wav)
    rsatalker make-dataset --root DIR --relationship R (--videos A B | --side-by-side V --crop1 .. --crop2 .. | --bag B)

Every subcommand first tunes the process (allocator, torch threads, thread switch interval;
``runtime.*`` of the config, :mod:`rsatalker_core.runtime`).

Bad input (missing or non-audio file, audio beyond ±1e3 or non-finite, npz without
``exp``/``pose`` or outside the FLAME ranges, unknown relationship, unusable config or
device, an output path that cannot be written) prints one ``error:`` line and exits with
status 2, before any work starts where it can be known then. Outputs appear only when the
whole command succeeded (:class:`rsatalker_core.io.outputs.AtomicOutputs`): a failed
render leaves neither the mp4 nor the motion npz, and no temporary file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import List, Optional

from rsatalker_core.errors import OutputError, RsatalkerError
from rsatalker_core.training.cli import add_train_parser
from rsatalker_core.evaluation.bag_cli import add_evaluate_bag_parser
from rsatalker_core.evaluation.cli import add_evaluate_parser
from rsatalker_core.tracking.cli import add_track_parser
from rsatalker_core.data.make_dataset_cli import add_make_dataset_parser

log = logging.getLogger("rsatalker")


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="speech of both speakers -> avatar motion npz + mp4")
    p.add_argument("--self-audio", required=True, help="the avatar's own speech (wav/flac/...)")
    p.add_argument("--partner-audio", required=True, help="the partner's speech")
    p.add_argument("--partner-motion", help="the partner's FLAME motion (DualTalk npz)")
    p.add_argument(
        "--relationship", required=True,
        help="siblings | parent_child | couple | superior_subordinate, or 'blood|non-blood,equal|non-equal'",
    )
    p.add_argument("--out-motion", required=True, help="output DualTalk npz (exp, pose) at 25 fps")
    video = p.add_mutually_exclusive_group(required=True)
    video.add_argument("--out-video", help="output mp4 (H.264, 25 fps) with the self audio muxed in; "
                                           "frames are encoded as they are rendered")
    video.add_argument("--no-video", action="store_true", help="write the motion npz only (no rendering)")
    p.add_argument("--device", help="cpu | cuda | cuda:N | auto (default: config's)")
    p.add_argument("--config", help="YAML config (default: the embedded default)")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from rsatalker_core.speech.audio import load_audio, num_frames_for
    from rsatalker_core.config import FPS, load_config
    from rsatalker_core.io.motion_npz import load_motion_npz, save_motion_npz
    from rsatalker_core.model.motion_model import MotionModel
    from rsatalker_core.model.streaming import generate_offline
    from rsatalker_core.render.renderer import AvatarRenderer
    from rsatalker_core.relationship import Relationship
    from rsatalker_core.io.video import VideoWriter
    from rsatalker_core.device import resolve_device
    from rsatalker_core.io.outputs import AtomicOutputs, check_writable

    check_writable(args.out_motion, "file", "--out-motion")
    if args.out_video:
        check_writable(args.out_video, "file", "--out-video")
        if os.path.abspath(args.out_video) == os.path.abspath(args.out_motion):
            raise OutputError(f"--out-video and --out-motion are the same file: {args.out_video}")
    overrides = {"device": args.device} if args.device else {}
    cfg = load_config(args.config, overrides)
    resolve_device(cfg.device)
    rel = Relationship.parse(args.relationship)
    sr = cfg.speech.sample_rate
    self_wav, _ = load_audio(args.self_audio, sr)
    partner_wav, _ = load_audio(args.partner_audio, sr)
    partner_motion = load_motion_npz(args.partner_motion) if args.partner_motion else None
    T = num_frames_for(len(self_wav), sr)
    if T < 1:
        raise RsatalkerError(f"{args.self_audio}: shorter than one frame (1/{FPS} s)")
    partner_wav = np.pad(partner_wav, (0, max(0, len(self_wav) - len(partner_wav))))[: len(self_wav)]

    t0 = time.perf_counter()
    model = MotionModel(cfg)
    renderer = None
    if not args.no_video:  # the avatar is loaded before the work, so a bad one fails first
        renderer = AvatarRenderer(cfg, device=model.device)  # applies the avatar's offsets for rel
        if model.expression_space not in (renderer.flame.expression_space, "unknown"):
            log.warning("the motion's expressions are in the '%s' space but the renderer's head is '%s': "
                        "expressions will not look as intended (docs/motion.md)",
                        model.expression_space, renderer.flame.expression_space)
    # The live generator's windows, lookahead and residual motion: the same motion as the
    # ROS graph gives for this audio (rsatalker_core.model.streaming.generate_offline).
    with tqdm(total=T, desc="motion", unit="frame") as bar:
        motion = generate_offline(model, self_wav, partner_wav, sr, rel, partner_motion, T,
                                  progress=lambda n: bar.update(n - bar.n))
    t_motion = time.perf_counter() - t0
    t1 = time.perf_counter()
    # Both files are written to temporaries and renamed at the end, together, or removed on
    # any failure (Ctrl-C included): never a motion npz without its video.
    with AtomicOutputs() as outputs:
        # Which head model's expression basis the coefficients are in (docs/motion.md).
        save_motion_npz(outputs.temp(args.out_motion), motion,
                        extra={"expression_space": np.array(model.expression_space)})
        if renderer is not None:
            # Frames stream into ONE ffmpeg pass with the audio (memory flat in clip length).
            audio = self_wav[: T * sr // FPS]  # exactly the T frames' span
            with VideoWriter(outputs.temp(args.out_video), FPS, audio=audio, sample_rate=sr) as video:
                for frame in tqdm(renderer.render_iter(motion, rel), total=T, desc="render", unit="frame"):
                    video.write(frame)
    t_render = time.perf_counter() - t1
    if args.no_video:
        print(
            f"wrote {args.out_motion}: {T} frames ({T / FPS:.2f} s at {FPS} fps), relationship "
            f"{rel.name}, motion {t_motion:.1f} s on {model.device}"
        )
        return 0
    print(
        f"wrote {args.out_motion} and {args.out_video}: {T} frames ({T / FPS:.2f} s at {FPS} fps), "
        f"relationship {rel.name}, motion {t_motion:.1f} s, render+encode {t_render:.1f} s "
        f"({T / max(t_render, 1e-9):.1f} fps) on {model.device}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rsatalker", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    add_train_parser(sub)
    add_evaluate_bag_parser(sub)
    add_evaluate_parser(sub)
    add_track_parser(sub)
    add_make_dataset_parser(sub)
    return parser


def _tune_process(config: Optional[str]) -> None:
    """Apply ``runtime.*`` of ``config`` (default: embedded) to this process, once.

    Raises:
        ConfigError: unusable config file.
    """
    from rsatalker_core.config import load_config
    from rsatalker_core.runtime import tune_process

    tune_process(load_config(config).runtime)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        _tune_process(getattr(args, "config", None))
        return args.func(args)
    except RsatalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment failed a write (disk full, removed directory, ...)
        print(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
