"""The README's demo: the composed ROS 2 graph on a real recorded two-person dialogue.

1. Two real human recordings from the Debian package codec2-examples are cut at their
   pauses and arranged into alternating turns (:func:`rsatalker_core.dialogue.debian_dialogue`),
   one track for the avatar ("self") and one for the partner.
2. The whole graph — two audio players, the motion node, the render node and a recorder —
   runs composed in one process (:mod:`rsatalker_ros.bringup`), with real rclpy.
3. ``out/demo/`` receives ``avatar.mp4``, ``motion.npz`` (DualTalk layout), ``summary.json``
   and the two dialogue tracks; the summary is printed: frames, fps achieved, latency.

The partner with a face: when the GRID sample (real speakers on video, CC-BY 4.0,
attribution in ``../shared/data/grid_sample/README``) lies beside the repository, the partner
is a GRID speaker instead of a voice: their clips, with pauses in which the avatar answers
(its phrases from step 1), become ``partner.mp4``, which the graph plays as the partner's
camera and microphone (``--partner-video``: the video_player and face_tracker nodes), so
the avatar listens to the partner's voice and sees the partner's tracked face on
``partner/flame_params``. Without the sample (a fresh clone), the demo is the voice-only
dialogue above; ``--partner-video FILE`` names another video, ``--no-partner-video`` forces
the voice-only demo.

    python -m rsatalker_ros.demo [--seconds 20] [--relationship couple] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from pathlib import Path

import numpy as np
import soundfile as sf

from rsatalker_core.speech.dialogue import debian_dialogue
from rsatalker_core.errors import RsatalkerError
from rsatalker_ros import bringup

SAMPLE_RATE = 16000
FPS = 25
#: The GRID sample beside the repository (real speakers on video, CC-BY 4.0).
GRID_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "grid_sample"


def grid_partner_dialogue(clips, self_track: np.ndarray, turns, out_video: str, seconds: float):
    """Interleave GRID clips (the partner speaking) with the avatar's phrases.

    The partner's clip ``i`` plays, then the avatar's ``i``-th phrase of ``turns`` (speaker
    0 in ``self_track``) while the partner's last frame stays on screen in silence, until
    ``seconds`` are filled. Writes ``out_video`` (25 fps, the partner's sound) and returns
    the avatar's track ``[S]`` at 16 kHz of the same length.

    Raises:
        RsatalkerError: a clip that cannot be read (VideoError).
    """
    from rsatalker_core.io.video import VideoWriter, read_audio_track, read_frames

    hop = SAMPLE_RATE // FPS
    phrases = [self_track[int(t.start * SAMPLE_RATE) : int(t.end * SAMPLE_RATE)] for t in turns if t.speaker == 0]
    frames, partner, avatar = [], [], []
    total = 0
    for i, clip in enumerate(clips):
        if total >= seconds * FPS:
            break
        clip_frames = read_frames(str(clip))
        if not clip_frames or (frames and clip_frames[0].shape != frames[0].shape):
            continue
        n = len(clip_frames)
        wav = read_audio_track(str(clip), SAMPLE_RATE)[: n * hop]
        frames += clip_frames
        partner.append(np.pad(wav, (0, n * hop - len(wav))))
        avatar.append(np.zeros(n * hop, np.float32))
        phrase = phrases[i % len(phrases)] if phrases else np.zeros(FPS * hop, np.float32)
        gap = int(np.ceil(len(phrase) / hop)) + 8  # the phrase and a short pause
        frames += [clip_frames[-1]] * gap
        partner.append(np.zeros(gap * hop, np.float32))
        avatar.append(np.pad(phrase, (0, gap * hop - len(phrase))).astype(np.float32))
        total += n + gap
    partner_wav = np.concatenate(partner)
    with VideoWriter(out_video, FPS, audio=partner_wav, sample_rate=SAMPLE_RATE) as video:
        for f in frames:
            video.write(f)
    return np.concatenate(avatar)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="rsatalker_demo", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="length of the dialogue, s")
    p.add_argument("--relationship", default="couple")
    p.add_argument("--device", default=None, help="cpu | cuda | auto (default: config's)")
    p.add_argument("--config", default="", help="config YAML (default: the embedded default)")
    p.add_argument("--output-dir", default=os.path.join("out", "demo"))
    p.add_argument("--partner-video", default="",
                   help="the partner as a video (face and voice; default: GRID clips when the sample is present)")
    p.add_argument("--no-partner-video", action="store_true", help="the voice-only partner of a fresh clone")
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
    partner_video = args.partner_video
    grid = sorted(GRID_DIR.glob("*.mpg")) if GRID_DIR.is_dir() else []
    if not partner_video and grid and not args.no_partner_video:
        partner_video = os.path.join(args.output_dir, "partner.mp4")
        try:
            track_self = grid_partner_dialogue(grid, track_self, turns, partner_video, args.seconds)
        except RsatalkerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        sf.write(self_wav, track_self, SAMPLE_RATE, subtype="FLOAT")
        print(f"dialogue: {len(track_self) / SAMPLE_RATE:.0f} s; the partner is a GRID speaker on video "
              f"({partner_video}: GRID corpus, CC-BY 4.0, see {GRID_DIR / 'README.md'}), the avatar answers "
              f"in the pauses; relationship {args.relationship}")
    elif partner_video:
        print(f"dialogue: the partner is {partner_video} (face and voice), the avatar speaks "
              f"{n_self} phrases; relationship {args.relationship}")
    else:
        print(f"dialogue: {args.seconds:.0f} s, {len(turns)} phrases ({n_self} by the avatar, "
              f"{len(turns) - n_self} by the partner), relationship {args.relationship}")

    bargv = ["--self-audio", self_wav, "--relationship", args.relationship, "--output-dir", args.output_dir]
    if partner_video:
        # played as the partner's camera and microphone; the face_tracker turns the face
        # into partner/flame_params for the motion node
        bargv += ["--partner-video", partner_video]
    else:
        bargv += ["--partner-audio", partner_wav]
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
    print(f"rendered images   : {s['images']} ({s.get('image_fps', 0.0):.2f} fps, target 20)")
    if lat:
        print(f"per-frame latency : mean {lat['mean']:.0f} ms, p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms "
              "(FLAME publish time minus the capture time of the frame's first audio sample)")
    lat_img = s.get("image_latency_after_media_time_ms") or {}
    if lat_img:
        print(f"image latency     : mean {lat_img['mean']:.0f} ms, p50 {lat_img['p50']:.0f} ms, "
              f"p95 {lat_img['p95']:.0f} ms (image receipt minus the capture time of its frame's first audio sample)")
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
