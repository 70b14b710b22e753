"""The README's demo: the composed ROS 2 graph on a real recorded two-person dialogue.

1. Two real human recordings from the Debian package codec2-examples are cut at their
   pauses and arranged into alternating turns (:func:`rsatalker_core.dialogue.debian_dialogue`),
   one track for the avatar ("self") and one for the partner.
2. The whole graph — two audio players, the motion node, the render node and a recorder —
   runs composed in one process (:mod:`rsatalker_ros.bringup`), with real rclpy.
3. ``out/demo/`` receives ``avatar.mp4``, ``motion.npz`` (DualTalk layout), ``summary.json``
   and the two dialogue tracks; the summary is printed: frames, fps achieved, latency.

    python -m rsatalker_ros.demo [--seconds 20] [--relationship couple] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

import soundfile as sf

from rsatalker_core.speech.dialogue import debian_dialogue
from rsatalker_core.errors import RsatalkerError
from rsatalker_ros import bringup

SAMPLE_RATE = 16000


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="rsatalker_demo", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="length of the dialogue, s")
    p.add_argument("--relationship", default="couple")
    p.add_argument("--device", default=None, help="cpu | cuda | auto (default: config's)")
    p.add_argument("--config", default="", help="config YAML (default: the embedded default)")
    p.add_argument("--output-dir", default=os.path.join("out", "demo"))
    args = p.parse_args(argv)

    os.makedirs(args.output_dir, exist_ok=True)
    try:
        track_self, track_partner, turns = debian_dialogue(SAMPLE_RATE, duration=args.seconds)
    except RsatalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    self_wav = os.path.join(args.output_dir, "dialogue_self.wav")
    partner_wav = os.path.join(args.output_dir, "dialogue_partner.wav")
    sf.write(self_wav, track_self, SAMPLE_RATE, subtype="FLOAT")
    sf.write(partner_wav, track_partner, SAMPLE_RATE, subtype="FLOAT")
    n_self = sum(t.speaker == 0 for t in turns)
    print(f"dialogue: {args.seconds:.0f} s, {len(turns)} phrases ({n_self} by the avatar, "
          f"{len(turns) - n_self} by the partner), relationship {args.relationship}")

    bargv = ["--self-audio", self_wav, "--partner-audio", partner_wav,
             "--relationship", args.relationship, "--output-dir", args.output_dir]
    if args.device:
        bargv += ["--device", args.device]
    if args.config:
        bargv += ["--config", args.config]
    rc = bringup.main(bargv)
    summary_path = os.path.join(args.output_dir, "summary.json")
    if rc != 0 or not os.path.isfile(summary_path):
        print(f"error: the ROS graph exited with status {rc}", file=sys.stderr)
        return rc or 1
    with open(summary_path) as fh:
        s = json.load(fh)
    lat = s.get("latency_after_media_time_ms") or {}
    lat_src = s.get("latency_after_source_stamp_ms") or {}
    print("\n=== rsatalker demo summary ===")
    print(f"FLAME frames      : {s['flame_messages']} (missing {s['missing_frames']})")
    print(f"FLAME rate        : {s['flame_fps']:.2f} fps (target 25)")
    print(f"rendered images   : {s['images']}")
    if lat:
        print(f"per-frame latency : mean {lat['mean']:.0f} ms, p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms "
              "(FLAME publish time minus the capture time of the frame's first audio sample)")
    if lat_src:
        print(f"compute latency   : mean {lat_src['mean']:.0f} ms, p95 {lat_src['p95']:.0f} ms "
              "(after the audio chunk that completed the frame's lookahead)")
    for name in ("avatar.mp4", "motion.npz", "summary.json"):
        path = os.path.join(args.output_dir, name)
        if os.path.isfile(path):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
