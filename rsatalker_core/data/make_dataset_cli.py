"""``rsatalker make-dataset``: dyadic recordings -> a DualTalk-layout corpus with relationship
labels (:mod:`rsatalker_core.data.make_dataset`), ready for ``rsatalker train --stage 1``.

    rsatalker make-dataset --root corpus --name talk1 --relationship siblings \\
        (--videos A.mp4 B.mp4 | --side-by-side AB.mp4 --crop1 x,y,w,h --crop2 x,y,w,h | --bag BAG)
        [--audio1 A.wav --audio2 B.wav] [--split train] [--clip-seconds 20]
"""

from __future__ import annotations

import argparse
import os

__all__ = ["add_make_dataset_parser", "cmd_make_dataset"]


def add_make_dataset_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-dataset", help="dyadic recordings -> DualTalk-layout corpus with relationship labels",
        description="Track both people of a recorded conversation and write DualTalk-layout clips "
                    "(<root>/<split>/<name>_<nn>_speaker{1,2}.{wav,npz}) and <root>/relationships.csv.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", nargs=2, metavar=("VIDEO1", "VIDEO2"),
                     help="one video per person (speaker 1, speaker 2), started together")
    src.add_argument("--side-by-side", metavar="VIDEO", help="one video showing both people (with --crop1/--crop2)")
    src.add_argument("--bag", help="rosbag2 recording with two camera and two audio topics")
    p.add_argument("--crop1", help="speaker 1's box in the side-by-side video: x,y,w,h pixels")
    p.add_argument("--crop2", help="speaker 2's box: x,y,w,h pixels")
    p.add_argument("--audio1", help="speaker 1's audio (default: from the video / bag)")
    p.add_argument("--audio2", help="speaker 2's audio")
    p.add_argument("--bag-topics", nargs=4, metavar=("CAMERA1", "CAMERA2", "AUDIO1", "AUDIO2"),
                   help="bag topics (default: self/camera/image partner/camera/image audio/self audio/partner)")
    p.add_argument("--root", required=True, help="corpus root (created; earlier clips and labels are kept)")
    p.add_argument("--name", help="recording id, prefix of the clip names (default: the input's file name)")
    p.add_argument("--relationship", required=True,
                   help="siblings | parent_child | couple | superior_subordinate, or 'blood|non-blood,equal|non-equal'")
    p.add_argument("--split", default="train", choices=("train", "test", "ood", ""),
                   help="sub-directory of the root (default train)")
    p.add_argument("--clip-seconds", type=float, default=20.0, help="longest clip, s (<= 30; 0 = one clip)")
    p.add_argument("--min-face-fraction", type=float, default=0.8,
                   help="leave out clips where a face was tracked in fewer frames (default 0.8)")
    p.add_argument("--overwrite", action="store_true", help="replace clips of the same name")
    p.add_argument("--landmark-embedding", default="",
                   help="FLAME's mediapipe_landmark_embedding.npz (needed with an official FLAME model)")
    p.add_argument("--hfov", type=float, default=60.0, help="cameras' horizontal field of view, degrees")
    p.add_argument("--config", help="YAML config (its flame section picks the head model)")
    p.set_defaults(func=cmd_make_dataset)


def cmd_make_dataset(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from rsatalker_core.config import FPS, load_config
    from rsatalker_core.data import make_dataset as md
    from rsatalker_core.errors import DatasetError
    from rsatalker_core.head.flame import FlameModel
    from rsatalker_core.relationship import Relationship
    from rsatalker_core.tracking.offline import head_model_name
    from rsatalker_core.tracking.tracker import FaceTracker

    Relationship.parse(args.relationship)  # fail before any tracking
    if not 1.0 <= args.hfov <= 170.0:
        raise DatasetError(f"--hfov must be in 1..170 degrees, got {args.hfov}")
    if not 0.0 <= args.min_face_fraction <= 1.0:
        raise DatasetError(f"--min-face-fraction must be in 0..1, got {args.min_face_fraction}")
    if args.side_by_side and not (args.crop1 and args.crop2):
        raise DatasetError("--side-by-side needs --crop1 and --crop2 (x,y,w,h)")
    if not args.side_by_side and (args.crop1 or args.crop2):
        raise DatasetError("--crop1/--crop2 go with --side-by-side")
    if args.bag and (args.audio1 or args.audio2):
        raise DatasetError("a bag carries its own audio topics; --audio1/--audio2 go with videos")
    if args.bag_topics and not args.bag:
        raise DatasetError("--bag-topics goes with --bag")
    crops = (md.parse_crop(args.crop1), md.parse_crop(args.crop2)) if args.side_by_side else None
    first = args.videos[0] if args.videos else (args.side_by_side or args.bag)
    name = args.name or os.path.splitext(os.path.basename(os.path.normpath(first)))[0]

    cfg = load_config(args.config)
    flame = FlameModel(cfg.flame)
    emb = args.landmark_embedding or None

    def factory():
        return FaceTracker(flame, emb, hfov_deg=args.hfov)

    bars = {}

    def progress(label, done, total):
        bar = bars.get(label)
        if bar is None:
            bar = bars[label] = tqdm(desc=f"track {label}", unit="frame")
        bar.total = total
        bar.update(done - bar.n)

    try:
        if args.videos:
            pair = md.track_two_videos(args.videos[0], args.videos[1], factory, args.audio1, args.audio2, progress)
        elif args.side_by_side:
            pair = md.track_side_by_side(args.side_by_side, crops[0], crops[1], factory,
                                         args.audio1, args.audio2, progress)
        else:
            pair = md.track_bag(args.bag, factory, args.bag_topics or md.DEFAULT_BAG_TOPICS, progress)
    finally:
        for bar in bars.values():
            bar.close()
    extra = {"expression_space": np.array(flame.expression_space), "head_model": np.array(head_model_name(flame))}
    res = md.write_clips(pair, args.root, name, args.relationship, args.split, args.clip_seconds,
                         args.min_face_fraction, extra, args.overwrite)
    folder = os.path.join(args.root, args.split)
    print(f"wrote {len(res.clips)} clips ({sum(res.num_frames) / FPS:.1f} s) to {folder}, labels in "
          f"{os.path.join(args.root, 'relationships.csv')}"
          + (f"; left out {len(res.skipped)}: " + "; ".join(f"{c}: {w}" for c, w in res.skipped) if res.skipped else ""))
    index = os.path.join(args.root, "relationships.csv")
    print(f"fine-tune the default motion model (README 'Fine-tuning on your own recordings'): rsatalker train "
          f"--stage 1 --config config/train_default_motion.yaml --set motion.checkpoint=default_motion.pt "
          f"--set data.root={args.root} --set data.split={args.split} --set data.relationship_index={index} "
          f"--set data.feature_cache={os.path.join(args.root, 'features')} --set train.out_dir=runs/finetune "
          f"--set train.max_steps=1000 --set train.lr=0.0001")
    return 0
