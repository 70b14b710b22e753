"""``rsatalker evaluate-bag``: report on a recorded ROS 2 session and export its video.

    rsatalker evaluate-bag session.mcap [--out DIR] [--gt-npz GT.npz] [--video out.mp4]
        [--rerender [--config cfg.yaml] [--device cpu]] [--json]

Prints a table (FLAME cadence and jitter, audio -> FLAME / image latency, dropped frames,
relationship switches, motion metrics against ``--gt-npz``); ``--out DIR`` also writes
``DIR/report.json`` and ``DIR/session.mp4``. Bad input (missing file, not a bag, no FLAME
topic) prints one ``error:`` line and exits with status 2 (:mod:`rsatalker_core.cli`).
"""

from __future__ import annotations

import argparse
import json
import os

__all__ = ["add_evaluate_bag_parser", "cmd_evaluate_bag"]


def add_evaluate_bag_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate-bag`` sub-command to ``rsatalker``'s sub-parsers."""
    p = sub.add_parser(
        "evaluate-bag",
        help="timing, drops, relationship switches and motion metrics of a recorded session (rosbag2)",
        description=__doc__.split("\n")[0],
    )
    p.add_argument("bag", help="rosbag2 recording: bag directory, .mcap or .db3 file")
    p.add_argument("--out", help="write report.json and session.mp4 into this directory")
    p.add_argument("--gt-npz", help="ground-truth motion of the avatar (DualTalk npz) for the motion metrics")
    p.add_argument("--partner-gt-npz", help="the partner's ground truth (DualTalk npz), for P-FD and rPCC")
    p.add_argument("--video", help="export the session's frames (self audio muxed) to this mp4")
    p.add_argument("--rerender", action="store_true",
                   help="no images in the bag: render the FLAME stream with the avatar renderer")
    p.add_argument("--config", help="config YAML for --rerender (render size, avatar)")
    p.add_argument("--device", help="torch device for --rerender (cpu, cuda, ...)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    p.set_defaults(func=cmd_evaluate_bag)


def cmd_evaluate_bag(args: argparse.Namespace) -> int:
    """Run ``evaluate-bag``. Returns the exit status (errors propagate as RsatalkerError)."""
    from rsatalker_core.evaluation.bag import evaluate_session, export_video, format_report, read_session
    from rsatalker_core.io.motion_npz import load_motion_npz
    from rsatalker_core.io.outputs import AtomicOutputs, check_writable

    # Outputs checked before the bag is read; written together at the end (AtomicOutputs).
    if args.out:
        check_writable(args.out, "dir", "--out")
    if args.video:
        check_writable(args.video, "file", "--video")
    if args.rerender and args.device:
        from rsatalker_core.device import resolve_device

        resolve_device(args.device)

    gt = load_motion_npz(args.gt_npz) if args.gt_npz else None
    partner_gt = load_motion_npz(args.partner_gt_npz) if args.partner_gt_npz else None
    video = args.video or (os.path.join(args.out, "session.mp4") if args.out else None)
    session = read_session(args.bag, load_images=video is not None)
    report = evaluate_session(session, gt, partner_gt)
    with AtomicOutputs() as outputs:
        if video is not None:
            if session.images or args.rerender:
                info = export_video(session, outputs.temp(video), rerender=args.rerender, config=args.config,
                                    device=args.device)
                report["video"] = dict(info, path=str(video))
            elif args.video:  # asked for explicitly
                export_video(session, video)  # raises the clear BagError
        if args.out:
            with open(outputs.temp(os.path.join(args.out, "report.json")), "w", encoding="utf-8") as fh:
                json.dump(report, fh, indent=2)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
